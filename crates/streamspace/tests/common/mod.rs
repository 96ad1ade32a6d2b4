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

/// The clipboard probe's script: reads lines typed into its xterm; `copy TEXT` puts TEXT on the
/// session's clipboard (an OSC 52 escape, which xterm turns into the X CLIPBOARD selection,
/// which Xvnc sends its viewers as ServerCutText), `paste` writes `pasted:` and what the
/// session's clipboard holds (`xclip`) into `FILE`, and every other line goes there as typed.
const CLIPBOARD_SCRIPT: &str = r#"while IFS= read -r line; do
  case "$line" in
    paste) printf 'pasted:%s\n' "$(xclip -o -selection clipboard 2>/dev/null)" >> "$FILE" ;;
    copy\ *) printf '\033]52;c;%s\007' "$(printf %s "${line#copy }" | base64 -w0)"
             printf '%s\n' "$line" >> "$FILE" ;;
    *) printf '%s\n' "$line" >> "$FILE" ;;
  esac
done"#;

/// Makes the template `name`: an xterm at the top left of the desktop running the clipboard
/// probe ([`CLIPBOARD_SCRIPT`]) into `file`, under `rules`.
pub async fn clipboard_template(
    api: &Client,
    name: &str,
    file: &std::path::Path,
    rules: streamspace_proto::api::SessionRules,
) -> anyhow::Result<()> {
    let script = CLIPBOARD_SCRIPT.replace("\"$FILE\"", &format!("'{}'", file.display()));
    api.create_template(&streamspace_proto::api::CreateTemplate {
        name: name.into(),
        command: [
            "xterm",
            "-xrm",
            "XTerm*allowWindowOps: true",
            "-geometry",
            "80x24+0+0",
            "-e",
            "sh",
            "-c",
            &script,
        ]
        .map(str::to_owned)
        .to_vec(),
        rules,
        ..Default::default()
    })
    .await?;
    Ok(())
}
