//! The registered buffer pool: one aligned allocation per reactor, cut into equal buffers and
//! registered with the ring so that disk reads and writes use `READ_FIXED`/`WRITE_FIXED`.
//! Received write data stays in the buffer it landed in until every sink is done with it.
//! The pool is the bound on memory: callers size their windows (MaxCmdSN) by `free_count`.

use io_uring::IoUring;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Alignment of every buffer: enough for `O_DIRECT` on any device we accept.
pub const BUFFER_ALIGN: usize = 4096;

struct PoolInner {
    base: *mut u8,
    layout: Layout,
    buffer_size: usize,
    count: usize,
    free: RefCell<Vec<u16>>,
    waiters: RefCell<VecDeque<Waker>>,
    registered: Cell<bool>,
    /// Holders of each slot while it is shared ([`SharedBuf`]); 0 for exclusive or free slots.
    shares: Box<[Cell<u32>]>,
}

impl PoolInner {
    /// Puts slot `index` back on the free list and wakes every waiter (one whose future was
    /// dropped must not swallow the wake-up).
    fn release(&self, index: u16) {
        self.free.borrow_mut().push(index);
        let mut waiters = self.waiters.borrow_mut();
        while let Some(waker) = waiters.pop_front() {
            drop(waiters);
            waker.wake();
            waiters = self.waiters.borrow_mut();
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: base was allocated with exactly this layout and every Buf (which holds an Rc
        // to this pool) is gone.
        unsafe { dealloc(self.base, self.layout) }
    }
}

/// A reactor's pool of equal, aligned, registered buffers. Cheap to clone.
#[derive(Clone)]
pub struct BufferPool {
    inner: Rc<PoolInner>,
}

impl BufferPool {
    /// Allocates `count` buffers of `buffer_size` bytes (rounded up to 4096), zeroed.
    pub fn new(buffer_size: usize, count: usize) -> io::Result<BufferPool> {
        let buffer_size = buffer_size.div_ceil(BUFFER_ALIGN).max(1) * BUFFER_ALIGN;
        let count = count.clamp(1, u16::MAX as usize);
        let total = buffer_size
            .checked_mul(count)
            .ok_or_else(|| io::Error::other("buffer pool size overflows"))?;
        let layout = Layout::from_size_align(total, BUFFER_ALIGN)
            .map_err(|e| io::Error::other(format!("buffer pool layout: {e}")))?;
        // SAFETY: layout has a nonzero size (count >= 1, buffer_size >= 4096).
        let base = unsafe { alloc_zeroed(layout) };
        if base.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let free = (0..count as u16).rev().collect();
        Ok(BufferPool {
            inner: Rc::new(PoolInner {
                base,
                layout,
                buffer_size,
                count,
                free: RefCell::new(free),
                waiters: RefCell::new(VecDeque::new()),
                registered: Cell::new(false),
                shares: (0..count).map(|_| Cell::new(0)).collect(),
            }),
        })
    }

    /// Registers every buffer with `ring` (`IORING_REGISTER_BUFFERS`).
    pub(crate) fn register(&self, ring: &IoUring) -> io::Result<()> {
        let iovecs: Vec<libc::iovec> = (0..self.inner.count)
            .map(|i| libc::iovec {
                // SAFETY: i < count, so the offset stays inside the allocation.
                iov_base: unsafe { self.inner.base.add(i * self.inner.buffer_size) }.cast(),
                iov_len: self.inner.buffer_size,
            })
            .collect();
        // SAFETY: the iovecs describe memory owned by this pool, which lives at least as long as
        // the ring (the reactor's Core drops the ring first).
        unsafe { ring.submitter().register_buffers(&iovecs)? };
        self.inner.registered.set(true);
        Ok(())
    }

    /// Size of each buffer in bytes.
    pub fn buffer_size(&self) -> usize {
        self.inner.buffer_size
    }

    /// Total number of buffers.
    pub fn count(&self) -> usize {
        self.inner.count
    }

    /// Buffers free right now.
    pub fn free_count(&self) -> usize {
        self.inner.free.borrow().len()
    }

    /// A free buffer, if any.
    pub fn try_get(&self) -> Option<Buf> {
        let index = self.inner.free.borrow_mut().pop()?;
        Some(Buf {
            pool: self.inner.clone(),
            index,
            len: 0,
        })
    }

    /// A buffer, waiting for one to be returned when the pool is empty.
    pub async fn get(&self) -> Buf {
        poll_fn(|cx| match self.try_get() {
            Some(buf) => Poll::Ready(buf),
            None => {
                self.inner
                    .waiters
                    .borrow_mut()
                    .push_back(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// One buffer of the pool, owned exclusively; returns to the pool when dropped.
pub struct Buf {
    pool: Rc<PoolInner>,
    index: u16,
    len: usize,
}

impl Buf {
    fn base(&self) -> *mut u8 {
        // SAFETY: index < count, so the offset stays inside the pool's allocation.
        unsafe {
            self.pool
                .base
                .add(self.index as usize * self.pool.buffer_size)
        }
    }

    pub(crate) fn base_mut_ptr(&mut self) -> *mut u8 {
        self.base()
    }

    /// The valid bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: this Buf exclusively owns its slot; len <= capacity.
        unsafe { std::slice::from_raw_parts(self.base(), self.len) }
    }

    /// The valid bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.len) }
    }

    /// The whole slot, writable (for filling before `set_len`).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        // SAFETY: the slot is capacity bytes of initialised (zeroed at start) memory we own.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.pool.buffer_size) }
    }

    /// Number of valid bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is valid.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size of the slot.
    pub fn capacity(&self) -> usize {
        self.pool.buffer_size
    }

    /// Sets the number of valid bytes (clamped to the capacity).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.pool.buffer_size);
    }

    /// Registered-buffer index, when the pool is registered with the ring.
    pub fn registered_index(&self) -> Option<u16> {
        self.pool.registered.get().then_some(self.index)
    }

    /// Turns this buffer into a read-only one that several holders share (the Data-In PDUs of
    /// one disk read, the local disk and the mirror peer of one write). The count of holders
    /// lives in the pool, so sharing allocates nothing; the slot returns to the pool when the
    /// last holder drops.
    pub fn into_shared(self) -> SharedBuf {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so its Rc is moved out exactly once and the slot is
        // not released here; the SharedBuf takes over both.
        let pool = unsafe { std::ptr::read(&this.pool) };
        pool.shares[this.index as usize].set(1);
        SharedBuf {
            pool,
            index: this.index,
            len: this.len,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

/// A pool buffer shared read-only by several holders (see [`Buf::into_shared`]). Cloning it
/// counts one more holder in the pool; nothing is allocated.
pub struct SharedBuf {
    pool: Rc<PoolInner>,
    index: u16,
    len: usize,
}

impl SharedBuf {
    /// The valid bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: index < count, so the slot lies inside the pool's allocation; nobody holds it
        // mutably while it is shared (a Buf gave it up in into_shared); len <= capacity.
        unsafe {
            std::slice::from_raw_parts(
                self.pool
                    .base
                    .add(self.index as usize * self.pool.buffer_size),
                self.len,
            )
        }
    }

    /// Number of valid bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is valid.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Registered-buffer index, when the pool is registered with the ring.
    pub fn registered_index(&self) -> Option<u16> {
        self.pool.registered.get().then_some(self.index)
    }

    /// Holders of this slot right now (for tests).
    pub fn holders(&self) -> u32 {
        self.pool.shares[self.index as usize].get()
    }
}

impl Clone for SharedBuf {
    fn clone(&self) -> SharedBuf {
        let count = &self.pool.shares[self.index as usize];
        count.set(count.get() + 1);
        SharedBuf {
            pool: self.pool.clone(),
            index: self.index,
            len: self.len,
        }
    }
}

impl Drop for SharedBuf {
    fn drop(&mut self) {
        let count = &self.pool.shares[self.index as usize];
        let left = count.get().saturating_sub(1);
        count.set(left);
        if left == 0 {
            self.pool.release(self.index);
        }
    }
}

impl std::fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedBuf(#{} len {} x{})",
            self.index,
            self.len,
            self.holders()
        )
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf(#{} len {})", self.index, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_aligned() {
        let pool = BufferPool::new(5000, 3).unwrap();
        assert_eq!(pool.buffer_size(), 8192);
        let a = pool.try_get().unwrap();
        let b = pool.try_get().unwrap();
        let c = pool.try_get().unwrap();
        assert!(pool.try_get().is_none());
        assert_eq!(a.as_slice().as_ptr() as usize % BUFFER_ALIGN, 0);
        assert_ne!(a.base(), b.base());
        drop(b);
        assert_eq!(pool.free_count(), 1);
        drop((a, c));
        assert_eq!(pool.free_count(), 3);
    }

    #[test]
    fn a_shared_buffer_returns_when_its_last_holder_drops() {
        let pool = BufferPool::new(4096, 2).unwrap();
        let mut a = pool.try_get().unwrap();
        a.set_len(10);
        a.as_mut_slice()[9] = 42;
        let shared = a.into_shared();
        assert_eq!(pool.free_count(), 1);
        let second = shared.clone();
        assert_eq!((shared.holders(), second.len()), (2, 10));
        assert_eq!(second.as_slice()[9], 42);
        drop(shared);
        assert_eq!(pool.free_count(), 1, "one holder left");
        assert_eq!(second.holders(), 1);
        drop(second);
        assert_eq!(pool.free_count(), 2);
        // The slot is exclusive again when it comes back.
        let b = pool.try_get().unwrap();
        let c = pool.try_get().unwrap();
        let b = b.into_shared();
        drop(c);
        assert_eq!(b.holders(), 1);
    }

    #[test]
    fn set_len_is_clamped() {
        let pool = BufferPool::new(4096, 1).unwrap();
        let mut a = pool.try_get().unwrap();
        a.set_len(10_000);
        assert_eq!(a.len(), 4096);
        a.as_mut_slice()[4095] = 7;
        assert_eq!(a.as_slice()[4095], 7);
    }
}
