//! The loops of a registered connection against scripted socket halves, on paused time: any
//! failing half — a write error, a write that never finishes, a read error — ends the whole
//! connection, and a healthy one stays up until shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use async_trait::async_trait;
use futures_util::stream;
use streamspace_proto::api::Template;
use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::runtime::{Runtime, RuntimeError, SessionInfo};

/// The heartbeat interval the tests' `welcome` sets.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Far beyond any timer under test: a connection still up by then is a hang, not a pass.
const HANG: Duration = Duration::from_secs(3600);

/// A runtime that holds no sessions, so heartbeats have nothing to report.
struct IdleRuntime;

#[async_trait]
impl Runtime for IdleRuntime {
    fn platform(&self) -> &'static str {
        "idle"
    }
    async fn start(&self, id: Uuid, _t: &Template) -> Result<SessionInfo, RuntimeError> {
        Err(RuntimeError::UnknownSession(id))
    }
    async fn stop(&self, _id: Uuid) -> Result<(), RuntimeError> {
        Ok(())
    }
    async fn hibernate(&self, id: Uuid) -> Result<SessionInfo, RuntimeError> {
        Err(RuntimeError::UnknownSession(id))
    }
    async fn wake(&self, id: Uuid) -> Result<SessionInfo, RuntimeError> {
        Err(RuntimeError::UnknownSession(id))
    }
    async fn status(&self, _id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        Ok(None)
    }
    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(Vec::new())
    }
}

/// How a [`ScriptedSink`] treats each frame.
enum SinkMode {
    /// Takes every frame at once.
    Accept,
    /// Fails every frame, like a socket whose peer went away.
    Fail,
    /// Never becomes ready, like a socket whose peer stopped reading.
    Stall,
}

/// The writing half of a socket that behaves as told and records what it took.
struct ScriptedSink {
    mode: SinkMode,
    sent: Vec<Message>,
}

impl ScriptedSink {
    fn new(mode: SinkMode) -> Self {
        Self {
            mode,
            sent: Vec::new(),
        }
    }

    /// The agent messages written so far (close frames left out).
    fn messages(&self) -> Vec<AgentMessage> {
        self.sent
            .iter()
            .filter_map(|m| match m {
                Message::Text(text) => Some(
                    wire::decode_agent_message(text.as_str())
                        .expect("the agent writes only valid messages"),
                ),
                _ => None,
            })
            .collect()
    }
}

impl Sink<Message> for ScriptedSink {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        match self.mode {
            SinkMode::Accept => Poll::Ready(Ok(())),
            SinkMode::Fail => Poll::Ready(Err(WsError::Io(io::ErrorKind::BrokenPipe.into()))),
            // Never woken: only the writer's own timer can end this wait.
            SinkMode::Stall => Poll::Pending,
        }
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        self.sent.push(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }
}

/// A reading half that never yields: a healthy connection on which the server says nothing.
fn idle_reader() -> impl FrameStream {
    stream::pending()
}

/// A reading half that fails after `after`.
fn failing_reader(after: Duration) -> impl FrameStream {
    Box::pin(stream::once(async move {
        tokio::time::sleep(after).await;
        Err(WsError::Io(io::ErrorKind::ConnectionReset.into()))
    }))
}

/// What a registered connection shares with the agent, with the outbox's receiving end.
struct Harness {
    _state_dir: TempDir,
    config: AgentConfig,
    executor: Arc<Executor>,
    outbox_tx: mpsc::Sender<AgentMessage>,
    outbox_rx: mpsc::Receiver<AgentMessage>,
    shutdown: CancellationToken,
}

