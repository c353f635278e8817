//! The messages two replicas of a volume exchange over the mirror link, as the replication
//! core sees them (the wire module frames, authenticates and checksums them). `P` is the data a
//! message carries: a registered buffer in the daemon, a small model in the simulator.

use crate::mirror::gi::GenIds;
use crate::mirror::meta::DiskState;

/// A node's role for a volume, as DRBD names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves the LUN.
    Primary,
    /// Mirrors the Primary; serves nothing.
    Secondary,
}

impl Role {
    /// The name `target-admin volume status` shows.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "Primary",
            Role::Secondary => "Secondary",
        }
    }
}

/// The state of the link to the peer, as DRBD names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Not connecting: split brain or unrelated data found, or disconnected by the admin.
    StandAlone,
    /// Waiting for the link, or exchanging state and bitmaps over it.
    Connecting,
    /// Both copies in sync and mirrored.
    Connected,
    /// This copy is the source of a resync.
    SyncSource,
    /// This copy is the target of a resync.
    SyncTarget,
}

impl ConnState {
    /// The name `target-admin volume status` shows.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::StandAlone => "StandAlone",
            ConnState::Connecting => "Connecting",
            ConnState::Connected => "Connected",
            ConnState::SyncSource => "SyncSource",
            ConnState::SyncTarget => "SyncTarget",
        }
    }
}

/// What a replica tells its peer when the link comes up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node id.
    pub node_id: u32,
    /// The volume's size as the sender has it.
    pub volume_bytes: u64,
    /// The sender's generation identifiers.
    pub gen: GenIds,
    /// The sender crashed as Primary and has not resynced since.
    pub crashed_primary: bool,
    /// The sender stopped uncleanly and has not resynced since (see
    /// [`Superblock::unclean`](crate::mirror::meta::Superblock::unclean)).
    pub unclean: bool,
    /// The sender's role.
    pub role: Role,
    /// The sender's disk state.
    pub disk: DiskState,
    /// The admin told the sender to give up its data in a split brain.
    pub discard_my_data: bool,
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg<P> {
    /// The sender's state, first on every connection.
    Hello(Hello),
    /// The sender's out-of-sync bitmap (64 bits per word), after both Hellos.
    Bitmap(Vec<u64>),
    /// A write of the Primary, to be applied in arrival order.
    Data {
        /// Sequence number of the write on this connection, echoed by [`Msg::DataAck`].
        seq: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Make it stable before acknowledging (WCE=0 or FUA).
        durable: bool,
        /// The bytes.
        data: P,
    },
    /// The write `seq` is applied (stable when it asked to be); `ok` false when the write
    /// failed on the peer's disk.
    DataAck {
        /// The write's sequence number.
        seq: u64,
        /// Whether the peer's write succeeded.
        ok: bool,
    },
    /// Make every write acknowledged so far stable, then answer with [`Msg::BarrierAck`].
    Barrier {
        /// Echoed.
        id: u64,
    },
    /// The barrier is done.
    BarrierAck {
        /// The barrier's id.
        id: u64,
        /// Whether the flush succeeded.
        ok: bool,
    },
    /// The resync target asks for a range.
    ResyncRequest {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// The resync source's data for a requested range.
    ResyncData {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// The bytes.
        data: P,
    },
    /// The target wrote a resync range stably (or dropped it, stale, to ask again).
    ResyncAck {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// False when the target dropped the data (an application write overtook it).
        applied: bool,
    },
    /// The target has every block: it takes the source's generation.
    ResyncDone,
    /// Online verify: the digest of a range on the sender; the peer compares its own.
    VerifyRequest {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// The sender's digest of the range.
        digest: u64,
    },
    /// The answer to a [`Msg::VerifyRequest`].
    VerifyReply {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Whether the two digests are equal.
        equal: bool,
    },
    /// A node whose copy cannot serve a read asks its peer.
    ReadRequest {
        /// Echoed.
        id: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// The answer to a [`Msg::ReadRequest`]; None when the peer could not read either.
    ReadReply {
        /// The request's id.
        id: u64,
        /// The bytes.
        data: Option<P>,
    },
    /// The sender's role changed.
    Role(Role),
    /// Keeps an idle link alive: the driver answers nothing and passes it to no one; a link on
    /// which nothing arrives for the link timeout is dropped.
    Ping,
}

impl<P> Msg<P> {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Hello(_) => "Hello",
            Msg::Bitmap(_) => "Bitmap",
            Msg::Data { .. } => "Data",
            Msg::DataAck { .. } => "DataAck",
            Msg::Barrier { .. } => "Barrier",
            Msg::BarrierAck { .. } => "BarrierAck",
            Msg::ResyncRequest { .. } => "ResyncRequest",
            Msg::ResyncData { .. } => "ResyncData",
            Msg::ResyncAck { .. } => "ResyncAck",
            Msg::ResyncDone => "ResyncDone",
            Msg::VerifyRequest { .. } => "VerifyRequest",
            Msg::VerifyReply { .. } => "VerifyReply",
            Msg::ReadRequest { .. } => "ReadRequest",
            Msg::ReadReply { .. } => "ReadReply",
            Msg::Role(_) => "Role",
            Msg::Ping => "Ping",
        }
    }
}
