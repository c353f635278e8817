//! SCSI-3 persistent reservations (SPC-4 §5.9, PERSISTENT RESERVE IN §6.15 and OUT §6.16) and
//! legacy RESERVE/RELEASE (SPC-2 §5.5.1, SPC-4 §5.9.3), as a pure deterministic state machine:
//! no I/O, no locks, no async.
//!
//! One [`PrState`] per logical unit, shared by the whole cluster (DESIGN.md, "Reservations are
//! cluster-wide"). The flow for a command:
//! - every command: [`check_access`] against the state (RESERVATION CONFLICT, the conflict tables
//!   of SPC-4 §5.9.1 and SBC-3), after the CDB decoded;
//! - PERSISTENT RESERVE IN: [`persistent_reserve_in`] builds the parameter data;
//! - PERSISTENT RESERVE OUT: [`decode_prout`] turns CDB and parameter list into a [`PrOut`]
//!   (serializable: that is what the cluster log carries, numbered by [`PrState::log_index`]),
//!   then [`apply()`] on every node gives the same new state and the same [`PrEffects`]: unit
//!   attentions per registrant, tasks to abort (PREEMPT AND ABORT) and whether APTPL state must
//!   be written before completing;
//! - RESERVE/RELEASE: [`legacy_reserve`] / [`legacy_release`]; I_T nexus loss and LOGICAL UNIT
//!   RESET end a legacy reservation ([`on_nexus_loss`], [`on_lun_reset`]); [`PrState::power_on`]
//!   is what survives a power cycle.
//!
//! Files: [`types`] (codes), [`transport_id`] (iSCSI TransportIDs), [`state`], [`out`] (PR OUT
//! decoding), [`apply`](mod@apply) (PR OUT service actions), [`prin`] (PR IN), [`access`] (conflict
//! tables), [`legacy`] (RESERVE/RELEASE), [`log`] (the numbered log of accepted PR OUTs).

pub mod access;
pub mod apply;
pub mod legacy;
pub mod log;
pub mod out;
pub mod prin;
pub mod state;
pub mod transport_id;
pub mod types;

#[cfg(test)]
mod fuzz;

pub use access::{check_access, classify, AccessClass};
pub use apply::{
    apply, apply_with_ports, PrEffects, TargetPort, INSUFFICIENT_REGISTRATION_RESOURCES,
};
pub use legacy::{legacy_release, legacy_reserve, on_lun_reset, on_nexus_loss};
pub use log::{PrLog, PrLogEntry, PR_LOG_ENTRIES};
pub use out::{decode_prout, PrOut};
pub use prin::{
    persistent_reserve_in, read_full_status, read_keys, read_reservation, report_capabilities,
};
pub use state::{PrNexus, PrState, Registrant, Registration, Reservation, MAX_REGISTRATIONS};
pub use transport_id::{TransportId, TransportIdError};
pub use types::{PrScope, PrType, ServiceAction};
