//! Heap allocations the target makes per SCSI command on the data path.
//!
//! Starts the real daemon in-process (one reactor, one 64 MiB LUN on a scratch file), logs in
//! with a minimal blocking initiator on ringsan's own PDU codec (MaxRecvDataSegmentLength and
//! FirstBurstLength 65536, ImmediateData=Yes, InitialR2T=Yes), checks that a 4 KiB and a
//! 256 KiB WRITE read back the same, warms every scenario up (500 runs each, so per-session
//! pools and workers have grown), and then counts the allocations made on the reactor threads
//! (threads named `ringsan-reactor-*`) in one window per scenario:
//!
//! - `read`: 4 KiB READ(10)s, one at a time (one Data-In PDU carrying the status);
//! - `write`: 4 KiB WRITE(10)s, one at a time, all data immediate;
//! - `read 256K`: 256 KiB READ(10)s, sent as four 64 KiB Data-In PDUs out of one pool buffer;
//! - `write 256K R2T`: 256 KiB WRITE(10)s with 64 KiB immediate data, the rest solicited by
//!   R2T and answered with Data-Out PDUs of at most 64 KiB;
//! - `read QD8`: 4 KiB READ(10)s, eight sent back to back, then all eight completions awaited.
//!
//! The initiator runs on this program's main thread and is counted apart, so its own
//! allocations do not pollute the number.
//!
//! Run with `cargo bench --bench allocations` (`RINGSAN_ALLOC_N=...` changes the number of
//! measured commands of each scenario, 10,000 by default; `RINGSAN_ALLOC_TRACE=1` adds where
//! each reactor allocation of one more run of each scenario comes from). The last line reads
//! `allocations per command: read X, write X, read 256K X, write 256K R2T X, read QD8 X`.
//!
//! As a regression check: `cargo bench --bench allocations -- --check` then prints one more
//! line, `allocation check: passed`, or one `allocation check: FAILED for ...` line for each
//! scenario whose reactor allocations plus reallocs per command exceed 0.01, and exits with
//! status 1.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringsan::config::Config;
use ringsan::daemon::Daemon;
use ringsan::iscsi::pdu::{
    encode_lun, pad_len, task_attr, Bhs, DataOut, LoginRequest, LogoutRequest, NopOut, R2t,
    Response, ScsiCommand, BHS_LEN, RESERVED_TAG,
};

// ---------------------------------------------------------------------------------------------
// The counting allocator.
// ---------------------------------------------------------------------------------------------

/// Which kind of thread made an allocation.
const REACTOR: usize = 0;
const HELPER: usize = 1;
const OTHER: usize = 2;
const CLASSES: usize = 3;
const CLASS_NAMES: [&str; CLASSES] = ["reactor", "helper", "other (initiator, ...)"];
/// Not yet looked at (thread-local cache value).
const UNKNOWN: u8 = u8::MAX;

/// Exact sizes up to this are counted one by one; larger ones by power of two.
const EXACT_SIZES: usize = 4096;

struct Stats {
    allocs: [AtomicU64; CLASSES],
    reallocs: [AtomicU64; CLASSES],
    frees: [AtomicU64; CLASSES],
    bytes: [AtomicU64; CLASSES],
    /// Reactor allocations (and reallocs, by new size) of each exact size `0..=EXACT_SIZES`.
    reactor_sizes: [AtomicU64; EXACT_SIZES + 1],
    /// Larger reactor allocations by `floor(log2(size))`.
    reactor_big: [AtomicU64; 64],
}

static STATS: Stats = Stats {
    allocs: [const { AtomicU64::new(0) }; CLASSES],
    reallocs: [const { AtomicU64::new(0) }; CLASSES],
    frees: [const { AtomicU64::new(0) }; CLASSES],
    bytes: [const { AtomicU64::new(0) }; CLASSES],
    reactor_sizes: [const { AtomicU64::new(0) }; EXACT_SIZES + 1],
    reactor_big: [const { AtomicU64::new(0) }; 64],
};

/// Counting is on only inside measured windows, so nothing in the allocator looks at threads
/// during start-up or teardown.
static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's class, once looked up (`UNKNOWN` before). `const` and `Copy`: no lazy
    /// initialisation and no destructor, so it is usable at any point of a thread's life.
    static CLASS: Cell<u8> = const { Cell::new(UNKNOWN) };
    /// Set while this thread is looking up its own name: `thread::current()` may allocate the
    /// first time, and that nested allocation must not look again.
    static IN_LOOKUP: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread records a backtrace: what that allocates is not counted.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// With `RINGSAN_ALLOC_TRACE=1`: one more run of each scenario with this on, and every reactor
