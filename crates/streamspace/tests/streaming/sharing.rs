//! Share links end to end, with a real server, agent, Xvnc and xterm: a watcher through a
//! view-only link sends keys, pointer, cut text and a desktop resize with a raw RFB client,
//! and the session never receives them — its xterm writes every line it is typed into a file,
//! and only the owner's lines are there; the desktop keeps its size. The owner sees who
//! watches, disconnects a watcher, and revokes a link, which closes its viewers and refuses it
//! (through the CLI: `session share`, `shares`, `viewers`, `kick`, `unshare`).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use streamspace_client::Client;
use streamspace_proto::api::{
    CreateShare, CreateTemplate, CreateUser, LoginRequest, Role, Share, ShareMode, Viewer,
};
use streamspace_testkit::wait_until;

use super::common::{self, Harness};
use super::viewer::{self, Rfb};
use super::{START_TIMEOUT, platform};

const RETURN: u32 = 0xff0d;

/// Types `line` and Return.
pub(super) async fn type_line(rfb: &mut Rfb, line: &str) -> anyhow::Result<()> {
    for c in line.chars() {
        rfb.key(u32::from(c)).await?;
    }
    rfb.key(RETURN).await
}

/// A user who signs in with a password; their API client.
pub(super) async fn user(api: &Client, url: &str, username: &str) -> anyhow::Result<Client> {
    let password = format!("{username}-password-1");
    api.create_user(&CreateUser {
        username: username.into(),
        role: Role::User,
        password: Some(password.clone()),
        display_name: None,
        email: None,
    })
    .await?;
    let login = LoginRequest {
        username: username.into(),
        password,
        token_name: Some("tests".into()),
        ..Default::default()
    };
    let token = api
        .login(&login)
        .await?
        .token
        .context("signing in gave no token")?
        .token;
    Ok(Client::new(url, &token)?)
}

/// `streamspace ARGS --server URL --token ADMIN -o json`: what it printed, parsed.
async fn cli<T: serde::de::DeserializeOwned>(url: &str, args: &[&str]) -> anyhow::Result<T> {
    let mut command = std::process::Command::new(common::BIN);
    command.args(args).args([
        "--server",
        url,
        "--token",
        common::ADMIN_TOKEN,
        "-o",
        "json",
    ]);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "streamspace {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).with_context(|| format!("streamspace {args:?} printed {stdout}"))
}

