//! Which commands an I_T nexus may run under the reservations of the logical unit: the
//! persistent reservation conflict tables of SPC-4 §5.9.1 ("SPC commands that are allowed in
//! the presence of various reservations" and "PERSISTENT RESERVE OUT service actions that are
//! allowed in the presence of various reservations") and the SBC-3 table of block commands
//! allowed in the presence of reservations, and the legacy RESERVE/RELEASE rules of SPC-2
//! §5.5.1 with the exceptions of SPC-4 §5.9.3.
//!
//! Each command falls in one class; the tables then read, for an I_T nexus that does not hold
//! the reservation:
//!
//! | [`AccessClass`] | WE | EA | WERO, WEAR: registered / not | EARO, EAAR: registered / not |
//! |-----------------|----|----|------------------------------|------------------------------|
//! | `Allowed`       | A  | A  | A / A                        | A / A                        |
//! | `Read`          | A  | C  | A / A                        | A / C                        |
//! | `Write`         | C  | C  | A / C                        | A / C                        |
//!
//! (A: allowed; C: RESERVATION CONFLICT.)
//!
//! Registered I_T nexuses that do not hold a WE or EA reservation are treated like any other
//! ("from any I_T nexus"); under the registrants only and all registrants types registration is
//! what gives access. The holder (every registrant, for the all registrants types) runs anything.
//!
//! - Allowed: INQUIRY, REQUEST SENSE, TEST UNIT READY (ALLOW COMMANDS 011b), REPORT LUNS,
//!   PERSISTENT RESERVE IN, LOG SENSE, READ CAPACITY(10)/(16), REPORT TARGET PORT GROUPS and the
//!   other REPORT service actions of MAINTENANCE IN, READ MEDIA SERIAL NUMBER, REPORT REFERRALS,
//!   ACCESS CONTROL IN/OUT, PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b, START STOP UNIT with
//!   START=1 and POWER CONDITION 0h.
//! - Read: READ, VERIFY, PRE-FETCH, GET LBA STATUS, MODE SENSE, READ BUFFER, READ DEFECT DATA,
//!   READ LONG, RECEIVE DIAGNOSTIC RESULTS, READ ATTRIBUTE, RECEIVE COPY RESULTS, SECURITY
//!   PROTOCOL IN, REPORT SUPPORTED OPERATION CODES, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS,
//!   MANAGEMENT PROTOCOL IN.
//! - Write: everything else, unknown commands included (a command added later without a row here
//!   must not slip past a reservation): WRITE*, WRITE AND VERIFY, WRITE SAME, UNMAP, COMPARE AND
//!   WRITE, ORWRITE, SYNCHRONIZE CACHE, FORMAT UNIT, MODE SELECT, LOG SELECT, WRITE BUFFER, SEND
//!   DIAGNOSTIC, START STOP UNIT (stop or power condition), SET TARGET PORT GROUPS, ...
//! - PERSISTENT RESERVE OUT and RESERVE/RELEASE pass here: [`super::apply()`] and
//!   [`super::legacy`] decide them (the PERSISTENT RESERVE OUT table is implemented there:
//!   REGISTER is allowed to everyone, RESERVE and REGISTER AND MOVE only to the holder, the rest
//!   to registrants).
//!
//! Legacy reservations (SPC-2 §5.5.1): while another I_T nexus holds a RESERVE(6)/(10)
//! reservation only INQUIRY, REQUEST SENSE, REPORT LUNS, LOG SENSE, REPORT TARGET PORT GROUPS,
//! PREVENT ALLOW MEDIUM REMOVAL with PREVENT 00b and RESERVE/RELEASE (decided by
//! [`super::legacy`]) get through (libiscsi `Reserve6.2Initiators`: MODE SENSE conflicts). TEST
//! UNIT READY conflicts, as on every SPC-2 device and in LIO: that is how a path checker or
//! ESXi sees another host's reservation (multipath's tur checker counts it as a live path).
//! While anyone holds one, every PERSISTENT RESERVE IN and OUT conflicts.
//!
//! Call this after the CDB decoded (an unknown opcode is INVALID COMMAND OPERATION CODE, not a
//! conflict).

use super::state::PrState;
use crate::scsi::nexus::Nexus;
use crate::scsi::opcodes as op;
use crate::scsi::sense::CommandError;

