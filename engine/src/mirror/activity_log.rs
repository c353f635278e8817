//! The activity log: the set of "hot" extents (4 MiB by default) that writes may be in flight
//! to, kept durable in a ring of transaction slots. A write may start only once its extents are
//! in the committed log; an extent leaves the log only when no write to it is in flight and its
//! bitmap page is on disk. After a crash of a Primary, every extent of the last committed
//! transaction is marked out of sync: that bounds what must be resynced to the log's size
//! instead of the whole volume (DRBD's activity log).
//!
//! This module is the bookkeeping and the slot format; [`crate::mirror::meta`] does the I/O.

use std::collections::HashMap;

/// Bytes of one transaction slot.
pub const SLOT_BYTES: usize = 4096;
const MAGIC: u32 = 0x5253_414c; // "RSAL"
const HEADER: usize = 4 + 8 + 4 + 4; // magic, seq, extent size shift, count
/// Most extents one slot can hold (the rest of the slot minus its CRC).
pub const MAX_EXTENTS: usize = (SLOT_BYTES - HEADER - 4) / 4;

/// What must happen before a write to a range may start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Every extent is in the committed log; the write holds them until [`ActivityLog::release`].
    Hot,
    /// Commit this transaction first (write [`Transaction::encode`] durably to its slot, after
    /// writing the bitmap pages of `evicted`), then call [`ActivityLog::committed`] and admit
    /// again.
    Commit(Transaction),
    /// Every extent of the log is in use by writes in flight: wait for one to end.
    Full,
}

/// One change of the log: its full new content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Sequence number (slot `seq % slots`).
    pub seq: u64,
    /// The extents of the log after this transaction.
    pub extents: Vec<u32>,
    /// Extents this transaction drops: their bitmap pages must be durable first.
    pub evicted: Vec<u32>,
}

#[derive(Clone, Debug)]
struct Entry {
    refs: u32,
    last_use: u64,
}

/// The in-memory activity log.
#[derive(Clone, Debug)]
pub struct ActivityLog {
    shift: u32,
    capacity: usize,
    entries: HashMap<u32, Entry>,
    seq: u64,
    clock: u64,
    pending: bool,
    /// Extents the pending transaction drops: no write may take them until it lands.
    leaving: Vec<u32>,
}

impl ActivityLog {
    /// An empty log of `capacity` extents of `1 << shift` bytes, whose next transaction is
    /// `next_seq`.
    pub fn new(shift: u32, capacity: usize, next_seq: u64) -> ActivityLog {
        ActivityLog {
            shift,
            capacity: capacity.clamp(1, MAX_EXTENTS),
            entries: HashMap::new(),
            seq: next_seq,
            clock: 0,
            pending: false,
            leaving: Vec::new(),
        }
    }

    /// Bytes per extent.
    pub fn extent_bytes(&self) -> u64 {
        1 << self.shift
    }

    /// The extents `[offset, offset+len)` touches.
    pub fn extents_of(&self, offset: u64, len: u64) -> std::ops::Range<u32> {
        let first = (offset >> self.shift) as u32;
        let end = (offset.saturating_add(len.max(1)).saturating_sub(1) >> self.shift) as u32;
        first..end.saturating_add(1)
    }

