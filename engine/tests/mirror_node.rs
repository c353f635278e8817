//! Two mirror nodes, each on its own reactor thread with its own `O_DIRECT` data file and
//! metadata store, linked over loopback TCP with the authenticated wire protocol:
//! - protocol C: once a durable write completes on the Primary, the Secondary's data file
//!   holds it (read back with plain file I/O);
//! - the Secondary goes away (a clean shutdown, then a crash), the Primary writes alone, the
//!   Secondary comes back from its metadata, and the resync copies exactly the blocks the
//!   bitmaps say (the writes made alone, and after the crash the Secondary's activity log):
//!   then the two data files are byte for byte identical;
//! - online verify finds a block corrupted behind the mirror's back, and with resync repairs it;
//! - a peer with the wrong secret is refused and nothing reaches it.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringsan_engine::disk::{create_sparse, FileDisk};
use ringsan_engine::mirror::gi::GenIds;
use ringsan_engine::mirror::meta::{DiskState, Superblock};
use ringsan_engine::mirror::msg::ConnState;
use ringsan_engine::mirror::node::{MirrorNode, NodeConfig};
use ringsan_engine::mirror::replica::Config;
use ringsan_engine::mirror::store::MetaStore;
use ringsan_engine::net::TcpListener;
use ringsan_engine::reactor::buffer_pool;
use ringsan_engine::{Reactor, ReactorConfig};

const VOLUME: u64 = 16 << 20;
const BLOCK: usize = 4096;

fn dir(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn layout(node_id: u32) -> Superblock {
    Superblock {
        seq: 0,
        volume: [0x61; 16],
        node_id,
        volume_bytes: VOLUME,
        granule_shift: 12,
        al_extent_shift: 20,
        al_slots: 8,
        al_extents: 8,
        gen: GenIds::fresh(0x77),
        disk: DiskState::UpToDate,
        primary: false,
        unclean: false,
        resync_cursor: 0,
    }
}

/// Creates node `id`'s data file and formatted metadata store in `d`.
fn create_node(d: &Path, id: u32) {
    create_sparse(&d.join(format!("data{id}")), VOLUME).unwrap();
    let sb = layout(id);
    create_sparse(&d.join(format!("meta{id}")), sb.store_bytes()).unwrap();
    let meta = FileDisk::open(&d.join(format!("meta{id}"))).unwrap();
    Reactor::new(&ReactorConfig::default())
        .unwrap()
        .block_on(async move {
            MetaStore::new(meta).unwrap().format(&sb).await.unwrap();
        })
        .unwrap();
}

fn config(id: u32, peer_addr: std::net::SocketAddr, secret: &[u8]) -> NodeConfig {
    NodeConfig {
        node_id: id,
        peer_id: 3 - id,
        peer_addr,
        // Node 1 dials from its own address, as the daemon does.
        local_ip: (id == 1).then_some(NODE1_IP),
        accept_from: None,
        secret: secret.to_vec(),
        private_cable: false,
        replica: Config {
            resync_rate_bytes_per_s: 16 << 20,
            ..Config::default()
        },
        max_data: 256 * 1024,
        reconnect_interval: Duration::from_millis(20),
        link_timeout: Duration::from_secs(2),
    }
}

/// Node 1's address on loopback.
const NODE1_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 7));

const RUN: u8 = 0;
/// Stop with a clean shutdown.
const STOP_CLEAN: u8 = 1;
/// Stop as a crash would: the link dropped, the metadata as it stands.
const STOP_CRASH: u8 = 2;

/// Runs node 2 (the listener) on its own thread until `stop` says how to stop.
fn run_node2(
    d: PathBuf,
    port_tx: mpsc::Sender<u16>,
    port: u16,
    secret: &'static [u8],
    stop: Arc<AtomicU8>,
    accept_from: Option<std::net::IpAddr>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let r = Reactor::new(&ReactorConfig::default()).unwrap();
        r.block_on(async move {
            let listener =
                TcpListener::bind(format!("127.0.0.1:{port}").parse().unwrap(), false).unwrap();
            port_tx.send(listener.local_addr().port()).unwrap();
            let data = FileDisk::open(&d.join("data2")).unwrap();
            let meta = MetaStore::new(FileDisk::open(&d.join("meta2")).unwrap()).unwrap();
            let unused: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
            let cfg = NodeConfig {
                accept_from,
                ..config(2, unused, secret)
            };
            let node = MirrorNode::start(cfg, data, meta, Some(listener))
                .await
                .unwrap();
            let how = loop {
                match stop.load(Ordering::SeqCst) {
                    RUN => ringsan_engine::time::sleep(Duration::from_millis(10)).await,
                    how => break how,
                }
            };
            if how == STOP_CLEAN {
                node.shutdown().await.expect("clean shutdown");
            } else {
                node.stop();
            }
            ringsan_engine::time::sleep(Duration::from_millis(50)).await;
        })
        .unwrap();
    })
}

