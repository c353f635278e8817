//! The reactor: one thread, one io_uring, one single-threaded executor of `!Send` tasks.
//!
//! A task is a boxed future in a slab; an operation is an SQE whose `user_data` is the key of its
//! completion slot. The loop polls ready tasks, submits what they queued in one `io_uring_enter`,
//! waits for at least one completion when nothing is ready, and wakes the owners of completions.
//! Other threads reach a reactor only through its [`RemoteHandle`] (an inbox plus an eventfd the
//! ring keeps a read armed on), so nothing here needs a lock on the data path.

use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::buffer::BufferPool;

/// `user_data` of the eventfd read that wakes the reactor for remote messages.
const EVENTFD_TOKEN: u64 = u64::MAX;
/// `user_data` of cancel requests, whose own completions carry nothing we need.
const IGNORE_TOKEN: u64 = u64::MAX - 1;

static NEXT_REACTOR_ID: AtomicUsize = AtomicUsize::new(1);

/// How a reactor is built.
#[derive(Clone, Debug)]
pub struct ReactorConfig {
    /// Submission queue entries (the completion queue is twice this).
    pub ring_entries: u32,
    /// Size of each registered buffer in bytes (a multiple of 4096).
    pub buffer_size_bytes: usize,
    /// Number of registered buffers.
    pub buffer_count: usize,
    /// Slots in the registered file table.
    pub fixed_files: u32,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig {
            ring_entries: 512,
            buffer_size_bytes: 256 * 1024,
            buffer_count: 256,
            fixed_files: 64,
        }
    }
}

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// What a completion slot holds.
pub(crate) enum OpSlot {
    /// Submitted; the waker of the future that waits for it.
    Pending(Option<Waker>),
    /// Completed; result and CQE flags, waiting to be picked up.
    Done(i32, u32),
    /// The waiting future was dropped: keep its buffers alive until the kernel lets go of them.
    Orphaned(#[allow(dead_code)] Box<dyn Any>),
}

enum RemoteMsg {
    Wake(usize),
    Run(Box<dyn FnOnce() + Send>),
}

struct RemoteShared {
    id: usize,
    inbox: Mutex<Vec<RemoteMsg>>,
    eventfd: OwnedFd,
}

impl RemoteShared {
    fn post(&self, msg: RemoteMsg) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.push(msg);
        }
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd we own; a failure (counter
        // overflow) only means a wake-up is already pending.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
    }
}

/// A `Send + Sync` handle to post work to a reactor from any thread.
#[derive(Clone)]
pub struct RemoteHandle {
    shared: Arc<RemoteShared>,
}

impl RemoteHandle {
    /// Runs `f` on the reactor's thread (where it may [`spawn`] local tasks).
    pub fn run(&self, f: impl FnOnce() + Send + 'static) {
        self.shared.post(RemoteMsg::Run(Box::new(f)));
    }

    /// The reactor's id (unique in the process).
    pub fn id(&self) -> usize {
        self.shared.id
    }
}

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteHandle({})", self.shared.id)
    }
}

struct TaskWaker {
    remote: Arc<RemoteShared>,
    task: usize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let woke_locally = CURRENT.with(|current| match current.borrow().as_ref() {
            Some(core) if core.remote.id == self.remote.id => {
                core.ready.borrow_mut().push_back(self.task);
                true
            }
            _ => false,
        });
        if !woke_locally {
            self.remote.post(RemoteMsg::Wake(self.task));
        }
    }
}

struct Task {
    future: Option<LocalFuture>,
    waker: Waker,
}

/// The per-thread state behind a reactor. Field order matters: the ring is dropped first, so
/// the kernel lets go of buffers before orphaned ones are freed.
pub(crate) struct Core {
    ring: RefCell<IoUring>,
    ops: RefCell<Slab<OpSlot>>,
    tasks: RefCell<Slab<Task>>,
    /// One waker per task slot, made when the slot is first used and handed to every later task
    /// of that slot, so spawning allocates no waker. A waker that outlives its task may wake the
    /// slot's next task: a spurious poll, which every future tolerates.
    slot_wakers: RefCell<Vec<Option<Waker>>>,
    ready: RefCell<VecDeque<usize>>,
    /// The inbox's messages are swapped into this vector, so draining allocates nothing.
    inbox_spare: RefCell<Vec<RemoteMsg>>,
    remote: Arc<RemoteShared>,
    eventfd_buf: Box<Cell<u64>>,
    eventfd_armed: Cell<bool>,
    pool: BufferPool,
    /// Wakers collected while reaping, reused so reaping allocates nothing.
    wake_list: RefCell<Vec<Waker>>,
    fixed_files: RefCell<Vec<Option<u64>>>,
    fixed_files_ok: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Runs `f` with the current thread's reactor core. Panics outside a reactor thread: that is a
/// programming error, not something the network or a disk can cause.
pub(crate) fn with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> R {
    CURRENT.with(|current| {
        let borrowed = current.borrow();
        let core = borrowed
            .as_ref()
            .expect("engine operation used outside a reactor thread");
        f(core)
    })
}

/// As [`with_core`], but `None` outside a reactor thread.
pub(crate) fn try_with_core<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| current.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// Spawns a task on the current thread's reactor.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    with_core(|core| core.spawn(Box::pin(future)));
}

