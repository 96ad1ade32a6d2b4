//! File transfer end to end: a real `streamspace server`, a real agent (root, running sessions
//! as `nobody`, as a shared host would), real Xvnc sessions, and files going in and out through
//! the API and `streamspace session cp`.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::{Client, ClientError};
use streamspace_proto::api::SessionState;
use uuid::Uuid;

const START_TIMEOUT: Duration = Duration::from_secs(40);
/// The server's `--transfer-max-bytes` in these tests.
const LIMIT: u64 = 1024 * 1024;
const NOBODY: u32 = 65534;

/// A server (with `extra` flags), an agent running sessions as nobody with its transfer
/// folder under `home`, and one running xterm session.
struct Platform {
    server: Proc,
    agent: Proc,
    url: String,
    api: Client,
    session: Uuid,
    /// The transfer folder.
    folder: PathBuf,
}

impl Platform {
    fn logs(&self) -> String {
        format!("{}\n{}", self.server.logs(), self.agent.logs())
    }
}

async fn platform(h: &mut Harness, extra: &[&str]) -> anyhow::Result<Platform> {
    let db = h.sqlite_url();
    let limit = LIMIT.to_string();
    let mut args = vec!["--heartbeat-interval", "1", "--transfer-max-bytes", &limit];
    args.extend_from_slice(extra);
    let (server, url) = h.server(&db, &args).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    // The tag keeps the sessions' processes findable as this harness's (see streaming.rs).
    let agent_id = format!("files-{}", h.tag);
    let key = api.create_agent_key(&agent_id).await?;
    let home = h.path("home");
    std::fs::create_dir_all(&home)?;
    let home_arg = home.display().to_string();
    let agent = h.agent_with(
        &url,
        &agent_id,
        &key.secret,
        &h.path("agent-state"),
        &["--run-as", "nobody", "--transfer-home", &home_arg],
    )?;
    wait_for_agent_online(&api, &agent_id)
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    let session = api.create_session("xterm").await?.id;
    api.wait_for_session(
        session,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    Ok(Platform {
        server,
        agent,
        url,
        api,
        session,
        folder: home.join("Transfers"),
    })
}

/// Bytes that are not all alike, so an offset mistake shows.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn upload(api: &Client, session: Uuid, path: &str, body: &[u8]) -> Result<u64, ClientError> {
    let dir = tempfile::tempdir().map_err(|source| ClientError::Local {
        what: "temp dir".into(),
        source,
    })?;
    let local = dir.path().join("upload");
    std::fs::write(&local, body).map_err(|source| ClientError::Local {
        what: "writing".into(),
        source,
    })?;
    let file = tokio::fs::File::open(&local)
        .await
        .map_err(|source| ClientError::Local {
            what: "opening".into(),
            source,
        })?;
    api.upload_file(session, path, file, body.len() as u64)
        .await
        .map(|done| done.bytes)
}

async fn download(api: &Client, session: Uuid, path: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    api.download_file(session, path, &mut out).await?;
    Ok(out)
}

