//! Persistent reservation codes: the PERSISTENT RESERVE OUT service actions (SPC-4 §6.16.1), the
//! persistent reservation scope and types (SPC-4 §6.15.3.3) and the PERSISTENT RESERVE IN
//! service actions (SPC-4 §6.15.1).
//!
//! Traps:
//! - Type codes 0h, 2h, 4h and 9h-Fh are reserved (2h and 4h were the obsolete read types);
//!   a RESERVE, RELEASE, PREEMPT or PREEMPT AND ABORT that names one is INVALID FIELD IN CDB.
//! - Only LU_SCOPE (0h) exists: element scope (2h) is obsolete since SPC-3.
//! - The "all registrants" types (7h, 8h) have no single holder: every registered I_T nexus holds
//!   the reservation (SPC-4 §5.9.10) and READ RESERVATION reports a RESERVATION KEY of zero.

use serde::{Deserialize, Serialize};

/// PERSISTENT RESERVE OUT service action (SPC-4 §6.16.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceAction {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnoreExistingKey,
    RegisterAndMove,
}

impl ServiceAction {
    /// The 5-bit code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Register => 0x00,
            Self::Reserve => 0x01,
            Self::Release => 0x02,
            Self::Clear => 0x03,
            Self::Preempt => 0x04,
            Self::PreemptAndAbort => 0x05,
            Self::RegisterAndIgnoreExistingKey => 0x06,
            Self::RegisterAndMove => 0x07,
        }
    }

    /// Parses a SERVICE ACTION field; `None` for the reserved codes 08h-1Fh.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => Self::Register,
            0x01 => Self::Reserve,
            0x02 => Self::Release,
            0x03 => Self::Clear,
            0x04 => Self::Preempt,
            0x05 => Self::PreemptAndAbort,
            0x06 => Self::RegisterAndIgnoreExistingKey,
            0x07 => Self::RegisterAndMove,
            _ => return None,
        })
    }

    /// Whether the SCOPE and TYPE fields of the CDB are used (SPC-4 §6.16.2, "PERSISTENT RESERVE
    /// OUT service actions and valid parameters"): RESERVE, RELEASE, PREEMPT and PREEMPT AND
    /// ABORT. The others ignore them.
    pub const fn uses_type(self) -> bool {
        matches!(
            self,
            Self::Reserve | Self::Release | Self::Preempt | Self::PreemptAndAbort
        )
    }

    /// A name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Register => "REGISTER",
            Self::Reserve => "RESERVE",
            Self::Release => "RELEASE",
            Self::Clear => "CLEAR",
            Self::Preempt => "PREEMPT",
            Self::PreemptAndAbort => "PREEMPT AND ABORT",
            Self::RegisterAndIgnoreExistingKey => "REGISTER AND IGNORE EXISTING KEY",
            Self::RegisterAndMove => "REGISTER AND MOVE",
        }
    }
}

