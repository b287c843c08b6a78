//! Journal storage and protocol tests: the files on disk, and hand-built frames against a served directory.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::storage::{JournalDir, record_seq};
use super::*;
use crate::transport::Endpoint;

/// A record with a readable header: `KDJ1 | seq | 48 more header bytes | payload`.
fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = b"KDJ1".to_vec();
    r.extend_from_slice(&seq.to_be_bytes());
    r.extend_from_slice(&[0u8; 48]);
    r.extend_from_slice(payload);
    r
}

fn open(dir: &Path) -> JournalDir {
    JournalDir::open(dir, 1 << 20).unwrap()
}

#[test]
fn reads_only_the_sequence_number_of_a_record() {
    assert_eq!(record_seq(&record(7, b"x")), Some(7));
    assert_eq!(record_seq(b"KDJ1\0\0"), None);
    assert_eq!(record_seq(b"XXXX\0\0\0\0\0\0\0\x07"), None);
    assert_eq!(record_seq(b""), None);
}

#[test]
fn appends_survive_reopen_and_a_torn_tail_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut j = open(tmp.path());
        j.append(&record(1, b"a")).unwrap();
        j.append(&record(2, b"b")).unwrap();
    }
    // A crash in the middle of a third append: half a frame on disk.
    let path = tmp.path().join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    let r3 = record(3, b"c");
    bytes.extend_from_slice(&(r3.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&r3[..10]);
    std::fs::write(&path, &bytes).unwrap();
    let mut j = open(tmp.path());
    assert_eq!(
        j.read_records().unwrap(),
        vec![record(1, b"a"), record(2, b"b")]
    );
    j.append(&record(3, b"c")).unwrap();
    assert_eq!(j.read_records().unwrap().len(), 3);
}

#[test]
fn the_directory_is_locked_while_open() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path());
    assert!(matches!(
        JournalDir::open(tmp.path(), 1 << 20),
        Err(Error::JournalLocked { .. })
    ));
    drop(first);
    open(tmp.path());
}

#[test]
fn a_snapshot_replaces_the_old_one_and_prunes_what_it_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = open(tmp.path());
    assert_eq!(j.read_snapshot().unwrap(), None);
    for seq in 1..=4 {
        j.append(&record(seq, b"r")).unwrap();
    }
    j.append(b"not a record").unwrap();
    j.begin_snapshot().unwrap();
    j.snapshot_chunk(b"snap").unwrap();
    j.snapshot_chunk(b"shot-1").unwrap();
    j.commit_snapshot(10, 2).unwrap();
    assert_eq!(j.read_snapshot().unwrap().unwrap(), b"snapshot-1");
    // Records 1 and 2 are covered; 3, 4 and the unreadable one are kept.
    assert_eq!(
        j.read_records().unwrap(),
        vec![record(3, b"r"), record(4, b"r"), b"not a record".to_vec()]
    );
    // Appends continue after pruning, and everything survives a reopen.
    j.append(&record(5, b"r")).unwrap();
    drop(j);
    let j = open(tmp.path());
    assert_eq!(j.read_records().unwrap().len(), 4);
    assert_eq!(j.read_snapshot().unwrap().unwrap(), b"snapshot-1");
    assert!(!tmp.path().join("snapshot.tmp").exists());
}

#[test]
fn inconsistent_snapshot_uploads_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = open(tmp.path());
    j.append(&record(1, b"r")).unwrap();
    assert!(matches!(
        j.snapshot_chunk(b"x"),
        Err(Error::JournalRequest { .. })
    ));
    assert!(matches!(
        j.commit_snapshot(0, 1),
        Err(Error::JournalRequest { .. })
    ));
    j.begin_snapshot().unwrap();
    j.snapshot_chunk(b"abc").unwrap();
    assert!(matches!(
        j.commit_snapshot(4, 1),
        Err(Error::JournalRequest { .. })
    ));
    assert_eq!(j.read_snapshot().unwrap(), None);
    assert_eq!(j.read_records().unwrap().len(), 1);
    // Over the size limit.
    let mut small = j;
    small.begin_snapshot().unwrap();
    assert!(small.snapshot_chunk(&vec![0u8; (1 << 20) + 1]).is_err());
}

