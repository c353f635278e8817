//! Latency histograms: HdrHistograms in nanoseconds with 3 significant digits, from 1 ns to
//! one hour (longer values are clamped to the top, so a record never fails), and their summary.

use hdrhistogram::Histogram;

use crate::result::Latency;

/// Highest trackable latency: one hour.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records one latency, clamped into the trackable range.
pub fn record(h: &mut Histogram<u64>, latency_ns: u64) {
    // In range by construction, so `record` cannot fail.
    let _ = h.record(latency_ns.clamp(1, MAX_LATENCY_NS));
}

/// Adds `from` into `into` (same bounds by construction: cannot fail).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

/// Summary of a histogram; all zero when it is empty.
pub fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        min_ns: h.min(),
        mean_ns: h.mean().round() as u64,
        p50_ns: h.value_at_quantile(0.50),
        p90_ns: h.value_at_quantile(0.90),
        p99_ns: h.value_at_quantile(0.99),
        p99_9_ns: h.value_at_quantile(0.999),
        p99_99_ns: h.value_at_quantile(0.9999),
        max_ns: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            record(&mut h, v * 1000);
        }
        let s = summarize(&h);
        let near = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(near(s.p50_ns, 5_000_000), "{s:?}");
        assert!(near(s.p90_ns, 9_000_000), "{s:?}");
        assert!(near(s.p99_ns, 9_900_000), "{s:?}");
        assert!(near(s.max_ns, 10_000_000), "{s:?}");
        assert!(s.min_ns <= s.p50_ns && s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns);
        assert!(s.p99_ns <= s.p99_9_ns && s.p99_9_ns <= s.p99_99_ns && s.p99_99_ns <= s.max_ns);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_LATENCY_NS);
    }

    #[test]
    fn empty_summary_is_zero_and_merge_adds() {
        assert_eq!(summarize(&new_histogram()), Latency::default());
        let mut a = new_histogram();
        let mut b = new_histogram();
        record(&mut a, 10);
        record(&mut b, 20);
        merge(&mut a, &b);
        assert_eq!(a.len(), 2);
    }
}
