//! Synchronous two-node mirroring (DRBD protocol C), built up in pieces that each stand alone
//! and are tested alone, then driven over the engine's disk, network and clock traits:
//!
//! - [`gi`]: generation identifiers and the decision they give on connect (who syncs whom, full
//!   or bitmap, split brain).
//! - [`bitmap`]: the out-of-sync bitmap, one bit per 4 KiB.
//! - [`activity_log`]: the hot extents writes may be in flight to, which bound the resync
//!   after a crash of the Primary.
//! - [`meta`]: the on-disk metadata layout: superblock, activity-log ring, bitmap pages.

pub mod activity_log;
pub mod bitmap;
pub mod gi;
pub mod meta;
