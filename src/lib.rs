//! ringsan: a mirrored iSCSI SAN target on io_uring.
//!
//! Data flows one way: [`iscsi`] (PDUs, login, sessions) -> [`scsi`] (commands, sense, VPD,
//! reservations) -> `ringsan_engine` (reactor, buffers, backends). A lower layer never imports a
//! higher one. [`config`] and [`admin`] are the control plane; [`cluster`] will hold the peer link.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod iscsi;
pub mod metrics;
pub mod scsi;
