//! `target-admin` against the real daemon: every subcommand with `--json` output parsed and
//! checked, refusals (exit 1, the field named), busy deletions and `--force`, the root-only
//! socket (exit 3), live changes seen by a logged-in session (unit attentions, REPORT LUNS, READ
//! CAPACITY(16)), the configuration written back and served again after a restart, and the
//! generated completions and man pages.
//!
//! Each test starts its own `ringsand` with its control socket in its scratch folder.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::initiator::{write10, Conn, LoginOptions};
use common::{Daemon, IQN};
use ringsan::scsi::pr::{PrOut, PrType};

/// The CLI under test.
const BIN: &str = env!("CARGO_BIN_EXE_target-admin");
/// A second target's name.
const IQN2: &str = "iqn.2026-11.io.ringsan:second";
/// The test initiator's name (see `LoginOptions::new`).
const INITIATOR: &str = "iqn.2026-11.io.ringsan:test-initiator";
const MIB: u64 = 1 << 20;
const TUR: [u8; 6] = [0; 6];
/// A socket path where nothing listens.
const NOWHERE: &str = "/nonexistent/ringsan/control.sock";

/// Command-line words: a string is split on whitespace (no quoting: scratch paths have no
/// spaces), an array or vector is taken word for word.
trait Words {
    fn words(self) -> Vec<String>;
}

impl Words for &str {
    fn words(self) -> Vec<String> {
        self.split_whitespace().map(str::to_string).collect()
    }
}

impl Words for String {
    fn words(self) -> Vec<String> {
        self.as_str().words()
    }
}

impl<const N: usize> Words for [&str; N] {
    fn words(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

impl Words for Vec<&str> {
    fn words(self) -> Vec<String> {
        self.iter().map(|s| s.to_string()).collect()
    }
}

/// What one CLI run left behind.
#[derive(Debug)]
struct Out {
    args: Vec<String>,
    /// Exit code (`None`: killed by a signal or by the timeout).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            let args = self.args.join(" ");
            panic!("target-admin {args}: stdout is not JSON ({e}): {self:#?}")
        })
    }

    /// Everything printed, for "never printed" checks.
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the CLI with `args`, `RINGSAN_SOCKET` unset unless `env` sets it.
fn cli(args: impl Words, env: &[(&str, &str)]) -> Out {
    cli_with(Command::new(BIN), args.words(), env)
}

/// Runs `cmd` (the CLI, or a wrapper that runs it) with `args`, bounded by a timeout.
fn cli_with(mut cmd: Command, args: Vec<String>, env: &[(&str, &str)]) -> Out {
    cmd.args(&args)
        .env_remove("RINGSAN_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for target-admin") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        args,
        code,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Polls `f` until it holds or `wait` passes.
fn eventually(wait: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon with its control socket in its scratch folder, and the CLI pointed at it.
struct Admin {
    d: Daemon,
    cfg: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Admin {
    /// A daemon serving target [`IQN`] with LUN 0 (64 MiB, 512-byte blocks).
    fn start(name: &str) -> Admin {
        let dir = common::scratch(name);
        let socket = dir.join("control.sock");
        assert!(
            socket.as_os_str().len() < 100,
            "{} is too long for a Unix socket path",
            socket.display()
        );
        let port = free_port();
        let cfg = dir.join("ringsan.toml");
        let daemon_extra = format!("control_socket = \"{}\"", socket.display());
        let text = common::config_text_with(&dir, port, &[(0, "64M", 512)], "", &daemon_extra);
        std::fs::write(&cfg, text).expect("write the configuration");
        let d = Daemon::spawn(dir, cfg.clone(), port);
        let a = Admin {
            d,
            cfg,
            socket,
            port,
        };
        a.wait_socket();
        a
    }

    fn wait_socket(&self) {
        assert!(
            eventually(Duration::from_secs(10), || self.socket.exists()),
            "no control socket at {}; log:\n{}",
            self.socket.display(),
            self.d.log_text()
        );
    }

    fn dir(&self) -> &Path {
        &self.d.dir
    }

    /// `target-admin --socket SOCKET ARGS...`.
    fn run(&self, args: impl Words) -> Out {
        let mut all = vec!["--socket".to_string(), self.socket.display().to_string()];
        all.extend(args.words());
        cli_with(Command::new(BIN), all, &[])
    }

    /// Runs with `--json` and expects success; returns the data.
    fn ok(&self, args: impl Words) -> Value {
        let mut all = vec!["--json".to_string()];
        all.extend(args.words());
        let out = self.run(all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            out.code,
            Some(0),
            "failed: {out:#?}\nlog:\n{}",
            self.d.log_text()
        );
        out.json()
    }

    /// Runs with `--json` and expects a refusal of `kind` with exit code 1, printed as JSON on
    /// stdout and as `target-admin: <field>: <message>` on stderr; returns the error object.
    fn refused(&self, args: impl Words, kind: &str) -> Value {
        let mut all = vec!["--json".to_string()];
        all.extend(args.words());
        let out = self.run(all.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code, Some(1), "{out:#?}");
        let e = out.json()["error"].clone();
        assert_eq!(e["kind"], kind, "{out:#?}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{out:#?}");
        let line = match e["field"].as_str() {
            Some(f) => format!("target-admin: {f}: {message}\n"),
            None => format!("target-admin: {message}\n"),
        };
        assert_eq!(out.stderr, line, "{out:#?}");
        e
    }

    /// As [`Admin::refused`], naming `field`.
    fn refused_field(&self, args: impl Words, kind: &str, field: &str) -> Value {
        let e = self.refused(args, kind);
        assert_eq!(e["field"], field, "{e}");
        e
    }

    /// One target from `target list`.
    fn target(&self, iqn: &str) -> Value {
        let list = self.ok("target list");
        list.as_array()
            .expect("target list is an array")
            .iter()
            .find(|t| t["iqn"] == iqn)
            .cloned()
            .unwrap_or_else(|| panic!("{iqn} not in {list}"))
    }

    fn lun(&self, iqn: &str, lun: u16) -> Value {
        self.ok(format!("lun show --target {iqn} --lun {lun}"))
    }

    /// A session of the test initiator on [`IQN`].
    fn logged_in(&self) -> Conn {
        let mut c = Conn::connect(self.d.addr);
        c.login(&LoginOptions::new(IQN)).expect("login");
        c
    }
}

/// Sends TEST UNIT READY to `lun` until it is GOOD; returns the unit attentions on the way.
fn drain_unit_attentions(c: &mut Conn, lun: u16) -> Vec<(u8, u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = c.scsi(lun, &TUR, &[], 0).expect("TEST UNIT READY");
        if r.status == 0 {
            return seen;
        }
        assert_eq!(r.status, 2, "TUR on LUN {lun}: status {:#x}", r.status);
        seen.push(r.sense_key());
    }
    panic!("LUN {lun} never became ready: {seen:x?}");
}

/// REPORT LUNS (opcode A0h) with room for `n` LUNs; returns the LUN numbers.
fn report_luns(c: &mut Conn, n: u32) -> Vec<u16> {
    let alloc = 16 + 8 * n;
    let mut cdb = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
    let r = c.scsi(0, &cdb, &[], alloc).expect("REPORT LUNS");
    assert_eq!(r.status, 0, "REPORT LUNS: sense {:x?}", r.sense_key());
    assert!(r.data.len() >= 8, "REPORT LUNS data {:x?}", r.data);
    let list_len = u32::from_be_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]) as usize;
    r.data[8..]
        .chunks_exact(8)
        .take(list_len / 8)
        .map(|e| (u16::from(e[0] & 0x3f) << 8) | u16::from(e[1]))
        .collect()
}