/// The current reactor's buffer pool.
pub fn buffer_pool() -> BufferPool {
    with_core(|core| core.pool.clone())
}

/// The current reactor's remote handle.
pub fn current_handle() -> RemoteHandle {
    with_core(|core| RemoteHandle {
        shared: core.remote.clone(),
    })
}

/// The id of the reactor running on this thread, if any.
pub fn current_id() -> Option<usize> {
    try_with_core(|core| core.remote.id)
}

/// What a reactor holds right now, for the metrics endpoint. Read on the reactor's own thread
/// (post [`stats`] there with [`RemoteHandle::run`]); nothing on the data path keeps these
/// figures, they are counted when asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// Registered buffers in the pool.
    pub buffers: usize,
    /// Of those, free now.
    pub free_buffers: usize,
    /// io_uring operations submitted and not yet completed (those whose future was dropped
    /// included, until the kernel lets go of them); the eventfd read is not counted.
    pub ops_in_flight: usize,
    /// Tasks alive on the reactor (connections, command workers, timers, ...).
    pub tasks: usize,
}

/// The current thread's reactor figures; `None` outside a reactor thread. Costs a walk over the
/// completion slots (about a thousand), so call it per scrape, never per command.
pub fn stats() -> Option<ReactorStats> {
    try_with_core(|core| {
        let ops_in_flight = core.ops.try_borrow().map_or(0, |ops| {
            ops.iter()
                .filter(|(_, slot)| !matches!(slot, OpSlot::Done(..)))
                .count()
        });
        ReactorStats {
            buffers: core.pool.count(),
            free_buffers: core.pool.free_count(),
            ops_in_flight,
            tasks: core.tasks.try_borrow().map_or(0, |t| t.len()),
        }
    })
}

/// One reactor; create it on the thread that will run it.
pub struct Reactor {
    core: Rc<Core>,
}

impl Reactor {
    /// Builds the ring (with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel accepts them), the
    /// registered buffer pool and the registered file table.
    pub fn new(config: &ReactorConfig) -> io::Result<Reactor> {
        let ring = build_ring(config.ring_entries)?;
        // SAFETY: eventfd(2) with valid flags; the returned fd is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let pool = BufferPool::new(config.buffer_size_bytes, config.buffer_count)?;
        let registered = pool.register(&ring);
        if let Err(e) = &registered {
            tracing::warn!(error = %e, "buffer registration failed: falling back to unregistered reads and writes");
        }
        let fixed_files_ok = ring
            .submitter()
            .register_files_sparse(config.fixed_files)
            .is_ok();
        let core = Rc::new(Core {
            ring: RefCell::new(ring),
            ops: RefCell::new(Slab::with_capacity(1024)),
            tasks: RefCell::new(Slab::with_capacity(256)),
            slot_wakers: RefCell::new(Vec::with_capacity(256)),
            ready: RefCell::new(VecDeque::with_capacity(256)),
            inbox_spare: RefCell::new(Vec::with_capacity(64)),
            remote: Arc::new(RemoteShared {
                id: NEXT_REACTOR_ID.fetch_add(1, Ordering::Relaxed),
                inbox: Mutex::new(Vec::new()),
                eventfd,
            }),
            eventfd_buf: Box::new(Cell::new(0)),
            eventfd_armed: Cell::new(false),
            pool,
            wake_list: RefCell::new(Vec::with_capacity(256)),
            fixed_files: RefCell::new(vec![None; config.fixed_files as usize]),
            fixed_files_ok,
        });
        Ok(Reactor { core })
    }

    /// A handle other threads use to post work here.
    pub fn handle(&self) -> RemoteHandle {
        RemoteHandle {
            shared: self.core.remote.clone(),
        }
    }