/// allocation made meanwhile leaves its size and (unresolved) backtrace in `TRACES`.
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());

fn classify(name: Option<&str>) -> u8 {
    match name {
        Some(n) if n.starts_with("ringsan-reactor") => REACTOR as u8,
        Some(n) if n.starts_with("ringsan-helper") => HELPER as u8,
        _ => OTHER as u8,
    }
}

/// The calling thread's class. Allocation-free after the first call on a thread; the first
/// call's own nested allocations (if any) are counted as OTHER.
fn thread_class() -> usize {
    let cached = CLASS.with(Cell::get);
    if cached != UNKNOWN {
        return cached as usize;
    }
    if IN_LOOKUP.with(|f| f.replace(true)) {
        return OTHER;
    }
    let class = classify(std::thread::current().name());
    CLASS.with(|c| c.set(class));
    IN_LOOKUP.with(|f| f.set(false));
    class as usize
}

fn record_size(size: usize) {
    if size <= EXACT_SIZES {
        STATS.reactor_sizes[size].fetch_add(1, Relaxed);
    } else {
        STATS.reactor_big[size.ilog2() as usize].fetch_add(1, Relaxed);
    }
}

fn record_alloc(size: usize) {
    if !COUNTING.load(Relaxed) || IN_TRACE.with(Cell::get) {
        return;
    }
    let class = thread_class();
    STATS.allocs[class].fetch_add(1, Relaxed);
    STATS.bytes[class].fetch_add(size as u64, Relaxed);
    if class == REACTOR {
        record_size(size);
        if TRACING.load(Relaxed) {
            IN_TRACE.with(|t| t.set(true));
            let trace = Backtrace::force_capture();
            if let Ok(mut traces) = TRACES.lock() {
                traces.push((size, trace));
            }
            IN_TRACE.with(|t| t.set(false));
        }
    }
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_alloc(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Relaxed) && !IN_TRACE.with(Cell::get) {
            STATS.frees[thread_class()].fetch_add(1, Relaxed);
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) && !IN_TRACE.with(Cell::get) {
            let class = thread_class();
            STATS.reallocs[class].fetch_add(1, Relaxed);
            if class == REACTOR {
                record_size(new_size);
            }
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A copy of the counters (taken with counting off).
struct Snapshot {
    allocs: [u64; CLASSES],
    reallocs: [u64; CLASSES],
    frees: [u64; CLASSES],
    bytes: [u64; CLASSES],
    sizes: Vec<(String, u64)>,
}

fn reset() {
    let all = STATS
        .allocs
        .iter()
        .chain(&STATS.reallocs)
        .chain(&STATS.frees)
        .chain(&STATS.bytes)
        .chain(&STATS.reactor_sizes)
        .chain(&STATS.reactor_big);
    for c in all {
        c.store(0, Relaxed);
    }
}

fn snapshot() -> Snapshot {
    let load = |a: &[AtomicU64; CLASSES]| std::array::from_fn(|i| a[i].load(Relaxed));
    let mut sizes: Vec<(String, u64)> = STATS
        .reactor_sizes
        .iter()
        .enumerate()
        .map(|(s, n)| (format!("{s} B"), n.load(Relaxed)))
        .chain(STATS.reactor_big.iter().enumerate().map(|(log, n)| {
            (
                format!("{}..{} B", 1u64 << log, 1u128 << (log + 1)),
                n.load(Relaxed),
            )
        }))
        .filter(|(_, n)| *n > 0)
        .collect();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
    Snapshot {
        allocs: load(&STATS.allocs),
        reallocs: load(&STATS.reallocs),
        frees: load(&STATS.frees),
        bytes: load(&STATS.bytes),
        sizes,
    }
}

/// Runs `f` with counting on, then waits `settle` (so work the reactor does after its last
/// response is counted too) and returns the counters.
fn measure(settle: Duration, f: impl FnOnce()) -> Snapshot {
    reset();
    COUNTING.store(true, Relaxed);
    f();
    std::thread::sleep(settle);
    COUNTING.store(false, Relaxed);
    snapshot()
}

// ---------------------------------------------------------------------------------------------
// A minimal blocking initiator (after tests/common/initiator.rs).
// ---------------------------------------------------------------------------------------------

const IQN: &str = "iqn.2026-11.io.ringsan:bench";
const BLOCK: usize = 512;
const LUN_BYTES: usize = 64 << 20;
const READ_10: u8 = 0x28;
const WRITE_10: u8 = 0x2a;
/// What this initiator declares as its MaxRecvDataSegmentLength and FirstBurstLength: a
/// 256 KiB READ comes back as four Data-In PDUs, a 256 KiB WRITE sends 64 KiB immediately.
const OUR_MAX_RECV_DSL: usize = 64 * 1024;
const OUR_FIRST_BURST: usize = 64 * 1024;
/// The most commands `Initiator::read_queued` keeps in flight.
const MAX_DEPTH: usize = 8;

/// Serial number arithmetic (RFC 1982, 32 bits): `a <= b`.
fn sn_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < 0x8000_0000
}

/// PDUs seen on the wire, to show that a scenario exercises what it claims to.
#[derive(Clone, Copy, Default)]
struct Wire {
    data_in: u64,
    r2t: u64,
    data_out: u64,
}

/// One command in flight.
struct Pending<'a> {
    itt: u32,
    /// The whole payload of a WRITE (R2Ts are answered from it).
    write: Option<&'a [u8]>,
    read_len: usize,
    got: usize,
    status: Option<u8>,
}

