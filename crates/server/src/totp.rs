//! One-time codes (RFC 6238) and recovery codes: the optional second step of a password
//! sign-in.
//!
//! Codes are what every authenticator app makes by default: HMAC-SHA-1, 6 digits, a 30-second
//! step, and a code of the step before or after is accepted too (clocks drift). The store
//! remembers the last step accepted per user, so a code is never accepted twice. Secrets are
//! stored sealed (`crate::keyring::TotpSealKeys`). Recovery codes are random, shown once, and
//! stored only as their keyed hash.

use rand::Rng;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

use crate::error::ApiError;
use streamspace_store::{Store, StoreError};

use crate::keyring::{CredentialHashing, Keyring, Keys};

/// Name shown next to the account in authenticator apps.
const ISSUER: &str = "StreamSpace";
/// Recovery codes handed out at enrolment.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Letters of a recovery code (no 0/o, 1/l/i to misread), in groups of five.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_LEN: usize = 10;

/// A new random secret (160 bits, as RFC 4226 recommends), in base32.
pub(crate) fn new_secret() -> String {
    Secret::from(rand::random::<[u8; 20]>()).to_base32()
}

/// The code generator for `secret` (base32), labelled with `username`.
pub(crate) fn generator(secret: &str, username: &str) -> Result<Totp, ApiError> {
    let bytes = Secret::try_from_base32(secret).map_err(|e| {
        tracing::error!(error = %e, "a stored one-time-code secret is not base32");
        ApiError::internal()
    })?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(bytes)
        .with_issuer(Some(ISSUER))
        .with_account_name(username.replace(':', "_"))
        .build()
        .map_err(|e| {
            tracing::error!(error = %e, "building a one-time-code generator failed");
            ApiError::internal()
        })
}

/// The `otpauth://` URI an authenticator app reads (from a QR code or pasted).
pub(crate) fn otpauth_uri(secret: &str, username: &str) -> Result<String, ApiError> {
    generator(secret, username)?.to_url().map_err(|e| {
        tracing::error!(error = %e, "writing an otpauth URI failed");
        ApiError::internal()
    })
}

/// The time step of `code` if it is right for `now` (Unix seconds), give or take one step.
pub(crate) fn check(generator: &Totp, code: &str, now: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    generator
        .check(&code, now)
        .and_then(|step| i64::try_from(step).ok())
}

/// Whether `code` has the shape of a one-time code rather than of a recovery code.
pub(crate) fn looks_like_totp(code: &str) -> bool {
    let digits: Vec<char> = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == 6 && digits.iter().all(char::is_ascii_digit)
}

/// Ten new recovery codes, as shown to the user (`xxxxx-xxxxx`).
pub(crate) fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let letters: String = (0..RECOVERY_LEN)
                .map(|_| char::from(RECOVERY_ALPHABET[rng.random_range(..RECOVERY_ALPHABET.len())]))
                .collect();
            format!("{}-{}", &letters[..5], &letters[5..])
        })
        .collect()
}

/// The stored form of a user's recovery code: the keyed hash of its letters, whatever the
/// case, spaces or dashes it was typed with, bound to the user.
pub(crate) fn recovery_hash(
    keyring: &Keyring<CredentialHashing>,
    user_id: Uuid,
    code: &str,
) -> String {
    keyring.mac(&recovery_text(user_id, code))
}

/// Every form a user's recovery code may be stored in: under the current key first, then the
/// older ones (a code handed out before a rotation, or before keys had purposes).
pub(crate) fn recovery_hashes(
    keyring: &Keyring<CredentialHashing>,
    user_id: Uuid,
    code: &str,
) -> Vec<String> {
    let text = recovery_text(user_id, code);
    std::iter::once(keyring.mac(&text))
        .chain(keyring.older_macs(&text))
        .collect()
}

fn recovery_text(user_id: Uuid, code: &str) -> String {
    let letters: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("recovery:{user_id}:{letters}")
}

/// Stores `secret` of `user`, stored as `stored` until now, sealed under the current key.
/// Failures are only logged: the secret still opens as it is.
pub(crate) async fn reseal(store: &dyn Store, keys: &Keys, user: Uuid, stored: &str, secret: &str) {
    let sealed = keys.totp.seal(user, secret);
    match store.reseal_totp_secret(user, stored, &sealed).await {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(user_id = %user, error = %e, "sealing a one-time-code secret failed")
        }
    }
}

/// Seals every one-time-code secret still stored in plain text or under the previous master
/// secret (run at start, so no secret stays readable in the database after an upgrade);
/// returns how many were sealed.
pub(crate) async fn seal_stored_secrets(
    store: &dyn Store,
    keys: &Keys,
) -> Result<usize, StoreError> {
    let mut sealed = 0;
    for (user, stored) in store.totp_secrets().await? {
        match keys.totp.open(user, &stored) {
            Ok(opened) if opened.reseal => {
                let new = keys.totp.seal(user, &opened.secret);
                if store.reseal_totp_secret(user, &stored, &new).await? {
                    sealed += 1;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(user_id = %user, error = %e, "a stored one-time-code secret cannot be opened")
            }
        }
    }
    Ok(sealed)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_neighbouring_steps_are_accepted_and_others_not() {
        let secret = new_secret();
        let totp = generator(&secret, "alice").expect("a valid secret");
        let now: u64 = 1_700_000_015;
        for (offset, accepted) in [
            (-60_i64, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let at = now.checked_add_signed(offset).expect("in range");
            let code = totp.generate(at).to_string();
            assert_eq!(
                check(&totp, &code, now).is_some(),
                accepted,
                "offset {offset}"
            );
        }
        assert_eq!(
            check(&totp, &totp.generate(now).to_string(), now),
            Some(1_700_000_015 / 30)
        );
        assert!(check(&totp, "abcdef", now).is_none());
    }

    #[test]
    fn the_uri_names_the_issuer_and_the_account() {
        let uri = otpauth_uri(&new_secret(), "alice").expect("a uri");
        assert!(
            uri.starts_with("otpauth://totp/StreamSpace:alice?"),
            "{uri}"
        );
        assert!(uri.contains("issuer=StreamSpace"), "{uri}");
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_the_same_however_typed() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        assert!(!looks_like_totp(&codes[0]));
        assert!(looks_like_totp("123 456"));
        let hasher = crate::keyring::Keys::derive(&crate::keyring::MasterSecret::new("test"), None)
            .credentials;
        let user = Uuid::now_v7();
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(
            recovery_hash(&hasher, user, &codes[0]),
            recovery_hash(&hasher, user, &typed)
        );
        assert_ne!(
            recovery_hash(&hasher, user, &codes[0]),
            recovery_hash(&hasher, Uuid::now_v7(), &codes[0])
        );
    }
}
