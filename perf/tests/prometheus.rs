//! The daemon's metrics against the real Prometheus tools (Debian package `prometheus`, which
//! `tests/run-all` installs): the text of `/metrics` after a load passes `promtool check
//! metrics`, and a real Prometheus server on loopback that scrapes `ringsand` during a
//! `ringsan-perf run` answers `histogram_quantile` close to the percentiles ringsan-perf
//! measured on the client side over the same commands.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringsan_perf::result::RunResult;

/// One HTTP/1.0 GET on loopback: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encodes a PromQL expression for a query string.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, and waits until it is ready.
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: ringsand\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus (Debian package prometheus; tests/run-all installs it)");
        let p = Prometheus { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(addr, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "prometheus is not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// The value of an instant query whose answer is one sample, or None while it has none.
    fn scalar(&self, query: &str) -> Option<f64> {
        let (status, body) =
            http_get(self.addr, &format!("/api/v1/query?query={}", encode(query)))?;
        assert_eq!(status, 200, "{query}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` answers `want`.
    fn wait_for(&self, query: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.scalar(query);
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: prometheus answers {got:?}, waited for {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The value of one sample in the exposition text, e.g. `ringsan_commands_total{...op="read"}`:
/// the sum over every series of `name` whose labels contain `label`.
fn sum_of(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A ringsan-perf run of `secs` seconds against `addr`'s LUN 0.
fn load(addr: SocketAddr, dir: &Path, args: &[&str], secs: u32) -> RunResult {
    let json = dir.join(format!("load-{}.json", unique()));
    let url = format!("iscsi://{addr}/{IQN}/0");
    let out = Command::new(PERF)
        .args(["run", "--url", &url, "--quiet", "--runtime"])
        .arg(secs.to_string())
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    RunResult::from_json(&std::fs::read_to_string(&json).unwrap()).expect("the result reads back")
}

#[test]
fn metrics_text_passes_promtool_check_metrics() {
    let dir = scratch("perf-promtool");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let daemon = start_daemon_with_metrics(&dir, free_port(), &metrics.to_string());
    // Reads, writes and the login's other commands, so that every family has samples.
    let r = load(
        daemon.addr,
        &dir,
        &["--rw", "randrw", "--bs", "4k", "--iodepth", "4"],
        1,
    );
    assert!(r.totals.read.ops > 0 && r.totals.write.ops > 0);
    let (status, text) = http_get(metrics, "/metrics").expect("the daemon serves /metrics");
    assert_eq!(status, 200);
    assert!(
        sum_of(&text, "ringsan_commands_total", "op=\"write\"") >= r.totals.write.ops as f64,
        "{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool (Debian package prometheus; tests/run-all installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits non-zero on a format error or a lint problem, and names each problem.
    assert!(out.status.success(), "promtool: {said}\n---\n{text}");
    assert!(said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn prometheus_histogram_quantile_agrees_with_ringsan_perf() {
    let dir = scratch("perf-prometheus");
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let daemon = start_daemon_with_metrics(&dir, free_port(), &metrics.to_string());
    let prom = Prometheus::start(&dir, metrics);
    prom.wait_for("up{job=\"ringsand\"}", 1.0);

    // 512 KiB random writes at QD1: the daemon's window (admission, the R2T round trips for the
    // data past the first burst, the write and its flush, the response) is most of what the
    // client sees, whatever the disk, and most readings stay below 1 ms, where the buckets are
    // 20 µs wide.
    let r = load(
        daemon.addr,
        &dir,
        &["--rw", "randwrite", "--bs", "512k", "--iodepth", "1"],
        5,
    );
    // Every command of the run is in the daemon's counters: the ones ringsan-perf counted, and
    // up to a queue depth more that were in flight when it stopped counting.
    let (_, text) = http_get(metrics, "/metrics").expect("the daemon serves /metrics");
    let daemon_ops = sum_of(&text, "ringsan_commands_total", "op=\"write\"");
    let perf_ops = r.totals.write.ops as f64;
    assert!(
        daemon_ops >= perf_ops && daemon_ops <= perf_ops + 1.0,
        "writes: daemon counted {daemon_ops}, ringsan-perf {perf_ops}"
    );
    // Wait until Prometheus has scraped the final figures.
    prom.wait_for("sum(ringsan_commands_total{op=\"write\"})", daemon_ops);

    // The daemon times a command from its admission (its header read and parsed) to its response
    // handed to the socket; ringsan-perf from its send to the response's arrival, so it adds
    // loopback TCP of the command and the response and two thread wake-ups: 60-120 µs on a
    // 2-core VM. histogram_quantile interpolates inside a bucket (20 µs wide below 1 ms). The
    // rule: Prometheus's figure is at most ringsan-perf's + 20 µs + 5% (the daemon cannot see
    // more than the client), and at least ringsan-perf's - 60 µs - 20%.
    let lat = &r.totals.write.latency;
    for (q, client_ns) in [(0.5, lat.p50_ns), (0.9, lat.p90_ns)] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (ringsan_command_duration_seconds_bucket{{op=\"write\"}}))"
        );
        let server_s = prom.scalar(&query).expect("a quantile");
        let client_s = client_ns as f64 / 1e9;
        eprintln!(
            "write p{}: prometheus {server_s:.6} s, ringsan-perf {client_s:.6} s",
            q * 100.0
        );
        assert!(
            server_s <= client_s * 1.05 + 20e-6 && server_s >= client_s * 0.8 - 60e-6,
            "write p{}: prometheus answers {server_s:.6} s, ringsan-perf measured {client_s:.6} s",
            q * 100.0
        );
    }
}
