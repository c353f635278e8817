//! One node of a mirrored volume on a reactor: drives the replication core
//! ([`crate::mirror::replica`]) over the data disk, the metadata store and a TCP link to the
//! peer. Requests from above (write, read, flush, promote, demote) go in as inputs and come back
//! when the core completes them. Every action the core emits is carried out here: local reads,
//! writes and flushes as tasks on the reactor, metadata writes through the store (after a flush
//! of the data disk where the core asks for one), messages through one sender task in order,
//! completions to their waiters.
//!
//! The link: the node with the lower id dials the peer, the other accepts; each connection
//! starts with the authenticated handshake of [`crate::mirror::wire`], then carries frames until
//! an error, a protocol violation or the peer's close, after which the node waits
//! `reconnect_interval` and tries again (unless the core went StandAlone). Data arrives in
//! buffers of the reactor's pool and goes to the disk from there.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::buffer::SharedBuf;
use crate::disk::Disk;
use crate::iobuf::IoBuf;
use crate::mirror::meta::Superblock;
use crate::mirror::msg::{ConnState, Msg};
use crate::mirror::replica::{Action, Config, Failure, Input, MetaWrite, Replica, Status};
use crate::mirror::store::{MetaStore, StoreError};
use crate::mirror::wire::{
    proof, session_key, verify_proof, Codec, HandshakeHello, HEADER_BYTES, HELLO_BYTES,
    PROOF_BYTES, TAG_BYTES,
};
use crate::net::{Gather, Segment, ShutdownHandle, TcpListener, TcpStream, Transport};
use crate::select::{select2, Either};

/// A message's data: none, or a shared pool buffer.
#[derive(Clone, Debug, Default)]
pub enum Payload {
    /// No data.
    #[default]
    Empty,
    /// Bytes in a pool buffer.
    Buf(SharedBuf),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Empty => &[],
            Payload::Buf(b) => b.as_slice(),
        }
    }
}

/// How one node of a volume is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: u32,
    /// The peer's id.
    pub peer_id: u32,
    /// The peer's mirror address (dialed by the node with the lower id).
    pub peer_addr: SocketAddr,
    /// The address this node dials from (its own mirror address), when set.
    pub local_ip: Option<std::net::IpAddr>,
    /// Connections from any other address are closed at once, unread (the node with the
    /// higher id accepts only its partner), when set.
    pub accept_from: Option<std::net::IpAddr>,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// The link is a private cable: frames carry no tag.
    pub private_cable: bool,
    /// The replication core's settings.
    pub replica: Config,
    /// Largest data segment on the link (at most the pool's buffer size).
    pub max_data: u32,
    /// Wait between connection attempts.
    pub reconnect_interval: Duration,
    /// A link on which nothing arrives for this long is dropped (a hung peer, a pulled cable);
    /// the handshake must finish within it too. Each side sends a ping every quarter of it
    /// while idle.
    pub link_timeout: Duration,
}

struct Waiter {
    result: Option<Result<Option<Payload>, Failure>>,
    waker: Option<Waker>,
}

/// Removes a request's waiter when the request ends or is dropped.
struct WaiterGuard<'a> {
    waiters: &'a RefCell<HashMap<u64, Waiter>>,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.waiters.borrow_mut().remove(&self.id);
    }
}

struct Link {
    shutdown: ShutdownHandle,
}

struct Inner<D: Disk, M: Disk> {
    cfg: NodeConfig,
    replica: RefCell<Replica<Payload>>,
    layout: Superblock,
    data: D,
    meta: MetaStore<M>,
    waiters: RefCell<HashMap<u64, Waiter>>,
    next_id: Cell<u64>,
    outbox: RefCell<VecDeque<Msg<Payload>>>,
    outbox_waker: RefCell<Option<Waker>>,
    /// Metadata writes not yet started, in the order the core issued them: they go to the
    /// store one at a time, so a newer copy of a bitmap page never lands before an older one.
    meta_queue: RefCell<VecDeque<(u64, MetaWrite)>>,
    /// A task is writing the queue out.
    meta_writing: Cell<bool>,
    link: RefCell<Option<Link>>,
    stopped: Cell<bool>,
    /// The clock the core's ticks count from.
    epoch: std::time::Instant,
    /// The ticker parks here while no resync runs (an idle node wakes for nothing).
    ticker_waker: RefCell<Option<Waker>>,
    /// Tasks waiting for [`MirrorNode::stop`].
    stop_wakers: RefCell<Vec<Waker>>,
}

