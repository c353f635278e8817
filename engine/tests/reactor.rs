//! The engine on a real io_uring: tasks, timers, sockets, and an `O_DIRECT` file with registered
//! buffers, fixed files, durable writes, punch hole, zeroing, mapping and compare-and-write.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringsan_engine::disk::{create_sparse, FileDisk};
use ringsan_engine::net::{Gather, Segment, TcpListener, TcpStream, Transport};
use ringsan_engine::reactor::buffer_pool;
use ringsan_engine::volume::{CompareOutcome, Durability, Volume};
use ringsan_engine::{spawn, Reactor, ReactorConfig};

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig {
        buffer_count: 8,
        buffer_size_bytes: 64 * 1024,
        ..ReactorConfig::default()
    })
    .unwrap()
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("{name}-{}", std::process::id()))
}

#[test]
fn timers_and_tasks() {
    let r = reactor();
    let out = r
        .block_on(async {
            let start = Instant::now();
            let hits = Rc::new(std::cell::Cell::new(0));
            for _ in 0..10 {
                let hits = hits.clone();
                spawn(async move {
                    ringsan_engine::time::sleep(Duration::from_millis(5)).await;
                    hits.set(hits.get() + 1);
                });
            }
            ringsan_engine::time::sleep(Duration::from_millis(30)).await;
            (hits.get(), start.elapsed())
        })
        .unwrap();
    assert_eq!(out.0, 10);
    assert!(out.1 >= Duration::from_millis(30));
}

#[test]
fn timeout_cancels_a_pending_receive() {
    let r = reactor();
    r.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = listener.local_addr();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let got = ringsan_engine::time::timeout(
            Duration::from_millis(20),
            server.recv_exact(vec![0u8; 4], 0, 4),
        )
        .await;
        assert!(
            got.is_err(),
            "nothing was sent, so the receive must time out"
        );
        drop(client);
    })
    .unwrap();
}

#[test]
fn tcp_round_trip_with_gather() {
    let r = reactor();
    let echoed = r
        .block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
            let addr = listener.local_addr();
            spawn(async move {
                let (s, _) = listener.accept().await.unwrap();
                let (res, buf) = s.recv_exact(vec![0u8; 11], 0, 11).await;
                res.unwrap();
                let mut g = Gather::default();
                g.parts[0] = Segment::Bytes(buf);
                let (res, _) = s.send_all(g).await;
                res.unwrap();
            });
            let c = TcpStream::connect(addr).await.unwrap();
            let mut g = Gather::default();
            g.parts[0] = Segment::Bytes(b"hello".to_vec());
            g.parts[1] = Segment::Small(*b" world!!", 6);
            let (res, _) = c.send_all(g).await;
            res.unwrap();
            let (res, buf) = c.recv_exact(vec![0u8; 11], 0, 11).await;
            res.unwrap();
            buf
        })
        .unwrap();
    assert_eq!(&echoed, b"hello world");
}

