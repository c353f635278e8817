//! A mirrored volume as every reactor (and the control plane) sees it: a `Send + Sync` handle to
//! a [`MirrorNode`] that lives on one reactor, its home.
//!
//! A node is reactor-local (its core, link and buffers belong to one io_uring), while iSCSI
//! connections land on whichever reactor accepted them. A command on the home reactor calls the
//! node directly, and a write's pool buffer goes to the disk and the peer as it is (no copy). A
//! command on another reactor is forwarded: its data is copied into a buffer of the home
//! reactor's pool and the result comes back through a one-shot channel (a read's data is copied
//! back the same way). The daemon spreads targets with mirrored volumes over the reactors (one
//! home per target) and places those targets' connections on their home reactor, so the
//! forwarding path is the exception.
//!
//! Whether the node is Primary is kept in an atomic here, so that every command's gate (serve,
//! or NOT READY on a Secondary) costs one load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::blocking::{oneshot, Blocking};
use crate::buffer::Buf;
use crate::disk::FileDisk;
use crate::mirror::meta::Superblock;
use crate::mirror::msg::Role;
use crate::mirror::node::{MirrorNode, NodeConfig};
use crate::mirror::replica::{Counters, Failure, Status};
use crate::mirror::store::{MetaStore, StoreError};
use crate::net::TcpListener;
use crate::reactor::{buffer_pool, current_id, RemoteHandle};
use crate::select::{select2, Either};

/// A node over a data file and a metadata file.
pub type FileNode = MirrorNode<FileDisk, FileDisk>;

thread_local! {
    /// The nodes whose home is this reactor, by key.
    static HOMED: RefCell<HashMap<u64, FileNode>> = RefCell::new(HashMap::new());
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn homed(key: u64) -> Option<FileNode> {
    HOMED.with(|h| h.borrow().get(&key).cloned())
}

/// What starting a node needs.
pub struct Start {
    /// The node's settings.
    pub config: NodeConfig,
    /// The data disk.
    pub data: FileDisk,
    /// The metadata disk.
    pub meta: FileDisk,
    /// Where to accept the peer (used by the node with the higher id, which is dialed).
    pub listen: SocketAddr,
    /// Format the metadata with this superblock first (a new volume).
    pub format: Option<Superblock>,
}

/// A handle to one mirrored volume's node (cheap to clone; every clone is the same node).
#[derive(Clone)]
pub struct MirrorHandle {
    home: RemoteHandle,
    key: u64,
    primary: Arc<AtomicBool>,
}

impl std::fmt::Debug for MirrorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MirrorHandle(key {} on {:?})", self.key, self.home)
    }
}

