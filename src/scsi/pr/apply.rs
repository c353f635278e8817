//! Applying a PERSISTENT RESERVE OUT command to the state (SPC-4 §5.9.5-§5.9.11 and §6.16):
//! registering (§5.9.7 and its tables of register behaviors), reserving (§5.9.9), releasing
//! (§5.9.11.2), unregistering (§5.9.11.3), clearing (§5.9.11.6), preempting (§5.9.11.4 and its
//! figure of the device server's interpretation of PREEMPT), preempting and aborting
//! (§5.9.11.5) and registering and moving (§5.9.8).
//!
//! [`apply`] is pure: the old state, the I_T nexus and the decoded command in, a new state and
//! the [`PrEffects`] the caller carries out (unit attentions, task aborts, an APTPL write) out. It
//! never fails halfway: an error leaves nothing changed.
//!
//! Rules that are easy to get wrong:
//! - Every service action but REGISTER AND IGNORE EXISTING KEY, and REGISTER from an unregistered
//!   I_T nexus, checks the RESERVATION KEY against the nexus's registration: RESERVATION CONFLICT
//!   when the nexus is not registered or the key differs.
//! - PRgeneration counts REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR, PREEMPT, PREEMPT AND
//!   ABORT and REGISTER AND MOVE that complete; never RESERVE or RELEASE (SPC-4 §6.15.2). The one
//!   REGISTER that leaves it alone is the unregistered nexus with a zero SERVICE ACTION
//!   RESERVATION KEY, which SPC-4 §5.9.7 says does nothing.
//! - RELEASE from a registered nexus that does not hold the reservation, or with no reservation,
//!   is GOOD and does nothing; from the holder with another TYPE it is INVALID RELEASE OF
//!   PERSISTENT RESERVATION (26h/04h).
//! - CLEAR raises RESERVATIONS PREEMPTED (2Ah/03h) on the other registrants, not RESERVATIONS
//!   RELEASED (SPC-4 §5.9.11.6 e).
//! - PREEMPT: a key that identifies the holder preempts the reservation (REGISTRATIONS PREEMPTED
//!   to everyone who lost a registration, and RESERVATIONS RELEASED to the remaining registrants
//!   if the type or scope changed); any other key only removes registrations, the preempting
//!   nexus's own included. A zero key is only valid against an all registrants reservation.
//! - Unit attentions are never established for the I_T nexus the command came through: a
//!   unit attention aimed at a registration that covers several nexuses (ALL_TG_PT, TransportID
//!   format 00b) reaches all of them but that one ([`PrEffects::unit_attentions_for`]).
//! - ALL_TG_PT only matters when a registration is made: a registered nexus changing its key or
//!   unregistering acts on its registration, whatever the bit says (all its target ports for a
//!   registration made with ALL_TG_PT=1).
//! - A registration that would cover an I_T nexus another registration already covers (ALL_TG_PT
//!   over a port registered elsewhere, a SPEC_I_PT TransportID naming a registered port) is
//!   INVALID FIELD IN PARAMETER LIST.

use serde::{Deserialize, Serialize};

use super::out::PrOut;
use super::state::{PrNexus, PrState, Registrant, Registration, Reservation, MAX_REGISTRATIONS};
use super::transport_id::split_initiator_port;
use super::types::{PrType, ServiceAction};
use crate::scsi::nexus::Nexus;
use crate::scsi::sense::{Asc, CommandError};
use crate::scsi::ua::UnitAttention;

/// 55h/04h INSUFFICIENT REGISTRATION RESOURCES.
pub const INSUFFICIENT_REGISTRATION_RESOURCES: Asc = Asc::new(0x55, 0x04);

/// A target port of the logical unit, for REGISTER AND MOVE's RELATIVE TARGET PORT IDENTIFIER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPort {
    pub relative_port: u16,
    /// `IQN,t,0x<TPGT>`.
    pub name: String,
}

/// What the caller does after a successful [`apply`], before completing the command. Every node
/// that applies the same command to the same state computes the same effects, so they need not
/// travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrEffects {
    /// The I_T nexus the command came through; it never gets a unit attention from it.
    pub origin: PrNexus,
    /// Unit attentions to establish on every I_T nexus each registrant covers, in order.
    pub unit_attentions: Vec<(Registrant, UnitAttention)>,
    /// PREEMPT AND ABORT: abort the tasks of every I_T nexus these cover (the PERSISTENT RESERVE
    /// OUT command itself excepted) before completing the command.
    pub abort_tasks_of: Vec<Registrant>,
    /// APTPL is (or was) active and the persistent part of the state changed: write it to stable
    /// storage before completing the command.
    pub persist: bool,
}

impl PrEffects {
    fn new(origin: &Nexus) -> PrEffects {
        PrEffects {
            origin: PrNexus::from(origin),
            unit_attentions: Vec::new(),
            abort_tasks_of: Vec::new(),
            persist: false,
        }
    }

    /// Establishes `ua` for `to`, unless `to` is exactly the origin.
    fn ua(&mut self, to: Registrant, ua: UnitAttention) {
        if to.is_single_nexus() && self.origin_registrant() == to {
            return;
        }
        if !self
            .unit_attentions
            .iter()
            .any(|(r, u)| *r == to && *u == ua)
        {
            self.unit_attentions.push((to, ua));
        }
    }

    fn abort(&mut self, of: Registrant) {
        if !self.abort_tasks_of.contains(&of) {
            self.abort_tasks_of.push(of);
        }
    }

    fn origin_registrant(&self) -> Registrant {
        Registrant {
            initiator_port: self.origin.initiator_port.clone(),
            target_port: Some(self.origin.target_port.clone()),
        }
    }

    /// The unit attentions to queue on `nexus`, in order, without duplicates; none for the
    /// origin.
    pub fn unit_attentions_for(&self, nexus: &Nexus) -> Vec<UnitAttention> {
        if self.origin.is(nexus) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (to, ua) in &self.unit_attentions {
            if to.covers(nexus) && !out.contains(ua) {
                out.push(*ua);
            }
        }
        out
    }

    /// Whether the tasks of `nexus` are to be aborted.
    pub fn aborts(&self, nexus: &Nexus) -> bool {
        self.abort_tasks_of.iter().any(|r| r.covers(nexus))
    }
}

/// Applies `op`, received through `nexus`, to `state`; see [`apply_with_ports`]. REGISTER AND
/// MOVE can name the receiving target port or one a registration was made through.
pub fn apply(
    state: &PrState,
    nexus: &Nexus,
    op: &PrOut,
) -> Result<(PrState, PrEffects), CommandError> {
    apply_with_ports(state, nexus, op, &[])
}

/// Applies `op`, received through `nexus`, to `state`. `ports` lists the target ports of the
/// logical unit (on every node) for REGISTER AND MOVE's RELATIVE TARGET PORT IDENTIFIER; the
/// receiving port and the ports of existing registrations are known without it. Returns the new
/// state (with the next `log_index`) and what to do before completing with GOOD status, or the
/// error to complete with (the state unchanged).
pub fn apply_with_ports(
    state: &PrState,
    nexus: &Nexus,
    op: &PrOut,
    ports: &[TargetPort],
) -> Result<(PrState, PrEffects), CommandError> {
    // SPC-2 §5.5.1: while a RESERVE(6)/RESERVE(10) reservation exists, every PERSISTENT
    // RESERVE OUT conflicts, whoever sends it.
    if state.legacy.is_some() {
        return Err(CommandError::reservation_conflict());
    }
    let mut s = state.clone();
    let mut fx = PrEffects::new(nexus);
    match op.action {
        ServiceAction::Register | ServiceAction::RegisterAndIgnoreExistingKey => {
            register(&mut s, &mut fx, nexus, op)?
        }
        ServiceAction::Reserve => reserve(&mut s, nexus, op)?,
        ServiceAction::Release => release(&mut s, &mut fx, nexus, op)?,
        ServiceAction::Clear => clear(&mut s, &mut fx, nexus, op)?,
        ServiceAction::Preempt | ServiceAction::PreemptAndAbort => {
            preempt(&mut s, &mut fx, nexus, op)?
        }
        ServiceAction::RegisterAndMove => register_and_move(&mut s, nexus, op, ports)?,
    }
    s.log_index = s.log_index.wrapping_add(1);
    fx.persist = (state.aptpl || s.aptpl) && !state.persistent_part_eq(&s);
    debug_assert_eq!(s.check_invariants(), Ok(()), "after {op:?}");
    Ok((s, fx))
}

