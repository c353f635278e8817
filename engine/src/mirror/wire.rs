//! The mirror link's wire format: a handshake that authenticates the peer with the shared
//! secret (challenge and response, HMAC-SHA256 over both sides' random nonces) and checks the
//! volume, then frames that carry the replication messages ([`Msg`]).
//!
//! ```text
//! handshake, each way:  hello (96 bytes: magic, version, flags, node id, volume UUID, size,
//!                       32-byte nonce, CRC32C), then proof (32 bytes: HMAC(secret, "proof",
//!                       sender id, peer's nonce, own nonce, volume))
//! frame:                header (32 bytes: magic, version, kind, flags, sequence number,
//!                       fields length, data length, CRC32C of fields and data, CRC32C of the
//!                       header), fields, data, then a 32-byte HMAC-SHA256 tag over the sender's
//!                       id, header, fields and data under the session key, unless the link is
//!                       declared a private cable
//! ```
//!
//! The session key comes from the secret and both nonces, so a frame recorded on one
//! connection fails on every other; sequence numbers (from 0 on each connection, each way)
//! refuse a replayed, dropped or reordered frame within one. Lengths are checked against fixed
//! limits before anything is allocated. Every error is a [`WireError`]: the caller logs it and
//! drops the link.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::mirror::gi::GenIds;
use crate::mirror::meta::DiskState;
use crate::mirror::msg::{Hello, Msg, Role};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a handshake hello.
pub const HELLO_BYTES: usize = 96;
/// Bytes of a handshake proof.
pub const PROOF_BYTES: usize = 32;
/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 32;
/// Bytes of a frame's authentication tag.
pub const TAG_BYTES: usize = 32;
/// Most bytes of a frame's fields (a bitmap part: 8 KiB words and its position).
pub const MAX_FIELDS: u32 = 64 * 1024 + 16;
/// The wire version this code speaks.
pub const VERSION: u8 = 1;

const HELLO_MAGIC: &[u8; 4] = b"RSMH";
const FRAME_MAGIC: &[u8; 4] = b"RSMR";
const FLAG_PRIVATE: u8 = 1;
const FLAG_TAGGED: u8 = 1;
/// Bitmap words per part.
const WORDS_PER_PART: usize = 8 * 1024;