/// READ CAPACITY(16): (last LBA, block length).
fn read_capacity16(c: &mut Conn, lun: u16) -> (u64, u32) {
    let mut cdb = vec![0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cdb[10..14].copy_from_slice(&32u32.to_be_bytes());
    let r = c.scsi(lun, &cdb, &[], 32).expect("READ CAPACITY(16)");
    assert_eq!(r.status, 0, "READ CAPACITY(16): sense {:x?}", r.sense_key());
    assert!(r.data.len() >= 12, "READ CAPACITY(16) data {:x?}", r.data);
    let last = u64::from_be_bytes(r.data[0..8].try_into().expect("8 bytes"));
    let block = u32::from_be_bytes(r.data[8..12].try_into().expect("4 bytes"));
    (last, block)
}

/// A JSON array of strings, sorted.
fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A created or changed object is answered as the object or as null; either way, look it up.
fn object_or(v: Value, lookup: impl FnOnce() -> Value) -> Value {
    if v.is_null() {
        lookup()
    } else {
        v
    }
}

fn auth_state(t: &Value) -> (bool, bool) {
    (
        t["chap"].as_bool().expect("chap is a bool"),
        t["mutual_chap"].as_bool().expect("mutual_chap is a bool"),
    )
}

#[test]
fn targets_are_created_listed_and_deleted() {
    let a = Admin::start("admin-targets");
    let list = a.ok("target list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let t = &list[0];
    assert_eq!(t["iqn"], IQN);
    assert_eq!(t["tpgt"], 1);
    assert_eq!(t["luns"], json!([0]));
    assert_eq!(t["acl"], json!([]));
    assert_eq!(auth_state(t), (false, false));
    assert_eq!(t["sessions"], 0);

    let created = a.ok([
        "target",
        "create",
        "--iqn",
        IQN2,
        "--tpgt",
        "2",
        "--alias",
        "second store",
    ]);
    let created = object_or(created, || a.target(IQN2));
    assert_eq!(created["iqn"], IQN2);
    assert_eq!(created["tpgt"], 2);
    assert_eq!(created["alias"], "second store");
    assert_eq!(created["luns"], json!([]));
    assert_eq!(created["sessions"], 0);
    assert_eq!(a.target(IQN2), created);

    // Human output: an aligned table with both targets.
    let human = a.run("target list");
    assert_eq!(human.code, Some(0), "{human:#?}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", human.stdout);
    assert!(lines[0].starts_with("IQN "), "{}", human.stdout);
    assert!(human.stdout.contains("second store"), "{}", human.stdout);
    let tpgt_col = lines[0].find("TPGT");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.find(" 1 ").or(l.find(" 2 ")).map(|c| c + 1) == tpgt_col),
        "TPGT column not aligned:\n{}",
        human.stdout
    );

    // A target created live serves logins at once.
    a.ok(format!(
        "lun create --target {IQN2} --lun 0 --path second.img --size 8M"
    ));
    let mut c = Conn::connect(a.d.addr);
    c.login(&LoginOptions::new(IQN2))
        .expect("login to the new target");
    assert_eq!(c.logout().expect("logout"), 0);

    let cut = a.ok(format!("target delete --iqn {IQN2}"));
    assert_eq!(cut["sessions_cut"], 0, "{cut}");
    let list = a.ok("target list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    a.refused(format!("target delete --iqn {IQN2}"), "not-found");
    let mut c = Conn::connect(a.d.addr);
    assert!(
        c.login(&LoginOptions::new(IQN2)).is_err(),
        "a deleted target still accepts logins"
    );
}

#[test]
fn luns_are_created_shown_resized_and_deleted() {
    let a = Admin::start("admin-luns");
    let dir = a.dir().to_path_buf();
    let abs = dir.join("extra1.img");

    let l1 = a.ok(format!(
        "lun create --target {IQN} --lun 1 --path {} --size 16M",
        abs.display()
    ));
    let l1 = object_or(l1, || a.lun(IQN, 1));
    assert_eq!(l1["target"], IQN);
    assert_eq!(l1["lun"], 1);
    assert_eq!(l1["path"], abs.display().to_string());
    assert_eq!(l1["size_bytes"], 16 * MIB);
    assert_eq!(l1["block_size"], 512);
    assert_eq!(l1["write_cache"], false);
    assert!(
        !l1["serial"].as_str().unwrap_or_default().is_empty(),
        "{l1}"
    );
    assert!(!l1["uuid"].as_str().unwrap_or_default().is_empty(), "{l1}");
    assert_eq!(
        std::fs::metadata(&abs).map(|m| m.len()).ok(),
        Some(16 * MIB)
    );

    // A relative path lands in data_dir; 4096-byte blocks, write cache on.
    let l2 = a.ok(format!(
        "lun create --target {IQN} --lun 2 --path extra2.img --size 8M --block-size 4096 --write-cache"
    ));
    let l2 = object_or(l2, || a.lun(IQN, 2));
    assert_eq!(l2["block_size"], 4096);
    assert_eq!(l2["write_cache"], true);
    assert_eq!(l2["size_bytes"], 8 * MIB);
    assert!(
        dir.join("extra2.img").exists(),
        "relative paths are taken from data_dir"
    );

    // An existing file is used at its own size.
    let existing = dir.join("existing.img");
    std::fs::File::create(&existing)
        .and_then(|f| f.set_len(4 * MIB))
        .expect("make a 4 MiB file");
    let l3 = a.ok(format!(
        "lun create --target {IQN} --lun 3 --path {}",
        existing.display()
    ));
    assert_eq!(object_or(l3, || a.lun(IQN, 3))["size_bytes"], 4 * MIB);

    let list = a.ok(format!("lun list --target {IQN}"));
    let mut numbers: Vec<u64> = list
        .as_array()
        .expect("lun list is an array")
        .iter()
        .map(|l| l["lun"].as_u64().expect("lun number"))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{list}");
    assert_eq!(a.lun(IQN, 2), l2);
    assert_eq!(a.target(IQN)["luns"], json!([0, 1, 2, 3]));

    // Grow; shrink only with --force.
    let r = a.ok(format!("lun resize --target {IQN} --lun 1 --size 32M"));
    assert_eq!(object_or(r, || a.lun(IQN, 1))["size_bytes"], 32 * MIB);
    assert_eq!(a.lun(IQN, 1)["size_bytes"], 32 * MIB);
    assert_eq!(
        std::fs::metadata(&abs).map(|m| m.len()).ok(),
        Some(32 * MIB)
    );
    a.refused_field(
        format!("lun resize --target {IQN} --lun 1 --size 16M"),
        "invalid",
        "size",
    );
    assert_eq!(
        a.lun(IQN, 1)["size_bytes"],
        32 * MIB,
        "a refused shrink changed the size"
    );
    let r = a.ok(format!(
        "lun resize --target {IQN} --lun 1 --size 16M --force"
    ));
    assert_eq!(object_or(r, || a.lun(IQN, 1))["size_bytes"], 16 * MIB);

    // Human forms.
    let human = a.run(format!("lun list --target {IQN}"));
    assert_eq!(human.code, Some(0), "{human:#?}");
    assert!(human.stdout.starts_with("LUN "), "{}", human.stdout);
    assert!(human.stdout.contains("16 MiB"), "{}", human.stdout);
    assert_eq!(human.stdout.lines().count(), 5, "{}", human.stdout);
    let human = a.run(format!("lun show --target {IQN} --lun 2"));
    assert_eq!(human.code, Some(0), "{human:#?}");
    assert!(human.stdout.contains("4096"), "{}", human.stdout);
    let serial = l2["serial"].as_str().unwrap_or("?");
    assert!(human.stdout.contains(serial), "{}", human.stdout);

    let cut = a.ok(format!("lun delete --target {IQN} --lun 3"));
    assert_eq!(cut["sessions_cut"], 0, "{cut}");
    assert!(existing.exists(), "the backing file stays");
    a.refused_field(
        format!("lun show --target {IQN} --lun 3"),
        "not-found",
        "lun",
    );
    assert_eq!(a.target(IQN)["luns"], json!([0, 1, 2]));
}

#[test]
fn refusals_exit_1_and_name_the_field() {
    let a = Admin::start("admin-refusals");
    a.refused_field("target create --iqn not-an-iqn", "invalid", "iqn");
    a.refused_field(format!("target create --iqn {IQN}"), "exists", "iqn");
    let lun = |rest: &str| format!("lun create --target {IQN} {rest}");
    a.refused_field(lun("--lun 0 --path again.img --size 8M"), "exists", "lun");
    // A missing file needs --size: the daemon names the path and says so.
    let e = a.refused_field(lun("--lun 1 --path missing.img"), "invalid", "path");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(m.contains("--size"), "the refusal says what to do: {m}");
    a.refused_field(lun("--lun 1 --path odd.img --size 1000"), "invalid", "size");
    a.refused_field(
        lun("--lun 1 --path odd4k.img --size 6K --block-size 4096"),
        "invalid",
        "size",
    );
    a.refused_field(lun("--lun 1 --path x.img --size lots"), "invalid", "size");
    for f in ["missing.img", "odd.img", "odd4k.img", "x.img"] {
        assert!(!a.dir().join(f).exists(), "a refused LUN left {f} behind");
    }
    a.refused_field(format!("lun list --target {IQN2}"), "not-found", "target");
    a.refused(format!("lun show --target {IQN} --lun 9"), "not-found");
    a.refused(format!("lun delete --target {IQN} --lun 9"), "not-found");
    a.refused(
        format!("lun resize --target {IQN} --lun 9 --size 1G"),
        "not-found",
    );
    a.refused_field(
        [
            "acl",
            "add",
            "--target",
            IQN,
            "--initiator",
            "no spaces allowed",
        ],
        "invalid",
        "initiator",
    );
    a.refused_field("portal add nowhere", "invalid", "address");
    // No mirrored volume here: volume commands name the volume and change nothing.
    a.refused_field(format!("volume promote {IQN}/0"), "not-found", "volume");
    a.refused_field("volume status nowhere/0", "not-found", "volume");
    assert_eq!(a.run("volume status").stdout, "no mirrored volumes\n");
    assert_eq!(
        a.target(IQN)["luns"],
        json!([0]),
        "refusals changed nothing"
    );

    // Without --json: nothing on stdout, one line on stderr, exit 1.
    let out = a.run("target create --iqn not-an-iqn");
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert!(out.stderr.starts_with("target-admin: iqn: "), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let help = cli("--help", &[]);
    assert_eq!(help.code, Some(0), "{help:#?}");
    for needle in [
        "Exit status",
        "0  success",
        "1  refused by the daemon",
        "2  usage error",
        "3  cannot reach the daemon",
        "4  I/O error on the daemon's side",
        "RINGSAN_SOCKET",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle:?}:\n{}",
            help.stdout
        );
    }
    let set = format!("auth chap set --target {IQN} --user u");
    for args in [
        format!("lun create --target {IQN} --path x.img"),
        format!("lun create --target {IQN} --lun 1 --path x --block-size 1000"),
        format!("lun show --target {IQN} --lun 65536"),
        set.clone(),
        format!("{set} --secret abcdefghijklm --secret-file f"),
        format!("{set} --secret abcdefghijklm --mutual-secret abcdefghijklmn"),
        format!("{set} --secret abcdefghijklm --mutual-user m"),
        format!("{set} --secret-file /nonexistent/secret"),
        "target frobnicate".to_string(),
        "portal add".to_string(),
    ] {
        let out = cli(args, &[("RINGSAN_SOCKET", NOWHERE)]);
        assert_eq!(out.code, Some(2), "{out:#?}");
        assert!(!out.stderr.is_empty(), "{out:#?}");
    }
}

