//! Recording of viewings end to end: a real server and agent process, a real Xvnc session, a
//! viewer that speaks RFB through the tunnel, and the recording read back through the API.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use streamspace_client::Client;
use streamspace_proto::api::{Recording, SessionState};
use streamspace_proto::recording::{Event, Record, decode_all};
use streamspace_testkit::wait_until;
use uuid::Uuid;

use super::common::{Harness, Proc, wait_for_agent_online};
use super::viewer::{self, Rfb};
use super::{START_TIMEOUT, server};

/// Server (with `policy`, recording into a folder of the harness) and agent processes, and a
/// running xterm session.
async fn platform(h: &mut Harness, policy: &str) -> anyhow::Result<(Proc, Proc, Client, Uuid)> {
    let store = format!("dir:{}", h.path("recordings").display());
    let (server, url, api) = server(
        h,
        &["--recording-policy", policy, "--recording-store", &store],
    )
    .await?;
    let key = api.create_agent_key("rec-agent").await?;
    let state_dir = h.path("agent-state");
    let agent = h.agent(&url, "rec-agent", &key.secret, &state_dir)?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "rec-agent")
        .await
        .with_context(logs)?;
    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    Ok((server, agent, api, session.id))
}

/// Views the session through `url` up to the first framebuffer update, then leaves.
async fn view(url: &str) -> anyhow::Result<()> {
    let (ws, _) = viewer::open(url, None).await?;
    let mut rfb = Rfb::new(ws);
    rfb.handshake_to_first_update().await?;
    rfb.ws.close(None).await?;
    Ok(())
}

/// The session's recordings once every one of them has ended.
async fn ended_recordings(api: &Client, session: Uuid) -> anyhow::Result<Vec<Recording>> {
    wait_until(
        "every recording of the session to end",
        Duration::from_secs(20),
        || async {
            let list = api.list_recordings(session).await.ok()?;
            list.iter().all(|r| r.ended_at.is_some()).then_some(list)
        },
    )
    .await
}

/// The server→viewer stream of a recording, its chunks joined, and its events.
fn stream_and_events(records: &[Record]) -> (Vec<u8>, Vec<Event>) {
    let mut stream = Vec::new();
    let mut events = Vec::new();
    for record in records {
        match record {
            Record::Data { bytes, .. } => stream.extend_from_slice(bytes),
            Record::Event { event, .. } => events.push(event.clone()),
        }
    }
    (stream, events)
}

