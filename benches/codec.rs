//! Micro-benchmarks of the per-PDU CPU work on the data path: the iSCSI header codec (decode and
//! encode of SCSI Command, Data-Out, Data-In, SCSI Response and R2T), CRC32C digests over a
//! header, a typical data segment and a large burst, and the SCSI CDB decoder.
//!
//! Run with `cargo bench --bench codec` (add `-- --quick` for a short pass). Decoding is
//! measured the way the target and an initiator do it: through the `Request` / `Response`
//! enums that dispatch on the opcode.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use ringsan::iscsi::digest::{crc32c, header_digest};
use ringsan::iscsi::pdu::{
    encode_lun, task_attr, Bhs, DataIn, DataOut, R2t, Request, Response, ScsiCommand, ScsiResponse,
    RESERVED_TAG,
};
use ringsan::scsi::cdb::decode;
use ringsan::scsi::geometry::LuGeometry;

/// A 4 KiB READ(10) at LBA 0x1234 on LUN 0, as an initiator sends it.
fn read10_command() -> ScsiCommand {
    let mut cdb = [0u8; 16];
    cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0]);
    ScsiCommand {
        immediate: false,
        final_flag: true,
        read: true,
        write: false,
        attr: task_attr::SIMPLE,
        ahs_len_words: 0,
        data_len: 0,
        lun: encode_lun(0),
        itt: 0x1000_0001,
        expected_data_len: 4096,
        cmdsn: 42,
        exp_statsn: 17,
        cdb,
    }
}

fn data_out() -> DataOut {
    DataOut {
        final_flag: true,
        data_len: 8192,
        lun: encode_lun(0),
        itt: 0x1000_0002,
        ttt: 0x0000_0007,
        exp_statsn: 17,
        data_sn: 1,
        buffer_offset: 8192,
    }
}

fn data_in() -> DataIn {
    DataIn {
        final_flag: true,
        ack: false,
        overflow: false,
        underflow: false,
        status_present: true,
        status: 0,
        data_len: 4096,
        lun: encode_lun(0),
        itt: 0x1000_0001,
        ttt: RESERVED_TAG,
        statsn: 17,
        exp_cmdsn: 43,
        max_cmdsn: 170,
        data_sn: 0,
        buffer_offset: 0,
        residual_count: 0,
    }
}

fn scsi_response() -> ScsiResponse {
    ScsiResponse {
        response: 0,
        status: 0,
        itt: 0x1000_0002,
        statsn: 18,
        exp_cmdsn: 44,
        max_cmdsn: 171,
        ..ScsiResponse::default()
    }
}

fn r2t() -> R2t {
    R2t {
        lun: encode_lun(0),
        itt: 0x1000_0003,
        ttt: 0x0000_0007,
        statsn: 19,
        exp_cmdsn: 45,
        max_cmdsn: 172,
        r2t_sn: 0,
        buffer_offset: 65536,
        desired_len: 262_144,
    }
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g
}

fn pdu_codec(c: &mut Criterion) {
    let cmd = read10_command();
    let dout = data_out();
    let din = data_in();
    let rsp = scsi_response();
    let r2t = r2t();

    let requests: [(&str, Bhs); 2] = [("scsi_command", cmd.encode()), ("data_out", dout.encode())];
    let responses: [(&str, Bhs); 3] = [
        ("data_in", din.encode()),
        ("scsi_response", rsp.encode()),
        ("r2t", r2t.encode()),
    ];

    let mut g = quick(c, "pdu_decode");
    for (name, bhs) in &requests {
        assert!(Request::decode(bhs).is_ok(), "{name} must decode");
        g.bench_with_input(BenchmarkId::from_parameter(name), bhs, |b, bhs| {
            b.iter(|| Request::decode(black_box(bhs)))
        });
    }
    for (name, bhs) in &responses {
        assert!(Response::decode(bhs).is_ok(), "{name} must decode");
        g.bench_with_input(BenchmarkId::from_parameter(name), bhs, |b, bhs| {
            b.iter(|| Response::decode(black_box(bhs)))
        });
    }
    g.bench_function("scsi_command_from_wire", |b| {
        let wire = cmd.encode().0;
        b.iter(|| Bhs::from_slice(black_box(&wire[..])).and_then(|h| ScsiCommand::decode(&h)))
    });
    g.finish();

    let mut g = quick(c, "pdu_encode");
    g.bench_function("scsi_command", |b| b.iter(|| black_box(&cmd).encode()));
    g.bench_function("data_out", |b| b.iter(|| black_box(&dout).encode()));
    g.bench_function("data_in", |b| b.iter(|| black_box(&din).encode()));
    g.bench_function("scsi_response", |b| b.iter(|| black_box(&rsp).encode()));
    g.bench_function("r2t", |b| b.iter(|| black_box(&r2t).encode()));
    g.finish();
}

fn digests(c: &mut Criterion) {
    let mut g = quick(c, "crc32c");
    for (name, len) in [("48B", 48usize), ("8KiB", 8 << 10), ("256KiB", 256 << 10)] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| crc32c(black_box(data)))
        });
    }
    let bhs = read10_command().encode();
    g.throughput(Throughput::Bytes(48));
    g.bench_function("header_digest", |b| {
        b.iter(|| header_digest(black_box(&bhs), black_box(&[])))
    });
    g.finish();
}

fn cdb_decoder(c: &mut Criterion) {
    let geom = LuGeometry::new(512, 1 << 21);
    let read10: [u8; 16] = [0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
    let write16: [u8; 16] = [
        0x8a, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0, 0, 0, 0x08, 0, 0,
    ];
    let inquiry: [u8; 16] = [0x12, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    // An opcode ringsan does not support (vendor-specific 0xff): INVALID COMMAND OPERATION CODE.
    let invalid: [u8; 16] = [0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cases: [(&str, [u8; 16], bool); 4] = [
        ("read10", read10, true),
        ("write16", write16, true),
        ("inquiry", inquiry, true),
        ("invalid_opcode", invalid, false),
    ];
    let mut g = quick(c, "cdb_decode");
    for (name, cdb, ok) in &cases {
        assert_eq!(
            decode(cdb, &geom).is_ok(),
            *ok,
            "{name}: {:?}",
            decode(cdb, &geom)
        );
        g.bench_with_input(BenchmarkId::from_parameter(name), cdb, |b, cdb| {
            b.iter(|| decode(black_box(&cdb[..]), black_box(&geom)))
        });
    }
    g.finish();
}

criterion_group!(benches, pdu_codec, digests, cdb_decoder);
criterion_main!(benches);
