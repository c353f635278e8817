//! CDB decoding (SPC-4 §4.2 CDB formats, SAM-5 §5.2 CONTROL byte, SBC-3 §5 command
//! descriptions): a CDB from the network becomes a [`Command`] with its fields checked, or a
//! [`CommandError`] with the sense SPC-4/SBC-3 require.
//!
//! Order of checks: the opcode (and service action) against the table in [`super::opcodes`]
//! (INVALID COMMAND OPERATION CODE), the CDB length, the CONTROL byte (NACA=1 is INVALID FIELD IN
//! CDB: we do not support ACA), then the command's own fields, then the transfer length against
//! the Block Limits VPD page, then the LBA range (LOGICAL BLOCK ADDRESS OUT OF RANGE).
//!
//! Traps:
//! - READ(6)/WRITE(6): a TRANSFER LENGTH of 0 means 256 blocks (SBC-3, READ(6)), unlike every other
//!   READ/WRITE where 0 means no transfer; the LBA is only 21 bits.
//! - RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT non-zero without protection information is
//!   INVALID FIELD IN CDB (SBC-3 protection information model), pointer at byte 1 bit 7
//!   (libiscsi `*_rdprotect`).
//! - A transfer length above MAXIMUM TRANSFER LENGTH is INVALID FIELD IN CDB, checked before the
//!   LBA range, so READ(16) of FFFFFFFFh blocks reports the transfer length, not the LBA.
//! - `lba + blocks` is checked without wrapping (LBA = 2^64-1 is a libiscsi favourite).
//! - BYTCHK is two bits in SBC-3 r35+/SBC-4 VERIFY: 00b no data, 01b compare `blocks` blocks,
//!   11b compare one block against each block, 10b reserved. WRITE AND VERIFY accepts 0 and 1.
//! - WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 would mean "to the end of the medium"; we report
//!   WSNZ=1 in the Block Limits page, so 0 is INVALID FIELD IN CDB. PBDATA/LBDATA and ANCHOR (no
//!   ANC_SUP) are refused; the UNMAP bit is ignored on a fully provisioned unit (SBC-3 WRITE
//!   SAME: unmapping is optional).
//! - START STOP UNIT with LOEJ=1 on our non-removable medium is INVALID FIELD IN CDB (libiscsi
//!   `StartStopUnit.Simple` expects failure when RMB=0).
//! - READ CAPACITY with PMI=0 and a non-zero LBA is INVALID FIELD IN CDB (SBC-3, READ CAPACITY).

use super::geometry::LuGeometry;
use super::opcodes::{self as op, cdb_len};
use super::sense::{Asc, CommandError};
use super::vpd;

/// A decoded command. Lengths are in blocks, allocation and parameter list lengths in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    TestUnitReady,
    Inquiry {
        evpd: bool,
        page: u8,
        alloc_len: u32,
    },
    RequestSense {
        desc: bool,
        alloc_len: u32,
    },
    ReportLuns {
        select_report: u8,
        alloc_len: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc_len: u32,
    },
    ModeSense {
        ten: bool,
        dbd: bool,
        llbaa: bool,
        pc: u8,
        page: u8,
        subpage: u8,
        alloc_len: u32,
    },
    ModeSelect {
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
    },
    Read {
        lba: u64,
        blocks: u64,
        fua: bool,
        dpo: bool,
    },
    Write {
        lba: u64,
        blocks: u64,
        fua: bool,
        dpo: bool,
    },
    /// BYTCHK=1: compare the written data with the medium; 0: verify the medium only.
    WriteAndVerify {
        lba: u64,
        blocks: u64,
        bytchk: bool,
    },
    /// BYTCHK: 0 verify the medium, 1 compare `blocks` blocks of data-out, 3 compare one block of
    /// data-out against every block of the range.
    Verify {
        lba: u64,
        blocks: u64,
        bytchk: u8,
    },
    OrWrite {
        lba: u64,
        blocks: u64,
        fua: bool,
    },
    /// `blocks` is at most MAXIMUM COMPARE AND WRITE LENGTH (one byte).
    CompareAndWrite {
        lba: u64,
        blocks: u32,
        fua: bool,
    },
    /// `unmap` is already cleared on a fully provisioned unit. `ndob`: no data-out buffer, the
    /// block is all zeros. `anchor` is always false after [`decode_any`] (no ANC_SUP).
    WriteSame {
        lba: u64,
        blocks: u64,
        unmap: bool,
        anchor: bool,
        ndob: bool,
    },
    Unmap {
        anchor: bool,
        param_len: u32,
    },
    /// `blocks == 0`: from `lba` to the end of the medium.
    SynchronizeCache {
        lba: u64,
        blocks: u64,
        immed: bool,
    },
    /// `blocks == 0`: from `lba` to the end of the medium.
    PreFetch {
        lba: u64,
        blocks: u64,
        immed: bool,
    },
    GetLbaStatus {
        lba: u64,
        alloc_len: u32,
    },
    StartStopUnit {
        immed: bool,
        power_condition: u8,
        loej: bool,
        start: bool,
    },
    ReportSupportedOpcodes {
        rctd: bool,
        options: u8,
        opcode: u8,
        service_action: u16,
        alloc_len: u32,
    },
    /// PARAMETER DATA FORMAT 000b and 001b are both accepted; the data is always returned in the
    /// length-only format, which the initiator recognises from its FORMAT TYPE bits being 0
    /// (Linux's scsi_dh_alua checks them).
    ReportTargetPortGroups {
        alloc_len: u32,
    },
    PersistentReserveIn {
        service_action: u8,
        alloc_len: u32,
    },
    PersistentReserveOut {
        service_action: u8,
        scope: u8,
        pr_type: u8,
        param_len: u32,
    },
    Reserve {
        ten: bool,
    },
    Release {
        ten: bool,
    },
}

/// Decodes a CDB for a unit with geometry `geom`, refusing commands that are not in
/// [`op::SUPPORTED`]. `cdb` may be longer than the command's CDB (iSCSI carries 16 bytes).
pub fn decode(cdb: &[u8], geom: &LuGeometry) -> Result<Command, CommandError> {
    op::check_supported(cdb, geom)?;
    decode_any(cdb, geom)
}

