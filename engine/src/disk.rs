//! The disk: the [`Disk`] trait (so a simulation can swap in a disk that loses unflushed writes)
//! and [`FileDisk`], an `O_DIRECT` file or block device driven through io_uring with registered
//! buffers and registered files.
//!
//! Traps: `O_DIRECT` alone is not durable (a sparse file's block allocation, the device's cache),
//! so a durable write carries `RWF_DSYNC`; fsync completions are unordered against writes queued
//! before them, so callers flush only after the writes they cover have completed.

use io_uring::{opcode, types};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::blocking::run_blocking;
use crate::iobuf::{IoBuf, IoBufMut};
use crate::op::Op;
use crate::reactor::{try_with_core, with_core};

static NEXT_DISK_ID: AtomicU64 = AtomicU64::new(1);

/// What a backing store is and can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in bytes.
    pub size_bytes: u64,
    /// The smallest I/O unit with `O_DIRECT` (`STATX_DIOALIGN` offset alignment, or the
    /// device's logical block size); a LUN block size below it is refused.
    pub logical_block_bytes: u32,
    /// The physical block size reported in READ CAPACITY(16).
    pub physical_block_bytes: u32,
    /// Whether `O_DIRECT` is in effect (false on tmpfs and the like: buffered fallback).
    pub direct: bool,
    /// A block device rather than a regular file.
    pub block_device: bool,
    /// Whether deallocated ranges read back as zeroes (LBPRZ).
    pub discard_reads_zero: bool,
}

/// One run of a mapping query: `len` bytes at `offset`, allocated or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Start in bytes.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether the range is backed by allocated storage.
    pub mapped: bool,
}

/// A backing store. Every method takes byte offsets; `buf_offset..buf_offset+len` is the part of
/// the buffer used.
#[allow(async_fn_in_trait)]
pub trait Disk {
    /// What it is.
    fn info(&self) -> &DiskInfo;
    /// Reads `len` bytes at `offset` into `buf[buf_offset..]`.
    async fn read<B: IoBufMut>(
        &self,
        buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
    ) -> (io::Result<()>, B);
    /// Writes `buf[buf_offset..buf_offset+len]` at `offset`; `durable` adds `RWF_DSYNC`.
    async fn write<B: IoBuf>(
        &self,
        buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
        durable: bool,
    ) -> (io::Result<()>, B);
    /// Makes every completed write durable (`fdatasync`).
    async fn flush(&self) -> io::Result<()>;
    /// Deallocates a range (punch hole or discard).
    async fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Writes zeroes over a range, keeping it allocated.
    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Which parts of a range are allocated.
    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>>;
}

/// A file or block device opened for `O_DIRECT` I/O. Shared by every reactor (each registers
/// the descriptor in its own fixed-file table on first use).
#[derive(Clone)]
pub struct FileDisk {
    inner: Arc<FileDiskInner>,
}

struct FileDiskInner {
    id: u64,
    fd: OwnedFd,
    path: PathBuf,
    info: DiskInfo,
}

/// Creates `path` as a sparse file of `size_bytes` if it does not exist; an existing file is
/// left as it is and its size returned.
pub fn create_sparse(path: &Path, size_bytes: u64) -> io::Result<u64> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let file = OpenOptions::new().write(true).create_new(true).open(path)?;
            file.set_len(size_bytes)?;
            file.sync_all()?;
            Ok(size_bytes)
        }
        Err(e) => Err(e),
    }
}

fn open_file(path: &Path) -> io::Result<(File, bool)> {
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    match direct {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "file system refuses O_DIRECT: using buffered I/O (writes stay durable through RWF_DSYNC and flushes)");
            let f = OpenOptions::new().read(true).write(true).open(path)?;
            Ok((f, false))
        }
        Err(e) => Err(e),
    }
}

fn ioctl_u64(fd: RawFd, request: libc::c_ulong) -> io::Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: the request writes one u64 (BLKGETSIZE64) into a live variable.
    let ret = unsafe { libc::ioctl(fd, request as _, &mut value as *mut u64) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn ioctl_int(fd: RawFd, request: libc::c_ulong) -> io::Result<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: the request writes one int (BLKSSZGET, BLKPBSZGET) into a live variable.
    let ret = unsafe { libc::ioctl(fd, request as _, &mut value as *mut libc::c_int) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.max(0) as u32)
}

