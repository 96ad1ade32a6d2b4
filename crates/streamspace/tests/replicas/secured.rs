//! Replicas sharing a secured Redis — TLS only, a password, an ACL user — directly and behind
//! a Sentinel that has a password of its own; what an operator reads when the password or the
//! CA is wrong; and, throughout, that no output of a replica ever shows a password, though
//! every replica is given one in its database URL and one for Redis.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use streamspace_client::Client;
use streamspace_testkit::redis::{RedisSecurity, RedisSentinel, RedisServer};
use streamspace_testkit::{PgCluster, Proc, TestCa, wait_until};

use super::{
    Cluster, common, routed_ping, wait_for_owner, wait_for_redis_state, wait_terminal, with_agent,
};

const DATA_PASSWORD: &str = "data-node-password-5f2c";
const ACL_PASSWORD: &str = "acl-user-password-9d41";
const SENTINEL_PASSWORD: &str = "sentinel-password-77ae";
const DATABASE_PASSWORD: &str = "database-password-31b0";
const WRONG_PASSWORD: &str = "not-the-password-c3d9";
const SECRETS: &[&str] = &[
    DATA_PASSWORD,
    ACL_PASSWORD,
    SENTINEL_PASSWORD,
    DATABASE_PASSWORD,
    WRONG_PASSWORD,
];

/// The ACL rules docs/OPERATIONS.md gives the StreamSpace user: its own keys and channels,
/// no dangerous commands but `ROLE` (how a replica refuses a demoted master).
const ACL_RULES: &[&str] = &[
    "~streamspace:*",
    "&streamspace:*",
    "+@all",
    "-@dangerous",
    "+role",
];

fn security(ca: &TestCa, name: &str, password: &str) -> anyhow::Result<RedisSecurity> {
    Ok(RedisSecurity {
        ca: ca.cert.to_owned(),
        server: ca.server_cert(name, &["127.0.0.1", "localhost"])?,
        password: password.to_owned(),
    })
}

/// The test database's URL with a password in it (the test cluster trusts every local
/// connection, so any password logs in).
fn with_database_password(url: &str) -> String {
    url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{DATABASE_PASSWORD}@"),
        1,
    )
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n"))?;
    Ok(path)
}

