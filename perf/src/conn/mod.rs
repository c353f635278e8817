//! One TCP connection to a portal in one iSCSI session: connect, login ([`login`]), framing
//! ([`rx`]), the command window and sequence numbers, and the blocking commands used at setup
//! ([`setup`]). The I/O loop itself lives in `session`; this module knows nothing of workloads.
//!
//! Sending is buffered: PDUs are queued into one reusable buffer ([`Link::queue`]) and written
//! with one system call ([`Conn::flush`]), so answering a batch of completions with a batch of
//! new commands costs one write. Reads use a socket read timeout, never `poll` (no `unsafe`
//! outside `engine/`).
//!
//! Traps: CmdSN may only be used while it is within MaxCmdSN (serial arithmetic, RFC 1982); a
//! MaxCmdSN below ExpCmdSN - 1 is invalid and ignored (RFC 7143 §4.2.2.1). StatSN advances only
//! on PDUs that carry status: a Data-In without S, an R2T and an unsolicited NOP-In carry the
//! *next* StatSN and must not advance it.

pub mod cdb;
pub mod login;
pub mod rx;
pub mod setup;

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use ringsan::iscsi::pdu::{pad_len, Bhs, NopIn, NopOut, Response, RESERVED_TAG};

use self::rx::{Fill, Oversized, RxBuf};

/// What this initiator declares as its MaxRecvDataSegmentLength: the largest data segment the
/// target may send us.
pub const OUR_MAX_RECV_DSL: usize = 256 * 1024;
/// Bytes queued before a flush is forced (bounds the copy of large writes).
const FLUSH_AT_BYTES: usize = 256 * 1024;

/// Why a connection failed. Every variant names the portal.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to {portal}: {source}")]
    Connect { portal: String, source: io::Error },
    #[error("connection to {portal} lost: {source}")]
    Io { portal: String, source: io::Error },
    #[error("{portal} closed the connection")]
    Closed { portal: String },
    #[error("protocol error from {portal}: {what}")]
    Protocol { portal: String, what: String },
    #[error("login to {portal} failed: {what}")]
    Login { portal: String, what: String },
    #[error("{portal}: {what}")]
    Timeout { portal: String, what: String },
    #[error("{portal}: {what}")]
    Scsi { portal: String, what: String },
}

/// Serial number arithmetic (RFC 1982, 32 bits): `a <= b`.
pub fn sn_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < 0x8000_0000
}

/// Session parameters that shape what the initiator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The target's MaxRecvDataSegmentLength: the most data one PDU of ours may carry.
    pub max_send_dsl: usize,
    pub first_burst: usize,
    pub max_burst: usize,
    pub immediate_data: bool,
    pub initial_r2t: bool,
}

impl Default for Negotiated {
    /// The RFC 7143 defaults (§13.12-§13.14) and the declaration-less 8192.
    fn default() -> Negotiated {
        Negotiated {
            max_send_dsl: 8192,
            first_burst: 65536,
            max_burst: 262_144,
            immediate_data: true,
            initial_r2t: true,
        }
    }
}

impl Negotiated {
    /// Bytes of a write of `len` bytes that go as immediate data in the command PDU.
    pub fn immediate_len(&self, len: usize) -> usize {
        if self.immediate_data {
            len.min(self.first_burst).min(self.max_send_dsl)
        } else {
            0
        }
    }
}

/// CmdSN, ExpStatSN and the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sns {
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub max_cmdsn: u32,
}

/// The sending half of a connection and its session state: what PDU handlers need while the
/// receive buffer is borrowed.
#[derive(Debug)]
pub struct Link {
    pub portal: String,
    pub tx: Vec<u8>,
    pub sn: Sns,
    pub params: Negotiated,
    /// The encoded LUN field.
    pub lun: u64,
    /// ITTs for PDUs outside the I/O path (login, setup, logout) have the top bit set, so they
    /// never collide with I/O slots.
    ctl_itt: u32,
}

impl Link {
    /// Queues a PDU (header, data, padding) for the next flush.
    pub fn queue(&mut self, bhs: &Bhs, data: &[u8]) {
        self.tx.extend_from_slice(&bhs.0);
        self.tx.extend_from_slice(data);
        self.tx.resize(self.tx.len() + pad_len(data.len()), 0);
    }

    /// Whether enough is queued that it should be written before queueing more.
    pub fn should_flush(&self) -> bool {
        self.tx.len() >= FLUSH_AT_BYTES
    }

    /// Whether a non-immediate command may be sent now (CmdSN within MaxCmdSN).
    pub fn window_open(&self) -> bool {
        sn_le(self.sn.cmdsn, self.sn.max_cmdsn)
    }

    /// The CmdSN for a new non-immediate command; advances it.
    pub fn take_cmdsn(&mut self) -> u32 {
        let sn = self.sn.cmdsn;
        self.sn.cmdsn = sn.wrapping_add(1);
        sn
    }

