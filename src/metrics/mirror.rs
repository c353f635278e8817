//! The mirrored volumes' replication state for Prometheus: role, link state and disk state as
//! one-hot gauges (a `state` label per possible value, 1 on the current one, so a dashboard can
//! graph and alert on `ringsan_mirror_connection_state{state="Connected"} == 0`), out-of-sync
//! bytes, resync progress and rate, and the resync byte counters. Asked of each volume's node on
//! its home reactor at scrape time; a node that does not answer in time is left out.

use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::mirror::replica::{Counters, Status};

use crate::iscsi::server::Server;
use crate::metrics::exposition::{Kind, Text};

/// How long a scrape waits for one volume's node.
const NODE_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

const ROLES: [&str; 2] = ["Primary", "Secondary"];
const CONNECTION_STATES: [&str; 5] = [
    "StandAlone",
    "Connecting",
    "Connected",
    "SyncSource",
    "SyncTarget",
];
const DISK_STATES: [&str; 4] = ["UpToDate", "Inconsistent", "Outdated", "Diskless"];

/// One mirrored volume at one scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSample {
    /// Target name.
    pub target: String,
    /// LUN.
    pub lun: u16,
    /// This node's role.
    pub role: &'static str,
    /// The link's state.
    pub connection: &'static str,
    /// This copy's state.
    pub disk: &'static str,
    /// Bytes marked out of sync.
    pub out_of_sync_bytes: u64,
    /// The resync under way: bytes to copy, copied, per second.
    pub resync: Option<(u64, u64, u64)>,
    /// Split brain found at the last connect.
    pub split_brain: bool,
    /// Bytes copied here as resync source, and received as target.
    pub resync_sent_bytes: u64,
    pub resync_received_bytes: u64,
}

impl VolumeSample {
    fn new(target: &str, lun: u16, s: &Status, c: &Counters) -> VolumeSample {
        VolumeSample {
            target: target.to_string(),
            lun,
            role: s.role.name(),
            connection: s.conn.name(),
            disk: s.disk.name(),
            out_of_sync_bytes: s.out_of_sync_bytes,
            resync: s
                .resync
                .map(|r| (r.total_bytes, r.done_bytes, r.bytes_per_s)),
            split_brain: s.split_brain,
            resync_sent_bytes: c.resync_read_bytes,
            resync_received_bytes: c.resync_written_bytes,
        }
    }
}

/// Every mirrored volume's state; call it from the control plane's runtime.
pub async fn volume_samples(server: &Arc<Server>) -> Vec<VolumeSample> {
    let mut out = Vec::new();
    for target in server.targets.all() {
        for lu in target.luns() {
            let Some(m) = lu.mirror() else {
                continue;
            };
            match tokio::time::timeout(NODE_ANSWER_TIMEOUT, m.status()).await {
                Ok(Ok((s, c))) => out.push(VolumeSample::new(&target.iqn, lu.number(), &s, &c)),
                Ok(Err(_)) => {}
                Err(_) => tracing::warn!(
                    target = %target.iqn,
                    lun = lu.number(),
                    "a mirror node did not answer the metrics scrape in time: left out"
                ),
            }
        }
    }
    out
}

fn one_hot(
    t: &mut Text,
    name: &str,
    help: &str,
    volumes: &[VolumeSample],
    states: &[&str],
    of: fn(&VolumeSample) -> &'static str,
) {
    t.family(name, Kind::Gauge, help);
    for v in volumes {
        let lun = v.lun.to_string();
        for state in states {
            let labels = [
                ("target", v.target.as_str()),
                ("lun", lun.as_str()),
                ("state", state),
            ];
            t.sample(name, &labels, u8::from(of(v) == *state));
        }
    }
}

