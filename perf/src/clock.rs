//! The run's clock: one monotonic origin shared by every session, with the ramp and the end
//! expressed in nanoseconds since it. Measured time starts at the end of the ramp; a time
//! "in measured seconds" is negative during the ramp.

use std::time::{Duration, Instant};

/// Origin, ramp end and run end.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    origin: Instant,
    /// End of the ramp (start of measurement), ns since the origin.
    pub ramp_ns: u64,
    /// End of the run, ns since the origin.
    pub end_ns: u64,
}

impl RunClock {
    /// A clock starting now.
    pub fn start(ramp: Duration, runtime: Duration) -> RunClock {
        RunClock::starting_at(Instant::now(), ramp, runtime)
    }

    pub fn starting_at(origin: Instant, ramp: Duration, runtime: Duration) -> RunClock {
        let ramp_ns = ramp.as_nanos() as u64;
        RunClock {
            origin,
            ramp_ns,
            end_ns: ramp_ns + runtime.as_nanos() as u64,
        }
    }

    /// ns since the origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// A time in seconds since the start of measurement.
    pub fn measured_s(&self, t_ns: u64) -> f64 {
        (t_ns as f64 - self.ramp_ns as f64) / 1e9
    }

    /// The one-second interval a time falls in; `None` outside the measured window.
    pub fn interval_of(&self, t_ns: u64) -> Option<u64> {
        (t_ns >= self.ramp_ns && t_ns < self.end_ns).then(|| (t_ns - self.ramp_ns) / 1_000_000_000)
    }

    /// Number of measured intervals.
    pub fn intervals(&self) -> u64 {
        (self.end_ns - self.ramp_ns).div_ceil(1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_start_after_the_ramp() {
        let c = RunClock::starting_at(
            Instant::now(),
            Duration::from_secs(2),
            Duration::from_secs(3),
        );
        assert_eq!((c.ramp_ns, c.end_ns), (2_000_000_000, 5_000_000_000));
        assert_eq!(c.intervals(), 3);
        assert_eq!(c.interval_of(1_999_999_999), None, "ramp");
        assert_eq!(c.interval_of(2_000_000_000), Some(0));
        assert_eq!(c.interval_of(4_999_999_999), Some(2));
        assert_eq!(c.interval_of(5_000_000_000), None, "after the end");
        assert_eq!(c.measured_s(1_000_000_000), -1.0);
        assert_eq!(c.measured_s(2_500_000_000), 0.5);
    }
}
