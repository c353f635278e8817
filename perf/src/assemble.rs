//! Turns what the run gathered (collected series and totals, each session's outcome, the
//! LUNs seen, CPU time) into the [`RunResult`]. Pure: no I/O, so it is tested with made-up
//! inputs.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::collect::Collected;
use crate::cpu::CpuTimes;
use crate::histo;
use crate::options::Workload;
use crate::result::{
    CpuUsage, Errors, LongestIo, LunInfo, OpResult, Params, RunResult, Totals, Unfinished,
    VerifyResult, SCHEMA,
};
use crate::session::{SessionOutcome, MAX_ERROR_RECORDS};
use crate::stalls::find_stalls;
use crate::verify::{VerifyCounts, MAX_MISMATCH_RECORDS};

/// Everything a result is made of.
pub struct Inputs<'a> {
    pub workload: &'a Workload,
    pub luns: Vec<LunInfo>,
    pub collected: Collected,
    pub outcomes: Vec<SessionOutcome>,
    pub cpu: CpuTimes,
    /// Wall time the CPU time was spent in (ramp and measurement).
    pub wall: Duration,
    pub started_unix_s: f64,
}

/// Builds the result.
pub fn assemble(x: Inputs<'_>) -> RunResult {
    let w = x.workload;
    let seconds = w.runtime.as_secs_f64();
    let [read_h, write_h] = &x.collected.totals;
    let mut all_h = histo::new_histogram();
    histo::merge(&mut all_h, read_h);
    histo::merge(&mut all_h, write_h);
    let totals = Totals {
        read: op_result(read_h, w.bs_bytes, seconds),
        write: op_result(write_h, w.bs_bytes, seconds),
        all: op_result(&all_h, w.bs_bytes, seconds),
    };
    let stalls = find_stalls(&x.collected.intervals);
    let mut outcomes = x.outcomes;
    outcomes.sort_by_key(|o| o.session);
    RunResult {
        schema: SCHEMA.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_s: x.started_unix_s,
        params: params(w),
        luns: x.luns,
        duration_s: seconds,
        totals,
        intervals: x.collected.intervals,
        stalls,
        longest_io: longest(&outcomes),
        unfinished: unfinished(&outcomes),
        reconnects: reconnects(&outcomes),
        verify: w.verify.then(|| verify(&outcomes)),
        errors: errors(&outcomes),
        cpu: cpu(x.cpu, x.wall),
        send_lag: send_lag(&outcomes),
    }
}

fn op_result(h: &Histogram<u64>, bs: u64, seconds: f64) -> OpResult {
    let ops = h.len();
    let bytes = ops * bs;
    OpResult {
        ops,
        bytes,
        iops: ops as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        latency: histo::summarize(h),
    }
}

fn params(w: &Workload) -> Params {
    Params {
        rw: w.rw,
        rwmix_read: w.rw.read_percent(w.rwmix),
        bs_bytes: w.bs_bytes,
        iodepth: w.iodepth,
        sessions: w.sessions,
        runtime_s: w.runtime.as_secs(),
        ramp_s: w.ramp.as_secs(),
        size_bytes: w.size_bytes,
        offset_bytes: w.offset_bytes,
        rate_iops: w.rate_iops,
        verify: w.verify,
        timeout_s: w.timeout.as_secs_f64(),
        urls: w
            .targets
            .iter()
            .flat_map(|t| t.paths.iter().map(ToString::to_string))
            .collect(),
        initiator: w.initiator.clone(),
        seed: w.seed,
    }
}

fn longest(outcomes: &[SessionOutcome]) -> Option<LongestIo> {
    outcomes
        .iter()
        .filter_map(|o| o.longest)
        .max_by_key(|l| l.latency_ns)
}

fn unfinished(outcomes: &[SessionOutcome]) -> Unfinished {
    Unfinished {
        ios: outcomes.iter().map(|o| o.unfinished.ios).sum(),
        oldest_ms: outcomes
            .iter()
            .map(|o| o.unfinished.oldest_ms)
            .fold(0.0, f64::max),
    }
}

fn reconnects(outcomes: &[SessionOutcome]) -> Vec<crate::result::Reconnect> {
    let mut all: Vec<_> = outcomes.iter().flat_map(|o| o.reconnects.clone()).collect();
    all.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    all
}

fn verify(outcomes: &[SessionOutcome]) -> VerifyResult {
    let mut counts = VerifyCounts::default();
    let mut mismatches = Vec::new();
    for (c, m) in outcomes.iter().filter_map(|o| o.verify.as_ref()) {
        counts.add(c);
        let room = MAX_MISMATCH_RECORDS.saturating_sub(mismatches.len());
        mismatches.extend(m.iter().take(room).cloned());
    }
    VerifyResult { counts, mismatches }
}

