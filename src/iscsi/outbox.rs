//! The send side of a connection: PDUs are stamped (StatSN, ExpCmdSN, MaxCmdSN) and queued in
//! order by whichever task produced them, and one writer task drains the queue onto the socket,
//! so PDUs never interleave on the wire. The queue is bounded by the tasks in flight, which the
//! CmdSN window bounds.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use ringsan_engine::net::{Gather, SendBuffer, TcpStream};

/// The queue of one connection.
#[derive(Default)]
pub struct Outbox {
    queue: RefCell<VecDeque<Gather>>,
    writer: RefCell<Option<Waker>>,
    drained: RefCell<Vec<Waker>>,
    closed: Cell<bool>,
    sending: Cell<bool>,
}

impl Outbox {
    /// Queues one framed PDU; dropped silently once the connection is closed.
    pub fn push(&self, pdu: Gather) {
        if self.closed.get() {
            return;
        }
        self.queue.borrow_mut().push_back(pdu);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
    }

    /// Stops the writer once the queue is empty; later pushes are dropped.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.writer.borrow_mut().take() {
            w.wake();
        }
        self.wake_drained();
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn wake_drained(&self) {
        for w in self.drained.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits until everything queued so far has been written (or the connection closed).
    pub async fn flushed(&self) {
        poll_fn(|cx| {
            if self.closed.get() || (self.queue.borrow().is_empty() && !self.sending.get()) {
                Poll::Ready(())
            } else {
                self.drained.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    async fn next(&self) -> Option<Gather> {
        poll_fn(|cx| {
            if let Some(g) = self.queue.borrow_mut().pop_front() {
                return Poll::Ready(Some(g));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.writer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The writer task: drains the queue onto `stream` until closed; a send error closes the
    /// outbox and shuts the socket down so the reader stops too.
    pub async fn run_writer(self: Rc<Self>, stream: Rc<TcpStream>) {
        let mut buffer = SendBuffer::default();
        while let Some(pdu) = self.next().await {
            self.sending.set(true);
            let (result, _) = stream.send_with(&mut buffer, pdu).await;
            self.sending.set(false);
            if self.queue.borrow().is_empty() {
                self.wake_drained();
            }
            if let Err(e) = result {
                tracing::debug!(error = %e, "send failed; closing the connection");
                self.close();
                stream.shutdown();
                break;
            }
        }
        self.wake_drained();
    }
}
