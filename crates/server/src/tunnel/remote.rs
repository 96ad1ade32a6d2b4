//! The cross-replica hop: a viewer, its session's agent, and the agent's data connection may
//! each be on a different replica.
//!
//! - **Opening.** The viewer's replica B does not hold the agent: the cluster records that the
//!   stream's viewer is on B and asks the agent's replica A to send `tunnel_open`, which A does
//!   in [`open_here`].
//! - **Joining.** The data connection lands on some replica C. If C does not hold the pending
//!   tunnel, the cluster names B by the token; C dials `GET /internal/v1/tunnels/data` on B and
//!   copies between the agent and B ([`forward`]) — the one replica-to-replica hop, a raw
//!   stream when the agent's connection is one. B hands that connection to the viewer's task
//!   exactly as if the agent had dialled B.
//!
//! Calls between replicas carry the cluster's proof (an HMAC under the shared server secret), so
//! only a replica can make them. They are https/wss to a replica that serves TLS (its record
//! says so), verified against the configured CA and `--internal-tls-name` (see `crate::tls`);
//! `streamspace_replica_hops_total{kind, scheme}` counts them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as AxMessage, WebSocket};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use streamspace_client::raw_stream::{self, RawStream, write_flushed};
use streamspace_proto::tunnel::{
    MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES, STREAM_READ_BUFFER_BYTES, TOKEN_PARAM,
    next_read_size_from,
};
use streamspace_proto::wire::ServerMessage;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::splice::RawReader;
use crate::cluster::{self, AUTH_HEADER, Peer, RemoteOpen, RemoteTransfer};
use crate::error::ApiError;
use crate::state::AppState;
use crate::streams::DataConn;

/// `POST /internal/v1/tunnels/open`: another replica's viewer needs our agent to dial.
pub(crate) async fn open_here(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RemoteOpen>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "open", &body.open.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    match app
        .hub
        .send(&body.agent_id, ServerMessage::TunnelOpen(body.open))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// `POST /internal/v1/transfers/open`: another replica's request needs our agent to carry a
/// file transfer.
pub(crate) async fn open_transfer_here(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RemoteTransfer>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "open", &body.open.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    match app
        .hub
        .send(&body.agent_id, ServerMessage::TransferOpen(body.open))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// Dials the viewer's replica for `token` on behalf of `agent_id`, then copies between the
/// agent's connection and it until either ends. The hop takes the agent connection's form: a
/// raw stream to the peer for a raw one (a WebSocket if the peer, of an older release, refuses
/// the upgrade), a WebSocket for a WebSocket (file transfers need their frames kept).
pub(crate) async fn forward(
    app: AppState,
    agent: DataConn,
    peer: Peer,
    token: String,
    agent_id: String,
) {
    let path = format!("/internal/v1/tunnels/data?{TOKEN_PARAM}={token}&agent_id={agent_id}");
    let proof = cluster::proof(&app.keys.replicas, "data", &token);
    let Ok(proof) = HeaderValue::from_str(&proof) else {
        return;
    };
    let address = peer.address.clone();
    crate::metrics::replica_hop("data", peer.scheme());
    let send_timeout = app.config.tunnel.send_timeout;
    let agent = match agent {
        DataConn::Raw(agent) => {
            let Ok(url) = reqwest::Url::parse(&peer.http_url(&path)) else {
                return;
            };
            let headers =
                HeaderMap::from_iter([(HeaderName::from_static(AUTH_HEADER), proof.clone())]);
            let dial = raw_stream::dial(&url, headers, Some(&app.peer_tls));
            match tokio::time::timeout(app.config.tunnel.open_timeout, dial).await {
                Ok(Ok(peer)) => {
                    tracing::info!(%address, %agent_id, "stream forwarded to the viewer's replica");
                    return splice_raw(agent, peer, send_timeout).await;
                }
                Ok(Err(e)) if e.is_refusal() => {
                    tracing::info!(%address, error = ?e, "the viewer's replica refused a raw hop; using a WebSocket");
                    DataConn::Raw(agent)
                }
                Ok(Err(e)) => {
                    return tracing::warn!(%address, error = ?e, "forwarding a stream failed");
                }
                Err(_) => return tracing::warn!(%address, "forwarding a stream timed out"),
            }
        }
        agent @ DataConn::WebSocket(_) => agent,
    };
    let Ok(mut request) = peer.ws_url(&path).as_str().into_client_request() else {
        return;
    };
    request.headers_mut().insert(AUTH_HEADER, proof);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(STREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let connector = tokio_tungstenite::Connector::Rustls(app.peer_tls.clone());
    let dial = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    );
    let peer = match tokio::time::timeout(app.config.tunnel.open_timeout, dial).await {
        Ok(Ok((peer, _))) => peer,
        Ok(Err(e)) => return tracing::warn!(%address, error = %e, "forwarding a stream failed"),
        Err(_) => return tracing::warn!(%address, "forwarding a stream timed out"),
    };
    tracing::info!(%address, %agent_id, "stream forwarded to the viewer's replica");
    match agent {
        DataConn::WebSocket(agent) => splice_frames(*agent, peer, send_timeout).await,
        DataConn::Raw(agent) => splice_raw_to_frames(agent, peer, send_timeout).await,
    }
}

/// The replica's WebSocket to the viewer's replica.
type PeerSocket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Raw both ways: bytes copied as they are until either side ends.
async fn splice_raw(agent: RawStream, peer: RawStream, send_timeout: Duration) {
    let (mut agent_rx, mut agent_tx) = tokio::io::split(agent);
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    tokio::select! {
        () = copy(&mut agent_rx, &mut peer_tx, STREAM_READ_BUFFER_BYTES, send_timeout) => {},
        () = copy(&mut peer_rx, &mut agent_tx, STREAM_READ_BUFFER_BYTES, send_timeout) => {},
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, agent_tx.shutdown()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, peer_tx.shutdown()).await;
}

/// Copies `from` to `to` until `from` ends or a write fails or takes longer than
/// `send_timeout`; the buffer starts at `first` bytes, grows while reads fill it and shrinks
/// back (never below `first`) when they do not.
async fn copy<R, W>(from: &mut R, to: &mut W, first: usize, send_timeout: Duration)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; first];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !matches!(
            tokio::time::timeout(send_timeout, write_flushed(to, &buf[..n])).await,
            Ok(Ok(()))
        ) {
            return;
        }
        let next = next_read_size_from(first, buf.len(), n);
        if next != buf.len() {
            // A new buffer, so a smaller one frees the larger.
            buf = vec![0; next];
        }
    }
}

