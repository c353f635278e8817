//! The persistent reservation state of one logical unit (SPC-4 §5.9.1 overview, §5.9.7
//! registering, §5.9.10 the reservation holder, §5.9.4 APTPL) plus the legacy RESERVE/RELEASE
//! holder (SPC-2 §5.5.1, SPC-4 §5.9.3).
//!
//! One `PrState` exists per LUN for the whole cluster: it is plain data (serde), changed only by
//! the pure functions of this module, and deterministic (registrations are a `Vec` in registration
//! order) so two nodes that apply the same operations in the same order hold equal states.
//!
//! Registrations are kept per initiator port and target port, as SPC-4 keys them by I_T nexus,
//! with two widenings:
//! - ALL_TG_PT=1 (SPC-4 §6.16.3) registers the initiator port through every target port: one
//!   registration whose [`Registrant::target_port`] is `None`;
//! - a TransportID in format 00b (SPC-4 §7.6.4.6) names every initiator port of an initiator:
//!   one registration whose `initiator_port` is the bare iSCSI name, without `,i,0x<ISID>`.
//!
//! Invariant: no I_T nexus is covered by two registrations (a registration that would overlap an
//! existing one is refused), so "the registration of a nexus" is always well defined. A
//! reservation of a type other than the all registrants types has a holder, which is the
//! registrant of one existing registration; every nexus that registration covers holds it.

use serde::{Deserialize, Serialize};

use super::transport_id::{split_initiator_port, ISID_SEPARATOR};
use super::types::{PrScope, PrType};
use crate::scsi::nexus::Nexus;

/// The most registrations kept per logical unit; more is INSUFFICIENT REGISTRATION RESOURCES.
pub const MAX_REGISTRATIONS: usize = 512;

/// An I_T nexus by its port names, in a form that serializes (unlike [`Nexus`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrNexus {
    /// `IQN,i,0x<ISID>`.
    pub initiator_port: String,
    /// `IQN,t,0x<TPGT>`.
    pub target_port: String,
    /// The relative target port identifier of the target port.
    pub relative_port: u16,
}

impl PrNexus {
    /// Whether `nexus` is this I_T nexus (by port names).
    pub fn is(&self, nexus: &Nexus) -> bool {
        *self.initiator_port == *nexus.initiator_port && *self.target_port == *nexus.target_port
    }

    /// The [`Nexus`] with these port names.
    pub fn to_nexus(&self) -> Nexus {
        Nexus {
            initiator_port: self.initiator_port.as_str().into(),
            target_port: self.target_port.as_str().into(),
            relative_port: self.relative_port,
        }
    }
}

impl From<&Nexus> for PrNexus {
    fn from(n: &Nexus) -> Self {
        PrNexus {
            initiator_port: n.initiator_port.to_string(),
            target_port: n.target_port.to_string(),
            relative_port: n.relative_port,
        }
    }
}

/// An I_T nexus, or the set of I_T nexuses one registration covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Registrant {
    /// `IQN,i,0x<ISID>`: one initiator port; a bare `IQN`: every port of that initiator.
    pub initiator_port: String,
    /// `IQN,t,0x<TPGT>`: one target port; `None`: every target port (ALL_TG_PT).
    pub target_port: Option<String>,
}

impl Registrant {
    /// Exactly the I_T nexus `nexus`.
    pub fn of(nexus: &Nexus) -> Registrant {
        Registrant {
            initiator_port: nexus.initiator_port.to_string(),
            target_port: Some(nexus.target_port.to_string()),
        }
    }

    /// Whether this stands for exactly one I_T nexus.
    pub fn is_single_nexus(&self) -> bool {
        self.target_port.is_some() && self.initiator_port.contains(ISID_SEPARATOR)
    }

    /// Whether the I_T nexus `nexus` is one of these.
    pub fn covers(&self, nexus: &Nexus) -> bool {
        self.covers_ports(&nexus.initiator_port, &nexus.target_port)
    }