/// Decodes every command ringsan knows, including those not yet in the supported table
/// (PERSISTENT RESERVE IN/OUT, RESERVE, RELEASE). Field and range checks are the same as
/// [`decode`].
pub fn decode_any(cdb: &[u8], geom: &LuGeometry) -> Result<Command, CommandError> {
    let Some(&opcode) = cdb.first() else {
        return Err(CommandError::invalid_opcode());
    };
    if !known(opcode) {
        return Err(CommandError::invalid_opcode());
    }
    let Some(len) = cdb_len(opcode) else {
        return Err(CommandError::invalid_opcode());
    };
    if cdb.len() < len {
        return Err(CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB));
    }
    let c = Cdb(&cdb[..len]);
    if c.b(len - 1) & 0x04 != 0 {
        return Err(CommandError::invalid_field_in_cdb(
            (len - 1) as u16,
            Some(2),
        ));
    }
    let b1 = c.b(1);
    let cmd = match opcode {
        op::TEST_UNIT_READY => Command::TestUnitReady,
        op::REQUEST_SENSE => Command::RequestSense {
            desc: b1 & 0x01 != 0,
            alloc_len: u32::from(c.b(4)),
        },
        op::READ_6 | op::WRITE_6 => {
            let lba = (u64::from(b1 & 0x1F) << 16) | u64::from(c.be16(2));
            let blocks = match c.b(4) {
                0 => 256,
                n => u64::from(n),
            };
            transfer(geom, lba, blocks, 4)?;
            if opcode == op::READ_6 {
                Command::Read {
                    lba,
                    blocks,
                    fua: false,
                    dpo: false,
                }
            } else {
                Command::Write {
                    lba,
                    blocks,
                    fua: false,
                    dpo: false,
                }
            }
        }
        op::READ_10 | op::READ_12 | op::READ_16 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
            no_protection(b1)?;
            let (lba, blocks, at) = lba_and_length(&c, len);
            transfer(geom, lba, blocks, at)?;
            let (fua, dpo) = (b1 & 0x08 != 0, b1 & 0x10 != 0);
            if matches!(opcode, op::READ_10 | op::READ_12 | op::READ_16) {
                Command::Read {
                    lba,
                    blocks,
                    fua,
                    dpo,
                }
            } else {
                Command::Write {
                    lba,
                    blocks,
                    fua,
                    dpo,
                }
            }
        }
        op::WRITE_AND_VERIFY_10 | op::WRITE_AND_VERIFY_12 | op::WRITE_AND_VERIFY_16 => {
            no_protection(b1)?;
            let bytchk = (b1 >> 1) & 0x03;
            if bytchk > 1 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(2)));
            }
            let (lba, blocks, at) = lba_and_length(&c, len);
            transfer(geom, lba, blocks, at)?;
            Command::WriteAndVerify {
                lba,
                blocks,
                bytchk: bytchk == 1,
            }
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            no_protection(b1)?;
            let bytchk = (b1 >> 1) & 0x03;
            if bytchk == 2 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(2)));
            }
            let (lba, blocks, at) = lba_and_length(&c, len);
            transfer(geom, lba, blocks, at)?;
            Command::Verify {
                lba,
                blocks,
                bytchk,
            }
        }
        op::ORWRITE_16 => {
            no_protection(b1)?;
            let (lba, blocks, at) = lba_and_length(&c, len);
            transfer(geom, lba, blocks, at)?;
            Command::OrWrite {
                lba,
                blocks,
                fua: b1 & 0x08 != 0,
            }
        }
        op::COMPARE_AND_WRITE => {
            no_protection(b1)?;
            let lba = c.be64(2);
            let blocks = c.b(13);
            if blocks > geom.max_compare_write_blocks {
                return Err(CommandError::invalid_field_in_cdb(13, None));
            }
            // MAXIMUM COMPARE AND WRITE LENGTH, not MAXIMUM TRANSFER LENGTH, bounds it.
            geom.check_range(lba, u64::from(blocks))?;
            Command::CompareAndWrite {
                lba,
                blocks: u32::from(blocks),
                fua: b1 & 0x08 != 0,
            }
        }
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            no_protection(b1)?;
            if b1 & 0x10 != 0 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(4))); // ANCHOR, no ANC_SUP
            }
            if b1 & 0x04 != 0 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(2))); // PBDATA
            }
            if b1 & 0x02 != 0 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(1))); // LBDATA
            }
            let ndob = opcode == op::WRITE_SAME_16 && b1 & 0x01 != 0;
            let (lba, blocks, at) = lba_and_length(&c, len);
            if blocks == 0 {
                return Err(CommandError::invalid_field_in_cdb(at, None)); // WSNZ=1
            }
            if geom.max_write_same_blocks != 0 && blocks > geom.max_write_same_blocks {
                return Err(CommandError::invalid_field_in_cdb(at, None));
            }
            geom.check_range(lba, blocks)?;
            Command::WriteSame {
                lba,
                blocks,
                unmap: b1 & 0x08 != 0 && geom.thin,
                anchor: false,
                ndob,
            }
        }
        op::UNMAP => {
            if b1 & 0x01 != 0 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(0))); // ANCHOR, no ANC_SUP
            }
            Command::Unmap {
                anchor: false,
                param_len: u32::from(c.be16(7)),
            }
        }
        op::SYNCHRONIZE_CACHE_10
        | op::SYNCHRONIZE_CACHE_16
        | op::PRE_FETCH_10
        | op::PRE_FETCH_16 => {
            let (lba, blocks, _) = lba_and_length(&c, len);
            geom.check_range(lba, blocks)?;
            let immed = b1 & 0x02 != 0;
            if matches!(opcode, op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16) {
                Command::SynchronizeCache { lba, blocks, immed }
            } else {
                Command::PreFetch { lba, blocks, immed }
            }
        }
        op::READ_CAPACITY_10 => {
            if c.b(8) & 0x01 == 0 && c.be32(2) != 0 {
                return Err(CommandError::invalid_field_in_cdb(2, None));
            }
            Command::ReadCapacity10
        }
        op::SERVICE_ACTION_IN_16 => match b1 & 0x1F {
            op::SA_READ_CAPACITY_16 => {
                if c.b(14) & 0x01 == 0 && c.be64(2) != 0 {
                    return Err(CommandError::invalid_field_in_cdb(2, None));
                }
                Command::ReadCapacity16 {
                    alloc_len: c.be32(10),
                }
            }
            op::SA_GET_LBA_STATUS => {
                let lba = c.be64(2);
                if lba >= geom.num_blocks {
                    return Err(CommandError::lba_out_of_range());
                }
                Command::GetLbaStatus {
                    lba,
                    alloc_len: c.be32(10),
                }
            }
            _ => return Err(CommandError::invalid_field_in_cdb(1, Some(4))),
        },
        op::INQUIRY => {
            if b1 & 0x02 != 0 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(1))); // CMDDT (obsolete)
            }
            let evpd = b1 & 0x01 != 0;
            let page = c.b(2);
            if (!evpd && page != 0) || (evpd && !vpd::is_supported_page(page)) {
                return Err(CommandError::invalid_field_in_cdb(2, None));
            }
            Command::Inquiry {
                evpd,
                page,
                alloc_len: u32::from(c.be16(3)),
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = opcode == op::MODE_SENSE_10;
            Command::ModeSense {
                ten,
                dbd: b1 & 0x08 != 0,
                llbaa: ten && b1 & 0x10 != 0,
                pc: c.b(2) >> 6,
                page: c.b(2) & 0x3F,
                subpage: c.b(3),
                alloc_len: if ten {
                    u32::from(c.be16(7))
                } else {
                    u32::from(c.b(4))
                },
            }
        }
        op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
            let ten = opcode == op::MODE_SELECT_10;
            let (pf, sp) = (b1 & 0x10 != 0, b1 & 0x01 != 0);
            if !pf {
                return Err(CommandError::invalid_field_in_cdb(1, Some(4)));
            }
            if sp {
                return Err(CommandError::invalid_field_in_cdb(1, Some(0)));
            }
            let param_len = if ten {
                u32::from(c.be16(7))
            } else {
                u32::from(c.b(4))
            };
            Command::ModeSelect {
                ten,
                pf,
                sp,
                param_len,
            }
        }
        op::REPORT_LUNS => {
            let select_report = c.b(2);
            if select_report > 2 {
                return Err(CommandError::invalid_field_in_cdb(2, None));
            }
            let alloc_len = c.be32(6);
            if alloc_len < 16 {
                return Err(CommandError::invalid_field_in_cdb(6, None));
            }
            Command::ReportLuns {
                select_report,
                alloc_len,
            }
        }
        op::START_STOP_UNIT => {
            let b4 = c.b(4);
            let power_condition = b4 >> 4;
            if matches!(power_condition, 0x4 | 0x6 | 0x8 | 0x9 | 0xC..=0xF) {
                return Err(CommandError::invalid_field_in_cdb(4, Some(7)));
            }
            let loej = b4 & 0x02 != 0;
            if power_condition == 0 && loej {
                return Err(CommandError::invalid_field_in_cdb(4, Some(1))); // not removable
            }
            Command::StartStopUnit {
                immed: b1 & 0x01 != 0,
                power_condition,
                loej,
                start: b4 & 0x01 != 0,
            }
        }
        op::MAINTENANCE_IN => match b1 & 0x1F {
            op::SA_REPORT_TARGET_PORT_GROUPS => {
                let format = b1 >> 5;
                if format > 1 {
                    return Err(CommandError::invalid_field_in_cdb(1, Some(7)));
                }
                Command::ReportTargetPortGroups {
                    alloc_len: c.be32(6),
                }
            }
            op::SA_REPORT_SUPPORTED_OPCODES => {
                let options = c.b(2) & 0x07;
                if options > 3 {
                    return Err(CommandError::invalid_field_in_cdb(2, Some(2)));
                }
                Command::ReportSupportedOpcodes {
                    rctd: c.b(2) & 0x80 != 0,
                    options,
                    opcode: c.b(3),
                    service_action: c.be16(4),
                    alloc_len: c.be32(6),
                }
            }
            _ => return Err(CommandError::invalid_field_in_cdb(1, Some(4))),
        },
        op::PERSISTENT_RESERVE_IN => {
            let service_action = b1 & 0x1F;
            if service_action > 3 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(4)));
            }
            Command::PersistentReserveIn {
                service_action,
                alloc_len: u32::from(c.be16(7)),
            }
        }
        op::PERSISTENT_RESERVE_OUT => {
            let service_action = b1 & 0x1F;
            if service_action > 7 {
                return Err(CommandError::invalid_field_in_cdb(1, Some(4)));
            }
            Command::PersistentReserveOut {
                service_action,
                scope: c.b(2) >> 4,
                pr_type: c.b(2) & 0x0F,
                param_len: c.be32(5),
            }
        }
        op::RESERVE_6 => Command::Reserve { ten: false },
        op::RESERVE_10 => Command::Reserve { ten: true },
        op::RELEASE_6 => Command::Release { ten: false },
        op::RELEASE_10 => Command::Release { ten: true },
        _ => return Err(CommandError::invalid_opcode()),
    };
    Ok(cmd)
}

