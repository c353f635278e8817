//! Running one SCSI command over iSCSI: [`IscsiTransfer`] implements the SCSI layer's
//! [`DataTransfer`] with R2Ts (MaxOutstandingR2T=1, bursts of at most MaxBurstLength) and
//! Data-In PDUs (at most the initiator's MaxRecvDataSegmentLength each, status collapsed into
//! the last one when the command succeeded), and [`run_command`] drives the command from the SCSI
//! layer to its response. RFC 7143 §11.7 (Data-In), §11.8 (R2T), §11.4.5 (residuals).

use std::rc::Rc;

use ringsan_engine::buffer::Buf;

use crate::iscsi::framing::Payload;
use crate::iscsi::pdu::{DataIn, R2t, RESERVED_TAG};
use crate::iscsi::session::{Residual, Session};
use crate::iscsi::task::TaskCtl;
use crate::iscsi::task_set::abort_preempted;
use crate::metrics::lun::{CommandRecord, OpClass};
use crate::scsi::exec::{execute, CommandContext, CommandOutcome};
use crate::scsi::lun::LogicalUnit;
use crate::scsi::sense::ScsiStatus;
use crate::scsi::transfer::{DataTransfer, TransferError};

/// The data path of one command on one session.
pub struct IscsiTransfer {
    session: Rc<Session>,
    task: Rc<TaskCtl>,
    expected_len: u64,
    command_len: Option<u64>,
    /// Data-Out consumed so far (offset of the next chunk).
    out_offset: u64,
    /// Data-In sent so far.
    in_offset: u64,
    data_sn: u32,
    r2t_sn: u32,
    status_sent: bool,
}

impl IscsiTransfer {
    fn residual(&self) -> Residual {
        let mut r = Residual::of(self.expected_len, self.command_len.unwrap_or(0));
        r.data_sn = self.data_sn;
        r
    }

    /// Sends one Data-In PDU with `payload` at the current offset.
    fn data_in(&mut self, payload: Payload, final_pdu: bool, with_status: bool) {
        let len = payload.len() as u32;
        let residual = self.residual();
        let s = &self.session;
        let pdu = DataIn {
            final_flag: final_pdu,
            ack: false,
            overflow: with_status && residual.overflow,
            underflow: with_status && residual.underflow,
            status_present: with_status,
            status: if with_status {
                ScsiStatus::Good.code()
            } else {
                0
            },
            data_len: len,
            lun: self.task.lun_raw,
            itt: self.task.itt,
            ttt: RESERVED_TAG,
            statsn: if with_status { s.take_stat_sn() } else { 0 },
            exp_cmdsn: s.exp_cmdsn(),
            max_cmdsn: s.max_cmdsn(),
            data_sn: self.data_sn,
            buffer_offset: self.in_offset as u32,
            residual_count: if with_status { residual.count } else { 0 },
        };
        self.data_sn = self.data_sn.wrapping_add(1);
        self.in_offset += len as u64;
        s.send(pdu.encode(), payload);
        if with_status {
            self.status_sent = true;
        }
    }

    /// Splits `len` bytes into PDUs no longer than the initiator accepts and sends them.
    fn send_pieces(
        &mut self,
        mut make: impl FnMut(std::ops::Range<usize>) -> Payload,
        len: usize,
        last_good: bool,
    ) {
        let allowed = self.expected_len.saturating_sub(self.in_offset) as usize;
        let len = len.min(allowed);
        let wanted = self
            .command_len
            .unwrap_or(self.expected_len)
            .min(self.expected_len);
        let max = self.session.max_send_segment();
        let burst = self.session.params.max_burst_length.max(512) as u64;
        let mut at = 0usize;
        while at < len {
            let n = (len - at).min(max);
            let end_of_data = at + n == len && (last_good || self.in_offset + n as u64 >= wanted);
            let end_of_burst = (self.in_offset + n as u64).is_multiple_of(burst);
            let with_status = last_good && at + n == len;
            self.data_in(make(at..at + n), end_of_data || end_of_burst, with_status);
            at += n;
        }
    }

    async fn solicit(&mut self, start: u64, end: u64) -> Result<(), TransferError> {
        let burst = self.session.params.max_burst_length.max(512) as u64;
        let mut next = start;
        while next < end {
            let len = (end - next).min(burst);
            let ttt = self.session.new_ttt();
            {
                let mut d = self.task.data.borrow_mut();
                d.window_end = next + len;
                d.ttt = ttt;
                d.data_sn = 0;
            }
            let s = &self.session;
            let pdu = R2t {
                lun: self.task.lun_raw,
                itt: self.task.itt,
                ttt,
                statsn: s.peek_stat_sn(),
                exp_cmdsn: s.exp_cmdsn(),
                max_cmdsn: s.max_cmdsn(),
                r2t_sn: self.r2t_sn,
                buffer_offset: next as u32,
                desired_len: len as u32,
            };
            self.r2t_sn = self.r2t_sn.wrapping_add(1);
            s.send(pdu.encode(), Payload::None);
            self.task.window_filled().await?;
            next += len;
        }
        Ok(())
    }
}

impl DataTransfer for IscsiTransfer {
    fn expected_len(&self) -> u64 {
        self.expected_len
    }

    fn chunk_bytes(&self) -> usize {
        self.session.pool.buffer_size()
    }

    fn set_command_len(&mut self, bytes: u64) {
        self.command_len = Some(bytes);
    }

