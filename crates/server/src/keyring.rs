//! The master secret and the keys derived from it, one per purpose.
//!
//! Every replica shares one **master secret**: generated into the database on the first start
//! (setting [`MASTER_SECRET_SETTING`]), or read from a file (`--master-secret-file`) by
//! deployments that keep secrets out of the database. Nothing is keyed with it directly: each
//! purpose has its own 256-bit key, derived with HKDF-SHA256 under a label of its own, and its
//! own type ([`Keyring<P>`] with a [`Purpose`] marker), so a viewer-token key cannot be handed to
//! code that hashes credentials, and a leak of one derived key forges nothing else:
//!
//! | purpose | what it keys |
//! |---|---|
//! | [`CredentialHashing`] | the stored keyed hashes of admin tokens, agent keys, personal tokens and recovery codes |
//! | [`BrowserSessions`] | the stored keyed hashes of browser session cookies |
//! | [`ViewerTokens`] | the signature of viewer tokens |
//! | [`ReplicaProofs`] | the proof a replica adds to calls to another replica |
//! | [`TotpSecrets`] | the encryption (ChaCha20-Poly1305) of one-time-code secrets at rest |
//!
//! **Rotation**: with `--previous-master-secret-file`, keys derived from the previous secret are
//! still accepted (signatures verified, stored hashes found, TOTP secrets opened) while
//! everything new uses the current one; a credential found under an older key is re-hashed under
//! the current one on use (`keys::find`), a TOTP secret is re-sealed.
//!
//! **Compatibility**: before keys had purposes, the master secret itself keyed every hash. Stored
//! hashes made that way (the *legacy* form) are still found, and re-hashed on use; signatures
//! made that way (viewer tokens, replica proofs) are not accepted: they live a minute at most.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use ring::aead;
use sha2::Sha256;
use streamspace_store::{Store, StoreError};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Name of the setting holding the master secret when it lives in the database (named for the
/// time it keyed every hash itself).
pub const MASTER_SECRET_SETTING: &str = "hmac_secret";
/// Shortest master secret accepted from a file, in bytes (`openssl rand -hex 32` makes 64).
pub const MIN_MASTER_SECRET_BYTES: usize = 32;
/// HKDF salt: fixed, as the master secret is already uniformly random.
const SALT: &[u8] = b"streamspace master secret";

/// Where the master secret comes from; part of [`crate::ServerConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsConfig {
    /// A file holding the master secret; `None`: the one in the database (created on the first
    /// start).
    pub master_secret_file: Option<PathBuf>,
    /// A file holding the previous master secret, accepted (never used for anything new) while
    /// a rotation is under way.
    pub previous_master_secret_file: Option<PathBuf>,
}

/// Why the master secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the master secret from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the master secret in {path} is {len} bytes; at least {MIN_MASTER_SECRET_BYTES} are \
         needed (make one with `openssl rand -hex 32`)"
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("the previous master secret in {0} is the current one")]
    SameAsCurrent(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A master secret (its bytes, as stored). Never printed.
#[derive(Clone)]
pub struct MasterSecret(Arc<[u8]>);

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(…)")
    }
}

impl MasterSecret {
    /// A master secret of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Arc::from(bytes.into()))
    }

    /// The secret in `path`, without surrounding whitespace; refused if shorter than
    /// [`MIN_MASTER_SECRET_BYTES`].
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_MASTER_SECRET_BYTES {
            return Err(SecretError::TooShort {
                path: path.to_owned(),
                len: trimmed.len(),
            });
        }
        Ok(Self::new(trimmed))
    }

    /// The one in the database, created (64 hex digits of 256 random bits) if there is none.
    pub async fn from_store(store: &dyn Store) -> Result<Self, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let secret = store
            .setting_get_or_init(MASTER_SECRET_SETTING, &fresh)
            .await?;
        Ok(Self::new(secret.into_bytes()))
    }

    fn derive(&self, label: &str) -> [u8; 32] {
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(SALT), &self.0)
            .expand(label.as_bytes(), &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }
}

/// What a key is for: its HKDF label, and whether stored values made with it outlive a rotation.
pub trait Purpose: 'static {
    /// The HKDF `info` of this purpose's key.
    const LABEL: &'static str;
    /// Whether values made with this purpose's key are stored (credential hashes): then the
    /// legacy form (the master secret itself as the key) is still looked for.
    const STORED: bool;
}