#[test]
fn discard_from_drops_only_the_matching_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let mut j = open(tmp.path());
    for seq in [1, 2, 3, 4] {
        j.append(&record(seq, b"r")).unwrap();
    }
    assert_eq!(j.discard_from(9).unwrap(), 0);
    assert_eq!(j.discard_from(3).unwrap(), 2);
    assert_eq!(
        j.read_records().unwrap(),
        vec![record(1, b"r"), record(2, b"r")]
    );
    j.append(&record(3, b"new")).unwrap();
    drop(j);
    let j = open(tmp.path());
    assert_eq!(
        j.read_records().unwrap(),
        vec![record(1, b"r"), record(2, b"r"), record(3, b"new")]
    );
}

// ---- protocol ----

struct Served {
    dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn serve(limit: u32) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("journal.sock");
    let service =
        JournalService::open(&JournalConfig::new(dir.path().join("data")).max_frame_bytes(limit))
            .unwrap();
    let listener = Listener::bind(&Endpoint::Unix(sock.clone())).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(service.serve(listener, shutdown.clone()));
    Served {
        dir,
        sock,
        shutdown,
        task,
    }
}

impl Served {
    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap();
        self.dir
    }
}

async fn send(s: &mut UnixStream, kind: u8, body: &[u8]) {
    s.write_all(&((body.len() + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&[kind]).await.unwrap();
    s.write_all(body).await.unwrap();
}

/// Reads one response frame; `None` if the service closed the connection.
async fn recv(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).await.ok()?;
    let kind = frame.remove(0);
    Some((kind, frame))
}

/// The session id the tests' enclave uses unless a test needs two.
const SESSION: [u8; 16] = [0xA1; 16];

fn hello_body(session: [u8; 16]) -> Vec<u8> {
    let mut body = b"KDJP".to_vec();
    body.extend_from_slice(&wire::VERSION.to_be_bytes());
    body.extend_from_slice(&session);
    body
}

async fn hello(sock: &Path) -> UnixStream {
    hello_as(sock, SESSION).await
}

async fn hello_as(sock: &Path, session: [u8; 16]) -> UnixStream {
    let mut s = UnixStream::connect(sock).await.unwrap();
    send(&mut s, wire::HELLO, &hello_body(session)).await;
    let (kind, body) = recv(&mut s).await.unwrap();
    assert_eq!(kind, wire::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..2], &wire::VERSION.to_be_bytes());
    s
}

