//! Sessions against each other and against a raw peer that writes frames by hand (as
//! spdystream does: no flow control of its own).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::frame::{FrameDecoder, FrameEncoder, rst};

fn syn(id: u32, kind: &str) -> Frame {
    Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: Headers::from_pairs([("streamtype", kind)]),
    }
}

/// A hand-driven client: writes frames, reads what the server sends.
struct RawPeer {
    io: DuplexStream,
    enc: FrameEncoder,
    dec: FrameDecoder,
    buf: BytesMut,
}

impl RawPeer {
    async fn send(&mut self, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            self.enc.encode(f, &mut out).unwrap();
        }
        self.io.write_all(&out).await.unwrap();
    }

    /// The next frame, or None at EOF.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                .await
                .expect("the server said nothing for 10 s")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }
}

fn server() -> (
    Session,
    Incoming,
    RawPeer,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (session, incoming, driver) = start(a, Role::Server).unwrap();
    let task = tokio::spawn(driver);
    let peer = RawPeer {
        io: b,
        enc: FrameEncoder::new().unwrap(),
        dec: FrameDecoder::new(),
        buf: BytesMut::new(),
    };
    (session, incoming, peer, task)
}

#[tokio::test]
async fn a_stream_is_replied_to_before_anything_is_written_on_it() {
    let (_session, mut incoming, mut peer, _task) = server();
    peer.send(&[syn(1, "error")]).await;
    let stream = incoming.accept().await.unwrap();
    assert_eq!(stream.headers().get("streamtype"), Some("error"));
    let (_r, mut w) = stream.split();
    w.write(Bytes::from_static(b"oops")).await.unwrap();
    w.finish().await.unwrap();
    assert!(matches!(
        peer.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert_eq!(
        peer.next().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"oops")
        })
    );
    assert!(matches!(
        peer.next().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            ..
        })
    ));
}

#[tokio::test]
async fn data_fin_reset_ping_and_bad_ids() {
    let (_session, mut incoming, mut peer, _task) = server();
    peer.send(&[
        syn(1, "stdin"),
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello "),
        },
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::from_static(b"world"),
        },
        syn(3, "stdout"),
        Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        },
        Frame::Ping { id: 1 },
        // Even ids are the server's own; 3 is not after 3.
        syn(4, "x"),
        syn(3, "x"),
    ])
    .await;
    let (mut stdin, _) = incoming.accept().await.unwrap().split();
    assert_eq!(stdin.read_to_end(1024).await.unwrap(), b"hello world");
    let (mut stdout_r, mut stdout_w) = incoming.accept().await.unwrap().split();
    assert!(matches!(
        stdout_r.read().await,
        Err(Error::Reset { status: 5, .. })
    ));
    assert!(stdout_w.write(Bytes::from_static(b"x")).await.is_err());
    let mut saw = Vec::new();
    while saw.len() < 5 {
        saw.push(peer.next().await.unwrap());
    }
    assert!(saw.contains(&Frame::Ping { id: 1 }));
    for id in [4, 3] {
        assert!(saw.contains(&Frame::RstStream {
            stream_id: id,
            status: rst::PROTOCOL_ERROR
        }));
    }
}

#[tokio::test]
async fn sending_is_not_held_to_a_window_the_peer_never_opens() {
    let (_session, mut incoming, mut peer, _task) = server();
    peer.send(&[syn(1, "stdout")]).await;
    let (_r, mut w) = incoming.accept().await.unwrap().split();
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let writing = tokio::spawn(async move {
        w.write(big).await.unwrap();
        w.finish().await.unwrap();
    });
    let mut got = 0;
    loop {
        match peer.next().await.unwrap() {
            Frame::Data { data, fin, .. } => {
                got += data.len();
                if fin {
                    break;
                }
            }
            Frame::SynReply { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    writing.await.unwrap();
    assert_eq!(got, 1 << 20);
}

#[tokio::test]
async fn received_data_is_acknowledged_per_stream_and_session() {
    let (_session, mut incoming, mut peer, _task) = server();
    peer.send(&[
        syn(1, "data"),
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0u8; 40_000]),
        },
    ])
    .await;
    let (mut r, _w) = incoming.accept().await.unwrap().split();
    assert_eq!(r.read().await.unwrap().unwrap().len(), 40_000);
    let mut updates = Vec::new();
    while updates.len() < 2 {
        if let Frame::WindowUpdate { stream_id, delta } = peer.next().await.unwrap() {
            updates.push((stream_id, delta));
        }
    }
    updates.sort_unstable();
    assert_eq!(updates, vec![(0, 40_000), (1, 40_000)]);
}

#[tokio::test]
async fn a_lost_connection_ends_open_streams_with_closed() {
    let (_session, mut incoming, mut peer, task) = server();
    peer.send(&[syn(1, "data")]).await;
    let (mut r, _w) = incoming.accept().await.unwrap().split();
    drop(peer);
    assert!(matches!(r.read().await, Err(Error::Closed)));
    assert!(incoming.accept().await.is_none());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn two_sessions_talk_and_go_away() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, _client_incoming, client_driver) = start(a, Role::Client).unwrap();
    let (server, mut server_incoming, server_driver) = start(b, Role::Server).unwrap();
    let client_task = tokio::spawn(client_driver);
    let server_task = tokio::spawn(server_driver);
    let echo = tokio::spawn(async move {
        while let Some(s) = server_incoming.accept().await {
            let (mut r, mut w) = s.split();
            tokio::spawn(async move {
                while let Ok(Some(b)) = r.read().await {
                    w.write(b).await.unwrap();
                }
                w.finish().await.unwrap();
            });
        }
    });
    for n in 0..5u8 {
        let (mut r, mut w) = client
            .open_stream(Headers::from_pairs([("n", n.to_string().as_str())]), false)
            .await
            .unwrap()
            .split();
        assert_eq!(w.id(), u32::from(n) * 2 + 1);
        let payload = Bytes::from(vec![n; 100_000]);
        w.write(payload.clone()).await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(r.read_to_end(1 << 20).await.unwrap(), payload);
    }
    server.go_away().await.unwrap();
    // The server shut its side; the client sees the end of the connection and stops, then the
    // server's driver sees the client go.
    client_task.await.unwrap().unwrap();
    drop(client);
    server_task.await.unwrap().unwrap();
    echo.await.unwrap();
}
