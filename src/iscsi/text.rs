//! iSCSI text data segments: `key=value\0` pairs (RFC 7143 §6.1).
//!
//! Login and Text PDUs carry their parameters as a sequence of `key=value` pairs, each one
//! terminated by a single NUL byte. This module parses a complete *logical text data segment*
//! (LTDS) into an ordered list, joins an LTDS that the initiator split over several PDUs with the
//! C (continue) bit ([`TextAccumulator`]), and builds and splits response segments
//! ([`TextWriter`], [`split_segments`]).
//!
//! Traps that bite:
//! - A pair may span PDU boundaries (§6.1: "Key=value pairs may span PDU boundaries"), so text
//!   must only be parsed once the PDU with C=0 has arrived; parsing every piece on its own breaks
//!   as soon as an initiator splits in the middle of a key.
//! - The accumulated text is attacker-controlled: it is bounded ([`DEFAULT_TEXT_LIMIT`]) or a
//!   peer that never clears the C bit grows memory without limit.
//! - A key that appears twice in one LTDS is a protocol error (§6.2: negotiating or declaring a
//!   parameter more than once), not "last one wins".
//! - Values are limited to 255 bytes, except the large binary CHAP values (§6.1, §12.1.3), whose
//!   *encoded* form may be much longer.
//! - Numbers may be written in decimal or in hex with a `0x`/`0X` prefix (§6.1 "hex-constant").

use thiserror::Error;

/// Longest key name (§6.1: a standard-label "must not exceed 63 characters").
pub const MAX_KEY_LEN: usize = 63;
/// Longest value for ordinary keys (§6.1: "255 bytes, not including the delimiter").
pub const MAX_VALUE_LEN: usize = 255;
/// Longest encoded value for the keys that carry large binary values (CHAP_C, CHAP_R, CHAP_N).
pub const MAX_LARGE_VALUE_LEN: usize = 8192;
/// Most key=value pairs accepted in one LTDS; a real login sends fewer than 30.
pub const MAX_PAIRS: usize = 256;
/// Default bound on one accumulated LTDS (RFC 7143 requires support for at least 8192 bytes).
pub const DEFAULT_TEXT_LIMIT: usize = 64 * 1024;

/// Why a text data segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    /// The (accumulated) text is larger than the configured bound.
    #[error("text of {len} bytes exceeds the limit of {limit} bytes")]
    TooLong {
        /// Length that was reached.
        len: usize,
        /// The configured bound.
        limit: usize,
    },
    /// A pair without `=`.
    #[error("key=value pair at offset {offset} has no '='")]
    MissingEquals {
        /// Byte offset of the pair within the LTDS.
        offset: usize,
    },
    /// A pair that starts with `=`.
    #[error("empty key at offset {offset}")]
    EmptyKey {
        /// Byte offset of the pair within the LTDS.
        offset: usize,
    },
    /// A key longer than [`MAX_KEY_LEN`].
    #[error("key at offset {offset} is {len} bytes long (limit {MAX_KEY_LEN})")]
    KeyTooLong {
        /// Byte offset of the pair within the LTDS.
        offset: usize,
        /// Length of the key.
        len: usize,
    },
    /// A key with a character outside letters, digits and `.-+@_#`.
    #[error("key at offset {offset} contains an invalid character")]
    InvalidKey {
        /// Byte offset of the pair within the LTDS.
        offset: usize,
    },
    /// A value longer than allowed for its key.
    #[error("value of key {key} is {len} bytes long (limit {limit})")]
    ValueTooLong {
        /// The key.
        key: String,
        /// Length of the value.
        len: usize,
        /// Limit for this key.
        limit: usize,
    },
    /// A value that is not UTF-8 or contains control characters (or NUL, when writing).
    #[error("value of key {key} is not valid UTF-8 text")]
    InvalidValue {
        /// The key.
        key: String,
    },
    /// The same key appears twice in one LTDS (§6.2).
    #[error("key {0} appears more than once")]
    DuplicateKey(String),
    /// More than [`MAX_PAIRS`] pairs.
    #[error("more than {limit} key=value pairs")]
    TooManyPairs {
        /// The bound.
        limit: usize,
    },
}

/// One `key=value` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key name, validated to `[A-Za-z0-9.\-+@_#]{1,63}`.
    pub key: String,
    /// Value, UTF-8 without control characters, at most [`value_limit`] bytes.
    pub value: String,
}