/// The names in the transfer folder, hidden ones included.
fn names(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(folder)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

fn code(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(e) => e
            .code()
            .map_or_else(|| format!("<no API code: {e:#}>"), str::to_owned),
        Ok(v) => format!("<succeeded: {v:?}>"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_go_in_and_out_of_a_process_session_and_nowhere_else() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let p = platform(&mut h, &[]).await?;
    let (api, id) = (&p.api, p.session);

    // In: the file is in ~/Transfers, whole, and belongs to the session's user.
    let body = content(300_000);
    let written = upload(api, id, "report.bin", &body).await;
    assert_eq!(written.ok(), Some(body.len() as u64), "{}", p.logs());
    let on_disk = p.folder.join("report.bin");
    assert_eq!(std::fs::read(&on_disk)?, body, "the uploaded bytes");
    assert_eq!(
        std::fs::metadata(&on_disk)?.uid(),
        NOBODY,
        "owned by nobody"
    );
    assert_eq!(
        std::fs::metadata(&p.folder)?.uid(),
        NOBODY,
        "the folder too"
    );
    upload(api, id, "docs/notes.txt", b"notes").await?;
    assert_eq!(std::fs::read(p.folder.join("docs/notes.txt"))?, b"notes");

    // Listed, and out again.
    let listing = api.list_files(id).await?;
    let listed: Vec<(&str, u64)> = listing
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.size))
        .collect();
    assert_eq!(listed, [("docs", 0), ("report.bin", 300_000)]);
    assert_eq!(download(api, id, "report.bin").await?, body);
    assert_eq!(code(download(api, id, "missing.txt").await), "not_found");

    // `..` never leaves the folder: refused by the client, and by the server for a raw
    // request that smuggles it in one encoded segment.
    assert!(matches!(
        upload(api, id, "../x", b"x").await,
        Err(ClientError::InvalidPath { .. })
    ));
    let raw = reqwest::Client::new()
        .put(format!("{}/api/v1/sessions/{id}/files/..%2Fescaped", p.url))
        .bearer_auth(ADMIN_TOKEN)
        .body("x")
        .send()
        .await?;
    assert_eq!(raw.status(), 400);
    let error: serde_json::Value = raw.json().await?;
    assert_eq!(error["error"]["code"], "invalid_path", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`path`")),
        "the error names the field: {error}"
    );
    assert!(!h.path("home").join("escaped").exists());

    // Links planted by the session's user lead nowhere: not out, not in.
    let outside = h.path("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret"), "secret")?;
    for (link, target) in [("out", outside.clone()), ("pw", outside.join("secret"))] {
        let at = p.folder.join(link);
        std::os::unix::fs::symlink(&target, &at)?;
        std::os::unix::fs::lchown(&at, Some(NOBODY), None)?;
    }
    assert_eq!(code(download(api, id, "out/secret").await), "invalid_path");
    assert_eq!(code(download(api, id, "pw").await), "invalid_path");
    assert_eq!(
        code(upload(api, id, "out/planted", b"x").await),
        "invalid_path"
    );
    assert_eq!(
        code(upload(api, id, "pw", b"overwritten").await),
        "invalid_path"
    );
    assert_eq!(std::fs::read_to_string(outside.join("secret"))?, "secret");
    assert!(!outside.join("planted").exists());

    // Over the limit: refused up front when the size is declared, and mid-stream when it is
    // not; either way nothing is left behind.
    let before = names(&p.folder)?;
    let big = content(usize::try_from(LIMIT)? + 1);
    assert_eq!(code(upload(api, id, "big.bin", &big).await), "too_large");
    let status = chunked_upload(&p.url, id, "big.bin", &big)?;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}\n{}", p.logs());
    assert_eq!(names(&p.folder)?, before, "no file and no temporary file");

    // Every transfer is in the audit log with its path, size and outcome.
    let audit = api
        .list_audit(&streamspace_proto::api::AuditFilter {
            action: Some("session.file_upload".into()),
            ..Default::default()
        })
        .await?;
    let report = audit
        .items
        .iter()
        .find(|r| r.detail["path"] == "report.bin")
        .context("the upload of report.bin is audited")?;
    assert_eq!(report.target, id.to_string());
    assert_eq!(report.detail["bytes"], 300_000);
    assert_eq!(report.detail["outcome"], "done");
    assert!(
        audit
            .items
            .iter()
            .any(|r| r.detail["path"] == "big.bin" && r.detail["outcome"] == "too_large"),
        "refusals are audited too: {:?}",
        audit.items
    );

    // The CLI, both ways.
    let local = h.path("from-cli.txt");
    std::fs::write(&local, "via the command line")?;
    let target = format!("{id}:cli/");
    let out = cli(
        &p.url,
        &["session", "cp", &local.display().to_string(), &target],
    )?;
    assert!(out.contains("uploaded 20 bytes"), "{out}");
    assert_eq!(
        std::fs::read_to_string(p.folder.join("cli/from-cli.txt"))?,
        "via the command line"
    );
    let back = h.path("back");
    std::fs::create_dir_all(&back)?;
    let source = format!("{id}:report.bin");
    cli(
        &p.url,
        &["session", "cp", &source, &back.display().to_string()],
    )?;
    assert_eq!(std::fs::read(back.join("report.bin"))?, body);
    let listed = cli(&p.url, &["session", "ls", &id.to_string()])?;
    assert!(
        listed.contains("report.bin") && listed.contains("cli"),
        "{listed}"
    );
    Ok(())
}

