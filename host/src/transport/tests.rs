use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_vsock::VMADDR_CID_ANY;

#[test]
fn endpoint_errors_become_the_crates_invalid_endpoint() {
    // The syntax itself is `protocol::Endpoint`'s, tested there.
    let err = "vsock:16".parse::<Endpoint>().unwrap_err();
    match Error::from(err) {
        Error::InvalidEndpoint { input, reason } => {
            assert_eq!(input, "vsock:16");
            assert_eq!(reason, "expected vsock:CID:PORT");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unix_listener_replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let endpoint = Endpoint::Unix(path.clone());
    // A stale socket file: bound once, listener gone without cleanup.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let live = Listener::bind(&endpoint).await.unwrap();

    let (mut client, accepted) =
        tokio::join!(async { connect(&endpoint).await.unwrap() }, live.accept());
    let (mut server, peer) = accepted.unwrap();
    assert_eq!(peer, PeerAddr::Unix);
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // The probe for a live listener is a real connection attempt; it finds this one and refuses.
    assert!(matches!(
        Listener::bind(&endpoint).await,
        Err(Error::SocketPathInUse { .. })
    ));
    drop(live);
    assert!(
        !path.exists(),
        "dropping the listener removes its socket file"
    );

    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        Listener::bind(&Endpoint::Unix(file)).await,
        Err(Error::SocketPathInUse { .. })
    ));
}

#[tokio::test]
async fn tcp_listener_reports_its_port_and_sets_nodelay() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let (client, accepted) = tokio::join!(connect(&endpoint), listener.accept());
    let (server, peer) = accepted.unwrap();
    let Stream::Tcp(server) = server else {
        panic!("tcp")
    };
    assert!(server.nodelay().unwrap());
    let Stream::Tcp(client) = client.unwrap() else {
        panic!("tcp")
    };
    assert_eq!(peer, PeerAddr::Tcp(client.local_addr().unwrap()));
}

/// This kernel has AF_VSOCK but no loopback transport: binding works, connecting does not. Bind is what we can
/// prove here.
#[tokio::test]
async fn vsock_listener_binds_any_cid() {
    let endpoint = Endpoint::Vsock {
        cid: VMADDR_CID_ANY,
        port: 47_113,
    };
    match Listener::bind(&endpoint).await {
        Ok(listener) => {
            let Endpoint::Vsock { port, .. } = listener.local_endpoint().unwrap() else {
                panic!("vsock")
            };
            assert_eq!(port, 47_113);
        }
        // Machines without the vsock module at all cannot create the socket.
        Err(Error::Bind { source, .. }) if source.raw_os_error() == Some(97) => {}
        Err(e) => panic!("{e:?}"),
    }
}
