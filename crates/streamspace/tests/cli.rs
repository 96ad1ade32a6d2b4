//! The command line as an operator uses it: migrations through the one migrator, and errors
//! that say what went wrong.

mod common;

use std::process::{Command, Output};

use anyhow::Context;
use streamspace_testkit::PgCluster;

fn streamspace(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(common::BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STREAMSPACE_TOKEN")
        .env_remove("STREAMSPACE_SERVER")
        .output()
        .context("running streamspace")
}

fn ok(args: &[&str]) -> anyhow::Result<String> {
    let out = streamspace(args)?;
    anyhow::ensure!(
        out.status.success(),
        "streamspace {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// (version, state) pairs from `migrate status`.
fn status(url: &str) -> anyhow::Result<Vec<(i64, String)>> {
    ok(&["migrate", "status", "--database-url", url])?
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let version = words.next().context("version")?.parse()?;
            let state = words.next().context("state")?.to_owned();
            Ok((version, state))
        })
        .collect()
}

fn migrate_round_trip(url: &str) -> anyhow::Result<()> {
    let before = status(url)?;
    assert!(before.len() >= 2, "at least two migrations: {before:?}");
    assert!(before.iter().all(|(_, s)| s == "pending"), "{before:?}");

    let applied = ok(&["migrate", "up", "--database-url", url])?;
    assert_eq!(applied.lines().count(), before.len(), "{applied}");
    assert!(status(url)?.iter().all(|(_, s)| s == "applied"));
    assert_eq!(
        ok(&["migrate", "up", "--database-url", url])?.trim(),
        "database is up to date"
    );

    let newest = before.last().map(|(v, _)| *v).context("a migration")?;
    let reverted = ok(&["migrate", "down", "--database-url", url])?;
    assert_eq!(reverted.trim(), format!("reverted {newest}"));
    let after_down = status(url)?;
    assert_eq!(after_down.last(), Some(&(newest, "pending".to_owned())));
    assert!(
        after_down[..after_down.len() - 1]
            .iter()
            .all(|(_, s)| s == "applied")
    );

    ok(&["migrate", "up", "--database-url", url])?;
    assert!(status(url)?.iter().all(|(_, s)| s == "applied"));
    Ok(())
}

#[test]
fn migrate_applies_reverts_and_reports_on_postgres() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    migrate_round_trip(&pg.create_database()?)
}

#[test]
fn migrate_applies_reverts_and_reports_on_sqlite() -> anyhow::Result<()> {
    let db = streamspace_testkit::TestDatabase::sqlite()?;
    migrate_round_trip(db.url())
}

#[test]
fn server_with_no_migrate_on_an_empty_database_fails_clearly() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let url = pg.create_database()?;
    let out = streamspace(&[
        "server",
        "--database-url",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--no-migrate",
    ])?;
    assert!(
        !out.status.success(),
        "a server without its schema must not start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema is not up to date") && stderr.contains("migrate up"),
        "{stderr}"
    );
    Ok(())
}

/// A server that generates the first admin token writes it to a file only readable by its
/// user and says where; the token itself appears in none of its output (on Kubernetes, the pod
/// log), and it works.
#[tokio::test(flavor = "multi_thread")]
async fn a_generated_admin_token_is_written_to_a_file_never_printed() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let data = h.path("server-data");
    let data_arg = data.display().to_string();
    let args = [
        "server",
        "--database-url",
        &db,
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_arg,
    ];
    let server = h.spawn("server", &args, &[])?;
    let url = server.server_url().await?;
    let line = server.wait_for_stdout("admin token").await?;
    let path = data.join("admin-token");
    assert!(
        line.contains(&path.display().to_string()),
        "the server did not say where the token is: {line}"
    );
    let token = std::fs::read_to_string(&path)?.trim().to_owned();
    assert!(token.starts_with("ssa_"), "not an admin token: {token}");
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the admin token file must be private");
    let api = streamspace_client::Client::new(&url, &token)?;
    common::wait_for_ready(&api).await?;
    api.me().await.context("the saved admin token signs in")?;
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&server.stdout)?,
        std::fs::read_to_string(&server.stderr)?
    );
    assert!(
        !output.contains(&token),
        "the admin token appeared in the server's output:\n{output}"
    );
    assert!(
        !output.contains(&token[4..16]),
        "part of the admin token appeared in the server's output:\n{output}"
    );
    Ok(())
}

