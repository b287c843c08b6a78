//! What a joined node keeps in its data directory, so that a restarted worker resumes without a
//! new stake (and without even a new join while its certificate lasts):
//!
//! | file | what |
//! |---|---|
//! | `node.key` | the node's ECDSA P-256 key (PKCS#8 PEM, 0600), made once |
//! | `node.crt` | its current client certificate (PEM) |
//! | `server.crt` | the attested server certificate (PEM) |
//! | `join.json` | server, node name, cluster, attested TLS key, certificate expiry |
//! | `kubeconfig` | pinned to the attested certificate, with the node's credentials (0600) |

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use protocol::join::NodeCredentials;
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::{ClientIdentity, ServerUrl};

/// A file of the data directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn err(path: &Path, reason: impl ToString) -> StateError {
    StateError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Writes `contents` to `path` atomically (temporary sibling, fsync, rename) with `mode`.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| err(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| err(&tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))
}

/// The node's key pair.
pub struct NodeKey {
    pair: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Reads `path`, or creates a fresh key there (0600).
    ///
    /// # Errors
    ///
    /// [`StateError`] for an unreadable or malformed key, or a failed write.
    pub fn load_or_create(path: &Path) -> Result<Self, StateError> {
        if path.exists() {
            let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(path, e))?);
            let pair = KeyPair::from_pem(&pem).map_err(|e| err(path, e))?;
            return Ok(Self { pair });
        }
        let pair = KeyPair::generate().map_err(|e| err(path, e))?;
        let pem = Zeroizing::new(pair.serialize_pem());
        write_file(path, pem.as_bytes(), 0o600)?;
        Ok(Self { pair })
    }

    /// The public key as a SubjectPublicKeyInfo (DER): what the join statement binds.
    #[must_use]
    pub fn spki_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// The private key, PKCS#8 PEM.
    #[must_use]
    pub fn pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.pair.serialize_pem())
    }
}

/// What `join.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRecord {
    /// The server joined.
    pub server: String,
    /// The node name.
    pub node_name: String,
    /// The registry's cluster object ID.
    pub cluster_id: String,
    /// SHA-256 of the attested server key's SubjectPublicKeyInfo, hex.
    pub tls_key_sha256: String,
    /// When the current certificate expires, ms since the epoch.
    pub not_after_ms: u64,
    /// When to renew it, ms since the epoch.
    pub renew_after_ms: u64,
}

/// The files of a node's data directory.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    dir: PathBuf,
}

impl NodeFiles {
    /// The files under `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/node.key`.
    #[must_use]
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    /// `DIR/kubeconfig`.
    #[must_use]
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The node key, created on first use.
    ///
    /// # Errors
    ///
    /// [`StateError`].
    pub fn node_key(&self) -> Result<NodeKey, StateError> {
        NodeKey::load_or_create(&self.key_path())
    }

    /// The recorded join and certificate, if any (and readable).
    #[must_use]
    pub fn saved(&self) -> Option<(JoinRecord, String)> {
        let record: JoinRecord =
            serde_json::from_slice(&std::fs::read(self.dir.join("join.json")).ok()?).ok()?;
        let cert = std::fs::read_to_string(self.dir.join("node.crt")).ok()?;
        Some((record, cert))
    }

    /// Records a join (or renewal): the certificate, the attested server certificate, the
    /// record, and a kubeconfig pinned to that server certificate.
    ///
    /// # Errors
    ///
    /// [`StateError`].
    pub fn save(
        &self,
        record: &JoinRecord,
        credentials: &NodeCredentials,
        server: &ServerUrl,
        server_cert_der: &[u8],
        key: &NodeKey,
    ) -> Result<ClientIdentity, StateError> {
        let server_pem = pem::encode(&pem::Pem::new("CERTIFICATE", server_cert_der.to_vec()));
        write_file(&self.dir.join("server.crt"), server_pem.as_bytes(), 0o644)?;
        write_file(
            &self.dir.join("node.crt"),
            credentials.certificate.as_bytes(),
            0o644,
        )?;
        let json = serde_json::to_vec_pretty(record).map_err(|e| err(&self.dir, e))?;
        write_file(&self.dir.join("join.json"), &json, 0o644)?;
        let identity = ClientIdentity::new(credentials.certificate.clone(), key.pem());
        let text = kubeconfig(&record.node_name, server, &server_pem, &identity);
        write_file(&self.kubeconfig_path(), text.as_bytes(), 0o600)?;
        Ok(identity)
    }
}

/// A kubeconfig for the node: the cluster pins the attested server certificate itself (Go's
/// `crypto/x509` accepts a chain that is one certificate found in its roots, so kubectl
/// connects only to a server presenting exactly it), the user is the node's certificate and
/// key.
#[must_use]
pub fn kubeconfig(
    node_name: &str,
    server: &ServerUrl,
    server_pem: &str,
    identity: &ClientIdentity,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
# The cluster pins the attested server certificate (verified by daas-worker at join).
clusters:
- name: k3s-daas
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: system:node:{node_name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: k3s-daas
  context:
    cluster: k3s-daas
    user: system:node:{node_name}
current-context: k3s-daas
",
        url = server.url,
        ca = b64(server_pem),
        cert = b64(identity.cert_pem()),
        key = b64(identity.key_pem()),
    )
}
