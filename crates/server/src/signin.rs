//! Signing in with a password: Argon2id hashes, checks that take the same time whether or not
//! the user exists, and a throttle on repeated failures.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on tokio's blocking pool,
//! never on a worker thread that serves other requests.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

/// Shortest password accepted.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (hashing cost grows with it).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;
/// Sign-in failures allowed per account and per client address within [`FAILURE_WINDOW`].
const MAX_FAILURES: u32 = 5;
/// Requests with an unknown, revoked or expired credential allowed per client address within
/// [`FAILURE_WINDOW`]: more than sign-in failures, since a client with a stale token retries
/// on its own; few enough that a flood of made-up tokens cannot keep the database busy.
const MAX_CREDENTIAL_FAILURES: u32 = 30;
/// How long failures are remembered.
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Most keys the throttle remembers; beyond that, expired ones are dropped first.
const THROTTLE_MAX: usize = 65_536;

/// Checks a new password's length.
pub(crate) fn check_new_password(field: &str, password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "{field} must have at least {MIN_PASSWORD_CHARS} characters and at most \
             {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Hashes a password with Argon2id and a random salt, as a PHC string.
pub(crate) async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the password hashing task failed");
        ApiError::internal()
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "hashing a password failed");
        ApiError::internal()
    })
}

/// A hash of no one's password, checked when the user does not exist (or has no password)
/// so that the answer takes as long as for a real account.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"streamspace: no such account")
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Whether `password` matches `hash`; with no hash, spends the same time and answers false.
pub(crate) async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
        && known
}

/// Counts failures per key (an account, a client address) and refuses further tries for the
/// rest of the window once a key has too many: sign-in failures (passwords, codes) and
/// requests with a bad credential, each with its own allowance. One replica's view: an
/// attacker spreading tries over N replicas gets N times the allowance, still a handful a
/// minute. The one limiter of the server: both answer 429 `too_many_attempts`.
#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// `Err(429 too_many_attempts)` with the seconds to wait if any key is over the sign-in
    /// allowance.
    pub fn check(&self, keys: &[String]) -> Result<(), ApiError> {
        self.check_with(keys, MAX_FAILURES)
    }

    /// Like [`Throttle::check`], for requests with a bad credential from `client`.
    pub fn check_credential(&self, client: &str) -> Result<(), ApiError> {
        self.check_with(&[credential_key(client)], MAX_CREDENTIAL_FAILURES)
    }

    /// Records a request from `client` with an unknown, revoked or expired credential.
    pub fn credential_failed(&self, client: &str) {
        self.failed(&[credential_key(client)]);
    }

    fn check_with(&self, keys: &[String], allowance: u32) -> Result<(), ApiError> {
        let failures = self.lock();
        let wait = keys
            .iter()
            .filter_map(|k| failures.get(k))
            .filter(|(count, since)| *count >= allowance && since.elapsed() < FAILURE_WINDOW)
            .map(|(_, since)| FAILURE_WINDOW.saturating_sub(since.elapsed()))
            .max();
        match wait {
            Some(wait) => Err(ApiError::too_many_attempts(wait.as_secs().max(1))),
            None => Ok(()),
        }
    }

    /// Records one failure for every key.
    pub fn failed(&self, keys: &[String]) {
        let mut failures = self.lock();
        if failures.len() >= THROTTLE_MAX {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= FAILURE_WINDOW {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    /// Forgets the account's failures after a successful sign-in.
    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The throttle's key for bad credentials from one client address (apart from its sign-in
/// failures, so a stale token does not also lock its owner out of signing in).
fn credential_key(client: &str) -> String {
    format!("credential:{client}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse".into())
            .await
            .expect("hashing works");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(hash)).await);
        assert!(!verify_password("correct horse".into(), None).await);
        assert!(!verify_password("x".into(), Some("not a phc string".into())).await);
    }

    #[test]
    fn the_throttle_refuses_after_repeated_failures() {
        let throttle = Throttle::default();
        let keys = ["user:alice".to_owned(), "addr:192.0.2.1".to_owned()];
        for _ in 0..MAX_FAILURES {
            assert!(throttle.check(&keys).is_ok());
            throttle.failed(&keys);
        }
        let e = throttle.check(&keys).expect_err("expected a refusal");
        assert_eq!((e.status.as_u16(), e.code), (429, "too_many_attempts"));
        assert!(
            throttle.check(&["user:bob".to_owned()]).is_ok(),
            "other accounts are not affected"
        );
        throttle.succeeded("user:alice");
        assert!(
            throttle.check(&keys[..1]).is_ok(),
            "a success clears the account"
        );
        assert!(throttle.check(&keys[1..]).is_err(), "but not the address");
    }

    #[test]
    fn bad_credentials_have_their_own_allowance() {
        let throttle = Throttle::default();
        for _ in 0..MAX_CREDENTIAL_FAILURES {
            assert!(throttle.check_credential("192.0.2.1").is_ok());
            throttle.credential_failed("192.0.2.1");
        }
        let e = throttle
            .check_credential("192.0.2.1")
            .expect_err("expected a refusal");
        assert_eq!((e.status.as_u16(), e.code), (429, "too_many_attempts"));
        assert!(throttle.check_credential("192.0.2.2").is_ok());
        assert!(
            throttle.check(&["addr:192.0.2.1".to_owned()]).is_ok(),
            "signing in from that address is still possible"
        );
    }

    #[test]
    fn new_passwords_have_a_length() {
        assert!(check_new_password("password", "short").is_err());
        assert!(check_new_password("password", "long enough").is_ok());
        assert!(check_new_password("password", &"x".repeat(2000)).is_err());
    }
}
