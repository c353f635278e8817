//! The SCSI command executor: checks unit attentions, decodes the CDB, and runs the command
//! against the logical unit's volume, moving data through the transport's [`DataTransfer`] one
//! pool buffer at a time. Every failure ends in the status and sense data SPC-4/SBC-3 name.
//!
//! Rules that are easy to get wrong:
//! - Data-Out length (the iSCSI Expected Data Transfer Length) against the CDB: WRITE and WRITE
//!   AND VERIFY write only the whole blocks both cover and end GOOD (the transport reports the
//!   over- or underflow as a residual); COMPARE AND WRITE and WRITE SAME take exactly what their
//!   CDB implies and refuse anything else with INVALID FIELD IN CDB before any data moves.
//! - A medium-writing command under SWP or a read-only export is DATA PROTECT, WRITE PROTECTED,
//!   checked after the CDB decodes and before any data moves.
//! - GET LBA STATUS starts at the requested LBA and reports a block deallocated only when the
//!   backend's hole covers all of it.

use std::io;

use ringsan_engine::buffer::Buf;
use ringsan_engine::volume::{CompareOutcome, Durability};

use crate::scsi::cdb::{decode, Command};
use crate::scsi::lun::LogicalUnit;
use crate::scsi::mirrored;
use crate::scsi::nexus::Nexus;
use crate::scsi::pr::{self, Registrant};
use crate::scsi::sense::{Asc, CommandError, ScsiStatus, Sense, SenseKey};
use crate::scsi::transfer::{DataTransfer, TransferError};
use crate::scsi::ua::UnitAttention;
use crate::scsi::{
    alua, capacity, inquiry, lba_status, mode, opcodes, report_luns, request_sense, unmap, vpd,
};

/// What the transport needs to run one command.
pub struct CommandContext<'a> {
    /// The I_T nexus the command came through.
    pub nexus: &'a Nexus,
    /// The LUN addressed.
    pub lun: u16,
    /// The logical unit, when that LUN exists.
    pub lu: Option<&'a LogicalUnit>,
    /// Visits every logical unit of the target (REPORT LUNS lists them and, with LUICLR=1,
    /// clears REPORTED LUNS DATA HAS CHANGED on all of them for the nexus).
    pub luns: &'a LunVisitor<'a>,
}

/// Calls its argument with every logical unit of the target.
pub type LunVisitor<'a> = dyn Fn(&mut dyn FnMut(&LogicalUnit)) + 'a;

impl CommandContext<'_> {
    fn lun_numbers(&self) -> Vec<u16> {
        let mut numbers = Vec::new();
        (self.luns)(&mut |lu| numbers.push(lu.number()));
        numbers.sort_unstable();
        numbers
    }

    fn clear_reported_luns_changed(&self) {
        (self.luns)(&mut |lu| {
            lu.clear_unit_attention(self.nexus, UnitAttention::ReportedLunsDataChanged)
        });
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// SCSI status.
    pub status: u8,
    /// Sense data (with CHECK CONDITION).
    pub sense: Option<Vec<u8>>,
    /// PREEMPT AND ABORT: the transport aborts the tasks these registrants' I_T nexuses have on
    /// the logical unit, and waits for their I/O, before it completes the command.
    pub abort_tasks_of: Vec<Registrant>,
}

impl CommandOutcome {
    fn good() -> CommandOutcome {
        CommandOutcome {
            status: ScsiStatus::Good.code(),
            sense: None,
            abort_tasks_of: Vec::new(),
        }
    }
}

type Exec<T = ()> = Result<T, CommandError>;

fn check(sense: Sense) -> CommandError {
    CommandError::check(sense)
}

fn transfer_failed(e: TransferError) -> CommandError {
    match e {
        TransferError::Aborted => CommandError::task_aborted(),
        TransferError::DigestError => {
            check(Sense::aborted_command(Asc::PROTOCOL_SERVICE_CRC_ERROR))
        }
        TransferError::ConnectionLost => check(Sense::aborted_command(Asc::NO_ADDITIONAL_SENSE)),
        TransferError::Protocol(_) => {
            check(Sense::illegal_request(Asc::INVALID_FIELD_IN_COMMAND_IU))
        }
    }
}

fn io_failed(e: &io::Error, writing: bool) -> CommandError {
    tracing::warn!(error = %e, writing, "backing store I/O failed");
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => check(Sense::new(
            SenseKey::DataProtect,
            Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT,
        )),
        _ if writing => check(Sense::medium_error(Asc::WRITE_ERROR)),
        _ => check(Sense::medium_error(Asc::UNRECOVERED_READ_ERROR)),
    }
}

fn outcome_of(result: Exec, d_sense: bool) -> CommandOutcome {
    match result {
        Ok(()) => CommandOutcome::good(),
        Err(e) => CommandOutcome {
            status: e.status.code(),
            sense: e.sense.map(|s| s.to_bytes(d_sense)),
            abort_tasks_of: Vec::new(),
        },
    }
}

/// Runs one command.
pub async fn execute<T: DataTransfer>(
    ctx: &CommandContext<'_>,
    cdb: &[u8],
    xfer: &mut T,
) -> CommandOutcome {
    let Some(lu) = ctx.lu else {
        return outcome_of(execute_without_lun(ctx, cdb, xfer).await, false);
    };
    let d_sense = lu.mode().d_sense;
    let mut aborts = Vec::new();
    let mut outcome = outcome_of(execute_on(lu, ctx, cdb, xfer, &mut aborts).await, d_sense);
    outcome.abort_tasks_of = aborts;
    outcome
}

