//! Fuzz the KMS envelope opener: any bytes given to
//! `RecipientKey::decrypt_envelope` must produce Ok or Err, never a panic,
//! hang or runaway allocation.
//!
//! The key is fixed (`keys/open_envelope-test-key.pk8`, a throwaway test key)
//! so the seeds in `corpus/open_envelope`, made by `openssl cms -encrypt` for
//! it, unwrap and decrypt: mutations of them reach the RSA, AES and padding
//! paths, not only the parser.
#![no_main]

use std::sync::OnceLock;

use attestation::RecipientKey;
use libfuzzer_sys::fuzz_target;

const TEST_KEY: &[u8] = include_bytes!("../keys/open_envelope-test-key.pk8");

fn key() -> &'static RecipientKey {
    static KEY: OnceLock<RecipientKey> = OnceLock::new();
    KEY.get_or_init(|| match RecipientKey::from_pkcs8_der(TEST_KEY) {
        Ok(key) => key,
        Err(e) => panic!("the fuzz test key does not load: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    if let Ok(plaintext) = key.decrypt_envelope(data) {
        // Whatever opens is well-formed: at most the input's length.
        assert!(plaintext.len() <= data.len());
    }
    let _ = key.open_root_secret(data);
});
