//! The relay carries an enclave's calls to a real registry and its refusals back.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ring::signature::{Ed25519KeyPair, KeyPair};

use super::*;
use crate::anchor::SignedAnchor;
use crate::clock::ManualClock;
use crate::file::FileRegistry;
use crate::file::test_docs::TestCa;
use crate::registry::RegistryAdmin;
use crate::types::{Address, ClusterSettings, Pcrs};
use attestation::Pcr;

const NOW: u64 = 1_770_065_100_000;

/// A relay on a Unix socket in `dir` in front of `registry`; serves until the test ends.
fn spawn_relay(dir: &std::path::Path, registry: FileRegistry<ManualClock>) -> RelayEndpoint {
    let path = dir.join("relay.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let _ = serve_relay(registry.as_ref(), &mut stream).await;
            });
        }
    });
    RelayEndpoint::Unix(path)
}

#[tokio::test]
async fn anchors_go_through_the_relay_and_refusals_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(NOW);
    let clock = Arc::new(ManualClock::new(NOW));
    let admin: Address = "0xad".parse().unwrap();
    let registry = FileRegistry::init_with_clock(
        dir.path().join("registry.json"),
        "relayed",
        ClusterSettings {
            min_stake: 1,
            unstake_cooldown_ms: 1,
            max_document_age_ms: 300_000,
        },
        admin,
        ca.verifier(),
        clock,
    )
    .unwrap();
    let image = Pcrs {
        pcr0: Pcr::new([1; 48]),
        pcr1: Pcr::new([2; 48]),
        pcr2: Pcr::new([3; 48]),
    };
    registry.allow_image(image, "v1", 1).await.unwrap();
    let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    let mut pk = [0u8; 32];
    pk.copy_from_slice(key.public_key().as_ref());
    let cluster = registry.cluster().await.unwrap().id;

    let relayed = RelayRegistry::new(spawn_relay(dir.path(), registry.acting_as(admin)));
    assert_eq!(relayed.cluster().await.unwrap().id, cluster);
    assert_eq!(relayed.latest_anchor().await.unwrap(), None);

    // The registry's refusal comes back with its message.
    let anchor = SignedAnchor::sign(&key, cluster, 5, [4; 32], NOW);
    let err = relayed.record_anchor(anchor).await.unwrap_err();
    assert!(
        matches!(&err, Error::RelayRefused { call: "record_anchor", message } if message.contains("no enclave is live")),
        "{err:?}"
    );
    registry
        .register_enclave(&ca.document([image.pcr0, image.pcr1, image.pcr2], Some(&pk), NOW))
        .await
        .unwrap();
    let recorded = relayed.record_anchor(anchor).await.unwrap();
    assert_eq!(recorded.revision, 5);
    let latest = relayed.latest_anchor().await.unwrap().unwrap();
    assert_eq!(latest.signed(), anchor, "the signature is kept");
    assert!(crate::verify_anchor_signature(
        &pk,
        cluster,
        &latest.signed()
    ));

    // Calls an enclave never makes are not carried.
    let err = relayed.register_enclave(b"doc").await.unwrap_err();
    assert!(matches!(err, Error::RelayUnsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_or_garbled_relay_is_an_error_not_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let gone = RelayRegistry::new(RelayEndpoint::Unix(dir.path().join("nobody.sock")));
    let err = gone.latest_anchor().await.unwrap_err();
    assert!(
        matches!(&err, Error::Relay { reason, .. } if reason.contains("connect")),
        "{err:?}"
    );

    // A peer that answers with an oversized frame.
    let path = dir.path().join("liar.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = read_frame(&mut s).await;
        s.write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes())
            .await
            .unwrap();
    });
    let err = RelayRegistry::new(RelayEndpoint::Unix(path))
        .latest_anchor()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Relay { reason, .. } if reason.contains("limit")),
        "{err:?}"
    );
}

#[test]
fn endpoints_parse_and_print() {
    for text in ["unix:/run/registry.sock", "vsock:3:7005"] {
        let endpoint: RelayEndpoint = text.parse().unwrap();
        assert_eq!(endpoint.to_string(), text);
    }
    for bad in ["unix:", "vsock:3", "vsock:x:1", "tcp:1.2.3.4:5"] {
        assert!(bad.parse::<RelayEndpoint>().is_err(), "{bad}");
    }
}
