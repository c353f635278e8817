//! Framing on one connection: reading a PDU off the socket (BHS, AHS, header digest, data
//! segment with padding and data digest) and turning an encoded BHS plus data into one gathered
//! send. RFC 7143 §11.1 (PDU layout), §13.1 (digests; padding is covered by the data digest).
//!
//! Traps: the data segment length is 24 bits and must be checked against our
//! MaxRecvDataSegmentLength before anything is allocated; a header digest error means the
//! framing can no longer be trusted, so the connection is closed (§7.8 at ERL 0).

use ringsan_engine::buffer::{Buf, SharedBuf};
use ringsan_engine::iobuf::IoBufMut;
use ringsan_engine::net::{Gather, Segment, TcpStream, Transport, HEAD_BYTES};

use crate::iscsi::digest;
use crate::iscsi::pdu::{pad_len, Bhs, BHS_LEN};

/// Longest AHS a BHS can announce (TotalAHSLength is one byte of 4-byte words).
pub const MAX_AHS_BYTES: usize = 255 * 4;

/// Digest settings of a connection (fixed after login).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    /// CRC32C header digest negotiated.
    pub header: bool,
    /// CRC32C data digest negotiated.
    pub data: bool,
}

/// Why a connection cannot go on reading.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The socket failed or the peer closed it.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The header digest did not match: the stream can no longer be framed.
    #[error("header digest mismatch (got {got:#010x}, computed {computed:#010x})")]
    HeaderDigest {
        /// The digest on the wire.
        got: u32,
        /// The digest we computed.
        computed: u32,
    },
    /// A data segment longer than we declared we can receive.
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    DataSegmentTooLong {
        /// Announced length.
        len: usize,
        /// Our limit.
        max: usize,
    },
}

/// A received PDU header: the BHS and its AHS (usually empty).
pub struct Header {
    /// The basic header segment.
    pub bhs: Bhs,
    /// Additional header segments, raw.
    pub ahs: Vec<u8>,
}

/// Whether a received data segment passed its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCheck {
    /// No digest negotiated, or it matched.
    Good,
    /// The data digest did not match: the PDU must be rejected (reason Data Digest Error).
    DigestError,
}

/// Reads PDUs from one socket.
pub struct Reader {
    bhs_buf: Option<Box<[u8; BHS_LEN]>>,
    digests: Digests,
}

impl Reader {
    /// A reader with no digests (login phase).
    pub fn new() -> Reader {
        Reader {
            bhs_buf: Some(Box::new([0u8; BHS_LEN])),
            digests: Digests::default(),
        }
    }

    /// Switches digests on or off (after login completes).
    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    /// Reads the next BHS, its AHS and header digest.
    pub async fn header(&mut self, stream: &TcpStream) -> Result<Header, FramingError> {
        let buf = self
            .bhs_buf
            .take()
            .unwrap_or_else(|| Box::new([0u8; BHS_LEN]));
        let (result, buf) = stream.recv_exact(buf, 0, BHS_LEN).await;
        let bhs = Bhs(*buf);
        self.bhs_buf = Some(buf);
        result?;
        let ahs_len = bhs.total_ahs_len_bytes();
        let mut ahs = Vec::new();
        if ahs_len > 0 {
            let (result, got) = stream
                .recv_exact(
                    vec![0u8; ahs_len.min(MAX_AHS_BYTES)],
                    0,
                    ahs_len.min(MAX_AHS_BYTES),
                )
                .await;
            result?;
            ahs = got;
        }
        if self.digests.header {
            let (result, wire) = stream.recv_exact(Box::new([0u8; 4]), 0, 4).await;
            result?;
            let got = digest::digest_from_wire(*wire);
            let computed = digest::header_digest(&bhs, &ahs);
            if got != computed {
                return Err(FramingError::HeaderDigest { got, computed });
            }
        }
        Ok(Header { bhs, ahs })
    }

    /// Reads a data segment of `len` bytes (plus padding and digest) into a new Vec; `max` is
    /// our declared MaxRecvDataSegmentLength.
    pub async fn data_vec(
        &mut self,
        stream: &TcpStream,
        len: usize,
        max: usize,
    ) -> Result<(Vec<u8>, DataCheck), FramingError> {
        if len > max {
            return Err(FramingError::DataSegmentTooLong { len, max });
        }
        let padded = len + pad_len(len);
        let (result, mut data) = stream.recv_exact(vec![0u8; padded], 0, padded).await;
        result?;
        let check = self.check_data_digest(stream, &data).await?;
        data.truncate(len);
        Ok((data, check))
    }