#[test]
fn acl_entries_are_added_listed_removed_and_enforced() {
    let a = Admin::start("admin-acl");
    let other = "iqn.1993-08.org.debian:01:other";
    let acl = |op: &str, who: &str| format!("acl {op} --target {IQN} --initiator {who}");
    let list = || sorted_strings(&a.ok(format!("acl list --target {IQN}")));
    assert!(list().is_empty());
    a.ok(acl("add", other));
    assert_eq!(list(), vec![other.to_string()]);
    assert_eq!(a.target(IQN)["acl"], json!([other]));
    a.refused_field(acl("add", other), "exists", "initiator");

    // Only `other` may log in now.
    let mut c = Conn::connect(a.d.addr);
    assert!(
        c.login(&LoginOptions::new(IQN)).is_err(),
        "an initiator not on the ACL logged in"
    );
    a.ok(acl("add", INITIATOR));
    assert_eq!(list(), sorted(vec![other.into(), INITIATOR.into()]));
    let human = a.run(format!("acl list --target {IQN}"));
    assert!(human.stdout.starts_with("INITIATOR\n"), "{human:#?}");
    assert_eq!(human.stdout.lines().count(), 3, "{human:#?}");
    assert_eq!(a.logged_in().logout().expect("logout"), 0);

    a.ok(acl("remove", other));
    assert_eq!(list(), vec![INITIATOR.to_string()]);
    a.ok(acl("remove", INITIATOR));
    assert!(list().is_empty());
    let human = a.run(format!("acl list --target {IQN}"));
    assert!(human.stdout.contains("any initiator"), "{human:#?}");
    a.refused_field(acl("remove", other), "not-found", "initiator");
    a.refused_field(
        format!("acl add --target {IQN2} --initiator {other}"),
        "not-found",
        "target",
    );
    assert_eq!(
        a.logged_in().logout().expect("logout"),
        0,
        "an empty ACL allows any initiator"
    );
}

