//! The command latency histogram: fixed bucket bounds fine enough to read a p99 to 20 µs below
//! 1 ms, one [`HistogramShard`] per reactor written without a lock or an allocation, and
//! [`HistogramSnapshot`], the shards merged when the endpoint is scraped.
//!
//! A shard stores per-bucket counts (not cumulative ones) and the sum in nanoseconds; the
//! exposition makes them cumulative and turns nanoseconds into seconds. The count is the sum of
//! the buckets, so a snapshot is always consistent with itself even while commands complete.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// The steps of every decade above 1 ms, times the decade's unit: 1.25, 1.5, 2, 2.5, 3, 4, 5,
/// 6, 8, 10.
const DECADE_STEPS_PER_MILLE: [u64; 10] =
    [1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000];

/// Upper bounds (inclusive, Prometheus `le`) of the finite buckets in nanoseconds: 10 µs, every
/// 20 µs from 20 µs to 1 ms, then 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 and 10 times 1 ms, 10 ms,
/// 100 ms and 1 s, ending at 10 s. A last bucket (+Inf) takes the rest.
pub const BOUNDS_NS: [u64; FINITE_BUCKETS] = bounds();

/// Finite buckets: 1 + 50 below 1 ms, 10 per decade above it for 4 decades.
pub const FINITE_BUCKETS: usize = 1 + 50 + 4 * 10;
/// Buckets with +Inf.
pub const BUCKETS: usize = FINITE_BUCKETS + 1;

const fn bounds() -> [u64; FINITE_BUCKETS] {
    let mut out = [0u64; FINITE_BUCKETS];
    out[0] = 10 * US;
    let mut i = 1;
    while i <= 50 {
        out[i] = i as u64 * 20 * US;
        i += 1;
    }
    let decades = [MS, 10 * MS, 100 * MS, S];
    let mut d = 0;
    while d < decades.len() {
        let mut k = 0;
        while k < DECADE_STEPS_PER_MILLE.len() {
            out[51 + d * 10 + k] = decades[d] / 1000 * DECADE_STEPS_PER_MILLE[k];
            k += 1;
        }
        d += 1;
    }
    out
}

/// The bucket a latency of `ns` nanoseconds falls in: the first whose bound is at least `ns`,
/// or the +Inf bucket ([`FINITE_BUCKETS`]).
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&bound| bound < ns)
}

/// Adds `n` to `counter`. With `exclusive` (only this thread ever writes the counter) a plain
/// load and store, which no other core contends for; otherwise an atomic add.
#[inline]
pub fn bump(counter: &AtomicU64, n: u64, exclusive: bool) {
    if exclusive {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    } else {
        counter.fetch_add(n, Relaxed);
    }
}

/// One reactor's part of a histogram.
pub struct HistogramShard {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for HistogramShard {
    fn default() -> Self {
        HistogramShard {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl HistogramShard {
    /// Records one observation of `ns` nanoseconds (see [`bump`] for `exclusive`).
    #[inline]
    pub fn record(&self, ns: u64, exclusive: bool) {
        bump(&self.buckets[bucket_of(ns)], 1, exclusive);
        bump(&self.sum_ns, ns, exclusive);
    }
}

/// Shards merged: per-bucket counts and the sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); the last is +Inf.
    pub buckets: [u64; BUCKETS],
    /// Sum of the observations in nanoseconds.
    pub sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Adds what `shard` holds now.
    pub fn merge(&mut self, shard: &HistogramShard) {
        for (total, bucket) in self.buckets.iter_mut().zip(&shard.buckets) {
            *total = total.wrapping_add(bucket.load(Relaxed));
        }
        self.sum_ns = self.sum_ns.wrapping_add(shard.sum_ns.load(Relaxed));
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// Cumulative counts, one per bucket in [`BOUNDS_NS`] order, +Inf last (equal to
    /// [`HistogramSnapshot::count`]).
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut out = [0u64; BUCKETS];
        let mut running = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            running = running.wrapping_add(*b);
            *o = running;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_strictly_increasing_and_as_documented() {
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(BOUNDS_NS[0], 10 * US);
        assert_eq!(BOUNDS_NS[1], 20 * US);
        assert_eq!(BOUNDS_NS[50], MS);
        // 20 µs resolution everywhere below 1 ms.
        assert!(BOUNDS_NS[1..=50].windows(2).all(|w| w[1] - w[0] == 20 * US));
        assert_eq!(
            &BOUNDS_NS[51..61],
            &[
                1_250 * US,
                1_500 * US,
                2 * MS,
                2_500 * US,
                3 * MS,
                4 * MS,
                5 * MS,
                6 * MS,
                8 * MS,
                10 * MS
            ]
        );
        assert_eq!(BOUNDS_NS[70], 100 * MS);
        assert_eq!(BOUNDS_NS[80], S);
        assert_eq!(BOUNDS_NS[81], 1_250 * MS);
        assert_eq!(*BOUNDS_NS.last().unwrap(), 10 * S);
        assert_eq!(BUCKETS, 92);
    }

    #[test]
    fn a_bound_belongs_to_its_own_bucket() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10 * US), 0, "le is inclusive");
        assert_eq!(bucket_of(10 * US + 1), 1);
        assert_eq!(bucket_of(20 * US), 1);
        assert_eq!(bucket_of(20 * US + 1), 2);
        assert_eq!(bucket_of(999 * US), 50);
        assert_eq!(bucket_of(MS), 50);
        assert_eq!(bucket_of(MS + 1), 51);
        assert_eq!(bucket_of(10 * S), FINITE_BUCKETS - 1);
        assert_eq!(bucket_of(10 * S + 1), FINITE_BUCKETS, "+Inf");
        assert_eq!(bucket_of(u64::MAX), FINITE_BUCKETS);
        for (i, &b) in BOUNDS_NS.iter().enumerate() {
            assert_eq!(bucket_of(b), i);
            assert_eq!(bucket_of(b + 1), i + 1);
        }
    }

    #[test]
    fn shards_merge_into_one_snapshot() {
        let (a, b) = (HistogramShard::default(), HistogramShard::default());
        a.record(5 * US, true);
        a.record(15 * US, true);
        b.record(15 * US, false);
        b.record(20 * S, false);
        let mut snap = HistogramSnapshot::default();
        snap.merge(&a);
        snap.merge(&b);
        assert_eq!(snap.count(), 4);
        assert_eq!(snap.buckets[0], 1);
        assert_eq!(snap.buckets[1], 2);
        assert_eq!(snap.buckets[FINITE_BUCKETS], 1);
        assert_eq!(snap.sum_ns, 5 * US + 30 * US + 20 * S);
        let c = snap.cumulative();
        assert_eq!(
            (c[0], c[1], c[2], c[FINITE_BUCKETS - 1], c[FINITE_BUCKETS]),
            (1, 3, 3, 3, 4)
        );
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }
}
