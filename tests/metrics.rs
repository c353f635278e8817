//! The Prometheus endpoint of the real daemon: a few READs and WRITEs, a CHECK CONDITION (READ
//! past the end: ILLEGAL REQUEST), unit attentions and a RESERVATION CONFLICT, then `GET
//! /metrics` over a plain TCP socket: exact counter values, histogram counts equal to the
//! command counts, cumulative buckets, every line `name{labels} value`. Also HEAD, 404, 405,
//! a LUN added and deleted live appearing and vanishing, and `metrics_address = "off"`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::initiator::{read10, write10, Conn, LoginOptions};
use common::{Daemon, IQN};
use ringsan::scsi::pr::{PrOut, PrType};

const TUR: [u8; 6] = [0; 6];
/// LUN 0 of `start_daemon_opts`: 8 MiB of 512-byte blocks.
const BLOCKS: u32 = 16384;

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start(name: &str) -> (Daemon, SocketAddr) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let d = Daemon::start_daemon_opts(name, &format!("metrics_address = \"{metrics}\""));
    (d, metrics)
}

/// One HTTP exchange: (status code, headers lower-cased, body).
fn http(addr: SocketAddr, request: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let code = status[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    (code, headers, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

/// The samples of an exposition, `name{labels}` -> value; panics on a line that is neither a
/// comment nor `name{label="value",...} value`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && name.starts_with("ringsan_"),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = series[name_end..]
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{line:?}"));
            for pair in labels.split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line:?}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line:?}"
                );
            }
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        assert!(
            out.insert(series.to_string(), value).is_none(),
            "duplicate {line:?}"
        );
    }
    out
}