/// What the session's xterm was typed, line by line.
fn typed(h: &Harness) -> String {
    std::fs::read_to_string(h.path("typed")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_view_only_watcher_cannot_touch_the_session() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, agent, url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let file = h.path("typed");
    let script = format!("cat > '{}'", file.display());
    api.create_template(&CreateTemplate {
        name: "typist".into(),
        command: ["xterm", "-geometry", "80x24+0+0", "-e", "sh", "-c", &script]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    })
    .await?;
    let session = api.create_session("typist").await?;
    api.wait_for_session(
        session.id,
        streamspace_proto::api::SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;

    // The owner's viewer: the pointer over the xterm, then lines until the xterm is there.
    let owner_info = api.connect_session(session.id).await?;
    ensure!(owner_info.mode == ShareMode::Control);
    let mut owner = Rfb::new(viewer::open(&owner_info.url, None).await?.0);
    let init = owner.handshake().await.with_context(logs)?;
    owner.pointer(40, 40).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        type_line(&mut owner, "ready").await?;
        let took = wait_until("the xterm to take a line", Duration::from_secs(1), || {
            let typed = typed(&h);
            async move { typed.contains("ready\n").then_some(()) }
        })
        .await;
        if took.is_ok() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the session's xterm never took the owner's typing\n{}",
            logs()
        );
    }

    // Bob watches through a view-only link made for him (with the CLI).
    let bob = user(&api, &url, "bob").await?;
    let id = session.id.to_string();
    let share: Share = cli(
        &url,
        &[
            "session",
            "share",
            &id,
            "--view-only",
            "--expires",
            "10m",
            "--user",
            "bob",
        ],
    )
    .await?;
    ensure!(share.link == format!("/shared/{}", share.id));
    ensure!(
        share.mode == ShareMode::ViewOnly && share.users == ["bob"],
        "{share:?}"
    );
    let info = bob.connect_share(share.id).await?;
    ensure!(info.mode == ShareMode::ViewOnly, "{info:?}");
    let mut watcher = Rfb::new(viewer::open(&info.url, None).await?.0);
    let seen = watcher.handshake().await.with_context(logs)?;
    ensure!((seen.width, seen.height) == (1280, 800));

    // Everything a controlling viewer could do, from the watcher.
    watcher.pointer(40, 40).await?;
    type_line(&mut watcher, "bad").await?;
    let mut cut = vec![6u8, 0, 0, 0, 0, 0, 0, 4];
    cut.extend_from_slice(b"leak");
    watcher.write(&cut).await?;
    let mut resize = vec![251u8, 0, 4, 0, 3, 0, 1, 0];
    resize.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 4, 0, 3, 0, 0, 0, 0, 0]);
    watcher.write(&resize).await?;
    // An update it asked for after all that is drawn: the stream carried everything before it.
    watcher
        .request_update(false, seen.width, seen.height)
        .await?;
    watcher.read_update(&seen).await.with_context(logs)?;

    type_line(&mut owner, "good").await?;
    wait_until(
        "the owner's line to reach the session",
        START_TIMEOUT,
        || {
            let typed = typed(&h);
            async move { typed.contains("good\n").then_some(()) }
        },
    )
    .await
    .with_context(logs)?;
    let typed = typed(&h);
    ensure!(
        !typed.contains("bad"),
        "a view-only watcher's keys reached the session: {typed:?}"
    );
    let mut fresh = Rfb::new(
        viewer::open(&api.connect_session(session.id).await?.url, None)
            .await?
            .0,
    );
    let now = fresh.handshake().await?;
    ensure!(
        (now.width, now.height) == (init.width, init.height),
        "a view-only watcher resized the desktop to {}x{}",
        now.width,
        now.height
    );

    // The owner sees who watches, and how.
    let viewers: Vec<Viewer> = cli(&url, &["session", "viewers", &id]).await?;
    let bobs: Vec<_> = viewers.iter().filter(|v| v.user == "bob").collect();
    ensure!(
        viewers.len() == 3 && bobs.len() == 1 && bobs[0].mode == ShareMode::ViewOnly,
        "{viewers:?}"
    );
    ensure!(bobs[0].share_id == Some(share.id));

    // Disconnecting one viewer leaves the others.
    let control = api
        .create_share(
            session.id,
            &CreateShare {
                mode: ShareMode::Control,
                expires_in_secs: None,
                expires_at: None,
                users: vec![],
                groups: vec![],
            },
        )
        .await?;
    let second = bob.connect_share(control.id).await?;
    ensure!(second.mode == ShareMode::Control);
    let mut kicked = viewer::open(&second.url, None).await?.0;
    let kicked_id = wait_until("bob's second viewer to be listed", START_TIMEOUT, || {
        let api = &api;
        async move {
            api.list_viewers(session.id)
                .await
                .ok()?
                .into_iter()
                .find(|v| v.share_id == Some(control.id))
                .map(|v| v.id)
        }
    })
    .await?;
    let kick = std::process::Command::new(common::BIN)
        .args([
            "session",
            "kick",
            &id,
            &kicked_id.to_string(),
            "--server",
            &url,
        ])
        .args(["--token", common::ADMIN_TOKEN])
        .status()?;
    ensure!(kick.success(), "session kick failed");
    let (code, reason) = viewer::close_frame(&mut kicked, Duration::from_secs(10)).await?;
    ensure!(
        code == 1008 && reason.contains("disconnected by admin"),
        "{code} {reason}"
    );

    // Revoking the view-only link closes bob's viewer and refuses the link from then on.
    let shares: Vec<Share> = cli(&url, &["session", "shares", &id]).await?;
    ensure!(shares.len() == 2 && shares[0].id == share.id, "{shares:?}");
    let revoked: Share = cli(&url, &["session", "unshare", &id, &share.id.to_string()]).await?;
    ensure!(revoked.revoked_at.is_some());
    let (code, reason) = viewer::close_frame(&mut watcher.ws, Duration::from_secs(10)).await?;
    ensure!(
        code == 1008 && reason == "the share link was revoked",
        "{code} {reason}"
    );
    let refused = bob.connect_share(share.id).await;
    ensure!(
        refused.as_ref().err().and_then(|e| e.code()) == Some("share_revoked"),
        "{refused:?}"
    );
    // The owner's viewer never noticed.
    owner.request_update(false, init.width, init.height).await?;
    owner.read_update(&init).await.with_context(logs)?;
    Ok(())
}

