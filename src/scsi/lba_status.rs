//! GET LBA STATUS parameter data (SBC-3, GET LBA STATUS command): the provisioning status of
//! consecutive ranges starting at the requested LBA, built from the extents the backend reports.
//!
//! Traps:
//! - The first descriptor must start exactly at the STARTING LOGICAL BLOCK ADDRESS, even when the
//!   backend's extent begins earlier: extents are clipped, and holes between reported extents are
//!   reported as mapped (the safe answer: an initiator may skip reading deallocated ranges). What
//!   follows the last reported extent is left out (the initiator asks again from there); with no
//!   extent at all the rest of the medium is reported mapped.
//! - NUMBER OF LOGICAL BLOCKS is 32 bits: longer extents are split.
//! - PARAMETER DATA LENGTH counts the bytes after itself (4 reserved + 16 per descriptor). We
//!   return as many descriptors as the allocation length holds (at least one, at most
//!   [`MAX_DESCRIPTORS`]); SBC-3 lets the device server stop early, and the initiator continues
//!   from the first LBA not covered.
//! - A STARTING LBA past the last LBA is LOGICAL BLOCK ADDRESS OUT OF RANGE (also checked in
//!   [`super::cdb::decode`]).

use super::geometry::LuGeometry;
use super::sense::CommandError;

/// Most descriptors returned by one GET LBA STATUS.
pub const MAX_DESCRIPTORS: usize = 1024;

/// A run of blocks with one provisioning state, as the backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaExtent {
    pub lba: u64,
    pub blocks: u64,
    pub mapped: bool,
}

/// PROVISIONING STATUS (SBC-3, GET LBA STATUS descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProvisioningStatus {
    Mapped = 0,
    Deallocated = 1,
    Anchored = 2,
}

fn push(runs: &mut Vec<(u64, u64, bool)>, lba: u64, blocks: u64, mapped: bool) {
    if blocks == 0 {
        return;
    }
    if let Some(last) = runs.last_mut() {
        if last.2 == mapped && last.0 + last.1 == lba {
            last.1 += blocks;
            return;
        }
    }
    runs.push((lba, blocks, mapped));
}

/// Logical-block extents from the backend's byte extents `(offset, len, mapped)` for blocks of
/// `block_size` bytes. The backend's granularity (the file system block) need not match the
/// logical block: a block is reported deallocated only when all of it lies in a hole, so a
/// deallocated extent shrinks to the whole blocks inside it and a mapped one grows to the blocks
/// it touches.
pub fn extents_from_bytes(
    extents: impl IntoIterator<Item = (u64, u64, bool)>,
    block_size: u64,
) -> Vec<LbaExtent> {
    let bs = block_size.max(1);
    extents
        .into_iter()
        .filter_map(|(offset, len, mapped)| {
            let end = offset.saturating_add(len);
            let (first, last) = if mapped {
                (offset / bs, end.div_ceil(bs))
            } else {
                (offset.div_ceil(bs), end / bs)
            };
            (last > first).then(|| LbaExtent {
                lba: first,
                blocks: last - first,
                mapped,
            })
        })
        .collect()
}

/// GET LBA STATUS parameter data for STARTING LBA `start_lba` from `extents` (any order; overlaps
/// resolved in favour of the earlier-starting extent), LOGICAL BLOCK ADDRESS OUT OF RANGE when
/// `start_lba` is past the last LBA.
pub fn get_lba_status(
    start_lba: u64,
    extents: &[LbaExtent],
    geom: &LuGeometry,
    alloc_len: u32,
) -> Result<Vec<u8>, CommandError> {
    if start_lba >= geom.num_blocks {
        return Err(CommandError::lba_out_of_range());
    }
    Ok(build(
        start_lba,
        geom.num_blocks,
        extents.to_vec(),
        alloc_len,
    ))
}

/// GET LBA STATUS parameter data from runs of `(lba, blocks, mapped)` the backend reported for a
/// request starting at the first run's LBA (the caller has already checked that LBA against the
/// capacity). Runs are sorted, clipped to that start, merged and split as in [`get_lba_status`];
/// holes between runs are reported mapped.
pub fn get_lba_status_data(runs: &[(u64, u64, bool)], alloc_len: u32) -> Vec<u8> {
    let extents: Vec<LbaExtent> = runs
        .iter()
        .map(|&(lba, blocks, mapped)| LbaExtent {
            lba,
            blocks,
            mapped,
        })
        .collect();
    let start = extents.iter().map(|e| e.lba).min().unwrap_or(0);
    let end = extents
        .iter()
        .map(|e| e.lba.saturating_add(e.blocks))
        .max()
        .unwrap_or(start);
    build(start, end, extents, alloc_len)
}