async fn wait_for<D: ringsan_engine::disk::Disk, M: ringsan_engine::disk::Disk>(
    node: &MirrorNode<D, M>,
    what: &str,
    ok: impl Fn(&MirrorNode<D, M>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok(node) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?} busy {}",
            node.status(),
            node.busy()
        );
        ringsan_engine::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connected to an UpToDate peer, nothing marked, nothing in flight.
fn in_sync(n: &MirrorNode<FileDisk, FileDisk>) -> bool {
    let s = n.status();
    s.conn == ConnState::Connected
        && s.peer_disk == Some(DiskState::UpToDate)
        && s.out_of_sync_bytes == 0
        && n.busy() == 0
}

fn pattern(block: usize, round: u8) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| (i as u8) ^ (block as u8).wrapping_mul(31) ^ round)
        .collect()
}

async fn write_block<D: ringsan_engine::disk::Disk, M: ringsan_engine::disk::Disk>(
    node: &MirrorNode<D, M>,
    block: usize,
    round: u8,
) {
    let mut buf = buffer_pool().get().await;
    buf.set_len(BLOCK);
    buf.as_mut_slice().copy_from_slice(&pattern(block, round));
    node.write((block * BLOCK) as u64, buf.into_shared(), true)
        .await
        .expect("write");
}

/// The activity-log extents in a stopped node's metadata store.
fn load_al(path: &Path) -> Vec<u32> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        Reactor::new(&ReactorConfig::default())
            .unwrap()
            .block_on(async move {
                let store = MetaStore::new(FileDisk::open(&path).unwrap()).unwrap();
                store.load().await.unwrap().al_extents
            })
            .unwrap()
    })
    .join()
    .unwrap()
}

fn file_block(path: &Path, block: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut v = vec![0u8; BLOCK];
    f.read_exact_at(&mut v, (block * BLOCK) as u64).unwrap();
    v
}

/// Two fresh nodes in a scratch folder, node 2 running on its own thread with `secret2`.
struct Pair {
    d: PathBuf,
    port: u16,
    stop2: Arc<AtomicU8>,
    node2: std::thread::JoinHandle<()>,
}

fn pair(name: &str, secret2: &'static [u8]) -> Pair {
    pair_accepting(name, secret2, None)
}

/// As [`pair`], node 2 accepting connections from `accept_from` only.
fn pair_accepting(
    name: &str,
    secret2: &'static [u8],
    accept_from: Option<std::net::IpAddr>,
) -> Pair {
    let d = dir(name);
    create_node(&d, 1);
    create_node(&d, 2);
    let (port_tx, port_rx) = mpsc::channel();
    let stop2 = Arc::new(AtomicU8::new(RUN));
    let node2 = run_node2(d.clone(), port_tx, 0, secret2, stop2.clone(), accept_from);
    let port = port_rx.recv().unwrap();
    Pair {
        d,
        port,
        stop2,
        node2,
    }
}

/// Starts node 1 (the dialer) on the current reactor.
async fn start_node1(d: &Path, port: u16) -> MirrorNode<FileDisk, FileDisk> {
    let peer: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let data = FileDisk::open(&d.join("data1")).unwrap();
    let meta = MetaStore::new(FileDisk::open(&d.join("meta1")).unwrap()).unwrap();
    MirrorNode::start(config(1, peer, b"s3cret"), data, meta, None)
        .await
        .unwrap()
}

