//! What one session expects to read back under `--verify`, and the verdicts.
//!
//! Each session owns a disjoint share of the region, cut into chunks of `--bs` bytes, and is
//! the only writer there; it never has two commands on one chunk at a time. So the expected
//! content of a chunk is simply the last write that completed there: `seqs[chunk]` (0 = not
//! written in this run).
//!
//! A write that was in flight when a connection died, that was retried, or that failed with a
//! SCSI error may or may not have reached the medium, possibly late (a command still queued
//! on the old path can land after its retry). Its chunk enters the "in doubt" set with the
//! range of sequence numbers that may legitimately be there; a read that finds one of them is
//! *indeterminate*, not an error. Verdicts, counted per block:
//!
//! - ok: the stamp of the last completed write (right LBA, run, writer, sequence, checksum);
//! - indeterminate: in doubt, and an older or retried stamp that may legitimately be there;
//! - unknown: never written in this run (no stamp of this run): nothing to compare against;
//! - mismatch: anything else, reported with the LBA, what was expected and what was found.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::stamp::{read_block, stamp_block, BlockContent, Stamp};

/// Most mismatch records kept (all are counted).
pub const MAX_MISMATCH_RECORDS: usize = 100;

/// Block counts of the verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCounts {
    /// Read commands checked.
    pub reads_checked: u64,
    pub blocks_ok: u64,
    pub blocks_indeterminate: u64,
    pub blocks_unknown: u64,
    pub blocks_mismatched: u64,
    /// Writes whose outcome became uncertain (in flight at a failure, retried, or failed).
    pub writes_in_doubt: u64,
}

impl VerifyCounts {
    pub fn add(&mut self, o: &VerifyCounts) {
        self.reads_checked += o.reads_checked;
        self.blocks_ok += o.blocks_ok;
        self.blocks_indeterminate += o.blocks_indeterminate;
        self.blocks_unknown += o.blocks_unknown;
        self.blocks_mismatched += o.blocks_mismatched;
        self.writes_in_doubt += o.writes_in_doubt;
    }
}

/// One block that read back wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub lba: u64,
    pub expected: String,
    pub actual: String,
}

/// Sequence numbers that may be on a chunk whose write outcome is uncertain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Doubt {
    /// Oldest acceptable sequence; 0 = the content from before this run is acceptable too.
    low: u64,
    high: u64,
}

/// Where a session's share lies and who writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// LBA of chunk 0.
    pub first_lba: u64,
    pub chunks: u64,
    pub blocks_per_chunk: u32,
    pub block_len: usize,
    pub run: u32,
    pub writer: u32,
}

/// The expected state of one session's share.
#[derive(Debug)]
pub struct VerifyMap {
    share: Share,
    seqs: Vec<u64>,
    doubt: HashMap<u64, Doubt>,
    next_seq: u64,
    pub counts: VerifyCounts,
    pub mismatches: Vec<Mismatch>,
}

impl VerifyMap {
    pub fn new(share: Share) -> VerifyMap {
        VerifyMap {
            seqs: vec![0; share.chunks as usize],
            share,
            doubt: HashMap::new(),
            next_seq: 1,
            counts: VerifyCounts::default(),
            mismatches: Vec::new(),
        }
    }

    /// LBA of the first block of `chunk`.
    pub fn chunk_lba(&self, chunk: u64) -> u64 {
        self.share.first_lba + chunk * u64::from(self.share.blocks_per_chunk)
    }