macro_rules! purpose {
    ($(#[$doc:meta])* $name:ident, $label:literal, $stored:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $name {}
        impl Purpose for $name {
            const LABEL: &'static str = $label;
            const STORED: bool = $stored;
        }
    };
}

purpose!(
    /// Stored hashes of admin tokens, agent keys, personal tokens and recovery codes.
    CredentialHashing,
    "streamspace/credential-hash/v1",
    true
);
purpose!(
    /// Stored hashes of browser session cookies.
    BrowserSessions,
    "streamspace/browser-session/v1",
    true
);
purpose!(
    /// Signatures of viewer tokens.
    ViewerTokens,
    "streamspace/viewer-token/v1",
    false
);
purpose!(
    /// Proofs on calls between replicas.
    ReplicaProofs,
    "streamspace/replica-proof/v1",
    false
);
purpose!(
    /// Encryption of one-time-code secrets at rest.
    TotpSecrets,
    "streamspace/totp-secret/v1",
    false
);

/// One HMAC-SHA256 key for purpose `P`.
struct MacKey<P> {
    bytes: Arc<[u8]>,
    purpose: PhantomData<fn() -> P>,
}

impl<P> Clone for MacKey<P> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            purpose: PhantomData,
        }
    }
}

impl<P: Purpose> MacKey<P> {
    fn derived(master: &MasterSecret) -> Self {
        Self {
            bytes: Arc::from(master.derive(P::LABEL).as_slice()),
            purpose: PhantomData,
        }
    }

    /// The master secret itself as the key: how every hash was made before keys had purposes.
    fn legacy(master: &MasterSecret) -> Self {
        Self {
            bytes: master.0.clone(),
            purpose: PhantomData,
        }
    }

    fn mac(&self, message: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes)
            .expect("HMAC accepts keys of any length");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The keys of purpose `P`: the current one, which makes everything new, and older ones
/// (the previous master secret's, legacy forms) only accepted.
pub struct Keyring<P> {
    current: MacKey<P>,
    older: Vec<MacKey<P>>,
}

impl<P> Clone for Keyring<P> {
    fn clone(&self) -> Self {
        Self {
            current: self.current.clone(),
            older: self.older.clone(),
        }
    }
}

impl<P> std::fmt::Debug for Keyring<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring {{ older: {}, keys: <hidden> }}",
            self.older.len()
        )
    }
}

impl<P: Purpose> Keyring<P> {
    fn new(current: &MasterSecret, previous: Option<&MasterSecret>) -> Self {
        let mut older: Vec<MacKey<P>> = previous.iter().map(|m| MacKey::derived(m)).collect();
        if P::STORED {
            older.push(MacKey::legacy(current));
            older.extend(previous.map(MacKey::legacy));
        }
        Self {
            current: MacKey::derived(current),
            older,
        }
    }

    /// The keyed hash (HMAC-SHA256, hex) of `message` under the current key.
    pub fn mac(&self, message: &str) -> String {
        self.current.mac(message)
    }

    /// The keyed hashes of `message` under the older keys, most recent first: where to look for
    /// a stored value made before the current key.
    pub fn older_macs(&self, message: &str) -> Vec<String> {
        self.older.iter().map(|k| k.mac(message)).collect()
    }

    /// Whether `given` is the keyed hash of `message` under any accepted key (constant time per
    /// comparison).
    pub fn verify(&self, message: &str, given: &str) -> bool {
        std::iter::once(&self.current)
            .chain(&self.older)
            .any(|k| bool::from(k.mac(message).as_bytes().ct_eq(given.as_bytes())))
    }
}

/// Prefix of a sealed (encrypted) one-time-code secret as stored; a stored value without it is
/// a secret stored before they were encrypted (base32 has no `:`).
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// The keys sealing one-time-code secrets at rest: ChaCha20-Poly1305, a random nonce per
/// sealing, the user's id as associated data (a sealed secret copied to another user's row does
/// not open).
#[derive(Clone)]
pub struct TotpSealKeys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for TotpSealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSealKeys(…)")
    }
}

/// A stored one-time-code secret, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedSecret {
    /// The secret (base32).
    pub secret: String,
    /// Whether it was stored in plain text or under the previous key: seal it again.
    pub reseal: bool,
}