impl KeyValue {
    /// Builds a pair (no validation: use [`TextWriter::push`] to serialise safely).
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Largest value accepted for `key`: 8192 for the large binary CHAP values, 255 otherwise.
pub fn value_limit(key: &str) -> usize {
    match key {
        "CHAP_C" | "CHAP_R" | "CHAP_N" => MAX_LARGE_VALUE_LEN,
        _ => MAX_VALUE_LEN,
    }
}

fn valid_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

fn check_key(key: &[u8], offset: usize) -> Result<(), TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(TextError::KeyTooLong {
            offset,
            len: key.len(),
        });
    }
    if !key.iter().all(|&b| valid_key_byte(b)) {
        return Err(TextError::InvalidKey { offset });
    }
    Ok(())
}

fn value_is_clean(value: &str) -> bool {
    !value.chars().any(|c| c.is_control())
}

/// Parses a complete LTDS with the default bound [`DEFAULT_TEXT_LIMIT`].
pub fn parse(data: &[u8]) -> Result<Vec<KeyValue>, TextError> {
    parse_with_limit(data, DEFAULT_TEXT_LIMIT)
}

/// Parses a complete LTDS of at most `limit` bytes into its pairs, in order.
///
/// Empty segments (trailing padding, stray NULs) are skipped; the last pair may lack its NUL.
pub fn parse_with_limit(data: &[u8], limit: usize) -> Result<Vec<KeyValue>, TextError> {
    if data.len() > limit {
        return Err(TextError::TooLong {
            len: data.len(),
            limit,
        });
    }
    let mut pairs: Vec<KeyValue> = Vec::new();
    let mut offset = 0usize;
    for segment in data.split(|&b| b == 0) {
        let start = offset;
        offset = offset.saturating_add(segment.len() + 1);
        if segment.is_empty() {
            continue;
        }
        if pairs.len() >= MAX_PAIRS {
            return Err(TextError::TooManyPairs { limit: MAX_PAIRS });
        }
        let eq = segment
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TextError::MissingEquals { offset: start })?;
        let (key_bytes, rest) = segment.split_at(eq);
        let value_bytes = rest.get(1..).unwrap_or(&[]);
        check_key(key_bytes, start)?;
        let key = std::str::from_utf8(key_bytes)
            .map_err(|_| TextError::InvalidKey { offset: start })?
            .to_owned();
        let vlimit = value_limit(&key);
        if value_bytes.len() > vlimit {
            return Err(TextError::ValueTooLong {
                key,
                len: value_bytes.len(),
                limit: vlimit,
            });
        }
        let value = match std::str::from_utf8(value_bytes) {
            Ok(v) if value_is_clean(v) => v.to_owned(),
            _ => return Err(TextError::InvalidValue { key }),
        };
        if pairs.iter().any(|p| p.key == key) {
            return Err(TextError::DuplicateKey(key));
        }
        pairs.push(KeyValue { key, value });
    }
    Ok(pairs)
}

/// Parses a numerical value: decimal, or hex with a `0x`/`0X` prefix (§6.1). `None` when
/// malformed, empty, signed, or not below 2^64.
pub fn parse_number(value: &str) -> Option<u64> {
    let (digits, radix) = match value.get(..2) {
        Some("0x") | Some("0X") => (value.get(2..)?, 16),
        _ => (value, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Joins the pieces of an LTDS that the initiator split with the C bit (§6.1, §11.12.2), with a
/// hard bound on the total size.
#[derive(Debug, Clone)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    limit: usize,
    pending: bool,
}

impl TextAccumulator {
    /// An empty accumulator bounded to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        TextAccumulator {
            buf: Vec::new(),
            limit,
            pending: false,
        }
    }

    /// Adds the data segment of one PDU; `more` is its C bit. Returns the complete LTDS once a
    /// piece with C=0 arrives. Going over the bound discards what was buffered.
    pub fn push(&mut self, piece: &[u8], more: bool) -> Result<Option<Vec<u8>>, TextError> {
        let total = self.buf.len().saturating_add(piece.len());
        if total > self.limit {
            self.reset();
            return Err(TextError::TooLong {
                len: total,
                limit: self.limit,
            });
        }
        self.buf.extend_from_slice(piece);
        if more {
            self.pending = true;
            Ok(None)
        } else {
            self.pending = false;
            Ok(Some(std::mem::take(&mut self.buf)))
        }
    }

    /// Whether a piece with C=1 was received and the final piece is still missing.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bound given at construction.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Drops anything buffered.
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.pending = false;
    }
}

