//! The options of `ringsan-perf run` ([`RunArgs`], parsed by clap) and the validated workload
//! they describe ([`Workload`]), which is all the rest of the crate reads.
//!
//! Validation happens once, here, with messages that name the option and what to write
//! instead; nothing later re-checks a user value. URLs that name the same IQN and LUN through
//! different portals become one [`LunTarget`] with several paths (failover between them).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::size::{parse_size, SizeError};
use crate::url::IscsiUrl;

/// Largest I/O size: one command's buffer, and a 32-bit transfer length in any block size.
pub const MAX_BS_BYTES: u64 = 16 << 20;
/// Most commands in flight per session (ITTs carry the slot in 16 bits; also bounds memory).
pub const MAX_IODEPTH: u32 = 1024;
/// Most sessions per LUN.
pub const MAX_SESSIONS: u32 = 256;
/// Longest run (and ramp): one day; intervals are kept per second.
pub const MAX_RUNTIME_S: u64 = 86_400;
/// Most memory the --verify write buffers may take (sessions x iodepth x bs).
pub const MAX_VERIFY_BUFFER_BYTES: u64 = 2 << 30;

/// The I/O pattern, as fio's `--rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RwMode {
    Read,
    Write,
    Randread,
    Randwrite,
    Randrw,
}

impl RwMode {
    pub fn is_random(self) -> bool {
        matches!(self, RwMode::Randread | RwMode::Randwrite | RwMode::Randrw)
    }

    pub fn name(self) -> &'static str {
        match self {
            RwMode::Read => "read",
            RwMode::Write => "write",
            RwMode::Randread => "randread",
            RwMode::Randwrite => "randwrite",
            RwMode::Randrw => "randrw",
        }
    }

    /// Share of reads in percent: `rwmix` for randrw, 100 or 0 otherwise.
    pub fn read_percent(self, rwmix: u8) -> u8 {
        match self {
            RwMode::Read | RwMode::Randread => 100,
            RwMode::Write | RwMode::Randwrite => 0,
            RwMode::Randrw => rwmix,
        }
    }
}

/// `ringsan-perf run` options.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// LUN to drive: iscsi://HOST/IQN/LUN, or iscsi://USER%SECRET@HOST:PORT/IQN/LUN with CHAP
    /// and a port other than 3260 (repeatable; URLs with the same IQN and LUN are paths to one
    /// LUN and the sessions fail over between them)
    #[arg(long = "url", required = true, value_name = "URL", value_parser = parse_url)]
    pub urls: Vec<IscsiUrl>,
    /// I/O pattern
    #[arg(long, value_enum, default_value = "randread")]
    pub rw: RwMode,
    /// Percentage of reads for --rw randrw
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub rwmix: u8,
    /// I/O size (e.g. 4k, 128k, 1m): a multiple of the LUN's block size
    #[arg(long, default_value = "4k", value_parser = parse_size_arg)]
    pub bs: u64,
    /// Commands in flight per session
    #[arg(long, default_value_t = 1)]
    pub iodepth: u32,
    /// Sessions per LUN, each its own TCP connection and ISID
    #[arg(long, default_value_t = 1)]
    pub sessions: u32,
    /// Measured seconds (after the ramp), e.g. 10, 30s, 2m
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub runtime: Duration,
    /// Seconds of load before measuring starts (not recorded)
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Bytes of the LUN to use, from --offset (default: to the end of the LUN)
    #[arg(long, value_parser = parse_size_arg)]
    pub size: Option<u64>,
    /// First byte of the LUN to use
    #[arg(long, default_value = "0", value_parser = parse_size_arg)]
    pub offset: u64,
    /// Fixed-rate mode: IOPS per session on a fixed schedule; latency counts from each I/O's
    /// intended send time
    #[arg(long)]
    pub rate: Option<u64>,
    /// Stamp every written block (checksum, LBA, writer, sequence) and check every read
    #[arg(long)]
    pub verify: bool,
    /// Command timeout: an I/O older than this fails the path over (e.g. 5, 0.5, 2s)
    #[arg(long, default_value = "5", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write per-second latency histograms in the HdrHistogram interval log format
    #[arg(long = "hdr-log", value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// Initiator name sent at login
    #[arg(long, default_value = "iqn.2026-11.io.ringsan:perf")]
    pub initiator: String,
    /// Seed of the offset and read/write choices (default: from the clock)
    #[arg(long)]
    pub seed: Option<u64>,
    /// No per-second progress lines on stderr
    #[arg(long)]
    pub quiet: bool,
}

