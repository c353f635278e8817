//! `ringsan-perf run` against the real daemon: starts `ringsand` (the binary the workspace
//! build put next to `ringsan-perf`) on a free loopback port with a 64 MiB LUN, runs a short
//! verified random read/write load, and checks the JSON result; plus the exit codes of a bad
//! URL and an unreachable target.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringsan_perf::result::{Latency, RunResult};

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