    /// Whether the I_T nexus of these port names is one of these.
    pub fn covers_ports(&self, initiator_port: &str, target_port: &str) -> bool {
        initiator_covers(&self.initiator_port, initiator_port)
            && match self.target_port.as_deref() {
                None => true,
                Some(t) => t == target_port,
            }
    }

    /// Whether some I_T nexus is both one of these and one of `other`.
    pub fn overlaps(&self, other: &Registrant) -> bool {
        let initiators = initiator_covers(&self.initiator_port, &other.initiator_port)
            || initiator_covers(&other.initiator_port, &self.initiator_port);
        let targets = match (&self.target_port, &other.target_port) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        initiators && targets
    }

    /// Whether every I_T nexus of `other` is one of these.
    pub fn contains(&self, other: &Registrant) -> bool {
        initiator_covers(&self.initiator_port, &other.initiator_port)
            && match (&self.target_port, &other.target_port) {
                (None, _) => true,
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => false,
            }
    }
}

/// Whether the initiator port pattern `pattern` (a port name or a bare iSCSI name) covers the
/// initiator port (or pattern) `port`.
fn initiator_covers(pattern: &str, port: &str) -> bool {
    if pattern == port {
        return true;
    }
    match split_initiator_port(pattern) {
        (_, Some(_)) => false,
        (name, None) => split_initiator_port(port).0 == name,
    }
}

/// One registration (SPC-4 §5.9.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// `IQN,i,0x<ISID>`, or the bare `IQN` for every port of that initiator (TransportID 00b).
    pub initiator_port: String,
    /// The target port through which the registration was made (`IQN,t,0x<TPGT>`).
    pub target_port: String,
    /// The relative target port identifier of `target_port`.
    pub relative_port: u16,
    /// Registered through every target port (ALL_TG_PT=1).
    pub all_tg_pt: bool,
    /// The reservation key, never zero. Serialized as a `0x`-prefixed hexadecimal string: TOML
    /// integers stop at 2^63 and many JSON readers at 2^53, and keys use all 64 bits.
    #[serde(with = "key_serde")]
    pub key: u64,
    /// The APTPL bit of the command that made or last changed the registration.
    pub aptpl: bool,
}

impl Registration {
    /// The I_T nexuses this registration covers.
    pub fn registrant(&self) -> Registrant {
        Registrant {
            initiator_port: self.initiator_port.clone(),
            target_port: (!self.all_tg_pt).then(|| self.target_port.clone()),
        }
    }

    /// Whether some I_T nexus is covered by both registrations.
    pub fn overlaps(&self, other: &Registration) -> bool {
        let initiators = initiator_covers(&self.initiator_port, &other.initiator_port)
            || initiator_covers(&other.initiator_port, &self.initiator_port);
        initiators && (self.all_tg_pt || other.all_tg_pt || self.target_port == other.target_port)
    }

    /// Whether `nexus` is registered by this registration.
    pub fn covers(&self, nexus: &Nexus) -> bool {
        initiator_covers(&self.initiator_port, &nexus.initiator_port)
            && (self.all_tg_pt || *self.target_port == *nexus.target_port)
    }
}

/// The persistent reservation (SPC-4 §5.9.9: at most one per logical unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The holder's registrant; `None` for the all registrants types, held by every registrant.
    pub holder: Option<Registrant>,
    pub pr_type: PrType,
    pub scope: PrScope,
}

/// The persistent reservation state of one logical unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrState {
    /// PRgeneration (SPC-4 §6.15.2): a wrapping counter of the registration changing service
    /// actions, reset to zero at power on.
    pub generation: u32,
    /// Registrations in the order they were made.
    pub registrations: Vec<Registration>,
    /// The persistent reservation, if any.
    pub reservation: Option<Reservation>,
    /// Activate Persist Through Power Loss: the APTPL bit of the last REGISTER, REGISTER AND
    /// IGNORE EXISTING KEY or REGISTER AND MOVE that completed (SPC-4 §5.9.4).
    pub aptpl: bool,
    /// The I_T nexus holding a RESERVE(6)/RESERVE(10) reservation.
    pub legacy: Option<PrNexus>,
    /// The number of the last operation applied: every PERSISTENT RESERVE OUT (and legacy
    /// RESERVE/RELEASE) that completes with GOOD takes the next one, so the same operations can
    /// be applied in the same order on every node.
    pub log_index: u64,
}