async fn read_records(s: &mut UnixStream) -> Vec<Vec<u8>> {
    send(s, wire::READ_RECORDS, b"").await;
    let mut out = Vec::new();
    loop {
        match recv(s).await.unwrap() {
            (wire::RECORD, r) => out.push(r),
            (wire::END, n) => {
                assert_eq!(u64::from_be_bytes(n.try_into().unwrap()), out.len() as u64);
                return out;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn error_text(frame: Option<(u8, Vec<u8>)>) -> String {
    let (kind, body) = frame.expect("an ERROR frame, not a closed connection");
    assert_eq!(kind, wire::ERROR, "expected ERROR");
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn appends_reads_and_snapshots_over_the_protocol() {
    let served = serve(1024).await;
    let mut s = hello(&served.sock).await;
    for seq in 1..=3 {
        send(&mut s, wire::APPEND, &record(seq, b"sealed")).await;
        assert_eq!(recv(&mut s).await.unwrap(), (wire::OK, vec![]));
    }
    assert_eq!(read_records(&mut s).await.len(), 3);
    send(&mut s, wire::READ_SNAPSHOT, b"").await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::NONE);
    send(&mut s, wire::SNAPSHOT_BEGIN, b"").await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    send(&mut s, wire::SNAPSHOT_CHUNK, b"snap-").await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    send(&mut s, wire::SNAPSHOT_CHUNK, b"bytes").await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    let mut commit = 10u64.to_be_bytes().to_vec();
    commit.extend_from_slice(&2u64.to_be_bytes());
    send(&mut s, wire::SNAPSHOT_COMMIT, &commit).await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    assert_eq!(read_records(&mut s).await, vec![record(3, b"sealed")]);
    send(&mut s, wire::READ_SNAPSHOT, b"").await;
    assert_eq!(
        recv(&mut s).await.unwrap(),
        (wire::CHUNK, b"snap-bytes".to_vec())
    );
    assert_eq!(
        recv(&mut s).await.unwrap(),
        (wire::END, 10u64.to_be_bytes().to_vec())
    );
    send(&mut s, wire::DISCARD_FROM, &3u64.to_be_bytes()).await;
    assert_eq!(
        recv(&mut s).await.unwrap(),
        (wire::OK, 1u64.to_be_bytes().to_vec())
    );
    assert!(read_records(&mut s).await.is_empty());
    drop(s);
    served.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_errors_and_the_connection_stays_usable() {
    let served = serve(1024).await;
    let mut s = UnixStream::connect(&served.sock).await.unwrap();
    send(&mut s, wire::APPEND, &record(1, b"x")).await;
    assert!(error_text(recv(&mut s).await).contains("before HELLO"));
    send(&mut s, wire::HELLO, b"KDJP\x00\x09").await;
    assert!(error_text(recv(&mut s).await).contains("version 9"));
    send(&mut s, wire::HELLO, b"nope").await;
    assert!(error_text(recv(&mut s).await).contains("HELLO body"));
    send(&mut s, wire::HELLO, b"KDJP\x00\x02").await;
    assert!(error_text(recv(&mut s).await).contains("16-byte session id"));
    send(&mut s, wire::HELLO, &hello_body(SESSION)).await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    send(&mut s, wire::HELLO, &hello_body(SESSION)).await;
    assert!(error_text(recv(&mut s).await).contains("already said"));
    for (kind, body, want) in [
        (0x42u8, &b""[..], "unknown request kind 0x42"),
        (wire::APPEND, b"", "empty record"),
        (wire::READ_RECORDS, b"x", "takes no body"),
        (wire::SNAPSHOT_CHUNK, b"x", "without a snapshot begin"),
        (wire::SNAPSHOT_COMMIT, b"short", "SNAPSHOT_COMMIT body"),
        (wire::DISCARD_FROM, b"\x01", "DISCARD_FROM body"),
    ] {
        send(&mut s, kind, body).await;
        let text = error_text(recv(&mut s).await);
        assert!(text.contains(want), "{text:?} should contain {want:?}");
    }
    send(&mut s, wire::APPEND, &record(1, b"x")).await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    assert_eq!(read_records(&mut s).await.len(), 1);
    drop(s);
    served.stop().await;
}

#[tokio::test]
async fn oversize_and_empty_frames_are_refused_and_the_service_keeps_serving() {
    let served = serve(256).await;
    let mut s = hello(&served.sock).await;
    // Declares 1 GiB: refused from the length alone, connection closed.
    s.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let text = error_text(recv(&mut s).await);
    assert!(
        text.contains("exceeds the journal service's limit of 256 bytes"),
        "{text}"
    );
    assert!(
        recv(&mut s).await.is_none(),
        "connection closed after an oversize frame"
    );

    let mut s = hello(&served.sock).await;
    s.write_all(&0u32.to_be_bytes()).await.unwrap();
    assert!(error_text(recv(&mut s).await).contains("length 0"));
    assert!(recv(&mut s).await.is_none());

    // Nothing was stored, and a well-behaved client is served.
    let mut s = hello(&served.sock).await;
    assert!(read_records(&mut s).await.is_empty());
    drop(s);
    served.stop().await;
}

#[tokio::test]
async fn arbitrary_bytes_never_crash_the_service() {
    let served = serve(4096).await;
    // A fixed xorshift stream: reproducible garbage, some of it after a valid HELLO.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200 {
        let mut s = if round % 2 == 0 {
            UnixStream::connect(&served.sock).await.unwrap()
        } else {
            hello(&served.sock).await
        };
        let len = (next() % 64) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 3 == 0 && junk.len() >= 5 {
            // A plausible small frame header with a random kind.
            let n = (junk.len() - 4) as u32;
            junk[..4].copy_from_slice(&n.to_be_bytes());
        }
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    }
    let mut s = hello(&served.sock).await;
    send(&mut s, wire::APPEND, &record(1, b"after the noise")).await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    drop(s);
    served.stop().await;
}

#[tokio::test]
async fn an_append_torn_by_a_dropped_connection_is_not_kept() {
    let served = serve(1024).await;
    let mut s = hello(&served.sock).await;
    send(&mut s, wire::APPEND, &record(1, b"whole")).await;
    assert_eq!(recv(&mut s).await.unwrap().0, wire::OK);
    // Half of the second APPEND frame, then the connection drops.
    let r2 = record(2, b"torn");
    s.write_all(&((r2.len() + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&[wire::APPEND]).await.unwrap();
    s.write_all(&r2[..20]).await.unwrap();
    drop(s);
    let mut s = hello(&served.sock).await;
    assert_eq!(read_records(&mut s).await, vec![record(1, b"whole")]);
    drop(s);
    let dir = served.stop().await;
    // And on disk, after the service let go of the directory.
    let j = open(&dir.path().join("data"));
    assert_eq!(j.read_records().unwrap(), vec![record(1, b"whole")]);
}

#[tokio::test]
async fn a_reconnecting_session_replaces_its_older_connection() {
    let served = serve(1024).await;
    let mut old = hello(&served.sock).await;
    let mut new = hello(&served.sock).await;
    // The old connection is closed by the service.
    assert!(recv(&mut old).await.is_none());
    send(&mut new, wire::APPEND, &record(1, b"x")).await;
    assert_eq!(recv(&mut new).await.unwrap().0, wire::OK);
    drop(new);
    served.stop().await;
}

#[tokio::test]
async fn a_replaced_session_is_fenced_off_and_cannot_touch_the_new_owners_records() {
    let served = serve(1024).await;
    let (a, b) = ([0xAA; 16], [0xBB; 16]);
    let mut first = hello_as(&served.sock, a).await;
    send(&mut first, wire::APPEND, &record(1, b"from a")).await;
    assert_eq!(recv(&mut first).await.unwrap().0, wire::OK);

    // A second enclave takes over: the first one's connection is closed.
    let mut second = hello_as(&served.sock, b).await;
    assert!(recv(&mut first).await.is_none());
    send(&mut second, wire::APPEND, &record(2, b"from b")).await;
    assert_eq!(recv(&mut second).await.unwrap().0, wire::OK);

    // The first enclave comes back, e.g. to discard what it thinks is its unacknowledged tail: refused, and
    // closed, before it can send anything else.
    let mut again = UnixStream::connect(&served.sock).await.unwrap();
    send(&mut again, wire::HELLO, &hello_body(a)).await;
    let refusal = error_text(recv(&mut again).await);
    assert!(refusal.contains("fenced"), "{refusal}");
    assert!(refusal.contains(&hex::encode(a)), "{refusal}");
    assert!(recv(&mut again).await.is_none());
    // Nor can it act without HELLO.
    let mut sneaky = UnixStream::connect(&served.sock).await.unwrap();
    send(&mut sneaky, wire::DISCARD_FROM, &2u64.to_be_bytes()).await;
    assert!(error_text(recv(&mut sneaky).await).contains("before HELLO"));

    // The owner was not disturbed: same connection, both records.
    assert_eq!(
        read_records(&mut second).await,
        vec![record(1, b"from a"), record(2, b"from b")]
    );
    drop(second);
    served.stop().await;
}