    /// Stamps `buf` (one chunk) for a new write to `chunk`; returns its sequence number.
    pub fn stamp_write(&mut self, chunk: u64, buf: &mut [u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = self.chunk_lba(chunk);
        for (i, block) in buf.chunks_mut(self.share.block_len).enumerate() {
            let stamp = Stamp {
                lba: first + i as u64,
                run: self.share.run,
                writer: self.share.writer,
                seq,
            };
            stamp_block(block, &stamp);
        }
        seq
    }

    /// A write completed with GOOD status.
    pub fn write_done(&mut self, chunk: u64, seq: u64) {
        if let Some(s) = self.seqs.get_mut(chunk as usize) {
            *s = seq;
        }
        if let Some(d) = self.doubt.get_mut(&chunk) {
            d.high = d.high.max(seq);
        }
    }

    /// A write's outcome is uncertain (in flight at a failure, or failed): its chunk may hold
    /// the previous content or this write, now or later.
    pub fn write_in_doubt(&mut self, chunk: u64, seq: u64) {
        let before = self.seqs.get(chunk as usize).copied().unwrap_or(0);
        self.counts.writes_in_doubt += 1;
        let d = self.doubt.entry(chunk).or_insert(Doubt {
            low: before,
            high: seq,
        });
        d.low = d.low.min(before);
        d.high = d.high.max(seq);
    }

    /// Checks one read of `chunk`.
    pub fn check_read(&mut self, chunk: u64, data: &[u8]) {
        self.counts.reads_checked += 1;
        let expected = self.seqs.get(chunk as usize).copied().unwrap_or(0);
        let doubt = self.doubt.get(&chunk).copied();
        let first = self.chunk_lba(chunk);
        for (i, block) in data.chunks(self.share.block_len).enumerate() {
            let lba = first + i as u64;
            let content = read_block(block);
            match self.judge(lba, expected, doubt, &content) {
                Verdict::Ok => self.counts.blocks_ok += 1,
                Verdict::Indeterminate => self.counts.blocks_indeterminate += 1,
                Verdict::Unknown => self.counts.blocks_unknown += 1,
                Verdict::Mismatch(want) => self.mismatch(lba, want, &content),
            }
        }
    }

    fn judge(&self, lba: u64, expected: u64, doubt: Option<Doubt>, got: &BlockContent) -> Verdict {
        let ours =
            |s: &Stamp| s.lba == lba && s.run == self.share.run && s.writer == self.share.writer;
        let foreign = match got {
            BlockContent::Unstamped => true,
            BlockContent::Stamped(s) => s.run != self.share.run,
            BlockContent::Corrupt(_) => false,
        };
        match (doubt, got) {
            (None, _) if expected == 0 && foreign => Verdict::Unknown,
            (None, _) if expected == 0 => Verdict::Mismatch(format!(
                "LBA {lba}: not written in this run (no stamp of run {:08x})",
                self.share.run
            )),
            (None, BlockContent::Stamped(s)) if ours(s) && s.seq == expected => Verdict::Ok,
            (None, _) => Verdict::Mismatch(self.describe(lba, expected, expected)),
            (Some(d), BlockContent::Stamped(s))
                if ours(s) && (d.low.max(1)..=d.high).contains(&s.seq) =>
            {
                // Only the newest write, completed, is certain: a stale one may still land.
                if s.seq == expected && expected == d.high {
                    Verdict::Ok
                } else {
                    Verdict::Indeterminate
                }
            }
            (Some(d), _) if d.low == 0 && foreign => Verdict::Indeterminate,
            (Some(d), _) => Verdict::Mismatch(self.describe(lba, d.low.max(1), d.high)),
        }
    }

    fn describe(&self, lba: u64, low: u64, high: u64) -> String {
        let seq = if low == high {
            format!("seq {high}")
        } else {
            format!("seq {low}..={high}")
        };
        format!(
            "LBA {lba} run {:08x} writer {} {seq}",
            self.share.run, self.share.writer
        )
    }

    fn mismatch(&mut self, lba: u64, expected: String, got: &BlockContent) {
        self.counts.blocks_mismatched += 1;
        if self.mismatches.len() < MAX_MISMATCH_RECORDS {
            self.mismatches.push(Mismatch {
                lba,
                expected,
                actual: got.to_string(),
            });
        }
    }
}

enum Verdict {
    Ok,
    Indeterminate,
    Unknown,
    Mismatch(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::fill_payload;

    const SHARE: Share = Share {
        first_lba: 1000,
        chunks: 4,
        blocks_per_chunk: 8,
        block_len: 512,
        run: 0xabcd,
        writer: 2,
    };

    fn buffer() -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        fill_payload(&mut b, 1);
        b
    }

    #[test]
    fn a_completed_write_reads_back_ok() {
        let mut m = VerifyMap::new(SHARE);
        let mut b = buffer();
        let seq = m.stamp_write(1, &mut b);
        m.write_done(1, seq);
        m.check_read(1, &b);
        assert_eq!(m.counts.blocks_ok, 8);
        assert_eq!(m.counts.reads_checked, 1);
        assert!(m.mismatches.is_empty());
    }

