//! The figures of one logical unit: commands, bytes and latency per kind of operation, CHECK
//! CONDITIONs by sense key and RESERVATION CONFLICTs. Held by the [`LogicalUnit`] itself, so a
//! command records into the unit it already holds (no lookup), and a unit added or deleted live
//! appears in or vanishes from the endpoint with it.
//!
//! One shard per reactor, cache-line aligned, written by that reactor alone with plain
//! relaxed loads and stores: recording takes no lock, allocates nothing and contends for no
//! cache line. One more shard, written with atomic adds, takes commands from any other thread.
//! The endpoint merges the shards when scraped ([`LunMetrics::snapshot`]).
//!
//! [`LogicalUnit`]: crate::scsi::lun::LogicalUnit

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::histogram::{bump, HistogramShard, HistogramSnapshot};
use crate::metrics::reactor_index;
use crate::scsi::opcodes as op;
use crate::scsi::sense::ScsiStatus;

/// What kind of operation a command is (label `op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// READ(6/10/12/16/32).
    Read = 0,
    /// WRITE(6/10/12/16/32), WRITE AND VERIFY, WRITE SAME, COMPARE AND WRITE, ORWRITE, UNMAP.
    Write = 1,
    /// Everything else (INQUIRY, TEST UNIT READY, SYNCHRONIZE CACHE, PERSISTENT RESERVE, ...).
    Other = 2,
}

/// Kinds of operation.
pub const OPS: usize = 3;

/// Service actions of the 32-byte CDBs (opcode 7Fh, SBC-3 §5) counted as reads or writes.
const SA32_READ: u16 = 0x0009;
const SA32_WRITE: u16 = 0x000B;
const SA32_WRITE_AND_VERIFY: u16 = 0x000C;
const SA32_WRITE_SAME: u16 = 0x000D;
const SA32_ORWRITE: u16 = 0x000E;

impl OpClass {
    /// Every kind, in label order.
    pub const ALL: [OpClass; OPS] = [OpClass::Read, OpClass::Write, OpClass::Other];

    /// The kind of the command `cdb` (by its operation code, and service action for 7Fh).
    pub fn of_cdb(cdb: &[u8]) -> OpClass {
        match cdb.first().copied().unwrap_or(op::TEST_UNIT_READY) {
            op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => OpClass::Read,
            op::WRITE_6
            | op::WRITE_10
            | op::WRITE_12
            | op::WRITE_16
            | op::WRITE_AND_VERIFY_10
            | op::WRITE_AND_VERIFY_12
            | op::WRITE_AND_VERIFY_16
            | op::WRITE_SAME_10
            | op::WRITE_SAME_16
            | op::COMPARE_AND_WRITE
            | op::ORWRITE_16
            | op::UNMAP => OpClass::Write,
            op::VARIABLE_LENGTH_CDB => {
                let sa = u16::from_be_bytes([
                    cdb.get(8).copied().unwrap_or(0),
                    cdb.get(9).copied().unwrap_or(0),
                ]);
                match sa {
                    SA32_READ => OpClass::Read,
                    SA32_WRITE | SA32_WRITE_AND_VERIFY | SA32_WRITE_SAME | SA32_ORWRITE => {
                        OpClass::Write
                    }
                    _ => OpClass::Other,
                }
            }
            _ => OpClass::Other,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Other => "other",
        }
    }
}

/// Label values of the sense keys (SPC-4 §4.5.6), indexed by the key's code.
pub const SENSE_KEY_NAMES: [&str; 16] = [
    "no_sense",
    "recovered_error",
    "not_ready",
    "medium_error",
    "hardware_error",
    "illegal_request",
    "unit_attention",
    "data_protect",
    "blank_check",
    "vendor_specific",
    "copy_aborted",
    "aborted_command",
    "reserved_0c",
    "volume_overflow",
    "miscompare",
    "completed",
];

