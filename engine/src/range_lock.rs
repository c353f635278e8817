//! Range locks on a volume's byte ranges, shared by every reactor: a write holds its range while it
//! runs, and COMPARE AND WRITE holds its range across read, compare and write, so that no other
//! write to those blocks can slip in between (SBC-3 §5.2 requires the operation to be atomic).
//! Conflicts are rare (two initiators writing the same blocks at once), so a waiter polls with a
//! short timer instead of cross-thread wake-ups.

use std::sync::Mutex;
use std::time::Duration;

use crate::time::sleep;

/// How long a writer that found its range busy waits before it looks again.
const RETRY_INTERVAL: Duration = Duration::from_micros(50);

/// The set of byte ranges currently held on one volume.
#[derive(Default, Debug)]
pub struct RangeLocks {
    held: Mutex<Vec<(u64, u64, u64)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A held range; released when dropped.
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl RangeLocks {
    /// Takes `[start, end)` when no held range overlaps it, or returns `None`.
    pub fn try_lock(&self, start: u64, end: u64) -> Option<RangeGuard<'_>> {
        let mut held = self.held.lock().ok()?;
        if held.iter().any(|&(s, e, _)| s < end && start < e) {
            return None;
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        held.push((start, end, id));
        Some(RangeGuard { locks: self, id })
    }

    /// Takes `[start, end)`, waiting while an overlapping range is held.
    pub async fn lock(&self, start: u64, end: u64) -> RangeGuard<'_> {
        loop {
            if let Some(guard) = self.try_lock(start, end) {
                return guard;
            }
            sleep(RETRY_INTERVAL).await;
        }
    }

    /// Number of ranges held (for tests and metrics).
    pub fn held_count(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.held.lock() {
            held.retain(|&(_, _, id)| id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_exclude_each_other() {
        let locks = RangeLocks::default();
        let a = locks.try_lock(0, 4096).unwrap();
        assert!(locks.try_lock(4095, 8192).is_none());
        let b = locks.try_lock(4096, 8192).unwrap();
        assert_eq!(locks.held_count(), 2);
        drop(a);
        assert!(locks.try_lock(0, 10).is_some());
        drop(b);
        assert_eq!(locks.held_count(), 0);
    }
}
