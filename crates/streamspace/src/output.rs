//! Printing API objects: aligned tables for people, the API's own JSON for scripts.

use serde::Serialize;
use streamspace_proto::api::{
    Agent, AgentKey, ApiToken, AuditRecord, Command, EffectiveRules, Group, Recording, Session,
    SessionRules, Template, User,
};

use crate::cli::OutputFormat;

/// Something that can be shown as table rows.
pub trait Tabular: Serialize {
    fn headers() -> &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

/// Prints one object: the API's JSON, or a one-row table.
pub fn print_one<T: Tabular>(format: OutputFormat, item: &T) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(item)?),
        OutputFormat::Table => print_table(T::headers(), &[item.row()]),
    }
    Ok(())
}

/// Prints a list: a JSON array, or a table.
pub fn print_many<T: Tabular>(format: OutputFormat, items: &[T]) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(items)?),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Tabular::row).collect();
            print_table(T::headers(), &rows);
        }
    }
    Ok(())
}

/// Prints rows under headers, aligned (for tables that are not one object per row).
pub fn print_rows(headers: &[&str], rows: &[Vec<String>]) {
    print_table(headers, rows);
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(headers, rows));
}

/// `text` made safe to print on a terminal: control characters (escape sequences, carriage
/// returns, newlines, C1 controls) and the invisible characters that reorder or hide text
/// (bidirectional overrides, zero-width marks) are written as `\u{…}` escapes. Everything the
/// CLI prints that came from the server or an agent (names, messages, errors) goes through it,
/// so a template or session field cannot rewrite the operator's screen.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| terminal_safe(c).into_owned()).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Tabular for Session {
    fn headers() -> &'static [&'static str] {
        &["ID", "TEMPLATE", "AGENT", "STATE", "VNC", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.template.clone(),
            or_dash(self.agent_id.as_ref()),
            self.state.to_string(),
            or_dash(self.vnc_address.as_ref()),
            time(self.created_at),
        ]
    }
}

impl Tabular for streamspace_proto::transfer::FileEntry {
    fn headers() -> &'static [&'static str] {
        &["NAME", "KIND", "SIZE", "MODIFIED"]
    }
    fn row(&self) -> Vec<String> {
        let kind = match self.kind {
            streamspace_proto::transfer::FileKind::File => "file",
            streamspace_proto::transfer::FileKind::Directory => "directory",
        };
        vec![
            self.name.clone(),
            kind.to_owned(),
            self.size.to_string(),
            self.modified.map_or_else(|| "-".to_owned(), time),
        ]
    }
}

impl Tabular for Agent {
    fn headers() -> &'static [&'static str] {
        &[
            "AGENT",
            "PLATFORM",
            "STATUS",
            "SESSIONS",
            "REPLICA",
            "LAST HEARTBEAT",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.agent_id.clone(),
            self.platform.clone(),
            self.status.to_string(),
            format!("{}/{}", self.active_sessions, self.max_sessions),
            or_dash(self.replica_id.as_ref()),
            or_dash(self.last_heartbeat_at.map(time)),
        ]
    }
}

impl Tabular for Command {
    fn headers() -> &'static [&'static str] {
        &[
            "COMMAND", "ACTION", "AGENT", "SESSION", "STATUS", "ATTEMPTS", "CREATED", "ERROR",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.command_id.to_string(),
            self.action.to_string(),
            self.agent_id.clone(),
            or_dash(self.session_id),
            self.status.to_string(),
            self.attempts.to_string(),
            time(self.created_at),
            or_dash(self.error_message.as_ref()),
        ]
    }
}

impl Tabular for Recording {
    fn headers() -> &'static [&'static str] {
        &[
            "RECORDING",
            "VIEWER",
            "STARTED",
            "ENDED",
            "BYTES",
            "COMPLETE",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            terminal_safe(&self.viewer).into_owned(),
            time(self.started_at),
            self.ended_at.map(time).unwrap_or_else(|| "-".into()),
            self.bytes.to_string(),
            if self.complete { "yes" } else { "no" }.into(),
        ]
    }
}

impl Tabular for Template {
    fn headers() -> &'static [&'static str] {
        &["NAME", "COMMAND", "DESCRIPTION"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.command.join(" "),
            self.description.clone(),
        ]
    }
}

impl Tabular for AgentKey {
    fn headers() -> &'static [&'static str] {
        &["ID", "AGENT", "PREFIX", "CREATED", "LAST USED", "REVOKED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.agent_id.clone(),
            self.prefix.clone(),
            time(self.created_at),
            or_dash(self.last_used_at.map(time)),
            or_dash(self.revoked_at.map(time)),
        ]
    }
}

