use super::*;
use crate::StoreError;
use crate::encoding::history_key;
use crate::shared::{CF_HISTORY, CF_LATEST};

/// A store reading from RocksDB alone: these tests change its index under it, which a
/// resident copy of the current state would not see.
fn open_index_only(dir: &std::path::Path) -> Store {
    open_with(
        dir,
        options(dir).with_resident_max_bytes(0),
        &StaticKeys::single(KEY),
    )
    .unwrap()
}

fn raw_latest(s: &Store, key: &[u8]) -> Vec<u8> {
    s.shared
        .db
        .get_cf(s.shared.cf(CF_LATEST).unwrap(), key)
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn tampering_with_any_byte_of_a_stored_value_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_index_only(dir.path());
    s.create(b"/registry/secrets/default/db", b"password=hunter2")
        .await
        .unwrap();
    let original = raw_latest(&s, b"/registry/secrets/default/db");
    let latest = s.shared.cf(CF_LATEST).unwrap();
    // Every byte: metadata (revisions, version) and the sealed blob.
    for i in 0..original.len() {
        let mut bad = original.clone();
        bad[i] ^= 0x01;
        s.shared
            .db
            .put_cf(latest, b"/registry/secrets/default/db", &bad)
            .unwrap();
        match s.get(b"/registry/secrets/default/db") {
            Err(StoreError::Unseal { key, .. }) | Err(StoreError::UnknownEpoch { key, .. }) => {
                assert_eq!(key, "/registry/secrets/default/db", "byte {i}")
            }
            other => panic!("byte {i}: expected an unseal error, got {other:?}"),
        }
    }
    // Truncated blobs too.
    s.shared
        .db
        .put_cf(latest, b"/registry/secrets/default/db", &original[..30])
        .unwrap();
    assert!(matches!(
        s.get(b"/registry/secrets/default/db"),
        Err(StoreError::Unseal { .. })
    ));
    s.shared
        .db
        .put_cf(latest, b"/registry/secrets/default/db", &original)
        .unwrap();
    assert_eq!(
        s.get(b"/registry/secrets/default/db")
            .unwrap()
            .0
            .unwrap()
            .value,
        b"password=hunter2"
    );
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_key_or_revision_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_index_only(dir.path());
    s.create(b"/a", b"value-of-a").await.unwrap();
    s.create(b"/b", b"value-of-b").await.unwrap();
    let latest = s.shared.cf(CF_LATEST).unwrap();
    // Another key.
    s.shared
        .db
        .put_cf(latest, b"/b", raw_latest(&s, b"/a"))
        .unwrap();
    match s.get(b"/b") {
        Err(StoreError::Unseal { key, .. }) => assert_eq!(key, "/b"),
        other => panic!("{other:?}"),
    }
    // Another revision: move a's history entry from revision 1 to 2.
    let history = s.shared.cf(CF_HISTORY).unwrap();
    s.update(b"/a", b"second", 1).await.unwrap();
    let v1 = s
        .shared
        .db
        .get_cf(history, history_key(b"/a", 1))
        .unwrap()
        .unwrap();
    s.shared
        .db
        .put_cf(history, history_key(b"/a", 2), &v1)
        .unwrap();
    match s.get_at(b"/a", Some(2)) {
        Err(StoreError::Unseal { key, revision, .. }) => {
            assert_eq!((key.as_str(), revision), ("/a", 2))
        }
        other => panic!("{other:?}"),
    }
    // A range that meets the bad value fails instead of skipping it.
    assert!(matches!(
        s.range(&crate::RangeRequest::prefix(b"/".to_vec())),
        Err(StoreError::Unseal { .. })
    ));
}

#[tokio::test]
async fn key_rotation_keeps_old_epochs_readable_and_seals_new_writes_with_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/old", b"sealed under epoch 1").await.unwrap();
    let rotated = StaticKeys::single(KEY).with_epoch(2, [9; 32]);
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
    let s = open_with(dir.path(), options(dir.path()), &rotated).unwrap();
    assert_eq!(
        s.get(b"/old").unwrap().0.unwrap().value,
        b"sealed under epoch 1"
    );
    s.create(b"/new", b"sealed under epoch 2").await.unwrap();
    // The sealed blob starts after 24 bytes of metadata with the epoch.
    assert_eq!(raw_latest(&s, b"/old")[24..28], 1u32.to_be_bytes());
    assert_eq!(raw_latest(&s, b"/new")[24..28], 2u32.to_be_bytes());

    // Without epoch 1 the old value is an error that names key and epoch.
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
    let only_new = StaticKeys::single([0; 32]).with_epoch(2, [9; 32]);
    let s = open_with(dir.path(), options(dir.path()), &only_new).unwrap();
    assert_eq!(
        s.get(b"/new").unwrap().0.unwrap().value,
        b"sealed under epoch 2"
    );
    match s.get(b"/old") {
        Err(StoreError::Unseal { key, .. }) => assert_eq!(key, "/old"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_plaintext_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let secret = b"TOP-SECRET-VALUE-c2f1e0";
    for i in 0..50 {
        s.put(format!("/registry/secrets/ns/s{i}").as_bytes(), secret)
            .await
            .unwrap();
    }
    s.write_snapshot().await.unwrap();
    s.shared
        .db
        .flush_cfs_opt(
            &[
                s.shared.cf(CF_LATEST).unwrap(),
                s.shared.cf(CF_HISTORY).unwrap(),
            ],
            &rocksdb::FlushOptions::default(),
        )
        .unwrap();
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "plaintext found in {}",
            entry.display()
        );
    }
    assert!(files > 3);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn another_root_secret_is_refused_at_open_even_when_the_index_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.create(b"/a", b"sealed under the right key")
        .await
        .unwrap();
    assert!(
        s.close(std::time::Duration::from_secs(10)),
        "store did not shut down"
    );
    // The index already holds every record, so opening replays nothing; the
    // wrong key must still be caught before anything is written with it.
    match open_with(
        dir.path(),
        options(dir.path()),
        &StaticKeys::single([8; 32]),
    ) {
        Err(e @ StoreError::Journal(crate::JournalError::Record { .. })) => {
            let StoreError::Journal(crate::JournalError::Record { reason, .. }) = &e else {
                unreachable!()
            };
            assert!(
                matches!(reason, crate::journal::RecordError::Unseal { seq: 1 }),
                "{reason:?}"
            );
            // What the operator reads (`daas unseal` shows the `{:#}` chain) names the cause once.
            let cause = reason.to_string();
            let shown = format!("{:#}", anyhow::Error::from(e).context("opening the store"));
            assert_eq!(shown.matches(cause.as_str()).count(), 1, "{shown}");
        }
        Err(other) => panic!("wrong error: {other:?}"),
        Ok(_) => panic!("a store opened under another root secret"),
    }
    // Nothing was lost: the right key still opens it, with the value.
    let s = open(dir.path());
    assert_eq!(
        s.get(b"/a").unwrap().0.unwrap().value,
        b"sealed under the right key"
    );
}
