//! Which I/O comes next: the region of the LUN a session works on, and the choice of operation
//! (read percentage) and chunk (random, or sequential from a per-session starting point).
//!
//! Chunks are `--bs`-sized and aligned to the region's start. Without --verify every session
//! of a LUN uses the whole region; with --verify each session gets a disjoint share, so it is
//! the only writer of the blocks it checks.

use crate::conn::cdb::Capacity;
use crate::options::Workload;
use crate::result::Op;
use crate::rng::Rng;

/// Most picks tried per I/O when chunks are busy (--verify).
const MAX_PICK_TRIES: usize = 8;

/// A run of `bs`-sized chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub first_lba: u64,
    pub chunks: u64,
    pub blocks_per_chunk: u32,
    pub block_len: u32,
}

impl Region {
    pub fn lba(&self, chunk: u64) -> u64 {
        self.first_lba + chunk * u64::from(self.blocks_per_chunk)
    }

    pub fn bytes(&self) -> u64 {
        self.chunks * u64::from(self.blocks_per_chunk) * u64::from(self.block_len)
    }

    /// Share `index` of `n` (disjoint, together the whole region).
    pub fn share(&self, index: u64, n: u64) -> Region {
        let start = self.chunks * index / n;
        let end = self.chunks * (index + 1) / n;
        Region {
            first_lba: self.lba(start),
            chunks: end - start,
            ..*self
        }
    }
}

/// The region `--offset`/`--size` select on a LUN of `cap`, or what is wrong with them.
pub fn plan_region(w: &Workload, cap: Capacity) -> Result<Region, String> {
    let block = u64::from(cap.block_len);
    let lun_bytes = cap.bytes();
    if !w.bs_bytes.is_multiple_of(block) {
        return Err(format!(
            "--bs {} is not a multiple of the LUN's {block}-byte blocks",
            w.bs_bytes
        ));
    }
    if !w.offset_bytes.is_multiple_of(block) {
        return Err(format!(
            "--offset {} is not a multiple of the LUN's {block}-byte blocks",
            w.offset_bytes
        ));
    }
    if w.offset_bytes >= lun_bytes {
        return Err(format!(
            "--offset {} is beyond the end of the LUN ({lun_bytes} bytes)",
            w.offset_bytes
        ));
    }
    let size = w.size_bytes.unwrap_or(lun_bytes - w.offset_bytes);
    if w.offset_bytes + size > lun_bytes {
        return Err(format!(
            "--offset {} + --size {size} run past the end of the LUN ({lun_bytes} bytes)",
            w.offset_bytes
        ));
    }
    let chunks = size / w.bs_bytes;
    if chunks == 0 {
        return Err(format!(
            "the region ({size} bytes) is smaller than one --bs of {}",
            w.bs_bytes
        ));
    }
    Ok(Region {
        first_lba: w.offset_bytes / block,
        chunks,
        blocks_per_chunk: (w.bs_bytes / block) as u32,
        block_len: cap.block_len,
    })
}

/// Chooses operations and chunks.
#[derive(Debug, Clone)]
pub struct IoPicker {
    region: Region,
    read_percent: u8,
    random: bool,
    cursor: u64,
    rng: Rng,
}

impl IoPicker {
    /// Sequential sessions start at `start_fraction` (index / n) of the region, so that several
    /// sessions do not all read the same blocks.
    pub fn new(
        region: Region,
        read_percent: u8,
        random: bool,
        start: (u64, u64),
        rng: Rng,
    ) -> IoPicker {
        let (index, n) = start;
        IoPicker {
            region,
            read_percent,
            random,
            cursor: region.chunks * index / n.max(1),
            rng,
        }
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The next operation and chunk, skipping chunks for which `busy` is true; `None` when
    /// every try was busy.
    pub fn next(&mut self, busy: impl Fn(u64) -> bool) -> Option<(Op, u64)> {
        let op = match self.read_percent {
            100 => Op::Read,
            0 => Op::Write,
            p if self.rng.percent(p) => Op::Read,
            _ => Op::Write,
        };
        for _ in 0..MAX_PICK_TRIES {
            let chunk = if self.random {
                self.rng.below(self.region.chunks)
            } else {
                let c = self.cursor;
                self.cursor = (self.cursor + 1) % self.region.chunks;
                c
            };
            if !busy(chunk) {
                return Some((op, chunk));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{RunArgs, Workload};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn workload(extra: &[&str]) -> Workload {
        let mut argv = vec!["x", "--url", "iscsi://h/iqn.x/0"];
        argv.extend_from_slice(extra);
        Workload::from_args(&Cli::try_parse_from(argv).unwrap().run, 1).unwrap()
    }

    const CAP: Capacity = Capacity {
        blocks: 2048,
        block_len: 512,
    };

    #[test]
    fn the_whole_lun_by_default() {
        let r = plan_region(&workload(&[]), CAP).unwrap();
        assert_eq!(
            r,
            Region {
                first_lba: 0,
                chunks: 256,
                blocks_per_chunk: 8,
                block_len: 512
            }
        );
        assert_eq!(r.lba(3), 24);
        assert_eq!(r.bytes(), 1 << 20);
    }

    #[test]
    fn offset_and_size_select_a_window() {
        let r = plan_region(&workload(&["--offset", "64k", "--size", "128k"]), CAP).unwrap();
        assert_eq!((r.first_lba, r.chunks), (128, 32));
        let bad = [
            (vec!["--offset", "1m"], "beyond the end"),
            (vec!["--offset", "512k", "--size", "1m"], "past the end"),
        ];
        for (extra, words) in bad {
            let e = plan_region(&workload(&extra), CAP).unwrap_err();
            assert!(e.contains(words), "{extra:?}: {e}");
        }
        let big_blocks = Capacity {
            blocks: 256,
            block_len: 4096,
        };
        let e = plan_region(&workload(&["--bs", "2k"]), big_blocks).unwrap_err();
        assert!(e.contains("4096-byte blocks"), "{e}");
    }

    #[test]
    fn shares_are_disjoint_and_cover_the_region() {
        let r = Region {
            first_lba: 100,
            chunks: 10,
            blocks_per_chunk: 8,
            block_len: 512,
        };
        let shares: Vec<Region> = (0..3).map(|i| r.share(i, 3)).collect();
        assert_eq!(shares.iter().map(|s| s.chunks).sum::<u64>(), 10);
        assert_eq!(shares[0].first_lba, 100);
        for w in shares.windows(2) {
            assert_eq!(w[0].first_lba + w[0].chunks * 8, w[1].first_lba);
        }
    }

    #[test]
    fn sequential_walks_and_wraps_random_stays_inside() {
        let r = Region {
            first_lba: 0,
            chunks: 4,
            blocks_per_chunk: 1,
            block_len: 512,
        };
        let mut seq = IoPicker::new(r, 100, false, (1, 2), Rng::new(1, 0));
        let chunks: Vec<u64> = (0..5).map(|_| seq.next(|_| false).unwrap().1).collect();
        assert_eq!(chunks, [2, 3, 0, 1, 2]);
        let mut rnd = IoPicker::new(r, 50, true, (0, 1), Rng::new(1, 0));
        let mut reads = 0;
        for _ in 0..1000 {
            let (op, c) = rnd.next(|c| c == 2).unwrap();
            assert!(c < 4 && c != 2);
            reads += usize::from(op == Op::Read);
        }
        assert!((400..600).contains(&reads), "{reads}");
        assert!(rnd.next(|_| true).is_none());
    }
}
