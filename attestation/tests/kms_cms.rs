//! `RecipientKey` against CMS envelopes made independently by the openssl
//! CLI, with the parameters KMS uses for `CiphertextForRecipient`
//! (RSAES-OAEP SHA-256 / MGF1-SHA-256, AES-256-CBC), in DER and in BER with
//! indefinite lengths; and the refusals: other keys, other algorithms,
//! altered, truncated and malformed envelopes.
//!
//! Needs the openssl CLI (scripts/setup installs Debian's `openssl`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use attestation::{
    EnvelopeError, Error, MAX_USER_FIELD_LEN, Mode, Purpose, RecipientKey, RootSecret,
};

/// Options that make openssl wrap the content key the way KMS does.
const OAEP_SHA256: [&str; 6] = [
    "-keyopt",
    "rsa_padding_mode:oaep",
    "-keyopt",
    "rsa_oaep_md:sha256",
    "-keyopt",
    "rsa_mgf1_md:sha256",
];

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the openssl CLI ({e}); these tests need it to make independent CMS \
                 envelopes: run scripts/setup, which installs Debian's `openssl` package"
            )
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A scratch directory holding a certificate for one RSA public key, signed
/// by a throwaway CA, and the envelopes openssl makes for it.
struct Recipient {
    dir: tempfile::TempDir,
}

impl Recipient {
    /// A certificate carrying the public key `spki_der` (`-force_pubkey`:
    /// openssl never sees the private key).
    fn for_spki(spki_der: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("pub.der"), spki_der).unwrap();
        std::fs::write(d.join("ext.cnf"), "subjectKeyIdentifier=hash\n").unwrap();
        openssl(
            d,
            &[
                "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem",
            ],
        );
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ca.key",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "ca.key",
                "-subj",
                "/CN=test ca",
                "-days",
                "1",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=recipient",
                "-out",
                "r.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "r.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-force_pubkey",
                "pub.pem",
                "-extfile",
                "ext.cnf",
                "-days",
                "1",
                "-out",
                "cert.pem",
            ],
        );
        Self { dir }
    }

    /// A certificate for a fresh RSA-2048 key made by openssl, not ours.
    fn foreign() -> Self {
        let dir = tempfile::tempdir().unwrap();
        genrsa(dir.path(), 2048, "k.pem");
        let spki = openssl(
            dir.path(),
            &["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"],
        );
        Self::for_spki(&spki)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `openssl cms -encrypt` of `plaintext` to this recipient with `args`
    /// (cipher, key options, output form).
    fn encrypt(&self, plaintext: &[u8], args: &[&str]) -> Vec<u8> {
        std::fs::write(self.path("in.bin"), plaintext).unwrap();
        let mut all = vec![
            "cms", "-encrypt", "-binary", "-in", "in.bin", "-out", "env.out", "-recip", "cert.pem",
        ];
        all.extend_from_slice(args);
        openssl(self.dir.path(), &all);
        std::fs::read(self.path("env.out")).unwrap()
    }

    /// The KMS parameters, DER output.
    fn kms_like(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut args = vec!["-outform", "DER", "-aes-256-cbc"];
        args.extend_from_slice(&OAEP_SHA256);
        self.encrypt(plaintext, &args)
    }
}

fn envelope_error(result: Result<impl std::fmt::Debug, Error>) -> EnvelopeError {
    match result {
        Err(Error::Envelope(e)) => e,
        other => panic!("expected an envelope error, got {other:?}"),
    }
}

fn same_secret(a: &RootSecret, b: &RootSecret) -> bool {
    a.derive(Purpose::Store, Mode::Production)
        .expose_secret_bytes()
        == b.derive(Purpose::Store, Mode::Production)
            .expose_secret_bytes()
}

/// A fresh RSA key of `bits` made by openssl, as PEM in `dir/out`.
fn genrsa(dir: &Path, bits: u32, out: &str) {
    let bits = format!("rsa_keygen_bits:{bits}");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits,
            "-out",
            out,
        ],
    );
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut out).unwrap();
    out
}

#[test]
fn public_key_is_rsa_2048_spki_that_fits_the_document() {
    let key = RecipientKey::generate().unwrap();
    let spki = key.public_key_spki_der();
    // SEQUENCE { rsaEncryption AlgorithmIdentifier, BIT STRING { n, e } }
    assert_eq!(spki.len(), 294);
    assert!(spki.len() <= MAX_USER_FIELD_LEN);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pub.der"), &spki).unwrap();
    let text = openssl(
        dir.path(),
        &[
            "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-noout", "-text",
        ],
    );
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("Exponent: 65537"), "{text}");
    // Two keys are two keys.
    assert_ne!(
        spki,
        RecipientKey::generate().unwrap().public_key_spki_der()
    );
}