struct Initiator {
    stream: TcpStream,
    cmdsn: u32,
    exp_statsn: u32,
    /// The last MaxCmdSN the target announced.
    max_cmdsn: u32,
    itt: u32,
    /// The target's MaxRecvDataSegmentLength (capped at ours): the most data one PDU may carry.
    max_send_dsl: usize,
    /// The negotiated FirstBurstLength.
    first_burst: usize,
    /// Reused for every PDU sent: header plus data segment plus padding.
    out: Vec<u8>,
    /// Reused for every data segment received.
    data: Vec<u8>,
    /// When set, Data-In payloads are also copied here at their buffer offset (verification).
    read_back: Option<Vec<u8>>,
    wire: Wire,
}

impl Initiator {
    fn connect(addr: SocketAddr) -> Initiator {
        let stream = TcpStream::connect(addr).expect("connect to the daemon");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Initiator {
            stream,
            cmdsn: 1,
            exp_statsn: 0,
            max_cmdsn: 1,
            itt: 0,
            max_send_dsl: 8192,
            first_burst: OUR_FIRST_BURST,
            out: Vec::with_capacity(BHS_LEN + OUR_MAX_RECV_DSL),
            data: Vec::with_capacity(OUR_MAX_RECV_DSL),
            read_back: None,
            wire: Wire::default(),
        }
    }

    fn next_itt(&mut self) -> u32 {
        self.itt = self.itt.wrapping_add(1);
        self.itt
    }

