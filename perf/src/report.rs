//! What a person reads: the summary table at the end of a run and the one-line progress
//! report per measured second (on stderr).

use std::fmt::Write;

use crate::result::{IntervalResult, OpResult, RunResult};
use crate::size::format_size;
use crate::stalls::stall_runs;

/// A latency in the unit that keeps three significant digits readable: 850ns, 12.3us,
/// 4.56ms, 2.10s.
pub fn format_latency(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}us", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// One progress line: `[  3s] read 12345 IOPS p99 120.0us | write ...`.
pub fn progress_line(r: &IntervalResult) -> String {
    let mut line = format!("[{:>4}s]", r.index + 1);
    for (name, op) in [("read", &r.read), ("write", &r.write)] {
        if op.ops > 0 {
            let _ = write!(
                line,
                " {name} {} IOPS p50 {} p99 {} max {}",
                op.ops,
                format_latency(op.p50_ns),
                format_latency(op.p99_ns),
                format_latency(op.max_ns)
            );
        }
    }
    if r.ops == 0 {
        line.push_str(" STALL: no I/O completed");
    }
    line
}

/// The summary printed at the end of a run.
pub fn summary(r: &RunResult) -> String {
    let p = &r.params;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ringsan-perf: {} bs={} iodepth={} sessions={} x {} LUN(s) runtime={}s ramp={}s{}{}",
        p.rw.name(),
        format_size(p.bs_bytes),
        p.iodepth,
        p.sessions,
        r.luns.len(),
        p.runtime_s,
        p.ramp_s,
        p.rate_iops
            .map(|n| format!(" rate={n}/session"))
            .unwrap_or_default(),
        if p.verify { " verify" } else { "" },
    );
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "op", "ops", "IOPS", "MB/s", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (name, op) in [
        ("read", &r.totals.read),
        ("write", &r.totals.write),
        ("all", &r.totals.all),
    ] {
        if op.ops > 0 || name == "all" {
            out.push_str(&op_row(name, op));
        }
    }
    out.push_str(&events(r));
    out
}

fn op_row(name: &str, op: &OpResult) -> String {
    let l = &op.latency;
    format!(
        "{name:<6} {:>10} {:>11.0} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        op.ops,
        op.iops,
        op.mb_per_s,
        format_latency(l.p50_ns),
        format_latency(l.p90_ns),
        format_latency(l.p99_ns),
        format_latency(l.p99_9_ns),
        format_latency(l.p99_99_ns),
        format_latency(l.max_ns),
    )
}

fn events(r: &RunResult) -> String {
    let mut out = String::new();
    let runs = stall_runs(&r.stalls);
    if runs.is_empty() {
        out.push_str("stalls: none\n");
    } else {
        let list: Vec<String> = runs
            .iter()
            .map(|(a, b)| format!("{a}s-{}s", b + 1))
            .collect();
        let _ = writeln!(
            out,
            "stalls: {} second(s) without a completion: {}",
            r.stalls.len(),
            list.join(", ")
        );
    }
    if let Some(l) = &r.longest_io {
        let _ = writeln!(
            out,
            "longest I/O: {} ({} LBA {}, session {}, completed at {:.2}s)",
            format_latency(l.latency_ns),
            l.op.name(),
            l.lba,
            l.session,
            l.completed_at_s
        );
    }
    let _ = writeln!(out, "reconnects: {}", r.reconnects.len());
    for c in &r.reconnects {
        let _ = writeln!(
            out,
            "  at {:.2}s session {}: {} -> {} after {:.1} ms, {} in flight ({})",
            c.at_s,
            c.session,
            c.from,
            if c.to.is_empty() { "(none)" } else { &c.to },
            c.downtime_ms,
            c.outstanding,
            c.reason
        );
    }
    if r.unfinished.ios > 0 {
        let _ = writeln!(
            out,
            "unfinished at the end: {} I/O(s), oldest {:.0} ms",
            r.unfinished.ios, r.unfinished.oldest_ms
        );
    }
    if let Some(v) = &r.verify {
        let c = &v.counts;
        let _ = writeln!(
            out,
            "verify: {} reads checked; blocks ok {}, indeterminate {}, unknown (not written in this run) {}, MISMATCHED {}; writes in doubt {}",
            c.reads_checked, c.blocks_ok, c.blocks_indeterminate, c.blocks_unknown, c.blocks_mismatched, c.writes_in_doubt
        );
        for m in v.mismatches.iter().take(10) {
            let _ = writeln!(
                out,
                "  LBA {}: expected {}, found {}",
                m.lba, m.expected, m.actual
            );
        }
    }
    let _ = writeln!(
        out,
        "errors: {} (retries {})",
        r.errors.count, r.errors.retries
    );
    for e in r.errors.first.iter().take(10) {
        let _ = writeln!(
            out,
            "  at {:.2}s session {}: {}",
            e.at_s, e.session, e.message
        );
    }
    if let Some(lag) = &r.send_lag {
        let _ = writeln!(
            out,
            "send lag behind schedule: p50 {} p99 {} max {}",
            format_latency(lag.p50_ns),
            format_latency(lag.p99_ns),
            format_latency(lag.max_ns)
        );
    }
    let _ = writeln!(
        out,
        "client CPU: {:.2}s user + {:.2}s system ({:.0}% of one core)",
        r.cpu.user_s, r.cpu.system_s, r.cpu.percent_of_one_core
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample;

    #[test]
    fn latencies_keep_three_digits() {
        assert_eq!(format_latency(850), "850ns");
        assert_eq!(format_latency(12_345), "12.3us");
        assert_eq!(format_latency(4_561_000), "4.56ms");
        assert_eq!(format_latency(2_100_000_000), "2.10s");
    }

    #[test]
    fn the_summary_names_rates_stalls_and_reconnects() {
        let text = summary(&sample());
        assert!(text.contains("randrw bs=4k iodepth=8"), "{text}");
        assert!(text.contains("p99.99"), "{text}");
        assert!(
            text.contains("stalls: 1 second(s) without a completion: 3s-4s"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:3260 -> 127.0.0.1:3262"), "{text}");
        assert!(text.contains("verify: 0 reads checked"), "{text}");
    }

    #[test]
    fn progress_flags_a_stall() {
        let mut r = sample().intervals[0].clone();
        r.ops = 0;
        assert!(progress_line(&r).contains("STALL"));
    }
}