fn scrape(addr: SocketAddr) -> (String, BTreeMap<String, f64>) {
    let (code, headers, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(headers["content-length"], body.len().to_string());
    let samples = parse(&body);
    (body, samples)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

fn lun_labels(lun: u16) -> String {
    format!("target=\"{IQN}\",lun=\"{lun}\"")
}

fn login(d: &Daemon, initiator: &str, immediate: bool) -> Conn {
    let mut c = Conn::connect(d.addr);
    let mut o = LoginOptions::new(IQN);
    o.initiator = initiator.into();
    o.immediate_data = immediate;
    o.initial_r2t = !immediate;
    c.login(&o).unwrap();
    c
}

fn prout(c: &mut Conn, op: &PrOut) -> (u8, u64) {
    let (cdb, params) = op.encode();
    let status = c.scsi(0, &cdb, &params, 0).unwrap().status;
    (status, params.len() as u64)
}

#[test]
fn counters_histograms_and_gauges_after_known_commands() {
    let (d, metrics) = start("metrics-known");
    let mut a = login(&d, "iqn.2026-11.io.ringsan:host-a", true);
    // Power-on unit attention: CHECK CONDITION, UNIT ATTENTION (op other).
    let r = a.scsi(0, &TUR, &[], 0).unwrap();
    assert_eq!((r.status, r.sense_key().0), (2, 6));
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for lba in [0, 8, 16] {
        assert_eq!(a.scsi(0, &write10(lba, 8), &data, 0).unwrap().status, 0);
    }
    for lba in [0, 8, 16, 0] {
        let r = a.scsi(0, &read10(lba, 8), &[], 4096).unwrap();
        assert_eq!((r.status, r.data.as_slice()), (0, data.as_slice()));
    }
    // Past the end: ILLEGAL REQUEST, no data.
    let r = a.scsi(0, &read10(BLOCKS, 1), &[], 512).unwrap();
    assert_eq!((r.status, r.sense_key().0), (2, 5));
    // A holds Write Exclusive; B's writes conflict, its reads do not.
    let mut other_bytes = 0;
    for op in [
        PrOut::register_ignore(0xA),
        PrOut::reserve(0xA, PrType::WriteExclusive),
    ] {
        let (status, bytes) = prout(&mut a, &op);
        assert_eq!(status, 0);
        other_bytes += bytes;
    }
    let mut b = login(&d, "iqn.2026-11.io.ringsan:host-b", false);
    assert_eq!(
        b.scsi(0, &TUR, &[], 0).unwrap().status,
        2,
        "B's power-on UA"
    );
    assert_eq!(b.scsi(0, &write10(0, 8), &data, 0).unwrap().status, 0x18);
    assert_eq!(b.scsi(0, &read10(0, 8), &[], 4096).unwrap().status, 0);

    let (text, s) = scrape(metrics);
    let l = lun_labels(0);
    let expected = [
        // (op, commands, bytes)
        ("read", 6.0, 5.0 * 4096.0),
        ("write", 4.0, 3.0 * 4096.0),
        ("other", 4.0, other_bytes as f64),
    ];
    for (op, commands, bytes) in expected {
        let labels = format!("{l},op=\"{op}\"");
        assert_eq!(
            value(&s, &format!("ringsan_commands_total{{{labels}}}")),
            commands,
            "{op}"
        );
        assert_eq!(
            value(&s, &format!("ringsan_bytes_total{{{labels}}}")),
            bytes,
            "{op}"
        );
        let count = value(
            &s,
            &format!("ringsan_command_duration_seconds_count{{{labels}}}"),
        );
        assert_eq!(count, commands, "histogram count of {op}");
        let sum = value(
            &s,
            &format!("ringsan_command_duration_seconds_sum{{{labels}}}"),
        );
        assert!(sum > 0.0 && sum < 60.0, "{op}: {sum}");
        // Buckets: in order of le, cumulative, the last (+Inf) equal to the count.
        let prefix = format!("ringsan_command_duration_seconds_bucket{{{labels},le=\"");
        let buckets: Vec<(&str, f64)> = text
            .lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .map(|rest| {
                let (le, v) = rest.split_once("\"} ").unwrap();
                (le, v.parse().unwrap())
            })
            .collect();
        assert_eq!(buckets.len(), 92, "{op}");
        assert_eq!(buckets[0].0, "0.00001");
        assert_eq!(buckets[1].0, "0.00002");
        assert_eq!(buckets[50].0, "0.001");
        assert_eq!(buckets[91], ("+Inf", commands));
        let les: Vec<f64> = buckets[..91].iter().map(|b| b.0.parse().unwrap()).collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "le ascending");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "cumulative: {buckets:?}"
        );
    }
    let errors = |key: &str| {
        value(
            &s,
            &format!("ringsan_command_errors_total{{{l},sense_key=\"{key}\"}}"),
        )
    };
    assert_eq!(errors("unit_attention"), 2.0);
    assert_eq!(errors("illegal_request"), 1.0);
    for key in [
        "not_ready",
        "medium_error",
        "data_protect",
        "aborted_command",
        "hardware_error",
    ] {
        assert_eq!(errors(key), 0.0, "{key}");
    }
    assert_eq!(
        value(&s, &format!("ringsan_reservation_conflicts_total{{{l}}}")),
        1.0
    );
    let t = format!("target=\"{IQN}\"");
    assert_eq!(value(&s, &format!("ringsan_sessions{{{t}}}")), 2.0);
    assert_eq!(value(&s, &format!("ringsan_connections{{{t}}}")), 2.0);
    assert_eq!(
        value(&s, &format!("ringsan_commands_in_flight{{{t}}}")),
        0.0
    );
    assert!(value(&s, "ringsan_tcp_connections") >= 2.0);
    // Both reactors (the harness runs two with 64 buffers each) answer.
    for r in 0..2 {
        let r = format!("reactor=\"{r}\"");
        assert_eq!(
            value(&s, &format!("ringsan_buffer_pool_buffers{{{r}}}")),
            64.0
        );
        let free = value(&s, &format!("ringsan_buffer_pool_free_buffers{{{r}}}"));
        assert!((0.0..=64.0).contains(&free), "{free}");
        assert!(value(&s, &format!("ringsan_reactor_tasks{{{r}}}")) >= 1.0);
        assert!(value(&s, &format!("ringsan_io_uring_operations_in_flight{{{r}}}")) >= 0.0);
    }
    // Every family is described.
    for family in [
        "ringsan_commands_total counter",
        "ringsan_bytes_total counter",
        "ringsan_command_duration_seconds histogram",
        "ringsan_command_errors_total counter",
        "ringsan_reservation_conflicts_total counter",
        "ringsan_commands_in_flight gauge",
        "ringsan_sessions gauge",
        "ringsan_connections gauge",
        "ringsan_buffer_pool_buffers gauge",
        "ringsan_buffer_pool_free_buffers gauge",
        "ringsan_io_uring_operations_in_flight gauge",
        "ringsan_reactor_tasks gauge",
    ] {
        assert!(text.contains(&format!("\n# TYPE {family}\n")), "{family}");
    }

    // Counters only grow; a session gone is gone from the gauges.
    let _ = b.logout();
    drop(b);
    assert_eq!(a.scsi(0, &read10(0, 8), &[], 4096).unwrap().status, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let (_, s) = scrape(metrics);
        if value(&s, &format!("ringsan_sessions{{{t}}}")) == 1.0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B's session stays counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        value(&s, &format!("ringsan_commands_total{{{l},op=\"read\"}}")),
        7.0
    );
}

