//! What `/proc` says about a process: whether it is alive, stopped, and when it started.
//!
//! A pid alone does not name a process for long: after it exits, the kernel may hand the same
//! number to an unrelated program. Every pid the runtime records is paired with the process's
//! start time (field 22 of `/proc/PID/stat`, in clock ticks since boot), and a process only
//! counts as ours while both match.

use std::path::PathBuf;

/// A process as `/proc` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The one-letter state (`R`, `S`, `T`, `Z`, …).
    pub state: char,
    /// Clock ticks after boot when the process started.
    pub start_time: u64,
}

impl ProcStat {
    /// Stopped by a signal (`T`) or by a tracer (`t`): how a hibernated session looks.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// Exited (zombie or dead) but perhaps not yet reaped.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/PID/stat`; `None` if there is no such process (or it cannot be parsed).
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat"))).ok()?;
    parse_stat(&text)
}

/// The process `pid` if it is alive and is the one that started at `start_time`.
pub fn alive(pid: i32, start_time: u64) -> Option<ProcStat> {
    stat(pid).filter(|s| s.start_time == start_time && !s.is_dead())
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let text = "4242 (we (ird) name) T 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'T',
                start_time: 987654
            })
        );
    }

    #[test]
    fn rejects_truncated_text() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id() as i32).expect("/proc/self/stat is readable");
        assert!(!me.is_dead() && !me.is_stopped(), "{me:?}");
        assert!(alive(std::process::id() as i32, me.start_time).is_some());
        assert!(alive(std::process::id() as i32, me.start_time + 1).is_none());
    }
}
