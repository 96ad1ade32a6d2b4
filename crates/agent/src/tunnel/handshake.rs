//! The viewer's side of the RFB handshake, when the agent has already authenticated to the
//! session's VNC server ([`crate::runtime::vnc::auth`]): the agent greets the viewer as a
//! server that needs no authentication (security type None), so viewers — noVNC in the browser,
//! any RFB client — never see or need the session's password. Afterwards the viewer sends
//! `ClientInit`, which is exactly what the authenticated server waits for, and the stream is
//! copied as is.
//!
//! The viewer picks the protocol version (RFC 6143 §7.1.1); the security phase differs:
//! - 3.3 (and the unofficial 3.4–3.6, read as 3.3): the server names the type (a 32-bit 1);
//! - 3.7: the server lists the types (`[1, None]`), the viewer picks None, nothing follows;
//! - 3.8 and later minors (Apple's 3.889): as 3.7, then a security result (32-bit 0).

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::runtime::vnc::auth::{SECURITY_NONE, rfb_minor_version};

/// Why a viewer's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    #[error("the viewer left during the RFB handshake")]
    Left,
    #[error("the data connection failed during the RFB handshake")]
    Data(#[source] WsError),
    #[error("the raw data connection failed during the RFB handshake")]
    Raw(#[source] std::io::Error),
    #[error("the viewer sent a text frame during the RFB handshake")]
    Text,
    #[error("the viewer does not speak RFB 3.x (it sent {0:?})")]
    Version(String),
    #[error("the viewer chose security type {0}; only None (1) is offered")]
    SecurityType(u8),
}

/// Greets the viewer on `data` as a VNC server without authentication. Returns the bytes the
/// viewer sent beyond the handshake (its `ClientInit`, if it came with its last answer), which
/// belong to the VNC server.
pub async fn offer_none(data: &mut impl ViewerLink) -> Result<Vec<u8>, ViewerError> {
    let mut viewer = Bytes {
        data,
        buffered: Vec::new(),
    };
    viewer.send(b"RFB 003.008\n").await?;
    let version = viewer.read_exact(12).await?;
    let minor = rfb_minor_version(&version)
        .ok_or_else(|| ViewerError::Version(String::from_utf8_lossy(&version).into_owned()))?;
    if minor < 7 {
        viewer.send(&u32::from(SECURITY_NONE).to_be_bytes()).await?;
        return Ok(viewer.buffered);
    }
    viewer.send(&[1, SECURITY_NONE]).await?;
    let chosen = viewer.read_exact(1).await?[0];
    if chosen != SECURITY_NONE {
        if minor >= 8 {
            let reason = b"only security type None is offered";
            let mut failed = 1u32.to_be_bytes().to_vec();
            failed.extend_from_slice(&u32::try_from(reason.len()).unwrap_or(0).to_be_bytes());
            failed.extend_from_slice(reason);
            let _ = viewer.send(&failed).await;
        }
        return Err(ViewerError::SecurityType(chosen));
    }
    if minor >= 8 {
        viewer.send(&0u32.to_be_bytes()).await?;
    }
    Ok(viewer.buffered)
}

/// A data connection as the handshake uses it: bytes to the viewer, and what it sends next.
pub trait ViewerLink {
    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ViewerError>;
    /// Appends the viewer's next bytes (at least one) to `into`.
    async fn receive(&mut self, into: &mut Vec<u8>) -> Result<(), ViewerError>;
}

/// A WebSocket data connection: binary frames.
impl<S: AsyncRead + AsyncWrite + Unpin> ViewerLink for WebSocketStream<S> {
    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ViewerError> {
        SinkExt::send(self, Message::binary(bytes.to_vec()))
            .await
            .map_err(ViewerError::Data)
    }

    async fn receive(&mut self, into: &mut Vec<u8>) -> Result<(), ViewerError> {
        loop {
            match self.next().await {
                Some(Ok(Message::Binary(bytes))) if !bytes.is_empty() => {
                    into.extend_from_slice(&bytes);
                    return Ok(());
                }
                Some(Ok(Message::Close(_))) | None => return Err(ViewerError::Left),
                Some(Ok(Message::Text(_))) => return Err(ViewerError::Text),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ViewerError::Data(e)),
            }
        }
    }
}

/// A raw data connection (an upgraded HTTP connection): the bytes as they are.
impl<T> ViewerLink for TokioIo<T>
where
    TokioIo<T>: AsyncRead + AsyncWrite + Unpin,
{
    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ViewerError> {
        streamspace_client::raw_stream::write_flushed(self, bytes)
            .await
            .map_err(ViewerError::Raw)
    }

    async fn receive(&mut self, into: &mut Vec<u8>) -> Result<(), ViewerError> {
        into.reserve(64);
        match self.read_buf(into).await {
            Ok(0) => Err(ViewerError::Left),
            Ok(_) => Ok(()),
            Err(e) => Err(ViewerError::Raw(e)),
        }
    }
}

