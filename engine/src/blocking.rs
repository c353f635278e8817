//! A small pool of helper threads for the few operations the running kernel's io_uring lacks
//! (block-device discard and zero-out ioctls, `SEEK_DATA`/`SEEK_HOLE` mapping queries) and for
//! the rare file writes that must be on stable storage before a command completes (the APTPL
//! state of persistent reservations). Only such operations come here; the reactor never blocks
//! on them.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

type Job = Box<dyn FnOnce() + Send>;

/// Helper threads in the pool.
const HELPER_THREADS: usize = 2;

struct Pool {
    sender: Mutex<Sender<Job>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..HELPER_THREADS {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringsan-helper-{i}"))
                .spawn(move || loop {
                    let job = match receiver.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a helper thread");
            }
        }
        Pool {
            sender: Mutex::new(sender),
        }
    })
}

struct Shared<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

/// The future of a job on the helper pool.
pub struct Blocking<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

impl<T> Future for Blocking<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut shared) = self.shared.lock() else {
            return Poll::Pending;
        };
        match shared.result.take() {
            Some(v) => Poll::Ready(v),
            None => {
                shared.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The sending half of [`oneshot`]: hands one value to the waiting future, from any thread.
pub struct Completer<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

impl<T> Completer<T> {
    /// Hands `value` over and wakes the waiter.
    pub fn complete(self, value: T) {
        let waker = match self.shared.lock() {
            Ok(mut s) => {
                s.result = Some(value);
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A one-value channel between threads: the future resolves with what the completer hands over
/// (used to carry a result from one reactor back to another).
pub fn oneshot<T>() -> (Completer<T>, Blocking<T>) {
    let shared = Arc::new(Mutex::new(Shared {
        result: None,
        waker: None,
    }));
    (
        Completer {
            shared: shared.clone(),
        },
        Blocking { shared },
    )
}

/// Runs `f` on a helper thread; the returned future resolves on the calling reactor.
pub fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Blocking<T> {
    let (done, result) = oneshot();
    let job: Job = Box::new(move || done.complete(f()));
    if let Ok(sender) = pool().sender.lock() {
        if sender.send(job).is_err() {
            tracing::error!("helper pool is gone");
        }
    }
    result
}

/// Waits on a thread that is not a reactor (a control-plane thread) for `f`, at most `limit`:
/// `None` when it did not finish in time (it is dropped then; work it handed to a reactor goes
/// on there).
pub fn wait_on_thread<F: Future>(f: F, limit: std::time::Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}
