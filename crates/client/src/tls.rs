//! TLS for every connection StreamSpace makes: the CLI's API calls, the agent's control and data
//! WebSockets, and the server's own calls (to other replicas, to OpenID providers).
//!
//! One function, [`client_config`], builds the rustls configuration they all share from the
//! same inputs: the system's trusted roots plus the Mozilla roots (webpki-roots), plus the
//! private CA of `--ca-cert` if given, and optionally a client certificate. Verification is
//! always on; the only way to talk without TLS is a plain `http://` URL, which [`check_plain`]
//! refuses for anything but loopback unless the operator says `--allow-insecure`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What a TLS client trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of CA certificates trusted besides the system's (`--ca-cert`).
    pub ca_cert: Option<PathBuf>,
    /// A client certificate to present (agents: `--tls-client-cert`/`--tls-client-key`).
    pub identity: Option<Identity>,
    /// Verify every server against this name instead of the host in the URL: for calls to
    /// addresses that are not names on the certificate, such as another replica's pod IP.
    pub server_name: Option<String>,
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS setting that cannot be used; the message names the file and the flag's subject.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{name:?} is not a valid TLS server name")]
    ServerName { name: String },
    #[error("the TLS configuration cannot be used: {0}")]
    Config(String),
}

/// Every PEM certificate in `path`, in order (a chain: the end-entity certificate first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first PEM private key in `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => TlsError::Invalid {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// A root store of the certificates in the PEM file `path` (a CA bundle).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The rustls client configuration for `options` (see the module documentation). Build it once
/// per process and share it: reading the system's roots takes a few milliseconds.
pub fn client_config(options: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Unreadable system certificates are skipped: the Mozilla roots and --ca-cert remain.
    let (_added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &options.ca_cert {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Invalid {
                path: path.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &options.server_name {
        None => builder.with_webpki_verifier(verifier),
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| TlsError::ServerName { name: name.clone() })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FixedName {
                    inner: verifier,
                    name,
                }))
        }
    };
    let config = match &options.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let certs = load_certs(&identity.cert)?;
            let key = load_key(&identity.key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Invalid {
                    path: identity.key.clone(),
                    reason: format!("does not match {}: {e}", identity.cert.display()),
                })?
        }
    };
    Ok(Arc::new(config))
}

/// Verifies the server's certificate exactly as rustls does, but for a fixed name instead of
/// the one dialled ([`TlsOptions::server_name`]).
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl fmt::Debug for FixedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedName")
            .field("name", &self.name)
            .finish()
    }
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A plain `http://` (or `ws://`) URL to a host that is not this machine, given without
/// `--allow-insecure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing the plain {scheme}:// URL {url}: {host} is not a loopback address, so \
     credentials and everything after them would cross the network unencrypted; use https://, \
     or pass --allow-insecure (STREAMSPACE_ALLOW_INSECURE=true) if that network is trusted"
)]
pub struct PlainUrlRefused {
    pub url: String,
    pub scheme: String,
    pub host: String,
}

/// Refuses a plain-text URL whose host is not a loopback address, unless `allow_insecure`.
/// `https`/`wss` URLs, and URLs that do not parse (refused elsewhere, with their own reason),
/// pass.
pub fn check_plain(url: &str, allow_insecure: bool) -> Result<(), PlainUrlRefused> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let scheme = parsed.scheme();
    if allow_insecure || !matches!(scheme, "http" | "ws") {
        return Ok(());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => true,
    };
    if loopback {
        return Ok(());
    }
    Err(PlainUrlRefused {
        url: url.to_owned(),
        scheme: scheme.to_owned(),
        host: parsed.host_str().unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_are_refused_off_this_machine_unless_allowed() {
        for ok in [
            "https://ss.example",
            "wss://10.0.0.1/x",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://agent.localhost",
        ] {
            assert_eq!(check_plain(ok, false), Ok(()), "{ok} must be accepted");
        }
        for bad in ["http://ss.example", "ws://10.0.0.1:8080", "http://[::2]/"] {
            let err = check_plain(bad, false).expect_err("a plain URL to another host");
            let text = err.to_string();
            assert!(text.contains("--allow-insecure"), "{text}");
            assert!(text.contains("not a loopback address"), "{text}");
            assert_eq!(
                check_plain(bad, true),
                Ok(()),
                "--allow-insecure allows {bad}"
            );
        }
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("missing.pem");
        let err = client_config(&TlsOptions {
            ca_cert: Some(missing.clone()),
            ..TlsOptions::default()
        })
        .expect_err("a missing CA file");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(matches!(
            load_certs(&empty),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(load_key(&empty), Err(TlsError::NoKey { .. })));
    }

    #[test]
    fn the_default_configuration_trusts_public_roots() {
        client_config(&TlsOptions::default()).expect("system and Mozilla roots");
        let bad = client_config(&TlsOptions {
            server_name: Some("not a name!".into()),
            ..TlsOptions::default()
        });
        assert!(matches!(bad, Err(TlsError::ServerName { .. })));
    }
}
