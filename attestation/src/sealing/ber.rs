//! A narrow BER reader, just enough for the CMS EnvelopedData KMS returns in
//! `CiphertextForRecipient`.
//!
//! It reads low-number tags (0..=30, which is all CMS uses), definite lengths
//! (short and long form, up to four length octets) and indefinite lengths on
//! constructed elements (ended by the end-of-contents octets `00 00`), and it
//! joins constructed OCTET STRINGs into one value. Nesting is capped at
//! [`MAX_DEPTH`]. Every failure is an [`EnvelopeError`]; nothing here panics
//! or allocates more than the input's length.
//!
//! It is deliberately not a general BER library: no high tag numbers, no
//! lengths of 4 GiB or more, no interpretation of any type but INTEGER, OID and
//! OCTET STRING.

use std::borrow::Cow;

use crate::error::EnvelopeError;

/// Deepest nesting accepted. A KMS envelope nests 11 levels (the MGF1 hash
/// inside the OAEP parameters); constructed OCTET STRING segments add one or
/// two.
pub(crate) const MAX_DEPTH: usize = 24;

/// Identifier octets of the universal types the envelope uses.
pub(crate) mod tag {
    /// INTEGER.
    pub(crate) const INTEGER: u8 = 0x02;
    /// OCTET STRING, primitive.
    pub(crate) const OCTET_STRING: u8 = 0x04;
    /// OCTET STRING, constructed (BER segments).
    pub(crate) const OCTET_STRING_CONSTRUCTED: u8 = 0x24;
    /// NULL.
    pub(crate) const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub(crate) const OID: u8 = 0x06;
    /// SEQUENCE (always constructed).
    pub(crate) const SEQUENCE: u8 = 0x30;
    /// SET (always constructed).
    pub(crate) const SET: u8 = 0x31;
    /// Context-specific `[n]`, primitive (IMPLICIT on a primitive type).
    pub(crate) const fn context(n: u8) -> u8 {
        0x80 | n
    }
    /// Context-specific `[n]`, constructed (EXPLICIT, or IMPLICIT on a
    /// constructed type).
    pub(crate) const fn context_constructed(n: u8) -> u8 {
        0xa0 | n
    }
}

const CONSTRUCTED: u8 = 0x20;

/// One element: its identifier octet and its contents. For an
/// indefinite-length element the contents exclude the end-of-contents octets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    /// The identifier octet (class, constructed bit, tag number).
    pub(crate) tag: u8,
    /// The contents octets.
    pub(crate) contents: &'a [u8],
    /// How deep the element sits (the outermost element is at depth 1).
    depth: usize,
}

impl<'a> Element<'a> {
    /// Whether the element is constructed.
    pub(crate) fn is_constructed(&self) -> bool {
        self.tag & CONSTRUCTED != 0
    }

