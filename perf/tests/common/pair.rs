//! Two real `ringsand` processes mirroring one volume over loopback: node A (id 1) on 127.0.0.2,
//! node B (id 2) on 127.0.0.3, each with its own data folder, iSCSI portal and control socket.
//! A dials B through a TCP relay on 127.0.0.4 that the test can freeze (a pulled cable: nothing
//! passes, nothing is closed) and restore. `target-admin` drives and reads the volume.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, spawn_until_serving, unique, PERF};

/// The mirrored target.
pub const MIQN: &str = "iqn.2026-11.io.ringsan:mirror-test";
/// The volume's name for `target-admin volume`.
pub const VOLUME: &str = "iqn.2026-11.io.ringsan:mirror-test/0";
/// The volume's size.
pub const SIZE: u64 = 64 << 20;

/// One fault test at a time: they use fixed loopback addresses and their timing (link timeout)
/// must not starve on a 2-core machine.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `target-admin` from the same build.
pub fn target_admin() -> PathBuf {
    Path::new(PERF).parent().unwrap().join("target-admin")
}

/// One node.
pub struct Node {
    pub id: u32,
    pub dir: PathBuf,
    pub ip: &'static str,
    pub port: u16,
    /// The Prometheus endpoint.
    pub metrics: SocketAddr,
    child: Option<Child>,
    pub log: PathBuf,
}

/// What a node's configuration varies in.
#[derive(Clone)]
pub struct Options {
    pub secret: String,
    /// Bytes per second, 0 for no limit.
    pub resync_rate: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secret: "a-shared-secret-for-tests".into(),
            resync_rate: 0,
        }
    }
}

impl Node {
    fn new(id: u32, root: &Path, mirror_port: u16, o: &Options) -> Node {
        let (ip, peer) = if id == 1 {
            ("127.0.0.2", "127.0.0.4") // through the relay
        } else {
            // B accepts only its peer's address: A's connections reach it from the relay,
            // which connects from 127.0.0.1.
            ("127.0.0.3", "127.0.0.1")
        };
        let dir = root.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let metrics: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        let config = format!(
            "[daemon]\ndata_dir = \"{d}\"\nreactors = 2\nbuffer_count = 64\nmetrics_address = \"{metrics}\"\n\
             control_socket = \"{d}/control.sock\"\nportals = [\"{ip}:{port}\"]\n\n\
             [mirror]\nnode_id = {id}\npeer_id = {peer_id}\naddress = \"{ip}\"\npeer_address = \"{peer}\"\n\
             secret = \"{secret}\"\nresync_rate = {rate}\nlink_timeout_ms = 1000\n\n\
             [[target]]\niqn = \"{MIQN}\"\n\n[[target.lun]]\nlun = 0\npath = \"vol.img\"\nsize = {SIZE}\n\
             block_size = 512\nmirror_port = {mirror_port}\n",
            d = dir.display(),
            peer_id = 3 - id,
            secret = o.secret,
            rate = o.resync_rate,
        );
        std::fs::write(dir.join("ringsan.toml"), config).unwrap();
        Node {
            id,
            log: dir.join("ringsand.log"),
            dir,
            ip,
            port,
            metrics,
            child: None,
        }
    }

