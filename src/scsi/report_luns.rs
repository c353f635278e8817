//! REPORT LUNS (SPC-4 §6.33) and the single-level LUN formats of SAM-5 (LUN structure):
//! peripheral device addressing (00b) for LUNs below 256, flat space addressing (01b) for
//! 256..=16383.
//!
//! Well-known LUN and LUN 0: SPC-4 requires every target to answer REPORT LUNS addressed to
//! LUN 0 even when no logical unit 0 is configured (that is how an initiator discovers the others;
//! the REPORT LUNS well-known LUN C101h is the alternative and we do not implement well-known
//! LUNs). The dispatcher therefore routes REPORT LUNS (and INQUIRY, answered with
//! [`super::inquiry::inquiry_no_lun`]) to a LUN 0 stand-in when LUN 0 does not exist; SELECT REPORT
//! 01h (well-known LUNs only) returns an empty list.
//!
//! Traps:
//! - The LUN LIST LENGTH counts the LUN bytes only (8 per LUN), not the 8-byte header, and is the
//!   length of the full list even when the allocation length truncates it.
//! - An ALLOCATION LENGTH below 16 is INVALID FIELD IN CDB (SPC-4; checked here and in
//!   [`super::cdb::decode`]), before SELECT REPORT is looked at.
//! - LUN 256 is not peripheral address 0 on bus 1: above 255 the flat format (byte 0 = 40h | high
//!   bits) must be used, which is also what Linux's int_to_scsilun does.

use super::sense::CommandError;

/// SELECT REPORT 00h: logical units, no well-known LUNs.
pub const SELECT_LOGICAL_UNITS: u8 = 0x00;
/// SELECT REPORT 01h: well-known LUNs only.
pub const SELECT_WELL_KNOWN: u8 = 0x01;
/// SELECT REPORT 02h: everything.
pub const SELECT_ALL: u8 = 0x02;

/// Largest LUN the flat space format can carry.
pub const MAX_LUN: u16 = 0x3FFF;

/// The 8-byte LUN for `lun`: peripheral device addressing below 256, flat space addressing up to
/// 16383, `None` above.
pub fn encode_lun(lun: u16) -> Option<[u8; 8]> {
    let [hi, lo] = lun.to_be_bytes();
    match lun {
        0..=0xFF => Some([0x00, lo, 0, 0, 0, 0, 0, 0]),
        0x100..=MAX_LUN => Some([0x40 | hi, lo, 0, 0, 0, 0, 0, 0]),
        _ => None,
    }
}

/// The LUN number of an 8-byte single-level LUN in peripheral (bus 0) or flat format, `None` for
/// anything else (other bus, other address methods, extended or multi-level LUNs).
pub fn decode_lun(raw: [u8; 8]) -> Option<u16> {
    if raw[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match raw[0] >> 6 {
        0b00 if raw[0] == 0 => Some(u16::from(raw[1])),
        0b01 => Some(u16::from_be_bytes([raw[0] & 0x3F, raw[1]])),
        _ => None,
    }
}

/// REPORT LUNS parameter data for the configured `luns` (any order, duplicates ignored, LUNs above
/// 16383 skipped) and SELECT REPORT `select_report`: INVALID FIELD IN CDB for a select report
/// code other than 00h/01h/02h (byte 2) or an ALLOCATION LENGTH below 16 (byte 6). The caller
/// truncates to `alloc_len`.
pub fn report_luns(
    luns: &[u16],
    select_report: u8,
    alloc_len: u32,
) -> Result<Vec<u8>, CommandError> {
    if alloc_len < 16 {
        return Err(CommandError::invalid_field_in_cdb(6, None));
    }
    let mut list: Vec<u16> = match select_report {
        SELECT_LOGICAL_UNITS | SELECT_ALL => {
            luns.iter().copied().filter(|&l| l <= MAX_LUN).collect()
        }
        SELECT_WELL_KNOWN => Vec::new(),
        _ => return Err(CommandError::invalid_field_in_cdb(2, None)),
    };
    list.sort_unstable();
    list.dedup();
    let mut out = Vec::with_capacity(8 + 8 * list.len());
    out.extend_from_slice(&((8 * list.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for lun in list {
        if let Some(raw) = encode_lun(lun) {
            out.extend_from_slice(&raw);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    #[test]
    fn encoding() {
        assert_eq!(encode_lun(0), Some([0; 8]));
        assert_eq!(encode_lun(5), Some([0, 5, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(255), Some([0, 0xFF, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(256), Some([0x41, 0x00, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(0x3FFF), Some([0x7F, 0xFF, 0, 0, 0, 0, 0, 0]));
        assert_eq!(encode_lun(0x4000), None);
        for lun in [0, 1, 255, 256, 1000, 0x3FFF] {
            assert_eq!(decode_lun(encode_lun(lun).unwrap()), Some(lun));
        }
        assert_eq!(decode_lun([0x01, 0x05, 0, 0, 0, 0, 0, 0]), None, "bus 1");
        assert_eq!(
            decode_lun([0x00, 0x05, 0x40, 0x01, 0, 0, 0, 0]),
            None,
            "second level"
        );
        assert_eq!(
            decode_lun([0xC1, 0x01, 0, 0, 0, 0, 0, 0]),
            None,
            "well-known LUN"
        );
        assert_eq!(
            decode_lun([0x40, 0x05, 0, 0, 0, 0, 0, 0]),
            Some(5),
            "flat LUN below 256"
        );
    }

    #[test]
    fn report() {
        let d = report_luns(&[300, 0, 2, 2, 0x4000], SELECT_LOGICAL_UNITS, 256).unwrap();
        assert_eq!(d.len(), 8 + 24);
        assert_eq!(&d[..8], &[0, 0, 0, 24, 0, 0, 0, 0]);
        assert_eq!(&d[8..16], &[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&d[16..24], &[0, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&d[24..32], &[0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            report_luns(&[1], SELECT_ALL, 256).unwrap(),
            report_luns(&[1], 0, 256).unwrap()
        );
        assert_eq!(
            report_luns(&[1], SELECT_WELL_KNOWN, 256).unwrap(),
            vec![0; 8]
        );
        assert_eq!(report_luns(&[], SELECT_ALL, 256).unwrap(), vec![0; 8]);
        for alloc in 0..16 {
            let e = report_luns(&[1], 0, alloc).unwrap_err().sense.unwrap();
            assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
            assert_eq!(
                e.sense_key_specific,
                Some(crate::scsi::sense::field_pointer(true, 6, None))
            );
        }
        assert!(report_luns(&[1], 0, 16).is_ok());
        for sel in [3u8, 0x10, 0x11, 0x12, 0xFF] {
            let e = report_luns(&[1], sel, 256).unwrap_err();
            assert_eq!(e.sense.unwrap().asc, Asc::INVALID_FIELD_IN_CDB);
        }
    }
}
