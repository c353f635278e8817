//! The metadata store's I/O: formats a store, loads it back (the newest valid superblock, the
//! newest valid activity-log transaction, the bitmap) and carries out the replica's
//! [`MetaWrite`]s, every write stable (`RWF_DSYNC`) before it reports done. It runs over the
//! [`Disk`] trait, with 4 KiB-aligned buffers of its own, so it works on an `O_DIRECT` file.
//! The layout is [`crate::mirror::meta`]'s.

use std::io;

use crate::buffer::{Buf, BufferPool};
use crate::disk::Disk;
use crate::mirror::activity_log::{recover, Transaction, SLOT_BYTES};
use crate::mirror::bitmap::{Bitmap, PAGE_BYTES};
use crate::mirror::meta::{MetaError, Superblock, SUPERBLOCK_BYTES};
use crate::mirror::replica::MetaWrite;

/// Why a store could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk failed.
    #[error("metadata I/O: {0}")]
    Io(#[from] io::Error),
    /// The contents are not a usable store.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// The store is smaller than its layout needs.
    #[error("metadata store is {have} bytes, its layout needs {need}")]
    TooSmall {
        /// Its size.
        have: u64,
        /// What the layout needs.
        need: u64,
    },
}

/// What a store holds, as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The newest valid superblock.
    pub sb: Superblock,
    /// The extents of the newest valid activity-log transaction.
    pub al_extents: Vec<u32>,
    /// Sequence number for the next activity-log transaction.
    pub al_next_seq: u64,
    /// The bitmap.
    pub bitmap: Bitmap,
}

/// A metadata store on a disk.
pub struct MetaStore<D: Disk> {
    disk: D,
    pool: BufferPool,
}

impl<D: Disk> MetaStore<D> {
    /// A store on `disk` (which must be at least `sb.store_bytes()` long to be formatted).
    pub fn new(disk: D) -> io::Result<MetaStore<D>> {
        Ok(MetaStore {
            disk,
            pool: BufferPool::new(PAGE_BYTES, 2)?,
        })
    }

    /// The disk under it.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    async fn buf(&self) -> Buf {
        self.pool.get().await
    }

    async fn write_block(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut buf = self.buf().await;
        buf.set_len(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
        let len = bytes.len();
        let (result, _buf) = self.disk.write(buf, 0, len, offset, true).await;
        result
    }

    async fn read_block(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let buf = self.buf().await;
        let len = out.len();
        let (result, mut buf) = self.disk.read(buf, 0, len, offset).await;
        result?;
        buf.set_len(len);
        out.copy_from_slice(buf.as_slice());
        Ok(())
    }

    /// Writes an empty store for `sb`: a clear bitmap, an empty activity log, the superblock
    /// (in slot 1, seq 1), all stable.
    pub async fn format(&self, sb: &Superblock) -> Result<(), StoreError> {
        // Only a layout that loads back is written.
        let probe = Superblock {
            seq: 1,
            ..sb.clone()
        };
        Superblock::decode(&probe.encode())?;
        let need = sb.store_bytes();
        let have = self.disk.info().size_bytes;
        if have < need {
            return Err(StoreError::TooSmall { have, need });
        }
        let zero = [0u8; PAGE_BYTES];
        for slot in 0..u64::from(sb.al_slots) {
            self.write_block(sb.al_offset() + slot * SLOT_BYTES as u64, &zero)
                .await?;
        }
        for page in 0..sb.bitmap_pages() {
            self.write_block(sb.bitmap_offset() + page * PAGE_BYTES as u64, &zero)
                .await?;
        }
        // The other slot is cleared so that an older store's superblock cannot win.
        let first = Superblock {
            seq: 1,
            ..sb.clone()
        };
        self.write_block((1 - first.seq % 2) * SUPERBLOCK_BYTES as u64, &zero)
            .await?;
        self.write_block(first.slot_offset(), &first.encode())
            .await?;
        Ok(())
    }

    /// Loads the store: the newest valid superblock, activity log and bitmap.
    pub async fn load(&self) -> Result<Loaded, StoreError> {
        let mut s0 = [0u8; SUPERBLOCK_BYTES];
        let mut s1 = [0u8; SUPERBLOCK_BYTES];
        self.read_block(0, &mut s0).await?;
        self.read_block(SUPERBLOCK_BYTES as u64, &mut s1).await?;
        let sb = Superblock::newest(&s0, &s1)?;
        let need = sb.store_bytes();
        let have = self.disk.info().size_bytes;
        if have < need {
            return Err(StoreError::TooSmall { have, need });
        }
        let mut slots = vec![[0u8; SLOT_BYTES]; sb.al_slots as usize];
        for (i, slot) in slots.iter_mut().enumerate() {
            self.read_block(sb.al_offset() + (i * SLOT_BYTES) as u64, slot)
                .await?;
        }
        let (al_next_seq, al_extents) = match recover(&slots, sb.al_extent_shift) {
            Some((seq, extents)) => (seq + 1, extents),
            None => (0, Vec::new()),
        };
        let mut bitmap = Bitmap::new(sb.volume_bytes, 1 << sb.granule_shift);
        let mut page = [0u8; PAGE_BYTES];
        for i in 0..bitmap.pages() {
            self.read_block(sb.bitmap_offset() + (i * PAGE_BYTES) as u64, &mut page)
                .await?;
            bitmap.load_page(i, &page);
        }
        Ok(Loaded {
            sb,
            al_extents,
            al_next_seq,
            bitmap,
        })
    }

    /// Carries out one of the replica's metadata writes (the data disk's pre-flush of an
    /// activity-log transaction is the caller's, on the data disk), stable when it returns.
    pub async fn write(&self, what: &MetaWrite, layout: &Superblock) -> Result<(), StoreError> {
        match what {
            MetaWrite::Superblock(sb) => {
                self.write_block(sb.slot_offset(), &sb.encode()).await?;
            }
            MetaWrite::Al { pages, tx, .. } => {
                self.write_pages(pages, layout).await?;
                self.write_transaction(tx, layout).await?;
            }
            MetaWrite::Bitmap(pages) => self.write_pages(pages, layout).await?,
        }
        Ok(())
    }

    async fn write_pages(
        &self,
        pages: &[(usize, Box<[u8; PAGE_BYTES]>)],
        layout: &Superblock,
    ) -> io::Result<()> {
        for (index, bytes) in pages {
            let at = layout.bitmap_offset() + (*index * PAGE_BYTES) as u64;
            self.write_block(at, &bytes[..]).await?;
        }
        Ok(())
    }

    async fn write_transaction(&self, tx: &Transaction, layout: &Superblock) -> io::Result<()> {
        let slot = tx.seq % u64::from(layout.al_slots.max(1));
        let at = layout.al_offset() + slot * SLOT_BYTES as u64;
        self.write_block(at, &tx.encode(layout.al_extent_shift))
            .await
    }
}