#[test]
fn chap_is_set_and_cleared_and_secrets_are_never_printed() {
    let a = Admin::start("admin-chap");
    let secret = "Initiator+Secret+42";
    let mutual = "Target+Own+Secret+7";
    let leaks = |out: &Out| out.all().contains(secret) || out.all().contains(mutual);
    let set = format!("auth chap set --target {IQN} --user dom0");
    let out = a.run(format!("--json {set} --secret {secret}"));
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(!leaks(&out), "a secret was printed: {out:#?}");
    assert_eq!(auth_state(&a.target(IQN)), (true, false));
    let mut c = Conn::connect(a.d.addr);
    assert!(
        c.login(&LoginOptions::new(IQN)).is_err(),
        "a login without CHAP passed while CHAP is required"
    );

    // From files (one trailing newline dropped), with mutual CHAP; JSON and human output.
    let f1 = a.dir().join("secret");
    let f2 = a.dir().join("mutual-secret");
    std::fs::write(&f1, format!("{secret}\n")).expect("write the secret file");
    std::fs::write(&f2, format!("{mutual}\n")).expect("write the secret file");
    for json in ["--json", ""] {
        let out = a.run(format!(
            "{json} {set} --secret-file {} --mutual-user ringsan --mutual-secret-file {}",
            f1.display(),
            f2.display()
        ));
        assert_eq!(out.code, Some(0), "{out:#?}");
        assert!(!leaks(&out), "a secret was printed: {out:#?}");
    }
    assert_eq!(auth_state(&a.target(IQN)), (true, true));
    for args in ["--json target list", "target list", "--json session list"] {
        let out = a.run(args);
        assert!(!leaks(&out), "a secret was printed: {out:#?}");
    }

    // Refused secrets are not echoed either, in JSON or on stderr.
    let short = "Zq7short";
    for json in ["--json", ""] {
        let out = a.run(format!("{json} {set} --secret {short}"));
        assert_eq!(
            out.code,
            Some(1),
            "an 8-character secret was accepted: {out:#?}"
        );
        assert!(
            !out.all().contains(short),
            "the refused secret was printed: {out:#?}"
        );
        assert!(out.stderr.starts_with("target-admin: secret: "), "{out:#?}");
    }
    let out = a.run(format!(
        "--json {set} --secret {secret} --mutual-user ringsan --mutual-secret {secret}"
    ));
    assert_eq!(
        out.code,
        Some(1),
        "the same secret both ways was accepted: {out:#?}"
    );
    assert!(!leaks(&out), "a secret was printed: {out:#?}");
    a.refused_field(
        format!("auth chap set --target {IQN2} --user u --secret {secret}"),
        "not-found",
        "target",
    );
    assert_eq!(
        auth_state(&a.target(IQN)),
        (true, true),
        "refusals changed nothing"
    );
    let log = a.d.log_text();
    assert!(
        !log.contains(secret) && !log.contains(mutual),
        "the daemon logged a secret:\n{log}"
    );

    a.ok(format!("auth chap clear --target {IQN}"));
    assert_eq!(auth_state(&a.target(IQN)), (false, false));
    assert_eq!(
        a.logged_in().logout().expect("logout"),
        0,
        "a login without CHAP passes after clear"
    );
}

