//! ringsan-perf: the latency benchmark, an iSCSI initiator load generator built on ringsan's own
//! PDU codec (no kernel initiator, no libiscsi).
//!
//! `ringsan-perf run` drives one or more LUNs, each named by a libiscsi-style URL, with a
//! fio-like workload: one OS thread per session, a blocking socket, `iodepth` commands pipelined
//! on it. Latencies go into HdrHistograms per operation and per one-second interval; the result
//! ([`result::RunResult`]) is a stable serde struct that `--json` writes and later tools read back.
//!
//! ```text
//! ringsan-perf run --url iscsi://127.0.0.1:3260/iqn.2026-11.io.ringsan:demo/0 \
//!     --rw randrw --rwmix 70 --bs 4k --iodepth 32 --runtime 30 --ramp 2 \
//!     --verify --json run.json --hdr-log run.hlog
//! ringsan-perf run --url iscsi://a:3260/IQN/0 --url iscsi://b:3260/IQN/0 --rate 5000 --timeout 2
//! ```
//!
//! `ringsan-perf compare` puts result files side by side ([`compare`]); `ringsan-perf suite` runs
//! the standard matrix against two LUNs in interleaved rounds ([`suite`]).
//!
//! Layers, top down: [`run`] (spawns the sessions, collects, builds the result) ->
//! [`session`] (one session's I/O loop, failover) -> [`conn`] (one TCP connection: login,
//! PDU framing, sequence numbers). Pure pieces beside them: [`url`], [`size`], [`options`],
//! [`clock`], [`rng`], [`schedule`], [`stamp`], [`verify`], [`histo`], [`collect`],
//! [`stalls`], [`hdrlog`], [`assemble`], [`report`], [`result`], [`cpu`]. Nothing here touches
//! the target's code: only the codec (`ringsan::iscsi::pdu`), the CHAP helpers and the text-key
//! parser are shared.

pub mod assemble;
pub mod clock;
pub mod collect;
pub mod compare;
pub mod conn;
pub mod cpu;
pub mod hdrlog;
pub mod histo;
pub mod options;
pub mod report;
pub mod result;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod session;
pub mod size;
pub mod stalls;
pub mod stamp;
pub mod suite;
pub mod url;
pub mod verify;