impl PrState {
    /// No registrations, no reservation.
    pub fn new() -> PrState {
        PrState::default()
    }

    /// Index of the registration covering `nexus`.
    pub fn registration_index(&self, nexus: &Nexus) -> Option<usize> {
        self.registrations.iter().position(|r| r.covers(nexus))
    }

    /// The registration covering `nexus`.
    pub fn registration_of(&self, nexus: &Nexus) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.covers(nexus))
    }

    /// Whether `nexus` is registered.
    pub fn is_registered(&self, nexus: &Nexus) -> bool {
        self.registration_of(nexus).is_some()
    }

    /// Whether `nexus` holds the persistent reservation (SPC-4 §5.9.10): the holder's I_T nexus,
    /// or any registered I_T nexus for the all registrants types.
    pub fn is_holder(&self, nexus: &Nexus) -> bool {
        let Some(res) = &self.reservation else {
            return false;
        };
        let Some(reg) = self.registration_of(nexus) else {
            return false;
        };
        match &res.holder {
            None => res.pr_type.all_registrants(),
            Some(holder) => *holder == reg.registrant(),
        }
    }

    /// Whether the registration at `index` holds the reservation.
    pub fn registration_holds(&self, index: usize) -> bool {
        let (Some(res), Some(reg)) = (&self.reservation, self.registrations.get(index)) else {
            return false;
        };
        match &res.holder {
            None => res.pr_type.all_registrants(),
            Some(holder) => *holder == reg.registrant(),
        }
    }

    /// The RESERVATION KEY READ RESERVATION reports: the holder's key, zero for the all
    /// registrants types (SPC-4 §6.15.3.2); `None` without a reservation.
    pub fn reservation_key(&self) -> Option<u64> {
        let res = self.reservation.as_ref()?;
        match &res.holder {
            None => Some(0),
            Some(holder) => self
                .registrations
                .iter()
                .find(|r| r.registrant() == *holder)
                .map(|r| r.key),
        }
    }

    /// Whether a legacy (RESERVE(6)/(10)) reservation is held by an I_T nexus other than `nexus`.
    pub fn legacy_held_by_other(&self, nexus: &Nexus) -> bool {
        self.legacy.as_ref().is_some_and(|h| !h.is(nexus))
    }

    /// The part of the state that APTPL makes persistent (SPC-4 §5.9.4): registrations, the
    /// reservation and the APTPL flag itself.
    pub fn persistent_part_eq(&self, other: &PrState) -> bool {
        self.registrations == other.registrations
            && self.reservation == other.reservation
            && self.aptpl == other.aptpl
    }

    /// The state after a power on (SPC-4 §5.9.4): PRgeneration zero, the legacy reservation
    /// gone, registrations and reservation kept only if APTPL was active.
    pub fn power_on(&self) -> PrState {
        let mut s = if self.aptpl {
            PrState {
                registrations: self.registrations.clone(),
                reservation: self.reservation.clone(),
                aptpl: true,
                ..PrState::default()
            }
        } else {
            PrState::default()
        };
        s.log_index = self.log_index;
        s
    }

    /// Checks the invariants every function of this module keeps; a description of the first
    /// one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.registrations.len() > MAX_REGISTRATIONS {
            return Err(format!("{} registrations", self.registrations.len()));
        }
        for (i, r) in self.registrations.iter().enumerate() {
            if r.key == 0 {
                return Err(format!("registration {i} has key 0"));
            }
            if let Some(j) = self.registrations[i + 1..]
                .iter()
                .position(|o| o.overlaps(r))
            {
                return Err(format!("registrations {i} and {} overlap", i + 1 + j));
            }
        }
        if let Some(res) = &self.reservation {
            match (&res.holder, res.pr_type.all_registrants()) {
                (None, true) => {
                    if self.registrations.is_empty() {
                        return Err("all registrants reservation without registrants".into());
                    }
                }
                (Some(h), false) => {
                    if !self.registrations.iter().any(|r| r.registrant() == *h) {
                        return Err(format!("holder {h:?} is not registered"));
                    }
                }
                (h, _) => return Err(format!("holder {h:?} with type {:?}", res.pr_type)),
            }
        }
        if self.legacy.is_some() && (self.reservation.is_some() || !self.registrations.is_empty()) {
            return Err("legacy reservation alongside persistent reservations".into());
        }
        Ok(())
    }
}

