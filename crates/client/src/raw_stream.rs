//! Dialling a raw data connection: an HTTP/1.1 request with
//! `Upgrade: streamspace-stream/1` ([`RAW_STREAM_PROTOCOL`]) that, once answered with
//! `101 Switching Protocols`, carries a stream's bytes as they are.
//!
//! Agents dial it for each viewer's stream and replicas for their one hop to the viewer's
//! replica: both ends are ours, so nothing needs the WebSocket framing (and the masking of every
//! byte a WebSocket client sends). A refusal — any answer but 101 — is returned as
//! [`RawDialError::Refused`], so the caller can fall back to a WebSocket: a load balancer may
//! pass only WebSocket upgrades, and a replica of an older release knows no other.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper::header::{CONNECTION, HOST, HeaderMap, HeaderValue, UPGRADE};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use streamspace_proto::tunnel::RAW_STREAM_PROTOCOL;
use tokio::net::TcpStream;
use url::Url;

/// An upgraded connection: `AsyncRead + AsyncWrite` over the stream's bytes.
pub type RawStream = TokioIo<hyper::upgrade::Upgraded>;

/// The most of a refusal's body kept for the error message.
const MAX_REFUSAL_BODY: usize = 4096;

/// Why a raw data connection could not be dialled.
#[derive(Debug, thiserror::Error)]
pub enum RawDialError {
    #[error("{0} is not an http(s) or ws(s) URL with a host")]
    Url(String),
    #[error("connecting to {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} needs TLS, and no TLS configuration was given")]
    NoTls(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("the TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the upgrade request failed")]
    Http(#[source] hyper::Error),
    #[error("the server answered {status} instead of switching to a raw stream: {body}")]
    Refused { status: StatusCode, body: String },
}

impl RawDialError {
    /// Whether the server (or something in front of it) answered but would not switch: the
    /// caller may try a WebSocket instead. An answer of 401 or 403 is about the credentials,
    /// which a WebSocket would not change.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Refused { status, .. } => {
                *status != StatusCode::UNAUTHORIZED && *status != StatusCode::FORBIDDEN
            }
            // The connection closed during the exchange: what a proxy that does not know the
            // protocol may do.
            Self::Http(e) => e.is_incomplete_message() || e.is_closed() || e.is_parse(),
            _ => false,
        }
    }
}

/// Dials `url` (`http`/`ws`, or `https`/`wss` with `tls`) and asks for a raw stream, sending
/// `headers` besides the upgrade's own (an `Authorization`, a replica proof).
pub async fn dial(
    url: &Url,
    headers: HeaderMap,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<RawStream, RawDialError> {
    let secure = match url.scheme() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        _ => return Err(RawDialError::Url(url.to_string())),
    };
    let host = url
        .host_str()
        .ok_or_else(|| RawDialError::Url(url.to_string()))?;
    let port = url
        .port_or_known_default()
        .unwrap_or(if secure { 443 } else { 80 });
    let address = format!("{host}:{port}");
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|source| RawDialError::Connect {
            address: address.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut request = hyper::Request::get(path)
        .body(Empty::<Bytes>::new())
        .map_err(|_| RawDialError::Url(url.to_string()))?;
    let sent = request.headers_mut();
    sent.extend(headers);
    sent.insert(
        HOST,
        HeaderValue::from_str(&authority).map_err(|_| RawDialError::Url(url.to_string()))?,
    );
    sent.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    sent.insert(UPGRADE, HeaderValue::from_static(RAW_STREAM_PROTOCOL));
    if secure {
        let tls = tls.ok_or_else(|| RawDialError::NoTls(url.to_string()))?;
        // A bracketed IPv6 host is a name rustls reads without the brackets.
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| RawDialError::ServerName(name.to_owned()))?;
        // The upgrade is HTTP/1.1's: offer no other protocol, whatever the shared
        // configuration offers for other calls.
        let mut config = rustls::ClientConfig::clone(tls);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector
            .connect(server_name, tcp)
            .await
            .map_err(|source| RawDialError::Tls {
                host: name.to_owned(),
                source,
            })?;
        upgrade(TokioIo::new(stream), request).await
    } else {
        upgrade(TokioIo::new(tcp), request).await
    }
}

async fn upgrade<T>(
    io: TokioIo<T>,
    request: hyper::Request<Empty<Bytes>>,
) -> Result<RawStream, RawDialError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(RawDialError::Http)?;
    // Drives the exchange; after a 101 it hands the connection to the upgrade and ends.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(RawDialError::Http)?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = match Limited::new(response.into_body(), MAX_REFUSAL_BODY)
            .collect()
            .await
        {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        return Err(RawDialError::Refused { status, body });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(RawDialError::Http)?;
    Ok(TokioIo::new(upgraded))
}
