//! The daemon-wide iSCSI state ([`Server`]: targets, the session registry, negotiation limits)
//! and the life of one connection: login (bounded in time, so half-open connections cannot pile
//! up), then full-feature phase, then cleanup (tasks aborted and their I/O finished before the
//! session leaves the registry).
//!
//! Nothing here polls on a timer while the daemon is idle: accept loops and the reactors' root
//! futures sleep on [`Notify`] and are woken by the change they wait for (shutdown, a portal
//! removed, the last connection gone).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ringsan_engine::net::{TcpListener, TcpStream};
use ringsan_engine::reactor::RemoteHandle;
use ringsan_engine::select::{select2, Either};
use tracing::{info, warn, Instrument};

use crate::iscsi::framing::Reader;
use crate::iscsi::full_feature::{self, End};
use crate::iscsi::login_phase;
use crate::iscsi::params::TargetLimits;
use crate::iscsi::placement;
use crate::iscsi::registry::Registry;
use crate::iscsi::target::Targets;

/// How long a connection may take to complete its login.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Most connections the daemon holds at once (logged in or logging in).
pub const MAX_CONNECTIONS: usize = 4096;
/// Seconds an initiator is given to log out when the daemon shuts down.
pub const LOGOUT_GRACE_SECONDS: u16 = 5;

/// Everything the connections of every reactor share.
pub struct Server {
    /// The targets.
    pub targets: Targets,
    /// Live sessions.
    pub registry: Registry,
    /// What we accept in negotiation.
    pub limits: TargetLimits,
    /// How often an idle connection is pinged with a NOP-In (None: never).
    pub nop_interval: Option<Duration>,
    shutting_down: AtomicBool,
    connections: AtomicUsize,
    /// Woken when shutdown begins, a portal is removed, or the last connection ends during
    /// shutdown: what accept loops and the reactors' root futures wait for.
    lifecycle: Notify,
    reactors: std::sync::Mutex<Vec<RemoteHandle>>,
    portals: std::sync::Mutex<Vec<Portal>>,
}

/// A listening portal: its address and the flag that stops its accept loop.
struct Portal {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

thread_local! {
    static LOCAL_SESSIONS: RefCell<HashMap<u16, Weak<crate::iscsi::session::Session>>> = RefCell::new(HashMap::new());
}

impl Server {
    /// A server over `targets`.
    pub fn new(targets: Targets, limits: TargetLimits, nop_interval: Option<Duration>) -> Server {
        Server {
            targets,
            registry: Registry::default(),
            limits,
            nop_interval,
            shutting_down: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            lifecycle: Notify::default(),
            reactors: std::sync::Mutex::new(Vec::new()),
            portals: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether shutdown has begun (no new logins are accepted).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Completes once shutdown has begun and no connection is left; what each reactor's root
    /// future waits for before its reactor stops. Makes no timer wake-ups while it waits.
    pub async fn drained(&self) {
        self.lifecycle
            .wait_until(|| self.is_shutting_down() && self.connection_count() == 0)
            .await
    }

    /// Begins shutdown: every session is asked to log out (Async Message), new logins are
    /// refused. Returns the number of sessions asked.
    pub fn begin_shutdown(&self) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.lifecycle.notify_all();
        let sessions = self.registry.all();
        for entry in &sessions {
            let tsih = entry.tsih;
            entry.reactor.run(move || {
                LOCAL_SESSIONS.with(|m| {
                    if let Some(s) = m.borrow().get(&tsih).and_then(Weak::upgrade) {
                        s.send_logout_request(LOGOUT_GRACE_SECONDS);
                    }
                })
            });
        }
        sessions.len()
    }

    /// The reactors connections are handed to (set once at start-up).
    pub fn set_reactors(&self, reactors: Vec<RemoteHandle>) {
        if let Ok(mut r) = self.reactors.lock() {
            *r = reactors;
        }
    }

    /// The reactors' remote handles (empty before start-up finished).
    pub fn reactor_handles(&self) -> Vec<RemoteHandle> {
        self.reactors.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Binds `addr` and starts accepting on it (on the first reactor). Waits a little while the
    /// address is in use: a killed predecessor's listener lingers until the kernel has torn its
    /// io_uring down. Returns the bound address (with the real port when 0 was asked for).
    pub fn add_portal(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        if self.portal_list().contains(&addr) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("portal {addr} is already listening"),
            ));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr, false) {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        let bound = listener.local_addr();
        let reactors = self.reactors.lock().map(|r| r.clone()).unwrap_or_default();
        let Some(first) = reactors.first().cloned() else {
            return Err(std::io::Error::other("no reactor is running"));
        };
        let stop = Arc::new(AtomicBool::new(false));
        if let Ok(mut p) = self.portals.lock() {
            p.push(Portal {
                addr: bound,
                stop: stop.clone(),
            });
        }
        let server = self.clone();
        first.run(move || ringsan_engine::spawn(accept_loop(server, listener, reactors, stop)));
        Ok(bound)
    }