/// How a command is affected by a persistent reservation it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessClass {
    /// Allowed under every reservation.
    Allowed,
    /// Reads the medium or device state: conflicts under the exclusive access types.
    Read,
    /// Changes the medium or device state: conflicts under every type.
    Write,
    /// PERSISTENT RESERVE IN.
    PrIn,
    /// PERSISTENT RESERVE OUT: decided by the service action ([`super::apply()`]).
    PrOut,
    /// RESERVE(6)/(10), RELEASE(6)/(10): decided by [`super::legacy`].
    Legacy,
}

const LOG_SENSE: u8 = 0x4D;
const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
const READ_BUFFER: u8 = 0x3C;
const READ_DEFECT_DATA_10: u8 = 0x37;
const READ_DEFECT_DATA_12: u8 = 0xB7;
const READ_LONG_10: u8 = 0x3E;
const RECEIVE_DIAGNOSTIC_RESULTS: u8 = 0x1C;
const READ_ATTRIBUTE: u8 = 0x8C;
const RECEIVE_COPY_RESULTS: u8 = 0x84;
const SECURITY_PROTOCOL_IN: u8 = 0xA2;
const ACCESS_CONTROL_IN: u8 = 0x86;
const ACCESS_CONTROL_OUT: u8 = 0x87;
const SERVICE_ACTION_IN_12: u8 = 0xAB;
const SA_READ_MEDIA_SERIAL_NUMBER: u8 = 0x01;
const SA_READ_LONG_16: u8 = 0x11;
const SA_REPORT_REFERRALS: u8 = 0x13;
const SA_REPORT_IDENTIFYING_INFORMATION: u8 = 0x05;
const SA_REPORT_ALIASES: u8 = 0x0B;
const SA_REPORT_SUPPORTED_TMFS: u8 = 0x0D;
const SA_REPORT_PRIORITY: u8 = 0x0E;
const SA_REPORT_TIMESTAMP: u8 = 0x0F;
const SA_MANAGEMENT_PROTOCOL_IN: u8 = 0x10;
/// READ(32) and VERIFY(32): service actions of the variable length CDB (bytes 8-9).
const SA32_READ: u16 = 0x0009;
const SA32_VERIFY: u16 = 0x000A;

/// The class of the command in `cdb`.
pub fn classify(cdb: &[u8]) -> AccessClass {
    use AccessClass::*;
    let Some(&opcode) = cdb.first() else {
        return Write;
    };
    let b = |i: usize| cdb.get(i).copied().unwrap_or(0);
    let sa = b(1) & 0x1F;
    match opcode {
        op::INQUIRY
        | op::REQUEST_SENSE
        | op::TEST_UNIT_READY
        | op::REPORT_LUNS
        | op::READ_CAPACITY_10
        | LOG_SENSE
        | ACCESS_CONTROL_IN
        | ACCESS_CONTROL_OUT => Allowed,
        op::PERSISTENT_RESERVE_IN => PrIn,
        op::PERSISTENT_RESERVE_OUT => PrOut,
        op::RESERVE_6 | op::RESERVE_10 | op::RELEASE_6 | op::RELEASE_10 => Legacy,
        // PREVENT 00b allows removal: harmless.
        PREVENT_ALLOW_MEDIUM_REMOVAL if b(4) & 0x03 == 0 => Allowed,
        // START=1 with POWER CONDITION 0h only spins up.
        op::START_STOP_UNIT if b(4) & 0x01 != 0 && b(4) >> 4 == 0 => Allowed,
        op::READ_6
        | op::READ_10
        | op::READ_12
        | op::READ_16
        | op::VERIFY_10
        | op::VERIFY_12
        | op::VERIFY_16
        | op::PRE_FETCH_10
        | op::PRE_FETCH_16
        | op::MODE_SENSE_6
        | op::MODE_SENSE_10
        | READ_BUFFER
        | READ_DEFECT_DATA_10
        | READ_DEFECT_DATA_12
        | READ_LONG_10
        | RECEIVE_DIAGNOSTIC_RESULTS
        | READ_ATTRIBUTE
        | RECEIVE_COPY_RESULTS
        | SECURITY_PROTOCOL_IN => Read,
        op::SERVICE_ACTION_IN_16 => match sa {
            op::SA_READ_CAPACITY_16 | SA_REPORT_REFERRALS => Allowed,
            op::SA_GET_LBA_STATUS | SA_READ_LONG_16 => Read,
            _ => Write,
        },
        SERVICE_ACTION_IN_12 if sa == SA_READ_MEDIA_SERIAL_NUMBER => Allowed,
        op::MAINTENANCE_IN => match sa {
            op::SA_REPORT_TARGET_PORT_GROUPS
            | SA_REPORT_IDENTIFYING_INFORMATION
            | SA_REPORT_ALIASES
            | SA_REPORT_PRIORITY
            | SA_REPORT_TIMESTAMP => Allowed,
            op::SA_REPORT_SUPPORTED_OPCODES
            | SA_REPORT_SUPPORTED_TMFS
            | SA_MANAGEMENT_PROTOCOL_IN => Read,
            _ => Write,
        },
        op::VARIABLE_LENGTH_CDB => match u16::from_be_bytes([b(8), b(9)]) {
            SA32_READ | SA32_VERIFY => Read,
            _ => Write,
        },
        _ => Write,
    }
}

