//! The clipboard policy in the tunnel, both ways, with a real server, agent, Xvnc and xterm.
//!
//! The session's xterm runs the clipboard probe (`common::clipboard_template`): `copy TEXT` puts
//! TEXT on the session's clipboard, `paste` writes what it holds (`xclip`) into a file, and every
//! line is written there too. The owner's viewer types; a
//! second viewer under the rule being tested (bob, through a control share link, whose group
//! says the rule) watches what the session copies out and pastes in — in the classic form and,
//! as noVNC negotiates it, the extended clipboard.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use streamspace_client::Client;
use streamspace_proto::api::{
    ClipboardPolicy, CreateGroup, CreateShare, SessionRules, SessionState, ShareMode,
};
use streamspace_testkit::wait_until;
use tokio_tungstenite::tungstenite::Message;

use super::common::{self, clipboard_template};
use super::sharing::{type_line, user};
use super::viewer::{self, Init, Rfb};
use super::{START_TIMEOUT, platform};

/// The lines the session's script wrote.
fn lines(file: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A running session of `template`; the owner's viewer with the pointer over its xterm, once
/// the xterm takes lines.
async fn session_with_typist(
    api: &Client,
    template: &str,
    file: &std::path::Path,
    logs: &dyn Fn() -> String,
) -> anyhow::Result<(uuid::Uuid, Rfb, Init)> {
    let session = api.create_session(template).await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let info = api.connect_session(session.id).await?;
    let mut owner = Rfb::new(viewer::open(&info.url, None).await?.0);
    let init = owner.handshake().await.with_context(logs)?;
    owner.pointer(40, 40).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        type_line(&mut owner, "ready").await?;
        let took = wait_until("the xterm to take a line", Duration::from_secs(1), || {
            let seen = lines(file).iter().any(|l| l == "ready");
            async move { seen.then_some(()) }
        })
        .await;
        if took.is_ok() {
            return Ok((session.id, owner, init));
        }
        ensure!(
            Instant::now() < deadline,
            "the session's xterm never took the owner's typing\n{}",
            logs()
        );
    }
}

/// ClientCutText (classic form).
fn client_cut_text(text: &str) -> Vec<u8> {
    let mut m = vec![6, 0, 0, 0];
    m.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(text.as_bytes());
    m
}

/// Reads server messages (Raw updates only: a viewer that sent no SetEncodings) up to the end
/// of the next FramebufferUpdate if `until_update`, else until cut text `want` arrives; returns
/// every cut text seen.
async fn read_cut_texts(
    rfb: &mut Rfb,
    init: &Init,
    until_update: bool,
    want: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    loop {
        match rfb.read_exact(1).await?[0] {
            0 => {
                let header = rfb.read_exact(3).await?;
                for _ in 0..u16::from_be_bytes([header[1], header[2]]) {
                    let rect = rfb.read_exact(12).await?;
                    let w = usize::from(u16::from_be_bytes([rect[4], rect[5]]));
                    let h = usize::from(u16::from_be_bytes([rect[6], rect[7]]));
                    ensure!(rect[8..12] == [0, 0, 0, 0], "not Raw: {rect:?}");
                    rfb.read_exact(w * h * init.bytes_per_pixel).await?;
                }
                if until_update {
                    return Ok(seen);
                }
            }
            2 => {}
            3 => {
                let header = rfb.read_exact(7).await?;
                let len = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
                let text = rfb.read_exact(usize::try_from(len)?).await?;
                seen.push(String::from_utf8_lossy(&text).into_owned());
                if want.is_some_and(|w| seen.last().is_some_and(|s| s == w)) {
                    return Ok(seen);
                }
            }
            other => bail!("unexpected server message type {other}"),
        }
    }
}

/// One rule to test and what it must let through.
struct Case {
    clipboard: ClipboardPolicy,
    max: u32,
    /// Copied out in the session.
    out: &'static str,
    /// Pasted in by the viewer.
    pasted: &'static str,
    out_passes: bool,
    in_passes: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn each_clipboard_rule_holds_in_both_directions() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, agent, url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let file = h.path("lines");
    clipboard_template(&api, "clipboard", &file, SessionRules::default()).await?;
    let (session, mut owner, init) = session_with_typist(&api, "clipboard", &file, &logs).await?;

