//! Unit attention conditions (SAM-5 unit attention conditions, SPC-4 §5.14): which
//! conditions exist, their additional sense codes, the per-I_T-nexus queue of pending ones and
//! which commands they block.
//!
//! Rules (UA_INTLCK_CTRL=00b, see [`super::mode`]):
//! - INQUIRY and REPORT LUNS are neither blocked by a pending unit attention nor clear it, except
//!   that REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED. We report LUICLR=1 (Extended INQUIRY
//!   page), so the dispatcher clears that condition in the queues of every LU of the I_T nexus,
//!   not only the one REPORT LUNS was addressed to.
//! - REQUEST SENSE returns the highest-priority pending unit attention as its sense data (with
//!   GOOD status) and clears it.
//! - Every other command, supported or not, is terminated with CHECK CONDITION carrying the
//!   highest-priority unit attention, which is then cleared: the initiator retries.
//!
//! Traps:
//! - Order: the power-on/reset family (29h) is reported first (SAM-5); within it only the most
//!   general pending condition is kept (POWER ON, RESET … 29/00 over BUS DEVICE RESET FUNCTION
//!   29/03, used for LOGICAL UNIT RESET, over I_T NEXUS LOSS 29/07). Others are reported in
//!   arrival order, each at most once (no duplicates: a second MODE PARAMETERS CHANGED before the
//!   first is reported is the same news).
//! - The queue is bounded ([`UaQueue::CAPACITY`]); when full the newest lowest-priority
//!   condition is dropped, never a reset.
//! - The decision must be made on the raw CDB ([`ua_effect_for_cdb`]) when the CDB does not decode:
//!   an invalid INQUIRY must not consume a unit attention, an unknown opcode must report it.

use super::cdb::Command;
use super::opcodes;
use super::sense::{Asc, CommandError, Sense};

/// A unit attention condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitAttention {
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (also target reset, first login).
    PowerOnReset,
    /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED: LOGICAL UNIT RESET and target reset.
    BusDeviceReset,
    /// 29/07 I_T NEXUS LOSS OCCURRED.
    ItNexusLoss,
    /// 2A/01 MODE PARAMETERS CHANGED (another I_T nexus changed them).
    ModeParametersChanged,
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    CapacityDataChanged,
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    ReportedLunsDataChanged,
    /// 3F/03 INQUIRY DATA HAS CHANGED.
    InquiryDataChanged,
    /// 2A/06 ASYMMETRIC ACCESS STATE CHANGED.
    AsymmetricAccessStateChanged,
    /// 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR (TAS=0 aborts).
    CommandsClearedByAnotherInitiator,
    /// 2A/03 RESERVATIONS PREEMPTED.
    ReservationsPreempted,
    /// 2A/04 RESERVATIONS RELEASED.
    ReservationsReleased,
    /// 2A/05 REGISTRATIONS PREEMPTED.
    RegistrationsPreempted,
}

impl UnitAttention {
    pub const fn asc(self) -> Asc {
        match self {
            Self::PowerOnReset => Asc::POWER_ON_RESET,
            Self::BusDeviceReset => Asc::BUS_DEVICE_RESET,
            Self::ItNexusLoss => Asc::I_T_NEXUS_LOSS,
            Self::ModeParametersChanged => Asc::MODE_PARAMETERS_CHANGED,
            Self::CapacityDataChanged => Asc::CAPACITY_DATA_HAS_CHANGED,
            Self::ReportedLunsDataChanged => Asc::REPORTED_LUNS_DATA_HAS_CHANGED,
            Self::InquiryDataChanged => Asc::INQUIRY_DATA_HAS_CHANGED,
            Self::AsymmetricAccessStateChanged => Asc::ASYMMETRIC_ACCESS_STATE_CHANGED,
            Self::CommandsClearedByAnotherInitiator => Asc::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
            Self::ReservationsPreempted => Asc::RESERVATIONS_PREEMPTED,
            Self::ReservationsReleased => Asc::RESERVATIONS_RELEASED,
            Self::RegistrationsPreempted => Asc::REGISTRATIONS_PREEMPTED,
        }
    }

