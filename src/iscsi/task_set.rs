//! Aborting tasks across sessions (CLEAR TASK SET, LOGICAL UNIT RESET, target resets: SAM-5 §7):
//! the sessions of the other I_T nexuses live on other reactors, so each is reached through its
//! reactor's remote handle, aborts its own tasks there and reports back; the task management
//! function completes only when all of them have finished their I/O.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::iscsi::registry::SessionEntry;
use crate::iscsi::server::with_local_session;
use crate::iscsi::session::Session;
use crate::scsi::nexus::Nexus;
use crate::scsi::pr::Registrant;

/// Longest a task management function waits for other sessions' tasks.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Aborts the tasks on `lun_raw` (every LUN with `None`) of every other session of this
/// session's target; with `status` (the control mode page's TAS=1) each of them completes with
/// that status (TASK ABORTED), otherwise silently. Returns once they all finished.
pub async fn abort_in_other_sessions(session: &Session, lun_raw: Option<u64>, status: Option<u8>) {
    let (Some(target), Some(me)) = (&session.target, &session.entry) else {
        return;
    };
    let iqn = target.iqn.clone();
    let me = me.tsih;
    abort_in_sessions(
        session,
        |e| e.tsih != me && e.target.eq_ignore_ascii_case(&iqn),
        lun_raw,
        status,
    )
    .await;
}

/// Aborts the tasks on `lun_raw` of the other sessions of this target whose I_T nexus one of
/// `victims` covers (PREEMPT AND ABORT, SPC-4 §5.9.11.5) and waits for their I/O; with `status`
/// (TAS=1) each aborted task completes with it.
pub async fn abort_preempted(
    session: &Session,
    victims: &[Registrant],
    lun_raw: u64,
    status: Option<u8>,
) {
    let (Some(target), Some(me)) = (&session.target, &session.entry) else {
        return;
    };
    let (iqn, tpgt) = (target.iqn.clone(), target.tpgt);
    // The preempting command runs in this session; it is never its own victim.
    let me = me.tsih;
    abort_in_sessions(
        session,
        |e| {
            let nexus = Nexus::new(&e.initiator, e.isid, &iqn, tpgt);
            e.tsih != me
                && e.target.eq_ignore_ascii_case(&iqn)
                && victims.iter().any(|v| v.covers(&nexus))
        },
        Some(lun_raw),
        status,
    )
    .await;
}

async fn abort_in_sessions(
    session: &Session,
    select: impl Fn(&SessionEntry) -> bool,
    lun_raw: Option<u64>,
    status: Option<u8>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    for other in session.server.registry.all() {
        if !select(&other) {
            continue;
        }
        pending.fetch_add(1, Ordering::AcqRel);
        let done = pending.clone();
        let tsih = other.tsih;
        other.reactor.run(move || {
            let found = with_local_session(tsih, |s| {
                let done = done.clone();
                ringsan_engine::spawn(async move {
                    s.abort_tasks_on(lun_raw, status).await;
                    done.fetch_sub(1, Ordering::AcqRel);
                });
            });
            if found.is_none() {
                done.fetch_sub(1, Ordering::AcqRel);
            }
        });
    }
    let step = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    while pending.load(Ordering::Acquire) > 0 && waited < WAIT_LIMIT {
        ringsan_engine::time::sleep(step).await;
        waited += step;
    }
    if pending.load(Ordering::Acquire) > 0 {
        tracing::warn!(
            "tasks of other sessions did not finish within {:?}",
            WAIT_LIMIT
        );
    }
}
