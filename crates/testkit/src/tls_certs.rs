//! A certificate authority made in the test, and the server certificates it signs, as PEM files
//! in a temporary directory: what the TLS tests hand to Redis, PostgreSQL and StreamSpace.
//!
//! Two [`TestCa`]s never trust each other's certificates, which is how a test makes an
//! "untrusted certificate": sign with one, verify with the other.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA whose certificate is at [`TestCa::cert`].
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    cert: PathBuf,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (its common name and file name).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-ca-")
            .tempdir()
            .context("creating a directory for the test CA")?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = dir.path().join(format!("{name}.pem"));
        std::fs::write(&cert, params.self_signed(&key)?.pem())?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            dir,
            cert,
        })
    }

    /// The CA's certificate (PEM): what a client is told to trust.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Issues a server certificate for `names` (host names or IP addresses, e.g.
    /// `127.0.0.1`), written as `NAME.pem` and `NAME-key.pem` into this CA's directory.
    pub fn issue(&self, name: &str, names: &[&str]) -> anyhow::Result<CertFiles> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let files = CertFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, params.signed_by(&key, &self.issuer)?.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