#[test]
fn protocol_c_then_degraded_writes_then_a_resync_of_exactly_those_blocks() {
    let Pair {
        d,
        port,
        stop2,
        node2,
    } = pair("mirror-node", b"s3cret");
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    let d1 = d.clone();
    r.block_on(async move {
        let node = start_node1(&d1, port).await;
        wait_for(&node, "connect", |n| {
            n.status().conn == ConnState::Connected
        })
        .await;
        node.promote(false).await.expect("promote");

        // Protocol C: a completed durable write is in the peer's file already.
        for b in [0usize, 1, 7, 100, 3000] {
            write_block(&node, b, 1).await;
            assert_eq!(file_block(&d1.join("data2"), b), pattern(b, 1), "block {b}");
        }
        node.flush().await.expect("flush");
        let read = node
            .read(7 * BLOCK as u64, BLOCK as u64)
            .await
            .expect("read");
        assert_eq!(read.as_ref(), &pattern(7, 1)[..]);

        // The Secondary goes away twice: first with a clean shutdown (it comes back with
        // nothing marked), then as a crash (it comes back with its activity log's extents
        // marked). Each time the Primary writes alone meanwhile, and the resync copies exactly
        // the blocks the two bitmaps say.
        let mut stop2 = stop2;
        let mut node2 = node2;
        for (round, how, alone) in [
            (2u8, STOP_CLEAN, [2usize, 100, 2048, 4095]),
            (3u8, STOP_CRASH, [3usize, 101, 2049, 4094]),
        ] {
            stop2.store(how, Ordering::SeqCst);
            node2.join().unwrap();
            wait_for(&node, "link down", |n| {
                n.status().conn == ConnState::Connecting
            })
            .await;
            for &b in &alone {
                write_block(&node, b, round).await;
            }
            assert_eq!(
                node.status().out_of_sync_bytes,
                (alone.len() * BLOCK) as u64
            );
            assert_ne!(
                file_block(&d1.join("data2"), alone[0]),
                pattern(alone[0], round)
            );
            let al2 = load_al(&d1.join("meta2"));
            assert_eq!(al2.is_empty(), how == STOP_CLEAN, "round {round}: {al2:?}");
            let mut expected: std::collections::BTreeSet<usize> = alone.iter().copied().collect();
            for e in &al2 {
                let per = (1usize << 20) / BLOCK;
                expected.extend(*e as usize * per..(*e as usize + 1) * per);
            }
            // It comes back from its metadata, on the same port.
            let before = node.counters().resync_read_bytes;
            stop2 = Arc::new(AtomicU8::new(RUN));
            let (tx, rx) = mpsc::channel();
            node2 = run_node2(d1.clone(), tx, port, b"s3cret", stop2.clone(), None);
            assert_eq!(rx.recv().unwrap(), port);
            wait_for(&node, "resync", in_sync).await;
            let c = node.counters();
            assert_eq!(
                c.resync_read_bytes - before,
                (expected.len() * BLOCK) as u64,
                "round {round}: what the bitmap and node 2's activity log ({al2:?}) said, \
                 and nothing else: {c:?}"
            );
            // Writes to give node 2 activity-log extents before the crash of the next round.
            write_block(&node, 1000, round).await;
            write_block(&node, 3500, round).await;
        }
        // Online verify: a block of node 2's file goes bad behind the mirror's back.
        {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d1.join("data2"))
                .unwrap();
            f.write_all_at(&[0xee; BLOCK], 900 * BLOCK as u64).unwrap();
            f.sync_all().unwrap();
        }
        let differing = node.verify(false).await.expect("verify");
        assert_eq!(differing, 256 * 1024, "one 256 KiB range differs");
        assert_eq!(file_block(&d1.join("data2"), 900), vec![0xee; BLOCK]);
        let differing = node.verify(true).await.expect("verify and resync");
        assert_eq!(differing, 256 * 1024);
        wait_for(&node, "resync after verify", in_sync).await;
        assert_eq!(node.verify(false).await.expect("verify"), 0);
        stop2.store(STOP_CLEAN, Ordering::SeqCst);
        node2.join().unwrap();
        node.stop();
    })
    .unwrap();
    let a = std::fs::read(d.join("data1")).unwrap();
    let b = std::fs::read(d.join("data2")).unwrap();
    assert!(a == b, "the two data files differ after the resync");
    assert_eq!(file_block(&d.join("data2"), 2048), pattern(2048, 2));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_peer_with_the_wrong_secret_is_refused() {
    let Pair {
        d,
        port,
        stop2,
        node2,
    } = pair("mirror-node-secret", b"other");
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    let d1 = d.clone();
    r.block_on(async move {
        let node = start_node1(&d1, port).await;
        node.promote(false).await.expect("promote alone");
        write_block(&node, 5, 9).await;
        // Many attempts in this time; none gets past the handshake.
        ringsan_engine::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(node.status().conn, ConnState::Connecting);
        assert_eq!(node.status().out_of_sync_bytes, BLOCK as u64);
        node.stop();
    })
    .unwrap();
    stop2.store(STOP_CRASH, Ordering::SeqCst);
    node2.join().unwrap();
    assert_ne!(file_block(&d.join("data2"), 5), pattern(5, 9));
    let _ = std::fs::remove_dir_all(&d);
}

// ---- found in review (each failed before its fix) ----

