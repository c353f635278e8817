//! PERSISTENT RESERVE IN (SPC-4 §6.15): READ KEYS (§6.15.2), READ RESERVATION (§6.15.3),
//! REPORT CAPABILITIES (§6.15.4) and READ FULL STATUS (§6.15.5).
//!
//! Every response is built whole, then truncated to the ALLOCATION LENGTH; the ADDITIONAL LENGTH
//! (LENGTH for REPORT CAPABILITIES) always describes the untruncated data (libiscsi
//! `PrinReadKeys.Truncate`).
//!
//! Traps:
//! - READ RESERVATION reports a RESERVATION KEY of zero for the all registrants types, and READ
//!   FULL STATUS sets R_HOLDER on every registration then (SPC-4 §5.9.10).
//! - READ KEYS lists one key per registration: a registration made with ALL_TG_PT or a format
//!   00b TransportID is listed once, with ALL_TG_PT (READ FULL STATUS) or its TransportID format
//!   telling what it covers.
//! - REPORT CAPABILITIES must be truthful: we handle RESERVE/RELEASE the SPC-4 §5.9.3 way (CRH),
//!   SPEC_I_PT, ALL_TG_PT and APTPL, and all six types. ALLOW COMMANDS is 011b: TEST UNIT READY
//!   is allowed through the write exclusive and exclusive access types, and the read-type
//!   commands of [`super::access`] (MODE SENSE, REPORT SUPPORTED OPERATION CODES, ...) through the
//!   write exclusive types.

use super::state::PrState;
use super::transport_id::TransportId;
use super::types::{prin_sa, PrType};
use crate::scsi::opcodes;
use crate::scsi::sense::{Asc, CommandError};

/// Compatible Reservation Handling (SPC-4 §5.9.3).
pub const CRH: u8 = 0x10;
/// Specify Initiator Ports Capable.
pub const SIP_C: u8 = 0x08;
/// All Target Ports Capable.
pub const ATP_C: u8 = 0x04;
/// Persist Through Power Loss Capable.
pub const PTPL_C: u8 = 0x01;
/// Type Mask Valid.
pub const TMV: u8 = 0x80;
/// ALLOW COMMANDS 011b, in place.
pub const ALLOW_COMMANDS_011: u8 = 0x30;
/// Persist Through Power Loss Activated.
pub const PTPL_A: u8 = 0x01;

/// The bit of `t` in the PERSISTENT RESERVATION TYPE MASK (SPC-4 §6.15.4), as a 16-bit value
/// (byte 4 high, byte 5 low).
pub const fn type_mask_bit(t: PrType) -> u16 {
    match t {
        PrType::WriteExclusiveAllRegistrants => 0x8000,
        PrType::ExclusiveAccessRegistrantsOnly => 0x4000,
        PrType::WriteExclusiveRegistrantsOnly => 0x2000,
        PrType::ExclusiveAccess => 0x0800,
        PrType::WriteExclusive => 0x0200,
        PrType::ExclusiveAccessAllRegistrants => 0x0001,
    }
}

fn header(generation: u32, additional: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + additional);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&(u32::try_from(additional).unwrap_or(u32::MAX)).to_be_bytes());
    out
}

/// READ KEYS parameter data: PRGENERATION, ADDITIONAL LENGTH, the keys in registration order.
pub fn read_keys(state: &PrState) -> Vec<u8> {
    let mut out = header(state.generation, 8 * state.registrations.len());
    for r in &state.registrations {
        out.extend_from_slice(&r.key.to_be_bytes());
    }
    out
}

/// READ RESERVATION parameter data: PRGENERATION, ADDITIONAL LENGTH (0 or 16) and the
/// reservation's key, scope and type.
pub fn read_reservation(state: &PrState) -> Vec<u8> {
    let (Some(res), Some(key)) = (&state.reservation, state.reservation_key()) else {
        return header(state.generation, 0);
    };
    let mut out = header(state.generation, 16);
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // obsolete
    out.push(0); // reserved
    out.push((res.scope.code() << 4) | res.pr_type.code());
    out.extend_from_slice(&[0; 2]); // obsolete
    out
}

