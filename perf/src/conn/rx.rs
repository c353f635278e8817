//! The receive buffer: one fixed allocation that the socket reads into in large chunks, from
//! which whole PDUs are cut without copying.
//!
//! A read may end anywhere, in the middle of a header or a data segment (a read timeout or a
//! full buffer interrupts it); the partial PDU stays in the buffer and the next read completes
//! it. Data ranges handed out stay valid until the next [`RxBuf::fill`], which may move the
//! unread tail to the front. The buffer holds at least two of the largest PDUs the initiator
//! declared it accepts, so a PDU always fits.

use std::io::{self, Read};
use std::ops::Range;

use ringsan::iscsi::pdu::{pad_len, Bhs, BHS_LEN};

/// Largest AHS area a header can announce (TotalAHSLength is 255 words).
const MAX_AHS_BYTES: usize = 255 * 4;
/// Smallest buffer: large reads amortise the system call at high queue depths.
const MIN_CAPACITY: usize = 256 * 1024;

/// What one read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// New bytes are in the buffer.
    Data,
    /// The read timeout passed without data.
    Timeout,
    /// The peer closed the connection.
    Eof,
}

/// A PDU the peer should not have sent at this size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a PDU with a {len}-byte data segment exceeds the {limit} bytes declared")]
pub struct Oversized {
    pub len: usize,
    pub limit: usize,
}

/// The receive buffer.
#[derive(Debug)]
pub struct RxBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_data: usize,
}

impl RxBuf {
    /// A buffer for PDUs with data segments of at most `max_data` bytes.
    pub fn new(max_data: usize) -> RxBuf {
        let largest = BHS_LEN + MAX_AHS_BYTES + max_data + 4;
        RxBuf {
            buf: vec![0; (2 * largest).max(MIN_CAPACITY)],
            start: 0,
            end: 0,
            max_data,
        }
    }

    /// Bytes received and not yet cut into PDUs.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Reads once from `r` into the free space.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<Fill> {
        self.make_room();
        loop {
            return match r.read(&mut self.buf[self.end..]) {
                Ok(0) => Ok(Fill::Eof),
                Ok(n) => {
                    self.end += n;
                    Ok(Fill::Data)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(Fill::Timeout)
                }
                Err(e) => Err(e),
            };
        }
    }

    /// Moves the unread tail to the front when the free space could not hold a largest PDU.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return;
        }
        let largest = BHS_LEN + MAX_AHS_BYTES + self.max_data + 4;
        if self.buf.len() - self.end < largest && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Cuts the next whole PDU: its header and the range of its data segment (padding and AHS
    /// excluded). `None` until all of it has arrived.
    pub fn next_pdu(&mut self) -> Result<Option<(Bhs, Range<usize>)>, Oversized> {
        let avail = self.end - self.start;
        if avail < BHS_LEN {
            return Ok(None);
        }
        let Ok(bhs) = Bhs::from_slice(&self.buf[self.start..self.end]) else {
            return Ok(None);
        };
        let data_len = bhs.data_segment_len();
        if data_len > self.max_data {
            return Err(Oversized {
                len: data_len,
                limit: self.max_data,
            });
        }
        let data_at = self.start + BHS_LEN + bhs.total_ahs_len_bytes();
        let total = data_at - self.start + data_len + pad_len(data_len);
        if avail < total {
            return Ok(None);
        }
        self.start += total;
        Ok(Some((bhs, data_at..data_at + data_len)))
    }

    /// A data range returned by [`RxBuf::next_pdu`].
    pub fn data(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringsan::iscsi::pdu::{NopIn, Response};

    /// A reader that hands out its bytes in fixed-size pieces, then times out, then EOF.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        piece: usize,
        timeouts: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.bytes.len() {
                if self.timeouts > 0 {
                    self.timeouts -= 1;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                return Ok(0);
            }
            let n = self.piece.min(out.len()).min(self.bytes.len() - self.at);
            out[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn nop_in(ttt: u32, data: &[u8]) -> Vec<u8> {
        let nop = NopIn {
            data_len: data.len() as u32,
            ttt,
            itt: 0xffff_ffff,
            ..Default::default()
        };
        let mut v = nop.encode().0.to_vec();
        v.extend_from_slice(data);
        v.resize(v.len() + pad_len(data.len()), 0);
        v
    }

    #[test]
    fn pdus_split_anywhere_are_reassembled() {
        let mut wire = Vec::new();
        for i in 0..50u32 {
            wire.extend(nop_in(i, &vec![i as u8; (i as usize * 37) % 300]));
        }
        for piece in [1, 7, 48, 49, 1000] {
            let mut r = Trickle {
                bytes: wire.clone(),
                at: 0,
                piece,
                timeouts: 1,
            };
            let mut rx = RxBuf::new(8192);
            let mut seen = 0u32;
            loop {
                while let Some((bhs, range)) = rx.next_pdu().unwrap() {
                    let Ok(Response::NopIn(n)) = Response::decode(&bhs) else {
                        panic!("not a NOP-In");
                    };
                    assert_eq!(n.ttt, seen);
                    let data = rx.data(range);
                    assert_eq!(data.len(), (seen as usize * 37) % 300);
                    assert!(data.iter().all(|&b| b == seen as u8));
                    seen += 1;
                }
                match rx.fill(&mut r).unwrap() {
                    Fill::Data => {}
                    Fill::Timeout => assert_eq!(r.at, wire.len(), "timeout only at the end"),
                    Fill::Eof => break,
                }
            }
            assert_eq!(seen, 50, "piece {piece}");
            assert_eq!(rx.pending(), 0);
        }
    }

    #[test]
    fn a_long_stream_wraps_the_buffer() {
        let one = nop_in(1, &[9u8; 60_000]);
        let mut wire = Vec::new();
        for _ in 0..40 {
            wire.extend_from_slice(&one);
        }
        let mut r = Trickle {
            bytes: wire,
            at: 0,
            piece: 50_001,
            timeouts: 0,
        };
        let mut rx = RxBuf::new(65536);
        let mut count = 0;
        while rx.fill(&mut r).unwrap() == Fill::Data {
            while let Some((_, range)) = rx.next_pdu().unwrap() {
                assert_eq!(rx.data(range).len(), 60_000);
                count += 1;
            }
        }
        assert_eq!(count, 40);
    }

    #[test]
    fn an_oversized_segment_is_refused() {
        let mut r = Trickle {
            bytes: nop_in(1, &[0u8; 9000]),
            at: 0,
            piece: 100_000,
            timeouts: 0,
        };
        let mut rx = RxBuf::new(8192);
        rx.fill(&mut r).unwrap();
        assert_eq!(
            rx.next_pdu(),
            Err(Oversized {
                len: 9000,
                limit: 8192
            })
        );
    }
}
