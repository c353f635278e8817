//! Synchronous two-node mirroring (DRBD protocol C), built up in pieces that each stand alone
//! and are tested alone:
//!
//! - [`gi`]: generation identifiers and the decision they give on connect (who syncs whom, full
//!   or bitmap, split brain).
//! - [`bitmap`]: the out-of-sync bitmap, one bit per 4 KiB.
//! - [`activity_log`]: the hot extents writes may be in flight to, which bound the resync
//!   after a crash of the Primary.
//! - [`meta`]: the on-disk metadata layout: superblock, activity-log ring, bitmap pages.
//! - [`msg`]: the messages of the mirror link, roles and connection states.
//! - [`replica`]: the replication core of one volume on one node (protocol C writes, degraded
//!   mode, handshake, resync, roles), a state machine without I/O that the daemon drives over
//!   io_uring and `engine/tests/mirror_sim.rs` drives under a seeded fault scheduler.
//! - [`status`]: the status as text, shaped like `drbdadm status`.
//! - [`store`]: the metadata store's I/O over the disk trait.
//! - [`wire`]: the link's wire format: authenticated handshake, framed messages with CRC32C and
//!   HMAC-SHA256 tags.
//! - [`node`]: one node of a mirrored volume on a reactor: the core driven over the data disk,
//!   the metadata store and an authenticated TCP link.
//! - [`remote`]: a `Send + Sync` handle to a node on its home reactor, for the SCSI layer on
//!   every reactor and the control plane.
//!
//! Not built yet: SEND_ZC for the link's data, and both nodes serving at once (the next issue).

pub mod activity_log;
pub mod bitmap;
pub mod gi;
pub mod meta;
pub mod msg;
pub mod node;
pub mod remote;
pub mod replica;
pub mod status;
pub mod store;
pub mod wire;