/// Paths to one LUN: same IQN and LUN, different portals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunTarget {
    pub paths: Vec<IscsiUrl>,
}

impl LunTarget {
    /// The first path (used in messages and results).
    pub fn primary(&self) -> &IscsiUrl {
        &self.paths[0]
    }
}

/// A validated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub targets: Vec<LunTarget>,
    pub rw: RwMode,
    pub rwmix: u8,
    pub bs_bytes: u64,
    pub iodepth: u32,
    pub sessions: u32,
    pub runtime: Duration,
    pub ramp: Duration,
    pub size_bytes: Option<u64>,
    pub offset_bytes: u64,
    pub rate_iops: Option<u64>,
    pub verify: bool,
    pub timeout: Duration,
    pub initiator: String,
    pub seed: u64,
    /// Keep per-interval histograms for `--hdr-log`.
    pub keep_hdr_log: bool,
    pub quiet: bool,
}

/// An option value that is out of range or inconsistent with another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("--bs {0}: must be a multiple of 512 bytes from 512 to 16m")]
    BadBs(u64),
    #[error("--iodepth {0}: must be from 1 to {MAX_IODEPTH}")]
    BadIodepth(u32),
    #[error("--sessions {0}: must be from 1 to {MAX_SESSIONS}")]
    BadSessions(u32),
    #[error("--runtime: must be whole seconds from 1 to {MAX_RUNTIME_S} (got {0:?})")]
    BadRuntime(Duration),
    #[error("--ramp: must be whole seconds up to {MAX_RUNTIME_S} (got {0:?})")]
    BadRamp(Duration),
    #[error("--rate 0: give at least 1 IOPS per session, or leave --rate out")]
    ZeroRate,
    #[error("--timeout: must be more than 0 (got {0:?})")]
    BadTimeout(Duration),
    #[error("--offset {0}: must be a multiple of 512 bytes")]
    BadOffset(u64),
    #[error("--size {size}: smaller than one --bs of {bs} bytes")]
    SizeBelowBs { size: u64, bs: u64 },
    #[error("--url {0} is given twice")]
    DuplicatePath(String),
    #[error("--verify keeps a {bs}-byte buffer per command: {sessions} sessions x {iodepth} x {bs} exceeds 2 GiB; lower --iodepth, --sessions or --bs")]
    VerifyMemory {
        sessions: u64,
        iodepth: u32,
        bs: u64,
    },
    #[error("--initiator {0:?}: an iSCSI name starts with iqn., eui. or naa.")]
    BadInitiator(String),
}

impl Workload {
    /// Checks `args` and builds the workload; `default_seed` is used when `--seed` is absent.
    pub fn from_args(args: &RunArgs, default_seed: u64) -> Result<Workload, OptionError> {
        check_numbers(args)?;
        let targets = group_paths(&args.urls)?;
        if args.verify {
            let sessions = args.sessions as u64 * targets.len() as u64;
            let bytes = sessions * u64::from(args.iodepth) * args.bs;
            if bytes > MAX_VERIFY_BUFFER_BYTES {
                return Err(OptionError::VerifyMemory {
                    sessions,
                    iodepth: args.iodepth,
                    bs: args.bs,
                });
            }
        }
        let name = args.initiator.to_ascii_lowercase();
        if !["iqn.", "eui.", "naa."].iter().any(|p| name.starts_with(p)) {
            return Err(OptionError::BadInitiator(args.initiator.clone()));
        }
        Ok(Workload {
            targets,
            rw: args.rw,
            rwmix: args.rwmix,
            bs_bytes: args.bs,
            iodepth: args.iodepth,
            sessions: args.sessions,
            runtime: args.runtime,
            ramp: args.ramp,
            size_bytes: args.size,
            offset_bytes: args.offset,
            rate_iops: args.rate,
            verify: args.verify,
            timeout: args.timeout,
            initiator: args.initiator.clone(),
            seed: args.seed.unwrap_or(default_seed),
            keep_hdr_log: args.hdr_log.is_some(),
            quiet: args.quiet,
        })
    }