    /// A reader over the element's children.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Malformed`] if the element is primitive.
    pub(crate) fn children(&self, field: &'static str) -> Result<Reader<'a>, EnvelopeError> {
        if !self.is_constructed() {
            return Err(EnvelopeError::Malformed { field });
        }
        Ok(Reader {
            rest: self.contents,
            depth: self.depth,
        })
    }

    /// The value of an OCTET STRING (universal or implicitly tagged): the
    /// contents of a primitive element, or the concatenated segments of a
    /// constructed one, whose segments must be OCTET STRINGs themselves.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Malformed`] if a segment is not an OCTET STRING, and
    /// any error from reading the segments.
    pub(crate) fn octets(&self, field: &'static str) -> Result<Cow<'a, [u8]>, EnvelopeError> {
        if !self.is_constructed() {
            return Ok(Cow::Borrowed(self.contents));
        }
        let mut out = Vec::new();
        self.append_segments(field, &mut out)?;
        Ok(Cow::Owned(out))
    }

    fn append_segments(&self, field: &'static str, out: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let mut segments = self.children(field)?;
        while !segments.is_empty() {
            let segment = segments.read_any(field)?;
            match segment.tag {
                tag::OCTET_STRING => out.extend_from_slice(segment.contents),
                tag::OCTET_STRING_CONSTRUCTED => segment.append_segments(field, out)?,
                _ => return Err(EnvelopeError::Malformed { field }),
            }
        }
        Ok(())
    }

    /// The value of a non-negative INTEGER that fits in a `u64`; a negative
    /// or larger value reads as `u64::MAX`, which no version check accepts.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Malformed`] if the element is constructed or empty.
    pub(crate) fn small_uint(&self, field: &'static str) -> Result<u64, EnvelopeError> {
        if self.is_constructed() || self.contents.is_empty() {
            return Err(EnvelopeError::Malformed { field });
        }
        let bytes = self.contents;
        if bytes[0] & 0x80 != 0 {
            return Ok(u64::MAX);
        }
        let significant = match bytes.iter().position(|&b| b != 0) {
            Some(first) => &bytes[first..],
            None => return Ok(0),
        };
        if significant.len() > 8 {
            return Ok(u64::MAX);
        }
        Ok(significant
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }
}

/// Reads the elements of one level in order.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    /// Depth of the element whose contents this reads (0 for the input).
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole input.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self {
            rest: input,
            depth: 0,
        }
    }

    /// Whether every element has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The identifier octet of the next element, if any.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Truncated`] if the input ends inside it,
    /// [`EnvelopeError::TooDeep`] past [`MAX_DEPTH`], and
    /// [`EnvelopeError::Malformed`] for an encoding this reader refuses.
    pub(crate) fn read_any(&mut self, field: &'static str) -> Result<Element<'a>, EnvelopeError> {
        let (element, rest) = parse_element(self.rest, self.depth + 1, field)?;
        self.rest = rest;
        Ok(element)
    }

    /// Reads the next element, which must have identifier octet `expected`.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Malformed`] if there is no next element or its tag
    /// differs, and the errors of [`Self::read_any`].
    pub(crate) fn read(
        &mut self,
        expected: u8,
        field: &'static str,
    ) -> Result<Element<'a>, EnvelopeError> {
        if self.peek_tag() != Some(expected) {
            return Err(EnvelopeError::Malformed { field });
        }
        self.read_any(field)
    }

    /// Reads the next element if it has identifier octet `expected`.
    ///
    /// # Errors
    ///
    /// The errors of [`Self::read_any`].
    pub(crate) fn read_optional(
        &mut self,
        expected: u8,
        field: &'static str,
    ) -> Result<Option<Element<'a>>, EnvelopeError> {
        if self.peek_tag() == Some(expected) {
            self.read_any(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads the next element as a universal OCTET STRING, primitive or
    /// constructed, and returns its value.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::Malformed`] if the next element is something else,
    /// and the errors of [`Self::read_any`] and [`Element::octets`].
    pub(crate) fn read_octet_string(
        &mut self,
        field: &'static str,
    ) -> Result<Cow<'a, [u8]>, EnvelopeError> {
        match self.peek_tag() {
            Some(tag::OCTET_STRING | tag::OCTET_STRING_CONSTRUCTED) => {
                self.read_any(field)?.octets(field)
            }
            _ => Err(EnvelopeError::Malformed { field }),
        }
    }

    /// Checks that nothing is left.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::TrailingBytes`] if bytes remain.
    pub(crate) fn finish(&self, context: &'static str) -> Result<(), EnvelopeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(EnvelopeError::TrailingBytes {
                context,
                count: self.rest.len(),
            })
        }
    }
}

