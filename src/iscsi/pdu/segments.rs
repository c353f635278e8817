//! What surrounds the BHS: segment padding, the Additional Header Segments of a SCSI Command
//! (RFC 7143 §11.2.2, §11.3.5), the SCSI Response sense-data segment (§11.4.7) and the SAM-5
//! LUN encodings used in the 8-byte LUN field (§11.2.1.4).

use super::bhs::{invalid, PduError};

/// Bytes of zero padding that bring a segment of `n` bytes to a 4-byte boundary.
pub fn pad_len(n: usize) -> usize {
    (4 - n % 4) % 4
}

// ---------------------------------------------------------------------------------------------
// Sense data segment
// ---------------------------------------------------------------------------------------------

/// Appends a SCSI Response data segment holding `sense`: a 2-byte big-endian SenseLength, then
/// the sense bytes (RFC 7143 §11.4.7). Padding is not appended; DataSegmentLength is
/// `out.len()` growth. Sense longer than 65535 bytes (SPC caps it at 252) is cut.
pub fn sense_segment(sense: &[u8], out: &mut Vec<u8>) {
    let len = sense.len().min(usize::from(u16::MAX));
    let sense = sense.get(..len).unwrap_or_default();
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(sense);
}

/// Returns the sense bytes of a SCSI Response data segment (without padding). An empty segment
/// means "no sense data". Any iSCSI Response Data after the sense bytes is ignored.
pub fn parse_sense_segment(segment: &[u8]) -> Result<&[u8], PduError> {
    if segment.is_empty() {
        return Ok(&[]);
    }
    let (len_bytes, rest) = segment
        .split_first_chunk::<2>()
        .ok_or(PduError::Truncated {
            needed: 2,
            got: segment.len(),
        })?;
    let sense_len = usize::from(u16::from_be_bytes(*len_bytes));
    rest.get(..sense_len).ok_or(PduError::Truncated {
        needed: 2 + sense_len,
        got: segment.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Additional Header Segments
// ---------------------------------------------------------------------------------------------

/// AHSType of the Extended CDB AHS.
pub const AHS_EXTENDED_CDB: u8 = 1;
/// AHSType of the Expected Bidirectional Read Data Length AHS.
pub const AHS_BIDI_READ_LEN: u8 = 2;
/// Longest extended-CDB tail one AHS can carry (AHSLength is 16 bits and counts the reserved
/// byte too).
pub const MAX_EXTENDED_CDB_LEN: usize = u16::MAX as usize - 1;

/// What the AHSs of a SCSI Command carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AhsInfo<'a> {
    /// CDB bytes beyond the first 16 (empty when there is no Extended CDB AHS); the whole CDB is
    /// the BHS's 16 bytes followed by these.
    pub extended_cdb: &'a [u8],
    /// Expected Bidirectional Read Data Length, when that AHS is present.
    pub bidi_read_len: Option<u32>,
}

/// Parses the AHS area of a PDU (the `TotalAHSLength * 4` bytes after the BHS). Each AHS is
/// AHSLength (2 bytes), AHSType (1 byte) and AHSLength bytes of AHS-specific data, padded to 4
/// bytes. Types 60..=63 (non-iSCSI extensions) are skipped; other unknown types, duplicates,
/// lengths running past the buffer and malformed bodies are errors. Never panics.
pub fn parse_ahs(ahs: &[u8]) -> Result<AhsInfo<'_>, PduError> {
    let mut info = AhsInfo::default();
    let (mut seen_cdb, mut rest) = (false, ahs);
    while !rest.is_empty() {
        let (ahs_type, body, next) = split_one_ahs(rest)?;
        match ahs_type {
            AHS_EXTENDED_CDB if seen_cdb => return Err(PduError::DuplicateAhs(ahs_type)),
            AHS_EXTENDED_CDB => {
                info.extended_cdb = extended_cdb_body(body)?;
                seen_cdb = true;
            }
            AHS_BIDI_READ_LEN if info.bidi_read_len.is_some() => {
                return Err(PduError::DuplicateAhs(ahs_type))
            }
            AHS_BIDI_READ_LEN => info.bidi_read_len = Some(bidi_read_len_body(body)?),
            60..=63 => {}
            other => return Err(PduError::UnsupportedAhsType(other)),
        }
        rest = next;
    }
    Ok(info)
}

/// Splits the first AHS off `buf`: (type, AHS-specific bytes, what follows its padding).
fn split_one_ahs(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), PduError> {
    let (&[len_hi, len_lo, ahs_type], after_header) =
        buf.split_first_chunk::<3>().ok_or(PduError::Truncated {
            needed: 4,
            got: buf.len(),
        })?;
    let body_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let padded = 3 + body_len + pad_len(3 + body_len);
    if padded > buf.len() {
        return Err(PduError::AhsTooLong);
    }
    let body = after_header.get(..body_len).ok_or(PduError::AhsTooLong)?;
    let next = buf.get(padded..).ok_or(PduError::AhsTooLong)?;
    Ok((ahs_type, body, next))
}

/// Extended CDB AHS body: one reserved byte, then the CDB tail.
fn extended_cdb_body(body: &[u8]) -> Result<&[u8], PduError> {
    match body.split_first() {
        Some((_reserved, cdb)) if !cdb.is_empty() => Ok(cdb),
        _ => Err(invalid("AHSLength", body.len() as u32)),
    }
}

/// Expected Bidirectional Read Data Length AHS body: one reserved byte, then a u32.
fn bidi_read_len_body(body: &[u8]) -> Result<u32, PduError> {
    match body {
        [_reserved, a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(invalid("AHSLength", body.len() as u32)),
    }
}

/// Appends the AHSs describing `info` (Extended CDB first, then bidi length), each padded to 4
/// bytes. The SCSI Command's `ahs_len_words` is the appended length / 4. An extended CDB longer
/// than [`MAX_EXTENDED_CDB_LEN`] is cut (real CDBs stop at 260 bytes).
pub fn encode_ahs(info: &AhsInfo<'_>, out: &mut Vec<u8>) {
    if !info.extended_cdb.is_empty() {
        let len = info.extended_cdb.len().min(MAX_EXTENDED_CDB_LEN);
        let cdb = info.extended_cdb.get(..len).unwrap_or_default();
        push_ahs(out, AHS_EXTENDED_CDB, cdb);
    }
    if let Some(len) = info.bidi_read_len {
        push_ahs(out, AHS_BIDI_READ_LEN, &len.to_be_bytes());
    }
}

/// One AHS: AHSLength counts the reserved byte plus `payload`.
fn push_ahs(out: &mut Vec<u8>, ahs_type: u8, payload: &[u8]) {
    let body_len = 1 + payload.len();
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    out.extend_from_slice(&[ahs_type, 0]);
    out.extend_from_slice(payload);
    out.resize(out.len() + pad_len(3 + body_len), 0);
}

// ---------------------------------------------------------------------------------------------
// LUN field
// ---------------------------------------------------------------------------------------------

/// Largest LUN a single-level flat-space address carries.
pub const MAX_FLAT_LUN: u16 = 0x3fff;

/// Encodes a LUN for the 8-byte LUN field as a SAM-5 single-level address: peripheral device
/// addressing (method 00b, bus 0) below 256, flat space (01b) from 256 to [`MAX_FLAT_LUN`].
/// Bits above 14 are dropped, so callers keep LUNs at or below `MAX_FLAT_LUN`.
pub fn encode_lun(lun: u16) -> u64 {
    let [hi, lo] = (lun & MAX_FLAT_LUN).to_be_bytes();
    let method = if hi == 0 { 0x00 } else { 0x40 };
    u64::from_be_bytes([method | hi, lo, 0, 0, 0, 0, 0, 0])
}

/// Decodes a single-level peripheral (00b, bus 0) or flat-space (01b) LUN; any other address
/// method, a non-zero bus number or a second level returns `None`.
pub fn decode_lun(raw: u64) -> Option<u16> {
    let [b0, b1, rest @ ..] = raw.to_be_bytes();
    if rest != [0; 6] {
        return None;
    }
    match b0 >> 6 {
        0b00 if b0 == 0 => Some(u16::from(b1)),
        0b01 => Some(u16::from_be_bytes([b0 & 0x3f, b1])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_len_rounds_to_four() {
        let expected = [0, 3, 2, 1, 0, 3, 2, 1, 0];
        for (n, pad) in expected.iter().enumerate() {
            assert_eq!(pad_len(n), *pad, "n={n}");
        }
        assert_eq!(pad_len(0xff_ffff), 1);
    }

    #[test]
    fn sense_segment_prefixes_big_endian_length() {
        let sense = [
            0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0,
        ];
        let mut seg = Vec::new();
        sense_segment(&sense, &mut seg);
        assert_eq!(seg[..2], [0x00, 18]);
        assert_eq!(&seg[2..], &sense);
        assert_eq!(parse_sense_segment(&seg), Ok(&sense[..]));
    }

    #[test]
    fn sense_segment_parser_rejects_short_segments() {
        assert_eq!(parse_sense_segment(&[]), Ok(&[][..]));
        assert_eq!(
            parse_sense_segment(&[0]),
            Err(PduError::Truncated { needed: 2, got: 1 })
        );
        assert_eq!(
            parse_sense_segment(&[0, 4, 1, 2, 3]),
            Err(PduError::Truncated { needed: 6, got: 5 })
        );
        // Response data after the sense bytes is tolerated.
        assert_eq!(parse_sense_segment(&[0, 1, 9, 7, 7]), Ok(&[9u8][..]));
    }

    #[test]
    fn ahs_extended_cdb_and_bidi_round_trip() {
        let tail: Vec<u8> = (0..16).collect(); // a 32-byte CDB
        let info = AhsInfo {
            extended_cdb: &tail,
            bidi_read_len: Some(0x1000),
        };
        let mut buf = Vec::new();
        encode_ahs(&info, &mut buf);
        // 3 + 17 = 20 bytes (already aligned), then 3 + 5 = 8 bytes.
        assert_eq!(buf.len(), 28);
        assert_eq!(buf[..4], [0x00, 17, AHS_EXTENDED_CDB, 0]);
        assert_eq!(buf[20..], [0x00, 5, AHS_BIDI_READ_LEN, 0, 0, 0, 0x10, 0]);
        assert_eq!(parse_ahs(&buf), Ok(info));
    }

    #[test]
    fn ahs_padding_is_skipped() {
        let tail = [0xaa; 2]; // 3 + 3 = 6 bytes -> 2 of padding
        let mut buf = Vec::new();
        encode_ahs(
            &AhsInfo {
                extended_cdb: &tail,
                bidi_read_len: None,
            },
            &mut buf,
        );
        assert_eq!(buf, [0, 3, 1, 0, 0xaa, 0xaa, 0, 0]);
        assert_eq!(parse_ahs(&buf).map(|i| i.extended_cdb), Ok(&tail[..]));
    }

    #[test]
    fn ahs_garbage_is_an_error_not_a_panic() {
        let cases: [(&[u8], PduError); 8] = [
            (&[0], PduError::Truncated { needed: 4, got: 1 }),
            (&[0, 0xff, 1, 0], PduError::AhsTooLong),
            (&[0xff, 0xff, 1, 0, 1, 2, 3, 4], PduError::AhsTooLong),
            (&[0, 5, 2, 0, 0, 0, 0], PduError::AhsTooLong),
            (
                &[0, 1, 1, 0],
                PduError::InvalidField {
                    field: "AHSLength",
                    value: 1,
                },
            ),
            (
                &[0, 2, 2, 0, 0, 0, 0, 0],
                PduError::InvalidField {
                    field: "AHSLength",
                    value: 2,
                },
            ),
            (&[0, 1, 0, 0], PduError::UnsupportedAhsType(0)),
            (
                &[0, 2, 1, 0, 9, 0, 0, 0, 0, 2, 1, 0, 9, 0, 0, 0],
                PduError::DuplicateAhs(1),
            ),
        ];
        for (buf, err) in cases {
            assert_eq!(parse_ahs(buf), Err(err), "{buf:02x?}");
        }
        assert_eq!(parse_ahs(&[]), Ok(AhsInfo::default()));
        assert_eq!(
            parse_ahs(&[0, 1, 61, 0]),
            Ok(AhsInfo::default()),
            "vendor AHS skipped"
        );
        // Every prefix and every single-byte value of a valid area either parses or errors.
        let mut good = Vec::new();
        encode_ahs(
            &AhsInfo {
                extended_cdb: &[1, 2, 3],
                bidi_read_len: Some(7),
            },
            &mut good,
        );
        for cut in 0..good.len() {
            let _ = parse_ahs(&good[..cut]);
            for value in 0..=255u8 {
                let mut bad = good.clone();
                bad[cut] = value;
                let _ = parse_ahs(&bad);
            }
        }
    }

    #[test]
    fn lun_peripheral_and_flat_addressing() {
        assert_eq!(encode_lun(0), 0);
        assert_eq!(encode_lun(5).to_be_bytes(), [0x00, 0x05, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            encode_lun(255).to_be_bytes(),
            [0x00, 0xff, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode_lun(256).to_be_bytes(),
            [0x41, 0x00, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encode_lun(0x3fff).to_be_bytes(),
            [0x7f, 0xff, 0, 0, 0, 0, 0, 0]
        );
        for lun in [0u16, 1, 200, 255, 256, 1000, 0x3fff] {
            assert_eq!(decode_lun(encode_lun(lun)), Some(lun));
        }
        // Flat addressing of a small LUN is valid too.
        assert_eq!(
            decode_lun(u64::from_be_bytes([0x40, 7, 0, 0, 0, 0, 0, 0])),
            Some(7)
        );
    }

    #[test]
    fn lun_other_methods_are_none() {
        let none = [
            [0x01, 0x00, 0, 0, 0, 0, 0, 0],       // peripheral, bus 1
            [0x80, 0x01, 0, 0, 0, 0, 0, 0],       // logical unit addressing
            [0xc0, 0x01, 0, 0, 0, 0, 0, 0],       // extended addressing
            [0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0], // two levels
            [0x40, 0x01, 0, 0, 0, 0, 0, 1],
        ];
        for raw in none {
            assert_eq!(decode_lun(u64::from_be_bytes(raw)), None, "{raw:02x?}");
        }
    }
}
