//! PostgreSQL over verified TLS, against a real PostgreSQL serving a certificate from a CA made
//! in the test: `sslmode=verify-full&sslrootcert=CA` connects (and the connection really is
//! encrypted); the same URL with another CA is refused, and the error says it was the
//! certificate.

use anyhow::Context;
use streamspace_store::migrate;
use streamspace_store::postgres::PgStore;
use streamspace_testkit::{PgCluster, TestCa};

fn verify_full(url: &str, ca: &TestCa) -> String {
    format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca.cert.display()
    )
}

#[tokio::test]
async fn verify_full_connects_with_the_servers_ca_and_refuses_another() -> anyhow::Result<()> {
    let ca = TestCa::new("postgres-ca")?;
    let pg = PgCluster::start_tls(&ca.server_cert("postgres", &["127.0.0.1", "localhost"])?)?;
    let url = pg.create_database()?;

    let verified = verify_full(&url, &ca);
    let applied = migrate::up(&verified)
        .await
        .context("migrating over verified TLS")?;
    assert!(!applied.is_empty(), "the migrations ran over TLS");
    let store = PgStore::connect(&verified)
        .await
        .context("connecting over verified TLS")?;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await?;
    assert!(encrypted, "the store's connection is not encrypted");

    let stranger = TestCa::new("another-ca")?;
    let refused = PgStore::connect(&verify_full(&url, &stranger))
        .await
        .err()
        .context("a certificate from an untrusted CA was accepted")?;
    let message = refused.to_string();
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "the refusal does not say the certificate was not trusted: {message}"
    );
    let refused = migrate::status(&verify_full(&url, &stranger))
        .await
        .err()
        .context("migrate accepted a certificate from an untrusted CA")?;
    assert!(refused.to_string().contains("certificate"), "{refused}");
    Ok(())
}