    fn send(&mut self, bhs: &Bhs, data: &[u8]) {
        self.out.clear();
        self.out.extend_from_slice(&bhs.0);
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len() + pad_len(data.len()), 0);
        self.stream.write_all(&self.out).expect("send a PDU");
    }

    /// Reads one PDU; its data segment is left in `self.data`.
    fn recv(&mut self) -> Response {
        let mut h = [0u8; BHS_LEN];
        self.stream.read_exact(&mut h).expect("read a header");
        let bhs = Bhs(h);
        assert_eq!(bhs.total_ahs_len_bytes(), 0, "no AHS expected");
        let len = bhs.data_segment_len();
        self.data.resize(len + pad_len(len), 0);
        self.stream.read_exact(&mut self.data).expect("read data");
        self.data.truncate(len);
        let resp = Response::decode(&bhs).expect("a valid target PDU");
        let max_cmdsn = match &resp {
            Response::ScsiResponse(r) => Some(r.max_cmdsn),
            Response::DataIn(r) => Some(r.max_cmdsn),
            Response::R2t(r) => Some(r.max_cmdsn),
            Response::NopIn(r) => Some(r.max_cmdsn),
            Response::Login(r) => Some(r.max_cmdsn),
            _ => None,
        };
        if let Some(m) = max_cmdsn {
            if sn_le(self.max_cmdsn, m) {
                self.max_cmdsn = m;
            }
        }
        resp
    }

    /// Reads PDUs until one that is not a NOP-In ping (answered) or an Async Message.
    fn recv_response(&mut self) -> Response {
        loop {
            match self.recv() {
                Response::Async(_) => continue,
                Response::NopIn(n) if n.itt == RESERVED_TAG => {
                    if n.ttt != RESERVED_TAG {
                        let reply = NopOut {
                            immediate: true,
                            data_len: 0,
                            lun: n.lun,
                            itt: RESERVED_TAG,
                            ttt: n.ttt,
                            cmdsn: self.cmdsn,
                            exp_statsn: self.exp_statsn,
                        };
                        self.send(&reply.encode(), &[]);
                    }
                }
                r => return r,
            }
        }
    }

    fn login(&mut self) {
        let our_dsl = OUR_MAX_RECV_DSL.to_string();
        let our_first_burst = OUR_FIRST_BURST.to_string();
        let keys = [
            ("InitiatorName", "iqn.2026-11.io.ringsan:alloc-bench"),
            ("SessionType", "Normal"),
            ("TargetName", IQN),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "Yes"),
            ("MaxRecvDataSegmentLength", our_dsl.as_str()),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", our_first_burst.as_str()),
        ];
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}").as_bytes());
            text.push(0);
        }
        for _round in 0..4 {
            let req = LoginRequest {
                transit: true,
                cont: false,
                csg: 1,
                nsg: 3,
                version_max: 0,
                version_min: 0,
                data_len: text.len() as u32,
                isid: [0x80, 0, 0, 0, 0xa1, 0x10],
                tsih: 0,
                itt: self.itt,
                cid: 1,
                cmdsn: self.cmdsn,
                exp_statsn: self.exp_statsn,
            };
            self.send(&req.encode(), &text);
            let resp = match self.recv() {
                Response::Login(r) => r,
                other => panic!("unexpected answer to the login: {other:?}"),
            };
            assert_eq!(
                (resp.status_class, resp.status_detail),
                (0, 0),
                "login refused"
            );
            self.take_target_keys();
            self.exp_statsn = resp.statsn.wrapping_add(1);
            if resp.transit && resp.nsg == 3 {
                return;
            }
            text.clear();
        }
        panic!("login did not reach the full-feature phase");
    }

    /// Picks the limits that matter here out of a Login Response's keys (in `self.data`).
    fn take_target_keys(&mut self) {
        let text = String::from_utf8_lossy(&self.data).into_owned();
        for pair in text.split('\0') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<usize>() else {
                continue;
            };
            match key {
                "MaxRecvDataSegmentLength" => self.max_send_dsl = value.min(OUR_MAX_RECV_DSL),
                "FirstBurstLength" => self.first_burst = value.min(OUR_FIRST_BURST),
                _ => {}
            }
        }
    }

    /// Sends a SCSI Command for `p` (consuming a CmdSN), with as much of its write payload as
    /// immediate data as FirstBurstLength and the target's MaxRecvDataSegmentLength allow.
    fn send_command(&mut self, p: &Pending, cdb: [u8; 10]) {
        assert!(
            sn_le(self.cmdsn, self.max_cmdsn),
            "CmdSN {} is past the target's window (MaxCmdSN {})",
            self.cmdsn,
            self.max_cmdsn
        );
        let mut c = [0u8; 16];
        c[..10].copy_from_slice(&cdb);
        let payload = p.write.unwrap_or(&[]);
        let immediate = &payload[..payload.len().min(self.first_burst.min(self.max_send_dsl))];
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: p.read_len > 0,
            write: p.write.is_some(),
            attr: task_attr::SIMPLE,
            ahs_len_words: 0,
            data_len: immediate.len() as u32,
            lun: encode_lun(0),
            itt: p.itt,
            expected_data_len: p.write.map_or(p.read_len, <[u8]>::len) as u32,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
            cdb: c,
        };
        self.cmdsn = self.cmdsn.wrapping_add(1);
        self.send(&cmd.encode(), immediate);
    }

    /// Answers an R2T with Data-Out PDUs of at most the target's MaxRecvDataSegmentLength.
    fn answer_r2t(&mut self, r: &R2t, payload: &[u8]) {
        let start = r.buffer_offset as usize;
        let end = start + r.desired_len as usize;
        assert!(end <= payload.len(), "R2T beyond the write's data: {r:?}");
        let mut offset = start;
        let mut data_sn = 0;
        while offset < end {
            let len = (end - offset).min(self.max_send_dsl);
            let out = DataOut {
                final_flag: offset + len == end,
                data_len: len as u32,
                lun: r.lun,
                itt: r.itt,
                ttt: r.ttt,
                exp_statsn: self.exp_statsn,
                data_sn,
                buffer_offset: offset as u32,
            };
            self.send(&out.encode(), &payload[offset..offset + len]);
            self.wire.data_out += 1;
            offset += len;
            data_sn += 1;
        }
    }

    /// Reads and handles one response PDU for one of the commands in `pending`.
    fn step(&mut self, pending: &mut [Pending]) {
        let resp = self.recv_response();
        let itt = resp.itt();
        let Some(p) = pending
            .iter_mut()
            .find(|p| p.itt == itt && p.status.is_none())
        else {
            panic!("PDU for no command in flight: {resp:?}");
        };
        match resp {
            Response::DataIn(d) => {
                self.wire.data_in += 1;
                assert_eq!(d.buffer_offset as usize, p.got, "Data-In out of order");
                if let Some(back) = &mut self.read_back {
                    back[p.got..p.got + self.data.len()].copy_from_slice(&self.data);
                }
                p.got += self.data.len();
                if d.status_present {
                    self.exp_statsn = d.statsn.wrapping_add(1);
                    assert_eq!(p.got, p.read_len, "short read");
                    p.status = Some(d.status);
                }
            }
            Response::ScsiResponse(s) => {
                self.exp_statsn = s.statsn.wrapping_add(1);
                assert_eq!(s.response, 0, "target failure");
                if s.status == 0 {
                    assert_eq!(p.got, p.read_len, "short read");
                }
                p.status = Some(s.status);
            }
            Response::R2t(r) => {
                self.wire.r2t += 1;
                let payload = p.write.expect("an R2T for a command with nothing to write");
                self.answer_r2t(&r, payload);
            }
            other => panic!("unexpected PDU during a command: {other:?}"),
        }
    }

    /// Runs one command to its end; returns its SCSI status (GOOD, 0, is checked by the callers).
    fn command(&mut self, cdb: [u8; 10], write: Option<&[u8]>, read_len: usize) -> u8 {
        let mut p = [Pending {
            itt: self.next_itt(),
            write,
            read_len,
            got: 0,
            status: None,
        }];
        if let Some(back) = &mut self.read_back {
            back.clear();
            back.resize(read_len, 0);
        }
        self.send_command(&p[0], cdb);
        while p[0].status.is_none() {
            self.step(&mut p);
        }
        p[0].status.unwrap_or(0xff)
    }

    /// READ(10) of `bytes` at the `slot`-th `bytes`-sized slot of the LUN.
    fn read(&mut self, slot: usize, bytes: usize) {
        let status = self.command(rw10(READ_10, slot, bytes), None, bytes);
        assert_eq!(status, 0, "READ(10) failed");
    }

    /// WRITE(10) of `data` at the `slot`-th `data.len()`-sized slot of the LUN.
    fn write(&mut self, slot: usize, data: &[u8]) {
        let status = self.command(rw10(WRITE_10, slot, data.len()), Some(data), 0);
        assert_eq!(status, 0, "WRITE(10) failed");
    }

    /// `depth` READ(10)s of `bytes` (slots `first_slot..first_slot + depth`) sent back to back,
    /// then responses read until all of them have completed.
    fn read_queued(&mut self, first_slot: usize, depth: usize, bytes: usize) {
        assert!(depth <= MAX_DEPTH);
        let mut pending: [Pending; MAX_DEPTH] = std::array::from_fn(|_| Pending {
            itt: 0,
            write: None,
            read_len: bytes,
            got: 0,
            status: None,
        });
        let pending = &mut pending[..depth];
        for (k, p) in pending.iter_mut().enumerate() {
            p.itt = self.next_itt();
            self.send_command(p, rw10(READ_10, first_slot + k, bytes));
        }
        while pending.iter().any(|p| p.status.is_none()) {
            self.step(pending);
        }
        for p in pending.iter() {
            assert_eq!(p.status, Some(0), "queued READ(10) failed");
        }
    }

    /// TEST UNIT READY until GOOD: the first commands of a new I_T nexus get the power-on
    /// unit attention as CHECK CONDITION.
    fn wait_ready(&mut self) {
        for _ in 0..8 {
            if self.command([0; 10], None, 0) == 0 {
                return;
            }
        }
        panic!("the LUN never became ready");
    }

    fn logout(&mut self) {
        let l = LogoutRequest {
            immediate: true,
            reason: 0,
            data_len: 0,
            itt: self.next_itt(),
            cid: 1,
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
        };
        self.send(&l.encode(), &[]);
        match self.recv_response() {
            Response::Logout(_) => {}
            other => panic!("unexpected answer to the logout: {other:?}"),
        }
    }
}