#[test]
fn a_silent_connection_does_not_block_the_link() {
    let Pair {
        d,
        port,
        stop2,
        node2,
    } = pair("rv-silent", b"s3cret");
    // Anyone who can reach the port: connect and say nothing.
    std::thread::sleep(Duration::from_millis(100));
    let _squatter = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    let d1 = d.clone();
    r.block_on(async move {
        let node = start_node1(&d1, port).await;
        // Node 2 gives the silent connection the link timeout (2 s) to say hello, then drops it.
        wait_for(&node, "connect past the squatter", |n| {
            n.status().conn == ConnState::Connected
        })
        .await;
        node.stop();
    })
    .unwrap();
    stop2.store(STOP_CRASH, Ordering::SeqCst);
    drop(_squatter);
    node2.join().unwrap();
}

#[test]
fn connections_from_other_addresses_are_closed_at_once() {
    use std::io::Read;
    let Pair {
        d,
        port,
        stop2,
        node2,
    } = pair_accepting("rv-filter", b"s3cret", Some(NODE1_IP));
    // From 127.0.0.1, not node 1's address: closed before anything is read or sent.
    std::thread::sleep(Duration::from_millis(100));
    let mut stranger = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = stranger.read(&mut buf);
    assert!(
        matches!(got, Ok(0))
            || got
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed at once, not left waiting for a handshake: {got:?}"
    );
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    let d1 = d.clone();
    r.block_on(async move {
        let node = start_node1(&d1, port).await;
        wait_for(&node, "the peer from its own address connects", |n| {
            n.status().conn == ConnState::Connected
        })
        .await;
        node.stop();
    })
    .unwrap();
    stop2.store(STOP_CRASH, Ordering::SeqCst);
    node2.join().unwrap();
}

#[test]
fn a_hung_peer_is_dropped_and_writes_complete() {
    use std::io::{Read, Write};
    use std::sync::atomic::AtomicBool;
    let Pair {
        d,
        port,
        stop2,
        node2,
    } = pair("rv-hung", b"s3cret");
    // A proxy between node 1 and node 2 that can freeze (peer process hung, TCP still alive).
    let freeze = Arc::new(AtomicBool::new(false));
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = proxy.local_addr().unwrap().port();
    {
        let freeze = freeze.clone();
        std::thread::spawn(move || {
            let (a, _) = proxy.accept().unwrap();
            let b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                let freeze = freeze.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        while freeze.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while freeze.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    let d1 = d.clone();
    let f2 = freeze.clone();
    r.block_on(async move {
        let node = start_node1(&d1, pport).await;
        wait_for(&node, "connect", |n| {
            n.status().conn == ConnState::Connected
        })
        .await;
        node.promote(false).await.expect("promote");
        write_block(&node, 1, 1).await;
        f2.store(true, Ordering::SeqCst);
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let (n2, dn) = (node.clone(), done.clone());
        ringsan_engine::spawn(async move {
            write_block(&n2, 2, 1).await;
            dn.set(true);
        });
        // Nothing arrives for the link timeout (2 s): the link is dropped, the write is marked
        // for the peer and completes.
        ringsan_engine::time::sleep(Duration::from_secs(5)).await;
        assert!(done.get(), "the write still waits for a hung peer");
        assert_eq!(node.status().conn, ConnState::Connecting);
        assert_eq!(node.status().out_of_sync_bytes, BLOCK as u64);
        node.stop();
    })
    .unwrap();
    stop2.store(STOP_CRASH, Ordering::SeqCst);
    freeze.store(false, Ordering::SeqCst);
    let _ = node2;
}

#[test]
fn stop_releases_the_listener() {
    let d = dir("rv-listener");
    create_node(&d, 2);
    let r = Reactor::new(&ReactorConfig::default()).unwrap();
    r.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let port = listener.local_addr().port();
        let data = FileDisk::open(&d.join("data2")).unwrap();
        let meta = MetaStore::new(FileDisk::open(&d.join("meta2")).unwrap()).unwrap();
        let unused: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let node = MirrorNode::start(config(2, unused, b"s3cret"), data, meta, Some(listener))
            .await
            .unwrap();
        ringsan_engine::time::sleep(Duration::from_millis(50)).await;
        node.stop();
        drop(node);
        ringsan_engine::time::sleep(Duration::from_millis(200)).await;
        let again = TcpListener::bind(format!("127.0.0.1:{port}").parse().unwrap(), false);
        assert!(
            again.is_ok(),
            "the stopped node still holds its listener: {:?}",
            again.err()
        );
    })
    .unwrap();
}
