//! `streamspace session connect ID`: waits for the session to be running (its VNC server
//! answers), then asks for a viewer token and prints the WebSocket URL to open.

use std::time::{Duration, Instant};

use streamspace_client::{Client, WaitError};
use streamspace_proto::SessionState;
use uuid::Uuid;

use crate::cli::OutputFormat;
use crate::duration::Shown;

pub async fn connect(
    api: &Client,
    id: Uuid,
    timeout: Duration,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // Waiting cannot wake a hibernated session: say what to do instead.
    if api.get_session(id).await?.state == SessionState::Hibernated {
        anyhow::bail!("session {id} is hibernated; wake it first (`streamspace session wake {id}`)")
    }
    match api
        .wait_for_session(id, SessionState::Running, deadline)
        .await
    {
        Ok(_) => {}
        Err(WaitError::TimedOut { last, .. }) => {
            anyhow::bail!(
                "session {id} is still {} after {}",
                last.state,
                Shown(timeout)
            )
        }
        // "failed: <reason>" or "has ended", or why the control plane could not be asked.
        Err(e) => return Err(e.into()),
    }
    let info = api.connect_session(id).await?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        OutputFormat::Table => println!("{}", crate::output::terminal_safe(&info.url)),
    }
    Ok(())
}