impl Harness {
    fn new(write_timeout: Option<Duration>) -> Self {
        let state_dir = TempDir::new().expect("a temporary state directory");
        let mut config = AgentConfig::new(vec![], "agent-1", "key", state_dir.path());
        config.write_timeout = write_timeout;
        let (outbox_tx, outbox_rx) = mpsc::channel(16);
        let executor = Executor::start(
            Arc::new(IdleRuntime),
            state_dir.path(),
            config.max_sessions,
            1,
            10,
            outbox_tx.clone(),
        )
        .expect("the executor starts in a fresh state directory");
        Self {
            _state_dir: state_dir,
            config,
            executor,
            outbox_tx,
            outbox_rx,
            shutdown: CancellationToken::new(),
        }
    }

    async fn enqueue_heartbeat(&self) {
        let message = AgentMessage::Heartbeat {
            active_sessions: 0,
            capacity: Capacity { max_sessions: 1 },
        };
        self.outbox_tx
            .send(message)
            .await
            .expect("the outbox is open");
    }

    /// Serves until the connection ends; how it ended and how long that took.
    async fn serve(
        &mut self,
        sink: &mut impl FrameSink,
        stream: &mut impl FrameStream,
    ) -> (Ended, Duration) {
        let tunnels = crate::tunnel::Tunnels::new(
            self.executor.runtime().clone(),
            "key".into(),
            Duration::from_secs(1),
            None,
            self.outbox_tx.clone(),
        );
        let ctx = Context {
            config: &self.config,
            executor: &self.executor,
            outbox: &self.outbox_tx,
            tunnels: &tunnels,
            tls: None,
        };
        let start = Instant::now();
        let serving = serve_registered(
            &ctx,
            sink,
            stream,
            &mut self.outbox_rx,
            &self.shutdown,
            HEARTBEAT,
        );
        let ended = tokio::time::timeout(HANG, serving)
            .await
            .expect("the connection should have ended");
        (ended, start.elapsed())
    }
}