/// Each transfer policy refuses the other way, before any byte moves.
#[tokio::test(flavor = "multi_thread")]
async fn the_transfer_policy_refuses_the_other_way() -> anyhow::Result<()> {
    for (policy, upload_ok, download_ok) in [
        ("upload", true, false),
        ("download", false, true),
        ("none", false, false),
    ] {
        let mut h = common::harness()?;
        let p = platform(&mut h, &["--file-transfer-policy", policy]).await?;
        std::fs::create_dir_all(&p.folder)?;
        std::fs::write(p.folder.join("there.txt"), "there")?;
        std::os::unix::fs::chown(p.folder.join("there.txt"), Some(NOBODY), None)?;
        let up = code(upload(&p.api, p.session, "new.txt", b"new").await);
        let down = code(download(&p.api, p.session, "there.txt").await);
        let expect = |ok: bool| {
            if ok {
                "<succeeded"
            } else {
                "transfer_forbidden"
            }
        };
        assert!(up.starts_with(expect(upload_ok)), "{policy}: upload {up}");
        assert!(
            down.starts_with(expect(download_ok)),
            "{policy}: download {down}"
        );
        assert_eq!(p.folder.join("new.txt").exists(), upload_ok, "{policy}");
        let list = code(p.api.list_files(p.session).await);
        assert_eq!(
            list.starts_with("<succeeded"),
            policy != "none",
            "{policy}: {list}"
        );
    }
    Ok(())
}

