//! Logical unit geometry and limits: what READ CAPACITY (SBC-3 §5.15, §5.16), the Block Limits
//! VPD page (SBC-3 §6.5.3) and the Logical Block Provisioning VPD page (SBC-3 §6.5.4) report,
//! and the LBA range check every medium-access command makes (SBC-3 logical block
//! addressing).
//!
//! Traps:
//! - `lba + blocks` overflows u64 for LBAs near 2^64 (libiscsi sends LBA = -1 on purpose): the
//!   check uses checked arithmetic and reports LOGICAL BLOCK ADDRESS OUT OF RANGE, never wraps.
//! - A transfer of zero blocks at `lba == num_blocks` is not an error (nothing is accessed), but
//!   any LBA beyond that is, even with a zero transfer length (libiscsi `*_0blocks` tests).
//! - `num_blocks` is the number of blocks, not the last LBA that READ CAPACITY returns.

use super::sense::Sense;

/// Geometry and per-command limits of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuGeometry {
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Number of logical blocks; the last LBA is `num_blocks - 1`.
    pub num_blocks: u64,
    /// log2(physical block size / logical block size), 0..=15.
    pub physical_block_exp: u8,
    /// Thin provisioned: LBPME=1, UNMAP and WRITE SAME with UNMAP supported.
    pub thin: bool,
    /// Unmapped blocks read back as zeros (LBPRZ); only meaningful with `thin`.
    pub lbprz: bool,
    /// MAXIMUM TRANSFER LENGTH in blocks; 0 = no limit.
    pub max_transfer_blocks: u32,
    /// OPTIMAL TRANSFER LENGTH in blocks; 0 = not reported.
    pub optimal_transfer_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT (total per UNMAP command); u32::MAX = no limit.
    pub max_unmap_lba_count: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT; u32::MAX = no limit.
    pub max_unmap_descriptors: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks; 0 = no limit.
    pub max_write_same_blocks: u64,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks; 0 = COMPARE AND WRITE of more than 0 blocks
    /// is refused.
    pub max_compare_write_blocks: u8,
    /// OPTIMAL UNMAP GRANULARITY in blocks.
    pub unmap_granularity_blocks: u32,
}

impl LuGeometry {
    /// A geometry with ringsan's default limits: 8 MiB maximum and 1 MiB optimal transfers, one
    /// block COMPARE AND WRITE (what VMware ATS and Linux use), 256 UNMAP descriptors (libiscsi's
    /// Unmap.ZeroBlocks sends 256) of at most 1 Mi blocks in total, WRITE SAME of at most the
    /// maximum transfer length, and an unmap granularity of one physical block.
    ///
    /// MAXIMUM WRITE SAME LENGTH is kept at or below MAXIMUM TRANSFER LENGTH: initiators (libiscsi
    /// `WriteSame16.Unmap`) write and read back as many blocks as one WRITE SAME may cover, and
    /// those READs and WRITEs must fit the transfer limit.
    pub fn new(block_size: u32, num_blocks: u64) -> Self {
        let bs = block_size.max(1);
        let max_transfer_blocks = ((8u32 << 20) / bs).max(1);
        Self {
            block_size,
            num_blocks,
            physical_block_exp: 0,
            thin: false,
            lbprz: false,
            max_transfer_blocks,
            optimal_transfer_blocks: ((1u32 << 20) / bs).max(1),
            max_unmap_lba_count: 1 << 20,
            max_unmap_descriptors: 256,
            max_write_same_blocks: u64::from(max_transfer_blocks),
            max_compare_write_blocks: 1,
            unmap_granularity_blocks: 1,
        }
    }

    /// The last LBA (0 for an empty unit).
    pub fn last_lba(&self) -> u64 {
        self.num_blocks.saturating_sub(1)
    }

    /// Physical block size in bytes.
    pub fn physical_block_size(&self) -> u64 {
        u64::from(self.block_size) << (self.physical_block_exp & 0x0F)
    }

    /// Logical blocks per physical block (OPTIMAL TRANSFER LENGTH GRANULARITY).
    pub fn blocks_per_physical(&self) -> u32 {
        1u32 << (self.physical_block_exp & 0x0F)
    }

    /// Capacity in bytes (saturating).
    pub fn capacity_bytes(&self) -> u64 {
        self.num_blocks.saturating_mul(u64::from(self.block_size))
    }

    /// Checks that `blocks` blocks starting at `lba` lie inside the unit: LOGICAL BLOCK ADDRESS
    /// OUT OF RANGE when `lba + blocks` overflows or passes `num_blocks`. Zero blocks at
    /// `lba == num_blocks` is allowed.
    pub fn check_range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.num_blocks => Ok(()),
            _ => Err(Sense::lba_out_of_range()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    fn g() -> LuGeometry {
        LuGeometry::new(512, 1000)
    }

    #[test]
    fn range_edges() {
        let g = g();
        assert!(g.check_range(0, 1000).is_ok());
        assert!(g.check_range(999, 1).is_ok(), "last block");
        assert!(g.check_range(999, 2).is_err(), "one past the end");
        assert!(g.check_range(1000, 1).is_err());
        assert!(g.check_range(1000, 0).is_ok(), "zero blocks at num_blocks");
        assert!(g.check_range(1001, 0).is_err(), "zero blocks past the end");
        assert!(g.check_range(0, 0).is_ok());
    }

    #[test]
    fn range_wraparound() {
        let g = g();
        let e = g.check_range(u64::MAX, 1).unwrap_err();
        assert_eq!(e.asc, Asc::LBA_OUT_OF_RANGE);
        assert!(g.check_range(u64::MAX, 0).is_err());
        assert!(g.check_range(1 << 63, 256).is_err());
        assert!(g.check_range(1, u64::MAX).is_err());
        // A huge unit still catches the wrap.
        let big = LuGeometry::new(512, u64::MAX);
        assert!(big.check_range(u64::MAX - 1, 1).is_ok());
        assert!(big.check_range(u64::MAX - 1, 2).is_err());
    }

    #[test]
    fn write_same_fits_the_transfer_limit() {
        for bs in [512, 4096] {
            let g = LuGeometry::new(bs, 1 << 30);
            assert!(g.max_write_same_blocks > 0);
            assert!(g.max_write_same_blocks <= u64::from(g.max_transfer_blocks));
        }
    }

    #[test]
    fn defaults_and_helpers() {
        let mut g = LuGeometry::new(4096, 0);
        assert_eq!(g.last_lba(), 0);
        assert_eq!(g.max_transfer_blocks, 2048);
        assert_eq!(g.optimal_transfer_blocks, 256);
        assert_eq!(g.max_write_same_blocks, 2048);
        g.physical_block_exp = 3;
        assert_eq!(g.physical_block_size(), 32768);
        assert_eq!(g.blocks_per_physical(), 8);
        assert!(g.check_range(0, 0).is_ok());
        assert!(g.check_range(0, 1).is_err());
        assert_eq!(LuGeometry::new(0, 1).block_size, 0, "no division by zero");
    }
}
