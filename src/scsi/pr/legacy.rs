//! Legacy RESERVE(6)/RESERVE(10) and RELEASE(6)/RELEASE(10) (SPC-2 §5.5.1, §7.21-§7.24) with
//! the exceptions SPC-4 §5.9.3 makes for devices that also do persistent reservations
//! (CRH=1, REPORT CAPABILITIES), and the events that end a legacy reservation (SPC-2 §5.5.1:
//! I_T nexus loss, LOGICAL UNIT RESET, power on).
//!
//! Rules, in order:
//! 1. From the persistent reservation holder, or from a registered I_T nexus while a
//!    registrants only or all registrants reservation exists: GOOD, and nothing changes.
//! 2. While any registration exists: RESERVATION CONFLICT, whoever sends it.
//! 3. SPC-2: RESERVE conflicts while another I_T nexus holds the reservation and is a no-op for
//!    the holder; RELEASE from anyone but the holder is GOOD and does nothing (libiscsi
//!    `Reserve6.2Initiators`).
//!
//! Third-party reservations (RESERVE(10)/RELEASE(10) with 3RDPTY=1 or LONGID=1) are not
//! supported: INVALID FIELD IN CDB.

use super::state::{PrNexus, PrState};
use crate::scsi::nexus::Nexus;
use crate::scsi::opcodes as op;
use crate::scsi::sense::CommandError;

/// Checks the CDB of a RESERVE or RELEASE: `reserve` tells which is expected.
fn check_cdb(cdb: &[u8], reserve: bool) -> Result<(), CommandError> {
    let (six, ten) = if reserve {
        (op::RESERVE_6, op::RESERVE_10)
    } else {
        (op::RELEASE_6, op::RELEASE_10)
    };
    match cdb.first() {
        Some(&c) if c == six => Ok(()),
        Some(&c) if c == ten => {
            let b1 = cdb.get(1).copied().unwrap_or(0);
            if b1 & 0x10 != 0 {
                Err(CommandError::invalid_field_in_cdb(1, Some(4))) // 3RDPTY
            } else if b1 & 0x02 != 0 {
                Err(CommandError::invalid_field_in_cdb(1, Some(1))) // LONGID
            } else {
                Ok(())
            }
        }
        _ => Err(CommandError::invalid_opcode()),
    }
}

/// SPC-4 §5.9.3 a) and b): the persistent reservation holder, or a registrant while a
/// registrants only or all registrants reservation exists.
fn exempt(state: &PrState, nexus: &Nexus) -> bool {
    state.is_holder(nexus)
        || state
            .reservation
            .as_ref()
            .is_some_and(|r| r.pr_type.registrants_have_access() && state.is_registered(nexus))
}

fn logged(mut s: PrState) -> PrState {
    s.log_index = s.log_index.wrapping_add(1);
    s
}

/// RESERVE(6) or RESERVE(10) from `nexus`: the new state, or RESERVATION CONFLICT.
pub fn legacy_reserve(state: &PrState, nexus: &Nexus, cdb: &[u8]) -> Result<PrState, CommandError> {
    check_cdb(cdb, true)?;
    if exempt(state, nexus) {
        return Ok(logged(state.clone()));
    }
    if !state.registrations.is_empty() || state.legacy_held_by_other(nexus) {
        return Err(CommandError::reservation_conflict());
    }
    let mut s = state.clone();
    s.legacy = Some(PrNexus::from(nexus));
    Ok(logged(s))
}

/// RELEASE(6) or RELEASE(10) from `nexus`: the new state, or RESERVATION CONFLICT.
pub fn legacy_release(state: &PrState, nexus: &Nexus, cdb: &[u8]) -> Result<PrState, CommandError> {
    check_cdb(cdb, false)?;
    if exempt(state, nexus) {
        return Ok(logged(state.clone()));
    }
    if !state.registrations.is_empty() {
        return Err(CommandError::reservation_conflict());
    }
    let mut s = state.clone();
    if s.legacy.as_ref().is_some_and(|h| h.is(nexus)) {
        s.legacy = None;
    }
    Ok(logged(s))
}

/// The I_T nexus `nexus` is gone (logout, connection loss, session reinstatement): its legacy
/// reservation ends. Persistent reservations are untouched.
pub fn on_nexus_loss(state: &PrState, nexus: &Nexus) -> PrState {
    if state.legacy.as_ref().is_some_and(|h| h.is(nexus)) {
        let mut s = state.clone();
        s.legacy = None;
        logged(s)
    } else {
        state.clone()
    }
}

