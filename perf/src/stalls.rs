//! Stall detection: a measured second in which not a single I/O completed (over all sessions
//! and LUNs) is a stall. Runs of consecutive stalled seconds are what a failover or a target
//! restart looks like from the initiator.

use crate::result::{IntervalResult, Stall};

/// Every interval without a completion, in order.
pub fn find_stalls(intervals: &[IntervalResult]) -> Vec<Stall> {
    intervals
        .iter()
        .filter(|i| i.ops == 0)
        .map(|i| Stall {
            index: i.index,
            start_s: i.start_s,
        })
        .collect()
}

/// Consecutive stalled intervals grouped as (first index, last index), inclusive.
pub fn stall_runs(stalls: &[Stall]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for s in stalls {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == s.index => *last = s.index,
            _ => runs.push((s.index, s.index)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::IntervalOp;

    fn series(ops: &[u64]) -> Vec<IntervalResult> {
        ops.iter()
            .enumerate()
            .map(|(i, &n)| IntervalResult {
                index: i as u64,
                start_s: i as f64,
                ops: n,
                read: IntervalOp {
                    ops: n,
                    ..IntervalOp::default()
                },
                write: IntervalOp::default(),
            })
            .collect()
    }

    #[test]
    fn seconds_without_completions_are_stalls() {
        let stalls = find_stalls(&series(&[100, 0, 0, 90, 1, 0, 80]));
        let idx: Vec<u64> = stalls.iter().map(|s| s.index).collect();
        assert_eq!(idx, [1, 2, 5]);
        assert_eq!(stalls[0].start_s, 1.0);
        assert_eq!(stall_runs(&stalls), [(1, 2), (5, 5)]);
    }

    #[test]
    fn a_slow_second_is_not_a_stall() {
        assert!(find_stalls(&series(&[100, 1, 100])).is_empty());
        assert!(stall_runs(&[]).is_empty());
    }

    #[test]
    fn a_run_that_stalls_throughout() {
        let stalls = find_stalls(&series(&[0, 0, 0]));
        assert_eq!(stall_runs(&stalls), [(0, 2)]);
    }
}
