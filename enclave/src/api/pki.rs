//! Dev-mode credentials: a CA, the server certificate, and the admin's
//! client certificate and bearer token, created at first start under
//! `DIR/pki/` (private files 0600) and reused afterwards. In enclave mode
//! the TLS identity comes from the attestation crate instead.
//!
//! The dev CA's key is kept too (`ca.key`), so dev tooling can issue more
//! client certificates ([`DevPki::issue_client_certificate`]), e.g. node
//! credentials for tests before nodes join through attestation.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::rand::{SecureRandom, SystemRandom};

use super::ServeError;

/// PEM-encoded dev credentials.
#[derive(Clone)]
pub struct DevPki {
    /// The CA certificate (trusted by kubeconfigs, verifies client certs).
    pub ca_cert_pem: String,
    /// The server certificate (SANs localhost, 127.0.0.1, ::1 and any extra names).
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
    /// The admin client certificate (CN=admin, O=system:masters).
    pub admin_cert_pem: String,
    /// The admin client key.
    pub admin_key_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
    /// The CA's private key; `None` for a directory made before it was kept.
    pub ca_key_pem: Option<String>,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPki").finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |cause| ServeError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Writes `contents` to a new file readable only by the owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServeError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn cert_error(e: rcgen::Error) -> ServeError {
    ServeError::Certificate(e.to_string())
}

/// The dev CA's certificate parameters.
fn dev_ca_params() -> Result<CertificateParams, ServeError> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    ca.distinguished_name
        .push(DnType::CommonName, "k3s-daas dev CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

/// The CA key, kept apart from [`FILES`]: directories made before it was kept lack it.
const CA_KEY: &str = "ca.key";

const FILES: [&str; 6] = [
    "ca.crt",
    "server.crt",
    "server.key",
    "admin.crt",
    "admin.key",
    "admin.token",
];

impl DevPki {
    /// Loads the credentials under `dir/pki`, creating them at first start.
    ///
    /// # Errors
    /// I/O failures, or a partially present set of files.
    pub fn load_or_create(dir: &Path, extra_sans: &[String]) -> Result<Self, ServeError> {
        let pki = dir.join("pki");
        let paths: Vec<PathBuf> = FILES.iter().map(|f| pki.join(f)).collect();
        let present = paths.iter().filter(|p| p.exists()).count();
        if present == FILES.len() {
            let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(io(p));
            return Ok(DevPki {
                ca_cert_pem: read(&paths[0])?,
                server_cert_pem: read(&paths[1])?,
                server_key_pem: read(&paths[2])?,
                admin_cert_pem: read(&paths[3])?,
                admin_key_pem: read(&paths[4])?,
                admin_token: read(&paths[5])?.trim().to_string(),
                ca_key_pem: std::fs::read_to_string(pki.join(CA_KEY)).ok(),
            });
        }
        if present != 0 {
            return Err(ServeError::Config(format!(
                "{} holds only some of the dev credentials; remove it to regenerate them",
                pki.display()
            )));
        }
        std::fs::create_dir_all(&pki).map_err(io(&pki))?;
        let created = Self::generate(extra_sans)?;
        let contents = [
            &created.ca_cert_pem,
            &created.server_cert_pem,
            &created.server_key_pem,
            &created.admin_cert_pem,
            &created.admin_key_pem,
            &created.admin_token,
        ];
        for (p, c) in paths.iter().zip(contents) {
            write_private(p, c.as_bytes())?;
        }
        if let Some(key) = &created.ca_key_pem {
            write_private(&pki.join(CA_KEY), key.as_bytes())?;
        }
        Ok(created)
    }

    /// Generates a fresh set (ECDSA P-256 keys).
    ///
    /// # Errors
    /// Certificate generation failures.
    pub fn generate(extra_sans: &[String]) -> Result<Self, ServeError> {
        let ca_key = KeyPair::generate().map_err(cert_error)?;
        let ca = dev_ca_params()?;
        let ca_cert = ca.self_signed(&ca_key).map_err(cert_error)?;
        let issuer = Issuer::new(ca, &ca_key);

        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        sans.extend(extra_sans.iter().cloned());
        let server_key = KeyPair::generate().map_err(cert_error)?;
        let mut server = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        for s in &sans {
            let san = match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(s.clone().try_into().map_err(cert_error)?),
            };
            server.subject_alt_names.push(san);
        }
        server
            .distinguished_name
            .push(DnType::CommonName, "k3s-daas-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).map_err(cert_error)?;

        let admin_key = KeyPair::generate().map_err(cert_error)?;
        let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(cert_error)?;

        let mut token = [0u8; 32];
        SystemRandom::new()
            .fill(&mut token)
            .map_err(|_| ServeError::Config("no system randomness".into()))?;
        Ok(DevPki {
            ca_cert_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            admin_token: hex::encode(token),
            ca_key_pem: Some(ca_key.serialize_pem()),
        })
    }

    /// A client certificate (and its key, both PEM) for `name` in `groups`, signed by the
    /// dev CA: what the server's client verifier accepts as that user.
    ///
    /// # Errors
    /// [`ServeError::Config`] without the CA key; certificate generation failures.
    pub fn issue_client_certificate(
        &self,
        name: &str,
        groups: &[&str],
    ) -> Result<(String, String), ServeError> {
        let ca_key_pem = self.ca_key_pem.as_deref().ok_or_else(|| {
            ServeError::Config("the dev CA's key was not kept in this data directory".into())
        })?;
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(cert_error)?;
        // The CA's own parameters (its name is what issued certificates name as issuer).
        let issuer = Issuer::new(dev_ca_params()?, &ca_key);
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params.distinguished_name.push(DnType::CommonName, name);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A kubeconfig for the admin (client certificate and token) against `server_url`.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: k3s-daas
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: k3s-daas
  context:
    cluster: k3s-daas
    user: admin
current-context: k3s-daas
",
            ca = b64(&self.ca_cert_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }
}
