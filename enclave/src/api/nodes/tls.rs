//! The API server's client-certificate verifier once nodes can join: node identities
//! (`CN=system:node:*` or `O=system:nodes`) are accepted only from the node CA and only for the
//! key their node joined with, while it is admitted; every other identity is verified against
//! the cluster CA as before.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::NodeAdmission;
use crate::api::{Authenticator, DevPki, ServeError};

/// Verifies client certificates: nodes against the node CA and their binding, everyone else
/// against the cluster CA.
#[derive(Debug)]
pub struct NodeClientVerifier {
    cluster: Arc<dyn ClientCertVerifier>,
    nodes: Arc<dyn ClientCertVerifier>,
    hints: Vec<DistinguishedName>,
    admission: NodeAdmission,
}

fn is_node_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let user = Authenticator::client_certificate(cert)?;
    let node = user.name.starts_with(protocol::join::NODE_USER_PREFIX)
        || user.groups.iter().any(|g| g == protocol::join::NODES_GROUP);
    node.then_some(user.name)
}

impl NodeClientVerifier {
    /// A verifier trusting `cluster_ca_ders` (the cluster CA, and the client CA that signs
    /// approved CertificateSigningRequests) for people and `admission`'s node CA for nodes.
    ///
    /// # Errors
    ///
    /// [`ServeError::Certificate`] for a CA certificate rustls refuses.
    pub fn new(cluster_ca_ders: &[&[u8]], admission: NodeAdmission) -> Result<Self, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = |ders: &[&[u8]]| -> Result<Arc<dyn ClientCertVerifier>, ServeError> {
            let mut roots = rustls::RootCertStore::empty();
            for der in ders {
                roots.add(CertificateDer::from(der.to_vec()))?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServeError::Certificate(e.to_string()))
        };
        let cluster = verifier(cluster_ca_ders)?;
        let nodes = verifier(&[admission.ca_cert_der()])?;
        let hints = cluster
            .root_hint_subjects()
            .iter()
            .chain(nodes.root_hint_subjects())
            .cloned()
            .collect();
        Ok(Self {
            cluster,
            nodes,
            hints,
            admission,
        })
    }
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let Some(user) = is_node_identity(end_entity) else {
            return self
                .cluster
                .verify_client_cert(end_entity, intermediates, now);
        };
        let verified = self
            .nodes
            .verify_client_cert(end_entity, intermediates, now)?;
        let node = protocol::join::node_name_of_user(&user).unwrap_or_default();
        let key = attestation::spki_sha256(end_entity)
            .map_err(|e| rustls::Error::General(format!("node certificate: {e}")))?;
        if self.admission.book().admits_key(node, &key) {
            Ok(verified)
        } else {
            tracing::info!(
                node,
                "refused a node certificate: not admitted or superseded key"
            );
            Err(rustls::Error::General(format!(
                "the certificate of node {node:?} is no longer accepted (its stake stopped \
                 admitting it, or it joined again with another key)"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.cluster.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.cluster.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.cluster.supported_verify_schemes()
    }
}

/// The API server's rustls configuration once nodes can join: as
/// [`crate::api::tls_config_with_client_cas`] (people's certificates from the cluster CA or
/// one of `client_cas`, PEM), with client certificates verified by [`NodeClientVerifier`].
///
/// # Errors
///
/// Unparseable PEM or a rejected key.
pub fn tls_config_with_nodes(
    pki: &DevPki,
    client_cas: &[&str],
    admission: NodeAdmission,
) -> Result<Arc<ServerConfig>, ServeError> {
    let pem = |what: &str, e: rustls_pki_types::pem::Error| {
        ServeError::Certificate(format!("{what}: {e}"))
    };
    let ca =
        CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).map_err(|e| pem("CA", e))?;
    let mut people = vec![ca];
    for extra in client_cas {
        people.push(
            CertificateDer::from_pem_slice(extra.as_bytes()).map_err(|e| pem("client CA", e))?,
        );
    }
    let ders: Vec<&[u8]> = people.iter().map(|c| c.as_ref()).collect();
    let verifier = NodeClientVerifier::new(&ders, admission)?;
    let cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
        .map_err(|e| pem("server certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|e| pem("server key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
