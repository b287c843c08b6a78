use super::*;
use crate::error::Error;

fn image() -> EifImage {
    EifImage::new(
        b"kernel-bytes".to_vec(),
        b"console=ttyS0".to_vec(),
        br#"{"ImageName":"t"}"#.to_vec(),
        vec![b"rd0".to_vec(), b"ramdisk-1".to_vec()],
    )
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn layout_matches_the_format() {
    let img = image();
    let b = img.to_bytes().unwrap();
    assert_eq!(&b[..4], b".eif");
    assert_eq!(u16::from_be_bytes([b[4], b[5]]), 4);
    assert_eq!(u16::from_be_bytes([b[6], b[7]]), 0);
    assert_eq!(be_u64(&b, 8), 1 << 30);
    assert_eq!(be_u64(&b, 16), 2);
    assert_eq!(u16::from_be_bytes([b[26], b[27]]), 5);
    // kernel, cmdline, metadata, ramdisk, ramdisk
    let expect = [(1u16, 12usize), (2, 13), (5, 17), (3, 3), (3, 9)];
    let mut at = 548usize;
    for (i, (ty, size)) in expect.iter().enumerate() {
        assert_eq!(be_u64(&b, 28 + 8 * i), at as u64, "offset {i}");
        assert_eq!(be_u64(&b, 28 + 256 + 8 * i), *size as u64, "size {i}");
        assert_eq!(u16::from_be_bytes([b[at], b[at + 1]]), *ty);
        assert_eq!(u16::from_be_bytes([b[at + 2], b[at + 3]]), 0);
        assert_eq!(be_u64(&b, at + 4), *size as u64);
        at += 12 + size;
    }
    assert_eq!(b.len(), at);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..544]);
    crc.update(&b[548..]);
    assert_eq!(
        u32::from_be_bytes(b[544..548].try_into().unwrap()),
        crc.finalize()
    );
}

#[test]
fn round_trips_with_and_without_signature() {
    let img = image();
    assert_eq!(EifImage::from_bytes(&img.to_bytes().unwrap()).unwrap(), img);
    let mut signed = image();
    signed.signature = Some(b"sig".to_vec());
    let back = EifImage::from_bytes(&signed.to_bytes().unwrap()).unwrap();
    assert_eq!(back, signed);
    assert_eq!(section_table(&signed.to_bytes().unwrap()).unwrap().len(), 6);
}

#[test]
fn any_flipped_byte_is_detected() {
    let b = image().to_bytes().unwrap();
    for i in (0..b.len()).step_by(7) {
        let mut c = b.clone();
        c[i] ^= 0x01;
        assert!(EifImage::from_bytes(&c).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn crc_mismatch_names_both_values() {
    let mut b = image().to_bytes().unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xFF;
    let err = EifImage::from_bytes(&b).unwrap_err();
    assert!(matches!(err, Error::CrcMismatch { .. }), "{err}");
}

#[test]
fn malformed_files_give_clear_errors() {
    let good = image().to_bytes().unwrap();
    let err = EifImage::from_bytes(&good[..100]).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    let err = EifImage::from_bytes(&good[..good.len() - 1]).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");

    let mut b = good.clone();
    b[0] = b'x';
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::BadMagic { .. }
    ));

    let mut b = good.clone();
    b[5] = 3;
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::UnsupportedVersion { version: 3 }
    ));

    let mut b = good.clone();
    b[27] = 33;
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::SectionCount { count: 33 }
    ));

    let mut b = good.clone();
    b[548 + 1] = 9; // kernel section type
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::UnknownSectionType {
            index: 0,
            section_type: 9
        }
    ));

    let mut b = good.clone();
    b[548 + 11] += 1; // kernel section header size
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::SectionSizeMismatch { index: 0, .. }
    ));

    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::Layout { .. }
    ));

    let mut b = good.clone();
    b[28 + 8 + 7] += 1; // cmdline (second) offset
    assert!(matches!(
        EifImage::from_bytes(&b).unwrap_err(),
        Error::Layout { .. }
    ));
}

#[test]
fn an_image_needs_a_ramdisk() {
    let mut img = image();
    img.ramdisks.clear();
    assert!(matches!(img.to_bytes().unwrap_err(), Error::NoRamdisk));
    let mut img = image();
    img.ramdisks = vec![Vec::new(); 30];
    assert!(matches!(
        img.to_bytes().unwrap_err(),
        Error::SectionCount { count: 33 }
    ));
}

#[test]
fn pcrs_follow_the_extend_formula() {
    use ring::digest::{SHA384, digest};
    let img = image();
    let m = img.measurements(None);
    let extend = |data: &[u8]| {
        let mut buf = vec![0u8; 48];
        buf.extend_from_slice(digest(&SHA384, data).as_ref());
        hex::encode(digest(&SHA384, &buf))
    };
    assert_eq!(
        m.pcr0.to_hex(),
        extend(b"kernel-bytesconsole=ttyS0rd0ramdisk-1")
    );
    assert_eq!(m.pcr1.to_hex(), extend(b"kernel-bytesconsole=ttyS0rd0"));
    assert_eq!(m.pcr2.to_hex(), extend(b"ramdisk-1"));
    assert_eq!(m.pcr8, None);
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["HashAlgorithm"], "SHA384");
    assert!(json.get("PCR8").is_none());
}