    #[test]
    fn never_written_chunks_are_unknown() {
        let mut m = VerifyMap::new(SHARE);
        m.check_read(0, &[0u8; 4096]);
        assert_eq!(m.counts.blocks_unknown, 8);
        // A stamp of another run is as unknown as zeroes.
        let mut other = VerifyMap::new(Share { run: 1, ..SHARE });
        let mut b = buffer();
        other.stamp_write(0, &mut b);
        m.check_read(0, &b);
        assert_eq!(m.counts.blocks_unknown, 16);
        assert_eq!(m.counts.blocks_mismatched, 0);
    }

    #[test]
    fn a_stale_block_names_lba_expected_and_actual() {
        let mut m = VerifyMap::new(SHARE);
        let mut old = buffer();
        let s1 = m.stamp_write(2, &mut old);
        m.write_done(2, s1);
        let mut new = buffer();
        let s2 = m.stamp_write(2, &mut new);
        m.write_done(2, s2);
        m.check_read(2, &old);
        assert_eq!(m.counts.blocks_mismatched, 8);
        let first = &m.mismatches[0];
        assert_eq!(first.lba, 1016);
        assert!(first.expected.contains("seq 2"), "{first:?}");
        assert!(first.actual.contains("seq 1"), "{first:?}");
    }

    #[test]
    fn misdirected_and_corrupt_blocks_are_mismatches() {
        let mut m = VerifyMap::new(SHARE);
        let mut b = buffer();
        let seq = m.stamp_write(0, &mut b);
        m.write_done(0, seq);
        // Chunk 0's data read back at chunk 1: wrong LBA (chunk 1 never written, but the stamp
        // is of this run).
        m.check_read(1, &b);
        assert_eq!(m.counts.blocks_mismatched, 8);
        assert!(m.mismatches[0].expected.contains("not written in this run"));
        b[100] ^= 1;
        m.check_read(0, &b);
        assert_eq!(m.counts.blocks_mismatched, 9);
        assert!(m.mismatches[8].actual.contains("bad checksum"));
        assert_eq!(m.counts.blocks_ok, 7);
    }

    #[test]
    fn a_write_in_doubt_is_indeterminate_not_an_error() {
        let mut m = VerifyMap::new(SHARE);
        let mut v1 = buffer();
        let s1 = m.stamp_write(3, &mut v1);
        m.write_done(3, s1);
        let mut v2 = buffer();
        let s2 = m.stamp_write(3, &mut v2);
        // The connection dies with write 2 in flight.
        m.write_in_doubt(3, s2);
        assert_eq!(m.counts.writes_in_doubt, 1);
        m.check_read(3, &v1);
        assert_eq!(
            m.counts.blocks_indeterminate, 8,
            "the old content may be there"
        );
        m.check_read(3, &v2);
        assert_eq!(m.counts.blocks_indeterminate, 16, "so may the new");
        // Its retry completes: the new content is now the expected one.
        m.write_done(3, s2);
        m.check_read(3, &v2);
        assert_eq!(m.counts.blocks_ok, 8);
        // Garbage is still a mismatch.
        m.check_read(3, &[0u8; 4096]);
        assert_eq!(m.counts.blocks_mismatched, 8);
        assert!(
            m.mismatches[0].expected.contains("seq 1..=2"),
            "{:?}",
            m.mismatches[0]
        );
    }

    #[test]
    fn doubt_on_a_never_written_chunk_accepts_the_old_content() {
        let mut m = VerifyMap::new(SHARE);
        let mut b = buffer();
        let seq = m.stamp_write(0, &mut b);
        m.write_in_doubt(0, seq);
        m.check_read(0, &[0u8; 4096]);
        assert_eq!(m.counts.blocks_indeterminate, 8);
        m.check_read(0, &b);
        assert_eq!(m.counts.blocks_indeterminate, 16);
        assert_eq!(m.counts.blocks_mismatched, 0);
    }

    #[test]
    fn mismatch_records_are_bounded() {
        let mut m = VerifyMap::new(SHARE);
        let mut b = buffer();
        let seq = m.stamp_write(0, &mut b);
        m.write_done(0, seq);
        for _ in 0..20 {
            m.check_read(0, &[0u8; 4096]);
        }
        assert_eq!(m.counts.blocks_mismatched, 160);
        assert_eq!(m.mismatches.len(), MAX_MISMATCH_RECORDS);
    }
}
