//! Dev-mode credentials: a client CA, the server certificate, and the
//! admin's client certificate and bearer token, created at first start under
//! `DIR/pki/` (private files 0600) and reused afterwards. In enclave mode
//! the TLS identity comes from the attestation crate instead.
//!
//! The server certificate is self-signed and is itself what clients trust
//! (kubeconfigs, `curl --cacert`, the pods' `ca.crt`), the certificate the
//! attestation document binds. A trust anchor that is not self-signed is
//! refused by OpenSSL's default verification (Python, Node, curl): the
//! server certificate used to be issued by the CA and sent with it, and the
//! attested kubeconfig that pins it failed there with "self-signed
//! certificate in certificate chain" (issue 20).
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
    /// The client CA's certificate: issues and verifies client certificates.
    pub ca_cert_pem: String,
    /// The server certificate, self-signed: what clients trust (SANs localhost, 127.0.0.1,
    /// ::1 and any extra names).
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

/// The self-signed server certificate (PEM) of `key`, for localhost, 127.0.0.1, ::1 and
/// `extra_sans`.
fn server_certificate(key: &KeyPair, extra_sans: &[String]) -> Result<String, ServeError> {
    let mut server = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    let defaults = ["localhost", "127.0.0.1", "::1"].map(str::to_owned);
    for s in defaults.iter().chain(extra_sans) {
        let san = match s.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(s.clone().try_into().map_err(cert_error)?),
        };
        if !server.subject_alt_names.contains(&san) {
            server.subject_alt_names.push(san);
        }
    }
    server
        .distinguished_name
        .push(DnType::CommonName, "k3s-daas-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(server.self_signed(key).map_err(cert_error)?.pem())
}

/// Whether the PEM certificate names itself as its issuer.
fn is_self_signed(cert_pem: &str) -> Result<bool, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use x509_cert::der::Decode as _;
    let bad = |e: String| ServeError::Certificate(format!("the stored server certificate: {e}"));
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    Ok(cert.tbs_certificate.issuer == cert.tbs_certificate.subject)
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
            let mut loaded = DevPki {
                ca_cert_pem: read(&paths[0])?,
                server_cert_pem: read(&paths[1])?,
                server_key_pem: read(&paths[2])?,
                admin_cert_pem: read(&paths[3])?,
                admin_key_pem: read(&paths[4])?,
                admin_token: read(&paths[5])?.trim().to_string(),
                ca_key_pem: std::fs::read_to_string(pki.join(CA_KEY)).ok(),
            };
            if !is_self_signed(&loaded.server_cert_pem)? {
                // Made by a version whose CA issued it: the same key, self-signed now.
                let key = KeyPair::from_pem(&loaded.server_key_pem).map_err(cert_error)?;
                loaded.server_cert_pem = server_certificate(&key, extra_sans)?;
                write_private(&paths[1], loaded.server_cert_pem.as_bytes())?;
            }
            return Ok(loaded);
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

        let server_key = KeyPair::generate().map_err(cert_error)?;
        let server_cert_pem = server_certificate(&server_key, extra_sans)?;

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
            server_cert_pem,
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
            ca = b64(&self.server_cert_pem),
            cert = b64(&self.admin_cert_pem),
            key = b64(&self.admin_key_pem),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rustls_pki_types::pem::PemObject as _;

    #[test]
    fn the_server_certificate_is_self_signed_with_the_extra_names() {
        let pki = DevPki::generate(&["10.43.0.1".into(), "kubernetes".into()]).unwrap();
        assert!(is_self_signed(&pki.server_cert_pem).unwrap());
        assert!(is_self_signed(&pki.ca_cert_pem).unwrap());
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
            .unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        for name in ["localhost", "127.0.0.1", "10.43.0.1", "kubernetes"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            cert.verify_is_valid_for_subject_name(&name).unwrap();
        }
        // The admin kubeconfig trusts the server certificate, not the client CA.
        let kubeconfig = pki.admin_kubeconfig("https://127.0.0.1:6443");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pki.server_cert_pem);
        assert!(kubeconfig.contains(&format!("certificate-authority-data: {b64}")));
    }

    #[test]
    fn a_ca_issued_server_certificate_from_an_older_version_is_reissued_self_signed() {
        let dir = tempfile::tempdir().unwrap();
        let made = DevPki::load_or_create(dir.path(), &["example.test".into()]).unwrap();
        // As older versions wrote it: issued by the CA, for the same key.
        let ca_key = KeyPair::from_pem(made.ca_key_pem.as_deref().unwrap()).unwrap();
        let issuer = Issuer::new(dev_ca_params().unwrap(), &ca_key);
        let key = KeyPair::from_pem(&made.server_key_pem).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let legacy = params.signed_by(&key, &issuer).unwrap().pem();
        let path = dir.path().join("pki/server.crt");
        std::fs::write(&path, &legacy).unwrap();
        assert!(!is_self_signed(&legacy).unwrap());

        let loaded = DevPki::load_or_create(dir.path(), &["example.test".into()]).unwrap();
        assert!(is_self_signed(&loaded.server_cert_pem).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            loaded.server_cert_pem
        );
        assert_eq!(
            loaded.server_key_pem, made.server_key_pem,
            "the key is kept"
        );
        assert_eq!(loaded.admin_token, made.admin_token);
        // A self-signed one is read as it is.
        let again = DevPki::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(again.server_cert_pem, loaded.server_cert_pem);
    }

    #[test]
    fn an_unreadable_stored_server_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        DevPki::load_or_create(dir.path(), &[]).unwrap();
        std::fs::write(dir.path().join("pki/server.crt"), "not a certificate").unwrap();
        let err = DevPki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("server certificate"), "{err}");
    }
}