/// Builds a response data segment of `key=value\0` pairs. Keys may repeat (SendTargets answers
/// repeat `TargetName`/`TargetAddress`); the login layer is the one that answers a key only once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextWriter {
    buf: Vec<u8>,
}

impl TextWriter {
    /// An empty writer.
    pub fn new() -> Self {
        TextWriter::default()
    }

    /// Appends `key=value\0` after validating the key and the value (no NUL, no control
    /// character, length within [`value_limit`]).
    pub fn push(&mut self, key: &str, value: &str) -> Result<(), TextError> {
        check_key(key.as_bytes(), self.buf.len())?;
        let limit = value_limit(key);
        if value.len() > limit {
            return Err(TextError::ValueTooLong {
                key: key.to_owned(),
                len: value.len(),
                limit,
            });
        }
        if !value_is_clean(value) {
            return Err(TextError::InvalidValue {
                key: key.to_owned(),
            });
        }
        self.buf.reserve(key.len() + value.len() + 2);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(b'=');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        Ok(())
    }

    /// Appends a pair.
    pub fn push_pair(&mut self, kv: &KeyValue) -> Result<(), TextError> {
        self.push(&kv.key, &kv.value)
    }

    /// Whether `key` was already written.
    pub fn contains_key(&self, key: &str) -> bool {
        self.buf.split(|&b| b == 0).any(|seg| {
            seg.len() > key.len()
                && seg.starts_with(key.as_bytes())
                && seg.get(key.len()) == Some(&b'=')
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The segment built so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The segment.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The segment cut into pieces of at most `max_segment` bytes (the peer's
    /// MaxRecvDataSegmentLength); see [`split_segments`].
    pub fn segments(&self, max_segment: usize) -> Vec<&[u8]> {
        split_segments(&self.buf, max_segment)
    }
}

/// Cuts `data` into pieces of at most `max_segment` bytes (at least 1). Send them with the C bit
/// on every piece but the last (§6.1 allows a cut anywhere, even inside a pair). Empty data gives
/// one empty piece, so the caller always sends one PDU.
pub fn split_segments(data: &[u8], max_segment: usize) -> Vec<&[u8]> {
    if data.is_empty() {
        return vec![&[][..]];
    }
    data.chunks(max_segment.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue::new(k, v)
    }

    #[test]
    fn parses_pairs_in_order() {
        let text = b"InitiatorName=iqn.1993-08.org.debian:01:abc\0SessionType=Normal\0X-a=\0";
        let pairs = parse(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                kv("InitiatorName", "iqn.1993-08.org.debian:01:abc"),
                kv("SessionType", "Normal"),
                kv("X-a", ""),
            ]
        );
    }

    #[test]
    fn tolerates_padding_and_missing_final_nul() {
        assert_eq!(parse(b"A=1\0\0\0\0").unwrap(), vec![kv("A", "1")]);
        assert_eq!(
            parse(b"A=1\0B=2").unwrap(),
            vec![kv("A", "1"), kv("B", "2")]
        );
        assert!(parse(b"").unwrap().is_empty());
        assert!(parse(b"\0\0\0").unwrap().is_empty());
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(parse(b"A=b=c\0").unwrap(), vec![kv("A", "b=c")]);
    }

    #[test]
    fn rejects_malformed_pairs() {
        assert_eq!(
            parse(b"A=1\0Junk\0"),
            Err(TextError::MissingEquals { offset: 4 })
        );
        assert_eq!(parse(b"=x\0"), Err(TextError::EmptyKey { offset: 0 }));
        assert_eq!(parse(b"A B=x\0"), Err(TextError::InvalidKey { offset: 0 }));
        assert_eq!(
            parse(b"A=\xff\xfe\0"),
            Err(TextError::InvalidValue { key: "A".into() })
        );
        assert_eq!(
            parse(b"A=a\x01b\0"),
            Err(TextError::InvalidValue { key: "A".into() })
        );
        assert_eq!(
            parse(b"\xc3\xa9=x\0"),
            Err(TextError::InvalidKey { offset: 0 })
        );
    }

    #[test]
    fn rejects_duplicates() {
        assert_eq!(
            parse(b"A=1\0B=2\0A=1\0"),
            Err(TextError::DuplicateKey("A".into()))
        );
    }

    #[test]
    fn enforces_key_and_value_lengths() {
        let key63 = "K".repeat(63);
        let ok = format!("{key63}=v\0");
        assert!(parse(ok.as_bytes()).is_ok());
        let key64 = "K".repeat(64);
        let bad = format!("{key64}=v\0");
        assert!(matches!(
            parse(bad.as_bytes()),
            Err(TextError::KeyTooLong { len: 64, .. })
        ));
        let v255 = format!("A={}\0", "v".repeat(255));
        assert!(parse(v255.as_bytes()).is_ok());
        let v256 = format!("A={}\0", "v".repeat(256));
        assert!(matches!(
            parse(v256.as_bytes()),
            Err(TextError::ValueTooLong {
                len: 256,
                limit: 255,
                ..
            })
        ));
        // Large binary values are allowed for the CHAP keys only.
        let chap = format!("CHAP_C=0x{}\0", "ab".repeat(1024));
        assert!(parse(chap.as_bytes()).is_ok());
        let chap = format!("CHAP_R=0x{}\0", "a".repeat(8191));
        assert!(matches!(
            parse(chap.as_bytes()),
            Err(TextError::ValueTooLong { limit: 8192, .. })
        ));
    }

    #[test]
    fn enforces_total_and_pair_count() {
        let big = vec![b'a'; 100];
        assert_eq!(
            parse_with_limit(&big, 99),
            Err(TextError::TooLong {
                len: 100,
                limit: 99
            })
        );
        let mut many = Vec::new();
        for i in 0..=MAX_PAIRS {
            many.extend_from_slice(format!("X-k{i}=v\0").as_bytes());
        }
        assert_eq!(
            parse(&many),
            Err(TextError::TooManyPairs { limit: MAX_PAIRS })
        );
    }

    #[test]
    fn numbers_decimal_and_hex() {
        assert_eq!(parse_number("262144"), Some(262144));
        assert_eq!(parse_number("0x40000"), Some(262144));
        assert_eq!(parse_number("0X40000"), Some(262144));
        assert_eq!(parse_number("00012"), Some(12));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("18446744073709551616"), None);
        assert_eq!(parse_number("0xé"), None);
    }

    #[test]
    fn accumulator_joins_split_pairs() {
        let mut acc = TextAccumulator::new(1024);
        assert_eq!(acc.push(b"InitiatorNa", true).unwrap(), None);
        assert!(acc.is_pending());
        assert_eq!(acc.push(b"me=iqn.x\0Sess", true).unwrap(), None);
        let full = acc.push(b"ionType=Normal\0", false).unwrap().unwrap();
        assert!(!acc.is_pending());
        assert_eq!(
            parse(&full).unwrap(),
            vec![kv("InitiatorName", "iqn.x"), kv("SessionType", "Normal")]
        );
        assert_eq!(acc.buffered(), 0);
    }

    #[test]
    fn accumulator_is_bounded() {
        let mut acc = TextAccumulator::new(16);
        assert_eq!(acc.push(&[b'a'; 10], true).unwrap(), None);
        assert_eq!(
            acc.push(&[b'a'; 7], true),
            Err(TextError::TooLong { len: 17, limit: 16 })
        );
        assert_eq!(acc.buffered(), 0);
        assert!(!acc.is_pending());
        // Exactly at the limit is fine.
        assert_eq!(acc.push(&[b'a'; 16], false).unwrap().unwrap().len(), 16);
    }

    #[test]
    fn writer_builds_and_splits() {
        let mut w = TextWriter::new();
        w.push("HeaderDigest", "None").unwrap();
        w.push("MaxRecvDataSegmentLength", "262144").unwrap();
        assert!(w.contains_key("HeaderDigest"));
        assert!(!w.contains_key("Header"));
        assert!(!w.contains_key("DataDigest"));
        let bytes = w.as_bytes().to_vec();
        assert_eq!(
            bytes,
            b"HeaderDigest=None\0MaxRecvDataSegmentLength=262144\0"
        );
        let pieces = w.segments(10);
        assert!(pieces.iter().all(|p| p.len() <= 10));
        assert_eq!(pieces.concat(), bytes);
        assert_eq!(split_segments(&[], 512), vec![&[0u8; 0][..]]);
        assert_eq!(split_segments(b"abc", 0).len(), 3);
        assert!(w.push("Bad Key", "x").is_err());
        assert!(w.push("A", "x\0y").is_err());
        assert!(w.push("A", &"v".repeat(256)).is_err());
        assert_eq!(w.into_bytes(), bytes);
    }
}
