//! `ringsan-perf compare A.json B.json ...`: runs side by side, as a markdown table with every run
//! after the first also given as a ratio to the first (IOPS above 1 and latency below 1 mean the
//! run is ahead of the first one).

use std::fmt::Write;
use std::path::Path;

use crate::result::{OpResult, RunResult};

/// One run to compare, with the name it is shown under.
pub struct Named {
    /// Shown in the first column (usually the file's stem).
    pub name: String,
    /// The run.
    pub result: RunResult,
}

/// Why `compare` could not read a run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a result of `ringsan-perf run`.
    #[error("{path}: {source}")]
    Result {
        /// The file.
        path: String,
        /// Why.
        source: crate::result::ResultError,
    },
}

/// Reads a result file; its name is the file's stem.
pub fn load(path: &Path) -> Result<Named, CompareError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CompareError::Io {
        path: shown.clone(),
        source,
    })?;
    let result = RunResult::from_json(&text).map_err(|source| CompareError::Result {
        path: shown.clone(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(shown);
    Ok(Named { name, result })
}

/// The workload in a few words: `randrw 70/30 4k QD16 x2`.
pub fn workload(r: &RunResult) -> String {
    let p = &r.params;
    let rw = format!("{:?}", p.rw).to_lowercase();
    let mix = if rw == "randrw" {
        format!(" {}/{}", p.rwmix_read, 100 - u32::from(p.rwmix_read))
    } else {
        String::new()
    };
    let sessions = if p.sessions > 1 {
        format!(" x{}", p.sessions)
    } else {
        String::new()
    };
    let rate = p.rate_iops.map(|r| format!(" @{r}/s")).unwrap_or_default();
    format!(
        "{rw}{mix} {} QD{}{sessions}{rate}",
        size_words(p.bs_bytes),
        p.iodepth
    )
}

fn size_words(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => format!("{b}"),
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn ratio(a: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.2}", a / base)
    } else {
        "-".into()
    }
}

/// The operation a comparison looks at: both together (`all`).
fn op(r: &RunResult) -> &OpResult {
    &r.totals.all
}

/// The side-by-side table. The first run is the base of every ratio.
pub fn table(runs: &[Named]) -> String {
    let mut out = String::new();
    out.push_str(
        "| run | workload | IOPS | ×IOPS | MB/s | p50 µs | ×p50 | p99 µs | ×p99 | p99.9 µs | ×p99.9 | max µs | client CPU % | stalls | reconnects | errors |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let Some(base) = runs.first() else {
        return out;
    };
    let b = op(&base.result);
    for run in runs {
        let r = &run.result;
        let a = op(r);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            run.name,
            workload(r),
            a.iops,
            ratio(a.iops, b.iops),
            a.mb_per_s,
            us(a.latency.p50_ns),
            ratio(a.latency.p50_ns as f64, b.latency.p50_ns as f64),
            us(a.latency.p99_ns),
            ratio(a.latency.p99_ns as f64, b.latency.p99_ns as f64),
            us(a.latency.p99_9_ns),
            ratio(a.latency.p99_9_ns as f64, b.latency.p99_9_ns as f64),
            us(a.latency.max_ns),
            r.cpu.percent_of_one_core,
            r.stalls.len(),
            r.reconnects.len(),
            r.errors.count,
        );
    }
    let workloads: Vec<String> = runs.iter().map(|r| workload(&r.result)).collect();
    if workloads.iter().any(|w| *w != workloads[0]) {
        out.push_str("\nNote: the runs do not all have the same workload.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample;

    #[test]
    fn ratios_are_to_the_first_run() {
        let a = sample();
        let mut b = sample();
        b.totals.all.iops = a.totals.all.iops * 2.0;
        b.totals.all.latency.p99_ns = a.totals.all.latency.p99_ns / 2;
        let t = table(&[
            Named {
                name: "base".into(),
                result: a,
            },
            Named {
                name: "fast".into(),
                result: b,
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        let base: Vec<&str> = lines[2].split('|').map(str::trim).collect();
        let fast: Vec<&str> = lines[3].split('|').map(str::trim).collect();
        assert_eq!((base[1], base[4]), ("base", "1.00"));
        assert_eq!((fast[1], fast[4]), ("fast", "2.00"), "{t}");
        assert_eq!(fast[9], "0.50", "p99 ratio: {t}");
        assert!(!t.contains("Note:"), "same workload: {t}");
    }

    #[test]
    fn different_workloads_are_flagged() {
        let a = sample();
        let mut b = sample();
        b.params.iodepth += 1;
        let t = table(&[
            Named {
                name: "a".into(),
                result: a,
            },
            Named {
                name: "b".into(),
                result: b,
            },
        ]);
        assert!(t.contains("Note: the runs do not all have the same workload"));
    }

    #[test]
    fn a_file_that_is_not_a_result_is_named() {
        let dir = std::env::temp_dir().join(format!("ringsan-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{}").unwrap();
        let e = load(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("bad.json"), "{e}");
        let good = dir.join("good.json");
        std::fs::write(&good, sample().to_json().unwrap()).unwrap();
        assert_eq!(load(&good).unwrap().name, "good");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
