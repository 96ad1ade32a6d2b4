//! What the end-to-end tests share. Starting `streamspace` processes lives in the testkit
//! ([`streamspace_testkit::harness`]); waiting for a session state is the client's
//! `Client::wait_for_session`. This module only names this crate's binary.

#![allow(dead_code)]

use streamspace_client::Client;
use streamspace_proto::api::Command as ApiCommand;
// Not every test binary uses every one of these.
#[allow(unused_imports)]
pub use streamspace_testkit::harness::{
    ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready,
};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_streamspace");

/// A harness that starts this crate's `streamspace` binary.
pub fn harness() -> anyhow::Result<Harness> {
    Harness::new(BIN)
}

/// The session's commands, oldest first.
pub async fn commands_for(api: &Client, session: Uuid) -> anyhow::Result<Vec<ApiCommand>> {
    let mut commands = api
        .list_commands(&streamspace_proto::api::CommandFilter {
            session_id: Some(session),
            ..Default::default()
        })
        .await?;
    commands.reverse();
    Ok(commands)
}
