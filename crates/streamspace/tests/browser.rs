//! The web UI in a real browser: Debian's headless Chromium, driven by Playwright
//! (`web/tests/e2e.mjs`), against a real `streamspace up` (control plane, local agent, Xvnc).
//!
//! The browser signs in with a username and password: the admin's, which `up` saved in the data
//! directory, or a user's created through the API; or through the real test OpenID provider's
//! own login page. Needs `node`, `npm ci` done in `web/` and
//! `/usr/bin/chromium` (or `$CHROMIUM`); without them
//! the tests fail, saying what is missing. Screenshots are kept in
//! `target/test-artifacts/browser/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{
    AuditFilter, CreateGroup, CreateTemplate, CreateUser, HomePolicy, LoginRequest, QuotaLimits,
    Role, SessionFilter, SessionRules, SessionState,
};
use streamspace_testkit::redis::RedisServer;
use streamspace_testkit::{OidcClient, OidcProvider, PgCluster, wait_until};
use uuid::Uuid;

/// The whole driver run, browser start to last assertion.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

/// A session's way to `running` (or `terminated`), or an agent's to a command.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails with what to install when the browser toolchain is missing.
fn check_toolchain() -> anyhow::Result<()> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        bail!("browser tests need Node.js (`node`): apt-get install -y nodejs npm");
    }
    let playwright = workspace_root().join("web/node_modules/playwright-core");
    if !playwright.is_dir() {
        bail!(
            "browser tests need the web UI's npm packages: run `npm ci` in {}",
            workspace_root().join("web").display()
        );
    }
    if !chromium().is_file() {
        bail!(
            "browser tests need Chromium at {} (apt-get install -y chromium, or set $CHROMIUM)",
            chromium().display()
        );
    }
    Ok(())
}

fn artifact(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("test-artifacts/browser");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(name))
}

/// Who the browser signs in as.
struct Login {
    username: String,
    password: String,
}

/// `streamspace up` on a fresh data dir; returns it with its URL, admin token and the admin's
/// sign-in (the password `up` saved).
async fn platform(h: &mut Harness) -> anyhow::Result<(Proc, String, String, Login)> {
    let (up, url, token, admin, _) = platform_in(h).await?;
    Ok((up, url, token, admin))
}

/// [`platform`], and its data directory.
async fn platform_in(h: &mut Harness) -> anyhow::Result<(Proc, String, String, Login, PathBuf)> {
    let (up, url, data) = h.up().await?;
    let read = |name: &str| -> anyhow::Result<String> {
        let path = data.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(text.trim().to_owned())
    };
    let token = read("admin-token")?;
    let admin = Login {
        username: "admin".to_owned(),
        password: read("admin-password")?,
    };
    let api = Client::new(&url, &token)?;
    wait_for_ready(&api).await.with_context(|| up.logs())?;
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    Ok((up, url, token, admin, data))
}