/// A running node (cheap to clone; every clone is the same node).
pub struct MirrorNode<D: Disk + 'static, M: Disk + 'static> {
    inner: Rc<Inner<D, M>>,
}

impl<D: Disk + 'static, M: Disk + 'static> Clone for MirrorNode<D, M> {
    fn clone(&self) -> Self {
        MirrorNode {
            inner: self.inner.clone(),
        }
    }
}

impl<D: Disk + 'static, M: Disk + 'static> MirrorNode<D, M> {
    /// Loads the node's metadata and starts it on the current reactor: the link task (dialing
    /// the peer, or accepting on `listener` for the node with the higher id) and whatever the
    /// core asks for at start-up.
    pub async fn start(
        cfg: NodeConfig,
        data: D,
        meta: MetaStore<M>,
        listener: Option<TcpListener>,
    ) -> Result<MirrorNode<D, M>, StoreError> {
        let room = crate::reactor::buffer_pool().buffer_size();
        if cfg.max_data as usize > room {
            return Err(StoreError::Io(io::Error::other(format!(
                "max_data {} is larger than the reactor's buffers ({room} bytes): received data could not land",
                cfg.max_data
            ))));
        }
        let loaded = meta.load().await?;
        let bad = |why: String| StoreError::Io(io::Error::other(why));
        if cfg.replica.resync_chunk > u64::from(cfg.max_data) || cfg.replica.resync_chunk == 0 {
            return Err(bad(format!(
                "resync_chunk {} must be between 1 and max_data {}",
                cfg.replica.resync_chunk, cfg.max_data
            )));
        }
        if loaded.sb.al_extents < 2 || cfg.replica.resync_window == 0 {
            return Err(bad(
                "the activity log needs at least 2 extents (a write may span two) and the resync window at least 1".into(),
            ));
        }
        let mut out = Vec::new();
        let replica = Replica::open(
            cfg.replica.clone(),
            loaded.sb.clone(),
            &loaded.al_extents,
            loaded.al_next_seq,
            loaded.bitmap,
            &mut out,
        );
        let node = MirrorNode {
            inner: Rc::new(Inner {
                cfg,
                replica: RefCell::new(replica),
                layout: loaded.sb,
                data,
                meta,
                waiters: RefCell::new(HashMap::new()),
                next_id: Cell::new(1),
                outbox: RefCell::new(VecDeque::new()),
                outbox_waker: RefCell::new(None),
                meta_queue: RefCell::new(VecDeque::new()),
                meta_writing: Cell::new(false),
                link: RefCell::new(None),
                stopped: Cell::new(false),
                epoch: std::time::Instant::now(),
                ticker_waker: RefCell::new(None),
                stop_wakers: RefCell::new(Vec::new()),
            }),
        };
        node.execute(out);
        let link_node = node.clone();
        crate::spawn(async move { link_node.link_loop(listener).await });
        let tick_node = node.clone();
        crate::spawn(async move { tick_node.tick_loop().await });
        Ok(node)
    }

    /// Where the node stands.
    pub fn status(&self) -> Status {
        self.inner.replica.borrow().status()
    }

    /// Reads `len` bytes at `offset` straight from the local copy into `buf` when the core
    /// would serve the read from it (Primary, UpToDate), as the core's own local reads do (they
    /// are not ordered against writes either); `None` when it would not, or the read failed
    /// (the caller then goes through [`MirrorNode::read`], which handles the failure).
    pub async fn read_local_into<B: crate::iobuf::IoBufMut>(
        &self,
        buf: B,
        len: usize,
        offset: u64,
    ) -> (Option<()>, B) {
        let ok = !self.inner.stopped.get()
            && self.inner.replica.borrow().reads_locally()
            && offset.saturating_add(len as u64) <= self.inner.layout.volume_bytes;
        if !ok {
            return (None, buf);
        }
        let (r, buf) = self.inner.data.read(buf, 0, len, offset).await;
        (r.ok(), buf)
    }