    /// UNIT ATTENTION sense data for this condition.
    pub const fn sense(self) -> Sense {
        Sense::unit_attention(self.asc())
    }

    /// Part of the power-on/reset family (ASC 29h).
    pub const fn is_reset(self) -> bool {
        matches!(
            self,
            Self::PowerOnReset | Self::BusDeviceReset | Self::ItNexusLoss
        )
    }

    /// Lower is reported first.
    const fn rank(self) -> u8 {
        match self {
            Self::PowerOnReset => 0,
            Self::BusDeviceReset => 1,
            Self::ItNexusLoss => 2,
            _ => 3,
        }
    }
}

/// Pending unit attentions of one I_T nexus on one logical unit, highest priority first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UaQueue {
    pending: Vec<UnitAttention>,
}

/// How a pending unit attention affects a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaEffect {
    /// Terminate with CHECK CONDITION carrying the unit attention, and clear it.
    Blocked,
    /// Run the command; the unit attention stays pending (INQUIRY).
    NotBlocked,
    /// Run the command and clear this condition if pending (REPORT LUNS).
    NotBlockedClears(UnitAttention),
    /// Return the unit attention as the sense data of REQUEST SENSE and clear it.
    ReportAsSense,
}

/// What the dispatcher does after [`UaQueue::gate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaOutcome {
    /// Execute the command.
    Proceed,
    /// Complete the command with this error (CHECK CONDITION, UNIT ATTENTION).
    Terminate(CommandError),
    /// REQUEST SENSE: return this sense data with GOOD status.
    ReturnSense(Sense),
}

/// The unit attention rule for a decoded command.
pub fn ua_blocks_command(cmd: &Command) -> UaEffect {
    match cmd {
        Command::Inquiry { .. } => UaEffect::NotBlocked,
        Command::ReportLuns { .. } => {
            UaEffect::NotBlockedClears(UnitAttention::ReportedLunsDataChanged)
        }
        Command::RequestSense { .. } => UaEffect::ReportAsSense,
        _ => UaEffect::Blocked,
    }
}

/// The unit attention rule from the opcode alone, for CDBs that do not decode.
pub fn ua_effect_for_cdb(cdb: &[u8]) -> UaEffect {
    match cdb.first() {
        Some(&opcodes::INQUIRY) => UaEffect::NotBlocked,
        Some(&opcodes::REPORT_LUNS) => {
            UaEffect::NotBlockedClears(UnitAttention::ReportedLunsDataChanged)
        }
        Some(&opcodes::REQUEST_SENSE) => UaEffect::ReportAsSense,
        _ => UaEffect::Blocked,
    }
}

impl UaQueue {
    /// Most conditions kept pending.
    pub const CAPACITY: usize = 8;

    pub fn new() -> Self {
        Self::default()
    }

    /// A queue for an I_T nexus seen for the first time: POWER ON, RESET, OR BUS DEVICE RESET
    /// OCCURRED pending (SAM-5: the first command after power on or a new nexus reports it).
    pub fn power_on() -> Self {
        Self {
            pending: vec![UnitAttention::PowerOnReset],
        }
    }

    /// Establishes `ua`. Returns false when it was already pending, superseded by a more general
    /// pending reset, or dropped because the queue is full.
    pub fn push(&mut self, ua: UnitAttention) -> bool {
        if self.pending.contains(&ua) {
            return false;
        }
        if ua.is_reset() {
            if self
                .pending
                .iter()
                .any(|p| p.is_reset() && p.rank() <= ua.rank())
            {
                return false;
            }
            self.pending.retain(|p| !p.is_reset());
        }
        let at = self
            .pending
            .iter()
            .position(|p| p.rank() > ua.rank())
            .unwrap_or(self.pending.len());
        self.pending.insert(at, ua);
        if self.pending.len() > Self::CAPACITY {
            let dropped = self.pending.pop();
            return dropped != Some(ua);
        }
        true
    }

    /// The condition that would be reported next.
    pub fn peek(&self) -> Option<UnitAttention> {
        self.pending.first().copied()
    }

    /// Reports (removes) the next condition.
    pub fn pop(&mut self) -> Option<UnitAttention> {
        if self.pending.is_empty() {
            None
        } else {
            Some(self.pending.remove(0))
        }
    }

