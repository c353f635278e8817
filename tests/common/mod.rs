//! Shared test harness: starts the real `ringsand` on a free loopback port with its own data
//! folder and configuration, waits until it accepts connections, and kills it when dropped.
#![allow(dead_code)]

pub mod initiator;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The demo target's name.
pub const IQN: &str = "iqn.2026-11.io.ringsan:test";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running daemon.
pub struct Daemon {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// A fresh, empty scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The TOML of a one-target daemon with `luns` LUNs of `size` each on `port`; `extra` is
/// appended inside the target table (ACLs, CHAP).
pub fn config_text(dir: &Path, port: u16, luns: &[(u16, &str, u32)], extra: &str) -> String {
    config_text_with(dir, port, luns, extra, "")
}

/// As [`config_text`], with `daemon_extra` lines in the `[daemon]` table.
pub fn config_text_with(
    dir: &Path,
    port: u16,
    luns: &[(u16, &str, u32)],
    extra: &str,
    daemon_extra: &str,
) -> String {
    let buffers = if daemon_extra.contains("buffer_count") {
        ""
    } else {
        "buffer_count = 64\n"
    };
    let socket = if daemon_extra.contains("control_socket") {
        String::new()
    } else {
        format!(
            "control_socket = \"{}\"\n",
            dir.join("control.sock").display()
        )
    };
    let mut s = format!(
        "[daemon]\ndata_dir = \"{}\"\nreactors = 2\n{buffers}{socket}portals = [\"127.0.0.1:{port}\"]\n{daemon_extra}\n\n[[target]]\niqn = \"{IQN}\"\n{extra}\n",
        dir.display()
    );
    for (lun, size, bs) in luns {
        s.push_str(&format!("\n[[target.lun]]\nlun = {lun}\npath = \"lun{lun}.img\"\nsize = \"{size}\"\nblock_size = {bs}\n"));
    }
    s
}

impl Daemon {
    /// Starts a daemon with one 64 MiB, 512-byte-block LUN 0.
    pub fn start(name: &str) -> Daemon {
        Daemon::start_with(name, &[(0, "64M", 512)], "")
    }

    /// Starts a daemon with the given LUNs and target options.
    pub fn start_with(name: &str, luns: &[(u16, &str, u32)], extra: &str) -> Daemon {
        let dir = scratch(name);
        let port = free_port();
        let cfg = dir.join("ringsan.toml");
        std::fs::write(&cfg, config_text(&dir, port, luns, extra)).unwrap();
        Daemon::spawn(dir, cfg, port)
    }

    /// Starts a daemon with extra `[daemon]` settings.
    pub fn start_daemon_opts(name: &str, daemon_extra: &str) -> Daemon {
        let dir = scratch(name);
        let port = free_port();
        let cfg = dir.join("ringsan.toml");
        std::fs::write(
            &cfg,
            config_text_with(&dir, port, &[(0, "8M", 512)], "", daemon_extra),
        )
        .unwrap();
        Daemon::spawn(dir, cfg, port)
    }

    /// Starts a daemon from an existing configuration file.
    pub fn spawn(dir: PathBuf, cfg: PathBuf, port: u16) -> Daemon {
        let log = dir.join("ringsand.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringsand"))
            .arg("--config")
            .arg(&cfg)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ringsand");
        // The banner is printed once every portal is bound: only then is the port ours (a
        // killed predecessor's listener can linger for a while and accept in our place).
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("serving on") {
                    let _ = tx.send(());
                }
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = Daemon {
            child: Some(child),
            addr,
            dir,
            log,
        };
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!("ringsand did not start; log:\n{}", d.log_text());
        }
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // A connect to a free port in the ephemeral range can connect to itself (TCP
            // simultaneous open); only a connection with another end counts.
            if let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
                if s.local_addr().ok() != s.peer_addr().ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "ringsand does not accept connections; log:\n{}",
            self.log_text()
        );
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The libiscsi URL of LUN `lun`.
    pub fn url(&self, lun: u16) -> String {
        format!("iscsi://{}/{IQN}/{lun}", self.addr)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command with a timeout; returns (success, stdout+stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let t_err = std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = format!(
        "{}\n{}",
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default()
    );
    (status.map(|s| s.success()).unwrap_or(false), text)
}

/// Whether a program is installed.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Panics with a clear message when a required tool is missing (CI installs them all).
pub fn require(program: &str, package: &str) {
    assert!(have(program), "{program} is not installed: apt-get install -y {package} (the README's test command does this)");
}
