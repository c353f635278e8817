//! The iSCSI transport (RFC 7143): PDU codec and digests, text keys, login and negotiation, CHAP,
//! sessions, connections and tasks. It turns PDUs into SCSI commands and never touches a disk.

pub mod chap;
pub mod digest;
pub mod discovery;
pub mod framing;
pub mod full_feature;
pub mod keepalive;
pub mod login;
pub mod login_phase;
pub mod outbox;
pub mod params;
pub mod pdu;
pub mod placement;
pub mod registry;
pub mod scsi_task;
pub mod server;
pub mod session;
pub mod target;
pub mod task;
pub mod task_set;
pub mod text;
pub mod text_phase;
pub mod tmf;
pub mod workers;