    /// Clears `ua` if pending; returns whether it was.
    pub fn remove(&mut self, ua: UnitAttention) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| *p != ua);
        self.pending.len() != before
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Pending conditions in reporting order.
    pub fn iter(&self) -> impl Iterator<Item = UnitAttention> + '_ {
        self.pending.iter().copied()
    }

    /// Applies the unit attention rules to a decoded command, clearing what they clear.
    pub fn gate(&mut self, cmd: &Command) -> UaOutcome {
        self.apply(ua_blocks_command(cmd))
    }

    /// Applies the unit attention rules to a raw CDB (for CDBs that fail to decode; call it
    /// before returning the decode error).
    pub fn gate_cdb(&mut self, cdb: &[u8]) -> UaOutcome {
        self.apply(ua_effect_for_cdb(cdb))
    }

    fn apply(&mut self, effect: UaEffect) -> UaOutcome {
        match effect {
            UaEffect::NotBlocked => UaOutcome::Proceed,
            UaEffect::NotBlockedClears(ua) => {
                self.remove(ua);
                UaOutcome::Proceed
            }
            UaEffect::ReportAsSense => self
                .pop()
                .map_or(UaOutcome::Proceed, |ua| UaOutcome::ReturnSense(ua.sense())),
            UaEffect::Blocked => self.pop().map_or(UaOutcome::Proceed, |ua| {
                UaOutcome::Terminate(CommandError::check(ua.sense()))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{ScsiStatus, SenseKey};
    use UnitAttention::*;

    #[test]
    fn ascs() {
        assert_eq!(PowerOnReset.asc(), Asc::new(0x29, 0x00));
        assert_eq!(BusDeviceReset.asc(), Asc::new(0x29, 0x03));
        assert_eq!(ItNexusLoss.asc(), Asc::new(0x29, 0x07));
        assert_eq!(ModeParametersChanged.asc(), Asc::new(0x2A, 0x01));
        assert_eq!(CapacityDataChanged.asc(), Asc::new(0x2A, 0x09));
        assert_eq!(ReportedLunsDataChanged.asc(), Asc::new(0x3F, 0x0E));
        assert_eq!(
            CommandsClearedByAnotherInitiator.asc(),
            Asc::new(0x2F, 0x00)
        );
        assert_eq!(ReservationsPreempted.asc(), Asc::new(0x2A, 0x03));
        assert_eq!(ReservationsReleased.asc(), Asc::new(0x2A, 0x04));
        assert_eq!(RegistrationsPreempted.asc(), Asc::new(0x2A, 0x05));
        assert_eq!(PowerOnReset.sense().key, SenseKey::UnitAttention);
    }

    #[test]
    fn ordering_resets_first_then_fifo() {
        let mut q = UaQueue::new();
        assert!(q.push(ModeParametersChanged));
        assert!(q.push(CapacityDataChanged));
        assert!(q.push(ItNexusLoss));
        assert!(q.push(ReportedLunsDataChanged));
        assert_eq!(
            q.iter().collect::<Vec<_>>(),
            vec![
                ItNexusLoss,
                ModeParametersChanged,
                CapacityDataChanged,
                ReportedLunsDataChanged
            ]
        );
        // A more general reset replaces the pending one; a less general one is absorbed.
        assert!(q.push(PowerOnReset));
        assert!(!q.push(BusDeviceReset));
        assert!(!q.push(ItNexusLoss));
        assert_eq!(q.pop(), Some(PowerOnReset));
        assert_eq!(q.pop(), Some(ModeParametersChanged));
        assert_eq!(q.pop(), Some(CapacityDataChanged));
        assert_eq!(q.pop(), Some(ReportedLunsDataChanged));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn power_on_queue() {
        let mut q = UaQueue::power_on();
        assert_eq!(q.peek(), Some(PowerOnReset));
        assert!(!q.push(ItNexusLoss));
        assert_eq!(q.pop(), Some(PowerOnReset));
        assert!(q.is_empty());
    }

    #[test]
    fn no_duplicates_and_bounded() {
        let mut q = UaQueue::new();
        assert!(q.push(ModeParametersChanged));
        assert!(!q.push(ModeParametersChanged));
        assert_eq!(q.len(), 1);
        for ua in [
            CapacityDataChanged,
            ReportedLunsDataChanged,
            InquiryDataChanged,
            AsymmetricAccessStateChanged,
            CommandsClearedByAnotherInitiator,
            ReservationsPreempted,
            ReservationsReleased,
        ] {
            assert!(q.push(ua));
        }
        assert_eq!(q.len(), UaQueue::CAPACITY);
        assert!(
            !q.push(RegistrationsPreempted),
            "full: the newest low-priority condition is dropped"
        );
        assert!(q.push(BusDeviceReset), "a reset always gets in");
        assert_eq!(q.len(), UaQueue::CAPACITY);
        assert_eq!(q.peek(), Some(BusDeviceReset));
        assert!(!q.iter().any(|u| u == ReservationsReleased));
        assert!(q.remove(CapacityDataChanged));
        assert!(!q.remove(CapacityDataChanged));
        q.clear();
        assert!(q.is_empty());
    }

    #[test]
    fn blocking_rules() {
        let inq = Command::Inquiry {
            evpd: false,
            page: 0,
            alloc_len: 36,
        };
        let rl = Command::ReportLuns {
            select_report: 0,
            alloc_len: 16,
        };
        let rs = Command::RequestSense {
            desc: false,
            alloc_len: 18,
        };
        let rd = Command::Read {
            lba: 0,
            blocks: 1,
            fua: false,
            dpo: false,
        };
        assert_eq!(ua_blocks_command(&inq), UaEffect::NotBlocked);
        assert_eq!(
            ua_blocks_command(&rl),
            UaEffect::NotBlockedClears(ReportedLunsDataChanged)
        );
        assert_eq!(ua_blocks_command(&rs), UaEffect::ReportAsSense);
        assert_eq!(ua_blocks_command(&rd), UaEffect::Blocked);
        assert_eq!(
            ua_blocks_command(&Command::TestUnitReady),
            UaEffect::Blocked
        );
        assert_eq!(ua_effect_for_cdb(&[0x12, 0xFF]), UaEffect::NotBlocked);
        assert_eq!(
            ua_effect_for_cdb(&[0xA0]),
            UaEffect::NotBlockedClears(ReportedLunsDataChanged)
        );
        assert_eq!(ua_effect_for_cdb(&[0x03]), UaEffect::ReportAsSense);
        assert_eq!(ua_effect_for_cdb(&[0xFF]), UaEffect::Blocked);
        assert_eq!(ua_effect_for_cdb(&[]), UaEffect::Blocked);
    }

    #[test]
    fn gate() {
        let mut q = UaQueue::new();
        q.push(PowerOnReset);
        q.push(ReportedLunsDataChanged);
        q.push(ModeParametersChanged);
        let inq = Command::Inquiry {
            evpd: true,
            page: 0x83,
            alloc_len: 255,
        };
        assert_eq!(q.gate(&inq), UaOutcome::Proceed);
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.gate(&Command::ReportLuns {
                select_report: 0,
                alloc_len: 16
            }),
            UaOutcome::Proceed
        );
        assert_eq!(
            q.len(),
            2,
            "REPORT LUNS cleared REPORTED LUNS DATA HAS CHANGED"
        );
        match q.gate(&Command::TestUnitReady) {
            UaOutcome::Terminate(e) => {
                assert_eq!(e.status, ScsiStatus::CheckCondition);
                assert_eq!(e.sense.unwrap().asc, Asc::POWER_ON_RESET);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            q.gate(&Command::RequestSense {
                desc: false,
                alloc_len: 18
            }),
            UaOutcome::ReturnSense(ModeParametersChanged.sense())
        );
        assert_eq!(q.gate(&Command::TestUnitReady), UaOutcome::Proceed);
        assert_eq!(
            q.gate(&Command::RequestSense {
                desc: false,
                alloc_len: 18
            }),
            UaOutcome::Proceed
        );
        q.push(CapacityDataChanged);
        assert!(matches!(q.gate_cdb(&[0xC0]), UaOutcome::Terminate(_)));
        assert!(q.is_empty());
    }
}
