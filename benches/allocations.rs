//! Heap allocations the target makes per SCSI command on the data path.
//!
//! Starts the real daemon in-process (one reactor, one 64 MiB LUN on a scratch file), logs in
//! with a minimal blocking initiator on ringsan's own PDU codec, warms up, and then counts the
//! allocations made on the reactor threads (threads named `ringsan-reactor-*`) while it runs
//! 4 KiB READ(10)s and 4 KiB WRITE(10)s with immediate data, one at a time. The initiator runs
//! on this program's main thread and is counted apart, so its own allocations do not pollute
//! the number.
//!
//! Run with `cargo bench --bench allocations` (`RINGSAN_ALLOC_N=...` changes the number of
//! measured commands of each kind, 10,000 by default). The last line reads
//! `allocations per command: read X.X, write Y.Y`.

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
    encode_lun, pad_len, task_attr, Bhs, LoginRequest, LogoutRequest, NopOut, Response,
    ScsiCommand, BHS_LEN, RESERVED_TAG,
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

/// With `RINGSAN_ALLOC_TRACE=1`: one more read and write run with this on, and every reactor
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
const IO_BYTES: usize = 4096;
const BLOCK: usize = 512;
const LUN_BYTES: usize = 64 << 20;

struct Initiator {
    stream: TcpStream,
    cmdsn: u32,
    exp_statsn: u32,
    itt: u32,
    /// Reused for every PDU sent: header plus data segment plus padding.
    out: Vec<u8>,
    /// Reused for every data segment received.
    data: Vec<u8>,
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
            itt: 0,
            out: Vec::with_capacity(BHS_LEN + 64 * 1024),
            data: Vec::with_capacity(64 * 1024),
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
        Response::decode(&bhs).expect("a valid target PDU")
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
        let keys = [
            ("InitiatorName", "iqn.2026-11.io.ringsan:alloc-bench"),
            ("SessionType", "Normal"),
            ("TargetName", IQN),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "Yes"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
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
            self.exp_statsn = resp.statsn.wrapping_add(1);
            if resp.transit && resp.nsg == 3 {
                return;
            }
            text.clear();
        }
        panic!("login did not reach the full-feature phase");
    }

    /// Runs one command to its end; returns its SCSI status (GOOD, 0, is checked by the callers).
    fn command(&mut self, cdb: [u8; 10], write: Option<&[u8]>, read_len: u32) -> u8 {
        let itt = self.next_itt();
        let mut c = [0u8; 16];
        c[..10].copy_from_slice(&cdb);
        let immediate = write.unwrap_or(&[]);
        let cmd = ScsiCommand {
            immediate: false,
            final_flag: true,
            read: read_len > 0,
            write: write.is_some(),
            attr: task_attr::SIMPLE,
            ahs_len_words: 0,
            data_len: immediate.len() as u32,
            lun: encode_lun(0),
            itt,
            expected_data_len: write.map_or(read_len, |d| d.len() as u32),
            cmdsn: self.cmdsn,
            exp_statsn: self.exp_statsn,
            cdb: c,
        };
        self.cmdsn = self.cmdsn.wrapping_add(1);
        self.send(&cmd.encode(), immediate);
        let mut got = 0usize;
        loop {
            match self.recv_response() {
                Response::DataIn(d) => {
                    assert_eq!(d.itt, itt);
                    got += self.data.len();
                    if d.status_present {
                        self.exp_statsn = d.statsn.wrapping_add(1);
                        assert_eq!(got, read_len as usize, "short read");
                        return d.status;
                    }
                }
                Response::ScsiResponse(s) => {
                    assert_eq!(s.itt, itt);
                    self.exp_statsn = s.statsn.wrapping_add(1);
                    assert_eq!(s.response, 0, "target failure");
                    if s.status == 0 {
                        assert_eq!(got, read_len as usize, "short read");
                    }
                    return s.status;
                }
                other => panic!("unexpected PDU during a command: {other:?}"),
            }
        }
    }

    fn read(&mut self, i: usize) {
        let status = self.command(rw10(0x28, i), None, IO_BYTES as u32);
        assert_eq!(status, 0, "READ(10) failed");
    }

    fn write(&mut self, i: usize, data: &[u8]) {
        let status = self.command(rw10(0x2a, i), Some(data), 0);
        assert_eq!(status, 0, "WRITE(10) failed");
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

/// READ(10) / WRITE(10) of 4 KiB at the `i`-th 4 KiB slot of the LUN (wrapping).
fn rw10(opcode: u8, i: usize) -> [u8; 10] {
    let blocks = IO_BYTES / BLOCK;
    let lba = ((i * blocks) % (LUN_BYTES / BLOCK)) as u32;
    let mut c = [opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
    c
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

fn report(kind: &str, s: &Snapshot, commands: usize, elapsed: Duration) {
    println!(
        "\n{kind}: {commands} x 4 KiB in {:.2} s ({:.0} commands/s)",
        elapsed.as_secs_f64(),
        commands as f64 / elapsed.as_secs_f64()
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

/// Runs one traced READ and one traced WRITE; returns the lines that say where each reactor
/// allocation came from.
fn trace_one_of_each(ini: &mut Initiator, payload: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, write) in [("READ(10)", false), ("WRITE(10)", true)] {
        TRACING.store(true, Relaxed);
        measure(Duration::from_millis(5), || {
            if write {
                ini.write(7, payload);
            } else {
                ini.read(7);
            }
        });
        TRACING.store(false, Relaxed);
        let traces = std::mem::take(&mut *TRACES.lock().expect("traces"));
        out.push(format!(
            "\none traced {kind}: {} reactor allocations (innermost ringsan frame first)",
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

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another benchmark skips this one.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"allocations".contains(a.as_str()))
    {
        return;
    }
    let n: usize = std::env::var("RINGSAN_ALLOC_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let warmup = 1_000;

    let dir = scratch_dir();
    let config = Config::parse(&config_text(&dir), "bench", &dir).expect("the bench configuration");
    let daemon = Daemon::start(&config).expect("start the daemon");
    let addr = daemon.portals[0];

    let mut ini = Initiator::connect(addr);
    ini.login();
    ini.wait_ready();
    let payload: Vec<u8> = (0..IO_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    for i in 0..warmup {
        ini.write(i, &payload);
    }
    for i in 0..warmup {
        ini.read(i);
    }

    // The reactor's background work (timers, the daemon's own poll loop) with no commands.
    let idle_window = Duration::from_secs(1);
    let idle = measure(Duration::ZERO, || std::thread::sleep(idle_window));
    let idle_rate = idle.allocs[REACTOR] as f64 / idle_window.as_secs_f64();

    let settle = Duration::from_millis(50);
    let mut read_time = Duration::ZERO;
    let reads = measure(settle, || {
        let t = Instant::now();
        for i in 0..n {
            ini.read(i);
        }
        read_time = t.elapsed();
    });
    let mut write_time = Duration::ZERO;
    let writes = measure(settle, || {
        let t = Instant::now();
        for i in 0..n {
            ini.write(i, &payload);
        }
        write_time = t.elapsed();
    });

    let trace = std::env::var_os("RINGSAN_ALLOC_TRACE").is_some_and(|v| v != "0");
    let traced = if trace {
        trace_one_of_each(&mut ini, &payload)
    } else {
        Vec::new()
    };

    ini.logout();
    drop(ini);
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    println!("ringsan data path heap allocations (counting allocator; reactor threads only in the headline)");
    println!(
        "idle reactor: {} allocations in {:.1} s ({idle_rate:.1}/s, not subtracted below)",
        idle.allocs[REACTOR],
        idle_window.as_secs_f64()
    );
    report("READ(10)", &reads, n, read_time);
    report("WRITE(10), immediate data", &writes, n, write_time);
    for line in &traced {
        println!("{line}");
    }
    if !trace {
        println!("\n(RINGSAN_ALLOC_TRACE=1 adds where each allocation of one READ and one WRITE comes from)");
    }
    let idle_share = |t: Duration| idle_rate * (t + settle).as_secs_f64() / n as f64;
    println!(
        "\nidle background share per command (estimate): read {:.3}, write {:.3}",
        idle_share(read_time),
        idle_share(write_time)
    );
    println!(
        "allocations per command: read {:.1}, write {:.1}",
        per(reads.allocs[REACTOR], n),
        per(writes.allocs[REACTOR], n)
    );
}
