//! What synchronous mirroring costs a write, at the engine level (no iSCSI): the same writes
//! through a two-node `MirrorNode` pair (protocol C over loopback TCP, HMAC-tagged frames, both
//! copies `RWF_DSYNC`) and straight to the Primary's own file (`RWF_DSYNC`), in interleaved
//! rounds, with latency percentiles.
//!
//! ```sh
//! cargo run --release -p ringsan-engine --example mirror_latency -- [DIR] [SECONDS] [ROUNDS] [private|tagged] [PEER_DIR]
//! ```
//! With `private`, the link is a private cable (CRC32C only, no HMAC tags). PEER_DIR puts the
//! Secondary's files elsewhere (e.g. on /dev/shm, to take its disk out of the figures).
//! DIR (default /var/tmp/ringsan-mirror-bench) gets two 1 GiB data files, fully written once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringsan_engine::disk::{create_sparse, Disk, FileDisk};
use ringsan_engine::mirror::gi::GenIds;
use ringsan_engine::mirror::meta::{DiskState, Superblock};
use ringsan_engine::mirror::msg::ConnState;
use ringsan_engine::mirror::node::{MirrorNode, NodeConfig};
use ringsan_engine::mirror::replica::Config;
use ringsan_engine::mirror::store::MetaStore;
use ringsan_engine::net::TcpListener;
use ringsan_engine::reactor::buffer_pool;
use ringsan_engine::{spawn, Reactor, ReactorConfig};

const VOLUME: u64 = 1 << 30;

fn layout(node_id: u32) -> Superblock {
    Superblock {
        seq: 0,
        volume: [0x62; 16],
        node_id,
        volume_bytes: VOLUME,
        granule_shift: 12,
        al_extent_shift: 22,
        al_slots: 64,
        al_extents: 256,
        gen: GenIds::fresh(0x99),
        disk: DiskState::UpToDate,
        primary: false,
        unclean: false,
        resync_cursor: 0,
    }
}

fn prepare(dir: &Path, id: u32) {
    let data = dir.join(format!("data{id}"));
    if std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0) != VOLUME {
        // Fully written, so neither side pays for block allocation.
        let mut f = std::fs::File::create(&data).expect("create data file");
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..(VOLUME >> 20) {
            std::io::Write::write_all(&mut f, &chunk).expect("fill data file");
        }
        f.sync_all().expect("sync data file");
    }
    let sb = layout(id);
    let meta = dir.join(format!("meta{id}"));
    let _ = std::fs::remove_file(&meta);
    create_sparse(&meta, sb.store_bytes()).expect("create metadata file");
    let disk = FileDisk::open(&meta).expect("open metadata file");
    Reactor::new(&ReactorConfig::default())
        .expect("reactor")
        .block_on(async move {
            MetaStore::new(disk)
                .expect("store")
                .format(&sb)
                .await
                .expect("format")
        })
        .expect("reactor");
}

fn config(id: u32, peer: SocketAddr, private_cable: bool) -> NodeConfig {
    NodeConfig {
        node_id: id,
        peer_id: 3 - id,
        peer_addr: peer,
        local_ip: None,
        accept_from: None,
        secret: b"bench".to_vec(),
        private_cable,
        replica: Config::default(),
        max_data: 256 * 1024,
        reconnect_interval: Duration::from_millis(20),
        link_timeout: Duration::from_secs(5),
    }
}

/// One job: `bs` bytes per write, `qd` writers, random or sequential offsets.
#[derive(Clone, Copy)]
struct Job {
    name: &'static str,
    bs: usize,
    qd: usize,
    random: bool,
}

const JOBS: [Job; 3] = [
    Job {
        name: "4k-randwrite-qd1",
        bs: 4096,
        qd: 1,
        random: true,
    },
    Job {
        name: "4k-randwrite-qd32",
        bs: 4096,
        qd: 32,
        random: true,
    },
    Job {
        name: "128k-write-qd8",
        bs: 128 * 1024,
        qd: 8,
        random: false,
    },
];