/// Opcodes [`decode_any`] understands.
const fn known(opcode: u8) -> bool {
    matches!(
        opcode,
        op::TEST_UNIT_READY
            | op::REQUEST_SENSE
            | op::READ_6
            | op::WRITE_6
            | op::INQUIRY
            | op::MODE_SELECT_6
            | op::RESERVE_6
            | op::RELEASE_6
            | op::MODE_SENSE_6
            | op::START_STOP_UNIT
            | op::READ_CAPACITY_10
            | op::READ_10
            | op::WRITE_10
            | op::WRITE_AND_VERIFY_10
            | op::VERIFY_10
            | op::PRE_FETCH_10
            | op::SYNCHRONIZE_CACHE_10
            | op::WRITE_SAME_10
            | op::UNMAP
            | op::MODE_SELECT_10
            | op::RESERVE_10
            | op::RELEASE_10
            | op::MODE_SENSE_10
            | op::PERSISTENT_RESERVE_IN
            | op::PERSISTENT_RESERVE_OUT
            | op::READ_16
            | op::COMPARE_AND_WRITE
            | op::WRITE_16
            | op::ORWRITE_16
            | op::WRITE_AND_VERIFY_16
            | op::VERIFY_16
            | op::PRE_FETCH_16
            | op::SYNCHRONIZE_CACHE_16
            | op::WRITE_SAME_16
            | op::SERVICE_ACTION_IN_16
            | op::REPORT_LUNS
            | op::MAINTENANCE_IN
            | op::READ_12
            | op::WRITE_12
            | op::WRITE_AND_VERIFY_12
            | op::VERIFY_12
    )
}

/// Bounds-checked big-endian reads from a CDB; out-of-range bytes read as 0.
struct Cdb<'a>(&'a [u8]);

impl Cdb<'_> {
    fn b(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    fn be16(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.b(i), self.b(i + 1)])
    }
    fn be32(&self, i: usize) -> u32 {
        u32::from_be_bytes([self.b(i), self.b(i + 1), self.b(i + 2), self.b(i + 3)])
    }
    fn be64(&self, i: usize) -> u64 {
        (u64::from(self.be32(i)) << 32) | u64::from(self.be32(i + 4))
    }
}

/// LBA, length and the byte offset of the length field for the 10/12/16-byte layouts shared by
/// READ, WRITE, VERIFY, WRITE AND VERIFY, ORWRITE, WRITE SAME, SYNCHRONIZE CACHE and PRE-FETCH.
fn lba_and_length(c: &Cdb<'_>, len: usize) -> (u64, u64, u16) {
    match len {
        10 => (u64::from(c.be32(2)), u64::from(c.be16(7)), 7),
        12 => (u64::from(c.be32(2)), u64::from(c.be32(6)), 6),
        _ => (c.be64(2), u64::from(c.be32(10)), 10),
    }
}

/// RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT must be 0: we have no protection information.
fn no_protection(b1: u8) -> Result<(), CommandError> {
    if b1 & 0xE0 != 0 {
        return Err(CommandError::invalid_field_in_cdb(1, Some(7)));
    }
    Ok(())
}

/// Transfer length against MAXIMUM TRANSFER LENGTH (and the 32-bit iSCSI transfer length), then
/// the LBA range.
fn transfer(geom: &LuGeometry, lba: u64, blocks: u64, len_at: u16) -> Result<(), CommandError> {
    if geom.max_transfer_blocks != 0 && blocks > u64::from(geom.max_transfer_blocks) {
        return Err(CommandError::invalid_field_in_cdb(len_at, None));
    }
    if blocks.saturating_mul(u64::from(geom.block_size)) > u64::from(u32::MAX) {
        return Err(CommandError::invalid_field_in_cdb(len_at, None));
    }
    geom.check_range(lba, blocks).map_err(CommandError::check)
}

fn bytes(blocks: u64, geom: &LuGeometry) -> u32 {
    u32::try_from(blocks.saturating_mul(u64::from(geom.block_size))).unwrap_or(u32::MAX)
}

impl Command {
    /// Bytes the initiator must send (Data-Out): WRITE blocks, COMPARE AND WRITE twice the blocks
    /// (verify data then write data), WRITE SAME one block (none with NDOB), VERIFY blocks with
    /// BYTCHK=01b and one block with 11b, parameter lists for UNMAP/MODE SELECT/PR OUT.
    pub fn data_out_len(&self, geom: &LuGeometry) -> u32 {
        match *self {
            Command::Write { blocks, .. }
            | Command::WriteAndVerify { blocks, .. }
            | Command::OrWrite { blocks, .. } => bytes(blocks, geom),
            Command::CompareAndWrite { blocks, .. } => bytes(2 * u64::from(blocks), geom),
            Command::WriteSame { ndob, .. } => {
                if ndob {
                    0
                } else {
                    geom.block_size
                }
            }
            Command::Verify { blocks, bytchk, .. } => match bytchk {
                1 => bytes(blocks, geom),
                3 => geom.block_size,
                _ => 0,
            },
            Command::Unmap { param_len, .. }
            | Command::ModeSelect { param_len, .. }
            | Command::PersistentReserveOut { param_len, .. } => param_len,
            _ => 0,
        }
    }

