//! An agent killed at each step of a start: a start stopped at a step leaves exactly what a
//! killed agent would (its locals — the gates — are dropped, nothing is cleaned up), and a
//! fresh runtime over the same state directory must then run the session exactly once.
//!
//! Needs Xvnc and xterm. Counts this process's children, so it relies on each test running in a
//! process of its own (as `cargo nextest` runs them); no other unit test here starts processes.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use streamspace_testkit::wait_until;

use super::launch::Step;
use super::*;

const WAIT: Duration = Duration::from_secs(15);

fn xterm() -> Template {
    let create = streamspace_proto::api::CreateTemplate {
        name: "xterm".into(),
        command: vec!["xterm".into()],
        ..Default::default()
    };
    Template::new(create, chrono::Utc::now())
}

/// A live child of this process: pid and program name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Child {
    pid: i32,
    name: String,
}

/// The live (not zombie) children of this test process.
fn children() -> BTreeSet<Child> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let parent = fields.next()?;
            let name = head.split_once('(')?.1.to_owned();
            (parent == me && state != "Z").then_some(Child { pid, name })
        })
        .collect()
}

fn xvnc_children() -> Vec<Child> {
    children()
        .into_iter()
        .filter(|c| c.name == "Xvnc")
        .collect()
}

async fn killed_at(step: Step) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ProcessRuntimeConfig::new(dir.path().to_path_buf());
    let id = Uuid::now_v7();
    let mut killed = ProcessRuntime::new(config.clone());
    killed.interrupt_at = Some(step);
    if killed.start(id, &xterm()).await.is_ok() {
        bail!("the start ran past {step:?}");
    }
    drop(killed);

    let restarted = ProcessRuntime::new(config);
    let recovered = restarted.recover().await?;
    let expected = usize::from(step == Step::Committed);
    assert_eq!(
        recovered.len(),
        expected,
        "after {step:?} only a committed start is re-adopted, nothing is reported failed: {recovered:?}"
    );
    // The start command is delivered again after the restart.
    let info = restarted.start(id, &xterm()).await?;
    ensure!(info.state == SessionState::Running, "{step:?}: {info:?}");
    let record = restarted.record(id).context("the session is held")?;
    let session: BTreeSet<i32> = record.processes.iter().map(|p| p.pid).collect();
    // Gates the dead start left closed end by themselves; whatever else it started must be
    // gone once recovery is done.
    let rest = wait_until("only the session's processes to be left", WAIT, || async {
        let pids: BTreeSet<i32> = children().iter().map(|c| c.pid).collect();
        (pids == session).then_some(())
    })
    .await;
    rest.with_context(|| {
        format!(
            "after {step:?}: children {:?}, session {session:?}",
            children()
        )
    })?;
    let xvnc = xvnc_children();
    assert_eq!(
        xvnc.len(),
        1,
        "after {step:?} the session runs one Xvnc: {xvnc:?}"
    );
    assert_eq!(Some(xvnc[0].pid), record.xvnc().map(|p| p.pid));

    restarted.stop(id).await?;
    wait_until("every process to be gone", WAIT, || async {
        children().is_empty().then_some(())
    })
    .await
    .with_context(|| format!("after {step:?}: {:?}", children()))?;
    Ok(())
}

#[tokio::test]
async fn killed_after_spawning_xvnc() -> anyhow::Result<()> {
    killed_at(Step::XvncSpawned).await
}

#[tokio::test]
async fn killed_after_recording_xvnc() -> anyhow::Result<()> {
    killed_at(Step::XvncRecorded).await
}

#[tokio::test]
async fn killed_after_releasing_xvnc() -> anyhow::Result<()> {
    killed_at(Step::XvncReleased).await
}

#[tokio::test]
async fn killed_once_xvnc_is_ready() -> anyhow::Result<()> {
    killed_at(Step::XvncReady).await
}

#[tokio::test]
async fn killed_after_spawning_the_program() -> anyhow::Result<()> {
    killed_at(Step::ProgramSpawned).await
}

#[tokio::test]
async fn killed_after_recording_the_program() -> anyhow::Result<()> {
    killed_at(Step::ProgramRecorded).await
}

#[tokio::test]
async fn killed_after_releasing_the_program() -> anyhow::Result<()> {
    killed_at(Step::ProgramReleased).await
}

#[tokio::test]
async fn killed_after_the_start_was_committed() -> anyhow::Result<()> {
    killed_at(Step::Committed).await
}
