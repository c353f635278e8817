//! The mirror's metadata on stable storage, one store per volume and node (an external metadata
//! file beside the backing store, reached through the [`Disk`](crate::disk::Disk) trait so the
//! simulator can lose what was not flushed):
//!
//! ```text
//! [0, 4K)       superblock slot 0   } written alternately, each with a sequence number and
//! [4K, 8K)      superblock slot 1   } CRC32C: a torn write leaves the other slot valid
//! [8K, ...)     activity-log ring: `al_slots` transaction slots of 4 KiB
//! [...]         bitmap pages, 4 KiB each
//! ```
//!
//! A bitmap page is written in place; that is safe because a set bit is durable before its
//! extent leaves the activity log, and after a crash every extent still in the log is marked
//! again. Like DRBD and every file system, it relies on 512-byte sector writes being atomic.

use crate::mirror::activity_log::SLOT_BYTES;
use crate::mirror::bitmap::PAGE_BYTES;
use crate::mirror::gi::GenIds;

/// Bytes of a superblock slot.
pub const SUPERBLOCK_BYTES: usize = 4096;
const MAGIC: u32 = 0x5253_4d44; // "RSMD"
/// Fewest activity-log slots a store has.
pub const MIN_AL_SLOTS: u32 = 2;
/// Most activity-log slots a store has.
pub const MAX_AL_SLOTS: u32 = 4096;
/// The metadata format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The state of a copy's data, as DRBD names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskState {
    /// Holds the newest data.
    UpToDate = 1,
    /// Being written by a resync, or never synced: must not be read from.
    Inconsistent = 2,
    /// Consistent, but known to be older than the peer's (it missed writes).
    Outdated = 3,
    /// No local copy attached.
    Diskless = 4,
}

impl DiskState {
    fn from_u8(v: u8) -> Option<DiskState> {
        Some(match v {
            1 => DiskState::UpToDate,
            2 => DiskState::Inconsistent,
            3 => DiskState::Outdated,
            4 => DiskState::Diskless,
            _ => return None,
        })
    }

    /// The name `target-admin volume status` shows.
    pub fn name(self) -> &'static str {
        match self {
            DiskState::UpToDate => "UpToDate",
            DiskState::Inconsistent => "Inconsistent",
            DiskState::Outdated => "Outdated",
            DiskState::Diskless => "Diskless",
        }
    }
}

/// What the superblock holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Sequence number: the valid slot with the higher one is current.
    pub seq: u64,
    /// The volume's UUID.
    pub volume: [u8; 16],
    /// This node's id.
    pub node_id: u32,
    /// The volume's size in bytes.
    pub volume_bytes: u64,
    /// log2 of the bitmap's bytes per bit.
    pub granule_shift: u32,
    /// log2 of the activity log's bytes per extent.
    pub al_extent_shift: u32,
    /// Activity-log transaction slots in the ring.
    pub al_slots: u32,
    /// Extents the activity log may hold.
    pub al_extents: u32,
    /// The copy's generation identifiers.
    pub gen: GenIds,
    /// The copy's data state.
    pub disk: DiskState,
    /// Set while this node is Primary; cleared by a clean demote or shutdown. Found set at
    /// start-up, it means this node crashed as Primary.
    pub primary: bool,
    /// The copy stopped without a clean shutdown and has not been resynced since: the writes
    /// that completed into its disk's cache in its activity log's extents may be gone, so it
    /// must not be the source of those extents (unless it crashed as Primary).
    pub unclean: bool,
    /// Where an interrupted resync of this copy as the target stood (bytes from the start).
    pub resync_cursor: u64,
}

/// Why a superblock slot was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Neither slot holds a valid superblock.
    #[error("no valid superblock (new or damaged metadata)")]
    NoSuperblock,
    /// A valid superblock of another format version.
    #[error("metadata format version {0} (this build reads {FORMAT_VERSION})")]
    Version(u32),
    /// The store belongs to another volume or node, or its geometry differs from the config.
    #[error("metadata is for {what}: {found}, configured {configured}")]
    Mismatch {
        /// Which field differs.
        what: &'static str,
        /// The stored value.
        found: String,
        /// The configured value.
        configured: String,
    },
}

impl Superblock {
    /// Byte offset of the activity-log ring.
    pub fn al_offset(&self) -> u64 {
        2 * SUPERBLOCK_BYTES as u64
    }

