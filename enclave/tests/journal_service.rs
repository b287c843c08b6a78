//! The store over `RemoteJournal` against the real `daas-host journal` process: restore after restarts, the
//! host killed with SIGKILL, a lost acknowledgement, and every way the host can alter its files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod journal_support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use enclave::store::journal::JournalEndpoint;
use enclave::store::{RangeRequest, Store, TxnOutcome};
use journal_support::{HostJournal, chain, close, open_store, read_frames, seq_of, write_frames};

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}-").repeat(20).into_bytes()
}

/// An acknowledged, committed put.
async fn put(store: &Store, key: &[u8], value: &[u8]) {
    let outcome = store.put(key, value).await.unwrap();
    assert!(matches!(outcome, TxnOutcome::Committed { .. }));
}

fn keys(store: &Store) -> Vec<String> {
    let resp = store.range(&RangeRequest::prefix("/k/")).unwrap();
    resp.kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

fn get(store: &Store, key: &str) -> Option<Vec<u8>> {
    store.get(key.as_bytes()).unwrap().0.map(|kv| kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_restores_from_the_host_journal_and_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let index = tmp.path().join("index");

    let store = open_store(&index, host.endpoint()).unwrap();
    for i in 0..20 {
        put(&store, format!("/k/{i:02}").as_bytes(), &value(i)).await;
    }
    store.write_snapshot().await.unwrap();
    for i in 20..30 {
        put(&store, format!("/k/{i:02}").as_bytes(), &value(i)).await;
    }
    assert!(matches!(
        store.delete(b"/k/03", None).await.unwrap(),
        TxnOutcome::Committed { .. }
    ));
    let mut revision = store.revision();
    close(store);

    // The host holds a snapshot and only the 11 records written after it.
    assert!(host.dir.join("snapshot").is_file());
    let records = host.records();
    assert_eq!(
        records.len(),
        11,
        "records covered by the snapshot are pruned"
    );
    assert_eq!(seq_of(&records[0]), 21);

    // The host service restarts; the enclave side restarts with its index, then without it (an enclave's
    // disk is its memory): both come back to the same state from the host's journal and snapshot.
    host.restart();
    for index in [index.clone(), tmp.path().join("fresh-index")] {
        let store = open_store(&index, host.endpoint()).unwrap();
        assert_eq!(store.revision(), revision);
        let ks = keys(&store);
        assert_eq!(ks.len(), 29);
        assert!(!ks.contains(&"/k/03".to_string()));
        for i in (0..30).filter(|i| *i != 3) {
            assert_eq!(
                get(&store, &format!("/k/{i:02}")),
                Some(value(i)),
                "key {i}"
            );
        }
        // And it keeps writing after the restore.
        put(&store, b"/after", b"x").await;
        revision = store.revision();
        close(store);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_fails_unacknowledged_writes_and_keeps_acknowledged_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let store = open_store(&tmp.path().join("index"), host.endpoint()).unwrap();
    for i in 0..10 {
        put(&store, format!("/k/a{i}").as_bytes(), &value(i)).await;
    }

    host.kill9();
    let err = store
        .put(b"/k/lost", b"never acknowledged")
        .await
        .unwrap_err();
    assert!(chain(&err).contains("journal"), "{}", chain(&err));
    assert_eq!(
        get(&store, "/k/lost"),
        None,
        "a refused write is not visible"
    );

    // The service comes back on the same directory; the journal reconnects and writes resume.
    host.restart();
    for i in 0..5 {
        put(&store, format!("/k/b{i}").as_bytes(), &value(i)).await;
    }
    close(store);

    // A new enclave (fresh index) restores exactly the acknowledged writes.
    let store = open_store(&tmp.path().join("index2"), host.endpoint()).unwrap();
    let ks = keys(&store);
    for i in 0..10 {
        assert!(
            ks.contains(&format!("/k/a{i}")),
            "acknowledged /k/a{i} lost"
        );
    }
    for i in 0..5 {
        assert!(
            ks.contains(&format!("/k/b{i}")),
            "acknowledged /k/b{i} lost"
        );
    }
    assert_eq!(ks.len(), 15, "only acknowledged writes: {ks:?}");
    close(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_under_concurrent_load_keeps_exactly_the_acknowledged_writes() {
    const WRITERS: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let mut host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let store = open_store(&tmp.path().join("index"), host.endpoint()).unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, acked, failed, stop) =
            (store.clone(), acked.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let key = format!("/k/{w}/{i}");
                match store.create(key.as_bytes(), &value(i as usize)).await {
                    Ok(TxnOutcome::Committed { .. }) => acked.lock().unwrap().push(key),
                    Ok(other) => panic!("create of a fresh key failed its condition: {other:?}"),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                }
            }
        }));
    }
    let acks = || acked.lock().unwrap().len();
    let wait_for_acks = |n: usize| async move {
        while acks() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    wait_for_acks(200).await;
    host.kill9();
    // Writers keep trying while the service is down: every one of those writes fails.
    let failed_before = failed.load(Ordering::SeqCst);
    while failed.load(Ordering::SeqCst) < failed_before + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    host.restart();
    let after_restart = acks();
    wait_for_acks(after_restart + 200).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    close(store);

    // Every acknowledged write is there, and nothing else: a record the service kept without acknowledging it
    // was discarded before the next write.
    let store = open_store(&tmp.path().join("fresh-index"), host.endpoint()).unwrap();
    let mut present = keys(&store);
    let mut acked = acked.lock().unwrap().clone();
    present.sort();
    acked.sort();
    assert_eq!(present.len(), acked.len(), "present vs acknowledged");
    assert_eq!(present, acked);
    assert!(failed.load(Ordering::SeqCst) >= 20);
    close(store);
}

/// A proxy between the store and the service that can swallow the acknowledgement of the next APPEND (the
/// service has made the record durable; the enclave never hears so) and then cut the connection.
struct AckEater {
    swallow_next_ack: Arc<AtomicBool>,
}

const APPEND: u8 = 0x02;
const TERMINAL: [u8; 4] = [0x80, 0x83, 0x84, 0xFF];

fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut frame = len.to_vec();
    frame.resize(4 + u32::from_be_bytes(len) as usize, 0);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

impl AckEater {
    fn start(listen: &Path, upstream: &Path) -> AckEater {
        let listener = UnixListener::bind(listen).unwrap();
        let swallow = Arc::new(AtomicBool::new(false));
        let flag = swallow.clone();
        let upstream = upstream.to_path_buf();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut host) = UnixStream::connect(&upstream) else {
                    continue;
                };
                // Strict request/response: forward one request, then its responses up to a terminal one.
                'conn: while let Some(req) = read_frame(&mut client) {
                    if host.write_all(&req).is_err() {
                        break;
                    }
                    let eat = req[4] == APPEND && flag.swap(false, Ordering::SeqCst);
                    loop {
                        let Some(resp) = read_frame(&mut host) else {
                            break 'conn;
                        };
                        if eat {
                            break 'conn;
                        }
                        if client.write_all(&resp).is_err() {
                            break 'conn;
                        }
                        if TERMINAL.contains(&resp[4]) {
                            break;
                        }
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = host.shutdown(std::net::Shutdown::Both);
            }
        });
        AckEater {
            swallow_next_ack: swallow,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_ack_is_lost_fails_and_is_discarded_before_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    let host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let proxy_sock = tmp.path().join("proxy.sock");
    let proxy = AckEater::start(&proxy_sock, &host.sock);
    let store = open_store(
        &tmp.path().join("index"),
        JournalEndpoint::Unix(proxy_sock.clone()),
    )
    .unwrap();
    put(&store, b"/k/1", b"one").await;

    proxy.swallow_next_ack.store(true, Ordering::SeqCst);
    let err = store.put(b"/k/2", b"two").await.unwrap_err();
    assert!(
        chain(&err).contains("append of record seq 2 was not acknowledged"),
        "{}",
        chain(&err)
    );
    // The service did make it durable: the host's file holds record 2.
    assert_eq!(
        host.records().iter().map(|r| seq_of(r)).collect::<Vec<_>>(),
        [1, 2]
    );

    let unacknowledged = host.records()[1].clone();

    // The next write settles it first: record 2 is discarded and replaced by the new write.
    put(&store, b"/k/3", b"three").await;
    let records = host.records();
    assert_eq!(
        records.iter().map(|r| seq_of(r)).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_ne!(records[1], unacknowledged, "record 2 is now the new write");
    close(store);
    let store = open_store(&tmp.path().join("index2"), host.endpoint()).unwrap();
    assert_eq!(keys(&store), ["/k/1", "/k/3"]);
    assert_eq!(get(&store, "/k/3").as_deref(), Some(&b"three"[..]));
    close(store);
}

// ---- the host alters its files ----

/// A host directory with 6 records (keys /k/0 ../k/5), written through the service; the service is stopped.
async fn populated(tmp: &Path, snapshot_after: Option<usize>) -> HostJournal {
    let mut host = HostJournal::start(&tmp.join("host"), &tmp.join("j.sock"));
    let store = open_store(&tmp.join("setup-index"), host.endpoint()).unwrap();
    for i in 0..6 {
        put(&store, format!("/k/{i}").as_bytes(), &value(i)).await;
        if snapshot_after == Some(i) {
            store.write_snapshot().await.unwrap();
        }
    }
    close(store);
    // Control: untouched, the files restore.
    let store = open_store(&tmp.join("control-index"), host.endpoint()).unwrap();
    assert_eq!(keys(&store).len(), 6);
    close(store);
    host.kill9();
    host
}

/// Restarts the service on the altered files and opens a store with a fresh index; returns the error.
fn reopen_error(host: &mut HostJournal, tmp: &Path, index: &str) -> String {
    host.restart();
    match open_store(&tmp.join(index), host.endpoint()) {
        Ok(_) => panic!("the store opened on altered journal files"),
        Err(e) => chain(&e),
    }
}

fn journal_path(host: &HostJournal) -> std::path::PathBuf {
    host.dir.join("journal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_record_is_refused_by_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), None).await;
    let mut records = host.records();
    let last = records[3].len() - 1;
    records[3][last] ^= 1; // record seq 4: one bit of its sealed payload
    write_frames(&journal_path(&host), &records);
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal record 3") && err.contains("record seq 4 failed to open"),
        "{err}"
    );
    // An enclave that still has its index notices it through the chain instead.
    let err = reopen_error(&mut host, tmp.path(), "setup-index");
    assert!(
        err.contains("record seq 5 does not chain to the previous record"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_record_is_refused_by_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), None).await;
    let mut records = host.records();
    let keep = records[2].len() - 7;
    records[2].truncate(keep); // record seq 3 loses the end of its tag, framing kept consistent
    write_frames(&journal_path(&host), &records);
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal record 2") && err.contains("seq 3"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_cut_short_is_refused_by_an_enclave_that_saw_more() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), None).await;
    let records = host.records();
    write_frames(&journal_path(&host), &records[..4]);
    let err = reopen_error(&mut host, tmp.path(), "setup-index");
    assert!(
        err.contains("journal ends at revision 4 but the index has applied revision 6"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_records_are_refused_by_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), None).await;
    let mut records = host.records();
    records.swap(2, 3);
    write_frames(&journal_path(&host), &records);
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal record 2") && err.contains("expected record seq 3, found seq 4"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record_is_refused_by_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), None).await;
    let mut records = host.records();
    records.push(records[1].clone());
    write_frames(&journal_path(&host), &records);
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal record 6") && err.contains("expected record seq 7, found seq 2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_truncated_snapshot_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = populated(tmp.path(), Some(2)).await;
    let path = host.dir.join("snapshot");
    let original = std::fs::read(&path).unwrap();
    assert_eq!(read_frames(&journal_path(&host)).len(), 3, "pruned");

    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x80;
    std::fs::write(&path, &tampered).unwrap();
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal snapshot") && err.contains("record seq 3 failed to open"),
        "{err}"
    );

    std::fs::write(&path, &original[..original.len() - 5]).unwrap();
    let err = reopen_error(&mut host, tmp.path(), "index");
    assert!(
        err.contains("journal snapshot") && err.contains("seq 3"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_snapshot_is_refused_by_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let store = open_store(&tmp.path().join("index"), host.endpoint()).unwrap();
    let mut old_snapshot = Vec::new();
    for i in 0..8 {
        put(&store, format!("/k/{i}").as_bytes(), &value(i)).await;
        if i == 2 {
            store.write_snapshot().await.unwrap();
            old_snapshot = std::fs::read(host.dir.join("snapshot")).unwrap();
        }
        if i == 5 {
            store.write_snapshot().await.unwrap();
        }
    }
    close(store);
    host.kill9();
    // The host serves the snapshot after record 3 with the records after record 6.
    std::fs::write(host.dir.join("snapshot"), &old_snapshot).unwrap();
    let err = reopen_error(&mut host, tmp.path(), "fresh-index");
    assert!(
        err.contains("journal record 0") && err.contains("expected record seq 4, found seq 7"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_enclave_fences_off_the_first_which_can_no_longer_write() {
    let tmp = tempfile::tempdir().unwrap();
    let host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("j.sock"));
    let first = open_store(&tmp.path().join("first-index"), host.endpoint()).unwrap();
    put(&first, b"/k/first-1", &value(1)).await;

    // A second enclave on the same journal (a restart whose predecessor is still alive) restores and writes.
    let second = open_store(&tmp.path().join("second-index"), host.endpoint()).unwrap();
    assert_eq!(keys(&second), ["/k/first-1"]);
    put(&second, b"/k/second-1", &value(2)).await;

    // The first one's writes now fail, naming the reason; it cannot fork or truncate the journal.
    let err = first.put(b"/k/first-2", &value(3)).await.unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("fenced"), "{chain}");
    close(first);
    put(&second, b"/k/second-2", &value(4)).await;
    close(second);

    let restored = open_store(&tmp.path().join("fresh-index"), host.endpoint()).unwrap();
    assert_eq!(
        keys(&restored),
        ["/k/first-1", "/k/second-1", "/k/second-2"]
    );
    close(restored);
}