const INQUIRY: u8 = 0x12;
const REPORT_LUNS: u8 = 0xA0;
const REQUEST_SENSE: u8 = 0x03;

/// SPC-4 §5.14: a pending unit attention terminates every command but INQUIRY, REPORT LUNS
/// and REQUEST SENSE, and is cleared by being reported.
fn unit_attention_gate(lu: &LogicalUnit, nexus: &Nexus, opcode: u8) -> Exec {
    if matches!(opcode, INQUIRY | REPORT_LUNS | REQUEST_SENSE) {
        return Ok(());
    }
    match lu.take_unit_attention(nexus) {
        Some(ua) => Err(check(Sense::unit_attention(ua.asc()))),
        None => Ok(()),
    }
}

async fn execute_on<T: DataTransfer>(
    lu: &LogicalUnit,
    ctx: &CommandContext<'_>,
    cdb: &[u8],
    xfer: &mut T,
    aborts: &mut Vec<Registrant>,
) -> Exec {
    let opcode = cdb.first().copied().unwrap_or(0);
    unit_attention_gate(lu, ctx.nexus, opcode)?;
    offline_gate(lu, opcode)?;
    mirrored::availability_gate(lu, opcode)?;
    let geom = lu.geometry();
    let command = decode(cdb, &geom)?;
    if lu.is_mirrored() {
        mirrored::refuse_unreplicated(&command)?;
    }
    lu.with_reservations(|s| pr::check_access(s, ctx.nexus, cdb))?;
    mode::write_protect_check(&command, &lu.mode())?;
    match command {
        Command::PersistentReserveIn { alloc_len, .. } => {
            let ptpl_capable = lu.pr_store().is_some();
            let data = lu.with_reservations(|s| pr::persistent_reserve_in(s, cdb, ptpl_capable))?;
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::PersistentReserveOut { param_len, .. } => {
            persistent_reserve_out(lu, ctx, cdb, param_len as usize, xfer, aborts).await
        }
        Command::Reserve { .. } => {
            xfer.set_command_len(0);
            let _gate = lu.pr_gate().lock(0, 1).await;
            lu.update_reservations(|s| Ok((pr::legacy_reserve(s, ctx.nexus, cdb)?, ())))
        }
        Command::Release { .. } => {
            xfer.set_command_len(0);
            let _gate = lu.pr_gate().lock(0, 1).await;
            lu.update_reservations(|s| Ok((pr::legacy_release(s, ctx.nexus, cdb)?, ())))
        }
        _ => run(lu, ctx, &command, cdb, xfer).await,
    }
}

/// PERSISTENT RESERVE OUT (SPC-4 §6.16): the parameter list, then the pure state machine; its
/// unit attentions are queued and its aborts handed to the transport.
///
/// With APTPL active the new state is on stable storage before anything changes: under the
/// unit's PR gate (one state-changing reservation command at a time, whichever reactor it came
/// through) the new state is computed, written ([`crate::scsi::pr_store`]) on a helper thread,
/// and only then installed by applying the command again under the state's lock (the commands
/// that may have run meanwhile, I_T nexus loss and LOGICAL UNIT RESET, only end a legacy
/// reservation, so the persistent part comes out the same). A failed write changes nothing and
/// ends the command with HARDWARE ERROR, INTERNAL TARGET FAILURE.
async fn persistent_reserve_out<T: DataTransfer>(
    lu: &LogicalUnit,
    ctx: &CommandContext<'_>,
    cdb: &[u8],
    param_len: usize,
    xfer: &mut T,
    aborts: &mut Vec<Registrant>,
) -> Exec {
    let params = receive_small(xfer, param_len).await?;
    let op = pr::decode_prout(cdb, &params)?;
    let Some(store) = lu.pr_store() else {
        if op.aptpl {
            // Without a place to persist the state the capability is not claimed (PTPL_C=0)
            // and asking for it is refused (SPC-4 §6.16.3).
            return Err(CommandError::check(Sense::invalid_field_in_param(
                20,
                Some(0),
            )));
        }
        return commit_pr_out(lu, ctx.nexus, &op, aborts);
    };
    let _gate = lu.pr_gate().lock(0, 1).await;
    let (next, effects) = lu.with_reservations(|s| pr::apply(s, ctx.nexus, &op))?;
    if effects.persist {
        let store = store.clone();
        let saved = ringsan_engine::blocking::run_blocking(move || store.save(&next)).await;
        if let Err(e) = saved {
            tracing::error!(lun = lu.number(), error = %e, "APTPL state not written: PERSISTENT RESERVE OUT refused, nothing changed");
            return Err(check(Sense::hardware_error(Asc::INTERNAL_TARGET_FAILURE)));
        }
    }
    commit_pr_out(lu, ctx.nexus, &op, aborts)
}

/// Applies an accepted PERSISTENT RESERVE OUT to the unit's state under its lock, numbers it in
/// the unit's log, queues its unit attentions and hands its aborts to the transport.
fn commit_pr_out(
    lu: &LogicalUnit,
    nexus: &Nexus,
    op: &pr::PrOut,
    aborts: &mut Vec<Registrant>,
) -> Exec {
    let effects = lu.update_reservations(|s| {
        let (next, effects) = pr::apply(s, nexus, op)?;
        // Under the state's lock, so the log's order is the order of the changes.
        lu.log_pr_out(pr::PrLogEntry {
            index: next.log_index,
            origin: pr::PrNexus::from(nexus),
            op: op.clone(),
        });
        Ok((next, effects))
    })?;
    lu.raise_pr_effects(&effects);
    aborts.extend(effects.abort_tasks_of);
    Ok(())
}

/// An offline unit (see [`LogicalUnit::offline_reason`]) answers INQUIRY, REPORT LUNS and
/// REQUEST SENSE and nothing else: NOT READY, MANUAL INTERVENTION REQUIRED (04h/03h).
fn offline_gate(lu: &LogicalUnit, opcode: u8) -> Exec {
    if lu.is_offline() && !matches!(opcode, INQUIRY | REPORT_LUNS | REQUEST_SENSE) {
        return Err(check(Sense::not_ready(
            Asc::NOT_READY_MANUAL_INTERVENTION_REQUIRED,
        )));
    }
    Ok(())
}

async fn run<T: DataTransfer>(
    lu: &LogicalUnit,
    ctx: &CommandContext<'_>,
    command: &Command,
    cdb: &[u8],
    xfer: &mut T,
) -> Exec {
    let geom = lu.geometry();
    match *command {
        Command::TestUnitReady | Command::StartStopUnit { .. } => Ok(()),
        Command::Inquiry {
            evpd,
            page,
            alloc_len,
        } => {
            let data = if evpd {
                vpd::vpd_page(page, lu.identity(), &geom)?
            } else {
                inquiry::standard_inquiry(lu.identity())
            };
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::RequestSense { desc, alloc_len } => {
            let pending = lu
                .take_unit_attention(ctx.nexus)
                .map(|ua| Sense::unit_attention(ua.asc()));
            send_small(
                xfer,
                request_sense::request_sense_data(pending.as_ref(), desc),
                alloc_len as usize,
            )
            .await
        }
        Command::ReportLuns {
            select_report,
            alloc_len,
        } => {
            let data = report_luns::report_luns(&ctx.lun_numbers(), select_report, alloc_len)?;
            ctx.clear_reported_luns_changed();
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::ReadCapacity10 => {
            send_small(xfer, capacity::read_capacity10(&geom).to_vec(), 8).await
        }
        Command::ReadCapacity16 { alloc_len } => {
            send_small(
                xfer,
                capacity::read_capacity16(&geom).to_vec(),
                alloc_len as usize,
            )
            .await
        }
        Command::ModeSense { alloc_len, .. } => {
            let data = mode::mode_sense(command, &lu.mode(), &geom)?;
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::ModeSelect {
            ten,
            pf,
            sp,
            param_len,
        } => {
            let params = receive_small(xfer, param_len as usize).await?;
            let new = mode::mode_select(ten, pf, sp, &params, &lu.mode(), &geom)?;
            lu.set_mode(new, ctx.nexus);
            Ok(())
        }
        Command::ReportSupportedOpcodes { alloc_len, .. } => {
            let data = opcodes::report_supported_opcodes(command, &geom)?;
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::ReportTargetPortGroups { alloc_len } => {
            let id = lu.identity();
            let mut group =
                alua::TargetPortGroup::active(id.target_port_group, vec![id.relative_port_id]);
            if mirrored::availability_gate(lu, opcodes::TEST_UNIT_READY).is_err() {
                // A mirrored unit whose node is not Primary: ALUA Unavailable.
                group.state = alua::AluaState::Unavailable;
                group.status_code = 2;
            }
            let data = alua::report_target_port_groups_ext(&[group], false, 0);
            send_small(xfer, data, alloc_len as usize).await
        }
        Command::Read { lba, blocks, .. } => read(lu, xfer, lba, blocks).await,
        Command::Write {
            lba, blocks, fua, ..
        } => write(lu, xfer, lba, blocks, fua).await,
        Command::WriteAndVerify { lba, blocks, .. } => write(lu, xfer, lba, blocks, true).await,
        Command::Verify {
            lba,
            blocks,
            bytchk,
        } => verify(lu, xfer, lba, blocks, bytchk).await,
        Command::OrWrite { lba, blocks, fua } => or_write(lu, xfer, lba, blocks, fua).await,
        Command::CompareAndWrite { lba, blocks, fua } => {
            compare_and_write(lu, xfer, lba, blocks as u64, fua).await
        }
        Command::WriteSame {
            lba,
            blocks,
            unmap,
            ndob,
            ..
        } => write_same(lu, xfer, lba, blocks, unmap, ndob).await,
        Command::Unmap { param_len, .. } => unmap_command(lu, xfer, param_len as usize).await,
        Command::SynchronizeCache { .. } if lu.is_mirrored() => {
            mirrored::flush(mirrored::handle(lu)?).await
        }
        Command::SynchronizeCache { .. } => {
            lu.volume().flush().await.map_err(|e| io_failed(&e, true))
        }
        Command::PreFetch { .. } => Ok(()),
        Command::GetLbaStatus { lba, alloc_len } => get_lba_status(lu, xfer, lba, alloc_len).await,
        _ => {
            let _ = cdb;
            Err(check(Sense::invalid_opcode()))
        }
    }
}

/// Commands addressed to a LUN that does not exist (SPC-4 §4.6.4): INQUIRY answers with
/// peripheral qualifier 011b, REPORT LUNS works, REQUEST SENSE reports LOGICAL UNIT NOT
/// SUPPORTED, anything else fails with it.
async fn execute_without_lun<T: DataTransfer>(
    ctx: &CommandContext<'_>,
    cdb: &[u8],
    xfer: &mut T,
) -> Exec {
    let alloc_at = |i: usize| cdb.get(i).copied().unwrap_or(0) as usize;
    match cdb.first().copied() {
        Some(INQUIRY) => {
            if alloc_at(1) & 1 != 0 {
                return Err(check(Sense::illegal_request(
                    Asc::LOGICAL_UNIT_NOT_SUPPORTED,
                )));
            }
            let alloc = (alloc_at(3) << 8) | alloc_at(4);
            send_small(xfer, inquiry::inquiry_no_lun(), alloc).await
        }
        Some(REPORT_LUNS) => {
            let alloc =
                ((alloc_at(6) << 24) | (alloc_at(7) << 16) | (alloc_at(8) << 8) | alloc_at(9))
                    as u32;
            let data = report_luns::report_luns(&ctx.lun_numbers(), alloc_at(2) as u8, alloc)?;
            ctx.clear_reported_luns_changed();
            send_small(xfer, data, alloc as usize).await
        }
        Some(REQUEST_SENSE) => {
            let sense = Sense::illegal_request(Asc::LOGICAL_UNIT_NOT_SUPPORTED);
            send_small(
                xfer,
                request_sense::request_sense_data(Some(&sense), alloc_at(1) & 1 != 0),
                alloc_at(4),
            )
            .await
        }
        _ => Err(check(Sense::illegal_request(
            Asc::LOGICAL_UNIT_NOT_SUPPORTED,
        ))),
    }
}

/// Sends `data` truncated to the allocation length (and to what the initiator expects).
async fn send_small<T: DataTransfer>(xfer: &mut T, mut data: Vec<u8>, alloc_len: usize) -> Exec {
    data.truncate(alloc_len);
    xfer.set_command_len(data.len() as u64);
    if data.is_empty() {
        return Ok(());
    }
    xfer.send_bytes(data, true).await.map_err(transfer_failed)
}

/// Receives a parameter list of `len` bytes.
async fn receive_small<T: DataTransfer>(xfer: &mut T, len: usize) -> Exec<Vec<u8>> {
    xfer.set_command_len(len as u64);
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > xfer.chunk_bytes() {
        return Err(check(Sense::parameter_list_length_error()));
    }
    let buf = xfer.receive(len).await.map_err(transfer_failed)?;
    Ok(buf.as_slice().to_vec())
}

fn durability(lu: &LogicalUnit, fua: bool) -> Durability {
    if fua || !lu.mode().wce {
        Durability::Stable
    } else {
        Durability::Cached
    }
}

/// The byte length of `blocks` blocks, and the chunk size in whole blocks.
fn sizes(lu: &LogicalUnit, xfer: &impl DataTransfer, blocks: u64) -> (u64, usize) {
    let bs = (lu.geometry().block_size as usize).max(1);
    let chunk = (xfer.chunk_bytes() / bs).max(1) * bs;
    (blocks.saturating_mul(bs as u64), chunk)
}

/// COMPARE AND WRITE and WRITE SAME take exactly the Data-Out their CDB implies: any other
/// Expected Data Transfer Length is ILLEGAL REQUEST, INVALID FIELD IN CDB (pointing at
/// `field`, the byte that sets the length, when there is one), decided before any data moves.
fn data_out_must_be(xfer: &impl DataTransfer, wanted: u64, field: Option<u16>) -> Exec {
    if xfer.expected_len() == wanted {
        return Ok(());
    }
    Err(check(match field {
        Some(byte) => Sense::invalid_field_in_cdb(byte, None),
        None => Sense::illegal_request(Asc::INVALID_FIELD_IN_CDB),
    }))
}

/// How many bytes of a `total`-byte WRITE to take when the initiator announced `expected`: the
/// whole blocks both cover. Less Data-Out than the CDB asks for writes only the blocks that
/// arrive whole (none when less than one block); more writes the CDB's length. The transport
/// reports the difference as a residual (RFC 7143 §11.4.5.2).
fn write_len(total: u64, expected: u64, block_size: u64) -> u64 {
    let bs = block_size.max(1);
    total.min(expected / bs * bs)
}

async fn read<T: DataTransfer>(lu: &LogicalUnit, xfer: &mut T, lba: u64, blocks: u64) -> Exec {
    let (total, chunk) = sizes(lu, xfer, blocks);
    xfer.set_command_len(total);
    let bs = lu.geometry().block_size as u64;
    let mut done = 0u64;
    while done < total {
        let len = (total - done).min(chunk as u64) as usize;
        let buf = xfer.buffer().await;
        let mut buf = read_blocks(lu, buf, len, lba * bs + done).await?;
        buf.set_len(len);
        done += len as u64;
        xfer.send(buf, len, done == total)
            .await
            .map_err(transfer_failed)?;
    }
    Ok(())
}

async fn write<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    blocks: u64,
    fua: bool,
) -> Exec {
    let (total, chunk) = sizes(lu, xfer, blocks);
    xfer.set_command_len(total);
    let bs = lu.geometry().block_size as u64;
    let wanted = write_len(total, xfer.expected_len(), bs);
    let how = durability(lu, fua);
    let mut done = 0u64;
    while done < wanted {
        let len = (wanted - done).min(chunk as u64) as usize;
        let buf = xfer.receive(len).await.map_err(transfer_failed)?;
        write_blocks(lu, buf, len, lba * bs + done, how).await?;
        done += len as u64;
    }
    Ok(())
}

/// VERIFY: BYTCHK 0 checks the medium (nothing to check on a file), 01b compares the sent
/// blocks with the medium, 11b compares one sent block with every block of the range.
async fn verify<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    blocks: u64,
    bytchk: u8,
) -> Exec {
    if bytchk == 0 || blocks == 0 {
        xfer.set_command_len(0);
        return Ok(());
    }
    let bs = lu.geometry().block_size as usize;
    let (total, chunk) = sizes(lu, xfer, blocks);
    let sent_total = if bytchk == 3 { bs as u64 } else { total };
    xfer.set_command_len(sent_total);
    let pattern = if bytchk == 3 {
        Some(xfer.receive(bs).await.map_err(transfer_failed)?)
    } else {
        None
    };
    let mut done = 0u64;
    while done < total {
        let len = (total - done).min(chunk as u64) as usize;
        let expected = match &pattern {
            Some(_) => None,
            None => Some(xfer.receive(len).await.map_err(transfer_failed)?),
        };
        let disk = xfer.buffer().await;
        let mut disk = read_blocks(lu, disk, len, lba * bs as u64 + done).await?;
        disk.set_len(len);
        let mismatch = match (&expected, &pattern) {
            (Some(e), _) => first_mismatch(e.as_slice(), disk.as_slice()),
            (None, Some(p)) => disk
                .as_slice()
                .chunks(bs)
                .enumerate()
                .find_map(|(i, blk)| first_mismatch(p.as_slice(), blk).map(|o| i * bs + o)),
            (None, None) => None,
        };
        if let Some(at) = mismatch {
            return Err(check(Sense::miscompare(done + at as u64)));
        }
        done += len as u64;
    }
    Ok(())
}

fn first_mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// ORWRITE (SBC-3 §5.8): the sent data ORed into the blocks. Not atomic against a concurrent
/// write to the same blocks from another initiator (read and write are two range holds).
async fn or_write<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    blocks: u64,
    fua: bool,
) -> Exec {
    let (total, chunk) = sizes(lu, xfer, blocks);
    xfer.set_command_len(total);
    let bs = lu.geometry().block_size as u64;
    let mut done = 0u64;
    while done < total {
        let len = (total - done).min(chunk as u64) as usize;
        let mut data = xfer.receive(len).await.map_err(transfer_failed)?;
        let old = xfer.buffer().await;
        let (result, mut old) = lu.volume().read(old, 0, len, lba * bs + done).await;
        result.map_err(|e| io_failed(&e, false))?;
        old.set_len(len);
        for (d, o) in data.as_mut_slice().iter_mut().zip(old.as_slice()) {
            *d |= *o;
        }
        let (result, _) = lu
            .volume()
            .write(data, 0, len, lba * bs + done, durability(lu, fua))
            .await;
        result.map_err(|e| io_failed(&e, true))?;
        done += len as u64;
    }
    Ok(())
}

async fn compare_and_write<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    blocks: u64,
    fua: bool,
) -> Exec {
    let bs = lu.geometry().block_size as usize;
    let len = blocks as usize * bs;
    xfer.set_command_len(2 * len as u64);
    // NUMBER OF LOGICAL BLOCKS (byte 13) sets the length; 256 blocks wrap it to 0.
    data_out_must_be(xfer, 2 * len as u64, Some(13))?;
    if len == 0 {
        return Ok(());
    }
    if 2 * len > xfer.chunk_bytes() {
        return Err(check(Sense::invalid_field_in_cdb(13, None)));
    }
    let data = xfer.receive(2 * len).await.map_err(transfer_failed)?;
    let scratch = xfer.buffer().await;
    let (result, _data, _scratch) = lu
        .volume()
        .compare_and_write(data, scratch, len, lba * bs as u64, durability(lu, fua))
        .await;
    match result.map_err(|e| io_failed(&e, true))? {
        CompareOutcome::Written => Ok(()),
        CompareOutcome::Miscompare(at) => Err(check(Sense::miscompare(at as u64))),
    }
}

async fn write_same<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    blocks: u64,
    unmap: bool,
    ndob: bool,
) -> Exec {
    let geom = lu.geometry();
    let bs = geom.block_size as usize;
    let sent = if ndob { 0 } else { bs };
    xfer.set_command_len(sent as u64);
    data_out_must_be(xfer, sent as u64, None)?;
    let pattern: Option<Buf> = if ndob {
        None
    } else {
        Some(xfer.receive(bs).await.map_err(transfer_failed)?)
    };
    let zeroes = pattern
        .as_ref()
        .is_none_or(|p| p.as_slice().iter().all(|&b| b == 0));
    let offset = lba * bs as u64;
    let len = blocks * bs as u64;
    let how = durability(lu, false);
    if lu.is_mirrored() {
        return write_same_mirrored(lu, xfer, pattern, offset, len, how).await;
    }
    if zeroes {
        return lu
            .volume()
            .write_zeroes(offset, len, unmap && geom.thin, how)
            .await
            .map_err(|e| io_failed(&e, true));
    }
    let Some(pattern) = pattern else {
        return Ok(());
    };
    let mut fill = xfer.buffer().await;
    let per = (fill.capacity() / bs).max(1) * bs;
    fill.set_len(per);
    for blk in fill.as_mut_slice().chunks_mut(bs) {
        blk.copy_from_slice(pattern.as_slice());
    }
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(per as u64) as usize;
        let (result, back) = lu.volume().write(fill, 0, n, offset + done, how).await;
        fill = back;
        result.map_err(|e| io_failed(&e, true))?;
        done += n as u64;
    }
    Ok(())
}