    // Bob views through a control share link; his group's rules are the ones under test (the
    // template and the server's defaults say both ways, 1 MiB).
    let bob = user(&api, &url, "bob").await?;
    api.create_group(&CreateGroup {
        name: "clippers".into(),
        description: String::new(),
    })
    .await?;
    api.add_group_member("clippers", "bob").await?;
    let share = api
        .create_share(
            session,
            &CreateShare {
                mode: ShareMode::Control,
                expires_in_secs: None,
                expires_at: None,
                users: vec!["bob".into()],
                groups: vec![],
            },
        )
        .await?;

    let cases = [
        Case {
            clipboard: ClipboardPolicy::Both,
            max: 64,
            out: "out-both",
            pasted: "in-both",
            out_passes: true,
            in_passes: true,
        },
        Case {
            clipboard: ClipboardPolicy::ToSession,
            max: 64,
            out: "out-to-session",
            pasted: "in-to-session",
            out_passes: false,
            in_passes: true,
        },
        Case {
            clipboard: ClipboardPolicy::FromSession,
            max: 64,
            out: "out-from-session",
            pasted: "in-from-session",
            out_passes: true,
            in_passes: false,
        },
        Case {
            clipboard: ClipboardPolicy::None,
            max: 64,
            out: "out-none",
            pasted: "in-none",
            out_passes: false,
            in_passes: false,
        },
        Case {
            clipboard: ClipboardPolicy::Both,
            max: 16,
            out: "out-longer-than-sixteen",
            pasted: "in-longer-than-sixteen",
            out_passes: false,
            in_passes: false,
        },
        Case {
            clipboard: ClipboardPolicy::Both,
            max: 16,
            out: "out-sixteen-byte",
            pasted: "in-sixteen-bytes",
            out_passes: true,
            in_passes: true,
        },
    ];
    for case in &cases {
        let name = format!("{:?} max {}", case.clipboard, case.max);
        let rules = SessionRules {
            clipboard: Some(case.clipboard),
            clipboard_max_bytes: Some(case.max),
            ..SessionRules::default()
        };
        api.set_group_rules("clippers", &rules).await?;
        let info = bob.connect_share(share.id).await?;
        // The connect answer tells the viewer its rule (the web viewer offers only that).
        ensure!(
            info.clipboard == case.clipboard,
            "{name}: connect answered {:?}",
            info.clipboard
        );
        let mut viewer = Rfb::new(viewer::open(&info.url, None).await?.0);
        let seen = viewer.handshake().await.with_context(logs)?;

        // Out: the owner (both ways, 1 MiB) receives the session's cut text; by then Xvnc has
        // written it to bob's stream too, ahead of the update bob asks for next.
        type_line(&mut owner, &format!("copy {}", case.out)).await?;
        read_cut_texts(&mut owner, &init, false, Some(case.out))
            .await
            .with_context(|| format!("{name}: the owner never received {:?}", case.out))?;
        viewer.request_update(false, 1, 1).await?;
        let got = read_cut_texts(&mut viewer, &seen, true, None)
            .await
            .with_context(|| format!("{name}: bob's stream\n{}", logs()))?;
        ensure!(
            got.iter().any(|t| t == case.out) == case.out_passes,
            "{name}: bob received {got:?} (should {}receive {:?})",
            if case.out_passes { "" } else { "not " },
            case.out
        );

        // In: bob's cut text, then his `paste` line, in one stream: the session reads its
        // clipboard after taking (or never getting) the text.
        let before = lines(&file)
            .iter()
            .filter(|l| l.starts_with("pasted:"))
            .count();
        viewer.write(&client_cut_text(case.pasted)).await?;
        type_line(&mut viewer, "paste").await?;
        let pasted = wait_until("the session to read its clipboard", START_TIMEOUT, || {
            let pasted: Vec<String> = lines(&file)
                .into_iter()
                .filter(|l| l.starts_with("pasted:"))
                .collect();
            async move { pasted.get(before).cloned() }
        })
        .await
        .with_context(logs)?;
        ensure!(
            (pasted == format!("pasted:{}", case.pasted)) == case.in_passes,
            "{name}: the session's clipboard held {pasted:?} after bob pasted {:?}",
            case.pasted
        );
    }