#[test]
fn direct_file_io_with_registered_buffers() {
    let path = temp_path("engine-file");
    let _ = std::fs::remove_file(&path);
    create_sparse(&path, 4 << 20).unwrap();
    let r = reactor();
    r.block_on({
        let path = path.clone();
        async move {
            let volume = Volume::new(FileDisk::open(&path).unwrap());
            assert_eq!(volume.info().size_bytes, 4 << 20);
            assert!(volume.info().logical_block_bytes <= 4096);
            let pool = buffer_pool();
            let mut buf = pool.get().await;
            buf.set_len(8192);
            for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            let (res, buf) = volume.write(buf, 0, 8192, 65536, Durability::Stable).await;
            res.unwrap();
            let mut back = pool.get().await;
            back.set_len(8192);
            let (res, back) = volume.read(back, 0, 8192, 65536).await;
            res.unwrap();
            assert_eq!(back.as_slice(), buf.as_slice());

            // Allocation: the written range is mapped, the start is a hole.
            let extents = volume.allocation(0, 1 << 20).await.unwrap();
            assert!(!extents[0].mapped);
            assert!(extents.iter().any(|e| e.mapped && e.offset <= 65536));

            // Compare and write: a mismatch writes nothing, a match writes the second half.
            let mut caw = pool.get().await;
            caw.set_len(8192);
            caw.as_mut_slice()[..4096].copy_from_slice(&buf.as_slice()[..4096]);
            caw.as_mut_slice()[4096..].fill(0xAB);
            caw.as_mut_slice()[100] ^= 1;
            let scratch = pool.get().await;
            let (res, mut caw, scratch) = volume
                .compare_and_write(caw, scratch, 4096, 65536, Durability::Stable)
                .await;
            assert_eq!(res.unwrap(), CompareOutcome::Miscompare(100));
            caw.as_mut_slice()[100] ^= 1;
            let (res, _caw, _scratch) = volume
                .compare_and_write(caw, scratch, 4096, 65536, Durability::Stable)
                .await;
            assert_eq!(res.unwrap(), CompareOutcome::Written);
            let (res, back) = volume.read(back, 0, 4096, 65536).await;
            res.unwrap();
            assert!(back.as_slice()[..4096].iter().all(|&b| b == 0xAB));

            // Punch hole reads back zeroes.
            volume.unmap(65536, 4096, Durability::Stable).await.unwrap();
            let (res, back) = volume.read(back, 0, 4096, 65536).await;
            res.unwrap();
            assert!(back.as_slice()[..4096].iter().all(|&b| b == 0));
            volume
                .write_zeroes(69632, 4096, false, Durability::Stable)
                .await
                .unwrap();
            let (res, back) = volume.read(back, 0, 4096, 69632).await;
            res.unwrap();
            assert!(back.as_slice()[..4096].iter().all(|&b| b == 0));
            volume.flush().await.unwrap();
        }
    })
    .unwrap();
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn remote_handle_runs_work_on_the_reactor_thread() {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = reactor();
        tx.send(r.handle()).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<u32>();
        let done_rx = Rc::new(std::cell::RefCell::new(done_rx));
        r.block_on(async move {
            loop {
                if let Ok(v) = done_rx.borrow().try_recv() {
                    return v;
                }
                ringsan_engine::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .map(|v| (v, done_tx))
    });
    let handle = rx.recv().unwrap();
    let (inner_tx, inner_rx) = std::sync::mpsc::channel();
    handle.run(move || {
        let id = std::thread::current().id();
        inner_tx.send(id).unwrap();
    });
    let ran_on = inner_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_ne!(ran_on, std::thread::current().id());
    drop(worker); // the worker loops until the process ends; detached on purpose
}

#[test]
fn stats_count_buffers_operations_and_tasks() {
    assert_eq!(
        ringsan_engine::reactor::stats(),
        None,
        "not a reactor thread"
    );
    let r = reactor();
    let (idle, busy) = r
        .block_on(async {
            let idle = ringsan_engine::reactor::stats().unwrap();
            let held = buffer_pool().try_get().unwrap();
            for _ in 0..3 {
                spawn(ringsan_engine::time::sleep(Duration::from_secs(60)));
            }
            // Let the sleepers run once so their timeouts are submitted.
            ringsan_engine::time::sleep(Duration::from_millis(1)).await;
            let busy = ringsan_engine::reactor::stats().unwrap();
            drop(held);
            (idle, busy)
        })
        .unwrap();
    assert_eq!((idle.buffers, idle.free_buffers, idle.tasks), (8, 8, 1));
    assert_eq!(idle.ops_in_flight, 0);
    assert_eq!((busy.buffers, busy.free_buffers, busy.tasks), (8, 7, 4));
    assert_eq!(busy.ops_in_flight, 3, "three sleeping timeouts");
}