#[test]
fn portals_are_added_listed_and_removed() {
    let a = Admin::start("admin-portals");
    let first = format!("127.0.0.1:{}", a.port);
    assert_eq!(sorted_strings(&a.ok("portal list")), vec![first.clone()]);
    let extra = format!("127.0.0.1:{}", free_port());
    a.ok(format!("portal add {extra}"));
    assert_eq!(
        sorted_strings(&a.ok("portal list")),
        sorted(vec![first.clone(), extra.clone()])
    );
    a.refused_field(format!("portal add {extra}"), "exists", "address");

    // The new portal serves logins.
    let addr: SocketAddr = extra.parse().expect("an address");
    let mut c = Conn::connect(addr);
    c.login(&LoginOptions::new(IQN))
        .expect("login through the added portal");
    let sessions = a.ok("session list");
    assert_eq!(sessions[0]["portal"], extra.as_str(), "{sessions}");

    a.ok(format!("portal remove {extra}"));
    assert_eq!(sorted_strings(&a.ok("portal list")), vec![first]);
    assert!(
        eventually(Duration::from_secs(5), || TcpStream::connect(addr).is_err()),
        "{extra} still accepts connections after portal remove"
    );
    c.ping(b"still here")
        .expect("sessions on a removed portal stay");
    a.refused_field(format!("portal remove {extra}"), "not-found", "address");
    let human = a.run("portal list");
    assert!(human.stdout.starts_with("PORTAL\n"), "{human:#?}");
}

#[test]
fn sessions_are_listed_with_their_parameters() {
    let a = Admin::start("admin-sessions");
    assert_eq!(a.ok("session list"), json!([]));
    let c = a.logged_in();
    let list = a.ok("session list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let s = &list[0];
    assert_eq!(s["tsih"], c.tsih);
    assert_eq!(s["initiator"], INITIATOR);
    assert_eq!(
        s["isid"].as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("800000000001"),
        "{s}"
    );
    assert_eq!(s["target"], IQN);
    assert_eq!(s["portal"], a.d.addr.to_string());
    let local = c.stream.local_addr().expect("local address");
    assert_eq!(s["peer"], local.to_string());
    assert_eq!(s["connections"], 1);
    assert_eq!(s["commands_in_flight"], 0);
    let params = sorted_strings(&s["parameters"]);
    for key in ["HeaderDigest=None", "MaxBurstLength=", "ImmediateData="] {
        assert!(
            params.iter().any(|p| p.starts_with(key)),
            "no {key} in {params:?}"
        );
    }
    assert_eq!(a.target(IQN)["sessions"], 1);

    // Human: one row per session, the parameters on an indented second line.
    let human = a.run("session list");
    assert_eq!(human.code, Some(0), "{human:#?}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", human.stdout);
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "TSIH",
            "INITIATOR",
            "ISID",
            "TARGET",
            "PORTAL",
            "CONNS",
            "IN-FLIGHT"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], c.tsih.to_string(), "{}", human.stdout);
    assert_eq!(
        &row[1..],
        [
            INITIATOR,
            "800000000001",
            IQN,
            &a.d.addr.to_string(),
            "1",
            "0"
        ]
    );
    assert!(lines[2].starts_with("    "), "{}", human.stdout);
    assert!(lines[2].contains("HeaderDigest=None"), "{}", human.stdout);
    assert!(lines[2].contains(&local.to_string()), "{}", human.stdout);

    // The socket from the environment; --socket wins over it.
    let socket = a.socket.display().to_string();
    let out = cli("--json session list", &[("RINGSAN_SOCKET", &socket)]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_eq!(out.json(), list);
    let out = cli(
        format!("--json --socket {socket} session list"),
        &[("RINGSAN_SOCKET", NOWHERE)],
    );
    assert_eq!(out.code, Some(0), "{out:#?}");
    // Global options may follow the subcommand too.
    let out = cli(format!("session list --json --socket {socket}"), &[]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_eq!(out.json(), list);
}

#[test]
fn forced_target_delete_cuts_its_sessions() {
    let a = Admin::start("admin-busy-target");
    let mut c = a.logged_in();
    let e = a.refused_field(format!("target delete --iqn {IQN}"), "busy", "iqn");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(
        m.contains('1') && m.contains("--force"),
        "busy message: {m}"
    );
    let human = a.run(format!("target delete --iqn {IQN}"));
    assert_eq!(human.code, Some(1), "{human:#?}");
    assert!(human.stderr.contains("--force"), "{human:#?}");
    c.ping(b"alive")
        .expect("a refused delete leaves the session alone");
    assert_eq!(a.target(IQN)["sessions"], 1);

    let cut = a.ok(format!("target delete --iqn {IQN} --force"));
    assert_eq!(cut["sessions_cut"], 1, "{cut}");
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "the session was not cut"
    );
    assert!(
        eventually(Duration::from_secs(5), || a.ok("session list") == json!([])),
        "a cut session is still listed"
    );
    assert_eq!(a.ok("target list"), json!([]));
}