#[test]
fn pkcs8_key_made_by_openssl_opens_its_envelopes() {
    // The doc-hidden constructor the fuzz target uses: a PKCS#8 key (not the
    // PKCS#1 `genpkey -outform DER` writes) loads and opens envelopes made for
    // it; other key sizes and non-keys are refused.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    genrsa(d, 2048, "k.pem");
    let pkcs8 = openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "k.pem", "-outform", "DER",
        ],
    );
    let key = RecipientKey::from_pkcs8_der(&pkcs8).unwrap();
    let spki = openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
    assert_eq!(key.public_key_spki_der(), spki);
    let secret = random_bytes(32);
    let envelope = Recipient::for_spki(&spki).kms_like(&secret);
    assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret[..]);

    let pkcs1 = openssl(
        d,
        &["rsa", "-in", "k.pem", "-traditional", "-outform", "DER"],
    );
    assert!(matches!(
        RecipientKey::from_pkcs8_der(&pkcs1),
        Err(Error::RecipientKeyRejected)
    ));
    genrsa(d, 3072, "k3.pem");
    let rsa3072 = openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "k3.pem", "-outform", "DER",
        ],
    );
    assert!(matches!(
        RecipientKey::from_pkcs8_der(&rsa3072),
        Err(Error::RecipientKeyRejected)
    ));
}

#[test]
fn debug_does_not_print_key_material() {
    let key = RecipientKey::generate().unwrap();
    let printed = format!("{key:?}");
    assert_eq!(
        printed,
        r#"RecipientKey { bits: 2048, private_key: "<redacted>" }"#
    );
}

#[test]
fn root_secret_from_openssl_envelope() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let secret: [u8; 32] = random_bytes(32).try_into().unwrap();
    let envelope = recipient.kms_like(&secret);
    assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret);
    let opened = key.open_root_secret(&envelope).unwrap();
    assert!(same_secret(&opened, &RootSecret::from_bytes(secret)));
}

#[test]
fn thousand_byte_payload_from_openssl_envelope() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let payload = random_bytes(1000);
    let envelope = recipient.kms_like(&payload);
    assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &payload[..]);
    // 1000 bytes are no root secret.
    assert!(matches!(
        envelope_error(key.open_root_secret(&envelope)),
        EnvelopeError::PlaintextLength {
            len: 1000,
            expected: 32
        }
    ));
}

#[test]
fn subject_key_identifier_recipient_as_kms_sends_it() {
    // KMS names the recipient by subjectKeyIdentifier (EnvelopedData and
    // KeyTransRecipientInfo version 2); openssl does so with -keyid.
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let secret = random_bytes(32);
    let mut args = vec!["-keyid", "-outform", "DER", "-aes-256-cbc"];
    args.extend_from_slice(&OAEP_SHA256);
    let envelope = recipient.encrypt(&secret, &args);
    assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret[..]);
}

#[test]
fn indefinite_length_ber_envelope_from_openssl_stream() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    for len in [32, 1000, 5000] {
        let payload = random_bytes(len);
        let mut args = vec!["-stream", "-outform", "DER", "-aes-256-cbc"];
        args.extend_from_slice(&OAEP_SHA256);
        let envelope = recipient.encrypt(&payload, &args);
        // openssl -stream writes the outer SEQUENCE with indefinite length
        // and the content as a constructed [0] of OCTET STRING segments.
        assert_eq!(
            &envelope[..2],
            &[0x30, 0x80],
            "openssl did not emit indefinite lengths"
        );
        assert_eq!(&envelope[envelope.len() - 2..], &[0, 0]);
        assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &payload[..]);
    }
}

#[test]
fn envelope_for_another_key_is_refused() {
    let key = RecipientKey::generate().unwrap();
    let envelope = Recipient::foreign().kms_like(&random_bytes(32));
    assert!(matches!(
        envelope_error(key.decrypt_envelope(&envelope)),
        EnvelopeError::KeyUnwrap
    ));
    let other = RecipientKey::generate().unwrap();
    let envelope = Recipient::for_spki(&other.public_key_spki_der()).kms_like(&random_bytes(32));
    assert!(matches!(
        envelope_error(key.open_root_secret(&envelope)),
        EnvelopeError::KeyUnwrap
    ));
}

