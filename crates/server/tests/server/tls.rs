//! The listener over TLS: certificates made in the test by a throwaway CA, a certificate
//! renewed on disk served without a restart, and client certificates asked of everyone but
//! required only of agents when so configured.

use anyhow::Context;
use streamspace_client::tls::{Identity, TlsOptions, client_config};
use streamspace_server::{ListenerTls, ServerConfig};
use streamspace_testkit::TestCa;
use streamspace_testkit::fake_agent;
use streamspace_testkit::tls::served_certificate;

use crate::common::{TestServer, fast_config};

fn tls_config(ca: &TestCa, require_agent_certs: bool) -> anyhow::Result<ServerConfig> {
    let server = ca.server_cert("server", &["127.0.0.1", "localhost"])?;
    Ok(ServerConfig {
        tls: Some(ListenerTls {
            cert: server.cert,
            key: server.key,
            client_ca: Some(ca.cert.clone()),
            require_agent_certs,
        }),
        ..fast_config()
    })
}

#[tokio::test]
async fn a_renewed_certificate_is_served_on_the_next_connection() -> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    let first = ca.server_cert("server", &["127.0.0.1"])?;
    let config = ServerConfig {
        tls: Some(ListenerTls {
            cert: first.cert.clone(),
            key: first.key.clone(),
            client_ca: None,
            require_agent_certs: false,
        }),
        ..fast_config()
    };
    let s = TestServer::sqlite_tls(config, &ca.cert).await?;
    assert_eq!(
        served_certificate(s.addr, &ca.cert, "127.0.0.1").await?,
        first.der,
        "the configured certificate is served"
    );
    let response = s.http.get(format!("{}/healthz", s.base)).send().await?;
    assert!(response.status().is_success(), "https works end to end");
    assert!(
        response.headers().contains_key("strict-transport-security"),
        "a TLS listener sends HSTS"
    );

    // A certificate manager replaces both files; no restart.
    let renewed = ca.server_cert("server", &["127.0.0.1"])?;
    assert_ne!(renewed.der, first.der);
    assert_eq!(
        served_certificate(s.addr, &ca.cert, "127.0.0.1").await?,
        renewed.der,
        "a new connection sees the renewed certificate"
    );

    // A broken rotation keeps the last good certificate.
    std::fs::write(&renewed.key, "not a key")?;
    assert_eq!(
        served_certificate(s.addr, &ca.cert, "127.0.0.1").await?,
        renewed.der,
        "an unreadable key keeps the previous certificate in service"
    );
    s.stop().await
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_the_handshake() -> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    let s = TestServer::sqlite_tls(tls_config(&ca, false)?, &ca.cert).await?;
    let other = TestCa::new("another CA")?;
    let err = served_certificate(s.addr, &other.cert, "127.0.0.1")
        .await
        .expect_err("a certificate from an unknown CA must not verify");
    let text = format!("{err:#}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("invalid peer certificate"),
        "{text}"
    );
    s.stop().await
}

#[tokio::test]
async fn agents_need_a_client_certificate_when_required_browsers_never_do() -> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    let s = TestServer::sqlite_tls(tls_config(&ca, true)?, &ca.cert).await?;
    let key = s.agent_key("a1").await?;
    let anonymous = client_config(&TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        ..TlsOptions::default()
    })?;
    let client = ca.client_cert("agent", "a1")?;
    let with_cert = client_config(&TlsOptions {
        ca_cert: Some(ca.cert.clone()),
        identity: Some(Identity {
            cert: client.cert,
            key: client.key,
        }),
        ..TlsOptions::default()
    })?;

    let refused = fake_agent::open_with(&s.ws_url, &key, None, Some(anonymous.clone()))
        .await?
        .err()
        .context("an agent without a certificate must be refused")?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "client_certificate_required");
    let data_url = s
        .ws_url
        .replace("/agents/connect", "/agents/tunnel?token=x");
    let refused = fake_agent::open_with(&data_url, &key, None, Some(anonymous.clone()))
        .await?
        .err()
        .context("a data connection without a certificate must be refused")?;
    assert_eq!(refused.body["error"]["code"], "client_certificate_required");

    let socket = fake_agent::open_with(&s.ws_url, &key, None, Some(with_cert.clone())).await?;
    assert!(
        socket.is_ok(),
        "an agent with a certificate and its key is accepted"
    );
    let refused = fake_agent::open_with(&s.ws_url, "ssk_wrong", None, Some(with_cert))
        .await?
        .err()
        .context("a certificate does not replace the agent key")?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "unauthorized");

    // Browsers and the CLI bring no certificate and are served as before.
    s.api
        .healthz()
        .await
        .context("the API answers a client without a certificate")?;
    s.stop().await
}
