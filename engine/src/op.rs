//! [`Op`]: the future of one io_uring operation. It owns the resources (buffers, msghdr,
//! timespec) the SQE points at, hands them back with the result, and when dropped early keeps
//! them alive in the reactor until the kernel completes or cancels the operation.

use io_uring::squeue;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::reactor::{try_with_core, with_core};

/// An in-flight operation owning `T`.
pub struct Op<T: 'static> {
    key: usize,
    resources: Option<T>,
}

/// What a completed operation gives back.
pub struct Completion<T> {
    /// `cqe.res`: a count, or a negated errno.
    pub result: i32,
    /// `cqe.flags`.
    pub flags: u32,
    /// The resources the SQE pointed at.
    pub resources: T,
}

impl<T> Completion<T> {
    /// The result as an `io::Result` of a byte count.
    pub fn io_result(&self) -> std::io::Result<usize> {
        if self.result < 0 {
            Err(std::io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as usize)
        }
    }
}

impl<T: 'static> Op<T> {
    /// Submits `entry`, which may point only into `resources` (heap memory that does not move).
    pub fn submit(entry: squeue::Entry, resources: T) -> Op<T> {
        let key = with_core(|core| core.submit_op(entry));
        Op {
            key,
            resources: Some(resources),
        }
    }
}

impl<T: 'static + Unpin> Future for Op<T> {
    type Output = Completion<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let key = self.key;
        match with_core(|core| core.poll_op(key, cx)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((result, flags)) => match self.resources.take() {
                Some(resources) => Poll::Ready(Completion {
                    result,
                    flags,
                    resources,
                }),
                None => Poll::Pending, // polled again after completion: a caller bug, stay inert
            },
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(resources) = self.resources.take() {
            let key = self.key;
            let mut slot = Some(resources);
            let _ = try_with_core(|core| {
                if let Some(r) = slot.take() {
                    core.orphan_op(key, Box::new(r));
                }
            });
            // Still here: the reactor itself is being torn down (a task that waited on an
            // operation when its thread ended). The kernel may touch the resources until the
            // ring's teardown finishes, so they are leaked rather than freed.
            if let Some(r) = slot {
                std::mem::forget(r);
            }
        }
    }
}
