//! Finding and killing every process a test started, including grandchildren that outlived
//! their parent (sessions deliberately survive an agent's death).
//!
//! A test sets a unique `STREAMSPACE_TEST_TAG` in the environment of the processes it spawns;
//! what they start with their environment inherits it, so the test can find them all in `/proc`
//! afterwards. Sessions do not inherit it (an agent gives them a clean environment), so they are
//! found by their directory instead: a session's Xvnc names its socket, under the test's own
//! directory, on its command line, and the session's other processes share Xvnc's process group.

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

/// The processes of a test: those carrying `tag`, those whose command line names a path under
/// `dir` or the tag itself (a session of an agent whose id holds the tag, run as another user,
/// lives outside `dir`), and every member of a process group led by one of the latter. Pids and
/// command lines.
pub fn processes_of(tag: &str, dir: &std::path::Path) -> Vec<(i32, String)> {
    let mut found = processes_with_tag(tag);
    let dir = dir.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    // (pid, process group, command line) of every live process.
    let all: Vec<(i32, i32, String)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let pgid = fields.nth(1)?.parse::<i32>().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .trim()
                .to_owned();
            (state != "Z").then_some((pid, pgid, cmdline))
        })
        .collect();
    let leaders: Vec<i32> = all
        .iter()
        .filter(|(pid, pgid, cmdline)| {
            pid == pgid && (cmdline.contains(&dir) || cmdline.contains(tag))
        })
        .map(|(pid, _, _)| *pid)
        .collect();
    for (pid, pgid, cmdline) in all {
        let ours = cmdline.contains(&dir) || cmdline.contains(tag) || leaders.contains(&pgid);
        if ours && !found.iter().any(|(p, _)| *p == pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Command lines of a test's processes ([`processes_of`]) whose program name is `program`
/// (e.g. `Xvnc`).
pub fn programs_of(tag: &str, dir: &std::path::Path, program: &str) -> Vec<(i32, String)> {
    only_program(processes_of(tag, dir), program)
}

/// Command lines of tagged processes whose program name is `program` (e.g. `Xvnc`).
pub fn tagged_programs(tag: &str, program: &str) -> Vec<(i32, String)> {
    only_program(processes_with_tag(tag), program)
}

fn only_program(processes: Vec<(i32, String)>, program: &str) -> Vec<(i32, String)> {
    processes
        .into_iter()
        .filter(|(_, cmd)| {
            cmd.split_whitespace()
                .next()
                .and_then(|argv0| argv0.rsplit('/').next())
                == Some(program)
        })
        .collect()
}

/// SIGKILLs every process of a test ([`processes_of`]).
pub fn kill_processes_of(tag: &str, dir: &std::path::Path) {
    kill(processes_of(tag, dir));
}

/// SIGKILLs every process carrying `tag`.
pub fn kill_tagged(tag: &str) {
    kill(processes_with_tag(tag));
}

fn kill(processes: Vec<(i32, String)>) {
    for (pid, _) in processes {
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