/// WRITE SAME on a mirrored unit: ordinary mirrored writes of the pattern (or zeroes), a fresh
/// buffer per chunk (a mirrored write hands its buffer to both copies).
async fn write_same_mirrored<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    pattern: Option<Buf>,
    offset: u64,
    len: u64,
    how: Durability,
) -> Exec {
    let m = mirrored::handle(lu)?;
    let mut done = 0u64;
    while done < len {
        let mut fill = xfer.buffer().await;
        let bs = lu.geometry().block_size as usize;
        let per = (fill.capacity() / bs).max(1) * bs;
        let n = (len - done).min(per as u64) as usize;
        let area = &mut fill.spare_mut()[..n];
        match &pattern {
            Some(p) => {
                for blk in area.chunks_mut(bs) {
                    blk.copy_from_slice(p.as_slice().get(..blk.len()).unwrap_or(&[]));
                }
            }
            None => area.fill(0),
        }
        mirrored::write(m, fill, n, offset + done, how == Durability::Stable).await?;
        done += n as u64;
    }
    Ok(())
}

/// Reads `len` bytes at `offset` into `buf`, from the mirror on a mirrored unit.
async fn read_blocks(
    lu: &LogicalUnit,
    buf: Buf,
    len: usize,
    offset: u64,
) -> Result<Buf, CommandError> {
    if lu.is_mirrored() {
        let m = mirrored::handle(lu)?;
        let (r, buf) = mirrored::read(m, buf, len, offset).await;
        return r.map(|()| buf);
    }
    let (result, buf) = lu.volume().read(buf, 0, len, offset).await;
    result.map_err(|e| io_failed(&e, false))?;
    Ok(buf)
}

