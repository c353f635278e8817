//! One run: start a thread per session, wait until every session is logged in and knows its
//! region, start the shared clock, collect the per-second reports while the sessions run, and
//! assemble the [`RunResult`].
//!
//! Setup is all or nothing: if any session cannot connect, log in or use its region, every
//! session is told to log out and the run fails with each session's reason. Once started, a
//! session never fails the run; what goes wrong is in the result (errors, reconnects, stalls).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::assemble::{assemble, Inputs};
use crate::clock::RunClock;
use crate::collect::Collector;
use crate::conn::cdb::Capacity;
use crate::cpu::CpuTimes;
use crate::hdrlog::HdrLog;
use crate::options::Workload;
use crate::result::{IntervalResult, LunInfo, RunResult};
use crate::rng::clock_seed;
use crate::session::picker::Region;
use crate::session::{run_session, Go, Report, SessionOutcome, SessionSpec};

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{} session(s) could not start:\n  {}", .0.len(), .0.join("\n  "))]
    Setup(Vec<String>),
    #[error("cannot start a session thread: {0}")]
    Spawn(std::io::Error),
}

/// A finished run.
pub struct RunOutput {
    pub result: RunResult,
    /// The `--hdr-log` lines, when asked for.
    pub hdr_log: Option<HdrLog>,
    /// Wall-clock start of measurement (StartTime of the HDR log).
    pub started: SystemTime,
}

/// A started session thread.
struct Started {
    go: Sender<Go>,
    thread: JoinHandle<()>,
}

/// Runs `w`, calling `progress` with every measured second as it completes.
pub fn run(w: &Workload, progress: &mut dyn FnMut(&IntervalResult)) -> Result<RunOutput, RunError> {
    let w = Arc::new(w.clone());
    let specs = session_specs(&w, clock_seed());
    let (reports_tx, reports) = mpsc::channel();
    let mut started = Vec::with_capacity(specs.len());
    for spec in &specs {
        match spawn(spec.clone(), reports_tx.clone()) {
            Ok(s) => started.push(s),
            Err(e) => {
                stop(started);
                return Err(RunError::Spawn(e));
            }
        }
    }
    drop(reports_tx);
    let geometry = match wait_ready(&reports, specs.len(), w.timeout) {
        Ok(g) => g,
        Err(why) => {
            stop(started);
            return Err(RunError::Setup(why));
        }
    };
    let cpu_start = CpuTimes::now();
    let wall_start = Instant::now();
    let clock = RunClock::start(w.ramp, w.runtime);
    let started_at = SystemTime::now() + w.ramp;
    for s in &started {
        let _ = s.go.send(Go::Start(clock));
    }
    let (mut collected, outcomes) = collect(&reports, &w, specs.len(), progress);
    let hdr_log = collected.hdr.take();
    for s in started {
        let _ = s.thread.join();
    }
    let luns = lun_infos(&w, &geometry);
    let result = assemble(Inputs {
        workload: &w,
        luns,
        collected,
        outcomes,
        cpu: CpuTimes::now().since(&cpu_start),
        wall: wall_start.elapsed(),
        started_unix_s: started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    });
    Ok(RunOutput {
        result,
        hdr_log,
        started: started_at,
    })
}

/// One spec per session: LUN by LUN, `--sessions` each, spread over the LUN's paths.
fn session_specs(w: &Arc<Workload>, run_seed: u64) -> Vec<SessionSpec> {
    let run_id = (run_seed >> 32) as u32 ^ run_seed as u32;
    let mut specs = Vec::new();
    for target in &w.targets {
        for index in 0..w.sessions {
            let id = specs.len() as u32;
            let [r0, r1, r2, _] = run_id.to_be_bytes();
            let [i0, i1] = (id as u16).to_be_bytes();
            specs.push(SessionSpec {
                id,
                index_in_lun: index,
                lun_sessions: w.sessions,
                paths: target.paths.clone(),
                first_path: index as usize % target.paths.len(),
                // Type 10b ("random"): a per-run qualifier, then the session number.
                isid: [0x80, r0, r1, r2, i0, i1],
                run_id,
                workload: Arc::clone(w),
            });
        }
    }
    specs
}

fn spawn(spec: SessionSpec, reports: Sender<Report>) -> std::io::Result<Started> {
    let (go, go_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("perf-session-{}", spec.id))
        .spawn(move || run_session(spec, reports, go_rx))?;
    Ok(Started { go, thread })
}

/// Tells every session to give up and waits for them.
fn stop(started: Vec<Started>) {
    for s in &started {
        let _ = s.go.send(Go::Abort);
    }
    for s in started {
        let _ = s.thread.join();
    }
}

/// Waits for every session's setup; returns each session's geometry or every failure.
fn wait_ready(
    reports: &Receiver<Report>,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Option<(Capacity, Region)>>, Vec<String>> {
    // Connect, login, TEST UNIT READY and READ CAPACITY each have `timeout`.
    let deadline = Instant::now() + timeout * 4 + Duration::from_secs(5);
    let mut geometry = vec![None; n];
    let mut failures = Vec::new();
    let mut answered = 0;
    while answered < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left) {
            Ok(Report::Ready { session, result }) => {
                answered += 1;
                match result {
                    Ok(g) => geometry[session as usize] = Some(g),
                    Err(why) => failures.push(format!("session {session}: {why}")),
                }
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                failures.push(format!(
                    "{} session(s) did not finish setup in time",
                    n - answered
                ));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                failures.push("a session thread ended during setup".into());
                break;
            }
        }
    }
    if failures.is_empty() {
        Ok(geometry)
    } else {
        Err(failures)
    }
}

/// Collects reports until every session is done (or every thread has gone).
fn collect(
    reports: &Receiver<Report>,
    w: &Workload,
    n: usize,
    progress: &mut dyn FnMut(&IntervalResult),
) -> (crate::collect::Collected, Vec<SessionOutcome>) {
    let mut collector = Collector::new(n, w.runtime_s(), w.keep_hdr_log);
    let mut outcomes = Vec::with_capacity(n);
    while outcomes.len() < n {
        match reports.recv() {
            Ok(Report::Interval { index, hists, .. }) => {
                if let Some(second) = collector.add(index, &hists) {
                    progress(&second);
                }
            }
            Ok(Report::Done(o)) => outcomes.push(*o),
            Ok(Report::Ready { .. }) => {}
            Err(_) => break,
        }
    }
    (collector.finish(), outcomes)
}

fn lun_infos(w: &Workload, geometry: &[Option<(Capacity, Region)>]) -> Vec<LunInfo> {
    w.targets
        .iter()
        .enumerate()
        .map(|(t, target)| {
            // Specs go LUN by LUN: the LUN's first session is at t * sessions.
            let g = geometry.get(t * w.sessions as usize).copied().flatten();
            let (cap, region) = g.map_or(
                (
                    Capacity {
                        blocks: 0,
                        block_len: 0,
                    },
                    None,
                ),
                |(c, r)| (c, Some(r)),
            );
            LunInfo {
                url: target.primary().to_string(),
                paths: target.paths.iter().map(|p| p.portal()).collect(),
                block_len: cap.block_len,
                blocks: cap.blocks,
                region_offset_bytes: region.map_or(0, |r| r.first_lba * u64::from(r.block_len)),
                region_size_bytes: region.map_or(0, |r| r.bytes()),
            }
        })
        .collect()
}
