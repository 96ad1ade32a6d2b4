//! The agent's side of viewer streams: for each `tunnel_open`, dial a data connection to the
//! control plane with the one-time stream token and copy bytes between it and the session's VNC
//! server, until either side ends.
//!
//! The data connection is an HTTP upgrade to a raw stream (`Upgrade: streamspace-stream/1`):
//! the bytes as they are, with no WebSocket framing and none of the masking every byte a
//! WebSocket client sends must have. When the control plane (or a proxy in front of it)
//! answers that upgrade with anything but `101`, the agent dials a WebSocket instead and keeps
//! to WebSockets until its control connection is made again. File transfers always use a
//! WebSocket: their outcome travels in tagged frames.
//!
//! Each stream is its own task with its own TCP connections, so a viewer that reads slowly only
//! slows its own copy loop (TCP flow control reaches back to that one VNC connection) and never
//! the control connection or other viewers. Memory per stream is one read buffer of at most
//! [`CHUNK_BYTES`](streamspace_proto::tunnel::CHUNK_BYTES) per direction plus the socket's
//! bounded write buffer. Streams outlive a reconnect of the control connection: they depend
//! only on their own sockets.
//!
//! When the session's VNC server asks for a password (the process runtime's), the agent
//! authenticates to it first with the session's password and then greets the viewer as a
//! server without authentication (module `handshake`); the viewer never learns the password.

mod handshake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use streamspace_client::raw_stream::{self, RawDialError, RawStream, write_flushed};
use streamspace_proto::tunnel::{
    AGENT_TUNNEL_PATH, FIRST_READ_BYTES, MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES,
    STREAM_READ_BUFFER_BYTES, TOKEN_PARAM, close_code, next_read_size,
};
use streamspace_proto::wire::{AgentMessage, TransferOpen, TunnelOpen};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use url::Url;
use uuid::Uuid;

use crate::Chain;
use crate::runtime::vnc::auth::VncPassword;
use crate::runtime::vnc::{self, VncAddress, VncStream};
use crate::runtime::{Runtime, RuntimeError};

/// A WebSocket data connection (file transfers, and streams where the raw upgrade is refused).
pub(crate) type DataSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A viewer stream's data connection.
enum DataConn {
    Raw(RawStream),
    WebSocket(Box<DataSocket>),
}