/// Runs one scenario of the driver; returns its output, or fails with it and the platform's logs.
async fn drive(
    logs: impl Fn() -> String,
    url: &str,
    token: &str,
    login: &Login,
    scenario: &str,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let screenshot = artifact(&format!("{name}.png"))?;
    let _ = std::fs::remove_file(&screenshot);
    let script = workspace_root().join("web/tests/e2e.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args(["--url", url, "--token", token, "--scenario", scenario])
        .args(["--username", &login.username, "--password", &login.password])
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--chromium")
        .arg(chromium())
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DRIVER_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("the browser driver ran over {DRIVER_TIMEOUT:?}"))?
        .context("starting node")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() || !stdout.contains(&format!("ok: {scenario}")) {
        bail!(
            "browser scenario {scenario} failed ({}); screenshot: {}\n--- driver stdout ---\n{stdout}\n--- driver stderr ---\n{stderr}\n{}",
            out.status,
            screenshot.display(),
            logs()
        );
    }
    assert!(
        screenshot.is_file(),
        "the driver kept a screenshot at {}",
        screenshot.display()
    );
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_viewing_plays_back_pauses_and_seeks() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, data) = h.up_with(&["--recording-policy", "always"]).await?;
    let token = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let admin = Login {
        username: "admin".to_owned(),
        password: std::fs::read_to_string(data.join("admin-password"))?
            .trim()
            .to_owned(),
    };
    let api = Client::new(&url, &token)?;
    wait_for_ready(&api).await.with_context(|| up.logs())?;
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "recording",
        "recording",
        &[],
    )
    .await?;
    assert!(
        out.contains("playback draws the recorded desktop, pauses and seeks"),
        "{out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ui_follows_a_session_through_hibernate_wake_and_stop() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "lifecycle",
        "lifecycle",
        &[],
    )
    .await?;
    for state in ["hibernated", "running", "terminated"] {
        assert!(
            out.contains(&format!("the sessions page shows {state}")),
            "{out}"
        );
    }
    assert!(
        out.contains("the remote desktop follows the browser window"),
        "{out}"
    );
    assert!(
        out.contains("the catalog groups templates by category"),
        "{out}"
    );
    assert!(
        out.contains("an operator edits a template on the Templates page"),
        "{out}"
    );
    assert!(
        out.contains("the overview shows this moment, the agent's load and the minutes sampled"),
        "{out}"
    );
    Ok(())
}

/// A file dropped on the viewer's files panel lands in the session's `~/Transfers` (the `up`
/// agent's sessions run as this machine's user, root in the tests), is listed, and downloads.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_dropped_in_the_browser_is_listed_and_downloads() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let marker = format!("marker{}", Uuid::now_v7().simple());
    let home = own_home()?;
    let landed = home.join("Transfers").join(format!("dropped-{marker}.txt"));
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "files",
        "files",
        &["--marker", &marker],
    )
    .await;
    let on_disk = std::fs::read_to_string(&landed);
    let _ = std::fs::remove_file(&landed);
    let out = out?;
    assert!(out.contains("the download holds what was dropped"), "{out}");
    assert_eq!(
        on_disk.ok().as_deref(),
        Some(marker.as_str()),
        "in ~/Transfers"
    );
    Ok(())
}

/// The owner makes a view-only share link in the viewer's share dialog; a second user opens it
/// in another browser context, signs in on the way, and watches with the "View only" badge
/// while their page sends no input; the owner sees and disconnects them (their page says who
/// did), then revokes the link, which refuses them; a link for other people and an expired one
/// are refused with their own messages.
#[tokio::test(flavor = "multi_thread")]
async fn a_view_only_link_from_the_share_dialog_is_watched_and_disconnected() -> anyhow::Result<()>
{
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let api = Client::new(&url, &token)?;
    let password = "wanda's password";
    api.create_user(&CreateUser {
        username: "wanda".to_owned(),
        role: Role::User,
        password: Some(password.to_owned()),
        ..CreateUser::default()
    })
    .await?;
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "sharing",
        "sharing",
        &["--new-user", "wanda", "--new-password", password],
    )
    .await?;
    assert!(
        out.contains("a view-only link is watched, the watcher disconnected, the link revoked"),
        "{out}"
    );
    // What the dialog and the pages did, as the audit log has it: three links made (in the
    // dialog, then one for other people and a short one), one revoked, one watcher disconnected,
    // and the watcher's viewer tokens (the short link may have opened once before it expired).
    for (action, made) in [
        ("session.share", 3..=3),
        ("session.unshare", 1..=1),
        ("session.disconnect_viewer", 1..=1),
        ("share.connect", 1..=2),
    ] {
        let filter = streamspace_proto::api::AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        };
        let entries = api.list_audit(&filter).await?;
        assert!(made.contains(&entries.items.len()), "{action}: {entries:?}");
    }
    Ok(())
}