    async fn receive(&mut self, len: usize) -> Result<Buf, TransferError> {
        if self.task.is_aborted() {
            return Err(TransferError::Aborted);
        }
        let start = self.out_offset;
        let end = start + len as u64;
        if end > self.expected_len {
            return Err(TransferError::Protocol(
                "command needs more data than the initiator announced",
            ));
        }
        let has_buf = self.task.data.borrow().buf.is_some();
        if !has_buf {
            let buf = self.session.pool.get().await;
            let mut d = self.task.data.borrow_mut();
            d.buf = Some(buf);
            d.chunk_start = start;
        }
        // The unsolicited part (immediate data and unsolicited Data-Out) first.
        self.task.window_filled().await?;
        let received = self.task.data.borrow().next_offset.max(start);
        if received < end {
            self.solicit(received, end).await?;
        }
        let mut buf = self
            .task
            .data
            .borrow_mut()
            .buf
            .take()
            .ok_or(TransferError::Protocol("data buffer missing"))?;
        buf.set_len(len);
        self.out_offset = end;
        Ok(buf)
    }

    async fn send(&mut self, buf: Buf, len: usize, last_good: bool) -> Result<(), TransferError> {
        if self.task.is_aborted() {
            return Err(TransferError::Aborted);
        }
        let shared = buf.into_shared();
        self.send_pieces(|r| Payload::Shared(shared.clone(), r), len, last_good);
        Ok(())
    }

    async fn send_bytes(&mut self, data: Vec<u8>, last_good: bool) -> Result<(), TransferError> {
        if self.task.is_aborted() {
            return Err(TransferError::Aborted);
        }
        let len = data.len();
        self.send_pieces(
            |r| Payload::Bytes(data.get(r).map(<[u8]>::to_vec).unwrap_or_default()),
            len,
            last_good,
        );
        Ok(())
    }

    async fn buffer(&mut self) -> Buf {
        self.session.pool.get().await
    }

    fn aborted(&self) -> bool {
        self.task.is_aborted()
    }
}

/// A command's CDB: the 16 bytes of the BHS, or longer with an Extended CDB AHS.
pub enum Cdb {
    /// The BHS's 16 bytes (no allocation).
    Basic([u8; 16]),
    /// BHS bytes followed by the AHS's.
    Extended(Vec<u8>),
}

impl Cdb {
    /// The CDB bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Cdb::Basic(b) => b,
            Cdb::Extended(v) => v,
        }
    }
}

/// Runs one admitted SCSI command to its end: executes it in the SCSI layer, sends its status
/// (unless it rode on the last Data-In or the task was aborted), records it in its logical
/// unit's metrics, and unregisters the task.
pub async fn run_command(session: Rc<Session>, task: Rc<TaskCtl>, cdb: Cdb, expected_len: u64) {
    let mut xfer = IscsiTransfer {
        session: session.clone(),
        task: task.clone(),
        expected_len,
        command_len: None,
        out_offset: 0,
        in_offset: 0,
        data_sn: 0,
        r2t_sn: 0,
        status_sent: false,
    };
    // Held for the whole command: the TAS check and the metrics use this unit, even when it is
    // removed from the target meanwhile.
    let lu = session
        .target
        .as_ref()
        .zip(task.lun)
        .and_then(|(target, n)| target.lun(n));
    let outcome = match (&session.target, &session.nexus) {
        (Some(target), Some(nexus)) => {
            let list = |f: &mut dyn FnMut(&LogicalUnit)| {
                for lu in target.luns() {
                    f(&lu);
                }
            };
            let ctx = CommandContext {
                nexus,
                lun: task.lun.unwrap_or(u16::MAX),
                lu: lu.as_deref(),
                luns: &list,
            };
            Some(execute(&ctx, cdb.as_slice(), &mut xfer).await)
        }
        _ => None,
    };
    if let Some(o) = outcome.as_ref().filter(|o| !o.abort_tasks_of.is_empty()) {
        let tas = lu.as_ref().is_some_and(|lu| lu.mode().tas);
        let status = tas.then_some(ScsiStatus::TaskAborted.code());
        abort_preempted(&session, &o.abort_tasks_of, task.lun_raw, status).await;
    }
    if task.is_aborted() && !xfer.status_sent {
        if let Some(status) = task.abort_status() {
            session.send_scsi_response(task.itt, status, None, Residual::default());
        }
    } else if !xfer.status_sent {
        if let Some(outcome) = &outcome {
            let residual = if outcome.status == ScsiStatus::Good.code() {
                xfer.residual()
            } else {
                Residual {
                    data_sn: xfer.data_sn,
                    ..Residual::default()
                }
            };
            session.send_scsi_response(
                task.itt,
                outcome.status,
                outcome.sense.as_deref(),
                residual,
            );
        }
    }
    if let Some(lu) = &lu {
        record(lu, &task, &xfer, cdb.as_slice(), outcome.as_ref());
    }
    session.tasks.borrow_mut().remove(&task.itt);
    if task.is_aborted() {
        session.note_aborted(task.itt);
    }
    if let Some(e) = &session.entry {
        e.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    task.finish();
}

/// Records the command's end in `lu`'s metrics: the status actually sent (GOOD when it rode on
/// the last Data-In, TASK ABORTED or none for an aborted task), its sense key, the data moved
/// both ways, and the time since its admission. No lock, no allocation.
fn record(
    lu: &LogicalUnit,
    task: &TaskCtl,
    xfer: &IscsiTransfer,
    cdb: &[u8],
    outcome: Option<&CommandOutcome>,
) {
    let (status, sense) = if xfer.status_sent {
        (Some(ScsiStatus::Good.code()), None)
    } else if task.is_aborted() {
        (task.abort_status(), None)
    } else {
        (
            outcome.map(|o| o.status),
            outcome.and_then(|o| o.sense.as_deref()),
        )
    };
    lu.metrics().record(&CommandRecord {
        op: OpClass::of_cdb(cdb),
        status,
        sense,
        bytes: xfer.in_offset + xfer.out_offset,
        elapsed: task.admitted.elapsed(),
    });
}