/// Serializes a reservation key as `0x` and 16 hexadecimal digits (see [`Registration::key`]).
pub mod key_serde {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(key: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{key:#018x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a reservation key as a 0x-prefixed hexadecimal string")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<u64, E> {
                let digits = v
                    .strip_prefix("0x")
                    .or_else(|| v.strip_prefix("0X"))
                    .ok_or_else(|| E::custom("missing 0x prefix"))?;
                u64::from_str_radix(digits, 16).map_err(E::custom)
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// The I_T nexus of initiator `i` (name `iqn.i:<i>`, ISID `40 00 01 37 00 <port>`) on target
    /// port `t` (TPGT and relative port `t`).
    pub fn nx(i: u8, port: u8, t: u16) -> Nexus {
        Nexus::new(
            &format!("iqn.i:{i}"),
            [0x40, 0, 1, 0x37, 0, port],
            "iqn.t:lun",
            t,
        )
    }

    /// Nexus `i` on port 0 of target port 1.
    pub fn n(i: u8) -> Nexus {
        nx(i, 0, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn reg(r: Registrant, key: u64) -> Registration {
        Registration {
            initiator_port: r.initiator_port,
            all_tg_pt: r.target_port.is_none(),
            target_port: r.target_port.unwrap_or_else(|| "iqn.t:lun,t,0x0001".into()),
            relative_port: 1,
            key,
            aptpl: false,
        }
    }

    #[test]
    fn registrant_matching() {
        let a = n(1);
        let exact = Registrant::of(&a);
        assert!(exact.is_single_nexus());
        assert!(exact.covers(&a));
        assert!(!exact.covers(&n(2)));
        assert!(!exact.covers(&nx(1, 1, 1)), "another ISID");
        assert!(!exact.covers(&nx(1, 0, 2)), "another target port");

        let all_ports = Registrant {
            initiator_port: "iqn.i:1".into(),
            target_port: Some(a.target_port.to_string()),
        };
        assert!(!all_ports.is_single_nexus());
        assert!(all_ports.covers(&a) && all_ports.covers(&nx(1, 7, 1)));
        assert!(!all_ports.covers(&nx(1, 0, 2)));
        assert!(!all_ports.covers(&n(2)));
        // "iqn.i:1" must not cover "iqn.i:11".
        assert!(!all_ports.covers(&n(11)));

        let all_tg = Registrant {
            initiator_port: a.initiator_port.to_string(),
            target_port: None,
        };
        assert!(all_tg.covers(&a) && all_tg.covers(&nx(1, 0, 9)));
        assert!(!all_tg.covers(&nx(1, 1, 1)));

        assert!(exact.overlaps(&all_ports) && all_ports.overlaps(&exact));
        assert!(exact.overlaps(&all_tg) && all_tg.overlaps(&all_ports));
        assert!(!exact.overlaps(&Registrant::of(&nx(1, 0, 2))));
        assert!(!exact.overlaps(&Registrant::of(&n(2))));
        assert!(all_ports.contains(&exact) && !exact.contains(&all_ports));
        assert!(all_tg.contains(&exact) && !all_tg.contains(&all_ports));
        assert!(!all_ports.contains(&all_tg));
    }

    #[test]
    fn holder_and_key() {
        let mut s = PrState::new();
        assert!(!s.is_holder(&n(1)));
        assert_eq!(s.reservation_key(), None);
        s.registrations.push(reg(Registrant::of(&n(1)), 11));
        s.registrations.push(reg(Registrant::of(&n(2)), 22));
        s.reservation = Some(Reservation {
            holder: Some(Registrant::of(&n(2))),
            pr_type: PrType::WriteExclusive,
            scope: PrScope::LogicalUnit,
        });
        assert!(s.check_invariants().is_ok());
        assert!(s.is_holder(&n(2)) && !s.is_holder(&n(1)) && !s.is_holder(&n(3)));
        assert!(s.registration_holds(1) && !s.registration_holds(0));
        assert_eq!(s.reservation_key(), Some(22));
        s.reservation = Some(Reservation {
            holder: None,
            pr_type: PrType::ExclusiveAccessAllRegistrants,
            scope: PrScope::LogicalUnit,
        });
        assert!(s.is_holder(&n(1)) && s.is_holder(&n(2)) && !s.is_holder(&n(3)));
        assert_eq!(s.reservation_key(), Some(0));
        assert!(s.check_invariants().is_ok());
    }

    #[test]
    fn invariants_catch_breakage() {
        let mut s = PrState::new();
        s.registrations.push(reg(Registrant::of(&n(1)), 1));
        s.registrations.push(reg(
            Registrant {
                initiator_port: "iqn.i:1".into(),
                target_port: Some(n(1).target_port.to_string()),
            },
            2,
        ));
        assert!(s.check_invariants().unwrap_err().contains("overlap"));
        s.registrations.pop();
        s.registrations[0].key = 0;
        assert!(s.check_invariants().is_err());
        s.registrations[0].key = 1;
        s.reservation = Some(Reservation {
            holder: Some(Registrant::of(&n(2))),
            pr_type: PrType::WriteExclusive,
            scope: PrScope::LogicalUnit,
        });
        assert!(s.check_invariants().is_err());
        s.reservation = Some(Reservation {
            holder: None,
            pr_type: PrType::WriteExclusive,
            scope: PrScope::LogicalUnit,
        });
        assert!(s.check_invariants().is_err());
        s.reservation = None;
        s.legacy = Some(PrNexus::from(&n(1)));
        assert!(s.check_invariants().is_err());
    }

    #[test]
    fn serde_and_power_on() {
        let mut s = PrState::new();
        s.registrations.push(reg(Registrant::of(&n(1)), u64::MAX));
        s.registrations.push(reg(Registrant::of(&n(2)), 0x42));
        s.generation = 7;
        s.log_index = 9;
        s.legacy = None;
        let text = toml::to_string(&s).unwrap();
        let back: PrState = toml::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(text.contains("key = \"0xffffffffffffffff\""), "{text}");
        assert!(text.contains("key = \"0x0000000000000042\""), "{text}");
        assert!(toml::from_str::<PrState>(&text.replace("0x0000000000000042", "42")).is_err());

        let off = s.power_on();
        assert_eq!(off.registrations.len(), 0);
        assert_eq!(off.generation, 0);
        assert_eq!(off.log_index, 9);
        s.aptpl = true;
        let on = s.power_on();
        assert_eq!(on.registrations, s.registrations);
        assert_eq!(on.generation, 0);
        assert!(on.aptpl);
    }

    #[test]
    fn pr_nexus_round_trip() {
        let a = nx(3, 2, 5);
        let p = PrNexus::from(&a);
        assert!(p.is(&a));
        assert!(!p.is(&nx(3, 2, 6)));
        assert_eq!(p.to_nexus(), a);
    }
}
