//! Prometheus metrics: what the daemon counts about itself and the HTTP endpoint that exports
//! it (text exposition format 0.0.4 at `GET /metrics`, `[daemon] metrics_address`).
//!
//! Control plane: the endpoint runs on its own thread with a small tokio runtime and never sits
//! on the data path. The data path only records: each reactor writes its own shard of a
//! logical unit's figures ([`lun::LunMetrics`]) with relaxed atomics, no lock and no
//! allocation; a scrape merges the shards, reads the session registry, and asks each reactor
//! for its engine figures through its remote handle.
//!
//! - [`histogram`]: the latency bucket bounds and the per-shard histogram;
//! - [`lun`]: per logical unit, per kind of operation: commands, bytes, latency, errors;
//! - [`scrape`]: one consistent-enough [`scrape::Snapshot`] of the whole daemon;
//! - [`exposition`]: the snapshot as Prometheus text;
//! - [`mirror`]: the mirrored volumes' replication state (role, link, disk, out of sync, resync);
//! - [`http`]: the listener.

use std::cell::Cell;

pub mod exposition;
pub mod histogram;
pub mod http;
pub mod lun;
pub mod mirror;
pub mod scrape;

thread_local! {
    /// This thread's reactor index, or `usize::MAX` on any other thread.
    static REACTOR_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks the current thread as reactor `index` (0-based, below the daemon's reactor count):
/// from now on it records into shard `index` of every logical unit, and it alone.
pub fn set_reactor_index(index: usize) {
    REACTOR_INDEX.with(|i| i.set(index));
}

/// The current thread's reactor index, if it is a reactor thread.
pub fn reactor_index() -> Option<usize> {
    let index = REACTOR_INDEX.with(Cell::get);
    (index != usize::MAX).then_some(index)
}
