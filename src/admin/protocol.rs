//! The control protocol between `target-admin` and `ringsand`: one JSON request per line on the
//! control socket, one JSON response per line back. Versioned: a request carries the protocol
//! version it speaks and the daemon refuses a version it does not know, naming both.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Where the daemon listens by default.
pub const DEFAULT_SOCKET: &str = "/run/ringsand/control.sock";

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version of the sender.
    pub version: u32,
    /// What to do.
    pub command: Command,
}

/// Every operation of the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    /// Creates a target.
    TargetCreate {
        /// iSCSI name.
        iqn: String,
        /// Target portal group tag (default 1).
        tpgt: Option<u16>,
        /// TargetAlias.
        alias: Option<String>,
    },
    /// Lists targets.
    TargetList,
    /// Deletes a target (`force` to cut its sessions).
    TargetDelete {
        /// iSCSI name.
        iqn: String,
        /// Cut logged-in sessions.
        force: bool,
    },
    /// Creates a LUN: an existing file of the right size is used as it is, a missing one is
    /// created sparse.
    LunCreate {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// Backing file or block device.
        path: String,
        /// Size ("10G", bytes); needed for a file that does not exist.
        size: Option<String>,
        /// 512 or 4096 (default 512).
        block_size: Option<u32>,
        /// Write cache enabled.
        write_cache: Option<bool>,
    },
    /// Lists the LUNs of a target.
    LunList {
        /// Target name.
        target: String,
    },
    /// Shows one LUN.
    LunShow {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
    },
    /// Grows a LUN.
    LunResize {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// New size.
        size: String,
        /// Allow shrinking (data past the new end is lost to initiators).
        force: bool,
    },
    /// Deletes a LUN (`force` when sessions are logged in to its target). The backing file is
    /// left in place.
    LunDelete {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// Proceed although sessions are logged in.
        force: bool,
    },
    /// Allows an initiator name.
    AclAdd {
        /// Target name.
        target: String,
        /// Initiator name.
        initiator: String,
    },
    /// Removes an initiator name.
    AclRemove {
        /// Target name.
        target: String,
        /// Initiator name.
        initiator: String,
    },
    /// Lists allowed initiators (empty: any).
    AclList {
        /// Target name.
        target: String,
    },
    /// Sets CHAP (and mutual CHAP) credentials for a target.
    ChapSet {
        /// Target name.
        target: String,
        /// CHAP_N the initiator must send.
        user: String,
        /// The initiator's secret.
        secret: String,
        /// The target's own name for mutual CHAP.
        mutual_user: Option<String>,
        /// The target's own secret for mutual CHAP.
        mutual_secret: Option<String>,
    },
    /// Removes CHAP from a target.
    ChapClear {
        /// Target name.
        target: String,
    },
    /// Adds a listening portal.
    PortalAdd {
        /// ADDRESS:PORT.
        address: String,
    },
    /// Removes a listening portal (sessions on it stay).
    PortalRemove {
        /// ADDRESS:PORT.
        address: String,
    },
    /// Lists portals.
    PortalList,
    /// Lists sessions.
    SessionList,
    /// Shows a LUN's persistent reservations.
    PrShow {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
    },
    /// Breaks every registration and reservation of a LUN (the administrator's way out of a
    /// stale reservation, or of a damaged APTPL state file that keeps the LUN offline).
    PrClear {
        /// Target name.
        target: String,
        /// LUN number.
        lun: u16,
        /// Required: this removes fencing that a cluster may rely on.
        force: bool,
    },
    /// The replication status of every mirrored volume, or of one.
    VolumeStatus {
        /// `IQN/LUN`; every volume when absent.
        volume: Option<String>,
    },
    /// Makes this node Primary for a volume (it serves the LUN).
    VolumePromote {
        /// `IQN/LUN`.
        volume: String,
        /// Take this copy as UpToDate whatever its state (it becomes the sync source).
        force: bool,
    },
    /// Makes this node Secondary for a volume (it stops serving the LUN).
    VolumeDemote {
        /// `IQN/LUN`.
        volume: String,
    },
    /// Compares both copies by checksums; with `resync`, copies what differs from the Primary.
    VolumeVerify {
        /// `IQN/LUN`.
        volume: String,
        /// Resync the differing blocks.
        resync: bool,
    },
    /// Copies every block again, from the Primary to the peer.
    VolumeResyncFull {
        /// `IQN/LUN`.
        volume: String,
    },
    /// Split brain: gives up this node's changes and takes the peer's copy.
    VolumeDiscardMyData {
        /// `IQN/LUN`.
        volume: String,
        /// Required: this node's writes since the split are lost.
        force: bool,
    },
    /// Leaves StandAlone and connects to the peer again.
    VolumeConnect {
        /// `IQN/LUN`.
        volume: String,
    },
    /// Takes a replaced local disk back after a detach (it is fully synced from the peer).
    VolumeAttach {
        /// `IQN/LUN`.
        volume: String,
    },
}

