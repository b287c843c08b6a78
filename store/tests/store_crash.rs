//! Crash safety: a child process runs a concurrent write load and reports
//! each acknowledged write on stdout; the parent kills it with SIGKILL at a
//! random moment, reopens the store, and checks that every acknowledged
//! write is there and nothing is half-applied. Repeated many times (bounded
//! in rounds and time), sometimes also deleting the RocksDB index so the
//! state must come back from the sealed journal alone.
//!
//! The child is this same test binary, re-run with an environment variable.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use store::{FileJournal, RangeRequest, StaticKeys, Store, StoreOptions};

const CHILD_ENV: &str = "K3S_DAAS_STORE_CRASH_CHILD";
const CLUSTER: [u8; 16] = *b"crash-test-clust";
const WRITERS: usize = 8;

fn open(dir: &Path) -> Store {
    let journal = FileJournal::open(dir.join("journal")).expect("journal opens");
    Store::open(
        StoreOptions::new(dir.join("index"), CLUSTER),
        &StaticKeys::single([3; 32]),
        Box::new(journal),
    )
    .expect("store opens")
}

fn value_for(key: &str) -> Vec<u8> {
    // Long enough to span several pages of the journal file, and checkable.
    key.as_bytes().iter().cycle().take(1500).copied().collect()
}

/// The child: write unique keys from several tasks until killed, printing
/// `ACK <key> <revision>` after each acknowledged write.
fn child(dir: &Path, round: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = open(dir);
        // Raw stdout, not println!: libtest may capture the print macros.
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", store.revision()).expect("stdout");
        out.flush().expect("stdout");
        drop(out);
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("/crash/{round}/{w}/{i}");
                    let outcome = store
                        .create(key.as_bytes(), &value_for(&key))
                        .await
                        .expect("write");
                    let rev = outcome.revision().expect("unique keys always create");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {rev}").expect("stdout");
                    out.flush().expect("stdout");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (round, dir) = spec.split_once(':').expect("round:dir");
        child(Path::new(dir), round.parse().expect("round"));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut rounds = 0u32;
    // At least 8 kills; stop after 30 rounds or 40 seconds, whichever first.
    while rounds < 30 && (rounds < 8 || started.elapsed() < Duration::from_secs(40)) {
        let mut proc = Command::new(&exe)
            .args([
                "--exact",
                "every_acknowledged_write_survives_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{rounds}:{}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = proc.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is writing, then let it run a varying while.
        // libtest prints its own lines first, and "test NAME ... " with no
        // newline, so markers are searched for, not expected at line start.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(wait).expect("child reports READY in time");
            if line.contains("READY ") {
                break;
            }
            assert!(!line.contains("ACK "), "child wrote before reporting READY");
        }
        // Kill only once the child has acknowledged something (however long
        // that takes on a loaded machine), after a varying extra while.
        let mut seen = Vec::new();
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(wait)
                .expect("child acknowledges a write in time");
            let first_ack = line.contains("ACK ");
            seen.push(line);
            if first_ack {
                break;
            }
        }
        let run_for = Duration::from_millis(30 + u64::from(rounds * 37 % 300));
        std::thread::sleep(run_for);
        proc.kill().expect("SIGKILL the child");
        proc.wait().expect("reap child");
        reader.join().expect("reader thread");
        let before = acked.len();
        for line in seen.into_iter().chain(rx.try_iter()) {
            // A line cut by the kill has no revision field and is not counted:
            // the write may or may not be durable, and either is correct.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let mut parts = line[at..].split(' ');
            if let (Some("ACK"), Some(key), Some(rev)) = (parts.next(), parts.next(), parts.next())
                && let Ok(rev) = rev.parse()
            {
                acked.push((key.to_string(), rev));
            }
        }
        assert!(
            acked.len() > before,
            "round {rounds}: the child's acknowledgements were not recorded"
        );

        if rounds % 3 == 2 {
            // Lose the index entirely: the journal alone must bring it back.
            std::fs::remove_dir_all(dir.path().join("index")).expect("remove index");
        }
        verify(dir.path(), &acked, rounds);
        rounds += 1;
    }
    eprintln!(
        "{rounds} kill -9 rounds, {} acknowledged writes verified",
        acked.len()
    );
}

fn verify(dir: &Path, acked: &[(String, u64)], round: u32) {
    let store = open(dir);
    for (key, rev) in acked {
        let (kv, _) = store.get(key.as_bytes()).expect("read");
        let kv = kv.unwrap_or_else(|| {
            panic!("round {round}: acknowledged write {key} at revision {rev} is missing")
        });
        assert_eq!(kv.mod_revision, *rev, "round {round}: {key}");
        assert_eq!(
            kv.value,
            value_for(key),
            "round {round}: {key} has a torn value"
        );
    }
    // Nothing half-applied: every revision is exactly one complete create,
    // so the live keys are numbered 1..=revision without gaps.
    let all = store
        .range(&RangeRequest::prefix(b"/crash/".to_vec()))
        .expect("range");
    assert_eq!(
        all.kvs.len() as u64,
        store.revision(),
        "round {round}: keys and revisions disagree"
    );
    let mut revs: Vec<u64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
    revs.sort_unstable();
    assert!(
        revs.iter().copied().eq(1..=store.revision()),
        "round {round}: revision gap"
    );
    for kv in &all.kvs {
        assert_eq!(
            kv.value,
            value_for(&String::from_utf8_lossy(&kv.key)),
            "round {round}: torn value"
        );
    }
    assert!(store.close(Duration::from_secs(30)), "store closes");
}