/// Runs `job` for `secs` with `write` as the I/O; returns the sorted latencies in ns.
async fn run_job<F, Fut>(job: Job, secs: u64, write: F) -> Vec<u64>
where
    F: Fn(u64, ringsan_engine::buffer::SharedBuf) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = bool> + 'static,
{
    let lat = Rc::new(std::cell::RefCell::new(Vec::new()));
    let end = Instant::now() + Duration::from_secs(secs);
    let done = Rc::new(std::cell::Cell::new(0usize));
    for w in 0..job.qd {
        let (lat, done, write) = (lat.clone(), done.clone(), write.clone());
        spawn(async move {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
            let mut seq = (w * job.bs) as u64;
            while Instant::now() < end {
                let offset = if job.random {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % (VOLUME / job.bs as u64)) * job.bs as u64
                } else {
                    seq = (seq + (job.qd * job.bs) as u64) % VOLUME;
                    seq
                };
                let mut buf = buffer_pool().get().await;
                buf.set_len(job.bs);
                buf.as_mut_slice().fill(w as u8);
                let t = Instant::now();
                if !write(offset, buf.into_shared()).await {
                    eprintln!("write failed");
                    break;
                }
                lat.borrow_mut().push(t.elapsed().as_nanos() as u64);
            }
            done.set(done.get() + 1);
        });
    }
    while done.get() < job.qd {
        ringsan_engine::time::sleep(Duration::from_millis(5)).await;
    }
    let mut v = lat.borrow_mut().split_off(0);
    v.sort_unstable();
    v
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/var/tmp/ringsan-mirror-bench".into()),
    );
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let private = args.get(4).is_some_and(|a| a == "private");
    std::fs::create_dir_all(&dir).expect("bench folder");
    let peer_dir = args
        .get(5)
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.clone());
    std::fs::create_dir_all(&peer_dir).expect("peer bench folder");
    prepare(&dir, 1);
    prepare(&peer_dir, 2);

    let (port_tx, port_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (d2, stop2) = (peer_dir.clone(), stop.clone());
    let node2 = std::thread::spawn(move || {
        Reactor::new(&ReactorConfig::default())
            .expect("reactor")
            .block_on(async move {
                let listener =
                    TcpListener::bind("127.0.0.1:0".parse().expect("addr"), false).expect("listen");
                port_tx.send(listener.local_addr().port()).expect("port");
                let data = FileDisk::open(&d2.join("data2")).expect("data2");
                let meta = MetaStore::new(FileDisk::open(&d2.join("meta2")).expect("meta2"))
                    .expect("store");
                let unused: SocketAddr = "127.0.0.1:9".parse().expect("addr");
                let node =
                    MirrorNode::start(config(2, unused, private), data, meta, Some(listener))
                        .await
                        .expect("node 2");
                while !stop2.load(Ordering::SeqCst) {
                    ringsan_engine::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = node.shutdown().await;
            })
            .expect("reactor");
    });
    let port = port_rx.recv().expect("port");
    let peer: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    Reactor::new(&ReactorConfig::default())
        .expect("reactor")
        .block_on(async move {
            let data = FileDisk::open(&dir.join("data1")).expect("data1");
            let local = data.clone();
            let meta = MetaStore::new(FileDisk::open(&dir.join("meta1")).expect("meta1"))
                .expect("store");
            let node = MirrorNode::start(config(1, peer, private), data, meta, None)
                .await
                .expect("node 1");
            while node.status().conn != ConnState::Connected {
                ringsan_engine::time::sleep(Duration::from_millis(10)).await;
            }
            node.promote(false).await.expect("promote");
            println!(
                "| job | round | local IOPS | mirrored IOPS | ratio | local p50 µs | mirrored p50 µs | local p99 µs | mirrored p99 µs | local p99.9 µs | mirrored p99.9 µs |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|---|");
            for job in JOBS {
                for round in 0..rounds {
                    let mut results = [Vec::new(), Vec::new()];
                    // Interleaved: local first in even rounds, mirrored first in odd ones.
                    for k in 0..2 {
                        let mirrored = (k + round) % 2 == 1;
                        let v = if mirrored {
                            let n = node.clone();
                            run_job(job, secs, move |off, buf| {
                                let n = n.clone();
                                async move { n.write(off, buf, true).await.is_ok() }
                            })
                            .await
                        } else {
                            let d = local.clone();
                            run_job(job, secs, move |off, buf| {
                                let d = d.clone();
                                async move {
                                    let len = buf.len();
                                    d.write(buf, 0, len, off, true).await.0.is_ok()
                                }
                            })
                            .await
                        };
                        results[usize::from(mirrored)] = v;
                    }
                    let [l, m] = &results;
                    let (li, mi) = (l.len() as f64 / secs as f64, m.len() as f64 / secs as f64);
                    println!(
                        "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                        job.name,
                        round + 1,
                        li,
                        mi,
                        mi / li.max(1.0),
                        pct(l, 50.0),
                        pct(m, 50.0),
                        pct(l, 99.0),
                        pct(m, 99.0),
                        pct(l, 99.9),
                        pct(m, 99.9)
                    );
                }
            }
            stop.store(true, Ordering::SeqCst);
            node.stop();
        })
        .expect("reactor");
    let _ = node2.join();
}