/// Deleting a LUN under a logged-in session needs `--force`, which removes the LUN from under
/// the session without cutting it (its other LUNs keep working; the remaining LUNs report
/// REPORTED LUNS DATA HAS CHANGED) and says how many sessions were affected.
#[test]
fn forced_lun_delete_leaves_the_sessions_logged_in() {
    let a = Admin::start("admin-busy-lun");
    let mut c = a.logged_in();
    let e = a.refused_field(format!("lun delete --target {IQN} --lun 0"), "busy", "lun");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(
        m.contains('1') && m.contains("--force"),
        "busy message: {m}"
    );
    c.ping(b"alive")
        .expect("a refused delete leaves the session alone");
    assert_eq!(a.target(IQN)["luns"], json!([0]));

    let done = a.ok(format!("lun delete --target {IQN} --lun 0 --force"));
    assert_eq!(a.target(IQN)["luns"], json!([]), "the LUN is gone");
    assert_eq!(done["sessions_cut"], 0, "{done}");
    assert_eq!(done["sessions_affected"], 1, "{done}");
    c.ping(b"still").expect("the session stays logged in");
    let r = c.scsi(0, &[0, 0, 0, 0, 0, 0], &[], 0).expect("a response");
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_key(), (5, 0x25, 0x00), "LOGICAL UNIT NOT SUPPORTED");
}

#[test]
fn the_socket_is_root_only_and_a_missing_daemon_is_exit_3() {
    // No daemon at all: exit 3 with the path and the hint, in JSON too.
    let out = cli("--json target list", &[("RINGSAN_SOCKET", NOWHERE)]);
    assert_eq!(out.code, Some(3), "{out:#?}");
    assert!(out.stderr.contains(NOWHERE), "{out:#?}");
    assert!(
        out.stderr.contains("is ringsand running? are you root?"),
        "{out:#?}"
    );
    assert_eq!(out.json()["error"]["kind"], "unreachable");

    let a = Admin::start("admin-nonroot");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a.socket).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the control socket is root's alone");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot run the CLI as another user; the mode check stands in");
        return;
    }
    common::require("setpriv", "util-linux");
    let socket = a.socket.display().to_string();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    let args = format!("--socket {socket} --json target list").words();
    let out = cli_with(cmd, args, &[]);
    assert_eq!(out.code, Some(3), "as nobody: {out:#?}");
    let stderr = out.stderr.to_ascii_lowercase();
    assert!(stderr.contains("permission denied"), "{out:#?}");
    assert!(out.stderr.contains(&socket), "{out:#?}");
    assert_eq!(out.json()["error"]["kind"], "unreachable");
    // Root still gets in.
    assert_eq!(sorted_strings(&a.ok("portal list")).len(), 1);
}

#[test]
fn live_changes_reach_a_logged_in_session() {
    let a = Admin::start("admin-live");
    let mut c = a.logged_in();
    drain_unit_attentions(&mut c, 0);
    assert_eq!(report_luns(&mut c, 1), vec![0]);

    a.ok(format!(
        "lun create --target {IQN} --lun 1 --path live1.img --size 8M"
    ));
    let r = c.scsi(0, &TUR, &[], 0).expect("TEST UNIT READY");
    assert_eq!(r.status, 2, "no unit attention after a LUN was added");
    assert_eq!(
        r.sense_key(),
        (6, 0x3f, 0x0e),
        "REPORTED LUNS DATA HAS CHANGED"
    );
    let r = c.scsi(0, &TUR, &[], 0).expect("TEST UNIT READY");
    assert_eq!(r.status, 0, "the unit attention is reported once");
    let mut luns = report_luns(&mut c, 2);
    luns.sort_unstable();
    assert_eq!(luns, vec![0, 1]);
    drain_unit_attentions(&mut c, 1);
    assert_eq!(read_capacity16(&mut c, 1), (8 * MIB / 512 - 1, 512));

    a.ok(format!("lun resize --target {IQN} --lun 1 --size 24M"));
    let r = c.scsi(1, &TUR, &[], 0).expect("TEST UNIT READY");
    assert_eq!(r.status, 2, "no unit attention after a resize");
    assert_eq!(r.sense_key(), (6, 0x2a, 0x09), "CAPACITY DATA HAS CHANGED");
    assert_eq!(read_capacity16(&mut c, 1), (24 * MIB / 512 - 1, 512));
    // Blocks past the old end can be written.
    let lba = (20 * MIB / 512) as u32;
    let w = c
        .scsi(1, &write10(lba, 1), &[0x5a; 512], 0)
        .expect("WRITE(10)");
    assert_eq!(
        w.status,
        0,
        "write past the old end: sense {:x?}",
        w.sense_key()
    );
    assert_eq!(c.logout().expect("logout"), 0);
}

