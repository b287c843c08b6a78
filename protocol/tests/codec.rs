//! Property tests of every codec in the crate: what is encoded decodes to the same value, and
//! no input, however hostile, makes a decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use protocol::frame::{self, Frame, FrameError};
use protocol::{Endpoint, journal, keybroker};

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| Endpoint::Tcp(SocketAddr::from((Ipv4Addr::from(ip), port)))),
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| Endpoint::Tcp(SocketAddr::from((Ipv6Addr::from(ip), port)))),
        any::<String>()
            .prop_filter("a path", |p| !p.is_empty())
            .prop_map(|p| Endpoint::Unix(p.into())),
        (any::<u32>(), any::<u32>()).prop_map(|(cid, port)| Endpoint::Vsock { cid, port }),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(kind: u8, body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let bytes = frame::encode(kind, &body).unwrap();
        let want = Frame { kind, body: body.clone() };
        prop_assert_eq!(frame::decode(&bytes, u32::MAX).unwrap(), Some((want.clone(), bytes.len())));
        prop_assert_eq!(frame::read_frame(&mut bytes.as_slice(), u32::MAX).unwrap(), want.clone());
        let mut written = Vec::new();
        frame::write_frame(&mut written, kind, &body).unwrap();
        prop_assert_eq!(&written, &bytes);
        // Any prefix is incomplete, never an error or a different frame.
        for cut in 0..bytes.len().min(64) {
            prop_assert!(matches!(frame::decode(&bytes[..cut], u32::MAX), Ok(None)));
        }
    }

    #[test]
    fn back_to_back_frames_decode_in_order(
        frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..16),
    ) {
        let mut stream = Vec::new();
        for (kind, body) in &frames {
            stream.extend_from_slice(&frame::encode(*kind, body).unwrap());
        }
        let mut reader = stream.as_slice();
        for (kind, body) in &frames {
            let got = frame::read_frame(&mut reader, 65).unwrap();
            prop_assert_eq!(got.kind, *kind);
            prop_assert_eq!(&got.body, body);
        }
        prop_assert!(matches!(frame::read_frame(&mut reader, 65), Err(FrameError::Closed)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_frame_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        // Bounded: a reader allocates the body a valid prefix declares before it reads it.
        limit in 0u32..4096,
    ) {
        let decoded = frame::decode(&bytes, limit);
        let read = frame::read_frame(&mut bytes.as_slice(), limit);
        // The two decoders agree on every complete frame.
        if let Ok(Some((f, _))) = decoded {
            prop_assert_eq!(read.unwrap(), f);
        }
    }

    #[test]
    fn journal_bodies_round_trip(session: [u8; 16], limit: u32, total: u64, covers: u64) {
        prop_assert_eq!(journal::parse_hello(&journal::hello(&session)), Ok(session));
        prop_assert_eq!(journal::parse_hello_ok(&journal::hello_ok(limit)), Some((journal::VERSION, limit)));
        prop_assert_eq!(
            journal::parse_snapshot_commit(&journal::snapshot_commit(total, covers)),
            Some((total, covers))
        );
        prop_assert_eq!(journal::body_u64(&total.to_be_bytes()), Some(total));
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_body_decoder(body in proptest::collection::vec(any::<u8>(), 0..64), kind: u8) {
        let _ = journal::parse_hello(&body);
        let _ = journal::parse_hello_ok(&body);
        let _ = journal::parse_snapshot_commit(&body);
        let _ = journal::body_u64(&body);
        let _ = journal::record_seq(&body);
        let _ = keybroker::parse_request(kind, &body);
    }

    #[test]
    fn key_broker_requests_round_trip(document in proptest::collection::vec(any::<u8>(), 1..4096)) {
        let bytes = keybroker::request_frame(&document).unwrap();
        let (f, used) = frame::decode(&bytes, keybroker::MAX_FRAME_BYTES).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(keybroker::parse_request(f.kind, &f.body).unwrap(), document.as_slice());
    }

    #[test]
    fn endpoints_round_trip_through_display(e in endpoint()) {
        prop_assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
    }

    #[test]
    fn arbitrary_strings_never_panic_the_endpoint_parser(s: String) {
        if let Ok(e) = s.parse::<Endpoint>() {
            prop_assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
        }
    }
}