impl Tabular for User {
    fn headers() -> &'static [&'static str] {
        &[
            "USERNAME",
            "ROLE",
            "STATE",
            "GROUPS",
            "NAME",
            "LAST SIGN-IN",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.username.clone(),
            self.role.to_string(),
            if self.disabled { "disabled" } else { "enabled" }.into(),
            or_dash((!self.groups.is_empty()).then(|| self.groups.join(","))),
            or_dash((!self.display_name.is_empty()).then(|| self.display_name.clone())),
            or_dash(self.last_login_at.map(time)),
        ]
    }
}

impl Tabular for Group {
    fn headers() -> &'static [&'static str] {
        &["NAME", "MEMBERS", "DESCRIPTION"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            or_dash((!self.members.is_empty()).then(|| self.members.join(","))),
            self.description.clone(),
        ]
    }
}

impl Tabular for SessionRules {
    fn headers() -> &'static [&'static str] {
        &[
            "CLIPBOARD",
            "CLIPBOARD MAX",
            "FILE TRANSFER",
            "TRANSFER MAX",
            "RECORDING",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            or_dash(self.clipboard),
            or_dash(self.clipboard_max_bytes),
            or_dash(self.file_transfer),
            or_dash(self.transfer_max_bytes),
            or_dash(self.recording),
        ]
    }
}

impl Tabular for EffectiveRules {
    fn headers() -> &'static [&'static str] {
        SessionRules::headers()
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.clipboard.to_string(),
            self.clipboard_max_bytes.to_string(),
            self.file_transfer.to_string(),
            self.transfer_max_bytes.to_string(),
            self.recording.to_string(),
        ]
    }
}

impl Tabular for AuditRecord {
    fn headers() -> &'static [&'static str] {
        &["AT", "ACTOR", "ACTION", "TARGET", "FROM"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            time(self.at),
            self.actor.clone(),
            self.action.clone(),
            self.target.clone(),
            or_dash(self.client_addr.clone()),
        ]
    }
}

impl Tabular for streamspace_proto::api::Share {
    fn headers() -> &'static [&'static str] {
        &["ID", "MODE", "FOR", "EXPIRES", "REVOKED", "LINK"]
    }
    fn row(&self) -> Vec<String> {
        let named: Vec<String> = self
            .users
            .iter()
            .cloned()
            .chain(self.groups.iter().map(|g| format!("group:{g}")))
            .collect();
        vec![
            self.id.to_string(),
            self.mode.to_string(),
            if named.is_empty() {
                "anyone signed in".to_owned()
            } else {
                named.join(",")
            },
            time(self.expires_at),
            or_dash(self.revoked_at.map(time)),
            self.link.clone(),
        ]
    }
}

impl Tabular for streamspace_proto::api::Viewer {
    fn headers() -> &'static [&'static str] {
        &["ID", "USER", "MODE", "SHARE", "SINCE", "REPLICA"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.user.clone(),
            self.mode.to_string(),
            or_dash(self.share_id.map(|s| s.to_string())),
            time(self.since),
            self.replica.clone(),
        ]
    }
}

impl Tabular for ApiToken {
    fn headers() -> &'static [&'static str] {
        &[
            "ID",
            "NAME",
            "USER",
            "PREFIX",
            "CREATED",
            "LAST USED",
            "EXPIRES",
        ]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.user.clone(),
            self.prefix.clone(),
            time(self.created_at),
            or_dash(self.last_used_at.map(time)),
            or_dash(self.expires_at.map(time)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_sent_cannot_drive_the_terminal() {
        assert_eq!(terminal_safe("xterm"), "xterm");
        assert_eq!(terminal_safe("naïve 桌面"), "naïve 桌面");
        assert_eq!(
            terminal_safe("evil\u{1b}]0;owned\u{7}\r\nline"),
            "evil\\u{1b}]0;owned\\u{7}\\u{d}\\u{a}line"
        );
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{9b}31m", "C1 controls too");
        let table = render_table(&["NAME"], &[vec!["a\u{1b}[2Jb".to_owned()]]);
        assert!(!table.contains('\u{1b}'), "{table}");
    }

    #[test]
    fn columns_line_up() {
        let out = render_table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "y".into()],
                vec!["wide cell".into(), "z".into()],
            ],
        );
        assert_eq!(out, "A          LONGER\nx          y\nwide cell  z\n");
    }
}
