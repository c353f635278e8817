//! The data path of one session: sending commands (immediate data up to FirstBurstLength),
//! answering R2Ts with Data-Out, taking Data-In, and completing commands on their status:
//! GOOD is measured (and checked under --verify), transient conditions (UNIT ATTENTION, BUSY,
//! TASK SET FULL) are resent, anything else is an error record.
//!
//! Every handler works on the slot table and the connection's [`Link`] (send buffer, window);
//! nothing here blocks or allocates per I/O. A PDU that cannot belong to the session (a tag
//! with no command, data beyond the transfer) is a protocol error and fails the path over.

use std::sync::mpsc::Sender;

use ringsan::iscsi::pdu::{
    async_event, parse_sense_segment, task_attr, DataIn, DataOut, R2t, Response, ScsiCommand,
    ScsiResponse,
};

use super::picker::{IoPicker, Region};
use super::recorder::Recorder;
use super::slot::{SlotState, Slots};
use super::{ErrorLog, Report, SessionSpec};
use crate::clock::RunClock;
use crate::conn::cdb::{self, status, Sense};
use crate::conn::Link;
use crate::options::Workload;
use crate::result::Op;
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::stamp::fill_payload;
use crate::verify::{Share, VerifyMap};

/// Resends of one command (unit attentions, busy) before it counts as failed.
const MAX_RESENDS: u32 = 64;

/// The I/O state of a session.
pub struct IoState {
    session: u32,
    pub slots: Slots,
    picker: IoPicker,
    pub verify: Option<VerifyMap>,
    pub schedule: Option<Schedule>,
    /// Payload of writes without --verify (shared by all slots).
    pattern: Vec<u8>,
    bs: usize,
    blocks_per_io: u32,
    pub recorder: Recorder,
    pub errors: ErrorLog,
    clock: RunClock,
    /// A command found the path unavailable (NOT READY 04h/0Ah-0Ch): fail it over.
    pub path_failed: Option<String>,
}

impl IoState {
    /// `region` is what this session works on: its own share under --verify.
    pub fn new(
        spec: &SessionSpec,
        w: &Workload,
        region: Region,
        clock: RunClock,
        reports: Sender<Report>,
    ) -> IoState {
        let bs = w.bs_bytes as usize;
        let rng = Rng::new(w.seed, u64::from(spec.id));
        debug_assert!(region.chunks > 0, "an empty region is refused at setup");
        let verify = w.verify.then(|| {
            VerifyMap::new(Share {
                first_lba: region.first_lba,
                chunks: region.chunks,
                blocks_per_chunk: region.blocks_per_chunk,
                block_len: region.block_len as usize,
                run: spec.run_id,
                writer: spec.id,
            })
        });
        let start = (u64::from(spec.index_in_lun), u64::from(spec.lun_sessions));
        let read_percent = w.rw.read_percent(w.rwmix);
        let picker = IoPicker::new(region, read_percent, w.rw.is_random(), start, rng);
        let mut slots = Slots::new(w.iodepth as usize, if w.verify { bs } else { 0 });
        let mut pattern = vec![0u8; if w.verify { 0 } else { bs }];
        fill_payload(&mut pattern, w.seed ^ u64::from(spec.id));
        for i in 0..slots.len() {
            fill_payload(
                &mut slots.get_mut(i).buf,
                w.seed ^ (u64::from(spec.id) << 20) ^ i as u64,
            );
        }
        IoState {
            session: spec.id,
            slots,
            picker,
            verify,
            schedule: w.rate_iops.map(Schedule::new),
            pattern,
            bs,
            blocks_per_io: region.blocks_per_chunk,
            recorder: Recorder::new(spec.id, clock, reports, w.rate_iops.is_some()),
            errors: ErrorLog::default(),
            clock,
            path_failed: None,
        }
    }

