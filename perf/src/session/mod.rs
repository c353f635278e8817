//! One session: its own OS thread, its own TCP connection (one path at a time) and ISID,
//! `--iodepth` commands pipelined on a blocking socket.
//!
//! Life of a session thread ([`run_session`]): open a connection (connect, login, TEST UNIT
//! READY, READ CAPACITY) and report [`Report::Ready`]; wait for [`Go::Start`]; run the I/O loop
//! until the clock's end; drain what is in flight; log out; report [`Report::Done`]. Measured
//! intervals go out as [`Report::Interval`] while it runs.
//!
//! The loop (`Worker::run`) is the control flow; the data path is in [`io`] (commands,
//! R2T/Data-Out, Data-In, status), failures and path changes in [`failover`], slot bookkeeping
//! in [`slot`], the choice of the next I/O in [`picker`], measurements in [`recorder`].
//! Steady state allocates nothing per I/O: slots, buffers and the receive buffer are sized at
//! start.

pub mod failover;
pub mod io;
pub mod open;
pub mod picker;
pub mod recorder;
pub mod slot;

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::clock::RunClock;
use crate::conn::cdb::Capacity;
use crate::conn::{setup, Conn, ConnError};
use crate::options::Workload;
use crate::result::{ErrorRecord, LongestIo, Reconnect, Unfinished};
use crate::schedule::Wait;
use crate::url::IscsiUrl;
use crate::verify::{Mismatch, VerifyCounts};

use self::io::IoState;
use self::picker::Region;

/// Longest the loop blocks without looking at the clock (intervals, timeouts).
const TICK: Duration = Duration::from_millis(50);
/// Most error records a session keeps (all are counted).
pub const MAX_ERROR_RECORDS: usize = 100;

/// What a session thread tells the run.
pub enum Report {
    /// Setup done: the LUN's capacity and the region this session will use, or why not.
    Ready {
        session: u32,
        result: Result<(Capacity, Region), String>,
    },
    /// One measured second of one session: read and write histograms.
    Interval {
        session: u32,
        index: u64,
        hists: Box<[Histogram<u64>; 2]>,
    },
    /// The session ended.
    Done(Box<SessionOutcome>),
}

/// What the run tells a ready session.
pub enum Go {
    Start(RunClock),
    Abort,
}

/// Who a session is and what it drives.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Index over all sessions of the run; also the --verify writer id.
    pub id: u32,
    /// Index among the sessions of its LUN, and their number.
    pub index_in_lun: u32,
    pub lun_sessions: u32,
    pub paths: Vec<IscsiUrl>,
    /// The path it starts on.
    pub first_path: usize,
    pub isid: [u8; 6],
    /// Random per run: stamps of other runs are told apart.
    pub run_id: u32,
    pub workload: Arc<Workload>,
}

/// Everything a session reports at its end.
#[derive(Debug, Default)]
pub struct SessionOutcome {
    pub session: u32,
    pub errors: ErrorLog,
    pub reconnects: Vec<Reconnect>,
    pub longest: Option<LongestIo>,
    pub verify: Option<(VerifyCounts, Vec<Mismatch>)>,
    pub unfinished: Unfinished,
    pub lag: Option<Histogram<u64>>,
}

/// Failed commands and retries.
#[derive(Debug, Default, Clone)]
pub struct ErrorLog {
    pub count: u64,
    pub retries: u64,
    pub first: Vec<ErrorRecord>,
}

impl ErrorLog {
    pub fn push(&mut self, session: u32, at_s: f64, message: String) {
        self.count += 1;
        if self.first.len() < MAX_ERROR_RECORDS {
            self.first.push(ErrorRecord {
                session,
                at_s,
                message,
            });
        }
    }
}

