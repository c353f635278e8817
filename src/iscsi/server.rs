//! The daemon-wide iSCSI state ([`Server`]: targets, the session registry, negotiation limits)
//! and the life of one connection: login (bounded in time, so half-open connections cannot pile
//! up), then full-feature phase, then cleanup (tasks aborted and their I/O finished before the
//! session leaves the registry).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::net::{TcpListener, TcpStream};
use ringsan_engine::reactor::RemoteHandle;
use ringsan_engine::select::{select2, Either};
use tracing::{info, warn, Instrument};

use crate::iscsi::framing::Reader;
use crate::iscsi::full_feature::{self, End};
use crate::iscsi::login_phase;
use crate::iscsi::params::TargetLimits;
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
            reactors: std::sync::Mutex::new(Vec::new()),
            portals: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether shutdown has begun (no new logins are accepted).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Begins shutdown: every session is asked to log out (Async Message), new logins are
    /// refused. Returns the number of sessions asked.
    pub fn begin_shutdown(&self) -> usize {
        self.shutting_down.store(true, Ordering::Release);
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
        match portals.iter().position(|p| p.addr == addr) {
            Some(i) => {
                portals.remove(i).stop.store(true, Ordering::Release);
                true
            }
            None => false,
        }
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
        self.connections.load(Ordering::Relaxed)
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
    loop {
        let accepted = select2(listener.accept(), wait_stop(&server, &stop)).await;
        let (stream, peer) = match accepted {
            Either::Right(()) => return,
            Either::Left(Ok(a)) => a,
            Either::Left(Err(e)) => {
                warn!(%portal, error = %e, "accept failed");
                ringsan_engine::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if server.connections.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            warn!(%peer, "too many connections: refused");
            continue;
        }
        server.connections.fetch_add(1, Ordering::Relaxed);
        let s = server.clone();
        let serve = move || {
            let span = tracing::info_span!("conn", %peer);
            ringsan_engine::spawn(
                async move {
                    serve_connection(s.clone(), stream, peer).await;
                    s.connections.fetch_sub(1, Ordering::Relaxed);
                }
                .instrument(span),
            );
        };
        match reactors.get(next % reactors.len().max(1)) {
            Some(r) if r.id() != ringsan_engine::reactor::current_handle().id() => r.run(serve),
            _ => serve(),
        }
        next = next.wrapping_add(1);
    }
}

async fn wait_stop(server: &Server, stop: &AtomicBool) {
    while !server.is_shutting_down() && !stop.load(Ordering::Acquire) {
        ringsan_engine::time::sleep(Duration::from_millis(50)).await;
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
