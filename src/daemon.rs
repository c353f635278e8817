//! The daemon's wiring: open every LUN, build the targets, start one reactor thread per core with
//! a listener per portal on each (SO_REUSEPORT spreads connections across them), and stop in
//! order: ask initiators to log out, cut the rest, let in-flight I/O drain, join the reactors.
//!
//! Lives beside the protocol layers rather than in one of them: it is process plumbing that
//! uses all of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringsan_engine::disk::{create_sparse, Disk, FileDisk};
use ringsan_engine::volume::Volume;
use ringsan_engine::{Reactor, ReactorConfig, RemoteHandle};

use ringsan_engine::mirror::meta::Superblock;

use crate::cluster::volumes;
use crate::config::{Config, LunConfig, TargetConfig};
use crate::iscsi::params::TargetLimits;
use crate::iscsi::server::{Server, LOGOUT_GRACE_SECONDS};
use crate::iscsi::target::{Target, Targets};
use crate::scsi::geometry::LuGeometry;
use crate::scsi::inquiry::LuIdentity;
use crate::scsi::lun::LogicalUnit;
use crate::scsi::mode::ModeState;
use crate::scsi::nexus::target_port_name;
use crate::scsi::pr_store::PrStore;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A LUN's backing store is unusable.
    #[error("target {target} LUN {lun} ({path}): {message}")]
    Lun {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// Backing path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A portal could not be bound.
    #[error("portal {portal}: {source}")]
    Portal {
        /// The address.
        portal: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A reactor could not be created.
    #[error("reactor: {0}")]
    Reactor(std::io::Error),
}

/// A running daemon.
pub struct Daemon {
    server: Arc<Server>,
    reactors: Vec<JoinHandle<()>>,
    /// The portals actually bound (with real ports).
    pub portals: Vec<SocketAddr>,
}

fn lun_error(t: &TargetConfig, l: &LunConfig, message: impl Into<String>) -> StartError {
    StartError::Lun {
        target: t.iqn.clone(),
        lun: l.lun,
        path: l.path.clone(),
        message: message.into(),
    }
}

/// Opens one LUN's backing store and builds its logical unit.
pub fn open_lun(
    t: &TargetConfig,
    l: &LunConfig,
    config: &Config,
) -> Result<LogicalUnit, StartError> {
    if let Some(size) = l.size_bytes {
        let actual = create_sparse(&l.path, size).map_err(|e| lun_error(t, l, e.to_string()))?;
        if actual != size && l.path.is_file() {
            return Err(lun_error(t, l, format!("the existing file is {actual} bytes but the configuration says {size}; fix `size` or the file")));
        }
    }
    let disk = FileDisk::open(&l.path).map_err(|e| lun_error(t, l, e.to_string()))?;
    let info = disk.info().clone();
    if l.block_size < info.logical_block_bytes {
        return Err(lun_error(
            t,
            l,
            format!(
                "block size {} is smaller than the backing device's logical block ({})",
                l.block_size, info.logical_block_bytes
            ),
        ));
    }
    let num_blocks = info.size_bytes / l.block_size as u64;
    if num_blocks == 0 {
        return Err(lun_error(
            t,
            l,
            "the backing store is smaller than one block",
        ));
    }
    let mut geometry = LuGeometry::new(l.block_size, num_blocks);
    let physical = l
        .physical_block_size
        .unwrap_or(info.physical_block_bytes)
        .max(l.block_size);
    geometry.physical_block_exp = (physical / l.block_size).trailing_zeros() as u8;
    geometry.thin = !info.block_device;
    geometry.lbprz = info.discard_reads_zero;
    let per_buffer = (config.buffer_size_bytes / l.block_size as usize) as u64;
    geometry.max_compare_write_blocks = (per_buffer / 2).clamp(1, 255) as u8;
    if l.mirror.is_some() {
        // Deallocation and COMPARE AND WRITE are not mirrored (see scsi::mirrored): not offered.
        geometry.thin = false;
        geometry.lbprz = false;
        geometry.max_compare_write_blocks = 0;
    }
    if !info.direct {
        tracing::warn!(target = %t.iqn, lun = l.lun, path = %l.path.display(), "no O_DIRECT on this file system: buffered I/O");
    }
    let identity = LuIdentity::new(
        l.uuid,
        l.serial.clone(),
        config.oui,
        target_port_name(&t.iqn, t.tpgt),
        t.tpgt,
        t.tpgt,
        format!("{},lun,{}", t.iqn, l.lun),
    );
    let mode = ModeState::new(l.write_cache);
    let lu = LogicalUnit::new(l.lun, Volume::new(disk), geometry, identity, mode)
        .with_pr_store(PrStore::new(&config.data_dir, &l.uuid))
        .with_metrics(config.reactors.max(1));
    Ok(if l.mirror.is_some() {
        lu.mirrored()
    } else {
        lu
    })
}

/// A mirrored LUN whose node starts once the reactors run.
struct PendingMirror {
    /// The target's position: its mirrored volumes share a home reactor, so its sessions can
    /// be placed there.
    target_index: usize,
    lun: LunConfig,
    target: TargetConfig,
    lu: Arc<LogicalUnit>,
    format: Option<Superblock>,
}

fn build_targets(config: &Config) -> Result<(Targets, Vec<PendingMirror>), StartError> {
    let mut targets = Vec::new();
    let mut mirrors = Vec::new();
    for (target_index, t) in config.targets.iter().enumerate() {
        let mut luns = Vec::new();
        for l in &t.luns {
            let format = match (&config.mirror, &l.mirror) {
                (Some(m), Some(lm)) => {
                    volumes::prepare_metadata(l, m, &lm.meta_path, !l.path.exists())
                        .map_err(|e| lun_error(t, l, e))?
                }
                _ => None,
            };
            let lu = Arc::new(open_lun(t, l, config)?);
            if l.mirror.is_some() {
                mirrors.push(PendingMirror {
                    target_index,
                    lun: l.clone(),
                    target: t.clone(),
                    lu: lu.clone(),
                    format,
                });
            }
            luns.push(lu);
        }
        targets.push(Arc::new(Target::new(t, luns)));
    }
    Ok((Targets::new(targets), mirrors))
}

fn limits(config: &Config) -> TargetLimits {
    let buffer = config.buffer_size_bytes as u32;
    TargetLimits {
        max_burst_length: buffer,
        first_burst_length: buffer.min(262_144),
        max_recv_data_segment_length: buffer.min(262_144),
        ..TargetLimits::default()
    }
    .sanitized()
}

impl Daemon {
    /// Opens everything and starts serving; returns once every portal is bound on every reactor.
    pub fn start(config: &Config) -> Result<Daemon, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(StartError::Reactor)?;
        let nop = (config.nop_interval_seconds > 0)
            .then(|| Duration::from_secs(config.nop_interval_seconds as u64));
        let (targets, mirrors) = build_targets(config)?;
        let server = Arc::new(Server::new(targets, limits(config), nop));
        let reactor_config = ReactorConfig {
            buffer_size_bytes: config.buffer_size_bytes,
            buffer_count: config.buffer_count,
            ..ReactorConfig::default()
        };
        let mut reactors = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<RemoteHandle, StartError>>();
        for i in 0..config.reactors.max(1) {
            let server = server.clone();
            let ready = ready_tx.clone();
            let rc = reactor_config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ringsan-reactor-{i}"))
                .spawn(move || run_reactor(i, rc, server, ready))
                .map_err(StartError::Reactor)?;
            reactors.push(handle);
        }
        drop(ready_tx);
        let mut handles = Vec::new();
        for _ in 0..reactors.len() {
            match ready_rx.recv() {
                Ok(Ok(h)) => handles.push(h),
                Ok(Err(e)) => {
                    server.begin_shutdown();
                    return Err(e);
                }
                Err(_) => {
                    server.begin_shutdown();
                    return Err(StartError::Reactor(std::io::Error::other(
                        "a reactor thread died during start-up",
                    )));
                }
            }
        }
        // Mirrored volumes run on a home reactor, one per target, spread over the reactors;
        // the target's sessions are placed there (iscsi::placement).
        for p in mirrors {
            let home = handles[p.target_index % handles.len()].clone();
            if let Err(e) = volumes::start_node(home, config, &p.lun, &p.lu, p.format) {
                server.begin_shutdown();
                return Err(lun_error(&p.target, &p.lun, e));
            }
        }
        server.set_reactors(handles);
        let mut portals = Vec::new();
        for p in &config.portals {
            match server.add_portal(*p) {
                Ok(bound) => portals.push(bound),
                Err(source) => {
                    server.begin_shutdown();
                    return Err(StartError::Portal { portal: *p, source });
                }
            }
        }
        Ok(Daemon {
            server,
            reactors,
            portals,
        })
    }

    /// The shared server state.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// Stops: asks every initiator to log out, waits `LOGOUT_GRACE_SECONDS` for them, cuts the
    /// rest, lets their in-flight I/O finish, and joins the reactors.
    pub fn shutdown(self) {
        let asked = self.server.begin_shutdown();
        tracing::info!(sessions = asked, "shutting down: logout requested");
        let deadline = Instant::now() + Duration::from_secs(LOGOUT_GRACE_SECONDS as u64);
        while !self.server.registry.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.server.registry.is_empty() {
            tracing::info!(
                sessions = self.server.registry.len(),
                "cutting sessions that did not log out"
            );
            self.server.cut_all();
        }
        for r in self.reactors {
            let _ = r.join();
        }
        tracing::info!("stopped");
    }
}

fn run_reactor(
    index: usize,
    rc: ReactorConfig,
    server: Arc<Server>,
    ready: mpsc::Sender<Result<RemoteHandle, StartError>>,
) {
    let reactor = match Reactor::new(&rc) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(StartError::Reactor(e)));
            return;
        }
    };
    crate::metrics::set_reactor_index(index);
    let _ = ready.send(Ok(reactor.handle()));
    let span = tracing::info_span!("reactor", index);
    let _g = span.enter();
    // Woken by the server, not a timer: an idle reactor sleeps in io_uring_enter until work comes.
    let result = reactor.block_on(async move {
        server.drained().await;
        // The mirrored volumes homed here stop cleanly (their next start resyncs nothing).
        ringsan_engine::mirror::remote::shutdown_homed(Duration::from_secs(10)).await;
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "reactor failed");
    }
}

/// The data folder of the embedded default: `./data` under the current folder.
pub fn default_data_dir() -> PathBuf {
    Path::new("data").to_path_buf()
}
