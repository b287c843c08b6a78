//! Attestation documents in the exact Nitro format (untagged COSE_Sign1, ES384, CBOR payload,
//! certificate chain to a root) signed by a throwaway test CA, so tests can choose PCRs, the
//! enclave key and the timestamp. The real AWS documents in `shared/testdata` cover the
//! production root.

use attestation::{Pcr, Verifier};
use ciborium::Value;
use coset::{CborSerializable, CoseSign1Builder, HeaderBuilder, iana};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};

/// A test CA with one leaf, valid for ±1 day around `valid_at_ms`.
pub(crate) struct TestCa {
    root_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key: EcdsaKeyPair,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

impl TestCa {
    pub(crate) fn new(valid_at_ms: u64) -> Self {
        let at =
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(valid_at_ms / 1000).unwrap())
                .unwrap();
        let day = time::Duration::days(1);

        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut root = CertificateParams::default();
        root.distinguished_name = name("test nitro root");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = at - day;
        root.not_after = at + day;
        let root_cert = root.self_signed(&root_key).unwrap();
        let issuer = rcgen::Issuer::new(root, root_key);

        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = name("test enclave");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.not_before = at - day;
        leaf.not_after = at + day;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let leaf_key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &leaf_key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        Self {
            root_der: root_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key,
        }
    }

    /// A verifier that trusts this CA.
    pub(crate) fn verifier(&self) -> Verifier {
        Verifier::dangerous_trust_root_der(&self.root_der)
    }

    /// SHA-256 of a TLS key, as an enclave puts it in `public_key`.
    pub(crate) const TLS_KEY_DIGEST: [u8; 32] = [0x5e; 32];

    /// A signed document with PCR0..2 (and zero PCR3..4, 8), a TLS key digest, the given
    /// anchor key and timestamp.
    pub(crate) fn document(
        &self,
        pcrs: [Pcr; 3],
        anchor_key: Option<&[u8]>,
        timestamp_ms: u64,
    ) -> Vec<u8> {
        self.document_with_keys(pcrs, Some(&Self::TLS_KEY_DIGEST), anchor_key, timestamp_ms)
    }

    /// A signed document with the given `public_key` and `user_data`.
    pub(crate) fn document_with_keys(
        &self,
        pcrs: [Pcr; 3],
        public_key: Option<&[u8]>,
        user_data: Option<&[u8]>,
        timestamp_ms: u64,
    ) -> Vec<u8> {
        let mut pcr_entries: Vec<(Value, Value)> = pcrs
            .iter()
            .enumerate()
            .map(|(i, p)| (Value::from(i as u64), Value::Bytes(p.as_bytes().to_vec())))
            .collect();
        for i in [3u64, 4, 8] {
            pcr_entries.push((Value::from(i), Value::Bytes(vec![0; Pcr::LEN])));
        }
        let field = |v: Option<&[u8]>| v.map_or(Value::Null, |b| Value::Bytes(b.to_vec()));
        let payload = Value::Map(vec![
            (Value::from("module_id"), Value::from("i-test-enc0123")),
            (Value::from("digest"), Value::from("SHA384")),
            (Value::from("timestamp"), Value::from(timestamp_ms)),
            (Value::from("pcrs"), Value::Map(pcr_entries)),
            (
                Value::from("certificate"),
                Value::Bytes(self.leaf_der.clone()),
            ),
            (
                Value::from("cabundle"),
                Value::Array(vec![Value::Bytes(self.root_der.clone())]),
            ),
            (Value::from("public_key"), field(public_key)),
            (Value::from("user_data"), field(user_data)),
            (Value::from("nonce"), Value::Null),
        ]);
        let mut payload_bytes = Vec::new();
        ciborium::into_writer(&payload, &mut payload_bytes).unwrap();
        let rng = SystemRandom::new();
        CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload_bytes)
            .create_signature(b"", |data| {
                self.leaf_key.sign(&rng, data).unwrap().as_ref().to_vec()
            })
            .build()
            .to_vec()
            .unwrap()
    }
}
