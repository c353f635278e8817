//! What recording a command into the metrics costs the data path, per command: on a reactor
//! thread (its own shard, plain relaxed loads and stores) and on any other thread (the shared
//! shard, atomic adds); and what a scrape costs per LUN (merging the shards).
//!
//! Run with `cargo bench --bench metrics`. The end-to-end view (a suite with metrics on against
//! off) is `perf/bench-metrics`; both are in `perf/RESULTS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use ringsan::metrics::lun::{CommandRecord, LunMetrics, OpClass};
use ringsan::metrics::set_reactor_index;

/// Latencies spread over the histogram's range, so the bucket search is not always the same.
const LATENCIES_NS: [u64; 8] = [
    9_000, 45_000, 61_000, 130_000, 480_000, 999_000, 2_400_000, 40_000_000,
];

fn record(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    g.measurement_time(Duration::from_secs(3));
    let lun = LunMetrics::new(2);
    let mut i = 0usize;
    let mut one = |lun: &LunMetrics| {
        i = i.wrapping_add(1);
        lun.record(black_box(&CommandRecord {
            op: if i.is_multiple_of(3) {
                OpClass::Write
            } else {
                OpClass::Read
            },
            status: Some(0),
            sense: None,
            bytes: 4096,
            elapsed: Duration::from_nanos(LATENCIES_NS[i % LATENCIES_NS.len()]),
        }));
    };
    g.bench_function("record/shared-shard", |b| b.iter(|| one(&lun)));
    set_reactor_index(0);
    g.bench_function("record/reactor-shard", |b| b.iter(|| one(&lun)));
    g.bench_function("snapshot/one-lun-3-shards", |b| {
        b.iter(|| black_box(lun.snapshot()))
    });
    g.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