    /// Queues resends first, then new I/O while slots, the command window and (under --rate)
    /// the schedule allow; stops early when the send buffer should be written. Returns the
    /// number of commands queued.
    pub fn issue(&mut self, link: &mut Link, now: u64, end_ns: u64) -> usize {
        let mut n = 0;
        while let Some(i) = self.slots.next_queued() {
            if !link.window_open() || link.should_flush() {
                return n;
            }
            self.send_command(i, link, self.clock.now_ns());
            n += 1;
        }
        while self.slots.has_free() && link.window_open() && !link.should_flush() {
            let start_ns = match &mut self.schedule {
                None => self.clock.now_ns(),
                Some(s) if s.due(now) && s.next_ns() < end_ns => s.take(),
                Some(_) => break,
            };
            if !self.start_io(start_ns, link) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Chooses, prepares and sends one new I/O; false when no chunk was free.
    fn start_io(&mut self, start_ns: u64, link: &mut Link) -> bool {
        let slots = &self.slots;
        let checking = self.verify.is_some();
        let Some((op, chunk)) = self.picker.next(|c| checking && slots.chunk_busy(c)) else {
            return false;
        };
        let lba = self.picker.region().lba(chunk);
        let Some(i) = self.slots.alloc(op, chunk, lba, start_ns) else {
            return false;
        };
        if let (Op::Write, Some(v)) = (op, &mut self.verify) {
            let slot = self.slots.get_mut(i);
            slot.seq = v.stamp_write(chunk, &mut slot.buf);
        }
        let now = self.clock.now_ns();
        if self.schedule.is_some() {
            self.recorder.record_lag(now.saturating_sub(start_ns));
        }
        self.send_command(i, link, now);
        true
    }

    /// Queues the SCSI Command PDU of slot `i` with its immediate data.
    fn send_command(&mut self, i: usize, link: &mut Link, now: u64) {
        let itt = self.slots.mark_sent(i, now);
        let slot = self.slots.get(i);
        let (cdb, imm) = match slot.op {
            Op::Read => (cdb::read16(slot.lba, self.blocks_per_io), 0),
            Op::Write => (
                cdb::write16(slot.lba, self.blocks_per_io),
                link.params.immediate_len(self.bs),
            ),
        };
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: slot.op == Op::Read,
            write: slot.op == Op::Write,
            attr: task_attr::SIMPLE,
            ahs_len_words: 0,
            data_len: imm as u32,
            lun: link.lun,
            itt,
            expected_data_len: self.bs as u32,
            cmdsn: link.take_cmdsn(),
            exp_statsn: link.sn.exp_statsn,
            cdb,
        };
        let payload = if self.verify.is_some() {
            &slot.buf
        } else {
            &self.pattern
        };
        link.queue(&cmd.encode(), &payload[..imm]);
    }

    /// Handles one target PDU; `Err` is a protocol error.
    pub fn on_pdu(
        &mut self,
        r: Response,
        data: &[u8],
        link: &mut Link,
        now: u64,
    ) -> Result<(), String> {
        match r {
            Response::DataIn(d) => self.on_data_in(&d, data, now),
            Response::ScsiResponse(s) => self.on_response(&s, data, now),
            Response::R2t(r) => self.on_r2t(&r, link),
            Response::NopIn(n) => {
                link.answer_ping(&n);
                Ok(())
            }
            Response::Async(a) => match a.async_event {
                async_event::LOGOUT_REQUEST => Err("the target asked for a logout".into()),
                async_event::CONNECTION_DROP | async_event::SESSION_DROP => Err(format!(
                    "the target is dropping the connection (async event {})",
                    a.async_event
                )),
                _ => Ok(()),
            },
            Response::Reject(j) => Err(format!(
                "the target rejected a PDU (reason {:#04x})",
                j.reason
            )),
            other => Err(format!("unexpected {:?} PDU", other.opcode())),
        }
    }

    fn slot_for(&self, itt: u32, op: Op, what: &str) -> Result<usize, String> {
        let i = self
            .slots
            .lookup(itt)
            .ok_or_else(|| format!("{what} for ITT {itt:#010x}, which has no command in flight"))?;
        if self.slots.get(i).op != op {
            return Err(format!(
                "{what} for a {} command",
                self.slots.get(i).op.name()
            ));
        }
        Ok(i)
    }

    fn on_data_in(&mut self, d: &DataIn, data: &[u8], now: u64) -> Result<(), String> {
        let i = self.slot_for(d.itt, Op::Read, "Data-In")?;
        let offset = d.buffer_offset as usize;
        let end = offset + data.len();
        if end > self.bs {
            return Err(format!(
                "Data-In up to byte {end} of a {}-byte read",
                self.bs
            ));
        }
        let slot = self.slots.get_mut(i);
        if let Some(dst) = slot.buf.get_mut(offset..end) {
            dst.copy_from_slice(data);
        }
        slot.got += data.len();
        if d.status_present {
            self.complete(i, d.status, None, now);
        }
        Ok(())
    }

    fn on_response(&mut self, s: &ScsiResponse, data: &[u8], now: u64) -> Result<(), String> {
        let i = self.slots.lookup(s.itt).ok_or_else(|| {
            format!(
                "SCSI Response for ITT {:#010x}, which has no command in flight",
                s.itt
            )
        })?;
        if s.response != 0 {
            let slot = self.slots.get(i);
            let msg = format!(
                "{} LBA {}: target failure (response {:#x})",
                slot.op.name(),
                slot.lba,
                s.response
            );
            self.fail(i, msg, now);
            return Ok(());
        }
        let sense = parse_sense_segment(data).ok().and_then(Sense::parse);
        self.complete(i, s.status, sense, now);
        Ok(())
    }

    fn on_r2t(&mut self, r: &R2t, link: &mut Link) -> Result<(), String> {
        let i = self.slot_for(r.itt, Op::Write, "R2T")?;
        let start = r.buffer_offset as usize;
        let end = start + r.desired_len as usize;
        if end > self.bs {
            return Err(format!(
                "R2T for bytes {start}..{end} of a {}-byte write",
                self.bs
            ));
        }
        let payload = if self.verify.is_some() {
            &self.slots.get(i).buf
        } else {
            &self.pattern
        };
        let mut offset = start;
        let mut data_sn = 0;
        while offset < end {
            let len = (end - offset).min(link.params.max_send_dsl);
            let out = DataOut {
                final_flag: offset + len == end,
                data_len: len as u32,
                lun: r.lun,
                itt: r.itt,
                ttt: r.ttt,
                exp_statsn: link.sn.exp_statsn,
                data_sn,
                buffer_offset: offset as u32,
            };
            link.queue(&out.encode(), &payload[offset..offset + len]);
            offset += len;
            data_sn += 1;
        }
        Ok(())
    }

    /// A command's status arrived.
    fn complete(&mut self, i: usize, st: u8, sense: Option<Sense>, now: u64) {
        let transient = match st {
            status::BUSY | status::TASK_SET_FULL => true,
            status::CHECK_CONDITION => sense.is_some_and(|s| s.is_transient()),
            _ => false,
        };
        if transient && self.slots.get(i).resends < MAX_RESENDS {
            self.errors.retries += 1;
            self.slots.requeue(i);
            return;
        }
        if st == status::CHECK_CONDITION && sense.is_some_and(|s| s.is_path_unavailable()) {
            // As dm-multipath: the path is failed, the command retried on the next one. A write
            // refused so may have reached one copy: in doubt.
            let slot = self.slots.get(i);
            if let (Op::Write, Some(v)) = (slot.op, &mut self.verify) {
                v.write_in_doubt(slot.chunk, slot.seq);
            }
            let what = format!(
                "{} LBA {}: the path is unavailable{}",
                slot.op.name(),
                slot.lba,
                sense.map(|s| format!(" ({s})")).unwrap_or_default()
            );
            self.errors.retries += 1;
            self.slots.requeue(i);
            self.path_failed.get_or_insert(what);
            return;
        }
        if st != status::GOOD {
            let slot = self.slots.get(i);
            let detail = sense.map(|s| format!(" ({s})")).unwrap_or_default();
            let msg = format!(
                "{} LBA {}: {}{detail}",
                slot.op.name(),
                slot.lba,
                cdb::status_name(st)
            );
            self.fail(i, msg, now);
            return;
        }
        let slot = self.slots.get(i);
        if slot.op == Op::Read && slot.got != self.bs {
            let msg = format!(
                "read LBA {}: {} of {} bytes returned",
                slot.lba, slot.got, self.bs
            );
            self.fail(i, msg, now);
            return;
        }
        if let Some(v) = &mut self.verify {
            match slot.op {
                Op::Read => v.check_read(slot.chunk, &slot.buf),
                Op::Write => v.write_done(slot.chunk, slot.seq),
            }
        }
        self.recorder.record(slot.op, slot.start_ns, now, slot.lba);
        self.slots.free(i);
    }

    /// A command failed for good: an error record; a failed write leaves its chunk in doubt.
    fn fail(&mut self, i: usize, message: String, now: u64) {
        let slot = self.slots.get(i);
        if let (Op::Write, Some(v)) = (slot.op, &mut self.verify) {
            v.write_in_doubt(slot.chunk, slot.seq);
        }
        self.errors
            .push(self.session, self.clock.measured_s(now), message);
        self.slots.free(i);
    }

    /// The connection is gone: every command on the wire goes back to the queue for the next
    /// one, and writes among them are in doubt. Returns how many were in flight.
    pub fn requeue_in_flight(&mut self) -> u32 {
        let mut n = 0;
        for i in 0..self.slots.len() {
            let slot = self.slots.get(i);
            if slot.state != SlotState::InFlight {
                continue;
            }
            if let (Op::Write, Some(v)) = (slot.op, &mut self.verify) {
                v.write_in_doubt(slot.chunk, slot.seq);
            }
            self.slots.requeue(i);
            self.errors.retries += 1;
            n += 1;
        }
        n
    }
}