fn lost_reason(ended: Ended) -> String {
    match ended {
        Ended::Lost(reason) => reason,
        other => panic!("expected a lost connection, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_ends_the_connection_while_the_reader_idles() {
    let mut h = Harness::new(None);
    h.enqueue_heartbeat().await;
    let mut sink = ScriptedSink::new(SinkMode::Fail);

    let (ended, took) = h.serve(&mut sink, &mut idle_reader()).await;

    let reason = lost_reason(ended);
    assert!(reason.starts_with("writing to the server"), "{reason}");
    assert_eq!(
        took,
        Duration::ZERO,
        "ended at the failed write, not on a timer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_that_never_finishes_ends_the_connection_after_a_heartbeat_interval() {
    let mut h = Harness::new(None);
    let mut sink = ScriptedSink::new(SinkMode::Stall);

    let (ended, took) = h.serve(&mut sink, &mut idle_reader()).await;

    // The first heartbeat is written at one interval and given one more to finish.
    let reason = lost_reason(ended);
    assert!(reason.contains("did not finish within 10s"), "{reason}");
    assert_eq!(took, 2 * HEARTBEAT);
    assert!(sink.sent.is_empty(), "{:?}", sink.sent);
}

#[tokio::test(start_paused = true)]
async fn a_configured_write_timeout_overrides_the_heartbeat_interval() {
    let mut h = Harness::new(Some(Duration::from_secs(3)));
    h.enqueue_heartbeat().await;
    let mut sink = ScriptedSink::new(SinkMode::Stall);

    let (ended, took) = h.serve(&mut sink, &mut idle_reader()).await;

    let reason = lost_reason(ended);
    assert!(reason.contains("did not finish within 3s"), "{reason}");
    assert_eq!(took, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_read_error_ends_the_connection_while_the_writer_is_healthy() {
    let mut h = Harness::new(None);
    let mut sink = ScriptedSink::new(SinkMode::Accept);
    let fails_at = HEARTBEAT + Duration::from_secs(5);

    let (ended, took) = h.serve(&mut sink, &mut failing_reader(fails_at)).await;

    let reason = lost_reason(ended);
    assert!(reason.starts_with("reading from the server"), "{reason}");
    assert_eq!(took, fails_at);
    let written = sink.messages();
    assert!(
        matches!(written.as_slice(), [AgentMessage::Heartbeat { .. }]),
        "the writer kept working until the reader failed: {written:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_connection_stays_up_across_idle_intervals_until_shutdown() {
    let mut h = Harness::new(None);
    let mut sink = ScriptedSink::new(SinkMode::Accept);
    let shutdown = h.shutdown.clone();
    let up_for = 3 * HEARTBEAT + Duration::from_secs(5);
    tokio::spawn(async move {
        tokio::time::sleep(up_for).await;
        shutdown.cancel();
    });

    let (ended, took) = h.serve(&mut sink, &mut idle_reader()).await;

    assert!(matches!(ended, Ended::Cancelled), "{ended:?}");
    assert_eq!(took, up_for);
    assert_eq!(sink.messages().len(), 3, "one heartbeat per interval");
    assert!(
        matches!(sink.sent.last(), Some(Message::Close(Some(_)))),
        "said goodbye: {:?}",
        sink.sent.last()
    );
}

/// A reading half that yields `texts` as text frames, then stays open and silent.
fn scripted_reader(texts: Vec<String>) -> impl FrameStream {
    stream::iter(texts.into_iter().map(|t| Ok(Message::text(t)))).chain(stream::pending())
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_command_fails_alone_and_the_connection_stays_up() {
    let mut h = Harness::new(None);
    let mut sink = ScriptedSink::new(SinkMode::Accept);
    let unknown_action = Uuid::now_v7();
    let bad_payload_field = Uuid::now_v7();
    let mut reader = scripted_reader(vec![
        format!(
            r#"{{"v":1,"type":"command","command_id":"{unknown_action}","action":"teleport","attempt":1}}"#
        ),
        "{not json".to_owned(),
        r#"{"v":1,"type":"hologram"}"#.to_owned(),
        format!(
            r#"{{"v":1,"type":"command","command_id":"{bad_payload_field}","action":"stop_session","attempt":"one"}}"#
        ),
        wire::encode(&ServerMessage::Ping),
    ]);
    let shutdown = h.shutdown.clone();
    let up_for = HEARTBEAT / 2;
    tokio::spawn(async move {
        tokio::time::sleep(up_for).await;
        shutdown.cancel();
    });

    let (ended, took) = h.serve(&mut sink, &mut reader).await;

    assert!(
        matches!(ended, Ended::Cancelled),
        "the connection ended on an unreadable message: {ended:?}"
    );
    assert_eq!(took, up_for);
    let written = sink.messages();
    let failed: Vec<_> = written
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Failed { command_id, error } => Some((*command_id, error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [unknown_action, bad_payload_field],
        "each unreadable command is failed once, nothing else: {written:?}"
    );
    assert!(
        failed[0]
            .1
            .starts_with("the agent could not read this command: malformed message"),
        "{}",
        failed[0].1
    );
    assert!(
        matches!(written.last(), Some(AgentMessage::Heartbeat { .. })),
        "the ping after them was answered: {written:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_limit_or_of_another_version_still_ends_the_connection() {
    let too_big = format!(
        r#"{{"v":1,"type":"shutdown","reason":"{}"}}"#,
        "x".repeat(MAX_MESSAGE_BYTES)
    );
    let other_version = r#"{"v":2,"type":"ping"}"#.to_owned();
    for (text, code) in [
        (too_big, close_code::TOO_BIG),
        (other_version, close_code::INVALID_MESSAGE),
    ] {
        let mut h = Harness::new(None);
        let mut sink = ScriptedSink::new(SinkMode::Accept);

        let (ended, _) = h.serve(&mut sink, &mut scripted_reader(vec![text])).await;

        match ended {
            Ended::BadMessage(e) => assert_eq!(e.close_code(), code, "{e}"),
            other => panic!("expected a bad message to end the connection, got {other:?}"),
        }
        assert!(
            matches!(sink.sent.last(), Some(Message::Close(Some(f))) if u16::from(f.code) == code),
            "closed with {code}: {:?}",
            sink.sent.last()
        );
    }
}
