//! Certificates made in the test: a throwaway certificate authority ([`TestCa`]) that issues
//! server and client certificates as PEM files in its own temporary directory, and a probe
//! that tells which certificate a TLS server presents ([`served_certificate`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER-encoded, to compare with what a server presents.
    pub der: Vec<u8>,
}

/// A certificate authority for one test; its files live as long as it does.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
    /// The CA certificate (PEM), what clients and servers are told to trust.
    pub cert: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `ca.pem`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("a directory for certificates")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let cert = dir.path().join("ca.pem");
        std::fs::write(&cert, issuer.pem()).context("writing the CA certificate")?;
        Ok(Self { issuer, dir, cert })
    }

    /// The directory the CA writes its files to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` (DNS names or IP addresses), written to
    /// `{stem}.pem` and `{stem}-key.pem` (replacing earlier files of that stem atomically, as
    /// a certificate manager would).
    pub fn server_cert(&self, stem: &str, names: &[&str]) -> anyhow::Result<CertFiles> {
        self.issue(stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name`, written as [`TestCa::server_cert`] does.
    pub fn client_cert(&self, stem: &str, name: &str) -> anyhow::Result<CertFiles> {
        self.issue(stem, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<CertFiles> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}-key.pem")),
            der: cert.der().to_vec(),
        };
        replace(&files.key, &key.serialize_pem())?;
        replace(&files.cert, &cert.pem())?;
        Ok(files)
    }
}

/// A self-signed certificate for `names`, no CA involved, written to `dir/{stem}.pem` and
/// `dir/{stem}-key.pem`.
pub fn self_signed(dir: &Path, stem: &str, names: &[&str]) -> anyhow::Result<CertFiles> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    let files = CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
        der: cert.der().to_vec(),
    };
    replace(&files.key, &signing_key.serialize_pem())?;
    replace(&files.cert, &cert.pem())?;
    Ok(files)
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half of it.
fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// The certificate (DER) the TLS server at `addr` presents to a client that trusts `ca` and
/// expects `name`; fails if the handshake does.
pub async fn served_certificate(
    addr: std::net::SocketAddr,
    ca: &Path,
    name: &str,
) -> anyhow::Result<Vec<u8>> {
    let config = streamspace_client::tls::client_config(&streamspace_client::tls::TlsOptions {
        ca_cert: Some(ca.to_owned()),
        ..Default::default()
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned())?;
    let stream = connector
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("the server presented no certificate")?;
    Ok(cert.to_vec())
}