/// No password appears anywhere in `output`.
fn assert_no_password(output: &str) {
    for secret in SECRETS {
        assert!(
            !output.contains(secret),
            "a password was printed:\n{}",
            output
                .lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Waits for a line containing `needle` in what `proc` logged (stderr).
async fn wait_for_log(proc: &Proc, needle: &str) -> anyhow::Result<String> {
    let path = &proc.stderr;
    wait_until(
        &format!("{needle:?} in {}'s log", proc.name),
        Duration::from_secs(30),
        || async move {
            std::fs::read_to_string(path)
                .ok()?
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned)
        },
    )
    .await
    .with_context(|| proc.logs())
}

/// A command created on B reaches the agent on A through Redis, and completes.
async fn route_one(cluster: &Cluster) -> anyhow::Result<()> {
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    let id = routed_ping(cluster, 1).await?;
    wait_terminal(
        &cluster.apis[1],
        &HashSet::from([id]),
        Duration::from_secs(30),
    )
    .await?;
    for api in &cluster.apis {
        wait_for_redis_state(api, "ok").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_route_through_redis_over_tls_as_an_acl_user() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let ca = TestCa::new("redis-ca")?;
    let user = format!(">{ACL_PASSWORD}");
    let mut acl = vec!["--user", "streamspace", "on", user.as_str()];
    acl.extend_from_slice(ACL_RULES);
    let redis = RedisServer::start_secured(&security(&ca, "redis", DATA_PASSWORD)?, &acl)?;
    let url = format!(
        "rediss://streamspace:{ACL_PASSWORD}@127.0.0.1:{}/",
        redis.port()
    );
    let ca_cert = ca.cert.display().to_string();
    let db = with_database_password(&pg.create_database()?);
    let cluster = Cluster::start_with(db, &url, 1, &["--ca-cert", &ca_cert]).await?;
    let (cluster, agent) = with_agent(cluster, &[0]).await?;
    route_one(&cluster)
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;

    // Redis itself says who the replicas are: the ACL user, over TLS.
    let clients = redis.cli(&["CLIENT", "LIST"])?;
    let as_user = clients
        .lines()
        .filter(|l| l.contains("user=streamspace"))
        .count();
    assert!(
        as_user >= 3,
        "the replicas are not logged in as the ACL user:\n{clients}"
    );
    assert_no_password(&cluster.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_or_an_untrusted_certificate_is_refused_and_named() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let ca = TestCa::new("redis-ca")?;
    let redis = RedisServer::start_secured(&security(&ca, "redis", DATA_PASSWORD)?, &[])?;
    let port = redis.port();
    let ca_cert = ca.cert.display().to_string();
    let db = with_database_password(&pg.create_database()?);
    let mut h = common::harness()?;

    // The right CA, the wrong password.
    let wrong = format!("rediss://:{WRONG_PASSWORD}@127.0.0.1:{port}/");
    let args = ["--redis-url", &wrong, "--ca-cert", &ca_cert];
    let (a, a_url) = h.replica(&db, "A", "127.0.0.1:0", &args).await?;
    let line = wait_for_log(&a, "Redis refused the user name or password").await?;
    assert!(line.contains("ERROR"), "not logged as an error: {line}");
    let api = Client::new(&a_url, common::ADMIN_TOKEN)?;
    wait_for_redis_state(&api, "degraded")
        .await
        .with_context(|| a.logs())?;

    // The right password, but no CA given: the test CA is not among the web roots.
    let right = format!("rediss://:{DATA_PASSWORD}@127.0.0.1:{port}/");
    let (b, _) = h
        .replica(&db, "B", "127.0.0.1:0", &["--redis-url", &right])
        .await?;
    wait_for_log(&b, "TLS certificate was not accepted").await?;

    // A certificate from the right CA naming another host is refused too.
    let elsewhere = ca.server_cert("elsewhere", &["redis.example"])?;
    let other = RedisServer::start_secured(
        &RedisSecurity {
            ca: ca.cert.to_owned(),
            server: elsewhere,
            password: DATA_PASSWORD.to_owned(),
        },
        &[],
    )?;
    let misnamed = format!("rediss://:{DATA_PASSWORD}@127.0.0.1:{}/", other.port());
    let args = ["--redis-url", &misnamed, "--ca-cert", &ca_cert];
    let (c, _) = h.replica(&db, "C", "127.0.0.1:0", &args).await?;
    wait_for_log(&c, "TLS certificate was not accepted").await?;

    for proc in [&a, &b, &c] {
        assert_no_password(&proc.logs());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_find_the_master_through_a_sentinel_with_its_own_password_over_tls()
-> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let ca = TestCa::new("redis-ca")?;
    let master = RedisServer::start_secured(&security(&ca, "master", DATA_PASSWORD)?, &[])?;
    let sentinel = RedisSentinel::start_secured(
        "streamspace",
        master.port(),
        &security(&ca, "sentinel", SENTINEL_PASSWORD)?,
        DATA_PASSWORD,
    )?;
    // Both passwords from files, as a deployment keeping them in a Secret would give them.
    let secrets = tempfile::tempdir()?;
    let data = secret_file(secrets.path(), "redis-password", DATA_PASSWORD)?;
    let watch = secret_file(secrets.path(), "sentinel-password", SENTINEL_PASSWORD)?;
    let (data, watch) = (data.display().to_string(), watch.display().to_string());
    let ca_cert = ca.cert.display().to_string();
    let url = format!(
        "rediss+sentinel://127.0.0.1:{}/streamspace",
        sentinel.port()
    );
    let extra = [
        "--ca-cert",
        &ca_cert,
        "--redis-password-file",
        &data,
        "--redis-sentinel-password-file",
        &watch,
    ];
    let db = with_database_password(&pg.create_database()?);
    let cluster = Cluster::start_with(db, &url, 1, &extra).await?;
    let (cluster, agent) = with_agent(cluster, &[0]).await?;
    route_one(&cluster)
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    let owner = master.cli(&["GET", "streamspace:agent:replica-agent:owner"])?;
    assert!(
        owner.trim().ends_with(":A"),
        "A's owner record is on the master the Sentinel named: {owner:?}"
    );
    assert_no_password(&cluster.logs());
    Ok(())
}