#[test]
fn client_errors_name_the_problem() -> anyhow::Result<()> {
    let out = streamspace(&[
        "session",
        "list",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "ssa_x",
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not reach the control plane at http://127.0.0.1:9"),
        "{stderr}"
    );

    let out = streamspace(&["migrate", "status", "--database-url", "mysql://nope"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    Ok(())
}

/// Passwords in the database and Redis URLs appear neither in help (whose env values would
/// show them) nor in errors that quote the URLs.
#[test]
fn passwords_in_connection_urls_are_never_printed() -> anyhow::Result<()> {
    const SECRET: &str = "url-password-e41f";
    let database = format!("postgres://app:{SECRET}@db.example/streamspace");
    let redis = format!("rediss://streamspace:{SECRET}@redis.example:6380/");
    for args in [&["server", "--help"][..], &["migrate", "status", "--help"]] {
        let out = Command::new(common::BIN)
            .args(args)
            .env("DATABASE_URL", &database)
            .env("REDIS_URL", &redis)
            .output()?;
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(printed.contains("DATABASE_URL"), "{printed}");
        assert!(
            !printed.contains(SECRET),
            "{args:?} shows a password:\n{printed}"
        );
    }

    let mysql = format!("mysql://app:{SECRET}@db.example/streamspace");
    let out = streamspace(&["migrate", "status", "--database-url", &mysql])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unsupported database URL \"mysql://app:***@db.example/streamspace\""),
        "{stderr}"
    );

    let dir = tempfile::tempdir()?;
    let sqlite = streamspace_testkit::sqlite_url(&dir.path().join("db.sqlite"));
    let bad_sentinel = format!("redis+sentinel://app:{SECRET}@s1:port/master");
    let out = streamspace(&[
        "server",
        "--database-url",
        &sqlite,
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        &bad_sentinel,
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an invalid Redis URL was accepted");
    assert!(stderr.contains("invalid Redis configuration"), "{stderr}");
    for output in [&stderr, &String::from_utf8_lossy(&out.stdout)] {
        assert!(
            !output.contains(SECRET),
            "a password was printed:\n{output}"
        );
    }
    Ok(())
}

/// `streamspace openapi` prints the API document a server serves, with no server running.
#[test]
fn openapi_prints_the_api_document_without_a_server() -> anyhow::Result<()> {
    let out = ok(&["openapi"])?;
    let doc: serde_json::Value = serde_json::from_str(&out).context("the output is JSON")?;
    assert_eq!(doc["openapi"], "3.1.0", "not OpenAPI 3.1");
    assert!(
        doc["paths"]["/api/v1/sessions"]["post"].is_object(),
        "no POST /api/v1/sessions in: {out}"
    );
    assert_eq!(
        out.trim_end(),
        streamspace_server::openapi::document_json(),
        "the CLI prints another document than the server serves"
    );
    Ok(())
}

/// Runs `streamspace ARGS…` as a person with their own configuration directory (where `login`
/// saves its token), feeding `stdin`.
fn as_person(config_home: &std::path::Path, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    use std::io::Write;
    let mut child = Command::new(common::BIN)
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env("HOME", config_home)
        .env_remove("STREAMSPACE_TOKEN")
        .env_remove("STREAMSPACE_SERVER")
        .env_remove("STREAMSPACE_DATA_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running streamspace")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    Ok(child.wait_with_output()?)
}

fn succeeded(out: &Output, what: &str) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into_owned())))
}

/// Bob turns on one-time codes: `login` then needs one (asked for, which fails without a
/// terminal, or given with `--totp`), and `totp disable` turns them off again.
async fn bob_signs_in_with_a_one_time_code(
    url: &str,
    bob_home: &std::path::Path,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(bob_home.join("streamspace").join("token"))?;
    let api = streamspace_client::Client::new(url, token.trim())?;
    let enrolment = api.start_totp().await?;
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&enrolment.secret)?)
        .build()?;
    let step = |offset: u64| -> anyhow::Result<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        Ok(totp
            .generate((now.as_secs() / 30 + offset - 1) * 30)
            .to_string())
    };
    api.confirm_totp(&step(0)?).await?;
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "-u", "bob", "--password-stdin", "--server", url];
        args.extend(extra);
        as_person(bob_home, &args, "bob-password-1\n")
    };
    let asked = login(&[])?;
    anyhow::ensure!(
        !asked.status.success() && String::from_utf8_lossy(&asked.stderr).contains("One-time code"),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    succeeded(&login(&["--totp", &step(1)?])?, "bob login with a code")?;
    succeeded(
        &as_person(
            bob_home,
            &["totp", "disable", "--password-stdin", "--server", url],
            "bob-password-1\n",
        )?,
        "totp disable",
    )?;
    succeeded(&login(&[])?, "bob login without a code")?;
    Ok(())
}