#[test]
fn settings_are_written_back_and_served_after_a_restart() {
    let mut a = Admin::start("admin-persist");
    let other = "iqn.1993-08.org.debian:01:dom0-a";
    let secret = "Persisted+Secret+1";
    let extra = format!("127.0.0.1:{}", free_port());
    a.ok(format!("target create --iqn {IQN2} --tpgt 3 --alias kept"));
    a.ok(format!(
        "lun create --target {IQN2} --lun 5 --path kept5.img --size 8M --block-size 4096 --write-cache"
    ));
    a.ok(format!("lun resize --target {IQN} --lun 0 --size 128M"));
    a.ok(format!("acl add --target {IQN} --initiator {other}"));
    a.ok(format!(
        "auth chap set --target {IQN2} --user dom0 --secret {secret}"
    ));
    a.ok(format!("portal add {extra}"));
    let state = |a: &Admin| -> Vec<Value> {
        [
            "target list".to_string(),
            format!("lun list --target {IQN}"),
            format!("lun list --target {IQN2}"),
            format!("acl list --target {IQN}"),
        ]
        .into_iter()
        .map(|args| a.ok(args))
        .collect()
    };
    let before = state(&a);

    let status = a.d.terminate().expect("ringsand exits on SIGTERM");
    assert!(status.success(), "{status:?}; log:\n{}", a.d.log_text());

    // The file says what was set, is owner-only (a CHAP secret is inside) and loads.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a.cfg).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the configuration holds secrets");
    let cfg = ringsan::config::Config::load(&a.cfg).unwrap_or_else(|e| panic!("{e}"));
    let t1 = cfg
        .targets
        .iter()
        .find(|t| t.iqn == IQN)
        .expect("the first target");
    let t2 = cfg
        .targets
        .iter()
        .find(|t| t.iqn == IQN2)
        .expect("the created target");
    assert_eq!(t1.allow, vec![other.to_string()]);
    assert_eq!(t1.luns[0].size_bytes, Some(128 * MIB));
    assert_eq!((t2.tpgt, t2.alias.as_deref()), (3, Some("kept")));
    assert_eq!(t2.chap.as_ref().map(|c| c.user.as_str()), Some("dom0"));
    assert_eq!(t2.chap.as_ref().map(|c| c.secret.as_str()), Some(secret));
    let l5 = t2
        .luns
        .iter()
        .find(|l| l.lun == 5)
        .expect("the created LUN");
    assert_eq!((l5.block_size, l5.write_cache), (4096, true));
    assert_eq!(l5.path, a.dir().join("kept5.img"));
    let extra_addr: SocketAddr = extra.parse().expect("an address");
    assert!(cfg.portals.contains(&extra_addr), "{:?}", cfg.portals);
    assert_eq!(cfg.control_socket, a.socket);

    let (dir, cfg_path, port) = (a.d.dir.clone(), a.cfg.clone(), a.port);
    a.d = Daemon::spawn(dir, cfg_path, port);
    a.wait_socket();
    assert_eq!(
        state(&a),
        before,
        "the restarted daemon serves something else"
    );
    assert_eq!(
        sorted_strings(&a.ok("portal list")),
        sorted(vec![format!("127.0.0.1:{port}"), extra])
    );
    assert_eq!(auth_state(&a.target(IQN2)), (true, false));
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef target-admin"),
        ("fish", "complete -c target-admin"),
    ] {
        let out = cli(format!("generate completions {shell}"), &[]);
        assert_eq!(out.code, Some(0), "{out:#?}");
        assert!(out.stdout.contains(needle), "{shell}: {}", out.stdout);
        for word in ["target", "lun", "resize", "block-size", "session"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
        // clap_complete's fish script stops two levels down (`auth chap set` has no options
        // there); bash and zsh go all the way.
        if shell != "fish" {
            assert!(out.stdout.contains("mutual-secret-file"), "{shell}");
        }
    }
    let out = cli("generate completions tcsh", &[]);
    assert_eq!(
        out.code,
        Some(2),
        "an unknown shell is a usage error: {out:#?}"
    );

    let dir = common::scratch("admin-man").join("man8");
    let out = cli(format!("generate man --dir {}", dir.display()), &[]);
    assert_eq!(out.code, Some(0), "{out:#?}");
    let pages = [
        "target-admin",
        "target-admin-target",
        "target-admin-target-create",
        "target-admin-target-list",
        "target-admin-target-delete",
        "target-admin-lun",
        "target-admin-lun-create",
        "target-admin-lun-list",
        "target-admin-lun-show",
        "target-admin-lun-resize",
        "target-admin-lun-delete",
        "target-admin-acl",
        "target-admin-acl-add",
        "target-admin-acl-remove",
        "target-admin-acl-list",
        "target-admin-auth",
        "target-admin-auth-chap",
        "target-admin-auth-chap-set",
        "target-admin-auth-chap-clear",
        "target-admin-portal",
        "target-admin-portal-add",
        "target-admin-portal-remove",
        "target-admin-portal-list",
        "target-admin-session",
        "target-admin-session-list",
        "target-admin-pr",
        "target-admin-pr-show",
        "target-admin-pr-clear",
        "target-admin-volume",
        "target-admin-volume-status",
        "target-admin-volume-promote",
        "target-admin-volume-demote",
        "target-admin-volume-verify",
        "target-admin-volume-resync",
        "target-admin-volume-discard-my-data",
        "target-admin-volume-connect",
        "target-admin-volume-attach",
        "target-admin-generate",
        "target-admin-generate-completions",
        "target-admin-generate-man",
    ];
    for page in pages {
        let path = dir.join(format!("{page}.8"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; wrote:\n{}", path.display(), out.stdout));
        assert!(text.contains(".TH "), "{page} is not a man page");
        assert!(out.stdout.contains(&path.display().to_string()), "{out:#?}");
    }
    let written = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, pages.len(), "one page per command, no more");
    let main = std::fs::read_to_string(dir.join("target-admin.8")).unwrap_or_default();
    assert!(
        main.contains("Exit status"),
        "the main page documents exit codes"
    );
}

/// A SIGKILL in the middle of a stream of changes leaves the old configuration or a newer one,
/// never a torn file: the written file always parses, and every ACL it lists was acknowledged
/// (or was the one in flight).
#[test]
fn sigkill_during_changes_never_tears_the_config() {
    let mut a = Admin::start("admin-sigkill");
    let socket = a.socket.clone();
    let changer = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..400 {
            let name = format!("iqn.2026-11.io.ringsan:host-{i:04}");
            let out = cli_with(
                Command::new(BIN),
                vec![
                    "--socket".into(),
                    socket.display().to_string(),
                    "acl".into(),
                    "add".into(),
                    "--target".into(),
                    IQN.into(),
                    "--initiator".into(),
                    name.clone(),
                ],
                &[],
            );
            if out.code != Some(0) {
                break;
            }
            acknowledged.push(name);
        }
        acknowledged
    });
    std::thread::sleep(Duration::from_millis(300));
    if let Some(mut child) = a.d.child.take() {
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let acknowledged = changer.join().expect("changer thread");
    assert!(
        !acknowledged.is_empty(),
        "some changes went through before the kill"
    );
    let config =
        ringsan::config::Config::load(&a.cfg).expect("the configuration parses after SIGKILL");
    let allowed = &config.targets[0].allow;
    for name in acknowledged.iter() {
        assert!(
            allowed.contains(name),
            "acknowledged change {name} is missing from the file"
        );
    }
    assert!(
        allowed.len() <= acknowledged.len() + 1,
        "at most the one change in flight is extra"
    );
    let leftovers: Vec<_> = std::fs::read_dir(a.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.len() <= 1,
        "at most one temporary file from the interrupted write"
    );
}

