//! Operation codes and the table of supported commands: the single source of truth for "what is
//! implemented". [`super::cdb::decode`] refuses anything not in [`SUPPORTED`] before looking at
//! its fields, and REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) reports exactly this table.
//!
//! CDB lengths follow the group code in the top three bits of the opcode (SPC-4 §4.2.5.1):
//! group 0 is 6 bytes, groups 1 and 2 are 10, group 4 is 16, group 5 is 12; group 3 (7Fh is the
//! variable-length CDB) and the vendor-specific groups 6 and 7 are not implemented.
//!
//! Traps:
//! - REPORTING OPTIONS 001b on an opcode that has service actions, or 010b on one that has none,
//!   is INVALID FIELD IN CDB (libiscsi `ReportSupportedOpcodes.OneCommand` checks both); an opcode
//!   we do not implement at all is answered with SUPPORT=001b, not with an error.
//! - The first byte of the CDB USAGE DATA is the opcode itself and, for a command with a service
//!   action, the service action bits of byte 1 hold the service action value (SPC-4 §6.35.3).
//! - Byte 1 of the usage data shows DPO (bit 4) wherever the decoder accepts it: READ, WRITE,
//!   VERIFY and WRITE AND VERIFY (libiscsi `Verify*.Dpo`/`WriteVerify*.Dpo` expect it there because
//!   the mode parameter header reports DPOFUA=1), FUA (bit 3) on READ/WRITE/ORWRITE/COMPARE AND
//!   WRITE, and the BYTCHK values we accept (01b for WRITE AND VERIFY, 01b and 11b for VERIFY).
//! - UNMAP is only in the table for a thin-provisioned unit: a fully provisioned one reports
//!   LBPU=0, so UNMAP must be INVALID COMMAND OPERATION CODE there, and RSOC must agree.
//! - PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE are decoded by [`super::cdb::decode_any`] but
//!   are not in the table yet, so the dispatcher refuses them.

use super::cdb::Command;
use super::geometry::LuGeometry;
use super::sense::CommandError;

pub const TEST_UNIT_READY: u8 = 0x00;
pub const REQUEST_SENSE: u8 = 0x03;
pub const READ_6: u8 = 0x08;
pub const WRITE_6: u8 = 0x0A;
pub const INQUIRY: u8 = 0x12;
pub const MODE_SELECT_6: u8 = 0x15;
pub const RESERVE_6: u8 = 0x16;
pub const RELEASE_6: u8 = 0x17;
pub const MODE_SENSE_6: u8 = 0x1A;
pub const START_STOP_UNIT: u8 = 0x1B;
pub const READ_CAPACITY_10: u8 = 0x25;
pub const READ_10: u8 = 0x28;
pub const WRITE_10: u8 = 0x2A;
pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
pub const VERIFY_10: u8 = 0x2F;
pub const PRE_FETCH_10: u8 = 0x34;
pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
pub const WRITE_SAME_10: u8 = 0x41;
pub const UNMAP: u8 = 0x42;
pub const MODE_SELECT_10: u8 = 0x55;
pub const RESERVE_10: u8 = 0x56;
pub const RELEASE_10: u8 = 0x57;
pub const MODE_SENSE_10: u8 = 0x5A;
pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
pub const VARIABLE_LENGTH_CDB: u8 = 0x7F;
pub const READ_16: u8 = 0x88;
pub const COMPARE_AND_WRITE: u8 = 0x89;
pub const WRITE_16: u8 = 0x8A;
pub const ORWRITE_16: u8 = 0x8B;
pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
pub const VERIFY_16: u8 = 0x8F;
pub const PRE_FETCH_16: u8 = 0x90;
pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
pub const WRITE_SAME_16: u8 = 0x93;
pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub const SERVICE_ACTION_OUT_16: u8 = 0x9F;
pub const REPORT_LUNS: u8 = 0xA0;
pub const MAINTENANCE_IN: u8 = 0xA3;
pub const MAINTENANCE_OUT: u8 = 0xA4;
pub const READ_12: u8 = 0xA8;
pub const WRITE_12: u8 = 0xAA;
pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
pub const VERIFY_12: u8 = 0xAF;

