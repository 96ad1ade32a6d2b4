//! Reconciliation at agent start: what the engine holds for this agent becomes what the agent
//! reports in its first `register`.

use std::time::{SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use streamspace_proto::SessionState;

use super::{DockerRuntime, Runtime, RuntimeError, SessionInfo, engine, session_of};

/// Adopts running and paused containers, reports exited or dead ones as failed (and removes
/// them), and removes created-but-never-started containers older than the grace period, as
/// well as containers whose session label is unreadable.
pub(super) async fn run(rt: &DockerRuntime) -> Result<Vec<SessionInfo>, RuntimeError> {
    let mut outcome = Vec::new();
    for summary in rt.own_containers().await? {
        let Some(session_id) = session_of(summary.labels.as_ref()) else {
            if is_past_grace(rt, &summary) {
                remove_by_id(rt, &summary).await?;
            }
            continue;
        };
        match summary.state {
            Some(ContainerSummaryStateEnum::CREATED) => {
                if is_past_grace(rt, &summary) {
                    tracing::info!(session_id = %session_id, "removing a container whose start was interrupted");
                    rt.remove(session_id).await?;
                }
            }
            _ => {
                let Some(info) = rt.status(session_id).await? else {
                    continue;
                };
                if info.state == SessionState::Failed {
                    tracing::warn!(session_id = %session_id, reason = ?info.message, "session container died while the agent was away");
                    rt.remove(session_id).await?;
                } else {
                    tracing::info!(session_id = %session_id, state = ?info.state, "adopted session container");
                }
                outcome.push(info);
            }
        }
    }
    Ok(outcome)
}

fn is_past_grace(rt: &DockerRuntime, summary: &ContainerSummary) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let created = summary
        .created
        .and_then(|c| u64::try_from(c).ok())
        .unwrap_or(now);
    now.saturating_sub(created) >= rt.config.orphan_grace.as_secs()
}

async fn remove_by_id(rt: &DockerRuntime, summary: &ContainerSummary) -> Result<(), RuntimeError> {
    let Some(id) = summary.id.as_deref() else {
        return Ok(());
    };
    tracing::warn!(
        container = id,
        "removing an unreadable session container of this agent"
    );
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    rt.docker
        .remove_container(id, Some(options))
        .await
        .map_err(|e| engine("removing an orphaned container", e))
}