    /// Sessions over all LUNs.
    pub fn total_sessions(&self) -> usize {
        self.targets.len() * self.sessions as usize
    }

    /// Whole measured seconds: the number of one-second intervals.
    pub fn runtime_s(&self) -> u64 {
        self.runtime.as_secs()
    }
}

fn check_numbers(a: &RunArgs) -> Result<(), OptionError> {
    if a.bs < 512 || !a.bs.is_multiple_of(512) || a.bs > MAX_BS_BYTES {
        return Err(OptionError::BadBs(a.bs));
    }
    if a.iodepth == 0 || a.iodepth > MAX_IODEPTH {
        return Err(OptionError::BadIodepth(a.iodepth));
    }
    if a.sessions == 0 || a.sessions > MAX_SESSIONS {
        return Err(OptionError::BadSessions(a.sessions));
    }
    let whole = |d: Duration| d.subsec_nanos() == 0 && d.as_secs() <= MAX_RUNTIME_S;
    if !whole(a.runtime) || a.runtime.is_zero() {
        return Err(OptionError::BadRuntime(a.runtime));
    }
    if !whole(a.ramp) {
        return Err(OptionError::BadRamp(a.ramp));
    }
    if a.rate == Some(0) {
        return Err(OptionError::ZeroRate);
    }
    if a.timeout.is_zero() {
        return Err(OptionError::BadTimeout(a.timeout));
    }
    if !a.offset.is_multiple_of(512) {
        return Err(OptionError::BadOffset(a.offset));
    }
    match a.size {
        Some(size) if size < a.bs => Err(OptionError::SizeBelowBs { size, bs: a.bs }),
        _ => Ok(()),
    }
}

/// Groups URLs by (IQN, LUN), in order of first appearance.
fn group_paths(urls: &[IscsiUrl]) -> Result<Vec<LunTarget>, OptionError> {
    let mut targets: Vec<LunTarget> = Vec::new();
    for url in urls {
        match targets
            .iter_mut()
            .find(|t| t.primary().lun_key() == url.lun_key())
        {
            Some(t) if t.paths.iter().any(|p| p.portal() == url.portal()) => {
                return Err(OptionError::DuplicatePath(url.to_string()))
            }
            Some(t) => t.paths.push(url.clone()),
            None => targets.push(LunTarget {
                paths: vec![url.clone()],
            }),
        }
    }
    Ok(targets)
}

fn parse_url(text: &str) -> Result<IscsiUrl, String> {
    IscsiUrl::parse(text).map_err(|e| e.to_string())
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e: SizeError| e.to_string())
}