    /// Bytes the target sends (Data-In) when that is fixed by the CDB: READ blocks, READ
    /// CAPACITY(10) 8, READ CAPACITY(16) min(32, allocation length), 0 for commands without
    /// data-in. `None` when it depends on the response (see [`Command::alloc_len`]; the response
    /// is truncated to the allocation length).
    pub fn data_in_len(&self, geom: &LuGeometry) -> Option<u32> {
        match *self {
            Command::Read { blocks, .. } => Some(bytes(blocks, geom)),
            Command::ReadCapacity10 => Some(8),
            Command::ReadCapacity16 { alloc_len } => Some(alloc_len.min(32)),
            Command::Inquiry { .. }
            | Command::RequestSense { .. }
            | Command::ReportLuns { .. }
            | Command::ModeSense { .. }
            | Command::GetLbaStatus { .. }
            | Command::ReportSupportedOpcodes { .. }
            | Command::ReportTargetPortGroups { .. }
            | Command::PersistentReserveIn { .. } => None,
            _ => Some(0),
        }
    }

    /// The ALLOCATION LENGTH of commands that return parameter data.
    pub fn alloc_len(&self) -> Option<u32> {
        match *self {
            Command::Inquiry { alloc_len, .. }
            | Command::RequestSense { alloc_len, .. }
            | Command::ReportLuns { alloc_len, .. }
            | Command::ReadCapacity16 { alloc_len }
            | Command::ModeSense { alloc_len, .. }
            | Command::GetLbaStatus { alloc_len, .. }
            | Command::ReportSupportedOpcodes { alloc_len, .. }
            | Command::ReportTargetPortGroups { alloc_len, .. }
            | Command::PersistentReserveIn { alloc_len, .. } => Some(alloc_len),
            Command::ReadCapacity10 => Some(8),
            _ => None,
        }
    }

