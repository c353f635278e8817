//! Command slots: one per unit of `--iodepth`. A slot holds one I/O from the moment it is
//! chosen until its status arrives, across resends (unit attention, reconnect).
//!
//! The ITT of a slot's current attempt is `generation << 16 | slot`, so a response finds its
//! slot without a search, and a late response to an abandoned attempt (older generation) is
//! recognised as stale. The top bit is never set (control PDUs use it).

use crate::result::Op;

/// Where a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Free,
    /// Chosen but not (or no longer) on the wire: sent at the next opportunity.
    Queued,
    InFlight,
}

/// One I/O.
#[derive(Debug, Clone)]
pub struct Slot {
    pub state: SlotState,
    pub op: Op,
    /// Chunk index within the session's region (or share, under --verify).
    pub chunk: u64,
    pub lba: u64,
    pub itt: u32,
    /// Latency origin: the intended send time (--rate) or the first send.
    pub start_ns: u64,
    /// When the current attempt was sent (command timeouts count from here).
    pub sent_ns: u64,
    /// Stamp sequence of a --verify write.
    pub seq: u64,
    /// Read bytes received in the current attempt.
    pub got: usize,
    /// Sends after the first.
    pub resends: u32,
    /// The write payload or the read data under --verify; empty otherwise.
    pub buf: Vec<u8>,
}

/// The slot table.
#[derive(Debug)]
pub struct Slots {
    slots: Vec<Slot>,
    /// Indexes of free slots (a stack: O(1) at any depth).
    free: Vec<usize>,
    /// Slots in state Queued (so the common case, none, needs no scan).
    queued: usize,
    generation: u32,
}

impl Slots {
    /// `depth` free slots; each gets a `buf_len`-byte buffer (0 without --verify).
    pub fn new(depth: usize, buf_len: usize) -> Slots {
        debug_assert!(depth <= 0xffff);
        let slot = Slot {
            state: SlotState::Free,
            op: Op::Read,
            chunk: 0,
            lba: 0,
            itt: 0,
            start_ns: 0,
            sent_ns: 0,
            seq: 0,
            got: 0,
            resends: 0,
            buf: Vec::new(),
        };
        let slots = (0..depth)
            .map(|_| Slot {
                buf: vec![0; buf_len],
                ..slot.clone()
            })
            .collect();
        Slots {
            slots,
            free: (0..depth).rev().collect(),
            queued: 0,
            generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slots not free.
    pub fn busy(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Slots whose command is on the wire.
    pub fn in_flight(&self) -> usize {
        self.busy() - self.queued
    }

    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    pub fn get(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.slots[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// Takes a free slot for a new I/O (state Queued); `None` when all are busy.
    pub fn alloc(&mut self, op: Op, chunk: u64, lba: u64, start_ns: u64) -> Option<usize> {
        let i = self.free.pop()?;
        let s = &mut self.slots[i];
        debug_assert_eq!(s.state, SlotState::Free);
        s.state = SlotState::Queued;
        s.op = op;
        s.chunk = chunk;
        s.lba = lba;
        s.start_ns = start_ns;
        s.resends = 0;
        s.got = 0;
        s.seq = 0;
        self.queued += 1;
        Some(i)
    }

    /// Marks slot `i` sent now under a fresh ITT; returns the ITT.
    pub fn mark_sent(&mut self, i: usize, now_ns: u64) -> u32 {
        self.generation = (self.generation + 1) & 0x7fff;
        let itt = self.generation << 16 | i as u32;
        let s = &mut self.slots[i];
        debug_assert_ne!(s.state, SlotState::Free);
        s.itt = itt;
        s.sent_ns = now_ns;
        s.got = 0;
        if s.state == SlotState::Queued {
            self.queued -= 1;
        }
        s.state = SlotState::InFlight;
        itt
    }

    /// The in-flight slot whose current attempt carries `itt`.
    pub fn lookup(&self, itt: u32) -> Option<usize> {
        let i = (itt & 0xffff) as usize;
        let s = self.slots.get(i)?;
        (s.state == SlotState::InFlight && s.itt == itt).then_some(i)
    }

    /// Puts slot `i` back in the queue for a resend.
    pub fn requeue(&mut self, i: usize) {
        let s = &mut self.slots[i];
        debug_assert_ne!(s.state, SlotState::Free);
        if s.state != SlotState::Queued {
            self.queued += 1;
        }
        s.state = SlotState::Queued;
        s.resends += 1;
        s.got = 0;
    }

    pub fn free(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.state == SlotState::Queued {
            self.queued -= 1;
        }
        if s.state != SlotState::Free {
            s.state = SlotState::Free;
            self.free.push(i);
        }
    }

    /// The first queued slot.
    pub fn next_queued(&self) -> Option<usize> {
        if self.queued == 0 {
            return None;
        }
        self.slots.iter().position(|s| s.state == SlotState::Queued)
    }

    /// Whether a busy slot covers `chunk` (--verify never has two commands on one chunk).
    pub fn chunk_busy(&self, chunk: u64) -> bool {
        self.slots
            .iter()
            .any(|s| s.state != SlotState::Free && s.chunk == chunk)
    }

    /// The in-flight slot sent longest ago.
    pub fn oldest_in_flight(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::InFlight)
            .min_by_key(|(_, s)| s.sent_ns)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_send_lookup_free() {
        let mut t = Slots::new(4, 0);
        let a = t.alloc(Op::Read, 3, 24, 100).unwrap();
        let b = t.alloc(Op::Write, 5, 40, 100).unwrap();
        assert_ne!(a, b);
        assert_eq!((t.busy(), t.in_flight()), (2, 0));
        assert_eq!(t.lookup(0), None, "queued slots have no live ITT");
        let itt = t.mark_sent(a, 150);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.lookup(itt), Some(a));
        assert_eq!(itt & 0x8000_0000, 0);
        assert!(t.chunk_busy(5) && !t.chunk_busy(4));
        assert_eq!(t.next_queued(), Some(b));
        t.free(a);
        assert_eq!(t.lookup(itt), None);
        assert_eq!(t.busy(), 1);
        t.free(a);
        assert_eq!(t.busy(), 1, "freeing twice is harmless");
    }

    #[test]
    fn a_resend_gets_a_new_itt_and_the_old_one_goes_stale() {
        let mut t = Slots::new(2, 0);
        let a = t.alloc(Op::Write, 0, 0, 0).unwrap();
        let old = t.mark_sent(a, 10);
        t.requeue(a);
        assert_eq!(t.get(a).resends, 1);
        let new = t.mark_sent(a, 20);
        assert_ne!(old, new);
        assert_eq!(t.lookup(old), None);
        assert_eq!(t.lookup(new), Some(a));
        assert_eq!(
            t.get(a).start_ns,
            0,
            "latency still counts from the first send"
        );
    }

    #[test]
    fn full_table_and_oldest() {
        let mut t = Slots::new(2, 8);
        assert_eq!(t.get(0).buf.len(), 8);
        let a = t.alloc(Op::Read, 0, 0, 0).unwrap();
        let b = t.alloc(Op::Read, 1, 8, 0).unwrap();
        assert!(t.alloc(Op::Read, 2, 16, 0).is_none());
        assert!(!t.has_free());
        t.mark_sent(a, 50);
        t.mark_sent(b, 40);
        assert_eq!(t.oldest_in_flight(), Some(b));
    }
}