/// A stored one-time-code secret that opens under no accepted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a stored one-time-code secret opens under no accepted key (was the master secret changed \
     without --previous-master-secret-file?)"
)]
pub struct SealBroken;

impl TotpSealKeys {
    fn new(current: &MasterSecret, previous: Option<&MasterSecret>) -> Self {
        Self {
            current: current.derive(TotpSecrets::LABEL),
            previous: previous.map(|m| m.derive(TotpSecrets::LABEL)),
        }
    }

    /// `secret` sealed for `user`, as stored.
    pub fn seal(&self, user: Uuid, secret: &str) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = secret.as_bytes().to_vec();
        aead_key(&self.current)
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(user.as_bytes()),
                &mut sealed,
            )
            .expect("a one-time-code secret is far below the AEAD's length limit");
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(stored))
    }

    /// The secret of `user` stored as `stored`.
    pub fn open(&self, user: Uuid, stored: &str) -> Result<OpenedSecret, SealBroken> {
        let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(OpenedSecret {
                secret: stored.to_owned(),
                reseal: true,
            });
        };
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealBroken)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealBroken);
        }
        let keys = std::iter::once((&self.current, false))
            .chain(self.previous.as_ref().map(|k| (k, true)));
        for (key, reseal) in keys {
            if let Some(secret) = open_with(key, user, &bytes) {
                return Ok(OpenedSecret { secret, reseal });
            }
        }
        Err(SealBroken)
    }
}

fn aead_key(key: &[u8; 32]) -> aead::LessSafeKey {
    aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key)
            .expect("ChaCha20-Poly1305 takes 32-byte keys"),
    )
}