/// Sharing across replicas: the owner on replica A, the watcher on B, the agent (and so its
/// data connections) on C. View-only holds through the hops (the xterm never gets the
/// watcher's raw input); the owner on A lists the watcher on B and disconnects them; revoking
/// the link on A closes the watcher's new stream on B at once — B checks its viewers' links only
/// every hour here, so only the announcement can close it.
#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_on_another_replica_is_listed_disconnected_and_revoked() -> anyhow::Result<()> {
    let pg = streamspace_testkit::PgCluster::start()?;
    let redis = streamspace_testkit::redis::RedisServer::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let redis_url = redis.url();
    let args = ["--redis-url", &redis_url, "--heartbeat-interval", "1"];
    let (a, url_a) = h.replica(&db, "A", "127.0.0.1:0", &args).await?;
    let slow_sweep = [&args[..], &["--sweep-interval", "1h"]].concat();
    let (b, url_b) = h.replica(&db, "B", "127.0.0.1:0", &slow_sweep).await?;
    let (c, url_c) = h.replica(&db, "C", "127.0.0.1:0", &args).await?;
    let api = Client::new(&url_a, common::ADMIN_TOKEN)?;
    for url in [&url_a, &url_b, &url_c] {
        common::wait_for_ready(&Client::new(url, common::ADMIN_TOKEN)?).await?;
    }
    let key = api.create_agent_key("share-agent").await?;
    let agent = h.agent(&url_c, "share-agent", &key.secret, &h.path("agent-state"))?;
    let logs = || format!("{}\n{}\n{}\n{}", a.logs(), b.logs(), c.logs(), agent.logs());
    common::wait_for_agent_online(&api, "share-agent")
        .await
        .with_context(logs)?;
    ensure!(
        api.get_agent("share-agent").await?.replica_id.as_deref() == Some("C"),
        "the agent is held by C"
    );
    let file = h.path("typed");
    let script = format!("cat > '{}'", file.display());
    api.create_template(&CreateTemplate {
        name: "typist".into(),
        command: ["xterm", "-geometry", "80x24+0+0", "-e", "sh", "-c", &script]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    })
    .await?;
    let session = api.create_session("typist").await?;
    api.wait_for_session(
        session.id,
        streamspace_proto::api::SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;

    // The owner watches on A, until the xterm takes their typing.
    let owner_info = api.connect_session(session.id).await?;
    let mut owner = Rfb::new(viewer::open(&owner_info.url, None).await?.0);
    let init = owner.handshake().await.with_context(logs)?;
    owner.pointer(40, 40).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        type_line(&mut owner, "ready").await?;
        let took = wait_until("the xterm to take a line", Duration::from_secs(1), || {
            let typed = typed(&h);
            async move { typed.contains("ready\n").then_some(()) }
        })
        .await;
        if took.is_ok() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the session's xterm never took the owner's typing\n{}",
            logs()
        );
    }

    // Bob, signed in on B, watches through a view-only link made on A.
    let bob = user(&api, &url_b, "bob").await?;
    let share = api
        .create_share(
            session.id,
            &CreateShare {
                mode: ShareMode::ViewOnly,
                expires_in_secs: Some(600),
                expires_at: None,
                users: vec!["bob".into()],
                groups: vec![],
            },
        )
        .await?;
    let info = bob.connect_share(share.id).await?;
    let b_address = url_b.trim_start_matches("http://");
    ensure!(info.url.contains(b_address), "{}", info.url);
    let mut watcher = Rfb::new(viewer::open(&info.url, None).await?.0);
    let seen = watcher.handshake().await.with_context(logs)?;
    watcher.pointer(40, 40).await?;
    type_line(&mut watcher, "bad").await?;
    let mut cut = vec![6u8, 0, 0, 0, 0, 0, 0, 4];
    cut.extend_from_slice(b"leak");
    watcher.write(&cut).await?;
    // An update asked for after all that is drawn: the hops carried everything before it.
    watcher
        .request_update(false, seen.width, seen.height)
        .await?;
    watcher.read_update(&seen).await.with_context(logs)?;
    type_line(&mut owner, "good").await?;
    wait_until(
        "the owner's line to reach the session",
        START_TIMEOUT,
        || {
            let typed = typed(&h);
            async move { typed.contains("good\n").then_some(()) }
        },
    )
    .await
    .with_context(logs)?;
    let typed_now = typed(&h);
    ensure!(
        !typed_now.contains("bad") && !typed_now.contains("leak"),
        "a view-only watcher's input reached the session: {typed_now:?}"
    );

    // The owner, on A, sees both viewers with their replicas, and disconnects bob's on B.
    let viewers = api.list_viewers(session.id).await?;
    let on = |who: &str| viewers.iter().find(|v| v.user == who).cloned();
    let (Some(mine), Some(bobs)) = (on("admin"), on("bob")) else {
        anyhow::bail!("both viewers are listed on A: {viewers:?}\n{}", logs());
    };
    ensure!(viewers.len() == 2, "{viewers:?}");
    ensure!(
        (mine.replica.as_str(), bobs.replica.as_str()) == ("A", "B"),
        "{viewers:?}"
    );
    ensure!(bobs.mode == ShareMode::ViewOnly && bobs.share_id == Some(share.id));
    api.disconnect_viewer(session.id, bobs.id).await?;
    let (code, reason) = viewer::close_frame(&mut watcher.ws, Duration::from_secs(10))
        .await
        .with_context(logs)?;
    ensure!(
        code == 1008 && reason == "disconnected by admin",
        "{code} {reason}"
    );
    wait_until("only the owner's viewer to be left", START_TIMEOUT, || {
        let api = &api;
        async move {
            let left = api.list_viewers(session.id).await.ok()?;
            (left.len() == 1 && left[0].id == mine.id).then_some(())
        }
    })
    .await
    .with_context(logs)?;
    let gone = api.disconnect_viewer(session.id, bobs.id).await;
    ensure!(
        gone.as_ref().err().and_then(|e| e.code()) == Some("not_found"),
        "a viewer no replica carries: {gone:?}"
    );

    // Bob comes back on B; revoking the link on A closes that stream at once.
    let again = bob.connect_share(share.id).await?;
    let mut watcher = Rfb::new(viewer::open(&again.url, None).await?.0);
    watcher.handshake().await.with_context(logs)?;
    wait_until("bob's new viewer to be listed", START_TIMEOUT, || {
        let api = &api;
        async move {
            let listed = api.list_viewers(session.id).await.ok()?;
            listed.iter().any(|v| v.user == "bob").then_some(())
        }
    })
    .await
    .with_context(logs)?;
    api.revoke_share(session.id, share.id).await?;
    let (code, reason) = viewer::close_frame(&mut watcher.ws, Duration::from_secs(10))
        .await
        .with_context(logs)?;
    ensure!(
        code == 1008 && reason == "the share link was revoked",
        "{code} {reason}"
    );
    // The owner's viewer never noticed.
    owner.request_update(false, init.width, init.height).await?;
    owner.read_update(&init).await.with_context(logs)?;
    Ok(())
}
