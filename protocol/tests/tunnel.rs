//! Property tests of the tunnel's codecs: request targets, channel frames, the session's end
//! and the usage sample round-trip, and no input makes a decoder panic.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use proptest::prelude::*;
use protocol::tunnel::channel::{self, Decoder, StreamEnd, TerminalSize};
use protocol::tunnel::stats::{ContainerStats, NodeStats, PodStats, Usage};
use protocol::tunnel::{LogOptions, PodRef, StdStreams, TunnelRequest};

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, never empty (path segments cannot be).
    any::<String>().prop_filter("not empty", |s| !s.is_empty())
}

fn pod() -> impl Strategy<Value = PodRef> {
    (text(), text(), any::<String>()).prop_map(|(namespace, name, uid)| PodRef {
        namespace,
        name,
        uid,
    })
}

fn streams() -> impl Strategy<Value = StdStreams> {
    any::<(bool, bool, bool, bool)>().prop_map(|(stdin, stdout, stderr, tty)| StdStreams {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

fn request() -> impl Strategy<Value = TunnelRequest> {
    let options = (
        any::<(bool, bool, bool)>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<i64>>(),
    )
        .prop_map(
            |((follow, previous, timestamps), tail, limit, secs, since)| LogOptions {
                follow,
                previous,
                timestamps,
                tail_lines: tail,
                limit_bytes: limit,
                since_seconds: secs,
                since_unix_seconds: since,
            },
        );
    prop_oneof![
        (pod(), text(), options).prop_map(|(pod, container, options)| TunnelRequest::Logs {
            pod,
            container,
            options
        }),
        (
            pod(),
            text(),
            proptest::collection::vec(any::<String>(), 1..5),
            streams()
        )
            .prop_map(|(pod, container, command, streams)| TunnelRequest::Exec {
                pod,
                container,
                command,
                streams
            }),
        (pod(), text(), streams()).prop_map(|(pod, container, streams)| TunnelRequest::Attach {
            pod,
            container,
            streams
        }),
        (pod(), 1..=u16::MAX).prop_map(|(pod, port)| TunnelRequest::PortForward { pod, port }),
        Just(TunnelRequest::Stats),
    ]
}

fn usage() -> impl Strategy<Value = Usage> {
    any::<(u64, u64)>().prop_map(|(cpu_nanocores, memory_bytes)| Usage {
        cpu_nanocores,
        memory_bytes,
    })
}

fn node_stats() -> impl Strategy<Value = NodeStats> {
    let container =
        (any::<String>(), usage()).prop_map(|(name, usage)| ContainerStats { name, usage });
    let pod = (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        proptest::collection::vec(container, 0..3),
    )
        .prop_map(|(namespace, name, uid, containers)| PodStats {
            namespace,
            name,
            uid,
            containers,
        });
    (
        any::<i64>(),
        any::<u64>(),
        usage(),
        proptest::collection::vec(pod, 0..3),
    )
        .prop_map(|(timestamp_unix_ms, window_ms, node, pods)| NodeStats {
            timestamp_unix_ms,
            window_ms,
            node,
            pods,
        })
}

proptest! {
    #[test]
    fn requests_round_trip(r in request()) {
        prop_assert_eq!(TunnelRequest::parse(r.method(), &r.target()), Ok(r.clone()));
    }

    #[test]
    fn any_target_parses_or_fails_cleanly(method in "GET|POST|PUT", target in any::<String>()) {
        let _ = TunnelRequest::parse(&method, &target);
    }

    #[test]
    fn channel_frames_round_trip_in_any_pieces(
        frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
        piece in 1usize..64,
    ) {
        let mut bytes = Vec::new();
        for (c, p) in &frames {
            bytes.extend(channel::encode(*c, p).unwrap());
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(piece) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push((f.channel, f.payload));
            }
        }
        prop_assert!(!d.has_partial());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut d = Decoder::new();
        d.push(&bytes);
        while let Ok(Some(_)) = d.next_frame() {}
        let _ = StreamEnd::decode(&bytes);
        let _ = TerminalSize::decode(&bytes);
        let _ = NodeStats::decode(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn ends_and_sizes_round_trip(code: i32, message in any::<String>(), width: u16, height: u16) {
        for end in [StreamEnd::Exited(code), StreamEnd::Failed(message.clone())] {
            prop_assert_eq!(StreamEnd::decode(&end.encode()), Some(end));
        }
        let size = TerminalSize { width, height };
        prop_assert_eq!(TerminalSize::decode(&size.encode()), Some(size));
    }

    #[test]
    fn stats_round_trip(s in node_stats()) {
        prop_assert_eq!(NodeStats::decode(&s.encode()), Ok(s));
    }
}
