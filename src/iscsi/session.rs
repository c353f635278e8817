//! One iSCSI session in full-feature phase (one connection: MaxConnections=1, ERL 0): its
//! sequence numbers (CmdSN window, StatSN), its tasks by ITT, and the helpers that stamp and
//! queue every target PDU. Lives on one reactor for its whole life (`Rc`, no locks).
//!
//! Traps (RFC 7143 §4.2.2): ExpCmdSN advances only for non-immediate commands received in
//! order; a non-immediate command outside [ExpCmdSN, MaxCmdSN] is silently ignored; StatSN
//! advances only on status-bearing PDUs (SCSI Response, Data-In with S, NOP-In answering a
//! NOP-Out, Text/Logout/TMF responses, Reject, Async Message), and R2T and a status-less Data-In
//! carry the next StatSN without consuming it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ringsan_engine::buffer::BufferPool;

use crate::iscsi::framing::{frame, Digests, Payload};
use crate::iscsi::outbox::Outbox;
use crate::iscsi::params::{ConnParams, SessionParams};
use crate::iscsi::pdu::{AsyncMessage, Bhs, Reject, ScsiResponse, RESERVED_TAG};
use crate::iscsi::registry::SessionEntry;
use crate::iscsi::server::Server;
use crate::iscsi::target::Target;
use crate::iscsi::task::TaskCtl;
use crate::iscsi::workers::Workers;
use crate::scsi::nexus::Nexus;

/// Most commands one session may have in flight (the CmdSN window's upper bound).
pub const MAX_QUEUE_DEPTH: u32 = 128;

/// Serial number arithmetic (RFC 1982, 32 bits): `a < b`.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// Serial number arithmetic: `a <= b`.
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

/// A session in full-feature phase.
pub struct Session {
    /// The daemon.
    pub server: Arc<Server>,
    /// The target (None for a discovery session).
    pub target: Option<Arc<Target>>,
    /// The registry entry (None for a discovery session).
    pub entry: Option<Arc<SessionEntry>>,
    /// The I_T nexus (normal sessions).
    pub nexus: Option<Nexus>,
    /// InitiatorName.
    pub initiator: String,
    /// Negotiated session parameters.
    pub params: SessionParams,
    /// Negotiated connection parameters.
    pub conn: ConnParams,
    /// Digests in force.
    pub digests: Digests,
    /// Commands in flight by ITT.
    pub tasks: RefCell<HashMap<u32, Rc<TaskCtl>>>,
    /// The send queue.
    pub outbox: Rc<Outbox>,
    /// The reactor's buffer pool.
    pub pool: BufferPool,
    exp_cmdsn: Cell<u32>,
    stat_sn: Cell<u32>,
    next_ttt: Cell<u32>,
    /// Set once a logout was accepted or the connection is being torn down.
    pub ending: Cell<bool>,
    /// The TTT of our NOP-In ping still waiting for its NOP-Out, if any.
    pub ping_outstanding: Cell<Option<u32>>,
    /// Whether any PDU arrived since the keepalive last looked.
    pub heard_from: Cell<bool>,
    /// The rest of a long Text Response and the TTT the initiator asks for it with.
    pub text_pending: RefCell<Option<(u32, Vec<u8>)>>,
    /// The tasks that run this session's SCSI commands.
    pub workers: Workers,
    /// Initiator task tags of the last tasks that ended aborted (a ring, no allocation).
    aborted_itts: RefCell<([u32; ABORTED_ITTS], usize)>,
}

/// Aborted tasks remembered, so their late Data-Out is discarded silently.
const ABORTED_ITTS: usize = 32;