/// Offsets of the encrypted key, the IV and the ciphertext in a DER envelope
/// of openssl's layout: found by their headers, then checked.
fn regions(envelope: &[u8], ciphertext_len: usize) -> [std::ops::Range<usize>; 3] {
    let find = |needle: &[u8]| {
        envelope
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("header not found")
            + needle.len()
    };
    let key = find(&[0x04, 0x82, 0x01, 0x00]);
    let aes256cbc_iv = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a, 0x04, 0x10,
    ];
    let iv = find(&aes256cbc_iv);
    let ct = envelope.len() - ciphertext_len;
    assert_eq!(
        envelope[ct - 2..ct],
        [0x80, u8::try_from(ciphertext_len).unwrap()]
    );
    [key..key + 256, iv..iv + 16, ct..envelope.len()]
}

#[test]
fn altered_envelopes_never_open_to_the_original_plaintext() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let secret = random_bytes(32);
    let envelope = recipient.kms_like(&secret);
    // 32 bytes of plaintext and a full block of padding: three blocks.
    let [enc_key, iv, ct] = regions(&envelope, 48);
    assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret[..]);

    let flipped = |at: usize| {
        let mut e = envelope.clone();
        e[at] ^= 0x01;
        key.decrypt_envelope(&e)
    };
    // The wrapped key is OAEP: any change is detected.
    for at in [enc_key.start, enc_key.start + 128, enc_key.end - 1] {
        assert!(
            matches!(envelope_error(flipped(at)), EnvelopeError::KeyUnwrap),
            "key byte {at}"
        );
    }
    // The second ciphertext block XORs into the padding block: always refused.
    for at in ct.start + 16..ct.start + 32 {
        assert!(
            matches!(envelope_error(flipped(at)), EnvelopeError::Padding),
            "ciphertext byte {at}"
        );
    }
    // CMS content encryption is unauthenticated: a flipped IV byte flips
    // the same plaintext byte and the padding stays valid, and a changed
    // first or last block may pass too. Such an envelope must never open to
    // the original plaintext; integrity of the secret comes from what it
    // opens later (AEAD-sealed data), not from CMS.
    for at in iv
        .clone()
        .chain(ct.start..ct.start + 16)
        .chain(ct.end - 16..ct.end)
    {
        match flipped(at) {
            Ok(plaintext) => assert_ne!(&*plaintext, &secret[..], "byte {at}"),
            Err(Error::Envelope(EnvelopeError::Padding)) => {}
            Err(e) => panic!("byte {at}: unexpected {e:?}"),
        }
    }
    let mut iv_flipped = envelope.clone();
    iv_flipped[iv.start] ^= 0x80;
    let opened = key.decrypt_envelope(&iv_flipped).unwrap();
    assert_eq!(opened[0], secret[0] ^ 0x80);
}

