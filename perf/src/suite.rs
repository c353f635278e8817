//! `ringsan-perf suite`: the standard matrix against two LUNs (usually ringsan and a baseline
//! target) in interleaved rounds (A B in even rounds, B A in odd ones, so drift of a noisy
//! machine hits both alike), each job a `ringsan-perf run` of its own. The medians of the rounds
//! and their ratios A/B become a markdown table, printed and optionally appended to a results
//! file (`perf/RESULTS.md`).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::result::RunResult;

/// One job of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Shown in the table and used in file names.
    pub name: &'static str,
    /// `--rw`.
    pub rw: &'static str,
    /// `--bs`.
    pub bs: &'static str,
    /// `--iodepth`.
    pub iodepth: u32,
    /// `--rwmix` (randrw only).
    pub rwmix: Option<u8>,
}

/// The standard matrix: 4 KiB random read and write at QD1, QD8 and QD32; a 70/30 mix at QD16;
/// 128 KiB sequential write at QD8; 1 MiB sequential read at QD4.
pub const MATRIX: [Job; 9] = [
    job("4k-randread-qd1", "randread", "4k", 1, None),
    job("4k-randread-qd8", "randread", "4k", 8, None),
    job("4k-randread-qd32", "randread", "4k", 32, None),
    job("4k-randwrite-qd1", "randwrite", "4k", 1, None),
    job("4k-randwrite-qd8", "randwrite", "4k", 8, None),
    job("4k-randwrite-qd32", "randwrite", "4k", 32, None),
    job("4k-randrw70-qd16", "randrw", "4k", 16, Some(70)),
    job("128k-write-qd8", "write", "128k", 8, None),
    job("1m-read-qd4", "read", "1m", 4, None),
];

const fn job(
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
    iodepth: u32,
    rwmix: Option<u8>,
) -> Job {
    Job {
        name,
        rw,
        bs,
        iodepth,
        rwmix,
    }
}

/// What the suite runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The two LUNs' URLs, A first.
    pub urls: [String; 2],
    /// Their names in the table.
    pub names: [String; 2],
    /// Rounds (at least 1).
    pub rounds: u32,
    /// `--runtime` of each run, seconds.
    pub runtime_s: u64,
    /// `--ramp` of each run, seconds.
    pub ramp_s: u64,
    /// `--size` of each run (the region used), as given.
    pub size: Option<String>,
    /// Where each run's JSON goes.
    pub out_dir: PathBuf,
    /// Only the jobs whose names contain one of these (all when empty).
    pub only: Vec<String>,
}

impl Plan {
    /// The jobs this plan runs, in order.
    pub fn jobs(&self) -> Vec<Job> {
        MATRIX
            .iter()
            .copied()
            .filter(|j| self.only.is_empty() || self.only.iter().any(|o| j.name.contains(o)))
            .collect()
    }

    /// The `ringsan-perf run` arguments of `job` against side `side` (0 = A) in `round`.
    pub fn run_args(&self, job: &Job, side: usize, round: u32) -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            "--url".into(),
            self.urls[side].clone(),
            "--rw".into(),
            job.rw.into(),
            "--bs".into(),
            job.bs.into(),
            "--iodepth".into(),
            job.iodepth.to_string(),
            "--runtime".into(),
            self.runtime_s.to_string(),
            "--ramp".into(),
            self.ramp_s.to_string(),
            "--quiet".into(),
            "--json".into(),
            self.json_path(job, side, round).display().to_string(),
        ];
        if let Some(mix) = job.rwmix {
            a.extend(["--rwmix".into(), mix.to_string()]);
        }
        if let Some(size) = &self.size {
            a.extend(["--size".into(), size.clone()]);
        }
        a
    }

    /// Where the JSON of one run goes.
    pub fn json_path(&self, job: &Job, side: usize, round: u32) -> PathBuf {
        let side = if side == 0 { "a" } else { "b" };
        self.out_dir
            .join(format!("{}-{side}-r{}.json", job.name, round + 1))
    }
}

/// The results of one job: every round of A, then of B.
pub type JobResults = (Job, [Vec<RunResult>; 2]);

/// The medians of one side of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Medians {
    /// IOPS.
    pub iops: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    /// The load generator's CPU, percent of one core.
    pub client_cpu: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The medians over `runs` (one side of one job, every round).
pub fn medians(runs: &[RunResult]) -> Medians {
    let pick = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    Medians {
        iops: pick(&|r| r.totals.all.iops),
        p50_us: pick(&|r| r.totals.all.latency.p50_ns as f64 / 1000.0),
        p99_us: pick(&|r| r.totals.all.latency.p99_ns as f64 / 1000.0),
        p99_9_us: pick(&|r| r.totals.all.latency.p99_9_ns as f64 / 1000.0),
        client_cpu: pick(&|r| r.cpu.percent_of_one_core),
    }
}