    /// Runs `main` and every task spawned meanwhile until `main` completes; returns its output.
    /// Tasks still pending then are dropped (their operations are cancelled).
    pub fn block_on<T: 'static>(&self, main: impl Future<Output = T> + 'static) -> io::Result<T> {
        CURRENT.with(|current| *current.borrow_mut() = Some(self.core.clone()));
        let output: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
        let slot = output.clone();
        self.core.spawn(Box::pin(async move {
            let value = main.await;
            *slot.borrow_mut() = Some(value);
        }));
        let result = self.run_until(|| output.borrow().is_some());
        self.core.drop_all_tasks();
        CURRENT.with(|current| *current.borrow_mut() = None);
        result?;
        let value = output.borrow_mut().take();
        value.ok_or_else(|| io::Error::other("reactor stopped before main completed"))
    }

    fn run_until(&self, done: impl Fn() -> bool) -> io::Result<()> {
        loop {
            self.core.poll_ready_tasks();
            if done() {
                return Ok(());
            }
            self.core.drain_inbox();
            self.core.arm_eventfd();
            let want = usize::from(self.core.ready.borrow().is_empty());
            self.core.enter(want)?;
            self.core.reap_completions();
        }
    }
}

fn build_ring(entries: u32) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder
        .setup_cqsize(entries * 4)
        .setup_single_issuer()
        .setup_defer_taskrun();
    match builder.build(entries) {
        Ok(ring) => Ok(ring),
        Err(e) => {
            tracing::warn!(error = %e, "io_uring without SINGLE_ISSUER|DEFER_TASKRUN");
            IoUring::builder().setup_cqsize(entries * 4).build(entries)
        }
    }
}

impl Core {
    fn spawn(&self, future: LocalFuture) {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let waker = {
            let mut wakers = self.slot_wakers.borrow_mut();
            if wakers.len() <= key {
                wakers.resize(key + 1, None);
            }
            wakers[key]
                .get_or_insert_with(|| {
                    Waker::from(Arc::new(TaskWaker {
                        remote: self.remote.clone(),
                        task: key,
                    }))
                })
                .clone()
        };
        entry.insert(Task {
            future: Some(future),
            waker,
        });
        self.ready.borrow_mut().push_back(key);
    }

