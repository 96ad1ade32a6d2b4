//! A viewer for the tests: opens the browser WebSocket the way noVNC does and speaks just enough
//! RFB to prove bytes travel both ways.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens `url`, offering `subprotocol` if given; the socket and the subprotocol answered.
pub async fn open(url: &str, subprotocol: Option<&str>) -> anyhow::Result<(Ws, Option<String>)> {
    let mut request = url.into_client_request()?;
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p)?);
    }
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("opening the viewer WebSocket {url}"))?;
    let answered = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, answered))
}

/// Opens the `wss://` viewer `url` verifying the server with `tls`.
pub async fn open_tls(url: &str, tls: std::sync::Arc<rustls::ClientConfig>) -> anyhow::Result<Ws> {
    let request = url.into_client_request()?;
    let connector = tokio_tungstenite::Connector::Rustls(tls);
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
            .await
            .with_context(|| format!("opening the viewer WebSocket {url}"))?;
    Ok(ws)
}

/// Tries to open `url` and expects an HTTP refusal; its status and JSON error code.
pub async fn refusal(url: &str) -> anyhow::Result<(u16, String)> {
    refusal_with(url, &[]).await
}

/// [`refusal`], sending `headers` too (a Bearer token or a cookie, which this route ignores).
pub async fn refusal_with(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => bail!("{url} was accepted; expected a refusal"),
        Err(WsError::Http(response)) => {
            let body: serde_json::Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok((response.status().as_u16(), code))
        }
        Err(e) => bail!("{url}: expected an HTTP refusal, got {e}"),
    }
}

/// Reads until the server's close frame; its code (1005 if none was given).
pub async fn close_code(ws: &mut Ws, within: Duration) -> anyhow::Result<u16> {
    Ok(close_frame(ws, within).await?.0)
}

