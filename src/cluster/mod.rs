//! The peer link between the two storage nodes: PR operations, unit attentions, LUN configuration
//! and membership. Empty until the mirroring issue; kept so the layout is fixed.