    /// Byte offset of bitmap page 0.
    pub fn bitmap_offset(&self) -> u64 {
        self.al_offset() + u64::from(self.al_slots) * SLOT_BYTES as u64
    }

    /// Bitmap pages the volume needs.
    pub fn bitmap_pages(&self) -> u64 {
        let bits = self.volume_bytes.div_ceil(1 << self.granule_shift);
        bits.div_ceil(PAGE_BYTES as u64 * 8).max(1)
    }

    /// The whole store's size in bytes.
    pub fn store_bytes(&self) -> u64 {
        self.bitmap_offset() + self.bitmap_pages() * PAGE_BYTES as u64
    }

    /// The slot this superblock goes to (alternating by sequence number).
    pub fn slot_offset(&self) -> u64 {
        (self.seq % 2) * SUPERBLOCK_BYTES as u64
    }

    /// The slot's bytes.
    pub fn encode(&self) -> [u8; SUPERBLOCK_BYTES] {
        let mut b = [0u8; SUPERBLOCK_BYTES];
        let mut w = Writer { buf: &mut b, at: 0 };
        w.u32(MAGIC);
        w.u32(FORMAT_VERSION);
        w.u64(self.seq);
        w.bytes(&self.volume);
        w.u32(self.node_id);
        w.u64(self.volume_bytes);
        w.u32(self.granule_shift);
        w.u32(self.al_extent_shift);
        w.u32(self.al_slots);
        w.u32(self.al_extents);
        w.u64(self.gen.current);
        w.u64(self.gen.bitmap);
        w.u64(self.gen.history[0]);
        w.u64(self.gen.history[1]);
        w.bytes(&[
            self.disk as u8,
            u8::from(self.primary),
            u8::from(self.unclean),
        ]);
        w.u64(self.resync_cursor);
        let crc = crc32c::crc32c(&b[..SUPERBLOCK_BYTES - 4]);
        b[SUPERBLOCK_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// A slot's superblock, or why it is not one.
    pub fn decode(b: &[u8; SUPERBLOCK_BYTES]) -> Result<Superblock, MetaError> {
        let mut r = Reader { buf: b, at: 0 };
        let crc_ok = u32::from_le_bytes([b[4092], b[4093], b[4094], b[4095]])
            == crc32c::crc32c(&b[..SUPERBLOCK_BYTES - 4]);
        if r.u32() != MAGIC || !crc_ok {
            return Err(MetaError::NoSuperblock);
        }
        let version = r.u32();
        if version != FORMAT_VERSION {
            return Err(MetaError::Version(version));
        }
        let seq = r.u64();
        let mut volume = [0u8; 16];
        volume.copy_from_slice(r.bytes(16));
        let node_id = r.u32();
        let volume_bytes = r.u64();
        let granule_shift = r.u32();
        let al_extent_shift = r.u32();
        let al_slots = r.u32();
        let al_extents = r.u32();
        let gen = GenIds {
            current: r.u64(),
            bitmap: r.u64(),
            history: [r.u64(), r.u64()],
        };
        let flags = r.bytes(3);
        let disk = DiskState::from_u8(flags[0]).ok_or(MetaError::NoSuperblock)?;
        let primary = flags[1] != 0;
        let unclean = flags[2] != 0;
        let resync_cursor = r.u64();
        // A layout no code here writes: refused before anything is sized from it (at least two
        // log slots, so a torn transaction leaves the one before it).
        let extents_ok =
            (2..=crate::mirror::activity_log::MAX_EXTENTS as u32).contains(&al_extents);
        if !(9..=30).contains(&granule_shift)
            || !(16..=32).contains(&al_extent_shift)
            || !(MIN_AL_SLOTS..=MAX_AL_SLOTS).contains(&al_slots)
            || !extents_ok
        {
            return Err(MetaError::NoSuperblock);
        }
        Ok(Superblock {
            seq,
            volume,
            node_id,
            volume_bytes,
            granule_shift,
            al_extent_shift,
            al_slots,
            al_extents,
            gen,
            disk,
            primary,
            unclean,
            resync_cursor,
        })
    }

    /// The current superblock of the two slots read back.
    pub fn newest(
        slot0: &[u8; SUPERBLOCK_BYTES],
        slot1: &[u8; SUPERBLOCK_BYTES],
    ) -> Result<Superblock, MetaError> {
        match (Superblock::decode(slot0), Superblock::decode(slot1)) {
            (Ok(a), Ok(b)) => Ok(if a.seq >= b.seq { a } else { b }),
            (Ok(a), Err(_)) => Ok(a),
            (Err(_), Ok(b)) => Ok(b),
            (Err(MetaError::Version(v)), _) | (_, Err(MetaError::Version(v))) => {
                Err(MetaError::Version(v))
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Checks that the store belongs to `volume` on node `node_id` with `volume_bytes`.
    pub fn check(
        &self,
        volume: &[u8; 16],
        node_id: u32,
        volume_bytes: u64,
    ) -> Result<(), MetaError> {
        let hex = |u: &[u8; 16]| u.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if &self.volume != volume {
            return Err(MetaError::Mismatch {
                what: "another volume",
                found: hex(&self.volume),
                configured: hex(volume),
            });
        }
        if self.node_id != node_id {
            return Err(MetaError::Mismatch {
                what: "another node",
                found: self.node_id.to_string(),
                configured: node_id.to_string(),
            });
        }
        if self.volume_bytes != volume_bytes {
            return Err(MetaError::Mismatch {
                what: "another size",
                found: self.volume_bytes.to_string(),
                configured: volume_bytes.to_string(),
            });
        }
        Ok(())
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, v: &[u8]) {
        self.buf[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let v = &self.buf[self.at..self.at + n];
        self.at += n;
        v
    }
    fn u32(&mut self) -> u32 {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.bytes(4));
        u32::from_le_bytes(raw)
    }
    fn u64(&mut self) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.bytes(8));
        u64::from_le_bytes(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            seq: 5,
            volume: [7; 16],
            node_id: 2,
            volume_bytes: 1 << 30,
            granule_shift: 12,
            al_extent_shift: 22,
            al_slots: 64,
            al_extents: 256,
            gen: GenIds {
                current: 11,
                bitmap: 12,
                history: [13, 14],
            },
            disk: DiskState::Outdated,
            primary: true,
            unclean: true,
            resync_cursor: 4096,
        }
    }

    #[test]
    fn round_trips_and_lays_out_the_store() {
        let s = sample();
        assert_eq!(Superblock::decode(&s.encode()), Ok(s.clone()));
        assert_eq!(s.slot_offset(), 4096);
        assert_eq!(s.al_offset(), 8192);
        assert_eq!(s.bitmap_offset(), 8192 + 64 * 4096);
        // 1 GiB at 4 KiB per bit: 262144 bits, 8 pages of 32768 bits.
        assert_eq!(s.bitmap_pages(), 8);
        assert_eq!(s.store_bytes(), 8192 + 64 * 4096 + 8 * 4096);
    }

    #[test]
    fn the_newer_valid_slot_wins_and_a_torn_one_is_skipped() {
        let a = sample();
        let b = Superblock {
            seq: 6,
            primary: false,
            ..sample()
        };
        assert_eq!(Superblock::newest(&a.encode(), &b.encode()), Ok(b.clone()));
        let mut torn = b.encode();
        torn[40] ^= 0xff;
        assert_eq!(Superblock::newest(&a.encode(), &torn), Ok(a));
        assert_eq!(
            Superblock::newest(&[0; 4096], &[0; 4096]),
            Err(MetaError::NoSuperblock)
        );
    }

    #[test]
    fn another_version_or_owner_is_refused() {
        let s = sample();
        let mut other = s.encode();
        other[4..8].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&other[..4092]);
        other[4092..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Superblock::decode(&other), Err(MetaError::Version(2)));
        assert!(s.check(&[7; 16], 2, 1 << 30).is_ok());
        assert!(matches!(
            s.check(&[8; 16], 2, 1 << 30),
            Err(MetaError::Mismatch {
                what: "another volume",
                ..
            })
        ));
        assert!(matches!(
            s.check(&[7; 16], 1, 1 << 30),
            Err(MetaError::Mismatch {
                what: "another node",
                ..
            })
        ));
        assert!(matches!(
            s.check(&[7; 16], 2, 1 << 29),
            Err(MetaError::Mismatch {
                what: "another size",
                ..
            })
        ));
    }
}
