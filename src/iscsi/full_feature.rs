//! The full-feature phase of one connection: read a PDU, dispatch it, repeat. SCSI commands and
//! task management run as their own tasks so the reader keeps reading (Data-Out for other
//! commands, NOP-Outs, aborts); write data goes from the socket straight into the task's pool
//! buffer. Hostile input gets what RFC 7143 names: a Reject (malformed or unexpected PDUs,
//! digest errors on data), a silent ignore (commands outside the CmdSN window), or a clean
//! disconnect (header digest errors, oversized segments, login PDUs in this phase).

use std::rc::Rc;

use ringsan_engine::net::TcpStream;
use tracing::{debug, info, warn};

use crate::iscsi::framing::{DataCheck, FramingError, Header, Payload, Reader};
use crate::iscsi::pdu::{
    decode_lun, parse_ahs, reject_reason, Bhs, DataOut, LogoutRequest, LogoutResponse, NopIn,
    NopOut, Request, ScsiCommand, TextRequest, TextResponse, RESERVED_TAG,
};
use crate::iscsi::scsi_task::Cdb;
use crate::iscsi::session::Session;
use crate::iscsi::task::NewTask;
use crate::iscsi::tmf::run_task_management;
use crate::iscsi::workers::{start_command, Job};
use crate::scsi::transfer::TransferError;

/// Why the full-feature loop ended.
#[derive(Debug)]
pub enum End {
    /// The initiator logged out.
    Logout,
    /// The connection broke or was shut down.
    Closed(FramingError),
    /// We closed it because of a protocol violation.
    Violation(&'static str),
}

/// Reads and dispatches PDUs until logout, a violation or the connection's end.
pub async fn run(session: &Rc<Session>, stream: &Rc<TcpStream>, reader: &mut Reader) -> End {
    loop {
        let header = match reader.header(stream).await {
            Ok(h) => h,
            Err(e) => return End::Closed(e),
        };
        session.heard_from.set(true);
        match dispatch(session, stream, reader, header).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Logout) => return End::Logout,
            Err(Stop::Framing(e)) => return End::Closed(e),
            Err(Stop::Violation(why)) => return End::Violation(why),
        }
    }
}

enum Flow {
    Continue,
    Logout,
}

enum Stop {
    Framing(FramingError),
    Violation(&'static str),
}

impl From<FramingError> for Stop {
    fn from(e: FramingError) -> Self {
        Stop::Framing(e)
    }
}

async fn dispatch(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    header: Header,
) -> Result<Flow, Stop> {
    let bhs = header.bhs;
    let data_len = bhs.data_segment_len();
    let max = session.conn.max_recv_dsl_target as usize;
    if data_len > max {
        warn!(
            len = data_len,
            max, "data segment longer than negotiated: rejecting and closing"
        );
        session.send_reject(reject_reason::PROTOCOL_ERROR, &bhs);
        return Err(Stop::Violation(
            "data segment longer than MaxRecvDataSegmentLength",
        ));
    }
    let request = match Request::decode(&bhs) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, opcode = bhs.opcode_raw(), "undecodable PDU: rejected");
            reader.discard_data(stream, data_len).await?;
            let reason = match e {
                crate::iscsi::pdu::PduError::UnknownOpcode(_) => {
                    reject_reason::COMMAND_NOT_SUPPORTED
                }
                _ => reject_reason::PROTOCOL_ERROR,
            };
            session.send_reject(reason, &bhs);
            return Ok(Flow::Continue);
        }
    };
    let discovery = session.target.is_none();
    match request {
        Request::ScsiCommand(cmd) if !discovery => {
            scsi_command(session, stream, reader, &header, cmd).await?
        }
        Request::DataOut(d) if !discovery => data_out(session, stream, reader, &bhs, d).await?,
        Request::TaskMgmt(t) if !discovery => {
            if session.admit(t.cmdsn, t.immediate) {
                ringsan_engine::spawn(run_task_management(session.clone(), t));
            }
        }
        Request::NopOut(n) => nop_out(session, stream, reader, n).await?,
        Request::Text(t) => text(session, stream, reader, &bhs, t).await?,
        Request::Logout(l) => return logout(session, stream, reader, l).await,
        Request::Login(_) => {
            warn!("login PDU in full-feature phase: rejecting and closing");
            session.send_reject(reject_reason::PROTOCOL_ERROR, &bhs);
            return Err(Stop::Violation("login request in full-feature phase"));
        }
        Request::Snack(_) => {
            reader.discard_data(stream, data_len).await?;
            debug!("SNACK at ERL 0: rejected");
            session.send_reject(reject_reason::PROTOCOL_ERROR, &bhs);
        }
        _ => {
            reader.discard_data(stream, data_len).await?;
            warn!(
                opcode = bhs.opcode_raw(),
                "PDU not allowed in a discovery session: rejected"
            );
            session.send_reject(reject_reason::PROTOCOL_ERROR, &bhs);
        }
    }
    Ok(Flow::Continue)
}

