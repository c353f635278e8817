//! One scrape: every logical unit's figures merged, session and connection counts per target
//! from the registry, and each reactor's engine figures, asked of the reactor itself on its own
//! thread (the engine keeps no shared counters for them).
//!
//! Not one atomic picture: each figure is read once, while commands keep completing. A
//! histogram's count is the sum of its buckets, so each histogram is consistent by itself.

use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::reactor::ReactorStats;

use crate::iscsi::server::Server;
use crate::metrics::lun::LunSnapshot;

/// How long a scrape waits for the reactors' engine figures; a reactor that does not answer in
/// time is left out of this scrape.
pub const REACTOR_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// One logical unit's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunSample {
    /// Target name.
    pub target: String,
    /// LUN.
    pub lun: u16,
    /// Its figures.
    pub figures: LunSnapshot,
}

/// One target's sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSample {
    /// Target name.
    pub target: String,
    /// Sessions logged in.
    pub sessions: u64,
    /// Connections in full-feature phase (one per session: MC/S is not offered).
    pub connections: u64,
    /// Commands admitted and not yet ended, over all its sessions.
    pub commands_in_flight: u64,
}

/// One reactor's engine figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReactorSample {
    /// The reactor's index (label `reactor`).
    pub reactor: usize,
    /// Its figures.
    pub stats: ReactorStats,
}

/// The whole daemon at one scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per logical unit, by target then LUN.
    pub luns: Vec<LunSample>,
    /// Per target.
    pub targets: Vec<TargetSample>,
    /// Per reactor, by index.
    pub reactors: Vec<ReactorSample>,
    /// TCP connections open, in any phase (login, discovery, full feature).
    pub tcp_connections: u64,
    /// Per mirrored volume, by target then LUN.
    pub volumes: Vec<crate::metrics::mirror::VolumeSample>,
}

/// Gathers a [`Snapshot`] of `server`; call it from the control plane's runtime.
pub async fn gather(server: &Arc<Server>) -> Snapshot {
    let reactors = reactor_samples(server).await;
    let volumes = crate::metrics::mirror::volume_samples(server).await;
    let sessions = server.registry.all();
    let mut snapshot = Snapshot {
        reactors,
        volumes,
        tcp_connections: server.connection_count() as u64,
        ..Snapshot::default()
    };
    for target in server.targets.all() {
        for lu in target.luns() {
            snapshot.luns.push(LunSample {
                target: target.iqn.clone(),
                lun: lu.number(),
                figures: lu.metrics().snapshot(),
            });
        }
        let mut sample = TargetSample {
            target: target.iqn.clone(),
            ..TargetSample::default()
        };
        for s in sessions
            .iter()
            .filter(|s| !s.is_gone() && s.target.eq_ignore_ascii_case(&target.iqn))
        {
            sample.sessions += 1;
            sample.connections += 1;
            sample.commands_in_flight +=
                s.in_flight.load(std::sync::atomic::Ordering::Relaxed) as u64;
        }
        snapshot.targets.push(sample);
    }
    snapshot
}

/// Asks every reactor for its figures on its own thread and waits (bounded) for the answers.
async fn reactor_samples(server: &Server) -> Vec<ReactorSample> {
    let mut answers = Vec::new();
    for handle in server.reactor_handles() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        handle.run(move || {
            let answer = crate::metrics::reactor_index()
                .zip(ringsan_engine::reactor::stats())
                .map(|(reactor, stats)| ReactorSample { reactor, stats });
            let _ = tx.send(answer);
        });
        answers.push(rx);
    }
    let deadline = tokio::time::Instant::now() + REACTOR_ANSWER_TIMEOUT;
    let mut out = Vec::new();
    for rx in answers {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Some(sample))) => out.push(sample),
            // A reactor that stopped (shutdown) dropped the question unanswered.
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("a reactor did not answer the metrics scrape in time: left out")
            }
        }
    }
    out.sort_by_key(|s| s.reactor);
    out
}