/// Whether `cdb` may run while another I_T nexus holds a legacy reservation (SPC-2 §5.5.1).
fn legacy_allowed(cdb: &[u8]) -> bool {
    let b = |i: usize| cdb.get(i).copied().unwrap_or(0);
    match b(0) {
        op::INQUIRY
        | op::REQUEST_SENSE
        | op::REPORT_LUNS
        | LOG_SENSE
        | op::RESERVE_6
        | op::RESERVE_10
        | op::RELEASE_6
        | op::RELEASE_10 => true,
        PREVENT_ALLOW_MEDIUM_REMOVAL => b(4) & 0x03 == 0,
        op::MAINTENANCE_IN => b(1) & 0x1F == op::SA_REPORT_TARGET_PORT_GROUPS,
        _ => false,
    }
}

/// Whether `nexus` may run `cdb` now: `Err(RESERVATION CONFLICT)` when a reservation forbids
/// it.
pub fn check_access(state: &PrState, nexus: &Nexus, cdb: &[u8]) -> Result<(), CommandError> {
    let class = classify(cdb);
    if let Some(holder) = &state.legacy {
        if matches!(class, AccessClass::PrIn | AccessClass::PrOut) {
            return Err(CommandError::reservation_conflict());
        }
        if !holder.is(nexus) && !legacy_allowed(cdb) {
            return Err(CommandError::reservation_conflict());
        }
    }
    let Some(res) = &state.reservation else {
        return Ok(());
    };
    if state.is_holder(nexus) {
        return Ok(());
    }
    let has_access = res.pr_type.registrants_have_access() && state.is_registered(nexus);
    let conflict = match class {
        AccessClass::Allowed | AccessClass::PrIn | AccessClass::PrOut | AccessClass::Legacy => {
            false
        }
        AccessClass::Read => res.pr_type.exclusive_access() && !has_access,
        AccessClass::Write => !has_access,
    };
    if conflict {
        Err(CommandError::reservation_conflict())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::pr::apply::apply;
    use crate::scsi::pr::legacy::legacy_reserve;
    use crate::scsi::pr::out::PrOut;
    use crate::scsi::pr::state::testutil::{n, nx};
    use crate::scsi::pr::types::PrType::{self, *};

    const READ_10: &[u8] = &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const WRITE_10: &[u8] = &[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    /// Holder 1 (key 1), registrant 2 (key 2), stranger 3, type `t`.
    fn lu(t: PrType) -> PrState {
        let mut s = PrState::new();
        for (i, op) in [
            (1, PrOut::register(0, 1)),
            (2, PrOut::register(0, 2)),
            (1, PrOut::reserve(1, t)),
        ] {
            s = apply(&s, &n(i), &op).unwrap().0;
        }
        s
    }

    fn allowed(s: &PrState, i: u8, cdb: &[u8]) -> bool {
        check_access(s, &n(i), cdb).is_ok()
    }

    #[test]
    fn reads_and_writes_per_type() {
        // (type, registrant reads, registrant writes, stranger reads, stranger writes): the
        // libiscsi ProutReserveAccess* expectations, which are SPC-4's.
        let table = [
            (WriteExclusive, true, false, true, false),
            (ExclusiveAccess, false, false, false, false),
            (WriteExclusiveRegistrantsOnly, true, true, true, false),
            (ExclusiveAccessRegistrantsOnly, true, true, false, false),
            (WriteExclusiveAllRegistrants, true, true, true, false),
            (ExclusiveAccessAllRegistrants, true, true, false, false),
        ];
        for (t, rr, rw, sr, sw) in table {
            let s = lu(t);
            assert!(
                allowed(&s, 1, READ_10) && allowed(&s, 1, WRITE_10),
                "{t:?} holder"
            );
            assert_eq!(allowed(&s, 2, READ_10), rr, "{t:?} registrant read");
            assert_eq!(allowed(&s, 2, WRITE_10), rw, "{t:?} registrant write");
            assert_eq!(allowed(&s, 3, READ_10), sr, "{t:?} stranger read");
            assert_eq!(allowed(&s, 3, WRITE_10), sw, "{t:?} stranger write");
            assert_eq!(
                check_access(&s, &n(3), WRITE_10),
                Err(CommandError::reservation_conflict())
            );
        }
        // No reservation: everything goes, registered or not.
        let s = apply(&PrState::new(), &n(1), &PrOut::register(0, 1))
            .unwrap()
            .0;
        assert!(allowed(&s, 2, WRITE_10) && allowed(&s, 1, WRITE_10));
    }

    #[test]
    fn allowed_everywhere() {
        let cdbs: &[&[u8]] = &[
            &[0x12, 0, 0, 0, 36, 0],                                  // INQUIRY
            &[0x03, 0, 0, 0, 18, 0],                                  // REQUEST SENSE
            &[0x00, 0, 0, 0, 0, 0],                                   // TEST UNIT READY
            &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0],                // REPORT LUNS
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],                       // READ CAPACITY(10)
            &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], // READ CAPACITY(16)
            &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],              // REPORT TARGET PORT GROUPS
            &[0x5E, 0x02, 0, 0, 0, 0, 0, 0, 8, 0],                    // PR IN REPORT CAPABILITIES
            &[0x4D, 0, 0, 0, 0, 0, 0, 0, 0, 0],                       // LOG SENSE
            &[0x1E, 0, 0, 0, 0, 0],                                   // PREVENT ALLOW, allow
            &[0x1B, 0, 0, 0, 0x01, 0],                                // START STOP UNIT, start
            &[0xAB, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],              // READ MEDIA SERIAL NUMBER
        ];
        for t in PrType::ALL {
            let s = lu(t);
            for cdb in cdbs {
                for i in [2, 3] {
                    assert!(allowed(&s, i, cdb), "{t:?} {i} {cdb:02x?}");
                }
            }
        }
    }

    #[test]
    fn read_class_commands() {
        let cdbs: &[&[u8]] = &[
            &[0x1A, 0, 0x3F, 0, 0xFF, 0],             // MODE SENSE(6)
            &[0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 0xFF, 0], // MODE SENSE(10)
            &[0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0],       // VERIFY(10)
            &[0x34, 0, 0, 0, 0, 0, 0, 0, 1, 0],       // PRE-FETCH(10)
            &[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], // GET LBA STATUS
            &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], // REPORT SUPPORTED OPCODES
            &[0x08, 0, 0, 0, 1, 0],                   // READ(6)
            &[0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], // READ(16)
        ];
        for cdb in cdbs {
            assert_eq!(classify(cdb), AccessClass::Read, "{cdb:02x?}");
            assert!(allowed(&lu(WriteExclusive), 3, cdb));
            assert!(!allowed(&lu(ExclusiveAccess), 2, cdb));
            assert!(!allowed(&lu(ExclusiveAccess), 3, cdb));
            assert!(allowed(&lu(ExclusiveAccessRegistrantsOnly), 2, cdb));
            assert!(!allowed(&lu(ExclusiveAccessAllRegistrants), 3, cdb));
        }
    }

    #[test]
    fn write_class_commands() {
        let cdbs: &[&[u8]] = &[
            &[0x0A, 0, 0, 0, 1, 0],                                  // WRITE(6)
            &[0xAA, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],                // WRITE(12)
            &[0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],    // WRITE(16)
            &[0x2E, 0, 0, 0, 0, 0, 0, 0, 1, 0],                      // WRITE AND VERIFY(10)
            &[0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0],                      // WRITE SAME(10)
            &[0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],    // WRITE SAME(16)
            &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0],                     // UNMAP
            &[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],    // COMPARE AND WRITE
            &[0x8B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],    // ORWRITE
            &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0],                      // SYNCHRONIZE CACHE(10)
            &[0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],    // SYNCHRONIZE CACHE(16)
            &[0x15, 0x10, 0, 0, 24, 0],                              // MODE SELECT(6)
            &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 24, 0],                  // MODE SELECT(10)
            &[0x1B, 0, 0, 0, 0x00, 0],                               // START STOP UNIT, stop
            &[0x1B, 0, 0, 0, 0x31, 0],                               // START STOP UNIT, power
            &[0x1E, 0, 0, 0, 1, 0],                                  // PREVENT
            &[0x04, 0, 0, 0, 0, 0],                                  // FORMAT UNIT
            &[0xA4, 0x0A, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0],             // SET TARGET PORT GROUPS
            &[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // unknown SA IN(16)
            &[0xC0, 0, 0, 0, 0, 0],                                  // vendor specific
            &[],
        ];
        for cdb in cdbs {
            assert_eq!(classify(cdb), AccessClass::Write, "{cdb:02x?}");
            for t in PrType::ALL {
                let s = lu(t);
                assert!(allowed(&s, 1, cdb), "the holder");
                assert_eq!(allowed(&s, 2, cdb), t.registrants_have_access(), "{t:?}");
                assert!(!allowed(&s, 3, cdb));
            }
        }
    }

    #[test]
    fn variable_length_cdbs() {
        let mut read32 = [0u8; 32];
        read32[0] = 0x7F;
        read32[7] = 0x18;
        read32[9] = 0x09;
        assert_eq!(classify(&read32), AccessClass::Read);
        let mut write32 = read32;
        write32[9] = 0x0B;
        assert_eq!(classify(&write32), AccessClass::Write);
    }

    #[test]
    fn pr_commands_pass_to_their_own_rules() {
        for t in PrType::ALL {
            let s = lu(t);
            for cdb in [
                &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0][..],
                &[0x5F, 0x00, 0, 0, 0, 0, 0, 0, 24, 0][..],
                &[0x5F, 0x01, 0x01, 0, 0, 0, 0, 0, 24, 0][..],
                &[0x16, 0, 0, 0, 0, 0][..],
                &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            ] {
                assert!(allowed(&s, 3, cdb), "{t:?} {cdb:02x?}");
            }
        }
    }

    #[test]
    fn holder_through_a_wildcard_registration() {
        let mut op = PrOut::register(0, 1);
        op.all_tg_pt = true;
        let s = apply(&PrState::new(), &n(1), &op).unwrap().0;
        let s = apply(&s, &nx(1, 0, 2), &PrOut::reserve(1, ExclusiveAccess))
            .unwrap()
            .0;
        assert!(check_access(&s, &nx(1, 0, 1), WRITE_10).is_ok());
        assert!(check_access(&s, &nx(1, 0, 7), READ_10).is_ok());
        assert!(
            check_access(&s, &nx(1, 1, 1), READ_10).is_err(),
            "another ISID"
        );
    }

    #[test]
    fn legacy_reservation_table() {
        let s = legacy_reserve(&PrState::new(), &n(1), &[0x16, 0, 0, 0, 0, 0]).unwrap();
        // The holder runs anything but PR IN/OUT.
        assert!(allowed(&s, 1, WRITE_10) && allowed(&s, 1, READ_10));
        assert!(!allowed(&s, 1, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0]));
        assert!(!allowed(&s, 1, &[0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0]));
        // Another nexus: only the few.
        for cdb in [
            &[0x12, 0, 0, 0, 36, 0][..],
            &[0x03, 0, 0, 0, 18, 0][..],
            &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0][..],
            &[0x4D, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
            &[0x1E, 0, 0, 0, 0, 0][..],
            &[0x16, 0, 0, 0, 0, 0][..],
            &[0x17, 0, 0, 0, 0, 0][..],
        ] {
            assert!(allowed(&s, 2, cdb), "{cdb:02x?}");
        }
        for cdb in [
            READ_10,
            WRITE_10,
            &[0x00, 0, 0, 0, 0, 0][..],       // TEST UNIT READY
            &[0x1A, 0, 0x3F, 0, 0xFF, 0][..], // MODE SENSE (libiscsi Reserve6.2Initiators)
            &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0x1E, 0, 0, 0, 1, 0][..],
            &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0][..],
            &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0][..],
        ] {
            assert!(!allowed(&s, 2, cdb), "{cdb:02x?}");
        }
        // Another port of the same initiator is another I_T nexus.
        assert!(check_access(&s, &nx(1, 1, 1), WRITE_10).is_err());
    }
}
