//! ringsan-perf: the latency benchmark (an iSCSI initiator load generator built on ringsan's own
//! PDU codec). The load generator itself arrives with its own issue; this crate holds its place in
//! the workspace so that the layout is fixed from the start.
