//! The collector: merges the sessions' per-second histograms into one series, in order, as
//! each second is complete (every session has handed it over), and keeps the run's totals and
//! the `--hdr-log` lines. Memory stays bounded by the sessions in flight, not the run length.
//!
//! A second that some session never handed over (a session thread that died) is closed at the
//! end with what arrived; a second nobody handed over appears with zero completions.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::hdrlog::HdrLog;
use crate::histo;
use crate::result::{IntervalOp, IntervalResult, Op};

struct Pending {
    reports: usize,
    hists: [Histogram<u64>; 2],
}

/// Merges interval reports.
pub struct Collector {
    sessions: usize,
    intervals: u64,
    pending: BTreeMap<u64, Pending>,
    totals: [Histogram<u64>; 2],
    series: Vec<IntervalResult>,
    hdr: Option<HdrLog>,
}

/// What the collector gathered.
pub struct Collected {
    /// One entry per measured second, in order.
    pub intervals: Vec<IntervalResult>,
    /// Read and write over the whole measured time.
    pub totals: [Histogram<u64>; 2],
    pub hdr: Option<HdrLog>,
}

impl Collector {
    pub fn new(sessions: usize, intervals: u64, keep_hdr_log: bool) -> Collector {
        Collector {
            sessions,
            intervals,
            pending: BTreeMap::new(),
            totals: [histo::new_histogram(), histo::new_histogram()],
            series: Vec::with_capacity(intervals as usize),
            hdr: keep_hdr_log.then(HdrLog::new),
        }
    }

    /// Adds one session's second `index`; returns the merged second when it is complete.
    pub fn add(&mut self, index: u64, hists: &[Histogram<u64>; 2]) -> Option<IntervalResult> {
        if index >= self.intervals {
            return None;
        }
        let p = self.pending.entry(index).or_insert_with(|| Pending {
            reports: 0,
            hists: [histo::new_histogram(), histo::new_histogram()],
        });
        for op in Op::ALL {
            histo::merge(&mut p.hists[op.index()], &hists[op.index()]);
        }
        p.reports += 1;
        if p.reports < self.sessions {
            return None;
        }
        let p = self.pending.remove(&index)?;
        Some(self.close(index, &p.hists))
    }

    fn close(&mut self, index: u64, hists: &[Histogram<u64>; 2]) -> IntervalResult {
        for op in Op::ALL {
            let h = &hists[op.index()];
            histo::merge(&mut self.totals[op.index()], h);
            if let Some(log) = &mut self.hdr {
                log.push(index, op, h);
            }
        }
        let r = interval_result(index, hists);
        self.series.push(r.clone());
        r
    }

    /// Closes what is still open and returns the series, complete and in order.
    pub fn finish(mut self) -> Collected {
        let open = std::mem::take(&mut self.pending);
        for (index, p) in open {
            self.close(index, &p.hists);
        }
        let empty = [histo::new_histogram(), histo::new_histogram()];
        for index in 0..self.intervals {
            if !self.series.iter().any(|r| r.index == index) {
                self.series.push(interval_result(index, &empty));
            }
        }
        self.series.sort_by_key(|r| r.index);
        Collected {
            intervals: self.series,
            totals: self.totals,
            hdr: self.hdr,
        }
    }
}

fn interval_result(index: u64, hists: &[Histogram<u64>; 2]) -> IntervalResult {
    let op = |h: &Histogram<u64>| {
        let s = histo::summarize(h);
        IntervalOp {
            ops: h.len(),
            p50_ns: s.p50_ns,
            p99_ns: s.p99_ns,
            p99_9_ns: s.p99_9_ns,
            max_ns: s.max_ns,
        }
    };
    let (read, write) = (op(&hists[0]), op(&hists[1]));
    IntervalResult {
        index,
        start_s: index as f64,
        ops: read.ops + write.ops,
        read,
        write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hists(reads: &[u64], writes: &[u64]) -> [Histogram<u64>; 2] {
        let mut h = [histo::new_histogram(), histo::new_histogram()];
        for &v in reads {
            histo::record(&mut h[0], v);
        }
        for &v in writes {
            histo::record(&mut h[1], v);
        }
        h
    }

    #[test]
    fn a_second_closes_when_every_session_reported() {
        let mut c = Collector::new(2, 3, true);
        assert!(c.add(0, &hists(&[100], &[])).is_none());
        let r = c.add(0, &hists(&[300], &[50])).unwrap();
        assert_eq!((r.index, r.ops, r.read.ops, r.write.ops), (0, 3, 2, 1));
        assert!(r.read.max_ns >= 300 && r.read.p50_ns >= 100);
        assert!(
            c.add(7, &hists(&[1], &[])).is_none(),
            "beyond the run: ignored"
        );
        let done = c.finish();
        let idx: Vec<u64> = done.intervals.iter().map(|r| r.index).collect();
        assert_eq!(idx, [0, 1, 2], "missing seconds are filled in");
        assert_eq!(done.intervals[1].ops, 0);
        assert_eq!(done.totals[0].len(), 2);
        assert!(done.hdr.is_some());
    }

    #[test]
    fn unfinished_seconds_close_at_the_end_with_what_arrived() {
        let mut c = Collector::new(3, 2, false);
        c.add(0, &hists(&[10, 20], &[]));
        c.add(1, &hists(&[], &[5]));
        let done = c.finish();
        assert_eq!(done.intervals[0].ops, 2);
        assert_eq!(done.intervals[1].write.ops, 1);
        assert_eq!(done.totals[1].len(), 1);
        assert!(done.hdr.is_none());
    }
}