async fn scsi_command(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    header: &Header,
    cmd: ScsiCommand,
) -> Result<(), Stop> {
    let bhs = &header.bhs;
    let data_len = bhs.data_segment_len();
    // The command's span (a child of the session's) follows it into its own task.
    let span = tracing::debug_span!("cmd", itt = cmd.itt, cmdsn = cmd.cmdsn, op = cmd.cdb[0]);
    if !session.admit(cmd.cmdsn, cmd.immediate) {
        reader.discard_data(stream, data_len).await?;
        return Ok(());
    }
    let admitted = std::time::Instant::now();
    let cdb = match parse_ahs(&header.ahs) {
        Ok(ahs) if ahs.extended_cdb.is_empty() => Cdb::Basic(cmd.cdb),
        Ok(ahs) => {
            let mut c = cmd.cdb.to_vec();
            c.extend_from_slice(ahs.extended_cdb);
            Cdb::Extended(c)
        }
        Err(e) => {
            warn!(error = %e, "bad AHS: rejected");
            reader.discard_data(stream, data_len).await?;
            session.send_reject(reject_reason::INVALID_PDU_FIELD, bhs);
            return Ok(());
        }
    };
    if session.tasks.borrow().contains_key(&cmd.itt) || cmd.itt == RESERVED_TAG {
        warn!(itt = cmd.itt, "initiator task tag already in use: rejected");
        reader.discard_data(stream, data_len).await?;
        session.send_reject(reject_reason::INVALID_PDU_FIELD, bhs);
        return Ok(());
    }
    let edtl = cmd.expected_data_len as u64;
    let immediate_ok = data_len == 0
        || (session.params.immediate_data
            && cmd.write
            && data_len as u64 <= edtl
            && data_len as u64 <= session.params.first_burst_length as u64);
    if !immediate_ok {
        warn!(data_len, edtl, "immediate data not allowed here: rejected");
        reader.discard_data(stream, data_len).await?;
        session.send_reject(reject_reason::PROTOCOL_ERROR, bhs);
        return Ok(());
    }
    let unsolicited_end = if cmd.write && !session.params.initial_r2t {
        edtl.min(session.params.first_burst_length as u64)
    } else {
        data_len as u64
    };
    let mut buf = None;
    let mut received = 0u64;
    if cmd.write && edtl > 0 {
        let b = session.pool.get().await;
        if data_len > 0 {
            let (check, b) = reader.data_into(stream, b, 0, data_len).await;
            if check? == DataCheck::DigestError {
                warn!("data digest error on immediate data: rejected");
                session.send_reject(reject_reason::DATA_DIGEST_ERROR, bhs);
                return Ok(());
            }
            received = data_len as u64;
            buf = Some(b);
        } else {
            buf = Some(b);
        }
    }
    if let Some(e) = &session.entry {
        e.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let new = NewTask {
        itt: cmd.itt,
        lun_raw: cmd.lun,
        lun: decode_lun(cmd.lun),
        cmdsn: cmd.cmdsn,
        admitted,
        buf,
        received,
        unsolicited_end: unsolicited_end.min(session.pool.buffer_size() as u64),
    };
    let job = Job {
        cdb,
        expected_len: edtl,
        span,
    };
    start_command(session, new, job);
    Ok(())
}

async fn data_out(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    bhs: &Bhs,
    d: DataOut,
) -> Result<(), Stop> {
    let len = d.data_len as usize;
    let task = session.tasks.borrow().get(&d.itt).cloned();
    let Some(task) = task else {
        reader.discard_data(stream, len).await?;
        if session.was_aborted(d.itt) {
            // Unsolicited data (or the rest of a burst) still on its way when the task was
            // aborted: the initiator could not know, so it is dropped without a Reject.
            debug!(itt = d.itt, "Data-Out for an aborted task: discarded");
        } else {
            warn!(
                itt = d.itt,
                "Data-Out for an unknown task: discarded and rejected"
            );
            session.send_reject(reject_reason::INVALID_PDU_FIELD, bhs);
        }
        return Ok(());
    };
    let capacity = session.pool.buffer_size() as u64;
    let problem = {
        let st = task.data.borrow();
        let offset = d.buffer_offset as u64;
        let end = offset + len as u64;
        if st.error.is_some() {
            Some("task no longer accepts data")
        } else if st.buf.is_none() {
            Some("no Data-Out expected now")
        } else if d.ttt != st.ttt {
            Some("target transfer tag does not match the current R2T")
        } else if offset != st.next_offset || end > st.window_end {
            Some("Data-Out outside the window (offset or length)")
        } else if end - st.chunk_start > capacity {
            Some("Data-Out beyond the task's buffer")
        } else if d.data_sn != st.data_sn {
            Some("DataSN out of order")
        } else {
            None
        }
    };
    if let Some(why) = problem {
        warn!(
            itt = d.itt,
            offset = d.buffer_offset,
            len,
            why,
            "bad Data-Out: rejected"
        );
        reader.discard_data(stream, len).await?;
        session.send_reject(reject_reason::PROTOCOL_ERROR, bhs);
        task.fail_data(TransferError::Protocol(why));
        return Ok(());
    }
    let (buf, at) = {
        let mut st = task.data.borrow_mut();
        let at = (d.buffer_offset as u64 - st.chunk_start) as usize;
        (st.buf.take(), at)
    };
    let Some(buf) = buf else {
        return Err(Stop::Violation("buffer vanished"));
    };
    let (check, buf) = reader.data_into(stream, buf, at, len).await;
    let check = match check {
        Ok(c) => c,
        Err(e) => {
            task.fail_data(TransferError::ConnectionLost);
            return Err(e.into());
        }
    };
    {
        let mut st = task.data.borrow_mut();
        st.buf = Some(buf);
        if check == DataCheck::Good {
            st.next_offset += len as u64;
            st.data_sn = st.data_sn.wrapping_add(1);
        }
    }
    if check == DataCheck::DigestError {
        warn!(
            itt = d.itt,
            "data digest error on Data-Out: rejected (ERL 0 cannot recover the task)"
        );
        session.send_reject(reject_reason::DATA_DIGEST_ERROR, bhs);
        task.fail_data(TransferError::DigestError);
        return Ok(());
    }
    let st = task.data.borrow();
    if d.final_flag && st.next_offset != st.window_end {
        drop(st);
        task.fail_data(TransferError::Protocol("F bit before the end of the burst"));
    } else if st.next_offset >= st.window_end {
        drop(st);
        task.wake_data();
    }
    Ok(())
}

async fn nop_out(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    n: NopOut,
) -> Result<(), Stop> {
    let (data, check) = reader
        .data_vec(
            stream,
            n.data_len as usize,
            session.conn.max_recv_dsl_target as usize,
        )
        .await?;
    if n.itt == RESERVED_TAG {
        // The answer to our own ping (or a ping that wants no answer).
        if session.ping_outstanding.get() == Some(n.ttt) {
            session.ping_outstanding.set(None);
        }
        return Ok(());
    }
    if !session.admit(n.cmdsn, n.immediate) || check == DataCheck::DigestError {
        return Ok(());
    }
    let echo = if data.len() <= session.max_send_segment() {
        data
    } else {
        Vec::new()
    };
    let pdu = NopIn {
        data_len: echo.len() as u32,
        lun: n.lun,
        itt: n.itt,
        ttt: RESERVED_TAG,
        statsn: session.take_stat_sn(),
        exp_cmdsn: session.exp_cmdsn(),
        max_cmdsn: session.max_cmdsn(),
    };
    session.send(pdu.encode(), Payload::from_vec(echo));
    Ok(())
}

async fn text(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    bhs: &Bhs,
    t: TextRequest,
) -> Result<(), Stop> {
    let (data, check) = reader
        .data_vec(
            stream,
            t.data_len as usize,
            session.conn.max_recv_dsl_target as usize,
        )
        .await?;
    if check == DataCheck::DigestError {
        session.send_reject(reject_reason::DATA_DIGEST_ERROR, bhs);
        return Ok(());
    }
    if !session.admit(t.cmdsn, t.immediate) {
        return Ok(());
    }
    // A response longer than the initiator takes in one PDU goes out in pieces (RFC 7143
    // §11.11): C=1 and a target transfer tag on all but the last; the initiator asks for the next
    // piece with an empty Text Request carrying that tag.
    let pending = session.text_pending.borrow_mut().take();
    let mut body = match pending {
        Some((ttt, rest)) if t.ttt == ttt && data.is_empty() => rest,
        _ => crate::iscsi::text_phase::answer(session, stream, &data),
    };
    let max = session.max_send_segment();
    let (piece, more) = if body.len() > max {
        let rest = body.split_off(max);
        (body, Some(rest))
    } else {
        (body, None)
    };
    let ttt = match more {
        Some(rest) => {
            let ttt = session.new_ttt();
            *session.text_pending.borrow_mut() = Some((ttt, rest));
            ttt
        }
        None => RESERVED_TAG,
    };
    let last = ttt == RESERVED_TAG;
    let pdu = TextResponse {
        final_flag: last,
        cont: !last,
        data_len: piece.len() as u32,
        lun: t.lun,
        itt: t.itt,
        ttt,
        statsn: session.take_stat_sn(),
        exp_cmdsn: session.exp_cmdsn(),
        max_cmdsn: session.max_cmdsn(),
    };
    session.send(pdu.encode(), Payload::from_vec(piece));
    Ok(())
}

async fn logout(
    session: &Rc<Session>,
    stream: &TcpStream,
    reader: &mut Reader,
    l: LogoutRequest,
) -> Result<Flow, Stop> {
    reader.discard_data(stream, l.data_len as usize).await?;
    if !session.admit(l.cmdsn, l.immediate) {
        return Ok(Flow::Continue);
    }
    info!(reason = l.reason, "logout");
    session.ending.set(true);
    // Commands still running finish first, so their responses precede the logout response.
    let tasks: Vec<_> = session.tasks.borrow().values().cloned().collect();
    for t in tasks {
        t.finished().await;
    }
    let pdu = LogoutResponse {
        response: crate::iscsi::pdu::logout_response::SUCCESS,
        itt: l.itt,
        statsn: session.take_stat_sn(),
        exp_cmdsn: session.exp_cmdsn(),
        max_cmdsn: session.max_cmdsn(),
        time2wait: 0,
        time2retain: 0,
    };
    session.send(pdu.encode(), Payload::None);
    session.outbox.flushed().await;
    Ok(Flow::Logout)
}