#[test]
fn one_route_get_and_head_only() {
    let (_d, metrics) = start("metrics-http");
    let (code, headers, body) = http(metrics, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(code, 200);
    assert!(body.is_empty(), "HEAD has no body");
    assert!(headers["content-length"].parse::<usize>().unwrap() > 1000);
    assert_eq!(get(metrics, "/metrics?x=1").0, 200);
    assert_eq!(get(metrics, "/").0, 404);
    assert_eq!(get(metrics, "/metrics/extra").0, 404);
    let (code, headers, _) = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((code, headers["allow"].as_str()), (405, "GET, HEAD"));
    assert_eq!(http(metrics, "nonsense\r\n\r\n").0, 400);
}

#[test]
fn a_lun_added_or_deleted_live_appears_or_vanishes() {
    let (d, metrics) = start("metrics-live-lun");
    let admin = |args: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_target-admin"))
            .arg("--socket")
            .arg(d.dir.join("control.sock"))
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert!(out.status.success(), "target-admin {args}: {out:?}");
    };
    let series = format!("ringsan_commands_total{{{},op=\"read\"}}", lun_labels(1));
    assert!(!scrape(metrics).1.contains_key(&series));
    admin(&format!(
        "lun create --target {IQN} --lun 1 --path extra.img --size 4M"
    ));
    let mut c = login(&d, "iqn.2026-11.io.ringsan:host-a", true);
    let _ = c.scsi(1, &TUR, &[], 0);
    assert_eq!(c.scsi(1, &read10(0, 1), &[], 512).unwrap().status, 0);
    let s = scrape(metrics).1;
    assert_eq!(value(&s, &series), 1.0);
    assert_eq!(
        value(
            &s,
            &format!("ringsan_commands_total{{{},op=\"read\"}}", lun_labels(0))
        ),
        0.0
    );
    admin(&format!("lun delete --target {IQN} --lun 1 --force"));
    let s = scrape(metrics).1;
    assert!(!s.contains_key(&series), "deleted LUN still exported");
    assert!(s.contains_key(&format!(
        "ringsan_commands_total{{{},op=\"read\"}}",
        lun_labels(0)
    )));
}

#[test]
fn off_serves_no_metrics() {
    let d = Daemon::start_daemon_opts("metrics-off", "metrics_address = \"off\"");
    let mut c = login(&d, "iqn.2026-11.io.ringsan:host-a", true);
    assert_eq!(c.scsi(0, &TUR, &[], 0).unwrap().status, 2);
    let log = d.log_text();
    assert!(!log.contains("metrics served at"), "{log}");
    assert!(!log.contains("metrics endpoint not started"), "{log}");
    let (on, metrics) = start("metrics-on");
    assert!(
        on.log_text()
            .contains(&format!("metrics served at http://{metrics}/metrics")),
        "{}",
        on.log_text()
    );
}