/// SERVICE ACTION IN(16) 10h: READ CAPACITY(16).
pub const SA_READ_CAPACITY_16: u8 = 0x10;
/// SERVICE ACTION IN(16) 12h: GET LBA STATUS.
pub const SA_GET_LBA_STATUS: u8 = 0x12;
/// MAINTENANCE IN 0Ah: REPORT TARGET PORT GROUPS.
pub const SA_REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
/// MAINTENANCE IN 0Ch: REPORT SUPPORTED OPERATION CODES.
pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;

/// Nominal command processing timeout reported with RCTD=1 (0 = not specified).
pub const NOMINAL_TIMEOUT_SECS: u32 = 0;
/// Recommended command timeout reported with RCTD=1 (Linux's default SCSI timeout).
pub const RECOMMENDED_TIMEOUT_SECS: u32 = 30;

/// CDB length implied by the opcode's group code (SPC-4 §4.2.5.1), `None` for the reserved,
/// variable-length and vendor-specific groups.
pub const fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Whether the opcode carries a SERVICE ACTION field in bits 4..0 of CDB byte 1.
pub const fn has_service_action_field(opcode: u8) -> bool {
    matches!(
        opcode,
        PERSISTENT_RESERVE_IN
            | PERSISTENT_RESERVE_OUT
            | SERVICE_ACTION_IN_16
            | SERVICE_ACTION_OUT_16
            | MAINTENANCE_IN
            | MAINTENANCE_OUT
    )
}

/// One supported command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpcodeInfo {
    pub opcode: u8,
    /// `Some` for commands selected by a service action.
    pub service_action: Option<u8>,
    pub name: &'static str,
    /// CDB USAGE DATA: one byte per CDB byte, a 1 bit for every bit the device server evaluates
    /// (SPC-4 §6.35.3). Its length is the CDB length.
    pub usage: &'static [u8],
    /// Only supported on thin-provisioned units (LBPU).
    pub thin_only: bool,
}

impl OpcodeInfo {
    pub const fn cdb_len(&self) -> usize {
        self.usage.len()
    }

    /// Whether the command is available on a unit with this geometry.
    pub const fn available(&self, geom: &LuGeometry) -> bool {
        !self.thin_only || geom.thin
    }
}

const fn e(opcode: u8, name: &'static str, usage: &'static [u8]) -> OpcodeInfo {
    OpcodeInfo {
        opcode,
        service_action: None,
        name,
        usage,
        thin_only: false,
    }
}

const fn sa(opcode: u8, sa: u8, name: &'static str, usage: &'static [u8]) -> OpcodeInfo {
    OpcodeInfo {
        opcode,
        service_action: Some(sa),
        name,
        usage,
        thin_only: false,
    }
}

const fn thin(mut info: OpcodeInfo) -> OpcodeInfo {
    info.thin_only = true;
    info
}

const FF: u8 = 0xFF;

