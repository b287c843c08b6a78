//! `RemoteJournal` against a scripted, hostile journal service: it must answer every misbehaviour with an
//! error, never a panic or an unbounded allocation, and settle unacknowledged appends before writing again.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;

use super::*;

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    frame::encode(kind, body).unwrap()
}

fn read_request(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    frame::read_frame(s, u32::MAX)
        .ok()
        .map(|f| (f.kind, f.body))
}

fn hello_ok(s: &mut UnixStream, limit: u32) {
    let (kind, _) = read_request(s).expect("HELLO");
    assert_eq!(kind, wire::HELLO);
    s.write_all(&frame(wire::OK, &wire::hello_ok(limit)))
        .unwrap();
}

/// One connection's behaviour; it may report the requests it saw as `(kind, body)`.
type Script = Box<dyn FnOnce(&mut UnixStream, &mpsc::Sender<(u8, Vec<u8>)>) + Send>;

/// What a fake service reports: `(connection index, kind, body)` of the requests its scripts saw.
type Seen = mpsc::Receiver<(usize, u8, Vec<u8>)>;

/// A fake service: each accepted connection is handed to the next script in order.
fn fake(scripts: Vec<Script>) -> (tempfile::TempDir, PathBuf, Seen) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, script) in scripts.into_iter().enumerate() {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let tx = tx.clone();
            let tagged = mpsc::channel();
            let forward = std::thread::spawn(move || {
                for (kind, body) in tagged.1 {
                    let _ = tx.send((i, kind, body));
                }
            });
            script(&mut s, &tagged.0);
            drop(tagged.0);
            let _ = forward.join();
        }
    });
    (dir, sock, rx)
}

fn connect(sock: &std::path::Path) -> Result<RemoteJournal, JournalError> {
    RemoteJournal::connect(
        JournalEndpoint::Unix(sock.to_path_buf()),
        RemoteJournalOptions::default().with_max_frame_bytes(1024),
    )
}

/// A record with a readable header: `KDJ1 | seq | 48 header bytes | payload`.
fn record(seq: u64) -> Vec<u8> {
    let mut r = b"KDJ1".to_vec();
    r.extend_from_slice(&seq.to_be_bytes());
    r.extend_from_slice(&[0u8; 48]);
    r.extend_from_slice(b"sealed");
    r
}

