//! The result of `ringsan-perf run`: what `--json` writes and what later tools (a `compare`
//! subcommand, CI scripts) read back with [`RunResult::from_json`].
//!
//! Stability: the document carries `schema` = [`SCHEMA`]. Within one schema version fields are
//! only ever added (readers must ignore unknown fields; serde does by default), never renamed,
//! removed or given another meaning. Units are in the names: `_ns`, `_s`, `_ms`, `_bytes`;
//! `mb_per_s` is 10^6 bytes per second (as fio's MB/s); `iops` is per second of measured time.
//! Times `at_s` are seconds since the start of measurement (negative during the ramp).

use serde::{Deserialize, Serialize};

use crate::options::RwMode;
use crate::verify::{Mismatch, VerifyCounts};

/// The schema name and version of [`RunResult`].
pub const SCHEMA: &str = "ringsan-perf/run/v1";

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Read,
    Write,
}

impl Op {
    pub const ALL: [Op; 2] = [Op::Read, Op::Write];

    /// 0 for reads, 1 for writes: the index into per-op arrays.
    pub fn index(self) -> usize {
        match self {
            Op::Read => 0,
            Op::Write => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// ringsan-perf's version.
    pub version: String,
    /// Wall-clock start of measurement, seconds since the Unix epoch.
    pub started_unix_s: f64,
    pub params: Params,
    pub luns: Vec<LunInfo>,
    /// Measured seconds (the ramp excluded).
    pub duration_s: f64,
    pub totals: Totals,
    /// One entry per measured second, in order.
    pub intervals: Vec<IntervalResult>,
    /// Every measured second in which no I/O completed.
    pub stalls: Vec<Stall>,
    /// The slowest single I/O measured (None when none completed).
    pub longest_io: Option<LongestIo>,
    /// I/Os still outstanding when the run ended.
    pub unfinished: Unfinished,
    pub reconnects: Vec<Reconnect>,
    /// Present with `--verify`.
    pub verify: Option<VerifyResult>,
    pub errors: Errors,
    pub cpu: CpuUsage,
    /// With `--rate`: how late commands left after their intended send time (the client's own
    /// lag, already included in the latencies).
    pub send_lag: Option<Latency>,
}

/// The options of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub rw: RwMode,
    /// Percentage of reads (randrw; 100 or 0 for the other modes).
    pub rwmix_read: u8,
    pub bs_bytes: u64,
    pub iodepth: u32,
    /// Sessions per LUN.
    pub sessions: u32,
    pub runtime_s: u64,
    pub ramp_s: u64,
    /// `--size` as given (None: to the end of the LUN).
    pub size_bytes: Option<u64>,
    pub offset_bytes: u64,
    /// `--rate`, IOPS per session.
    pub rate_iops: Option<u64>,
    pub verify: bool,
    pub timeout_s: f64,
    /// The URLs, secrets left out.
    pub urls: Vec<String>,
    pub initiator: String,
    pub seed: u64,
}

/// One LUN as the run saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunInfo {
    /// The first path's URL (secret left out).
    pub url: String,
    /// Every path (portal) to it.
    pub paths: Vec<String>,
    pub block_len: u32,
    pub blocks: u64,
    /// The region the run used.
    pub region_offset_bytes: u64,
    pub region_size_bytes: u64,
}

/// Totals per operation and for both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub read: OpResult,
    pub write: OpResult,
    pub all: OpResult,
}

/// Throughput and latency of one operation over the measured time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OpResult {
    pub ops: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mb_per_s: f64,
    pub latency: Latency,
}

/// Latency percentiles in nanoseconds (HdrHistogram, 3 significant digits); all 0 when no
/// I/O completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub p99_99_ns: u64,
    pub max_ns: u64,
}

/// One measured second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalResult {
    /// 0 for the first measured second.
    pub index: u64,
    pub start_s: f64,
    /// Completions of both operations.
    pub ops: u64,
    pub read: IntervalOp,
    pub write: IntervalOp,
}

/// One operation in one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntervalOp {
    pub ops: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub max_ns: u64,
}

/// A measured second without a single completion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    pub index: u64,
    pub start_s: f64,
}

/// The slowest I/O.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LongestIo {
    pub latency_ns: u64,
    pub op: Op,
    pub lba: u64,
    /// Session index over all LUNs (0-based).
    pub session: u32,
    pub completed_at_s: f64,
}

/// I/Os that had not completed when the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Unfinished {
    pub ios: u64,
    /// Age of the oldest at the end, from its intended (or first) send.
    pub oldest_ms: f64,
}

/// A lost connection and the new one that replaced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconnect {
    pub session: u32,
    /// When the failure was noticed.
    pub at_s: f64,
    /// Portal of the failed path.
    pub from: String,
    /// Portal logged in to (empty when the run ended first).
    pub to: String,
    /// What failed: "connection lost: ...", "command timeout: ...", ...
    pub reason: String,
    /// Commands in flight at the failure (resent on the new connection).
    pub outstanding: u32,
    /// Connection and login attempts until one succeeded.
    pub attempts: u32,
    /// From the failure to logged in again.
    pub downtime_ms: f64,
}

/// `--verify` verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    #[serde(flatten)]
    pub counts: VerifyCounts,
    /// The first mismatches (at most 100 per session); all are counted in `blocks_mismatched`.
    pub mismatches: Vec<Mismatch>,
}

