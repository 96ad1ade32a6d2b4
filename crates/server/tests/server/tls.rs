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

/// Replicas call each other at pod IPs their certificate does not name: with a fixed name
/// (`--internal-tls-name`) the certificate is verified for that name instead.
#[tokio::test]
async fn a_fixed_server_name_verifies_a_certificate_that_does_not_name_the_address()
-> anyhow::Result<()> {
    let ca = TestCa::new("StreamSpace test CA")?;
    // 127.0.0.1 only for the test server's own readiness check; the peer is dialled as
    // `localhost`, a name the certificate does not carry (as a pod IP would be).
    let cert = ca.server_cert("service", &["streamspace.internal", "127.0.0.1"])?;
    let config = ServerConfig {
        tls: Some(ListenerTls {
            cert: cert.cert,
            key: cert.key,
            client_ca: None,
            require_agent_certs: false,
        }),
        ..fast_config()
    };
    let s = TestServer::sqlite_tls(config, &ca.cert).await?;
    let handshake = |server_name: Option<&str>| {
        let options = TlsOptions {
            ca_cert: Some(ca.cert.clone()),
            server_name: server_name.map(str::to_owned),
            ..TlsOptions::default()
        };
        async move {
            let connector = tokio_rustls::TlsConnector::from(client_config(&options)?);
            let tcp = tokio::net::TcpStream::connect(s.addr).await?;
            let dialled = rustls::pki_types::ServerName::try_from("localhost")?;
            connector.connect(dialled, tcp).await?;
            anyhow::Ok(())
        }
    };
    handshake(Some("streamspace.internal"))
        .await
        .context("verified for the fixed name, whatever address was dialled")?;
    assert!(
        handshake(None).await.is_err(),
        "without the fixed name, a certificate that does not name the dialled host is refused"
    );
    assert!(
        handshake(Some("other.internal")).await.is_err(),
        "a fixed name the certificate does not carry must be refused"
    );
    s.stop().await
}
