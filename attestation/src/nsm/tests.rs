use std::time::{Duration, SystemTime};

use super::*;
use crate::{Pcr, Policy, Verifier, VerifyError};

fn sim() -> SimNsm {
    SimNsm::new(DevRoot::generate().unwrap()).unwrap()
}

fn ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn sim_documents_have_the_nitro_wire_format() {
    let nsm = sim();
    let doc = nsm
        .document_at(AttestationRequest::new(), SystemTime::now())
        .unwrap();
    // Untagged COSE_Sign1, protected {1: -35}, empty unprotected, then a
    // 2-byte-length bstr payload holding an indefinite-length map.
    assert_eq!(&doc[..7], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0]);
    assert_eq!(doc[7], 0x59);
    assert_eq!(doc[10], 0xbf);
    // 96-byte raw signature at the end.
    assert_eq!(&doc[doc.len() - 98..doc.len() - 96], &[0x58, 0x60]);
    let parsed = crate::ParsedDocument::parse(&doc).unwrap();
    let d = parsed.document();
    assert_eq!(d.cabundle.len(), 4);
    assert_eq!(d.pcrs.len(), 16);
    assert!(d.module_id.starts_with("i-"));
    assert_eq!(
        (
            d.public_key.as_ref(),
            d.user_data.as_ref(),
            d.nonce.as_ref()
        ),
        (None, None, None)
    );
    // Absent fields are null, as hardware writes them.
    let payload_null = [b"nonce".as_slice(), &[0xf6]].concat();
    assert!(doc.windows(payload_null.len()).any(|w| w == payload_null));
}

#[test]
fn sim_documents_verify_only_under_the_dev_root() {
    let nsm = sim();
    let now = SystemTime::now();
    let request = AttestationRequest::new()
        .nonce(b"challenge".to_vec())
        .user_data(vec![1, 2, 3])
        .public_key(vec![9; 32]);
    let doc = nsm.document_at(request, now).unwrap();
    let dev = Verifier::dangerous_trust_root_der(nsm.root().cert_der());
    assert!(!dev.is_aws_nitro());
    let policy = Policy::new()
        .require_nonce(b"challenge".to_vec())
        .max_age(Duration::from_secs(60))
        .expect_pcr(0, *nsm.pcrs().get(0).unwrap())
        .expect_pcr(2, *nsm.pcrs().get(2).unwrap());
    let verified = dev.verify_with_policy(&doc, ms(now), &policy).unwrap();
    assert_eq!(verified.nonce(), Some(b"challenge".as_slice()));
    assert_eq!(verified.user_data(), Some([1u8, 2, 3].as_slice()));
    assert_eq!(verified.public_key(), Some([9u8; 32].as_slice()));
    assert!(!verified.is_debug_mode());
    assert_eq!(verified.chain_subjects().len(), 5);

    // The production verifier refuses the dev root.
    let err = Verifier::aws_nitro().verify(&doc, ms(now)).unwrap_err();
    let VerifyError::UntrustedRoot { actual_sha256 } = err else {
        panic!("{err:?}")
    };
    assert_eq!(actual_sha256, nsm.root().sha256());
    // So does a verifier trusting another dev root.
    let other = DevRoot::generate().unwrap();
    let err = Verifier::dangerous_trust_root_der(other.cert_der())
        .verify(&doc, ms(now))
        .unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err:?}");
}