/// Parses seconds: `5`, `0.5`, `30s`, `250ms`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let bad = || format!("{text:?} is not a duration: write seconds (5, 0.5, 30s, 250ms, 2m, 1h)");
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    const URL: &str = "iscsi://127.0.0.1:3260/iqn.2026-11.io.ringsan:demo/0";

    fn parse(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut argv = vec!["run", "--url", URL];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.run)
    }

    fn workload(extra: &[&str]) -> Result<Workload, OptionError> {
        Workload::from_args(&parse(extra).unwrap(), 7)
    }

    #[test]
    fn defaults_are_fio_like() {
        let w = workload(&[]).unwrap();
        assert_eq!(w.rw, RwMode::Randread);
        assert_eq!(
            (w.bs_bytes, w.iodepth, w.sessions, w.rwmix),
            (4096, 1, 1, 50)
        );
        assert_eq!(w.runtime, Duration::from_secs(10));
        assert_eq!(w.ramp, Duration::ZERO);
        assert_eq!(w.timeout, Duration::from_secs(5));
        assert_eq!((w.size_bytes, w.offset_bytes, w.rate_iops), (None, 0, None));
        assert!(!w.verify && !w.keep_hdr_log);
        assert_eq!(w.seed, 7);
        assert_eq!(w.targets.len(), 1);
    }

    #[test]
    fn every_option_parses() {
        let w = workload(&[
            "--rw",
            "randrw",
            "--rwmix",
            "70",
            "--bs",
            "128k",
            "--iodepth",
            "32",
            "--sessions",
            "4",
            "--runtime",
            "30s",
            "--ramp",
            "2",
            "--size",
            "1g",
            "--offset",
            "1m",
            "--rate",
            "5000",
            "--verify",
            "--timeout",
            "500ms",
            "--hdr-log",
            "x.hlog",
            "--json",
            "x.json",
            "--seed",
            "42",
            "--quiet",
        ])
        .unwrap();
        assert_eq!((w.rw, w.rwmix, w.bs_bytes), (RwMode::Randrw, 70, 128 << 10));
        assert_eq!((w.iodepth, w.sessions), (32, 4));
        assert_eq!((w.runtime_s(), w.ramp.as_secs()), (30, 2));
        assert_eq!((w.size_bytes, w.offset_bytes), (Some(1 << 30), 1 << 20));
        assert_eq!(w.rate_iops, Some(5000));
        assert_eq!(w.timeout, Duration::from_millis(500));
        assert!(w.verify && w.keep_hdr_log && w.quiet);
        assert_eq!(w.seed, 42);
    }

    #[test]
    fn clap_refuses_malformed_values() {
        assert!(parse(&["--rw", "randomread"]).is_err());
        assert!(parse(&["--rwmix", "101"]).is_err());
        assert!(parse(&["--bs", "4q"]).is_err());
        assert!(parse(&["--runtime", "soon"]).is_err());
        let err = Cli::try_parse_from(["run", "--url", "iscsi://h/iqn.x"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("names no LUN"), "{err}");
        assert!(Cli::try_parse_from(["run"]).is_err(), "--url is required");
    }

    #[test]
    fn inconsistent_values_name_the_option() {
        let cases: [(&[&str], &str); 10] = [
            (&["--bs", "1000"], "--bs 1000"),
            (&["--bs", "32m"], "--bs"),
            (&["--iodepth", "0"], "--iodepth 0"),
            (&["--iodepth", "5000"], "--iodepth"),
            (&["--sessions", "0"], "--sessions"),
            (&["--runtime", "0"], "--runtime"),
            (&["--runtime", "1.5"], "whole seconds"),
            (&["--rate", "0"], "--rate 0"),
            (&["--offset", "100"], "--offset 100"),
            (&["--size", "1k", "--bs", "4k"], "--size 1024"),
        ];
        for (extra, words) in cases {
            let err = workload(extra).unwrap_err();
            assert!(err.to_string().contains(words), "{extra:?}: {err}");
        }
        let err = workload(&["--timeout", "0"]).unwrap_err();
        assert!(matches!(err, OptionError::BadTimeout(_)));
        let err = workload(&["--initiator", "me"]).unwrap_err();
        assert!(err.to_string().contains("iqn."), "{err}");
        let err = workload(&["--verify", "--bs", "16m", "--iodepth", "1024"]).unwrap_err();
        assert!(matches!(err, OptionError::VerifyMemory { .. }), "{err}");
    }

    #[test]
    fn urls_of_one_lun_become_paths() {
        let other = "iscsi://127.0.0.1:3262/iqn.2026-11.io.ringsan:demo/0";
        let lun1 = "iscsi://127.0.0.1:3260/iqn.2026-11.io.ringsan:demo/1";
        let w = workload(&["--url", other, "--url", lun1]).unwrap();
        assert_eq!(w.targets.len(), 2);
        assert_eq!(w.targets[0].paths.len(), 2);
        assert_eq!(w.targets[0].paths[1].port, 3262);
        assert_eq!(w.targets[1].primary().lun, 1);
        assert_eq!(w.total_sessions(), 2);
        let err = workload(&["--url", URL]).unwrap_err();
        assert!(matches!(err, OptionError::DuplicatePath(_)), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("inf").is_err());
    }

    #[test]
    fn read_share_follows_the_mode() {
        assert_eq!(RwMode::Randread.read_percent(30), 100);
        assert_eq!(RwMode::Write.read_percent(30), 0);
        assert_eq!(RwMode::Randrw.read_percent(30), 30);
        assert!(RwMode::Randrw.is_random() && !RwMode::Read.is_random());
    }
}
