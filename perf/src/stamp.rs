//! The `--verify` stamp at the head of every written logical block.
//!
//! Layout (big-endian), for a block of `len` bytes (512 or 4096):
//!
//! | bytes  | field                                                        |
//! |--------|--------------------------------------------------------------|
//! | 0..8   | magic `RSPERF01`                                             |
//! | 8..16  | LBA the block was written to                                 |
//! | 16..20 | run id (random per run: stamps of an earlier run are "other") |
//! | 20..24 | writer id (the session)                                      |
//! | 24..32 | sequence number of the write (per writer, from 1)            |
//! | 32..36 | CRC32C of bytes 0..32 and 36..len                           |
//! | 36..   | payload (pseudo-random, fixed per buffer)                    |
//!
//! The checksum covers the payload too, so a torn or corrupted block is caught even where the
//! header survived; the LBA catches misdirected writes and reads; writer and sequence catch a
//! stale block (a lost write).

/// First 8 bytes of every stamped block.
pub const MAGIC: [u8; 8] = *b"RSPERF01";
/// Bytes of the header, checksum included.
pub const HEADER_LEN: usize = 36;
const CRC_AT: usize = 32;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub lba: u64,
    pub run: u32,
    pub writer: u32,
    pub seq: u64,
}

/// What a block read back holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockContent {
    /// A stamp whose checksum verifies.
    Stamped(Stamp),
    /// No magic: never written by ringsan-perf --verify (or overwritten by something else).
    Unstamped,
    /// The magic is there but the checksum does not verify: a torn or corrupted block. Carries
    /// the header as read, for the message.
    Corrupt(Stamp),
}

/// Writes `stamp` into the header of `block` and the checksum over the whole block; the
/// payload after the header is left as it is.
pub fn stamp_block(block: &mut [u8], stamp: &Stamp) {
    debug_assert!(
        block.len() >= HEADER_LEN + 4,
        "blocks are at least 512 bytes"
    );
    let Some(head) = block.get_mut(..CRC_AT) else {
        return;
    };
    head[0..8].copy_from_slice(&MAGIC);
    head[8..16].copy_from_slice(&stamp.lba.to_be_bytes());
    head[16..20].copy_from_slice(&stamp.run.to_be_bytes());
    head[20..24].copy_from_slice(&stamp.writer.to_be_bytes());
    head[24..32].copy_from_slice(&stamp.seq.to_be_bytes());
    let crc = block_crc(block);
    if let Some(c) = block.get_mut(CRC_AT..HEADER_LEN) {
        c.copy_from_slice(&crc.to_be_bytes());
    }
}

/// Reads a block back.
pub fn read_block(block: &[u8]) -> BlockContent {
    if block.len() < HEADER_LEN || block[..8] != MAGIC {
        return BlockContent::Unstamped;
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&block[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let u32_at = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&block[i..i + 4]);
        u32::from_be_bytes(b)
    };
    let stamp = Stamp {
        lba: u64_at(8),
        run: u32_at(16),
        writer: u32_at(20),
        seq: u64_at(24),
    };
    if u32_at(CRC_AT) == block_crc(block) {
        BlockContent::Stamped(stamp)
    } else {
        BlockContent::Corrupt(stamp)
    }
}

/// CRC32C of the block without its checksum field.
fn block_crc(block: &[u8]) -> u32 {
    let head = crc32c::crc32c(block.get(..CRC_AT).unwrap_or_default());
    crc32c::crc32c_append(head, block.get(HEADER_LEN..).unwrap_or_default())
}

/// Fills `buf` with a pseudo-random payload (so the target cannot compress or dedupe it).
pub fn fill_payload(buf: &mut [u8], seed: u64) {
    let mut x = seed;
    for chunk in buf.chunks_mut(8) {
        let v = crate::rng::splitmix64(&mut x).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LBA {} run {:08x} writer {} seq {}",
            self.lba, self.run, self.writer, self.seq
        )
    }
}

impl std::fmt::Display for BlockContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockContent::Stamped(s) => write!(f, "{s}"),
            BlockContent::Unstamped => write!(f, "no stamp"),
            BlockContent::Corrupt(s) => write!(f, "bad checksum (header says {s})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(len: usize, stamp: &Stamp) -> Vec<u8> {
        let mut b = vec![0u8; len];
        fill_payload(&mut b, 5);
        stamp_block(&mut b, stamp);
        b
    }

    const S: Stamp = Stamp {
        lba: 0x1234_5678_9abc,
        run: 0xdead_beef,
        writer: 3,
        seq: 77,
    };

    #[test]
    fn a_stamp_reads_back() {
        for len in [512, 4096] {
            let b = block(len, &S);
            assert_eq!(&b[..8], b"RSPERF01");
            assert_eq!(read_block(&b), BlockContent::Stamped(S));
        }
    }

    #[test]
    fn restamping_keeps_the_payload_and_updates_the_checksum() {
        let mut b = block(512, &S);
        let payload = b[HEADER_LEN..].to_vec();
        let next = Stamp { seq: 78, ..S };
        stamp_block(&mut b, &next);
        assert_eq!(&b[HEADER_LEN..], &payload[..]);
        assert_eq!(read_block(&b), BlockContent::Stamped(next));
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let good = block(512, &S);
        for at in [0usize, 9, 17, 21, 30, 33, 36, 200, 511] {
            let mut b = good.clone();
            b[at] ^= 0x10;
            match read_block(&b) {
                BlockContent::Stamped(s) => panic!("flip at {at} went unnoticed: {s}"),
                BlockContent::Unstamped => assert!(at < 8, "only a magic flip loses the stamp"),
                BlockContent::Corrupt(_) => {}
            }
        }
    }

    #[test]
    fn zeroes_and_short_buffers_are_unstamped() {
        assert_eq!(read_block(&[0u8; 512]), BlockContent::Unstamped);
        assert_eq!(read_block(&MAGIC), BlockContent::Unstamped);
    }

    #[test]
    fn display_names_the_fields() {
        let text = BlockContent::Stamped(S).to_string();
        assert!(
            text.contains("writer 3") && text.contains("seq 77"),
            "{text}"
        );
        assert!(BlockContent::Corrupt(S)
            .to_string()
            .contains("bad checksum"));
    }
}
