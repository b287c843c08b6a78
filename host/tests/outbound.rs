//! The outbound proxy over real sockets: the enclave side on a Unix socket, the allowed target a TCP server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::eventually;
use host::outbound::{Allowlist, OutboundProxy, OutboundRoute};
use host::{CloseReason, Endpoint, TrafficMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A stand-in for the Sui fullnode: answers with what it got, uppercased.
async fn spawn_upper_server() -> std::net::SocketAddr {
    let remote = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = remote.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = remote.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn forwards_an_allowed_route() {
    let remote = spawn_upper_server().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sui.sock");
    let route: OutboundRoute = format!("unix:{}={remote}", sock.display()).parse().unwrap();
    let allow = Allowlist::new([remote.to_string().parse().unwrap()]);
    let metrics = TrafficMetrics::unregistered();
    let bound = OutboundProxy::new(vec![route], &allow, metrics.clone())
        .unwrap()
        .bind()
        .await
        .unwrap();
    assert_eq!(
        bound.endpoints(),
        vec![(
            Endpoint::Unix(sock.clone()),
            remote.to_string().parse().unwrap()
        )]
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bound.serve(shutdown.clone()));

    for _ in 0..2 {
        let mut enclave = UnixStream::connect(&sock).await.unwrap();
        enclave.write_all(b"sui_getchainidentifier").await.unwrap();
        let mut got = [0u8; 22];
        enclave.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SUI_GETCHAINIDENTIFIER");
    }
    eventually("both closed", || {
        metrics.closed_count(CloseReason::Done) == 2
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
    assert!(
        !sock.exists(),
        "the route's socket file is removed at shutdown"
    );
}

#[tokio::test]
async fn anything_off_the_allowlist_is_refused_and_never_bound() {
    let remote = spawn_upper_server().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sock");
    let evil = dir.path().join("evil.sock");
    let allow = Allowlist::new([remote.to_string().parse().unwrap()]);
    let routes = vec![
        format!("unix:{}={remote}", good.display()).parse().unwrap(),
        format!("unix:{}=127.0.0.1:1", evil.display())
            .parse()
            .unwrap(),
    ];
    match OutboundProxy::new(routes, &allow, TrafficMetrics::unregistered()) {
        Err(host::Error::NotAllowed { target }) => assert_eq!(target, "127.0.0.1:1"),
        other => panic!("{other:?}"),
    }
    assert!(!good.exists() && !evil.exists(), "nothing was bound");
    assert!(UnixStream::connect(&evil).await.is_err());
}

#[tokio::test]
async fn an_unreachable_target_closes_the_enclave_side() {
    // Allowed, but nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kms.sock");
    let allow = Allowlist::new([closed.to_string().parse().unwrap()]);
    let metrics = TrafficMetrics::unregistered();
    let route = format!("unix:{}={closed}", sock.display()).parse().unwrap();
    let bound = OutboundProxy::new(vec![route], &allow, metrics.clone())
        .unwrap()
        .bind()
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bound.serve(shutdown.clone()));
    let mut enclave = UnixStream::connect(&sock).await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(enclave.read(&mut buf).await.unwrap(), 0);
    eventually("counted", || {
        metrics.closed_count(CloseReason::ConnectFailed) == 1
    })
    .await;
    shutdown.cancel();
    task.await.unwrap();
}

/// Sends a CONNECT request and returns the status line.
async fn connect_request(sock: &std::path::Path, authority: &str) -> (UnixStream, String) {
    let mut s = UnixStream::connect(sock).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    (s, head.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn connect_mode_checks_every_request_against_the_allowlist() {
    use host::outbound::ConnectProxy;
    let remote = spawn_upper_server().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("egress.sock");
    let metrics = TrafficMetrics::unregistered();
    let allow = Allowlist::new([remote.to_string().parse().unwrap()]);
    let bound = ConnectProxy::new(Endpoint::Unix(sock.clone()), allow, metrics.clone())
        .bind()
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bound.serve(shutdown.clone()));

    let (mut ok, status) = connect_request(&sock, &remote.to_string()).await;
    assert_eq!(status, "HTTP/1.1 200 Connection Established");
    ok.write_all(b"kms:decrypt").await.unwrap();
    let mut got = [0u8; 11];
    ok.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"KMS:DECRYPT");

    // Same host, other port; other host: refused, and nothing was dialled.
    let other_port = format!("127.0.0.1:{}", remote.port().wrapping_add(1).max(1));
    for authority in [other_port.as_str(), "evil.example:443"] {
        let (mut refused, status) = connect_request(&sock, authority).await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{authority}");
        let mut rest = [0u8; 1];
        assert_eq!(
            refused.read(&mut rest).await.unwrap(),
            0,
            "closed after 403"
        );
    }
    assert_eq!(metrics.closed_count(CloseReason::Forbidden), 2);

    let mut garbage = UnixStream::connect(&sock).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    garbage.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");

    // The allowed connection is unaffected by the refusals.
    ok.write_all(b"again").await.unwrap();
    let mut again = [0u8; 5];
    ok.read_exact(&mut again).await.unwrap();
    assert_eq!(&again, b"AGAIN");
    shutdown.cancel();
    task.await.unwrap();
}
