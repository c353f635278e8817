//! One SCSI task as the connection sees it: its tags, the Data-Out window it is waiting for (the
//! buffer the data lands in, straight from the socket), and its abort and completion signals that
//! task management waits on (an abort is answered only after the task's I/O has finished).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::Instant;

use ringsan_engine::buffer::Buf;

use crate::iscsi::pdu::RESERVED_TAG;
use crate::scsi::transfer::TransferError;

/// Where the Data-Out of a task stands.
pub struct DataOutState {
    /// The buffer of the current chunk (None while the task holds it).
    pub buf: Option<Buf>,
    /// Byte offset (in the command's data) of `buf[0]`.
    pub chunk_start: u64,
    /// Next byte offset expected (DataPDUInOrder=Yes is the only value we negotiate).
    pub next_offset: u64,
    /// End of the window the initiator may send now (unsolicited burst or the current R2T).
    pub window_end: u64,
    /// Target transfer tag of the current R2T, or 0xffffffff for unsolicited data.
    pub ttt: u32,
    /// DataSN expected on the next Data-Out of this sequence.
    pub data_sn: u32,
    /// Set when the data can no longer arrive (digest error, protocol error, abort).
    pub error: Option<TransferError>,
}

/// The shared control block of one task.
pub struct TaskCtl {
    /// Initiator task tag.
    pub itt: u32,
    /// The LUN field as sent.
    pub lun_raw: u64,
    /// The LUN number (None if the addressing method is not one we support).
    pub lun: Option<u16>,
    /// CmdSN of the command.
    pub cmdsn: u32,
    /// When the command was admitted into the CmdSN window (its latency starts here).
    pub admitted: Instant,
    /// Data-Out state.
    pub data: RefCell<DataOutState>,
    aborted: Cell<bool>,
    abort_status: Cell<Option<u8>>,
    done: Cell<bool>,
    data_waiter: RefCell<Option<Waker>>,
    done_waiters: RefCell<Vec<Waker>>,
}

/// A new command's identity and the data that came with it.
pub struct NewTask {
    /// Initiator task tag.
    pub itt: u32,
    /// The LUN field as sent.
    pub lun_raw: u64,
    /// The LUN number, when its addressing method is supported.
    pub lun: Option<u16>,
    /// CmdSN.
    pub cmdsn: u32,
    /// When the command was admitted.
    pub admitted: Instant,
    /// The buffer the immediate data landed in (the first bytes of the command's data), if any.
    pub buf: Option<Buf>,
    /// Bytes of immediate data already in `buf`.
    pub received: u64,
    /// End of the window of unsolicited data the initiator may still send.
    pub unsolicited_end: u64,
}

impl TaskCtl {
    /// The control block of a new task.
    pub fn new(t: NewTask) -> TaskCtl {
        TaskCtl {
            itt: t.itt,
            lun_raw: t.lun_raw,
            lun: t.lun,
            cmdsn: t.cmdsn,
            admitted: t.admitted,
            data: RefCell::new(DataOutState {
                buf: t.buf,
                chunk_start: 0,
                next_offset: t.received,
                window_end: t.unsolicited_end.max(t.received),
                ttt: RESERVED_TAG,
                data_sn: 0,
                error: None,
            }),
            aborted: Cell::new(false),
            abort_status: Cell::new(None),
            done: Cell::new(false),
            data_waiter: RefCell::new(None),
            done_waiters: RefCell::new(Vec::new()),
        }
    }

    /// Makes this finished control block the one of a new task, keeping its waiter list's
    /// allocation (the caller holds the only reference).
    pub fn reset(&mut self, t: NewTask) {
        let mut waiters = std::mem::take(self.done_waiters.get_mut());
        waiters.clear();
        *self = TaskCtl::new(t);
        *self.done_waiters.get_mut() = waiters;
    }

    /// Marks the task aborted and wakes it if it waits for data.
    pub fn abort(&self) {
        self.aborted.set(true);
        self.fail_data(TransferError::Aborted);
    }

    /// Aborts the task on behalf of another initiator with the control mode page's TAS bit set:
    /// the task still completes, with status TASK ABORTED (SAM-5 §5.6).
    pub fn abort_with_status(&self, status: u8) {
        self.abort_status.set(Some(status));
        self.abort();
    }

    /// The status to report for an aborted task (None: it ends silently).
    pub fn abort_status(&self) -> Option<u8> {
        self.abort_status.get()
    }

    /// Whether the task was aborted.
    pub fn is_aborted(&self) -> bool {
        self.aborted.get()
    }

    /// Ends the Data-Out with `error` and wakes the task.
    pub fn fail_data(&self, error: TransferError) {
        {
            let mut d = self.data.borrow_mut();
            if d.error.is_none() {
                d.error = Some(error);
            }
        }
        self.wake_data();
    }

    /// Wakes the task waiting for its data window to fill.
    pub fn wake_data(&self) {
        if let Some(w) = self.data_waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until the current window is filled (`next_offset == window_end`) or failed.
    pub async fn window_filled(&self) -> Result<(), TransferError> {
        poll_fn(|cx| {
            let d = self.data.borrow();
            if let Some(e) = &d.error {
                return Poll::Ready(Err(e.clone()));
            }
            if d.next_offset >= d.window_end {
                return Poll::Ready(Ok(()));
            }
            *self.data_waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Marks the task finished (its I/O done, its response sent or suppressed).
    pub fn finish(&self) {
        self.done.set(true);
        self.data.borrow_mut().buf = None;
        for w in self.done_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until the task has finished.
    pub async fn finished(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                self.done_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
