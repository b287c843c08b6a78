//! Property tests of the frame codec (what is encoded decodes to the same frames, in one
//! compression context per direction, however the bytes are cut; arbitrary bytes never make
//! the decoder panic) and a cross-check of header compression with Python's zlib, an
//! implementation the crate shares no code with.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spdy::frame::Setting;
use spdy::{Frame, FrameDecoder, FrameEncoder, Headers};

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", "[ -~]{0,40}"), 0..6).prop_map(|pairs| {
        let mut h = Headers::new();
        for (n, v) in &pairs {
            // Header values cannot hold NUL (it separates values).
            h.add(n, v);
        }
        h
    })
}

fn id() -> impl Strategy<Value = u32> {
    1..=0x7fff_ffffu32
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            id(),
            0..=0x7fff_ffffu32,
            0..8u8,
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            headers()
        )
            .prop_map(
                |(stream_id, associated_to, priority, slot, fin, unidirectional, headers)| {
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        slot,
                        fin,
                        unidirectional,
                        headers,
                    }
                }
            ),
        (id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| Frame::SynReply {
            stream_id,
            fin,
            headers
        }),
        (id(), any::<bool>(), headers()).prop_map(|(stream_id, fin, headers)| Frame::Headers {
            stream_id,
            fin,
            headers
        }),
        (id(), any::<u32>()).prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
        (
            any::<bool>(),
            proptest::collection::vec((any::<u8>(), 0..=0xff_ffffu32, any::<u32>()), 0..4)
        )
            .prop_map(|(clear, e)| Frame::Settings {
                clear,
                entries: e
                    .into_iter()
                    .map(|(flags, id, value)| Setting { flags, id, value })
                    .collect(),
            }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0..=0x7fff_ffffu32, any::<u32>()).prop_map(|(last_good_stream_id, status)| {
            Frame::GoAway {
                last_good_stream_id,
                status,
            }
        }),
        (0..=0x7fff_ffffu32, 0..=0x7fff_ffffu32)
            .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
        (
            id(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(stream_id, fin, data)| Frame::Data {
                stream_id,
                fin,
                data: Bytes::from(data)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frames_round_trip_however_the_bytes_are_cut(frames in proptest::collection::vec(frame(), 1..12), piece in 1usize..300) {
        let mut enc = FrameEncoder::new().unwrap();
        let mut bytes = Vec::new();
        for f in &frames {
            enc.encode(f, &mut bytes).unwrap();
        }
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(piece) {
            buf.extend_from_slice(chunk);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::from(bytes.as_slice());
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }

    #[test]
    fn valid_prefixes_then_garbage_never_panic(frames in proptest::collection::vec(frame(), 1..4), tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut enc = FrameEncoder::new().unwrap();
        let mut bytes = Vec::new();
        for f in &frames {
            enc.encode(f, &mut bytes).unwrap();
        }
        bytes.extend(tail);
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::from(bytes.as_slice());
        while let Ok(Some(_)) = dec.decode(&mut buf) {}
    }
}

/// Python decompresses our header blocks (one context, sync flush per block) with its own
/// zlib and the dictionary written out in `testdata/gen.py`, and prints each block's headers.
#[test]
fn python_s_zlib_reads_our_header_blocks() {
    let mut enc = FrameEncoder::new().unwrap();
    let mut blocks = Vec::new();
    for n in 0..3 {
        let mut bytes = Vec::new();
        let h = Headers::from_pairs([
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", &*n.to_string()),
        ]);
        enc.encode(
            &Frame::SynStream {
                stream_id: 1 + 2 * n,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers: h,
            },
            &mut bytes,
        )
        .unwrap();
        // The header block starts after the 8-byte frame header and 10 fixed bytes.
        blocks.push(hex(&bytes[18..]));
    }
    let script = format!(
        "import sys, zlib, struct\nsys.path.insert(0, {dir:?})\nimport gen\nz = zlib.decompressobj(zdict=gen.DICTIONARY)\nfor h in {blocks:?}:\n    b = z.decompress(bytes.fromhex(h))\n    n, = struct.unpack('>I', b[:4]); i = 4; out = []\n    for _ in range(n):\n        l, = struct.unpack('>I', b[i:i+4]); k = b[i+4:i+4+l].decode(); i += 4 + l\n        l, = struct.unpack('>I', b[i:i+4]); v = b[i+4:i+4+l].decode(); i += 4 + l\n        out.append(k + '=' + v)\n    assert i == len(b)\n    print(','.join(out))\n",
        dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata"),
    );
    let mut child = Command::new("python3")
        .arg("-")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (installed by scripts/setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "streamtype=data,port=8080,requestid=0\nstreamtype=data,port=8080,requestid=1\nstreamtype=data,port=8080,requestid=2\n"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