/// Commands that failed (after retries) and retries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Errors {
    pub count: u64,
    /// Commands resent after UNIT ATTENTION, BUSY, TASK SET FULL or a reconnect.
    pub retries: u64,
    /// The first errors (at most 100 per session).
    pub first: Vec<ErrorRecord>,
}

/// One failed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub session: u32,
    pub at_s: f64,
    pub message: String,
}

/// The load generator's own CPU time over the run (ramp and measurement).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CpuUsage {
    pub user_s: f64,
    pub system_s: f64,
    /// (user + system) / wall time, in percent of one core.
    pub percent_of_one_core: f64,
}

/// Why a result file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("not a ringsan-perf result: {0}")]
    Json(#[from] serde_json::Error),
    #[error("result schema {found:?} is not {SCHEMA:?}")]
    Schema { found: String },
}

impl RunResult {
    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Reads a result back; refuses another schema.
    pub fn from_json(text: &str) -> Result<RunResult, ResultError> {
        let r: RunResult = serde_json::from_str(text)?;
        if r.schema != SCHEMA {
            return Err(ResultError::Schema { found: r.schema });
        }
        Ok(r)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small but complete result.
    pub(crate) fn sample() -> RunResult {
        let lat = Latency {
            min_ns: 10,
            mean_ns: 50,
            p50_ns: 40,
            p90_ns: 80,
            p99_ns: 90,
            p99_9_ns: 95,
            p99_99_ns: 99,
            max_ns: 100,
        };
        let op = OpResult {
            ops: 10,
            bytes: 40960,
            iops: 10.0,
            mb_per_s: 0.04,
            latency: lat,
        };
        RunResult {
            schema: SCHEMA.into(),
            version: "0.1.0".into(),
            started_unix_s: 1.5e9,
            params: Params {
                rw: RwMode::Randrw,
                rwmix_read: 70,
                bs_bytes: 4096,
                iodepth: 8,
                sessions: 1,
                runtime_s: 1,
                ramp_s: 0,
                size_bytes: None,
                offset_bytes: 0,
                rate_iops: None,
                verify: true,
                timeout_s: 5.0,
                urls: vec!["iscsi://127.0.0.1:3260/iqn.x/0".into()],
                initiator: "iqn.y".into(),
                seed: 1,
            },
            luns: vec![LunInfo {
                url: "iscsi://127.0.0.1:3260/iqn.x/0".into(),
                paths: vec!["127.0.0.1:3260".into()],
                block_len: 512,
                blocks: 2048,
                region_offset_bytes: 0,
                region_size_bytes: 1 << 20,
            }],
            duration_s: 1.0,
            totals: Totals {
                read: op.clone(),
                write: op.clone(),
                all: op,
            },
            intervals: vec![IntervalResult {
                index: 0,
                start_s: 0.0,
                ops: 20,
                read: IntervalOp::default(),
                write: IntervalOp::default(),
            }],
            stalls: vec![Stall {
                index: 3,
                start_s: 3.0,
            }],
            longest_io: Some(LongestIo {
                latency_ns: 100,
                op: Op::Write,
                lba: 8,
                session: 0,
                completed_at_s: 0.5,
            }),
            unfinished: Unfinished::default(),
            reconnects: vec![Reconnect {
                session: 0,
                at_s: 0.2,
                from: "127.0.0.1:3260".into(),
                to: "127.0.0.1:3262".into(),
                reason: "connection lost: EOF".into(),
                outstanding: 8,
                attempts: 1,
                downtime_ms: 12.0,
            }],
            verify: Some(VerifyResult {
                counts: VerifyCounts::default(),
                mismatches: vec![],
            }),
            errors: Errors::default(),
            cpu: CpuUsage::default(),
            send_lag: None,
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        for key in [
            "schema",
            "version",
            "started_unix_s",
            "params",
            "luns",
            "duration_s",
            "totals",
            "intervals",
            "stalls",
            "longest_io",
            "unfinished",
            "reconnects",
            "verify",
            "errors",
            "cpu",
            "send_lag",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["params"]["rw"], "randrw");
        assert_eq!(v["totals"]["read"]["latency"]["p99_9_ns"], 95);
        assert_eq!(v["totals"]["all"]["ops"], 10);
        assert_eq!(v["longest_io"]["op"], "write");
        for key in [
            "reads_checked",
            "blocks_ok",
            "blocks_indeterminate",
            "blocks_unknown",
            "blocks_mismatched",
            "writes_in_doubt",
            "mismatches",
        ] {
            assert!(
                v["verify"].get(key).is_some(),
                "verify.{key} (flattened counts)"
            );
        }
        assert_eq!(v["intervals"][0]["read"]["p99_ns"], 0);
        assert_eq!(v["stalls"][0]["index"], 3);
        assert_eq!(v["reconnects"][0]["to"], "127.0.0.1:3262");
    }

    #[test]
    fn a_result_reads_back_and_other_schemas_are_refused() {
        let r = sample();
        let text = r.to_json().unwrap();
        assert_eq!(RunResult::from_json(&text).unwrap(), r);
        let other = text.replace(SCHEMA, "ringsan-perf/run/v0");
        assert!(matches!(
            RunResult::from_json(&other),
            Err(ResultError::Schema { .. })
        ));
        assert!(matches!(
            RunResult::from_json("{}"),
            Err(ResultError::Json(_))
        ));
    }

    #[test]
    fn unknown_fields_are_ignored_by_readers() {
        let mut v: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        v["a_future_field"] = serde_json::json!(1);
        v["totals"]["read"]["another"] = serde_json::json!("x");
        assert!(RunResult::from_json(&v.to_string()).is_ok());
    }
}
