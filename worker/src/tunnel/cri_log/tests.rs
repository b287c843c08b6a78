use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn write(path: &std::path::Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
    }
}

async fn collect(s: ByteStream) -> String {
    let chunks: Vec<Bytes> = s.map(|c| c.unwrap()).collect().await;
    String::from_utf8(chunks.concat()).unwrap()
}

fn stopped() -> StillRunning {
    Box::new(|| false)
}

fn sample(dir: &tempfile::TempDir) -> PathBuf {
    let p = dir.path().join("0.log");
    write(
        &p,
        &[
            entry(at(0), "stdout", false, "one"),
            entry(at(1), "stderr", false, "two"),
            entry(at(2), "stdout", true, "thr"),
            entry(at(2), "stdout", false, "ee"),
            entry(at(3), "stdout", false, "four"),
        ],
    );
    p
}

#[tokio::test]
async fn options_apply_as_the_kubelet_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(&dir);
    let read = |o: LogOptions| super::read(p.clone(), o, stopped(), at(10));
    assert_eq!(
        collect(read(LogOptions::default())).await,
        "one\ntwo\nthree\nfour\n"
    );
    // Tail counts entries; a partial line's tail is what remains of it.
    let tail = LogOptions {
        tail_lines: Some(2),
        ..LogOptions::default()
    };
    assert_eq!(collect(read(tail)).await, "ee\nfour\n");
    let ts = LogOptions {
        timestamps: true,
        since_unix_seconds: Some(at(1).as_second()),
        ..LogOptions::default()
    };
    assert_eq!(
        collect(read(ts)).await,
        format!("{} two\n{} three\n{} four\n", at(1), at(2), at(3))
    );
    let since_secs = LogOptions {
        since_seconds: Some(8),
        ..LogOptions::default()
    };
    assert_eq!(collect(read(since_secs)).await, "three\nfour\n");
    let limit = LogOptions {
        limit_bytes: Some(6),
        ..LogOptions::default()
    };
    assert_eq!(collect(read(limit)).await, "one\ntw");
    assert!(
        super::read(
            dir.path().join("missing.log"),
            LogOptions::default(),
            stopped(),
            at(0)
        )
        .next()
        .await
        .unwrap()
        .is_err()
    );
}

#[tokio::test]
async fn a_followed_log_streams_until_the_container_stops() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(&dir);
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let mut s = super::read(
        p.clone(),
        LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        },
        Box::new(move || flag.load(Ordering::SeqCst)),
        at(10),
    );
    assert_eq!(s.next().await.unwrap().unwrap(), "four\n");
    write(&p, &[entry(at(4), "stdout", false, "five")]);
    assert_eq!(s.next().await.unwrap().unwrap(), "five\n");
    // A line written just before the container stops is still read.
    write(&p, &[entry(at(5), "stdout", false, "six")]);
    running.store(false, Ordering::SeqCst);
    let rest: Vec<Bytes> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(rest.concat(), b"six\n");
}

#[tokio::test]
async fn a_followed_log_carries_on_into_the_file_after_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let p = sample(&dir);
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let mut s = super::read(
        p.clone(),
        LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        },
        Box::new(move || flag.load(Ordering::SeqCst)),
        at(10),
    );
    assert_eq!(s.next().await.unwrap().unwrap(), "four\n");
    // The runtime's last lines into the file, then it is renamed and reopened.
    write(&p, &[entry(at(4), "stdout", false, "five")]);
    std::fs::rename(&p, dir.path().join("0.log.20231114-221324")).unwrap();
    write(&p, &[entry(at(5), "stdout", false, "six")]);
    assert_eq!(s.next().await.unwrap().unwrap(), "five\n");
    assert_eq!(s.next().await.unwrap().unwrap(), "six\n");
    // And again.
    std::fs::rename(&p, dir.path().join("0.log.20231114-221325")).unwrap();
    write(&p, &[entry(at(6), "stdout", false, "seven")]);
    running.store(false, Ordering::SeqCst);
    let rest: Vec<Bytes> = s.map(|c| c.unwrap()).collect().await;
    assert_eq!(rest.concat(), b"seven\n");
}