/// Sends `body` as a chunked request (no `Content-Length`, so only counting stops it) and
/// returns the status line.
fn chunked_upload(url: &str, id: Uuid, path: &str, body: &[u8]) -> anyhow::Result<String> {
    let host = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "PUT /api/v1/sessions/{id}/files/{path} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )?;
    for chunk in body.chunks(64 * 1024) {
        // The server may answer and close before all is sent: that is the point.
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Runs the CLI against `url` as the admin; its standard output.
fn cli(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(common::BIN)
        .args(args)
        .args(["--server", url, "--token", ADMIN_TOKEN])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// Two replicas on one database and one Redis: the agent holds its control connection to the
/// first, the requests go to the second, which asks the first to send `transfer_open`; the data
/// connection lands on the first and is forwarded to the second (one hop).
#[tokio::test(flavor = "multi_thread")]
async fn files_travel_when_the_request_is_on_another_replica() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let pg = streamspace_testkit::PgCluster::start()?;
    let redis = streamspace_testkit::redis::RedisServer::start()?;
    let db = pg.create_database()?;
    let redis_url = redis.url();
    let args = [
        "--redis-url",
        redis_url.as_str(),
        "--heartbeat-interval",
        "1",
    ];
    let (r1, url1) = h.replica(&db, "R1", "127.0.0.1:0", &args).await?;
    let (r2, url2) = h.replica(&db, "R2", "127.0.0.1:0", &args).await?;
    let (api1, api2) = (
        Client::new(&url1, ADMIN_TOKEN)?,
        Client::new(&url2, ADMIN_TOKEN)?,
    );
    wait_for_ready(&api1).await.with_context(|| r1.logs())?;
    wait_for_ready(&api2).await.with_context(|| r2.logs())?;
    let agent_id = format!("hop-{}", h.tag);
    let key = api1.create_agent_key(&agent_id).await?;
    let home = h.path("home");
    std::fs::create_dir_all(&home)?;
    let home_arg = home.display().to_string();
    let agent = h.agent_with(
        &url1,
        &agent_id,
        &key.secret,
        &h.path("agent-state"),
        &["--run-as", "nobody", "--transfer-home", &home_arg],
    )?;
    let logs = || format!("{}\n{}\n{}", r1.logs(), r2.logs(), agent.logs());
    wait_for_agent_online(&api1, &agent_id)
        .await
        .with_context(logs)?;
    let session = api2.create_session("xterm").await?.id;
    api2.wait_for_session(
        session,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;

    let body = content(700_000);
    let written = upload(&api2, session, "far.bin", &body).await;
    assert_eq!(written.ok(), Some(body.len() as u64), "{}", logs());
    assert_eq!(std::fs::read(home.join("Transfers/far.bin"))?, body);
    assert_eq!(
        download(&api2, session, "far.bin").await?,
        body,
        "{}",
        logs()
    );
    let listing = api2.list_files(session).await?;
    assert_eq!(listing.entries.len(), 1, "{listing:?}");
    assert!(matches!(
        download(&api2, session, "../x").await,
        Err(ClientError::InvalidPath { .. })
    ));
    assert_eq!(code(download(&api2, session, "nope").await), "not_found");
    Ok(())
}

/// The Kubernetes runtime's transfer sidecar as the pod runs it: `streamspace
/// transfer-sidecar`, its token from the environment only, serving `--home`'s `Transfers/` to
/// the agent's client and to no one without the token; and refusing to start without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_transfer_sidecar_process_serves_its_folder_to_the_token_only() -> anyhow::Result<()> {
    use streamspace_agent::transfer::TransferFolder;
    use streamspace_agent::transfer::remote::RemoteFolder;

    let mut h = common::harness()?;
    let home = h.path("volume");
    std::fs::create_dir_all(&home)?;
    let home_arg = home.display().to_string();
    let args = [
        "transfer-sidecar",
        "--listen",
        "127.0.0.1:0",
        "--home",
        &home_arg,
    ];

    let mut tokenless = h.spawn("sidecar-no-token", &args, &[])?;
    let status = tokenless.wait_for_exit().await?;
    assert!(!status.success());
    assert!(
        tokenless
            .logs()
            .contains("STREAMSPACE_TRANSFER_TOKEN is not set"),
        "{}",
        tokenless.logs()
    );

    let sidecar = h.spawn(
        "sidecar",
        &args,
        &[("STREAMSPACE_TRANSFER_TOKEN", "a-session-token")],
    )?;
    let line = sidecar
        .wait_for_stderr("serving the session's transfer folder")
        .await?;
    // The log line may be coloured: take the address itself.
    let at = line
        .find("127.0.0.1:")
        .with_context(|| format!("no address in {line:?}"))?;
    let address: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();

    let folder = RemoteFolder::new(&address, "a-session-token");
    let mut upload = folder.upload("in.txt", Uuid::now_v7()).await?;
    upload.write(b"through the sidecar").await?;
    upload.commit().await?;
    assert_eq!(
        std::fs::read(home.join("Transfers/in.txt"))?,
        b"through the sidecar"
    );
    let listing = folder.list().await?;
    assert_eq!(listing.entries.len(), 1, "{listing:?}");

    let stranger = RemoteFolder::new(&address, "a-guess");
    assert!(stranger.list().await.is_err());
    assert!(stranger.download("in.txt").await.is_err());
    assert!(
        sidecar.logs().contains("refused the agent's token"),
        "{}",
        sidecar.logs()
    );
    Ok(())
}