    /// Starts (or restarts) the daemon and waits until it serves.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} runs already", self.id);
        self.log = self.dir.join(format!("ringsand-{}.log", unique()));
        self.child = Some(spawn_until_serving(
            &self.dir.join("ringsan.toml"),
            &self.log,
        ));
    }

    /// SIGKILL: nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, waiting for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "node {} exited with {status}", self.id);
                    return;
                }
                assert!(Instant::now() < deadline, "node {} did not stop", self.id);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The text of `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2))
            .expect("connect to the metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    /// The iSCSI URL of the volume on this node.
    pub fn url(&self) -> String {
        format!("iscsi://{}:{}/{MIQN}/0", self.ip, self.port)
    }

    /// The backing file.
    pub fn data(&self) -> PathBuf {
        self.dir.join("vol.img")
    }

    /// Runs `target-admin` against this node: (success, output).
    pub fn admin(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(target_admin())
            .arg("--socket")
            .arg(self.dir.join("control.sock"))
            .args(args)
            .output()
            .expect("run target-admin");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `volume status --json` of the volume.
    pub fn status(&self) -> serde_json::Value {
        let (ok, text) = self.admin(&["--json", "volume", "status", VOLUME]);
        assert!(ok, "volume status on node {}: {text}", self.id);
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON status");
        v[0].clone()
    }

    /// Waits (at most 60 s) until `ok` holds for the status.
    pub fn wait_for(
        &self,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: waited for {what}; status {s:#}\nlog:\n{}",
                self.id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until connected, in sync, both UpToDate.
    pub fn wait_synced(&self) -> serde_json::Value {
        self.wait_for("Connected with both copies UpToDate", |s| {
            s["connection"] == "Connected"
                && s["disk"] == "UpToDate"
                && s["peer_disk"] == "UpToDate"
                && s["out_of_sync_bytes"] == 0
        })
    }

    /// `volume promote` (with `--force` when asked), which must succeed.
    pub fn promote(&self, force: bool) {
        let mut args = vec!["volume", "promote", VOLUME];
        if force {
            args.push("--force");
        }
        let (ok, text) = self.admin(&args);
        assert!(ok, "promote node {}: {text}", self.id);
    }

    pub fn u64(s: &serde_json::Value, field: &str) -> u64 {
        s[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {s:#}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The relay between A and B's mirror port.
pub struct Relay {
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(listen: SocketAddr, to: SocketAddr) -> Relay {
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(listen).expect("bind the relay on 127.0.0.4");
        listener.set_nonblocking(true).unwrap();
        let (f, s) = (frozen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let Ok(outbound) = TcpStream::connect(to) else {
                            continue;
                        };
                        let _ = inbound.set_nonblocking(false);
                        for (from, into) in [
                            (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                            (outbound, inbound),
                        ] {
                            let (f, s) = (f.clone(), s.clone());
                            std::thread::spawn(move || pump(from, into, &f, &s));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay { frozen, stop }
    }

    /// Nothing passes any more, nothing is closed: a pulled cable.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The cable is back.
    pub fn restore(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `into` while not frozen; a connection that saw a freeze is dead for good
/// (its bytes were "lost on the wire").
fn pump(mut from: TcpStream, mut into: TcpStream, frozen: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    let mut dead = false;
    while !stop.load(Ordering::Relaxed) {
        if frozen.load(Ordering::SeqCst) {
            dead = true;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if dead {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if frozen.load(Ordering::SeqCst) {
                    dead = true;
                    continue;
                }
                if into.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = into.shutdown(Shutdown::Both);
}

/// Two nodes and the relay between them.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub relay: Relay,
    pub root: PathBuf,
}

impl Pair {
    /// Creates both nodes (not started).
    pub fn new(root: &Path, a: Options, b: Options) -> Pair {
        let mirror_port = free_port();
        let relay = Relay::start(
            format!("127.0.0.4:{mirror_port}").parse().unwrap(),
            format!("127.0.0.3:{mirror_port}").parse().unwrap(),
        );
        Pair {
            a: Node::new(1, root, mirror_port, &a),
            b: Node::new(2, root, mirror_port, &b),
            relay,
            root: root.to_path_buf(),
        }
    }

    /// Both started, in sync, A Primary.
    pub fn start_with_a_primary(root: &Path) -> Pair {
        let mut p = Pair::new(root, Options::default(), Options::default());
        p.a.start();
        p.b.start();
        p.a.wait_synced();
        p.a.promote(false);
        p
    }

    /// Stops both cleanly and compares the backing files byte for byte.
    pub fn stop_and_compare(&mut self) {
        self.a.terminate();
        self.b.terminate();
        let a = std::fs::read(self.a.data()).unwrap();
        let b = std::fs::read(self.b.data()).unwrap();
        assert_eq!(a.len(), b.len());
        if let Some(at) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!("the copies differ first at byte {at} (block {})", at / 512);
        }
    }
}

/// A `ringsan-perf run` in the background.
pub struct Load {
    child: Child,
    pub json: PathBuf,
    reads: bool,
}

impl Load {
    /// A verified random read/write load of `secs` seconds on the first `size` of the volume,
    /// through every URL given (paths of one LUN: the run fails over between them).
    pub fn start(root: &Path, urls: &[String], rw: &str, size: &str, secs: u32) -> Load {
        Load::start_bs(root, urls, rw, "4k", size, secs)
    }

    /// As [`Load::start`] with I/Os of `bs`.
    pub fn start_bs(
        root: &Path,
        urls: &[String],
        rw: &str,
        bs: &str,
        size: &str,
        secs: u32,
    ) -> Load {
        let json = root.join(format!("perf-{}.json", unique()));
        let mut cmd = Command::new(PERF);
        cmd.arg("run");
        for u in urls {
            cmd.args(["--url", u]);
        }
        let child = cmd
            .args(["--rw", rw, "--bs", bs, "--iodepth", "8", "--size", size])
            .args([
                "--runtime",
                &secs.to_string(),
                "--verify",
                "--timeout",
                "30",
            ])
            .args(["--quiet", "--json"])
            .arg(&json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ringsan-perf");
        Load {
            child,
            json,
            reads: rw != "write",
        }
    }

    /// Waits for the run; asserts it succeeded with no acknowledged write lost.
    pub fn finish(self) -> ringsan_perf::result::RunResult {
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ringsan-perf: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let r = ringsan_perf::result::RunResult::from_json(
            &std::fs::read_to_string(&self.json).unwrap(),
        )
        .unwrap();
        let v = r.verify.as_ref().expect("--verify results");
        assert_eq!(
            v.counts.blocks_mismatched, 0,
            "an acknowledged write was lost or a wrong block read: {:?}\n{stdout}",
            v.mismatches
        );
        if self.reads {
            assert!(v.counts.blocks_ok > 0, "reads checked data: {stdout}");
        }
        assert_eq!(r.errors.count, 0, "no command failed for good: {stdout}");
        r
    }
}
