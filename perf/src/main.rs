//! `ringsan-perf`: the command line of the load generator. `run` drives LUNs and prints the
//! summary; `--json` and `--hdr-log` write the result files. `compare` puts result files side
//! by side; `suite` runs the standard matrix against two LUNs and can append it to a results
//! file. Exit status: 0 when the run
//! completed (I/O errors and stalls are reported, not fatal), 1 when --verify found a mismatch,
//! 2 for usage errors, 3 when the run could not start or a result file could not be written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ringsan_perf::options::{RunArgs, Workload};
use ringsan_perf::report::{progress_line, summary};
use ringsan_perf::rng::clock_seed;
use ringsan_perf::run::run;
use ringsan_perf::{compare, suite};

/// An iSCSI initiator load generator on ringsan's own PDU codec.
#[derive(Parser)]
#[command(name = "ringsan-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive one or more LUNs with a fio-like workload and report IOPS and latency percentiles.
    Run(Box<RunArgs>),
    /// Put the JSON results of runs side by side, with ratios to the first.
    Compare {
        /// Result files written by `run --json`; the first is the base of the ratios.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
    },
    /// The standard matrix (4k random read and write at QD1/8/32, 70/30 mix at QD16, 128k
    /// sequential write at QD8, 1m sequential read at QD4) against two LUNs, interleaved rounds.
    Suite(SuiteArgs),
}

#[derive(clap::Args)]
struct SuiteArgs {
    /// LUN A (the one under test), as for `run --url`.
    #[arg(long)]
    a: String,
    /// LUN B (the baseline).
    #[arg(long)]
    b: String,
    /// A's name in the table.
    #[arg(long, default_value = "ringsan")]
    name_a: String,
    /// B's name in the table.
    #[arg(long, default_value = "baseline")]
    name_b: String,
    /// Interleaved rounds (A B, then B A, ...).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds each run measures.
    #[arg(long, default_value_t = 10)]
    runtime: u64,
    /// Seconds each run warms up first.
    #[arg(long, default_value_t = 2)]
    ramp: u64,
    /// The region of each LUN used (e.g. 1g); the whole LUN by default.
    #[arg(long)]
    size: Option<String>,
    /// Where the runs' JSON files go.
    #[arg(long, default_value = "ringsan-perf-suite")]
    out: PathBuf,
    /// Append the table, with the command that made it, to this file (e.g. perf/RESULTS.md).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Only the jobs whose names contain one of these (repeatable), e.g. --only randread.
    #[arg(long)]
    only: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match run_command(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ringsan-perf: {e:#}");
                ExitCode::from(3)
            }
        },
        Command::Compare { files } => match compare_command(&files) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringsan-perf: {e:#}");
                ExitCode::from(3)
            }
        },
        Command::Suite(args) => match suite_command(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringsan-perf: {e:#}");
                ExitCode::from(3)
            }
        },
    }
}

fn compare_command(files: &[PathBuf]) -> anyhow::Result<()> {
    let runs = files
        .iter()
        .map(|f| compare::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    print!("{}", compare::table(&runs));
    Ok(())
}

fn suite_command(args: &SuiteArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let plan = suite::Plan {
        urls: [args.a.clone(), args.b.clone()],
        names: [args.name_a.clone(), args.name_b.clone()],
        rounds: args.rounds,
        runtime_s: args.runtime,
        ramp_s: args.ramp,
        size: args.size.clone(),
        out_dir: args.out.clone(),
        only: args.only.clone(),
    };
    let me = std::env::current_exe().context("locating ringsan-perf itself")?;
    let mut runner = |run_args: &[String]| -> anyhow::Result<ringsan_perf::result::RunResult> {
        let status = std::process::Command::new(&me)
            .args(run_args)
            .stdout(std::process::Stdio::null())
            .status()
            .context("starting ringsan-perf run")?;
        let json = run_args
            .windows(2)
            .find(|w| w[0] == "--json")
            .map(|w| PathBuf::from(&w[1]))
            .context("no --json in the run's arguments")?;
        if !status.success() {
            anyhow::bail!("ringsan-perf {} failed: {status}", run_args.join(" "));
        }
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("reading {}", json.display()))?;
        Ok(ringsan_perf::result::RunResult::from_json(&text)?)
    };
    let results = suite::execute(&plan, &mut runner, &mut |line| eprintln!("{line}"))?;
    let table = suite::table(&plan, &results);
    print!("{table}");
    if let Some(path) = &args.results {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let date = std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        suite::append(path, &suite::section(&plan, &command, &date, &table))
            .with_context(|| format!("appending to {}", path.display()))?;
    }
    Ok(())
}

fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let w = match Workload::from_args(args, clock_seed()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ringsan-perf: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let quiet = w.quiet;
    let mut progress = |second: &_| {
        if !quiet {
            let _ = writeln!(std::io::stderr(), "{}", progress_line(second));
        }
    };
    let out = run(&w, &mut progress)?;
    print!("{}", summary(&out.result));
    if let Some(path) = &args.json {
        let text = out.result.to_json().context("encoding the result")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the result to {}", path.display()))?;
    }
    if let (Some(path), Some(log)) = (&args.hdr_log, &out.hdr_log) {
        log.write_to(path, out.started)
            .with_context(|| format!("writing the interval log to {}", path.display()))?;
    }
    let mismatched = out
        .result
        .verify
        .as_ref()
        .is_some_and(|v| v.counts.blocks_mismatched > 0);
    Ok(if mismatched {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
