//! UNMAP parameter list (SBC-3 §5.28): an 8-byte header (UNMAP DATA LENGTH, UNMAP BLOCK
//! DESCRIPTOR DATA LENGTH, 4 reserved bytes) and 16-byte block descriptors (LBA, NUMBER OF
//! LOGICAL BLOCKS, 4 reserved bytes).
//!
//! Errors and their sense:
//! - PARAMETER LIST LENGTH 1..=7 (a list too short for the header): PARAMETER LIST LENGTH ERROR.
//!   A length of 0 is not an error: nothing is unmapped.
//! - More descriptors than MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT, or more LBAs in total than
//!   MAXIMUM UNMAP LBA COUNT: INVALID FIELD IN PARAMETER LIST.
//! - A descriptor past the end of the medium (or whose LBA + count wraps): LOGICAL BLOCK ADDRESS
//!   OUT OF RANGE.
//!
//! Traps:
//! - UNMAP BLOCK DESCRIPTOR DATA LENGTH that is not a multiple of 16 leaves an incomplete last
//!   descriptor, which is ignored; one larger than the data actually sent is clamped to it (as
//!   LIO does) instead of reading past the buffer.
//! - A descriptor with 0 blocks is valid even at LBA == number of blocks (libiscsi
//!   `Unmap.ZeroBlocks` sends 256 of them, so MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT must be at
//!   least 256 to pass it); it is validated and counted but not returned.
//! - The whole list is validated before anything is returned: UNMAP is all-or-nothing here.

use super::geometry::LuGeometry;
use super::sense::CommandError;

/// One range to deallocate: (LBA, number of blocks).
pub type UnmapRange = (u64, u32);

/// Parses and validates an UNMAP parameter list (`params` is the whole Data-Out buffer, its
/// length the PARAMETER LIST LENGTH) into the ranges to deallocate, zero-length descriptors left
/// out (at most `geom.max_unmap_descriptors` of them).
pub fn parse_unmap(params: &[u8], geom: &LuGeometry) -> Result<Vec<UnmapRange>, CommandError> {
    let mut out = Vec::new();
    parse_unmap_into(params, geom, &mut out)?;
    Ok(out)
}