/// The owner makes a control link; the watcher's page has the clipboard tools but not the files
/// panel (file transfer stays with the owner and operators). What the watcher sends from the
/// clipboard box is what the session's clipboard holds (read with `xclip` in the session), and
/// what the session copies reaches the watcher's box.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_link_watcher_uses_the_clipboard_both_ways() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let api = Client::new(&url, &token)?;
    let password = "carol's password";
    api.create_user(&CreateUser {
        username: "carol".to_owned(),
        role: Role::User,
        password: Some(password.to_owned()),
        ..CreateUser::default()
    })
    .await?;
    let file = h.path("clipboard-probe.txt");
    common::clipboard_template(&api, "clipboard-probe", &file, SessionRules::default()).await?;
    let marker = format!("marker{}", Uuid::now_v7().simple());
    let file_arg = file.display().to_string();
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "control",
        "control",
        &[
            "--new-user",
            "carol",
            "--new-password",
            password,
            "--template",
            "clipboard-probe",
            "--marker",
            &marker,
            "--marker-file",
            &file_arg,
        ],
    )
    .await?;
    assert!(
        out.contains("a control link's watcher pastes into the session and sees what it copies"),
        "{out}"
    );
    // The probe's own record: the session's clipboard held the marker the watcher sent.
    let lines = std::fs::read_to_string(&file)?;
    assert!(
        lines.lines().any(|l| l == format!("pasted:{marker}")),
        "{lines}"
    );
    let connects = api
        .list_audit(&AuditFilter {
            action: Some("share.connect".into()),
            actor: Some("carol".into()),
            ..AuditFilter::default()
        })
        .await?;
    assert!(
        !connects.items.is_empty(),
        "carol used the link: {connects:?}"
    );
    Ok(())
}

/// Two users with a home each (a session of a `persistent_home: user` template ran and
/// stopped); the admin deletes them on the Users page, which asks what to do with the home:
/// one is kept, the other (after a Cancel that deletes nothing) deleted with the user.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_with_a_home_asks_to_keep_or_delete_it() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin, data) = platform_in(&mut h).await?;
    let api = Client::new(&url, &token)?;
    api.create_template(&CreateTemplate {
        name: "home".into(),
        command: [
            "sh",
            "-c",
            r#"echo mine > "$HOME/notes.txt"; exec sleep 600"#,
        ]
        .map(str::to_owned)
        .to_vec(),
        persistent_home: HomePolicy::User,
        ..CreateTemplate::default()
    })
    .await?;
    let homes = data.join("agent").join("homes");
    let keeper = user_with_home(&api, &url, "keeper", &homes, || up.logs()).await?;
    let leaver = user_with_home(&api, &url, "leaver", &homes, || up.logs()).await?;
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "homes",
        "homes",
        &["--keep-user", "keeper", "--delete-user", "leaver"],
    )
    .await?;
    assert!(
        out.contains("deleting a user with a home keeps it, deletes it, or cancels, as asked"),
        "{out}"
    );
    for name in ["keeper", "leaver"] {
        let err = api.get_user(name).await.expect_err("the user is deleted");
        assert_eq!(err.code(), Some("not_found"), "{name}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(keeper.join("notes.txt"))
            .ok()
            .as_deref(),
        Some("mine\n"),
        "the kept home, with its file"
    );
    wait_until("leaver's home to be removed", SESSION_TIMEOUT, || {
        let gone = !leaver.exists();
        async move { gone.then_some(()) }
    })
    .await
    .with_context(|| up.logs())?;
    // Cancel deleted nothing: one deletion each, saying what became of the home.
    let deletions = api
        .list_audit(&AuditFilter {
            action: Some("user.delete".into()),
            ..AuditFilter::default()
        })
        .await?;
    let mut said: Vec<(String, String)> = deletions
        .items
        .iter()
        .map(|e| {
            (
                e.target.clone(),
                e.detail["home"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    said.sort();
    assert_eq!(
        said,
        [
            ("keeper".to_owned(), "keep".to_owned()),
            ("leaver".to_owned(), "delete".to_owned())
        ],
        "{deletions:?}"
    );
    Ok(())
}

/// Makes user `username`, runs and stops one session of the `home` template as them, and
/// returns their home (under `homes`) once the session wrote its file there.
async fn user_with_home(
    api: &Client,
    url: &str,
    username: &str,
    homes: &Path,
    logs: impl Fn() -> String,
) -> anyhow::Result<PathBuf> {
    let password = format!("{username}'s password");
    let user = api
        .create_user(&CreateUser {
            username: username.to_owned(),
            role: Role::User,
            password: Some(password.clone()),
            ..CreateUser::default()
        })
        .await?;
    let login = Client::new(url, "")?
        .login(&LoginRequest {
            username: username.to_owned(),
            password,
            totp: None,
            token_name: Some("browser test".to_owned()),
        })
        .await?;
    let token = login.token.context("sign-in returns a token")?.token;
    let own = Client::new(url, &token)?;
    let session = own.create_session("home").await?;
    let deadline = Instant::now() + SESSION_TIMEOUT;
    own.wait_for_session(session.id, SessionState::Running, deadline)
        .await
        .with_context(&logs)?;
    let home = homes.join(user.id.to_string());
    let notes = home.join("notes.txt");
    wait_until(
        &format!("{username}'s session to write its home"),
        SESSION_TIMEOUT,
        || {
            let written = notes.is_file();
            async move { written.then_some(()) }
        },
    )
    .await
    .with_context(&logs)?;
    own.stop_session(session.id).await?;
    own.wait_for_session(session.id, SessionState::Terminated, deadline)
        .await
        .with_context(&logs)?;
    Ok(home)
}

/// This process's user's home, from the password database (as the agent reads it).
fn own_home() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid.as_str()))
        .and_then(|fields| fields.get(5).map(PathBuf::from))
        .context("this user's home in /etc/passwd")
}

#[tokio::test(flavor = "multi_thread")]
async fn keystrokes_and_clipboard_in_the_browser_reach_the_session() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    type_through_the_browser(&h, || up.logs(), &url, &token, &admin, "keystrokes").await
}

