//! Command workers: the reactor tasks that run a session's SCSI commands. A worker is spawned
//! the first time a session has more commands in flight than it has idle workers, then runs one
//! command after another for the rest of the session; its control block ([`TaskCtl`]) is reset
//! in place for the next command. A session in steady state so spawns no task, boxes no future
//! and allocates no control block per command. Workers hold the session only while a command
//! runs, so dropping the session ([`Workers`]' `Drop`) ends the idle ones.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use tracing::Instrument;

use crate::iscsi::scsi_task::{run_command, Cdb};
use crate::iscsi::session::Session;
use crate::iscsi::task::{NewTask, TaskCtl};

/// What a command needs besides its control block to start.
pub struct Job {
    /// The command's CDB.
    pub cdb: Cdb,
    /// ExpectedDataTransferLength.
    pub expected_len: u64,
    /// The command's tracing span.
    pub span: tracing::Span,
}

/// One worker's mailbox.
#[derive(Default)]
struct Slot {
    job: RefCell<Option<(Rc<TaskCtl>, Job)>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    /// The control block of the worker's last command, kept for the next one.
    spare: RefCell<Option<Rc<TaskCtl>>>,
}

impl Slot {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn next_job(&self) -> Option<(Rc<TaskCtl>, Job)> {
        poll_fn(|cx| {
            if let Some(job) = self.job.borrow_mut().take() {
                return Poll::Ready(Some(job));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// A control block for `t`: the spare one reset in place when nobody else still holds it
    /// (a task management function waiting on the last command may), or a new one.
    fn task_ctl(&self, t: NewTask) -> Rc<TaskCtl> {
        if let Some(mut ctl) = self.spare.borrow_mut().take() {
            if let Some(reusable) = Rc::get_mut(&mut ctl) {
                reusable.reset(t);
                return ctl;
            }
        }
        Rc::new(TaskCtl::new(t))
    }
}

/// A session's workers.
#[derive(Default)]
pub struct Workers {
    idle: RefCell<Vec<Rc<Slot>>>,
    all: RefCell<Vec<Rc<Slot>>>,
}

impl Workers {
    /// Number of workers the session has spawned (idle or busy).
    pub fn count(&self) -> usize {
        self.all.borrow().len()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for slot in self.all.borrow().iter() {
            slot.closed.set(true);
            slot.wake();
        }
    }
}

/// Registers the new command in `session.tasks` and starts it on an idle worker of `session`
/// (spawning one when none is idle); returns its control block.
pub fn start_command(session: &Rc<Session>, new: NewTask, job: Job) -> Rc<TaskCtl> {
    let idle = session.workers.idle.borrow_mut().pop();
    let slot = match idle {
        Some(slot) => slot,
        None => {
            let slot = Rc::new(Slot::default());
            session.workers.all.borrow_mut().push(slot.clone());
            ringsan_engine::spawn(worker(Rc::downgrade(session), slot.clone()));
            slot
        }
    };
    let task = slot.task_ctl(new);
    session.tasks.borrow_mut().insert(task.itt, task.clone());
    *slot.job.borrow_mut() = Some((task.clone(), job));
    slot.wake();
    task
}

/// One worker: runs the commands handed to its slot until the session goes away.
async fn worker(session: Weak<Session>, slot: Rc<Slot>) {
    while let Some((task, job)) = slot.next_job().await {
        let Some(s) = session.upgrade() else {
            task.finish();
            break;
        };
        run_command(s.clone(), task.clone(), job.cdb, job.expected_len)
            .instrument(job.span)
            .await;
        *slot.spare.borrow_mut() = Some(task);
        if slot.closed.get() {
            break;
        }
        s.workers.idle.borrow_mut().push(slot.clone());
    }
}
