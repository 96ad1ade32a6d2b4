//! `streamspace session connect ID`: waits for the session to be running (its VNC server
//! answers), then asks for a viewer token and prints the WebSocket URL to open.

use std::time::{Duration, Instant};

use streamspace_client::Client;
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
    loop {
        let session = api.get_session(id).await?;
        match session.state {
            SessionState::Running => break,
            SessionState::Failed => anyhow::bail!(
                "session {id} failed: {}",
                session
                    .error_message
                    .as_deref()
                    .unwrap_or("no reason given")
            ),
            SessionState::Terminated => anyhow::bail!("session {id} has ended"),
            SessionState::Hibernated => {
                anyhow::bail!(
                    "session {id} is hibernated; wake it first (`streamspace session wake {id}`)"
                )
            }
            _ if Instant::now() >= deadline => {
                anyhow::bail!(
                    "session {id} is still {} after {}",
                    session.state,
                    Shown(timeout)
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let info = api.connect_session(id).await?;
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        OutputFormat::Table => println!("{}", info.url),
    }
    Ok(())
}