/// How long a viewer has to answer the agent's RFB greeting (a person may be looking at a
/// page that is still loading its viewer).
const VIEWER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one write on a stream may take before the stream is dropped. Generous: the control
/// plane closes slow viewers itself; this only frees a stream whose peer vanished.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a stream could not be opened; its [`Chain`] is the `tunnel_error` the control plane
/// gets.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("session {0} is not running on this agent")]
    NotRunning(Uuid),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("no control-plane URL known yet")]
    NoServer,
    #[error("bad data URL")]
    DataUrl(#[source] url::ParseError),
    #[error("bad data URL")]
    DataRequest(#[source] WsError),
    #[error("the agent key contains characters not allowed in a header")]
    BadKey,
    #[error("connecting to the VNC server at {address} timed out")]
    VncTimeout { address: String },
    #[error("connecting to the VNC server at {address}")]
    Vnc {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("authenticating to the VNC server at {address}")]
    VncAuth {
        address: String,
        #[source]
        source: vnc::auth::AuthError,
    },
    #[error("authenticating to the VNC server at {address} timed out")]
    VncAuthTimeout { address: String },
    #[error("greeting the viewer")]
    Viewer(#[source] handshake::ViewerError),
    #[error("the viewer did not finish its RFB handshake in time")]
    ViewerTimeout,
    #[error("writing the viewer's first bytes to the VNC server")]
    VncWrite(#[source] std::io::Error),
    #[error("opening the data connection")]
    Dial(#[source] WsError),
    #[error("opening the raw data connection")]
    RawDial(#[source] RawDialError),
    #[error("opening the data connection timed out")]
    DialTimeout,
}

/// The open streams of this agent.
pub struct Tunnels {
    runtime: Arc<dyn Runtime>,
    key: String,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    outbox: mpsc::Sender<AgentMessage>,
    server: Mutex<Option<Url>>,
    open: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Set once the raw upgrade was refused: streams use WebSockets until the next control
    /// connection.
    raw_refused: AtomicBool,
    /// Set by [`Tunnels::websockets_only`]: streams never ask for a raw stream.
    websockets_only: AtomicBool,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Counts viewers per session for idle timeouts, once set ([`Tunnels::watch_viewers`]).
    viewers: std::sync::OnceLock<Arc<crate::idle::IdleWatch>>,
}

impl Tunnels {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        key: String,
        connect_timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
        outbox: mpsc::Sender<AgentMessage>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            key,
            connect_timeout,
            tls,
            outbox,
            server: Mutex::new(None),
            open: Mutex::new(HashMap::new()),
            raw_refused: AtomicBool::new(false),
            websockets_only: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            viewers: std::sync::OnceLock::new(),
        })
    }

    /// Carries every stream in a WebSocket from now on, never asking for a raw stream
    /// (`--websocket-streams`).
    pub fn websockets_only(&self) {
        self.websockets_only.store(true, Ordering::Relaxed);
        self.raw_refused.store(true, Ordering::Relaxed);
    }

    /// Reports every open stream as a viewer of its session to `watch`.
    pub fn watch_viewers(&self, watch: Arc<crate::idle::IdleWatch>) {
        let _ = self.viewers.set(watch);
    }

    /// Remembers which control-plane URL the current connection uses; data connections go to
    /// the same place (`…/agents/connect` becomes `…/agents/tunnel`), first as raw streams
    /// again.
    pub fn set_server(&self, control_url: &Url) {
        let websockets_only = self.websockets_only.load(Ordering::Relaxed);
        self.raw_refused.store(websockets_only, Ordering::Relaxed);
        let mut url = control_url.clone();
        let prefix = url
            .path()
            .trim_end_matches('/')
            .trim_end_matches("api/v1/agents/connect")
            .trim_end_matches('/')
            .to_owned();
        url.set_path(&format!("{prefix}/{AGENT_TUNNEL_PATH}"));
        url.set_query(None);
        *lock(&self.server) = Some(url);
    }

    /// Starts the stream `open` asks for.
    pub fn open(self: &Arc<Self>, open: TunnelOpen) {
        let cancel = self.shutdown.child_token();
        lock(&self.open).insert(open.tunnel_id, cancel.clone());
        let this = self.clone();
        let span = tracing::info_span!("tunnel", tunnel_id = %open.tunnel_id, session_id = %open.session_id);
        self.tasks.spawn(
            async move {
                let tunnel_id = open.tunnel_id;
                let session_id = open.session_id;
                let _viewer = this.viewers.get().map(|w| w.viewer(session_id));
                match this.run(&open, &cancel).await {
                    Ok(reason) => {
                        tracing::info!(%tunnel_id, %session_id, %reason, "stream closed");
                        let _ = this
                            .outbox
                            .try_send(AgentMessage::TunnelClose { tunnel_id, reason });
                    }
                    Err(e) => {
                        let error = Chain(&e).to_string();
                        tracing::warn!(%tunnel_id, %session_id, %error, "stream failed");
                        let _ = this.outbox.try_send(AgentMessage::TunnelError {
                            tunnel_id,
                            session_id,
                            error,
                        });
                    }
                }
                lock(&this.open).remove(&tunnel_id);
            }
            .instrument(span),
        );
    }

    /// Starts the file transfer `open` asks for (see [`crate::transfer`]); a data connection
    /// that cannot be dialled is reported as `tunnel_error`, everything after travels in the
    /// transfer's own frames.
    pub fn transfer(self: &Arc<Self>, open: TransferOpen) {
        let this = self.clone();
        let span = tracing::info_span!("transfer", transfer_id = %open.transfer_id, session_id = %open.session_id, direction = %open.direction);
        self.tasks.spawn(
            async move {
                let server = lock(&this.server).clone();
                let dialled = match server {
                    Some(url) => {
                        dial(
                            &url,
                            &this.key,
                            &open.token,
                            this.connect_timeout,
                            this.tls.clone(),
                        )
                        .await
                    }
                    None => Err(TunnelError::NoServer),
                };
                let socket = match dialled {
                    Ok(socket) => socket,
                    Err(e) => {
                        let error = Chain(&e).to_string();
                        tracing::warn!(%error, "transfer not opened");
                        let _ = this.outbox.try_send(AgentMessage::TunnelError {
                            tunnel_id: open.transfer_id,
                            session_id: open.session_id,
                            error,
                        });
                        return;
                    }
                };
                tokio::select! {
                    () = crate::transfer::carry(this.runtime.as_ref(), &open, socket) => {}
                    () = this.shutdown.cancelled() => {
                        tracing::info!("transfer cut short: the agent is stopping");
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Ends the stream `tunnel_id`, if open.
    pub fn close(&self, tunnel_id: Uuid) {
        if let Some(cancel) = lock(&self.open).get(&tunnel_id) {
            cancel.cancel();
        }
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        lock(&self.open).len()
    }

    /// Ends every stream and waits (briefly) for their tasks.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }

    async fn run(
        &self,
        open: &TunnelOpen,
        cancel: &CancellationToken,
    ) -> Result<String, TunnelError> {
        let target = self
            .runtime
            .vnc_target(open.session_id)
            .await?
            .ok_or(TunnelError::NotRunning(open.session_id))?;
        let server = lock(&self.server).clone().ok_or(TunnelError::NoServer)?;
        let stream = Stream {
            data_url: server,
            key: &self.key,
            token: &open.token,
            vnc_address: &target.address,
            vnc_password: target.password.as_ref(),
            connect_timeout: self.connect_timeout,
            tls: self.tls.clone(),
            raw_refused: &self.raw_refused,
        };
        stream.carry(cancel.cancelled()).await
    }
}

/// Carries one stream as the agent does: connects to the VNC server at `vnc_address`, dials the
/// data connection at `data_url` (the control plane's `…/api/v1/agents/tunnel`) with the agent
/// `key` and the one-time stream `token` — raw, or a WebSocket if that is refused — and copies
/// bytes both ways until either side ends. Returns why the stream ended, or why it could not
/// be opened.
///
/// [`Tunnels`] runs one of these per `tunnel_open`; the benchmark harness's simulated agent
/// calls it directly, so both measure the same data path.
///
/// `tls` is what a `wss://` data URL is verified with (`None`: tungstenite's Mozilla roots, and
/// then a WebSocket rather than a raw stream).
pub async fn carry_stream(
    data_url: &str,
    key: &str,
    token: &str,
    vnc_address: &str,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<String, TunnelError> {
    let data_url = Url::parse(data_url).map_err(TunnelError::DataUrl)?;
    let stream = Stream {
        data_url,
        key,
        token,
        vnc_address,
        vnc_password: None,
        connect_timeout,
        tls,
        raw_refused: &AtomicBool::new(false),
    };
    stream.carry(std::future::pending()).await
}

/// What one stream needs to open.
struct Stream<'a> {
    data_url: Url,
    key: &'a str,
    token: &'a str,
    vnc_address: &'a str,
    /// The VNC server's password, which the agent answers for the viewer; `None` if the server
    /// asks for none (the viewer then handshakes with it directly).
    vnc_password: Option<&'a VncPassword>,
    connect_timeout: Duration,
    /// `None`: tungstenite's default (the Mozilla roots), and no raw stream over TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Whether a raw upgrade was refused before (then this stream dials a WebSocket); set when
    /// this one is.
    raw_refused: &'a AtomicBool,
}

impl Stream<'_> {
    /// Opens both sides and copies until one ends or `stop` completes.
    async fn carry(self, stop: impl Future<Output = ()>) -> Result<String, TunnelError> {
        let address = self.vnc_address.to_owned();
        let target = VncAddress::parse(&address);
        let mut vnc = match tokio::time::timeout(self.connect_timeout, target.connect()).await {
            Ok(Ok(vnc)) => vnc,
            Ok(Err(source)) => return Err(TunnelError::Vnc { address, source }),
            Err(_) => return Err(TunnelError::VncTimeout { address }),
        };
        if let Some(password) = self.vnc_password {
            let auth = vnc::auth::authenticate(&mut vnc, password);
            match tokio::time::timeout(self.connect_timeout, auth).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(TunnelError::VncAuth { address, source }),
                Err(_) => return Err(TunnelError::VncAuthTimeout { address }),
            }
        }
        let mut data = self.dial().await?;
        if self.vnc_password.is_some() {
            let greeting = async {
                match &mut data {
                    DataConn::Raw(raw) => handshake::offer_none(raw).await,
                    DataConn::WebSocket(socket) => handshake::offer_none(socket.as_mut()).await,
                }
            };
            let early = match tokio::time::timeout(VIEWER_HANDSHAKE_TIMEOUT, greeting).await {
                Ok(Ok(early)) => early,
                Ok(Err(e)) => return Err(TunnelError::Viewer(e)),
                Err(_) => return Err(TunnelError::ViewerTimeout),
            };
            if !early.is_empty() {
                vnc.write_all(&early).await.map_err(TunnelError::VncWrite)?;
            }
        }
        Ok(match data {
            DataConn::Raw(raw) => splice_raw(raw, vnc, stop).await,
            DataConn::WebSocket(socket) => splice(*socket, vnc, stop).await,
        })
    }

    /// A raw data connection unless the upgrade was refused (now or before), else a WebSocket.
    async fn dial(&self) -> Result<DataConn, TunnelError> {
        // Without a TLS configuration of its own, a `wss` stream keeps tungstenite's roots.
        let can_raw = self.tls.is_some() || !matches!(self.data_url.scheme(), "wss" | "https");
        if can_raw && !self.raw_refused.load(Ordering::Relaxed) {
            match self.dial_raw().await {
                Ok(raw) => return Ok(DataConn::Raw(raw)),
                Err(TunnelError::RawDial(e)) if e.is_lasting() => {
                    tracing::info!(
                        error = %Chain(&e),
                        "the raw data connection was refused; using WebSockets until the next control connection"
                    );
                    self.raw_refused.store(true, Ordering::Relaxed);
                }
                Err(TunnelError::RawDial(e)) if e.is_refusal() => {
                    tracing::info!(
                        error = %Chain(&e),
                        "the raw data connection failed for now; this stream uses a WebSocket"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        dial(
            &self.data_url,
            self.key,
            self.token,
            self.connect_timeout,
            self.tls.clone(),
        )
        .await
        .map(|socket| DataConn::WebSocket(Box::new(socket)))
    }

    async fn dial_raw(&self) -> Result<RawStream, TunnelError> {
        let url = with_token(&self.data_url, self.token);
        let headers = http::HeaderMap::from_iter([(AUTHORIZATION, bearer(self.key)?)]);
        match tokio::time::timeout(
            self.connect_timeout,
            raw_stream::dial(&url, headers, self.tls.as_ref()),
        )
        .await
        {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => Err(TunnelError::RawDial(e)),
            Err(_) => Err(TunnelError::DialTimeout),
        }
    }
}

/// `data_url` with the one-time stream `token` in its query, as both kinds of data connection
/// present it.
fn with_token(data_url: &Url, token: &str) -> Url {
    let mut url = data_url.clone();
    url.query_pairs_mut().append_pair(TOKEN_PARAM, token);
    url
}

/// The agent key as an `Authorization` value, marked sensitive (never logged).
fn bearer(key: &str) -> Result<HeaderValue, TunnelError> {
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| TunnelError::BadKey)?;
    auth.set_sensitive(true);
    Ok(auth)
}

/// Dials a data connection at `data_url` with the agent `key` and the one-time stream `token`.
pub(crate) async fn dial(
    data_url: &Url,
    key: &str,
    token: &str,
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<DataSocket, TunnelError> {
    let mut request = with_token(data_url, token)
        .as_str()
        .into_client_request()
        .map_err(TunnelError::DataRequest)?;
    request.headers_mut().insert(AUTHORIZATION, bearer(key)?);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(STREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let handshake =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(TunnelError::Dial(e)),
        Err(_) => Err(TunnelError::DialTimeout),
    }
}

/// Copies until one side ends; returns why.
async fn splice(data: DataSocket, vnc: VncStream, stop: impl Future<Output = ()>) -> String {
    let (mut data_tx, mut data_rx) = data.split();
    let (mut vnc_rx, mut vnc_tx) = vnc.into_split();
    let (code, reason) = tokio::select! {
        () = stop => (close_code::GOING_AWAY, "stream closed by the agent".to_owned()),
        r = vnc_to_data(&mut vnc_rx, &mut data_tx) => (close_code::NORMAL, r),
        r = data_to_vnc(&mut data_rx, &mut vnc_tx) => (close_code::NORMAL, r),
    };
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.clone().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        data_tx.send(Message::Close(Some(frame))),
    )
    .await;
    let _ = vnc_tx.shutdown().await;
    reason
}

/// Copies between a raw data connection and the VNC server until one side ends; returns why.
/// The data connection's end (its write side shut down) is what tells the control plane.
async fn splice_raw(data: RawStream, vnc: VncStream, stop: impl Future<Output = ()>) -> String {
    let (mut data_rx, mut data_tx) = tokio::io::split(data);
    let (mut vnc_rx, mut vnc_tx) = vnc.into_split();
    let reason = tokio::select! {
        () = stop => "stream closed by the agent".to_owned(),
        r = vnc_to_raw(&mut vnc_rx, &mut data_tx) => r,
        r = raw_to_vnc(&mut data_rx, &mut vnc_tx) => r,
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), data_tx.shutdown()).await;
    let _ = vnc_tx.shutdown().await;
    reason
}

/// VNC server → raw data connection, through one buffer that grows while the server has more
/// to send and shrinks when it is quiet.
async fn vnc_to_raw(vnc: &mut vnc::ReadHalf, data: &mut (impl AsyncWrite + Unpin)) -> String {
    let mut buf = vec![0; FIRST_READ_BYTES];
    loop {
        let n = match vnc.read(&mut buf).await {
            Ok(0) => return "the VNC server closed the connection".to_owned(),
            Ok(n) => n,
            Err(e) => return format!("reading from the VNC server: {e}"),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write_flushed(data, &buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "the data connection was lost".to_owned(),
            Err(_) => return "the control plane stopped reading the stream".to_owned(),
        }
        let next = next_read_size(buf.len(), n);
        if next != buf.len() {
            buf = vec![0; next];
        }
    }
}

/// Raw data connection → VNC server.
async fn raw_to_vnc(data: &mut (impl AsyncRead + Unpin), vnc: &mut vnc::WriteHalf) -> String {
    let mut buf = vec![0; STREAM_READ_BUFFER_BYTES];
    loop {
        let n = match data.read(&mut buf).await {
            Ok(0) => return "the viewer left".to_owned(),
            Ok(n) => n,
            Err(e) => return format!("the data connection failed: {e}"),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, vnc.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("writing to the VNC server: {e}"),
            Err(_) => return "the VNC server stopped reading".to_owned(),
        }
    }
}

async fn vnc_to_data(
    vnc: &mut vnc::ReadHalf,
    data: &mut (impl SinkExt<Message> + Unpin),
) -> String {
    let mut size = FIRST_READ_BYTES;
    loop {
        // A fresh buffer per frame, read into without zeroing and handed over without a copy.
        let mut buf = Vec::with_capacity(size);
        let n = match vnc.read_buf(&mut buf).await {
            Ok(0) => return "the VNC server closed the connection".to_owned(),
            Ok(n) => n,
            Err(e) => return format!("reading from the VNC server: {e}"),
        };
        size = next_read_size(size, n);
        let frame = Message::binary(buf);
        match tokio::time::timeout(WRITE_TIMEOUT, data.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "the data connection was lost".to_owned(),
            Err(_) => return "the control plane stopped reading the stream".to_owned(),
        }
    }
}

async fn data_to_vnc(
    data: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    vnc: &mut vnc::WriteHalf,
) -> String {
    loop {
        let bytes = match data.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => return "the viewer left".to_owned(),
            Some(Ok(Message::Text(_))) => return "a text frame on a binary stream".to_owned(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return format!("the data connection failed: {e}"),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, vnc.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("writing to the VNC server: {e}"),
            Err(_) => return "the VNC server stopped reading".to_owned(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;
    use crate::runtime::{ProcessRuntime, ProcessRuntimeConfig};

    #[test]
    fn data_connections_go_where_the_control_connection_goes() {
        let runtime: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(
            std::env::temp_dir().join("unused-tunnel-test"),
        )));
        let (tx, _rx) = mpsc::channel(1);
        let tunnels = Tunnels::new(runtime, "k".into(), Duration::from_secs(1), None, tx);
        for (control, data) in [
            (
                "ws://h:1/api/v1/agents/connect",
                "ws://h:1/api/v1/agents/tunnel",
            ),
            (
                "wss://h/pre/api/v1/agents/connect",
                "wss://h/pre/api/v1/agents/tunnel",
            ),
        ] {
            let url = Url::parse(control).ok();
            if let Some(url) = url {
                tunnels.set_server(&url);
            }
            assert_eq!(lock(&tunnels.server).as_ref().map(Url::as_str), Some(data));
        }
    }

    #[tokio::test]
    async fn every_read_from_the_vnc_server_is_flushed_to_the_data_connection() -> anyhow::Result<()>
    {
        // A data connection that holds what is written until it is flushed, as a TLS session
        // may hold the last records of a write.
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut data = tokio::io::BufWriter::new(ours);
        let (vnc_side, mut server) = tokio::io::duplex(64 * 1024);
        let mut vnc: vnc::ReadHalf = Box::new(vnc_side);
        let copying = tokio::spawn(async move { vnc_to_raw(&mut vnc, &mut data).await });
        // The VNC server sends a little and then stays quiet (and connected).
        server.write_all(b"RFB 003.008\n").await?;
        let mut got = [0; 12];
        tokio::time::timeout(Duration::from_secs(10), theirs.read_exact(&mut got))
            .await
            .context("the bytes stayed in the data connection's buffer")??;
        assert_eq!(&got, b"RFB 003.008\n");
        copying.abort();
        Ok(())
    }

    /// Accepts connections on `listener` and hands each to `serve`, forever.
    fn serve_each<F, Fut>(listener: tokio::net::TcpListener, serve: F)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn));
            }
        });
    }

    #[tokio::test]
    async fn a_refused_raw_upgrade_falls_back_to_a_websocket_until_the_next_control_connection()
    -> anyhow::Result<()> {
        // The session's VNC server: an echo.
        let vnc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let vnc_address = vnc.local_addr()?.to_string();
        serve_each(vnc, |mut conn| async move {
            let (mut from, mut to) = conn.split();
            let _ = tokio::io::copy(&mut from, &mut to).await;
        });
        // The control plane's data endpoint, taking WebSockets and handing them to the test.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream_address = upstream.local_addr()?;
        let (accepted_tx, mut accepted) = mpsc::channel(4);
        serve_each(upstream, move |conn| {
            let accepted_tx = accepted_tx.clone();
            async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(conn).await {
                    let _ = accepted_tx.send(ws).await;
                }
            }
        });
        // In front of it, a proxy that passes only WebSocket upgrades and refuses any other,
        // as some load balancers do; it counts the raw upgrades it refused.
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy_address = proxy.local_addr()?;
        let refusals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = refusals.clone();
        serve_each(proxy, move |mut conn| {
            let counted = counted.clone();
            async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0];
                    if conn.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if !text.contains("upgrade: websocket") {
                    assert!(text.contains("upgrade: streamspace-stream/1"), "{text}");
                    counted.fetch_add(1, Ordering::SeqCst);
                    let refusal = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
                    let _ = conn.write_all(refusal).await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(upstream_address).await else {
                    return;
                };
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
            }
        });

        let refused = AtomicBool::new(false);
        for _ in 0..2 {
            let stream = Stream {
                data_url: Url::parse(&format!("ws://{proxy_address}/api/v1/agents/tunnel"))?,
                key: "k",
                token: "sst_t",
                vnc_address: &vnc_address,
                vnc_password: None,
                connect_timeout: Duration::from_secs(10),
                tls: None,
                raw_refused: &refused,
            };
            let control_plane = async {
                let mut ws = accepted.recv().await.context("no data WebSocket")?;
                ws.send(Message::binary(vec![1, 2, 3])).await?;
                let echoed = match ws.next().await {
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    other => anyhow::bail!("expected the echo, got {other:?}"),
                };
                ws.close(None).await?;
                anyhow::Ok(echoed)
            };
            let (ended, echoed) = tokio::join!(stream.carry(std::future::pending()), control_plane);
            assert_eq!(echoed?, [1, 2, 3], "the stream went through the WebSocket");
            assert_eq!(ended?, "the viewer left");
            assert!(refused.load(Ordering::SeqCst), "the refusal is remembered");
        }
        assert_eq!(
            refusals.load(Ordering::SeqCst),
            1,
            "the second stream did not ask for a raw stream again"
        );

        // A new control connection tries raw streams again.
        let (tx, _rx) = mpsc::channel(1);
        let tunnels = Tunnels::new(
            Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(
                std::env::temp_dir().join("unused-tunnel-test"),
            ))),
            "k".into(),
            Duration::from_secs(1),
            None,
            tx,
        );
        tunnels.raw_refused.store(true, Ordering::SeqCst);
        let control = Url::parse("ws://h:1/api/v1/agents/connect")?;
        tunnels.set_server(&control);
        assert!(!tunnels.raw_refused.load(Ordering::SeqCst));
        // Unless the operator said WebSockets only (`--websocket-streams`).
        tunnels.websockets_only();
        tunnels.set_server(&control);
        assert!(tunnels.raw_refused.load(Ordering::SeqCst));
        Ok(())
    }

    #[tokio::test]
    async fn a_stream_for_a_session_not_held_here_is_reported_as_tunnel_error() {
        let dir = std::env::temp_dir().join(format!("tunnel-test-{}", Uuid::now_v7()));
        let runtime: Arc<dyn Runtime> =
            Arc::new(ProcessRuntime::new(ProcessRuntimeConfig::new(dir)));
        let (tx, mut rx) = mpsc::channel(4);
        let tunnels = Tunnels::new(runtime, "k".into(), Duration::from_secs(1), None, tx);
        let open = TunnelOpen {
            tunnel_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            token: "sst_x".into(),
        };
        tunnels.open(open.clone());
        let reported = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        match reported {
            Ok(Some(AgentMessage::TunnelError {
                tunnel_id,
                session_id,
                error,
            })) => {
                assert_eq!((tunnel_id, session_id), (open.tunnel_id, open.session_id));
                assert!(error.contains("not running"), "{error}");
            }
            other => panic!("expected tunnel_error, got {other:?}"),
        }
        tunnels.shutdown().await;
        assert_eq!(tunnels.active(), 0, "the failed stream is forgotten");
    }
}
