//! The two storage nodes together: [`volumes`] runs the mirrored volumes (their metadata, their
//! mirror nodes on the reactors). Still to come: the peer link for PR operations, unit attentions,
//! LUN configuration and membership (the active-active issue).

pub mod volumes;
