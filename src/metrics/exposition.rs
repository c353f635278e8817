//! A [`Snapshot`] as Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once per
//! family, then its samples, `name{label="value",...} value`, one per line. Base units (seconds,
//! bytes), `_total` on counters, every name prefixed `ringsan_`.
//!
//! Pure: takes the snapshot, returns the text; the HTTP side only ships it.

use std::fmt::Write;

use crate::metrics::histogram::{HistogramSnapshot, BOUNDS_NS};
use crate::metrics::lun::{OpClass, SENSE_KEY_NAMES};
use crate::metrics::scrape::{LunSample, Snapshot};

/// The Content-Type of the text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Sense keys always exported (zero included), so a rate over them starts at the first error;
/// the others appear once they occur.
const ALWAYS_EXPORTED_SENSE_KEYS: [u8; 7] = [
    0x2, // not_ready
    0x3, // medium_error
    0x4, // hardware_error
    0x5, // illegal_request
    0x6, // unit_attention
    0x7, // data_protect
    0xB, // aborted_command
];

/// What kind of metric a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The text being written.
pub(super) struct Text {
    out: String,
}

impl Text {
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    pub(super) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text with `\` and line feeds escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Nanoseconds as seconds, in the shortest decimal that reads back as the same float.
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The whole snapshot as exposition text.
pub fn render(s: &Snapshot) -> String {
    let mut t = Text {
        out: String::with_capacity(4096 + s.luns.len() * 32 * 1024),
    };
    lun_families(&mut t, &s.luns);
    target_families(&mut t, s);
    reactor_families(&mut t, s);
    crate::metrics::mirror::volume_families(&mut t, &s.volumes);
    t.out
}

fn lun_families(t: &mut Text, luns: &[LunSample]) {
    t.family(
        "ringsan_commands_total",
        Kind::Counter,
        "SCSI commands ended, per logical unit and kind of operation (read, write, other).",
    );
    per_op(t, luns, |t, labels, op| {
        t.sample("ringsan_commands_total", labels, op.latency.count())
    });
    t.family(
        "ringsan_bytes_total",
        Kind::Counter,
        "Data transferred by SCSI commands (Data-In sent plus Data-Out received), in bytes.",
    );
    per_op(t, luns, |t, labels, op| {
        t.sample("ringsan_bytes_total", labels, op.bytes)
    });
    t.family(
        "ringsan_command_duration_seconds",
        Kind::Histogram,
        "Time from a SCSI command's admission to its status queued for sending, in seconds.",
    );
    let les = le_values();
    per_op(t, luns, |t, labels, op| {
        histogram(t, labels, &les, &op.latency)
    });
    t.family(
        "ringsan_command_errors_total",
        Kind::Counter,
        "SCSI commands ended with CHECK CONDITION, by sense key.",
    );
    for l in luns {
        let lun = l.lun.to_string();
        for (key, &count) in l.figures.errors.iter().enumerate() {
            if count == 0 && !ALWAYS_EXPORTED_SENSE_KEYS.contains(&(key as u8)) {
                continue;
            }
            let labels = [
                ("target", l.target.as_str()),
                ("lun", lun.as_str()),
                ("sense_key", SENSE_KEY_NAMES[key]),
            ];
            t.sample("ringsan_command_errors_total", &labels, count);
        }
    }
    t.family(
        "ringsan_reservation_conflicts_total",
        Kind::Counter,
        "SCSI commands ended with RESERVATION CONFLICT.",
    );
    for l in luns {
        let lun = l.lun.to_string();
        let labels = [("target", l.target.as_str()), ("lun", lun.as_str())];
        t.sample(
            "ringsan_reservation_conflicts_total",
            &labels,
            l.figures.reservation_conflicts,
        );
    }
}

/// Calls `f` once per logical unit and kind of operation with the labels target, lun, op.
fn per_op(
    t: &mut Text,
    luns: &[LunSample],
    mut f: impl FnMut(&mut Text, &[(&str, &str)], &crate::metrics::lun::OpSnapshot),
) {
    for l in luns {
        let lun = l.lun.to_string();
        for op in OpClass::ALL {
            let labels = [
                ("target", l.target.as_str()),
                ("lun", lun.as_str()),
                ("op", op.label()),
            ];
            f(t, &labels, &l.figures.ops[op as usize]);
        }
    }
}

/// `_bucket` (cumulative, `le` in seconds, +Inf last), `_sum` and `_count` of one histogram;
/// `les` holds the `le` values, one per bucket.
fn histogram(t: &mut Text, labels: &[(&str, &str)], les: &[String], h: &HistogramSnapshot) {
    let mut with_le: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
    for (count, le) in h.cumulative().iter().zip(les) {
        with_le.clear();
        with_le.extend_from_slice(labels);
        with_le.push(("le", le));
        t.sample("ringsan_command_duration_seconds_bucket", &with_le, count);
    }
    t.sample(
        "ringsan_command_duration_seconds_sum",
        labels,
        seconds(h.sum_ns),
    );
    t.sample("ringsan_command_duration_seconds_count", labels, h.count());
}

/// The `le` label values: each finite bound in seconds, then `+Inf`.
fn le_values() -> Vec<String> {
    BOUNDS_NS
        .iter()
        .map(|&ns| seconds(ns).to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .collect()
}

fn target_families(t: &mut Text, s: &Snapshot) {
    type Figure = fn(&crate::metrics::scrape::TargetSample) -> u64;
    let families: [(&str, &str, Figure); 3] = [
        (
            "ringsan_commands_in_flight",
            "SCSI commands admitted and not yet ended, over the target's sessions.",
            |x| x.commands_in_flight,
        ),
        (
            "ringsan_sessions",
            "iSCSI sessions logged in to the target.",
            |x| x.sessions,
        ),
        (
            "ringsan_connections",
            "iSCSI connections in full-feature phase on the target's sessions.",
            |x| x.connections,
        ),
    ];
    for (name, help, figure) in families {
        t.family(name, Kind::Gauge, help);
        for x in &s.targets {
            t.sample(name, &[("target", x.target.as_str())], figure(x));
        }
    }
    t.family(
        "ringsan_tcp_connections",
        Kind::Gauge,
        "TCP connections open on the portals, in any phase (login, discovery, full feature).",
    );
    t.sample("ringsan_tcp_connections", &[], s.tcp_connections);
}

fn reactor_families(t: &mut Text, s: &Snapshot) {
    type Figure = fn(&ringsan_engine::reactor::ReactorStats) -> usize;
    let families: [(&str, &str, Figure); 4] = [
        (
            "ringsan_buffer_pool_buffers",
            "Registered I/O buffers in the reactor's pool.",
            |x| x.buffers,
        ),
        (
            "ringsan_buffer_pool_free_buffers",
            "Registered I/O buffers of the reactor's pool free now.",
            |x| x.free_buffers,
        ),
        (
            "ringsan_io_uring_operations_in_flight",
            "io_uring operations the reactor submitted that have not completed.",
            |x| x.ops_in_flight,
        ),
        (
            "ringsan_reactor_tasks",
            "Tasks alive on the reactor (connections, command workers, timers).",
            |x| x.tasks,
        ),
    ];
    for (name, help, figure) in families {
        t.family(name, Kind::Gauge, help);
        for r in &s.reactors {
            let reactor = r.reactor.to_string();
            t.sample(name, &[("reactor", reactor.as_str())], figure(&r.stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ringsan_engine::reactor::ReactorStats;

    use super::*;
    use crate::metrics::lun::{CommandRecord, LunMetrics};
    use crate::metrics::scrape::{ReactorSample, TargetSample};

    fn known() -> Snapshot {
        let m = LunMetrics::new(0);
        let illegal = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0];
        let miscompare = [0x72, 0x0E, 0x1D, 0x00];
        let record = |op, status, sense, bytes, us| {
            m.record(&CommandRecord {
                op,
                status,
                sense,
                bytes,
                elapsed: Duration::from_micros(us),
            })
        };
        record(OpClass::Read, Some(0), None, 4096, 15);
        record(OpClass::Read, Some(0), None, 4096, 2_000);
        record(OpClass::Write, Some(0), None, 512, 5);
        record(OpClass::Other, Some(2), Some(&illegal), 0, 40);
        record(OpClass::Other, Some(2), Some(&illegal), 0, 40);
        record(OpClass::Write, Some(2), Some(&miscompare), 512, 41);
        record(OpClass::Write, Some(0x18), None, 0, 30_000);
        Snapshot {
            luns: vec![LunSample {
                target: "iqn.2026-11.io.ringsan:t".into(),
                lun: 3,
                figures: m.snapshot(),
            }],
            targets: vec![TargetSample {
                target: "iqn.2026-11.io.ringsan:t".into(),
                sessions: 2,
                connections: 2,
                commands_in_flight: 1,
            }],
            reactors: vec![ReactorSample {
                reactor: 0,
                stats: ReactorStats {
                    buffers: 64,
                    free_buffers: 60,
                    ops_in_flight: 5,
                    tasks: 9,
                },
            }],
            volumes: vec![crate::metrics::mirror::VolumeSample {
                target: "iqn.2026-11.io.ringsan:t".into(),
                lun: 3,
                role: "Primary",
                connection: "Connected",
                disk: "UpToDate",
                out_of_sync_bytes: 0,
                resync: None,
                split_brain: false,
                resync_sent_bytes: 1 << 20,
                resync_received_bytes: 0,
            }],
            tcp_connections: 3,
        }
    }

    /// Splits `name{labels} value` into its parts; panics on anything else.
    fn parse(line: &str) -> (&str, Vec<(&str, &str)>, f64) {
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect(line),
        };
        let Some((name, labels)) = series.split_once('{') else {
            return (series, Vec::new(), value);
        };
        let labels = labels.strip_suffix('}').expect(line);
        let labels = labels
            .split(',')
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect(line);
                (
                    k,
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect(line),
                )
            })
            .collect();
        (name, labels, value)
    }

    #[test]
    fn known_samples_give_known_lines() {
        let text = render(&Snapshot {
            volumes: Vec::new(),
            ..known()
        });
        let l = r#"target="iqn.2026-11.io.ringsan:t",lun="3""#;
        for line in [
            format!("ringsan_commands_total{{{l},op=\"read\"}} 2"),
            format!("ringsan_commands_total{{{l},op=\"write\"}} 3"),
            format!("ringsan_commands_total{{{l},op=\"other\"}} 2"),
            format!("ringsan_bytes_total{{{l},op=\"read\"}} 8192"),
            format!("ringsan_bytes_total{{{l},op=\"write\"}} 1024"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"0.00001\"}} 0"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"0.00002\"}} 1"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"0.0015\"}} 1"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"0.002\"}} 2"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"10\"}} 2"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"read\",le=\"+Inf\"}} 2"),
            format!("ringsan_command_duration_seconds_sum{{{l},op=\"read\"}} 0.002015"),
            format!("ringsan_command_duration_seconds_count{{{l},op=\"read\"}} 2"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"write\",le=\"0.00001\"}} 1"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"write\",le=\"0.00006\"}} 2"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"write\",le=\"0.025\"}} 2"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"write\",le=\"0.03\"}} 3"),
            format!("ringsan_command_duration_seconds_bucket{{{l},op=\"other\",le=\"0.00004\"}} 2"),
            format!("ringsan_command_errors_total{{{l},sense_key=\"illegal_request\"}} 2"),
            format!("ringsan_command_errors_total{{{l},sense_key=\"miscompare\"}} 1"),
            format!("ringsan_command_errors_total{{{l},sense_key=\"not_ready\"}} 0"),
            format!("ringsan_reservation_conflicts_total{{{l}}} 1"),
        ] {
            assert!(
                text.lines().any(|x| x == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("blank_check"),
            "zero and not always exported"
        );
        let tail = "\
# HELP ringsan_commands_in_flight SCSI commands admitted and not yet ended, over the target's sessions.
# TYPE ringsan_commands_in_flight gauge
ringsan_commands_in_flight{target=\"iqn.2026-11.io.ringsan:t\"} 1
# HELP ringsan_sessions iSCSI sessions logged in to the target.
# TYPE ringsan_sessions gauge
ringsan_sessions{target=\"iqn.2026-11.io.ringsan:t\"} 2
# HELP ringsan_connections iSCSI connections in full-feature phase on the target's sessions.
# TYPE ringsan_connections gauge
ringsan_connections{target=\"iqn.2026-11.io.ringsan:t\"} 2
# HELP ringsan_tcp_connections TCP connections open on the portals, in any phase (login, discovery, full feature).
# TYPE ringsan_tcp_connections gauge
ringsan_tcp_connections 3
# HELP ringsan_buffer_pool_buffers Registered I/O buffers in the reactor's pool.
# TYPE ringsan_buffer_pool_buffers gauge
ringsan_buffer_pool_buffers{reactor=\"0\"} 64
# HELP ringsan_buffer_pool_free_buffers Registered I/O buffers of the reactor's pool free now.
# TYPE ringsan_buffer_pool_free_buffers gauge
ringsan_buffer_pool_free_buffers{reactor=\"0\"} 60
# HELP ringsan_io_uring_operations_in_flight io_uring operations the reactor submitted that have not completed.
# TYPE ringsan_io_uring_operations_in_flight gauge
ringsan_io_uring_operations_in_flight{reactor=\"0\"} 5
# HELP ringsan_reactor_tasks Tasks alive on the reactor (connections, command workers, timers).
# TYPE ringsan_reactor_tasks gauge
ringsan_reactor_tasks{reactor=\"0\"} 9
";
        assert!(text.ends_with(tail), "{text}");
    }

    #[test]
    fn every_line_parses_and_every_family_is_declared_once_before_its_samples() {
        let text = render(&known());
        let mut declared: Vec<(String, String)> = Vec::new();
        let mut helped = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty() && !helped.contains(&name.to_string()));
                helped.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(
                    helped.last().map(String::as_str),
                    Some(name),
                    "HELP then TYPE"
                );
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                declared.push((name.to_string(), kind.to_string()));
            } else {
                let (name, labels, value) = parse(line);
                assert!(value >= 0.0, "{line}");
                let (family, kind) = declared.last().expect("a sample before any TYPE");
                assert!(name.starts_with("ringsan_"), "{line}");
                match kind.as_str() {
                    "counter" => assert!(name == family && name.ends_with("_total"), "{line}"),
                    "gauge" => assert_eq!(name, family, "{line}"),
                    _ => {
                        let suffix = name.strip_prefix(family.as_str()).unwrap();
                        assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
                        assert_eq!(suffix == "_bucket", labels.last().unwrap().0 == "le");
                    }
                }
            }
        }
        assert_eq!(declared.len(), 13 + 10, "13 families and the mirror's 10");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = known();
        s.targets[0].target = "a\"b\\c\nd".into();
        let text = render(&s);
        assert!(
            text.contains(r#"ringsan_sessions{target="a\"b\\c\nd"} 2"#),
            "{text}"
        );
    }
}
