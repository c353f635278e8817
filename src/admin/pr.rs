//! `pr show` and `pr clear`: a LUN's persistent reservations as the administrator sees them,
//! and the administrator's way to break them (a stale reservation after a host died for good,
//! or a damaged APTPL state file that keeps the LUN offline).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::admin::protocol::{PrInfo, PrRegistrationInfo, Refusal};
use crate::iscsi::target::Target;
use crate::scsi::lun::LogicalUnit;

/// Longest `pr clear` waits for a reservation command in progress on the LUN.
const GATE_WAIT: Duration = Duration::from_secs(5);

/// The LUN's reservation state now.
pub fn pr_info(t: &Target, lu: &LogicalUnit) -> PrInfo {
    let s = lu.reservations();
    let registrations = s
        .registrations
        .iter()
        .enumerate()
        .map(|(i, r)| PrRegistrationInfo {
            initiator_port: r.initiator_port.clone(),
            target_port: if r.all_tg_pt {
                "*".to_string()
            } else {
                r.target_port.clone()
            },
            key: format!("0x{:016x}", r.key),
            aptpl: r.aptpl,
            holder: s.registration_holds(i),
        })
        .collect();
    PrInfo {
        target: t.iqn.clone(),
        lun: lu.number(),
        generation: s.generation,
        aptpl: s.aptpl,
        registrations,
        reservation_type: s.reservation.as_ref().map(|r| r.pr_type.name().to_string()),
        reservation_holder: s.reservation.as_ref().map(|r| {
            let ty = format!("{} ({})", r.pr_type.name(), r.pr_type.long_name());
            match (&r.holder, s.reservation_key()) {
                (None, _) => format!("{ty}, held by every registrant"),
                (Some(h), Some(key)) => {
                    format!("{ty}, held by {} with key 0x{key:016x}", h.initiator_port)
                }
                (Some(h), None) => format!("{ty}, held by {}", h.initiator_port),
            }
        }),
        legacy_holder: s.legacy.as_ref().map(|l| l.initiator_port.clone()),
        log_index: s.log_index,
        state_file: lu.pr_store().map(|p| p.path().display().to_string()),
        offline: lu.offline_reason(),
    }
}

/// Breaks every registration and reservation of the LUN (see
/// [`LogicalUnit::admin_clear_reservations`]); refused without `force`.
pub fn pr_clear(t: &Target, lu: &LogicalUnit, force: bool) -> Result<Value, Refusal> {
    let info = pr_info(t, lu);
    if !force {
        let what = match (info.registrations.len(), &info.reservation_type) {
            (0, None) if info.offline.is_none() => {
                return Ok(json!({ "registrations_removed": 0, "was_offline": false }))
            }
            (n, Some(ty)) => format!("{n} registration(s) and a {ty} reservation"),
            (n, None) if info.offline.is_some() => {
                format!("{n} registration(s); the LUN is offline and its damaged state file would be set aside")
            }
            (n, None) => format!("{n} registration(s)"),
        };
        return Err(Refusal {
            field: Some("force".into()),
            message: format!("this removes {what} on LUN {} of {}: the fencing a cluster relies on; --force does it", lu.number(), t.iqn),
            kind: "busy".into(),
        });
    }
    let deadline = Instant::now() + GATE_WAIT;
    let _gate = loop {
        if let Some(g) = lu.pr_gate().try_lock(0, 1) {
            break g;
        }
        if Instant::now() > deadline {
            return Err(Refusal {
                field: None,
                message: format!(
                    "a reservation command on LUN {} did not finish within {GATE_WAIT:?}; try again",
                    lu.number()
                ),
                kind: "busy".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let was_offline = info.offline.is_some();
    let removed = lu.admin_clear_reservations().map_err(|e| Refusal {
        field: None,
        message: format!("nothing changed: {e}"),
        kind: "io".into(),
    })?;
    tracing::warn!(target = %t.iqn, lun = lu.number(), removed, was_offline, "persistent reservations cleared by the administrator");
    Ok(json!({ "registrations_removed": removed, "was_offline": was_offline }))
}