/// Writes `buf[..len]` at `offset`, through the mirror on a mirrored unit.
async fn write_blocks(
    lu: &LogicalUnit,
    buf: Buf,
    len: usize,
    offset: u64,
    how: Durability,
) -> Exec {
    if lu.is_mirrored() {
        let m = mirrored::handle(lu)?;
        return mirrored::write(m, buf, len, offset, how == Durability::Stable).await;
    }
    let (result, _buf) = lu.volume().write(buf, 0, len, offset, how).await;
    result.map_err(|e| io_failed(&e, true))
}

async fn unmap_command<T: DataTransfer>(lu: &LogicalUnit, xfer: &mut T, param_len: usize) -> Exec {
    let params = receive_small(xfer, param_len).await?;
    let geom = lu.geometry();
    let ranges = unmap::parse_unmap(&params, &geom)?;
    let bs = geom.block_size as u64;
    for (lba, blocks) in ranges {
        lu.volume()
            .unmap(lba * bs, blocks as u64 * bs, durability(lu, false))
            .await
            .map_err(|e| io_failed(&e, true))?;
    }
    Ok(())
}

async fn get_lba_status<T: DataTransfer>(
    lu: &LogicalUnit,
    xfer: &mut T,
    lba: u64,
    alloc_len: u32,
) -> Exec {
    let geom = lu.geometry();
    let bs = u64::from(geom.block_size.max(1));
    let span_blocks = geom.num_blocks.saturating_sub(lba).min(1 << 20);
    let extents = lu
        .volume()
        .allocation(lba.saturating_mul(bs), span_blocks * bs)
        .await
        .map_err(|e| io_failed(&e, false))?;
    let extents =
        lba_status::extents_from_bytes(extents.iter().map(|e| (e.offset, e.len, e.mapped)), bs);
    // Anchored at the STARTING LOGICAL BLOCK ADDRESS, whatever the backend reported.
    let data = lba_status::get_lba_status(lba, &extents, &geom, alloc_len)?;
    send_small(xfer, data, alloc_len as usize).await
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use ringsan_engine::buffer::BufferPool;
    use ringsan_engine::reactor::buffer_pool;
    use ringsan_engine::{Reactor, ReactorConfig};

    use super::*;
    use crate::scsi::lun::test_support::{nexus, scratch_unit};

    /// An initiator that announces `expected` bytes and sends `data_out`.
    struct Mock {
        pool: BufferPool,
        expected: u64,
        data_out: Vec<u8>,
        received: usize,
        command_len: Option<u64>,
        sent: Vec<u8>,
    }

    impl DataTransfer for Mock {
        fn expected_len(&self) -> u64 {
            self.expected
        }
        fn chunk_bytes(&self) -> usize {
            self.pool.buffer_size()
        }
        fn set_command_len(&mut self, bytes: u64) {
            self.command_len = Some(bytes);
        }
        async fn receive(&mut self, len: usize) -> Result<Buf, TransferError> {
            let end = self.received + len;
            if end as u64 > self.expected || end > self.data_out.len() {
                return Err(TransferError::Protocol("more than the initiator announced"));
            }
            let mut buf = self.pool.get().await;
            buf.set_len(len);
            buf.as_mut_slice()
                .copy_from_slice(&self.data_out[self.received..end]);
            self.received = end;
            Ok(buf)
        }
        async fn send(&mut self, buf: Buf, len: usize, _: bool) -> Result<(), TransferError> {
            self.sent.extend_from_slice(&buf.as_slice()[..len]);
            Ok(())
        }
        async fn send_bytes(&mut self, data: Vec<u8>, _: bool) -> Result<(), TransferError> {
            self.sent.extend_from_slice(&data);
            Ok(())
        }
        async fn buffer(&mut self) -> Buf {
            self.pool.get().await
        }
        fn aborted(&self) -> bool {
            false
        }
    }

    /// What came back from one command.
    struct Ran {
        outcome: CommandOutcome,
        received: usize,
        command_len: Option<u64>,
        sent: Vec<u8>,
    }

    impl Ran {
        /// (sense key, ASC, ASCQ) of fixed-format sense data, or None with GOOD status.
        fn sense(&self) -> Option<(u8, u8, u8)> {
            let s = self.outcome.sense.as_ref()?;
            Some((s[2] & 0x0F, s[12], s[13]))
        }
    }

    fn reactor() -> Reactor {
        Reactor::new(&ReactorConfig {
            ring_entries: 64,
            buffer_size_bytes: 64 * 1024,
            buffer_count: 8,
            fixed_files: 8,
        })
        .unwrap()
    }

    const ILLEGAL_REQUEST: u8 = 0x05;
    const INVALID_FIELD_IN_CDB: (u8, u8, u8) = (ILLEGAL_REQUEST, 0x24, 0x00);

    /// Runs `cdb` from nexus "iqn.a:1" (its power-on unit attention already cleared).
    fn exec(r: &Reactor, lu: &Rc<LogicalUnit>, cdb: &[u8], expected: u64, data_out: &[u8]) -> Ran {
        let lu = lu.clone();
        let cdb = cdb.to_vec();
        let data_out = data_out.to_vec();
        r.block_on(async move {
            let n = nexus("iqn.a:1");
            lu.take_unit_attention(&n);
            let luns = |f: &mut dyn FnMut(&LogicalUnit)| f(&lu);
            let ctx = CommandContext {
                nexus: &n,
                lun: 0,
                lu: Some(&lu),
                luns: &luns,
            };
            let mut m = Mock {
                pool: buffer_pool(),
                expected,
                data_out,
                received: 0,
                command_len: None,
                sent: Vec::new(),
            };
            let outcome = execute(&ctx, &cdb, &mut m).await;
            Ran {
                outcome,
                received: m.received,
                command_len: m.command_len,
                sent: m.sent,
            }
        })
        .unwrap()
    }

    fn cdb10(opcode: u8, byte1: u8, lba: u32, blocks: u16) -> Vec<u8> {
        let mut c = vec![opcode, byte1, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    fn caw(lba: u64, blocks: u8) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x89;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = blocks;
        c
    }

    fn read_blocks(r: &Reactor, lu: &Rc<LogicalUnit>, lba: u32, blocks: u16) -> Vec<u8> {
        let ran = exec(
            r,
            lu,
            &cdb10(0x28, 0, lba, blocks),
            u64::from(blocks) * 512,
            &[],
        );
        assert_eq!(ran.outcome, CommandOutcome::good());
        ran.sent
    }

    fn write_blocks(r: &Reactor, lu: &Rc<LogicalUnit>, lba: u32, data: &[u8]) {
        let blocks = (data.len() / 512) as u16;
        let ran = exec(r, lu, &cdb10(0x2A, 0, lba, blocks), data.len() as u64, data);
        assert_eq!(ran.outcome, CommandOutcome::good());
    }

    #[test]
    fn write_len_takes_the_whole_blocks_both_cover() {
        assert_eq!(write_len(1024, 512, 512), 512);
        assert_eq!(write_len(512, 0, 512), 0);
        assert_eq!(write_len(512, 200, 512), 0);
        assert_eq!(write_len(512, 10_000, 512), 512);
        assert_eq!(write_len(1024, 1000, 512), 512);
        assert_eq!(write_len(1024, 1024, 0), 1024, "no division by zero");
    }

    #[test]
    fn compare_and_write_needs_exactly_twice_the_blocks() {
        let r = reactor();
        let lu = Rc::new(scratch_unit(1024, |g| g.max_compare_write_blocks = 4));
        write_blocks(&r, &lu, 0, &[b'A'; 1024]);
        // 256 blocks wrap NUMBER OF LOGICAL BLOCKS to 0 while 2 * 256 blocks are announced.
        let big = vec![b'A'; 2 * 256 * 512];
        let ran = exec(&r, &lu, &caw(0, 0), big.len() as u64, &big);
        assert_eq!(ran.sense(), Some(INVALID_FIELD_IN_CDB));
        assert_eq!(ran.received, 0, "refused before any data moved");
        // Too much and too little Data-Out for one block.
        for edtl in [4 * 512, 512, 1] {
            let ran = exec(&r, &lu, &caw(0, 1), edtl as u64, &vec![b'A'; edtl]);
            assert_eq!(ran.sense(), Some(INVALID_FIELD_IN_CDB), "EDTL {edtl}");
            assert_eq!(ran.received, 0);
        }
        assert_eq!(
            read_blocks(&r, &lu, 0, 2),
            vec![b'A'; 1024],
            "nothing written"
        );
        // Exactly 2 * NLB blocks: compared and written.
        let mut data = vec![b'A'; 1024];
        data.extend_from_slice(&[b'B'; 1024]);
        let ran = exec(&r, &lu, &caw(0, 2), 2048, &data);
        assert_eq!(ran.outcome, CommandOutcome::good());
        assert_eq!(read_blocks(&r, &lu, 0, 2), vec![b'B'; 1024]);
        // Zero blocks with nothing announced: nothing to do.
        assert_eq!(
            exec(&r, &lu, &caw(0, 0), 0, &[]).outcome,
            CommandOutcome::good()
        );
    }

    #[test]
    fn write_same_needs_exactly_one_block() {
        let r = reactor();
        let lu = Rc::new(scratch_unit(1024, |_| {}));
        write_blocks(&r, &lu, 0, &[b'A'; 512]);
        let ws10 = cdb10(0x41, 0x08, 0, 1);
        for edtl in [256usize, 1024, 0] {
            let ran = exec(&r, &lu, &ws10, edtl as u64, &vec![0xA6; edtl]);
            assert_eq!(ran.sense(), Some(INVALID_FIELD_IN_CDB), "EDTL {edtl}");
            assert_eq!(ran.received, 0);
        }
        assert_eq!(read_blocks(&r, &lu, 0, 1), vec![b'A'; 512]);
        let ran = exec(&r, &lu, &ws10, 512, &[0xA6; 512]);
        assert_eq!(ran.outcome, CommandOutcome::good());
        assert_eq!(read_blocks(&r, &lu, 0, 1), vec![0xA6; 512]);
        // NDOB: no Data-Out at all.
        let mut ws16 = vec![0u8; 16];
        ws16[0] = 0x93;
        ws16[1] = 0x01;
        ws16[13] = 1;
        let ran = exec(&r, &lu, &ws16, 512, &[0; 512]);
        assert_eq!(ran.sense(), Some(INVALID_FIELD_IN_CDB));
        assert_eq!(exec(&r, &lu, &ws16, 0, &[]).outcome, CommandOutcome::good());
        assert_eq!(read_blocks(&r, &lu, 0, 1), vec![0; 512]);
    }

    #[test]
    fn write_takes_only_the_blocks_the_initiator_sends() {
        let r = reactor();
        let lu = Rc::new(scratch_unit(1024, |_| {}));
        for opcode in [0x2A, 0x2E] {
            write_blocks(&r, &lu, 0, &[b'a'; 1024]);
            // Two blocks asked for, one announced: the first block is written, GOOD.
            let ran = exec(&r, &lu, &cdb10(opcode, 0, 0, 2), 512, &[b'b'; 512]);
            assert_eq!(ran.outcome, CommandOutcome::good(), "{opcode:02x}");
            assert_eq!(
                ran.command_len,
                Some(1024),
                "residual from the CDB's length"
            );
            let back = read_blocks(&r, &lu, 0, 2);
            assert_eq!(&back[..512], &[b'b'; 512][..]);
            assert_eq!(&back[512..], &[b'a'; 512][..]);
            // Nothing, or less than a block, announced: nothing written, GOOD.
            for edtl in [0usize, 200] {
                let ran = exec(
                    &r,
                    &lu,
                    &cdb10(opcode, 0, 1, 1),
                    edtl as u64,
                    &vec![b'c'; edtl],
                );
                assert_eq!(ran.outcome, CommandOutcome::good(), "EDTL {edtl}");
                assert_eq!(ran.received, 0);
                assert_eq!(ran.command_len, Some(512));
            }
            assert_eq!(read_blocks(&r, &lu, 1, 1), vec![b'a'; 512]);
            // More announced than the CDB asks for: the CDB's blocks only.
            let ran = exec(&r, &lu, &cdb10(opcode, 0, 0, 1), 1024, &[b'd'; 1024]);
            assert_eq!(ran.outcome, CommandOutcome::good());
            assert_eq!(ran.received, 512);
            let back = read_blocks(&r, &lu, 0, 2);
            assert_eq!(&back[..512], &[b'd'; 512][..]);
            assert_eq!(&back[512..], &[b'a'; 512][..]);
        }
    }

    #[test]
    fn software_write_protect_refuses_medium_writes() {
        let r = reactor();
        let lu = Rc::new(scratch_unit(1024, |_| {}));
        write_blocks(&r, &lu, 0, &[b'a'; 512]);
        let mut mode = lu.mode();
        mode.swp = true;
        lu.set_mode(mode, &nexus("iqn.a:1"));
        let data_protect = Some((0x07, 0x27, 0x00));
        let ws10 = cdb10(0x41, 0, 0, 1);
        let mut unmap = cdb10(0x42, 0, 0, 0);
        unmap[8] = 24;
        for (cdb, edtl) in [
            (cdb10(0x2A, 0, 0, 1), 512),
            (cdb10(0x2E, 0, 0, 1), 512),
            (ws10, 512),
            (caw(0, 1), 1024),
            (unmap, 24),
        ] {
            let ran = exec(&r, &lu, &cdb, edtl, &vec![b'z'; edtl as usize]);
            assert_eq!(ran.sense(), data_protect, "{:02x}", cdb[0]);
            assert_eq!(ran.received, 0);
        }
        assert_eq!(
            read_blocks(&r, &lu, 0, 1),
            vec![b'a'; 512],
            "reads still work"
        );
        let mut mode = lu.mode();
        mode.swp = false;
        lu.set_mode(mode, &nexus("iqn.a:1"));
        write_blocks(&r, &lu, 0, &[b'b'; 512]);
    }

    #[test]
    fn get_lba_status_starts_at_the_requested_lba() {
        let r = reactor();
        let lu = Rc::new(scratch_unit(1024, |_| {}));
        write_blocks(&r, &lu, 0, &[b'a'; 32 * 512]);
        for lba in [0u64, 1, 9, 31, 32, 100, 1023] {
            let mut cdb = vec![0u8; 16];
            cdb[0] = 0x9E;
            cdb[1] = 0x12;
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[13] = 24;
            let ran = exec(&r, &lu, &cdb, 24, &[]);
            assert_eq!(ran.outcome, CommandOutcome::good());
            assert_eq!(ran.sent.len(), 24);
            let first = u64::from_be_bytes(ran.sent[8..16].try_into().unwrap());
            assert_eq!(first, lba);
            let mapped = ran.sent[20] == 0;
            assert_eq!(mapped, lba < 32, "LBA {lba}");
        }
    }
}
