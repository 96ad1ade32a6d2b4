//! TLS end to end with certificates made in the test: an agent verifies the control plane
//! against its CA, and with two replicas serving TLS every hop of a stream — browser to
//! replica B, agent to replica A, and A to B — is encrypted, as the replicas' metrics show.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use streamspace_client::Client;
use streamspace_client::tls::{TlsOptions, client_config};
use streamspace_proto::api::{AgentStatus, SessionState};
use streamspace_testkit::redis::RedisServer;
use streamspace_testkit::{PgCluster, TestCa};
use tokio_tungstenite::tungstenite::Message;

use super::common::{ADMIN_TOKEN, wait_for_agent_online, wait_for_ready};
use super::replicas::Pair;
use super::{START_TIMEOUT, targets, viewer};

/// The name on the replicas' shared certificate that is not their address, as a Service name
/// would be.
const INTERNAL_NAME: &str = "streamspace.internal";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_connects_only_to_a_server_whose_certificate_its_ca_issued() -> anyhow::Result<()>
{
    let ca = TestCa::new("StreamSpace test CA")?;
    let other = TestCa::new("someone else's CA")?;
    let cert = ca.server_cert("server", &["127.0.0.1", "localhost"])?;
    let mut h = super::common::harness()?;
    let db = h.sqlite_url();
    let (cert_arg, key_arg) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let args = [
        "--heartbeat-interval",
        "1",
        "--tls-cert",
        &cert_arg,
        "--tls-key",
        &key_arg,
    ];
    let (server, url) = h.server(&db, &args).await?;
    assert!(url.starts_with("https://"), "{url}");
    let tls = client_config(&TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        ..TlsOptions::default()
    })?;
    let api = Client::with_tls(&url, ADMIN_TOKEN, tls)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("tls-agent").await?;
    let state = h.path("agent-state");

    let other_ca = other.cert.display().to_string();
    let wrong = h.agent_with(
        &url,
        "tls-agent",
        &key.secret,
        &state,
        &["--ca-cert", &other_ca],
    )?;
    wrong
        .wait_for_stderr("invalid peer certificate")
        .await
        .context("the agent refuses a certificate its CA did not issue")?;
    let online = api
        .get_agent("tls-agent")
        .await
        .is_ok_and(|a| a.status == AgentStatus::Online);
    assert!(
        !online,
        "an agent that refused the server's certificate must not be online"
    );
    drop(wrong);

    let right_ca = ca.cert.display().to_string();
    let right = h.agent_with(
        &url,
        "tls-agent",
        &key.secret,
        &state,
        &["--ca-cert", &right_ca],
    )?;
    wait_for_agent_online(&api, "tls-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), right.logs()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_of_a_stream_across_replicas_is_tls() -> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    // One certificate for every replica, naming the Service (not the replicas' addresses) and
    // 127.0.0.1 for the clients that dial the replicas directly.
    let cert = ca.server_cert("replicas", &[INTERNAL_NAME, "127.0.0.1"])?;
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    let runtime = targets::TargetRuntime::new([targets::echo().await?]);
    let (cert_arg, key_arg, ca_arg) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
        ca.cert.display().to_string(),
    );
    let extra = [
        "--tls-cert",
        &cert_arg,
        "--tls-key",
        &key_arg,
        "--ca-cert",
        &ca_arg,
        "--internal-tls-name",
        INTERNAL_NAME,
    ];
    let pair = Pair::start_trusting(
        &mut h,
        &db,
        &redis.url(),
        &extra,
        "tls-hop-agent",
        runtime,
        Some(&ca.cert),
    )
    .await?;
    let logs = || pair.logs();
    let [api_a, api_b] = &pair.admins;
    let session = api_a.create_session("xterm").await?;
    api_a
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;

    let info = api_b.connect_session(session.id).await?;
    assert!(info.url.starts_with("wss://"), "{}", info.url);
    let tls = client_config(&TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        ..TlsOptions::default()
    })?;
    let ws = viewer::open_tls(&info.url, tls.clone())
        .await
        .with_context(logs)?;
    let (mut tx, mut rx) = ws.split();
    let sent: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    tx.send(Message::binary(sent.clone())).await?;
    let mut back = Vec::new();
    while back.len() < sent.len() {
        match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => back.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!(
                "echo through two TLS replicas failed after {} bytes: {other:?}\n{}",
                back.len(),
                logs()
            ),
        }
    }
    assert_eq!(back, sent, "bytes cross the encrypted hop unchanged");

    // B asked A to open the stream; A carried the agent's data to B. Both over https only.
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
        .build()?;
    let mut https_hops = 0.0;
    let mut raw_connections = 0.0;
    for url in &pair.urls {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        // The agent's data connection (to A) and the hop (A to B) are raw streams inside TLS.
        for line in text
            .lines()
            .filter(|l| l.starts_with("streamspace_tunnel_data_connections_total"))
        {
            assert!(
                line.contains(r#"transport="raw""#),
                "a data connection fell back to a WebSocket: {line}\n{}",
                logs()
            );
            raw_connections += line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<f64>().ok())
                .context("a counter value")?;
        }
        for line in text
            .lines()
            .filter(|l| l.starts_with("streamspace_replica_hops_total"))
        {
            assert!(
                line.contains(r#"scheme="https""#),
                "a plain hop was used: {line}\n{}",
                logs()
            );
            let count: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .context("a counter value")?;
            https_hops += count;
        }
    }
    assert!(
        https_hops >= 2.0,
        "expected an https open and an https data hop, counted {https_hops}"
    );
    assert!(
        raw_connections >= 2.0,
        "expected the agent's raw data connection and a raw hop, counted {raw_connections}"
    );
    drop((tx, rx));
    pair.stop_agent().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_a_client_certificate_are_refused_when_required() -> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    let cert = ca.server_cert("server", &["127.0.0.1", "localhost"])?;
    let client = ca.client_cert("agent", "cert-agent")?;
    let mut h = super::common::harness()?;
    let db = h.sqlite_url();
    let path = |p: &std::path::Path| p.display().to_string();
    let (cert_arg, key_arg, ca_arg) = (path(&cert.cert), path(&cert.key), path(&ca.cert));
    let args = [
        "--heartbeat-interval",
        "1",
        "--tls-cert",
        &cert_arg,
        "--tls-key",
        &key_arg,
        "--client-ca",
        &ca_arg,
        "--require-agent-certs",
    ];
    let (server, url) = h.server(&db, &args).await?;
    let tls = client_config(&TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        ..TlsOptions::default()
    })?;
    // The CLI and browsers bring no certificate and are served.
    let api = Client::with_tls(&url, ADMIN_TOKEN, tls)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("cert-agent").await?;

    let without = h.agent_with(
        &url,
        "cert-agent",
        &key.secret,
        &h.path("state-1"),
        &["--ca-cert", &ca_arg],
    )?;
    without
        .wait_for_stderr("refused the connection: HTTP 401")
        .await
        .context("an agent without a certificate is refused")?;
    drop(without);

    let (client_cert, client_key) = (path(&client.cert), path(&client.key));
    let with = h.agent_with(
        &url,
        "cert-agent",
        &key.secret,
        &h.path("state-2"),
        &[
            "--ca-cert",
            &ca_arg,
            "--tls-client-cert",
            &client_cert,
            "--tls-client-key",
            &client_key,
        ],
    )?;
    wait_for_agent_online(&api, "cert-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), with.logs()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_tls_and_its_agent_trusts_the_certificate() -> anyhow::Result<()> {
    // Self-signed, as a laptop's certificate often is: the built-in agent trusts it as given.
    let dir = tempfile::tempdir()?;
    let cert = streamspace_testkit::tls::self_signed(dir.path(), "up", &["localhost"])?;
    let mut h = super::common::harness()?;
    let (cert_arg, key_arg) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let (up, url, data) = h
        .up_with(&["--tls-cert", &cert_arg, "--tls-key", &key_arg])
        .await?;
    assert!(url.starts_with("https://"), "{url}");
    let token = std::fs::read_to_string(data.join("admin-token"))?;
    // The printed URL is 127.0.0.1; the certificate names localhost only.
    let url = url.replace("127.0.0.1", "localhost");
    let tls = client_config(&TlsOptions {
        ca_cert: Some(cert.cert.clone()),
        ..TlsOptions::default()
    })?;
    let api = Client::with_tls(&url, token.trim(), tls)?;
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    Ok(())
}
