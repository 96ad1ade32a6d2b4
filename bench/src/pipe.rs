//! Byte paths for the `tunnel` scenario: the TCP targets behind a viewer's stream (a source that
//! sends a fixed number of bytes, an echo), and the clients that measure through a WebSocket or
//! straight over TCP. The simulated agent's side of a stream is the real agent's code
//! (`streamspace_agent::tunnel::carry_stream`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use streamspace_proto::tunnel::{BINARY_SUBPROTOCOL, MAX_FRAME_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the targets write and the clients read per call: websockify's own read size, whatever
/// the agent's frame size is, so the references do not move when the agent's does.
const IO_BYTES: usize = 64 * 1024;

/// One measurement taking longer than this fails the run.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// A listener task, aborted when dropped.
pub struct Target {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every connection receives `bytes` bytes; the source then waits for the reader to hang up.
///
/// It does not close first: websockify drops what it has queued for its client when its target
/// closes, so a source that hangs up at once would cut the reference's transfers short.
pub async fn source(bytes: usize) -> anyhow::Result<Target> {
    serve(move |mut stream| async move {
        let chunk = vec![0x5au8; IO_BYTES];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n]).await?;
            left -= n;
        }
        let mut rest = [0u8; 64];
        while stream.read(&mut rest).await? > 0 {}
        anyhow::Ok(())
    })
    .await
}

/// Every connection receives `chunk` bytes every `every` (a desktop that keeps changing) until
/// the reader hangs up.
pub async fn paced(chunk: usize, every: Duration) -> anyhow::Result<Target> {
    serve(move |stream| async move {
        let (mut rx, mut tx) = stream.into_split();
        let data = vec![0x5au8; chunk];
        let writer = async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = tx.write_all(&data).await {
                    return anyhow::Result::<()>::Err(e.into());
                }
            }
        };
        let mut rest = [0u8; 64];
        let hangup = async move {
            while rx.read(&mut rest).await? > 0 {}
            anyhow::Ok(())
        };
        tokio::select! {
            r = writer => r,
            r = hangup => r,
        }
    })
    .await
}

/// Reads from `path` until `stop` turns true, adding what arrives to `bytes`.
pub async fn drain(
    path: &Path,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut conn = Conn::open(path).await?;
    let mut buf = vec![0u8; IO_BYTES];
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            chunk = conn.read(&mut buf) => {
                let chunk = chunk?;
                if chunk.is_empty() {
                    bail!("{path}: the stream ended");
                }
                bytes.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Every connection gets back what it sends.
pub async fn echo() -> anyhow::Result<Target> {
    serve(|mut stream| async move {
        let (mut rx, mut tx) = stream.split();
        tokio::io::copy(&mut rx, &mut tx).await?;
        anyhow::Ok(())
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> anyhow::Result<Target>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(stream));
        }
    });
    Ok(Target { addr, task })
}

/// A path to measure: a viewer WebSocket URL, or a plain TCP address.
pub enum Path {
    Ws(String),
    /// A `wss://` URL and what its certificate is verified with.
    Wss(String, Arc<rustls::ClientConfig>),
    Tcp(SocketAddr),
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Without the query: it holds a (single-use) token.
            Path::Ws(url) | Path::Wss(url, _) => {
                write!(f, "{}", url.split('?').next().unwrap_or_default())
            }
            Path::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

enum Conn {
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
    Tcp(TcpStream),
}

impl Conn {
    async fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(match path {
            Path::Tcp(addr) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            Path::Ws(url) | Path::Wss(url, _) => {
                let mut request = url.as_str().into_client_request()?;
                request.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static(BINARY_SUBPROTOCOL),
                );
                let connector = match path {
                    Path::Wss(_, tls) => Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
                    _ => None,
                };
                let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
                    request,
                    Some(ws_config()),
                    true,
                    connector,
                )
                .await
                .with_context(|| format!("opening {url}"))?;
                Conn::Ws(Box::new(ws))
            }
        })
    }

    /// Some bytes, or an empty vector at end of stream.
    async fn read(&mut self, buf: &mut [u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            Conn::Tcp(s) => {
                let n = s.read(buf).await?;
                Ok(buf[..n].to_vec())
            }
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
                    Some(Ok(Message::Close(_))) | None => return Ok(Vec::new()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).await?,
            Conn::Ws(ws) => ws.send(Message::binary(bytes.to_vec())).await?,
        }
        Ok(())
    }
}

/// Reads `bytes` bytes from a source behind `path`; returns MB/s (10⁶ bytes), connect included.
pub async fn bulk(path: &Path, bytes: usize) -> anyhow::Result<f64> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        let start = Instant::now();
        let mut conn = Conn::open(path).await?;
        let mut buf = vec![0u8; IO_BYTES];
        let mut got = 0;
        while got < bytes {
            let chunk = conn.read(&mut buf).await?;
            if chunk.is_empty() {
                bail!("{path}: stream ended after {got} of {bytes} bytes");
            }
            got += chunk.len();
        }
        Ok(got as f64 / 1e6 / start.elapsed().as_secs_f64())
    })
    .await
    .context("bulk transfer timed out")?
}

/// `count` round trips of `size` bytes through an echo behind `path`; latencies in ms.
pub async fn round_trips(path: &Path, count: usize, size: usize) -> anyhow::Result<Vec<f64>> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        let mut conn = Conn::open(path).await?;
        let message = vec![0x42u8; size];
        let mut buf = vec![0u8; IO_BYTES];
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let t0 = Instant::now();
            conn.write(&message).await?;
            let mut got = 0;
            while got < size {
                let chunk = conn.read(&mut buf).await?;
                if chunk.is_empty() {
                    bail!("{path}: echo ended mid-message");
                }
                got += chunk.len();
            }
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(latencies)
    })
    .await
    .context("round trips timed out")?
}