#[test]
fn sim_policy_rejects_wrong_nonce_and_stale_documents() {
    let nsm = sim();
    let now = SystemTime::now();
    let doc = nsm
        .document_at(AttestationRequest::new().nonce(b"mine".to_vec()), now)
        .unwrap();
    let dev = Verifier::dangerous_trust_root_der(nsm.root().cert_der());
    let err = dev
        .verify_with_policy(
            &doc,
            ms(now),
            &Policy::new().require_nonce(b"theirs".to_vec()),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::NonceMismatch), "{err:?}");
    let policy = Policy::new().max_age(Duration::from_secs(300));
    let err = dev
        .verify_with_policy(&doc, ms(now) + 300_001, &policy)
        .unwrap_err();
    assert!(matches!(err, VerifyError::TooOld { .. }), "{err:?}");
    // Four hours later the 3-hour leaf has expired.
    let err = dev.verify(&doc, ms(now) + 4 * 3_600_000).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CertificateTime {
                position: crate::CertPosition::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sim_debug_mode_is_rejected_by_default_policy() {
    let nsm = SimNsm::with_image_pcrs(
        DevRoot::generate().unwrap(),
        Pcr::ZERO,
        Pcr::ZERO,
        Pcr::ZERO,
    );
    let now = SystemTime::now();
    let doc = nsm.document_at(AttestationRequest::new(), now).unwrap();
    let dev = Verifier::dangerous_trust_root_der(nsm.root().cert_der());
    let err = dev
        .verify_with_policy(&doc, ms(now), &Policy::new())
        .unwrap_err();
    assert!(matches!(err, VerifyError::DebugMode), "{err:?}");
    dev.verify_with_policy(&doc, ms(now), &Policy::new().dangerous_allow_debug())
        .unwrap();
}

#[test]
fn sim_pcrs_measure_the_running_binary() {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let [p0, p1, p2] = measure_binary(&exe);
    let nsm = sim();
    assert_eq!(nsm.pcrs().get(0), Some(&p0));
    assert_eq!(nsm.pcrs().get(1), Some(&p1));
    assert_eq!(nsm.pcrs().get(2), Some(&p2));
    assert_ne!(p0, p2);
    assert_eq!(
        measure_binary_file(&std::env::current_exe().unwrap()).unwrap(),
        [p0, p1, p2]
    );
}

/// The measured bytes of an ELF executable are its loaded segments: what is not loaded (here, bytes past the last
/// segment, where debug information lives) changes nothing, a changed byte inside a segment changes PCR0 and PCR2,
/// and a file that is not an ELF executable (or whose segments do not fit in it) is measured whole.
#[test]
fn sim_pcrs_measure_the_loaded_segments_of_an_elf() {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let pcrs = measure_binary(&exe);
    assert_ne!(
        pcrs[2],
        Pcr::measure(&exe),
        "the test binary has unloaded sections"
    );

    let mut appended = exe.clone();
    appended.extend_from_slice(b"not loaded");
    assert_eq!(measure_binary(&appended), pcrs);

    // The byte just after the program headers: inside the first loaded segment, which starts at offset 0.
    let phoff = u64::from_le_bytes(exe[0x20..0x28].try_into().unwrap());
    let phentsize = u16::from_le_bytes(exe[0x36..0x38].try_into().unwrap());
    let phnum = u16::from_le_bytes(exe[0x38..0x3a].try_into().unwrap());
    let after_headers =
        usize::try_from(phoff).unwrap() + usize::from(phentsize) * usize::from(phnum);
    let mut changed = exe.clone();
    changed[after_headers + 8] ^= 1;
    let changed_pcrs = measure_binary(&changed);
    assert_ne!(changed_pcrs[0], pcrs[0]);
    assert_eq!(changed_pcrs[1], pcrs[1]);
    assert_ne!(changed_pcrs[2], pcrs[2]);

    let not_elf = b"#!/bin/sh\necho not an ELF file\n";
    assert_eq!(measure_binary(not_elf)[2], Pcr::measure(not_elf));
    let truncated = &exe[..4096];
    assert_eq!(measure_binary(truncated)[2], Pcr::measure(truncated));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, not_elf).unwrap();
    assert_eq!(measure_binary_file(&path).unwrap(), measure_binary(not_elf));
    assert!(matches!(
        measure_binary_file(&dir.path().join("missing")),
        Err(crate::Error::Io { .. })
    ));
}

#[test]
fn dev_root_round_trips_through_pem() {
    let root = DevRoot::generate().unwrap();
    let (cert, key) = root.to_pem();
    let loaded = DevRoot::from_pem(&cert, &key).unwrap();
    assert_eq!(loaded.cert_der(), root.cert_der());
    // Documents from the reloaded root verify under the original pin.
    let nsm = SimNsm::with_image_pcrs(
        loaded,
        Pcr::measure(b"a"),
        Pcr::measure(b"b"),
        Pcr::measure(b"c"),
    );
    let now = SystemTime::now();
    let doc = nsm.document_at(AttestationRequest::new(), now).unwrap();
    Verifier::dangerous_trust_root_der(root.cert_der())
        .verify(&doc, ms(now))
        .unwrap();
    // A key that is not the certificate's is refused.
    let (_, other_key) = DevRoot::generate().unwrap().to_pem();
    assert!(matches!(
        DevRoot::from_pem(&cert, &other_key),
        Err(crate::Error::DevRootKeyMismatch)
    ));
    assert!(matches!(
        DevRoot::from_pem("junk", &key),
        Err(crate::Error::Pem(_))
    ));
    assert!(format!("{root:?}").contains("cert_sha256"));
    assert!(!format!("{root:?}").contains("PRIVATE"));
}

#[test]
fn oversized_requests_are_refused() {
    let nsm = sim();
    let err = nsm
        .document_at(
            AttestationRequest::new().user_data(vec![0; 513]),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            crate::Error::NsmRequestTooLarge {
                field: "user_data",
                len: 513,
                max: 512
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn trait_methods_work_on_the_simulator() {
    let nsm = sim();
    let doc = nsm
        .attestation(AttestationRequest::new().nonce(vec![5; 16]))
        .await
        .unwrap();
    let now = ms(SystemTime::now());
    Verifier::dangerous_trust_root_der(nsm.root().cert_der())
        .verify_with_policy(&doc, now, &Policy::new().require_nonce(vec![5; 16]))
        .unwrap();
    let a = nsm.random().await.unwrap();
    let b = nsm.random().await.unwrap();
    assert_eq!(a.len(), MAX_RANDOM_LEN);
    assert_ne!(a, b);
    let pcr0 = nsm.describe_pcr(0).await.unwrap();
    assert!(pcr0.locked);
    assert_eq!(pcr0.value, nsm.pcrs().get(0).unwrap().as_bytes().to_vec());
    let pcr20 = nsm.describe_pcr(20).await.unwrap();
    assert!(!pcr20.locked);
    assert!(matches!(
        nsm.describe_pcr(32).await,
        Err(crate::Error::Nsm { .. })
    ));
}

#[test]
fn hardware_nsm_is_absent_on_this_machine() {
    // Not a Nitro Enclave: opening /dev/nsm must fail cleanly, not panic.
    if std::path::Path::new("/dev/nsm").exists() {
        return;
    }
    let err = NitroNsm::open().unwrap_err();
    assert!(
        matches!(
            err,
            crate::Error::Nsm {
                request: "open",
                ..
            }
        ),
        "{err:?}"
    );
}