    /// An ITT for a control PDU.
    pub fn next_ctl_itt(&mut self) -> u32 {
        self.ctl_itt = (self.ctl_itt.wrapping_add(1) & 0x7fff_ffff) | 0x8000_0000;
        if self.ctl_itt == RESERVED_TAG {
            self.ctl_itt = 0x8000_0000;
        }
        self.ctl_itt
    }

    /// Queues the answer to a target NOP-In ping (ITT reserved, TTT set): a NOP-Out echoing
    /// its TTT and LUN, immediate, with ITT reserved. Other NOP-Ins need no answer.
    pub fn answer_ping(&mut self, n: &NopIn) {
        if n.itt != RESERVED_TAG || n.ttt == RESERVED_TAG {
            return;
        }
        let reply = NopOut {
            immediate: true,
            data_len: 0,
            lun: n.lun,
            itt: RESERVED_TAG,
            ttt: n.ttt,
            cmdsn: self.sn.cmdsn,
            exp_statsn: self.sn.exp_statsn,
        };
        self.queue(&reply.encode(), &[]);
    }

    /// Takes the window and StatSN from a target PDU.
    pub fn track(&mut self, r: &Response) {
        let (statsn, exp, max) = match r {
            Response::ScsiResponse(p) => (Some(p.statsn), p.exp_cmdsn, p.max_cmdsn),
            Response::DataIn(p) => (
                p.status_present.then_some(p.statsn),
                p.exp_cmdsn,
                p.max_cmdsn,
            ),
            Response::R2t(p) => (None, p.exp_cmdsn, p.max_cmdsn),
            Response::NopIn(p) => (
                (p.itt != RESERVED_TAG).then_some(p.statsn),
                p.exp_cmdsn,
                p.max_cmdsn,
            ),
            Response::TaskMgmt(p) => (Some(p.statsn), p.exp_cmdsn, p.max_cmdsn),
            Response::Logout(p) => (Some(p.statsn), p.exp_cmdsn, p.max_cmdsn),
            Response::Reject(p) => (Some(p.statsn), p.exp_cmdsn, p.max_cmdsn),
            Response::Async(p) => (Some(p.statsn), p.exp_cmdsn, p.max_cmdsn),
            Response::Login(_) | Response::Text(_) => return,
        };
        if let Some(s) = statsn {
            if sn_le(self.sn.exp_statsn, s.wrapping_add(1)) {
                self.sn.exp_statsn = s.wrapping_add(1);
            }
        }
        // A MaxCmdSN of ExpCmdSN - 1 closes the window; anything lower is invalid.
        if sn_le(exp.wrapping_sub(1), max) && sn_le(self.sn.max_cmdsn, max) {
            self.sn.max_cmdsn = max;
        }
    }

    fn protocol(&self, what: impl Into<String>) -> ConnError {
        ConnError::Protocol {
            portal: self.portal.clone(),
            what: what.into(),
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    pub rx: RxBuf,
    pub link: Link,
    read_timeout: Option<Duration>,
    blocking: bool,
}

impl Conn {
    /// Connects to `portal` (`host:port`) within `timeout`, with TCP_NODELAY, and a write
    /// timeout of `timeout` so a dead peer cannot block a send forever.
    pub fn connect(portal: &str, lun: u64, timeout: Duration) -> Result<Conn, ConnError> {
        let err = |source| ConnError::Connect {
            portal: portal.to_string(),
            source,
        };
        let addrs: Vec<_> = portal.to_socket_addrs().map_err(err)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => return Conn::on_stream(stream, portal, lun, timeout).map_err(err),
                Err(e) => last = e,
            }
        }
        Err(err(last))
    }