/// Why the link must be dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not this protocol (bad magic) or a damaged header.
    #[error("not a mirror {0} (bad magic or checksum)")]
    Garbled(&'static str),
    /// Another protocol version.
    #[error("peer speaks mirror protocol version {0}, this node {VERSION}")]
    Version(u8),
    /// The peer is set up for another volume.
    #[error("peer serves another volume")]
    OtherVolume,
    /// The peer's copy has another size.
    #[error("peer's copy is {peer} bytes, this node's {mine}")]
    OtherSize {
        /// The peer's size.
        peer: u64,
        /// This node's size.
        mine: u64,
    },
    /// The peer takes data segments of another size.
    #[error("peer takes data segments up to {peer} bytes, this node {mine}")]
    OtherMaxData {
        /// The peer's.
        peer: u32,
        /// This node's.
        mine: u32,
    },
    /// The peer's bitmap has another granule.
    #[error("peer's bitmap has 2^{peer} bytes per bit, this node's 2^{mine}")]
    OtherGranule {
        /// The peer's.
        peer: u8,
        /// This node's.
        mine: u8,
    },
    /// The peer claims this node's id.
    #[error("peer claims this node's id {0}")]
    SameNode(u32),
    /// One side declares a private cable and the other does not.
    #[error("one side declares the link a private cable, the other does not")]
    CableMismatch,
    /// The peer's proof does not match: another secret.
    #[error("peer failed authentication (wrong shared secret)")]
    BadProof,
    /// A frame's tag does not match: tampered, or not from the peer.
    #[error("frame {seq} failed authentication (tampered or forged)")]
    BadTag {
        /// Its sequence number.
        seq: u64,
    },
    /// A frame's body does not match its checksum.
    #[error("frame {seq}: payload checksum mismatch")]
    BadCrc {
        /// Its sequence number.
        seq: u64,
    },
    /// A frame out of sequence: replayed, lost or reordered.
    #[error("frame {got} out of sequence (expected {expected})")]
    Sequence {
        /// The sequence number expected.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// A length past its limit.
    #[error("frame {what} length {len} over the limit {limit}")]
    TooLong {
        /// Which length.
        what: &'static str,
        /// Its value.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A field that does not parse.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// What a node says about itself in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeHello {
    /// The node's id.
    pub node_id: u32,
    /// The volume's UUID.
    pub volume: [u8; 16],
    /// The volume's size in bytes.
    pub volume_bytes: u64,
    /// A fresh random nonce.
    pub nonce: [u8; 32],
    /// The admin declared the link a private cable: frames carry no tag.
    pub private_cable: bool,
    /// log2 of the bitmap's bytes per bit: both copies must mark alike.
    pub granule_shift: u8,
    /// The largest data segment the node takes: both must take the same.
    pub max_data: u32,
}

impl HandshakeHello {
    /// The hello's bytes.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[0..4].copy_from_slice(HELLO_MAGIC);
        b[4] = VERSION;
        b[5] = if self.private_cable { FLAG_PRIVATE } else { 0 };
        b[6] = self.granule_shift;
        b[8..12].copy_from_slice(&self.node_id.to_le_bytes());
        b[12..28].copy_from_slice(&self.volume);
        b[28..36].copy_from_slice(&self.volume_bytes.to_le_bytes());
        b[36..68].copy_from_slice(&self.nonce);
        b[68..72].copy_from_slice(&self.max_data.to_le_bytes());
        let crc = crc32c::crc32c(&b[..HELLO_BYTES - 4]);
        b[HELLO_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The peer's hello, checked against this node's.
    pub fn decode_peer(
        b: &[u8; HELLO_BYTES],
        mine: &HandshakeHello,
    ) -> Result<HandshakeHello, WireError> {
        if &b[0..4] != HELLO_MAGIC
            || le32(b, HELLO_BYTES - 4) != crc32c::crc32c(&b[..HELLO_BYTES - 4])
        {
            return Err(WireError::Garbled("hello"));
        }
        if b[4] != VERSION {
            return Err(WireError::Version(b[4]));
        }
        let mut volume = [0u8; 16];
        volume.copy_from_slice(&b[12..28]);
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&b[36..68]);
        let peer = HandshakeHello {
            node_id: le32(b, 8),
            volume,
            volume_bytes: le64(b, 28),
            nonce,
            private_cable: b[5] & FLAG_PRIVATE != 0,
            granule_shift: b[6],
            max_data: le32(b, 68),
        };
        if peer.volume != mine.volume {
            return Err(WireError::OtherVolume);
        }
        if peer.volume_bytes != mine.volume_bytes {
            return Err(WireError::OtherSize {
                peer: peer.volume_bytes,
                mine: mine.volume_bytes,
            });
        }
        if peer.node_id == mine.node_id {
            return Err(WireError::SameNode(peer.node_id));
        }
        if peer.private_cable != mine.private_cable {
            return Err(WireError::CableMismatch);
        }
        if peer.max_data != mine.max_data {
            return Err(WireError::OtherMaxData {
                peer: peer.max_data,
                mine: mine.max_data,
            });
        }
        if peer.granule_shift != mine.granule_shift {
            return Err(WireError::OtherGranule {
                peer: peer.granule_shift,
                mine: mine.granule_shift,
            });
        }
        Ok(peer)
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

fn proof_mac(secret: &[u8], sender: &HandshakeHello, receiver: &HandshakeHello) -> HmacSha256 {
    let mut m = mac(secret);
    m.update(b"ringsan mirror proof v1");
    m.update(&sender.node_id.to_le_bytes());
    m.update(&receiver.nonce);
    m.update(&sender.nonce);
    m.update(&sender.volume);
    m
}

/// This node's answer to the peer's challenge (its nonce).
pub fn proof(secret: &[u8], mine: &HandshakeHello, peer: &HandshakeHello) -> [u8; PROOF_BYTES] {
    proof_mac(secret, mine, peer).finalize().into_bytes().into()
}

/// Checks the peer's answer to this node's challenge, in constant time.
pub fn verify_proof(
    secret: &[u8],
    mine: &HandshakeHello,
    peer: &HandshakeHello,
    their_proof: &[u8; PROOF_BYTES],
) -> Result<(), WireError> {
    proof_mac(secret, peer, mine)
        .verify_slice(their_proof)
        .map_err(|_| WireError::BadProof)
}

/// The key that tags this connection's frames: from the secret and both nonces.
pub fn session_key(secret: &[u8], mine: &HandshakeHello, peer: &HandshakeHello) -> [u8; 32] {
    let (low, high) = if mine.node_id < peer.node_id {
        (mine, peer)
    } else {
        (peer, mine)
    };
    let mut m = mac(secret);
    m.update(b"ringsan mirror session v1");
    m.update(&low.nonce);
    m.update(&high.nonce);
    m.update(&mine.volume);
    m.finalize().into_bytes().into()
}

/// A frame's header, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The frame kind.
    pub kind: u8,
    /// Its sequence number.
    pub seq: u64,
    /// Bytes of fields that follow the header.
    pub fields_len: u32,
    /// Bytes of data that follow the fields.
    pub data_len: u32,
    /// CRC32C of fields and data.
    pub body_crc: u32,
    /// A tag follows the data.
    pub tagged: bool,
}

impl Header {
    /// Bytes after the header: fields, data and tag.
    pub fn rest_len(&self) -> usize {
        self.fields_len as usize + self.data_len as usize + if self.tagged { TAG_BYTES } else { 0 }
    }
}

/// One frame to send: header and fields, then the message's data (if any), then the tag.
#[derive(Debug)]
pub struct Sealed {
    /// Header and fields.
    pub head: Vec<u8>,
    /// The message's data follows `head` (Data, ResyncData, ReadReply with data).
    pub has_data: bool,
    /// The tag (empty on a private cable).
    pub tag: Vec<u8>,
}

/// One direction pair of a connection: seals outgoing frames and opens incoming ones.
pub struct Codec {
    key: Option<[u8; 32]>,
    my_node: u32,
    peer_node: u32,
    tx_seq: u64,
    rx_seq: u64,
    max_data: u32,
    max_bitmap_words: u64,
    bitmap_rx: Option<Vec<u64>>,
    bitmap_total: u64,
}

mod kind {
    pub const HELLO: u8 = 1;
    pub const BITMAP: u8 = 2;
    pub const DATA: u8 = 3;
    pub const DATA_ACK: u8 = 4;
    pub const BARRIER: u8 = 5;
    pub const BARRIER_ACK: u8 = 6;
    pub const RESYNC_REQUEST: u8 = 7;
    pub const RESYNC_DATA: u8 = 8;
    pub const RESYNC_ACK: u8 = 9;
    pub const RESYNC_DONE: u8 = 10;
    pub const READ_REQUEST: u8 = 11;
    pub const READ_REPLY: u8 = 12;
    pub const ROLE: u8 = 13;
    pub const VERIFY_REQUEST: u8 = 14;
    pub const VERIFY_REPLY: u8 = 15;
    pub const PING: u8 = 16;
}

impl Codec {
    /// A codec for a connection between `my_node` and `peer_node`: `key` tags every frame (None
    /// on a private cable); data segments up to `max_data` bytes; bitmaps up to
    /// `max_bitmap_words` words.
    pub fn new(
        key: Option<[u8; 32]>,
        my_node: u32,
        peer_node: u32,
        max_data: u32,
        max_bitmap_words: u64,
    ) -> Codec {
        Codec {
            key,
            my_node,
            peer_node,
            tx_seq: 0,
            rx_seq: 0,
            max_data,
            max_bitmap_words,
            bitmap_rx: None,
            bitmap_total: 0,
        }
    }

    /// The frames that carry `msg` (a bitmap takes several).
    pub fn seal<P: AsRef<[u8]>>(&mut self, msg: &Msg<P>) -> Vec<Sealed> {
        let mut frames = Vec::new();
        if let Msg::Bitmap(words) = msg {
            let total = words.len() as u64;
            let mut first = 0usize;
            loop {
                let part = &words[first..(first + WORDS_PER_PART).min(words.len())];
                let mut f = Vec::with_capacity(16 + part.len() * 8);
                f.extend_from_slice(&total.to_le_bytes());
                f.extend_from_slice(&(first as u64).to_le_bytes());
                for w in part {
                    f.extend_from_slice(&w.to_le_bytes());
                }
                frames.push(self.frame(kind::BITMAP, &f, &[]));
                first += part.len();
                if first >= words.len() {
                    break;
                }
            }
            return frames;
        }
        let mut f = Vec::with_capacity(48);
        let (k, data): (u8, &[u8]) = match msg {
            Msg::Hello(h) => {
                f.extend_from_slice(&h.node_id.to_le_bytes());
                f.extend_from_slice(&h.volume_bytes.to_le_bytes());
                for v in [
                    h.gen.current,
                    h.gen.bitmap,
                    h.gen.history[0],
                    h.gen.history[1],
                ] {
                    f.extend_from_slice(&v.to_le_bytes());
                }
                f.extend_from_slice(&[
                    u8::from(h.crashed_primary),
                    role_byte(h.role),
                    h.disk as u8,
                    u8::from(h.discard_my_data),
                    u8::from(h.unclean),
                ]);
                (kind::HELLO, &[])
            }
            Msg::Bitmap(_) => unreachable!("handled above"),
            Msg::Data {
                seq,
                offset,
                len: _,
                durable,
                data,
            } => {
                f.extend_from_slice(&seq.to_le_bytes());
                f.extend_from_slice(&offset.to_le_bytes());
                f.push(u8::from(*durable));
                (kind::DATA, data.as_ref())
            }
            Msg::DataAck { seq, ok } => {
                f.extend_from_slice(&seq.to_le_bytes());
                f.push(u8::from(*ok));
                (kind::DATA_ACK, &[])
            }
            Msg::Barrier { id } => {
                f.extend_from_slice(&id.to_le_bytes());
                (kind::BARRIER, &[])
            }
            Msg::BarrierAck { id, ok } => {
                f.extend_from_slice(&id.to_le_bytes());
                f.push(u8::from(*ok));
                (kind::BARRIER_ACK, &[])
            }
            Msg::ResyncRequest { offset, len } => {
                f.extend_from_slice(&offset.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                (kind::RESYNC_REQUEST, &[])
            }
            Msg::ResyncData {
                offset,
                len: _,
                data,
            } => {
                f.extend_from_slice(&offset.to_le_bytes());
                (kind::RESYNC_DATA, data.as_ref())
            }
            Msg::ResyncAck {
                offset,
                len,
                applied,
            } => {
                f.extend_from_slice(&offset.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                f.push(u8::from(*applied));
                (kind::RESYNC_ACK, &[])
            }
            Msg::ResyncDone => (kind::RESYNC_DONE, &[]),
            Msg::VerifyRequest {
                offset,
                len,
                digest,
            } => {
                f.extend_from_slice(&offset.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                f.extend_from_slice(&digest.to_le_bytes());
                (kind::VERIFY_REQUEST, &[])
            }
            Msg::VerifyReply { offset, len, equal } => {
                f.extend_from_slice(&offset.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                f.push(u8::from(*equal));
                (kind::VERIFY_REPLY, &[])
            }
            Msg::ReadRequest { id, offset, len } => {
                f.extend_from_slice(&id.to_le_bytes());
                f.extend_from_slice(&offset.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                (kind::READ_REQUEST, &[])
            }
            Msg::ReadReply { id, data } => {
                f.extend_from_slice(&id.to_le_bytes());
                f.push(u8::from(data.is_some()));
                (
                    kind::READ_REPLY,
                    data.as_ref().map(|d| d.as_ref()).unwrap_or(&[]),
                )
            }
            Msg::Role(r) => {
                f.push(role_byte(*r));
                (kind::ROLE, &[])
            }
            Msg::Ping => (kind::PING, &[]),
        };
        frames.push(self.frame(k, &f, data));
        frames
    }

    fn frame(&mut self, k: u8, fields: &[u8], data: &[u8]) -> Sealed {
        let mut head = Vec::with_capacity(HEADER_BYTES + fields.len());
        head.extend_from_slice(FRAME_MAGIC);
        head.push(VERSION);
        head.push(k);
        head.push(if self.key.is_some() { FLAG_TAGGED } else { 0 });
        head.push(0);
        head.extend_from_slice(&self.tx_seq.to_le_bytes());
        head.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        head.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let body_crc = crc32c::crc32c_append(crc32c::crc32c(fields), data);
        head.extend_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&head);
        head.extend_from_slice(&header_crc.to_le_bytes());
        head.extend_from_slice(fields);
        self.tx_seq += 1;
        let tag = match &self.key {
            Some(key) => {
                let mut m = mac(key);
                m.update(&self.my_node.to_le_bytes());
                m.update(&head);
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            None => Vec::new(),
        };
        Sealed {
            head,
            has_data: !data.is_empty(),
            tag,
        }
    }

    /// Reads a frame header, checking it before anything else is read or allocated.
    pub fn open_header(&self, b: &[u8; HEADER_BYTES]) -> Result<Header, WireError> {
        if &b[0..4] != FRAME_MAGIC || le32(b, 28) != crc32c::crc32c(&b[..28]) {
            return Err(WireError::Garbled("frame header"));
        }
        if b[4] != VERSION {
            return Err(WireError::Version(b[4]));
        }
        let h = Header {
            kind: b[5],
            seq: le64(b, 8),
            fields_len: le32(b, 16),
            data_len: le32(b, 20),
            body_crc: le32(b, 24),
            tagged: b[6] & FLAG_TAGGED != 0,
        };
        if h.tagged != self.key.is_some() {
            return Err(WireError::BadTag { seq: h.seq });
        }
        if h.fields_len > MAX_FIELDS {
            return Err(WireError::TooLong {
                what: "fields",
                len: h.fields_len.into(),
                limit: MAX_FIELDS.into(),
            });
        }
        if h.data_len > self.max_data {
            return Err(WireError::TooLong {
                what: "data",
                len: h.data_len.into(),
                limit: self.max_data.into(),
            });
        }
        if h.seq != self.rx_seq {
            return Err(WireError::Sequence {
                expected: self.rx_seq,
                got: h.seq,
            });
        }
        Ok(h)
    }

    /// Checks and decodes a frame's body: `fields` and `data` as read after `header` (whose
    /// bytes are given again for the tag), and `tag`. Returns None for a part of a message
    /// (a bitmap) that continues in later frames.
    pub fn open<P: AsRef<[u8]>>(
        &mut self,
        header_bytes: &[u8; HEADER_BYTES],
        h: &Header,
        fields: &[u8],
        data: P,
        tag: &[u8],
    ) -> Result<Option<Msg<P>>, WireError> {
        let seq = h.seq;
        let bytes = data.as_ref();
        if fields.len() != h.fields_len as usize || bytes.len() != h.data_len as usize {
            return Err(WireError::Malformed("length"));
        }
        if crc32c::crc32c_append(crc32c::crc32c(fields), bytes) != h.body_crc {
            return Err(WireError::BadCrc { seq });
        }
        if let Some(key) = &self.key {
            let mut m = mac(key);
            m.update(&self.peer_node.to_le_bytes());
            m.update(header_bytes);
            m.update(fields);
            m.update(bytes);
            m.verify_slice(tag).map_err(|_| WireError::BadTag { seq })?;
        }
        self.rx_seq += 1;
        let mut r = Fields { b: fields, at: 0 };
        let no_data = |k: &'static str| {
            if h.data_len != 0 {
                Err(WireError::Malformed(k))
            } else {
                Ok(())
            }
        };
        let msg = match h.kind {
            kind::HELLO => {
                no_data("Hello")?;
                let node_id = r.u32()?;
                let volume_bytes = r.u64()?;
                let gen = GenIds {
                    current: r.u64()?,
                    bitmap: r.u64()?,
                    history: [r.u64()?, r.u64()?],
                };
                let flags = r.take(5)?;
                Msg::Hello(Hello {
                    node_id,
                    volume_bytes,
                    gen,
                    crashed_primary: flags[0] != 0,
                    role: parse_role(flags[1])?,
                    disk: parse_disk(flags[2])?,
                    discard_my_data: flags[3] != 0,
                    unclean: flags[4] != 0,
                })
            }
            kind::BITMAP => {
                no_data("Bitmap")?;
                let total = r.u64()?;
                let first = r.u64()?;
                if total > self.max_bitmap_words || total == 0 {
                    return Err(WireError::TooLong {
                        what: "bitmap",
                        len: total,
                        limit: self.max_bitmap_words,
                    });
                }
                let words = self.bitmap_rx.get_or_insert_with(Vec::new);
                if first != words.len() as u64 || (first != 0 && total != self.bitmap_total) {
                    return Err(WireError::Malformed("Bitmap part order"));
                }
                self.bitmap_total = total;
                while r.left() > 0 {
                    words.push(r.u64()?);
                }
                if words.len() as u64 > total {
                    return Err(WireError::Malformed("Bitmap part length"));
                }
                if (words.len() as u64) < total {
                    return Ok(None);
                }
                Msg::Bitmap(self.bitmap_rx.take().unwrap_or_default())
            }
            kind::DATA => {
                let seq = r.u64()?;
                let offset = r.u64()?;
                let durable = r.u8()? != 0;
                Msg::Data {
                    seq,
                    offset,
                    len: h.data_len.into(),
                    durable,
                    data,
                }
            }
            kind::DATA_ACK => {
                no_data("DataAck")?;
                Msg::DataAck {
                    seq: r.u64()?,
                    ok: r.u8()? != 0,
                }
            }
            kind::BARRIER => {
                no_data("Barrier")?;
                Msg::Barrier { id: r.u64()? }
            }
            kind::BARRIER_ACK => {
                no_data("BarrierAck")?;
                Msg::BarrierAck {
                    id: r.u64()?,
                    ok: r.u8()? != 0,
                }
            }
            kind::RESYNC_REQUEST => {
                no_data("ResyncRequest")?;
                Msg::ResyncRequest {
                    offset: r.u64()?,
                    len: r.u64()?,
                }
            }
            kind::RESYNC_DATA => Msg::ResyncData {
                offset: r.u64()?,
                len: h.data_len.into(),
                data,
            },
            kind::RESYNC_ACK => {
                no_data("ResyncAck")?;
                Msg::ResyncAck {
                    offset: r.u64()?,
                    len: r.u64()?,
                    applied: r.u8()? != 0,
                }
            }
            kind::RESYNC_DONE => {
                no_data("ResyncDone")?;
                Msg::ResyncDone
            }
            kind::VERIFY_REQUEST => {
                no_data("VerifyRequest")?;
                Msg::VerifyRequest {
                    offset: r.u64()?,
                    len: r.u64()?,
                    digest: r.u64()?,
                }
            }
            kind::VERIFY_REPLY => {
                no_data("VerifyReply")?;
                Msg::VerifyReply {
                    offset: r.u64()?,
                    len: r.u64()?,
                    equal: r.u8()? != 0,
                }
            }
            kind::READ_REQUEST => {
                no_data("ReadRequest")?;
                Msg::ReadRequest {
                    id: r.u64()?,
                    offset: r.u64()?,
                    len: r.u64()?,
                }
            }
            kind::READ_REPLY => {
                let id = r.u64()?;
                let has = r.u8()? != 0;
                if !has && h.data_len != 0 {
                    return Err(WireError::Malformed("ReadReply"));
                }
                Msg::ReadReply {
                    id,
                    data: has.then_some(data),
                }
            }
            kind::ROLE => {
                no_data("Role")?;
                Msg::Role(parse_role(r.u8()?)?)
            }
            kind::PING => {
                no_data("Ping")?;
                Msg::Ping
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        if r.left() != 0 {
            return Err(WireError::Malformed("trailing fields"));
        }
        Ok(Some(msg))
    }
}

fn role_byte(r: Role) -> u8 {
    match r {
        Role::Primary => 1,
        Role::Secondary => 2,
    }
}

fn parse_role(b: u8) -> Result<Role, WireError> {
    match b {
        1 => Ok(Role::Primary),
        2 => Ok(Role::Secondary),
        _ => Err(WireError::Malformed("role")),
    }
}

fn parse_disk(b: u8) -> Result<DiskState, WireError> {
    Ok(match b {
        1 => DiskState::UpToDate,
        2 => DiskState::Inconsistent,
        3 => DiskState::Outdated,
        4 => DiskState::Diskless,
        _ => return Err(WireError::Malformed("disk state")),
    })
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.left() < n {
            return Err(WireError::Malformed("short fields"));
        }
        let v = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(v)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(le32(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(le64(self.take(8)?, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node_id: u32, nonce: u8) -> HandshakeHello {
        HandshakeHello {
            node_id,
            volume: [3; 16],
            volume_bytes: 1 << 30,
            nonce: [nonce; 32],
            private_cable: false,
            granule_shift: 12,
            max_data: 1 << 20,
        }
    }

    /// Seals `msg` on `tx` and opens every frame on `rx`.
    fn pass(tx: &mut Codec, rx: &mut Codec, msg: &Msg<Vec<u8>>) -> Result<Msg<Vec<u8>>, WireError> {
        let mut result = None;
        for s in tx.seal(msg) {
            let mut hb = [0u8; HEADER_BYTES];
            hb.copy_from_slice(&s.head[..HEADER_BYTES]);
            let h = rx.open_header(&hb)?;
            let fields = &s.head[HEADER_BYTES..];
            let data = match msg {
                Msg::Data { data, .. } | Msg::ResyncData { data, .. } => data.clone(),
                Msg::ReadReply { data: Some(d), .. } => d.clone(),
                _ => Vec::new(),
            };
            let data = if s.has_data { data } else { Vec::new() };
            result = rx.open(&hb, &h, fields, data, &s.tag)?;
        }
        result.ok_or(WireError::Malformed("incomplete"))
    }

    fn pair(key: Option<[u8; 32]>) -> (Codec, Codec) {
        (
            Codec::new(key, 1, 2, 1 << 20, 1 << 20),
            Codec::new(key, 2, 1, 1 << 20, 1 << 20),
        )
    }

    fn every_message() -> Vec<Msg<Vec<u8>>> {
        vec![
            Msg::Hello(Hello {
                node_id: 1,
                volume_bytes: 1 << 30,
                gen: GenIds {
                    current: 5,
                    bitmap: 6,
                    history: [7, 8],
                },
                crashed_primary: true,
                unclean: true,
                role: Role::Primary,
                disk: DiskState::Outdated,
                discard_my_data: true,
            }),
            Msg::Bitmap((0..20_000u64).map(|i| i * 3).collect()),
            Msg::Bitmap(vec![1]),
            Msg::Data {
                seq: 9,
                offset: 4096,
                len: 3,
                durable: true,
                data: vec![1, 2, 3],
            },
            Msg::DataAck { seq: 9, ok: false },
            Msg::Barrier { id: 4 },
            Msg::BarrierAck { id: 4, ok: true },
            Msg::ResyncRequest {
                offset: 8192,
                len: 65536,
            },
            Msg::ResyncData {
                offset: 8192,
                len: 2,
                data: vec![9, 9],
            },
            Msg::ResyncAck {
                offset: 8192,
                len: 65536,
                applied: true,
            },
            Msg::ResyncDone,
            Msg::VerifyRequest {
                offset: 4096,
                len: 8192,
                digest: 0xdead_beef,
            },
            Msg::VerifyReply {
                offset: 4096,
                len: 8192,
                equal: false,
            },
            Msg::ReadRequest {
                id: 1,
                offset: 2,
                len: 3,
            },
            Msg::ReadReply {
                id: 1,
                data: Some(vec![5]),
            },
            Msg::ReadReply { id: 2, data: None },
            Msg::Role(Role::Secondary),
            Msg::Ping,
        ]
    }

    #[test]
    fn every_message_round_trips_tagged_and_on_a_private_cable() {
        for key in [Some([7u8; 32]), None] {
            let (mut a, mut b) = pair(key);
            for m in every_message() {
                assert_eq!(pass(&mut a, &mut b, &m), Ok(m.clone()), "{}", m.kind());
            }
        }
    }

    #[test]
    fn handshake_authenticates_with_the_secret_and_checks_the_volume() {
        let (a, b) = (hello(1, 0xa), hello(2, 0xb));
        let b_seen_by_a = HandshakeHello::decode_peer(&b.encode(), &a).unwrap();
        assert_eq!(b_seen_by_a, b);
        let p = proof(b"secret", &b, &a);
        assert_eq!(verify_proof(b"secret", &a, &b, &p), Ok(()));
        assert_eq!(
            verify_proof(b"another", &a, &b, &p),
            Err(WireError::BadProof),
            "a wrong secret is refused"
        );
        // A proof replayed from a connection with another nonce is refused.
        let old = proof(b"secret", &b, &hello(1, 0xc));
        assert_eq!(
            verify_proof(b"secret", &a, &b, &old),
            Err(WireError::BadProof)
        );
        // Both sides derive one key; another nonce gives another key.
        assert_eq!(
            session_key(b"secret", &a, &b),
            session_key(b"secret", &b, &a)
        );
        assert_ne!(
            session_key(b"secret", &a, &b),
            session_key(b"secret", &hello(1, 0xd), &b)
        );
        let other_volume = HandshakeHello {
            volume: [4; 16],
            ..b.clone()
        };
        assert_eq!(
            HandshakeHello::decode_peer(&other_volume.encode(), &a),
            Err(WireError::OtherVolume)
        );
        let other_size = HandshakeHello {
            volume_bytes: 1,
            ..b.clone()
        };
        assert!(matches!(
            HandshakeHello::decode_peer(&other_size.encode(), &a),
            Err(WireError::OtherSize { .. })
        ));
        assert_eq!(
            HandshakeHello::decode_peer(&hello(1, 0xe).encode(), &a),
            Err(WireError::SameNode(1))
        );
        let cable = HandshakeHello {
            private_cable: true,
            ..b.clone()
        };
        assert_eq!(
            HandshakeHello::decode_peer(&cable.encode(), &a),
            Err(WireError::CableMismatch)
        );
        let max = HandshakeHello {
            max_data: 4096,
            ..b.clone()
        };
        assert!(matches!(
            HandshakeHello::decode_peer(&max.encode(), &a),
            Err(WireError::OtherMaxData { .. })
        ));
        let granule = HandshakeHello {
            granule_shift: 13,
            ..b.clone()
        };
        assert!(matches!(
            HandshakeHello::decode_peer(&granule.encode(), &a),
            Err(WireError::OtherGranule { peer: 13, mine: 12 })
        ));
        let mut garbled = b.encode();
        garbled[40] ^= 1;
        assert_eq!(
            HandshakeHello::decode_peer(&garbled, &a),
            Err(WireError::Garbled("hello"))
        );
    }

    #[test]
    fn tampered_forged_replayed_and_oversized_frames_are_refused() {
        let data = Msg::Data {
            seq: 1,
            offset: 0,
            len: 4,
            durable: false,
            data: vec![1, 2, 3, 4],
        };
        // A tampered payload with its CRC fixed up still fails the tag.
        let (mut a, mut b) = pair(Some([1; 32]));
        let s = a.seal(&data).remove(0);
        let mut hb = [0u8; HEADER_BYTES];
        hb.copy_from_slice(&s.head[..HEADER_BYTES]);
        let bad = vec![1, 2, 3, 5];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&s.head[HEADER_BYTES..]), &bad);
        hb[24..28].copy_from_slice(&crc.to_le_bytes());
        let hcrc = crc32c::crc32c(&hb[..28]);
        hb[28..32].copy_from_slice(&hcrc.to_le_bytes());
        let h = b.open_header(&hb).unwrap();
        assert_eq!(
            b.open(&hb, &h, &s.head[HEADER_BYTES..], bad, &s.tag),
            Err(WireError::BadTag { seq: 0 })
        );
        // Without the fix-up, the CRC catches it first.
        let (mut a, mut b) = pair(None);
        let s = a.seal(&data).remove(0);
        hb.copy_from_slice(&s.head[..HEADER_BYTES]);
        let h = b.open_header(&hb).unwrap();
        assert_eq!(
            b.open(&hb, &h, &s.head[HEADER_BYTES..], vec![9, 9, 9, 9], &s.tag),
            Err(WireError::BadCrc { seq: 0 })
        );
        // Another key (a forger without the secret).
        let (mut a, _) = pair(Some([1; 32]));
        let (_, mut b) = pair(Some([2; 32]));
        assert_eq!(
            pass(&mut a, &mut b, &data),
            Err(WireError::BadTag { seq: 0 })
        );
        // A replayed frame is out of sequence.
        let (mut a, mut b) = pair(Some([1; 32]));
        let s = a.seal(&Msg::<Vec<u8>>::ResyncDone).remove(0);
        hb.copy_from_slice(&s.head[..HEADER_BYTES]);
        let h = b.open_header(&hb).unwrap();
        b.open(&hb, &h, &[], Vec::new(), &s.tag).unwrap();
        assert_eq!(
            b.open_header(&hb),
            Err(WireError::Sequence {
                expected: 1,
                got: 0
            })
        );
        // Lengths past the limits are refused from the header alone.
        let (mut a, b) = pair(None);
        let s = a.seal(&data).remove(0);
        hb.copy_from_slice(&s.head[..HEADER_BYTES]);
        hb[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let hcrc = crc32c::crc32c(&hb[..28]);
        hb[28..32].copy_from_slice(&hcrc.to_le_bytes());
        assert!(matches!(
            b.open_header(&hb),
            Err(WireError::TooLong { what: "data", .. })
        ));
        // A bitmap larger than the volume's is refused.
        let (mut a, _) = pair(None);
        let mut b = Codec::new(None, 2, 1, 1 << 20, 10);
        assert!(matches!(
            pass(&mut a, &mut b, &Msg::Bitmap(vec![0; 11])),
            Err(WireError::TooLong { what: "bitmap", .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..5_000 {
            let (mut a, mut b) = pair(if round % 2 == 0 { Some([5; 32]) } else { None });
            let msgs = every_message();
            let s = a
                .seal(&msgs[(next() % msgs.len() as u64) as usize])
                .remove(0);
            let mut frame = s.head.clone();
            frame.extend_from_slice(&s.tag);
            // Flip a few bytes, sometimes fixing the header CRC so the body checks run.
            for _ in 0..1 + next() % 3 {
                let at = (next() % frame.len() as u64) as usize;
                frame[at] ^= (next() % 255 + 1) as u8;
            }
            if next() % 2 == 0 {
                let crc = crc32c::crc32c(&frame[..28]);
                frame[28..32].copy_from_slice(&crc.to_le_bytes());
            }
            let mut hb = [0u8; HEADER_BYTES];
            hb.copy_from_slice(&frame[..HEADER_BYTES]);
            if let Ok(h) = b.open_header(&hb) {
                let fields_end =
                    HEADER_BYTES + (h.fields_len as usize).min(frame.len() - HEADER_BYTES);
                let fields = &frame[HEADER_BYTES..fields_end];
                let data = vec![0u8; h.data_len.min(64) as usize];
                let tag = &frame[fields_end..];
                let _ = b.open(&hb, &h, fields, data, tag);
            }
        }
    }
}
