//! Time: the [`Clock`] trait (so a simulation can run on virtual time), the real clock, and
//! io_uring timeouts ([`sleep`], [`timeout`]).

use io_uring::{opcode, types};
use std::future::Future;
use std::time::{Duration, Instant};

use crate::op::Op;
use crate::select::{select2, Either};

/// A source of time.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Sleeps for `duration` on the current reactor (an `IORING_OP_TIMEOUT`).
pub async fn sleep(duration: Duration) {
    let spec = Box::new(
        types::Timespec::new()
            .sec(duration.as_secs())
            .nsec(duration.subsec_nanos()),
    );
    let entry = opcode::Timeout::new(&*spec as *const types::Timespec).build();
    let _ = Op::submit(entry, spec).await;
}

/// The error of a [`timeout`] that expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

/// Runs `future` for at most `duration`; dropping it on expiry cancels its operations.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    match select2(future, sleep(duration)).await {
        Either::Left(v) => Ok(v),
        Either::Right(()) => Err(Elapsed),
    }
}