/// The volumes' families.
pub(super) fn volume_families(t: &mut Text, volumes: &[VolumeSample]) {
    if volumes.is_empty() {
        return;
    }
    one_hot(
        t,
        "ringsan_mirror_role",
        "This node's role for the mirrored volume (1 on the current one).",
        volumes,
        &ROLES,
        |v| v.role,
    );
    one_hot(
        t,
        "ringsan_mirror_connection_state",
        "The mirror link's state (1 on the current one).",
        volumes,
        &CONNECTION_STATES,
        |v| v.connection,
    );
    one_hot(
        t,
        "ringsan_mirror_disk_state",
        "This node's copy's state (1 on the current one).",
        volumes,
        &DISK_STATES,
        |v| v.disk,
    );
    type Figure = fn(&VolumeSample) -> u64;
    let gauges: [(&str, &str, Kind, Figure); 7] = [
        (
            "ringsan_mirror_out_of_sync_bytes",
            "Bytes marked out of sync (to copy at the next resync).",
            Kind::Gauge,
            |v| v.out_of_sync_bytes,
        ),
        (
            "ringsan_mirror_resync_total_bytes",
            "Bytes the resync under way set out to copy (0 when none runs).",
            Kind::Gauge,
            |v| v.resync.map_or(0, |r| r.0),
        ),
        (
            "ringsan_mirror_resync_done_bytes",
            "Bytes the resync under way has copied (0 when none runs).",
            Kind::Gauge,
            |v| v.resync.map_or(0, |r| r.1),
        ),
        (
            "ringsan_mirror_resync_rate_bytes_per_second",
            "The resync's rate since it started (0 when none runs).",
            Kind::Gauge,
            |v| v.resync.map_or(0, |r| r.2),
        ),
        (
            "ringsan_mirror_split_brain",
            "1 when the last connect found the copies diverged (the volume stays StandAlone).",
            Kind::Gauge,
            |v| u64::from(v.split_brain),
        ),
        (
            "ringsan_mirror_resync_sent_bytes_total",
            "Bytes this node read and sent as a resync source since it started.",
            Kind::Counter,
            |v| v.resync_sent_bytes,
        ),
        (
            "ringsan_mirror_resync_received_bytes_total",
            "Bytes this node received and wrote as a resync target since it started.",
            Kind::Counter,
            |v| v.resync_received_bytes,
        ),
    ];
    for (name, help, kind, figure) in gauges {
        t.family(name, kind, help);
        for v in volumes {
            let lun = v.lun.to_string();
            t.sample(
                name,
                &[("target", v.target.as_str()), ("lun", lun.as_str())],
                figure(v),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::render;
    use crate::metrics::scrape::Snapshot;

    #[test]
    fn volumes_render_as_one_hot_states_and_figures() {
        let v = VolumeSample {
            target: "iqn.2026-11.io.ringsan:vm".into(),
            lun: 0,
            role: "Primary",
            connection: "SyncSource",
            disk: "UpToDate",
            out_of_sync_bytes: 4096,
            resync: Some((8192, 4096, 1000)),
            split_brain: false,
            resync_sent_bytes: 4096,
            resync_received_bytes: 0,
        };
        let text = render(&Snapshot {
            volumes: vec![v],
            ..Snapshot::default()
        });
        let l = r#"target="iqn.2026-11.io.ringsan:vm",lun="0""#;
        for line in [
            format!("ringsan_mirror_role{{{l},state=\"Primary\"}} 1"),
            format!("ringsan_mirror_role{{{l},state=\"Secondary\"}} 0"),
            format!("ringsan_mirror_connection_state{{{l},state=\"SyncSource\"}} 1"),
            format!("ringsan_mirror_connection_state{{{l},state=\"Connected\"}} 0"),
            format!("ringsan_mirror_disk_state{{{l},state=\"UpToDate\"}} 1"),
            format!("ringsan_mirror_out_of_sync_bytes{{{l}}} 4096"),
            format!("ringsan_mirror_resync_done_bytes{{{l}}} 4096"),
            format!("ringsan_mirror_resync_sent_bytes_total{{{l}}} 4096"),
            "# TYPE ringsan_mirror_resync_sent_bytes_total counter".to_string(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
        assert!(
            !render(&Snapshot::default()).contains("ringsan_mirror"),
            "no mirror families without mirrored volumes"
        );
    }
}
