//! The replication core of one volume on one node: DRBD protocol C between a Primary and a
//! Secondary, as a state machine without I/O. Inputs (requests from above, completions of the
//! local disk and metadata writes, messages from the peer, link up and down, admin commands)
//! go in through [`Replica::handle`]; what must happen comes out as [`Action`]s, in order, for a
//! driver to carry out: the daemon's driver over io_uring, or the deterministic simulator.
//!
//! The rules it keeps:
//! - A write completes only when the local write and the peer's are both done (stable when the
//!   write asked for it), or the peer is gone and the write is marked in the bitmap under a new
//!   data generation that is on disk.
//! - Every write (on either node) first has its extent in the committed activity log, so a
//!   crash leaves a bounded set to resync.
//! - Operations on overlapping ranges (application writes, the peer's writes, resync reads and
//!   writes) run one at a time in arrival order on both nodes, so both apply them in one order.
//! - On connect, the generation identifiers decide: in sync, bitmap or full resync and its
//!   direction, or split brain / unrelated data, which leave the volume StandAlone.
//! - The resync is driven by its target, a window of ranges at a time; its source reads a range
//!   only when no write to it is in flight, and sends the data before any later write to it.

use std::collections::{HashMap, VecDeque};

use crate::mirror::activity_log::{ActivityLog, Admit, Transaction};
use crate::mirror::bitmap::{Bitmap, PAGE_BYTES};
use crate::mirror::gi::{decide, CopyFlags, Decision, GenIds};
use crate::mirror::meta::{DiskState, Superblock};
use crate::mirror::msg::{ConnState, Hello, Msg, Role};

/// Most operations waiting for their range before the peer is considered hostile (the
/// Primary's own window and the resync window are far below it).
const MAX_WAITING: usize = 4096;

/// A resync target writes the bitmap pages it cleared every this many bytes (see
/// `note_resync_progress`).
const RESYNC_SAVE_BYTES: u64 = 4 << 20;

/// What configures one replica.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes of a resync request.
    pub resync_chunk: u64,
    /// Resync requests the target keeps outstanding.
    pub resync_window: usize,
    /// Seed of the generator of new generation ids (the daemon seeds it from the OS).
    pub seed: u64,
    /// Most bytes per second the resync target asks for (0: no limit). Needs
    /// [`Input::Tick`]s to refill.
    pub resync_rate_bytes_per_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync_chunk: 256 * 1024,
            resync_window: 8,
            seed: 0x5eed,
            resync_rate_bytes_per_s: 0,
        }
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// This node is not Primary: the LUN is unavailable here (NOT READY, 02h/04h/0Ch).
    NotPrimary,
    /// No UpToDate copy can be reached (NOT READY, 02h/04h/0Ch).
    Unavailable,
    /// The local disk failed the I/O.
    Io,
    /// The admin command is not possible now (the reason is logged), or the request lies
    /// outside the volume.
    Refused,
}

