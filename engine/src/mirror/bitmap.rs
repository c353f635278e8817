//! The out-of-sync bitmap: one bit per granule (4 KiB by default) of a volume, set where this
//! copy and its peer may differ (a write the peer missed, an activity-log extent after a crash)
//! and cleared as resync makes the two equal. It lives in memory; [`crate::mirror::meta`] writes
//! its pages to the metadata store, each with a checksum.

/// Bytes of the volume one bitmap page (4 KiB of bits) covers at the default granule: 128 MiB.
pub const PAGE_BYTES: usize = 4096;
const WORDS_PER_PAGE: usize = PAGE_BYTES / 8;

/// The bitmap of one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    volume_bytes: u64,
    granule: u64,
    bits: u64,
    words: Vec<u64>,
    set: u64,
}

impl Bitmap {
    /// A clear bitmap over `volume_bytes` bytes, one bit per `granule` bytes (a power of two).
    pub fn new(volume_bytes: u64, granule: u64) -> Bitmap {
        debug_assert!(granule.is_power_of_two());
        let bits = volume_bytes.div_ceil(granule);
        let pages = bits.div_ceil(PAGE_BYTES as u64 * 8).max(1) as usize;
        Bitmap {
            volume_bytes,
            granule,
            bits,
            words: vec![0; pages * WORDS_PER_PAGE],
            set: 0,
        }
    }

    /// Bytes per bit.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Bits in the bitmap (granules of the volume, the last one possibly partial).
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Bits set.
    pub fn count(&self) -> u64 {
        self.set
    }

    /// Bytes of the volume marked out of sync (the last granule counted whole).
    pub fn out_of_sync_bytes(&self) -> u64 {
        self.set * self.granule
    }

    /// The granules `[offset, offset+len)` touches.
    fn span(&self, offset: u64, len: u64) -> (u64, u64) {
        if len == 0 {
            return (0, 0);
        }
        let first = (offset / self.granule).min(self.bits);
        let end = offset
            .saturating_add(len)
            .div_ceil(self.granule)
            .min(self.bits);
        (first, end)
    }

    /// Marks every granule `[offset, offset+len)` touches. Returns how many bits were newly set.
    pub fn mark(&mut self, offset: u64, len: u64) -> u64 {
        let (first, end) = self.span(offset, len);
        self.set_range(first, end, true)
    }

    /// Clears the granules wholly inside `[offset, offset+len)`: a partial granule at either end
    /// stays marked, since only part of it was made equal. Returns how many bits were cleared.
    pub fn clear(&mut self, offset: u64, len: u64) -> u64 {
        let first = offset.div_ceil(self.granule);
        let stop = offset.saturating_add(len);
        let end = if stop >= self.volume_bytes {
            self.bits
        } else {
            stop / self.granule
        };
        if first >= end {
            return 0;
        }
        self.set_range(first, end, false)
    }

    /// Marks every bit (a full sync).
    pub fn mark_all(&mut self) {
        self.set_range(0, self.bits, true);
    }

    /// Is any granule `[offset, offset+len)` touches marked?
    pub fn any(&self, offset: u64, len: u64) -> bool {
        let (first, end) = self.span(offset, len);
        (first..end).any(|b| self.get(b))
    }

    /// Is bit `bit` set?
    pub fn get(&self, bit: u64) -> bool {
        bit < self.bits && self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    fn set_range(&mut self, first: u64, end: u64, value: bool) -> u64 {
        let mut changed = 0;
        let mut bit = first;
        while bit < end {
            let word = (bit / 64) as usize;
            let lo = bit % 64;
            let hi = (end - (bit - lo)).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            let before = self.words[word];
            let after = if value { before | mask } else { before & !mask };
            changed += u64::from((before ^ after).count_ones());
            self.words[word] = after;
            bit += hi - lo;
        }
        if value {
            self.set += changed;
        } else {
            self.set -= changed;
        }
        changed
    }

    /// The first run of set bits at or after byte `from`, as a byte range `(offset, len)` of at
    /// most `max_len` bytes (clipped to the volume's end), or None when nothing is set there.
    pub fn next_run(&self, from: u64, max_len: u64) -> Option<(u64, u64)> {
        let mut bit = from.div_ceil(self.granule);
        // Skip clear words quickly.
        while bit < self.bits {
            let word = self.words[(bit / 64) as usize] >> (bit % 64);
            if word == 0 {
                bit = (bit / 64 + 1) * 64;
                continue;
            }
            bit += u64::from(word.trailing_zeros());
            break;
        }
        if bit >= self.bits {
            return None;
        }
        let max_bits = (max_len / self.granule).max(1);
        let mut end = bit + 1;
        while end < self.bits && end - bit < max_bits && self.get(end) {
            end += 1;
        }
        let offset = bit * self.granule;
        let stop = (end * self.granule).min(self.volume_bytes);
        Some((offset, stop.saturating_sub(offset)))
    }

    /// Pages of the bitmap (4 KiB each).
    pub fn pages(&self) -> usize {
        self.words.len() / WORDS_PER_PAGE
    }

    /// Page `index` as little-endian bytes.
    pub fn page_bytes(&self, index: usize, out: &mut [u8; PAGE_BYTES]) {
        let words = &self.words[index * WORDS_PER_PAGE..(index + 1) * WORDS_PER_PAGE];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
    }

    /// Page `index` from little-endian bytes; bits past the volume's end are ignored.
    pub fn load_page(&mut self, index: usize, bytes: &[u8; PAGE_BYTES]) {
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            self.words[index * WORDS_PER_PAGE + i] = u64::from_le_bytes(raw);
        }
        self.mask_tail();
        self.recount();
    }