/// Persistent reservation type (SPC-4 §6.15.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrType {
    /// 1h WE: only the holder writes; everyone reads.
    WriteExclusive,
    /// 3h EA: only the holder reads or writes.
    ExclusiveAccess,
    /// 5h WERO: registrants write; everyone reads.
    WriteExclusiveRegistrantsOnly,
    /// 6h EARO: only registrants read or write.
    ExclusiveAccessRegistrantsOnly,
    /// 7h WEAR: every registrant is a holder; registrants write, everyone reads.
    WriteExclusiveAllRegistrants,
    /// 8h EAAR: every registrant is a holder; only registrants read or write.
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Every type, in code order.
    pub const ALL: [PrType; 6] = [
        Self::WriteExclusive,
        Self::ExclusiveAccess,
        Self::WriteExclusiveRegistrantsOnly,
        Self::ExclusiveAccessRegistrantsOnly,
        Self::WriteExclusiveAllRegistrants,
        Self::ExclusiveAccessAllRegistrants,
    ];

    /// The 4-bit TYPE code.
    pub const fn code(self) -> u8 {
        match self {
            Self::WriteExclusive => 0x1,
            Self::ExclusiveAccess => 0x3,
            Self::WriteExclusiveRegistrantsOnly => 0x5,
            Self::ExclusiveAccessRegistrantsOnly => 0x6,
            Self::WriteExclusiveAllRegistrants => 0x7,
            Self::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Parses a TYPE field; `None` for reserved and obsolete codes.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x1 => Self::WriteExclusive,
            0x3 => Self::ExclusiveAccess,
            0x5 => Self::WriteExclusiveRegistrantsOnly,
            0x6 => Self::ExclusiveAccessRegistrantsOnly,
            0x7 => Self::WriteExclusiveAllRegistrants,
            0x8 => Self::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// 7h and 8h: every registered I_T nexus is a reservation holder.
    pub const fn all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// 5h and 6h.
    pub const fn registrants_only(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveRegistrantsOnly | Self::ExclusiveAccessRegistrantsOnly
        )
    }

    /// Registered I_T nexuses that do not hold the reservation still get full access (the
    /// registrants only and all registrants types).
    pub const fn registrants_have_access(self) -> bool {
        self.registrants_only() || self.all_registrants()
    }

    /// Reads conflict for those without access (the exclusive access types 3h, 6h, 8h).
    pub const fn exclusive_access(self) -> bool {
        matches!(
            self,
            Self::ExclusiveAccess
                | Self::ExclusiveAccessRegistrantsOnly
                | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// The name SPC-4 gives the type.
    pub const fn long_name(self) -> &'static str {
        match self {
            Self::WriteExclusive => "Write Exclusive",
            Self::ExclusiveAccess => "Exclusive Access",
            Self::WriteExclusiveRegistrantsOnly => "Write Exclusive, Registrants Only",
            Self::ExclusiveAccessRegistrantsOnly => "Exclusive Access, Registrants Only",
            Self::WriteExclusiveAllRegistrants => "Write Exclusive, All Registrants",
            Self::ExclusiveAccessAllRegistrants => "Exclusive Access, All Registrants",
        }
    }

    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::WriteExclusive => "WE",
            Self::ExclusiveAccess => "EA",
            Self::WriteExclusiveRegistrantsOnly => "WERO",
            Self::ExclusiveAccessRegistrantsOnly => "EARO",
            Self::WriteExclusiveAllRegistrants => "WEAR",
            Self::ExclusiveAccessAllRegistrants => "EAAR",
        }
    }
}

/// Persistent reservation scope (SPC-4 §6.15.3.3): only LU_SCOPE exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PrScope {
    /// 0h: the whole logical unit.
    #[default]
    LogicalUnit,
}

impl PrScope {
    /// The 4-bit SCOPE code.
    pub const fn code(self) -> u8 {
        0
    }

    /// Parses a SCOPE field; `None` for everything but LU_SCOPE.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::LogicalUnit),
            _ => None,
        }
    }
}

/// PERSISTENT RESERVE IN service actions (SPC-4 §6.15.1).
pub mod prin_sa {
    pub const READ_KEYS: u8 = 0x00;
    pub const READ_RESERVATION: u8 = 0x01;
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    pub const READ_FULL_STATUS: u8 = 0x03;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in 0..=0x1F {
            match ServiceAction::from_code(c) {
                Some(sa) => assert_eq!(sa.code(), c),
                None => assert!(c > 7),
            }
        }
        for c in 0..=0x0F {
            match PrType::from_code(c) {
                Some(t) => assert_eq!(t.code(), c),
                None => assert!(matches!(c, 0 | 2 | 4 | 9..=0xF)),
            }
        }
        assert_eq!(PrScope::from_code(0), Some(PrScope::LogicalUnit));
        assert_eq!(PrScope::from_code(2), None);
        assert_eq!(PrType::ALL.len(), 6);
    }

    #[test]
    fn type_families() {
        use PrType::*;
        assert!(WriteExclusiveAllRegistrants.all_registrants());
        assert!(ExclusiveAccessAllRegistrants.all_registrants());
        assert!(!WriteExclusiveRegistrantsOnly.all_registrants());
        assert!(ExclusiveAccessRegistrantsOnly.registrants_only());
        assert!(!WriteExclusive.registrants_have_access());
        assert!(!ExclusiveAccess.registrants_have_access());
        assert!(ExclusiveAccess.exclusive_access());
        assert!(!WriteExclusiveAllRegistrants.exclusive_access());
        assert!(ServiceAction::Preempt.uses_type());
        assert!(!ServiceAction::Clear.uses_type());
        assert!(!ServiceAction::RegisterAndMove.uses_type());
    }
}
