//! Credentials revoked anywhere, announced to every replica on [`CHANNEL`] so each forgets the
//! credentials it cached at once (a disabled or deleted user, a revoked token, a changed group).
//! The message carries no secret, only that something changed; a lost one costs at most the
//! cache's time to live (`ServerConfig::credential_cache_ttl`).

use super::link::RedisLink;

/// The Redis channel every replica reads revocations from.
pub(crate) const CHANNEL: &str = "streamspace:credentials:revoked";

/// Tells every replica (this one included) to forget its cached credentials.
pub(crate) async fn publish(link: &RedisLink, why: &str) {
    let why = why.to_owned();
    let published = link
        .with_conn(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(why)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, "announcing a revocation failed; other replicas forget within the cache's lifetime");
    }
}