/// Two people on one `streamspace up`: the admin creates users with the CLI, each signs in with
/// a password, launches, lists and is kept out of the other's session; tokens are created and
/// revoked; disabling a user stops their saved token; signing out forgets it.
#[tokio::test(flavor = "multi_thread")]
async fn two_users_sign_in_and_keep_to_their_own_sessions() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = common::harness()?;
    let (up, url, data) = h.up().await?;
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let api = streamspace_client::Client::new(&url, &admin)?;
    common::wait_for_ready(&api)
        .await
        .with_context(|| up.logs())?;
    common::wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    let admin_home = h.path("admin-home");
    let alice_home = h.path("alice-home");
    let bob_home = h.path("bob-home");
    for dir in [&admin_home, &alice_home, &bob_home] {
        std::fs::create_dir_all(dir)?;
    }
    let s = ["--server", url.as_str()];
    let admin_cmd = |args: &[&str], stdin: &str| {
        let mut all = args.to_vec();
        all.extend([
            "--server",
            url.as_str(),
            "--token",
            admin.as_str(),
            "-o",
            "json",
        ]);
        as_person(&admin_home, &all, stdin)
    };
    for (name, role) in [("alice", "user"), ("bob", "user")] {
        let out = admin_cmd(
            &["user", "create", name, "--role", role, "--password-stdin"],
            &format!("{name}-password-1\n"),
        )?;
        let user = succeeded(&out, "user create")?;
        anyhow::ensure!(
            user["username"] == name && user["has_password"] == true,
            "{user}"
        );
    }

    let login = |home: &std::path::Path, name: &str, password: &str| {
        as_person(
            home,
            &["login", "-u", name, "--password-stdin", s[0], s[1]],
            &format!("{password}\n"),
        )
    };
    let wrong = login(&alice_home, "alice", "not-her-password")?;
    anyhow::ensure!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr).contains("wrong username or password"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    succeeded(
        &login(&alice_home, "alice", "alice-password-1")?,
        "alice login",
    )?;
    succeeded(&login(&bob_home, "bob", "bob-password-1")?, "bob login")?;
    bob_signs_in_with_a_one_time_code(&url, &bob_home).await?;
    let saved = alice_home.join("streamspace").join("token");
    anyhow::ensure!(
        std::fs::metadata(&saved)?.permissions().mode() & 0o777 == 0o600,
        "the saved token is private"
    );
    let whoami = succeeded(
        &as_person(&alice_home, &["whoami", s[0], s[1], "-o", "json"], "")?,
        "whoami",
    )?;
    anyhow::ensure!(
        whoami["username"] == "alice" && whoami["role"] == "user",
        "{whoami}"
    );

    let created = succeeded(
        &as_person(
            &alice_home,
            &[
                "session", "create", "xterm", "--wait", s[0], s[1], "-o", "json",
            ],
            "",
        )?,
        "alice's session create",
    )?;
    anyhow::ensure!(
        created["owner"] == "alice" && created["state"] == "running",
        "{created}"
    );
    anyhow::ensure!(
        created["vnc_address"].is_null(),
        "users do not see agent addresses"
    );
    let id = created["id"].as_str().context("session id")?.to_owned();

    let bob_show = as_person(&bob_home, &["session", "show", &id, s[0], s[1]], "")?;
    anyhow::ensure!(
        !bob_show.status.success()
            && String::from_utf8_lossy(&bob_show.stderr).contains("not found"),
        "bob must not see alice's session: {}",
        String::from_utf8_lossy(&bob_show.stderr)
    );
    let bob_stop = as_person(&bob_home, &["session", "stop", &id, s[0], s[1]], "")?;
    anyhow::ensure!(
        !bob_stop.status.success(),
        "bob must not stop alice's session"
    );
    let bob_list = succeeded(
        &as_person(
            &bob_home,
            &["session", "list", s[0], s[1], "-o", "json"],
            "",
        )?,
        "bob's list",
    )?;
    anyhow::ensure!(bob_list == serde_json::json!([]), "{bob_list}");
    let admin_list = succeeded(
        &admin_cmd(&["session", "list", "--owner", "alice"], "")?,
        "list",
    )?;
    anyhow::ensure!(
        admin_list
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["id"] == id.as_str()),
        "{admin_list}"
    );

    let quota = succeeded(
        &admin_cmd(
            &["quota", "set", "--user", "alice", "--max-sessions", "1"],
            "",
        )?,
        "quota set",
    )?;
    anyhow::ensure!(
        quota["effective"]["max_sessions"] == 1 && quota["usage"]["sessions"] == 1,
        "{quota}"
    );
    let over = as_person(&alice_home, &["session", "create", "xterm", s[0], s[1]], "")?;
    anyhow::ensure!(
        !over.status.success()
            && String::from_utf8_lossy(&over.stderr).contains("max_sessions is 1"),
        "a second session over a quota of 1 is refused, naming the limit: {}",
        String::from_utf8_lossy(&over.stderr)
    );
    let table = as_person(&alice_home, &["whoami", s[0], s[1]], "")?;
    let table = String::from_utf8_lossy(&table.stdout);
    anyhow::ensure!(
        table.contains("QUOTA")
            && table
                .lines()
                .any(|l| l.split_whitespace().eq(["sessions", "1", "1"])),
        "whoami shows the quota and the use:\n{table}"
    );

    // The overview is for operators: the admin gets it, alice is told she may not.
    let overview = succeeded(&admin_cmd(&["overview", "--hours", "2"], "")?, "overview")?;
    anyhow::ensure!(
        overview["hours"] == 2
            && overview["interval_secs"] == 60
            && overview["sessions_now"]
                .as_object()
                .is_some_and(|m| m.len() == 6),
        "{overview}"
    );
    let refused = as_person(&alice_home, &["overview", s[0], s[1]], "")?;
    anyhow::ensure!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("operator"),
        "a user is refused the overview, naming the role it needs: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out_of_range = admin_cmd(&["overview", "--hours", "500"], "")?;
    anyhow::ensure!(
        !out_of_range.status.success()
            && String::from_utf8_lossy(&out_of_range.stderr).contains("--hours"),
        "{}",
        String::from_utf8_lossy(&out_of_range.stderr)
    );
    succeeded(
        &admin_cmd(&["group", "create", "staff"], "")?,
        "group create",
    )?;
    succeeded(
        &admin_cmd(
            &[
                "quota",
                "set",
                "--group",
                "staff",
                "--max-memory-mib",
                "4096",
            ],
            "",
        )?,
        "quota set --group",
    )?;
    let group = succeeded(
        &admin_cmd(&["quota", "show", "--group", "staff"], "")?,
        "quota show --group",
    )?;
    anyhow::ensure!(
        group["limits"]["max_memory_mib"] == 4096 && group["limits"]["max_sessions"].is_null(),
        "{group}"
    );
    let cleared = succeeded(
        &admin_cmd(
            &["quota", "set", "--user", "alice", "--clear-max-sessions"],
            "",
        )?,
        "quota set --clear-max-sessions",
    )?;
    anyhow::ensure!(
        cleared["limits"]["max_sessions"].is_null()
            && cleared["effective"]["max_sessions"].is_null(),
        "a cleared limit with no group or default is unlimited: {cleared}"
    );

    // Operators change a template in part; what is not given stays, `none` and "" clear.
    succeeded(
        &admin_cmd(&["template", "create", "editor", "--command", "xterm"], "")?,
        "template create",
    )?;
    let changed = succeeded(
        &admin_cmd(
            &[
                "template",
                "update",
                "editor",
                "--allowed-groups",
                "staff,ops",
                "--description",
                "An editor",
                "--cpu-millis",
                "500",
            ],
            "",
        )?,
        "template update",
    )?;
    anyhow::ensure!(
        changed["allowed_groups"] == serde_json::json!(["staff", "ops"])
            && changed["description"] == "An editor"
            && changed["resources"]["cpu_millis"] == 500
            && changed["command"] == serde_json::json!(["xterm"]),
        "{changed}"
    );
    let cleared = succeeded(
        &admin_cmd(
            &[
                "template",
                "update",
                "editor",
                "--allowed-groups",
                "",
                "--cpu-millis",
                "none",
            ],
            "",
        )?,
        "template update clearing",
    )?;
    anyhow::ensure!(
        cleared["allowed_groups"].is_null()
            && cleared["resources"]["cpu_millis"].is_null()
            && cleared["description"] == "An editor",
        "{cleared}"
    );
    let refused = as_person(
        &alice_home,
        &[
            "template",
            "update",
            "editor",
            "--description",
            "x",
            s[0],
            s[1],
        ],
        "",
    )?;
    anyhow::ensure!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("403"),
        "users do not change templates: {}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let token = succeeded(
        &as_person(
            &alice_home,
            &[
                "token",
                "create",
                "--name",
                "ci",
                "--expires-in",
                "1h",
                s[0],
                s[1],
                "-o",
                "json",
            ],
            "",
        )?,
        "token create",
    )?;
    let token_id = token["id"].as_str().context("token id")?.to_owned();
    let listed = succeeded(
        &as_person(
            &alice_home,
            &["token", "list", s[0], s[1], "-o", "json"],
            "",
        )?,
        "token list",
    )?;
    anyhow::ensure!(
        listed.as_array().is_some_and(|l| l.len() == 2)
            && !listed
                .to_string()
                .contains(token["token"].as_str().context("secret")?),
        "the login token and ci, without secrets: {listed}"
    );
    succeeded(
        &as_person(&alice_home, &["token", "revoke", &token_id, s[0], s[1]], "")?,
        "token revoke",
    )?;

    succeeded(
        &admin_cmd(&["user", "disable", "alice"], "")?,
        "user disable",
    )?;
    let refused = as_person(&alice_home, &["whoami", s[0], s[1]], "")?;
    anyhow::ensure!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("disabled"),
        "a disabled user's saved token stops working: {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    succeeded(
        &as_person(&bob_home, &["logout", s[0], s[1]], "")?,
        "logout",
    )?;
    anyhow::ensure!(
        !bob_home.join("streamspace").join("token").exists(),
        "logout forgets the token"
    );
    api.stop_session(id.parse()?).await?;
    Ok(())
}

