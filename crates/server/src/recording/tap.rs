//! The recording's two halves: the [`Tap`] the splice feeds, and the writer task that stores
//! what it is fed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamspace_proto::api::Recording;
use streamspace_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use super::storage::RecordingWriter;
use super::{Strictness, Viewing};
use streamspace_proto::recording::{self as format, Event, Record};

/// Most chunks queued for the writer.
const QUEUE: usize = 256;
/// Most bytes queued for the writer (a chunk larger than this waits for an empty queue).
const BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// The recording could not take a chunk of a viewing that must be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the recording of this viewing failed, and viewings of this session must be recorded")]
pub(crate) struct RecordingFailed;

struct Item {
    record: Record,
    _budget: Option<OwnedSemaphorePermit>,
}

pub(super) struct Setup {
    pub store: Arc<dyn Store>,
    pub recording: Recording,
    pub viewing: Viewing,
    pub strictness: Strictness,
    pub wait: Duration,
}

/// Where the splice hands the chunks it forwards to the viewer.
pub(crate) struct Tap {
    /// `None` once a lossy recording lost a chunk: nothing more is queued.
    tx: Option<mpsc::Sender<Item>>,
    budget: Arc<Semaphore>,
    start: Instant,
    strictness: Strictness,
    wait: Duration,
    lost: Arc<AtomicBool>,
}

/// Queues the opening events and starts the writer.
pub(super) fn start(setup: Setup, writer: Box<dyn RecordingWriter>, tasks: &TaskTracker) -> Tap {
    let (tx, rx) = mpsc::channel(QUEUE);
    let lost = Arc::new(AtomicBool::new(false));
    let opening = [
        Event::Started {
            recording_id: setup.recording.id,
            session_id: setup.recording.session_id,
            started_at: setup.recording.started_at,
        },
        Event::Connected {
            user_id: setup.viewing.viewer_id,
            user: setup.viewing.viewer.clone(),
            mode: setup.viewing.mode.to_owned(),
        },
    ];
    for event in opening {
        let _ = tx.try_send(Item {
            record: Record::Event { at_ms: 0, event },
            _budget: None,
        });
    }
    tasks.spawn(write(
        setup.store,
        setup.recording.id,
        writer,
        rx,
        lost.clone(),
    ));
    Tap {
        tx: Some(tx),
        budget: Arc::new(Semaphore::new(BUDGET_BYTES)),
        start: Instant::now(),
        strictness: setup.strictness,
        wait: setup.wait,
        lost,
    }
}

impl Tap {
    fn at_ms(&self) -> u32 {
        u32::try_from(self.start.elapsed().as_millis()).unwrap_or(u32::MAX)
    }

    /// Records a chunk about to be sent to the viewer. Only a required recording fails.
    pub(crate) async fn record(&mut self, bytes: &Bytes) -> Result<(), RecordingFailed> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let cost = u32::try_from(bytes.len().clamp(1, BUDGET_BYTES)).unwrap_or(u32::MAX);
        let record = Record::Data {
            at_ms: self.at_ms(),
            bytes: bytes.clone(),
        };
        match self.strictness {
            Strictness::Required => {
                let queued = tokio::time::timeout(self.wait, async {
                    let permit = self.budget.clone().acquire_many_owned(cost).await.ok()?;
                    tx.send(Item {
                        record,
                        _budget: Some(permit),
                    })
                    .await
                    .ok()
                })
                .await;
                match queued {
                    Ok(Some(())) => Ok(()),
                    _ => {
                        self.tx = None;
                        Err(RecordingFailed)
                    }
                }
            }
            Strictness::Lossy => {
                let queued = match self.budget.clone().try_acquire_many_owned(cost) {
                    Ok(permit) => tx
                        .try_send(Item {
                            record,
                            _budget: Some(permit),
                        })
                        .is_ok(),
                    Err(_) => false,
                };
                if !queued {
                    tracing::warn!("the recording store fell behind: this recording stops here");
                    self.lost.store(true, Ordering::Release);
                    self.tx = None;
                }
                Ok(())
            }
        }
    }

    /// The viewing ended (`reason`); the writer finishes the recording.
    pub(crate) async fn finish(mut self, reason: &str) {
        let at_ms = self.at_ms();
        if let Some(tx) = self.tx.take() {
            let item = Item {
                record: Record::Event {
                    at_ms,
                    event: Event::Ended {
                        reason: reason.to_owned(),
                    },
                },
                _budget: None,
            };
            let _ = tokio::time::timeout(self.wait, tx.send(item)).await;
        }
    }
}

/// Stores what the tap queues until it is dropped, then finishes the recording and its row.
async fn write(
    store: Arc<dyn Store>,
    id: uuid::Uuid,
    mut out: Box<dyn RecordingWriter>,
    mut rx: mpsc::Receiver<Item>,
    lost: Arc<AtomicBool>,
) {
    let mut bytes = 0u64;
    let mut ended = false;
    let mut result = out.write(&format::header()).await;
    bytes += format::header().len() as u64;
    while result.is_ok() {
        let Some(item) = rx.recv().await else { break };
        ended |= matches!(
            item.record,
            Record::Event {
                event: Event::Ended { .. },
                ..
            }
        );
        result = write_record(out.as_mut(), &item.record).await;
        bytes += record_len(&item.record);
    }
    // A failed store refuses every later chunk at once (a required viewing then ends).
    drop(rx);
    let lost = lost.load(Ordering::Acquire);
    if lost && result.is_ok() {
        let gap = Record::Event {
            at_ms: u32::MAX,
            event: Event::Gap {
                reason: "the recording store did not keep up; the viewing went on unrecorded"
                    .to_owned(),
            },
        };
        result = write_record(out.as_mut(), &gap).await;
        bytes += record_len(&gap);
    }
    let result = match result {
        Ok(()) => out.finish().await,
        Err(e) => Err(e),
    };
    let complete = result.is_ok() && ended && !lost;
    if let Err(e) = &result {
        tracing::warn!(recording_id = %id, error = %e, "a recording could not be stored");
        bytes = 0;
    }
    if let Err(e) = store.finish_recording(id, bytes, complete).await {
        tracing::warn!(recording_id = %id, error = %e, "recording the end of a recording failed");
    }
    tracing::info!(recording_id = %id, bytes, complete, "recording finished");
}

async fn write_record(
    out: &mut dyn RecordingWriter,
    record: &Record,
) -> Result<(), super::storage::StorageError> {
    match record {
        Record::Data { at_ms, bytes } => {
            out.write(&format::record_header(
                format::KIND_DATA,
                *at_ms,
                bytes.len(),
            ))
            .await?;
            out.write(bytes).await
        }
        Record::Event { .. } => out.write(&record.encode()).await,
    }
}

fn record_len(record: &Record) -> u64 {
    match record {
        Record::Data { bytes, .. } => (format::RECORD_HEADER + bytes.len()) as u64,
        Record::Event { .. } => record.encode().len() as u64,
    }
}