/// Every command the dispatcher accepts, in opcode order. The control byte's usage is 0: NACA is
/// not supported (a CDB with NACA=1 is refused) and LINK is obsolete.
#[rustfmt::skip]
pub static SUPPORTED: &[OpcodeInfo] = &[
    e(TEST_UNIT_READY, "TEST UNIT READY", &[TEST_UNIT_READY, 0, 0, 0, 0, 0]),
    e(REQUEST_SENSE, "REQUEST SENSE", &[REQUEST_SENSE, 0x01, 0, 0, FF, 0]),
    e(READ_6, "READ(6)", &[READ_6, 0x1F, FF, FF, FF, 0]),
    e(WRITE_6, "WRITE(6)", &[WRITE_6, 0x1F, FF, FF, FF, 0]),
    e(INQUIRY, "INQUIRY", &[INQUIRY, 0x01, FF, FF, FF, 0]),
    e(MODE_SELECT_6, "MODE SELECT(6)", &[MODE_SELECT_6, 0x11, 0, 0, FF, 0]),
    e(RESERVE_6, "RESERVE(6)", &[RESERVE_6, 0, 0, 0, 0, 0]),
    e(RELEASE_6, "RELEASE(6)", &[RELEASE_6, 0, 0, 0, 0, 0]),
    e(MODE_SENSE_6, "MODE SENSE(6)", &[MODE_SENSE_6, 0x08, FF, FF, FF, 0]),
    e(START_STOP_UNIT, "START STOP UNIT", &[START_STOP_UNIT, 0x01, 0, 0, 0xF7, 0]),
    e(READ_CAPACITY_10, "READ CAPACITY(10)", &[READ_CAPACITY_10, 0, FF, FF, FF, FF, 0, 0, 0x01, 0]),
    e(READ_10, "READ(10)", &[READ_10, 0x18, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(WRITE_10, "WRITE(10)", &[WRITE_10, 0x18, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(WRITE_AND_VERIFY_10, "WRITE AND VERIFY(10)",
        &[WRITE_AND_VERIFY_10, 0x12, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(VERIFY_10, "VERIFY(10)", &[VERIFY_10, 0x16, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(PRE_FETCH_10, "PRE-FETCH(10)", &[PRE_FETCH_10, 0x02, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(SYNCHRONIZE_CACHE_10, "SYNCHRONIZE CACHE(10)",
        &[SYNCHRONIZE_CACHE_10, 0x02, FF, FF, FF, FF, 0, FF, FF, 0]),
    e(WRITE_SAME_10, "WRITE SAME(10)", &[WRITE_SAME_10, 0x08, FF, FF, FF, FF, 0, FF, FF, 0]),
    thin(e(UNMAP, "UNMAP", &[UNMAP, 0, 0, 0, 0, 0, 0, FF, FF, 0])),
    e(MODE_SELECT_10, "MODE SELECT(10)", &[MODE_SELECT_10, 0x11, 0, 0, 0, 0, 0, FF, FF, 0]),
    e(RESERVE_10, "RESERVE(10)", &[RESERVE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(RELEASE_10, "RELEASE(10)", &[RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    e(MODE_SENSE_10, "MODE SENSE(10)", &[MODE_SENSE_10, 0x18, FF, FF, 0, 0, 0, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_IN, 0x00, "PERSISTENT RESERVE IN (READ KEYS)", &[PERSISTENT_RESERVE_IN, 0x00, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_IN, 0x01, "PERSISTENT RESERVE IN (READ RESERVATION)", &[PERSISTENT_RESERVE_IN, 0x01, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_IN, 0x02, "PERSISTENT RESERVE IN (REPORT CAPABILITIES)", &[PERSISTENT_RESERVE_IN, 0x02, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_IN, 0x03, "PERSISTENT RESERVE IN (READ FULL STATUS)", &[PERSISTENT_RESERVE_IN, 0x03, 0, 0, 0, 0, 0, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x00, "PERSISTENT RESERVE OUT (REGISTER)", &[PERSISTENT_RESERVE_OUT, 0x00, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x01, "PERSISTENT RESERVE OUT (RESERVE)", &[PERSISTENT_RESERVE_OUT, 0x01, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x02, "PERSISTENT RESERVE OUT (RELEASE)", &[PERSISTENT_RESERVE_OUT, 0x02, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x03, "PERSISTENT RESERVE OUT (CLEAR)", &[PERSISTENT_RESERVE_OUT, 0x03, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x04, "PERSISTENT RESERVE OUT (PREEMPT)", &[PERSISTENT_RESERVE_OUT, 0x04, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x05, "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)", &[PERSISTENT_RESERVE_OUT, 0x05, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x06, "PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY)", &[PERSISTENT_RESERVE_OUT, 0x06, FF, 0, 0, FF, FF, FF, FF, 0]),
    sa(PERSISTENT_RESERVE_OUT, 0x07, "PERSISTENT RESERVE OUT (REGISTER AND MOVE)", &[PERSISTENT_RESERVE_OUT, 0x07, FF, 0, 0, FF, FF, FF, FF, 0]),
    e(READ_16, "READ(16)", &[READ_16, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(COMPARE_AND_WRITE, "COMPARE AND WRITE",
        &[COMPARE_AND_WRITE, 0x08, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0, 0]),
    e(WRITE_16, "WRITE(16)",
        &[WRITE_16, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(ORWRITE_16, "ORWRITE(16)",
        &[ORWRITE_16, 0x08, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(WRITE_AND_VERIFY_16, "WRITE AND VERIFY(16)",
        &[WRITE_AND_VERIFY_16, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(VERIFY_16, "VERIFY(16)",
        &[VERIFY_16, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(PRE_FETCH_16, "PRE-FETCH(16)",
        &[PRE_FETCH_16, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(SYNCHRONIZE_CACHE_16, "SYNCHRONIZE CACHE(16)",
        &[SYNCHRONIZE_CACHE_16, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(WRITE_SAME_16, "WRITE SAME(16)",
        &[WRITE_SAME_16, 0x09, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    sa(SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, "READ CAPACITY(16)",
        &[SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, 0]),
    sa(SERVICE_ACTION_IN_16, SA_GET_LBA_STATUS, "GET LBA STATUS",
        &[SERVICE_ACTION_IN_16, SA_GET_LBA_STATUS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(REPORT_LUNS, "REPORT LUNS", &[REPORT_LUNS, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    sa(MAINTENANCE_IN, SA_REPORT_TARGET_PORT_GROUPS, "REPORT TARGET PORT GROUPS",
        &[MAINTENANCE_IN, 0xE0 | SA_REPORT_TARGET_PORT_GROUPS, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0]),
    sa(MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES, "REPORT SUPPORTED OPERATION CODES",
        &[MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(READ_12, "READ(12)", &[READ_12, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(WRITE_12, "WRITE(12)", &[WRITE_12, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(WRITE_AND_VERIFY_12, "WRITE AND VERIFY(12)",
        &[WRITE_AND_VERIFY_12, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
    e(VERIFY_12, "VERIFY(12)", &[VERIFY_12, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),
];

/// The supported entry for `opcode` (and `service_action`, for opcodes that have one) on a unit
/// with geometry `geom`.
pub fn lookup(
    opcode: u8,
    service_action: Option<u8>,
    geom: &LuGeometry,
) -> Option<&'static OpcodeInfo> {
    SUPPORTED.iter().find(|i| {
        i.opcode == opcode
            && i.available(geom)
            && (i.service_action.is_none() || i.service_action == service_action)
    })
}

/// Entries for `opcode` available on `geom`.
fn entries(opcode: u8, geom: &LuGeometry) -> impl Iterator<Item = &'static OpcodeInfo> + '_ {
    SUPPORTED
        .iter()
        .filter(move |i| i.opcode == opcode && i.available(geom))
}

/// Refuses a CDB whose command is not in the table: INVALID COMMAND OPERATION CODE for an
/// unknown opcode, INVALID FIELD IN CDB (pointing at the SERVICE ACTION field) for an unknown
/// service action of a supported opcode (SPC-4 §4.2.5.1).
pub fn check_supported(cdb: &[u8], geom: &LuGeometry) -> Result<&'static OpcodeInfo, CommandError> {
    let Some(&opcode) = cdb.first() else {
        return Err(CommandError::invalid_opcode());
    };
    if has_service_action_field(opcode) {
        if entries(opcode, geom).next().is_none() {
            return Err(CommandError::invalid_opcode());
        }
        let service_action = cdb.get(1).map_or(0, |b| b & 0x1F);
        lookup(opcode, Some(service_action), geom)
            .ok_or(CommandError::invalid_field_in_cdb(1, Some(4)))
    } else {
        lookup(opcode, None, geom).ok_or(CommandError::invalid_opcode())
    }
}

fn push_timeouts(out: &mut Vec<u8>) {
    // Command timeouts descriptor (SPC-4 §6.35.4): DESCRIPTOR LENGTH 000Ah.
    out.extend_from_slice(&[0x00, 0x0A, 0x00, 0x00]);
    out.extend_from_slice(&NOMINAL_TIMEOUT_SECS.to_be_bytes());
    out.extend_from_slice(&RECOMMENDED_TIMEOUT_SECS.to_be_bytes());
}

fn one_command(info: Option<&OpcodeInfo>, rctd: bool) -> Vec<u8> {
    match info {
        None => vec![0, 0x01, 0, 0], // SUPPORT=001b: not supported, CDB SIZE 0
        Some(info) => {
            let mut out = Vec::with_capacity(4 + info.cdb_len() + 12);
            out.push(0);
            out.push(if rctd { 0x80 } else { 0 } | 0x03); // CTDP, SUPPORT=011b (standard)
            out.extend_from_slice(&(info.cdb_len() as u16).to_be_bytes());
            out.extend_from_slice(info.usage);
            if rctd {
                push_timeouts(&mut out);
            }
            out
        }
    }
}

/// REPORT SUPPORTED OPERATION CODES parameter data for `cmd`, which must be
/// [`Command::ReportSupportedOpcodes`]; see [`report_supported_opcodes_for`].
pub fn report_supported_opcodes(cmd: &Command, geom: &LuGeometry) -> Result<Vec<u8>, CommandError> {
    match *cmd {
        Command::ReportSupportedOpcodes {
            rctd,
            options,
            opcode,
            service_action,
            ..
        } => report_supported_opcodes_for(rctd, options, opcode, service_action, geom),
        _ => Err(CommandError::invalid_opcode()),
    }
}

/// REPORT SUPPORTED OPERATION CODES parameter data (SPC-4 §6.35) for reporting options
/// `options` (000b all commands, 001b one opcode without service action, 010b opcode and
/// service action, 011b opcode and service action if it has one), with command timeouts
/// descriptors when `rctd`. The caller truncates to the allocation length.
pub fn report_supported_opcodes_for(
    rctd: bool,
    options: u8,
    opcode: u8,
    service_action: u16,
    geom: &LuGeometry,
) -> Result<Vec<u8>, CommandError> {
    let bad_options = CommandError::invalid_field_in_cdb(2, Some(2));
    let with_sa = || entries(opcode, geom).any(|i| i.service_action.is_some());
    let by_sa =
        || entries(opcode, geom).find(|i| i.service_action.map(u16::from) == Some(service_action));
    let plain = || entries(opcode, geom).find(|i| i.service_action.is_none());
    match options {
        0 => {
            let per = if rctd { 20 } else { 8 };
            let list: Vec<&OpcodeInfo> = SUPPORTED.iter().filter(|i| i.available(geom)).collect();
            let mut out = Vec::with_capacity(4 + per * list.len());
            out.extend_from_slice(&((per * list.len()) as u32).to_be_bytes());
            for info in list {
                out.push(info.opcode);
                out.push(0);
                out.extend_from_slice(&u16::from(info.service_action.unwrap_or(0)).to_be_bytes());
                out.push(0);
                out.push(if rctd { 0x02 } else { 0 } | u8::from(info.service_action.is_some()));
                out.extend_from_slice(&(info.cdb_len() as u16).to_be_bytes());
                if rctd {
                    push_timeouts(&mut out);
                }
            }
            Ok(out)
        }
        1 => {
            if with_sa() {
                return Err(bad_options);
            }
            Ok(one_command(plain(), rctd))
        }
        2 => {
            if plain().is_some() {
                return Err(bad_options);
            }
            Ok(one_command(by_sa(), rctd))
        }
        3 => {
            if with_sa() {
                Ok(one_command(by_sa(), rctd))
            } else {
                Ok(one_command(plain(), rctd))
            }
        }
        _ => Err(bad_options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    fn thick() -> LuGeometry {
        LuGeometry::new(512, 1 << 20)
    }

    fn thin_geom() -> LuGeometry {
        let mut g = thick();
        g.thin = true;
        g
    }

    #[test]
    fn table_is_consistent() {
        for (n, i) in SUPPORTED.iter().enumerate() {
            assert_eq!(i.usage[0], i.opcode, "{}", i.name);
            assert_eq!(Some(i.cdb_len()), cdb_len(i.opcode), "{}", i.name);
            assert_eq!(
                i.service_action.is_some(),
                has_service_action_field(i.opcode),
                "{}",
                i.name
            );
            if let Some(sa) = i.service_action {
                assert_eq!(i.usage[1] & 0x1F, sa, "{}", i.name);
            }
            assert_eq!(
                i.usage[i.cdb_len() - 1],
                0,
                "control byte usage of {}",
                i.name
            );
            for other in &SUPPORTED[n + 1..] {
                assert!(
                    (other.opcode, other.service_action) > (i.opcode, i.service_action),
                    "sorted and unique at {}",
                    other.name
                );
            }
        }
        assert!(lookup(PERSISTENT_RESERVE_IN, Some(3), &thick()).is_some());
        assert!(lookup(PERSISTENT_RESERVE_IN, Some(4), &thick()).is_none());
        assert!(lookup(PERSISTENT_RESERVE_OUT, Some(7), &thick()).is_some());
        assert!(lookup(RESERVE_6, None, &thick()).is_some());
    }

    #[test]
    fn dpo_and_bytchk_usage_of_verify_commands() {
        let g = thick();
        for (opcode, byte1) in [
            (VERIFY_10, 0x16),
            (VERIFY_12, 0x16),
            (VERIFY_16, 0x16),
            (WRITE_AND_VERIFY_10, 0x12),
            (WRITE_AND_VERIFY_12, 0x12),
            (WRITE_AND_VERIFY_16, 0x12),
        ] {
            let d = report_supported_opcodes_for(false, 1, opcode, 0, &g).unwrap();
            assert_eq!(d[5], byte1, "usage byte 1 of {opcode:02x}");
            assert_eq!(d[5] & 0x10, 0x10, "DPO usable in {opcode:02x}");
            // The decoder accepts what the usage data advertises: DPO with the BYTCHK bits.
            let mut cdb = [0u8; 16];
            cdb[0] = opcode;
            cdb[1] = byte1;
            assert!(
                crate::scsi::cdb::decode(&cdb, &g).is_ok(),
                "{opcode:02x} with byte 1 = {byte1:02x}"
            );
        }
    }

    #[test]
    fn unmap_only_when_thin() {
        assert!(lookup(UNMAP, None, &thick()).is_none());
        assert!(lookup(UNMAP, None, &thin_geom()).is_some());
        let e = check_supported(&[UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0], &thick()).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_COMMAND_OPERATION_CODE);
    }

    #[test]
    fn check_supported_errors() {
        let g = thick();
        assert!(check_supported(&[], &g).is_err());
        let e = check_supported(&[0xC0], &g).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_COMMAND_OPERATION_CODE);
        // Unknown service action of a supported opcode: INVALID FIELD IN CDB at byte 1 bit 4.
        let e = check_supported(&[SERVICE_ACTION_IN_16, 0x11], &g).unwrap_err();
        let s = e.sense.unwrap();
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(s.sense_key_specific, Some([0xCC, 0, 1]));
        // Opcode with service actions none of which is supported: invalid opcode.
        let e = check_supported(&[SERVICE_ACTION_OUT_16, 0], &g).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_COMMAND_OPERATION_CODE);
        assert_eq!(
            check_supported(&[MAINTENANCE_IN, 0x0C], &g).unwrap().name,
            "REPORT SUPPORTED OPERATION CODES"
        );
    }

    #[test]
    fn rsoc_from_command() {
        let g = thick();
        let cmd = Command::ReportSupportedOpcodes {
            rctd: false,
            options: 1,
            opcode: READ_16,
            service_action: 0,
            alloc_len: 64,
        };
        assert_eq!(
            report_supported_opcodes(&cmd, &g).unwrap(),
            report_supported_opcodes_for(false, 1, READ_16, 0, &g).unwrap()
        );
        assert!(report_supported_opcodes(&Command::TestUnitReady, &g).is_err());
    }

    #[test]
    fn rsoc_all() {
        let g = thick();
        let d = report_supported_opcodes_for(false, 0, 0, 0, &g).unwrap();
        let n = SUPPORTED.len() - 1; // UNMAP missing on a thick unit
        assert_eq!(d.len(), 4 + 8 * n);
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize, 8 * n);
        // READ(10) descriptor.
        let at = 4 + 8 * SUPPORTED.iter().position(|i| i.opcode == READ_10).unwrap();
        assert_eq!(&d[at..at + 8], &[READ_10, 0, 0, 0, 0, 0x00, 0, 10]);
        // READ CAPACITY(16): SERVACTV, SA 10h, 16 bytes.
        let rc16 = SUPPORTED
            .iter()
            .filter(|i| i.available(&g))
            .position(|i| i.name == "READ CAPACITY(16)")
            .unwrap();
        let at = 4 + 8 * rc16;
        assert_eq!(&d[at..at + 8], &[0x9E, 0, 0, 0x10, 0, 0x01, 0, 16]);
        assert!(!d
            .chunks(8)
            .skip(1)
            .any(|c| c[0] == UNMAP && c[1] == 0 && c[7] == 10));

        let d = report_supported_opcodes_for(true, 0, 0, 0, &thin_geom()).unwrap();
        assert_eq!(d.len(), 4 + 20 * SUPPORTED.len());
        assert_eq!(
            &d[4..24],
            &[0, 0, 0, 0, 0, 0x02, 0, 6, 0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30]
        );
    }

    #[test]
    fn rsoc_one_command() {
        let g = thick();
        let d = report_supported_opcodes_for(false, 1, READ_10, 0, &g).unwrap();
        assert_eq!(
            d,
            vec![0, 0x03, 0, 10, READ_10, 0x18, FF, FF, FF, FF, 0, FF, FF, 0]
        );
        let d = report_supported_opcodes_for(true, 1, INQUIRY, 0, &g).unwrap();
        assert_eq!(&d[..10], &[0, 0x83, 0, 6, INQUIRY, 0x01, FF, FF, FF, 0]);
        assert_eq!(&d[10..], &[0, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 30]);
        // Not supported at all.
        assert_eq!(
            report_supported_opcodes_for(false, 1, 0xC5, 0, &g).unwrap(),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            report_supported_opcodes_for(false, 1, UNMAP, 0, &g).unwrap(),
            vec![0, 1, 0, 0]
        );
        assert_eq!(
            report_supported_opcodes_for(false, 1, UNMAP, 0, &thin_geom()).unwrap()[1],
            3
        );
        // Opcode with service actions under option 001b: error.
        let e = report_supported_opcodes_for(false, 1, SERVICE_ACTION_IN_16, 0x10, &g).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_FIELD_IN_CDB);
    }

    #[test]
    fn rsoc_service_action() {
        let g = thick();
        let d = report_supported_opcodes_for(false, 2, SERVICE_ACTION_IN_16, 0x10, &g).unwrap();
        assert_eq!(&d[..6], &[0, 0x03, 0, 16, 0x9E, 0x10]);
        assert_eq!(d.len(), 20);
        // Unknown SA of a supported opcode: not supported.
        assert_eq!(
            report_supported_opcodes_for(false, 2, SERVICE_ACTION_IN_16, 0x13, &g).unwrap(),
            vec![0, 1, 0, 0]
        );
        // Opcode without service actions under option 010b: error.
        assert!(report_supported_opcodes_for(false, 2, READ_10, 0, &g).is_err());
        // 011b: either kind.
        assert_eq!(
            report_supported_opcodes_for(false, 3, READ_16, 0x55, &g).unwrap()[1],
            3
        );
        assert_eq!(
            report_supported_opcodes_for(false, 3, MAINTENANCE_IN, 0x0A, &g).unwrap()[5],
            0xEA
        );
        assert_eq!(
            report_supported_opcodes_for(false, 3, MAINTENANCE_IN, 0x0B, &g).unwrap()[1],
            1
        );
        // Reserved reporting options.
        for o in 4..8 {
            let e = report_supported_opcodes_for(false, o, 0, 0, &g).unwrap_err();
            assert_eq!(e.sense.unwrap().sense_key_specific, Some([0xCA, 0, 2]));
        }
    }

    #[test]
    fn every_supported_entry_reports_in_one_command_format() {
        // What libiscsi's ReportSupportedOpcodes.OneCommand does, per descriptor.
        let g = thin_geom();
        for i in SUPPORTED {
            let options = if i.service_action.is_some() { 2 } else { 1 };
            let d = report_supported_opcodes_for(
                false,
                options,
                i.opcode,
                u16::from(i.service_action.unwrap_or(0)),
                &g,
            )
            .unwrap();
            assert_eq!(d[1] & 0x07, 3, "{}", i.name);
            assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), i.cdb_len());
            assert_eq!(d[4], i.opcode);
            let other = if options == 1 { 2 } else { 1 };
            assert!(
                report_supported_opcodes_for(false, other, i.opcode, 0, &g).is_err(),
                "{}",
                i.name
            );
        }
    }
}
