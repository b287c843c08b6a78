//! The node's TLS credentials for the tunnel.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the tunnel gets its TLS client configuration: the node's certificate and key, and how
/// the enclave's certificate is checked. Asked for at every dial, so a renewed certificate is
/// used from the next connection on. The tunnel sets ALPN itself.
pub trait TunnelTls: Send + Sync + 'static {
    /// The configuration for the next dial.
    ///
    /// # Errors
    ///
    /// A message saying why there is none (the dial is retried with backoff).
    fn client_config(&self) -> Result<Arc<ClientConfig>, String>;
}

/// Credentials in PEM files: the CA that signed the enclave's serving certificate, the node's
/// client certificate (`CN=system:node:NAME`, `O=system:nodes`) and its key. Read at every dial.
#[derive(Debug, Clone)]
pub struct PemCredentials {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The client certificate chain (PEM).
    pub certificate: PathBuf,
    /// The client key (PEM).
    pub key: PathBuf,
}

impl TunnelTls for PemCredentials {
    fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&self.ca)?) {
            let ca = ca.map_err(|e| format!("{}: {e}", self.ca.display()))?;
            roots.add(ca).map_err(|e| e.to_string())?;
        }
        let chain = CertificateDer::pem_slice_iter(&read(&self.certificate)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", self.certificate.display()))?;
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }
}

/// The join's credentials: the enclave's attested key pinned, the node's current certificate
/// (renewals are picked up at the next dial).
impl TunnelTls for crate::client::ApiAccess {
    fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        self.tls_config().map(Arc::new).map_err(|e| e.to_string())
    }
}
