//! Header blocks (SPDY/3 §2.6.10): `u32 count`, then per header `u32 length | name | u32
//! length | value`, names lower-case, several values of one name joined by NUL. On the wire a
//! block is zlib-compressed with the SPDY/3 dictionary (id [`DICTIONARY_ID`](crate::DICTIONARY_ID)) in one compression context
//! per direction for the whole session, each block ending in a sync flush.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::DICTIONARY;
use crate::error::{Error, Result};

/// The largest decompressed header block accepted (a zlib bomb stops here).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// A stream's headers: names (lower-case) with their values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<String>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Headers from `(name, value)` pairs; a repeated name gets several values.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.add(n, v);
        }
        h
    }

    /// Adds a value to `name` (lower-cased).
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_string()),
            None => self.0.push((name, vec![value.to_string()])),
        }
    }

    /// The first value of `name` (lower-case), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    /// Every `(name, values)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The uncompressed block.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a name or value longer than a `u32` can say.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let len = |n: usize| u32::try_from(n).map_err(|_| Error::Protocol("header too long"));
        let mut out = Vec::new();
        out.extend_from_slice(&len(self.0.len())?.to_be_bytes());
        for (name, values) in &self.0 {
            let value = values.join("\0");
            out.extend_from_slice(&len(name.len())?.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len(value.len())?.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    /// Parses an uncompressed block. Names are lower-cased (as Go's framer does); a block
    /// with an empty or repeated name, text that is not UTF-8, or bytes after the last header
    /// is refused.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] as above, or for a truncated block.
    pub fn decode(block: &[u8]) -> Result<Self> {
        let mut r = Reader(block);
        let count = r.u32()?;
        let mut headers = Headers::new();
        for _ in 0..count {
            let name_len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
            let name = r.text(name_len)?.to_ascii_lowercase();
            let value_len = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
            let value = r.text(value_len)?;
            if name.is_empty() {
                return Err(Error::Protocol("empty header name"));
            }
            if headers.0.iter().any(|(n, _)| *n == name) {
                return Err(Error::Protocol("repeated header name"));
            }
            headers
                .0
                .push((name, value.split('\0').map(str::to_string).collect()));
        }
        if !r.0.is_empty() {
            return Err(Error::Protocol("bytes after the header block"));
        }
        Ok(headers)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(Error::Protocol("truncated header block"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Protocol("header text is not UTF-8"))
    }
}

/// The compressing side of one direction of a session.
pub struct Deflater(Compress);

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// A fresh context with the SPDY dictionary.
    ///
    /// # Errors
    ///
    /// [`Error::Compression`] if zlib refuses the dictionary.
    pub fn new() -> Result<Self> {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(&DICTIONARY)
            .map_err(|e| Error::Compression(e.to_string()))?;
        Ok(Deflater(c))
    }

    /// Compresses one block, ending with a sync flush.
    ///
    /// # Errors
    ///
    /// [`Error::Compression`] from zlib.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let start = self.0.total_in();
        loop {
            let consumed = usize::try_from(self.0.total_in() - start).unwrap_or(usize::MAX);
            let input = block.get(consumed..).unwrap_or_default();
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.0
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            let consumed = usize::try_from(self.0.total_in() - start).unwrap_or(usize::MAX);
            // Done once every input byte is in and zlib stopped short of the room it had
            // (with room left, a sync flush has written everything).
            if consumed >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of one direction of a session.
pub struct Inflater(Decompress);

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A fresh context (the dictionary is set when the stream asks for it).
    pub fn new() -> Self {
        Inflater(Decompress::new(true))
    }

    /// Decompresses one block, all of `compressed`, to at most [`MAX_HEADER_BLOCK`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Compression`] for corrupt data or a dictionary other than SPDY's;
    /// [`Error::HeadersTooLarge`] past the limit.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 64);
        let start = self.0.total_in();
        loop {
            let consumed = usize::try_from(self.0.total_in() - start).unwrap_or(usize::MAX);
            let input = compressed.get(consumed..).unwrap_or_default();
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(Error::HeadersTooLarge {
                        limit: MAX_HEADER_BLOCK,
                    });
                }
                out.reserve(out.capacity().max(1024));
            }
            let status = match self
                .0
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(s) => s,
                Err(e) => match e.needs_dictionary() {
                    Some(id) if id == crate::DICTIONARY_ID => {
                        self.0
                            .set_dictionary(&DICTIONARY)
                            .map_err(|e| Error::Compression(e.to_string()))?;
                        continue;
                    }
                    Some(id) => {
                        return Err(Error::Compression(format!(
                            "unknown zlib dictionary {id:#010x}"
                        )));
                    }
                    None => return Err(Error::Compression(e.to_string())),
                },
            };
            if out.len() > MAX_HEADER_BLOCK {
                return Err(Error::HeadersTooLarge {
                    limit: MAX_HEADER_BLOCK,
                });
            }
            let consumed = usize::try_from(self.0.total_in() - start).unwrap_or(usize::MAX);
            match status {
                Status::StreamEnd => {
                    return Err(Error::Compression("the zlib stream ended".into()));
                }
                // Every byte is in and zlib stopped short of the room it had: the block is out.
                _ if consumed >= compressed.len() && out.len() < out.capacity() => {
                    return Ok(out);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_one_context_per_direction() {
        let mut d = Deflater::new().unwrap();
        let mut i = Inflater::new();
        for n in 0..20 {
            let h = Headers::from_pairs([
                ("streamType", "data"),
                ("port", "8080"),
                ("requestID", &n.to_string()),
                ("x", "a"),
                ("x", "b"),
            ]);
            let compressed = d.compress(&h.encode().unwrap()).unwrap();
            let back = Headers::decode(&i.decompress(&compressed).unwrap()).unwrap();
            assert_eq!(back, h);
            assert_eq!(back.get("streamtype"), Some("data"));
            assert_eq!(back.iter().last().unwrap().1, ["a", "b"]);
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        assert!(Headers::decode(&[0, 0, 0, 1]).is_err());
        assert!(Headers::decode(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Headers::decode(&[0, 0, 0, 0, 9]).is_err());
        let mut i = Inflater::new();
        assert!(i.decompress(b"not zlib at all").is_err());
    }

    #[test]
    fn a_zlib_bomb_stops_at_the_limit() {
        let mut d = Deflater::new().unwrap();
        let big = vec![b'a'; MAX_HEADER_BLOCK * 2];
        let compressed = d.compress(&big).unwrap();
        assert!(compressed.len() < big.len() / 100);
        let mut i = Inflater::new();
        assert!(matches!(
            i.decompress(&compressed),
            Err(Error::HeadersTooLarge { .. })
        ));
    }
}
