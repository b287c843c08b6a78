//! Frames against byte layouts written out from the specification, and header blocks a
//! different zlib (Python's, `testdata/gen.py`) compressed.

use super::*;

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>> {
    let mut d = FrameDecoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    assert!(buf.is_empty(), "bytes left over: {buf:?}");
    Ok(out)
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    FrameEncoder::new()
        .unwrap()
        .encode(frame, &mut out)
        .unwrap();
    out
}

/// (bytes as §2.6 lays them out, the frame they are).
fn fixed_layout_frames() -> Vec<(Vec<u8>, Frame)> {
    vec![
        (
            // PING id 7.
            vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7],
            Frame::Ping { id: 7 },
        ),
        (
            // RST_STREAM stream 5, CANCEL.
            vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 5],
            Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
        ),
        (
            // GOAWAY last good 3, OK.
            vec![0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 0],
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ),
        (
            // WINDOW_UPDATE for the session (3.1), +65536.
            vec![0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0],
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 65536,
            },
        ),
        (
            // SETTINGS with CLEAR_SETTINGS: INITIAL_WINDOW_SIZE (7) = 65536, PERSIST_VALUE.
            vec![
                0x80, 3, 0, 4, 1, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 7, 0, 1, 0, 0,
            ],
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
        ),
        (
            // DATA on stream 1, FIN, "abc".
            vec![0, 0, 0, 1, 1, 0, 0, 3, b'a', b'b', b'c'],
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"abc"),
            },
        ),
    ]
}

#[test]
fn fixed_layout_frames_decode_and_encode_byte_for_byte() {
    for (bytes, frame) in fixed_layout_frames() {
        assert_eq!(decode_all(&bytes).unwrap(), vec![frame.clone()]);
        assert_eq!(encode(&frame), bytes, "{frame:?}");
    }
}

#[test]
fn partial_frames_wait_and_unknown_control_frames_are_skipped() {
    let ping = fixed_layout_frames().remove(0).0;
    let mut d = FrameDecoder::new();
    for cut in 0..ping.len() {
        let mut buf = BytesMut::from(&ping[..cut]);
        assert!(d.decode(&mut buf).unwrap().is_none());
    }
    // Type 0x000a (CREDENTIAL, dropped from SPDY/3.1) with 3 payload bytes, then the PING.
    let mut bytes = vec![0x80, 3, 0, 0x0a, 0, 0, 0, 3, 1, 2, 3];
    bytes.extend(&ping);
    assert_eq!(decode_all(&bytes).unwrap(), vec![Frame::Ping { id: 7 }]);
}

#[test]
fn malformed_frames_are_errors() {
    let cases: Vec<Vec<u8>> = vec![
        // SPDY/2 control frame.
        vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7],
        // PING of 3 bytes.
        vec![0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 7],
        // RST_STREAM on stream 0.
        vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5],
        // DATA on stream 0.
        vec![0, 0, 0, 0, 0, 0, 0, 1, b'x'],
        // SETTINGS claiming two entries with room for one.
        vec![
            0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 7, 0, 1, 0, 0,
        ],
        // SYN_STREAM whose header block is not zlib.
        vec![
            0x80, 3, 0, 1, 0, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3,
        ],
    ];
    for bytes in cases {
        assert!(decode_all(&bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn header_blocks_python_s_zlib_compressed_decode() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/python-zlib-syn-streams.bin"
    ))
    .unwrap();
    let frames = decode_all(&bytes).unwrap();
    let want = |id: u32, kind: &str| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        headers: Headers::from_pairs([("streamtype", kind), ("port", "8080"), ("requestid", "0")]),
    };
    assert_eq!(frames, vec![want(1, "error"), want(3, "data")]);
}

#[test]
fn frames_with_headers_round_trip_in_one_context() {
    let mut enc = FrameEncoder::new().unwrap();
    let mut out = Vec::new();
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 7,
            slot: 0,
            fin: false,
            unidirectional: true,
            headers: Headers::from_pairs([("streamType", "stdout")]),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new(),
        },
        Frame::Headers {
            stream_id: 1,
            fin: true,
            headers: Headers::from_pairs([("a", "1"), ("a", "2")]),
        },
    ];
    for f in &frames {
        enc.encode(f, &mut out).unwrap();
    }
    let mut want = frames;
    if let Frame::SynStream { headers, .. } = &mut want[0] {
        *headers = Headers::from_pairs([("streamtype", "stdout")]);
    }
    assert_eq!(decode_all(&out).unwrap(), want);
}