/// READ(10) / WRITE(10) of `bytes` at the `slot`-th `bytes`-sized slot of the LUN (wrapping).
fn rw10(opcode: u8, slot: usize, bytes: usize) -> [u8; 10] {
    assert!(bytes.is_multiple_of(BLOCK) && LUN_BYTES.is_multiple_of(bytes));
    let blocks = bytes / BLOCK;
    let lba = ((slot % (LUN_BYTES / bytes)) * blocks) as u32;
    let mut c = [opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    c
}

// ---------------------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------------------

const SMALL: usize = 4096;
const BIG: usize = 256 * 1024;
const QUEUE_DEPTH: usize = 8;

#[derive(Clone, Copy)]
enum Scenario {
    /// 4 KiB READ(10), one at a time: one Data-In PDU with the status.
    Read,
    /// 4 KiB WRITE(10), all of it immediate data.
    Write,
    /// 256 KiB READ(10): four 64 KiB Data-In PDUs out of one pool buffer.
    ReadBig,
    /// 256 KiB WRITE(10): 64 KiB immediate, the rest solicited by R2T and sent as Data-Out.
    WriteBigR2t,
    /// 4 KiB READ(10)s, eight in flight at a time.
    ReadQd8,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Read,
        Scenario::Write,
        Scenario::ReadBig,
        Scenario::WriteBigR2t,
        Scenario::ReadQd8,
    ];

    /// The name in the summary line and the check.
    fn name(self) -> &'static str {
        match self {
            Scenario::Read => "read",
            Scenario::Write => "write",
            Scenario::ReadBig => "read 256K",
            Scenario::WriteBigR2t => "write 256K R2T",
            Scenario::ReadQd8 => "read QD8",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Read => "READ(10) 4 KiB",
            Scenario::Write => "WRITE(10) 4 KiB, immediate data",
            Scenario::ReadBig => "READ(10) 256 KiB, several Data-In PDUs",
            Scenario::WriteBigR2t => "WRITE(10) 256 KiB, 64 KiB immediate + R2T / Data-Out",
            Scenario::ReadQd8 => "READ(10) 4 KiB at queue depth 8",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Scenario::Read | Scenario::Write | Scenario::ReadQd8 => SMALL,
            Scenario::ReadBig | Scenario::WriteBigR2t => BIG,
        }
    }

    /// Commands one `run` makes.
    fn commands_per_run(self) -> usize {
        match self {
            Scenario::ReadQd8 => QUEUE_DEPTH,
            _ => 1,
        }
    }

    /// The `i`-th run of this scenario.
    fn run(self, ini: &mut Initiator, i: usize, payloads: &Payloads) {
        match self {
            Scenario::Read => ini.read(i, SMALL),
            Scenario::Write => ini.write(i, &payloads.small),
            Scenario::ReadBig => ini.read(i, BIG),
            Scenario::WriteBigR2t => ini.write(i, &payloads.big),
            Scenario::ReadQd8 => ini.read_queued(i * QUEUE_DEPTH, QUEUE_DEPTH, SMALL),
        }
    }
}

