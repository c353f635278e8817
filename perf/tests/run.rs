//! `ringsan-perf run` against the real daemon: starts `ringsand` (the binary the workspace
//! build put next to `ringsan-perf`) on a free loopback port with a 64 MiB LUN, runs a short
//! verified random read/write load, and checks the JSON result; plus the exit codes of a bad
//! URL and an unreachable target.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringsan_perf::result::{Latency, RunResult};

const IQN: &str = "iqn.2026-11.io.ringsan:perf-test";
const PERF: &str = env!("CARGO_BIN_EXE_ringsan-perf");

/// A running daemon, killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ringsand` from the same build as `ringsan-perf` (the workspace test command builds every
/// binary of the workspace into one folder).
fn ringsand() -> PathBuf {
    let dir = Path::new(PERF)
        .parent()
        .expect("ringsan-perf sits in a folder");
    let path = dir.join("ringsand");
    assert!(
        path.exists(),
        "{} is missing: build the whole workspace first (cargo test --workspace builds every binary)",
        path.display()
    );
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A number that differs between calls (log file names of restarts).
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_daemon(dir: &Path) -> Daemon {
    start_daemon_on(dir, free_port())
}

/// Starts (or, with an existing folder, restarts) the daemon of `dir` on `port`.
fn start_daemon_on(dir: &Path, port: u16) -> Daemon {
    let config = format!(
        "[daemon]\ndata_dir = \"{d}\"\nreactors = 2\nbuffer_count = 64\nmetrics_address = \"off\"\n\
         control_socket = \"{d}/control.sock\"\nportals = [\"127.0.0.1:{port}\"]\n\n\
         [[target]]\niqn = \"{IQN}\"\n\n[[target.lun]]\nlun = 0\npath = \"lun0.img\"\nsize = \"64M\"\nblock_size = 512\n",
        d = dir.display()
    );
    let cfg = dir.join("ringsan.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join(format!("ringsand-{}.log", unique()));
    let mut child = Command::new(ringsand())
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start ringsand");
    // The banner comes once every portal is bound.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("serving on") {
                let _ = tx.send(());
            }
        }
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Daemon { child, addr, log };
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "ringsand did not start; log:\n{}",
        std::fs::read_to_string(&d.log).unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&d.addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "ringsand does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

fn assert_ordered(what: &str, l: &Latency) {
    let chain = [
        l.min_ns,
        l.p50_ns,
        l.p90_ns,
        l.p99_ns,
        l.p99_9_ns,
        l.p99_99_ns,
        l.max_ns,
    ];
    assert!(
        chain.windows(2).all(|w| w[0] <= w[1]),
        "{what}: percentiles out of order: {l:?}"
    );
    assert!(l.min_ns > 0, "{what}: {l:?}");
}

#[test]
fn verified_random_read_write_against_ringsand() {
    let dir = scratch("perf-run");
    let daemon = start_daemon(&dir);
    let json = dir.join("out.json");
    let url = format!("iscsi://{}/{IQN}/0", daemon.addr);
    let out = Command::new(PERF)
        .args([
            "run",
            "--url",
            &url,
            "--rw",
            "randrw",
            "--bs",
            "4k",
            "--iodepth",
            "8",
        ])
        .args(["--runtime", "2", "--verify", "--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("p99.99") && stdout.contains("verify:"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&json).unwrap();
    let r = RunResult::from_json(&text).expect("the result reads back");
    assert_eq!(r.intervals.len(), 2);
    assert!(
        r.totals.read.ops > 0 && r.totals.write.ops > 0,
        "{:?}",
        r.totals
    );
    assert_eq!(r.totals.all.ops, r.totals.read.ops + r.totals.write.ops);
    assert_ordered("read", &r.totals.read.latency);
    assert_ordered("write", &r.totals.write.latency);
    assert_ordered("all", &r.totals.all.latency);
    let per_second: u64 = r.intervals.iter().map(|i| i.ops).sum();
    assert_eq!(
        per_second, r.totals.all.ops,
        "intervals add up to the totals"
    );
    let v = r.verify.expect("--verify results");
    assert!(
        v.counts.reads_checked > 0 && v.counts.blocks_ok > 0,
        "{v:?}"
    );
    assert_eq!(v.counts.blocks_mismatched, 0, "{:?}", v.mismatches);
    assert!(v.mismatches.is_empty());
    assert_eq!(r.errors.count, 0, "{:?}", r.errors.first);
    assert!(r.reconnects.is_empty(), "{:?}", r.reconnects);
    assert_eq!(r.luns[0].block_len, 512);
    assert_eq!(r.luns[0].blocks, 64 << 11);

    // The raw JSON keeps the documented names.
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["schema"], "ringsan-perf/run/v1");
    assert!(raw["totals"]["read"]["latency"]["p99_99_ns"].is_u64());
    assert!(raw["stalls"].is_array());
}

#[test]
fn a_bad_url_is_a_usage_error() {
    let out = Command::new(PERF)
        .args(["run", "--url", "iscsi://127.0.0.1/iqn.x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("names no LUN"), "{stderr}");
}

#[test]
fn an_unreachable_target_fails_the_run_with_the_reason() {
    let url = format!("iscsi://127.0.0.1:{}/{IQN}/0", free_port());
    let out = Command::new(PERF)
        .args(["run", "--url", &url, "--runtime", "1", "--timeout", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// SIGKILL: no shutdown path of the daemon runs.
fn kill(mut d: Daemon) {
    d.child.kill().unwrap();
    d.child.wait().unwrap();
}

#[test]
fn verify_through_a_sigkill_of_the_target_then_a_corrupted_block_is_named() {
    let dir = scratch("perf-sigkill");
    let daemon = start_daemon(&dir);
    let port = daemon.addr.port();
    let url = format!("iscsi://{}/{IQN}/0", daemon.addr);
    let json = dir.join("through-kill.json");
    let run = Command::new(PERF)
        .args(["run", "--url", &url, "--rw", "randrw", "--bs", "4k"])
        .args([
            "--iodepth",
            "8",
            "--size",
            "4m",
            "--runtime",
            "7",
            "--verify",
        ])
        .args(["--timeout", "10", "--quiet", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    kill(daemon);
    // Down for longer than two seconds, so at least one whole measured second sees nothing.
    std::thread::sleep(Duration::from_millis(2500));
    let daemon = start_daemon_on(&dir, port);
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r = RunResult::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!r.reconnects.is_empty(), "the run reconnected: {stdout}");
    let downtime = r
        .reconnects
        .iter()
        .map(|c| c.downtime_ms)
        .fold(0.0, f64::max);
    assert!(
        downtime >= 2000.0,
        "the stall's length is reported: {:?}",
        r.reconnects
    );
    assert!(
        !r.stalls.is_empty(),
        "a second without completions is named: {stdout}"
    );
    let longest = r.longest_io.expect("I/O completed");
    assert!(longest.latency_ns >= 2_000_000_000, "{longest:?}");
    let v = r.verify.expect("--verify results");
    assert_eq!(
        v.counts.blocks_mismatched, 0,
        "no acknowledged write lost: {:?}",
        v.mismatches
    );
    assert!(v.counts.blocks_ok > 0, "{v:?}");
    assert!(
        r.intervals.iter().rev().take(2).all(|i| i.ops > 0),
        "I/O resumed: {stdout}"
    );

    // Corrupt one byte of a stamped block in the backing file, then read the region back.
    kill(daemon);
    let image = dir.join("lun0.img");
    let mut bytes = std::fs::read(&image).unwrap();
    let at = (0..4 << 20)
        .step_by(512)
        .find(|&o: &usize| bytes[o..o + 8] == ringsan_perf::stamp::MAGIC)
        .expect("the run stamped blocks");
    bytes[at + 100] ^= 0xff;
    std::fs::write(&image, &bytes).unwrap();
    let daemon = start_daemon_on(&dir, port);
    let json = dir.join("read-back.json");
    let url = format!("iscsi://{}/{IQN}/0", daemon.addr);
    let out = Command::new(PERF)
        .args([
            "run",
            "--url",
            &url,
            "--rw",
            "read",
            "--bs",
            "4k",
            "--iodepth",
            "4",
        ])
        .args([
            "--size",
            "4m",
            "--runtime",
            "1",
            "--verify",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a mismatch is exit status 1: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = RunResult::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let v = r.verify.expect("--verify results");
    let lba = (at / 512) as u64;
    assert!(v.counts.blocks_mismatched > 0, "{v:?}");
    assert!(
        v.mismatches.iter().all(|m| m.lba == lba),
        "only the corrupted block, LBA {lba}: {:?}",
        v.mismatches
    );
    assert_eq!(v.mismatches.first().map(|m| m.lba), Some(lba));
}
