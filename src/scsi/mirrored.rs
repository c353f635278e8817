//! The data path of a mirrored logical unit: reads, writes and flushes go through the volume's
//! mirror node (protocol C: a write completes when both copies have it), and a node that is not
//! Primary serves no data.
//!
//! - Gate: on a Secondary (or before the node runs) every command but INQUIRY, REPORT LUNS,
//!   REQUEST SENSE and REPORT TARGET PORT GROUPS fails with NOT READY, LOGICAL UNIT NOT
//!   ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE (02h/04h/0Ch), the ALUA Unavailable state's
//!   answer (SPC-4 §5.15.2.4.5), so dm-multipath's TUR checker marks the path down.
//! - A request the node cannot serve (not Primary, no UpToDate copy reachable) gets the same
//!   sense; a local disk error gets MEDIUM ERROR (WRITE ERROR or UNRECOVERED READ ERROR).
//! - Commands the mirror does not replicate yet are refused as unsupported: COMPARE AND WRITE and
//!   ORWRITE (their atomic read-modify-write would need the range held across both copies), and
//!   UNMAP / WRITE SAME with UNMAP (deallocation is not mirrored; the unit reports LBPME=0 so no
//!   initiator sends them). WRITE SAME without UNMAP is carried out as ordinary mirrored writes.

use ringsan_engine::buffer::Buf;
use ringsan_engine::mirror::remote::MirrorHandle;
use ringsan_engine::mirror::replica::Failure;

use crate::scsi::cdb::Command;
use crate::scsi::lun::LogicalUnit;
use crate::scsi::opcodes::{INQUIRY, MAINTENANCE_IN, REPORT_LUNS, REQUEST_SENSE};
use crate::scsi::sense::{Asc, CommandError, Sense};

/// Unavailable: 02h/04h/0Ch.
fn unavailable() -> CommandError {
    CommandError::check(Sense::not_ready(
        Asc::LU_NOT_ACCESSIBLE_TARGET_PORT_UNAVAILABLE,
    ))
}

/// The sense for a request the mirror node failed.
pub fn failed(f: Failure, writing: bool) -> CommandError {
    match f {
        Failure::NotPrimary | Failure::Unavailable => unavailable(),
        Failure::Io if writing => CommandError::check(Sense::medium_error(Asc::WRITE_ERROR)),
        Failure::Io => CommandError::check(Sense::medium_error(Asc::UNRECOVERED_READ_ERROR)),
        Failure::Refused => {
            tracing::error!("mirror refused a request the SCSI layer had checked");
            CommandError::check(Sense::hardware_error(Asc::INTERNAL_TARGET_FAILURE))
        }
    }
}

/// Whether `opcode` may run on a mirrored unit whose node is not Primary.
fn allowed_when_unavailable(opcode: u8) -> bool {
    matches!(
        opcode,
        INQUIRY | REPORT_LUNS | REQUEST_SENSE | MAINTENANCE_IN
    )
}

/// The gate every command on a mirrored unit passes first.
pub fn availability_gate(lu: &LogicalUnit, opcode: u8) -> Result<(), CommandError> {
    if !lu.is_mirrored() || allowed_when_unavailable(opcode) {
        return Ok(());
    }
    match lu.mirror() {
        Some(m) if m.is_primary() => Ok(()),
        _ => Err(unavailable()),
    }
}

/// Refuses the commands a mirrored unit does not carry out (see the module doc).
pub fn refuse_unreplicated(command: &Command) -> Result<(), CommandError> {
    match command {
        Command::CompareAndWrite { .. } | Command::OrWrite { .. } | Command::Unmap { .. } => {
            Err(CommandError::check(Sense::invalid_opcode()))
        }
        Command::WriteSame { unmap: true, .. } => {
            Err(CommandError::check(Sense::invalid_field_in_cdb(1, Some(3))))
        }
        _ => Ok(()),
    }
}

/// The unit's mirror handle, or unavailable (the node is not running yet).
pub fn handle(lu: &LogicalUnit) -> Result<&MirrorHandle, CommandError> {
    lu.mirror().ok_or_else(unavailable)
}

/// Writes `buf[..len]` at `offset` on both copies.
pub async fn write(
    m: &MirrorHandle,
    buf: Buf,
    len: usize,
    offset: u64,
    durable: bool,
) -> Result<(), CommandError> {
    m.write(buf, len, offset, durable)
        .await
        .map_err(|f| failed(f, true))
}

/// Reads `len` bytes at `offset` into `buf`.
pub async fn read(
    m: &MirrorHandle,
    buf: Buf,
    len: usize,
    offset: u64,
) -> (Result<(), CommandError>, Buf) {
    let (r, buf) = m.read(buf, len, offset).await;
    (r.map_err(|f| failed(f, false)), buf)
}

/// SYNCHRONIZE CACHE: every completed write stable on both copies.
pub async fn flush(m: &MirrorHandle) -> Result<(), CommandError> {
    m.flush().await.map_err(|f| failed(f, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::SenseKey;

    fn key_asc(e: &CommandError) -> (SenseKey, u8, u8) {
        let s = e.sense.as_ref().expect("sense data");
        (s.key, s.asc.asc, s.asc.ascq)
    }

    #[test]
    fn failures_map_to_the_senses_the_standard_names() {
        let nr = (SenseKey::NotReady, 0x04, 0x0C);
        assert_eq!(key_asc(&failed(Failure::NotPrimary, true)), nr);
        assert_eq!(key_asc(&failed(Failure::Unavailable, false)), nr);
        assert_eq!(
            key_asc(&failed(Failure::Io, true)),
            (SenseKey::MediumError, 0x0C, 0x00)
        );
        assert_eq!(
            key_asc(&failed(Failure::Io, false)),
            (SenseKey::MediumError, 0x11, 0x00)
        );
        assert_eq!(
            key_asc(&failed(Failure::Refused, true)).0,
            SenseKey::HardwareError
        );
    }

    #[test]
    fn unavailable_units_still_answer_discovery_commands() {
        for op in [INQUIRY, REPORT_LUNS, REQUEST_SENSE, MAINTENANCE_IN] {
            assert!(allowed_when_unavailable(op));
        }
        for op in [0x00, 0x25, 0x28, 0x2A, 0x35, 0x9E] {
            assert!(!allowed_when_unavailable(op), "{op:#x}");
        }
    }

    #[test]
    fn commands_the_mirror_does_not_replicate_are_refused() {
        let refused = [
            Command::CompareAndWrite {
                lba: 0,
                blocks: 1,
                fua: false,
            },
            Command::Unmap {
                anchor: false,
                param_len: 24,
            },
        ];
        for c in &refused {
            assert_eq!(
                key_asc(&refuse_unreplicated(c).unwrap_err()).0,
                SenseKey::IllegalRequest
            );
        }
    }
}
