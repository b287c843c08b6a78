//! The two ways a worker (or `daas`) trusts the server's TLS certificate: not yet, on first
//! contact, until its attestation has been verified and bound to that very certificate; and
//! afterwards only for exactly the attested key. Neither consults a CA: the attestation is the
//! only thing that vouches for the server. Both still check the handshake signatures against
//! the presented certificate, so the peer proves it holds that certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Which server certificates a connection accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerTrust {
    /// Any certificate: first contact, to be attested over this connection before anything
    /// is sent that matters.
    AttestLater,
    /// Only a certificate whose SubjectPublicKeyInfo has this SHA-256 (the attested key).
    PinnedKey([u8; 32]),
    /// Only exactly this certificate.
    PinnedCertificate(CertificateDer<'static>),
}

#[derive(Debug)]
pub(super) struct Verifier {
    provider: Arc<CryptoProvider>,
    trust: ServerTrust,
}

impl Verifier {
    pub(super) fn new(provider: Arc<CryptoProvider>, trust: ServerTrust) -> Self {
        Self { provider, trust }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            ServerTrust::AttestLater => Ok(ServerCertVerified::assertion()),
            ServerTrust::PinnedCertificate(pinned) if pinned.as_ref() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            ServerTrust::PinnedCertificate(_) => Err(rustls::Error::General(
                "the server presented another certificate than the attested one".into(),
            )),
            ServerTrust::PinnedKey(digest) => match attestation::spki_sha256(end_entity) {
                Ok(actual) if &actual == digest => Ok(ServerCertVerified::assertion()),
                _ => Err(rustls::Error::General(
                    "the server's TLS key is not the attested one".into(),
                )),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
