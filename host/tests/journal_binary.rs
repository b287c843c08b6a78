//! The real `daas-host journal` binary: its flags, its directory lock, and hostile frames that must get errors,
//! never a crash. (The enclave's tests run the store against this same binary.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// `$DAAS_HOST_BIN` or the binary cargo built; checked for the `journal` subcommand, because checkouts that share
/// the target directory replace `target/debug/daas-host` with their own build.
fn bin() -> std::path::PathBuf {
    let bin = std::env::var_os("DAAS_HOST_BIN").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_BIN_EXE_daas-host")),
        std::path::PathBuf::from,
    );
    let help = std::process::Command::new(&bin)
        .args(["journal", "--help"])
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "{} has no `journal` subcommand (replaced by another checkout's build?): rebuild it with \
         `cargo build -p host --bin daas-host`, or point DAAS_HOST_BIN at it",
        bin.display()
    );
    bin
}

async fn start(dir: &Path, sock: &Path, extra: &[&str]) -> Child {
    let mut child = Command::new(bin())
        .arg("journal")
        .arg("--dir")
        .arg(dir)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // A hang guard, not a timing assertion.
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        line,
        format!("journal listening on unix:{}", sock.display())
    );
    child
}

/// Sends one frame in a single write (the service may close right after reading an oversize length).
async fn frame(s: &mut UnixStream, kind: u8, body: &[u8]) {
    let mut f = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(body);
    s.write_all(&f).await.unwrap();
}

async fn response(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f).await.ok()?;
    let kind = f.remove(0);
    Some((kind, f))
}

async fn hello(sock: &Path) -> UnixStream {
    let mut s = UnixStream::connect(sock).await.unwrap();
    // "KDJP", version 2, a 16-byte session id.
    frame(&mut s, 0x01, b"KDJP\x00\x02session-id-16-by").await;
    let (kind, body) = response(&mut s).await.unwrap();
    assert_eq!(kind, 0x80);
    assert_eq!(body.len(), 6, "version and frame limit");
    s
}

#[tokio::test]
async fn hostile_frames_get_errors_and_the_binary_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, sock) = (tmp.path().join("data"), tmp.path().join("j.sock"));
    let mut child = start(&dir, &sock, &["--max-frame-bytes", "128"]).await;

    // The limit given on the command line is the one announced and enforced.
    let mut s = UnixStream::connect(&sock).await.unwrap();
    // "KDJP", version 2, a 16-byte session id.
    frame(&mut s, 0x01, b"KDJP\x00\x02session-id-16-by").await;
    let (_, body) = response(&mut s).await.unwrap();
    assert_eq!(&body[2..], &128u32.to_be_bytes());
    frame(&mut s, 0x02, &[0xAB; 200]).await;
    let (kind, msg) = response(&mut s).await.unwrap();
    assert_eq!(kind, 0xFF);
    let msg = String::from_utf8(msg).unwrap();
    assert!(
        msg.contains("201 bytes exceeds the journal service's limit of 128"),
        "{msg}"
    );

    // Malformed requests: errors, connection still usable.
    let mut s = hello(&sock).await;
    frame(&mut s, 0x77, b"").await;
    assert_eq!(response(&mut s).await.unwrap().0, 0xFF);
    frame(&mut s, 0x07, b"\x01").await;
    assert_eq!(response(&mut s).await.unwrap().0, 0xFF);
    frame(&mut s, 0x02, b"KDJ1\0\0\0\0\0\0\0\x01sealed").await;
    assert_eq!(response(&mut s).await.unwrap(), (0x80, vec![]));

    // Garbage, and a connection dropped mid-frame.
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    drop(s);
    let mut s = hello(&sock).await;
    s.write_all(&[0, 0, 0, 100, 0x02, b'K']).await.unwrap();
    drop(s);

    // Still serving, and only the one complete record was kept.
    let mut s = hello(&sock).await;
    frame(&mut s, 0x03, b"").await;
    assert_eq!(
        response(&mut s).await.unwrap(),
        (0x81, b"KDJ1\0\0\0\0\0\0\0\x01sealed".to_vec())
    );
    assert_eq!(
        response(&mut s).await.unwrap(),
        (0x83, 1u64.to_be_bytes().to_vec())
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service is running"
    );
}

#[tokio::test]
async fn a_second_service_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let _first = start(&dir, &tmp.path().join("a.sock"), &[]).await;
    let out = Command::new(bin())
        .arg("journal")
        .arg("--dir")
        .arg(&dir)
        .arg("--listen")
        .arg(format!("unix:{}", tmp.path().join("b.sock").display()))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another journal service"), "{err}");
}
