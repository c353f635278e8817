//! `target-admin volume ...`: the mirrored volumes' replication status (shaped like `drbdadm
//! status`, or JSON) and the admin's actions on them (promote, demote, verify, full resync,
//! discard-my-data, connect, attach). Each action runs on the volume's home reactor; a refusal
//! says why (the node logs the detail).

use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::blocking::wait_on_thread;
use ringsan_engine::mirror::remote::MirrorHandle;
use ringsan_engine::mirror::replica::{Counters, Failure, Status};
use ringsan_engine::mirror::status::render;
use serde_json::{json, Value};

use crate::admin::protocol::{Refusal, ResyncInfo, VerifyInfo, VolumeInfo};
use crate::cluster::volumes::{volume_name, Volume};
use crate::iscsi::server::Server;

/// Longest an admin request waits for a volume's node.
const WAIT: Duration = Duration::from_secs(10);
/// Verify and full resync answer once started; their progress shows in `volume status`.
const START_WAIT: Duration = Duration::from_millis(500);

fn refusal(kind: &str, field: Option<&str>, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.map(str::to_string),
        message: message.into(),
        kind: kind.to_string(),
    }
}

/// Every mirrored volume the daemon serves.
pub fn volumes(server: &Server) -> Vec<Volume> {
    let mut out = Vec::new();
    for t in server.targets.all() {
        for n in t.lun_numbers() {
            if let Some(lu) = t.lun(n).filter(|lu| lu.is_mirrored()) {
                out.push(Volume {
                    name: volume_name(&t.iqn, n),
                    lu,
                });
            }
        }
    }
    out
}

fn find(server: &Server, name: &str) -> Result<(String, MirrorHandle), Refusal> {
    let v = volumes(server)
        .into_iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            refusal(
                "not-found",
                Some("volume"),
                format!("no mirrored volume {name} (volumes are named IQN/LUN; `volume status` lists them)"),
            )
        })?;
    let h = v.handle().cloned().ok_or_else(|| {
        refusal(
            "busy",
            Some("volume"),
            format!("{name}: its mirror node is not running"),
        )
    })?;
    Ok((v.name, h))
}

fn info(name: &str, s: &Status, c: &Counters) -> VolumeInfo {
    VolumeInfo {
        name: name.to_string(),
        role: s.role.name().to_string(),
        disk: s.disk.name().to_string(),
        connection: s.conn.name().to_string(),
        peer_role: s.peer_role.map(|r| r.name().to_string()),
        peer_disk: s.peer_disk.map(|d| d.name().to_string()),
        out_of_sync_bytes: s.out_of_sync_bytes,
        split_brain: s.split_brain,
        resync: s.resync.map(|r| ResyncInfo {
            total_bytes: r.total_bytes,
            done_bytes: r.done_bytes,
            bytes_per_s: r.bytes_per_s,
            eta_s: r.eta_s,
        }),
        verify: s.verify.map(|v| VerifyInfo {
            checked_bytes: v.checked_bytes,
            total_bytes: v.total_bytes,
            differing_bytes: v.differing_bytes,
        }),
        resync_received_bytes: c.resync_written_bytes,
        resync_sent_bytes: c.resync_read_bytes,
        resyncs_done: c.resyncs_done,
        verify_differing_bytes: c.verify_differing_bytes,
        verifies_done: c.verifies_done,
        generations: [
            s.gen.current,
            s.gen.bitmap,
            s.gen.history[0],
            s.gen.history[1],
        ]
        .iter()
        .map(|g| format!("{g:016X}"))
        .collect(),
        text: render(name, s),
    }
}

/// `volume status [VOLUME]`.
pub fn status(server: &Server, volume: Option<&str>) -> Result<Vec<VolumeInfo>, Refusal> {
    let list = match volume {
        Some(name) => vec![find(server, name)?],
        None => volumes(server)
            .into_iter()
            .filter_map(|v| v.handle().cloned().map(|h| (v.name, h)))
            .collect(),
    };
    let mut out = Vec::new();
    for (name, h) in list {
        let (s, c) = wait(&name, h.status(), WAIT)?.map_err(|f| failed(&name, f))?;
        out.push(info(&name, &s, &c));
    }
    Ok(out)
}

fn wait<T>(
    name: &str,
    f: impl std::future::Future<Output = T>,
    limit: Duration,
) -> Result<T, Refusal> {
    wait_on_thread(f, limit).ok_or_else(|| {
        refusal(
            "busy",
            Some("volume"),
            format!("{name}: the mirror node did not answer within {limit:?}"),
        )
    })
}

fn failed(name: &str, f: Failure) -> Refusal {
    let why = match f {
        Failure::NotPrimary => "this node is not Primary",
        Failure::Unavailable => "no UpToDate copy can be reached (or the node stopped)",
        Failure::Io => "the local disk failed",
        Failure::Refused => "refused in the volume's current state (the daemon log says why; `volume status` shows the state)",
    };
    refusal("invalid", Some("volume"), format!("{name}: {why}"))
}

/// What an action does.
pub enum Action {
    /// Become Primary.
    Promote { force: bool },
    /// Become Secondary.
    Demote,
    /// Online verify.
    Verify { resync: bool },
    /// Full resync.
    ResyncFull,
    /// Split-brain victim.
    DiscardMyData { force: bool },
    /// Connect again.
    Connect,
    /// Take a replaced disk back.
    Attach,
}

/// Carries out `action` on volume `name`; answers with the volume's status afterwards.
pub fn act(server: &Arc<Server>, name: &str, action: Action) -> Result<Value, Refusal> {
    let (name, h) = find(server, name)?;
    let result = match action {
        Action::Promote { force } => wait(&name, h.promote(force), WAIT)?,
        Action::Demote => wait(&name, h.demote(), WAIT)?,
        Action::Verify { resync } => {
            match wait_on_thread(h.verify(resync), START_WAIT) {
                Some(r) => r.map(|_| ()),
                None => Ok(()), // still running: progress in `volume status`
            }
        }
        Action::ResyncFull => match wait_on_thread(h.resync_full(), START_WAIT) {
            Some(r) => r,
            None => Ok(()),
        },
        Action::DiscardMyData { force } => {
            if !force {
                return Err(refusal(
                    "invalid",
                    Some("force"),
                    format!("{name}: this node's writes since the split are lost for good; --force does it"),
                ));
            }
            wait(&name, h.discard_my_data(), WAIT)?
        }
        Action::Connect => wait(&name, h.connect(), WAIT)?,
        Action::Attach => wait(&name, h.attach(), WAIT)?,
    };
    result.map_err(|f| failed(&name, f))?;
    let now = status(server, Some(&name))?;
    Ok(json!(now))
}