/// What the layer above or the admin asks, the disk and metadata report, or the link brings.
#[derive(Debug)]
pub enum Input<P> {
    /// Write `data` (`len` bytes) at `offset`; `durable` when it must be stable on completion.
    Write {
        /// The request's id, echoed in [`Action::Complete`].
        id: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// WCE=0 or FUA.
        durable: bool,
        /// The bytes.
        data: P,
    },
    /// Make every completed write stable on both copies (SYNCHRONIZE CACHE).
    Flush {
        /// The request's id.
        id: u64,
    },
    /// Read `len` bytes at `offset`.
    Read {
        /// The request's id.
        id: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// An [`Action::WriteLocal`] ended.
    LocalWritten {
        /// Its token.
        token: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// An [`Action::ReadLocal`] ended with the data, or None on failure.
    LocalRead {
        /// Its token.
        token: u64,
        /// The bytes.
        data: Option<P>,
    },
    /// An [`Action::FlushLocal`] ended.
    LocalFlushed {
        /// Its token.
        token: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// An [`Action::WriteMeta`] is stable.
    MetaWritten {
        /// Its token.
        token: u64,
    },
    /// The link to the peer is up and authenticated.
    LinkUp,
    /// The link is gone.
    LinkDown,
    /// A message from the peer, with the link's sequence number of it (0, 1, 2, ... from
    /// [`Input::LinkUp`]).
    Message {
        /// Its sequence number on this link.
        seq: u64,
        /// The message.
        msg: Msg<P>,
    },
    /// Admin: become Primary; `force` takes this copy as UpToDate whatever its state.
    Promote {
        /// Echoed.
        id: u64,
        /// Force.
        force: bool,
    },
    /// Admin: become Secondary.
    Demote {
        /// Echoed.
        id: u64,
    },
    /// Stop cleanly: drop the link, let what is in flight end, empty the activity log (its
    /// extents' bitmap pages written first) and record a clean stop, so the next start marks
    /// nothing. Completes when all of that is on disk; the node serves nothing after it.
    Shutdown {
        /// Echoed.
        id: u64,
    },
    /// A [`Action::DigestLocal`] ended with the range's digest, or None when the read failed.
    LocalDigest {
        /// Its token.
        token: u64,
        /// The digest.
        digest: Option<u64>,
    },
    /// Admin: compare both copies range by range by digest (on the Primary, which holds each
    /// range against writes while it is compared); differing ranges are marked, logged and
    /// counted, and with `resync` copied from this side afterwards (the link is re-established
    /// for it).
    Verify {
        /// Echoed.
        id: u64,
        /// Resync what differs.
        resync: bool,
    },
    /// Admin: copy every block again, from the Primary (or, with no Primary, the copy with the
    /// lower node id) to the other: everything is marked and the link re-established.
    ResyncFull {
        /// Echoed.
        id: u64,
    },
    /// Time passes: the driver's clock, in nanoseconds from any fixed start, every few
    /// milliseconds (it refills the resync rate limit and times the resync's progress).
    Tick {
        /// Now.
        now_ns: u64,
    },
    /// Admin: take a (replaced) local disk back after a detach: its content is unknown, so it
    /// becomes Inconsistent and the next connect copies every block to it (on a Secondary).
    Attach {
        /// Echoed.
        id: u64,
    },
    /// Admin: leave StandAlone and connect again.
    Connect {
        /// Echoed.
        id: u64,
    },
    /// Admin: in a split brain, give up this copy's changes and take the peer's.
    DiscardMyData {
        /// Echoed.
        id: u64,
    },
}

/// A metadata write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaWrite {
    /// Bitmap pages, so marks made outside the activity log (a merged peer bitmap, a full
    /// sync, a verify) survive a crash.
    Bitmap(Vec<(usize, Box<[u8; PAGE_BYTES]>)>),
    /// The superblock, to its slot.
    Superblock(Superblock),
    /// Bitmap pages, then an activity-log transaction, in that order; when `flush_data_first`,
    /// the local copy is flushed before either (a transaction that drops extents must not
    /// land before the writes to them that completed into the disk's cache are stable, or a
    /// crash could lose such a write with nothing left to mark it: DRBD writes its activity
    /// log with a pre-flush for the same reason).
    Al {
        /// Flush the data disk first.
        flush_data_first: bool,
        /// Pages to write first: index and bytes.
        pages: Vec<(usize, Box<[u8; PAGE_BYTES]>)>,
        /// The transaction.
        tx: Transaction,
    },
}

/// What the driver must do, in the order given.
#[derive(Debug)]
pub enum Action<P> {
    /// Write to the local copy; report [`Input::LocalWritten`].
    WriteLocal {
        /// Echo in the report.
        token: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Stable on completion.
        durable: bool,
        /// The bytes.
        data: P,
    },
    /// Read from the local copy; report [`Input::LocalRead`].
    ReadLocal {
        /// Echo in the report.
        token: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Read a range of the local copy and digest it (any strong checksum, the same on both
    /// nodes); report [`Input::LocalDigest`].
    DigestLocal {
        /// Echo in the report.
        token: u64,
        /// Byte offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Flush the local copy; report [`Input::LocalFlushed`].
    FlushLocal {
        /// Echo in the report.
        token: u64,
    },
    /// Write metadata stably; report [`Input::MetaWritten`].
    WriteMeta {
        /// Echo in the report.
        token: u64,
        /// What.
        what: MetaWrite,
    },
    /// Send to the peer, after everything sent before.
    Send(Msg<P>),
    /// Drop the link (a protocol error, split brain, ...); the reason is for the log.
    Disconnect(String),
    /// A request or admin command ended.
    Complete {
        /// Its id.
        id: u64,
        /// Read data (for a read), or why it failed.
        result: Result<Option<P>, Failure>,
    },
}

/// Counters of what the replica did, for status and for the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes the resync wrote here as its target.
    pub resync_written_bytes: u64,
    /// Bytes the resync read here as its source.
    pub resync_read_bytes: u64,
    /// Out-of-sync bytes when the last resync started (after the bitmaps were merged).
    pub resync_planned_bytes: u64,
    /// Resyncs that ended.
    pub resyncs_done: u64,
    /// Connections refused for split brain.
    pub split_brains: u64,
    /// Bytes online verify compared.
    pub verify_checked_bytes: u64,
    /// Bytes online verify found different.
    pub verify_differing_bytes: u64,
    /// Verify runs that ended.
    pub verifies_done: u64,
    /// Times the local disk was given up after an I/O error.
    pub detaches: u64,
}

/// What an operation waiting for its range (and its activity-log extents) is.
#[derive(Debug)]
enum Op<P> {
    AppWrite {
        id: u64,
        durable: bool,
        data: P,
    },
    PeerWrite {
        seq: u64,
        durable: bool,
        data: P,
        /// The link it came on: its acknowledgement belongs to that link alone.
        link: u64,
    },
    ResyncWrite {
        data: P,
        link: u64,
    },
    ResyncRead {
        link: u64,
    },
    VerifyLocal {
        link: u64,
    },
    VerifyPeer {
        digest: u64,
        link: u64,
    },
}

impl<P> Op<P> {
    fn needs_al(&self) -> bool {
        matches!(self, Op::AppWrite { .. } | Op::PeerWrite { .. })
    }
}

#[derive(Debug)]
struct Waiting<P> {
    offset: u64,
    len: u64,
    op: Op<P>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerPart {
    Waiting(u64),
    Acked,
    Missed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LocalPart {
    Running,
    Done,
    Failed,
    /// No local copy (Diskless): the peer's copy is the only one.
    Skipped,
}

#[derive(Debug)]
enum Running {
    AppWrite {
        id: u64,
        local: LocalPart,
        peer: PeerPart,
        /// The write was marked in the bitmap and must wait for the new generation on disk.
        generation: u64,
    },
    PeerWrite {
        seq: u64,
        link: u64,
    },
    ResyncWrite {
        link: u64,
    },
    ResyncRead {
        link: u64,
    },
    /// Held from the local digest until the peer's answer, so no write changes the range.
    VerifyLocal {
        link: u64,
    },
    VerifyPeer {
        digest: u64,
        link: u64,
    },
}

#[derive(Debug)]
struct InFlight {
    offset: u64,
    len: u64,
    al: bool,
    what: Running,
}

#[derive(Debug)]
enum Token {
    Range,
    Read {
        id: u64,
    },
    Flush(u64),
    /// A local read for the peer's [`Msg::ReadRequest`] `rid`, on link `link`.
    PeerRead {
        rid: u64,
        link: u64,
    },
    PeerBarrier {
        id: u64,
        link: u64,
    },
    /// The resync target flushes everything it holds before it takes the source's generation.
    FlushBeforeAdopt {
        link: u64,
    },
    Meta(MetaKind),
}

#[derive(Debug)]
enum MetaKind {
    Superblock,
    Al(Transaction),
    /// Bitmap pages; a resync target starts once they are on disk.
    Pages {
        then_start_target: Option<u64>,
    },
}

#[derive(Debug)]
struct Flush {
    id: u64,
    local: Option<bool>,
    peer: Option<bool>,
}

/// What to do once the superblock that holds a change is on disk.
#[derive(Debug)]
enum AfterSb {
    Complete(u64),
    GenerationDurable(u64),
    SendResyncDone(u64),
    EmptyLogAfterOpen,
    StartSyncTarget(u64),
}

/// An online verify under way.
#[derive(Clone, Copy, Debug)]
struct VerifyRun {
    id: u64,
    cursor: u64,
    outstanding: usize,
    checked: u64,
    differing: u64,
    resync: bool,
}

/// How far an online verify has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Bytes compared so far.
    pub checked_bytes: u64,
    /// The volume's size.
    pub total_bytes: u64,
    /// Bytes found different so far.
    pub differing_bytes: u64,
}

/// Where a clean shutdown stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShutdownStage {
    /// Waiting for what is in flight to end.
    Draining(u64),
    /// The activity log is being emptied.
    EmptyingLog(u64),
    /// The clean superblock is being written.
    Recording,
}

/// The replication state of one volume on one node.
pub struct Replica<P> {
    verify: Option<VerifyRun>,
    /// The resync target asks for data only once its marks and its Inconsistent state are on
    /// disk.
    resync_may_request: bool,
    /// The resync target's final flush is under way.
    adopt_flushing: bool,
    /// Ranges this source sent resync data for and the target has not acknowledged.
    resync_sent: std::collections::HashSet<(u64, u64)>,
    /// Bitmap page writes in flight (a clean shutdown waits for them).
    pages_in_flight: usize,
    /// A write completed into the peer's cache only, and no barrier has made it stable since.
    peer_cached: bool,
    /// Writes sent to the peer's cache so far, and the count each barrier was sent after.
    cached_sent: u64,
    barrier_cached: HashMap<u64, u64>,
    /// Detached, the link dropped while the peer held completed writes only in its cache: they
    /// may be gone, so no flush may report success any more (until the disk is attached).
    peer_cache_lost: bool,
    /// Pages written to disk with marks in them: rewritten when a resync ends, so marks it
    /// cleared do not come back after a later crash.
    disk_marked: std::collections::BTreeSet<usize>,
    /// On a resync target: pages with marks cleared by the resync since they were last written,
    /// and the bytes cleared since then (written every [`RESYNC_SAVE_BYTES`], so a target that
    /// crashes resumes near where it stopped instead of from the start).
    resync_cleared_pages: std::collections::BTreeSet<usize>,
    resync_unsaved_bytes: u64,
    /// Reads this node (Primary without an UpToDate copy) asked the peer for, by request id:
    /// the application read's id.
    remote_reads: HashMap<u64, u64>,
    next_remote_read: u64,
    /// Local reads running for the peer's read requests.
    peer_reads: usize,
    /// The activity log's extents found at start-up, emptied once marked (see `open`).
    al_at_open: Vec<u32>,
    /// No write takes activity-log extents until those of start-up are marked on disk: a new
    /// transaction would drop them from the log before their bits are stable.
    al_ready: bool,
    shutdown: Option<ShutdownStage>,
    cfg: Config,
    sb: Superblock,
    role: Role,
    conn: ConnState,
    crashed_primary: bool,
    /// See [`Superblock::unclean`].
    unclean: bool,
    discard_my_data: bool,
    bitmap: Bitmap,
    al: ActivityLog,
    al_shift: u32,
    rng: u64,
    next_token: u64,
    tokens: HashMap<u64, Token>,
    waiting: VecDeque<Waiting<P>>,
    in_flight: HashMap<u64, InFlight>,
    flushes: HashMap<u64, Flush>,
    next_barrier: u64,
    barrier_of: HashMap<u64, u64>,
    /// The link's incarnation (0 while down): a new number on every LinkUp, so completions of a
    /// previous link's operations do not answer on the new one.
    link: u64,
    links_made: u64,
    rx_seq: u64,
    peer: Option<Hello>,
    peer_bitmap_seen: bool,
    decision: Option<Decision>,
    next_data_seq: u64,
    data_waiters: HashMap<u64, u64>,
    /// Generation counter of "the current generation is on disk": writes marked in the bitmap
    /// complete only once `durable_generation` reaches the one they were marked under.
    generation: u64,
    durable_generation: u64,
    sb_in_flight: Option<Vec<AfterSb>>,
    sb_next: Option<Vec<AfterSb>>,
    resync_cursor: u64,
    resync_outstanding: usize,
    /// The driver's clock at the last tick.
    now_ns: u64,
    /// Bytes the target may still ask for before the next refill (with a rate limit).
    resync_tokens: u64,
    resync_started_ns: u64,
    resync_total_bytes: u64,
    resync_done_bytes: u64,
    counters: Counters,
}

/// Where the replica stands, for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node's role.
    pub role: Role,
    /// The peer's role, when connected.
    pub peer_role: Option<Role>,
    /// The link.
    pub conn: ConnState,
    /// This copy's state.
    pub disk: DiskState,
    /// The peer's copy's state, when connected.
    pub peer_disk: Option<DiskState>,
    /// Bytes marked out of sync.
    pub out_of_sync_bytes: u64,
    /// The generation identifiers.
    pub gen: GenIds,
    /// The last connect found split brain.
    pub split_brain: bool,
    /// The resync under way, seen from either end.
    pub resync: Option<ResyncProgress>,
    /// The online verify under way on this node.
    pub verify: Option<VerifyProgress>,
}

/// How far a resync has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncProgress {
    /// Bytes it set out to copy.
    pub total_bytes: u64,
    /// Bytes copied so far.
    pub done_bytes: u64,
    /// Bytes per second since it started (0 before the first tick).
    pub bytes_per_s: u64,
    /// Seconds left at that rate, when known.
    pub eta_s: Option<u64>,
}

impl<P: Clone> Replica<P> {
    /// Opens the replica from its metadata as read back: the superblock, the activity log's
    /// extents of the newest transaction and the number after it, and the bitmap. It starts Secondary and Connecting.
    /// Extents left in the log (an unclean stop) are marked out of sync, and that is written
    /// before any write starts (the first actions).
    pub fn open(
        cfg: Config,
        sb: Superblock,
        al_extents: &[u32],
        al_next_seq: u64,
        mut bitmap: Bitmap,
        out: &mut Vec<Action<P>>,
    ) -> Replica<P> {
        let al_shift = sb.al_extent_shift;
        // Transactions go on from the newest one found: a lower number in a later slot would
        // lose to the older ones at the next recovery.
        let al = ActivityLog::new(al_shift, sb.al_extents as usize, al_next_seq);
        let crashed_primary = sb.primary;
        let unclean = sb.unclean || !al_extents.is_empty();
        for &e in al_extents {
            bitmap.mark(u64::from(e) << al_shift, 1u64 << al_shift);
        }
        let al_at_open = al_extents.to_vec();
        let rng = cfg.seed | 1;
        let al_ready = al_at_open.is_empty();
        let mut r = Replica {
            verify: None,
            resync_may_request: false,
            adopt_flushing: false,
            resync_sent: std::collections::HashSet::new(),
            pages_in_flight: 0,
            peer_cached: false,
            cached_sent: 0,
            barrier_cached: HashMap::new(),
            peer_cache_lost: false,
            disk_marked: std::collections::BTreeSet::new(),
            resync_cleared_pages: std::collections::BTreeSet::new(),
            resync_unsaved_bytes: 0,
            remote_reads: HashMap::new(),
            next_remote_read: 1,
            peer_reads: 0,
            al_at_open,
            al_ready,
            shutdown: None,
            cfg,
            role: Role::Secondary,
            conn: ConnState::Connecting,
            crashed_primary,
            unclean,
            discard_my_data: false,
            bitmap,
            al,
            al_shift,
            rng,
            next_token: 1,
            tokens: HashMap::new(),
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            flushes: HashMap::new(),
            next_barrier: 1,
            barrier_of: HashMap::new(),
            link: 0,
            links_made: 0,
            rx_seq: 0,
            peer: None,
            peer_bitmap_seen: false,
            decision: None,
            next_data_seq: 0,
            data_waiters: HashMap::new(),
            generation: 0,
            durable_generation: 0,
            sb_in_flight: None,
            sb_next: None,
            resync_cursor: 0,
            resync_outstanding: 0,
            now_ns: 0,
            resync_tokens: 0,
            resync_started_ns: 0,
            resync_total_bytes: 0,
            resync_done_bytes: 0,
            counters: Counters::default(),
            sb,
        };
        if !al_extents.is_empty() {
            // First the unclean mark on disk, then the marked pages and an empty log: a crash in
            // between must not leave marked bits without the mark.
            r.persist(Some(AfterSb::EmptyLogAfterOpen), out);
        }
        r
    }

    /// Whether an application read would be served from the local copy now (Primary with an
    /// UpToDate copy): a cheap check for the driver's direct-read path.
    pub fn reads_locally(&self) -> bool {
        self.role == Role::Primary && self.sb.disk == DiskState::UpToDate
    }

    /// This node's view, for status.
    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            peer_role: self.peer.as_ref().map(|p| p.role),
            conn: self.conn,
            disk: self.sb.disk,
            peer_disk: self.peer.as_ref().map(|p| p.disk),
            out_of_sync_bytes: self.bitmap.out_of_sync_bytes(),
            gen: self.sb.gen,
            split_brain: self.decision == Some(Decision::SplitBrain),
            verify: self.verify.map(|v| VerifyProgress {
                checked_bytes: v.checked,
                total_bytes: self.sb.volume_bytes,
                differing_bytes: v.differing,
            }),
            resync: matches!(self.conn, ConnState::SyncSource | ConnState::SyncTarget).then(|| {
                let elapsed = self.now_ns.saturating_sub(self.resync_started_ns);
                let done = self.resync_done_bytes;
                let rate = if elapsed > 0 {
                    (u128::from(done) * 1_000_000_000 / u128::from(elapsed)) as u64
                } else {
                    0
                };
                let left = self.resync_total_bytes.saturating_sub(done);
                ResyncProgress {
                    total_bytes: self.resync_total_bytes,
                    done_bytes: done,
                    bytes_per_s: rate,
                    eta_s: (rate > 0).then(|| left.div_ceil(rate)),
                }
            }),
        }
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The bitmap.
    pub fn bitmap(&self) -> &Bitmap {
        &self.bitmap
    }

    /// Operations in flight or waiting (writes, resync, flushes).
    pub fn busy(&self) -> usize {
        self.in_flight.len() + self.waiting.len() + self.flushes.len()
    }

    /// Handles one input, appending what must happen to `out`.
    pub fn handle(&mut self, input: Input<P>, out: &mut Vec<Action<P>>) {
        match input {
            Input::Write {
                id,
                offset,
                len,
                durable,
                data,
            } => self.app_write(id, offset, len, durable, data, out),
            Input::Flush { id } => self.app_flush(id, out),
            Input::Read { id, offset, len } => self.app_read(id, offset, len, out),
            Input::LocalWritten { token, ok } => self.local_written(token, ok, out),
            Input::LocalRead { token, data } => self.local_read(token, data, out),
            Input::LocalFlushed { token, ok } => self.local_flushed(token, ok, out),
            Input::MetaWritten { token } => self.meta_written(token, out),
            Input::LinkUp => self.link_up(out),
            Input::LinkDown => self.link_down(out),
            Input::Message { seq, msg } => {
                if self.conn == ConnState::StandAlone || self.peer_link_dead() {
                    return;
                }
                if seq != self.rx_seq {
                    tracing::warn!(
                        expected = self.rx_seq,
                        got = seq,
                        kind = msg.kind(),
                        "mirror: message out of sequence (duplicated, lost or reordered): link dropped"
                    );
                    out.push(Action::Disconnect(format!(
                        "message {seq} out of sequence (expected {})",
                        self.rx_seq
                    )));
                    self.link_down(out);
                    return;
                }
                self.rx_seq += 1;
                self.message(msg, out);
            }
            Input::Promote { id, force } => self.promote(id, force, out),
            Input::Demote { id } => self.demote(id, out),
            Input::LocalDigest { token, digest } => self.local_digest(token, digest, out),
            Input::Verify { id, resync } => {
                if self.conn != ConnState::Connected || self.verify.is_some() {
                    self.refuse(
                        id,
                        "verify needs a connected, in-sync peer and no verify running",
                        out,
                    );
                    return;
                }
                // One node verifies at a time: the Primary, or with none the lower node id.
                let verifier = match self.peer.as_ref() {
                    Some(p) if self.role == Role::Primary => p.role != Role::Primary,
                    Some(p) => p.role != Role::Primary && self.sb.node_id < p.node_id,
                    None => false,
                };
                if !verifier {
                    self.refuse(
                        id,
                        "verify runs on the Primary (or, with none, node with the lower id)",
                        out,
                    );
                    return;
                }
                tracing::info!(resync, "mirror: online verify started");
                self.verify = Some(VerifyRun {
                    id,
                    cursor: 0,
                    outstanding: 0,
                    checked: 0,
                    differing: 0,
                    resync,
                });
                self.verify_step(out);
            }
            Input::ResyncFull { id } => {
                if self.conn != ConnState::Connected {
                    self.refuse(id, "resync --full needs a connected, in-sync peer", out);
                    return;
                }
                tracing::info!("mirror: full resync requested");
                self.bitmap.mark_all();
                self.persist_marks(out);
                out.push(Action::Disconnect("full resync requested".into()));
                self.link_down(out);
                out.push(Action::Complete {
                    id,
                    result: Ok(None),
                });
            }
            Input::Tick { now_ns } => {
                let rate = self.cfg.resync_rate_bytes_per_s;
                if rate > 0 && now_ns > self.now_ns {
                    let dt = now_ns - self.now_ns;
                    let add = (u128::from(rate) * u128::from(dt) / 1_000_000_000) as u64;
                    // At most a tenth of a second's worth saved up, and never less than one
                    // request, so a low rate still moves.
                    let cap = (rate / 10).max(self.cfg.resync_chunk);
                    self.resync_tokens = self.resync_tokens.saturating_add(add).min(cap);
                }
                self.now_ns = self.now_ns.max(now_ns);
                self.resync_step(out);
            }
            Input::Attach { id } => {
                if self.sb.disk != DiskState::Diskless {
                    self.refuse(id, "attach: the local disk is attached", out);
                    return;
                }
                if self.role == Role::Primary {
                    self.refuse(id, "attach on the Primary: demote first", out);
                    return;
                }
                tracing::info!("mirror: local disk attached, to be synced in full");
                self.sb.gen = GenIds::unknown();
                self.sb.disk = DiskState::Inconsistent;
                self.peer_cache_lost = false;
                self.unclean = false;
                self.crashed_primary = false;
                self.persist(Some(AfterSb::Complete(id)), out);
                if self.link != 0 {
                    out.push(Action::Disconnect(
                        "disk attached: reconnect to sync".into(),
                    ));
                    self.link_down(out);
                }
            }
            Input::Connect { id } => {
                if self.conn == ConnState::StandAlone {
                    self.conn = ConnState::Connecting;
                }
                out.push(Action::Complete {
                    id,
                    result: Ok(None),
                });
            }
            Input::Shutdown { id } => {
                self.shutdown = Some(ShutdownStage::Draining(id));
                if self.link != 0 {
                    out.push(Action::Disconnect("shutting down".into()));
                }
                // Still Primary here: writes the peer did not confirm are marked, under a new
                // generation, and complete; then nothing new is taken.
                self.link_down(out);
                self.role = Role::Secondary;
                self.conn = ConnState::StandAlone;
                self.try_shutdown(out);
            }
            Input::DiscardMyData { id } => {
                if self.role == Role::Primary {
                    self.refuse(id, "discard-my-data on the Primary: demote first", out);
                    return;
                }
                self.discard_my_data = true;
                if self.conn == ConnState::StandAlone {
                    self.conn = ConnState::Connecting;
                }
                out.push(Action::Complete {
                    id,
                    result: Ok(None),
                });
            }
        }
    }

    fn peer_link_dead(&self) -> bool {
        self.link == 0
    }

    fn token(&mut self, t: Token) -> u64 {
        let n = self.next_token;
        self.next_token += 1;
        self.tokens.insert(n, t);
        n
    }

    fn range_token(&mut self) -> u64 {
        let n = self.next_token;
        self.next_token += 1;
        self.tokens.insert(n, Token::Range);
        n
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Page `index`'s bytes, as they go to disk now.
    fn page(&mut self, index: usize) -> Box<[u8; PAGE_BYTES]> {
        let mut page = Box::new([0u8; PAGE_BYTES]);
        self.bitmap.page_bytes(index, &mut page);
        if page.iter().any(|&b| b != 0) {
            self.disk_marked.insert(index);
        }
        page
    }

    /// Rewrites the pages that went to disk with marks, as they are now (a resync ended and
    /// cleared them in memory).
    fn rewrite_marked_pages(&mut self, out: &mut Vec<Action<P>>) {
        let stale = std::mem::take(&mut self.disk_marked);
        self.write_current_pages(stale, out);
    }

    /// Writes bitmap pages `indices` as they are in memory now.
    fn write_current_pages(
        &mut self,
        indices: std::collections::BTreeSet<usize>,
        out: &mut Vec<Action<P>>,
    ) {
        let pages = indices.into_iter().map(|i| (i, self.page(i))).collect();
        self.write_pages(pages, out);
    }

    /// Writes bitmap pages (nothing to do for none).
    fn write_pages(
        &mut self,
        pages: Vec<(usize, Box<[u8; PAGE_BYTES]>)>,
        out: &mut Vec<Action<P>>,
    ) {
        if pages.is_empty() {
            return;
        }
        self.meta(
            MetaWrite::Bitmap(pages),
            MetaKind::Pages {
                then_start_target: None,
            },
            out,
        );
    }

    /// A resync write of `[offset, offset+len)` is stable here and its marks cleared in memory:
    /// every [`RESYNC_SAVE_BYTES`] the pages so cleared are written (the data under them is
    /// stable, resync writes being durable, so the cleared marks may land). Marks only ever
    /// clear on a target during its resync, and page writes land in the order issued, so an
    /// older copy never overwrites a newer one.
    fn note_resync_progress(&mut self, offset: u64, len: u64, out: &mut Vec<Action<P>>) {
        let last = offset + len.max(1) - 1;
        for p in self.bitmap.page_of(offset)..=self.bitmap.page_of(last) {
            self.resync_cleared_pages.insert(p);
        }
        self.resync_unsaved_bytes += len;
        if self.resync_unsaved_bytes < RESYNC_SAVE_BYTES {
            return;
        }
        self.resync_unsaved_bytes = 0;
        let cleared = std::mem::take(&mut self.resync_cleared_pages);
        self.write_current_pages(cleared, out);
    }

    fn meta(&mut self, what: MetaWrite, kind: MetaKind, out: &mut Vec<Action<P>>) {
        if matches!(kind, MetaKind::Pages { .. }) {
            self.pages_in_flight += 1;
        }
        let token = self.token(Token::Meta(kind));
        out.push(Action::WriteMeta { token, what });
    }

    /// Writes the superblock as it stands now (one write at a time; changes made while one is
    /// in flight go into the next), running `after` once a write holding the change is stable.
    fn persist(&mut self, after: Option<AfterSb>, out: &mut Vec<Action<P>>) {
        if self.sb_in_flight.is_some() {
            let next = self.sb_next.get_or_insert_with(Vec::new);
            next.extend(after);
            return;
        }
        self.write_sb(after.into_iter().collect(), out);
    }

    fn write_sb(&mut self, after: Vec<AfterSb>, out: &mut Vec<Action<P>>) {
        self.sb.seq += 1;
        self.sb.primary = self.role == Role::Primary || self.crashed_primary;
        self.sb.unclean = self.unclean;
        self.sb_in_flight = Some(after);
        let sb = self.sb.clone();
        self.meta(MetaWrite::Superblock(sb), MetaKind::Superblock, out);
    }

    fn connected_to_peer(&self) -> bool {
        matches!(
            self.conn,
            ConnState::Connected | ConnState::SyncSource | ConnState::SyncTarget
        )
    }

    /// The link is up and the two are exchanging state and bitmaps.
    fn handshaking(&self) -> bool {
        self.link != 0 && self.conn == ConnState::Connecting
    }

    /// Writes are sent to the peer: it is connected and has (or is getting) a copy.
    fn replicating(&self) -> bool {
        self.connected_to_peer()
            && self
                .peer
                .as_ref()
                .is_some_and(|p| p.disk != DiskState::Diskless)
    }

    // ---- requests from above -------------------------------------------------------------

    fn app_write(
        &mut self,
        id: u64,
        offset: u64,
        len: u64,
        durable: bool,
        data: P,
        out: &mut Vec<Action<P>>,
    ) {
        if self.role != Role::Primary {
            out.push(Action::Complete {
                id,
                result: Err(Failure::NotPrimary),
            });
            return;
        }
        if len == 0 || offset.saturating_add(len) > self.sb.volume_bytes {
            out.push(Action::Complete {
                id,
                result: Err(Failure::Refused),
            });
            return;
        }
        if self.sb.disk == DiskState::Diskless && !self.replicating() {
            out.push(Action::Complete {
                id,
                result: Err(Failure::Unavailable),
            });
            return;
        }
        self.waiting.push_back(Waiting {
            offset,
            len,
            op: Op::AppWrite { id, durable, data },
        });
        self.pump(out);
    }

    /// The local disk failed an I/O: it is given up (Diskless, as DRBD's on-io-error detach).
    /// Writes go to the peer alone from now on, reads are refused (02h/04h/0Ch), and the copy
    /// comes back only through [`Input::Attach`] and a full resync.
    fn detach(&mut self, out: &mut Vec<Action<P>>) {
        if self.sb.disk == DiskState::Diskless {
            return;
        }
        tracing::error!("mirror: the local disk failed: detached (Diskless)");
        self.sb.disk = DiskState::Diskless;
        self.counters.detaches += 1;
        self.persist(None, out);
        if self.link != 0 {
            // The peer learns of it in the next handshake (and a resync target has nothing to
            // write into any more).
            out.push(Action::Disconnect("local disk detached".into()));
            self.link_down(out);
        }
    }

    fn app_read(&mut self, id: u64, offset: u64, len: u64, out: &mut Vec<Action<P>>) {
        if self.role != Role::Primary {
            out.push(Action::Complete {
                id,
                result: Err(Failure::NotPrimary),
            });
            return;
        }
        if len == 0 || offset.saturating_add(len) > self.sb.volume_bytes {
            out.push(Action::Complete {
                id,
                result: Err(Failure::Refused),
            });
            return;
        }
        if self.sb.disk != DiskState::UpToDate {
            // Never from a copy that is not UpToDate: through the peer when its copy is.
            let peer_uptodate = self.conn == ConnState::Connected
                && self
                    .peer
                    .as_ref()
                    .is_some_and(|p| p.disk == DiskState::UpToDate);
            if !peer_uptodate {
                out.push(Action::Complete {
                    id,
                    result: Err(Failure::Unavailable),
                });
                return;
            }
            let rid = self.next_remote_read;
            self.next_remote_read += 1;
            self.remote_reads.insert(rid, id);
            out.push(Action::Send(Msg::ReadRequest {
                id: rid,
                offset,
                len,
            }));
            return;
        }
        let token = self.token(Token::Read { id });
        out.push(Action::ReadLocal { token, offset, len });
    }

    fn app_flush(&mut self, id: u64, out: &mut Vec<Action<P>>) {
        if self.role != Role::Primary {
            out.push(Action::Complete {
                id,
                result: Err(Failure::NotPrimary),
            });
            return;
        }
        if self.sb.disk == DiskState::Diskless && !self.replicating() {
            out.push(Action::Complete {
                id,
                result: Err(Failure::Unavailable),
            });
            return;
        }
        let token = self.token(Token::Flush(id));
        out.push(Action::FlushLocal { token });
        let peer = if self.replicating() {
            let b = self.next_barrier;
            self.next_barrier += 1;
            self.barrier_of.insert(b, id);
            self.barrier_cached.insert(b, self.cached_sent);
            out.push(Action::Send(Msg::Barrier { id: b }));
            None
        } else {
            Some(true)
        };
        self.flushes.insert(
            id,
            Flush {
                id,
                local: None,
                peer,
            },
        );
    }

    fn finish_flush(&mut self, id: u64, out: &mut Vec<Action<P>>) {
        let done = self
            .flushes
            .get(&id)
            .is_some_and(|f| f.local.is_some() && f.peer.is_some());
        if !done {
            return;
        }
        if let Some(f) = self.flushes.remove(&id) {
            // Detached, the peer's copy is the only one: its flush is the one that counts.
            let ok = if self.sb.disk == DiskState::Diskless {
                f.peer == Some(true) && !self.peer_cache_lost
            } else {
                f.local == Some(true)
            };
            out.push(Action::Complete {
                id: f.id,
                result: if ok { Ok(None) } else { Err(Failure::Io) },
            });
        }
        self.try_shutdown(out);
    }

    // ---- the range queue -----------------------------------------------------------------

    fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
        a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
    }

    /// Starts every waiting operation whose range is free of running ones and of earlier
    /// waiting ones, and whose extents are in the activity log (committing a transaction when
    /// needed, one at a time).
    fn pump(&mut self, out: &mut Vec<Action<P>>) {
        let mut i = 0;
        let mut al_blocked = false;
        while i < self.waiting.len() {
            let (offset, len) = (self.waiting[i].offset, self.waiting[i].len);
            let blocked_by_running = self
                .in_flight
                .values()
                .any(|f| Self::overlaps((f.offset, f.len), (offset, len)));
            let blocked_by_earlier = self
                .waiting
                .iter()
                .take(i)
                .any(|w| Self::overlaps((w.offset, w.len), (offset, len)));
            if blocked_by_running || blocked_by_earlier {
                i += 1;
                continue;
            }
            if self.handshaking() && matches!(self.waiting[i].op, Op::AppWrite { .. }) {
                // Marked now, a write could miss the bitmaps being exchanged: wait.
                i += 1;
                continue;
            }
            let needs_al = self.waiting[i].op.needs_al();
            if needs_al {
                if al_blocked || !self.al_ready {
                    i += 1;
                    continue;
                }
                match self.al.admit(offset, len) {
                    Admit::Hot => {}
                    Admit::Commit(tx) => {
                        let pages = self.pages_of_extents(&tx.evicted);
                        self.meta(
                            MetaWrite::Al {
                                flush_data_first: !tx.evicted.is_empty(),
                                pages,
                                tx: tx.clone(),
                            },
                            MetaKind::Al(tx),
                            out,
                        );
                        al_blocked = true;
                        i += 1;
                        continue;
                    }
                    Admit::Full => {
                        al_blocked = true;
                        i += 1;
                        continue;
                    }
                }
            }
            let Some(w) = self.waiting.remove(i) else {
                break;
            };
            self.start(w, needs_al, out);
        }
        self.try_shutdown(out);
    }

    /// Takes the next step of a clean shutdown once nothing is in flight.
    fn try_shutdown(&mut self, out: &mut Vec<Action<P>>) {
        let Some(ShutdownStage::Draining(id)) = self.shutdown else {
            return;
        };
        let busy =
            !self.in_flight.is_empty() || !self.waiting.is_empty() || !self.flushes.is_empty();
        // The start-up marks go to disk first: emptying the log before would lose them.
        if busy || !self.al_ready || self.pages_in_flight > 0 {
            return;
        }
        let active = self.al.active();
        if self.empty_log(&active, out) {
            self.shutdown = Some(ShutdownStage::EmptyingLog(id));
        }
    }

    /// Writes the bitmap pages of `extents`, then a transaction that empties the activity log
    /// (after a flush of the data disk). False when a transaction or a write holds the log.
    fn empty_log(&mut self, extents: &[u32], out: &mut Vec<Action<P>>) -> bool {
        let Some(tx) = self.al.clear() else {
            return false;
        };
        let pages = self.pages_of_extents(extents);
        self.meta(
            MetaWrite::Al {
                flush_data_first: true,
                pages,
                tx: tx.clone(),
            },
            MetaKind::Al(tx),
            out,
        );
        true
    }

    /// Every bitmap page with a bit set, with its bytes.
    fn marked_pages(&mut self) -> Vec<(usize, Box<[u8; PAGE_BYTES]>)> {
        let words_per_page = PAGE_BYTES / 8;
        let marked: Vec<usize> = self
            .bitmap
            .words()
            .chunks(words_per_page)
            .enumerate()
            .filter(|(_, w)| w.iter().any(|&x| x != 0))
            .map(|(i, _)| i)
            .collect();
        marked.into_iter().map(|i| (i, self.page(i))).collect()
    }

    /// Writes the pages with marks made outside the activity log (a verify, a full sync).
    fn persist_marks(&mut self, out: &mut Vec<Action<P>>) {
        let pages = self.marked_pages();
        self.write_pages(pages, out);
    }

    /// The bitmap pages that cover `extents`, with their bytes.
    fn pages_of_extents(&mut self, extents: &[u32]) -> Vec<(usize, Box<[u8; PAGE_BYTES]>)> {
        let mut pages: Vec<usize> = Vec::new();
        for &e in extents {
            let start = u64::from(e) << self.al_shift;
            let end = (start + (1u64 << self.al_shift)).min(self.sb.volume_bytes.max(1)) - 1;
            for p in self.bitmap.page_of(start)..=self.bitmap.page_of(end) {
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
        }
        pages.into_iter().map(|p| (p, self.page(p))).collect()
    }

    fn start(&mut self, w: Waiting<P>, al: bool, out: &mut Vec<Action<P>>) {
        let Waiting { offset, len, op } = w;
        let token = self.range_token();
        // What runs, and the local I/O it needs: a write (durable, data) or a read.
        let (what, write) = match op {
            Op::AppWrite { id, durable, data } => {
                // Detached, the peer's copy is the only one: a write it holds only in its
                // cache could be lost with it before any flush, so every write is stable there.
                let durable = durable || self.sb.disk == DiskState::Diskless;
                if !durable && self.replicating() {
                    self.peer_cached = true;
                    self.cached_sent += 1;
                }
                let peer = if self.replicating() {
                    let seq = self.next_data_seq;
                    self.next_data_seq += 1;
                    self.data_waiters.insert(seq, token);
                    out.push(Action::Send(Msg::Data {
                        seq,
                        offset,
                        len,
                        durable,
                        data: data.clone(),
                    }));
                    PeerPart::Waiting(seq)
                } else {
                    self.bitmap.mark(offset, len);
                    PeerPart::Missed
                };
                let diskless = self.sb.disk == DiskState::Diskless;
                let what = Running::AppWrite {
                    id,
                    local: if diskless {
                        LocalPart::Skipped
                    } else {
                        LocalPart::Running
                    },
                    peer,
                    generation: self.generation,
                };
                (what, (!diskless).then_some((durable, data)))
            }
            Op::PeerWrite {
                seq,
                durable,
                data,
                link,
            } => (Running::PeerWrite { seq, link }, Some((durable, data))),
            Op::ResyncWrite { data, link } => (Running::ResyncWrite { link }, Some((true, data))),
            Op::ResyncRead { link } => (Running::ResyncRead { link }, None),
            Op::VerifyLocal { link } => {
                out.push(Action::DigestLocal { token, offset, len });
                (Running::VerifyLocal { link }, None)
            }
            Op::VerifyPeer { digest, link } => {
                out.push(Action::DigestLocal { token, offset, len });
                (Running::VerifyPeer { digest, link }, None)
            }
        };
        let digest_only = matches!(
            what,
            Running::VerifyLocal { .. } | Running::VerifyPeer { .. }
        );
        let skipped = matches!(
            what,
            Running::AppWrite {
                local: LocalPart::Skipped,
                ..
            }
        );
        self.in_flight.insert(
            token,
            InFlight {
                offset,
                len,
                al,
                what,
            },
        );
        if digest_only {
            return;
        }
        if skipped {
            // Nothing local to wait for; it may even be complete already (never: the peer's
            // part is at least being sent).
            self.try_complete_app_write(token, out);
            return;
        }
        out.push(match write {
            Some((durable, data)) => Action::WriteLocal {
                token,
                offset,
                len,
                durable,
                data,
            },
            None => Action::ReadLocal { token, offset, len },
        });
    }

    /// Ends a running operation: frees its range and extents, and starts what waited on them.
    fn retire(&mut self, token: u64, out: &mut Vec<Action<P>>) -> Option<InFlight> {
        let f = self.in_flight.remove(&token)?;
        self.tokens.remove(&token);
        if f.al {
            self.al.release(f.offset, f.len);
        }
        self.pump(out);
        Some(f)
    }

    fn try_complete_app_write(&mut self, token: u64, out: &mut Vec<Action<P>>) {
        let Some(f) = self.in_flight.get(&token) else {
            return;
        };
        let Running::AppWrite {
            id,
            local,
            peer,
            generation,
        } = f.what
        else {
            return;
        };
        let peer_done = match peer {
            PeerPart::Acked => true,
            PeerPart::Missed => self.durable_generation >= generation,
            PeerPart::Waiting(_) => false,
        };
        if local == LocalPart::Running || !peer_done {
            return;
        }
        let (offset, len) = (f.offset, f.len);
        if local == LocalPart::Done && peer == PeerPart::Acked {
            // Both copies hold it now: whole granules of it are in sync.
            self.bitmap.clear(offset, len);
        }
        self.retire(token, out);
        // Done when a copy that counts holds it: the local one, or (detached) the peer's.
        let ok = local == LocalPart::Done || peer == PeerPart::Acked;
        out.push(Action::Complete {
            id,
            result: if ok { Ok(None) } else { Err(Failure::Io) },
        });
    }

    // ---- completions ---------------------------------------------------------------------

    fn local_written(&mut self, token: u64, ok: bool, out: &mut Vec<Action<P>>) {
        let Some(f) = self.in_flight.get_mut(&token) else {
            return;
        };
        let (offset, len) = (f.offset, f.len);
        match &mut f.what {
            Running::AppWrite { local, .. } => {
                *local = if ok {
                    LocalPart::Done
                } else {
                    LocalPart::Failed
                };
                if !ok {
                    tracing::warn!(offset, len, "mirror: local write failed");
                    self.detach(out);
                }
                self.try_complete_app_write(token, out);
            }
            Running::PeerWrite { seq, link } => {
                let (seq, link) = (*seq, *link);
                if ok {
                    // Only a write of this link says the range is now equal: after a new link's
                    // bitmaps were merged, a bit set there is newer than this write.
                    if self.conn == ConnState::SyncTarget && link == self.link {
                        self.bitmap.clear(offset, len);
                    }
                } else {
                    self.detach(out);
                }
                self.retire(token, out);
                if link == self.link && self.connected_to_peer() {
                    out.push(Action::Send(Msg::DataAck { seq, ok }));
                }
            }
            Running::ResyncWrite { link } => {
                let link = *link;
                self.retire(token, out);
                if !ok {
                    self.detach(out);
                    return;
                }
                if link != self.link || self.conn != ConnState::SyncTarget {
                    return;
                }
                if ok {
                    self.bitmap.clear(offset, len);
                    self.counters.resync_written_bytes += len;
                    self.resync_done_bytes = self.resync_done_bytes.saturating_add(len);
                    self.note_resync_progress(offset, len, out);
                }
                out.push(Action::Send(Msg::ResyncAck {
                    offset,
                    len,
                    applied: ok,
                }));
                self.resync_outstanding = self.resync_outstanding.saturating_sub(1);
                self.resync_step(out);
            }
            Running::ResyncRead { .. }
            | Running::VerifyLocal { .. }
            | Running::VerifyPeer { .. } => {}
        }
    }

    /// The peer (a Primary without an UpToDate copy) reads through this node: from this copy
    /// when it is UpToDate, else the answer is "cannot".
    fn peer_read(&mut self, rid: u64, offset: u64, len: u64, out: &mut Vec<Action<P>>) {
        if self.peer_reads >= MAX_WAITING {
            self.protocol_error("too many read requests in flight", out);
            return;
        }
        let can = self.sb.disk == DiskState::UpToDate
            && len > 0
            && offset.saturating_add(len) <= self.sb.volume_bytes;
        if !can {
            out.push(Action::Send(Msg::ReadReply {
                id: rid,
                data: None,
            }));
            return;
        }
        self.peer_reads += 1;
        let link = self.link;
        let token = self.token(Token::PeerRead { rid, link });
        out.push(Action::ReadLocal { token, offset, len });
    }

    fn local_read(&mut self, token: u64, data: Option<P>, out: &mut Vec<Action<P>>) {
        if let Some(Token::PeerRead { rid, link }) = self.tokens.get(&token) {
            let (rid, link) = (*rid, *link);
            self.tokens.remove(&token);
            self.peer_reads = self.peer_reads.saturating_sub(1);
            if data.is_none() {
                tracing::warn!("mirror: local read for the peer failed");
                self.detach(out);
            }
            if link == self.link && self.connected_to_peer() {
                out.push(Action::Send(Msg::ReadReply { id: rid, data }));
            }
            return;
        }
        match self.tokens.get(&token) {
            Some(Token::Read { id }) => {
                let id = *id;
                self.tokens.remove(&token);
                if data.is_none() {
                    // A read error: the local copy is given up like after a write error.
                    tracing::warn!("mirror: local read failed");
                    self.detach(out);
                }
                out.push(Action::Complete {
                    id,
                    result: data.map(Some).ok_or(Failure::Io),
                });
            }
            Some(Token::Range) => {
                let Some(f) = self.in_flight.get(&token) else {
                    return;
                };
                let Running::ResyncRead { link } = f.what else {
                    return;
                };
                let (offset, len) = (f.offset, f.len);
                // Sent before the range is freed: no later write to it can overtake the data.
                if link == self.link && self.conn == ConnState::SyncSource {
                    if let Some(data) = data {
                        self.counters.resync_read_bytes += len;
                        self.resync_sent.insert((offset, len));
                        out.push(Action::Send(Msg::ResyncData { offset, len, data }));
                    } else {
                        tracing::warn!(offset, len, "mirror: resync read failed");
                        self.retire(token, out);
                        self.detach(out);
                        return;
                    }
                }
                self.retire(token, out);
            }
            _ => {}
        }
    }

    fn local_flushed(&mut self, token: u64, ok: bool, out: &mut Vec<Action<P>>) {
        match self.tokens.remove(&token) {
            Some(Token::Flush(id)) => {
                if let Some(f) = self.flushes.get_mut(&id) {
                    f.local = Some(ok);
                }
                self.finish_flush(id, out);
            }
            Some(Token::FlushBeforeAdopt { link }) => {
                self.adopt_flushing = false;
                if link == self.link && self.conn == ConnState::SyncTarget {
                    if ok && self.bitmap.count() == 0 && self.resync_outstanding == 0 {
                        self.finish_sync_target(out);
                    } else if !ok {
                        tracing::error!(
                            "mirror: flush before taking the source's generation failed"
                        );
                        out.push(Action::Disconnect("resync target flush failed".into()));
                        self.link_down(out);
                    } else {
                        self.resync_step(out);
                    }
                }
            }
            Some(Token::PeerBarrier { id, link })
                if link == self.link && self.connected_to_peer() =>
            {
                out.push(Action::Send(Msg::BarrierAck { id, ok }));
            }
            _ => {}
        }
    }

    fn meta_written(&mut self, token: u64, out: &mut Vec<Action<P>>) {
        match self.tokens.remove(&token) {
            Some(Token::Meta(MetaKind::Al(tx))) => {
                self.al.committed(&tx);
                self.al_ready = true;
                if let Some(ShutdownStage::EmptyingLog(id)) = self.shutdown {
                    self.shutdown = Some(ShutdownStage::Recording);
                    self.crashed_primary = false;
                    self.persist(Some(AfterSb::Complete(id)), out);
                    return;
                }
                self.pump(out);
            }
            Some(Token::Meta(MetaKind::Pages { then_start_target })) => {
                self.pages_in_flight = self.pages_in_flight.saturating_sub(1);
                self.try_shutdown(out);
                if let Some(link) = then_start_target {
                    if link == self.link && self.conn == ConnState::SyncTarget {
                        self.persist(Some(AfterSb::StartSyncTarget(link)), out);
                    }
                }
            }
            Some(Token::Meta(MetaKind::Superblock)) => {
                let done = self.sb_in_flight.take().unwrap_or_default();
                if let Some(next) = self.sb_next.take() {
                    self.write_sb(next, out);
                }
                for after in done {
                    match after {
                        AfterSb::Complete(id) => out.push(Action::Complete {
                            id,
                            result: Ok(None),
                        }),
                        AfterSb::GenerationDurable(g) => {
                            self.durable_generation = self.durable_generation.max(g);
                            let tokens: Vec<u64> = self.in_flight.keys().copied().collect();
                            for t in tokens {
                                self.try_complete_app_write(t, out);
                            }
                        }
                        AfterSb::SendResyncDone(link) => {
                            if link == self.link && self.conn == ConnState::SyncTarget {
                                out.push(Action::Send(Msg::ResyncDone));
                                self.conn = ConnState::Connected;
                                self.counters.resyncs_done += 1;
                                tracing::info!("mirror: resync done (target)");
                            }
                        }
                        AfterSb::EmptyLogAfterOpen => {
                            // The log's extents are in the bitmap: write their pages, empty it.
                            let extents = std::mem::take(&mut self.al_at_open);
                            self.empty_log(&extents, out);
                        }
                        AfterSb::StartSyncTarget(link) => {
                            if link == self.link && self.conn == ConnState::SyncTarget {
                                self.resync_may_request = true;
                                self.resync_step(out);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // ---- the link --------------------------------------------------------------------------

    fn link_up(&mut self, out: &mut Vec<Action<P>>) {
        if self.conn == ConnState::StandAlone {
            out.push(Action::Disconnect("StandAlone: not connecting".into()));
            return;
        }
        self.links_made += 1;
        self.link = self.links_made;
        self.rx_seq = 0;
        self.peer = None;
        self.peer_bitmap_seen = false;
        self.decision = None;
        self.next_data_seq = 0;
        self.conn = ConnState::Connecting;
        out.push(Action::Send(Msg::Hello(Hello {
            node_id: self.sb.node_id,
            volume_bytes: self.sb.volume_bytes,
            gen: self.sb.gen,
            crashed_primary: self.crashed_primary,
            unclean: self.unclean,
            role: self.role,
            disk: self.sb.disk,
            discard_my_data: self.discard_my_data,
        })));
    }

    fn link_down(&mut self, out: &mut Vec<Action<P>>) {
        let had_link = self.link != 0;
        let was_established = self.connected_to_peer();
        // Completions of this link's operations no longer answer on any link.
        self.link = 0;
        // Reads asked of the peer will not be answered: no copy to read from.
        for (_, app) in std::mem::take(&mut self.remote_reads) {
            out.push(Action::Complete {
                id: app,
                result: Err(Failure::Unavailable),
            });
        }
        if self.conn != ConnState::StandAlone {
            self.conn = ConnState::Connecting;
        }
        self.peer = None;
        self.resync_outstanding = 0;
        self.resync_may_request = false;
        self.adopt_flushing = false;
        self.resync_sent.clear();
        self.data_waiters.clear();
        // Flushes waiting for the peer's barrier: the peer's copy is now marked where it may
        // lack anything, so the local flush is enough.
        let ids: Vec<u64> = self.barrier_of.drain().map(|(_, id)| id).collect();
        self.barrier_cached.clear();
        let diskless = self.sb.disk == DiskState::Diskless;
        if diskless && self.peer_cached {
            tracing::error!("mirror: detached, and the link dropped with writes in the peer's cache only: flushes fail from now on");
            self.peer_cache_lost = true;
        }
        for id in ids {
            if let Some(f) = self.flushes.get_mut(&id) {
                // With no local copy, nothing covers the writes now: the flush fails.
                f.peer = Some(!diskless);
            }
            self.finish_flush(id, out);
        }
        // A verify's held ranges get no answer now: released, and the run ends.
        let held: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| matches!(f.what, Running::VerifyLocal { .. }))
            .map(|(t, _)| *t)
            .collect();
        for t in held {
            self.in_flight.remove(&t);
            self.tokens.remove(&t);
        }
        if let Some(v) = self.verify.take() {
            self.waiting
                .retain(|w| !matches!(w.op, Op::VerifyLocal { .. }));
            tracing::warn!(
                checked = v.checked,
                "mirror: online verify interrupted by the link"
            );
            out.push(Action::Complete {
                id: v.id,
                result: Err(Failure::Unavailable),
            });
        }
        if !had_link || !was_established || self.role != Role::Primary {
            self.pump(out);
            return;
        }
        // The peer may even have taken the current generation as its own (a resync whose end
        // this side did not hear of): always a new one.
        self.new_generation(out);
        // Writes the peer may not have: marked, complete once the generation is on disk.
        let generation = self.generation;
        let mut tokens = Vec::new();
        for (token, f) in self.in_flight.iter_mut() {
            if let Running::AppWrite {
                peer,
                generation: g,
                ..
            } = &mut f.what
            {
                if matches!(peer, PeerPart::Waiting(_)) {
                    *peer = PeerPart::Missed;
                    *g = generation;
                    self.bitmap.mark(f.offset, f.len);
                    tokens.push(*token);
                }
            }
        }
        for t in tokens {
            self.try_complete_app_write(t, out);
        }
        self.pump(out);
    }

    /// The Primary writes without its peer from now on: a new data generation, on disk before
    /// any write that the peer misses completes.
    fn new_generation(&mut self, out: &mut Vec<Action<P>>) {
        let fresh = self.random();
        self.sb.gen.new_generation(fresh);
        self.generation += 1;
        let g = self.generation;
        tracing::info!(
            current = format_args!("{:016x}", self.sb.gen.current),
            bitmap = format_args!("{:016x}", self.sb.gen.bitmap),
            "mirror: new data generation (writing without the peer)"
        );
        self.persist(Some(AfterSb::GenerationDurable(g)), out);
    }

    fn message(&mut self, msg: Msg<P>, out: &mut Vec<Action<P>>) {
        match msg {
            Msg::Hello(h) => self.hello(h, out),
            Msg::Bitmap(words) => self.peer_bitmap(&words, out),
            Msg::Data {
                seq,
                offset,
                len,
                durable,
                data,
            } => {
                let ok = self.role == Role::Secondary && self.connected_to_peer();
                let link = self.link;
                let op = Op::PeerWrite {
                    seq,
                    durable,
                    data,
                    link,
                };
                self.enqueue_from_peer(ok, offset, len, op, "Data", out);
            }
            Msg::DataAck { seq, ok } => {
                let Some(token) = self.data_waiters.remove(&seq) else {
                    self.protocol_error("DataAck for no write", out);
                    return;
                };
                if let Some(f) = self.in_flight.get_mut(&token) {
                    let (offset, len) = (f.offset, f.len);
                    if let Running::AppWrite { peer, .. } = &mut f.what {
                        *peer = PeerPart::Acked;
                    }
                    if !ok {
                        tracing::warn!(offset, len, "mirror: the peer's write failed");
                        self.bitmap.mark(offset, len);
                    }
                }
                self.try_complete_app_write(token, out);
            }
            Msg::Barrier { id } => {
                let link = self.link;
                let token = self.token(Token::PeerBarrier { id, link });
                out.push(Action::FlushLocal { token });
            }
            Msg::BarrierAck { id, ok } => {
                // Everything sent before this barrier is stable there now; if nothing was sent to
                // the cache after it, nothing is in the peer's cache alone.
                if ok && self.barrier_cached.remove(&id) == Some(self.cached_sent) {
                    self.peer_cached = false;
                }
                let Some(flush) = self.barrier_of.remove(&id) else {
                    self.protocol_error("BarrierAck for no barrier", out);
                    return;
                };
                if let Some(f) = self.flushes.get_mut(&flush) {
                    f.peer = Some(ok);
                }
                self.finish_flush(flush, out);
            }
            Msg::ResyncRequest { offset, len } => {
                let ok = self.conn == ConnState::SyncSource;
                let op = Op::ResyncRead { link: self.link };
                self.enqueue_from_peer(ok, offset, len, op, "ResyncRequest", out);
            }
            Msg::ResyncData { offset, len, data } => {
                let ok = self.conn == ConnState::SyncTarget;
                let link = self.link;
                let op = Op::ResyncWrite { data, link };
                self.enqueue_from_peer(ok, offset, len, op, "ResyncData", out);
            }
            Msg::ResyncAck {
                offset,
                len,
                applied,
            } => {
                if self.conn != ConnState::SyncSource {
                    self.protocol_error("ResyncAck out of place", out);
                    return;
                }
                if !self.resync_sent.remove(&(offset, len)) {
                    self.protocol_error("ResyncAck for data not sent", out);
                    return;
                }
                if applied {
                    self.bitmap.clear(offset, len);
                    self.resync_done_bytes = self.resync_done_bytes.saturating_add(len);
                }
            }
            Msg::ResyncDone => {
                if self.conn != ConnState::SyncSource {
                    self.protocol_error("ResyncDone out of place", out);
                    return;
                }
                if self.bitmap.count() != 0 {
                    tracing::warn!(
                        left = self.bitmap.out_of_sync_bytes(),
                        "mirror: the target ended the resync with blocks still marked here"
                    );
                }
                self.sb.gen.clear_bitmap();
                self.crashed_primary = false;
                self.unclean = false;
                self.rewrite_marked_pages(out);
                if let Some(p) = self.peer.as_mut() {
                    p.disk = DiskState::UpToDate;
                }
                self.conn = ConnState::Connected;
                self.counters.resyncs_done += 1;
                tracing::info!("mirror: resync done (source)");
                self.persist(None, out);
            }
            Msg::VerifyRequest {
                offset,
                len,
                digest,
            } => {
                let ok = self.connected_to_peer();
                let op = Op::VerifyPeer {
                    digest,
                    link: self.link,
                };
                self.enqueue_from_peer(ok, offset, len, op, "VerifyRequest", out);
            }
            Msg::VerifyReply { offset, len, equal } => self.verify_reply(offset, len, equal, out),
            Msg::ReadRequest { id, offset, len } => self.peer_read(id, offset, len, out),
            Msg::ReadReply { id, data } => match self.remote_reads.remove(&id) {
                Some(app) => out.push(Action::Complete {
                    id: app,
                    result: data.map(Some).ok_or(Failure::Unavailable),
                }),
                None => self.protocol_error("a ReadReply for no ReadRequest", out),
            },
            Msg::Ping => {}
            Msg::Role(role) => {
                if role == Role::Primary && self.role == Role::Primary {
                    self.protocol_error("both nodes Primary", out);
                    return;
                }
                if let Some(p) = self.peer.as_mut() {
                    p.role = role;
                }
            }
        }
    }

    /// Queues an operation the peer asked for, or drops the link when it is out of place here
    /// (`allowed` false) or outside the volume.
    fn enqueue_from_peer(
        &mut self,
        allowed: bool,
        offset: u64,
        len: u64,
        op: Op<P>,
        kind: &str,
        out: &mut Vec<Action<P>>,
    ) {
        if !allowed {
            self.protocol_error(&format!("{kind} out of place"), out);
            return;
        }
        if len == 0 || offset.saturating_add(len) > self.sb.volume_bytes {
            self.protocol_error(&format!("{kind} outside the volume"), out);
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            self.protocol_error(
                &format!("{kind}: more than {MAX_WAITING} operations queued"),
                out,
            );
            return;
        }
        self.waiting.push_back(Waiting { offset, len, op });
        self.pump(out);
    }

    fn protocol_error(&mut self, what: &str, out: &mut Vec<Action<P>>) {
        tracing::warn!(what, "mirror: protocol error from the peer: link dropped");
        out.push(Action::Disconnect(what.to_string()));
        self.link_down(out);
    }

    fn hello(&mut self, h: Hello, out: &mut Vec<Action<P>>) {
        if self.peer.is_some() || self.conn != ConnState::Connecting {
            self.protocol_error("a second Hello", out);
            return;
        }
        if h.volume_bytes != self.sb.volume_bytes {
            tracing::warn!(
                mine = self.sb.volume_bytes,
                peer = h.volume_bytes,
                "mirror: the peer's copy has another size: refused"
            );
            self.stand_alone("the volume's size differs", out);
            return;
        }
        if h.node_id == self.sb.node_id {
            self.stand_alone("the peer has this node's id", out);
            return;
        }
        let both_primary = h.role == Role::Primary && self.role == Role::Primary;
        let mine = CopyFlags {
            node_id: self.sb.node_id,
            crashed_primary: self.crashed_primary,
        };
        let theirs = CopyFlags {
            node_id: h.node_id,
            crashed_primary: h.crashed_primary,
        };
        let diskless = self.sb.disk == DiskState::Diskless || h.disk == DiskState::Diskless;
        let mut d = if diskless {
            Decision::InSync
        } else {
            decide(&self.sb.gen, mine, &h.gen, theirs)
        };
        if both_primary && d != Decision::SplitBrain {
            self.stand_alone("both nodes are Primary", out);
            return;
        }
        if d == Decision::SplitBrain {
            match (self.discard_my_data, h.discard_my_data) {
                (true, false) => d = Decision::TargetBitmap,
                (false, true) => d = Decision::SourceBitmap,
                _ => {}
            }
        } else if d == Decision::Unrelated {
            match (self.discard_my_data, h.discard_my_data) {
                (true, false) => d = Decision::TargetFull,
                (false, true) => d = Decision::SourceFull,
                _ => {}
            }
        }
        self.decision = Some(d);
        self.peer = Some(h);
        match d {
            Decision::SplitBrain => {
                self.counters.split_brains += 1;
                tracing::error!(
                    "mirror: split brain: both copies took writes the other has not seen; \
                     StandAlone until the admin runs `target-admin volume discard-my-data` on \
                     the node whose changes are to be dropped"
                );
                self.stand_alone_keep("split brain", out);
                return;
            }
            Decision::Unrelated => {
                tracing::error!(
                    "mirror: the two copies share no data generation (another volume's data?): \
                     StandAlone"
                );
                self.stand_alone_keep("unrelated data", out);
                return;
            }
            Decision::TargetBitmap | Decision::TargetFull if self.role == Role::Primary => {
                self.stand_alone("the Primary's copy would be overwritten", out);
                return;
            }
            _ => {}
        }
        out.push(Action::Send(Msg::Bitmap(self.bitmap.words().to_vec())));
    }

    fn stand_alone(&mut self, why: &str, out: &mut Vec<Action<P>>) {
        tracing::warn!(why, "mirror: connection refused: StandAlone");
        self.stand_alone_keep(why, out);
    }

    fn stand_alone_keep(&mut self, why: &str, out: &mut Vec<Action<P>>) {
        out.push(Action::Disconnect(why.to_string()));
        self.link_down(out);
        self.conn = ConnState::StandAlone;
    }

    fn peer_bitmap(&mut self, words: &[u64], out: &mut Vec<Action<P>>) {
        let (Some(d), Some(peer)) = (self.decision, self.peer.clone()) else {
            self.protocol_error("Bitmap before Hello", out);
            return;
        };
        if self.peer_bitmap_seen || self.conn != ConnState::Connecting {
            self.protocol_error("a second Bitmap", out);
            return;
        }
        self.peer_bitmap_seen = true;
        if self.sb.disk == DiskState::Diskless || peer.disk == DiskState::Diskless {
            // One side has no disk: nothing to sync; the Primary writes to the copy there is.
            self.conn = ConnState::Connected;
            tracing::info!("mirror: connected, one side Diskless: no resync");
            self.pump(out);
            return;
        }
        self.bitmap.merge_words(words);
        let d = match d {
            Decision::InSync if self.bitmap.count() > 0 => {
                // Same generation, but a crash left extents marked: the Primary (or else the
                // lower node id) is the source.
                // Only an UpToDate copy can be the source. A copy that stopped uncleanly may
                // have lost cached writes in those extents that the other still holds: the
                // clean copy is the source.
                let mine_ok = self.sb.disk == DiskState::UpToDate;
                let theirs_ok = peer.disk == DiskState::UpToDate;
                let me_first = match (mine_ok, theirs_ok, self.unclean, peer.unclean) {
                    (true, false, _, _) => true,
                    (false, true, _, _) => false,
                    (false, false, _, _) => {
                        self.stand_alone("neither copy is UpToDate", out);
                        return;
                    }
                    (_, _, false, true) => true,
                    (_, _, true, false) => false,
                    _ => match (self.role, peer.role) {
                        (Role::Primary, _) => true,
                        (_, Role::Primary) => false,
                        _ => self.sb.node_id < peer.node_id,
                    },
                };
                if me_first {
                    Decision::SourceBitmap
                } else {
                    Decision::TargetBitmap
                }
            }
            other => other,
        };
        let source = matches!(d, Decision::SourceBitmap | Decision::SourceFull);
        if source && self.sb.disk != DiskState::UpToDate {
            self.stand_alone(
                "this copy is not UpToDate and cannot be a resync source",
                out,
            );
            return;
        }
        if matches!(d, Decision::SourceFull | Decision::TargetFull) {
            self.bitmap.mark_all();
        }
        self.counters.resync_planned_bytes = self.bitmap.out_of_sync_bytes();
        self.resync_total_bytes = self.bitmap.out_of_sync_bytes();
        self.resync_done_bytes = 0;
        self.resync_started_ns = self.now_ns;
        let link = self.link;
        match d {
            Decision::InSync => {
                self.conn = ConnState::Connected;
                if self.sb.disk != DiskState::UpToDate && peer.disk == DiskState::UpToDate {
                    self.sb.disk = DiskState::UpToDate;
                    self.persist(None, out);
                }
                tracing::info!("mirror: connected, in sync");
            }
            Decision::SourceBitmap | Decision::SourceFull => {
                self.conn = ConnState::SyncSource;
                self.resync_sent.clear();
                self.persist_marks(out);
                if let Some(p) = self.peer.as_mut() {
                    p.disk = DiskState::Inconsistent;
                }
                tracing::info!(
                    bytes = self.bitmap.out_of_sync_bytes(),
                    full = d == Decision::SourceFull,
                    "mirror: connected, resync source"
                );
            }
            Decision::TargetBitmap | Decision::TargetFull => {
                self.conn = ConnState::SyncTarget;
                self.sb.disk = DiskState::Inconsistent;
                self.resync_cursor = 0;
                tracing::info!(
                    bytes = self.bitmap.out_of_sync_bytes(),
                    full = d == Decision::TargetFull,
                    "mirror: connected, resync target"
                );
                // The merged marks, then Inconsistent, are on disk before the first resync
                // write lands.
                self.resync_may_request = false;
                let pages = self.marked_pages();
                self.meta(
                    MetaWrite::Bitmap(pages),
                    MetaKind::Pages {
                        then_start_target: Some(link),
                    },
                    out,
                );
            }
            Decision::SplitBrain | Decision::Unrelated => {}
        }
        self.pump(out);
    }

    /// The target asks for more, or ends the resync when nothing is left.
    fn resync_step(&mut self, out: &mut Vec<Action<P>>) {
        if self.conn != ConnState::SyncTarget || !self.resync_may_request || self.adopt_flushing {
            return;
        }
        let limited = self.cfg.resync_rate_bytes_per_s > 0;
        let mut throttled = false;
        while self.resync_outstanding < self.cfg.resync_window {
            match self
                .bitmap
                .next_run(self.resync_cursor, self.cfg.resync_chunk)
            {
                Some((offset, len)) => {
                    if limited && self.resync_tokens < len {
                        throttled = true;
                        break;
                    }
                    if limited {
                        self.resync_tokens -= len;
                    }
                    self.resync_cursor = offset + len;
                    self.resync_outstanding += 1;
                    out.push(Action::Send(Msg::ResyncRequest { offset, len }));
                }
                None => break,
            }
        }
        if self.resync_outstanding > 0 || throttled {
            return;
        }
        if self.bitmap.count() > 0 {
            // Marked again behind the cursor (a failed write): another pass.
            if self.resync_cursor != 0 {
                self.resync_cursor = 0;
                self.resync_step(out);
            }
            return;
        }
        // Everything this copy holds, writes from the peer still in the disk's cache included,
        // is made stable before it claims the source's generation: afterwards nothing marks
        // them if this node loses power.
        if !self.adopt_flushing {
            self.adopt_flushing = true;
            let link = self.link;
            let token = self.token(Token::FlushBeforeAdopt { link });
            out.push(Action::FlushLocal { token });
        }
    }

    /// The resync target's data is complete and stable: it takes the source's generation.
    fn finish_sync_target(&mut self, out: &mut Vec<Action<P>>) {
        let Some(peer) = self.peer.clone() else {
            return;
        };
        self.sb.gen.adopt(&peer.gen);
        self.sb.disk = DiskState::UpToDate;
        self.crashed_primary = false;
        self.unclean = false;
        self.discard_my_data = false;
        self.rewrite_marked_pages(out);
        let link = self.link;
        self.persist(Some(AfterSb::SendResyncDone(link)), out);
    }

    // ---- online verify -----------------------------------------------------------------------

    /// Queues the next ranges to compare, or ends the run.
    fn verify_step(&mut self, out: &mut Vec<Action<P>>) {
        let Some(mut v) = self.verify else {
            return;
        };
        let volume = self.sb.volume_bytes;
        while v.outstanding < self.cfg.resync_window && v.cursor < volume {
            let len = self.cfg.resync_chunk.min(volume - v.cursor);
            self.waiting.push_back(Waiting {
                offset: v.cursor,
                len,
                op: Op::VerifyLocal { link: self.link },
            });
            v.cursor += len;
            v.outstanding += 1;
        }
        self.verify = Some(v);
        if v.outstanding == 0 {
            self.verify = None;
            self.counters.verifies_done += 1;
            tracing::info!(
                checked = v.checked,
                differing = v.differing,
                "mirror: online verify done"
            );
            out.push(Action::Complete {
                id: v.id,
                result: Ok(None),
            });
            if v.resync && v.differing > 0 && self.link != 0 {
                // Reconnect: the handshake finds the marked ranges and copies them from the
                // Primary (this node).
                out.push(Action::Disconnect(
                    "verify found differences: resync".into(),
                ));
                self.link_down(out);
            }
            return;
        }
        self.pump(out);
    }

    fn local_digest(&mut self, token: u64, digest: Option<u64>, out: &mut Vec<Action<P>>) {
        let Some(f) = self.in_flight.get(&token) else {
            return;
        };
        let (offset, len) = (f.offset, f.len);
        match f.what {
            Running::VerifyLocal { link } => {
                match digest {
                    Some(digest) if link == self.link && self.connected_to_peer() => {
                        // The range stays held until the peer answers.
                        out.push(Action::Send(Msg::VerifyRequest {
                            offset,
                            len,
                            digest,
                        }));
                    }
                    _ => {
                        self.retire(token, out);
                        self.verify_ended_range(offset, len, false, out);
                    }
                }
            }
            Running::VerifyPeer {
                digest: theirs,
                link,
            } => {
                self.retire(token, out);
                if link == self.link && self.connected_to_peer() {
                    out.push(Action::Send(Msg::VerifyReply {
                        offset,
                        len,
                        equal: digest == Some(theirs),
                    }));
                }
            }
            _ => {}
        }
    }

    fn verify_reply(&mut self, offset: u64, len: u64, equal: bool, out: &mut Vec<Action<P>>) {
        let token = self.in_flight.iter().find_map(|(t, f)| {
            (matches!(f.what, Running::VerifyLocal { .. }) && f.offset == offset && f.len == len)
                .then_some(*t)
        });
        let Some(token) = token else {
            self.protocol_error("VerifyReply for no verify request", out);
            return;
        };
        self.retire(token, out);
        self.verify_ended_range(offset, len, equal, out);
    }

    /// One range compared (or given up): counted, marked when different, and the run goes on.
    fn verify_ended_range(&mut self, offset: u64, len: u64, equal: bool, out: &mut Vec<Action<P>>) {
        let Some(v) = self.verify.as_mut() else {
            return;
        };
        v.outstanding = v.outstanding.saturating_sub(1);
        v.checked += len;
        self.counters.verify_checked_bytes += len;
        if !equal {
            v.differing += len;
            self.counters.verify_differing_bytes += len;
            self.bitmap.mark(offset, len);
            self.persist_marks(out);
            tracing::warn!(offset, len, "mirror: online verify: the copies differ here");
        }
        self.verify_step(out);
    }

    // ---- roles -----------------------------------------------------------------------------

    /// An admin command refused: logged with the reason, answered Refused.
    fn refuse(&mut self, id: u64, why: &str, out: &mut Vec<Action<P>>) {
        tracing::warn!(why, "mirror: admin command refused");
        out.push(Action::Complete {
            id,
            result: Err(Failure::Refused),
        });
    }

    fn promote(&mut self, id: u64, force: bool, out: &mut Vec<Action<P>>) {
        if self.role == Role::Primary {
            out.push(Action::Complete {
                id,
                result: Ok(None),
            });
            return;
        }
        let peer_primary = self.peer.as_ref().is_some_and(|p| p.role == Role::Primary);
        let peer_uptodate = self
            .peer
            .as_ref()
            .is_some_and(|p| p.disk == DiskState::UpToDate);
        let not_uptodate = self.sb.disk != DiskState::UpToDate;
        let refusal = if self.sb.disk == DiskState::Diskless {
            Some("promote: this node's disk is detached (Diskless)")
        } else if self.handshaking() {
            // The peer decides on the Hello it has: no change under it.
            Some("promote while connecting: try again")
        } else if peer_primary && self.connected_to_peer() {
            Some("promote: the peer is Primary")
        } else if not_uptodate && !force {
            Some("promote: this copy is not UpToDate (--force takes it as is)")
        } else if not_uptodate && self.connected_to_peer() && peer_uptodate {
            Some("promote --force while connected: let the resync finish")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.refuse(id, why, out);
            return;
        }
        let forced_initial = not_uptodate && self.connected_to_peer();
        self.sb.disk = DiskState::UpToDate;
        self.role = Role::Primary;
        tracing::info!("mirror: promoted to Primary");
        if forced_initial {
            // Neither copy was UpToDate (a new volume over existing data): this one is taken as
            // the data, in a new generation, and the link is re-established so the handshake
            // makes it the source of a full sync.
            tracing::info!("mirror: forced Primary with no UpToDate copy: full sync to the peer");
            // (Dropping the established link starts the Primary's new generation.)
            out.push(Action::Disconnect("forced Primary: full sync".into()));
            self.link_down(out);
        } else if self.connected_to_peer() {
            out.push(Action::Send(Msg::Role(Role::Primary)));
        } else {
            // Writing alone from now on.
            self.new_generation(out);
        }
        self.persist(Some(AfterSb::Complete(id)), out);
    }

    fn demote(&mut self, id: u64, out: &mut Vec<Action<P>>) {
        if self.role == Role::Secondary {
            out.push(Action::Complete {
                id,
                result: Ok(None),
            });
            return;
        }
        if self.handshaking() {
            self.refuse(id, "demote while connecting: try again", out);
            return;
        }
        let app_busy = !self.flushes.is_empty()
            || self
                .in_flight
                .values()
                .any(|f| matches!(f.what, Running::AppWrite { .. }))
            || self
                .waiting
                .iter()
                .any(|w| matches!(w.op, Op::AppWrite { .. }));
        if app_busy {
            self.refuse(id, "demote: writes in flight", out);
            return;
        }
        self.role = Role::Secondary;
        tracing::info!("mirror: demoted to Secondary");
        if self.connected_to_peer() {
            out.push(Action::Send(Msg::Role(Role::Secondary)));
        }
        self.persist(Some(AfterSb::Complete(id)), out);
    }
}