impl MirrorHandle {
    /// Starts a node on reactor `home` (formatting its metadata first when asked) and waits
    /// until it runs. Called from a thread that is not a reactor (it blocks).
    pub fn start_blocking(home: RemoteHandle, start: Start) -> Result<MirrorHandle, StoreError> {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel::<Result<bool, StoreError>>();
        home.run(move || {
            crate::spawn(async move {
                let result = start_here(key, start).await;
                let _ = tx.send(result);
            });
        });
        let primary = match rx.recv() {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Io(std::io::Error::other(
                    "the home reactor ended before the mirror node started",
                )))
            }
        };
        Ok(MirrorHandle {
            home,
            key,
            primary: Arc::new(AtomicBool::new(primary)),
        })
    }

    /// The id of the reactor the node runs on.
    pub fn home_id(&self) -> usize {
        self.home.id()
    }

    /// Whether this node is Primary (the only role that serves the LUN).
    pub fn is_primary(&self) -> bool {
        self.primary.load(Ordering::Acquire)
    }

    fn at_home(&self) -> Option<FileNode> {
        if current_id() == Some(self.home.id()) {
            homed(self.key)
        } else {
            None
        }
    }

    /// Runs `f` with the node on its home reactor; the future resolves wherever it is awaited.
    fn on_home<T, F, Fut>(&self, f: F) -> Blocking<Result<T, Failure>>
    where
        T: Send + 'static,
        F: FnOnce(FileNode) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Failure>> + 'static,
    {
        let (done, result) = oneshot();
        let key = self.key;
        let primary = self.primary.clone();
        self.home.run(move || match homed(key) {
            None => done.complete(Err(Failure::Unavailable)),
            Some(node) => crate::spawn(async move {
                let r = f(node.clone()).await;
                primary.store(node.status().role == Role::Primary, Ordering::Release);
                done.complete(r);
            }),
        });
        result
    }

    /// Writes `buf[..len]` at `offset`, stable on both copies when `durable`.
    pub async fn write(
        &self,
        mut buf: Buf,
        len: usize,
        offset: u64,
        durable: bool,
    ) -> Result<(), Failure> {
        if len > buf.capacity() {
            return Err(Failure::Refused);
        }
        if let Some(node) = self.at_home() {
            buf.set_len(len);
            return node.write(offset, buf.into_shared(), durable).await;
        }
        let data = buf.spare_mut()[..len].to_vec();
        drop(buf);
        self.on_home(move |node| async move {
            let mut local = buffer_pool().get().await;
            if data.len() > local.capacity() {
                return Err(Failure::Refused);
            }
            local.spare_mut()[..data.len()].copy_from_slice(&data);
            local.set_len(data.len());
            node.write(offset, local.into_shared(), durable).await
        })
        .await
    }

    /// Reads `len` bytes at `offset` into `buf` (its length set to `len`).
    pub async fn read(&self, mut buf: Buf, len: usize, offset: u64) -> (Result<(), Failure>, Buf) {
        if len > buf.capacity() {
            return (Err(Failure::Refused), buf);
        }
        let result = match self.at_home() {
            Some(node) => {
                // Straight into the caller's buffer when the local copy serves the read.
                let (direct, back) = node.read_local_into(buf, len, offset).await;
                buf = back;
                if direct.is_some() {
                    buf.set_len(len);
                    return (Ok(()), buf);
                }
                match node.read(offset, len as u64).await {
                    Ok(p) => fill(&mut buf, p.as_ref(), len),
                    Err(e) => Err(e),
                }
            }
            None => {
                let r = self
                    .on_home(move |node| async move {
                        let p = node.read(offset, len as u64).await?;
                        Ok(p.as_ref().to_vec())
                    })
                    .await;
                r.and_then(|data| fill(&mut buf, &data, len))
            }
        };
        (result, buf)
    }

    /// Makes every completed write stable on both copies.
    pub async fn flush(&self) -> Result<(), Failure> {
        if let Some(node) = self.at_home() {
            return node.flush().await;
        }
        self.on_home(|node| async move { node.flush().await }).await
    }

    /// The node's status (from any thread).
    pub async fn status(&self) -> Result<(Status, Counters), Failure> {
        self.on_home(|node| async move { Ok((node.status(), node.counters())) })
            .await
    }

    /// Becomes Primary (`force`: take this copy as UpToDate whatever its state).
    pub async fn promote(&self, force: bool) -> Result<(), Failure> {
        self.on_home(move |node| async move { node.promote(force).await })
            .await
    }

    /// Becomes Secondary.
    pub async fn demote(&self) -> Result<(), Failure> {
        self.on_home(|node| async move { node.demote().await })
            .await
    }

    /// Compares both copies; returns the bytes found different (and resyncs them with `resync`).
    pub async fn verify(&self, resync: bool) -> Result<u64, Failure> {
        self.on_home(move |node| async move { node.verify(resync).await })
            .await
    }

    /// Copies every block again.
    pub async fn resync_full(&self) -> Result<(), Failure> {
        self.on_home(|node| async move { node.resync_full().await })
            .await
    }

    /// Leaves StandAlone and connects again.
    pub async fn connect(&self) -> Result<(), Failure> {
        self.on_home(|node| async move { node.connect().await })
            .await
    }

    /// In a split brain, gives up this copy's changes.
    pub async fn discard_my_data(&self) -> Result<(), Failure> {
        self.on_home(|node| async move { node.discard_my_data().await })
            .await
    }

    /// Takes a replaced local disk back after a detach.
    pub async fn attach(&self) -> Result<(), Failure> {
        self.on_home(|node| async move { node.attach().await })
            .await
    }
}

fn fill(buf: &mut Buf, data: &[u8], len: usize) -> Result<(), Failure> {
    let src = data.get(..len).ok_or(Failure::Io)?;
    buf.spare_mut()[..len].copy_from_slice(src);
    buf.set_len(len);
    Ok(())
}

async fn start_here(key: u64, start: Start) -> Result<bool, StoreError> {
    let Start {
        config,
        data,
        meta,
        listen,
        format,
    } = start;
    let store = MetaStore::new(meta)?;
    if let Some(sb) = format {
        store.format(&sb).await?;
    }
    let listener = if config.node_id > config.peer_id {
        Some(TcpListener::bind(listen, false)?)
    } else {
        None
    };
    let node = MirrorNode::start(config, data, store, listener).await?;
    let primary = node.status().role == Role::Primary;
    HOMED.with(|h| h.borrow_mut().insert(key, node));
    Ok(primary)
}

/// Shuts down cleanly every node homed on this reactor (each within `limit`; one that does not
/// finish in time is stopped as a crash would leave it, and its next start resyncs its activity
/// log). The daemon calls it on each reactor after the last session ended.
pub async fn shutdown_homed(limit: Duration) {
    let nodes: Vec<FileNode> = HOMED.with(|h| h.borrow_mut().drain().map(|(_, n)| n).collect());
    for node in nodes {
        match select2(crate::time::sleep(limit), node.shutdown()).await {
            Either::Left(()) => {
                tracing::warn!("mirror: clean shutdown did not finish in time; stopped");
                node.stop();
            }
            Either::Right(Err(e)) => tracing::warn!(?e, "mirror: clean shutdown failed"),
            Either::Right(Ok(())) => tracing::info!("mirror: stopped cleanly"),
        }
    }
}
