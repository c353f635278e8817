//! Range locks on a volume's byte ranges, shared by every reactor: a write holds its range while it
//! runs, and COMPARE AND WRITE holds its range across read, compare and write, so that no other
//! write to those blocks can slip in between (SBC-3 §5.2 requires the operation to be atomic).
//!
//! Held ranges and waiters live together under one std `Mutex`. A writer that finds its range busy
//! registers its [`Waker`] with its range under that same lock, so a release can never fall between
//! its check and its registration (no lost wake-ups); dropping a [`RangeGuard`] wakes every waiter
//! whose range overlaps the released one. Our reactor's wakers may be woken from any thread (the
//! wake-up is posted to the reactor that owns the task). Conflicts are rare (two initiators writing
//! the same blocks at once), so the waiter list is a plain `Vec` scanned in full.
//!
//! There is no fairness: a woken waiter retries when its reactor next polls it, and a `try_lock` or
//! another waiter may take the range first; the overtaken waiter stays registered and waits for the
//! next release. This module knows nothing of SCSI or of the blocks behind the ranges.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// The set of byte ranges currently held on one volume, and the writers waiting for them.
#[derive(Default, Debug)]
pub struct RangeLocks {
    state: Mutex<LockState>,
    /// Ids for held ranges and waiters alike (one id space, so a waiter keeps its id as a guard).
    next_id: AtomicU64,
}

/// Everything the mutex protects. Both vectors keep their capacity, so locking and unlocking
/// allocate nothing once they have grown to the volume's usual concurrency.
#[derive(Default, Debug)]
struct LockState {
    held: Vec<Held>,
    waiters: Vec<Waiter>,
}

/// One held range `[start, end)`.
#[derive(Debug)]
struct Held {
    start: u64,
    end: u64,
    id: u64,
}

/// A writer waiting for `[start, end)`; at most one entry per [`RangeLockWait`].
#[derive(Debug)]
struct Waiter {
    start: u64,
    end: u64,
    id: u64,
    waker: Waker,
}

/// A held range; released when dropped.
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

/// The future returned by [`RangeLocks::lock`]: resolves to a [`RangeGuard`] once no held range
/// overlaps `[start, end)`. Dropping it before it resolves withdraws its registration.
#[must_use = "the range is taken only when the future is awaited"]
#[derive(Debug)]
pub struct RangeLockWait<'a> {
    locks: &'a RangeLocks,
    start: u64,
    end: u64,
    /// The id of this waiter's entry in the waiter list, while it has one.
    waiter_id: Option<u64>,
    /// Set once the guard was handed out, so a poll after completion cannot take a second range.
    done: bool,
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a byte (an empty range overlaps nothing).
fn overlaps(a_start: u64, a_end: u64, b_start: u64, b_end: u64) -> bool {
    a_start < b_end && b_start < a_end
}

impl LockState {
    fn is_free(&self, start: u64, end: u64) -> bool {
        !self
            .held
            .iter()
            .any(|h| overlaps(h.start, h.end, start, end))
    }

    /// Records `waker` for waiter `id`, replacing its earlier waker rather than adding an entry.
    fn register(&mut self, id: u64, start: u64, end: u64, waker: &Waker) {
        match self.waiters.iter_mut().find(|w| w.id == id) {
            Some(w) => {
                if !w.waker.will_wake(waker) {
                    w.waker = waker.clone();
                }
            }
            None => self.waiters.push(Waiter {
                start,
                end,
                id,
                waker: waker.clone(),
            }),
        }
    }

    fn unregister(&mut self, id: u64) {
        if let Some(i) = self.waiters.iter().position(|w| w.id == id) {
            self.waiters.swap_remove(i);
        }
    }

    /// Removes held range `id` and wakes the waiters it may have blocked.
    fn release(&mut self, id: u64) {
        let Some(i) = self.held.iter().position(|h| h.id == id) else {
            debug_assert!(false, "released range {id} is not held");
            return;
        };
        let released = self.held.swap_remove(i);
        // Waking under the lock is safe: a waker only queues its task (locally or by posting to
        // the owning reactor) and never polls it inline, so it cannot re-enter this mutex. The
        // entries stay registered; each waiter replaces or removes its own on its next poll.
        for w in &self.waiters {
            if overlaps(w.start, w.end, released.start, released.end) {
                w.waker.wake_by_ref();
            }
        }
    }
}

impl RangeLocks {
    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes `[start, end)` when no held range overlaps it, or returns `None` (also when the lock
    /// table was poisoned by an earlier panic).
    pub fn try_lock(&self, start: u64, end: u64) -> Option<RangeGuard<'_>> {
        let mut state = self.state.lock().ok()?;
        if !state.is_free(start, end) {
            return None;
        }
        let id = self.new_id();
        state.held.push(Held { start, end, id });
        Some(RangeGuard { locks: self, id })
    }