fn open_with(key: &[u8; 32], user: Uuid, stored: &[u8]) -> Option<String> {
    let (nonce, sealed) = stored.split_at(NONCE_LEN);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = sealed.to_vec();
    let plain = aead_key(key)
        .open_in_place(nonce, aead::Aad::from(user.as_bytes()), &mut buffer)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Every key of a replica, one per purpose, derived from the master secret (and the previous
/// one during a rotation).
#[derive(Debug, Clone)]
pub struct Keys {
    /// Stored hashes of tokens, agent keys and recovery codes.
    pub credentials: Keyring<CredentialHashing>,
    /// Stored hashes of browser session cookies.
    pub sessions: Keyring<BrowserSessions>,
    /// Viewer token signatures.
    pub viewer: Keyring<ViewerTokens>,
    /// Proofs between replicas.
    pub replicas: Keyring<ReplicaProofs>,
    /// One-time-code secrets at rest.
    pub totp: TotpSealKeys,
}

impl Keys {
    /// The keys of `current`, accepting those of `previous` too.
    pub fn derive(current: &MasterSecret, previous: Option<&MasterSecret>) -> Self {
        Self {
            credentials: Keyring::new(current, previous),
            sessions: Keyring::new(current, previous),
            viewer: Keyring::new(current, previous),
            replicas: Keyring::new(current, previous),
            totp: TotpSealKeys::new(current, previous),
        }
    }

    /// The keys of the configured master secret: from its file, else from the database
    /// (created on the first start); with the previous one's if configured.
    pub async fn load(store: &dyn Store, config: &SecretsConfig) -> Result<Self, SecretError> {
        let current = match &config.master_secret_file {
            Some(path) => MasterSecret::from_file(path)?,
            None => MasterSecret::from_store(store).await?,
        };
        let previous = match &config.previous_master_secret_file {
            Some(path) => {
                let previous = MasterSecret::from_file(path)?;
                if previous.0 == current.0 {
                    return Err(SecretError::SameAsCurrent(path.clone()));
                }
                Some(previous)
            }
            None => None,
        };
        Ok(Self::derive(&current, previous.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(s: &str) -> MasterSecret {
        MasterSecret::new(s.as_bytes())
    }

    #[test]
    fn each_purpose_has_its_own_key() {
        let keys = Keys::derive(&master("one master secret"), None);
        let message = "ssk_same-message";
        let macs = [
            keys.credentials.mac(message),
            keys.sessions.mac(message),
            keys.viewer.mac(message),
            keys.replicas.mac(message),
        ];
        let unique: std::collections::HashSet<_> = macs.iter().collect();
        assert_eq!(unique.len(), macs.len(), "two purposes share a key");
        assert!(!keys.viewer.verify(message, &keys.credentials.mac(message)));
        assert!(keys.viewer.verify(message, &keys.viewer.mac(message)));
        let other = Keys::derive(&master("another master secret"), None);
        assert_ne!(
            other.credentials.mac(message),
            keys.credentials.mac(message)
        );
        assert!(!format!("{keys:?}").contains("one master"));
    }

    #[test]
    fn stored_hashes_of_the_undifferentiated_secret_are_still_found() {
        let m = master("the database's hmac_secret");
        let keys = Keys::derive(&m, None);
        // How `KeyHasher` hashed every credential before keys had purposes.
        let legacy = {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"the database's hmac_secret")
                .expect("any length");
            mac.update(b"ssp_token");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_ne!(keys.credentials.mac("ssp_token"), legacy);
        assert_eq!(
            keys.credentials.older_macs("ssp_token"),
            vec![legacy.clone()]
        );
        assert_eq!(keys.sessions.older_macs("ssp_token"), vec![legacy.clone()]);
        assert!(
            !keys.viewer.verify("ssp_token", &legacy),
            "signatures made with the undifferentiated secret are not accepted"
        );
        assert!(keys.replicas.older_macs("x").is_empty());
    }

    #[test]
    fn a_rotation_accepts_the_previous_keys_and_makes_new_ones() {
        let (old, new) = (master("the old master secret"), master("the new master"));
        let before = Keys::derive(&old, None);
        let during = Keys::derive(&new, Some(&old));
        let after = Keys::derive(&new, None);
        let signed = before.viewer.mac("token body");
        assert!(during.viewer.verify("token body", &signed));
        assert!(!after.viewer.verify("token body", &signed));
        assert_eq!(
            during.viewer.mac("token body"),
            after.viewer.mac("token body")
        );
        let stored = before.credentials.mac("ssk_key");
        assert!(during.credentials.older_macs("ssk_key").contains(&stored));
        assert!(!after.credentials.older_macs("ssk_key").contains(&stored));

        let user = Uuid::now_v7();
        let sealed = before.totp.seal(user, "JBSWY3DPEHPK3PXP");
        assert_eq!(
            during.totp.open(user, &sealed),
            Ok(OpenedSecret {
                secret: "JBSWY3DPEHPK3PXP".into(),
                reseal: true
            })
        );
        assert_eq!(after.totp.open(user, &sealed), Err(SealBroken));
    }

    #[test]
    fn totp_secrets_are_sealed_per_user_and_plain_ones_still_open() {
        let keys = Keys::derive(&master("a master secret for tests"), None);
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = keys.totp.seal(alice, "JBSWY3DPEHPK3PXP");
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(
            sealed,
            keys.totp.seal(alice, "JBSWY3DPEHPK3PXP"),
            "nonces repeat"
        );
        assert_eq!(
            keys.totp.open(alice, &sealed).map(|o| (o.secret, o.reseal)),
            Ok(("JBSWY3DPEHPK3PXP".to_owned(), false))
        );
        assert_eq!(keys.totp.open(bob, &sealed), Err(SealBroken));
        assert_eq!(
            keys.totp.open(alice, "JBSWY3DPEHPK3PXP"),
            Ok(OpenedSecret {
                secret: "JBSWY3DPEHPK3PXP".into(),
                reseal: true
            }),
            "a secret stored before encryption opens, to be sealed"
        );
        assert_eq!(
            keys.totp.open(alice, &format!("{SEALED_PREFIX}AAAA")),
            Err(SealBroken)
        );
    }

    #[test]
    fn master_secret_files_must_be_long_enough() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let short = dir.path().join("short");
        std::fs::write(&short, "too short\n")?;
        assert!(matches!(
            MasterSecret::from_file(&short),
            Err(SecretError::TooShort { len: 9, .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "a".repeat(64)))?;
        let read = MasterSecret::from_file(&good)?;
        assert_eq!(&*read.0, "a".repeat(64).as_bytes(), "whitespace is trimmed");
        assert!(matches!(
            MasterSecret::from_file(&dir.path().join("missing")),
            Err(SecretError::Read { .. })
        ));
        Ok(())
    }
}