impl Session {
    /// A session whose first expected CmdSN is `exp_cmdsn` and next StatSN `stat_sn`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: Arc<Server>,
        target: Option<Arc<Target>>,
        entry: Option<Arc<SessionEntry>>,
        nexus: Option<Nexus>,
        initiator: String,
        params: SessionParams,
        conn: ConnParams,
        exp_cmdsn: u32,
        stat_sn: u32,
        pool: BufferPool,
    ) -> Session {
        let digests = Digests {
            header: conn.header_digest,
            data: conn.data_digest,
        };
        Session {
            server,
            target,
            entry,
            nexus,
            initiator,
            params,
            conn,
            digests,
            tasks: RefCell::new(HashMap::new()),
            outbox: Rc::new(Outbox::default()),
            pool,
            exp_cmdsn: Cell::new(exp_cmdsn),
            stat_sn: Cell::new(stat_sn),
            next_ttt: Cell::new(1),
            ending: Cell::new(false),
            ping_outstanding: Cell::new(None),
            heard_from: Cell::new(false),
            text_pending: RefCell::new(None),
            workers: Workers::default(),
            aborted_itts: RefCell::new(([RESERVED_TAG; ABORTED_ITTS], 0)),
        }
    }

    /// Remembers that the task `itt` ended aborted.
    pub fn note_aborted(&self, itt: u32) {
        let mut ring = self.aborted_itts.borrow_mut();
        let at = ring.1 % ABORTED_ITTS;
        ring.0[at] = itt;
        ring.1 = at + 1;
    }

    /// Whether `itt` is one of the last tasks that ended aborted (and no new task took its tag
    /// since: the caller looks it up in `tasks` first).
    pub fn was_aborted(&self, itt: u32) -> bool {
        itt != RESERVED_TAG && self.aborted_itts.borrow().0.contains(&itt)
    }

    /// ExpCmdSN now.
    pub fn exp_cmdsn(&self) -> u32 {
        self.exp_cmdsn.get()
    }

    /// MaxCmdSN now: the window follows the free buffers, so the target closes it (MaxCmdSN =
    /// ExpCmdSN - 1) rather than accept commands it has no memory for; a session with nothing in
    /// flight always keeps a window of one so it can never be stuck.
    pub fn max_cmdsn(&self) -> u32 {
        let in_flight = self.tasks.borrow().len() as u32;
        let free = self.pool.free_count() as u32;
        let floor = u32::from(in_flight == 0);
        let window = free
            .clamp(floor, MAX_QUEUE_DEPTH)
            .min(MAX_QUEUE_DEPTH.saturating_sub(in_flight).max(floor));
        self.exp_cmdsn.get().wrapping_add(window).wrapping_sub(1)
    }

    /// Decides whether a command with `cmdsn` is delivered: immediate ones always are (and do not
    /// advance ExpCmdSN); a non-immediate one only when it is the next expected.
    pub fn admit(&self, cmdsn: u32, immediate: bool) -> bool {
        if immediate {
            return true;
        }
        let exp = self.exp_cmdsn.get();
        if cmdsn == exp {
            self.exp_cmdsn.set(exp.wrapping_add(1));
            return true;
        }
        let max = self.max_cmdsn();
        if sn_lt(cmdsn, exp) || sn_lt(max, cmdsn) {
            tracing::debug!(
                cmdsn,
                exp_cmdsn = exp,
                max_cmdsn = max,
                "command outside the CmdSN window: silently ignored (RFC 7143 §4.2.2.1)"
            );
        } else {
            tracing::warn!(
                cmdsn,
                exp_cmdsn = exp,
                "command ahead of ExpCmdSN on a single-connection session: ignored"
            );
        }
        false
    }

    /// The next StatSN, consumed.
    pub fn take_stat_sn(&self) -> u32 {
        let sn = self.stat_sn.get();
        self.stat_sn.set(sn.wrapping_add(1));
        sn
    }

    /// The next StatSN, not consumed (R2T, status-less Data-In).
    pub fn peek_stat_sn(&self) -> u32 {
        self.stat_sn.get()
    }

    /// A fresh target transfer tag (never the reserved 0xffffffff).
    pub fn new_ttt(&self) -> u32 {
        let t = self.next_ttt.get();
        let next = t.wrapping_add(1);
        self.next_ttt
            .set(if next == RESERVED_TAG { 1 } else { next });
        t
    }

    /// The most data the target may put in one PDU (the initiator's MaxRecvDataSegmentLength).
    pub fn max_send_segment(&self) -> usize {
        self.conn.max_recv_dsl_initiator.max(512) as usize
    }

    /// Frames and queues one PDU.
    pub fn send(&self, bhs: Bhs, payload: Payload) {
        self.outbox.push(frame(&bhs, payload, self.digests));
    }

    /// Sends a SCSI Response (status, optional sense data, residuals).
    pub fn send_scsi_response(
        &self,
        itt: u32,
        status: u8,
        sense: Option<&[u8]>,
        residual: Residual,
    ) {
        let mut data = Vec::new();
        if let Some(s) = sense {
            crate::iscsi::pdu::sense_segment(s, &mut data);
        }
        let pdu = ScsiResponse {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: residual.overflow,
            underflow: residual.underflow,
            response: 0,
            status,
            data_len: data.len() as u32,
            itt,
            snack_tag: 0,
            statsn: self.take_stat_sn(),
            exp_cmdsn: self.exp_cmdsn(),
            max_cmdsn: self.max_cmdsn(),
            exp_data_sn: residual.data_sn,
            bidi_read_residual: 0,
            residual_count: residual.count,
        };
        self.send(pdu.encode(), Payload::from_vec(data));
    }

    /// Sends a Reject carrying the offending header.
    pub fn send_reject(&self, reason: u8, rejected: &Bhs) {
        let pdu = Reject {
            reason,
            data_len: rejected.0.len() as u32,
            statsn: self.take_stat_sn(),
            exp_cmdsn: self.exp_cmdsn(),
            max_cmdsn: self.max_cmdsn(),
            data_sn_or_r2t_sn: 0,
        };
        self.send(pdu.encode(), Payload::Bytes(rejected.0.to_vec()));
    }

    /// Asks the initiator to log out within `seconds` (Async Message, event 1).
    pub fn send_logout_request(&self, seconds: u16) {
        let pdu = AsyncMessage {
            data_len: 0,
            lun: 0,
            statsn: self.take_stat_sn(),
            exp_cmdsn: self.exp_cmdsn(),
            max_cmdsn: self.max_cmdsn(),
            async_event: crate::iscsi::pdu::async_event::LOGOUT_REQUEST,
            async_vcode: 0,
            parameter1: 0,
            parameter2: 0,
            parameter3: seconds,
        };
        self.send(pdu.encode(), Payload::None);
    }

    /// Aborts the tasks on the LUN `lun_raw` (every LUN with `None`) and waits for their I/O to
    /// finish; with `status`, each aborted task still completes with that status (TAS=1).
    pub async fn abort_tasks_on(&self, lun_raw: Option<u64>, status: Option<u8>) {
        let tasks: Vec<Rc<TaskCtl>> = self
            .tasks
            .borrow()
            .values()
            .filter(|t| lun_raw.is_none_or(|l| t.lun_raw == l))
            .cloned()
            .collect();
        for t in &tasks {
            match status {
                Some(s) => t.abort_with_status(s),
                None => t.abort(),
            }
        }
        for t in tasks {
            t.finished().await;
        }
    }

    /// Aborts every task (connection loss, reinstatement) and waits for their I/O to finish.
    pub async fn abort_all_tasks(&self) {
        let tasks: Vec<Rc<TaskCtl>> = self.tasks.borrow().values().cloned().collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            t.finished().await;
        }
    }
}