/// The viewer's bytes, buffered until the handshake has read what it needs.
struct Bytes<'a, L> {
    data: &'a mut L,
    buffered: Vec<u8>,
}

impl<L: ViewerLink> Bytes<'_, L> {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ViewerError> {
        self.data.send_bytes(bytes).await
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, ViewerError> {
        while self.buffered.len() < n {
            self.data.receive(&mut self.buffered).await?;
        }
        let rest = self.buffered.split_off(n);
        Ok(std::mem::replace(&mut self.buffered, rest))
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    type Ws = WebSocketStream<tokio::io::DuplexStream>;

    /// The agent's end and the viewer's end of a data connection.
    async fn pair() -> (Ws, Ws) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let agent = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let viewer = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        (agent, viewer)
    }

    async fn next_bytes(ws: &mut Ws) -> anyhow::Result<Vec<u8>> {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => Ok(bytes.to_vec()),
            other => anyhow::bail!("expected bytes, got {other:?}"),
        }
    }

    async fn send(ws: &mut Ws, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(ws.send(Message::binary(bytes.to_vec())).await?)
    }

    /// A viewer speaking `version` that picks `choice` (when asked) and sends `then` in the same
    /// frame; returns what the agent answered after the version and what `offer_none` returned.
    async fn viewer_speaking(
        version: &[u8],
        choice: Option<u8>,
        then: &[u8],
    ) -> anyhow::Result<(Vec<Vec<u8>>, Result<Vec<u8>, ViewerError>)> {
        let (mut agent, mut viewer) = pair().await;
        let handshake = tokio::spawn(async move { offer_none(&mut agent).await });
        assert_eq!(next_bytes(&mut viewer).await?, b"RFB 003.008\n");
        send(&mut viewer, version).await?;
        let mut answers = vec![next_bytes(&mut viewer).await?];
        if let Some(choice) = choice {
            // The choice and ClientInit in one frame: the agent keeps what is not its own.
            let mut frame = vec![choice];
            frame.extend_from_slice(then);
            send(&mut viewer, &frame).await?;
        }
        let result = handshake.await?;
        let more = version >= b"RFB 003.008\n".as_slice() || choice.is_some_and(|c| c != 1);
        if more
            && let Ok(Some(Ok(Message::Binary(b)))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), viewer.next()).await
        {
            answers.push(b.to_vec());
        }
        Ok((answers, result))
    }

    #[tokio::test]
    async fn each_rfb_version_gets_security_type_none() -> anyhow::Result<()> {
        let (answers, rest) = viewer_speaking(b"RFB 003.008\n", Some(1), &[1]).await?;
        assert_eq!(
            answers,
            [vec![1, 1], vec![0, 0, 0, 0]],
            "3.8: list, then OK"
        );
        assert_eq!(rest?, [1], "ClientInit is kept for the server");

        let (answers, rest) = viewer_speaking(b"RFB 003.007\n", Some(1), &[]).await?;
        assert_eq!(answers, [vec![1, 1]], "3.7: a list and no result");
        assert!(rest?.is_empty());

        let (answers, rest) = viewer_speaking(b"RFB 003.003\n", None, &[]).await?;
        assert_eq!(answers, [vec![0, 0, 0, 1]], "3.3: the server names None");
        assert!(rest?.is_empty());

        let (answers, _) = viewer_speaking(b"RFB 003.889\n", Some(1), &[]).await?;
        assert_eq!(answers[1], [0, 0, 0, 0], "Apple's 3.889 is spoken as 3.8");
        Ok(())
    }

    #[tokio::test]
    async fn a_viewer_asking_for_another_security_type_is_refused() -> anyhow::Result<()> {
        let (answers, result) = viewer_speaking(b"RFB 003.008\n", Some(2), &[]).await?;
        assert!(
            matches!(result, Err(ViewerError::SecurityType(2))),
            "{result:?}"
        );
        assert_eq!(answers[1][..4], [0, 0, 0, 1], "3.8 hears why: {answers:?}");

        let (mut agent, mut viewer) = pair().await;
        let handshake = tokio::spawn(async move { offer_none(&mut agent).await });
        next_bytes(&mut viewer).await?;
        send(&mut viewer, b"HTTP/1.1 200").await?;
        assert!(matches!(handshake.await?, Err(ViewerError::Version(_))));
        Ok(())
    }
}
