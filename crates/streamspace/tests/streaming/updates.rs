//! The downstream path keeps flowing: several viewers of one real xterm session type into it
//! through the tunnel, and after every keystroke each one gets the framebuffer update that shows
//! it. A frame held back anywhere between Xvnc and the viewer (a read waiting for a full
//! buffer, a write left unflushed until the next one, a lost wake-up) stalls a round here.

use std::time::Instant;

use anyhow::Context;
use streamspace_proto::api::SessionState;

use super::viewer::{self, Rfb};
use super::{START_TIMEOUT, platform};

const VIEWERS: usize = 3;
/// Keystrokes per viewer; each must be answered by an update before the next is sent.
const ROUNDS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_keystroke_from_every_viewer_comes_back_as_a_framebuffer_update() -> anyhow::Result<()>
{
    let mut h = super::common::harness()?;
    let (server, agent, _url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;

    let mut viewers = Vec::new();
    for n in 0..VIEWERS {
        let info = api.connect_session(session.id).await?;
        let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
        viewers.push(tokio::spawn(type_and_watch(Rfb::new(ws), n)));
    }
    for (n, viewer) in viewers.into_iter().enumerate() {
        let rounds = viewer
            .await?
            .with_context(|| format!("viewer {n}"))
            .with_context(logs)?;
        assert_eq!(rounds, ROUNDS, "viewer {n} saw every keystroke's update");
    }
    Ok(())
}

/// Types `ROUNDS` letters into the session, each after an incremental update request, and waits
/// for a non-empty update after each; returns the rounds completed.
async fn type_and_watch(mut rfb: Rfb, n: usize) -> anyhow::Result<usize> {
    let init = rfb.handshake().await?;
    rfb.request_update(false, init.width, init.height).await?;
    rfb.read_update(&init).await.context("the first update")?;
    // No window manager: keyboard focus follows the pointer, and xterm is at the top left.
    rfb.pointer(40, 40).await?;
    let letter = u32::from(b'a') + u32::try_from(n % 26)?;
    let mut done = 0;
    for round in 0..ROUNDS {
        rfb.request_update(true, init.width, init.height).await?;
        rfb.key(letter).await?;
        // The request was sent before the key, so the change the key makes answers it.
        while rfb
            .read_update(&init)
            .await
            .with_context(|| format!("round {round}: no update after the keystroke"))?
            == 0
        {
            rfb.request_update(true, init.width, init.height).await?;
        }
        done += 1;
    }
    Ok(done)
}