/// The keystrokes scenario against `url`, then the checks on this machine (the agent's).
async fn type_through_the_browser(
    h: &Harness,
    logs: impl Fn() -> String,
    url: &str,
    token: &str,
    login: &Login,
    name: &str,
) -> anyhow::Result<()> {
    let marker = format!("marker{}", Uuid::now_v7().simple());
    let file = h.path("typed-through-novnc.txt");
    let file_arg = file.display().to_string();
    let out = drive(
        logs,
        url,
        token,
        login,
        "keystrokes",
        name,
        &["--marker", &marker, "--marker-file", &file_arg],
    )
    .await?;
    assert!(
        out.contains("stopping the session ends the viewer"),
        "{out}"
    );
    assert!(
        out.contains("the paste button takes the browser's clipboard"),
        "{out}"
    );
    // The agent runs on this machine: the shell in the session's xterm wrote the file.
    let written =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    assert_eq!(written.trim(), marker);
    // …and the clipboard box's text, pasted into it. The driver held the file at exactly the
    // marker before going on; a paste it repeated meanwhile may still land on one line with
    // another and rewrite the file as `MARKER MARKER` (two echo arguments), which is the same
    // proof: only the pasted text can put the marker there.
    let pasted = std::fs::read_to_string(h.path("typed-through-novnc.txt.pasted"))
        .context("reading the file the pasted command wrote")?;
    let words: Vec<&str> = pasted.split_whitespace().collect();
    assert!(
        !words.is_empty() && words.iter().all(|w| *w == marker),
        "{pasted:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keystrokes_reach_an_agent_on_another_replica() -> anyhow::Result<()> {
    check_toolchain()?;
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let args = ["--redis-url", &redis.url(), "--heartbeat-interval", "1"];
    let (a, url_a) = h.replica(&db, "A", "127.0.0.1:0", &args).await?;
    let (b, url_b) = h.replica(&db, "B", "127.0.0.1:0", &args).await?;
    let api_a = Client::new(&url_a, ADMIN_TOKEN)?;
    let api_b = Client::new(&url_b, ADMIN_TOKEN)?;
    wait_for_ready(&api_a).await.with_context(|| a.logs())?;
    wait_for_ready(&api_b).await.with_context(|| b.logs())?;
    // The agent is held by replica A; the browser only ever talks to replica B.
    let key = api_a.create_agent_key("edge-a").await?;
    let agent = h.agent(&url_a, "edge-a", &key.secret, &h.path("agent-state"))?;
    wait_for_agent_online(&api_b, "edge-a")
        .await
        .with_context(|| agent.logs())?;
    assert_eq!(
        api_b.get_agent("edge-a").await?.replica_id.as_deref(),
        Some("A")
    );
    // A plain user, signed in on replica B, types into their own session.
    let user = Login {
        username: "alice".to_owned(),
        password: "alice's password".to_owned(),
    };
    api_a
        .create_user(&CreateUser {
            username: user.username.clone(),
            role: Role::User,
            password: Some(user.password.clone()),
            ..CreateUser::default()
        })
        .await?;
    let logs = || format!("{}\n{}\n{}", a.logs(), b.logs(), agent.logs());
    let name = "keystrokes-cross-replica";
    type_through_the_browser(&h, logs, &url_b, ADMIN_TOKEN, &user, name).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_creates_a_user_who_sees_only_their_own() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    // A session of the admin's, which the new user must not see.
    let api = Client::new(&url, &token)?;
    let admins = api.create_session("xterm").await?;
    let other = admins.id.to_string();
    let out = drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "users",
        "users",
        &[
            "--new-user",
            "bob",
            "--new-password",
            "bob's password",
            "--other-session",
            &other,
        ],
    )
    .await?;
    assert!(
        out.contains("My sessions shows the user's session"),
        "{out}"
    );
    // What the pages did, as the API sees it.
    let bob = api.get_user("bob").await?;
    assert_eq!(bob.role, Role::User, "the Users page created a plain user");
    assert_eq!(bob.groups, ["staff"], "the Groups page added bob to staff");
    let filter = SessionFilter {
        owner: Some("bob".into()),
        ..SessionFilter::default()
    };
    let bobs = api.list_sessions(&filter).await?;
    assert_eq!(bobs.len(), 1, "bob launched one session: {bobs:?}");
    Ok(())
}

