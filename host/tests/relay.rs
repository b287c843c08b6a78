//! The relay over real sockets: TCP clients in, a Unix-socket backend standing in for the enclave.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::*;
use host::{CloseReason, HandshakeRule, ProxyProtocol, RelayConfig};
use ring::digest::{Context, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SystemRandom::new().fill(&mut v).unwrap();
    v
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&SHA256, bytes).as_ref().to_vec()
}

/// Reads to EOF, hashing as it goes.
async fn hash_to_eof(mut r: impl tokio::io::AsyncRead + Unpin) -> (Vec<u8>, usize) {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (ctx.finish().as_ref().to_vec(), total);
        }
        total += n;
        ctx.update(&buf[..n]);
    }
}

#[tokio::test]
async fn relays_large_random_payloads_exactly_both_ways() {
    relay_large_random_payloads(Duration::ZERO).await;
}

#[tokio::test]
async fn relays_large_random_payloads_exactly_both_ways_while_busy_polling() {
    relay_large_random_payloads(Duration::from_micros(200)).await;
}

async fn relay_large_random_payloads(busy_poll: Duration) {
    const LEN: usize = 8 * 1024 * 1024 + 13;
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let down = random(LEN);
    let down_digest = sha256(&down);
    // The backend sends its own payload while hashing what it receives.
    let backend = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let writer = async move {
            w.write_all(&down).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let ((digest, n), ()) = tokio::join!(hash_to_eof(r), writer);
        (digest, n)
    });
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .busy_poll(busy_poll)
            .build()
            .unwrap(),
    )
    .await;

    let up = random(LEN);
    let up_digest = sha256(&up);
    let client = TcpStream::connect(relay.addr).await.unwrap();
    let (r, mut w) = client.into_split();
    let writer = async move {
        w.write_all(&up).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let ((got_down, n_down), ()) = tokio::join!(hash_to_eof(r), writer);
    let (got_up, n_up) = backend.await.unwrap();
    assert_eq!((n_up, n_down), (LEN, LEN));
    assert_eq!(got_up, up_digest, "client -> enclave bytes differ");
    assert_eq!(got_down, down_digest, "enclave -> client bytes differ");
    eventually("connection closed as done", || {
        relay.metrics.closed_count(CloseReason::Done) == 1
    })
    .await;
    let text = host::metrics::render(&relay.registry).unwrap();
    assert!(
        text.contains(&format!("relay_bytes_total{{direction=\"inbound\"}} {LEN}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "relay_bytes_total{{direction=\"outbound\"}} {LEN}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_real_tls_handshake_passes_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let tls = tls_pair();
    let (_backend, accepted) = spawn_tls_echo(&path, tls.acceptor.clone());
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .build()
            .unwrap(),
    )
    .await;
    let msg = random(100_000);
    let got = tls_round_trip(relay.addr, &tls.connector, &msg)
        .await
        .unwrap();
    assert_eq!(got, msg);
    assert_eq!(accepted.get(), 1);
}

#[tokio::test]
async fn a_peer_vanishing_mid_stream_does_not_disturb_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // Backend: echoes, except that a connection whose first byte is b'!' is dropped by the backend mid-stream.
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if buf[0] == b'!' {
                        return; // vanish
                    }
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .build()
            .unwrap(),
    )
    .await;
    let mut steady = TcpStream::connect(relay.addr).await.unwrap();
    let mut echo = [0u8; 5];
    steady.write_all(b"hello").await.unwrap();
    steady.read_exact(&mut echo).await.unwrap();

    // The client vanishes mid-stream: a reset while the backend is still sending.
    let client_gone = TcpStream::connect(relay.addr).await.unwrap();
    let mut c = client_gone;
    c.write_all(&[b'a'; 2000]).await.unwrap();
    c.set_zero_linger().unwrap();
    drop(c);
    // The enclave side vanishes mid-stream.
    let mut enclave_gone = TcpStream::connect(relay.addr).await.unwrap();
    enclave_gone.write_all(b"!boom").await.unwrap();
    assert!(
        closed_by_peer(&mut enclave_gone).await,
        "relay passes the enclave's close on"
    );
    // TCP half-close: the client -> enclave direction stays open until the client closes too.
    drop(enclave_gone);

    eventually("both broken connections closed", || {
        relay.metrics.active() == 1
    })
    .await;
    for round in 0..3u8 {
        let msg = [round; 32];
        steady.write_all(&msg).await.unwrap();
        let mut got = [0u8; 32];
        steady.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn a_thousand_idle_connections_do_not_stop_a_normal_request() {
    const IDLE: usize = 1000;
    // Each idle connection costs two descriptors in this process (client and relay side).
    let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let want = (IDLE as u64 * 2 + 512).min(hard);
    if soft < want {
        rlimit::Resource::NOFILE.set(want, hard).unwrap();
    }
    assert!(
        want >= IDLE as u64 * 2 + 256,
        "hard RLIMIT_NOFILE {hard} too low for this test"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let tls = tls_pair();
    let (_backend, accepted) = spawn_tls_echo(&path, tls.acceptor.clone());
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_timeout(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    eventually("all idle connections accepted", || {
        relay.metrics.active() == IDLE as i64
    })
    .await;
    let got = tls_round_trip(relay.addr, &tls.connector, b"GET /version")
        .await
        .unwrap();
    assert_eq!(got, b"GET /version");
    assert_eq!(
        accepted.get(),
        1,
        "silent connections never reach the enclave"
    );
    eventually("the request's connection closed", || {
        relay.metrics.closed_count(CloseReason::Done) == 1
    })
    .await;
    assert_eq!(
        relay.metrics.active(),
        IDLE as i64,
        "the idle connections are still open"
    );
}

#[tokio::test]
async fn handshake_deadline_cuts_silent_and_trickling_clients_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let tls = tls_pair();
    let (_backend, _) = spawn_tls_echo(&path, tls.acceptor.clone());
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_timeout(Duration::from_millis(800))
            .build()
            .unwrap(),
    )
    .await;
    // A TLS client that completes its handshake first, and keeps working after the deadline.
    let tcp = TcpStream::connect(relay.addr).await.unwrap();
    let mut good = tls
        .connector
        .connect(
            rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    good.write_all(b"first").await.unwrap();
    let mut buf = [0u8; 5];
    good.read_exact(&mut buf).await.unwrap();

    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    // A ClientHello record header promising 512 bytes, then a trickle that never completes it.
    let mut trickle = TcpStream::connect(relay.addr).await.unwrap();
    trickle.write_all(&[22, 3, 1, 2, 0]).await.unwrap();
    let trickler = tokio::spawn(async move {
        for _ in 0..400 {
            if trickle.write_all(&[1]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    assert!(closed_by_peer(&mut silent).await, "a silent client is cut");
    assert!(
        trickler.await.unwrap(),
        "a trickling client is cut although it keeps sending"
    );
    assert_eq!(relay.metrics.closed_count(CloseReason::HandshakeTimeout), 2);

    good.write_all(b"after").await.unwrap();
    good.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"after");
    let fresh = tls_round_trip(relay.addr, &tls.connector, b"new")
        .await
        .unwrap();
    assert_eq!(fresh, b"new");
}

#[tokio::test]
async fn bytes_that_are_not_tls_are_refused_without_dialling_the_enclave() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let (_backend, accepted) = spawn_echo(&path);
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .build()
            .unwrap(),
    )
    .await;
    let mut plain = TcpStream::connect(relay.addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut plain).await);
    eventually("counted", || {
        relay.metrics.closed_count(CloseReason::NotTls) == 1
    })
    .await;
    assert_eq!(accepted.get(), 0);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let (_backend, _) = spawn_echo(&path);
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .idle_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .await;
    let mut c = TcpStream::connect(relay.addr).await.unwrap();
    c.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    c.read_exact(&mut one).await.unwrap();
    assert!(closed_by_peer(&mut c).await);
    assert_eq!(relay.metrics.closed_count(CloseReason::IdleTimeout), 1);
}

#[tokio::test]
async fn the_connection_limit_is_enforced_and_frees_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let (_backend, _) = spawn_echo(&path);
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .max_connections(3)
            .build()
            .unwrap(),
    )
    .await;
    let mut open = Vec::new();
    for i in 0..3u8 {
        let mut c = TcpStream::connect(relay.addr).await.unwrap();
        c.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        open.push(c);
    }
    let mut over = TcpStream::connect(relay.addr).await.unwrap();
    assert!(
        closed_by_peer(&mut over).await,
        "the fourth connection is closed"
    );
    assert_eq!(relay.metrics.rejected_count(), 1);
    drop(open.pop());
    eventually("a slot frees up", || relay.metrics.active() == 2).await;
    let mut again = TcpStream::connect(relay.addr).await.unwrap();
    again.write_all(b"y").await.unwrap();
    let mut b = [0u8; 1];
    again.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"y");
}

#[tokio::test]
async fn proxy_protocol_v2_tells_the_enclave_who_connected() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .proxy_protocol(ProxyProtocol::V2)
            .build()
            .unwrap(),
    )
    .await;
    let mut client = TcpStream::connect(relay.addr).await.unwrap();
    client.write_all(b"payload").await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 16 + 12 + 7 {
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let header = ppp::v2::Header::try_from(got.as_slice()).unwrap();
    let want = ppp::v2::Addresses::from((client.local_addr().unwrap(), relay.addr));
    assert_eq!(header.addresses, want);
    assert_eq!(&got[header.len()..], b"payload");
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_lets_open_connections_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let (_backend, _) = spawn_echo(&path);
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .build()
            .unwrap(),
    )
    .await;
    let mut busy = TcpStream::connect(relay.addr).await.unwrap();
    busy.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    busy.read_exact(&mut b).await.unwrap();
    let mut silent = TcpStream::connect(relay.addr).await.unwrap();
    eventually("both accepted", || relay.metrics.active() == 2).await;

    relay.shutdown.cancel();
    assert!(
        closed_by_peer(&mut silent).await,
        "a connection that never spoke is closed at once"
    );
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(relay.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener is closed");
    for _ in 0..3 {
        busy.write_all(b"z").await.unwrap();
        busy.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"z");
    }
    drop(busy);
    let report = relay.task.await.unwrap();
    assert_eq!(
        report,
        host::DrainReport {
            open_at_shutdown: 2,
            cut: 0
        }
    );
}

