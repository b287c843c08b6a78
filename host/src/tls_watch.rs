//! Passive TLS record framing: the relay never decrypts, but the 5-byte record headers are plaintext, which is
//! enough to tell when a client has finished its side of the handshake.
//!
//! The rule: the client's stream must start with a handshake record, may carry only handshake (22),
//! change_cipher_spec (20) and alert (21) records, and is "done" once it has sent one complete application_data
//! (23) record. In TLS 1.3 the client's `Finished` message travels in the first such record; in TLS 1.2 it is the
//! first request after the handshake. Record lengths above 2^14 + 2048 (RFC 8446 §5.2, RFC 5246 §6.2.3) or a
//! version byte other than 3 are not TLS.

const HANDSHAKE: u8 = 22;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const APPLICATION_DATA: u8 = 23;
const MAX_RECORD: usize = (1 << 14) + 2048;

/// How far the client's handshake has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsProgress {
    /// Still in the handshake.
    Handshaking,
    /// The first complete application_data record has been seen.
    Done,
}

/// The bytes are not a TLS client stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotTls;

/// Tracks record boundaries across arbitrary chunking.
#[derive(Debug, Default)]
pub(crate) struct TlsWatch {
    header: [u8; 5],
    header_len: usize,
    /// Body bytes of the current record still to skip.
    remaining: usize,
    /// The current record is application_data.
    in_app_data: bool,
    records: u64,
}

impl TlsWatch {
    /// Feeds the next chunk of client bytes.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<TlsProgress, NotTls> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = bytes.get(take..).unwrap_or_default();
                if self.remaining == 0 && self.in_app_data {
                    return Ok(TlsProgress::Done);
                }
                continue;
            }
            let want = 5 - self.header_len;
            let take = want.min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            if let Some(slot) = self.header.get_mut(self.header_len..self.header_len + take) {
                slot.copy_from_slice(head);
            }
            self.header_len += take;
            bytes = rest;
            if self.header_len < 5 {
                // A partial header still says something: reject a non-TLS first byte at once.
                if self.records == 0 && self.header_len >= 1 && self.header[0] != HANDSHAKE {
                    return Err(NotTls);
                }
                continue;
            }
            self.header_len = 0;
            let [kind, major, _minor, hi, lo] = self.header;
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let allowed = match self.records {
                0 => kind == HANDSHAKE,
                _ => matches!(
                    kind,
                    HANDSHAKE | CHANGE_CIPHER_SPEC | ALERT | APPLICATION_DATA
                ),
            };
            if !allowed || major != 3 || len > MAX_RECORD {
                return Err(NotTls);
            }
            self.records += 1;
            self.in_app_data = kind == APPLICATION_DATA;
            self.remaining = len;
            if len == 0 && self.in_app_data {
                return Ok(TlsProgress::Done);
            }
        }
        Ok(TlsProgress::Handshaking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        r.extend(std::iter::repeat_n(0xAB, len));
        r
    }

    #[test]
    fn done_only_after_a_complete_application_data_record_however_chunked() {
        let mut stream = record(HANDSHAKE, 300);
        stream.extend(record(CHANGE_CIPHER_SPEC, 1));
        stream.extend(record(APPLICATION_DATA, 53));
        for chunk in [1, 2, 5, 7, 64, stream.len()] {
            let mut watch = TlsWatch::default();
            let mut done_at = None;
            for (i, piece) in stream.chunks(chunk).enumerate() {
                if watch.feed(piece).unwrap() == TlsProgress::Done {
                    done_at = Some((i + 1) * chunk);
                    break;
                }
            }
            let done_at = done_at.expect("done");
            assert!(
                done_at >= stream.len(),
                "chunk {chunk}: done before the record was complete"
            );
        }
    }

    #[test]
    fn a_partial_client_hello_is_still_handshaking() {
        let hello = record(HANDSHAKE, 512);
        let mut watch = TlsWatch::default();
        assert_eq!(watch.feed(&hello[..100]), Ok(TlsProgress::Handshaking));
        assert_eq!(watch.feed(&hello[100..]), Ok(TlsProgress::Handshaking));
    }

    #[test]
    fn rejects_what_is_not_a_tls_client_stream() {
        assert_eq!(TlsWatch::default().feed(b"GET / HTTP/1.1\r\n"), Err(NotTls));
        assert_eq!(
            TlsWatch::default().feed(&record(APPLICATION_DATA, 5)),
            Err(NotTls),
            "must start with a handshake"
        );
        let mut bad_version = record(HANDSHAKE, 5);
        bad_version[1] = 2;
        assert_eq!(TlsWatch::default().feed(&bad_version), Err(NotTls));
        let mut too_long = record(HANDSHAKE, 5);
        too_long[3..5].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(TlsWatch::default().feed(&too_long), Err(NotTls));
        let mut unknown = record(HANDSHAKE, 5);
        unknown.extend(record(99, 1));
        assert_eq!(TlsWatch::default().feed(&unknown), Err(NotTls));
    }
}