/// Schemathesis fuzzes a running `streamspace up` (SQLite, the local agent) from its own OpenAPI
/// document: every operation but the WebSocket streams, a bounded number of generated cases
/// each, checked for no 5xx, documented status codes, content types and response schemas.
/// Once with the admin token, once with a plain user's token.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_in_the_running_api() -> anyhow::Result<()> {
    let schemathesis = streamspace_testkit::schemathesis::install()?;
    let mut h = common::harness()?;
    let (up, url, data) = h.up().await?;
    let admin = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let api = streamspace_client::Client::new(&url, &admin)?;
    common::wait_for_ready(&api)
        .await
        .with_context(|| up.logs())?;
    common::wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    api.create_user(&streamspace_proto::api::CreateUser {
        username: "fuzzy".to_owned(),
        role: streamspace_proto::api::Role::User,
        password: Some("fuzzy's password".to_owned()),
        ..Default::default()
    })
    .await?;
    let user = api
        .create_token(&streamspace_proto::api::CreateToken {
            name: "fuzzing".to_owned(),
            expires_in_secs: None,
            user: Some("fuzzy".to_owned()),
        })
        .await?
        .token;
    let document = format!("{url}/api/v1/openapi.json");
    // It keeps a cache in its working directory: the test's own.
    let workdir = h.path("schemathesis");
    std::fs::create_dir_all(&workdir)?;
    for (who, token) in [("admin", admin.as_str()), ("user", user.as_str())] {
        let output = tokio::process::Command::new(&schemathesis)
            .current_dir(&workdir)
            .args(["run", &document, "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args([
                "--max-examples",
                "10",
                "--seed",
                "20261203",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                // The viewer and agent streams are WebSockets, which it cannot speak.
                "--exclude-path-regex",
                "/vnc$|/agents/tunnel$|/agents/connect$",
                "--no-color",
            ])
            .output()
            .await
            .context("running schemathesis")?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::ensure!(
            output.status.success(),
            "Schemathesis found problems as {who}:\n{report}\n--- server ---\n{}",
            up.logs()
        );
        let summary = report
            .lines()
            .find(|l| l.contains(" generated, "))
            .unwrap_or("no summary");
        eprintln!("schemathesis as {who}: {}", summary.trim());
    }
    Ok(())
}
