//! Failures and failover, as dm-multipath does it: when a connection is lost or a command
//! times out, the connection is dropped, every command it carried goes back to the queue
//! (writes among them become "in doubt" for --verify), and the session logs in again on the
//! next path (alternating when the LUN has several), then resends the queue. Latencies keep
//! counting from each I/O's original start, so the failover is measured as the pause it is.
//!
//! With one path the session reconnects to it with exponential backoff (what a target
//! SIGKILL-and-restart needs); with several it tries each once without delay, then backs off
//! per round. It keeps trying until the run ends.

use std::time::Duration;

use super::{open, Worker, TICK};
use crate::conn::ConnError;
use crate::result::Reconnect;

/// First backoff delay, doubled per round up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The path of reconnect attempt `attempt` (0-based) after a failure on path `failed` of `n`.
pub fn path_for_attempt(failed: usize, attempt: u32, n: usize) -> usize {
    (failed + 1 + attempt as usize) % n.max(1)
}

/// The delay before reconnect attempt `attempt`: none for the first try of each path, then
/// 100 ms doubling per full round over the paths, at most 1 s.
pub fn backoff(attempt: u32, n: usize) -> Duration {
    let round = attempt / n.max(1) as u32;
    if round == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (round - 1).min(4);
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

impl Worker {
    /// Handles a failed connection; returns once logged in again or the run is over.
    pub(super) fn fail_over(&mut self, err: ConnError) {
        let failed_ns = self.clock.now_ns();
        let from = self.portal();
        if let Some(c) = self.conn.take() {
            c.shutdown();
        }
        let outstanding = self.io.requeue_in_flight();
        let failed_path = self.path;
        let n = self.spec.paths.len();
        let mut attempt = 0u32;
        let to = loop {
            if !self.pause(backoff(attempt, n)) {
                break String::new();
            }
            let path = path_for_attempt(failed_path, attempt, n);
            attempt += 1;
            let w = &self.spec.workload;
            let url = &self.spec.paths[path];
            if let Ok(conn) = open::open(url, &w.initiator, self.spec.isid, w.timeout) {
                self.conn = Some(conn);
                self.path = path;
                break url.portal();
            }
        };
        let now = self.clock.now_ns();
        self.reconnects.push(Reconnect {
            session: self.spec.id,
            at_s: self.clock.measured_s(failed_ns),
            from,
            to,
            reason: err.to_string(),
            outstanding,
            attempts: attempt,
            downtime_ms: now.saturating_sub(failed_ns) as f64 / 1e6,
        });
    }

    /// Sleeps `d` in slices, handing over intervals meanwhile; false when the run ended.
    fn pause(&mut self, d: Duration) -> bool {
        let until = self.clock.now_ns() + d.as_nanos() as u64;
        loop {
            let now = self.clock.now_ns();
            self.io.recorder.tick(now);
            if now >= self.clock.end_ns {
                return false;
            }
            if now >= until {
                return true;
            }
            std::thread::sleep(Duration::from_nanos(until - now).min(TICK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_path_reconnects_to_itself_with_growing_backoff() {
        assert_eq!(path_for_attempt(0, 0, 1), 0);
        assert_eq!(path_for_attempt(0, 5, 1), 0);
        let delays: Vec<u64> = (0..7).map(|a| backoff(a, 1).as_millis() as u64).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn two_paths_alternate_starting_with_the_other_one() {
        let paths: Vec<usize> = (0..5).map(|a| path_for_attempt(0, a, 2)).collect();
        assert_eq!(paths, [1, 0, 1, 0, 1]);
        assert_eq!(path_for_attempt(1, 0, 2), 0);
        let delays: Vec<u64> = (0..6).map(|a| backoff(a, 2).as_millis() as u64).collect();
        assert_eq!(delays, [0, 0, 100, 100, 200, 200]);
    }
}