/// REPORT CAPABILITIES parameter data (8 bytes).
pub fn report_capabilities(state: &PrState, ptpl_capable: bool) -> Vec<u8> {
    let mask = PrType::ALL
        .iter()
        .fold(0u16, |m, &t| m | type_mask_bit(t))
        .to_be_bytes();
    vec![
        0x00,
        0x08, // LENGTH
        // PTPL_C only where the unit has a place to write its state to (a PR OUT with APTPL=1
        // is refused elsewhere).
        CRH | SIP_C | ATP_C | if ptpl_capable { PTPL_C } else { 0 },
        TMV | ALLOW_COMMANDS_011 | if state.aptpl { PTPL_A } else { 0 },
        mask[0],
        mask[1],
        0,
        0,
    ]
}

/// READ FULL STATUS parameter data: one full status descriptor per registration, in order,
/// each with its iSCSI TransportID (format 01b with the ISID, 00b for a registration covering
/// every port of an initiator).
pub fn read_full_status(state: &PrState) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, r) in state.registrations.iter().enumerate() {
        let holder = state.registration_holds(i);
        body.extend_from_slice(&r.key.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.push((u8::from(r.all_tg_pt) << 1) | u8::from(holder));
        body.push(match (&state.reservation, holder) {
            (Some(res), true) => (res.scope.code() << 4) | res.pr_type.code(),
            _ => 0,
        });
        body.extend_from_slice(&[0; 4]);
        // With ALL_TG_PT the RELATIVE TARGET PORT IDENTIFIER is not meaningful: report the
        // port the registration came through.
        body.extend_from_slice(&r.relative_port.to_be_bytes());
        // Port names come from logins and TransportIDs we validated; anything else is still
        // reported, as a name-only TransportID.
        let tid = TransportId::from_initiator_port(&r.initiator_port)
            .unwrap_or_else(|| TransportId::device(&r.initiator_port))
            .encode();
        body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        body.extend_from_slice(&tid);
    }
    let mut out = header(state.generation, body.len());
    out.extend_from_slice(&body);
    out
}