/// Residual information of a SCSI Response or final Data-In.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residual {
    /// The command wanted to move more than the initiator expected.
    pub overflow: bool,
    /// The command moved less than the initiator expected.
    pub underflow: bool,
    /// Bytes over or under.
    pub count: u32,
    /// ExpDataSN: Data-In PDUs sent for the command.
    pub data_sn: u32,
}

impl Residual {
    /// The residual of a command that wanted `command_len` bytes when `expected_len` were
    /// expected (RFC 7143 §11.4.5).
    pub fn of(expected_len: u64, command_len: u64) -> Residual {
        if command_len > expected_len {
            Residual {
                overflow: true,
                underflow: false,
                count: clamp32(command_len - expected_len),
                data_sn: 0,
            }
        } else if command_len < expected_len {
            Residual {
                overflow: false,
                underflow: true,
                count: clamp32(expected_len - command_len),
                data_sn: 0,
            }
        } else {
            Residual::default()
        }
    }
}

fn clamp32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(sn_lt(1, 2));
        assert!(sn_lt(u32::MAX, 0));
        assert!(!sn_lt(0, u32::MAX));
        assert!(sn_le(5, 5));
        assert!(!sn_lt(5, 5));
    }

    #[test]
    fn residuals() {
        assert_eq!(Residual::of(512, 512), Residual::default());
        let under = Residual::of(1024, 512);
        assert!(under.underflow && !under.overflow && under.count == 512);
        let over = Residual::of(512, 2048);
        assert!(over.overflow && over.count == 1536);
    }
}