/// Every run of the plan: interleaved rounds; `runner` runs one `ringsan-perf run` with the
/// given arguments and returns its result. Returns, per job, the results of A and of B.
pub fn execute<E>(
    plan: &Plan,
    runner: &mut dyn FnMut(&[String]) -> Result<RunResult, E>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<JobResults>, E> {
    let jobs = plan.jobs();
    let mut results: Vec<JobResults> = jobs
        .iter()
        .map(|j| (*j, [Vec::new(), Vec::new()]))
        .collect();
    for round in 0..plan.rounds.max(1) {
        for (job, sides) in results.iter_mut() {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let r = runner(&plan.run_args(job, side, round))?;
                progress(&format!(
                    "round {}/{} {} {}: {:.0} IOPS, p99 {:.1} µs",
                    round + 1,
                    plan.rounds.max(1),
                    job.name,
                    plan.names[side],
                    r.totals.all.iops,
                    r.totals.all.latency.p99_ns as f64 / 1000.0
                ));
                sides[side].push(r);
            }
        }
    }
    Ok(results)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The markdown table of medians and ratios.
pub fn table(plan: &Plan, results: &[JobResults]) -> String {
    let [a, b] = &plan.names;
    let mut out = format!(
        "| job | IOPS {a} | IOPS {b} | **A/B** | p50 {a} | p50 {b} | A/B | p99 {a} | p99 {b} | **A/B** | p99.9 {a} | p99.9 {b} | A/B | client CPU % {a} | {b} |\n"
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (job, sides) in results {
        let (ma, mb) = (medians(&sides[0]), medians(&sides[1]));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | **{}** | {:.1} | {:.1} | {} | {:.1} | {:.1} | **{}** | {:.1} | {:.1} | {} | {:.0} | {:.0} |",
            job.name,
            ma.iops,
            mb.iops,
            ratio(ma.iops, mb.iops),
            ma.p50_us,
            mb.p50_us,
            ratio(ma.p50_us, mb.p50_us),
            ma.p99_us,
            mb.p99_us,
            ratio(ma.p99_us, mb.p99_us),
            ma.p99_9_us,
            mb.p99_9_us,
            ratio(ma.p99_9_us, mb.p99_9_us),
            ma.client_cpu,
            mb.client_cpu,
        );
    }
    out
}

/// The section appended to the results file: heading, what ran, the table.
pub fn section(plan: &Plan, command: &str, date: &str, table: &str) -> String {
    format!(
        "\n## ringsan-perf suite: {} (A) against {} (B), {date}\n\n\
         A = `{}`, B = `{}`; {} interleaved rounds × {} s (+{} s ramp), medians of the rounds; \
         latency in µs from ringsan-perf's HdrHistograms. Raw results: `{}`.\n\n\
         ```sh\n{command}\n```\n\n{table}",
        plan.names[0],
        plan.names[1],
        plan.urls[0],
        plan.urls[1],
        plan.rounds.max(1),
        plan.runtime_s,
        plan.ramp_s,
        plan.out_dir.display()
    )
}

/// Appends `text` to the results file (created if missing).
pub fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample;

    fn plan() -> Plan {
        Plan {
            urls: ["iscsi://a/iqn.x:a/0".into(), "iscsi://b/iqn.x:b/1".into()],
            names: ["ringsan".into(), "tgtd".into()],
            rounds: 3,
            runtime_s: 5,
            ramp_s: 1,
            size: Some("1g".into()),
            out_dir: PathBuf::from("/tmp/suite"),
            only: vec!["4k-randread".into(), "randrw".into()],
        }
    }

    #[test]
    fn rounds_interleave_and_arguments_are_complete() {
        let p = plan();
        assert_eq!(p.jobs().len(), 4);
        let mut seen = Vec::new();
        let results = execute(
            &p,
            &mut |args: &[String]| -> Result<RunResult, ()> {
                seen.push(args.to_vec());
                let mut r = sample();
                r.totals.all.iops = if args[2].contains("iqn.x:a") {
                    200.0
                } else {
                    100.0
                };
                Ok(r)
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(seen.len(), 3 * 4 * 2);
        // Round 1 runs A first, round 2 B first.
        assert!(seen[0][2].contains(":a/") && seen[1][2].contains(":b/"));
        assert!(seen[8][2].contains(":b/") && seen[9][2].contains(":a/"));
        let mix = seen
            .iter()
            .find(|a| a.contains(&"randrw".to_string()))
            .unwrap();
        assert!(mix.windows(2).any(|w| w[0] == "--rwmix" && w[1] == "70"));
        assert!(seen[0].windows(2).any(|w| w[0] == "--size" && w[1] == "1g"));
        assert!(seen[0]
            .iter()
            .any(|a| a == "/tmp/suite/4k-randread-qd1-a-r1.json"));
        let t = table(&p, &results);
        assert!(
            t.contains("| 4k-randread-qd32 | 200 | 100 | **2.00** |"),
            "{t}"
        );
        assert_eq!(t.lines().count(), 2 + 4);
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
