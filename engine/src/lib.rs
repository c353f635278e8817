//! ringsan-engine: the data path below SCSI.
//!
//! - [`reactor`]: one thread, one io_uring (`SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has
//!   them), one single-threaded task executor; completions are dispatched by `user_data`.
//! - [`buffer`]: the registered buffer pool that data lands in and leaves from.
//! - [`net`], [`time`], [`disk`]: the network, the clock and the disk, each behind a small trait so
//!   that a deterministic simulation can replace them; nothing else here touches the OS.
//! - [`mirror`]: two-node synchronous mirroring (generation identifiers, bitmap, activity log,
//!   metadata), built up piece by piece.
//! - [`volume`]: what the SCSI layer sees: read, write (with FUA), flush, unmap, write zeroes and
//!   compare-and-write on one backing store, with range locks that make compare-and-write atomic.
//!
//! The engine knows no iSCSI and no SCSI.

pub mod blocking;
pub mod buffer;
pub mod disk;
pub mod iobuf;
pub mod mirror;
pub mod net;
pub mod op;
pub mod range_lock;
pub mod reactor;
pub mod select;
pub mod time;
pub mod volume;

pub use buffer::{Buf, BufferPool};
pub use reactor::{spawn, Reactor, ReactorConfig, RemoteHandle};
