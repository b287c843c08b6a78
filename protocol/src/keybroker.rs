//! The key broker protocol: the enclave (`enclave::boot`) asks the host's key broker
//! (`daas-host keybroker`, `host::keybroker`) to have AWS KMS release the cluster's root
//! secret to the attested key in its attestation document.
//!
//! One request per connection, each message one [`frame`] of at most
//! [`MAX_FRAME_BYTES`]:
//!
//! | request | body | response |
//! |---|---|---|
//! | `0x01 ROOT_SECRET` | `"KDKB" \| u16 version \| attestation document` ([`request_frame`]) | `0x80 OK CiphertextForRecipient` or `0xFF ERROR utf-8 message` |

use std::fmt;

use crate::frame;

/// Largest frame accepted or sent (an attestation document is at most about 16 KiB; a
/// `CiphertextForRecipient` well under 1 KiB).
pub const MAX_FRAME_BYTES: u32 = 64 * 1024;
/// Protocol magic at the start of a request body.
pub const MAGIC: &[u8; 4] = b"KDKB";
/// Protocol version.
pub const VERSION: u16 = 1;
/// Request kind: release the root secret to the attested key in the document.
pub const ROOT_SECRET: u8 = 0x01;
/// Response kind: the body is `CiphertextForRecipient`.
pub const OK: u8 = 0x80;
/// Response kind: the body is a UTF-8 message.
pub const ERROR: u8 = 0xFF;

/// An attestation document too large for one request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentTooLarge {
    /// The document's length.
    pub len: usize,
}

impl fmt::Display for DocumentTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attestation document too large ({} bytes; a request frame holds at most {MAX_FRAME_BYTES})",
            self.len
        )
    }
}

impl std::error::Error for DocumentTooLarge {}

/// The whole `ROOT_SECRET` request frame (length prefix included) for `document`.
///
/// # Errors
///
/// [`DocumentTooLarge`] if the frame would exceed [`MAX_FRAME_BYTES`].
pub fn request_frame(document: &[u8]) -> Result<Vec<u8>, DocumentTooLarge> {
    let too_large = DocumentTooLarge {
        len: document.len(),
    };
    let body_len = MAGIC.len() + 2 + document.len();
    // The length prefix counts the kind byte and the body.
    if body_len >= MAX_FRAME_BYTES as usize {
        return Err(too_large);
    }
    let head = frame::header(ROOT_SECRET, body_len).map_err(|_| too_large)?;
    let mut out = Vec::with_capacity(frame::HEADER_BYTES + body_len);
    out.extend_from_slice(&head);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(document);
    Ok(out)
}

/// Why a request was refused. Its `Display` is the message the broker sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a `ROOT_SECRET` request.
    UnknownKind(u8),
    /// Shorter than the magic and the version.
    TooShort,
    /// The magic is not [`MAGIC`].
    BadMagic,
    /// Another version of this protocol.
    UnsupportedVersion(u16),
    /// No attestation document after the version.
    NoDocument,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(kind) => write!(f, "unknown request kind {kind:#04x}"),
            Self::TooShort => f.write_str("request too short"),
            Self::BadMagic => f.write_str("not a key broker request (bad magic)"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "protocol version {v} is not supported (this broker speaks {VERSION})"
            ),
            Self::NoDocument => f.write_str("no attestation document"),
        }
    }
}

impl std::error::Error for RequestError {}

/// The attestation document of a `ROOT_SECRET` request.
///
/// # Errors
///
/// A [`RequestError`] saying what is wrong with the request.
pub fn parse_request(kind: u8, body: &[u8]) -> Result<&[u8], RequestError> {
    if kind != ROOT_SECRET {
        return Err(RequestError::UnknownKind(kind));
    }
    let (magic, rest) = body
        .split_first_chunk::<4>()
        .ok_or(RequestError::TooShort)?;
    if magic != MAGIC {
        return Err(RequestError::BadMagic);
    }
    let (version, document) = rest
        .split_first_chunk::<2>()
        .ok_or(RequestError::TooShort)?;
    let version = u16::from_be_bytes(*version);
    if version != VERSION {
        return Err(RequestError::UnsupportedVersion(version));
    }
    if document.is_empty() {
        return Err(RequestError::NoDocument);
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let bytes = request_frame(b"doc").unwrap();
        let (frame, used) = frame::decode(&bytes, MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(parse_request(frame.kind, &frame.body), Ok(&b"doc"[..]));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (kind, body, want) in [
            (
                0x02,
                &b"KDKB\x00\x01doc"[..],
                RequestError::UnknownKind(0x02),
            ),
            (ROOT_SECRET, b"KDK", RequestError::TooShort),
            (ROOT_SECRET, b"KDKB\x00", RequestError::TooShort),
            (ROOT_SECRET, b"KDJP\x00\x01doc", RequestError::BadMagic),
            (
                ROOT_SECRET,
                b"KDKB\x00\x02doc",
                RequestError::UnsupportedVersion(2),
            ),
            (ROOT_SECRET, b"KDKB\x00\x01", RequestError::NoDocument),
        ] {
            assert_eq!(parse_request(kind, body), Err(want), "{body:?}");
        }
    }

    #[test]
    fn a_document_that_does_not_fit_is_refused() {
        let fits = MAX_FRAME_BYTES as usize - 1 - 4 - 2;
        assert!(request_frame(&vec![0; fits]).is_ok());
        assert_eq!(
            request_frame(&vec![0; fits + 1]),
            Err(DocumentTooLarge { len: fits + 1 })
        );
    }
}