#[test]
fn pkcs1_v15_key_transport_is_refused() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let envelope = recipient.encrypt(&random_bytes(32), &["-outform", "DER", "-aes-256-cbc"]);
    match envelope_error(key.decrypt_envelope(&envelope)) {
        EnvelopeError::KeyEncryptionAlgorithm { oid } => assert_eq!(oid, "1.2.840.113549.1.1.1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oaep_with_sha1_is_refused() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let envelope = recipient.encrypt(
        &random_bytes(32),
        &[
            "-outform",
            "DER",
            "-aes-256-cbc",
            "-keyopt",
            "rsa_padding_mode:oaep",
        ],
    );
    assert!(matches!(
        envelope_error(key.decrypt_envelope(&envelope)),
        EnvelopeError::OaepParameters { .. }
    ));
    // SHA-256 OAEP hash but MGF1 with SHA-1.
    let envelope = recipient.encrypt(
        &random_bytes(32),
        &[
            "-outform",
            "DER",
            "-aes-256-cbc",
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
            "-keyopt",
            "rsa_mgf1_md:sha1",
        ],
    );
    match envelope_error(key.decrypt_envelope(&envelope)) {
        EnvelopeError::OaepParameters { problem } => assert!(problem.contains("MGF1"), "{problem}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn aes_128_cbc_content_is_refused() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let mut args = vec!["-outform", "DER", "-aes-128-cbc"];
    args.extend_from_slice(&OAEP_SHA256);
    let envelope = recipient.encrypt(&random_bytes(32), &args);
    match envelope_error(key.decrypt_envelope(&envelope)) {
        EnvelopeError::ContentCipher { oid } => assert_eq!(oid, "2.16.840.1.101.3.4.1.2"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_recipients_are_refused() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let other = Recipient::foreign();
    std::fs::copy(other.path("cert.pem"), recipient.path("other.pem")).unwrap();
    let mut args = vec!["-outform", "DER", "-aes-256-cbc", "-recip", "other.pem"];
    args.extend_from_slice(&OAEP_SHA256);
    let envelope = recipient.encrypt(&random_bytes(32), &args);
    assert!(matches!(
        envelope_error(key.decrypt_envelope(&envelope)),
        EnvelopeError::RecipientCount { count: 2 }
    ));
}

#[test]
fn root_secret_must_be_32_bytes() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    for len in [0, 16, 31, 33, 48] {
        let envelope = recipient.kms_like(&random_bytes(len));
        assert_eq!(key.decrypt_envelope(&envelope).unwrap().len(), len);
        match envelope_error(key.open_root_secret(&envelope)) {
            EnvelopeError::PlaintextLength {
                len: got,
                expected: 32,
            } => assert_eq!(got, len),
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_and_any_trailing_byte_is_refused() {
    let key = RecipientKey::generate().unwrap();
    let recipient = Recipient::for_spki(&key.public_key_spki_der());
    let secret = random_bytes(32);
    let der = recipient.kms_like(&secret);
    let mut args = vec!["-stream", "-outform", "DER", "-aes-256-cbc"];
    args.extend_from_slice(&OAEP_SHA256);
    let ber = recipient.encrypt(&secret, &args);
    for envelope in [&der, &ber] {
        for len in 0..envelope.len() {
            assert!(
                key.decrypt_envelope(&envelope[..len]).is_err(),
                "prefix of {len} bytes opened"
            );
        }
        let mut longer = envelope.clone();
        longer.push(0);
        assert!(matches!(
            envelope_error(key.decrypt_envelope(&longer)),
            EnvelopeError::TrailingBytes { count: 1, .. }
        ));
    }
}

/// Hand-built envelopes for the refusals openssl cannot be asked to make.
mod synthetic {
    use aws_lc_rs::cipher::{AES_256, PaddedBlockEncryptingKey, UnboundCipherKey};
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};

    use super::*;

    /// One DER element.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else {
            let bytes = u32::try_from(len).unwrap().to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | u8::try_from(4 - skip).unwrap());
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

    /// The fields of a hand-built envelope; `Default` is a valid one.
    struct Parts {
        content_type: &'static [u8],
        recipients: usize,
        iv_len: usize,
        /// Encodes the encryptedContent element from the ciphertext.
        content: fn(&[u8]) -> Vec<u8>,
    }

    impl Default for Parts {
        fn default() -> Self {
            Self {
                content_type: ENVELOPED_DATA,
                recipients: 1,
                iv_len: 16,
                content: |ciphertext| tlv(0x80, ciphertext),
            }
        }
    }

    fn ktri(spki: &[u8], content_key: &[u8]) -> Vec<u8> {
        let public =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(spki).unwrap()).unwrap();
        let mut wrapped = vec![0u8; public.ciphertext_size()];
        let wrapped = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, content_key, &mut wrapped, None)
            .unwrap()
            .to_vec();
        let sha256 = tlv(
            0x30,
            &tlv(
                0x06,
                &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            ),
        );
        let mgf1 = tlv(
            0x30,
            &cat(&[
                &tlv(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08],
                ),
                &sha256,
            ]),
        );
        let params = tlv(0x30, &cat(&[&tlv(0xa0, &sha256), &tlv(0xa1, &mgf1)]));
        let alg = tlv(
            0x30,
            &cat(&[
                &tlv(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07],
                ),
                &params,
            ]),
        );
        tlv(
            0x30,
            &cat(&[
                &tlv(0x02, &[2]),
                &tlv(0x80, b"subject key id"),
                &alg,
                &tlv(0x04, &wrapped),
            ]),
        )
    }

    fn build(spki: &[u8], plaintext: &[u8], parts: &Parts) -> Vec<u8> {
        let content_key = random_bytes(32);
        let iv = random_bytes(16);
        let aes = PaddedBlockEncryptingKey::cbc_pkcs7(
            UnboundCipherKey::new(&AES_256, &content_key).unwrap(),
        )
        .unwrap();
        let mut ciphertext = plaintext.to_vec();
        let iv128 = aws_lc_rs::cipher::EncryptionContext::Iv128(iv.as_slice().try_into().unwrap());
        aes.less_safe_encrypt(&mut ciphertext, iv128).unwrap();
        let one = ktri(spki, &content_key);
        let recipients = tlv(0x31, &one.repeat(parts.recipients));
        let iv_field = if parts.iv_len == 16 {
            iv.clone()
        } else {
            vec![0; parts.iv_len]
        };
        let cipher_alg = tlv(0x30, &cat(&[&tlv(0x06, AES256_CBC), &tlv(0x04, &iv_field)]));
        let content = (parts.content)(&ciphertext);
        let eci = tlv(0x30, &cat(&[&tlv(0x06, DATA), &cipher_alg, &content]));
        let enveloped = tlv(0x30, &cat(&[&tlv(0x02, &[2]), &recipients, &eci]));
        tlv(
            0x30,
            &cat(&[&tlv(0x06, parts.content_type), &tlv(0xa0, &enveloped)]),
        )
    }

    #[test]
    fn hand_built_envelope_opens() {
        // Guards the builder: the refusals below differ from this in one field.
        let key = RecipientKey::generate().unwrap();
        let secret = random_bytes(32);
        let envelope = build(&key.public_key_spki_der(), &secret, &Parts::default());
        assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret[..]);
    }

    #[test]
    fn wrong_content_type_is_refused() {
        let key = RecipientKey::generate().unwrap();
        let parts = Parts {
            content_type: SIGNED_DATA,
            ..Parts::default()
        };
        let envelope = build(&key.public_key_spki_der(), b"x", &parts);
        match envelope_error(key.decrypt_envelope(&envelope)) {
            EnvelopeError::ContentType {
                which: "outer",
                oid,
                ..
            } => assert_eq!(oid, "1.2.840.113549.1.7.2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zero_recipients_are_refused() {
        let key = RecipientKey::generate().unwrap();
        let parts = Parts {
            recipients: 0,
            ..Parts::default()
        };
        let envelope = build(&key.public_key_spki_der(), b"x", &parts);
        assert!(matches!(
            envelope_error(key.decrypt_envelope(&envelope)),
            EnvelopeError::RecipientCount { count: 0 }
        ));
    }

    #[test]
    fn iv_of_other_lengths_is_refused() {
        let key = RecipientKey::generate().unwrap();
        for iv_len in [0, 8, 15, 17, 32] {
            let parts = Parts {
                iv_len,
                ..Parts::default()
            };
            let envelope = build(&key.public_key_spki_der(), b"x", &parts);
            match envelope_error(key.decrypt_envelope(&envelope)) {
                EnvelopeError::IvLength { len } => assert_eq!(len, iv_len),
                other => panic!("{iv_len}: {other:?}"),
            }
        }
    }

    #[test]
    fn constructed_content_segments_open() {
        let key = RecipientKey::generate().unwrap();
        let secret = random_bytes(32);
        // [0] constructed, indefinite { OCTET STRING (5 bytes),
        // OCTET STRING constructed { OCTET STRING (the rest) } } EOC
        let parts = Parts {
            content: |ct| {
                cat(&[
                    &[0xa0, 0x80],
                    &tlv(0x04, &ct[..5]),
                    &tlv(0x24, &tlv(0x04, &ct[5..])),
                    &[0, 0],
                ])
            },
            ..Parts::default()
        };
        let envelope = build(&key.public_key_spki_der(), &secret, &parts);
        assert_eq!(&*key.decrypt_envelope(&envelope).unwrap(), &secret[..]);
    }

    #[test]
    fn deeply_nested_segments_are_refused() {
        let key = RecipientKey::generate().unwrap();
        let parts = Parts {
            content: |ct| {
                let mut deep = tlv(0x04, ct);
                for _ in 0..40 {
                    deep = tlv(0x24, &deep);
                }
                deep[0] = 0xa0;
                deep
            },
            ..Parts::default()
        };
        let envelope = build(&key.public_key_spki_der(), b"x", &parts);
        assert!(matches!(
            envelope_error(key.decrypt_envelope(&envelope)),
            EnvelopeError::TooDeep { .. }
        ));
    }

    #[test]
    fn missing_content_is_refused() {
        let key = RecipientKey::generate().unwrap();
        let parts = Parts {
            content: |_| Vec::new(),
            ..Parts::default()
        };
        let envelope = build(&key.public_key_spki_der(), b"x", &parts);
        assert!(matches!(
            envelope_error(key.decrypt_envelope(&envelope)),
            EnvelopeError::MissingContent
        ));
    }
}
