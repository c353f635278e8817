//! Task management (RFC 7143 §11.5, SAM-5 §7): ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
//! LOGICAL UNIT RESET, TARGET WARM RESET and TARGET COLD RESET. Every function answers only after
//! the I/O of the tasks it ends has finished; an unknown task is "function complete"
//! (§11.6.1: the task may have completed before the request arrived).

use std::rc::Rc;

use tracing::{info, Instrument};

use crate::iscsi::framing::Payload;
use crate::iscsi::pdu::{decode_lun, tmf, tmf_response, TaskMgmtRequest, TaskMgmtResponse};
use crate::iscsi::session::Session;
use crate::iscsi::task::TaskCtl;
use crate::iscsi::task_set::abort_in_other_sessions;
use crate::scsi::lun::LogicalUnit;
use crate::scsi::sense::ScsiStatus;

/// Runs one task management request and sends its response.
pub async fn run_task_management(session: Rc<Session>, req: TaskMgmtRequest) {
    let span = tracing::info_span!(
        "tmf",
        function = req.function,
        itt = req.itt,
        rtt = req.ref_task_tag
    );
    run(session, req).instrument(span).await
}

async fn run(session: Rc<Session>, req: TaskMgmtRequest) {
    let response = match req.function {
        tmf::ABORT_TASK => abort_task(&session, &req).await,
        tmf::ABORT_TASK_SET | tmf::CLEAR_TASK_SET => abort_lun_tasks(&session, &req).await,
        tmf::LOGICAL_UNIT_RESET => lun_reset(&session, &req).await,
        tmf::TARGET_WARM_RESET | tmf::TARGET_COLD_RESET => target_reset(&session, &req).await,
        _ => tmf_response::NOT_SUPPORTED,
    };
    info!(response, "task management done");
    let pdu = TaskMgmtResponse {
        response,
        itt: req.itt,
        statsn: session.take_stat_sn(),
        exp_cmdsn: session.exp_cmdsn(),
        max_cmdsn: session.max_cmdsn(),
    };
    session.send(pdu.encode(), Payload::None);
    if req.function == tmf::TARGET_COLD_RESET && response == tmf_response::FUNCTION_COMPLETE {
        // A cold reset also ends every session of the target, this one included (after the
        // response is on the wire).
        session.outbox.flushed().await;
        if let Some(entry) = &session.entry {
            entry.shutdown.shutdown();
        }
    }
}

async fn abort_tasks(tasks: Vec<Rc<TaskCtl>>) {
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        t.finished().await;
    }
}

async fn abort_task(session: &Session, req: &TaskMgmtRequest) -> u8 {
    let task = session.tasks.borrow().get(&req.ref_task_tag).cloned();
    match task {
        Some(t) if t.lun_raw == req.lun => {
            abort_tasks(vec![t]).await;
            tmf_response::FUNCTION_COMPLETE
        }
        Some(_) => tmf_response::TASK_DOES_NOT_EXIST,
        None => tmf_response::FUNCTION_COMPLETE,
    }
}

/// The status other initiators' aborted tasks complete with: TASK ABORTED when the control mode
/// page's TAS bit is set, none (they end silently, and learn it from a unit attention) otherwise.
fn other_initiators_status(lu: &LogicalUnit) -> Option<u8> {
    lu.mode().tas.then_some(ScsiStatus::TaskAborted.code())
}

async fn abort_lun_tasks(session: &Session, req: &TaskMgmtRequest) -> u8 {
    let Some(target) = &session.target else {
        return tmf_response::REJECTED;
    };
    let Some(lu) = decode_lun(req.lun).and_then(|n| target.lun(n)) else {
        return tmf_response::LUN_DOES_NOT_EXIST;
    };
    session.abort_tasks_on(Some(req.lun), None).await;
    if req.function == tmf::CLEAR_TASK_SET {
        // CLEAR TASK SET also ends the tasks other I_T nexuses have on the LU (SAM-5 §7.4).
        abort_in_other_sessions(session, Some(req.lun), other_initiators_status(&lu)).await;
        if let Some(nexus) = &session.nexus {
            lu.tasks_cleared_by(nexus);
        }
    }
    tmf_response::FUNCTION_COMPLETE
}

async fn lun_reset(session: &Session, req: &TaskMgmtRequest) -> u8 {
    let Some(target) = &session.target else {
        return tmf_response::REJECTED;
    };
    let Some(lu) = decode_lun(req.lun).and_then(|n| target.lun(n)) else {
        return tmf_response::LUN_DOES_NOT_EXIST;
    };
    session.abort_tasks_on(Some(req.lun), None).await;
    abort_in_other_sessions(session, Some(req.lun), other_initiators_status(&lu)).await;
    lu.reset(session.nexus.as_ref());
    tmf_response::FUNCTION_COMPLETE
}

async fn target_reset(session: &Session, req: &TaskMgmtRequest) -> u8 {
    let Some(target) = &session.target else {
        return tmf_response::REJECTED;
    };
    session.abort_tasks_on(None, None).await;
    let tas = target.luns().iter().any(|lu| lu.mode().tas);
    abort_in_other_sessions(session, None, tas.then_some(ScsiStatus::TaskAborted.code())).await;
    for lu in target.luns() {
        lu.reset(session.nexus.as_ref());
    }
    if req.function == tmf::TARGET_COLD_RESET {
        let me = session.entry.as_ref().map(|e| e.tsih);
        for other in session.server.registry.all() {
            if Some(other.tsih) != me && other.target.eq_ignore_ascii_case(&target.iqn) {
                other.shutdown.shutdown();
            }
        }
    }
    tmf_response::FUNCTION_COMPLETE
}