/// The sense key of encoded sense data, fixed (70h/71h) or descriptor (72h/73h) format.
pub fn sense_key(sense: &[u8]) -> Option<u8> {
    let at = match sense.first()? & 0x7F {
        0x70 | 0x71 => 2,
        0x72 | 0x73 => 1,
        _ => return None,
    };
    sense.get(at).map(|b| b & 0x0F)
}

/// How one command ended, as recorded.
#[derive(Clone, Copy, Debug)]
pub struct CommandRecord<'a> {
    /// Its kind.
    pub op: OpClass,
    /// The status sent; `None` when the command ended without one (aborted, TAS=0).
    pub status: Option<u8>,
    /// Sense data sent with CHECK CONDITION.
    pub sense: Option<&'a [u8]>,
    /// Data transferred, both directions (Data-In sent plus Data-Out taken).
    pub bytes: u64,
    /// From the command's admission to its status queued (or its end without one).
    pub elapsed: Duration,
}

#[derive(Default)]
struct OpShard {
    latency: HistogramShard,
    bytes: AtomicU64,
}

/// One reactor's part, on cache lines of its own (128 bytes: adjacent-line prefetch pairs them).
#[repr(align(128))]
#[derive(Default)]
struct LunShard {
    ops: [OpShard; OPS],
    errors: [AtomicU64; 16],
    reservation_conflicts: AtomicU64,
}

/// The figures of one logical unit (see the module's comment).
pub struct LunMetrics {
    /// One per reactor, then the shared one.
    shards: Box<[LunShard]>,
}

impl Default for LunMetrics {
    fn default() -> Self {
        LunMetrics::new(0)
    }
}

impl LunMetrics {
    /// Figures for a daemon with `reactors` reactor threads (each gets its own shard).
    pub fn new(reactors: usize) -> LunMetrics {
        LunMetrics {
            shards: (0..=reactors).map(|_| LunShard::default()).collect(),
        }
    }

    /// Records one command. Costs a thread-local read, a bucket search over 91 bounds and a few
    /// relaxed loads and stores; no lock, no allocation.
    pub fn record(&self, c: &CommandRecord<'_>) {
        let shared = self.shards.len() - 1;
        let (index, exclusive) = match reactor_index() {
            Some(i) if i < shared => (i, true),
            _ => (shared, false),
        };
        let shard = &self.shards[index];
        let op = &shard.ops[c.op as usize];
        let ns = u64::try_from(c.elapsed.as_nanos()).unwrap_or(u64::MAX);
        op.latency.record(ns, exclusive);
        bump(&op.bytes, c.bytes, exclusive);
        if c.status == Some(ScsiStatus::CheckCondition.code()) {
            let key = c.sense.and_then(sense_key).unwrap_or(0);
            bump(&shard.errors[key as usize], 1, exclusive);
        } else if c.status == Some(ScsiStatus::ReservationConflict.code()) {
            bump(&shard.reservation_conflicts, 1, exclusive);
        }
    }

    /// Every shard merged, as of now.
    pub fn snapshot(&self) -> LunSnapshot {
        let mut out = LunSnapshot::default();
        for shard in self.shards.iter() {
            for (o, s) in out.ops.iter_mut().zip(&shard.ops) {
                o.latency.merge(&s.latency);
                o.bytes = o.bytes.wrapping_add(s.bytes.load(Relaxed));
            }
            for (o, s) in out.errors.iter_mut().zip(&shard.errors) {
                *o = o.wrapping_add(s.load(Relaxed));
            }
            out.reservation_conflicts = out
                .reservation_conflicts
                .wrapping_add(shard.reservation_conflicts.load(Relaxed));
        }
        out
    }
}

/// One kind of operation, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpSnapshot {
    /// Latency; its count is the number of commands.
    pub latency: HistogramSnapshot,
    /// Data transferred.
    pub bytes: u64,
}

