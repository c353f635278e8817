//! A volume's replication status as text, in the shape of `drbdadm status` (what an admin who
//! knows DRBD expects from `target-admin volume status`):
//!
//! ```text
//! vol0 role:Primary
//!   disk:UpToDate
//!   peer role:Secondary
//!     replication:SyncSource peer-disk:Inconsistent done:45.20 rate:40.0MiB/s eta:12s
//!     out-of-sync:1.2GiB
//! ```

use std::fmt::Write;

use crate::mirror::msg::ConnState;
use crate::mirror::replica::Status;

/// `bytes` with a binary unit, one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// The connection state as `drbdadm status` names it (Established for Connected).
fn replication(conn: ConnState) -> &'static str {
    match conn {
        ConnState::Connected => "Established",
        other => other.name(),
    }
}

/// The status of volume `name`.
pub fn render(name: &str, s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{name} role:{}", s.role.name());
    let _ = writeln!(out, "  disk:{}", s.disk.name());
    match s.peer_role {
        Some(role) => {
            let _ = writeln!(out, "  peer role:{}", role.name());
            let mut line = format!("    replication:{}", replication(s.conn));
            if let Some(d) = s.peer_disk {
                let _ = write!(line, " peer-disk:{}", d.name());
            }
            if let Some(r) = s.resync {
                let done = if r.total_bytes == 0 {
                    100.0
                } else {
                    r.done_bytes as f64 * 100.0 / r.total_bytes as f64
                };
                let _ = write!(line, " done:{done:.2} rate:{}/s", size(r.bytes_per_s));
                if let Some(eta) = r.eta_s {
                    let _ = write!(line, " eta:{eta}s");
                }
            }
            let _ = writeln!(out, "{line}");
        }
        None => {
            let _ = writeln!(out, "  peer connection:{}", s.conn.name());
        }
    }
    if s.out_of_sync_bytes > 0 {
        let _ = writeln!(out, "    out-of-sync:{}", size(s.out_of_sync_bytes));
    }
    if let Some(v) = s.verify {
        let done = v.checked_bytes as f64 * 100.0 / v.total_bytes.max(1) as f64;
        let _ = writeln!(
            out,
            "    verify: done:{done:.2} differing:{}",
            size(v.differing_bytes)
        );
    }
    if s.split_brain {
        let _ = writeln!(
            out,
            "    split-brain: both copies took writes the other has not seen; discard-my-data on the node whose changes are to be dropped, then connect on both"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::gi::GenIds;
    use crate::mirror::meta::DiskState;
    use crate::mirror::msg::Role;
    use crate::mirror::replica::{ResyncProgress, VerifyProgress};

    fn status() -> Status {
        Status {
            role: Role::Primary,
            peer_role: Some(Role::Secondary),
            conn: ConnState::Connected,
            disk: DiskState::UpToDate,
            peer_disk: Some(DiskState::UpToDate),
            out_of_sync_bytes: 0,
            gen: GenIds::fresh(1),
            split_brain: false,
            resync: None,
            verify: None,
        }
    }

    #[test]
    fn in_sync_reads_like_drbdadm() {
        assert_eq!(
            render("vol0", &status()),
            "vol0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    replication:Established peer-disk:UpToDate\n"
        );
    }

    #[test]
    fn a_resync_shows_progress_rate_and_eta() {
        let s = Status {
            conn: ConnState::SyncSource,
            peer_disk: Some(DiskState::Inconsistent),
            out_of_sync_bytes: 3 << 30,
            resync: Some(ResyncProgress {
                total_bytes: 4 << 30,
                done_bytes: 1 << 30,
                bytes_per_s: 40 << 20,
                eta_s: Some(77),
            }),
            verify: Some(VerifyProgress {
                checked_bytes: 1 << 29,
                total_bytes: 1 << 30,
                differing_bytes: 8192,
            }),
            ..status()
        };
        let text = render("vol0", &s);
        assert!(
            text.contains(
                "replication:SyncSource peer-disk:Inconsistent done:25.00 rate:40.0MiB/s eta:77s"
            ),
            "{text}"
        );
        assert!(text.contains("out-of-sync:3.0GiB"), "{text}");
        assert!(
            text.contains("verify: done:50.00 differing:8.0KiB"),
            "{text}"
        );
    }

    #[test]
    fn standalone_and_split_brain_say_what_to_do() {
        let s = Status {
            peer_role: None,
            peer_disk: None,
            conn: ConnState::StandAlone,
            split_brain: true,
            out_of_sync_bytes: 4096,
            ..status()
        };
        let text = render("vol0", &s);
        assert!(text.contains("  peer connection:StandAlone\n"), "{text}");
        assert!(
            text.contains("split-brain:") && text.contains("discard-my-data"),
            "{text}"
        );
        assert!(text.contains("out-of-sync:4.0KiB"), "{text}");
    }
}
