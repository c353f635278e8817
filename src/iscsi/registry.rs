//! The daemon-wide session registry: TSIH allocation, finding the session a login reinstates
//! (same initiator name, ISID and target, TSIH 0: RFC 7143 §6.3.5), and reaching every session
//! at shutdown. Sessions live on their reactors; the registry holds only `Send + Sync` handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringsan_engine::net::ShutdownHandle;
use ringsan_engine::reactor::RemoteHandle;

/// What the registry knows of one session.
pub struct SessionEntry {
    /// Target-assigned session identifying handle.
    pub tsih: u16,
    /// InitiatorName.
    pub initiator: String,
    /// Initiator session ID.
    pub isid: [u8; 6],
    /// TargetName.
    pub target: String,
    /// The reactor the session runs on.
    pub reactor: RemoteHandle,
    /// Shuts the session's socket down from any thread.
    pub shutdown: ShutdownHandle,
    /// What `session list` shows.
    pub details: SessionDetails,
    /// Commands in flight now.
    pub in_flight: AtomicUsize,
    gone: AtomicBool,
}

/// What an admin sees of a session besides its identity.
#[derive(Clone, Debug, Default)]
pub struct SessionDetails {
    /// The portal the initiator connected to.
    pub portal: String,
    /// The initiator's address.
    pub peer: String,
    /// Negotiated parameters, "Key=Value".
    pub parameters: Vec<String>,
}

impl SessionEntry {
    /// Whether the session has finished (its tasks done, its socket closed).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

/// All sessions of the daemon.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_tsih: u16,
    sessions: HashMap<u16, Arc<SessionEntry>>,
}

impl Registry {
    /// The live session of (`initiator`, `isid`, `target`), if any.
    pub fn find(&self, initiator: &str, isid: [u8; 6], target: &str) -> Option<Arc<SessionEntry>> {
        let inner = self.inner.lock().ok()?;
        inner
            .sessions
            .values()
            .find(|s| {
                s.isid == isid
                    && s.initiator.eq_ignore_ascii_case(initiator)
                    && s.target.eq_ignore_ascii_case(target)
            })
            .cloned()
    }

    /// The live session with `tsih`, if any.
    pub fn by_tsih(&self, tsih: u16) -> Option<Arc<SessionEntry>> {
        self.inner.lock().ok()?.sessions.get(&tsih).cloned()
    }

    /// Registers a new session and returns its entry with a fresh nonzero TSIH.
    pub fn register(
        &self,
        initiator: &str,
        isid: [u8; 6],
        target: &str,
        reactor: RemoteHandle,
        shutdown: ShutdownHandle,
        details: SessionDetails,
    ) -> Option<Arc<SessionEntry>> {
        let mut inner = self.inner.lock().ok()?;
        let tsih = (0..=u16::MAX).find_map(|_| {
            inner.next_tsih = inner.next_tsih.wrapping_add(1).max(1);
            (!inner.sessions.contains_key(&inner.next_tsih)).then_some(inner.next_tsih)
        })?;
        let entry = Arc::new(SessionEntry {
            tsih,
            initiator: initiator.to_string(),
            isid,
            target: target.to_string(),
            reactor,
            shutdown,
            details,
            in_flight: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
        });
        inner.sessions.insert(tsih, entry.clone());
        Some(entry)
    }

    /// Removes a finished session.
    pub fn unregister(&self, entry: &SessionEntry) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.sessions.remove(&entry.tsih);
        }
        entry.gone.store(true, Ordering::Release);
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<SessionEntry>> {
        self.inner
            .lock()
            .map(|i| i.sessions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.sessions.len()).unwrap_or(0)
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ends `old` (reinstatement): shuts its socket down, which fails its pending reads so it
/// aborts its tasks and waits for their I/O; then waits (bounded) until it has unregistered.
pub async fn end_session(old: &SessionEntry, limit: Duration) -> bool {
    old.shutdown.shutdown();
    let step = Duration::from_millis(2);
    let mut waited = Duration::ZERO;
    while !old.is_gone() && waited < limit {
        ringsan_engine::time::sleep(step).await;
        waited += step;
    }
    old.is_gone()
}