fn errors(outcomes: &[SessionOutcome]) -> Errors {
    let mut e = Errors::default();
    for o in outcomes {
        e.count += o.errors.count;
        e.retries += o.errors.retries;
        let room = MAX_ERROR_RECORDS.saturating_sub(e.first.len());
        e.first.extend(o.errors.first.iter().take(room).cloned());
    }
    e
}

fn cpu(t: CpuTimes, wall: Duration) -> CpuUsage {
    let used = (t.user + t.system).as_secs_f64();
    CpuUsage {
        user_s: t.user.as_secs_f64(),
        system_s: t.system.as_secs_f64(),
        percent_of_one_core: if wall.is_zero() {
            0.0
        } else {
            100.0 * used / wall.as_secs_f64()
        },
    }
}

fn send_lag(outcomes: &[SessionOutcome]) -> Option<crate::result::Latency> {
    let mut merged: Option<Histogram<u64>> = None;
    for h in outcomes.iter().filter_map(|o| o.lag.as_ref()) {
        match &mut merged {
            Some(m) => histo::merge(m, h),
            None => merged = Some(h.clone()),
        }
    }
    merged.map(|h| histo::summarize(&h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Collector;
    use crate::options::RunArgs;
    use crate::result::{Op, Reconnect};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn workload(extra: &[&str]) -> Workload {
        let mut argv = vec!["x", "--url", "iscsi://h/iqn.x/0", "--runtime", "2"];
        argv.extend_from_slice(extra);
        Workload::from_args(&Cli::try_parse_from(argv).unwrap().run, 1).unwrap()
    }

    fn outcome(session: u32, latency_ns: u64, at_s: f64) -> SessionOutcome {
        let mut o = SessionOutcome {
            session,
            longest: Some(LongestIo {
                latency_ns,
                op: Op::Read,
                lba: 8,
                session,
                completed_at_s: 0.5,
            }),
            verify: Some((
                VerifyCounts {
                    blocks_ok: 10,
                    ..VerifyCounts::default()
                },
                vec![],
            )),
            ..SessionOutcome::default()
        };
        o.reconnects.push(Reconnect {
            session,
            at_s,
            from: "a".into(),
            to: "b".into(),
            reason: "x".into(),
            outstanding: 1,
            attempts: 1,
            downtime_ms: 1.0,
        });
        o.errors.push(session, 0.1, "boom".into());
        o
    }

    #[test]
    fn totals_rates_stalls_and_merged_outcomes() {
        let w = workload(&["--bs", "4k", "--verify"]);
        let mut c = Collector::new(1, 2, false);
        let mut h = [histo::new_histogram(), histo::new_histogram()];
        for _ in 0..1000 {
            histo::record(&mut h[0], 100_000);
        }
        histo::record(&mut h[1], 200_000);
        c.add(0, &h);
        let r = assemble(Inputs {
            workload: &w,
            luns: vec![],
            collected: c.finish(),
            outcomes: vec![outcome(1, 500, 1.5), outcome(0, 900, 0.5)],
            cpu: CpuTimes {
                user: Duration::from_millis(300),
                system: Duration::from_millis(100),
            },
            wall: Duration::from_secs(2),
            started_unix_s: 1.0,
        });
        assert_eq!(r.totals.read.ops, 1000);
        assert_eq!(r.totals.read.iops, 500.0, "1000 reads over 2 s");
        assert_eq!(r.totals.read.bytes, 4_096_000);
        assert_eq!(r.totals.all.ops, 1001);
        assert!((r.totals.read.mb_per_s - 2.048).abs() < 1e-9);
        assert_eq!(r.stalls.len(), 1, "second 1 had no completion");
        assert_eq!(r.stalls[0].index, 1);
        assert_eq!(r.longest_io.unwrap().latency_ns, 900);
        assert_eq!(r.reconnects[0].session, 0, "sorted by time");
        assert_eq!(r.verify.as_ref().unwrap().counts.blocks_ok, 20);
        assert_eq!((r.errors.count, r.errors.first.len()), (2, 2));
        assert!((r.cpu.percent_of_one_core - 20.0).abs() < 1e-9);
        assert!(r.send_lag.is_none());
        assert_eq!(r.params.rwmix_read, 100, "randread reads only");
        assert_eq!(r.schema, SCHEMA);
    }
}