    /// Takes `[start, end)`, waiting (without polling) while an overlapping range is held. Not
    /// fair: a waiter can be overtaken by a later `lock` or `try_lock` of an overlapping range.
    pub fn lock(&self, start: u64, end: u64) -> RangeLockWait<'_> {
        RangeLockWait {
            locks: self,
            start,
            end,
            waiter_id: None,
            done: false,
        }
    }

    /// Number of ranges held (for tests and metrics).
    pub fn held_count(&self) -> usize {
        self.state.lock().map(|s| s.held.len()).unwrap_or(0)
    }

    /// Number of registered waiters (for tests).
    #[cfg(test)]
    fn waiter_count(&self) -> usize {
        self.state.lock().map(|s| s.waiters.len()).unwrap_or(0)
    }
}

impl<'a> Future for RangeLockWait<'a> {
    type Output = RangeGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RangeGuard<'a>> {
        let this = self.get_mut();
        debug_assert!(!this.done, "RangeLockWait polled after it resolved");
        if this.done {
            return Poll::Pending;
        }
        let Ok(mut state) = this.locks.state.lock() else {
            // A panic while the table was held: the range can never be proven free. Stay pending
            // (as `try_lock` reports it unavailable) rather than take a range that may be held.
            tracing::error!(
                start = this.start,
                end = this.end,
                "range lock table poisoned by an earlier panic: this write cannot proceed"
            );
            return Poll::Pending;
        };
        if state.is_free(this.start, this.end) {
            let id = match this.waiter_id.take() {
                Some(id) => {
                    state.unregister(id);
                    id
                }
                None => this.locks.new_id(),
            };
            state.held.push(Held {
                start: this.start,
                end: this.end,
                id,
            });
            this.done = true;
            return Poll::Ready(RangeGuard {
                locks: this.locks,
                id,
            });
        }
        let id = match this.waiter_id {
            Some(id) => id,
            None => {
                let id = this.locks.new_id();
                this.waiter_id = Some(id);
                id
            }
        };
        state.register(id, this.start, this.end, cx.waker());
        Poll::Pending
    }
}