/// Where the first server message after ServerInit starts, in an RFB 3.8 stream with security
/// type None.
fn first_message(stream: &[u8]) -> anyhow::Result<usize> {
    ensure!(
        stream.starts_with(b"RFB 003.008\n"),
        "the recording starts with the RFB version: {:?}",
        &stream[..stream.len().min(12)]
    );
    let types = usize::from(*stream.get(12).context("security types")?);
    let init = 12 + 1 + types + 4;
    let name = stream.get(init + 20..init + 24).context("ServerInit")?;
    let name_len = u32::from_be_bytes([name[0], name[1], name[2], name[3]]);
    Ok(init + 24 + usize::try_from(name_len)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn under_always_every_viewing_is_recorded_from_the_version_string_on() -> anyhow::Result<()> {
    let mut h = super::common::harness()?;
    let (server, agent, api, session) = platform(&mut h, "always").await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());

    // Not even asked: under `always` the viewer is told it is recorded.
    let info = api.connect_session(session).await?;
    ensure!(info.recorded, "connect says the viewing is recorded");
    view(&info.url).await.with_context(logs)?;

    let recordings = ended_recordings(&api, session).await.with_context(logs)?;
    ensure!(
        recordings.len() == 1,
        "one viewing, one recording: {recordings:?}"
    );
    let recording = &recordings[0];
    ensure!(
        recording.viewer == "admin" && recording.complete,
        "the recording names its viewer and is complete: {recording:?}"
    );
    let data = api.recording_data(recording.id).await.with_context(logs)?;
    ensure!(
        data.len() as u64 == recording.bytes,
        "the metadata has the stream's size ({} bytes read, {} recorded)",
        data.len(),
        recording.bytes
    );
    let records = decode_all(&data).context("the recording reads")?;
    let (stream, events) = stream_and_events(&records);
    let update = first_message(&stream)?;
    ensure!(
        stream.get(update) == Some(&0),
        "a FramebufferUpdate (message type 0) follows ServerInit in the recording"
    );
    ensure!(
        stream.len() > update + 4 + 12,
        "the framebuffer update's rectangles are recorded ({} bytes in all)",
        stream.len()
    );
    ensure!(
        matches!(events.first(), Some(Event::Started { session_id, .. }) if *session_id == session),
        "the recording starts with what it records: {events:?}"
    );
    ensure!(
        events
            .iter()
            .any(|e| matches!(e, Event::Connected { user, mode, .. }
            if user == "admin" && mode == "control")),
        "the viewer's connection is an event: {events:?}"
    );
    ensure!(
        matches!(events.last(), Some(Event::Ended { .. })),
        "the end of the viewing is the last event: {events:?}"
    );

    // The owner (here the admin) deletes it: gone from the list and its stream unreadable.
    api.delete_recording(recording.id).await?;
    ensure!(api.list_recordings(session).await?.is_empty());
    ensure!(api.recording_data(recording.id).await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn on_request_records_only_the_viewings_that_ask() -> anyhow::Result<()> {
    let mut h = super::common::harness()?;
    let (server, agent, api, session) = platform(&mut h, "on_request").await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());

    let plain = api.connect_session_recorded(session, false).await?;
    ensure!(
        !plain.recorded,
        "a viewing that does not ask is not recorded"
    );
    // The row is made when the stream opens, before any byte reaches the viewer: once the
    // viewer has seen an update, a recording would be listed.
    view(&plain.url).await.with_context(logs)?;
    ensure!(
        api.list_recordings(session).await?.is_empty(),
        "no recording of a viewing that did not ask"
    );

    let asked = api.connect_session_recorded(session, true).await?;
    ensure!(asked.recorded, "a viewing that asks is recorded");
    view(&asked.url).await.with_context(logs)?;
    let recordings = ended_recordings(&api, session).await.with_context(logs)?;
    ensure!(recordings.len() == 1, "{recordings:?}");
    let data = api.recording_data(recordings[0].id).await?;
    let (stream, _) = stream_and_events(&decode_all(&data)?);
    first_message(&stream)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn off_records_nothing_even_when_asked() -> anyhow::Result<()> {
    let mut h = super::common::harness()?;
    let (server, agent, api, session) = platform(&mut h, "off").await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let info = api.connect_session_recorded(session, true).await?;
    ensure!(!info.recorded, "connect says the viewing is not recorded");
    view(&info.url).await.with_context(logs)?;
    ensure!(api.list_recordings(session).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_templates_rule_records_where_the_servers_default_does_not() -> anyhow::Result<()> {
    let mut h = super::common::harness()?;
    let (server, agent, api, _xterm) = platform(&mut h, "off").await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let xterm = api.get_template("xterm").await?;
    let template: streamspace_proto::api::CreateTemplate =
        serde_json::from_value(serde_json::json!({
            "name": "recorded-xterm",
            "command": xterm.command,
            "rules": { "recording": "always" },
        }))?;
    api.create_template(&template).await?;
    let session = api.create_session("recorded-xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let info = api.connect_session(session.id).await?;
    ensure!(
        info.recorded,
        "the template's rule asks for every viewing to be recorded"
    );
    view(&info.url).await.with_context(logs)?;
    let recordings = ended_recordings(&api, session.id)
        .await
        .with_context(logs)?;
    ensure!(recordings.len() == 1, "{recordings:?}");
    Ok(())
}