    /// Stops listening on `addr` (sessions that came through it stay). False when not listening.
    pub fn remove_portal(&self, addr: SocketAddr) -> bool {
        let Ok(mut portals) = self.portals.lock() else {
            return false;
        };
        let Some(i) = portals.iter().position(|p| p.addr == addr) else {
            return false;
        };
        portals.remove(i).stop.store(true, Ordering::Release);
        drop(portals);
        self.lifecycle.notify_all();
        true
    }

    /// The portals listening now.
    pub fn portal_list(&self) -> Vec<SocketAddr> {
        self.portals
            .lock()
            .map(|p| p.iter().map(|x| x.addr).collect())
            .unwrap_or_default()
    }

    /// Connections being served right now (on every reactor).
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Counts a connection's end. The last one to end during shutdown wakes the reactors' root
    /// futures. SeqCst on both counters pairs with [`Server::begin_shutdown`]: either this sees
    /// the flag and notifies, or shutdown's own notification comes after this decrement.
    fn connection_ended(&self) {
        let before = self.connections.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "connection count underflow");
        if before == 1 && self.is_shutting_down() {
            self.lifecycle.notify_all();
        }
    }

    /// Cuts every remaining session (after the logout grace period).
    pub fn cut_all(&self) {
        for entry in self.registry.all() {
            entry.shutdown.shutdown();
        }
    }
}

/// Runs `f` with the session `tsih` if it lives on this reactor thread.
pub fn with_local_session<R>(
    tsih: u16,
    f: impl FnOnce(Rc<crate::iscsi::session::Session>) -> R,
) -> Option<R> {
    let session = LOCAL_SESSIONS.with(|m| m.borrow().get(&tsih).and_then(Weak::upgrade))?;
    Some(f(session))
}