/// The admin turns on two-step sign-in on its page, signs in again with a code computed by the
/// driver from the secret shown, and turns it off with the password.
#[tokio::test(flavor = "multi_thread")]
async fn two_step_sign_in_is_turned_on_used_and_turned_off() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    drive(|| up.logs(), &url, &token, &admin, "totp", "totp", &[]).await?;
    let api = Client::new(&url, &token)?;
    assert!(
        !api.get_user("admin").await?.totp_enabled,
        "turned off at the end"
    );
    let filter = streamspace_proto::api::AuditFilter {
        action: Some("auth.totp_enable".into()),
        ..Default::default()
    };
    let enabled = api.list_audit(&filter).await?;
    assert_eq!(enabled.items.len(), 1, "{enabled:?}");
    Ok(())
}

/// An admin sets a group's quota on the Groups page (and sets and clears a member's own limit on
/// the Users page); the member sees the limit on their profile and the catalog, and a launch
/// beyond it is refused with a message that says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_quota_set_in_the_ui_limits_its_members() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let api = Client::new(&url, &token)?;
    let password = "carol's password";
    api.create_user(&CreateUser {
        username: "carol".to_owned(),
        role: Role::User,
        password: Some(password.to_owned()),
        ..CreateUser::default()
    })
    .await?;
    api.create_group(&CreateGroup {
        name: "team".to_owned(),
        ..CreateGroup::default()
    })
    .await?;
    api.add_group_member("team", "carol").await?;
    drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "quotas",
        "quotas",
        &[
            "--new-user",
            "carol",
            "--new-password",
            password,
            "--group",
            "team",
        ],
    )
    .await?;
    let team = api.get_group_quota("team").await?;
    let set_in_the_ui = QuotaLimits {
        max_sessions: Some(1),
        max_memory_mib: Some(3072),
        ..QuotaLimits::default()
    };
    assert_eq!(team.limits, set_in_the_ui, "what the Groups page set");
    let carol = api.get_user_quota("carol").await?;
    assert_eq!(
        carol.limits,
        QuotaLimits::default(),
        "the Users page cleared carol's own limits"
    );
    assert_eq!(carol.effective.max_sessions, Some(1), "{carol:?}");
    let filter = SessionFilter {
        owner: Some("carol".into()),
        ..SessionFilter::default()
    };
    let sessions = api.list_sessions(&filter).await?;
    assert_eq!(
        sessions.len(),
        1,
        "the launch beyond the quota made no session: {sessions:?}"
    );
    Ok(())
}