/// Parses one element at `depth` from the front of `input`; returns it and
/// the bytes after it.
fn parse_element<'a>(
    input: &'a [u8],
    depth: usize,
    field: &'static str,
) -> Result<(Element<'a>, &'a [u8]), EnvelopeError> {
    if depth > MAX_DEPTH {
        return Err(EnvelopeError::TooDeep { max: MAX_DEPTH });
    }
    let truncated = EnvelopeError::Truncated { context: field };
    let (&tag, rest) = input.split_first().ok_or(truncated)?;
    if tag & 0x1f == 0x1f {
        // High tag number form: CMS never needs it.
        return Err(EnvelopeError::Malformed { field });
    }
    let constructed = tag & CONSTRUCTED != 0;
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(EnvelopeError::Truncated { context: field })?;
    let len = match first {
        0x00..=0x7f => usize::from(first),
        0x80 => {
            // Indefinite length: children until the end-of-contents octets.
            if !constructed {
                return Err(EnvelopeError::Malformed { field });
            }
            let start = rest;
            loop {
                match rest {
                    [0, 0, after @ ..] => {
                        let contents = &start[..start.len() - rest.len()];
                        let element = Element {
                            tag,
                            contents,
                            depth,
                        };
                        return Ok((element, after));
                    }
                    [] | [_] => return Err(EnvelopeError::Truncated { context: field }),
                    _ => rest = parse_element(rest, depth + 1, field)?.1,
                }
            }
        }
        0x81..=0x84 => {
            let count = usize::from(first & 0x7f);
            if rest.len() < count {
                return Err(EnvelopeError::Truncated { context: field });
            }
            let (octets, after) = rest.split_at(count);
            rest = after;
            octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        // 0x85..=0xfe would be 4 GiB or more; 0xff is reserved.
        _ => return Err(EnvelopeError::Malformed { field }),
    };
    if rest.len() < len {
        return Err(EnvelopeError::Truncated { context: field });
    }
    let (contents, after) = rest.split_at(len);
    Ok((
        Element {
            tag,
            contents,
            depth,
        },
        after,
    ))
}

/// Renders OID contents octets in dotted form for error messages; malformed
/// contents render as hex.
pub(crate) fn oid_to_string(contents: &[u8]) -> String {
    let mut arcs: Vec<u128> = Vec::new();
    let mut value: u128 = 0;
    for (i, &b) in contents.iter().enumerate() {
        if value > (u128::MAX >> 7) {
            return format!("0x{}", hex::encode(contents));
        }
        value = (value << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        } else if i + 1 == contents.len() {
            return format!("0x{}", hex::encode(contents));
        }
    }
    let Some((&first, others)) = arcs.split_first() else {
        return String::from("<empty>");
    };
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in others {
        out.push('.');
        out.push_str(&arc.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn one(input: &[u8]) -> Result<Element<'_>, EnvelopeError> {
        let mut reader = Reader::new(input);
        let element = reader.read_any("test")?;
        reader.finish("test")?;
        Ok(element)
    }

    #[test]
    fn short_and_long_definite_lengths() {
        let e = one(&[0x04, 0x02, 0xaa, 0xbb]).unwrap();
        assert_eq!((e.tag, e.contents), (0x04, &[0xaa, 0xbb][..]));

        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        assert_eq!(one(&long).unwrap().contents.len(), 256);

        // Non-minimal long form is valid BER.
        let e = one(&[0x04, 0x81, 0x01, 0xcc]).unwrap();
        assert_eq!(e.contents, &[0xcc]);
    }

    #[test]
    fn indefinite_length_ends_at_end_of_contents() {
        // SEQUENCE (indefinite) { INTEGER 5, SEQUENCE (indefinite) { NULL } }
        let input = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x30, 0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let e = one(&input).unwrap();
        assert_eq!(e.tag, tag::SEQUENCE);
        let mut children = e.children("seq").unwrap();
        assert_eq!(
            children
                .read(tag::INTEGER, "int")
                .unwrap()
                .small_uint("int")
                .unwrap(),
            5
        );
        let inner = children.read(tag::SEQUENCE, "inner").unwrap();
        assert_eq!(inner.contents, &[0x05, 0x00]);
        assert!(children.is_empty());
    }

    #[test]
    fn indefinite_length_on_primitive_is_refused() {
        assert!(matches!(
            one(&[0x04, 0x80, 0x00, 0x00]),
            Err(EnvelopeError::Malformed { .. })
        ));
    }

    #[test]
    fn constructed_octet_strings_are_joined() {
        // OCTET STRING (constructed, indefinite) { "ab", OCTET STRING
        // (constructed, definite) { "c" }, "" }
        let input = [
            0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x24, 0x03, 0x04, 0x01, b'c', 0x04, 0x00, 0x00,
            0x00,
        ];
        let e = one(&input).unwrap();
        assert_eq!(&*e.octets("os").unwrap(), b"abc");
        // A segment of another type is refused.
        let bad = [0x24, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00];
        assert!(matches!(
            one(&bad).unwrap().octets("os"),
            Err(EnvelopeError::Malformed { .. })
        ));
    }

    #[test]
    fn truncation_and_trailing_bytes() {
        for input in [
            &[][..],
            &[0x04],
            &[0x04, 0x02, 0xaa],
            &[0x04, 0x82, 0x01],
            &[0x30, 0x80, 0x05, 0x00],
            &[0x30, 0x80, 0x05, 0x00, 0x00],
        ] {
            assert!(
                matches!(one(input), Err(EnvelopeError::Truncated { .. })),
                "{input:02x?}"
            );
        }
        assert!(matches!(
            one(&[0x05, 0x00, 0x00]),
            Err(EnvelopeError::TrailingBytes { count: 1, .. })
        ));
    }

    #[test]
    fn unsupported_encodings_are_malformed() {
        for input in [
            &[0x1f, 0x81, 0x00, 0x00][..],   // high tag number
            &[0x04, 0xff],                   // reserved length octet
            &[0x04, 0x85, 1, 0, 0, 0, 0, 0], // five length octets
        ] {
            assert!(
                matches!(one(input), Err(EnvelopeError::Malformed { .. })),
                "{input:02x?}"
            );
        }
    }

    #[test]
    fn nesting_is_capped() {
        let nest = |levels: usize| {
            let mut v = [0x30, 0x80].repeat(levels);
            v.extend([0x00, 0x00].repeat(levels));
            v
        };
        assert!(one(&nest(MAX_DEPTH)).is_ok());
        assert!(matches!(
            one(&nest(MAX_DEPTH + 1)),
            Err(EnvelopeError::TooDeep { .. })
        ));
        // A million levels: refused without recursing a million times.
        assert!(matches!(
            one(&nest(1_000_000)),
            Err(EnvelopeError::TooDeep { .. })
        ));
        // Definite-length nesting is capped when children are read: NULL
        // inside MAX_DEPTH SEQUENCEs sits one level too deep.
        let mut definite = vec![0x05, 0x00];
        for _ in 0..MAX_DEPTH {
            let mut outer = vec![0x30, u8::try_from(definite.len()).unwrap()];
            outer.extend(&definite);
            definite = outer;
        }
        let mut element = one(&definite).unwrap();
        for _ in 1..MAX_DEPTH {
            element = element.children("seq").unwrap().read_any("seq").unwrap();
        }
        assert_eq!(element.contents, &[0x05, 0x00]);
        assert!(matches!(
            element.children("seq").unwrap().read_any("null"),
            Err(EnvelopeError::TooDeep { .. })
        ));
    }

    #[test]
    fn small_uint_values() {
        let int = |bytes: &[u8]| {
            let mut v = vec![0x02, u8::try_from(bytes.len()).unwrap()];
            v.extend(bytes);
            v
        };
        assert_eq!(one(&int(&[0])).unwrap().small_uint("v").unwrap(), 0);
        assert_eq!(one(&int(&[0, 2])).unwrap().small_uint("v").unwrap(), 2);
        assert_eq!(
            one(&int(&[0xff])).unwrap().small_uint("v").unwrap(),
            u64::MAX
        );
        assert_eq!(
            one(&int(&[1; 9])).unwrap().small_uint("v").unwrap(),
            u64::MAX
        );
        assert!(one(&[0x02, 0x00]).unwrap().small_uint("v").is_err());
    }

    #[test]
    fn oids_render_dotted() {
        let oaep = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
        assert_eq!(oid_to_string(&oaep), "1.2.840.113549.1.1.7");
        let aes256cbc = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
        assert_eq!(oid_to_string(&aes256cbc), "2.16.840.1.101.3.4.1.42");
        assert_eq!(oid_to_string(&[0x86]), "0x86");
        assert_eq!(oid_to_string(&[]), "<empty>");
        assert_eq!(oid_to_string(&[0xff; 40]), format!("0x{}", "ff".repeat(40)));
    }
}