impl Drop for RangeLockWait<'_> {
    fn drop(&mut self) {
        // Every overlapping waiter is woken on a release, so a cancelled waiter swallows no
        // wake-up that another needed: removing its entry is all there is to do.
        if let Some(id) = self.waiter_id.take() {
            if let Ok(mut state) = self.locks.state.lock() {
                state.unregister(id);
            }
        }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.locks.state.lock() {
            state.release(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
    use std::sync::Arc;
    use std::task::Wake;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        (counter.clone(), Waker::from(counter))
    }

    fn wakes(counter: &CountingWaker) -> usize {
        counter.0.load(Ordering::SeqCst)
    }

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

    #[test]
    fn free_range_resolves_on_first_poll_without_registering() {
        let locks = RangeLocks::default();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(locks.lock(0, 4096));
        let Poll::Ready(guard) = wait.as_mut().poll(&mut cx) else {
            panic!("a free range must be taken at once");
        };
        assert_eq!(locks.waiter_count(), 0);
        assert_eq!(locks.held_count(), 1);
        drop(guard);
        assert_eq!(locks.held_count(), 0);
        assert_eq!(wakes(&counter), 0);
    }

    #[test]
    fn waiter_is_woken_when_overlapping_guard_drops() {
        let locks = RangeLocks::default();
        let held = locks.try_lock(0, 4096).unwrap();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(locks.lock(1024, 2048));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(locks.waiter_count(), 1);
        assert_eq!(wakes(&counter), 0);

        drop(held);
        assert_eq!(wakes(&counter), 1);
        let Poll::Ready(guard) = wait.as_mut().poll(&mut cx) else {
            panic!("the range was released, the woken waiter must take it");
        };
        assert_eq!(locks.waiter_count(), 0);
        assert_eq!(locks.held_count(), 1);
        assert!(locks.try_lock(2000, 3000).is_none());
        drop(guard);
        assert_eq!(locks.held_count(), 0);
    }

    #[test]
    fn only_an_overlapping_release_must_wake_the_waiter() {
        let locks = RangeLocks::default();
        let blocking = locks.try_lock(0, 4096).unwrap();
        let unrelated = locks.try_lock(8192, 12288).unwrap();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(locks.lock(0, 8192));
        assert!(wait.as_mut().poll(&mut cx).is_pending());

        drop(unrelated);
        assert_eq!(wakes(&counter), 0, "a release elsewhere need not wake it");
        drop(blocking);
        assert_eq!(wakes(&counter), 1, "the overlapping release must wake it");
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn overtaken_waiter_stays_registered_and_is_woken_again() {
        let locks = RangeLocks::default();
        let first = locks.try_lock(0, 4096).unwrap();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(locks.lock(0, 4096));
        assert!(wait.as_mut().poll(&mut cx).is_pending());

        drop(first);
        assert_eq!(wakes(&counter), 1);
        // Another writer takes the range before the woken waiter runs: no fairness.
        let second = locks.try_lock(0, 4096).unwrap();
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(locks.waiter_count(), 1);

        drop(second);
        assert_eq!(wakes(&counter), 2);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!(locks.waiter_count(), 0);
    }

    #[test]
    fn repolled_waiter_replaces_its_registration() {
        let locks = RangeLocks::default();
        let held = locks.try_lock(0, 4096).unwrap();
        let (old_counter, old_waker) = counting_waker();
        let (new_counter, new_waker) = counting_waker();
        let mut wait = pin!(locks.lock(0, 4096));
        for _ in 0..3 {
            let mut cx = Context::from_waker(&old_waker);
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(locks.waiter_count(), 1);
        let mut cx = Context::from_waker(&new_waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert_eq!(locks.waiter_count(), 1);

        drop(held);
        assert_eq!(
            wakes(&old_counter),
            0,
            "the replaced waker must not be kept"
        );
        assert_eq!(wakes(&new_counter), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_waiter_leaves_no_registration() {
        let locks = RangeLocks::default();
        let held = locks.try_lock(0, 4096).unwrap();
        let (counter, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut wait = Box::pin(locks.lock(0, 4096));
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert_eq!(locks.waiter_count(), 1);
            drop(wait);
            assert_eq!(locks.waiter_count(), 0);
        }
        // Never polled: nothing to withdraw.
        drop(locks.lock(0, 4096));
        assert_eq!(locks.waiter_count(), 0);
        drop(held);
        assert_eq!(wakes(&counter), 0);
        assert_eq!(locks.held_count(), 0);
    }

    /// Wakes a parked thread; `woken` tells a real wake-up from a spurious unpark or a timeout.
    struct ThreadWaker {
        thread: thread::Thread,
        woken: AtomicBool,
    }

    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    /// Runs `future` on this thread, parking between polls. Panics instead of hanging when a
    /// wake-up is lost.
    fn block_on<F: Future>(future: F) -> F::Output {
        const LOST_WAKE_UP_AFTER: Duration = Duration::from_secs(10);
        let state = Arc::new(ThreadWaker {
            thread: thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(state.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let parked_at = Instant::now();
            while !state.woken.swap(false, Ordering::SeqCst) {
                let waited = parked_at.elapsed();
                assert!(waited < LOST_WAKE_UP_AFTER, "lost wake-up");
                thread::park_timeout(LOST_WAKE_UP_AFTER - waited);
            }
        }
    }

    #[test]
    fn threads_taking_overlapping_ranges_exclude_each_other() {
        const THREADS: u64 = 4;
        const ROUNDS: u64 = 2_000;
        const BLOCK_BYTES: u64 = 512;
        const BLOCKS: u64 = 8;
        let locks = RangeLocks::default();
        // One occupancy counter per block: a range inside its critical section owns its blocks.
        let occupancy: Vec<AtomicU32> = (0..BLOCKS).map(|_| AtomicU32::new(0)).collect();
        let taken = AtomicU64::new(0);
        thread::scope(|scope| {
            for t in 0..THREADS {
                let (locks, occupancy, taken) = (&locks, &occupancy, &taken);
                scope.spawn(move || {
                    let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..ROUNDS {
                        seed = seed
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        let first = (seed >> 33) % BLOCKS;
                        let count = 1 + (seed >> 40) % (BLOCKS - first).min(3);
                        let (start, end) = (first * BLOCK_BYTES, (first + count) * BLOCK_BYTES);
                        let guard = block_on(locks.lock(start, end));
                        for block in &occupancy[first as usize..(first + count) as usize] {
                            assert_eq!(block.fetch_add(1, Ordering::SeqCst), 0, "overlap held");
                        }
                        for _ in 0..(seed >> 50) % 64 {
                            std::hint::spin_loop();
                        }
                        if seed & 0x100 != 0 {
                            thread::yield_now();
                        }
                        for block in &occupancy[first as usize..(first + count) as usize] {
                            assert_eq!(block.fetch_sub(1, Ordering::SeqCst), 1);
                        }
                        taken.fetch_add(1, Ordering::SeqCst);
                        drop(guard);
                    }
                });
            }
        });
        assert_eq!(taken.load(Ordering::SeqCst), THREADS * ROUNDS);
        assert_eq!(locks.held_count(), 0);
        assert_eq!(locks.waiter_count(), 0);
    }
}
