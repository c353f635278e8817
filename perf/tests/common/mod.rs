//! Shared by the integration tests of ringsan-perf: a real `ringsand` (the binary the workspace
//! build put next to `ringsan-perf`) on a free loopback port with one 64 MiB LUN, and scratch
//! folders.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod pair;

pub const IQN: &str = "iqn.2026-11.io.ringsan:perf-test";
pub const PERF: &str = env!("CARGO_BIN_EXE_ringsan-perf");

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ringsand` from the same build as `ringsan-perf` (the workspace test command builds every
/// binary of the workspace into one folder).
pub fn ringsand() -> PathBuf {
    let dir = Path::new(PERF)
        .parent()
        .expect("ringsan-perf sits in a folder");
    let path = dir.join("ringsand");
    assert!(
        path.exists(),
        "{} is missing: build the whole workspace first (cargo test --workspace builds every binary)",
        path.display()
    );
    path
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A number that differs between calls (log file names of restarts).
pub fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `ringsand --config cfg`, its log going to `log`, and waits until it serves: the
/// banner comes once every portal is bound (at most 30 s; the log is shown otherwise).
pub fn spawn_until_serving(cfg: &Path, log: &Path) -> Child {
    let mut child = Command::new(ringsand())
        .arg("--config")
        .arg(cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ringsand");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("serving on") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "ringsand ({}) did not start; log:\n{}",
            cfg.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

pub fn start_daemon(dir: &Path) -> Daemon {
    start_daemon_on(dir, free_port())
}

/// Starts (or, with an existing folder, restarts) the daemon of `dir` on `port`.
pub fn start_daemon_on(dir: &Path, port: u16) -> Daemon {
    start_daemon_with_metrics(dir, port, "off")
}

/// Starts the daemon of `dir` on `port`, serving its metrics on `metrics` ("off" for none).
pub fn start_daemon_with_metrics(dir: &Path, port: u16, metrics: &str) -> Daemon {
    let config = format!(
        "[daemon]\ndata_dir = \"{d}\"\nreactors = 2\nbuffer_count = 64\nmetrics_address = \"{metrics}\"\n\
         control_socket = \"{d}/control.sock\"\nportals = [\"127.0.0.1:{port}\"]\n\n\
         [[target]]\niqn = \"{IQN}\"\n\n[[target.lun]]\nlun = 0\npath = \"lun0.img\"\nsize = \"64M\"\nblock_size = 512\n",
        d = dir.display()
    );
    let cfg = dir.join("ringsan.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.join(format!("ringsand-{}.log", unique()));
    let child = spawn_until_serving(&cfg, &log);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Daemon { child, addr, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&d.addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "ringsand does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}
