//! The I_T nexus: which initiator port talks to which target port. Unit attentions, legacy
//! reservations and (later) persistent reservations all belong to a nexus, not to a session, so
//! they survive logout, login and session reinstatement of the same ports (SAM-5 §4.6).

use std::sync::Arc;

/// An I_T nexus, by its SCSI port names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nexus {
    /// `IQN,i,0x<ISID>` (RFC 7143 §13.14: the iSCSI initiator port name).
    pub initiator_port: Arc<str>,
    /// `IQN,t,0x<TPGT>` (the iSCSI target port name).
    pub target_port: Arc<str>,
    /// The relative target port identifier of the target port (VPD 83h, type 4h).
    pub relative_port: u16,
}

impl Nexus {
    /// The nexus of initiator `initiator` with ISID `isid` on target `target` portal group `tpgt`.
    pub fn new(initiator: &str, isid: [u8; 6], target: &str, tpgt: u16) -> Nexus {
        Nexus {
            initiator_port: initiator_port_name(initiator, isid).into(),
            target_port: target_port_name(target, tpgt).into(),
            relative_port: tpgt,
        }
    }
}

/// `IQN,i,0x<ISID as 12 hex digits>`.
pub fn initiator_port_name(initiator: &str, isid: [u8; 6]) -> String {
    format!("{},i,0x{}", initiator, hex::encode(isid))
}

/// `IQN,t,0x<TPGT as 4 hex digits>`.
pub fn target_port_name(target: &str, tpgt: u16) -> String {
    format!("{target},t,0x{tpgt:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_rfc_7143() {
        let n = Nexus::new("iqn.a:b", [0x40, 0, 1, 0x37, 0, 0], "iqn.t:x", 1);
        assert_eq!(&*n.initiator_port, "iqn.a:b,i,0x400001370000");
        assert_eq!(&*n.target_port, "iqn.t:x,t,0x0001");
    }
}