/// Sends PERSISTENT RESERVE OUT `op` on LUN 0; its status.
fn prout(c: &mut Conn, op: &PrOut) -> u8 {
    let (cdb, params) = op.encode();
    c.scsi(0, &cdb, &params, 0).expect("a response").status
}

#[test]
fn pr_show_lists_registrations_and_pr_clear_breaks_them() {
    let a = Admin::start("admin-pr");
    let mut c = a.logged_in();
    drain_unit_attentions(&mut c, 0);
    let mut reg = PrOut::register_ignore(0xA);
    reg.aptpl = true;
    assert_eq!(prout(&mut c, &reg), 0);
    assert_eq!(
        prout(&mut c, &PrOut::reserve(0xA, PrType::WriteExclusive)),
        0
    );

    let p = a.ok(format!("pr show --target {IQN} --lun 0"));
    assert_eq!(p["generation"], 1, "{p}");
    assert_eq!(p["aptpl"], true, "{p}");
    assert_eq!(p["reservation_type"], "WE", "{p}");
    let holder = p["reservation_holder"].as_str().unwrap_or_default();
    assert!(
        holder.contains("Write Exclusive")
            && holder.contains(INITIATOR)
            && holder.ends_with("0x000000000000000a"),
        "{holder}"
    );
    let r = &p["registrations"][0];
    assert_eq!(r["key"], "0x000000000000000a", "{p}");
    assert_eq!(
        (r["holder"].clone(), r["aptpl"].clone()),
        (json!(true), json!(true))
    );
    let initiator_port = r["initiator_port"].as_str().unwrap_or_default();
    assert!(
        initiator_port.starts_with(&format!("{INITIATOR},i,0x")),
        "{initiator_port}"
    );
    assert_eq!(r["target_port"], format!("{IQN},t,0x0001"), "{p}");
    let file = p["state_file"].as_str().unwrap_or_default().to_string();
    assert!(Path::new(&file).exists(), "APTPL wrote {file}");
    let human = a.run(format!("pr show --target {IQN} --lun 0"));
    assert_eq!(human.code, Some(0), "{human:#?}");
    for needle in ["INITIATOR PORT", "0x000000000000000a", "WE", initiator_port] {
        assert!(human.stdout.contains(needle), "{needle}: {}", human.stdout);
    }

    let e = a.refused_field(format!("pr clear --target {IQN} --lun 0"), "busy", "force");
    let m = e["message"].as_str().unwrap_or_default();
    assert!(m.contains("1 registration(s) and a WE reservation"), "{m}");
    assert_eq!(
        a.ok(format!("pr show --target {IQN} --lun 0"))["registrations"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "a refusal changes nothing"
    );
    a.refused_field(
        format!("pr show --target {IQN} --lun 9"),
        "not-found",
        "lun",
    );

    let done = a.ok(format!("pr clear --target {IQN} --lun 0 --force"));
    assert_eq!(done["registrations_removed"], 1, "{done}");
    assert_eq!(done["was_offline"], false, "{done}");
    let p = a.ok(format!("pr show --target {IQN} --lun 0"));
    assert_eq!(p["registrations"], json!([]), "{p}");
    assert_eq!(p["reservation_type"], Value::Null, "{p}");
    assert_eq!(p["aptpl"], false, "{p}");
    let r = c.scsi(0, &TUR, &[], 0).expect("a response");
    assert_eq!(r.sense_key(), (6, 0x2a, 0x05), "REGISTRATIONS PREEMPTED");
    assert_eq!(
        prout(&mut c, &PrOut::reserve(0xA, PrType::WriteExclusive)),
        0x18,
        "the old key is gone"
    );
}

#[test]
fn pr_clear_brings_back_a_lun_whose_state_file_is_damaged() {
    let mut a = Admin::start("admin-pr-damaged");
    {
        let mut c = a.logged_in();
        drain_unit_attentions(&mut c, 0);
        let mut reg = PrOut::register_ignore(0xB);
        reg.aptpl = true;
        assert_eq!(prout(&mut c, &reg), 0);
    }
    let file = a.ok(format!("pr show --target {IQN} --lun 0"))["state_file"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.d.terminate().expect("ringsand exits on SIGTERM");
    std::fs::write(&file, "format = 1\nunit = \"not this one\"\n").expect("damage the file");
    let (dir, cfg_path, port) = (a.d.dir.clone(), a.cfg.clone(), a.port);
    a.d = Daemon::spawn(dir, cfg_path, port);
    a.wait_socket();

    let l = a.lun(IQN, 0);
    let why = l["offline"].as_str().unwrap_or_default();
    assert!(why.contains(&file), "the reason names the file: {l}");
    let list = a.run(format!("lun list --target {IQN}"));
    assert!(list.stdout.contains("OFFLINE"), "{}", list.stdout);
    let mut c = a.logged_in();
    let r = (0..4)
        .map(|_| c.scsi(0, &TUR, &[], 0).expect("a response"))
        .find(|r| r.sense_key().0 != 6)
        .expect("past the unit attentions");
    assert_eq!(r.sense_key(), (2, 0x04, 0x03), "offline: NOT READY");

    let e = a.refused_field(format!("pr clear --target {IQN} --lun 0"), "busy", "force");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("offline"),
        "{e}"
    );
    let done = a.ok(format!("pr clear --target {IQN} --lun 0 --force"));
    assert_eq!(done["was_offline"], true, "{done}");
    assert_eq!(a.lun(IQN, 0)["offline"], Value::Null);
    assert!(
        Path::new(&format!("{file}.damaged")).exists(),
        "the damaged file is kept aside"
    );
    drain_unit_attentions(&mut c, 0);
    let r = c.scsi(0, &TUR, &[], 0).expect("a response");
    assert_eq!(r.status, 0, "the LUN serves again");
}