/// Reads until the server's close frame; its code (1005 if none was given) and reason.
pub async fn close_frame(ws: &mut Ws, within: Duration) -> anyhow::Result<(u16, String)> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return Ok(frame.map_or((1005, String::new()), |f| {
                        (f.code.into(), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the viewer socket failed before a close frame: {e}"),
                None => bail!("the viewer socket ended without a close frame"),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .context("no close frame in time")?
}

/// A byte stream over the viewer's binary frames.
pub struct Rfb {
    pub ws: Ws,
    buf: VecDeque<u8>,
}

impl Rfb {
    pub fn new(ws: Ws) -> Self {
        Self {
            ws,
            buf: VecDeque::new(),
        }
    }

    pub async fn read_exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.buf.len() < n {
            let frame = tokio::time::timeout(READ_TIMEOUT, self.ws.next())
                .await
                .context("the stream sent nothing in time")?;
            match frame {
                Some(Ok(Message::Binary(bytes))) => self.buf.extend(bytes.iter()),
                Some(Ok(Message::Text(_))) => bail!("a text frame on the VNC stream"),
                Some(Ok(Message::Close(f))) => bail!("the stream closed: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("reading the stream: {e}"),
                None => bail!("the stream ended"),
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.ws.send(Message::binary(bytes.to_vec())).await?;
        Ok(())
    }

    /// Through a stream to an echo server: sends `what` and reads it back.
    pub async fn echo(&mut self, what: &str) -> anyhow::Result<()> {
        self.write(what.as_bytes()).await?;
        let back = self
            .read_exact(what.len())
            .await
            .with_context(|| format!("the echo of {what:?}"))?;
        if back != what.as_bytes() {
            bail!("the stream changed {what:?}");
        }
        Ok(())
    }

    /// RFB 3.8 without authentication up to the first framebuffer update; returns the
    /// framebuffer's size.
    pub async fn handshake_to_first_update(&mut self) -> anyhow::Result<(u16, u16)> {
        let init = self.handshake().await?;
        self.request_update(false, init.width, init.height).await?;
        let rects = self.read_update(&init).await?;
        if rects == 0 {
            bail!("the first framebuffer update has no rectangles");
        }
        Ok((init.width, init.height))
    }

    /// RFB 3.8 without authentication, shared, up to and including ServerInit.
    pub async fn handshake(&mut self) -> anyhow::Result<Init> {
        let banner = self.read_exact(12).await?;
        if banner != b"RFB 003.008\n" {
            bail!("unexpected banner {:?}", String::from_utf8_lossy(&banner));
        }
        self.write(b"RFB 003.008\n").await?;
        let count = self.read_exact(1).await?[0];
        if count == 0 {
            bail!("the server refused the connection");
        }
        let types = self.read_exact(usize::from(count)).await?;
        if !types.contains(&1) {
            bail!("security type None not offered: {types:?}");
        }
        self.write(&[1]).await?;
        let result = self.read_exact(4).await?;
        if result != [0, 0, 0, 0] {
            bail!("security handshake failed: {result:?}");
        }
        self.write(&[1]).await?; // ClientInit, shared
        let init = self.read_exact(24).await?;
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        self.read_exact(usize::try_from(name_len)?).await?;
        Ok(Init {
            width: u16::from_be_bytes([init[0], init[1]]),
            height: u16::from_be_bytes([init[2], init[3]]),
            bytes_per_pixel: usize::from(init[4] / 8),
        })
    }

    /// FramebufferUpdateRequest for the whole screen.
    pub async fn request_update(
        &mut self,
        incremental: bool,
        width: u16,
        height: u16,
    ) -> anyhow::Result<()> {
        let mut request = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
        request.extend_from_slice(&width.to_be_bytes());
        request.extend_from_slice(&height.to_be_bytes());
        self.write(&request).await
    }

    /// KeyEvent: `keysym` pressed and released.
    pub async fn key(&mut self, keysym: u32) -> anyhow::Result<()> {
        for down in [1u8, 0] {
            let mut event = vec![4u8, down, 0, 0];
            event.extend_from_slice(&keysym.to_be_bytes());
            self.write(&event).await?;
        }
        Ok(())
    }

    /// PointerEvent: the pointer to (`x`, `y`), no button pressed.
    pub async fn pointer(&mut self, x: u16, y: u16) -> anyhow::Result<()> {
        let mut event = vec![5u8, 0];
        event.extend_from_slice(&x.to_be_bytes());
        event.extend_from_slice(&y.to_be_bytes());
        self.write(&event).await
    }

    /// Reads server messages up to and including the next FramebufferUpdate (Raw encoding, the
    /// only one a client that sent no SetEncodings gets); returns its rectangle count.
    pub async fn read_update(&mut self, init: &Init) -> anyhow::Result<usize> {
        loop {
            let kind = self.read_exact(1).await?[0];
            match kind {
                0 => break,
                2 => continue, // Bell
                3 => {
                    let header = self.read_exact(7).await?;
                    let len = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
                    self.read_exact(usize::try_from(len)?).await?;
                }
                other => bail!("unexpected server message type {other}"),
            }
        }
        let header = self.read_exact(3).await?;
        let rects = u16::from_be_bytes([header[1], header[2]]);
        for _ in 0..rects {
            let rect = self.read_exact(12).await?;
            let (w, h) = (
                usize::from(u16::from_be_bytes([rect[4], rect[5]])),
                usize::from(u16::from_be_bytes([rect[6], rect[7]])),
            );
            let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
            if encoding != 0 {
                bail!("unexpected encoding {encoding} (only Raw was offered)");
            }
            self.read_exact(w * h * init.bytes_per_pixel).await?;
        }
        Ok(usize::from(rects))
    }
}

/// What ServerInit says about the framebuffer.
#[derive(Debug, Clone, Copy)]
pub struct Init {
    pub width: u16,
    pub height: u16,
    pub bytes_per_pixel: usize,
}
