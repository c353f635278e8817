//! The iSCSI transport (RFC 7143): PDU codec and digests, text keys, login and negotiation, CHAP,
//! sessions, connections and tasks. It turns PDUs into SCSI commands and never touches a disk.

pub mod chap;
pub mod digest;
pub mod login;
pub mod params;
pub mod pdu;
pub mod text;