    /// Operations in flight in the core.
    pub fn busy(&self) -> usize {
        self.inner.replica.borrow().busy()
    }

    /// What the core counted.
    pub fn counters(&self) -> crate::mirror::replica::Counters {
        self.inner.replica.borrow().counters().clone()
    }

    /// Stops cleanly: the link dropped, what is in flight ended, the activity log emptied and a
    /// clean stop recorded (the next start marks nothing to resync), then [`MirrorNode::stop`].
    pub async fn shutdown(&self) -> Result<(), Failure> {
        let r = self.request(|id| Input::Shutdown { id }).await.map(|_| ());
        self.stop();
        r
    }

    /// Stops connecting and drops the link at once, as a crash would leave the metadata.
    pub fn stop(&self) {
        self.inner.stopped.set(true);
        if let Some(l) = self.inner.link.borrow_mut().take() {
            l.shutdown.shutdown();
        }
        if let Some(w) = self.inner.outbox_waker.borrow_mut().take() {
            w.wake();
        }
        if let Some(w) = self.inner.ticker_waker.borrow_mut().take() {
            w.wake();
        }
        for w in self.inner.stop_wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the node is stopped.
    async fn stopped(&self) {
        std::future::poll_fn(|cx| {
            if self.inner.stopped.get() {
                Poll::Ready(())
            } else {
                self.inner.stop_wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Runs `f` unless the node stops first (None then).
    async fn unless_stopped<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        match select2(self.stopped(), f).await {
            Either::Left(()) => None,
            Either::Right(v) => Some(v),
        }
    }

    /// A metadata write or its pre-flush failed: the node cannot keep its promises any more.
    /// Every request waiting is failed, the link dropped, and the node stopped (until the disk
    /// is dealt with and it is started again).
    fn fail_node(&self, why: &str) {
        tracing::error!(why, "mirror: stopping this node");
        for w in self.inner.waiters.borrow_mut().values_mut() {
            if w.result.is_none() {
                w.result = Some(Err(Failure::Io));
                if let Some(waker) = w.waker.take() {
                    waker.wake();
                }
            }
        }
        self.stop();
    }

    /// Writes `data` at `offset`, stable on both copies when `durable`.
    /// Writes of more than `max_data` bytes are refused (the peer would refuse the frame): the
    /// layer above splits its writes at that size.
    pub async fn write(&self, offset: u64, data: SharedBuf, durable: bool) -> Result<(), Failure> {
        let len = data.len() as u64;
        if len > u64::from(self.inner.cfg.max_data) || len == 0 {
            return Err(Failure::Refused);
        }
        self.request(|id| Input::Write {
            id,
            offset,
            len,
            durable,
            data: Payload::Buf(data),
        })
        .await
        .map(|_| ())
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Payload, Failure> {
        self.request(|id| Input::Read { id, offset, len })
            .await
            .map(Option::unwrap_or_default)
    }

    /// Makes every completed write stable on both copies.
    pub async fn flush(&self) -> Result<(), Failure> {
        self.request(|id| Input::Flush { id }).await.map(|_| ())
    }

    /// Becomes Primary.
    pub async fn promote(&self, force: bool) -> Result<(), Failure> {
        self.request(|id| Input::Promote { id, force })
            .await
            .map(|_| ())
    }

    /// Compares both copies (see [`Input::Verify`]); returns the bytes found different.
    pub async fn verify(&self, resync: bool) -> Result<u64, Failure> {
        let before = self.counters().verify_differing_bytes;
        self.request(|id| Input::Verify { id, resync }).await?;
        Ok(self.counters().verify_differing_bytes - before)
    }

    /// Takes a replaced local disk back after a detach (see [`Input::Attach`]).
    pub async fn attach(&self) -> Result<(), Failure> {
        self.request(|id| Input::Attach { id }).await.map(|_| ())
    }

    /// Becomes Secondary.
    pub async fn demote(&self) -> Result<(), Failure> {
        self.request(|id| Input::Demote { id }).await.map(|_| ())
    }

    /// Copies every block again (see [`Input::ResyncFull`]).
    pub async fn resync_full(&self) -> Result<(), Failure> {
        self.request(|id| Input::ResyncFull { id })
            .await
            .map(|_| ())
    }

    /// Leaves StandAlone and connects again (see [`Input::Connect`]).
    pub async fn connect(&self) -> Result<(), Failure> {
        self.request(|id| Input::Connect { id }).await.map(|_| ())
    }

    /// In a split brain, gives up this copy's changes (see [`Input::DiscardMyData`]).
    pub async fn discard_my_data(&self) -> Result<(), Failure> {
        self.request(|id| Input::DiscardMyData { id })
            .await
            .map(|_| ())
    }

    /// Writes the queued metadata in order, each after the data flush it asks for.
    async fn write_meta_queue(&self) {
        loop {
            let next = self.inner.meta_queue.borrow_mut().pop_front();
            let Some((token, what)) = next else {
                self.inner.meta_writing.set(false);
                return;
            };
            if let MetaWrite::Al {
                flush_data_first: true,
                ..
            } = &what
            {
                if let Err(e) = self.inner.data.flush().await {
                    // Without the flush the transaction must not land.
                    tracing::error!(error = %e, "mirror: data flush before an activity-log transaction failed");
                    self.inner.meta_writing.set(false);
                    self.fail_node("the data disk failed a flush");
                    return;
                }
            }
            match self.inner.meta.write(&what, &self.inner.layout).await {
                Ok(()) => self.feed(Input::MetaWritten { token }),
                Err(e) => {
                    tracing::error!(error = %e, "mirror: metadata write failed");
                    self.inner.meta_writing.set(false);
                    self.fail_node("the metadata store failed a write");
                    return;
                }
            }
        }
    }

    async fn request(
        &self,
        make: impl FnOnce(u64) -> Input<Payload>,
    ) -> Result<Option<Payload>, Failure> {
        if self.inner.stopped.get() {
            return Err(Failure::Unavailable);
        }
        let id = self.inner.next_id.get();
        self.inner.next_id.set(id + 1);
        self.inner.waiters.borrow_mut().insert(
            id,
            Waiter {
                result: None,
                waker: None,
            },
        );
        // A caller that gives up (drops this future) takes its entry with it; a completion
        // that comes later finds none and is dropped (with any buffer it holds).
        let _guard = WaiterGuard {
            waiters: &self.inner.waiters,
            id,
        };
        self.feed(make(id));
        std::future::poll_fn(|cx| {
            let mut waiters = self.inner.waiters.borrow_mut();
            let Some(w) = waiters.get_mut(&id) else {
                return Poll::Ready(Err(Failure::Refused));
            };
            match w.result.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    w.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn feed(&self, input: Input<Payload>) {
        let mut out = Vec::new();
        self.inner.replica.borrow_mut().handle(input, &mut out);
        self.execute(out);
        if self.resyncing() {
            if let Some(w) = self.inner.ticker_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    fn resyncing(&self) -> bool {
        matches!(
            self.status().conn,
            ConnState::SyncSource | ConnState::SyncTarget
        )
    }

    /// Feeds the core the clock every 10 ms while a resync runs (its rate limit and progress);
    /// parked otherwise.
    async fn tick_loop(&self) {
        while !self.inner.stopped.get() {
            if !self.resyncing() {
                std::future::poll_fn(|cx| {
                    if self.resyncing() || self.inner.stopped.get() {
                        Poll::Ready(())
                    } else {
                        *self.inner.ticker_waker.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
            }
            let now_ns = u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.feed(Input::Tick { now_ns });
            crate::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn execute(&self, actions: Vec<Action<Payload>>) {
        for a in actions {
            match a {
                Action::WriteLocal {
                    token,
                    offset,
                    len,
                    durable,
                    data,
                } => {
                    let node = self.clone();
                    crate::spawn(async move {
                        let ok = match data {
                            Payload::Buf(buf) => {
                                let (r, _) = node
                                    .inner
                                    .data
                                    .write(buf, 0, len as usize, offset, durable)
                                    .await;
                                log_io("write", offset, &r);
                                r.is_ok()
                            }
                            Payload::Empty => false,
                        };
                        node.feed(Input::LocalWritten { token, ok });
                    });
                }
                Action::ReadLocal { token, offset, len } => {
                    let node = self.clone();
                    crate::spawn(async move {
                        let buf = crate::reactor::buffer_pool().get().await;
                        let (r, mut buf) = node.inner.data.read(buf, 0, len as usize, offset).await;
                        log_io("read", offset, &r);
                        let data = r.ok().map(|()| {
                            buf.set_len(len as usize);
                            Payload::Buf(buf.into_shared())
                        });
                        node.feed(Input::LocalRead { token, data });
                    });
                }
                Action::DigestLocal { token, offset, len } => {
                    let node = self.clone();
                    crate::spawn(async move {
                        let buf = crate::reactor::buffer_pool().get().await;
                        let (r, mut buf) = node.inner.data.read(buf, 0, len as usize, offset).await;
                        log_io("verify read", offset, &r);
                        let digest = r.ok().map(|()| {
                            buf.set_len(len as usize);
                            u64::from(crc32c::crc32c(buf.as_slice()))
                        });
                        node.feed(Input::LocalDigest { token, digest });
                    });
                }
                Action::FlushLocal { token } => {
                    let node = self.clone();
                    crate::spawn(async move {
                        let r = node.inner.data.flush().await;
                        log_io("flush", 0, &r);
                        node.feed(Input::LocalFlushed {
                            token,
                            ok: r.is_ok(),
                        });
                    });
                }
                Action::WriteMeta { token, what } => {
                    self.inner.meta_queue.borrow_mut().push_back((token, what));
                    if !self.inner.meta_writing.get() {
                        self.inner.meta_writing.set(true);
                        let node = self.clone();
                        crate::spawn(async move { node.write_meta_queue().await });
                    }
                }
                Action::Send(msg) => {
                    self.inner.outbox.borrow_mut().push_back(msg);
                    if let Some(w) = self.inner.outbox_waker.borrow_mut().take() {
                        w.wake();
                    }
                }
                Action::Disconnect(why) => {
                    tracing::warn!(why, "mirror: dropping the link");
                    if let Some(l) = self.inner.link.borrow().as_ref() {
                        l.shutdown.shutdown();
                    }
                }
                Action::Complete { id, result } => {
                    if let Some(w) = self.inner.waiters.borrow_mut().get_mut(&id) {
                        w.result = Some(result);
                        if let Some(waker) = w.waker.take() {
                            waker.wake();
                        }
                    }
                }
            }
        }
    }

    async fn link_loop(&self, listener: Option<TcpListener>) {
        let cfg = self.inner.cfg.clone();
        while !self.inner.stopped.get() {
            if self.status().conn == ConnState::Connecting {
                let stream = self
                    .unless_stopped(async {
                        if cfg.node_id < cfg.peer_id {
                            TcpStream::connect_from(cfg.peer_addr, cfg.local_ip).await
                        } else if let Some(l) = &listener {
                            loop {
                                match l.accept().await {
                                    Ok((_, from))
                                        if cfg
                                            .accept_from
                                            .is_some_and(|ip| ip != from.ip()) =>
                                    {
                                        tracing::warn!(%from, "mirror: connection from an address that is not the peer's: closed");
                                    }
                                    other => break other.map(|(s, _)| s),
                                }
                            }
                        } else {
                            Err(io::Error::other(
                                "no listener for the node with the higher id",
                            ))
                        }
                    })
                    .await;
                match stream {
                    None => break,
                    Some(Ok(stream)) => {
                        if let Some(Err(e)) = self.unless_stopped(self.serve_link(stream)).await {
                            tracing::warn!(error = %e, "mirror: link ended");
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "mirror: no link to the peer yet"),
                }
            }
            let pause = crate::time::sleep(cfg.reconnect_interval);
            if self.unless_stopped(pause).await.is_none() {
                break;
            }
        }
    }

    /// Handshake (within the link timeout), then frames both ways until the link fails.
    async fn serve_link(&self, stream: TcpStream) -> io::Result<()> {
        let _ = stream.set_nodelay();
        let timeout = self.inner.cfg.link_timeout;
        let (key, peer_id) = match crate::time::timeout(timeout, self.handshake(&stream)).await {
            Ok(r) => r?,
            Err(_) => {
                stream.shutdown();
                return Err(io::Error::other("handshake timed out"));
            }
        };
        self.run_link(stream, key, peer_id).await
    }

    /// The authenticated handshake: the session key (none on a private cable) and the peer's
    /// id.
    async fn handshake(&self, stream: &TcpStream) -> io::Result<(Option<[u8; 32]>, u32)> {
        let cfg = &self.inner.cfg;
        let layout = &self.inner.layout;
        let mine = HandshakeHello {
            node_id: cfg.node_id,
            volume: layout.volume,
            volume_bytes: layout.volume_bytes,
            nonce: nonce()?,
            private_cable: cfg.private_cable,
            granule_shift: layout.granule_shift as u8,
            max_data: cfg.max_data,
        };
        send_bytes(stream, mine.encode().to_vec()).await?;
        let theirs = recv_bytes(stream, HELLO_BYTES).await?;
        let mut hb = [0u8; HELLO_BYTES];
        hb.copy_from_slice(&theirs);
        let peer = HandshakeHello::decode_peer(&hb, &mine).map_err(io::Error::other)?;
        if peer.node_id != cfg.peer_id {
            return Err(io::Error::other(format!(
                "peer says it is node {}, configured {}",
                peer.node_id, cfg.peer_id
            )));
        }
        send_bytes(stream, proof(&cfg.secret, &mine, &peer).to_vec()).await?;
        let their_proof = recv_bytes(stream, PROOF_BYTES).await?;
        let mut pb = [0u8; PROOF_BYTES];
        pb.copy_from_slice(&their_proof);
        if let Err(e) = verify_proof(&cfg.secret, &mine, &peer, &pb) {
            tracing::warn!(peer = ?stream.peer_addr().ok(), "mirror: {e}: refused");
            return Err(io::Error::other(e));
        }
        let key = (!cfg.private_cable).then(|| session_key(&cfg.secret, &mine, &peer));
        Ok((key, peer.node_id))
    }

    /// Frames both ways until the link fails, the peer falls silent or the node stops.
    async fn run_link(
        &self,
        stream: TcpStream,
        key: Option<[u8; 32]>,
        peer_id: u32,
    ) -> io::Result<()> {
        let cfg = &self.inner.cfg;
        let layout = &self.inner.layout;
        let max_words = layout.bitmap_pages() * (crate::mirror::bitmap::PAGE_BYTES as u64 / 8);
        let codec = RefCell::new(Codec::new(
            key,
            cfg.node_id,
            peer_id,
            cfg.max_data,
            max_words,
        ));
        self.inner.outbox.borrow_mut().clear();
        *self.inner.link.borrow_mut() = Some(Link {
            shutdown: stream.shutdown_handle(),
        });
        tracing::info!(peer = cfg.peer_id, "mirror: link up");
        self.feed(Input::LinkUp);
        let result = match select2(
            self.send_loop(&stream, &codec),
            self.recv_loop(&stream, &codec),
        )
        .await
        {
            Either::Left(r) | Either::Right(r) => r,
        };
        stream.shutdown();
        self.inner.link.borrow_mut().take();
        self.feed(Input::LinkDown);
        result
    }

    async fn send_loop(&self, stream: &TcpStream, codec: &RefCell<Codec>) -> io::Result<()> {
        loop {
            let next = std::future::poll_fn(|cx| {
                if self.inner.stopped.get() {
                    return Poll::Ready(None);
                }
                match self.inner.outbox.borrow_mut().pop_front() {
                    Some(m) => Poll::Ready(Some(m)),
                    None => {
                        *self.inner.outbox_waker.borrow_mut() = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            });
            // Idle for a quarter of the link timeout: a ping keeps the peer's timer fed.
            let msg = match crate::time::timeout(self.inner.cfg.link_timeout / 4, next).await {
                Ok(m) => m,
                Err(_) => Some(Msg::Ping),
            };
            let Some(msg) = msg else {
                return Ok(());
            };
            let data = match &msg {
                Msg::Data { data, .. } | Msg::ResyncData { data, .. } => data.clone(),
                Msg::ReadReply { data: Some(d), .. } => d.clone(),
                _ => Payload::Empty,
            };
            let frames = codec.borrow_mut().seal(&msg);
            drop(msg);
            for f in frames {
                let mut g = Gather::default();
                g.parts[0] = Segment::Bytes(f.head);
                if let (true, Payload::Buf(b)) = (f.has_data, &data) {
                    let len = b.len();
                    g.parts[1] = Segment::Shared(b.clone(), 0..len);
                }
                if !f.tag.is_empty() {
                    g.parts[2] = Segment::Bytes(f.tag);
                }
                let (r, _) = stream.send_all(g).await;
                r?;
            }
        }
    }

    async fn recv_loop(&self, stream: &TcpStream, codec: &RefCell<Codec>) -> io::Result<()> {
        let mut count = 0u64;
        let tagged = !self.inner.cfg.private_cable;
        loop {
            let wait = self.inner.cfg.link_timeout;
            let head = match crate::time::timeout(wait, recv_bytes(stream, HEADER_BYTES)).await {
                Ok(h) => h?,
                Err(_) => {
                    tracing::warn!(
                        "mirror: nothing from the peer within the link timeout: link dropped"
                    );
                    return Err(io::Error::other("peer silent"));
                }
            };
            let mut hb = [0u8; HEADER_BYTES];
            hb.copy_from_slice(&head);
            let h = codec.borrow().open_header(&hb).map_err(protocol)?;
            let fields = recv_bytes(stream, h.fields_len as usize).await?;
            let data = if h.data_len > 0 {
                let buf = crate::reactor::buffer_pool().get().await;
                let len = h.data_len as usize;
                let (r, mut buf) = stream.recv_exact(buf, 0, len).await;
                r?;
                buf.set_len(len);
                Payload::Buf(buf.into_shared())
            } else {
                Payload::Empty
            };
            let tag = if tagged {
                recv_bytes(stream, TAG_BYTES).await?
            } else {
                Vec::new()
            };
            let opened = codec.borrow_mut().open(&hb, &h, &fields, data, &tag);
            let Some(msg) = opened.map_err(protocol)? else {
                continue;
            };
            let asked = match &msg {
                Msg::Ping => continue,
                Msg::ResyncRequest { len, .. }
                | Msg::VerifyRequest { len, .. }
                | Msg::ReadRequest { len, .. } => *len,
                _ => 0,
            };
            if asked > u64::from(self.inner.cfg.max_data) {
                tracing::warn!(
                    kind = msg.kind(),
                    len = asked,
                    "mirror: the peer asks for more than max_data at once: link dropped"
                );
                return Err(io::Error::other("request over max_data"));
            }
            self.feed(Input::Message { seq: count, msg });
            count += 1;
        }
    }
}

fn protocol(e: crate::mirror::wire::WireError) -> io::Error {
    tracing::warn!(error = %e, "mirror: refused a frame from the peer");
    io::Error::other(e)
}

fn log_io(what: &str, offset: u64, r: &io::Result<()>) {
    if let Err(e) = r {
        tracing::warn!(what, offset, error = %e, "mirror: local I/O failed");
    }
}

/// 32 random bytes from the kernel (`getrandom`, which needs no file descriptor); an error
/// ends the handshake rather than reuse a predictable nonce.
fn nonce() -> io::Result<[u8; 32]> {
    let mut n = [0u8; 32];
    let mut filled = 0;
    while filled < n.len() {
        let tail = &mut n[filled..];
        // SAFETY: the pointer and length describe `tail`, which outlives the call.
        let got =
            unsafe { libc::getrandom(tail.as_mut_ptr().cast::<libc::c_void>(), tail.len(), 0) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += got as usize;
    }
    Ok(n)
}

async fn send_bytes(stream: &TcpStream, bytes: Vec<u8>) -> io::Result<()> {
    let mut g = Gather::default();
    g.parts[0] = Segment::Bytes(bytes);
    stream.send_all(g).await.0
}

async fn recv_bytes(stream: &TcpStream, len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let (r, buf) = stream.recv_exact(vec![0u8; len], 0, len).await;
    r.map(|()| buf)
}

// SAFETY: a Payload is empty (no bytes) or a SharedBuf, whose pool slot does not move and stays
// out of the free list while any holder lives.
unsafe impl IoBuf for Payload {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.as_ref().len()
    }
    fn fixed_index(&self) -> Option<u16> {
        match self {
            Payload::Empty => None,
            Payload::Buf(b) => b.registered_index(),
        }
    }
}