    fn poll_ready_tasks(&self) {
        // Bounded: tasks woken while we poll wait for the next round, after an enter.
        let count = self.ready.borrow().len();
        for _ in 0..count {
            let Some(key) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            let taken = {
                let mut tasks = self.tasks.borrow_mut();
                tasks
                    .get_mut(key)
                    .and_then(|task| task.future.take().map(|f| (f, task.waker.clone())))
            };
            let Some((mut future, waker)) = taken else {
                continue; // a stale wake of a finished task, or one being polled
            };
            let mut cx = Context::from_waker(&waker);
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    self.tasks.borrow_mut().try_remove(key);
                }
                Poll::Pending => {
                    if let Some(task) = self.tasks.borrow_mut().get_mut(key) {
                        task.future = Some(future);
                    }
                }
            }
        }
    }

    fn drop_all_tasks(&self) {
        let futures: Vec<LocalFuture> = self
            .tasks
            .borrow_mut()
            .drain()
            .filter_map(|t| t.future)
            .collect();
        drop(futures);
        let _ = self.ring.borrow().submitter().submit();
    }

    fn drain_inbox(&self) {
        let mut messages = std::mem::take(&mut *self.inbox_spare.borrow_mut());
        match self.remote.inbox.lock() {
            Ok(mut inbox) => std::mem::swap(&mut *inbox, &mut messages),
            Err(_) => return,
        }
        for message in messages.drain(..) {
            match message {
                RemoteMsg::Wake(task) => self.ready.borrow_mut().push_back(task),
                RemoteMsg::Run(f) => f(),
            }
        }
        *self.inbox_spare.borrow_mut() = messages;
    }

    fn arm_eventfd(&self) {
        if self.eventfd_armed.get() {
            return;
        }
        let entry = opcode::Read::new(
            types::Fd(self.remote.eventfd.as_raw_fd()),
            self.eventfd_buf.as_ptr() as *mut u8,
            8,
        )
        .build()
        .user_data(EVENTFD_TOKEN);
        self.push(entry);
        self.eventfd_armed.set(true);
    }

    fn enter(&self, want: usize) -> io::Result<()> {
        let ring = self.ring.borrow();
        match ring.submitter().submit_and_wait(want) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn reap_completions(&self) {
        let mut wakers = std::mem::take(&mut *self.wake_list.borrow_mut());
        {
            let mut ring = self.ring.borrow_mut();
            let mut ops = self.ops.borrow_mut();
            for cqe in ring.completion() {
                match cqe.user_data() {
                    EVENTFD_TOKEN => self.eventfd_armed.set(false),
                    IGNORE_TOKEN => {}
                    key => complete_slot(&mut ops, key as usize, &cqe, &mut wakers),
                }
            }
        }
        for waker in wakers.drain(..) {
            waker.wake();
        }
        *self.wake_list.borrow_mut() = wakers;
    }

    /// Queues one SQE, flushing the submission queue to the kernel when it is full.
    pub(crate) fn push(&self, entry: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: every entry pushed here points only at memory owned by an Op's resources,
            // an orphaned slot or the Core itself, all of which outlive the operation.
            let pushed = unsafe { ring.submission().push(&entry) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = ring.submit() {
                tracing::error!(error = %e, "io_uring submit failed while the queue was full");
            }
        }
    }

    /// Registers a slot and queues `entry` with its key as `user_data`.
    pub(crate) fn submit_op(&self, entry: squeue::Entry) -> usize {
        let key = self.ops.borrow_mut().insert(OpSlot::Pending(None));
        self.push(entry.user_data(key as u64));
        key
    }

    pub(crate) fn poll_op(&self, key: usize, cx: &mut Context<'_>) -> Poll<(i32, u32)> {
        let mut ops = self.ops.borrow_mut();
        match ops.get_mut(key) {
            Some(OpSlot::Done(result, flags)) => {
                let out = (*result, *flags);
                ops.remove(key);
                Poll::Ready(out)
            }
            Some(OpSlot::Pending(waker)) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready((-libc::ECANCELED, 0)),
        }
    }

    /// The future waiting on `key` went away: keep `resources` until the kernel completes it,
    /// and ask the kernel to cancel it.
    pub(crate) fn orphan_op(&self, key: usize, resources: Box<dyn Any>) {
        let mut ops = self.ops.borrow_mut();
        match ops.get_mut(key) {
            Some(OpSlot::Done(..)) => {
                ops.remove(key);
            }
            Some(slot) => {
                *slot = OpSlot::Orphaned(resources);
                drop(ops);
                self.push(
                    opcode::AsyncCancel::new(key as u64)
                        .build()
                        .user_data(IGNORE_TOKEN),
                );
            }
            None => {}
        }
    }

    /// The fixed-file slot of `fd` for the backend `backend_id`, registering it on first use.
    pub(crate) fn fixed_file(&self, backend_id: u64, fd: RawFd) -> Option<u32> {
        if !self.fixed_files_ok {
            return None;
        }
        let mut table = self.fixed_files.borrow_mut();
        if let Some(index) = table.iter().position(|slot| *slot == Some(backend_id)) {
            return Some(index as u32);
        }
        let free = table.iter().position(|slot| slot.is_none())?;
        let ring = self.ring.borrow();
        match ring.submitter().register_files_update(free as u32, &[fd]) {
            Ok(_) => {
                table[free] = Some(backend_id);
                Some(free as u32)
            }
            Err(e) => {
                tracing::warn!(error = %e, "file registration failed; using the plain descriptor");
                None
            }
        }
    }

    /// Forgets the fixed-file slot of a backend being closed.
    pub(crate) fn release_fixed_file(&self, backend_id: u64) {
        let mut table = self.fixed_files.borrow_mut();
        if let Some(index) = table.iter().position(|slot| *slot == Some(backend_id)) {
            let ring = self.ring.borrow();
            let _ = ring.submitter().register_files_update(index as u32, &[-1]);
            table[index] = None;
        }
    }
}

fn complete_slot(
    ops: &mut Slab<OpSlot>,
    key: usize,
    cqe: &io_uring::cqueue::Entry,
    wakers: &mut Vec<Waker>,
) {
    let Some(slot) = ops.get_mut(key) else {
        return;
    };
    match slot {
        OpSlot::Pending(waker) => {
            if let Some(w) = waker.take() {
                wakers.push(w);
            }
            *slot = OpSlot::Done(cqe.result(), cqe.flags());
        }
        OpSlot::Orphaned(_) => {
            ops.remove(key);
        }
        OpSlot::Done(..) => {
            debug_assert!(false, "second completion for a single-shot operation");
        }
    }
}
