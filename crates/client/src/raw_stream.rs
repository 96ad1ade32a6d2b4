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
    #[error("the server switched to {0:?}, not to a raw stream")]
    OtherProtocol(String),
}

impl RawDialError {
    /// Whether the answer (or its absence) says that a raw stream cannot pass here, so the
    /// caller may try a WebSocket instead: any answer but `101`, a `101` to another protocol,
    /// or the connection breaking during the exchange (a proxy that does not know the
    /// protocol). Not a refusal: 401 or 403 from the control plane itself (its JSON error),
    /// which is about the key or the token and which a WebSocket would not change — a proxy's
    /// 403 (Envoy's answer to an upgrade it is not configured for) is one. Failures to connect
    /// or to shake hands over TLS are not refusals either.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Refused { status, body } => {
                let about_credentials =
                    *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN;
                !(about_credentials && is_control_plane_error(body))
            }
            Self::Http(_) | Self::OtherProtocol(_) => true,
            _ => false,
        }
    }

    /// Whether a refusal is lasting — something in the way refuses the protocol — rather than
    /// a passing trouble (429, 502, 503, 504: a replica draining, a proxy without a backend for
    /// a moment), after which the next stream should try a raw stream again.
    pub fn is_lasting(&self) -> bool {
        let passing = [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ];
        match self {
            Self::Refused { status, .. } if passing.contains(status) => false,
            _ => self.is_refusal(),
        }
    }
}

/// Whether `body` is the control plane's JSON error (`{"error": {"code": …}}`).
fn is_control_plane_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v["error"]["code"].is_string())
}

/// Writes `bytes` to a raw stream and flushes them. Every write to a raw stream goes through
/// here: over TLS the last records of a write otherwise wait in the session until the next
/// write, which may never come on a quiet stream.
pub async fn write_flushed<W>(to: &mut W, bytes: &[u8]) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    to.write_all(bytes).await?;
    to.flush().await
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
    let protocol = response
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !protocol.trim().eq_ignore_ascii_case(RAW_STREAM_PROTOCOL) {
        return Err(RawDialError::OtherProtocol(protocol.to_owned()));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(RawDialError::Http)?;
    Ok(TokioIo::new(upgraded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, body: &str) -> RawDialError {
        RawDialError::Refused {
            status: StatusCode::from_u16(status).expect("a status"),
            body: body.to_owned(),
        }
    }

    #[test]
    fn the_control_planes_own_401_and_403_are_final_and_anything_else_refuses() {
        let ours = r#"{"error":{"code":"invalid_token","message":"unknown or already used stream token"}}"#;
        assert!(!refused(401, ours).is_refusal(), "a bad token stays bad");
        assert!(
            !refused(403, ours).is_refusal(),
            "so does another agent's token"
        );
        // A proxy's 403 to an upgrade it does not pass (Envoy's), with its own body.
        assert!(refused(403, "upgrade failed").is_refusal());
        assert!(refused(401, "").is_refusal());
        for status in [400, 404, 405, 426, 501] {
            let e = refused(status, ours);
            assert!(e.is_refusal() && e.is_lasting(), "{status}");
        }
        assert!(RawDialError::OtherProtocol("websocket".into()).is_lasting());
    }

    #[test]
    fn a_passing_trouble_falls_back_once_and_is_not_remembered() {
        for status in [429, 502, 503, 504] {
            let e = refused(status, "");
            assert!(e.is_refusal() && !e.is_lasting(), "{status}");
        }
        let connect = RawDialError::Connect {
            address: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(
            !connect.is_refusal(),
            "a WebSocket would not connect either"
        );
    }
}
