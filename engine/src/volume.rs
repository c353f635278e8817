//! A volume: what the SCSI layer reads and writes. Today one local [`Disk`]; the mirroring issue
//! adds peers as further sinks of the same buffer (a write's buffer can become a [`SharedBuf`](crate::buffer::SharedBuf)
//! that both sinks hold, so the data never has to be copied for a second sink).
//!
//! Every write holds its byte range in [`RangeLocks`] while it runs, so COMPARE AND WRITE, which
//! holds its range across read, compare and write, is atomic against every other write.

use std::io;

use crate::buffer::Buf;
use crate::disk::{Disk, DiskInfo, Extent, FileDisk};
use crate::iobuf::{IoBuf, IoBufMut};
use crate::range_lock::RangeLocks;

/// When a write must be on stable storage before it completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written to the backing store (which may cache it until a flush).
    Cached,
    /// On stable storage when it completes (`RWF_DSYNC`): WCE=0, or FUA.
    Stable,
}

/// The result of a compare-and-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOutcome {
    /// The data matched and the new data is written.
    Written,
    /// The data differed at this byte offset (from the start of the range); nothing was written.
    Miscompare(usize),
}

/// One volume over one disk.
pub struct Volume<D: Disk = FileDisk> {
    disk: D,
    locks: RangeLocks,
}

impl<D: Disk> Volume<D> {
    /// A volume over `disk`.
    pub fn new(disk: D) -> Volume<D> {
        Volume {
            disk,
            locks: RangeLocks::default(),
        }
    }

    /// The backing store's properties.
    pub fn info(&self) -> &DiskInfo {
        self.disk.info()
    }

    /// The disk itself.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// Reads `len` bytes at `offset` into `buf[buf_offset..]`.
    pub async fn read<B: IoBufMut>(
        &self,
        buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
    ) -> (io::Result<()>, B) {
        self.disk.read(buf, buf_offset, len, offset).await
    }

    /// Writes `buf[buf_offset..buf_offset+len]` at `offset`.
    pub async fn write<B: IoBuf>(
        &self,
        buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
        durability: Durability,
    ) -> (io::Result<()>, B) {
        let _range = self
            .locks
            .lock(offset, offset.saturating_add(len as u64))
            .await;
        self.disk
            .write(
                buf,
                buf_offset,
                len,
                offset,
                durability == Durability::Stable,
            )
            .await
    }

    /// Makes every completed write durable.
    pub async fn flush(&self) -> io::Result<()> {
        self.disk.flush().await
    }

    /// Deallocates `[offset, offset+len)`; with `Stable` the change is flushed before completion.
    pub async fn unmap(&self, offset: u64, len: u64, durability: Durability) -> io::Result<()> {
        let _range = self.locks.lock(offset, offset.saturating_add(len)).await;
        self.disk.discard(offset, len).await?;
        self.settle(durability).await
    }

    /// Zeroes `[offset, offset+len)`, deallocating it when `deallocate` and the disk reads
    /// deallocated ranges back as zeroes.
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        deallocate: bool,
        durability: Durability,
    ) -> io::Result<()> {
        let _range = self.locks.lock(offset, offset.saturating_add(len)).await;
        if deallocate && self.disk.info().discard_reads_zero {
            self.disk.discard(offset, len).await?;
        } else {
            self.disk.write_zeroes(offset, len).await?;
        }
        self.settle(durability).await
    }

    async fn settle(&self, durability: Durability) -> io::Result<()> {
        match durability {
            Durability::Cached => Ok(()),
            Durability::Stable => self.disk.flush().await,
        }
    }

    /// Atomically: reads `len` bytes at `offset` into `scratch`, compares them with
    /// `buf[..len]`, and when equal writes `buf[len..2*len]` there.
    pub async fn compare_and_write(
        &self,
        buf: Buf,
        scratch: Buf,
        len: usize,
        offset: u64,
        durability: Durability,
    ) -> (io::Result<CompareOutcome>, Buf, Buf) {
        let _range = self
            .locks
            .lock(offset, offset.saturating_add(len as u64))
            .await;
        let (read, mut scratch) = self.disk.read(scratch, 0, len, offset).await;
        if let Err(e) = read {
            return (Err(e), buf, scratch);
        }
        scratch.set_len(len);
        let expected = buf.as_slice().get(..len).unwrap_or(&[]);
        if let Some(at) = first_difference(expected, scratch.as_slice()) {
            return (Ok(CompareOutcome::Miscompare(at)), buf, scratch);
        }
        let (written, buf) = self
            .disk
            .write(buf, len, len, offset, durability == Durability::Stable)
            .await;
        (written.map(|()| CompareOutcome::Written), buf, scratch)
    }

    /// Which parts of `[offset, offset+len)` are allocated.
    pub async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        self.disk.allocation(offset, len).await
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn difference_offsets() {
        assert_eq!(first_difference(b"abcd", b"abcd"), None);
        assert_eq!(first_difference(b"abcd", b"abXd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }
}