    /// Reads a data segment of `len` bytes into `buf[offset..]` (the zero-copy path for write
    /// data); padding is read into a scratch array. The caller has checked `len` against the
    /// buffer and the negotiated limits.
    pub async fn data_into(
        &mut self,
        stream: &TcpStream,
        buf: Buf,
        offset: usize,
        len: usize,
    ) -> (Result<DataCheck, FramingError>, Buf) {
        let (result, mut buf) = stream.recv_exact(buf, offset, len).await;
        if let Err(e) = result {
            return (Err(e.into()), buf);
        }
        let pad = pad_len(len);
        let mut padding = [0u8; 4];
        if pad > 0 {
            let (result, got) = stream.recv_exact(Box::new([0u8; 4]), 0, pad).await;
            if let Err(e) = result {
                return (Err(e.into()), buf);
            }
            padding = *got;
        }
        if !self.digests.data {
            return (Ok(DataCheck::Good), buf);
        }
        let computed = {
            let crc = crc32c::crc32c(received_bytes(&mut buf, offset, len));
            crc32c::crc32c_append(crc, &padding[..pad])
        };
        let (result, wire) = stream.recv_exact(Box::new([0u8; 4]), 0, 4).await;
        if let Err(e) = result {
            return (Err(e.into()), buf);
        }
        let ok = digest::digest_from_wire(*wire) == computed;
        (
            Ok(if ok {
                DataCheck::Good
            } else {
                DataCheck::DigestError
            }),
            buf,
        )
    }

    /// Reads and throws away a data segment (of a PDU we reject), in bounded pieces.
    pub async fn discard_data(
        &mut self,
        stream: &TcpStream,
        len: usize,
    ) -> Result<(), FramingError> {
        let mut left = len + pad_len(len) + if self.digests.data && len > 0 { 4 } else { 0 };
        let mut scratch = vec![0u8; left.min(64 * 1024)];
        while left > 0 {
            let n = left.min(scratch.len());
            let (result, back) = stream.recv_exact(scratch, 0, n).await;
            result?;
            scratch = back;
            left -= n;
        }
        Ok(())
    }

    async fn check_data_digest(
        &mut self,
        stream: &TcpStream,
        padded: &[u8],
    ) -> Result<DataCheck, FramingError> {
        if !self.digests.data || padded.is_empty() {
            return Ok(DataCheck::Good);
        }
        let (result, wire) = stream.recv_exact(Box::new([0u8; 4]), 0, 4).await;
        result?;
        Ok(
            if digest::digest_from_wire(*wire) == digest::crc32c(padded) {
                DataCheck::Good
            } else {
                DataCheck::DigestError
            },
        )
    }
}

impl Default for Reader {
    fn default() -> Self {
        Reader::new()
    }
}

/// The payload of an outgoing PDU.
pub enum Payload {
    /// No data segment.
    None,
    /// Owned bytes.
    Bytes(Vec<u8>),
    /// A range of a shared pool buffer (Data-In straight from the disk read).
    Shared(SharedBuf, std::ops::Range<usize>),
}

impl Payload {
    /// Owned bytes as a payload; no bytes is no data segment.
    pub fn from_vec(data: Vec<u8>) -> Payload {
        if data.is_empty() {
            Payload::None
        } else {
            Payload::Bytes(data)
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Payload::None => &[],
            Payload::Bytes(v) => v,
            Payload::Shared(b, r) => b.as_slice().get(r.clone()).unwrap_or(&[]),
        }
    }

    /// Length of the data segment.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether there is no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One encoded PDU as a gathered send: header (+ digest), data, padding (+ data digest). The
/// BHS's DataSegmentLength must already equal `payload.len()`.
pub fn frame(bhs: &Bhs, payload: Payload, digests: Digests) -> Gather {
    let mut head = [0u8; HEAD_BYTES];
    head[..BHS_LEN].copy_from_slice(&bhs.0);
    let mut head_len = BHS_LEN;
    if digests.header {
        head[BHS_LEN..BHS_LEN + 4]
            .copy_from_slice(&digest::digest_to_wire(digest::header_digest(bhs, &[])));
        head_len += 4;
    }
    let len = payload.len();
    let pad = pad_len(len);
    let mut tail = [0u8; 8];
    let mut tail_len = pad;
    if digests.data && len > 0 {
        let crc = crc32c::crc32c_append(crc32c::crc32c(payload.bytes()), &[0u8; 4][..pad]);
        tail[pad..pad + 4].copy_from_slice(&digest::digest_to_wire(crc));
        tail_len += 4;
    }
    let mut gather = Gather::default();
    gather.parts[0] = Segment::Head(head, head_len);
    gather.parts[1] = match payload {
        Payload::None => Segment::Empty,
        Payload::Bytes(v) => Segment::Bytes(v),
        Payload::Shared(b, r) => Segment::Shared(b, r),
    };
    if tail_len > 0 {
        gather.parts[2] = Segment::Small(tail, tail_len);
    }
    gather
}

/// The bytes `buf[offset..offset+len]` as received into the slot (independent of `set_len`).
pub fn received_bytes(buf: &mut Buf, offset: usize, len: usize) -> &[u8] {
    let end = offset.saturating_add(len).min(buf.bytes_total());
    let start = offset.min(end);
    &buf.spare_mut()[start..end]
}