/// Descriptors from `start` (< `end`, unless there is nothing to report) up to `end` at most.
fn build(start: u64, end: u64, mut extents: Vec<LbaExtent>, alloc_len: u32) -> Vec<u8> {
    let max = (alloc_len.saturating_sub(8) / 16).clamp(1, MAX_DESCRIPTORS as u32) as usize;
    extents.sort_by_key(|e| e.lba);

    let mut runs: Vec<(u64, u64, bool)> = Vec::new();
    let mut cursor = start;
    for e in extents {
        if cursor >= end || runs.len() > max {
            break;
        }
        let e_end = e.lba.saturating_add(e.blocks).min(end);
        let s = e.lba.max(cursor);
        if e_end <= s {
            continue; // empty, before the cursor, or past the end
        }
        push(&mut runs, cursor, s - cursor, true);
        push(&mut runs, s, e_end - s, e.mapped);
        cursor = e_end;
    }
    if runs.is_empty() {
        push(&mut runs, start, end.saturating_sub(start), true);
    }

    let mut out = vec![0u8; 8];
    let mut n = 0;
    'runs: for (mut lba, mut blocks, mapped) in runs {
        while blocks > 0 {
            if n == max {
                break 'runs;
            }
            let chunk = blocks.min(u64::from(u32::MAX));
            out.extend_from_slice(&lba.to_be_bytes());
            out.extend_from_slice(&(chunk as u32).to_be_bytes());
            let status = if mapped {
                ProvisioningStatus::Mapped
            } else {
                ProvisioningStatus::Deallocated
            };
            out.extend_from_slice(&[status as u8, 0, 0, 0]);
            lba += chunk;
            blocks -= chunk;
            n += 1;
        }
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    fn ext(lba: u64, blocks: u64, mapped: bool) -> LbaExtent {
        LbaExtent {
            lba,
            blocks,
            mapped,
        }
    }

    fn descs(d: &[u8]) -> Vec<(u64, u32, u8)> {
        assert_eq!(
            u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize,
            d.len() - 4
        );
        assert_eq!(&d[4..8], &[0; 4]);
        d[8..]
            .chunks_exact(16)
            .map(|c| {
                assert_eq!(&c[13..], &[0, 0, 0]);
                (
                    u64::from_be_bytes(c[..8].try_into().unwrap()),
                    u32::from_be_bytes(c[8..12].try_into().unwrap()),
                    c[12],
                )
            })
            .collect()
    }

    #[test]
    fn single_descriptor_layout() {
        let g = LuGeometry::new(512, 1000);
        let d = get_lba_status(10, &[ext(0, 100, false)], &g, 24).unwrap();
        assert_eq!(d.len(), 24);
        assert_eq!(&d[..8], &[0, 0, 0, 20, 0, 0, 0, 0]);
        assert_eq!(
            &d[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 90, 1, 0, 0, 0]
        );
    }

    #[test]
    fn merges_fills_and_clips() {
        let g = LuGeometry::new(512, 1000);
        let e = [
            ext(500, 600, true),
            ext(0, 50, true),
            ext(50, 50, true),
            ext(200, 100, false),
        ];
        let d = get_lba_status(20, &e, &g, 4096).unwrap();
        assert_eq!(descs(&d), vec![(20, 180, 0), (200, 100, 1), (300, 700, 0)]);
        // Nothing reported: all mapped to the end.
        assert_eq!(
            descs(&get_lba_status(999, &[], &g, 100).unwrap()),
            vec![(999, 1, 0)]
        );
        // Extents entirely before the start.
        assert_eq!(
            descs(&get_lba_status(600, &[ext(0, 10, false)], &g, 100).unwrap()),
            vec![(600, 400, 0)]
        );
    }

    #[test]
    fn truncated_by_alloc_len() {
        let g = LuGeometry::new(512, 1000);
        let e: Vec<LbaExtent> = (0..10).map(|i| ext(i * 10, 10, i % 2 == 0)).collect();
        assert_eq!(
            descs(&get_lba_status(0, &e, &g, 8 + 3 * 16).unwrap()).len(),
            3
        );
        assert_eq!(descs(&get_lba_status(0, &e, &g, 0).unwrap()).len(), 1);
        // What the backend did not report after its last extent is left for the next command.
        assert_eq!(
            descs(&get_lba_status(0, &e, &g, u32::MAX).unwrap()).len(),
            10
        );
    }

    #[test]
    fn splits_long_extents() {
        let g = LuGeometry::new(512, 1 << 40);
        let d = descs(&get_lba_status(0, &[ext(0, 1 << 33, false)], &g, 1024).unwrap());
        assert_eq!(d[0], (0, u32::MAX, 1));
        assert_eq!(d[1], (u64::from(u32::MAX), u32::MAX, 1));
        assert_eq!(d[2], (2 * u64::from(u32::MAX), 2, 1));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn from_backend_runs() {
        let runs = [
            (100, 10, true),
            (110, 20, false),
            (130, 5, false),
            (140, 4, true),
        ];
        assert_eq!(
            descs(&get_lba_status_data(&runs, 1024)),
            vec![(100, 10, 0), (110, 25, 1), (135, 9, 0)]
        );
        assert_eq!(descs(&get_lba_status_data(&runs, 24)), vec![(100, 10, 0)]);
        assert_eq!(get_lba_status_data(&[], 24), vec![0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(
            descs(&get_lba_status_data(&[(u64::MAX - 1, 5, false)], 24)),
            vec![(u64::MAX - 1, 1, 1)]
        );
    }

    #[test]
    fn byte_extents_to_blocks() {
        // 4 KiB file system blocks under 512-byte logical blocks: whole-block holes.
        let e = extents_from_bytes([(0, 4096, false), (4096, 8192, true)], 512);
        assert_eq!(e, vec![ext(0, 8, false), ext(8, 16, true)]);
        // A hole that covers part of a logical block does not deallocate it.
        let e = extents_from_bytes(
            [(0, 1024, true), (1024, 1024, false), (2048, 6144, true)],
            4096,
        );
        assert_eq!(e, vec![ext(0, 1, true), ext(0, 2, true)]);
        // A query starting inside a hole: the deallocated extent starts at the next whole block.
        let e = extents_from_bytes([(4608, 3584, false), (8192, 512, true)], 512);
        assert_eq!(e, vec![ext(9, 7, false), ext(16, 1, true)]);
        assert!(extents_from_bytes([(512, 0, true), (10, 100, false)], 512).is_empty());
        assert_eq!(
            extents_from_bytes([(u64::MAX - 10, 100, true)], 0).len(),
            1,
            "no overflow"
        );
    }

    #[test]
    fn first_descriptor_starts_at_the_requested_lba() {
        // The backend reports from the start of the byte range asked for, which may lie inside a
        // deallocated or mapped block run; the first descriptor still starts at STARTING LBA.
        let g = LuGeometry::new(512, 1000);
        let e = extents_from_bytes([(4608, 3584, true), (8192, 4096, false)], 512);
        assert_eq!(
            descs(&get_lba_status(9, &e, &g, 1024).unwrap()),
            vec![(9, 7, 0), (16, 8, 1)]
        );
        let e = extents_from_bytes([(0, 4096, true)], 512);
        assert_eq!(
            descs(&get_lba_status(3, &e, &g, 24).unwrap()),
            vec![(3, 5, 0)]
        );
        // Nothing reported: the rest of the medium, mapped, from STARTING LBA (not from LBA 0).
        assert_eq!(
            descs(&get_lba_status(7, &[], &g, 24).unwrap()),
            vec![(7, 993, 0)]
        );
    }

    #[test]
    fn extents_past_the_end_are_ignored() {
        let g = LuGeometry::new(512, 1000);
        let e = [
            ext(2000, 10, false),
            ext(990, 100, false),
            ext(500, 0, false),
        ];
        assert_eq!(
            descs(&get_lba_status(400, &e, &g, 1024).unwrap()),
            vec![(400, 590, 0), (990, 10, 1)]
        );
        assert_eq!(
            descs(&get_lba_status(0, &[ext(5000, 1, false)], &g, 1024).unwrap()),
            vec![(0, 1000, 0)]
        );
    }

    #[test]
    fn out_of_range() {
        let g = LuGeometry::new(512, 1000);
        for lba in [1000, 1001, u64::MAX] {
            let e = get_lba_status(lba, &[], &g, 24).unwrap_err();
            assert_eq!(e.sense.unwrap().asc, Asc::LBA_OUT_OF_RANGE);
        }
    }
}