/// The registration of `nexus` with RESERVATION KEY `key`: RESERVATION CONFLICT when there is
/// none or the key differs.
fn checked_registration(s: &PrState, nexus: &Nexus, key: u64) -> Result<usize, CommandError> {
    match s.registration_index(nexus) {
        Some(i) if s.registrations[i].key == key => Ok(i),
        _ => Err(CommandError::reservation_conflict()),
    }
}

fn bump_generation(s: &mut PrState) {
    s.generation = s.generation.wrapping_add(1);
}

fn insufficient_resources() -> CommandError {
    CommandError::illegal_request(INSUFFICIENT_REGISTRATION_RESOURCES)
}

fn required_type(op: &PrOut) -> Result<PrType, CommandError> {
    op.pr_type
        .ok_or(CommandError::invalid_field_in_cdb(2, Some(3)))
}

/// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.9.7, "Register behaviors" tables).
fn register(
    s: &mut PrState,
    fx: &mut PrEffects,
    nexus: &Nexus,
    op: &PrOut,
) -> Result<(), CommandError> {
    let ignore_key = op.action == ServiceAction::RegisterAndIgnoreExistingKey;
    if op.spec_i_pt && ignore_key {
        return Err(CommandError::invalid_field_in_param(20, Some(3)));
    }
    let Some(i) = s.registration_index(nexus) else {
        if !ignore_key && op.key != 0 {
            return Err(CommandError::reservation_conflict());
        }
        if op.sa_key == 0 {
            return Ok(()); // §5.9.7: do nothing but complete with GOOD status.
        }
        return register_new(s, nexus, op);
    };
    if !ignore_key && op.key != s.registrations[i].key {
        return Err(CommandError::reservation_conflict());
    }
    if op.spec_i_pt {
        return Err(CommandError::invalid_field_in_param(20, Some(3)));
    }
    if op.sa_key == 0 {
        unregister(s, fx, i);
    } else {
        let r = &mut s.registrations[i];
        r.key = op.sa_key;
        r.aptpl = op.aptpl;
    }
    s.aptpl = op.aptpl;
    bump_generation(s);
    Ok(())
}

/// Registers an unregistered `nexus` (and, with SPEC_I_PT, the TransportIDs' ports) with key
/// `op.sa_key`, through its target port or every target port (ALL_TG_PT).
fn register_new(s: &mut PrState, nexus: &Nexus, op: &PrOut) -> Result<(), CommandError> {
    let target = (!op.all_tg_pt).then(|| nexus.target_port.to_string());
    let mut new = vec![Registrant {
        initiator_port: nexus.initiator_port.to_string(),
        target_port: target.clone(),
    }];
    if op.spec_i_pt {
        for tid in &op.transport_ids {
            let port = tid.initiator_port();
            // The port the command came through is registered anyway (SPC-4 §6.16.3).
            if port != *nexus.initiator_port {
                new.push(Registrant {
                    initiator_port: port,
                    target_port: target.clone(),
                });
            }
        }
    }
    for (k, r) in new.iter().enumerate() {
        let taken = s.registrations.iter().any(|e| e.registrant().overlaps(r))
            || new[..k].iter().any(|e| e.overlaps(r));
        if taken {
            return Err(if k == 0 {
                // Only ALL_TG_PT can make the sender's own registration overlap another.
                CommandError::invalid_field_in_param(20, Some(2))
            } else {
                CommandError::illegal_request(Asc::INVALID_FIELD_IN_PARAMETER_LIST)
            });
        }
    }
    if s.registrations.len() + new.len() > MAX_REGISTRATIONS {
        return Err(insufficient_resources());
    }
    for r in new {
        s.registrations.push(Registration {
            initiator_port: r.initiator_port,
            target_port: nexus.target_port.to_string(),
            relative_port: nexus.relative_port,
            all_tg_pt: op.all_tg_pt,
            key: op.sa_key,
            aptpl: op.aptpl,
        });
    }
    s.aptpl = op.aptpl;
    bump_generation(s);
    Ok(())
}

/// Removes registration `i` (SPC-4 §5.9.11.3). If it held the reservation, the reservation is
/// released (all registrants types: only when no registrant remains), and for the registrants
/// only types the remaining registrants are told RESERVATIONS RELEASED.
fn unregister(s: &mut PrState, fx: &mut PrEffects, i: usize) {
    let held = s.registration_holds(i);
    s.registrations.remove(i);
    let Some(res) = s.reservation.clone() else {
        return;
    };
    if res.pr_type.all_registrants() {
        if s.registrations.is_empty() {
            s.reservation = None;
        }
    } else if held {
        s.reservation = None;
        if res.pr_type.registrants_only() {
            for r in &s.registrations {
                fx.ua(r.registrant(), UnitAttention::ReservationsReleased);
            }
        }
    }
}

/// RESERVE (SPC-4 §5.9.9).
fn reserve(s: &mut PrState, nexus: &Nexus, op: &PrOut) -> Result<(), CommandError> {
    let i = checked_registration(s, nexus, op.key)?;
    let pr_type = required_type(op)?;
    match &s.reservation {
        Some(res) => {
            if s.is_holder(nexus) && res.pr_type == pr_type && res.scope == op.scope {
                Ok(()) // Same type and scope from the holder: nothing changes.
            } else {
                Err(CommandError::reservation_conflict())
            }
        }
        None => {
            s.reservation = Some(Reservation {
                holder: (!pr_type.all_registrants()).then(|| s.registrations[i].registrant()),
                pr_type,
                scope: op.scope,
            });
            Ok(())
        }
    }
}

/// RELEASE (SPC-4 §5.9.11.2).
fn release(
    s: &mut PrState,
    fx: &mut PrEffects,
    nexus: &Nexus,
    op: &PrOut,
) -> Result<(), CommandError> {
    checked_registration(s, nexus, op.key)?;
    let pr_type = required_type(op)?;
    let Some(res) = s.reservation.clone() else {
        return Ok(());
    };
    if !s.is_holder(nexus) {
        return Ok(());
    }
    if res.pr_type != pr_type || res.scope != op.scope {
        return Err(CommandError::illegal_request(
            Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
        ));
    }
    s.reservation = None;
    if res.pr_type.registrants_have_access() {
        for r in &s.registrations {
            fx.ua(r.registrant(), UnitAttention::ReservationsReleased);
        }
    }
    Ok(())
}

/// CLEAR (SPC-4 §5.9.11.6).
fn clear(
    s: &mut PrState,
    fx: &mut PrEffects,
    nexus: &Nexus,
    op: &PrOut,
) -> Result<(), CommandError> {
    checked_registration(s, nexus, op.key)?;
    for r in &s.registrations {
        fx.ua(r.registrant(), UnitAttention::ReservationsPreempted);
    }
    s.registrations.clear();
    s.reservation = None;
    bump_generation(s);
    Ok(())
}

/// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.9.11.4, §5.9.11.5).
fn preempt(
    s: &mut PrState,
    fx: &mut PrEffects,
    nexus: &Nexus,
    op: &PrOut,
) -> Result<(), CommandError> {
    let ci = checked_registration(s, nexus, op.key)?;
    let pr_type = required_type(op)?;
    let abort = op.action == ServiceAction::PreemptAndAbort;
    let caller = s.registrations[ci].registrant();
    let old = s.reservation.clone();
    let all_registrants = old.as_ref().is_some_and(|r| r.pr_type.all_registrants());
    if op.sa_key == 0 && !all_registrants {
        return Err(CommandError::invalid_field_in_param(8, None));
    }
    let preempts_reservation = match &old {
        None => false,
        Some(r) if r.pr_type.all_registrants() => op.sa_key == 0,
        Some(_) => s.reservation_key() == Some(op.sa_key),
    };

    if let (true, Some(old)) = (preempts_reservation, old) {
        // §5.9.11.4.3: release the holder's reservation, remove the registrations the key names
        // (all but the caller's for an all registrants reservation), reserve for the caller.
        let removed: Vec<Registration> = s
            .registrations
            .iter()
            .filter(|r| r.registrant() != caller && (all_registrants || r.key == op.sa_key))
            .cloned()
            .collect();
        s.registrations
            .retain(|r| r.registrant() == caller || !(all_registrants || r.key == op.sa_key));
        for r in &removed {
            fx.ua(r.registrant(), UnitAttention::RegistrationsPreempted);
            if abort {
                fx.abort(r.registrant());
            }
        }
        if abort && op.key == op.sa_key {
            // The caller preempted its own key: its other tasks go too.
            fx.abort(caller.clone());
        }
        s.reservation = Some(Reservation {
            holder: (!pr_type.all_registrants()).then_some(caller),
            pr_type,
            scope: op.scope,
        });
        if old.pr_type != pr_type || old.scope != op.scope {
            for r in &s.registrations {
                fx.ua(r.registrant(), UnitAttention::ReservationsReleased);
            }
        }
    } else {
        // §5.9.11.4.4: only remove the registrations of that key (the caller's too), ignoring
        // SCOPE and TYPE; a key nobody holds is a RESERVATION CONFLICT.
        let removed: Vec<Registration> = s
            .registrations
            .iter()
            .filter(|r| r.key == op.sa_key)
            .cloned()
            .collect();
        if removed.is_empty() {
            return Err(CommandError::reservation_conflict());
        }
        s.registrations.retain(|r| r.key != op.sa_key);
        for r in &removed {
            fx.ua(r.registrant(), UnitAttention::RegistrationsPreempted);
            if abort {
                fx.abort(r.registrant());
            }
        }
        if all_registrants && s.registrations.is_empty() {
            s.reservation = None;
        }
    }
    bump_generation(s);
    Ok(())
}

/// The name of the target port with relative target port identifier `rtpi`.
fn resolve_port(s: &PrState, nexus: &Nexus, ports: &[TargetPort], rtpi: u16) -> Option<TargetPort> {
    if let Some(p) = ports.iter().find(|p| p.relative_port == rtpi) {
        return Some(p.clone());
    }
    if nexus.relative_port == rtpi {
        return Some(TargetPort {
            relative_port: rtpi,
            name: nexus.target_port.to_string(),
        });
    }
    s.registrations
        .iter()
        .find(|r| r.relative_port == rtpi)
        .map(|r| TargetPort {
            relative_port: rtpi,
            name: r.target_port.clone(),
        })
}

