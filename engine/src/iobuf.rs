//! Buffers that may be handed to the kernel: their memory must stay put (heap, not the stack) and
//! alive until the operation completes, which the [`crate::op::Op`] future guarantees by owning them.

use crate::buffer::{Buf, SharedBuf};

/// A buffer the kernel may read from (a send, a write).
///
/// # Safety
/// `stable_ptr` must point to `bytes_init` readable bytes whose address does not change when the
/// value is moved, for as long as the value lives.
pub unsafe trait IoBuf: Unpin + 'static {
    /// Start of the initialised bytes.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes are initialised and may be sent or written.
    fn bytes_init(&self) -> usize;
    /// The registered-buffer index, when the memory belongs to the ring's registered pool.
    fn fixed_index(&self) -> Option<u16> {
        None
    }
}

/// A buffer the kernel may write into (a receive, a read).
///
/// # Safety
/// As [`IoBuf`], and `stable_mut_ptr` must point to `bytes_total` writable bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the whole writable region.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Size of the whole writable region.
    fn bytes_total(&self) -> usize;
}

// SAFETY: a Vec's heap allocation does not move when the Vec value moves.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as above; the whole initialised length is writable.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a boxed array lives on the heap.
unsafe impl<const N: usize> IoBuf for Box<[u8; N]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        N
    }
}

// SAFETY: as above.
unsafe impl<const N: usize> IoBufMut for Box<[u8; N]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        N
    }
}

// SAFETY: pool memory is allocated once per pool and never moves; the Buf keeps the pool alive.
unsafe impl IoBuf for Buf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn fixed_index(&self) -> Option<u16> {
        self.registered_index()
    }
}

// SAFETY: as above; the whole capacity of the pool slot is writable by its single owner.
unsafe impl IoBufMut for Buf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.base_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: a SharedBuf holds one pool slot read-only (the mirror's second sink, the Data-In
// PDUs of one read); the slot does not move and stays out of the free list while any holder lives.
unsafe impl IoBuf for SharedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn fixed_index(&self) -> Option<u16> {
        self.registered_index()
    }
}