struct Payloads {
    small: Vec<u8>,
    big: Vec<u8>,
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + seed + i / 4093) as u8).collect()
}

/// Writes a distinct pattern with each write scenario (at slots the measured runs never reach
/// in between) and reads it back: the Data-Out offsets and the Data-In split must be right
/// for the numbers to mean anything.
fn verify_round_trip(ini: &mut Initiator) {
    for (bytes, slot, seed) in [(SMALL, 11, 1), (BIG, 13, 2)] {
        let data = pattern(bytes, seed);
        ini.write(slot, &data);
        ini.read_back = Some(Vec::new());
        ini.read(slot, bytes);
        let back = ini.read_back.take().expect("read-back buffer");
        assert!(
            back == data,
            "a {bytes}-byte WRITE did not read back the same"
        );
    }
}

struct Outcome {
    scenario: Scenario,
    counts: Snapshot,
    commands: usize,
    elapsed: Duration,
    wire: Wire,
}

// ---------------------------------------------------------------------------------------------
// The benchmark.
// ---------------------------------------------------------------------------------------------

fn config_text(dir: &Path) -> String {
    format!(
        "[daemon]\n\
         data_dir = \"{dir}\"\n\
         reactors = 1\n\
         buffer_count = 64\n\
         nop_interval_seconds = 0\n\
         control_socket = \"{dir}/control.sock\"\n\
         portals = [\"127.0.0.1:0\"]\n\
         \n\
         [[target]]\n\
         iqn = \"{IQN}\"\n\
         \n\
         [[target.lun]]\n\
         lun = 0\n\
         path = \"lun0.img\"\n\
         size = \"64M\"\n\
         block_size = {BLOCK}\n",
        dir = dir.display()
    )
}

