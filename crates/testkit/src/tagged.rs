//! Finding and killing every process a test started, including grandchildren that outlived
//! their parent (sessions deliberately survive an agent's death).
//!
//! A test sets a unique `STREAMSPACE_TEST_TAG` in the environment of the processes it spawns;
//! everything they start inherits it, so the test can find them all in `/proc` afterwards.

use std::fs;

/// Name of the environment variable that marks a test's processes.
pub const TAG_VAR: &str = "STREAMSPACE_TEST_TAG";

/// A fresh random tag.
pub fn new_tag() -> String {
    use rand::Rng;
    format!("t{:016x}", rand::rng().random::<u64>())
}

/// Pids of live processes whose environment carries `tag`, and their command lines.
pub fn processes_with_tag(tag: &str) -> Vec<(i32, String)> {
    let needle = format!("{TAG_VAR}={tag}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let cmdline = fs::read(entry.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            if !is_zombie(pid) {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

/// Command lines of tagged processes whose program name is `program` (e.g. `Xvnc`).
pub fn tagged_programs(tag: &str, program: &str) -> Vec<(i32, String)> {
    processes_with_tag(tag)
        .into_iter()
        .filter(|(_, cmd)| {
            cmd.split_whitespace()
                .next()
                .and_then(|argv0| argv0.rsplit('/').next())
                == Some(program)
        })
        .collect()
}

/// SIGKILLs every process carrying `tag`.
pub fn kill_tagged(tag: &str) {
    for (pid, _) in processes_with_tag(tag) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