    fn on_stream(stream: TcpStream, portal: &str, lun: u64, timeout: Duration) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_read_timeout(Some(timeout))?;
        Ok(Conn {
            stream,
            rx: RxBuf::new(OUR_MAX_RECV_DSL),
            link: Link {
                portal: portal.to_string(),
                tx: Vec::with_capacity(2 * FLUSH_AT_BYTES),
                sn: Sns::default(),
                params: Negotiated::default(),
                lun,
                ctl_itt: 0x8000_0000,
            },
            read_timeout: Some(timeout),
            blocking: true,
        })
    }

    /// Writes everything queued (in blocking mode: a full socket buffer waits, bounded by the
    /// write timeout).
    pub fn flush(&mut self) -> Result<(), ConnError> {
        if self.link.tx.is_empty() {
            return Ok(());
        }
        self.set_blocking(true)?;
        let r = self.stream.write_all(&self.link.tx);
        self.link.tx.clear();
        r.map_err(|source| self.io_error(source))
    }

    /// Reads once (blocking up to the read timeout).
    pub fn fill(&mut self) -> Result<Fill, ConnError> {
        match self.rx.fill(&mut self.stream) {
            Ok(Fill::Eof) => Err(ConnError::Closed {
                portal: self.link.portal.clone(),
            }),
            Ok(f) => Ok(f),
            Err(source) => Err(self.io_error(source)),
        }
    }

    /// Sets the socket read timeout (a system call only when it changes).
    pub fn set_read_timeout(&mut self, d: Duration) -> Result<(), ConnError> {
        let d = d.max(Duration::from_micros(1));
        if self.read_timeout == Some(d) {
            return Ok(());
        }
        self.stream
            .set_read_timeout(Some(d))
            .map_err(|source| self.io_error(source))?;
        self.read_timeout = Some(d);
        Ok(())
    }

    /// Switches between blocking reads (with the read timeout) and polling reads that return
    /// at once (a system call only when it changes).
    pub fn set_blocking(&mut self, blocking: bool) -> Result<(), ConnError> {
        if self.blocking == blocking {
            return Ok(());
        }
        self.stream
            .set_nonblocking(!blocking)
            .map_err(|source| self.io_error(source))?;
        self.blocking = blocking;
        Ok(())
    }

    /// Closes both directions (the peer sees the connection drop at once).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The next whole PDU, decoded, with its data range; the window and StatSN are tracked.
    pub fn next_response(
        &mut self,
    ) -> Result<Option<(Response, std::ops::Range<usize>)>, ConnError> {
        let next = self
            .rx
            .next_pdu()
            .map_err(|e: Oversized| self.link.protocol(e.to_string()))?;
        let Some((bhs, range)) = next else {
            return Ok(None);
        };
        let r = Response::decode(&bhs).map_err(|e| self.link.protocol(e.to_string()))?;
        self.link.track(&r);
        Ok(Some((r, range)))
    }

    fn io_error(&self, source: io::Error) -> ConnError {
        ConnError::Io {
            portal: self.link.portal.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringsan::iscsi::pdu::{DataIn, NopIn, ScsiResponse};

    fn link() -> Link {
        Link {
            portal: "p".into(),
            tx: Vec::new(),
            sn: Sns {
                cmdsn: 10,
                exp_statsn: 5,
                max_cmdsn: 10,
            },
            params: Negotiated::default(),
            lun: 0,
            ctl_itt: 0x8000_0000,
        }
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(sn_le(1, 1) && sn_le(1, 2) && !sn_le(2, 1));
        assert!(sn_le(0xffff_fff0, 3), "3 is after 0xfffffff0");
        assert!(!sn_le(3, 0xffff_fff0));
    }

    #[test]
    fn the_window_opens_and_closes() {
        let mut l = link();
        assert!(l.window_open());
        assert_eq!(l.take_cmdsn(), 10);
        assert!(!l.window_open(), "CmdSN 11 > MaxCmdSN 10");
        let rsp = ScsiResponse {
            statsn: 5,
            exp_cmdsn: 11,
            max_cmdsn: 20,
            ..Default::default()
        };
        l.track(&Response::ScsiResponse(rsp));
        assert!(l.window_open());
        assert_eq!(l.sn.exp_statsn, 6);
        // An invalid MaxCmdSN (below ExpCmdSN - 1) is ignored; an older one too.
        let bad = ScsiResponse {
            statsn: 6,
            exp_cmdsn: 11,
            max_cmdsn: 5,
            ..Default::default()
        };
        l.track(&Response::ScsiResponse(bad));
        assert_eq!(l.sn.max_cmdsn, 20);
    }

    #[test]
    fn only_status_pdus_advance_statsn() {
        let mut l = link();
        let data = DataIn {
            statsn: 9,
            exp_cmdsn: 10,
            max_cmdsn: 12,
            ..Default::default()
        };
        l.track(&Response::DataIn(data));
        assert_eq!(l.sn.exp_statsn, 5, "Data-In without S");
        l.track(&Response::DataIn(DataIn {
            status_present: true,
            final_flag: true,
            ..data
        }));
        assert_eq!(l.sn.exp_statsn, 10);
        let ping = NopIn {
            itt: RESERVED_TAG,
            ttt: 3,
            statsn: 10,
            exp_cmdsn: 10,
            max_cmdsn: 12,
            ..Default::default()
        };
        l.track(&Response::NopIn(ping));
        assert_eq!(l.sn.exp_statsn, 10, "a target ping carries the next StatSN");
        assert_eq!(l.sn.max_cmdsn, 12);
    }

    #[test]
    fn immediate_data_is_bounded_by_first_burst_and_the_peers_segment_size() {
        let p = Negotiated {
            max_send_dsl: 8192,
            first_burst: 65536,
            ..Negotiated::default()
        };
        assert_eq!(p.immediate_len(4096), 4096);
        assert_eq!(p.immediate_len(131072), 8192);
        let p = Negotiated {
            max_send_dsl: 262144,
            first_burst: 65536,
            ..p
        };
        assert_eq!(p.immediate_len(131072), 65536);
        let none = Negotiated {
            immediate_data: false,
            ..p
        };
        assert_eq!(none.immediate_len(4096), 0);
    }

    #[test]
    fn control_itts_have_the_top_bit_and_are_never_reserved() {
        let mut l = link();
        l.ctl_itt = 0xffff_fffe;
        let a = l.next_ctl_itt();
        assert_ne!(a, RESERVED_TAG);
        assert!(a & 0x8000_0000 != 0);
        assert!(l.next_ctl_itt() & 0x8000_0000 != 0);
    }
}