fn scratch_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("alloc-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}

fn per(n: u64, commands: usize) -> f64 {
    n as f64 / commands as f64
}

fn report(o: &Outcome) {
    let (s, commands) = (&o.counts, o.commands);
    println!(
        "\n{}: {commands} commands in {:.2} s ({:.0} commands/s, {:.0} MiB/s)",
        o.scenario.title(),
        o.elapsed.as_secs_f64(),
        commands as f64 / o.elapsed.as_secs_f64(),
        (commands * o.scenario.bytes()) as f64 / o.elapsed.as_secs_f64() / (1 << 20) as f64
    );
    println!(
        "  wire per command: {:.2} Data-In, {:.2} R2T, {:.2} Data-Out",
        per(o.wire.data_in, commands),
        per(o.wire.r2t, commands),
        per(o.wire.data_out, commands)
    );
    println!(
        "  {:<24} {:>10} {:>10} {:>10} {:>12}",
        "per command, thread", "allocs", "reallocs", "frees", "bytes alloc"
    );
    for (c, name) in CLASS_NAMES.iter().enumerate() {
        println!(
            "  {:<24} {:>10.2} {:>10.2} {:>10.2} {:>12.1}",
            name,
            per(s.allocs[c], commands),
            per(s.reallocs[c], commands),
            per(s.frees[c], commands),
            per(s.bytes[c], commands),
        );
    }
    println!("  reactor allocations and reallocs by size (per command, most frequent first):");
    let shown: Vec<_> = s.sizes.iter().take(12).collect();
    for (size, n) in &shown {
        println!("    {size:>16}: {:.2}", per(*n, commands));
    }
    let rest: u64 = s.sizes.iter().skip(shown.len()).map(|(_, n)| n).sum();
    if rest > 0 {
        println!("    {:>16}: {:.2}", "other sizes", per(rest, commands));
    }
}

/// The ringsan frames of a backtrace, innermost first, as `function (file:line)`.
fn ringsan_frames(trace: &Backtrace, depth: usize) -> Vec<String> {
    let text = trace.to_string();
    let mut lines = text.lines().map(str::trim).peekable();
    let mut frames = Vec::new();
    while let Some(line) = lines.next() {
        let Some((_, function)) = line.split_once(": ") else {
            continue;
        };
        let location = match lines.peek() {
            Some(next) if next.starts_with("at ") => lines.next().unwrap_or_default(),
            _ => "",
        };
        let ours = function.starts_with("ringsan") || function.starts_with("<ringsan");
        if ours && !function.starts_with("allocations::") {
            let location = location.trim_start_matches("at ");
            let short = location.rsplit_once("/src/").map_or(location, |(_, l)| l);
            frames.push(format!("{function} ({short})"));
            if frames.len() == depth {
                break;
            }
        }
    }
    frames
}

/// Runs each scenario once more with tracing on; returns the lines that say where each
/// reactor allocation came from.
fn trace_each(ini: &mut Initiator, payloads: &Payloads) -> Vec<String> {
    let mut out = Vec::new();
    for scenario in Scenario::ALL {
        TRACING.store(true, Relaxed);
        measure(Duration::from_millis(5), || scenario.run(ini, 7, payloads));
        TRACING.store(false, Relaxed);
        let traces = std::mem::take(&mut *TRACES.lock().expect("traces"));
        out.push(format!(
            "\none traced run of {} ({} command(s)): {} reactor allocations (innermost ringsan frame first)",
            scenario.title(),
            scenario.commands_per_run(),
            traces.len()
        ));
        for (size, trace) in &traces {
            let frames = ringsan_frames(trace, 3);
            let top = frames.first().map_or("?", String::as_str);
            out.push(format!("  {size:>6} B  {top}"));
            for f in frames.iter().skip(1) {
                out.push(format!("            <- {f}"));
            }
        }
    }
    out
}

/// Reactor allocations (and reallocs) per command above which `--check` fails.
const CHECK_LIMIT: f64 = 0.01;

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another benchmark skips this one.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"allocations".contains(a.as_str()))
    {
        return;
    }
    let check = args.iter().any(|a| a == "--check");
    let n: usize = std::env::var("RINGSAN_ALLOC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .max(1);
    let warmup_runs = 500;

    let dir = scratch_dir();
    let config = Config::parse(&config_text(&dir), "bench", &dir).expect("the bench configuration");
    let daemon = Daemon::start(&config).expect("start the daemon");
    let addr = daemon.portals[0];

    let mut ini = Initiator::connect(addr);
    ini.login();
    ini.wait_ready();
    let (max_send_dsl, first_burst) = (ini.max_send_dsl, ini.first_burst);
    let payloads = Payloads {
        small: pattern(SMALL, 3),
        big: pattern(BIG, 5),
    };
    verify_round_trip(&mut ini);
    // Warm-up: every scenario, so that per-session pools and workers have grown to what the
    // measured runs need.
    for scenario in Scenario::ALL {
        for i in 0..warmup_runs {
            scenario.run(&mut ini, i, &payloads);
        }
    }

    // The reactor's background work (timers, the daemon's own poll loop) with no commands.
    let idle_window = Duration::from_secs(1);
    let idle = measure(Duration::ZERO, || std::thread::sleep(idle_window));
    let idle_rate = idle.allocs[REACTOR] as f64 / idle_window.as_secs_f64();

    let settle = Duration::from_millis(50);
    let mut outcomes = Vec::new();
    for scenario in Scenario::ALL {
        let runs = n.div_ceil(scenario.commands_per_run());
        let mut elapsed = Duration::ZERO;
        ini.wire = Wire::default();
        let counts = measure(settle, || {
            let t = Instant::now();
            for i in 0..runs {
                scenario.run(&mut ini, i, &payloads);
            }
            elapsed = t.elapsed();
        });
        outcomes.push(Outcome {
            scenario,
            counts,
            commands: runs * scenario.commands_per_run(),
            elapsed,
            wire: ini.wire,
        });
    }

    let trace = std::env::var_os("RINGSAN_ALLOC_TRACE").is_some_and(|v| v != "0");
    let traced = if trace {
        trace_each(&mut ini, &payloads)
    } else {
        Vec::new()
    };

    ini.logout();
    drop(ini);
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!("ringsan data path heap allocations (counting allocator; reactor threads only in the headline)");
    println!(
        "session: target MaxRecvDataSegmentLength (capped at ours) {max_send_dsl}, FirstBurstLength {first_burst}"
    );
    println!(
        "idle reactor: {} allocations in {:.1} s ({idle_rate:.1}/s, not subtracted below)",
        idle.allocs[REACTOR],
        idle_window.as_secs_f64()
    );
    for o in &outcomes {
        report(o);
    }
    for line in &traced {
        println!("{line}");
    }
    if !trace {
        println!(
            "\n(RINGSAN_ALLOC_TRACE=1 adds where each allocation of one run of each scenario comes from)"
        );
    }
    let idle_shares: Vec<String> = outcomes
        .iter()
        .map(|o| {
            let share = idle_rate * (o.elapsed + settle).as_secs_f64() / o.commands as f64;
            format!("{} {share:.3}", o.scenario.name())
        })
        .collect();
    println!(
        "\nidle background share per command (estimate): {}",
        idle_shares.join(", ")
    );
    let headline: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {:.1}",
                o.scenario.name(),
                per(o.counts.allocs[REACTOR], o.commands)
            )
        })
        .collect();
    println!("allocations per command: {}", headline.join(", "));

    if check {
        let mut failed = false;
        for o in &outcomes {
            let allocs = per(o.counts.allocs[REACTOR], o.commands);
            let reallocs = per(o.counts.reallocs[REACTOR], o.commands);
            if allocs + reallocs > CHECK_LIMIT {
                failed = true;
                println!(
                    "allocation check: FAILED for {}: {allocs:.3} reactor allocations and {reallocs:.3} reallocs per command (limit {CHECK_LIMIT})",
                    o.scenario.name()
                );
            }
        }
        if failed {
            std::process::exit(1);
        }
        println!("allocation check: passed");
    }
}