/// The session thread's body.
pub fn run_session(spec: SessionSpec, reports: Sender<Report>, go: Receiver<Go>) {
    let w = Arc::clone(&spec.workload);
    let refuse = |what: String| {
        let _ = reports.send(Report::Ready {
            session: spec.id,
            result: Err(what),
        });
    };
    let opened = open::open_any(
        &spec.paths,
        spec.first_path,
        &w.initiator,
        spec.isid,
        w.timeout,
    );
    let (path, mut conn, cap) = match opened {
        Ok(opened) => opened,
        Err(why) => return refuse(why),
    };
    let region = match picker::plan_region(&w, cap).and_then(|r| own_region(&spec, r).map(|_| r)) {
        Ok(region) => region,
        Err(what) => {
            setup::logout(&mut conn, Instant::now() + Duration::from_secs(1));
            return refuse(format!("{}: {what}", spec.paths[path]));
        }
    };
    let _ = reports.send(Report::Ready {
        session: spec.id,
        result: Ok((cap, region)),
    });
    let clock = match go.recv() {
        Ok(Go::Start(clock)) => clock,
        _ => {
            setup::logout(&mut conn, Instant::now() + Duration::from_secs(1));
            return;
        }
    };
    let mine = own_region(&spec, region).unwrap_or(region);
    let mut worker = Worker::new(spec, path, conn, mine, clock, reports.clone());
    worker.run();
    let _ = reports.send(Report::Done(Box::new(worker.finish())));
}

/// What a session works on: the whole region, or its own share of it under --verify (where
/// each session must be the only writer of the blocks it checks).
fn own_region(spec: &SessionSpec, region: Region) -> Result<Region, String> {
    if !spec.workload.verify {
        return Ok(region);
    }
    let n = u64::from(spec.lun_sessions);
    let share = region.share(u64::from(spec.index_in_lun), n);
    if share.chunks == 0 {
        return Err(format!(
            "--verify gives each of the {n} sessions its own part of the region, but the region \
             holds only {} I/Os of --bs: use fewer --sessions or a larger --size",
            region.chunks
        ));
    }
    Ok(share)
}

/// A running session.
pub struct Worker {
    spec: SessionSpec,
    conn: Option<Conn>,
    /// Index of the path in use.
    path: usize,
    io: IoState,
    clock: RunClock,
    timeout_ns: u64,
    next_timeout_check_ns: u64,
    reconnects: Vec<Reconnect>,
    unfinished: Unfinished,
}

impl Worker {
    fn new(
        spec: SessionSpec,
        path: usize,
        conn: Conn,
        region: Region,
        clock: RunClock,
        reports: Sender<Report>,
    ) -> Worker {
        let w = Arc::clone(&spec.workload);
        let io = IoState::new(&spec, &w, region, clock, reports);
        Worker {
            path,
            conn: Some(conn),
            io,
            clock,
            timeout_ns: w.timeout.as_nanos() as u64,
            next_timeout_check_ns: 0,
            reconnects: Vec::new(),
            unfinished: Unfinished::default(),
            spec,
        }
    }

    /// The I/O loop, until the end of the run.
    fn run(&mut self) {
        loop {
            let now = self.clock.now_ns();
            if now >= self.clock.end_ns {
                break;
            }
            self.io.recorder.tick(now);
            if let Err(e) = self.step(now) {
                self.fail_over(e);
            }
        }
        self.drain();
    }

    /// Sends what may be sent, checks timeouts, then waits for and handles what arrives.
    fn step(&mut self, now: u64) -> Result<(), ConnError> {
        let sent = self.send_all(now)?;
        self.check_timeout(now)?;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let now = self.clock.now_ns();
        let wait = match &self.io.schedule {
            None => Wait::Read(TICK),
            Some(_) if !self.io.slots.has_free() || !conn.link.window_open() => Wait::Read(TICK),
            Some(s) => match s.wait(now, self.io.slots.in_flight(), TICK) {
                // Due but nothing could be sent (all candidate chunks busy): poll.
                Wait::Now if sent == 0 => Wait::Spin,
                w => w,
            },
        };
        match wait {
            Wait::Now => Ok(()),
            Wait::Sleep(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Wait::Read(d) => {
                conn.set_blocking(true)?;
                conn.set_read_timeout(d)?;
                self.receive().map(drop)
            }
            Wait::Spin => {
                conn.set_blocking(false)?;
                if !self.receive()? {
                    std::thread::yield_now();
                }
                Ok(())
            }
        }
    }

    /// Queues resends and new commands and writes them; returns how many were sent.
    fn send_all(&mut self, now: u64) -> Result<usize, ConnError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        let mut total = 0;
        loop {
            let n = self.io.issue(&mut conn.link, now, self.clock.end_ns);
            conn.flush()?;
            total += n;
            if n == 0 || !self.io.slots.has_free() && self.io.slots.next_queued().is_none() {
                return Ok(total);
            }
        }
    }