#[test]
fn a_tcp_endpoint_is_refused_without_connecting() {
    let err = RemoteJournal::connect(
        "tcp:127.0.0.1:1".parse().unwrap(),
        RemoteJournalOptions::default(),
    )
    .unwrap_err();
    match err {
        JournalError::Connection { cause, .. } => {
            assert_eq!(cause.kind(), io::ErrorKind::Unsupported, "{cause}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_unreachable_service_is_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = connect(&dir.path().join("nobody.sock")).unwrap_err();
    assert!(matches!(err, JournalError::Connection { .. }), "{err}");
}

#[test]
fn a_service_that_is_not_a_journal_service_is_refused() {
    let (_dir, sock, _rx) = fake(vec![
        Box::new(|s, _| {
            let _ = read_request(s);
            s.write_all(&frame(wire::ERROR, b"go away")).unwrap();
        }),
        Box::new(|s, _| {
            let _ = read_request(s);
            s.write_all(&frame(wire::OK, &[0, 9, 0, 0, 4, 0])).unwrap();
        }),
        Box::new(|s, _| {
            let _ = read_request(s);
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        }),
    ]);
    let err = connect(&sock).unwrap_err();
    assert!(
        matches!(&err, JournalError::Refused { message, .. } if message == "go away"),
        "{err}"
    );
    let err = connect(&sock).unwrap_err();
    assert!(matches!(err, JournalError::Protocol { .. }), "{err}");
    // "HTTP" read as a frame length is far over the limit: refused without allocating it.
    let err = connect(&sock).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the enclave's limit"),
        "{err}"
    );
}

#[test]
fn lying_or_oversized_read_responses_are_errors_and_reads_retry_on_a_new_connection() {
    let (_dir, sock, _rx) = fake(vec![
        Box::new(|s, _| {
            hello_ok(s, 1024);
            let _ = read_request(s);
            // One record, but END claims two.
            s.write_all(&frame(wire::RECORD, b"r1")).unwrap();
            s.write_all(&frame(wire::END, &2u64.to_be_bytes())).unwrap();
        }),
        Box::new(|s, _| {
            hello_ok(s, 1024);
            let _ = read_request(s);
            // A record frame larger than the enclave accepts.
            s.write_all(&(1_000_000u32).to_be_bytes()).unwrap();
        }),
        Box::new(|s, _| {
            hello_ok(s, 1024);
            let _ = read_request(s);
            // The snapshot's END disagrees with the bytes sent.
            s.write_all(&frame(wire::CHUNK, b"abc")).unwrap();
            s.write_all(&frame(wire::END, &4u64.to_be_bytes())).unwrap();
        }),
        Box::new(|s, _| {
            hello_ok(s, 1024);
            let _ = read_request(s);
            // Dies in the middle of the response...
            s.write_all(&frame(wire::RECORD, b"r1")[..3]).unwrap();
        }),
        Box::new(|s, _| {
            hello_ok(s, 1024);
            // ...and the retry on a new connection gets a whole one.
            let _ = read_request(s);
            s.write_all(&frame(wire::RECORD, b"r1")).unwrap();
            s.write_all(&frame(wire::END, &1u64.to_be_bytes())).unwrap();
        }),
    ]);
    let mut j = connect(&sock).unwrap();
    let err = j.read_records().unwrap_err();
    assert!(err.to_string().contains("END does not match"), "{err}");
    let err = j.read_records().unwrap_err();
    assert!(
        err.to_string().contains("exceeds the enclave's limit"),
        "{err}"
    );
    let err = j.read_snapshot().unwrap_err();
    assert!(err.to_string().contains("END does not match"), "{err}");
    assert_eq!(j.read_records().unwrap(), vec![b"r1".to_vec()]);
}

#[test]
fn an_unacknowledged_append_is_discarded_before_the_next_write() {
    let (_dir, sock, rx) = fake(vec![
        Box::new(|s, seen| {
            hello_ok(s, 1024);
            let (kind, body) = read_request(s).unwrap();
            seen.send((kind, body)).unwrap();
            // The record arrived; the connection dies before the ack.
        }),
        Box::new(|s, seen| {
            hello_ok(s, 1024);
            for _ in 0..2 {
                let (kind, body) = read_request(s).unwrap();
                let reply = if kind == wire::DISCARD_FROM {
                    frame(wire::OK, &1u64.to_be_bytes())
                } else {
                    frame(wire::OK, b"")
                };
                seen.send((kind, body)).unwrap();
                s.write_all(&reply).unwrap();
            }
        }),
    ]);
    let mut j = connect(&sock).unwrap();
    let err = j.append(&record(5)).unwrap_err();
    assert!(
        matches!(err, JournalError::Unacknowledged { seq: 5, .. }),
        "{err}"
    );
    j.append(&record(5)).unwrap();
    let seen: Vec<_> = rx.iter().take(3).collect();
    assert_eq!(seen[0], (0, wire::APPEND, record(5)));
    assert_eq!(
        seen[1],
        (1, wire::DISCARD_FROM, 5u64.to_be_bytes().to_vec())
    );
    assert_eq!(seen[2], (1, wire::APPEND, record(5)));
}

#[test]
fn an_append_too_large_for_the_service_is_refused_before_sending() {
    let (_dir, sock, _rx) = fake(vec![Box::new(|s, _| {
        hello_ok(s, 64);
        assert!(read_request(s).is_none(), "nothing was sent");
    })]);
    let mut j = connect(&sock).unwrap();
    let err = j.append(&record(1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not fit the service's frame limit"),
        "{err}"
    );
    drop(j);
}

#[test]
fn random_responses_never_panic() {
    let mut x = 0x853C_49E6_748F_EA9Bu64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut scripts: Vec<Script> = Vec::new();
    // A read retries on a new connection, so there are more scripts than operations.
    for _ in 0..150 {
        let junk: Vec<u8> = (0..(next() % 40)).map(|_| next() as u8).collect();
        scripts.push(Box::new(move |s, _| {
            hello_ok(s, 1024);
            let _ = read_request(s);
            let _ = s.write_all(&junk);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }));
    }
    let (_dir, sock, _rx) = fake(scripts);
    for i in 0..50 {
        let Ok(mut j) = connect(&sock) else {
            continue;
        };
        let _ = match i % 3 {
            0 => j.read_records().map(|_| ()),
            1 => j.read_snapshot().map(|_| ()),
            _ => j.append(&record(1)),
        };
    }
}
