//! The fixed-rate schedule of `--rate` (per session): I/O number k has the intended send time
//! `k * 1e9 / rate` ns after the run's start, whatever happened to earlier I/Os.
//!
//! Latency is measured from the intended time, not from the moment the command actually left,
//! so a stall cannot hide itself by delaying the sends that would have measured it
//! (coordinated omission). After a stall the backlog is sent as fast as `--iodepth` allows and
//! each of those I/Os carries the wait it suffered. Times are computed from k, never by adding
//! a rounded interval, so there is no drift over long runs.

use std::time::Duration;

/// A fixed-rate send schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate_iops: u64,
    /// Index of the next I/O to send.
    next: u64,
}

/// How the loop waits for the next intended send time.
///
/// Socket read timeouts are kept in jiffies by the kernel and round up by one to two of them
/// (a 100 us timeout was measured to take 8 ms here), so they only serve for waits far longer
/// than that; shorter waits with commands in flight poll the socket without blocking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Something is due now: send.
    Now,
    /// Nothing in flight and the next send near: sleep this long (a precise timer, nothing to
    /// read meanwhile), then spin the rest.
    Sleep(Duration),
    /// The next send far away: block in the socket read at most this long (it may oversleep
    /// by [`READ_TIMEOUT_SLACK`]), so completions and target pings are handled meanwhile.
    Read(Duration),
    /// The next send is near: poll the socket without blocking and yield the CPU.
    Spin,
}

/// Part of a short sleep that is spun instead (timer slack and wake-up latency).
pub const SPIN_MARGIN: Duration = Duration::from_micros(100);
/// How much a socket read timeout may oversleep (two 4 ms jiffies, plus margin).
pub const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(10);

impl Schedule {
    /// `rate_iops` must be at least 1 (the options guarantee it).
    pub fn new(rate_iops: u64) -> Schedule {
        debug_assert!(rate_iops > 0);
        Schedule {
            rate_iops: rate_iops.max(1),
            next: 0,
        }
    }

    /// Intended send time of I/O `k`, in ns since the run's start.
    pub fn intended_ns(&self, k: u64) -> u64 {
        (u128::from(k) * 1_000_000_000 / u128::from(self.rate_iops)) as u64
    }

    /// Intended time of the next I/O.
    pub fn next_ns(&self) -> u64 {
        self.intended_ns(self.next)
    }

    /// Whether the next I/O is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.next_ns() <= now_ns
    }

    /// Takes the next I/O: returns its intended time.
    pub fn take(&mut self) -> u64 {
        let t = self.next_ns();
        self.next += 1;
        t
    }

    /// I/Os due at `now_ns` and not yet taken (the backlog after a stall).
    pub fn backlog(&self, now_ns: u64) -> u64 {
        // Number of k with intended_ns(k) <= now: floor(now * rate / 1e9) + 1.
        let due = (u128::from(now_ns) * u128::from(self.rate_iops) / 1_000_000_000) as u64 + 1;
        due.saturating_sub(self.next)
    }

    /// How to wait at `now_ns` with `in_flight` commands outstanding; waits are capped at
    /// `max_wait` so the loop still ticks its intervals and timeouts.
    pub fn wait(&self, now_ns: u64, in_flight: usize, max_wait: Duration) -> Wait {
        let next = self.next_ns();
        if next <= now_ns {
            return Wait::Now;
        }
        let d = Duration::from_nanos(next - now_ns);
        // Far away: block in the read (target pings are answered meanwhile), early enough for
        // its oversleep. Near and idle: a precise sleep, then spin. Near and busy: spin.
        match (
            d.checked_sub(READ_TIMEOUT_SLACK),
            d.checked_sub(SPIN_MARGIN),
        ) {
            (Some(w), _) if !w.is_zero() => Wait::Read(w.min(max_wait)),
            (_, Some(w)) if !w.is_zero() && in_flight == 0 => Wait::Sleep(w.min(max_wait)),
            _ => Wait::Spin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_without_drift() {
        let s = Schedule::new(3);
        assert_eq!(s.intended_ns(0), 0);
        assert_eq!(s.intended_ns(1), 333_333_333);
        assert_eq!(s.intended_ns(2), 666_666_666);
        assert_eq!(s.intended_ns(3), 1_000_000_000);
        assert_eq!(s.intended_ns(3_000_000), 1_000_000_000_000_000);
        let s = Schedule::new(1000);
        assert_eq!(s.intended_ns(1), 1_000_000);
        assert_eq!(s.intended_ns(86_400_000), 86_400 * 1_000_000_000);
    }

    #[test]
    fn take_walks_the_schedule() {
        let mut s = Schedule::new(1000);
        assert!(s.due(0));
        assert_eq!(s.take(), 0);
        assert!(!s.due(999_999));
        assert!(s.due(1_000_000));
        assert_eq!(s.take(), 1_000_000);
        assert_eq!(s.next_ns(), 2_000_000);
    }

    #[test]
    fn a_stall_leaves_a_backlog_with_the_old_intended_times() {
        let mut s = Schedule::new(1000);
        s.take();
        // 10 ms of stall: I/Os 1..=10 are due, each with its own intended time.
        let now = 10_000_000;
        assert_eq!(s.backlog(now), 10);
        let times: Vec<u64> = (0..10).map(|_| s.take()).collect();
        assert_eq!(times[0], 1_000_000);
        assert_eq!(times[9], 10_000_000);
        assert_eq!(s.backlog(now), 0);
        // Latency of the first backlog I/O completing at 10.2 ms counts from 1 ms.
        assert_eq!(10_200_000 - times[0], 9_200_000);
    }

    #[test]
    fn wait_reads_when_far_sleeps_when_near_and_idle_spins_when_near_and_busy() {
        let mut s = Schedule::new(10);
        let cap = Duration::from_millis(50);
        assert_eq!(s.wait(0, 0, cap), Wait::Now);
        s.take();
        // Next send at 100 ms.
        let at = |ms: u64| ms * 1_000_000;
        assert_eq!(
            s.wait(at(70), 0, cap),
            Wait::Read(Duration::from_millis(20))
        );
        assert_eq!(
            s.wait(at(70), 3, cap),
            Wait::Read(Duration::from_millis(20))
        );
        assert_eq!(
            s.wait(at(94), 0, cap),
            Wait::Sleep(Duration::from_micros(5900))
        );
        assert_eq!(
            s.wait(at(94), 3, cap),
            Wait::Spin,
            "a read timeout would oversleep"
        );
        assert_eq!(s.wait(at(100) - 50_000, 0, cap), Wait::Spin);
        assert_eq!(s.wait(at(100), 3, cap), Wait::Now);
        assert_eq!(s.wait(at(1), 0, cap), Wait::Read(cap), "capped");
    }
}