    /// Marks every bit of page `index` (its stored copy was damaged).
    pub fn mark_page(&mut self, index: usize) {
        let first = (index * WORDS_PER_PAGE * 64) as u64;
        let end = (first + (WORDS_PER_PAGE * 64) as u64).min(self.bits);
        if first < end {
            self.set_range(first, end, true);
        }
    }

    /// The page holding bit `bit`.
    pub fn page_of(&self, offset: u64) -> usize {
        ((offset / self.granule) / (WORDS_PER_PAGE as u64 * 64)) as usize
    }

    /// ORs `other` (the peer's bitmap of the same volume and granule) into this one.
    pub fn merge(&mut self, other: &Bitmap) {
        self.merge_words(&other.words);
    }

    /// ORs the words of a bitmap of the same geometry (the peer's, as received) into this one;
    /// words past this bitmap's end are ignored.
    pub fn merge_words(&mut self, words: &[u64]) {
        for (a, b) in self.words.iter_mut().zip(words) {
            *a |= *b;
        }
        self.mask_tail();
        self.recount();
    }

    /// The bits as words (64 bits each, bit 0 of word 0 first).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    fn mask_tail(&mut self) {
        let bits = self.bits as usize;
        for (i, w) in self.words.iter_mut().enumerate() {
            let lo = i * 64;
            if lo >= bits {
                *w = 0;
            } else if lo + 64 > bits {
                *w &= (1u64 << (bits - lo)) - 1;
            }
        }
    }

    fn recount(&mut self) {
        self.set = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn mark_and_clear_follow_granules() {
        let mut b = Bitmap::new(64 * MIB, 4096);
        assert_eq!(b.bits(), 16384);
        assert_eq!(b.mark(0, 512), 1);
        assert_eq!(
            b.mark(4095, 2),
            1,
            "spans two granules, the first already set"
        );
        assert_eq!(b.count(), 2);
        assert_eq!(b.out_of_sync_bytes(), 8192);
        assert!(b.any(4096, 1) && !b.any(8192, 4096));
        // A partial granule is not cleared.
        assert_eq!(b.clear(0, 2048), 0);
        assert_eq!(b.clear(0, 8192), 2);
        assert_eq!(b.count(), 0);
    }

    #[test]
    fn long_ranges_cross_words_and_count_right() {
        let mut b = Bitmap::new(64 * MIB, 4096);
        assert_eq!(b.mark(4096 * 60, 4096 * 200), 200);
        assert_eq!(b.count(), 200);
        assert_eq!(b.clear(4096 * 100, 4096 * 64), 64);
        assert_eq!(b.count(), 136);
        assert_eq!(b.next_run(0, u64::MAX), Some((4096 * 60, 4096 * 40)));
        assert_eq!(
            b.next_run(4096 * 100, 4096 * 10),
            Some((4096 * 164, 4096 * 10))
        );
        assert_eq!(b.next_run(4096 * 260, u64::MAX), None);
    }

    #[test]
    fn the_last_partial_granule_is_clipped_and_clearable() {
        let size = 10 * 4096 + 512;
        let mut b = Bitmap::new(size, 4096);
        assert_eq!(b.bits(), 11);
        b.mark_all();
        assert_eq!(b.count(), 11);
        assert_eq!(b.next_run(10 * 4096, u64::MAX), Some((40960, 512)));
        assert_eq!(
            b.clear(10 * 4096, 512),
            1,
            "the volume's end ends the granule"
        );
        assert_eq!(b.mark(size + 4096, 4096), 0, "past the end marks nothing");
    }

    #[test]
    fn pages_round_trip_and_merge_ors() {
        let mut a = Bitmap::new(300 * MIB, 4096);
        a.mark(5 * MIB, MIB);
        a.mark(200 * MIB, 4096);
        assert_eq!(a.pages(), 3);
        let mut c = Bitmap::new(300 * MIB, 4096);
        let mut page = [0u8; PAGE_BYTES];
        for i in 0..a.pages() {
            a.page_bytes(i, &mut page);
            c.load_page(i, &page);
        }
        assert_eq!(a, c);
        let mut d = Bitmap::new(300 * MIB, 4096);
        d.mark(0, 4096);
        d.merge(&a);
        assert_eq!(d.count(), a.count() + 1);
        d.mark_page(1);
        assert_eq!(d.page_of(200 * MIB), 1);
        assert!(d.any(129 * MIB, 1) && d.any(255 * MIB, 1));
    }
}
