//! The replica's TLS: the listener's certificate, re-read when its files change, and the
//! client certificates it asks agents for.
//!
//! - **Rotation.** Every handshake checks the certificate and key files (size, modification
//!   time, inode: two `stat` calls) and loads them again when they changed, so a certificate
//!   renewed by cert-manager or certbot is served on the next connection, with no restart. A
//!   pair that cannot be loaded (a half-written rotation, a key that does not match) is
//!   logged once and the previous certificate is kept until the files change again.
//! - **Client certificates.** With `--client-ca` the handshake *asks* for a client certificate
//!   and verifies one if given; a client without one (a browser, the CLI) is still served.
//!   The request carries a [`ClientCert`] telling whether a verified certificate came with
//!   the connection; with `--require-agent-certs` the agent endpoints refuse connections
//!   without one ([`require_agent_cert`]), in addition to checking the agent key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::http::StatusCode;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use streamspace_client::tls::{TlsOptions, client_config, load_certs, load_key, load_roots};

use crate::config::ListenerTls;
use crate::error::{ApiError, ServerError};

/// Whether the connection a request came on presented a client certificate that verified
/// against `--client-ca` (absent on plain connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientCert(pub bool);

/// The acceptor for the listener's TLS settings.
pub(crate) fn acceptor(config: &ListenerTls) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let invalid = |what: String| ServerError::InvalidConfig(what);
    let resolver = ReloadingCert::load(&config.cert, &config.key, provider.clone())
        .map_err(|e| invalid(format!("TLS certificate: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = load_roots(path).map_err(|e| invalid(format!("--client-ca: {e}")))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(format!("--client-ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_cert_resolver(Arc::new(resolver));
    // The server speaks HTTP/1.1 only (WebSocket upgrades need it).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// The client TLS for calls to other replicas: the system's roots plus `--ca-cert`, verifying
/// peers against `--internal-tls-name` when given, else against the host of their internal
/// address (an IP SAN for a pod IP).
pub(crate) fn peer_config(
    config: &crate::config::ServerConfig,
) -> Result<Arc<rustls::ClientConfig>, ServerError> {
    client_config(&TlsOptions {
        ca_cert: config.ca_cert.clone(),
        identity: None,
        server_name: config.internal_tls_name.clone(),
    })
    .map_err(|e| ServerError::InvalidConfig(format!("TLS to other replicas: {e}")))
}

/// The client TLS for the replica's other outgoing calls (single sign-on providers): the
/// system's roots plus `--ca-cert`.
pub(crate) fn outgoing_config(
    config: &crate::config::ServerConfig,
) -> Result<Arc<rustls::ClientConfig>, ServerError> {
    client_config(&TlsOptions {
        ca_cert: config.ca_cert.clone(),
        ..TlsOptions::default()
    })
    .map_err(|e| ServerError::InvalidConfig(format!("--ca-cert: {e}")))
}

/// Refuses an agent connection without a verified client certificate when `--require-agent-certs`
/// is set.
pub(crate) fn require_agent_cert(
    config: Option<&ListenerTls>,
    cert: Option<ClientCert>,
) -> Result<(), ApiError> {
    let required = config.is_some_and(|tls| tls.require_agent_certs);
    if required && cert != Some(ClientCert(true)) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "this control plane requires agents to present a client certificate from its \
             client CA (agent flags --tls-client-cert and --tls-client-key)",
        ));
    }
    Ok(())
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

/// The listener's certificate, loaded again when its files change (see the module docs).
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' stamps when `key` was read.
    stamps: (Option<Stamp>, Option<Stamp>),
    /// The stamps of files that failed to load, not tried again until they change.
    failed: Option<(Option<Stamp>, Option<Stamp>)>,
}

impl ReloadingCert {
    fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, String> {
        let stamps = (stamp(cert), stamp(key));
        let certified = read_pair(cert, key, &provider)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider,
            state: Mutex::new(Loaded {
                key: Arc::new(certified),
                stamps,
                failed: None,
            }),
        })
    }

    /// The certificate to serve, after loading the files again if they changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if stamps != state.stamps && state.failed != Some(stamps) {
            match read_pair(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    state.key = Arc::new(certified);
                    state.stamps = stamps;
                    state.failed = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e,
                        "the TLS certificate files changed but cannot be loaded; \
                         serving the previous certificate");
                    state.failed = Some(stamps);
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = load_certs(cert).map_err(|e| e.to_string())?;
    let private = load_key(key).map_err(|e| e.to_string())?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        format!(
            "{} and {} do not form a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(require: bool) -> ListenerTls {
        ListenerTls {
            cert: "c".into(),
            key: "k".into(),
            client_ca: Some("ca".into()),
            require_agent_certs: require,
        }
    }

    #[test]
    fn agents_need_a_verified_certificate_only_when_required() {
        let yes = Some(ClientCert(true));
        let no = Some(ClientCert(false));
        assert!(require_agent_cert(None, None).is_ok(), "plain listener");
        assert!(require_agent_cert(Some(&listener(false)), no).is_ok());
        assert!(require_agent_cert(Some(&listener(true)), yes).is_ok());
        for missing in [no, None] {
            let err = require_agent_cert(Some(&listener(true)), missing)
                .expect_err("refused without a certificate");
            assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        }
    }
}
