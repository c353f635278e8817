//! One session's measurements: the current one-second interval's histograms (read, write),
//! handed to the collector whenever the interval ends, plus the slowest I/O and, with --rate,
//! how late commands left.
//!
//! Only completions inside the measured window are recorded, into the interval of their
//! completion time. Intervals are handed over in order and each exactly once, also when
//! nothing completed in them (that is how stalls become visible), including while the session
//! is busy reconnecting: the loop calls [`Recorder::tick`].

use std::sync::mpsc::Sender;

use hdrhistogram::Histogram;

use super::Report;
use crate::clock::RunClock;
use crate::histo;
use crate::result::{LongestIo, Op};

/// A session's recorder.
pub struct Recorder {
    session: u32,
    clock: RunClock,
    reports: Sender<Report>,
    /// The interval being filled.
    index: u64,
    intervals: u64,
    hists: [Histogram<u64>; 2],
    pub longest: Option<LongestIo>,
    /// Send lag under --rate (whole run).
    pub lag: Option<Histogram<u64>>,
}

impl Recorder {
    pub fn new(
        session: u32,
        clock: RunClock,
        reports: Sender<Report>,
        rate_mode: bool,
    ) -> Recorder {
        Recorder {
            session,
            clock,
            reports,
            index: 0,
            intervals: clock.intervals(),
            hists: [histo::new_histogram(), histo::new_histogram()],
            longest: None,
            lag: rate_mode.then(histo::new_histogram),
        }
    }

    /// Records a completion at `end_ns` of an I/O whose latency counts from `start_ns`.
    pub fn record(&mut self, op: Op, start_ns: u64, end_ns: u64, lba: u64) {
        let Some(index) = self.clock.interval_of(end_ns) else {
            return;
        };
        self.advance_to(index);
        let latency = end_ns.saturating_sub(start_ns);
        histo::record(&mut self.hists[op.index()], latency);
        let slowest = match self.longest {
            Some(l) => latency > l.latency_ns,
            None => true,
        };
        if slowest {
            self.longest = Some(LongestIo {
                latency_ns: latency,
                op,
                lba,
                session: self.session,
                completed_at_s: self.clock.measured_s(end_ns),
            });
        }
    }

    /// Records how late a command left after its intended time (--rate).
    pub fn record_lag(&mut self, lag_ns: u64) {
        if let Some(h) = &mut self.lag {
            histo::record(h, lag_ns);
        }
    }

    /// Hands over every interval that ended before `now_ns`.
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns >= self.clock.ramp_ns {
            let current = (now_ns - self.clock.ramp_ns) / 1_000_000_000;
            self.advance_to(current.min(self.intervals));
        }
    }

    /// Hands over everything left (the run is over).
    pub fn finish(&mut self) {
        self.advance_to(self.intervals);
    }

    fn advance_to(&mut self, index: u64) {
        while self.index < index && self.index < self.intervals {
            let fresh = [
                Histogram::new_from(&self.hists[0]),
                Histogram::new_from(&self.hists[1]),
            ];
            let hists = std::mem::replace(&mut self.hists, fresh);
            // The collector gone means the run is being torn down: nothing left to tell.
            let _ = self.reports.send(Report::Interval {
                session: self.session,
                index: self.index,
                hists: Box::new(hists),
            });
            self.index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn intervals(rx: &mpsc::Receiver<Report>) -> Vec<(u64, u64, u64)> {
        rx.try_iter()
            .filter_map(|r| match r {
                Report::Interval { index, hists, .. } => {
                    Some((index, hists[0].len(), hists[1].len()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn completions_land_in_their_interval_and_empty_ones_are_sent_too() {
        let clock = RunClock::starting_at(
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(4),
        );
        let (tx, rx) = mpsc::channel();
        let mut r = Recorder::new(0, clock, tx, false);
        let s = 1_000_000_000u64;
        r.record(Op::Read, 0, s / 2, 0); // ramp: not recorded
        r.record(Op::Read, s, s + 100, 8);
        r.record(Op::Write, s, s + 300, 16);
        r.record(Op::Read, 4 * s, 4 * s + 10, 8); // 3 s after the ramp: interval 3
        r.tick(5 * s);
        r.finish();
        assert_eq!(intervals(&rx), [(0, 1, 1), (1, 0, 0), (2, 0, 0), (3, 1, 0)]);
        let l = r.longest.unwrap();
        assert_eq!((l.latency_ns, l.op, l.lba), (300, Op::Write, 16));
        assert!(l.completed_at_s < 1e-6);
    }

    #[test]
    fn completions_after_the_end_are_not_recorded() {
        let clock = RunClock::starting_at(Instant::now(), Duration::ZERO, Duration::from_secs(1));
        let (tx, rx) = mpsc::channel();
        let mut r = Recorder::new(3, clock, tx, true);
        r.record(Op::Read, 0, 2_000_000_000, 0);
        r.record_lag(500);
        r.finish();
        r.finish();
        assert_eq!(intervals(&rx), [(0, 0, 0)]);
        assert!(r.longest.is_none());
        assert_eq!(r.lag.as_ref().map(|h| h.len()), Some(1));
    }
}