/// A mirrored volume's replication state, as `volume status --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// `IQN/LUN`.
    pub name: String,
    /// This node's role: Primary or Secondary.
    pub role: String,
    /// This copy's state: UpToDate, Inconsistent, Outdated, Diskless.
    pub disk: String,
    /// The link: StandAlone, Connecting, Connected, SyncSource, SyncTarget.
    pub connection: String,
    /// The peer's role, when connected.
    pub peer_role: Option<String>,
    /// The peer's copy's state, when connected.
    pub peer_disk: Option<String>,
    /// Bytes marked out of sync.
    pub out_of_sync_bytes: u64,
    /// The last connect found split brain (the volume stays StandAlone until resolved).
    pub split_brain: bool,
    /// The resync under way.
    pub resync: Option<ResyncInfo>,
    /// The online verify under way.
    pub verify: Option<VerifyInfo>,
    /// Bytes written here as a resync target, since the daemon started.
    pub resync_received_bytes: u64,
    /// Bytes read here as a resync source, since the daemon started.
    pub resync_sent_bytes: u64,
    /// Resyncs that ended.
    pub resyncs_done: u64,
    /// Bytes the last verify found different (all verifies since start).
    pub verify_differing_bytes: u64,
    /// Verifies that ended.
    pub verifies_done: u64,
    /// Generation identifiers: current, bitmap, history (hex).
    pub generations: Vec<String>,
    /// The status as `drbdadm status` would print it.
    pub text: String,
}

/// A resync's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncInfo {
    /// Bytes to copy.
    pub total_bytes: u64,
    /// Bytes copied.
    pub done_bytes: u64,
    /// Bytes per second.
    pub bytes_per_s: u64,
    /// Seconds left, when known.
    pub eta_s: Option<u64>,
}

/// A verify's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyInfo {
    /// Bytes compared.
    pub checked_bytes: u64,
    /// Volume size.
    pub total_bytes: u64,
    /// Bytes found different.
    pub differing_bytes: u64,
}

/// A refusal: which field is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The field (argument) at fault, when one is.
    pub field: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// Machine-readable kind: "invalid", "not-found", "exists", "busy", "io", "protocol".
    pub kind: String,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the daemon.
    pub version: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result (shape per command) when ok.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Why not, when not ok.
    pub error: Option<Refusal>,
}

/// A target as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// iSCSI name.
    pub iqn: String,
    /// Portal group tag.
    pub tpgt: u16,
    /// Alias.
    pub alias: Option<String>,
    /// LUN numbers.
    pub luns: Vec<u16>,
    /// Allowed initiators (empty: any).
    pub acl: Vec<String>,
    /// Whether CHAP is required.
    pub chap: bool,
    /// Whether mutual CHAP is configured.
    pub mutual_chap: bool,
    /// Sessions logged in.
    pub sessions: usize,
}

/// A LUN as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunInfo {
    /// Target name.
    pub target: String,
    /// LUN number.
    pub lun: u16,
    /// Backing path.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Physical block size reported.
    pub physical_block_size: u32,
    /// Write cache enabled.
    pub write_cache: bool,
    /// Thin provisioned (a file: unmapped blocks are holes).
    pub thin: bool,
    /// O_DIRECT in effect.
    pub direct: bool,
    /// Unit serial (VPD 80h).
    pub serial: String,
    /// LU identity.
    pub uuid: String,
    /// Why the LUN is offline (it answers only INQUIRY, REPORT LUNS and REQUEST SENSE); `None`
    /// when it serves.
    #[serde(default)]
    pub offline: Option<String>,
}

/// One registration, as `pr show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrRegistrationInfo {
    /// Initiator port `IQN,i,0x<ISID>`, or the bare initiator name for every port of it.
    pub initiator_port: String,
    /// Target port `IQN,t,0x<TPGT>`, or "*" for every target port (ALL_TG_PT).
    pub target_port: String,
    /// Reservation key, `0x` and 16 hexadecimal digits.
    pub key: String,
    /// The APTPL bit it was registered with.
    pub aptpl: bool,
    /// Whether it holds the reservation.
    pub holder: bool,
}

/// A LUN's persistent reservations, as `pr show` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrInfo {
    /// Target name.
    pub target: String,
    /// LUN number.
    pub lun: u16,
    /// PRgeneration.
    pub generation: u32,
    /// APTPL active (the state survives restarts).
    pub aptpl: bool,
    /// Registrations in the order they were made.
    pub registrations: Vec<PrRegistrationInfo>,
    /// Reservation type (WE, EA, WERO, EARO, WEAR, EAAR), if reserved.
    pub reservation_type: Option<String>,
    /// Who holds it, in words: the holder's initiator port and key, or every registrant.
    #[serde(default)]
    pub reservation_holder: Option<String>,
    /// RESERVE(6)/(10) holder's initiator port, if any.
    pub legacy_holder: Option<String>,
    /// Number of the last state-changing reservation command.
    pub log_index: u64,
    /// The state file (APTPL).
    pub state_file: Option<String>,
    /// Why the LUN is offline, if it is.
    pub offline: Option<String>,
}

/// A session as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// TSIH.
    pub tsih: u16,
    /// InitiatorName.
    pub initiator: String,
    /// ISID in hex.
    pub isid: String,
    /// Target name.
    pub target: String,
    /// The portal the initiator connected to.
    pub portal: String,
    /// The initiator's address.
    pub peer: String,
    /// Connections in the session (1: MaxConnections=1).
    pub connections: u32,
    /// Negotiated parameters, "Key=Value".
    pub parameters: Vec<String>,
    /// Commands in flight now.
    pub commands_in_flight: usize,
}
