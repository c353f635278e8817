//! Mirrored volumes in the daemon: their metadata created on first start, their mirror nodes
//! started on the reactors (one home reactor per target, targets spread round-robin; the
//! target's connections are placed there, see `iscsi::placement`), and the list the control
//! API's `volume` commands act on.
//!
//! A volume is a LUN with `mirror_port` set: its UUID and size must be the same on both nodes
//! (the link's handshake refuses a peer that disagrees). The first start creates the metadata
//! file (`meta_path`, by default the backing path with `.meta`): when the data file was created
//! at the same time (sparse, all zeroes on both nodes) the copy starts UpToDate in a generation
//! derived from the volume UUID, so two new nodes are in sync without a full copy; when the data
//! existed before, the copy starts Inconsistent with unknown generations, and the admin promotes
//! the node holding the good data with `--force`, which makes it the source of a full sync, as
//! DRBD's `create-md` followed by `primary --force`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::disk::{create_sparse, FileDisk};
use ringsan_engine::mirror::gi::GenIds;
use ringsan_engine::mirror::meta::{DiskState, Superblock};
use ringsan_engine::mirror::node::NodeConfig;
use ringsan_engine::mirror::remote::{MirrorHandle, Start};
use ringsan_engine::mirror::replica::Config as ReplicaConfig;
use ringsan_engine::RemoteHandle;

use crate::config::{Config, LunConfig, MirrorConfig};
use crate::scsi::lun::LogicalUnit;

/// Bitmap granule: 4 KiB per bit.
const GRANULE_SHIFT: u32 = 12;
/// Activity-log extent: 4 MiB.
const AL_EXTENT_SHIFT: u32 = 22;
/// Extents the activity log may hold (1 GiB hot).
const AL_EXTENTS: u32 = 256;
/// Transaction slots in the log's ring.
const AL_SLOTS: u32 = 64;

/// One mirrored volume of the running daemon.
#[derive(Clone)]
pub struct Volume {
    /// `IQN/LUN`, the name `target-admin volume` takes.
    pub name: String,
    /// Its logical unit.
    pub lu: Arc<LogicalUnit>,
}

impl Volume {
    /// The running node.
    pub fn handle(&self) -> Option<&MirrorHandle> {
        self.lu.mirror()
    }
}

/// The name of the volume behind LUN `lun` of target `iqn`.
pub fn volume_name(iqn: &str, lun: u16) -> String {
    format!("{iqn}/{lun}")
}

/// What a volume's metadata must say, for `l` on this node.
fn layout(l: &LunConfig, m: &MirrorConfig, gen: GenIds, disk: DiskState) -> Superblock {
    Superblock {
        seq: 0,
        volume: l.uuid,
        node_id: m.node_id,
        volume_bytes: l.size_bytes.unwrap_or(0),
        granule_shift: GRANULE_SHIFT,
        al_extent_shift: AL_EXTENT_SHIFT,
        al_slots: AL_SLOTS,
        al_extents: AL_EXTENTS,
        gen,
        disk,
        primary: false,
        unclean: false,
        resync_cursor: 0,
    }
}

/// The generation seed of a new volume: the same on both nodes (from its UUID).
fn creation_seed(uuid: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&uuid[..8]);
    u64::from_le_bytes(b) ^ u64::from_le_bytes(uuid[8..].try_into().unwrap_or([0; 8]))
}

/// Before the LUN's data file is opened: creates the metadata file when there is none and
/// returns the superblock to format it with. `data_is_new`: the data file does not exist yet
/// (it is about to be created sparse).
pub fn prepare_metadata(
    l: &LunConfig,
    m: &MirrorConfig,
    meta_path: &Path,
    data_is_new: bool,
) -> Result<Option<Superblock>, String> {
    if meta_path.exists() {
        return Ok(None);
    }
    let sb = if data_is_new {
        layout(
            l,
            m,
            GenIds::fresh(creation_seed(&l.uuid)),
            DiskState::UpToDate,
        )
    } else {
        tracing::warn!(path = %l.path.display(), "mirrored volume over existing data: the copy starts Inconsistent; promote the node with the good data with --force to sync it to the peer");
        layout(l, m, GenIds::unknown(), DiskState::Inconsistent)
    };
    create_sparse(meta_path, sb.store_bytes())
        .map_err(|e| format!("metadata file {}: {e}", meta_path.display()))?;
    Ok(Some(sb))
}

/// Starts the mirror node of volume `l` (its unit `lu`) on reactor `home`.
pub fn start_node(
    home: RemoteHandle,
    config: &Config,
    l: &LunConfig,
    lu: &LogicalUnit,
    format: Option<Superblock>,
) -> Result<(), String> {
    let (Some(m), Some(lm)) = (&config.mirror, &l.mirror) else {
        return Err("not a mirrored LUN".into());
    };
    let data = FileDisk::open(&l.path).map_err(|e| format!("{}: {e}", l.path.display()))?;
    let meta = FileDisk::open(&lm.meta_path)
        .map_err(|e| format!("metadata {}: {e}", lm.meta_path.display()))?;
    let node = NodeConfig {
        node_id: m.node_id,
        peer_id: m.peer_id,
        peer_addr: std::net::SocketAddr::new(m.peer_address, lm.port),
        // Dial from this node's mirror address; accept the peer's only.
        local_ip: Some(m.address),
        accept_from: Some(m.peer_address),
        secret: m.secret.as_bytes().to_vec(),
        private_cable: m.private_cable,
        replica: ReplicaConfig {
            seed: rand::random::<u64>(),
            resync_rate_bytes_per_s: m.resync_rate_bytes_per_s,
            resync_chunk: (config.buffer_size_bytes as u64).min(256 * 1024),
            ..ReplicaConfig::default()
        },
        max_data: config.buffer_size_bytes as u32,
        reconnect_interval: Duration::from_millis(500),
        link_timeout: Duration::from_millis(u64::from(m.link_timeout_ms)),
    };
    let handle = MirrorHandle::start_blocking(
        home,
        Start {
            config: node,
            data,
            meta,
            listen: std::net::SocketAddr::new(m.address, lm.port),
            format,
        },
    )
    .map_err(|e| e.to_string())?;
    lu.set_mirror(handle);
    Ok(())
}
