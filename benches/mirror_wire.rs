//! What authenticating the mirror link costs: sealing and opening one Data frame (4 KiB,
//! 128 KiB and 1 MiB of data) with an HMAC-SHA256 tag against a private cable (CRC32C only).
//!
//! Run with `cargo bench --bench mirror_wire`; the figures are in `perf/RESULTS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ringsan_engine::mirror::msg::Msg;
use ringsan_engine::mirror::wire::{Codec, HEADER_BYTES};

fn seal_and_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("mirror_wire");
    g.measurement_time(Duration::from_secs(3));
    for size in [4096usize, 128 * 1024, 1 << 20] {
        let data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        for (name, key) in [("hmac", Some([7u8; 32])), ("private-cable", None)] {
            g.bench_with_input(BenchmarkId::new(name, size), &data, |b, data| {
                let mut tx = Codec::new(key, 1, 2, 1 << 21, 1 << 20);
                let mut rx = Codec::new(key, 2, 1, 1 << 21, 1 << 20);
                b.iter(|| {
                    let msg = Msg::Data {
                        seq: 1,
                        offset: 0,
                        len: data.len() as u64,
                        durable: true,
                        data: data.as_slice(),
                    };
                    let s = tx.seal(&msg).remove(0);
                    let mut hb = [0u8; HEADER_BYTES];
                    hb.copy_from_slice(&s.head[..HEADER_BYTES]);
                    let h = rx.open_header(&hb).ok();
                    if let Some(h) = h {
                        black_box(
                            rx.open(&hb, &h, &s.head[HEADER_BYTES..], data.as_slice(), &s.tag)
                                .is_ok(),
                        );
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
