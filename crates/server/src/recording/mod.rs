//! Recording of viewings: what one viewer of a session was shown — the server→viewer RFB byte
//! stream from the version string on, each chunk timed — plus who connected, when and how, kept
//! for playback in the web UI.
//!
//! Nothing is decoded on the hot path. The splice hands each chunk it forwards to the viewer to
//! a [`Tap`] (a clone of the frame's bytes into a bounded queue, bounded by count and by
//! bytes), and a writer task per recording stores them in the recording format (`streamspace_proto::recording`) through the
//! configured [`storage`]. What happens when storage falls behind depends on why the viewing
//! is recorded:
//!
//! - asked for (`on_request`): the recording, never the viewer, loses. The first chunk that
//!   does not fit ends the recording there (a `gap` event) and marks it incomplete; the
//!   viewing goes on unrecorded.
//! - required (`always`): the viewing waits for the recording (up to the tunnel's send
//!   timeout) and, if storage still cannot take the chunk or has failed, ends (1011). A
//!   viewing under `always` is never shown unrecorded: that is the point of the policy, so it
//!   is the safer choice for compliance. The chunk is recorded before it is sent, so what was
//!   shown is always in the recording.
//!
//! The metadata (who, when, size, complete) is a row of `recordings` (`streamspace_store::
//! Recordings`); its creation is audited as the viewer's.

pub(crate) mod storage;
mod tap;

use std::sync::Arc;
use std::time::Duration;

use streamspace_store::{AuditEntry, NewRecording, Store};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub(crate) use storage::RecordingStorage;
use streamspace_proto::api::RecordingPolicy;
pub(crate) use tap::Tap;

/// How a recording treats storage that falls behind (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// The recording loses (`on_request`).
    Lossy,
    /// The viewing waits, then ends (`always`).
    Required,
}

/// Whether a viewing is recorded under `policy` when the viewer did (or did not) ask.
pub(crate) fn wanted(policy: RecordingPolicy, requested: bool) -> Option<Strictness> {
    match policy {
        RecordingPolicy::Off => None,
        RecordingPolicy::OnRequest => requested.then_some(Strictness::Lossy),
        RecordingPolicy::Always => Some(Strictness::Required),
    }
}

/// One viewing to record.
#[derive(Debug, Clone)]
pub(crate) struct Viewing {
    pub session_id: Uuid,
    /// The session's owner, who may read the recording.
    pub owner_id: Option<Uuid>,
    pub viewer_id: Uuid,
    pub viewer: String,
    /// `control` or `view_only`.
    pub mode: &'static str,
}

/// Starts recordings: one replica's store, recording storage and task tracker.
pub(crate) struct Recorder {
    pub store: Arc<dyn Store>,
    pub storage: Arc<dyn RecordingStorage>,
    pub tasks: TaskTracker,
    /// How long a required recording may hold a chunk up (the tunnel's send timeout).
    pub wait: Duration,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("store", &self.store.backend())
            .field("storage", &self.storage)
            .finish()
    }
}

impl Recorder {
    /// Creates the recording's row (audited as the viewer's) and its stored object, and starts
    /// its writer; the returned tap takes the viewing's chunks. Fails if either cannot be made.
    pub(crate) async fn start(
        &self,
        viewing: &Viewing,
        strictness: Strictness,
    ) -> Result<Tap, String> {
        let id = Uuid::now_v7();
        let key = storage::key(viewing.session_id, id);
        let audit = AuditEntry {
            actor: format!("user:{}", viewing.viewer),
            actor_id: Some(viewing.viewer_id),
            client_addr: None,
            action: "recording.create".to_owned(),
            target: id.to_string(),
            detail: serde_json::json!({
                "session_id": viewing.session_id,
                "mode": viewing.mode,
                "required": strictness == Strictness::Required,
            }),
        };
        let new = NewRecording {
            id,
            session_id: viewing.session_id,
            owner_id: viewing.owner_id,
            viewer_id: viewing.viewer_id,
            viewer: viewing.viewer.clone(),
            storage_key: key.clone(),
        };
        let recording = self
            .store
            .create_recording(&new, &audit)
            .await
            .map_err(|e| format!("storing the recording's metadata: {e}"))?;
        let writer = match self.storage.create(&key).await {
            Ok(writer) => writer,
            Err(e) => {
                let _ = self.store.finish_recording(id, 0, false).await;
                return Err(e.to_string());
            }
        };
        tracing::info!(recording_id = %id, session_id = %viewing.session_id, "recording a viewing");
        Ok(tap::start(
            tap::Setup {
                store: self.store.clone(),
                recording,
                viewing: viewing.clone(),
                strictness,
                wait: self.wait,
            },
            writer,
            &self.tasks,
        ))
    }
}
