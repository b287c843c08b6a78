//! The real `daas-host` binary: flags, the metrics endpoint, and SIGTERM drain.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{closed_by_peer, spawn_echo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_daas-host");

/// Starts `daas-host args` and returns it with the addresses it printed for `wanted` services.
async fn start(args: &[&str], wanted: &[&str]) -> (Child, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut found = Vec::new();
    for service in wanted {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let prefix = format!("{service} listening on ");
        let rest = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        found.push(rest.trim_start_matches("tcp:").to_owned());
    }
    (child, found)
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn metric(body: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("unexpected type for {name}"),
        })
        .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
}

#[tokio::test]
async fn sigterm_drains_the_real_binary_and_metrics_count_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enclave.sock");
    let (_backend, _) = spawn_echo(&path);
    let enclave = format!("unix:{}", path.display());
    let args = [
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--enclave",
        &enclave,
        "--handshake",
        "first-byte",
        "--metrics",
        "127.0.0.1:0",
        "--drain-timeout",
        "60",
    ];
    let (mut child, addrs) = start(&args, &["metrics", "relay"]).await;
    let (metrics_addr, relay_addr) = (addrs[0].clone(), addrs[1].clone());

    let mut busy = TcpStream::connect(&relay_addr).await.unwrap();
    busy.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    busy.read_exact(&mut buf).await.unwrap();

    // The relay counts a chunk just after writing it, so the echo can reach us a moment before the
    // outbound counter moves: scrape until it has (bounded), then check every figure.
    let mut body = String::new();
    for _ in 0..200 {
        let response = http_get(&metrics_addr, "/metrics").await;
        let (head, rest) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body = rest.to_owned();
        if metric(&body, "relay_bytes_total", Some(("direction", "outbound"))) >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = body.as_str();
    assert_eq!(metric(body, "relay_connections_accepted_total", None), 1.0);
    assert_eq!(metric(body, "relay_connections_active", None), 1.0);
    assert_eq!(
        metric(body, "relay_bytes_total", Some(("direction", "inbound"))),
        5.0
    );
    assert_eq!(
        metric(body, "relay_bytes_total", Some(("direction", "outbound"))),
        5.0
    );
    assert_eq!(
        metric(body, "relay_errors_total", Some(("kind", "connect"))),
        0.0
    );

    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    // New connections are refused once the listener is closed...
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(&relay_addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "listener still open after SIGTERM");
    // ...while the open one keeps relaying both ways, and the process waits for it.
    for _ in 0..3 {
        busy.write_all(b"again").await.unwrap();
        busy.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before its connection finished"
    );
    busy.shutdown().await.unwrap();
    assert!(closed_by_peer(&mut busy).await);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bad_flags_fail_with_a_clear_message() {
    for (args, needle) in [
        (
            vec!["relay", "--enclave", "vsock:16"],
            "expected vsock:CID:PORT",
        ),
        (
            vec!["relay", "--enclave", "unix:/x", "--handshake-timeout", "0"],
            "out of range",
        ),
        (
            vec!["relay", "--enclave", "unix:/x", "--max-connections", "0"],
            "max_connections must be at least 1",
        ),
        (
            vec![
                "outbound",
                "--route",
                "unix:/tmp/never.sock=evil.example:443",
                "--allow",
                "kms.example:443",
            ],
            "outbound target evil.example:443 is not on the allowlist",
        ),
        (
            vec![
                "launch", "--eif", "x.eif", "--cpus", "2", "--memory", "512", "--cid", "2",
            ],
            "cid must be between 4",
        ),
        (
            vec!["launch-dev", "--program", "/nonexistent/daas-enclave"],
            "cannot run /nonexistent/daas-enclave",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