/// Executes a PERSISTENT RESERVE IN CDB: checks it (INVALID FIELD IN CDB for a service action
/// other than 00h-03h), builds the parameter data and truncates it to the ALLOCATION LENGTH.
/// While a RESERVE(6)/(10) reservation exists every PERSISTENT RESERVE IN conflicts (SPC-2
/// §5.5.1), as [`super::check_access`] also says.
pub fn persistent_reserve_in(
    state: &PrState,
    cdb: &[u8],
    ptpl_capable: bool,
) -> Result<Vec<u8>, CommandError> {
    if cdb.first() != Some(&opcodes::PERSISTENT_RESERVE_IN) {
        return Err(CommandError::invalid_opcode());
    }
    if cdb.len() < 10 {
        return Err(CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB));
    }
    if cdb[9] & 0x04 != 0 {
        return Err(CommandError::invalid_field_in_cdb(9, Some(2))); // NACA
    }
    if state.legacy.is_some() {
        return Err(CommandError::reservation_conflict());
    }
    let mut data = match cdb[1] & 0x1F {
        prin_sa::READ_KEYS => read_keys(state),
        prin_sa::READ_RESERVATION => read_reservation(state),
        prin_sa::REPORT_CAPABILITIES => report_capabilities(state, ptpl_capable),
        prin_sa::READ_FULL_STATUS => read_full_status(state),
        _ => return Err(CommandError::invalid_field_in_cdb(1, Some(4))),
    };
    let alloc_len = usize::from(u16::from_be_bytes([cdb[7], cdb[8]]));
    data.truncate(alloc_len);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::pr::apply::apply;
    use crate::scsi::pr::out::PrOut;
    use crate::scsi::pr::state::testutil::{n, nx};
    use PrType::*;

    fn cdb(sa: u8, alloc: u16) -> [u8; 10] {
        let mut c = [0x5E, sa, 0, 0, 0, 0, 0, 0, 0, 0];
        c[7..9].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    fn run(s: &PrState, ops: &[(u8, PrOut)]) -> PrState {
        let mut s = s.clone();
        for (i, op) in ops {
            s = apply(&s, &n(*i), op).unwrap().0;
        }
        s
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn read_keys_and_truncation() {
        let s = PrState::new();
        assert_eq!(read_keys(&s), vec![0; 8]);
        let s = run(
            &s,
            &[
                (1, PrOut::register(0, 0x1122334455667788)),
                (2, PrOut::register(0, 0xAA)),
            ],
        );
        let d = persistent_reserve_in(&s, &cdb(0, 1000), false).unwrap();
        assert_eq!(be32(&d, 0), 2, "PRGENERATION");
        assert_eq!(be32(&d, 4), 16, "ADDITIONAL LENGTH");
        assert_eq!(&d[8..16], &0x1122334455667788u64.to_be_bytes());
        assert_eq!(&d[16..24], &0xAAu64.to_be_bytes());
        assert_eq!(d.len(), 24);
        // Truncated to 8: ADDITIONAL LENGTH still says 16 (libiscsi PrinReadKeys.Truncate).
        let t = persistent_reserve_in(&s, &cdb(0, 8), false).unwrap();
        assert_eq!(t, d[..8].to_vec());
        assert_eq!(be32(&t, 4), 16);
        assert_eq!(
            persistent_reserve_in(&s, &cdb(0, 0), false).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(
            persistent_reserve_in(&s, &cdb(0, 13), false).unwrap(),
            d[..13].to_vec()
        );
    }

    #[test]
    fn read_reservation_data() {
        let s = run(
            &PrState::new(),
            &[(1, PrOut::register(0, 0xAB)), (2, PrOut::register(0, 0xCD))],
        );
        assert_eq!(read_reservation(&s), [0, 0, 0, 2, 0, 0, 0, 0]);
        let s1 = run(
            &s,
            &[(2, PrOut::reserve(0xCD, ExclusiveAccessRegistrantsOnly))],
        );
        let d = read_reservation(&s1);
        assert_eq!(d.len(), 24);
        assert_eq!(be32(&d, 4), 16);
        assert_eq!(&d[8..16], &0xCDu64.to_be_bytes());
        assert_eq!(&d[16..21], &[0; 5]);
        assert_eq!(d[21], 0x06, "LU_SCOPE, type 6h");
        assert_eq!(&d[22..24], &[0; 2]);
        // All registrants: key zero.
        let s2 = run(
            &s,
            &[(2, PrOut::reserve(0xCD, WriteExclusiveAllRegistrants))],
        );
        let d = read_reservation(&s2);
        assert_eq!(&d[8..16], &[0; 8]);
        assert_eq!(d[21], 0x07);
        assert_eq!(
            persistent_reserve_in(&s2, &cdb(1, 10), false).unwrap(),
            d[..10].to_vec()
        );
    }

    #[test]
    fn report_capabilities_bits() {
        let s = PrState::new();
        let d = persistent_reserve_in(&s, &cdb(2, 100), false).unwrap();
        assert_eq!(
            d,
            vec![0, 8, 0x1C, 0xB0, 0xEA, 0x01, 0, 0],
            "PTPL_C clear until APTPL persists"
        );
        // libiscsi PrinReportCapabilities.Simple: LENGTH 8, ALLOW COMMANDS <= 5, no unknown
        // type bits.
        assert_eq!(u16::from_be_bytes([d[0], d[1]]), 8);
        assert!((d[3] >> 4) & 0x07 <= 5);
        assert_eq!(u16::from_be_bytes([d[4], d[5]]) & !0xEA01, 0);
        // PTPL_A follows APTPL.
        let mut op = PrOut::register(0, 1);
        op.aptpl = true;
        let s1 = apply(&s, &n(1), &op).unwrap().0;
        assert_eq!(report_capabilities(&s1, false)[3], 0xB1);
        // PTPL_C where the unit persists its state.
        assert_eq!(report_capabilities(&s1, true)[2], 0x1D);
        assert_eq!(
            persistent_reserve_in(&s1, &cdb(2, 4), false).unwrap(),
            vec![0, 8, 0x1C, 0xB1]
        );
    }

    #[test]
    fn read_full_status_bytes() {
        let a = nx(1, 0, 1);
        let b = nx(2, 3, 2);
        let mut s = apply(&PrState::new(), &a, &PrOut::register(0, 0x11))
            .unwrap()
            .0;
        let mut op = PrOut::register(0, 0x22);
        op.all_tg_pt = true;
        s = apply(&s, &b, &op).unwrap().0;
        s = apply(&s, &a, &PrOut::reserve(0x11, ExclusiveAccess))
            .unwrap()
            .0;
        let d = read_full_status(&s);
        assert_eq!(be32(&d, 0), s.generation);
        let additional = be32(&d, 4) as usize;
        assert_eq!(d.len(), 8 + additional);

        // First descriptor: key 0x11, holder, EA, relative port 1, TransportID 01b.
        let tid_a = b"iqn.i:1,i,0x400001370000";
        let tid_len = (tid_a.len() + 1).div_ceil(4) * 4 + 4;
        let mut expect = Vec::new();
        expect.extend_from_slice(&0x11u64.to_be_bytes());
        expect.extend_from_slice(&[0; 4]);
        expect.extend_from_slice(&[0x01, 0x03]);
        expect.extend_from_slice(&[0; 4]);
        expect.extend_from_slice(&1u16.to_be_bytes());
        expect.extend_from_slice(&(tid_len as u32).to_be_bytes());
        expect.extend_from_slice(&[0x45, 0]);
        expect.extend_from_slice(&((tid_len - 4) as u16).to_be_bytes());
        expect.extend_from_slice(tid_a);
        expect.resize(24 + tid_len, 0);
        assert_eq!(&d[8..8 + expect.len()], expect.as_slice());
        assert_eq!(tid_len % 4, 0);

        // Second: key 0x22, ALL_TG_PT, not the holder (scope/type zero), relative port 2.
        let second = &d[8 + expect.len()..];
        assert_eq!(&second[..8], &0x22u64.to_be_bytes());
        assert_eq!(second[12], 0x02);
        assert_eq!(second[13], 0x00);
        assert_eq!(u16::from_be_bytes([second[18], second[19]]), 2);
        let len2 = be32(second, 20) as usize;
        assert_eq!(second.len(), 24 + len2);
        let (tid, used) = TransportId::decode(&second[24..]).unwrap();
        assert_eq!(used, len2);
        assert_eq!(tid.initiator_port(), *b.initiator_port);

        // All registrants: R_HOLDER on everyone, with the type.
        let s2 = apply(&s, &a, &PrOut::release(0x11, ExclusiveAccess))
            .unwrap()
            .0;
        let s2 = apply(
            &s2,
            &b,
            &PrOut::reserve(0x22, ExclusiveAccessAllRegistrants),
        )
        .unwrap()
        .0;
        let d = read_full_status(&s2);
        assert_eq!(&d[20..22], &[0x01, 0x08]);
        let second = &d[8 + expect.len()..];
        assert_eq!(&second[12..14], &[0x03, 0x08]);

        // Truncation keeps ADDITIONAL LENGTH.
        let t = persistent_reserve_in(&s2, &cdb(3, 20), false).unwrap();
        assert_eq!(t, d[..20].to_vec());
        assert_eq!(be32(&t, 4) as usize, additional);
    }

    #[test]
    fn read_full_status_device_wide_registration() {
        let mut op = PrOut::register(0, 5);
        op.spec_i_pt = true;
        op.transport_ids = vec![TransportId::device("iqn.other:x")];
        let s = apply(&PrState::new(), &n(1), &op).unwrap().0;
        let d = read_full_status(&s);
        let first_len = 24 + be32(&d, 8 + 20) as usize;
        let second = &d[8 + first_len..];
        assert_eq!(second[24], 0x05, "format 00b");
        let (tid, _) = TransportId::decode(&second[24..]).unwrap();
        assert_eq!(tid, TransportId::device("iqn.other:x"));
    }

    #[test]
    fn bad_cdbs() {
        let s = PrState::new();
        for sa in 4..0x20 {
            assert_eq!(
                persistent_reserve_in(&s, &cdb(sa, 100), false),
                Err(CommandError::invalid_field_in_cdb(1, Some(4))),
                "libiscsi PrinServiceactionRange"
            );
        }
        for sa in 0..4 {
            assert!(persistent_reserve_in(&s, &cdb(sa, 100), false).is_ok());
        }
        // Bits 7-5 of byte 1 are reserved, not part of the service action.
        assert!(persistent_reserve_in(&s, &cdb(0xE0, 100), false).is_ok());
        assert_eq!(
            persistent_reserve_in(&s, &[0x5E, 0, 0], false),
            Err(CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB))
        );
        assert_eq!(
            persistent_reserve_in(&s, &[0x5F; 10], false),
            Err(CommandError::invalid_opcode())
        );
        let mut legacy = PrState::new();
        legacy.legacy = Some(crate::scsi::pr::state::PrNexus::from(&n(1)));
        assert_eq!(
            persistent_reserve_in(&legacy, &cdb(2, 100), false),
            Err(CommandError::reservation_conflict())
        );
        let mut c = cdb(0, 100);
        c[9] = 0x04;
        assert_eq!(
            persistent_reserve_in(&s, &c, false),
            Err(CommandError::invalid_field_in_cdb(9, Some(2)))
        );
    }
}
