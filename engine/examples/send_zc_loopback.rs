//! What `IORING_OP_SEND_ZC` costs against a plain `IORING_OP_SEND` on loopback TCP, per message
//! size, for the mirror link's data (issue 6: zero-copy send only where it pays).
//!
//! One connected loopback pair; a receiver thread drains the other end. For each size the sender
//! pushes the same registered-size buffer `iters` times with SEND (one CQE) and with SEND_ZC (a
//! result CQE, then a notification CQE once the kernel no longer needs the buffer), one at a
//! time (the mirror sends one frame's data and must know when its buffer is free), alternating
//! the two in blocks so drift hits both alike. On loopback the kernel copies the data into the
//! receiver's socket anyway, so SEND_ZC adds page pinning and a second completion without
//! saving the copy; this measures by how much.
//!
//! `cargo run --release -p ringsan-engine --example send_zc_loopback [iters]`

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{opcode, types, IoUring};

fn main() -> std::io::Result<()> {
    let iters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let fd = types::Fd(sock.as_raw_fd());
    let mut ring = IoUring::new(64)?;
    let data = vec![0x5Au8; 256 << 10];
    println!("size      send ns/op   send_zc ns/op   zc/send   send GB/s   zc GB/s");
    for size in [4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10] {
        let mut t_send = 0u128;
        let mut t_zc = 0u128;
        let blocks = 10;
        for _ in 0..blocks {
            t_send += run(&mut ring, fd, &data[..size], iters / blocks, false)?;
            t_zc += run(&mut ring, fd, &data[..size], iters / blocks, true)?;
        }
        let per = |t: u128| t as f64 / iters as f64;
        let gbs = |t: u128| (size * iters) as f64 / t as f64;
        println!(
            "{:>4} KiB  {:>11.0}  {:>14.0}  {:>8.2}  {:>10.2}  {:>8.2}",
            size >> 10,
            per(t_send),
            per(t_zc),
            per(t_zc) / per(t_send),
            gbs(t_send),
            gbs(t_zc)
        );
    }
    drop(ring);
    sock.shutdown(std::net::Shutdown::Write)?;
    let total = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver"))??;
    println!("received {} MiB", total >> 20);
    Ok(())
}

/// Sends `buf` `n` times, one send (and its buffer release) at a time; returns the nanoseconds.
fn run(ring: &mut IoUring, fd: types::Fd, buf: &[u8], n: usize, zc: bool) -> std::io::Result<u128> {
    let start = Instant::now();
    for _ in 0..n {
        let mut sent = 0usize;
        while sent < buf.len() {
            let rest = &buf[sent..];
            let len = rest.len() as u32;
            let sqe = if zc {
                opcode::SendZc::new(fd, rest.as_ptr(), len).build()
            } else {
                opcode::Send::new(fd, rest.as_ptr(), len).build()
            };
            // SAFETY: `rest` stays alive and unmodified until the completions below are reaped
            // (for SEND_ZC, until its notification CQE says the kernel let go of it).
            unsafe {
                ring.submission()
                    .push(&sqe)
                    .map_err(|_| std::io::Error::other("submission queue full"))?;
            }
            // One CQE for SEND; for SEND_ZC a result CQE with IORING_CQE_F_MORE set, then the
            // notification CQE (IORING_CQE_F_NOTIF) once the buffer is free.
            let mut result = None;
            let mut waiting_notif = false;
            loop {
                ring.submit_and_wait(1)?;
                for cqe in ring.completion() {
                    let flags = cqe.flags();
                    if io_uring::cqueue::notif(flags) {
                        waiting_notif = false;
                        continue;
                    }
                    if cqe.result() < 0 {
                        return Err(std::io::Error::from_raw_os_error(-cqe.result()));
                    }
                    result = Some(cqe.result() as usize);
                    waiting_notif = io_uring::cqueue::more(flags);
                }
                if result.is_some() && !waiting_notif {
                    break;
                }
            }
            sent += result.unwrap_or(0);
        }
    }
    Ok(start.elapsed().as_nanos())
}
