use std::os::unix::fs::PermissionsExt;

use super::*;

const ALL_PURPOSES: [Purpose; 5] = [
    Purpose::Store,
    Purpose::Journal,
    Purpose::ServiceAccountSigning,
    Purpose::NodeCa,
    Purpose::AnchorSigning,
];

#[test]
fn every_purpose_and_mode_gets_a_distinct_key() {
    let secret = RootSecret::from_bytes([42; 32]);
    let mut seen = Vec::new();
    for mode in [Mode::Dev, Mode::Production] {
        for purpose in ALL_PURPOSES {
            let key = secret.derive(purpose, mode);
            assert_eq!(key.purpose(), purpose);
            assert_eq!(key.mode(), mode);
            assert_ne!(key.expose_secret_bytes(), &[0; 32]);
            assert!(
                !seen.contains(key.expose_secret_bytes()),
                "{purpose:?} {mode:?}"
            );
            seen.push(*key.expose_secret_bytes());
        }
    }
}

#[test]
fn derivation_is_deterministic_and_depends_on_the_secret() {
    let a = RootSecret::from_bytes([1; 32]);
    let b = RootSecret::from_bytes([2; 32]);
    assert_eq!(
        a.derive(Purpose::Store, Mode::Production)
            .expose_secret_bytes(),
        a.clone()
            .derive(Purpose::Store, Mode::Production)
            .expose_secret_bytes()
    );
    assert_ne!(
        a.derive(Purpose::Store, Mode::Production)
            .expose_secret_bytes(),
        b.derive(Purpose::Store, Mode::Production)
            .expose_secret_bytes()
    );
}

#[test]
fn derivation_matches_the_documented_construction() {
    // Recompute with ring's HMAC directly (RFC 5869 by hand) to pin the
    // salt and info layout: changing either would strand sealed data.
    use ring::hmac;
    let secret = [9u8; 32];
    let salt = ring::digest::digest(&ring::digest::SHA384, b"k3s-daas/seal/salt/v1production");
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA384, salt.as_ref()), &secret);
    let mut t1_input = b"k3s-daas/seal/v1\0production\0journal".to_vec();
    t1_input.push(1);
    let t1 = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA384, prk.as_ref()), &t1_input);
    let key = RootSecret::from_bytes(secret).derive(Purpose::Journal, Mode::Production);
    assert_eq!(key.expose_secret_bytes().as_slice(), &t1.as_ref()[..32]);
}

#[test]
fn debug_output_is_redacted() {
    let secret = RootSecret::from_bytes([0xab; 32]);
    let shown = format!("{secret:?}");
    assert_eq!(shown, "RootSecret(<redacted>)");
    let key = secret.derive(Purpose::NodeCa, Mode::Dev);
    let shown = format!("{key:?}");
    assert!(
        shown.contains("<redacted>") && shown.contains("NodeCa"),
        "{shown}"
    );
    let hex_key = hex::encode(key.expose_secret_bytes());
    assert!(!shown.contains(&hex_key[..8]));
    assert!(!shown.to_lowercase().contains("abab"));
}

#[test]
fn dev_file_is_created_0600_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root-secret");
    let created = RootSecret::load_or_create_dev_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
    let loaded = RootSecret::load_or_create_dev_file(&path).unwrap();
    assert_eq!(
        created
            .derive(Purpose::Store, Mode::Dev)
            .expose_secret_bytes(),
        loaded
            .derive(Purpose::Store, Mode::Dev)
            .expose_secret_bytes()
    );
    // Two fresh files hold different secrets.
    let other = RootSecret::load_or_create_dev_file(&dir.path().join("other")).unwrap();
    assert_ne!(
        created
            .derive(Purpose::Store, Mode::Dev)
            .expose_secret_bytes(),
        other
            .derive(Purpose::Store, Mode::Dev)
            .expose_secret_bytes()
    );
}

#[test]
fn dev_file_with_open_permissions_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root-secret");
    RootSecret::load_or_create_dev_file(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = RootSecret::load_or_create_dev_file(&path).unwrap_err();
    assert!(
        matches!(err, Error::SecretPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
}

#[test]
fn dev_file_of_the_wrong_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root-secret");
    std::fs::write(&path, [1u8; 31]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = RootSecret::load_dev_file(&path).unwrap_err();
    assert!(
        matches!(err, Error::SecretLength { len: 31, .. }),
        "{err:?}"
    );
}

#[test]
fn missing_dev_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = RootSecret::load_dev_file(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let err =
        RootSecret::load_or_create_dev_file(&dir.path().join("no-such-dir/secret")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn the_anchor_public_key_is_the_ed25519_key_of_the_anchor_seed_and_depends_on_secret_and_label() {
    use ring::signature::KeyPair as _;
    let secret = RootSecret::from_bytes([3; 32]);
    let seed = secret.derive(Purpose::AnchorSigning, Mode::Dev);
    let pair =
        ring::signature::Ed25519KeyPair::from_seed_unchecked(seed.expose_secret_bytes()).unwrap();
    let public = secret.anchor_public_key(Mode::Dev);
    assert_eq!(public.as_slice(), pair.public_key().as_ref());
    assert_ne!(public, secret.anchor_public_key(Mode::Production));
    assert_ne!(
        public,
        RootSecret::from_bytes([4; 32]).anchor_public_key(Mode::Dev)
    );
}