/// [`parse_unmap`] into a caller-provided vector (cleared first, and left empty on error), so a
/// reactor can reuse its allocation.
pub fn parse_unmap_into(
    params: &[u8],
    geom: &LuGeometry,
    out: &mut Vec<UnmapRange>,
) -> Result<(), CommandError> {
    out.clear();
    let r = parse(params, geom, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn parse(params: &[u8], geom: &LuGeometry, out: &mut Vec<UnmapRange>) -> Result<(), CommandError> {
    if params.is_empty() {
        return Ok(());
    }
    if params.len() < 8 {
        return Err(CommandError::parameter_list_length_error());
    }
    let declared = usize::from(u16::from_be_bytes([params[2], params[3]]));
    let usable = declared.min(params.len() - 8);
    let count = usable / 16;
    if geom.max_unmap_descriptors != u32::MAX && count > geom.max_unmap_descriptors as usize {
        return Err(CommandError::invalid_field_in_param(2, None));
    }
    let mut total: u64 = 0;
    for (i, d) in params[8..8 + count * 16].chunks_exact(16).enumerate() {
        let mut lba = [0u8; 8];
        lba.copy_from_slice(&d[0..8]);
        let lba = u64::from_be_bytes(lba);
        let blocks = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        geom.check_range(lba, u64::from(blocks))?;
        total += u64::from(blocks);
        if geom.max_unmap_lba_count != u32::MAX && total > u64::from(geom.max_unmap_lba_count) {
            return Err(CommandError::invalid_field_in_param(
                (8 + 16 * i + 8) as u16,
                None,
            ));
        }
        if blocks != 0 {
            out.push((lba, blocks));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{field_pointer, Asc};

    fn g() -> LuGeometry {
        let mut g = LuGeometry::new(512, 10_000);
        g.thin = true;
        g.max_unmap_descriptors = 4;
        g.max_unmap_lba_count = 1000;
        g
    }

    fn list(descs: &[(u64, u32)]) -> Vec<u8> {
        let bd = (descs.len() * 16) as u16;
        let mut v = Vec::new();
        v.extend_from_slice(&(bd + 6).to_be_bytes());
        v.extend_from_slice(&bd.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        for &(lba, n) in descs {
            v.extend_from_slice(&lba.to_be_bytes());
            v.extend_from_slice(&n.to_be_bytes());
            v.extend_from_slice(&[0; 4]);
        }
        v
    }

    fn parse_ok(params: &[u8]) -> Vec<UnmapRange> {
        parse_unmap(params, &g()).unwrap()
    }

    fn parse_err(params: &[u8]) -> crate::scsi::sense::Sense {
        let mut out = vec![(1, 1)];
        let e = parse_unmap_into(params, &g(), &mut out).unwrap_err();
        assert!(out.is_empty());
        e.sense.unwrap()
    }

    #[test]
    fn good_lists() {
        assert_eq!(parse_ok(&[]), vec![]);
        assert_eq!(parse_ok(&list(&[])), vec![]);
        assert_eq!(
            parse_ok(&list(&[(0, 8), (100, 0), (9_990, 10)])),
            vec![(0, 8), (9_990, 10)]
        );
        // Zero blocks at the end of the medium.
        assert_eq!(parse_ok(&list(&[(10_000, 0)])), vec![]);
        // Truncated last descriptor ignored.
        let mut l = list(&[(5, 5)]);
        l.extend_from_slice(&[0; 10]);
        l[2..4].copy_from_slice(&26u16.to_be_bytes());
        assert_eq!(parse_ok(&l), vec![(5, 5)]);
        // Descriptor length larger than what was sent: clamped.
        let mut l = list(&[(5, 5)]);
        l[2..4].copy_from_slice(&0xFFF0u16.to_be_bytes());
        assert_eq!(parse_ok(&l), vec![(5, 5)]);
        // Descriptor length smaller: only what it covers.
        let mut l = list(&[(5, 5), (20, 5)]);
        l[2..4].copy_from_slice(&16u16.to_be_bytes());
        assert_eq!(parse_ok(&l), vec![(5, 5)]);
    }

    #[test]
    fn header_too_short() {
        for n in 1..8 {
            assert_eq!(parse_err(&vec![0; n]).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
        }
    }

    #[test]
    fn limits() {
        let s = parse_err(&list(&[(0, 1); 5]));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(s.sense_key_specific, Some(field_pointer(false, 2, None)));
        assert_eq!(parse_ok(&list(&[(0, 1); 4])).len(), 4);
        let s = parse_err(&list(&[(0, 600), (1000, 401)]));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(
            s.sense_key_specific,
            Some(field_pointer(false, 8 + 16 + 8, None))
        );
        assert_eq!(parse_ok(&list(&[(0, 600), (1000, 400)])).len(), 2);
        // No limits.
        let mut nolimit = g();
        nolimit.max_unmap_descriptors = u32::MAX;
        nolimit.max_unmap_lba_count = u32::MAX;
        assert_eq!(
            parse_unmap(&list(&[(0, 5000); 8]), &nolimit).unwrap().len(),
            8
        );
    }

    #[test]
    fn lba_out_of_range() {
        assert_eq!(parse_err(&list(&[(9_999, 2)])).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(parse_err(&list(&[(10_001, 0)])).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(
            parse_err(&list(&[(u64::MAX, 1)])).asc,
            Asc::LBA_OUT_OF_RANGE
        );
        assert_eq!(
            parse_err(&list(&[(0, 1), (1 << 63, 1)])).asc,
            Asc::LBA_OUT_OF_RANGE
        );
    }
}