/// LOGICAL UNIT RESET (and target reset): the legacy reservation ends. Persistent reservations
/// are untouched.
pub fn on_lun_reset(state: &PrState) -> PrState {
    if state.legacy.is_some() {
        let mut s = state.clone();
        s.legacy = None;
        logged(s)
    } else {
        state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::pr::access::check_access;
    use crate::scsi::pr::apply::apply;
    use crate::scsi::pr::out::PrOut;
    use crate::scsi::pr::state::testutil::{n, nx};
    use crate::scsi::pr::types::PrType;

    const RESERVE6: &[u8] = &[0x16, 0, 0, 0, 0, 0];
    const RELEASE6: &[u8] = &[0x17, 0, 0, 0, 0, 0];
    const RESERVE10: &[u8] = &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const RELEASE10: &[u8] = &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const MODE_SENSE6: &[u8] = &[0x1A, 0, 0x3F, 0, 0xFF, 0];
    const CONFLICT: CommandError = CommandError::reservation_conflict();

    #[test]
    fn two_initiators() {
        // libiscsi Reserve6.2Initiators.
        let s = legacy_reserve(&PrState::new(), &n(1), RESERVE6).unwrap();
        assert_eq!(s.legacy, Some(PrNexus::from(&n(1))));
        assert_eq!(s.log_index, 1);
        let s = legacy_reserve(&s, &n(1), RESERVE6).unwrap();
        assert_eq!(s.legacy, Some(PrNexus::from(&n(1))), "re-reserve is fine");
        assert_eq!(legacy_reserve(&s, &n(2), RESERVE6), Err(CONFLICT));
        let s = legacy_release(&s, &n(2), RELEASE6).unwrap();
        assert_eq!(
            s.legacy,
            Some(PrNexus::from(&n(1))),
            "release by another: no-op"
        );
        assert!(check_access(&s, &n(1), MODE_SENSE6).is_ok());
        assert_eq!(check_access(&s, &n(2), MODE_SENSE6), Err(CONFLICT));
        assert_eq!(legacy_reserve(&s, &n(2), RESERVE10), Err(CONFLICT));
        let s = legacy_release(&s, &n(1), RELEASE6).unwrap();
        assert_eq!(s.legacy, None);
        let s = legacy_reserve(&s, &n(2), RESERVE10).unwrap();
        assert_eq!(s.legacy, Some(PrNexus::from(&n(2))));
        let s = legacy_release(&s, &n(2), RELEASE10).unwrap();
        assert_eq!(s.legacy, None);
        // Release with nothing reserved.
        assert!(legacy_release(&s, &n(3), RELEASE6).is_ok());
    }

    #[test]
    fn events_end_it() {
        let s = legacy_reserve(&PrState::new(), &n(1), RESERVE6).unwrap();
        let same = on_nexus_loss(&s, &n(2));
        assert_eq!(same, s, "another nexus's loss changes nothing");
        let gone = on_nexus_loss(&s, &n(1));
        assert_eq!(gone.legacy, None);
        assert_eq!(gone.log_index, s.log_index + 1);
        assert_eq!(
            on_nexus_loss(&s, &nx(1, 1, 1)),
            s,
            "another port of the initiator"
        );
        let reset = on_lun_reset(&s);
        assert_eq!(reset.legacy, None);
        assert!(legacy_reserve(&reset, &n(2), RESERVE6).is_ok());
        assert_eq!(on_lun_reset(&reset), reset);
        assert_eq!(s.power_on().legacy, None);
        // Persistent reservations survive both.
        let p = apply(&PrState::new(), &n(1), &PrOut::register(0, 1))
            .unwrap()
            .0;
        assert_eq!(on_nexus_loss(&p, &n(1)), p);
        assert_eq!(on_lun_reset(&p), p);
    }

    #[test]
    fn persistent_reservations_interplay() {
        // Registrations exist: RESERVE/RELEASE conflict for everyone not exempt.
        let s = apply(&PrState::new(), &n(1), &PrOut::register(0, 1))
            .unwrap()
            .0;
        assert_eq!(legacy_reserve(&s, &n(1), RESERVE6), Err(CONFLICT));
        assert_eq!(legacy_reserve(&s, &n(2), RESERVE6), Err(CONFLICT));
        assert_eq!(legacy_release(&s, &n(2), RELEASE6), Err(CONFLICT));
        // The holder: GOOD, nothing changes.
        let s = apply(&s, &n(1), &PrOut::reserve(1, PrType::WriteExclusive))
            .unwrap()
            .0;
        let r = legacy_reserve(&s, &n(1), RESERVE6).unwrap();
        assert_eq!(r.legacy, None);
        assert_eq!(r.reservation, s.reservation);
        let r = legacy_release(&s, &n(1), RELEASE6).unwrap();
        assert_eq!(
            r.reservation, s.reservation,
            "RELEASE(6) does not release a PR"
        );
        // A registrant under WE is not exempt; under WERO it is.
        let s = apply(&s, &n(2), &PrOut::register(0, 2)).unwrap().0;
        assert_eq!(legacy_reserve(&s, &n(2), RESERVE6), Err(CONFLICT));
        let s = apply(&s, &n(1), &PrOut::release(1, PrType::WriteExclusive))
            .unwrap()
            .0;
        let s = apply(
            &s,
            &n(1),
            &PrOut::reserve(1, PrType::WriteExclusiveRegistrantsOnly),
        )
        .unwrap()
        .0;
        assert!(legacy_reserve(&s, &n(2), RESERVE6).is_ok());
        assert!(legacy_release(&s, &n(2), RELEASE10).is_ok());
        assert_eq!(legacy_reserve(&s, &n(3), RESERVE6), Err(CONFLICT));
        // A legacy reservation blocks every PR OUT, from anyone.
        let l = legacy_reserve(&PrState::new(), &n(1), RESERVE6).unwrap();
        assert_eq!(
            apply(&l, &n(1), &PrOut::register(0, 1)).map(|_| ()),
            Err(CONFLICT)
        );
        assert_eq!(
            apply(&l, &n(2), &PrOut::register(0, 1)).map(|_| ()),
            Err(CONFLICT)
        );
    }

    #[test]
    fn cdb_checks() {
        let s = PrState::new();
        assert_eq!(
            legacy_reserve(&s, &n(1), &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CommandError::invalid_field_in_cdb(1, Some(4)))
        );
        assert_eq!(
            legacy_release(&s, &n(1), &[0x57, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CommandError::invalid_field_in_cdb(1, Some(1)))
        );
        assert_eq!(
            legacy_reserve(&s, &n(1), RELEASE6),
            Err(CommandError::invalid_opcode())
        );
        assert_eq!(
            legacy_release(&s, &n(1), &[]),
            Err(CommandError::invalid_opcode())
        );
        assert!(
            legacy_reserve(&s, &n(1), &[0x56]).is_ok(),
            "short CDB: bits read as 0"
        );
    }
}