    /// Extents in the log now.
    pub fn active(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.entries.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Asks to start a write to `[offset, offset+len)`.
    pub fn admit(&mut self, offset: u64, len: u64) -> Admit {
        let range = self.extents_of(offset, len);
        if range.clone().any(|e| self.leaving.contains(&e)) {
            // Still in the log in memory, but the transaction on its way drops it.
            return Admit::Full;
        }
        let missing: Vec<u32> = range
            .clone()
            .filter(|e| !self.entries.contains_key(e))
            .collect();
        if missing.is_empty() {
            self.clock += 1;
            for e in range {
                if let Some(entry) = self.entries.get_mut(&e) {
                    entry.refs += 1;
                    entry.last_use = self.clock;
                }
            }
            return Admit::Hot;
        }
        if self.pending || missing.len() > self.capacity {
            return Admit::Full;
        }
        let free = self.capacity - self.entries.len();
        let need_evict = missing.len().saturating_sub(free);
        let mut idle: Vec<(u64, u32)> = self
            .entries
            .iter()
            .filter(|(e, entry)| entry.refs == 0 && !range.contains(e))
            .map(|(e, entry)| (entry.last_use, *e))
            .collect();
        if idle.len() < need_evict {
            return Admit::Full;
        }
        idle.sort_unstable();
        let evicted: Vec<u32> = idle.iter().take(need_evict).map(|(_, e)| *e).collect();
        let mut extents: Vec<u32> = self
            .entries
            .keys()
            .copied()
            .filter(|e| !evicted.contains(e))
            .chain(missing)
            .collect();
        extents.sort_unstable();
        self.pending = true;
        self.leaving = evicted.clone();
        Admit::Commit(Transaction {
            seq: self.seq,
            extents,
            evicted,
        })
    }

    /// The transaction is durable: the log holds its extents now.
    pub fn committed(&mut self, tx: &Transaction) {
        for e in &tx.evicted {
            self.entries.remove(e);
        }
        for e in &tx.extents {
            self.entries.entry(*e).or_insert(Entry {
                refs: 0,
                last_use: self.clock,
            });
        }
        self.seq = tx.seq + 1;
        self.pending = false;
        self.leaving.clear();
    }

    /// Writing the transaction failed: nothing changed.
    pub fn abandoned(&mut self) {
        self.pending = false;
        self.leaving.clear();
    }

    /// A write admitted with [`Admit::Hot`] to `[offset, offset+len)` ended.
    pub fn release(&mut self, offset: u64, len: u64) {
        for e in self.extents_of(offset, len) {
            if let Some(entry) = self.entries.get_mut(&e) {
                entry.refs = entry.refs.saturating_sub(1);
            }
        }
    }

    /// Writes in flight (extent references held).
    pub fn in_flight(&self) -> u32 {
        self.entries.values().map(|e| e.refs).sum()
    }

    /// A transaction that empties the log (a clean shutdown or demote, once every bitmap page
    /// is written), or None with writes in flight.
    pub fn clear(&mut self) -> Option<Transaction> {
        if self.in_flight() > 0 || self.pending {
            return None;
        }
        self.pending = true;
        self.leaving = self.active();
        Some(Transaction {
            seq: self.seq,
            extents: Vec::new(),
            evicted: self.active(),
        })
    }
}

impl Transaction {
    /// The slot's bytes: magic, seq, extent size shift, count, extents, CRC32C of all before.
    pub fn encode(&self, shift: u32) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12..16].copy_from_slice(&shift.to_le_bytes());
        let n = self.extents.len().min(MAX_EXTENTS);
        out[16..20].copy_from_slice(&(n as u32).to_le_bytes());
        for (i, e) in self.extents.iter().take(n).enumerate() {
            out[HEADER + 4 * i..HEADER + 4 * i + 4].copy_from_slice(&e.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[..SLOT_BYTES - 4]);
        out[SLOT_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// The newest valid transaction among the slots read back after a restart: `(seq, extents)`,
/// or None when no slot holds one (a new log). A torn or damaged slot is skipped, so the one
/// before it counts; slots of another extent size are refused.
pub fn recover(slots: &[[u8; SLOT_BYTES]], shift: u32) -> Option<(u64, Vec<u32>)> {
    slots
        .iter()
        .filter_map(|s| decode(s, shift))
        .max_by_key(|(seq, _)| *seq)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn decode(slot: &[u8; SLOT_BYTES], shift: u32) -> Option<(u64, Vec<u32>)> {
    if le32(slot, 0) != MAGIC
        || le32(slot, SLOT_BYTES - 4) != crc32c::crc32c(&slot[..SLOT_BYTES - 4])
    {
        return None;
    }
    if le32(slot, 12) != shift {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&slot[4..12]);
    let n = le32(slot, 16) as usize;
    if n > MAX_EXTENTS {
        return None;
    }
    let extents = (0..n).map(|i| le32(slot, HEADER + 4 * i)).collect();
    Some((u64::from_le_bytes(seq), extents))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIFT: u32 = 22; // 4 MiB
    const MIB: u64 = 1 << 20;

    fn commit(al: &mut ActivityLog, offset: u64, len: u64) -> Transaction {
        match al.admit(offset, len) {
            Admit::Commit(tx) => {
                al.committed(&tx);
                assert_eq!(al.admit(offset, len), Admit::Hot);
                tx
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cold_extent_needs_a_transaction_then_is_hot() {
        let mut al = ActivityLog::new(SHIFT, 4, 0);
        let tx = commit(&mut al, 3 * MIB, 2 * MIB);
        assert_eq!(tx.extents, vec![0, 1], "3..5 MiB spans extents 0 and 1");
        assert_eq!(tx.seq, 0);
        assert_eq!(al.in_flight(), 2);
        al.release(3 * MIB, 2 * MIB);
        assert_eq!(al.admit(0, 512), Admit::Hot);
        assert_eq!(al.in_flight(), 1);
    }

    #[test]
    fn the_least_recently_used_idle_extent_is_evicted() {
        let mut al = ActivityLog::new(SHIFT, 2, 7);
        commit(&mut al, 0, 512);
        al.release(0, 512);
        commit(&mut al, 4 * MIB, 512);
        al.release(4 * MIB, 512);
        assert_eq!(al.admit(0, 512), Admit::Hot); // extent 0 is now the most recent
        al.release(0, 512);
        let tx = commit(&mut al, 8 * MIB, 512);
        assert_eq!(tx.evicted, vec![1]);
        assert_eq!(tx.extents, vec![0, 2]);
        assert_eq!(tx.seq, 9, "the third transaction from 7");
    }

    #[test]
    fn extents_in_use_are_never_evicted() {
        let mut al = ActivityLog::new(SHIFT, 2, 0);
        commit(&mut al, 0, 512);
        commit(&mut al, 4 * MIB, 512);
        assert_eq!(al.admit(8 * MIB, 512), Admit::Full);
        al.release(4 * MIB, 512);
        al.release(4 * MIB, 512);
        let tx = commit(&mut al, 8 * MIB, 512);
        assert_eq!(tx.evicted, vec![1]);
    }

    #[test]
    fn an_extent_on_its_way_out_is_not_handed_to_a_write() {
        let mut al = ActivityLog::new(SHIFT, 1, 0);
        commit(&mut al, 0, 512);
        al.release(0, 512);
        // A transaction that drops extent 0 is prepared but has not landed.
        let Admit::Commit(tx) = al.admit(4 * MIB, 512) else {
            panic!()
        };
        assert_eq!(tx.evicted, vec![0]);
        assert_eq!(al.admit(0, 512), Admit::Full, "extent 0 is leaving");
        al.committed(&tx);
        assert!(matches!(al.admit(0, 512), Admit::Full | Admit::Commit(_)));
    }

    #[test]
    fn one_transaction_at_a_time() {
        let mut al = ActivityLog::new(SHIFT, 8, 0);
        let Admit::Commit(tx) = al.admit(0, 512) else {
            panic!()
        };
        assert_eq!(al.admit(4 * MIB, 512), Admit::Full);
        al.abandoned();
        assert!(matches!(al.admit(4 * MIB, 512), Admit::Commit(_)));
        let _ = tx;
    }

    #[test]
    fn slots_round_trip_and_the_newest_valid_one_wins() {
        let tx1 = Transaction {
            seq: 1,
            extents: vec![1, 2, 3],
            evicted: vec![],
        };
        let tx2 = Transaction {
            seq: 2,
            extents: vec![2, 3, 9],
            evicted: vec![1],
        };
        let mut slots = vec![[0u8; SLOT_BYTES]; 4];
        slots[1] = tx1.encode(SHIFT);
        slots[2] = tx2.encode(SHIFT);
        assert_eq!(recover(&slots, SHIFT), Some((2, vec![2, 3, 9])));
        // A torn newest slot: the one before counts.
        slots[2][100] ^= 1;
        assert_eq!(recover(&slots, SHIFT), Some((1, vec![1, 2, 3])));
        assert_eq!(recover(&slots, SHIFT + 1), None, "another extent size");
        assert_eq!(recover(&[[0u8; SLOT_BYTES]; 2], SHIFT), None);
    }

    #[test]
    fn clear_empties_the_log_once_idle() {
        let mut al = ActivityLog::new(SHIFT, 4, 0);
        commit(&mut al, 0, 512);
        assert!(al.clear().is_none(), "a write is in flight");
        al.release(0, 512);
        let tx = al.clear().expect("idle");
        assert_eq!(tx.evicted, vec![0]);
        al.committed(&tx);
        assert!(al.active().is_empty());
    }
}
