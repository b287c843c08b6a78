//! The boot check against the registry's latest anchor, on the journal points a store reports.
#![allow(clippy::unwrap_used)]

use chain::{Address, Anchor, SignedAnchor};
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::*;

fn key(seed: u8) -> (Ed25519KeyPair, [u8; 32]) {
    let k = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let mut pk = [0u8; 32];
    pk.copy_from_slice(k.public_key().as_ref());
    (k, pk)
}

fn cluster() -> Address {
    Address([0xc1; 32])
}

fn anchor(k: &Ed25519KeyPair, cluster: Address, revision: u64, hash: [u8; 32]) -> Anchor {
    let s = SignedAnchor::sign(k, cluster, revision, hash, 1_770_000_000_000);
    Anchor {
        revision: s.revision,
        chain_hash: s.chain_hash,
        timestamp_ms: s.timestamp_ms,
        recorded_at_ms: 1_770_000_000_001,
        signature: s.signature,
    }
}

fn point(revision: u64, byte: u8) -> ChainPoint {
    ChainPoint {
        revision,
        chain_hash: [byte; 32],
    }
}

/// A journal from genesis: records ending at revisions 3, 7 and 12.
fn journal() -> Vec<ChainPoint> {
    vec![point(0, 0), point(3, 3), point(7, 7), point(12, 12)]
}

#[test]
fn no_anchor_and_matching_anchors_pass() {
    let (k, pk) = key(1);
    assert_eq!(
        check_journal(None, &pk, cluster(), &journal()),
        Ok(JournalVerdict::NoAnchor)
    );
    for (revision, byte) in [(7, 7), (12, 12)] {
        let a = anchor(&k, cluster(), revision, [byte; 32]);
        assert_eq!(
            check_journal(Some(&a), &pk, cluster(), &journal()),
            Ok(JournalVerdict::Matches { anchored: revision })
        );
    }
    // A snapshot at 20 covers revision 7: past the anchor, not comparable.
    let after_snapshot = vec![point(20, 20), point(25, 25)];
    let a = anchor(&k, cluster(), 7, [7; 32]);
    assert_eq!(
        check_journal(Some(&a), &pk, cluster(), &after_snapshot),
        Ok(JournalVerdict::PastAnchorInSnapshot {
            anchored: 7,
            snapshot: 20
        })
    );
}

#[test]
fn a_journal_that_ends_before_the_anchor_is_refused_naming_both() {
    let (k, pk) = key(1);
    let a = anchor(&k, cluster(), 15, [15; 32]);
    let err = check_journal(Some(&a), &pk, cluster(), &journal()).unwrap_err();
    assert!(
        matches!(
            err,
            RollbackError::JournalBehindAnchor {
                journal_revision: 12,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("revision 15"), "{text}");
    assert!(text.contains(&hex::encode([15u8; 32])), "{text}");
    assert!(text.contains("ends at revision 12"), "{text}");
    assert!(text.contains(&hex::encode([12u8; 32])), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    // An empty journal (the host dropped everything) is behind any anchor.
    let err = check_journal(Some(&a), &pk, cluster(), &[point(0, 0)]).unwrap_err();
    assert!(matches!(
        err,
        RollbackError::JournalBehindAnchor {
            journal_revision: 0,
            ..
        }
    ));
}

#[test]
fn a_different_history_at_the_anchored_revision_is_refused() {
    let (k, pk) = key(1);
    let a = anchor(&k, cluster(), 7, [0xee; 32]);
    let err = check_journal(Some(&a), &pk, cluster(), &journal()).unwrap_err();
    assert!(
        matches!(err, RollbackError::ChainDiffers { revision: 7, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&hex::encode([7u8; 32])));
    // No record ends at the anchored revision: not the anchored history either.
    let a = anchor(&k, cluster(), 5, [5; 32]);
    let err = check_journal(Some(&a), &pk, cluster(), &journal()).unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn forged_anchors_and_anchors_of_another_cluster_are_refused() {
    let (_, pk) = key(1);
    let (intruder, _) = key(2);
    let forged = anchor(&intruder, cluster(), 12, [12; 32]);
    let err = check_journal(Some(&forged), &pk, cluster(), &journal()).unwrap_err();
    assert!(matches!(err, RollbackError::ForgedAnchor { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("forged or belongs to another cluster"),
        "{err}"
    );

    let (k, _) = key(1);
    let other = anchor(&k, Address([0xc2; 32]), 12, [12; 32]);
    let err = check_journal(Some(&other), &pk, cluster(), &journal()).unwrap_err();
    assert!(matches!(err, RollbackError::ForgedAnchor { .. }), "{err:?}");

    let mut tampered = anchor(&k, cluster(), 12, [12; 32]);
    tampered.revision = 3;
    tampered.chain_hash = [3; 32];
    let err = check_journal(Some(&tampered), &pk, cluster(), &journal()).unwrap_err();
    assert!(matches!(err, RollbackError::ForgedAnchor { .. }), "{err:?}");
}