const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKPBSZGET: libc::c_ulong = 0x127b;
const BLKGETSIZE64: libc::c_ulong = 0x80081272;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// `STATX_DIOALIGN`: (memory alignment, offset alignment), when the file system reports them.
fn dio_alignment(fd: RawFd) -> Option<(u32, u32, u32)> {
    // SAFETY: statx is plain old data; zero is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty path with AT_EMPTY_PATH queries fd itself; stx is writable.
    let ret = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN | libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if ret < 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some((
        stx.stx_dio_mem_align,
        stx.stx_dio_offset_align,
        stx.stx_blksize,
    ))
}

impl FileDisk {
    /// Opens `path` with `O_DIRECT` (buffered with a warning where the file system refuses it).
    pub fn open(path: &Path) -> io::Result<FileDisk> {
        let (file, direct) = open_file(path)?;
        let meta = file.metadata()?;
        let fd = file.as_raw_fd();
        let info = if meta.file_type().is_block_device() {
            let logical = ioctl_int(fd, BLKSSZGET)?.max(512);
            DiskInfo {
                size_bytes: ioctl_u64(fd, BLKGETSIZE64)?,
                logical_block_bytes: logical,
                physical_block_bytes: ioctl_int(fd, BLKPBSZGET).unwrap_or(logical).max(logical),
                direct,
                block_device: true,
                discard_reads_zero: false,
            }
        } else if meta.file_type().is_file() {
            let (logical, blksize) = match (direct, dio_alignment(fd)) {
                (true, Some((_, offset_align, blksize))) => (offset_align, blksize),
                (true, None) => (512, 4096),
                (false, _) => (1, 4096),
            };
            DiskInfo {
                size_bytes: meta.len(),
                logical_block_bytes: logical.max(1),
                physical_block_bytes: blksize.clamp(logical.max(512), 65536).next_power_of_two(),
                direct,
                block_device: false,
                discard_reads_zero: true,
            }
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )));
        };
        Ok(FileDisk {
            inner: Arc::new(FileDiskInner {
                id: NEXT_DISK_ID.fetch_add(1, Ordering::Relaxed),
                fd: file.into(),
                path: path.to_path_buf(),
                info,
            }),
        })
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }

    fn fixed(&self) -> Option<u32> {
        with_core(|core| core.fixed_file(self.inner.id, self.raw_fd()))
    }

    async fn fallocate(&self, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let entry = match self.fixed() {
            Some(i) => opcode::Fallocate::new(types::Fixed(i), len)
                .offset(offset)
                .mode(mode)
                .build(),
            None => opcode::Fallocate::new(types::Fd(self.raw_fd()), len)
                .offset(offset)
                .mode(mode)
                .build(),
        };
        Op::submit(entry, ()).await.io_result().map(drop)
    }

    async fn block_ioctl(&self, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
        let inner = self.inner.clone();
        run_blocking(move || {
            let range: [u64; 2] = [offset, len];
            // SAFETY: BLKDISCARD/BLKZEROOUT read a [u64; 2] range from a live array.
            let ret = unsafe { libc::ioctl(inner.fd.as_raw_fd(), request as _, range.as_ptr()) };
            if ret < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
        .await
    }
}

impl Drop for FileDiskInner {
    fn drop(&mut self) {
        let id = self.id;
        // Only the reactor thread that drops the last handle can forget its own slot; other
        // reactors' slots are released when their rings go away.
        try_with_core(|core| core.release_fixed_file(id));
    }
}

impl Disk for FileDisk {
    fn info(&self) -> &DiskInfo {
        &self.inner.info
    }

    async fn read<B: IoBufMut>(
        &self,
        mut buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
    ) -> (io::Result<()>, B) {
        if buf_offset.saturating_add(len) > buf.bytes_total() {
            return (
                Err(io::Error::other("read past the end of the buffer")),
                buf,
            );
        }
        let mut done_bytes = 0usize;
        while done_bytes < len {
            // SAFETY: buf_offset + len <= bytes_total, so the pointer stays inside the buffer.
            let ptr = unsafe { buf.stable_mut_ptr().add(buf_offset + done_bytes) };
            let chunk = (len - done_bytes) as u32;
            let at = offset + done_bytes as u64;
            let entry = match (self.fixed(), buf.fixed_index()) {
                (Some(f), Some(b)) => opcode::ReadFixed::new(types::Fixed(f), ptr, chunk, b)
                    .offset(at)
                    .build(),
                (None, Some(b)) => opcode::ReadFixed::new(types::Fd(self.raw_fd()), ptr, chunk, b)
                    .offset(at)
                    .build(),
                (Some(f), None) => opcode::Read::new(types::Fixed(f), ptr, chunk)
                    .offset(at)
                    .build(),
                (None, None) => opcode::Read::new(types::Fd(self.raw_fd()), ptr, chunk)
                    .offset(at)
                    .build(),
            };
            let completion = Op::submit(entry, buf).await;
            let result = completion.io_result();
            buf = completion.resources;
            match result {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "read past the end of the backing store",
                        )),
                        buf,
                    );
                }
                Ok(n) => done_bytes += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn write<B: IoBuf>(
        &self,
        mut buf: B,
        buf_offset: usize,
        len: usize,
        offset: u64,
        durable: bool,
    ) -> (io::Result<()>, B) {
        if buf_offset.saturating_add(len) > buf.bytes_init() {
            return (
                Err(io::Error::other("write past the end of the buffer")),
                buf,
            );
        }
        let flags = if durable { libc::RWF_DSYNC } else { 0 };
        let mut done_bytes = 0usize;
        while done_bytes < len {
            // SAFETY: buf_offset + len <= bytes_init, so the pointer stays inside the buffer.
            let ptr = unsafe { buf.stable_ptr().add(buf_offset + done_bytes) };
            let chunk = (len - done_bytes) as u32;
            let at = offset + done_bytes as u64;
            let entry = match (self.fixed(), buf.fixed_index()) {
                (Some(f), Some(b)) => opcode::WriteFixed::new(types::Fixed(f), ptr, chunk, b)
                    .offset(at)
                    .rw_flags(flags)
                    .build(),
                (None, Some(b)) => opcode::WriteFixed::new(types::Fd(self.raw_fd()), ptr, chunk, b)
                    .offset(at)
                    .rw_flags(flags)
                    .build(),
                (Some(f), None) => opcode::Write::new(types::Fixed(f), ptr, chunk)
                    .offset(at)
                    .rw_flags(flags)
                    .build(),
                (None, None) => opcode::Write::new(types::Fd(self.raw_fd()), ptr, chunk)
                    .offset(at)
                    .rw_flags(flags)
                    .build(),
            };
            let completion = Op::submit(entry, buf).await;
            let result = completion.io_result();
            buf = completion.resources;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done_bytes += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn flush(&self) -> io::Result<()> {
        let entry = match self.fixed() {
            Some(f) => opcode::Fsync::new(types::Fixed(f))
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
            None => opcode::Fsync::new(types::Fd(self.raw_fd()))
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        };
        Op::submit(entry, ()).await.io_result().map(drop)
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.inner.info.block_device {
            self.block_ioctl(BLKDISCARD, offset, len).await
        } else {
            self.fallocate(
                offset,
                len,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            )
            .await
        }
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.inner.info.block_device {
            return self.block_ioctl(BLKZEROOUT, offset, len).await;
        }
        match self
            .fallocate(
                offset,
                len,
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            )
            .await
        {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                // tmpfs and friends: punching a hole reads back zeroes too.
                self.fallocate(
                    offset,
                    len,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                )
                .await
            }
            other => other,
        }
    }

    async fn allocation(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        if self.inner.info.block_device {
            return Ok(vec![Extent {
                offset,
                len,
                mapped: true,
            }]);
        }
        let inner = self.inner.clone();
        run_blocking(move || map_extents(inner.fd.as_raw_fd(), offset, len)).await
    }
}

/// Walks `SEEK_DATA`/`SEEK_HOLE` over `[offset, offset+len)`; at most 64 extents.
fn map_extents(fd: RawFd, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
    let end = offset.saturating_add(len);
    let mut extents = Vec::new();
    let mut at = offset;
    while at < end && extents.len() < 64 {
        // SAFETY: lseek on a descriptor we own; the results are checked.
        let data = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_DATA) };
        let data_start = if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                end // no data after `at`: the rest is a hole
            } else {
                return Err(err);
            }
        } else {
            (data as u64).min(end)
        };
        if data_start > at {
            extents.push(Extent {
                offset: at,
                len: data_start - at,
                mapped: false,
            });
            at = data_start;
            continue;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, at as libc::off_t, libc::SEEK_HOLE) };
        let hole_start = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        let next = hole_start.max(at + 1);
        extents.push(Extent {
            offset: at,
            len: next - at,
            mapped: true,
        });
        at = next;
    }
    Ok(extents)
}