/// Accepts connections on `listener` until shutdown and hands them to the reactors in turn
/// (`reactors[0]` should be this one); each connection lives on its reactor for its whole life.
///
/// One listener per portal, not one per reactor with SO_REUSEPORT: a killed predecessor's
/// listener can linger in the kernel while its io_uring is torn down, and in a REUSEPORT group
/// it would swallow connections meant for us.
async fn accept_loop(
    server: Arc<Server>,
    listener: TcpListener,
    reactors: Vec<RemoteHandle>,
    stop: Arc<AtomicBool>,
) {
    let portal = listener.local_addr();
    let mut next = 0usize;
    // One wait for the loop's whole life: it registers this task's waker once, not per accept.
    let mut stopped = pin!(server
        .lifecycle
        .wait_until(|| server.is_shutting_down() || stop.load(Ordering::Acquire)));
    loop {
        let accepted = select2(listener.accept(), stopped.as_mut()).await;
        let (stream, peer) = match accepted {
            Either::Right(()) => return,
            Either::Left(Ok(a)) => a,
            Either::Left(Err(e)) => {
                warn!(%portal, error = %e, "accept failed");
                ringsan_engine::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if server.connection_count() >= MAX_CONNECTIONS {
            warn!(%peer, "too many connections: refused");
            continue;
        }
        server.connections.fetch_add(1, Ordering::SeqCst);
        let round_robin = reactors.get(next % reactors.len().max(1)).cloned();
        next = next.wrapping_add(1);
        if !server
            .targets
            .all()
            .iter()
            .any(|t| t.home_reactor().is_some())
        {
            dispatch(&server, round_robin, stream, peer);
            continue;
        }
        // A target with mirrored volumes is served on their reactor (see placement).
        let (s, reactors) = (server.clone(), reactors.clone());
        ringsan_engine::spawn(async move {
            let home = match placement::peek_target_name(&stream).await {
                Some(name) => s.targets.get(&name).and_then(|t| t.home_reactor()),
                None => None,
            };
            let chosen = home
                .and_then(|id| reactors.iter().find(|r| r.id() == id).cloned())
                .or(round_robin);
            dispatch(&s, chosen, stream, peer);
        });
    }
}

/// Serves an accepted connection on reactor `on` (here when `None` or this one).
fn dispatch(server: &Arc<Server>, on: Option<RemoteHandle>, stream: TcpStream, peer: SocketAddr) {
    let s = server.clone();
    let serve = move || {
        let span = tracing::info_span!("conn", %peer);
        ringsan_engine::spawn(
            async move {
                serve_connection(s.clone(), stream, peer).await;
                s.connection_ended();
            }
            .instrument(span),
        );
    };
    match on {
        Some(r) if r.id() != ringsan_engine::reactor::current_handle().id() => r.run(serve),
        _ => serve(),
    }
}

/// Wakes tasks on any reactor when a condition they wait for may have become true: a
/// broadcast without timers. A waiter checks its condition and registers its waker under the
/// same lock that [`Notify::notify_all`] takes after the state changed, so no change is missed.
///
/// Bounded: each live [`WaitUntil`] holds at most one registration (replaced in place when its
/// waker changes), a dropped one removes its own, and `notify_all` empties the list.
#[derive(Default)]
pub struct Notify {
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_key: u64,
    wakers: Vec<(u64, Waker)>,
}

impl Notify {
    /// Waits until `condition` holds. Whoever makes it true must change the state first and
    /// then call [`Notify::notify_all`].
    pub fn wait_until<F: Fn() -> bool>(&self, condition: F) -> WaitUntil<'_, F> {
        WaitUntil {
            notify: self,
            condition,
            key: None,
        }
    }

    /// Wakes every waiter; each checks its condition again and registers anew if it still waits.
    pub fn notify_all(&self) {
        let wakers = std::mem::take(&mut self.lock().wakers);
        // Woken outside the lock: a waker of another reactor writes its eventfd.
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// The waiter list; a panic elsewhere while holding it leaves it consistent (every change is
    /// one push, retain or take), so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The future of [`Notify::wait_until`].
pub struct WaitUntil<'a, F> {
    notify: &'a Notify,
    condition: F,
    /// This future's registration among the waiters, while it has one.
    key: Option<u64>,
}

// No field is structurally pinned: `condition` is only ever called by reference.
impl<F> Unpin for WaitUntil<'_, F> {}

impl<F: Fn() -> bool> Future for WaitUntil<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut waiters = this.notify.lock();
        if (this.condition)() {
            if let Some(key) = this.key.take() {
                waiters.wakers.retain(|(k, _)| *k != key);
            }
            return Poll::Ready(());
        }
        let registered = this
            .key
            .and_then(|key| waiters.wakers.iter_mut().find(|(k, _)| *k == key));
        match registered {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => {
                let key = waiters.next_key;
                waiters.next_key += 1;
                waiters.wakers.push((key, cx.waker().clone()));
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for WaitUntil<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.notify.lock().wakers.retain(|(k, _)| *k != key);
        }
    }
}

/// Serves one connection from its first byte to its close.
pub async fn serve_connection(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let stream = Rc::new(stream);
    let mut reader = Reader::new();
    let login = ringsan_engine::time::timeout(
        LOGIN_TIMEOUT,
        login_phase::run(&server, &stream, &mut reader),
    )
    .await;
    let session = match login {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            info!(%peer, error = %e, "login ended");
            return;
        }
        Err(_) => {
            warn!(%peer, "login not completed within {:?}: connection closed", LOGIN_TIMEOUT);
            return;
        }
    };
    let tsih = session.entry.as_ref().map(|e| e.tsih);
    let span =
        tracing::info_span!("session", initiator = %session.initiator, tsih = tsih.unwrap_or(0));
    async {
        if let Some(tsih) = tsih {
            LOCAL_SESSIONS.with(|m| m.borrow_mut().insert(tsih, Rc::downgrade(&session)));
        }
        ringsan_engine::spawn(session.outbox.clone().run_writer(stream.clone()));
        if let Some(interval) = server.nop_interval {
            ringsan_engine::spawn(crate::iscsi::keepalive::run(
                session.clone(),
                stream.clone(),
                interval,
            ));
        }
        reader.set_digests(session.digests);
        let end = full_feature::run(&session, &stream, &mut reader).await;
        match &end {
            End::Logout => info!("logged out"),
            End::Closed(e) => info!(reason = %e, "connection closed"),
            End::Violation(why) => warn!(why, "connection closed for a protocol violation"),
        }
        session.ending.set(true);
        session.abort_all_tasks().await;
        session.outbox.flushed().await;
        session.outbox.close();
        stream.shutdown();
        if let Some(tsih) = tsih {
            LOCAL_SESSIONS.with(|m| m.borrow_mut().remove(&tsih));
        }
        if let (Some(target), Some(nexus)) = (&session.target, &session.nexus) {
            for lu in target.luns() {
                lu.nexus_ended(nexus);
            }
        }
        if let Some(entry) = &session.entry {
            server.registry.unregister(entry);
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::task::Wake;

    struct Count(AtomicU32);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn registered(n: &Notify) -> usize {
        n.lock().wakers.len()
    }

    #[test]
    fn wakes_once_the_condition_holds_and_registers_once() {
        let notify = Notify::default();
        let flag = AtomicBool::new(false);
        let count = Arc::new(Count(AtomicU32::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(notify.wait_until(|| flag.load(Ordering::SeqCst)));
        for _ in 0..3 {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(registered(&notify), 1, "re-polls reuse one registration");
        notify.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(registered(&notify), 0);
        assert!(
            wait.as_mut().poll(&mut cx).is_pending(),
            "spurious: still waits"
        );
        flag.store(true, Ordering::SeqCst);
        notify.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!(registered(&notify), 0);
    }

    #[test]
    fn a_dropped_wait_leaves_no_registration() {
        let notify = Notify::default();
        let waker = Waker::from(Arc::new(Count(AtomicU32::new(0))));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut wait = pin!(notify.wait_until(|| false));
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(registered(&notify), 0);
    }

    #[test]
    fn a_condition_already_true_completes_without_registering() {
        let notify = Notify::default();
        let waker = Waker::from(Arc::new(Count(AtomicU32::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut wait = pin!(notify.wait_until(|| true));
        assert!(wait.as_mut().poll(&mut cx).is_ready());
        assert_eq!(registered(&notify), 0);
    }
}