/// A logical unit's figures, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LunSnapshot {
    /// Per [`OpClass`], in [`OpClass::ALL`] order.
    pub ops: [OpSnapshot; OPS],
    /// CHECK CONDITIONs per sense key code.
    pub errors: [u64; 16],
    /// RESERVATION CONFLICTs.
    pub reservation_conflicts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_classified_by_opcode() {
        for opcode in [0x08, 0x28, 0xA8, 0x88] {
            assert_eq!(
                OpClass::of_cdb(&[opcode, 0, 0]),
                OpClass::Read,
                "{opcode:#x}"
            );
        }
        for opcode in [
            0x0A, 0x2A, 0xAA, 0x8A, 0x2E, 0xAE, 0x8E, 0x41, 0x93, 0x89, 0x42,
        ] {
            assert_eq!(OpClass::of_cdb(&[opcode]), OpClass::Write, "{opcode:#x}");
        }
        for opcode in [0x00, 0x12, 0x35, 0x5E, 0x5F, 0x9E, 0xA0, 0x2F] {
            assert_eq!(OpClass::of_cdb(&[opcode]), OpClass::Other, "{opcode:#x}");
        }
        let mut cdb32 = [0u8; 32];
        cdb32[0] = 0x7F;
        cdb32[9] = 0x09;
        assert_eq!(OpClass::of_cdb(&cdb32), OpClass::Read);
        cdb32[9] = 0x0D;
        assert_eq!(OpClass::of_cdb(&cdb32), OpClass::Write);
        cdb32[9] = 0x0A;
        assert_eq!(OpClass::of_cdb(&cdb32), OpClass::Other, "VERIFY(32)");
        assert_eq!(OpClass::of_cdb(&[]), OpClass::Other);
    }

    #[test]
    fn sense_key_of_both_formats() {
        assert_eq!(sense_key(&[0x70, 0, 0x05, 0, 0, 0, 0, 10]), Some(5));
        assert_eq!(sense_key(&[0xF0, 0, 0x26]), Some(6), "VALID bit and ILI");
        assert_eq!(sense_key(&[0x72, 0x02, 0x04, 0x00]), Some(2));
        assert_eq!(sense_key(&[0x72]), None);
        assert_eq!(sense_key(&[0x00, 0, 5]), None);
        assert_eq!(sense_key(&[]), None);
    }

    #[test]
    fn records_reach_the_snapshot_from_any_thread() {
        let m = LunMetrics::new(2);
        let illegal = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0];
        let record = |op, status, sense, bytes, us| CommandRecord {
            op,
            status,
            sense,
            bytes,
            elapsed: Duration::from_micros(us),
        };
        std::thread::scope(|s| {
            for i in 0..2 {
                let m = &m;
                s.spawn(move || {
                    crate::metrics::set_reactor_index(i);
                    m.record(&record(OpClass::Read, Some(0), None, 4096, 15));
                });
            }
        });
        // Not a reactor thread: the shared shard.
        m.record(&record(OpClass::Write, Some(0), None, 512, 3_000));
        m.record(&record(OpClass::Read, Some(2), Some(&illegal), 0, 5));
        m.record(&record(OpClass::Other, Some(0x18), None, 0, 5));
        m.record(&record(OpClass::Write, None, None, 0, 5));
        let snap = m.snapshot();
        let read = &snap.ops[OpClass::Read as usize];
        assert_eq!((read.latency.count(), read.bytes), (3, 8192));
        assert_eq!(read.latency.buckets[1], 2, "15 µs: le=20µs");
        assert_eq!(read.latency.sum_ns, 35_000);
        let write = &snap.ops[OpClass::Write as usize];
        assert_eq!((write.latency.count(), write.bytes), (2, 512));
        assert_eq!(snap.ops[OpClass::Other as usize].latency.count(), 1);
        assert_eq!(snap.errors[5], 1);
        assert_eq!(snap.errors.iter().sum::<u64>(), 1);
        assert_eq!(snap.reservation_conflicts, 1);
    }
}