/// REGISTER AND MOVE (SPC-4 §5.9.8, "Register behaviors for a REGISTER AND MOVE service action").
fn register_and_move(
    s: &mut PrState,
    nexus: &Nexus,
    op: &PrOut,
    ports: &[TargetPort],
) -> Result<(), CommandError> {
    let si = checked_registration(s, nexus, op.key)?;
    if op.sa_key == 0 {
        return Err(CommandError::invalid_field_in_param(8, None));
    }
    let Some(res) = s.reservation.clone() else {
        return Err(CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB));
    };
    if res.pr_type.all_registrants() || !s.is_holder(nexus) {
        return Err(CommandError::reservation_conflict());
    }
    let [tid] = op.transport_ids.as_slice() else {
        return Err(CommandError::invalid_field_in_param(24, None));
    };
    // The destination may not be the source's initiator port (SPC-4 §5.9.8); a TransportID in
    // format 00b names every port of its initiator, the source's among them.
    let (source_name, _) = split_initiator_port(&nexus.initiator_port);
    if tid.initiator_port() == *nexus.initiator_port
        || (tid.isid.is_none() && tid.name == source_name)
    {
        return Err(CommandError::invalid_field_in_param(24, None));
    }
    let Some(port) = resolve_port(s, nexus, ports, op.relative_port) else {
        return Err(CommandError::invalid_field_in_param(18, None));
    };
    let dest = Registrant {
        initiator_port: tid.initiator_port(),
        target_port: Some(port.name.clone()),
    };
    let overlapping: Vec<usize> = (0..s.registrations.len())
        .filter(|&j| s.registrations[j].registrant().overlaps(&dest))
        .collect();
    // Registering an already registered destination is not an error (SPC-4 §5.9.8): its
    // registration takes the new key. A destination only partly registered cannot be.
    let di = match overlapping.as_slice() {
        [] => {
            if s.registrations.len() >= MAX_REGISTRATIONS {
                return Err(insufficient_resources());
            }
            s.registrations.push(Registration {
                initiator_port: dest.initiator_port.clone(),
                target_port: port.name,
                relative_port: port.relative_port,
                all_tg_pt: false,
                key: op.sa_key,
                aptpl: op.aptpl,
            });
            s.registrations.len() - 1
        }
        [j] if s.registrations[*j].registrant().contains(&dest) && *j != si => *j,
        _ => return Err(CommandError::invalid_field_in_param(24, None)),
    };
    let dreg = &mut s.registrations[di];
    dreg.key = op.sa_key;
    dreg.aptpl = op.aptpl;
    s.reservation = Some(Reservation {
        holder: Some(dreg.registrant()),
        pr_type: res.pr_type,
        scope: res.scope,
    });
    if op.unreg {
        s.registrations.remove(si);
    }
    s.aptpl = op.aptpl;
    bump_generation(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::pr::state::testutil::{n, nx};
    use crate::scsi::pr::transport_id::TransportId;
    use crate::scsi::pr::types::PrScope;
    use crate::scsi::sense::{ScsiStatus, SenseKey};
    use PrType::*;
    use UnitAttention::*;

    const CONFLICT: CommandError = CommandError::reservation_conflict();

    /// Applies `op` from `nexus`, panicking on error.
    fn ok(s: &PrState, nexus: &Nexus, op: PrOut) -> (PrState, PrEffects) {
        match apply(s, nexus, &op) {
            Ok(r) => r,
            Err(e) => panic!("{op:?} from {}: {e}", nexus.initiator_port),
        }
    }

    /// Applies `op` from `nexus`, expecting `err` and no change.
    fn err(s: &PrState, nexus: &Nexus, op: PrOut, e: CommandError) {
        assert_eq!(apply(s, nexus, &op).map(|_| ()), Err(e), "{op:?}");
    }

    fn registered(keys: &[(u8, u64)]) -> PrState {
        let mut s = PrState::new();
        for &(i, k) in keys {
            s = ok(&s, &n(i), PrOut::register(0, k)).0;
        }
        s
    }

    fn reserved(keys: &[(u8, u64)], by: u8, t: PrType) -> PrState {
        let s = registered(keys);
        let key = keys.iter().find(|(i, _)| *i == by).unwrap().1;
        ok(&s, &n(by), PrOut::reserve(key, t)).0
    }

    fn uas(fx: &PrEffects, i: u8) -> Vec<UnitAttention> {
        fx.unit_attentions_for(&n(i))
    }

    fn keys(s: &PrState) -> Vec<u64> {
        s.registrations.iter().map(|r| r.key).collect()
    }

    #[test]
    fn register_table_47() {
        let s = PrState::new();
        // Unregistered, RESERVATION KEY non-zero: conflict.
        err(&s, &n(1), PrOut::register(5, 6), CONFLICT);
        // Unregistered, both zero: GOOD, nothing done, generation unchanged.
        let (s0, fx) = ok(&s, &n(1), PrOut::register(0, 0));
        assert_eq!(s0.registrations, vec![]);
        assert_eq!(s0.generation, 0);
        assert_eq!(s0.log_index, 1, "still an accepted command");
        assert!(!fx.persist);
        // Register.
        let (s1, fx) = ok(&s0, &n(1), PrOut::register(0, 0xAA));
        assert_eq!(keys(&s1), vec![0xAA]);
        assert_eq!(s1.generation, 1);
        assert_eq!(fx.unit_attentions, vec![]);
        let r = &s1.registrations[0];
        assert_eq!(r.initiator_port, *n(1).initiator_port);
        assert_eq!(r.target_port, *n(1).target_port);
        assert!(!r.all_tg_pt);
        // Registered, wrong key: conflict; a zero key is wrong too.
        err(&s1, &n(1), PrOut::register(0xAB, 0xAC), CONFLICT);
        err(&s1, &n(1), PrOut::register(0, 0xAC), CONFLICT);
        // Change the key.
        let (s2, _) = ok(&s1, &n(1), PrOut::register(0xAA, 0xBB));
        assert_eq!(keys(&s2), vec![0xBB]);
        assert_eq!(s2.generation, 2);
        // Re-register the same key: still a REGISTER, still counted.
        let (s3, _) = ok(&s2, &n(1), PrOut::register(0xBB, 0xBB));
        assert_eq!(s3.generation, 3);
        // Unregister.
        let (s4, _) = ok(&s3, &n(1), PrOut::register(0xBB, 0));
        assert_eq!(s4.registrations, vec![]);
        assert_eq!(s4.generation, 4);
        // Another port of the same initiator is another I_T nexus.
        let (s5, _) = ok(&s1, &nx(1, 1, 1), PrOut::register(0, 0xCC));
        assert_eq!(keys(&s5), vec![0xAA, 0xCC]);
        let (s6, _) = ok(&s5, &nx(1, 0, 2), PrOut::register(0, 0xDD));
        assert_eq!(keys(&s6), vec![0xAA, 0xCC, 0xDD]);
    }

    #[test]
    fn register_and_ignore_table_48() {
        let s = PrState::new();
        // The RESERVATION KEY is ignored, registered or not.
        let (s1, _) = ok(
            &s,
            &n(1),
            PrOut::new(ServiceAction::RegisterAndIgnoreExistingKey, 77, 5),
        );
        assert_eq!(keys(&s1), vec![5]);
        assert_eq!(s1.generation, 1);
        let (s2, _) = ok(
            &s1,
            &n(1),
            PrOut::new(ServiceAction::RegisterAndIgnoreExistingKey, 99, 6),
        );
        assert_eq!(keys(&s2), vec![6]);
        assert_eq!(s2.generation, 2);
        let (s3, _) = ok(&s2, &n(1), PrOut::register_ignore(0));
        assert_eq!(keys(&s3), Vec::<u64>::new());
        assert_eq!(s3.generation, 3);
        // Unregistered with zero: nothing.
        let (s4, _) = ok(&s3, &n(1), PrOut::register_ignore(0));
        assert_eq!(s4.generation, 3);
        // SPEC_I_PT is not for it (a hand-built command; decode refuses it earlier).
        let mut op = PrOut::register_ignore(5);
        op.spec_i_pt = true;
        err(
            &s,
            &n(1),
            op,
            CommandError::invalid_field_in_param(20, Some(3)),
        );
    }

    #[test]
    fn reserve_rules() {
        let s = registered(&[(1, 11), (2, 22)]);
        err(&s, &n(3), PrOut::reserve(0, WriteExclusive), CONFLICT);
        err(&s, &n(3), PrOut::reserve(33, WriteExclusive), CONFLICT);
        err(&s, &n(1), PrOut::reserve(12, WriteExclusive), CONFLICT);
        let (s1, fx) = ok(&s, &n(1), PrOut::reserve(11, WriteExclusive));
        assert_eq!(s1.generation, s.generation, "RESERVE does not count");
        assert_eq!(fx.unit_attentions, vec![]);
        let res = s1.reservation.clone().unwrap();
        assert_eq!(res.holder, Some(Registrant::of(&n(1))));
        assert_eq!(res.pr_type, WriteExclusive);
        assert_eq!(res.scope, PrScope::LogicalUnit);
        assert_eq!(s1.reservation_key(), Some(11));
        // The holder again with the same type: nothing changes.
        let (s2, _) = ok(&s1, &n(1), PrOut::reserve(11, WriteExclusive));
        assert_eq!(s2.reservation, s1.reservation);
        // The holder with another type, or anyone else: conflict.
        err(&s1, &n(1), PrOut::reserve(11, ExclusiveAccess), CONFLICT);
        err(&s1, &n(2), PrOut::reserve(22, WriteExclusive), CONFLICT);
        err(&s1, &n(2), PrOut::reserve(22, ExclusiveAccess), CONFLICT);
        // A hand-built RESERVE without a type is INVALID FIELD IN CDB.
        let mut bad = PrOut::reserve(11, WriteExclusive);
        bad.pr_type = None;
        err(
            &s,
            &n(1),
            bad,
            CommandError::invalid_field_in_cdb(2, Some(3)),
        );
    }

    #[test]
    fn reserve_all_registrants() {
        let s = reserved(&[(1, 11), (2, 22)], 1, WriteExclusiveAllRegistrants);
        let res = s.reservation.clone().unwrap();
        assert_eq!(res.holder, None);
        assert_eq!(s.reservation_key(), Some(0));
        assert!(s.is_holder(&n(1)) && s.is_holder(&n(2)));
        // Every registrant is a holder: the same type is a no-op from any of them.
        let (s1, _) = ok(&s, &n(2), PrOut::reserve(22, WriteExclusiveAllRegistrants));
        assert_eq!(s1.reservation, s.reservation);
        err(
            &s,
            &n(2),
            PrOut::reserve(22, ExclusiveAccessAllRegistrants),
            CONFLICT,
        );
        // A later registrant holds it too.
        let (s2, _) = ok(&s, &n(3), PrOut::register(0, 33));
        assert!(s2.is_holder(&n(3)));
    }

    #[test]
    fn release_rules() {
        for t in PrType::ALL {
            let s = reserved(&[(1, 11), (2, 22)], 1, t);
            // Unregistered or wrong key: conflict.
            err(&s, &n(3), PrOut::release(0, t), CONFLICT);
            err(&s, &n(1), PrOut::release(12, t), CONFLICT);
            if !t.all_registrants() {
                // A registrant that is not the holder: GOOD, nothing released.
                let (s1, fx) = ok(&s, &n(2), PrOut::release(22, t));
                assert_eq!(s1.reservation, s.reservation);
                assert_eq!(fx.unit_attentions, vec![]);
            }
            // The holder with another type: INVALID RELEASE OF PERSISTENT RESERVATION.
            let other = if t == WriteExclusive {
                ExclusiveAccess
            } else {
                WriteExclusive
            };
            let e = apply(&s, &n(1), &PrOut::release(11, other)).unwrap_err();
            assert_eq!(e.status, ScsiStatus::CheckCondition);
            let sense = e.sense.unwrap();
            assert_eq!(sense.key, SenseKey::IllegalRequest);
            assert_eq!(sense.asc, Asc::new(0x26, 0x04));
            // Released; registrations stay; the generation does not move.
            let (s2, fx) = ok(&s, &n(1), PrOut::release(11, t));
            assert_eq!(s2.reservation, None);
            assert_eq!(keys(&s2), vec![11, 22]);
            assert_eq!(s2.generation, s.generation);
            // RESERVATIONS RELEASED to the other registrants for the registrants only and all
            // registrants types, nothing for WE and EA; never to the releasing nexus.
            let expect = if t.registrants_have_access() {
                vec![ReservationsReleased]
            } else {
                vec![]
            };
            assert_eq!(uas(&fx, 2), expect, "{t:?}");
            assert_eq!(uas(&fx, 1), vec![]);
            assert_eq!(uas(&fx, 3), vec![], "not registered");
            // No reservation: GOOD, nothing.
            let (s3, _) = ok(&s2, &n(1), PrOut::release(11, t));
            assert_eq!(s3.reservation, None);
        }
        // Under an all registrants type any registrant releases it for everyone.
        let s = reserved(
            &[(1, 11), (2, 22), (3, 33)],
            1,
            ExclusiveAccessAllRegistrants,
        );
        let (s1, fx) = ok(&s, &n(2), PrOut::release(22, ExclusiveAccessAllRegistrants));
        assert_eq!(s1.reservation, None);
        assert_eq!(uas(&fx, 1), vec![ReservationsReleased]);
        assert_eq!(uas(&fx, 2), vec![]);
        assert_eq!(uas(&fx, 3), vec![ReservationsReleased]);
    }

    #[test]
    fn unregistering_the_holder() {
        // Not an all registrants type: released at once; RESERVATIONS RELEASED to the others
        // only for the registrants only types.
        for t in [
            WriteExclusive,
            ExclusiveAccess,
            WriteExclusiveRegistrantsOnly,
            ExclusiveAccessRegistrantsOnly,
        ] {
            let s = reserved(&[(1, 11), (2, 22)], 1, t);
            let (s1, fx) = ok(&s, &n(1), PrOut::register(11, 0));
            assert_eq!(s1.reservation, None, "{t:?}");
            assert_eq!(keys(&s1), vec![22]);
            let expect = if t.registrants_only() {
                vec![ReservationsReleased]
            } else {
                vec![]
            };
            assert_eq!(uas(&fx, 2), expect, "{t:?}");
            assert_eq!(uas(&fx, 1), vec![]);
            // A non-holder unregistering changes nothing about the reservation.
            let (s2, fx) = ok(&s, &n(2), PrOut::register(22, 0));
            assert_eq!(s2.reservation, s.reservation);
            assert_eq!(fx.unit_attentions, vec![]);
        }
        // All registrants: held until the last registrant leaves.
        for t in [WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants] {
            let s = reserved(&[(1, 11), (2, 22)], 1, t);
            let (s1, fx) = ok(&s, &n(1), PrOut::register(11, 0));
            assert_eq!(s1.reservation, s.reservation);
            assert!(s1.is_holder(&n(2)));
            assert_eq!(fx.unit_attentions, vec![]);
            let (s2, fx) = ok(&s1, &n(2), PrOut::register_ignore(0));
            assert_eq!(s2.reservation, None);
            assert_eq!(fx.unit_attentions, vec![]);
        }
        // Changing the holder's key keeps the reservation with the new key.
        let s = reserved(&[(1, 11)], 1, WriteExclusive);
        let (s1, _) = ok(&s, &n(1), PrOut::register(11, 12));
        assert!(s1.is_holder(&n(1)));
        assert_eq!(s1.reservation_key(), Some(12));
    }

    #[test]
    fn clear_rules() {
        let s = reserved(&[(1, 11), (2, 22), (3, 33)], 2, ExclusiveAccess);
        err(&s, &n(4), PrOut::clear(0), CONFLICT);
        err(&s, &n(1), PrOut::clear(22), CONFLICT);
        let (s1, fx) = ok(&s, &n(1), PrOut::clear(11));
        assert_eq!(s1.registrations, vec![]);
        assert_eq!(s1.reservation, None);
        assert_eq!(s1.generation, s.generation + 1);
        assert_eq!(uas(&fx, 1), vec![]);
        assert_eq!(uas(&fx, 2), vec![ReservationsPreempted]);
        assert_eq!(uas(&fx, 3), vec![ReservationsPreempted]);
        assert_eq!(uas(&fx, 4), vec![]);
        assert_eq!(fx.abort_tasks_of, vec![]);
        // Without a reservation too.
        let (s2, fx) = ok(&registered(&[(1, 11), (2, 22)]), &n(2), PrOut::clear(22));
        assert_eq!(s2.registrations, vec![]);
        assert_eq!(uas(&fx, 1), vec![ReservationsPreempted]);
    }

    #[test]
    fn preempt_the_holder() {
        // PREEMPT of an EARO holder by another registrant: the reservation moves with the new
        // type, the holder loses its registration (REGISTRATIONS PREEMPTED), the preempter hears
        // nothing, the bystander hears RESERVATIONS RELEASED because the type changed.
        let s = reserved(
            &[(1, 11), (2, 22), (3, 33)],
            1,
            ExclusiveAccessRegistrantsOnly,
        );
        let (s1, fx) = ok(&s, &n(2), PrOut::preempt(22, 11, WriteExclusive, false));
        assert_eq!(keys(&s1), vec![22, 33]);
        let res = s1.reservation.clone().unwrap();
        assert_eq!(res.holder, Some(Registrant::of(&n(2))));
        assert_eq!(res.pr_type, WriteExclusive);
        assert_eq!(s1.generation, s.generation + 1);
        assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 2), vec![]);
        assert_eq!(uas(&fx, 3), vec![ReservationsReleased]);
        assert_eq!(fx.abort_tasks_of, vec![]);

        // Same type: no RESERVATIONS RELEASED for the bystander.
        let (_, fx) = ok(
            &s,
            &n(2),
            PrOut::preempt(22, 11, ExclusiveAccessRegistrantsOnly, false),
        );
        assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 2), vec![]);
        assert_eq!(uas(&fx, 3), vec![]);

        // Every registration with the holder's key goes, but never the preempter's.
        let s = reserved(&[(1, 11), (2, 22), (3, 11)], 1, WriteExclusive);
        let (s1, fx) = ok(&s, &n(2), PrOut::preempt(22, 11, WriteExclusive, false));
        assert_eq!(keys(&s1), vec![22]);
        assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 3), vec![RegistrationsPreempted]);
        let (s2, fx) = ok(&s, &n(3), PrOut::preempt(11, 11, WriteExclusive, false));
        assert_eq!(keys(&s2), vec![22, 11]);
        assert!(s2.is_holder(&n(3)));
        assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 3), vec![]);

        // The holder preempting itself changes the type.
        let s = reserved(&[(1, 11), (2, 22)], 1, WriteExclusive);
        let (s1, fx) = ok(&s, &n(1), PrOut::preempt(11, 11, ExclusiveAccess, false));
        assert_eq!(keys(&s1), vec![11, 22]);
        assert_eq!(s1.reservation.clone().unwrap().pr_type, ExclusiveAccess);
        assert!(s1.is_holder(&n(1)));
        assert_eq!(uas(&fx, 2), vec![ReservationsReleased]);
        assert_eq!(uas(&fx, 1), vec![]);
    }

    #[test]
    fn unit_attentions_per_type() {
        for t in PrType::ALL {
            let s = reserved(&[(1, 11), (2, 22), (3, 33)], 1, t);
            let other = if t == WriteExclusive {
                ExclusiveAccess
            } else {
                WriteExclusive
            };
            // PREEMPT of the reservation by 2 (the holder's key, or zero for all registrants).
            let sa = if t.all_registrants() { 0 } else { 11 };
            for (new_type, changed) in [(t, false), (other, true)] {
                let (s1, fx) = ok(&s, &n(2), PrOut::preempt(22, sa, new_type, false));
                assert!(s1.is_holder(&n(2)), "{t:?}");
                assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted], "{t:?}");
                assert_eq!(uas(&fx, 2), vec![], "{t:?}: never the preempter");
                let bystander = match (t.all_registrants(), changed) {
                    (true, _) => vec![RegistrationsPreempted],
                    (false, true) => vec![ReservationsReleased],
                    (false, false) => vec![],
                };
                assert_eq!(uas(&fx, 3), bystander, "{t:?} -> {new_type:?}");
                assert_eq!(uas(&fx, 4), vec![], "not registered");
            }
            // CLEAR: RESERVATIONS PREEMPTED to every other registrant, whatever the type.
            let (_, fx) = ok(&s, &n(3), PrOut::clear(33));
            assert_eq!(uas(&fx, 1), vec![ReservationsPreempted]);
            assert_eq!(uas(&fx, 2), vec![ReservationsPreempted]);
            assert_eq!(uas(&fx, 3), vec![]);
            // RESERVE and REGISTER never raise any.
            let (_, fx) = ok(&s, &n(4), PrOut::register(0, 44));
            assert_eq!(fx.unit_attentions, vec![]);
            let (_, fx) = ok(&s, &n(2), PrOut::register(22, 23));
            assert_eq!(fx.unit_attentions, vec![]);
        }
    }

    #[test]
    fn preempt_errors() {
        let s = reserved(&[(1, 11), (2, 22)], 1, WriteExclusive);
        err(
            &s,
            &n(3),
            PrOut::preempt(0, 11, WriteExclusive, false),
            CONFLICT,
        );
        err(
            &s,
            &n(2),
            PrOut::preempt(21, 11, WriteExclusive, false),
            CONFLICT,
        );
        // Zero key without an all registrants reservation.
        err(
            &s,
            &n(2),
            PrOut::preempt(22, 0, WriteExclusive, false),
            CommandError::invalid_field_in_param(8, None),
        );
        err(
            &registered(&[(1, 11)]),
            &n(1),
            PrOut::preempt(11, 0, WriteExclusive, true),
            CommandError::invalid_field_in_param(8, None),
        );
        // A key nobody holds.
        err(
            &s,
            &n(2),
            PrOut::preempt(22, 99, WriteExclusive, false),
            CONFLICT,
        );
        err(
            &registered(&[(1, 11)]),
            &n(1),
            PrOut::preempt(11, 99, WriteExclusive, false),
            CONFLICT,
        );
    }

    #[test]
    fn preempt_removes_registrations_only() {
        // The key is not the holder's: those registrations go, the reservation stays, SCOPE and
        // TYPE are ignored.
        let s = reserved(
            &[(1, 11), (2, 22), (3, 33)],
            1,
            WriteExclusiveRegistrantsOnly,
        );
        let (s1, fx) = ok(&s, &n(2), PrOut::preempt(22, 33, ExclusiveAccess, false));
        assert_eq!(keys(&s1), vec![11, 22]);
        assert_eq!(s1.reservation, s.reservation);
        assert_eq!(s1.generation, s.generation + 1);
        assert_eq!(uas(&fx, 3), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 1), vec![]);
        assert_eq!(uas(&fx, 2), vec![]);
        // No reservation at all: the same.
        let s = registered(&[(1, 11), (2, 22)]);
        let (s1, fx) = ok(&s, &n(1), PrOut::preempt(11, 22, ExclusiveAccess, false));
        assert_eq!(keys(&s1), vec![11]);
        assert_eq!(s1.reservation, None);
        assert_eq!(uas(&fx, 2), vec![RegistrationsPreempted]);
        // Its own key: the preempter unregisters itself (and hears nothing).
        let (s2, fx) = ok(&s, &n(1), PrOut::preempt(11, 11, ExclusiveAccess, false));
        assert_eq!(keys(&s2), vec![22]);
        assert_eq!(uas(&fx, 1), vec![]);
        assert_eq!(uas(&fx, 2), vec![]);
    }

    #[test]
    fn preempt_all_registrants() {
        let s = reserved(
            &[(1, 11), (2, 22), (3, 33)],
            1,
            WriteExclusiveAllRegistrants,
        );
        // Zero key: every other registration goes and the preempter takes the reservation.
        let (s1, fx) = ok(&s, &n(2), PrOut::preempt(22, 0, ExclusiveAccess, false));
        assert_eq!(keys(&s1), vec![22]);
        let res = s1.reservation.clone().unwrap();
        assert_eq!(res.holder, Some(Registrant::of(&n(2))));
        assert_eq!(res.pr_type, ExclusiveAccess);
        assert_eq!(uas(&fx, 1), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 3), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 2), vec![]);
        // Zero key keeping the all registrants type.
        let (s2, _) = ok(
            &s,
            &n(2),
            PrOut::preempt(22, 0, WriteExclusiveAllRegistrants, false),
        );
        assert_eq!(s2.reservation.clone().unwrap().holder, None);
        assert!(s2.is_holder(&n(2)));
        // A non-zero key only removes those registrations; the reservation stays.
        let (s3, fx) = ok(&s, &n(2), PrOut::preempt(22, 33, ExclusiveAccess, false));
        assert_eq!(keys(&s3), vec![11, 22]);
        assert_eq!(s3.reservation, s.reservation);
        assert_eq!(uas(&fx, 3), vec![RegistrationsPreempted]);
        assert_eq!(uas(&fx, 1), vec![]);
        // Removing the last registrants releases it.
        let s = reserved(&[(1, 11), (2, 11)], 1, ExclusiveAccessAllRegistrants);
        let (s4, _) = ok(&s, &n(2), PrOut::preempt(11, 11, ExclusiveAccess, false));
        assert_eq!(s4.registrations, vec![]);
        assert_eq!(s4.reservation, None);
    }

    #[test]
    fn preempt_and_abort() {
        // fence_scsi: each node registers its key, the survivor holds WERO and fences the
        // victim with PREEMPT AND ABORT of the victim's key.
        let s = reserved(&[(1, 11), (2, 22)], 1, WriteExclusiveRegistrantsOnly);
        let (s1, fx) = ok(
            &s,
            &n(1),
            PrOut::preempt(11, 22, WriteExclusiveRegistrantsOnly, true),
        );
        assert_eq!(keys(&s1), vec![11]);
        assert!(s1.is_holder(&n(1)));
        assert_eq!(fx.abort_tasks_of, vec![Registrant::of(&n(2))]);
        assert!(fx.aborts(&n(2)) && !fx.aborts(&n(1)));
        assert_eq!(uas(&fx, 2), vec![RegistrationsPreempted]);
        // The victim held the reservation.
        let s = reserved(&[(1, 11), (2, 22)], 2, WriteExclusiveRegistrantsOnly);
        let (s1, fx) = ok(
            &s,
            &n(1),
            PrOut::preempt(11, 22, WriteExclusiveRegistrantsOnly, true),
        );
        assert!(s1.is_holder(&n(1)));
        assert_eq!(fx.abort_tasks_of, vec![Registrant::of(&n(2))]);
        // Preempting its own key aborts the caller's other tasks too.
        let (_, fx) = ok(&s, &n(2), PrOut::preempt(22, 22, ExclusiveAccess, true));
        assert!(fx.aborts(&n(2)));
        assert!(!fx.aborts(&n(1)));
        // PREEMPT without abort aborts nothing.
        let (_, fx) = ok(&s, &n(1), PrOut::preempt(11, 22, WriteExclusive, false));
        assert_eq!(fx.abort_tasks_of, vec![]);
        // All registrants, zero key: everyone else.
        let s = reserved(
            &[(1, 11), (2, 22), (3, 33)],
            1,
            WriteExclusiveAllRegistrants,
        );
        let (_, fx) = ok(
            &s,
            &n(3),
            PrOut::preempt(33, 0, WriteExclusiveAllRegistrants, true),
        );
        assert!(fx.aborts(&n(1)) && fx.aborts(&n(2)) && !fx.aborts(&n(3)));
    }

    fn move_to(dest: &Nexus, key: u64, sa_key: u64, unreg: bool) -> PrOut {
        let tid = TransportId::from_initiator_port(&dest.initiator_port).unwrap();
        PrOut::register_and_move(key, sa_key, tid, dest.relative_port, unreg)
    }

    #[test]
    fn register_and_move_rules() {
        let s = reserved(&[(1, 11), (2, 22)], 1, ExclusiveAccess);
        // To an unregistered nexus on the same target port.
        let (s1, fx) = ok(&s, &n(1), move_to(&n(3), 11, 33, false));
        assert_eq!(keys(&s1), vec![11, 22, 33]);
        assert!(s1.is_holder(&n(3)) && !s1.is_holder(&n(1)));
        assert_eq!(s1.reservation.clone().unwrap().pr_type, ExclusiveAccess);
        assert_eq!(s1.generation, s.generation + 1);
        assert_eq!(fx.unit_attentions, vec![]);
        // To a registered nexus: it takes the new key; UNREG drops the source.
        let (s2, _) = ok(&s, &n(1), move_to(&n(2), 11, 23, true));
        assert_eq!(keys(&s2), vec![23]);
        assert!(s2.is_holder(&n(2)));
        assert_eq!(s2.reservation_key(), Some(23));
        // Through another target port, known from the port list.
        let other = nx(3, 0, 2);
        err(
            &s,
            &n(1),
            move_to(&other, 11, 33, false),
            CommandError::invalid_field_in_param(18, None),
        );
        let ports = [TargetPort {
            relative_port: 2,
            name: other.target_port.to_string(),
        }];
        let (s3, _) = apply_with_ports(&s, &n(1), &move_to(&other, 11, 33, false), &ports).unwrap();
        assert!(s3.is_holder(&other) && !s3.is_holder(&n(3)));
        assert_eq!(s3.registrations[2].relative_port, 2);

        // Errors, in order.
        err(&s, &n(3), move_to(&n(4), 0, 44, false), CONFLICT);
        err(&s, &n(1), move_to(&n(4), 12, 44, false), CONFLICT);
        err(
            &s,
            &n(1),
            move_to(&n(4), 11, 0, false),
            CommandError::invalid_field_in_param(8, None),
        );
        err(&s, &n(2), move_to(&n(4), 22, 44, false), CONFLICT);
        err(
            &registered(&[(1, 11)]),
            &n(1),
            move_to(&n(4), 11, 44, false),
            CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB),
        );
        let ar = reserved(&[(1, 11), (2, 22)], 1, WriteExclusiveAllRegistrants);
        err(&ar, &n(1), move_to(&n(4), 11, 44, false), CONFLICT);
        // The destination is the source's initiator port, or its whole initiator.
        err(
            &s,
            &n(1),
            move_to(&nx(1, 0, 1), 11, 44, false),
            CommandError::invalid_field_in_param(24, None),
        );
        let same_name = PrOut::register_and_move(11, 44, TransportId::device("iqn.i:1"), 1, false);
        err(
            &s,
            &n(1),
            same_name,
            CommandError::invalid_field_in_param(24, None),
        );
        // Another port of the same initiator is a different initiator port: fine.
        let (s4, _) = ok(&s, &n(1), move_to(&nx(1, 5, 1), 11, 15, true));
        assert!(s4.is_holder(&nx(1, 5, 1)));
        assert!(!s4.is_registered(&n(1)));
    }

    #[test]
    fn spec_i_pt_registers_others() {
        let mut op = PrOut::register(0, 7);
        op.spec_i_pt = true;
        op.transport_ids = vec![
            TransportId::from_initiator_port(&n(2).initiator_port).unwrap(),
            TransportId::device("iqn.i:3"),
            // The sender itself is skipped.
            TransportId::from_initiator_port(&n(1).initiator_port).unwrap(),
        ];
        let (s, _) = ok(&PrState::new(), &n(1), op.clone());
        assert_eq!(keys(&s), vec![7, 7, 7]);
        assert_eq!(s.generation, 1);
        assert!(s.is_registered(&n(2)));
        assert!(s.is_registered(&n(3)) && s.is_registered(&nx(3, 9, 1)));
        assert!(
            !s.is_registered(&nx(3, 9, 2)),
            "only the receiving target port"
        );
        assert!(!s.is_registered(&nx(2, 1, 1)));
        // Registered sender: INVALID FIELD IN PARAMETER LIST.
        let mut again = op.clone();
        again.key = 7;
        err(
            &s,
            &n(1),
            again,
            CommandError::invalid_field_in_param(20, Some(3)),
        );
        // A TransportID for a port already registered.
        let (s2, _) = ok(&PrState::new(), &n(2), PrOut::register(0, 2));
        err(
            &s2,
            &n(1),
            op.clone(),
            CommandError::illegal_request(Asc::INVALID_FIELD_IN_PARAMETER_LIST),
        );
        // The same port twice.
        let mut twice = PrOut::register(0, 7);
        twice.spec_i_pt = true;
        twice.transport_ids = vec![
            TransportId::device("iqn.i:3"),
            TransportId::device("iqn.i:3"),
        ];
        err(
            &PrState::new(),
            &n(1),
            twice,
            CommandError::illegal_request(Asc::INVALID_FIELD_IN_PARAMETER_LIST),
        );
        // A format 00b TransportID covering the sender's own initiator overlaps it.
        let mut own = PrOut::register(0, 7);
        own.spec_i_pt = true;
        own.transport_ids = vec![TransportId::device("iqn.i:1")];
        err(
            &PrState::new(),
            &n(1),
            own,
            CommandError::illegal_request(Asc::INVALID_FIELD_IN_PARAMETER_LIST),
        );
        // SPEC_I_PT with a zero key from an unregistered nexus does nothing.
        let mut zero = op.clone();
        zero.sa_key = 0;
        let (s3, _) = ok(&PrState::new(), &n(1), zero);
        assert_eq!(s3.registrations, vec![]);
        assert_eq!(s3.generation, 0);
    }

    #[test]
    fn all_target_ports() {
        let mut op = PrOut::register(0, 9);
        op.all_tg_pt = true;
        let (s, _) = ok(&PrState::new(), &n(1), op.clone());
        assert_eq!(s.registrations.len(), 1);
        assert!(s.registrations[0].all_tg_pt);
        for t in [1, 2, 7] {
            assert!(s.is_registered(&nx(1, 0, t)));
        }
        assert!(!s.is_registered(&nx(1, 1, 1)), "one initiator port");
        // Through another target port it is the same registration.
        let (s1, _) = ok(&s, &nx(1, 0, 2), PrOut::register(9, 10));
        assert_eq!(keys(&s1), vec![10]);
        // Reserving through one port makes the registration the holder on all of them.
        let (s2, _) = ok(&s1, &nx(1, 0, 2), PrOut::reserve(10, WriteExclusive));
        assert!(s2.is_holder(&nx(1, 0, 1)));
        // ALL_TG_PT over a port registered through another target port: refused.
        let (p, _) = ok(&PrState::new(), &nx(1, 0, 2), PrOut::register(0, 5));
        err(
            &p,
            &n(1),
            op,
            CommandError::invalid_field_in_param(20, Some(2)),
        );
        // A release through the wildcard notifies the other nexuses it covers, not the origin.
        let (s3, _) = ok(&s2, &n(2), PrOut::register(0, 22));
        let s3 = {
            let (a, _) = ok(&s3, &nx(1, 0, 2), PrOut::release(10, WriteExclusive));
            ok(&a, &n(1), PrOut::reserve(10, WriteExclusiveRegistrantsOnly)).0
        };
        let (_, fx) = ok(
            &s3,
            &n(1),
            PrOut::release(10, WriteExclusiveRegistrantsOnly),
        );
        assert_eq!(fx.unit_attentions_for(&n(1)), vec![]);
        assert_eq!(
            fx.unit_attentions_for(&nx(1, 0, 2)),
            vec![ReservationsReleased]
        );
        assert_eq!(fx.unit_attentions_for(&n(2)), vec![ReservationsReleased]);
    }

    #[test]
    fn registration_limit() {
        let mut s = PrState::new();
        for i in 0..MAX_REGISTRATIONS - 1 {
            let nexus = Nexus::new(&format!("iqn.x:{i}"), [0; 6], "iqn.t:lun", 1);
            s.registrations.push(Registration {
                initiator_port: nexus.initiator_port.to_string(),
                target_port: nexus.target_port.to_string(),
                relative_port: 1,
                all_tg_pt: false,
                key: 1,
                aptpl: false,
            });
        }
        let (s, _) = ok(&s, &n(2), PrOut::register(0, 1));
        assert_eq!(s.registrations.len(), MAX_REGISTRATIONS);
        let e = apply(&s, &n(1), &PrOut::register(0, 1)).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::new(0x55, 0x04));
        assert_eq!(e.sense.unwrap().key, SenseKey::IllegalRequest);
        // SPEC_I_PT needing two slots where one is left.
        let mut s1 = s.clone();
        s1.registrations.pop();
        let mut op = PrOut::register(0, 5);
        op.spec_i_pt = true;
        op.transport_ids = vec![TransportId::device("iqn.other:y")];
        err(&s1, &n(3), op.clone(), e);
        s1.registrations.pop();
        assert!(apply(&s1, &n(3), &op).is_ok());
    }

    #[test]
    fn generation_counts_exactly_the_named_service_actions() {
        let s = registered(&[(1, 11), (2, 22)]);
        assert_eq!(s.generation, 2);
        let (s, _) = ok(&s, &n(1), PrOut::reserve(11, WriteExclusive));
        assert_eq!(s.generation, 2, "RESERVE");
        let (s, _) = ok(&s, &n(1), PrOut::release(11, WriteExclusive));
        assert_eq!(s.generation, 2, "RELEASE");
        let (s, _) = ok(&s, &n(2), PrOut::release(22, WriteExclusive));
        assert_eq!(s.generation, 2, "RELEASE without reservation");
        err(&s, &n(2), PrOut::register(21, 23), CONFLICT);
        let (s, _) = ok(&s, &n(2), PrOut::register_ignore(23));
        assert_eq!(s.generation, 3, "REGISTER AND IGNORE EXISTING KEY");
        let (s, _) = ok(&s, &n(1), PrOut::preempt(11, 23, WriteExclusive, false));
        assert_eq!(s.generation, 4, "PREEMPT");
        let (s, _) = ok(&s, &n(2), PrOut::register(0, 22));
        let (s, _) = ok(&s, &n(1), PrOut::preempt(11, 22, WriteExclusive, true));
        assert_eq!(s.generation, 6, "PREEMPT AND ABORT");
        let (s, _) = ok(&s, &n(1), PrOut::reserve(11, WriteExclusive));
        let (s, _) = ok(&s, &n(1), move_to(&n(2), 11, 22, false));
        assert_eq!(s.generation, 7, "REGISTER AND MOVE");
        let (s, _) = ok(&s, &n(1), PrOut::clear(11));
        assert_eq!(s.generation, 8, "CLEAR");
        // Wraps.
        let mut w = s.clone();
        w.generation = u32::MAX;
        let (w, _) = ok(&w, &n(1), PrOut::register(0, 1));
        assert_eq!(w.generation, 0);
    }

    #[test]
    fn log_index_counts_accepted_commands_only() {
        let s = registered(&[(1, 11)]);
        assert_eq!(s.log_index, 1);
        err(&s, &n(2), PrOut::reserve(1, WriteExclusive), CONFLICT);
        let (s1, _) = ok(&s, &n(1), PrOut::release(11, WriteExclusive));
        assert_eq!(s1.log_index, 2, "a GOOD no-op is still logged");
    }

    #[test]
    fn aptpl_and_persist() {
        let mut op = PrOut::register(0, 1);
        op.aptpl = true;
        let (s, fx) = ok(&PrState::new(), &n(1), op);
        assert!(s.aptpl && s.registrations[0].aptpl);
        assert!(fx.persist);
        let (s1, fx) = ok(&s, &n(1), PrOut::reserve(1, WriteExclusive));
        assert!(fx.persist, "the reservation is persistent state too");
        let (_, fx) = ok(&s1, &n(1), PrOut::reserve(1, WriteExclusive));
        assert!(!fx.persist, "nothing changed");
        let (s2, fx) = ok(&s1, &n(1), PrOut::register(1, 2));
        assert!(!s2.aptpl, "the last REGISTER's APTPL bit rules");
        assert!(fx.persist, "switching APTPL off must be written too");
        let (_, fx) = ok(&s2, &n(1), PrOut::register(2, 3));
        assert!(!fx.persist);
        let (s3, fx) = ok(&s, &n(1), PrOut::clear(1));
        assert!(fx.persist);
        assert!(s3.aptpl, "CLEAR does not change APTPL");
    }

    #[test]
    fn legacy_reservation_blocks_pr_out() {
        let mut s = PrState::new();
        s.legacy = Some(PrNexus::from(&n(1)));
        err(&s, &n(1), PrOut::register(0, 1), CONFLICT);
        err(&s, &n(2), PrOut::register_ignore(1), CONFLICT);
    }

    #[test]
    fn fence_scsi_scenario() {
        // Two nodes, two paths each (two target ports): every path registers the node's key
        // with REGISTER AND IGNORE EXISTING KEY; node 1 reserves WERO; node 2 dies and node 1
        // fences it with PREEMPT AND ABORT.
        let paths = |i: u8| [nx(i, 0, 1), nx(i, 0, 2)];
        let mut s = PrState::new();
        for i in [1u8, 2] {
            for p in paths(i) {
                s = ok(&s, &p, PrOut::register_ignore(u64::from(i) << 8)).0;
            }
        }
        assert_eq!(s.registrations.len(), 4);
        s = ok(
            &s,
            &paths(1)[0],
            PrOut::reserve(0x100, WriteExclusiveRegistrantsOnly),
        )
        .0;
        // Node 2 is registered: it may still write under WERO; the holder is path 1.
        assert!(s.is_holder(&paths(1)[0]) && !s.is_holder(&paths(1)[1]));
        let (s1, fx) = ok(
            &s,
            &paths(1)[1],
            PrOut::preempt(0x100, 0x200, WriteExclusiveRegistrantsOnly, true),
        );
        assert_eq!(keys(&s1), vec![0x100, 0x100]);
        for p in paths(2) {
            assert!(fx.aborts(&p));
            assert_eq!(fx.unit_attentions_for(&p), vec![RegistrationsPreempted]);
            assert!(!s1.is_registered(&p));
        }
        for p in paths(1) {
            assert!(!fx.aborts(&p));
            assert_eq!(fx.unit_attentions_for(&p), vec![]);
        }
        // The reservation was not the victim's: it stays with path 1 of node 1.
        assert!(s1.is_holder(&paths(1)[0]));
    }
}