    /// Whether the command modifies the medium (refused under SWP or a read-only export, and
    /// by write-exclusive reservations).
    pub fn is_medium_write(&self) -> bool {
        matches!(
            self,
            Command::Write { .. }
                | Command::WriteAndVerify { .. }
                | Command::OrWrite { .. }
                | Command::CompareAndWrite { .. }
                | Command::WriteSame { .. }
                | Command::Unmap { .. }
        )
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::TestUnitReady => "TEST UNIT READY",
            Command::Inquiry { .. } => "INQUIRY",
            Command::RequestSense { .. } => "REQUEST SENSE",
            Command::ReportLuns { .. } => "REPORT LUNS",
            Command::ReadCapacity10 => "READ CAPACITY(10)",
            Command::ReadCapacity16 { .. } => "READ CAPACITY(16)",
            Command::ModeSense { .. } => "MODE SENSE",
            Command::ModeSelect { .. } => "MODE SELECT",
            Command::Read { .. } => "READ",
            Command::Write { .. } => "WRITE",
            Command::WriteAndVerify { .. } => "WRITE AND VERIFY",
            Command::Verify { .. } => "VERIFY",
            Command::OrWrite { .. } => "ORWRITE",
            Command::CompareAndWrite { .. } => "COMPARE AND WRITE",
            Command::WriteSame { .. } => "WRITE SAME",
            Command::Unmap { .. } => "UNMAP",
            Command::SynchronizeCache { .. } => "SYNCHRONIZE CACHE",
            Command::PreFetch { .. } => "PRE-FETCH",
            Command::GetLbaStatus { .. } => "GET LBA STATUS",
            Command::StartStopUnit { .. } => "START STOP UNIT",
            Command::ReportSupportedOpcodes { .. } => "REPORT SUPPORTED OPERATION CODES",
            Command::ReportTargetPortGroups { .. } => "REPORT TARGET PORT GROUPS",
            Command::PersistentReserveIn { .. } => "PERSISTENT RESERVE IN",
            Command::PersistentReserveOut { .. } => "PERSISTENT RESERVE OUT",
            Command::Reserve { .. } => "RESERVE",
            Command::Release { .. } => "RELEASE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{ScsiStatus, Sense, SenseKey};

    const NB: u64 = 1_000_000;

    fn geom() -> LuGeometry {
        LuGeometry::new(512, NB)
    }

    fn thin() -> LuGeometry {
        let mut g = geom();
        g.thin = true;
        g
    }

    fn cdb(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(16, 0);
        v
    }

    fn c10(opcode: u8, b1: u8, lba: u32, len: u16) -> Vec<u8> {
        let mut v = vec![opcode, b1];
        v.extend_from_slice(&lba.to_be_bytes());
        v.push(0);
        v.extend_from_slice(&len.to_be_bytes());
        v.push(0);
        v
    }

    fn c12(opcode: u8, b1: u8, lba: u32, len: u32) -> Vec<u8> {
        let mut v = vec![opcode, b1];
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    fn c16(opcode: u8, b1: u8, lba: u64, len: u32) -> Vec<u8> {
        let mut v = vec![opcode, b1];
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    fn ok(bytes: &[u8]) -> Command {
        decode(bytes, &geom()).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"))
    }

    fn err(bytes: &[u8]) -> Sense {
        err_g(bytes, &geom())
    }

    fn err_g(bytes: &[u8], g: &LuGeometry) -> Sense {
        let e = decode(bytes, g).expect_err("expected an error");
        assert_eq!(e.status, ScsiStatus::CheckCondition);
        e.sense.expect("sense")
    }

    fn assert_field(s: Sense, byte: u16, bit: Option<u8>) {
        assert_eq!(s.key, SenseKey::IllegalRequest);
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            s.sense_key_specific,
            Some(crate::scsi::sense::field_pointer(true, byte, bit))
        );
    }

    #[test]
    fn unknown_opcodes() {
        for opcode in 0..=255u8 {
            let c = cdb(&[opcode]);
            let r = decode(&c, &thin());
            if crate::scsi::opcodes::SUPPORTED
                .iter()
                .all(|i| i.opcode != opcode)
            {
                let s = r.expect_err("unsupported opcode decoded").sense.unwrap();
                assert_eq!(s.asc, Asc::INVALID_COMMAND_OPERATION_CODE, "{opcode:#x}");
            }
        }
        assert_eq!(err(&[]).asc, Asc::INVALID_COMMAND_OPERATION_CODE);
        // PR and RESERVE/RELEASE are in the table now: they decode.
        for opcode in [0x5E, 0x5F, 0x16, 0x17, 0x56, 0x57] {
            assert!(decode(&cdb(&[opcode]), &geom()).is_ok(), "{opcode:#x}");
            assert!(decode_any(&cdb(&[opcode]), &geom()).is_ok(), "{opcode:#x}");
        }
    }

    #[test]
    fn every_table_entry_decodes() {
        // A CDB with just the opcode (and SA) must get past the table; fields that must be
        // non-zero are set per command.
        let g = thin();
        for i in crate::scsi::opcodes::SUPPORTED {
            let mut c = cdb(&[i.opcode, i.service_action.unwrap_or(0)]);
            match i.opcode {
                op::WRITE_SAME_10 => c[8] = 1,
                op::WRITE_SAME_16 => c[13] = 1,
                op::REPORT_LUNS => c[9] = 16,
                op::MODE_SELECT_6 | op::MODE_SELECT_10 => c[1] = 0x10,
                _ => {}
            }
            decode(&c, &g).unwrap_or_else(|e| panic!("{}: {e}", i.name));
        }
    }

    #[test]
    fn short_cdb_and_naca() {
        let s = err(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(s.sense_key_specific, None);
        // NACA in the CONTROL byte of each length.
        assert_field(err(&[0x00, 0, 0, 0, 0, 0x04]), 5, Some(2));
        assert_field(
            err(&c10(0x28, 0, 0, 1)
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 9 { 4 } else { *b })
                .collect::<Vec<_>>()),
            9,
            Some(2),
        );
        let mut c = c16(0x88, 0, 0, 1);
        c[15] = 0x04;
        assert_field(err(&c), 15, Some(2));
        let mut c = c12(0xA8, 0, 0, 1);
        c[11] = 0x04;
        assert_field(err(&c), 11, Some(2));
        // LINK and vendor bits are ignored.
        let mut c = c10(0x28, 0, 0, 1);
        c[9] = 0xC1;
        assert!(decode(&c, &geom()).is_ok());
    }

    #[test]
    fn read6_write6() {
        assert_eq!(
            ok(&[0x08, 0x01, 0x02, 0x03, 0x00, 0]),
            Command::Read {
                lba: 0x010203,
                blocks: 256,
                fua: false,
                dpo: false
            }
        );
        assert_eq!(
            ok(&[0x0A, 0xE0, 0x00, 0x10, 0x05, 0]),
            Command::Write {
                lba: 0x10,
                blocks: 5,
                fua: false,
                dpo: false
            }
        );
        // 21-bit LBA beyond a small unit.
        let small = LuGeometry::new(512, 100);
        assert_eq!(
            err_g(&[0x08, 0, 0, 99, 2, 0], &small).asc,
            Asc::LBA_OUT_OF_RANGE
        );
        assert!(decode(&[0x08, 0, 0, 99, 1, 0], &small).is_ok());
        // 0 means 256: out of range on a 100-block unit.
        assert_eq!(
            err_g(&[0x08, 0, 0, 0, 0, 0], &small).asc,
            Asc::LBA_OUT_OF_RANGE
        );
    }

    #[test]
    fn read_write_10_12_16() {
        assert_eq!(
            ok(&c10(0x28, 0x18, 7, 8)),
            Command::Read {
                lba: 7,
                blocks: 8,
                fua: true,
                dpo: true
            }
        );
        assert_eq!(
            ok(&c10(0x2A, 0x08, 7, 0)),
            Command::Write {
                lba: 7,
                blocks: 0,
                fua: true,
                dpo: false
            }
        );
        assert_eq!(
            ok(&c12(0xA8, 0x10, 9, 1)),
            Command::Read {
                lba: 9,
                blocks: 1,
                fua: false,
                dpo: true
            }
        );
        assert_eq!(
            ok(&c12(0xAA, 0, 9, 1)),
            Command::Write {
                lba: 9,
                blocks: 1,
                fua: false,
                dpo: false
            }
        );
        assert_eq!(
            ok(&c16(0x88, 0, NB - 1, 1)),
            Command::Read {
                lba: NB - 1,
                blocks: 1,
                fua: false,
                dpo: false
            }
        );
        assert_eq!(
            ok(&c16(0x8A, 0x02, 0, 1)),
            Command::Write {
                lba: 0,
                blocks: 1,
                fua: false,
                dpo: false
            },
            "FUA_NV ignored"
        );
        for opcode in [0x28, 0x2A] {
            for p in 1..8u8 {
                assert_field(err(&c10(opcode, p << 5, 0, 1)), 1, Some(7));
            }
        }
        assert_field(err(&c12(0xA8, 0x20, 0, 1)), 1, Some(7));
        assert_field(err(&c16(0x8A, 0x80, 0, 1)), 1, Some(7));
    }

    #[test]
    fn lba_range_edges() {
        for (lba, blocks, good) in [
            (NB - 1, 1, true),
            (NB - 1, 2, false),
            (NB, 1, false),
            (NB, 0, true),
            (NB + 1, 0, false),
            (u64::MAX, 1, false),
            (u64::MAX, 0, false),
            (1 << 63, 1, false),
        ] {
            let r = decode(&c16(0x88, 0, lba, blocks), &geom());
            assert_eq!(r.is_ok(), good, "lba {lba} blocks {blocks}");
            if !good {
                assert_eq!(r.unwrap_err().sense.unwrap().asc, Asc::LBA_OUT_OF_RANGE);
            }
        }
        assert_eq!(
            err(&c10(0x2A, 0, (NB - 1) as u32, 2)).asc,
            Asc::LBA_OUT_OF_RANGE
        );
        assert_eq!(err(&c12(0xA8, 0, u32::MAX, 1)).asc, Asc::LBA_OUT_OF_RANGE);
    }

    #[test]
    fn transfer_length_limit() {
        let g = geom();
        let max = g.max_transfer_blocks;
        assert!(decode(&c16(0x88, 0, 0, max), &g).is_ok());
        assert_field(err(&c16(0x88, 0, 0, max + 1)), 10, None);
        // READ(16) of FFFFFFFFh blocks: the transfer length is refused before the LBA range.
        assert_field(err(&c16(0x88, 0, 0, u32::MAX)), 10, None);
        assert_field(err(&c16(0x88, 0, u64::MAX, u32::MAX)), 10, None);
        assert_field(err(&c12(0xAA, 0, 0, max + 1)), 6, None);
        assert_field(err(&c10(0x28, 0, 0, (max + 1) as u16)), 7, None);
        // Without a limit it is the range (and then the 4 GiB iSCSI transfer length).
        let mut nolimit = LuGeometry::new(512, u64::MAX);
        nolimit.max_transfer_blocks = 0;
        assert!(decode(&c16(0x88, 0, 0, 0x7F_FFFF), &nolimit).is_ok());
        assert_field(err_g(&c16(0x88, 0, 0, u32::MAX), &nolimit), 10, None);
        nolimit.num_blocks = 10;
        assert_eq!(
            err_g(&c16(0x88, 0, 0, 0x10000), &nolimit).asc,
            Asc::LBA_OUT_OF_RANGE
        );
    }

    #[test]
    fn write_and_verify() {
        assert_eq!(
            ok(&c10(0x2E, 0x02, 1, 2)),
            Command::WriteAndVerify {
                lba: 1,
                blocks: 2,
                bytchk: true
            }
        );
        assert_eq!(
            ok(&c12(0xAE, 0x10, 1, 2)),
            Command::WriteAndVerify {
                lba: 1,
                blocks: 2,
                bytchk: false
            }
        );
        assert_eq!(
            ok(&c16(0x8E, 0, 1, 2)),
            Command::WriteAndVerify {
                lba: 1,
                blocks: 2,
                bytchk: false
            }
        );
        assert_field(err(&c10(0x2E, 0x04, 1, 2)), 1, Some(2));
        assert_field(err(&c16(0x8E, 0x06, 1, 2)), 1, Some(2));
        assert_field(err(&c16(0x8E, 0x40, 1, 2)), 1, Some(7));
        assert_eq!(err(&c16(0x8E, 0, NB, 1)).asc, Asc::LBA_OUT_OF_RANGE);
    }

    #[test]
    fn verify() {
        let g = geom();
        for (b1, bytchk, out) in [(0x00, 0, 0), (0x02, 1, 4 * 512), (0x06, 3, 512)] {
            let c = ok(&c10(0x2F, b1, 5, 4));
            assert_eq!(
                c,
                Command::Verify {
                    lba: 5,
                    blocks: 4,
                    bytchk
                }
            );
            assert_eq!(c.data_out_len(&g), out);
        }
        assert_eq!(
            ok(&c12(0xAF, 0x02, 5, 4)),
            Command::Verify {
                lba: 5,
                blocks: 4,
                bytchk: 1
            }
        );
        assert_eq!(
            ok(&c16(0x8F, 0x06, 5, 4)),
            Command::Verify {
                lba: 5,
                blocks: 4,
                bytchk: 3
            }
        );
        assert_field(err(&c10(0x2F, 0x04, 5, 4)), 1, Some(2));
        assert_field(err(&c16(0x8F, 0xE0, 5, 4)), 1, Some(7));
        assert_eq!(
            err(&c12(0xAF, 0, (NB - 3) as u32, 4)).asc,
            Asc::LBA_OUT_OF_RANGE
        );
    }

    #[test]
    fn orwrite() {
        assert_eq!(
            ok(&c16(0x8B, 0x08, 3, 3)),
            Command::OrWrite {
                lba: 3,
                blocks: 3,
                fua: true
            }
        );
        assert_field(err(&c16(0x8B, 0x20, 3, 3)), 1, Some(7));
        assert_eq!(err(&c16(0x8B, 0, NB - 2, 3)).asc, Asc::LBA_OUT_OF_RANGE);
    }

    #[test]
    fn compare_and_write() {
        let g = geom();
        let mut c = c16(0x89, 0x08, 10, 0);
        c[13] = 1;
        let cmd = ok(&c);
        assert_eq!(
            cmd,
            Command::CompareAndWrite {
                lba: 10,
                blocks: 1,
                fua: true
            }
        );
        assert_eq!(cmd.data_out_len(&g), 1024);
        c[13] = 2; // over MAXIMUM COMPARE AND WRITE LENGTH (1)
        assert_field(err(&c), 13, None);
        c[13] = 0;
        assert!(decode(&c, &g).is_ok(), "0 blocks is not an error");
        let mut c = c16(0x89, 0, NB, 0);
        c[13] = 1;
        assert_eq!(err(&c).asc, Asc::LBA_OUT_OF_RANGE);
        c[1] = 0x20;
        assert_field(err(&c), 1, Some(7));
    }

    #[test]
    fn write_same() {
        let g = geom();
        let t = thin();
        let c = decode(&c10(0x41, 0x08, 1, 8), &t).unwrap();
        assert_eq!(
            c,
            Command::WriteSame {
                lba: 1,
                blocks: 8,
                unmap: true,
                anchor: false,
                ndob: false
            }
        );
        assert_eq!(c.data_out_len(&t), 512);
        // UNMAP ignored on a fully provisioned unit.
        assert_eq!(
            ok(&c10(0x41, 0x08, 1, 8)),
            Command::WriteSame {
                lba: 1,
                blocks: 8,
                unmap: false,
                anchor: false,
                ndob: false
            }
        );
        let c = decode(&c16(0x93, 0x09, 1, 8), &t).unwrap();
        assert_eq!(
            c,
            Command::WriteSame {
                lba: 1,
                blocks: 8,
                unmap: true,
                anchor: false,
                ndob: true
            }
        );
        assert_eq!(c.data_out_len(&g), 0);
        // WSNZ: zero blocks refused.
        assert_field(err(&c10(0x41, 0, 1, 0)), 7, None);
        assert_field(err(&c16(0x93, 0, 1, 0)), 10, None);
        assert_field(err(&c16(0x93, 0x10, 1, 1)), 1, Some(4));
        assert_field(err(&c16(0x93, 0x04, 1, 1)), 1, Some(2));
        assert_field(err(&c10(0x41, 0x02, 1, 1)), 1, Some(1));
        assert_field(err(&c10(0x41, 0x20, 1, 1)), 1, Some(7));
        // Bit 0 of WRITE SAME(10) byte 1 is reserved: no NDOB there.
        assert_eq!(
            ok(&c10(0x41, 0x01, 1, 1)),
            Command::WriteSame {
                lba: 1,
                blocks: 1,
                unmap: false,
                anchor: false,
                ndob: false
            }
        );
        // Over MAXIMUM WRITE SAME LENGTH.
        let over = (g.max_write_same_blocks + 1) as u32;
        assert_field(err(&c16(0x93, 0, 0, over)), 10, None);
        assert_eq!(err(&c16(0x93, 0, NB, 1)).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(err(&c16(0x93, 0, u64::MAX, 1)).asc, Asc::LBA_OUT_OF_RANGE);
    }

    #[test]
    fn unmap() {
        let t = thin();
        let c = decode(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &t).unwrap();
        assert_eq!(
            c,
            Command::Unmap {
                anchor: false,
                param_len: 24
            }
        );
        assert_eq!(c.data_out_len(&t), 24);
        assert_field(err_g(&[0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], &t), 1, Some(0));
        assert_eq!(
            err(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]).asc,
            Asc::INVALID_COMMAND_OPERATION_CODE
        );
    }

    #[test]
    fn sync_cache_and_prefetch() {
        assert_eq!(
            ok(&c10(0x35, 0x02, 0, 0)),
            Command::SynchronizeCache {
                lba: 0,
                blocks: 0,
                immed: true
            }
        );
        assert_eq!(
            ok(&c16(0x91, 0, NB - 1, 1)),
            Command::SynchronizeCache {
                lba: NB - 1,
                blocks: 1,
                immed: false
            }
        );
        assert_eq!(
            ok(&c10(0x34, 0, 3, 4)),
            Command::PreFetch {
                lba: 3,
                blocks: 4,
                immed: false
            }
        );
        assert_eq!(
            ok(&c16(0x90, 0x02, 3, 4)),
            Command::PreFetch {
                lba: 3,
                blocks: 4,
                immed: true
            }
        );
        assert_eq!(err(&c16(0x91, 0, NB, 1)).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(err(&c16(0x90, 0, u64::MAX, 0)).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(
            err(&c10(0x34, 0, (NB - 1) as u32, 2)).asc,
            Asc::LBA_OUT_OF_RANGE
        );
        // No transfer length limit: nothing crosses the wire.
        assert!(decode(&c16(0x91, 0, 0, (NB) as u32), &geom()).is_ok());
    }

    #[test]
    fn read_capacity() {
        let g = geom();
        let c = ok(&c10(0x25, 0, 0, 0));
        assert_eq!(c, Command::ReadCapacity10);
        assert_eq!(c.data_in_len(&g), Some(8));
        assert_field(err(&c10(0x25, 0, 5, 0)), 2, None);
        let mut pmi = c10(0x25, 0, 5, 0);
        pmi[8] = 1;
        assert!(decode(&pmi, &g).is_ok());
        let mut c = c16(0x9E, 0x10, 0, 32);
        let cmd = ok(&c);
        assert_eq!(cmd, Command::ReadCapacity16 { alloc_len: 32 });
        assert_eq!(cmd.data_in_len(&g), Some(32));
        c[13] = 12;
        assert_eq!(ok(&c).data_in_len(&g), Some(12));
        c[9] = 1;
        assert_field(err(&c), 2, None);
        c[14] = 1;
        assert!(decode(&c, &g).is_ok());
    }

    #[test]
    fn get_lba_status() {
        let c = ok(&c16(0x9E, 0x12, NB - 1, 24));
        assert_eq!(
            c,
            Command::GetLbaStatus {
                lba: NB - 1,
                alloc_len: 24
            }
        );
        assert_eq!(c.alloc_len(), Some(24));
        assert_eq!(err(&c16(0x9E, 0x12, NB, 24)).asc, Asc::LBA_OUT_OF_RANGE);
        assert_eq!(
            err(&c16(0x9E, 0x12, u64::MAX, 24)).asc,
            Asc::LBA_OUT_OF_RANGE
        );
        assert_field(err(&c16(0x9E, 0x13, 0, 24)), 1, Some(4));
    }

    #[test]
    fn inquiry() {
        assert_eq!(
            ok(&[0x12, 0, 0, 0, 96, 0]),
            Command::Inquiry {
                evpd: false,
                page: 0,
                alloc_len: 96
            }
        );
        assert_eq!(
            ok(&[0x12, 1, 0x83, 0x01, 0x00, 0]),
            Command::Inquiry {
                evpd: true,
                page: 0x83,
                alloc_len: 256
            }
        );
        for page in [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2] {
            assert!(decode(&[0x12, 1, page, 0, 255, 0], &geom()).is_ok());
        }
        assert_field(err(&[0x12, 0, 0x80, 0, 255, 0]), 2, None);
        assert_field(err(&[0x12, 1, 0xB3, 0, 255, 0]), 2, None);
        assert_field(err(&[0x12, 1, 0x81, 0, 255, 0]), 2, None);
        assert_field(err(&[0x12, 2, 0, 0, 255, 0]), 1, Some(1));
    }

    #[test]
    fn request_sense_and_tur() {
        assert_eq!(
            ok(&[0x03, 1, 0, 0, 252, 0]),
            Command::RequestSense {
                desc: true,
                alloc_len: 252
            }
        );
        assert_eq!(
            ok(&[0x03, 0, 0, 0, 18, 0]),
            Command::RequestSense {
                desc: false,
                alloc_len: 18
            }
        );
        assert_eq!(ok(&[0, 0, 0, 0, 0, 0]), Command::TestUnitReady);
        assert_eq!(Command::TestUnitReady.data_in_len(&geom()), Some(0));
    }

    #[test]
    fn mode_sense_select() {
        assert_eq!(
            ok(&[0x1A, 0x08, 0x7F, 0xFF, 200, 0]),
            Command::ModeSense {
                ten: false,
                dbd: true,
                llbaa: false,
                pc: 1,
                page: 0x3F,
                subpage: 0xFF,
                alloc_len: 200
            }
        );
        assert_eq!(
            ok(&[0x5A, 0x10, 0x8A, 0x01, 0, 0, 0, 0x10, 0x00, 0]),
            Command::ModeSense {
                ten: true,
                dbd: false,
                llbaa: true,
                pc: 2,
                page: 0x0A,
                subpage: 1,
                alloc_len: 4096
            }
        );
        // LLBAA does not exist in MODE SENSE(6).
        assert_eq!(
            ok(&[0x1A, 0x10, 0x08, 0, 20, 0]),
            Command::ModeSense {
                ten: false,
                dbd: false,
                llbaa: false,
                pc: 0,
                page: 8,
                subpage: 0,
                alloc_len: 20
            }
        );
        let c = ok(&[0x15, 0x10, 0, 0, 24, 0]);
        assert_eq!(
            c,
            Command::ModeSelect {
                ten: false,
                pf: true,
                sp: false,
                param_len: 24
            }
        );
        assert_eq!(c.data_out_len(&geom()), 24);
        assert_eq!(
            ok(&[0x55, 0x10, 0, 0, 0, 0, 0, 0x01, 0x00, 0]),
            Command::ModeSelect {
                ten: true,
                pf: true,
                sp: false,
                param_len: 256
            }
        );
        assert_field(err(&[0x15, 0x00, 0, 0, 24, 0]), 1, Some(4));
        assert_field(err(&[0x55, 0x11, 0, 0, 0, 0, 0, 0, 24, 0]), 1, Some(0));
    }

    #[test]
    fn report_luns() {
        let c = ok(&[0xA0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(
            c,
            Command::ReportLuns {
                select_report: 2,
                alloc_len: 256
            }
        );
        assert_field(err(&[0xA0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0]), 2, None);
        assert_field(err(&[0xA0, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0]), 2, None);
        assert_field(err(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0]), 6, None);
        assert!(decode(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &geom()).is_ok());
    }

    #[test]
    fn start_stop_unit() {
        assert_eq!(
            ok(&[0x1B, 1, 0, 0, 0x01, 0]),
            Command::StartStopUnit {
                immed: true,
                power_condition: 0,
                loej: false,
                start: true
            }
        );
        assert_eq!(
            ok(&[0x1B, 0, 0, 0, 0x00, 0]),
            Command::StartStopUnit {
                immed: false,
                power_condition: 0,
                loej: false,
                start: false
            }
        );
        assert_eq!(
            ok(&[0x1B, 0, 0, 0, 0x32, 0]),
            Command::StartStopUnit {
                immed: false,
                power_condition: 3,
                loej: true,
                start: false
            }
        );
        assert_field(err(&[0x1B, 1, 0, 0, 0x02, 0]), 4, Some(1));
        assert_field(err(&[0x1B, 1, 0, 0, 0x03, 0]), 4, Some(1));
        assert_field(err(&[0x1B, 0, 0, 0, 0x40, 0]), 4, Some(7));
        assert_field(err(&[0x1B, 0, 0, 0, 0xF0, 0]), 4, Some(7));
    }

    #[test]
    fn maintenance_in() {
        let rsoc = [0xA3, 0x0C, 0x82, 0x9E, 0x00, 0x10, 0, 0, 0x10, 0, 0, 0];
        assert_eq!(
            ok(&rsoc),
            Command::ReportSupportedOpcodes {
                rctd: true,
                options: 2,
                opcode: 0x9E,
                service_action: 0x10,
                alloc_len: 4096
            }
        );
        assert_field(
            err(&[0xA3, 0x0C, 0x04, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]),
            2,
            Some(2),
        );
        assert_eq!(
            ok(&[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]),
            Command::ReportTargetPortGroups { alloc_len: 1024 }
        );
        assert_eq!(
            ok(&[0xA3, 0x2A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]),
            Command::ReportTargetPortGroups { alloc_len: 1024 }
        );
        assert_field(err(&[0xA3, 0x4A, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]), 1, Some(7));
        assert_field(err(&[0xA3, 0x05, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]), 1, Some(4));
    }

    #[test]
    fn persistent_reservations_decode_only() {
        let g = geom();
        assert_eq!(
            decode_any(&[0x5E, 0x01, 0, 0, 0, 0, 0, 0x20, 0x00, 0], &g).unwrap(),
            Command::PersistentReserveIn {
                service_action: 1,
                alloc_len: 0x2000
            }
        );
        assert!(decode_any(&[0x5E, 0x04, 0, 0, 0, 0, 0, 0, 8, 0], &g).is_err());
        let c = decode_any(&[0x5F, 0x01, 0x03, 0, 0, 0, 0, 0, 24, 0], &g).unwrap();
        assert_eq!(
            c,
            Command::PersistentReserveOut {
                service_action: 1,
                scope: 0,
                pr_type: 3,
                param_len: 24
            }
        );
        assert_eq!(c.data_out_len(&g), 24);
        assert!(decode_any(&[0x5F, 0x08, 0, 0, 0, 0, 0, 0, 24, 0], &g).is_err());
        assert_eq!(
            decode_any(&[0x16, 0, 0, 0, 0, 0], &g).unwrap(),
            Command::Reserve { ten: false }
        );
        assert_eq!(
            decode_any(&[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], &g).unwrap(),
            Command::Release { ten: true }
        );
    }

    #[test]
    fn data_lengths() {
        let g = LuGeometry::new(4096, NB);
        let c = decode(&c10(0x28, 0, 0, 3), &g).unwrap();
        assert_eq!(c.data_in_len(&g), Some(3 * 4096));
        assert_eq!(c.data_out_len(&g), 0);
        let c = decode(&c10(0x2A, 0, 0, 3), &g).unwrap();
        assert_eq!(c.data_out_len(&g), 3 * 4096);
        assert_eq!(c.data_in_len(&g), Some(0));
        assert!(c.is_medium_write());
        assert!(!Command::ReadCapacity10.is_medium_write());
        let c = decode(&[0x12, 0, 0, 0, 36, 0], &g).unwrap();
        assert_eq!(c.data_in_len(&g), None);
        assert_eq!(c.alloc_len(), Some(36));
        assert_eq!(c.name(), "INQUIRY");
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Drives every pure handler a decoded command leads to; none may panic.
    fn exercise(cmd: &Command, g: &LuGeometry) {
        use crate::scsi::{
            alua, capacity, inquiry, lba_status, mode, opcodes, report_luns, request_sense, ua,
        };
        let _ = cmd.data_out_len(g);
        let _ = cmd.data_in_len(g);
        let _ = cmd.alloc_len();
        let _ = ua::ua_blocks_command(cmd);
        let state = mode::ModeState::default();
        let _ = mode::write_protect_check(cmd, &state);
        match *cmd {
            Command::ModeSense { .. } => {
                let _ = mode::mode_sense(cmd, &state, g);
            }
            Command::Inquiry { evpd, page, .. } => {
                let _ = inquiry::inquiry(evpd, page, &inquiry::LuIdentity::example(), g);
            }
            Command::ReportSupportedOpcodes { .. } => {
                let _ = opcodes::report_supported_opcodes(cmd, g);
            }
            Command::ReportLuns {
                select_report,
                alloc_len,
            } => {
                let _ = report_luns::report_luns(
                    &[0, 1, 300, 0x3FFF, 0x4000],
                    select_report,
                    alloc_len,
                );
            }
            Command::ReportTargetPortGroups { .. } => {
                let _ = alua::report_target_port_groups(1, &[1, 2]);
            }
            Command::GetLbaStatus { lba, alloc_len } => {
                let ext = [lba_status::LbaExtent {
                    lba,
                    blocks: 5,
                    mapped: false,
                }];
                let _ = lba_status::get_lba_status(lba, &ext, g, alloc_len);
            }
            Command::RequestSense { desc, .. } => {
                let _ = request_sense::request_sense_data(None, desc);
            }
            Command::ReadCapacity10 => {
                let _ = capacity::read_capacity10(g);
            }
            Command::ReadCapacity16 { .. } => {
                let _ = capacity::read_capacity16(g);
            }
            _ => {}
        }
    }

    #[test]
    fn fuzz_decode_no_panic() {
        let mut rng = Rng(0x5EED_0001_CAFE_F00D);
        let mut geoms = vec![
            geom(),
            thin(),
            LuGeometry::new(4096, 0),
            LuGeometry::new(512, u64::MAX),
        ];
        let mut nolimit = LuGeometry::new(512, 1 << 40);
        nolimit.max_transfer_blocks = 0;
        nolimit.max_write_same_blocks = 0;
        nolimit.max_compare_write_blocks = 255;
        nolimit.physical_block_exp = 15;
        geoms.push(nolimit);
        let opcodes: Vec<u8> = crate::scsi::opcodes::SUPPORTED
            .iter()
            .map(|i| i.opcode)
            .chain([0x5E, 0x5F, 0x16, 0x17, 0x56, 0x57, 0x7F])
            .collect();
        let mut decoded = 0;
        for i in 0..60_000 {
            let len = rng.below(33);
            let mut c: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if !c.is_empty() && i % 4 != 0 {
                c[0] = opcodes[rng.below(opcodes.len())];
                if c.len() > 1 && rng.below(2) == 0 {
                    if let Some(info) = crate::scsi::opcodes::SUPPORTED
                        .iter()
                        .find(|e| e.opcode == c[0])
                    {
                        if let Some(sa) = info.service_action {
                            c[1] = (c[1] & 0xE0) | sa;
                        }
                    }
                    // Mostly-zero CDBs get further into the checks.
                    for b in c.iter_mut().skip(2) {
                        if rng.below(3) != 0 {
                            *b = 0;
                        }
                    }
                }
            }
            for g in &geoms {
                if let Ok(cmd) = decode(&c, g) {
                    decoded += 1;
                    exercise(&cmd, g);
                }
                if let Ok(cmd) = decode_any(&c, g) {
                    exercise(&cmd, g);
                }
            }
        }
        assert!(
            decoded > 1000,
            "the fuzzer should reach the decoders ({decoded})"
        );
    }

    #[test]
    fn fuzz_parameter_lists_no_panic() {
        use crate::scsi::{lba_status, mode, unmap};
        let mut rng = Rng(0xF00D_BEEF_0BAD_CAFE);
        let state = mode::ModeState::default();
        let geoms = [geom(), thin(), LuGeometry::new(4096, 0)];
        // Valid MODE SENSE output is a valid MODE SELECT list: mutate it.
        let mut seeds = Vec::new();
        for ten in [false, true] {
            for dbd in [false, true] {
                let ms = Command::ModeSense {
                    ten,
                    dbd,
                    llbaa: ten,
                    pc: 0,
                    page: 0x3F,
                    subpage: 0xFF,
                    alloc_len: 4096,
                };
                seeds.push((ten, mode::mode_sense(&ms, &state, &geoms[0]).unwrap()));
            }
        }
        let mut out = Vec::new();
        let mut accepted = 0;
        for i in 0..40_000 {
            let g = &geoms[i % geoms.len()];
            let (ten, mut list) = if i % 3 == 0 {
                let n = rng.below(120);
                (
                    rng.below(2) == 1,
                    (0..n).map(|_| rng.byte()).collect::<Vec<u8>>(),
                )
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..rng.below(4) {
                if !list.is_empty() {
                    let at = rng.below(list.len());
                    list[at] = rng.byte();
                }
            }
            if rng.below(5) == 0 {
                list.truncate(rng.below(list.len() + 1));
            }
            if mode::mode_select(ten, true, false, &list, &state, g).is_ok() {
                accepted += 1;
            }
            let _ = mode::mode_select(ten, rng.below(2) == 0, rng.below(2) == 0, &list, &state, g);

            // UNMAP: random lists, and well-formed headers with random descriptors.
            let n = rng.below(80);
            let mut ul: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            if ul.len() >= 8 && rng.below(2) == 0 {
                let d = (ul.len() - 8) as u16;
                ul[0..2].copy_from_slice(&(d + 6).to_be_bytes());
                ul[2..4].copy_from_slice(&d.to_be_bytes());
            }
            let _ = unmap::parse_unmap_into(&ul, g, &mut out);
            assert!(out.len() <= g.max_unmap_descriptors as usize);

            // GET LBA STATUS from arbitrary backend extents.
            let pick = |rng: &mut Rng| match rng.below(4) {
                0 => rng.next(),
                1 => u64::MAX - rng.below(4) as u64,
                _ => rng.below(2000) as u64,
            };
            let runs: Vec<(u64, u64, bool)> = (0..rng.below(6))
                .map(|_| (pick(&mut rng), pick(&mut rng), rng.below(2) == 0))
                .collect();
            let ext: Vec<lba_status::LbaExtent> = runs
                .iter()
                .map(|&(lba, blocks, mapped)| lba_status::LbaExtent {
                    lba,
                    blocks,
                    mapped,
                })
                .collect();
            let alloc = (rng.next() as u32) >> rng.below(32);
            let start = pick(&mut rng);
            let _ = lba_status::get_lba_status(start, &ext, g, alloc);
            let d = lba_status::get_lba_status_data(&runs, alloc);
            assert!(d.len() >= 8);
            assert_eq!((d.len() - 8) % 16, 0);
        }
        assert!(
            accepted > 100,
            "mutations should often stay valid ({accepted})"
        );
    }
}