    // The extended clipboard, as noVNC negotiates it: the session's capabilities reach bob,
    // its text comes unsolicited (compressed), and the limit holds on the compressed length.
    let rules = SessionRules {
        clipboard: Some(ClipboardPolicy::Both),
        clipboard_max_bytes: Some(64),
        ..SessionRules::default()
    };
    api.set_group_rules("clippers", &rules).await?;
    let info = bob.connect_share(share.id).await?;
    let mut viewer = Rfb::new(viewer::open(&info.url, None).await?.0);
    let seen = viewer.handshake().await.with_context(logs)?;
    viewer
        .write(&set_encodings_message(&[0, EXTENDED_CLIPBOARD]))
        .await?;
    viewer.write(&NOVNC_CLIPBOARD_CAPS).await?;
    // Text zlib cannot squeeze under the limit: 192 pseudo-random hex digits.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let long: String = (0..12)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect();
    for (text, passes) in [("ext-short", true), (long.as_str(), false)] {
        type_line(&mut owner, &format!("copy {text}")).await?;
        read_cut_texts(&mut owner, &init, false, Some(text))
            .await
            .with_context(|| format!("the owner never received {text:?}"))?;
        viewer.request_update(false, 1, 1).await?;
        let got = read_extended_until_update(&mut viewer, &seen)
            .await
            .with_context(|| format!("bob's stream\n{}", logs()))?;
        let provided: Vec<usize> = got
            .iter()
            .filter(|(flags, _)| flags & PROVIDE != 0 && flags & CAPS == 0)
            .map(|(_, size)| *size)
            .collect();
        ensure!(
            provided.len() == usize::from(passes) && provided.iter().all(|&n| n <= 64),
            "copying {} bytes out: bob received extended clipboard messages {got:?}",
            text.len()
        );
    }

    // Through a view-only link bob gets none of the session's clipboard, though his rules
    // allow both ways: a watcher sees the screen, not what the person at the controls copies.
    let watch = api
        .create_share(
            session,
            &CreateShare {
                mode: ShareMode::ViewOnly,
                expires_in_secs: None,
                expires_at: None,
                users: vec!["bob".into()],
                groups: vec![],
            },
        )
        .await?;
    let info = bob.connect_share(watch.id).await?;
    ensure!(
        info.clipboard == ClipboardPolicy::None,
        "a view-only link's connect answered {:?}",
        info.clipboard
    );
    let mut watcher = Rfb::new(viewer::open(&info.url, None).await?.0);
    let seen = watcher.handshake().await.with_context(logs)?;
    type_line(&mut owner, "copy out-to-watcher").await?;
    read_cut_texts(&mut owner, &init, false, Some("out-to-watcher"))
        .await
        .context("the owner never received out-to-watcher")?;
    watcher.request_update(false, 1, 1).await?;
    let got = read_cut_texts(&mut watcher, &seen, true, None)
        .await
        .with_context(|| format!("the view-only stream\n{}", logs()))?;
    ensure!(
        got.is_empty(),
        "a view-only watcher received the session's clipboard: {got:?}"
    );
    Ok(())
}

const EXTENDED_CLIPBOARD: i32 = 0xC0A1_E5CE_u32 as i32;
const CAPS: u32 = 1 << 24;
const PROVIDE: u32 = 1 << 28;

/// The capabilities noVNC announces: every action, text up to 10 MiB.
const NOVNC_CLIPBOARD_CAPS: [u8; 16] = [
    6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf8, 0x1f, 0, 0, 1, 0, 0xa0, 0, 0,
];

/// Reads server messages (Raw updates only) up to the end of the next FramebufferUpdate;
/// returns the flags and length of every extended clipboard message seen.
async fn read_extended_until_update(
    rfb: &mut Rfb,
    init: &Init,
) -> anyhow::Result<Vec<(u32, usize)>> {
    let mut seen = Vec::new();
    loop {
        match rfb.read_exact(1).await?[0] {
            0 => {
                let header = rfb.read_exact(3).await?;
                for _ in 0..u16::from_be_bytes([header[1], header[2]]) {
                    let rect = rfb.read_exact(12).await?;
                    let w = usize::from(u16::from_be_bytes([rect[4], rect[5]]));
                    let h = usize::from(u16::from_be_bytes([rect[6], rect[7]]));
                    ensure!(rect[8..12] == [0, 0, 0, 0], "not Raw: {rect:?}");
                    rfb.read_exact(w * h * init.bytes_per_pixel).await?;
                }
                return Ok(seen);
            }
            2 => {}
            3 => {
                let header = rfb.read_exact(7).await?;
                let len = i32::from_be_bytes([header[3], header[4], header[5], header[6]]);
                let size = usize::try_from(len.unsigned_abs())?;
                let body = rfb.read_exact(size).await?;
                ensure!(
                    len < 0 && size >= 4,
                    "classic cut text after the extended clipboard"
                );
                seen.push((
                    u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    size,
                ));
            }
            other => bail!("unexpected server message type {other}"),
        }
    }
}

/// noVNC's SetPixelFormat: 32 bits per pixel, depth 24, little-endian true colour.
const NOVNC_PIXEL_FORMAT: [u8; 20] = [
    0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0,
];

