//! The SCSI layer (SPC-4, SBC-3): CDB decoding, sense data, INQUIRY and VPD pages, mode pages,
//! capacity, REPORT LUNS, supported opcodes and unit attentions. It turns CDBs into block
//! operations for the engine and knows nothing of iSCSI.
//!
//! Everything here is pure: bytes in, bytes (or a [`CommandError`]) out, no I/O and no async.
//! The executor decodes a CDB with [`cdb::decode`] (which refuses whatever is not in the
//! [`opcodes::SUPPORTED`] table), gates it through the I_T nexus's [`ua::UaQueue`], runs it
//! against the engine and builds responses with the page builders, truncating each to the
//! command's allocation length.

pub mod alua;
pub mod capacity;
pub mod cdb;
pub mod exec;
pub mod geometry;
pub mod inquiry;
pub mod lba_status;
pub mod lun;
pub mod mirrored;
pub mod mode;
pub mod nexus;
pub mod opcodes;
pub mod pr;
pub mod pr_store;
pub mod report_luns;
pub mod request_sense;
pub mod sense;
pub mod transfer;
pub mod ua;
pub mod unmap;
pub mod vpd;

pub use cdb::{decode, decode_any, Command};
pub use geometry::LuGeometry;
pub use inquiry::LuIdentity;
pub use mode::ModeState;
pub use sense::{Asc, CommandError, ScsiStatus, Sense, SenseKey};
pub use ua::{UaEffect, UaOutcome, UaQueue, UnitAttention};
