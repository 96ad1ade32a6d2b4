//! The agent's memory of recently finished commands, kept on disk.
//!
//! The control plane delivers commands at least once: a command whose `complete` was lost with a
//! dropped connection is sent again, possibly to an agent process that restarted meanwhile. The
//! log answers such a duplicate with the earlier outcome instead of running the action twice.
//!
//! It is a JSON-lines file (`commands.jsonl`): one line appended per finished command, cheap to
//! write. Only the last `capacity` commands are remembered; when the file holds twice that many
//! lines it is rewritten with just those (atomically, by rename). A line cut short by a crash is
//! skipped with a warning when the log is read back. Lines are not fsynced: the log survives the
//! agent being killed, and after a power loss the idempotent actions still keep the effect once.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Complete { result: Value },
    Failed { error: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    command_id: Uuid,
    #[serde(flatten)]
    outcome: Outcome,
    finished_at: DateTime<Utc>,
}

/// A bounded, persisted map from command id to outcome.
#[derive(Debug)]
pub struct CommandLog {
    path: PathBuf,
    capacity: usize,
    order: VecDeque<Uuid>,
    entries: HashMap<Uuid, Entry>,
    lines_in_file: usize,
}

impl CommandLog {
    /// Opens (or starts) the log at `path`, remembering at most `capacity` commands.
    pub fn open(path: PathBuf, capacity: usize) -> std::io::Result<Self> {
        let mut log = Self {
            path,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            entries: HashMap::new(),
            lines_in_file: 0,
        };
        let text = match std::fs::read_to_string(&log.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            log.lines_in_file += 1;
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => log.remember(entry),
                Err(e) => tracing::warn!(
                    path = %log.path.display(), line = n + 1, error = %e,
                    "skipping an unreadable line of the command log"
                ),
            }
        }
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The outcome of `command_id`, if it finished recently.
    pub fn get(&self, command_id: Uuid) -> Option<&Outcome> {
        self.entries.get(&command_id).map(|e| &e.outcome)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers how `command_id` ended, on disk first.
    pub fn record(&mut self, command_id: Uuid, outcome: Outcome) -> std::io::Result<()> {
        let entry = Entry {
            command_id,
            outcome,
            finished_at: Utc::now(),
        };
        let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        self.lines_in_file += 1;
        self.remember(entry);
        if self.lines_in_file > 2 * self.capacity {
            self.compact()?;
        }
        Ok(())
    }

    fn remember(&mut self, entry: Entry) {
        if self
            .entries
            .insert(entry.command_id, entry.clone())
            .is_none()
        {
            self.order.push_back(entry.command_id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn compact(&mut self) -> std::io::Result<()> {
        let mut text = String::new();
        for id in &self.order {
            if let Some(entry) = self.entries.get(id) {
                text.push_str(&serde_json::to_string(entry).map_err(std::io::Error::other)?);
                text.push('\n');
            }
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        self.lines_in_file = self.order.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complete(n: u64) -> Outcome {
        Outcome::Complete {
            result: json!({ "n": n }),
        }
    }

    #[test]
    fn outcomes_survive_reopening() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("commands.jsonl");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut log = CommandLog::open(path.clone(), 10)?;
        log.record(a, complete(1))?;
        log.record(
            b,
            Outcome::Failed {
                error: "boom".into(),
            },
        )?;
        let log = CommandLog::open(path, 10)?;
        assert_eq!(log.get(a), Some(&complete(1)));
        assert_eq!(
            log.get(b),
            Some(&Outcome::Failed {
                error: "boom".into()
            })
        );
        Ok(())
    }

    #[test]
    fn remembers_only_the_most_recent_and_keeps_the_file_small() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("commands.jsonl");
        let mut log = CommandLog::open(path.clone(), 3)?;
        let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
        for (n, id) in ids.iter().enumerate() {
            log.record(*id, complete(n as u64))?;
        }
        assert_eq!(log.len(), 3);
        assert!(log.get(ids[16]).is_none(), "old commands are forgotten");
        let lines = std::fs::read_to_string(&path)?.lines().count();
        assert!(lines <= 6, "the file is compacted, has {lines} lines");
        let reopened = CommandLog::open(path, 3)?;
        for id in &ids[17..] {
            assert!(
                reopened.get(*id).is_some(),
                "recent command {id} remembered"
            );
        }
        assert_eq!(reopened.len(), 3);
        Ok(())
    }

    #[test]
    fn a_torn_last_line_is_skipped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("commands.jsonl");
        let id = Uuid::now_v7();
        CommandLog::open(path.clone(), 10)?.record(id, complete(7))?;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(br#"{"command_id":"0190"#)?;
        let log = CommandLog::open(path, 10)?;
        assert_eq!(log.get(id), Some(&complete(7)));
        assert_eq!(log.len(), 1);
        Ok(())
    }
}