/// noVNC's pseudo-encodings after its encodings (quality 6, compression 2), without the
/// extended clipboard (this raw client speaks the classic form) and without fences and
/// continuous updates: Xvnc holds updates back from a client that does not answer its fences.
const NOVNC_PSEUDO: [i32; 12] = [
    -26,
    -254,
    -223,
    -224,
    -258,
    -261,
    -308,
    -309,
    -307,
    -316,
    0x574d_5664,
    -239,
];

fn set_encodings_message(encodings: &[i32]) -> Vec<u8> {
    let mut m = vec![2, 0];
    m.extend_from_slice(&u16::try_from(encodings.len()).unwrap_or(0).to_be_bytes());
    for e in encodings {
        m.extend_from_slice(&e.to_be_bytes());
    }
    m
}

/// Reads the stream's raw bytes until they hold `pattern`; everything read.
async fn read_until(rfb: &mut Rfb, pattern: &[u8], within: Duration) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let deadline = Instant::now() + within;
    while !bytes.windows(pattern.len()).any(|w| w == pattern) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rfb.ws.next()).await {
            Err(_) => bail!("{pattern:?} did not arrive in time"),
            Ok(Some(Ok(Message::Binary(b)))) => bytes.extend_from_slice(&b),
            Ok(Some(Ok(Message::Close(f)))) => bail!("the stream closed: {f:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => bail!("reading the stream: {e}"),
            Ok(None) => bail!("the stream ended"),
        }
    }
    Ok(bytes)
}

fn server_cut_text(text: &str) -> Vec<u8> {
    let mut m = vec![3, 0, 0, 0];
    m.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_be_bytes());
    m.extend_from_slice(text.as_bytes());
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn the_filter_follows_xvnc_in_every_encoding_it_allows() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, agent, _url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let file = h.path("lines");
    let rules = SessionRules {
        clipboard: Some(ClipboardPolicy::Both),
        clipboard_max_bytes: Some(24),
        ..SessionRules::default()
    };
    clipboard_template(&api, "encodings", &file, rules).await?;
    let (session, mut owner, init) = session_with_typist(&api, "encodings", &file, &logs).await?;

    // In noVNC's order of preference (the filter takes the rest out of SetEncodings).
    for (encoding, name) in [
        (7, "tight"),
        (16, "zrle"),
        (5, "hextile"),
        (2, "rre"),
        (0, "raw"),
    ] {
        let info = api.connect_session(session).await?;
        let mut viewer = Rfb::new(viewer::open(&info.url, None).await?.0);
        viewer.handshake().await.with_context(logs)?;
        viewer.write(&NOVNC_PIXEL_FORMAT).await?;
        let mut encodings = vec![1, encoding];
        if encoding != 0 {
            encodings.push(0);
        }
        encodings.extend_from_slice(&NOVNC_PSEUDO);
        viewer.write(&set_encodings_message(&encodings)).await?;
        viewer
            .request_update(false, init.width, init.height)
            .await?;
        // The screen changes; each change is drawn in the encoding asked for.
        for i in 0..4 {
            type_line(
                &mut owner,
                &format!("{name} line {i} {}", "#".repeat(i * 9)),
            )
            .await?;
            viewer.request_update(true, init.width, init.height).await?;
        }
        let long = format!("{name}-longer-than-the-limit");
        let short = format!("{name}-fits");
        type_line(&mut owner, &format!("copy {long}")).await?;
        type_line(&mut owner, &format!("copy {short}")).await?;
        viewer.request_update(true, init.width, init.height).await?;
        let bytes = read_until(&mut viewer, &server_cut_text(&short), START_TIMEOUT)
            .await
            .with_context(|| format!("{name}: the short cut text\n{}", logs()))?;
        ensure!(
            !bytes.windows(long.len()).any(|w| w == long.as_bytes()),
            "{name}: cut text longer than the limit reached the viewer"
        );
        // Still in step: the stream goes on.
        for i in 0..4 {
            type_line(
                &mut owner,
                &format!("{name} more {i} {}", "=".repeat(i * 7)),
            )
            .await?;
            viewer.request_update(true, init.width, init.height).await?;
        }
        type_line(&mut owner, &format!("copy {name}-again")).await?;
        viewer.request_update(true, init.width, init.height).await?;
        read_until(
            &mut viewer,
            &server_cut_text(&format!("{name}-again")),
            START_TIMEOUT,
        )
        .await
        .with_context(|| format!("{name}: after the first cut text\n{}", logs()))?;
    }
    Ok(())
}