/// A raw agent connection to a peer that took only a WebSocket: each read becomes a frame.
async fn splice_raw_to_frames<A>(agent: A, peer: PeerSocket, send_timeout: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
{
    let (mut agent_rx, mut agent_tx) = tokio::io::split(agent);
    let (mut peer_tx, mut peer_rx) = peer.split();
    let to_peer = async {
        let mut reader = RawReader::new(&mut agent_rx);
        while let Ok(Some(bytes)) = reader.next().await {
            let frame = TMessage::Binary(bytes);
            if !matches!(
                tokio::time::timeout(send_timeout, peer_tx.send(frame)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    let to_agent = async {
        while let Some(Ok(msg)) = peer_rx.next().await {
            let bytes = match msg {
                TMessage::Binary(b) => b,
                TMessage::Close(_) => break,
                _ => continue,
            };
            if !matches!(
                tokio::time::timeout(send_timeout, write_flushed(&mut agent_tx, &bytes)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    tokio::select! {
        () = to_peer => {},
        () = to_agent => {},
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, agent_tx.shutdown()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, peer_tx.send(TMessage::Close(None))).await;
}

/// WebSockets both ways: frames passed on as they are.
async fn splice_frames(agent: WebSocket, peer: PeerSocket, send_timeout: Duration) {
    let (mut agent_tx, mut agent_rx) = agent.split();
    let (mut peer_tx, mut peer_rx) = peer.split();
    let to_peer = async {
        while let Some(Ok(msg)) = agent_rx.next().await {
            let out = match msg {
                AxMessage::Binary(b) => TMessage::Binary(b),
                AxMessage::Close(_) => break,
                _ => continue,
            };
            if !matches!(
                tokio::time::timeout(send_timeout, peer_tx.send(out)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    let to_agent = async {
        while let Some(Ok(msg)) = peer_rx.next().await {
            let out = match msg {
                TMessage::Binary(b) => AxMessage::Binary(b),
                TMessage::Close(_) => break,
                _ => continue,
            };
            if !matches!(
                tokio::time::timeout(send_timeout, agent_tx.send(out)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    tokio::select! {
        () = to_peer => {},
        () = to_agent => {},
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, agent_tx.send(AxMessage::Close(None))).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, peer_tx.send(TMessage::Close(None))).await;
}

/// How long a hop waits to tell each side that it ends.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raw_hop_flushes_every_read() -> anyhow::Result<()> {
        // A side that holds what is written until it is flushed, as a TLS session may hold the
        // last records of a write.
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut to = tokio::io::BufWriter::new(ours);
        let (mut from, mut sender) = tokio::io::duplex(64 * 1024);
        let copying = tokio::spawn(async move {
            copy(
                &mut from,
                &mut to,
                STREAM_READ_BUFFER_BYTES,
                Duration::from_secs(5),
            )
            .await;
        });
        sender.write_all(&[1, 2, 3]).await?;
        let mut got = [0; 3];
        tokio::time::timeout(Duration::from_secs(10), theirs.read_exact(&mut got)).await??;
        assert_eq!(got, [1, 2, 3]);
        copying.abort();
        Ok(())
    }

    #[tokio::test]
    async fn a_raw_agent_connection_crosses_to_a_peer_that_takes_only_websockets()
    -> anyhow::Result<()> {
        // The agent's raw connection: one end of an in-memory pipe, the test holds the other.
        let (agent, mut agent_end) = tokio::io::duplex(64 * 1024);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let accepting = tokio::spawn(async move {
            let (conn, _) = listener.accept().await?;
            anyhow::Ok(tokio_tungstenite::accept_async(conn).await?)
        });
        let tcp = TcpStream::connect(address).await?;
        let (peer, _) = tokio_tungstenite::client_async(
            format!("ws://{address}/internal/v1/tunnels/data"),
            MaybeTlsStream::Plain(tcp),
        )
        .await?;
        let mut viewer_side = accepting.await??;
        let hop = tokio::spawn(splice_raw_to_frames(agent, peer, Duration::from_secs(5)));

        agent_end.write_all(b"RFB 003.008\n").await?;
        match viewer_side.next().await {
            Some(Ok(TMessage::Binary(bytes))) => assert_eq!(&bytes[..], b"RFB 003.008\n"),
            other => anyhow::bail!("expected the agent's bytes in a frame, got {other:?}"),
        }
        viewer_side.send(TMessage::binary(vec![1, 2, 3])).await?;
        let mut three = [0; 3];
        agent_end.read_exact(&mut three).await?;
        assert_eq!(three, [1, 2, 3]);

        // The viewer's replica ending the stream ends the agent's side.
        viewer_side.close(None).await?;
        let mut rest = Vec::new();
        agent_end.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());
        hop.await?;
        Ok(())
    }
}