/// The admin's own actions show on the Audit page, which filters by action and actor and pages
/// through more than one page with Older and Newer.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_page_shows_and_filters_the_admins_actions() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    let (up, url, token, admin) = platform(&mut h).await?;
    let api = Client::new(&url, &token)?;
    // More `group.create` entries than one page of the Audit page (50) holds.
    for i in 0..55 {
        api.create_group(&CreateGroup {
            name: format!("bulk-{i:02}"),
            ..CreateGroup::default()
        })
        .await?;
    }
    drive(
        || up.logs(),
        &url,
        &token,
        &admin,
        "audit",
        "audit",
        &["--group", "auditors"],
    )
    .await?;
    Ok(())
}
/// Single sign-on end to end: a control plane configured (by flags) with the real test
/// provider, the sign-in page's button for it, the provider's own login page, back signed in,
/// a session launched and its desktop in the viewer.
#[tokio::test(flavor = "multi_thread")]
async fn signs_in_through_a_provider_and_sees_the_desktop() -> anyhow::Result<()> {
    check_toolchain()?;
    let mut h = common::harness()?;
    // The provider must know the redirect URI before the server starts: pick its port first.
    let listen = format!("127.0.0.1:{}", streamspace_testkit::free_port()?);
    let public_url = format!("http://{listen}");
    let idp = OidcProvider::start(&[OidcClient {
        client_id: "streamspace".into(),
        client_secret: "browser-test-secret".into(),
        redirect_uri: format!("{public_url}/api/v1/auth/oidc/corp/callback"),
    }])?;
    idp.set_account(
        "carol",
        serde_json::json!({ "groups": ["staff"], "name": "Carol" }),
    )?;
    let secret = h.path("client-secret");
    std::fs::write(&secret, "browser-test-secret\n")?;
    let secret = secret.display().to_string();
    let db = streamspace_testkit::sqlite_url(&h.path("streamspace.db"));
    let args = [
        "--public-url",
        &public_url,
        "--oidc-id",
        "corp",
        "--oidc-display-name",
        "Corporate sign-in",
        "--oidc-issuer",
        &idp.issuer,
        "--oidc-client-id",
        "streamspace",
        "--oidc-client-secret-file",
        &secret,
        "--oidc-scopes",
        "profile,email,groups",
        "--oidc-groups-claim",
        "groups",
        "--oidc-group-map",
        "staff=staff",
    ];
    let (server, url) = h.replica(&db, "e2e-a", &listen, &args).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("local").await?;
    let agent = h.agent(&url, "local", &key.secret, &h.path("agent-state"))?;
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| agent.logs())?;
    let carol = Login {
        username: "carol".to_owned(),
        password: "any password".to_owned(),
    };
    let logs = || format!("{}\n{}\n{}", server.logs(), agent.logs(), idp.log());
    let out = drive(
        logs,
        &url,
        ADMIN_TOKEN,
        &carol,
        "sso",
        "sso",
        &["--provider-id", "corp", "--expect-username", "carol"],
    )
    .await?;
    assert!(out.contains("the desktop of"), "{out}");
    let user = api.get_user("carol").await?;
    assert_eq!(
        (user.groups, user.has_password),
        (vec!["staff".to_owned()], false),
        "the provider's user, with the mapped group"
    );
    let sessions = api
        .list_sessions(&SessionFilter {
            owner: Some("carol".into()),
            ..SessionFilter::default()
        })
        .await?;
    assert_eq!(
        sessions.len(),
        1,
        "carol launched one session: {sessions:?}"
    );
    Ok(())
}
