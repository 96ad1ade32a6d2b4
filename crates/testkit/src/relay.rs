//! A relay between a real agent and the control plane that stops the agent's side at a chosen
//! message: the agent connects to the relay as if it were the server, every message is passed
//! on both ways, and the first agent message that matches a test's predicate is passed on and
//! then nothing more from the agent is. The test is told at that moment (and can freeze or kill
//! the agent then), so "the server has seen the agent's ack but nothing after it" holds by
//! construction, however fast or slow the agent is.
//!
//! [`AgentRelay::cut_before`] instead drops the matching message and cuts that connection (both
//! sockets closed), so "the agent sent it, the server never got it" holds by construction too;
//! the agent reconnects through the relay, and later connections are relayed in full.
//!
//! Only text and binary messages are relayed; each side answers its own pings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, StreamExt};
use streamspace_proto::wire::{self, AgentMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A listening relay; dropped, it stops accepting (connections already relayed end with their
/// sockets).
pub struct AgentRelay {
    /// `http://127.0.0.1:PORT`: give it to the agent as its server.
    pub url: String,
    accept: JoinHandle<()>,
}

impl AgentRelay {
    /// Relays agent connections to `server_url` (`http://…`). The first agent message for which
    /// `hold_after` is true is passed on and sent to the returned channel; after it that
    /// connection's messages from the agent are dropped. Later connections are relayed in full.
    pub async fn start(
        server_url: &str,
        hold_after: impl Fn(&AgentMessage) -> bool + Send + Sync + 'static,
    ) -> anyhow::Result<(Self, mpsc::Receiver<AgentMessage>)> {
        Self::with_mode(server_url, Mode::HoldAfter, hold_after).await
    }

    /// Relays agent connections to `server_url`; the first agent message for which `cut_at` is
    /// true is not passed on but sent to the returned channel, and its connection is cut.
    pub async fn cut_before(
        server_url: &str,
        cut_at: impl Fn(&AgentMessage) -> bool + Send + Sync + 'static,
    ) -> anyhow::Result<(Self, mpsc::Receiver<AgentMessage>)> {
        Self::with_mode(server_url, Mode::CutBefore, cut_at).await
    }

    async fn with_mode(
        server_url: &str,
        mode: Mode,
        hold_after: impl Fn(&AgentMessage) -> bool + Send + Sync + 'static,
    ) -> anyhow::Result<(Self, mpsc::Receiver<AgentMessage>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server_ws = server_url.replacen("http", "ws", 1);
        let (tripped, seen) = mpsc::channel(1);
        let hold_after = Arc::new(hold_after);
        let done = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (server_ws, tripped) = (server_ws.clone(), tripped.clone());
                let (hold_after, done) = (hold_after.clone(), done.clone());
                tokio::spawn(async move {
                    let trip = Trip {
                        mode,
                        hold_after: &*hold_after,
                        done: &done,
                        tripped,
                    };
                    if let Err(e) = relay(socket, &server_ws, trip).await {
                        tracing::debug!(error = %e, "relay connection ended");
                    }
                });
            }
        });
        Ok((Self { url, accept }, seen))
    }
}

impl Drop for AgentRelay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the relay does at the matching message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Pass it on, then drop everything after it from the agent.
    HoldAfter,
    /// Drop it and cut the connection.
    CutBefore,
}

/// When a relay stops passing the agent's messages on, and whom it tells.
struct Trip<'a> {
    mode: Mode,
    hold_after: &'a (dyn Fn(&AgentMessage) -> bool + Send + Sync),
    /// Set once the relay has tripped (it trips once).
    done: &'a AtomicBool,
    tripped: mpsc::Sender<AgentMessage>,
}

impl Trip<'_> {
    /// Whether `message` is the one to hold after (true at most once per relay).
    fn trips_on(&self, message: &Message) -> Option<AgentMessage> {
        let Message::Text(text) = message else {
            return None;
        };
        let decoded = wire::decode_agent_message(text.as_str()).ok()?;
        ((self.hold_after)(&decoded) && !self.done.swap(true, Ordering::SeqCst)).then_some(decoded)
    }
}

async fn relay(socket: TcpStream, server_ws: &str, trip: Trip<'_>) -> anyhow::Result<()> {
    let mut path = String::new();
    let mut auth: Option<HeaderValue> = None;
    // The callback's signature is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let agent = tokio_tungstenite::accept_hdr_async(socket, |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        auth = req.headers().get("authorization").cloned();
        Ok(resp)
    })
    .await?;
    let mut request = format!("{server_ws}{path}").into_client_request()?;
    if let Some(auth) = auth {
        request.headers_mut().insert("authorization", auth);
    }
    let (server, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    let (mut to_agent, mut from_agent) = agent.split();
    let (mut to_server, mut from_server) = server.split();
    let upstream = async {
        while let Some(message) = from_agent.next().await {
            let message = message?;
            if !matches!(message, Message::Text(_) | Message::Binary(_)) {
                continue;
            }
            let matched = trip.trips_on(&message);
            if let (Some(m), Mode::CutBefore) = (&matched, trip.mode) {
                let _ = trip.tripped.send(m.clone()).await;
                return Ok(());
            }
            to_server.send(message).await?;
            if let Some(m) = matched {
                let _ = trip.tripped.send(m).await;
                return hold(&mut from_agent).await;
            }
        }
        anyhow::Ok(())
    };
    let downstream = async {
        while let Some(message) = from_server.next().await {
            let message = message?;
            if matches!(message, Message::Text(_) | Message::Binary(_)) {
                to_agent.send(message).await?;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = upstream => r,
        r = downstream => r,
    }
}

/// Reads and drops the agent's messages until its connection ends.
async fn hold<S>(from_agent: &mut S) -> anyhow::Result<()>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(message) = from_agent.next().await {
        message?;
    }
    Ok(())
}
