//! Chain points for rollback anchors, and telling dev-sealed journals apart.

use attestation::{Mode, RootSecret};

use super::*;
use crate::{ChainPoint, RootSecretKeys, journal_opens_with};

fn close(s: Store) {
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
}

#[tokio::test]
async fn opened_points_are_the_journal_records_and_the_head_is_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(
        s.opened_points(),
        &[ChainPoint {
            revision: 0,
            chain_hash: [0; 32]
        }]
    );
    for i in 0..3 {
        s.put(format!("/k/{i}").as_bytes(), b"v").await.unwrap();
    }
    let head = s.chain_head().unwrap();
    assert_eq!(head.revision, 3);
    assert_ne!(head.chain_hash, [0; 32]);
    close(s);

    // Reopened from the journal alone: genesis, then one point per record, ending at the head.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let s = open(dir.path());
    let points = s.opened_points().to_vec();
    assert_eq!(points.first().map(|p| p.revision), Some(0));
    assert_eq!(points.last(), Some(&head));
    assert!(points.windows(2).all(|w| w[0].revision < w[1].revision));
    assert_eq!(s.chain_head().unwrap(), head);

    // After a snapshot the first point is the snapshot's.
    let snapshot_revision = s.write_snapshot().await.unwrap();
    s.put(b"/k/after", b"v").await.unwrap();
    let head = s.chain_head().unwrap();
    close(s);
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let s = open(dir.path());
    let points = s.opened_points();
    assert_eq!(points.first().map(|p| p.revision), Some(snapshot_revision));
    assert_eq!(points.last(), Some(&head));
    close(s);
}

#[tokio::test]
async fn a_dev_sealed_journal_opens_with_dev_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = RootSecret::from_bytes([9; 32]);
    let dev = RootSecretKeys::new(root.clone(), Mode::Dev, 1);
    let production = RootSecretKeys::new(root, Mode::Production, 1);
    let journal = FileJournal::open(dir.path().join("journal")).unwrap();
    let s = Store::open(options(dir.path()), &dev, Box::new(journal)).unwrap();
    s.put(b"/k", b"dev data").await.unwrap();
    close(s);

    let mut journal = FileJournal::open(dir.path().join("journal")).unwrap();
    assert!(journal_opens_with(&mut journal, CLUSTER, &dev).unwrap());
    assert!(!journal_opens_with(&mut journal, CLUSTER, &production).unwrap());
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let err = Store::open(options(dir.path()), &production, Box::new(journal)).unwrap_err();
    assert!(err.is_unopenable_with_these_keys(), "{err}");

    // An empty journal opens with nothing (there is nothing to tell).
    let empty = tempfile::tempdir().unwrap();
    let mut journal = FileJournal::open(empty.path().join("journal")).unwrap();
    assert!(!journal_opens_with(&mut journal, CLUSTER, &dev).unwrap());
}