#[tokio::test]
async fn connections_outliving_the_drain_timeout_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let (_backend, _) = spawn_echo(&path);
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .drain_timeout(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .await;
    let mut busy = TcpStream::connect(relay.addr).await.unwrap();
    busy.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    busy.read_exact(&mut b).await.unwrap();
    relay.shutdown.cancel();
    let report = relay.task.await.unwrap();
    assert_eq!(
        report,
        host::DrainReport {
            open_at_shutdown: 1,
            cut: 1
        }
    );
    assert!(closed_by_peer(&mut busy).await);
    assert_eq!(relay.metrics.active(), 0);
}

#[tokio::test]
async fn an_unreachable_enclave_is_counted_and_the_client_closed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(socket_path(&dir, "nobody.sock")))
            .handshake_rule(HandshakeRule::FirstByte)
            .build()
            .unwrap(),
    )
    .await;
    let mut c = TcpStream::connect(relay.addr).await.unwrap();
    c.write_all(b"x").await.unwrap();
    assert!(closed_by_peer(&mut c).await);
    eventually("counted", || {
        relay.metrics.closed_count(CloseReason::ConnectFailed) == 1
    })
    .await;
}

#[test]
fn invalid_configurations_are_refused() {
    let up = || RelayConfig::builder("unix:/x".parse().unwrap());
    for (builder, field) in [
        (up().max_connections(0), "max_connections"),
        (up().handshake_timeout(Duration::ZERO), "handshake_timeout"),
        (up().idle_timeout(Duration::ZERO), "idle_timeout"),
        (up().buffer_size(10), "buffer_size"),
        (up().buffer_size(2 << 20), "buffer_size"),
        (up().busy_poll(Duration::from_millis(2)), "busy_poll"),
    ] {
        match builder.build() {
            Err(host::Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_backend_that_stops_reading_stalls_the_client_instead_of_growing_a_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir, "enclave.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let relay = start_relay(
        RelayConfig::builder(host::Endpoint::Unix(path))
            .handshake_rule(HandshakeRule::FirstByte)
            .build()
            .unwrap(),
    )
    .await;
    let mut client = TcpStream::connect(relay.addr).await.unwrap();
    client.write_all(b"x").await.unwrap();
    // The backend accepts but does not read yet.
    let (backend, _) = listener.accept().await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 1usize;
    // Write until a write makes no progress for a second: the relay has stopped reading from us.
    while let Ok(res) = tokio::time::timeout(Duration::from_secs(1), client.write(&chunk)).await {
        written += res.unwrap();
        assert!(
            written < 256 << 20,
            "256 MiB accepted without the backend reading: no backpressure"
        );
    }
    // What is in flight is kernel socket buffers plus one relay buffer, not a growing queue.
    assert!(written < 64 << 20, "{written} bytes in flight");
    // Once the backend reads again, every byte arrives.
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut backend = backend;
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0usize;
        while got < written {
            let n = backend.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got += n;
        }
        let _ = tx.send(got);
    });
    assert_eq!(rx.await.unwrap(), written);
}