    /// Reads once and handles every whole PDU that arrived; false when nothing did.
    fn receive(&mut self) -> Result<bool, ConnError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        if conn.fill()? == crate::conn::rx::Fill::Timeout {
            return Ok(false);
        }
        let now = self.clock.now_ns();
        while let Some((resp, range)) = conn.next_response()? {
            let data = conn.rx.data(range);
            if let Err(what) = self.io.on_pdu(resp, data, &mut conn.link, now) {
                return Err(ConnError::Protocol {
                    portal: conn.link.portal.clone(),
                    what,
                });
            }
            if conn.link.should_flush() {
                conn.flush()?;
            }
        }
        conn.flush()?;
        if let Some(what) = self.io.path_failed.take() {
            return Err(ConnError::Scsi {
                portal: conn.link.portal.clone(),
                what,
            });
        }
        Ok(true)
    }

    /// Fails the path when the oldest command has waited longer than --timeout.
    fn check_timeout(&mut self, now: u64) -> Result<(), ConnError> {
        if now < self.next_timeout_check_ns {
            return Ok(());
        }
        self.next_timeout_check_ns = now + 10_000_000;
        let Some(i) = self.io.slots.oldest_in_flight() else {
            return Ok(());
        };
        let s = self.io.slots.get(i);
        let waited = now.saturating_sub(s.sent_ns);
        if waited <= self.timeout_ns {
            return Ok(());
        }
        Err(ConnError::Timeout {
            portal: self.portal(),
            what: format!(
                "command timeout: {} of LBA {} unanswered for {} ms (--timeout {:?})",
                s.op.name(),
                s.lba,
                waited / 1_000_000,
                self.spec.workload.timeout
            ),
        })
    }

    /// After the end: waits (bounded) for what is in flight, then logs out.
    fn drain(&mut self) {
        let limit = self.spec.workload.timeout.min(Duration::from_secs(5));
        let deadline = self.clock.now_ns() + limit.as_nanos() as u64;
        while self.io.slots.in_flight() > 0 {
            let now = self.clock.now_ns();
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            let ready = conn
                .set_blocking(true)
                .and_then(|()| conn.set_read_timeout(TICK));
            if now >= deadline || ready.is_err() || self.receive().is_err() {
                break;
            }
        }
        self.io.recorder.finish();
        let now = self.clock.now_ns();
        let oldest = self
            .io
            .slots
            .iter()
            .filter(|s| s.state != slot::SlotState::Free)
            .map(|s| s.start_ns)
            .min();
        self.unfinished = Unfinished {
            ios: self.io.slots.busy() as u64,
            oldest_ms: oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1e6),
        };
        if let Some(mut conn) = self.conn.take() {
            if self.io.slots.busy() == 0 {
                setup::logout(&mut conn, Instant::now() + Duration::from_secs(1));
            }
            conn.shutdown();
        }
    }

    fn finish(self) -> SessionOutcome {
        let io = self.io;
        SessionOutcome {
            session: self.spec.id,
            errors: io.errors,
            reconnects: self.reconnects,
            longest: io.recorder.longest,
            verify: io.verify.map(|v| (v.counts, v.mismatches)),
            unfinished: self.unfinished,
            lag: io.recorder.lag,
        }
    }

    fn portal(&self) -> String {
        self.spec.paths[self.path].portal()
    }
}
