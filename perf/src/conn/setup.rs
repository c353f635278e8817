//! Blocking, one-at-a-time exchanges outside the I/O loop: receiving a single PDU, TEST UNIT
//! READY until the LUN is ready (clearing the unit attentions a new nexus or a restarted target
//! reports), READ CAPACITY(16), and logout. Each takes a deadline; none allocates per I/O
//! because none runs in the I/O loop.

use std::time::{Duration, Instant};

use ringsan::iscsi::pdu::{
    logout_reason, parse_sense_segment, task_attr, Bhs, LogoutRequest, Response, ScsiCommand,
};

use super::cdb::{self, status, Capacity, Sense};
use super::{Conn, ConnError};

/// Most TEST UNIT READY attempts (each unit attention needs one).
const MAX_TUR: usize = 64;

/// Receives one PDU (header and a copy of its data) before `deadline`.
pub fn recv_raw(
    conn: &mut Conn,
    deadline: Instant,
    what: &str,
) -> Result<(Bhs, Vec<u8>), ConnError> {
    loop {
        let next = conn.rx.next_pdu().map_err(|e| ConnError::Protocol {
            portal: conn.link.portal.clone(),
            what: e.to_string(),
        })?;
        if let Some((bhs, range)) = next {
            return Ok((bhs, conn.rx.data(range).to_vec()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnError::Timeout {
                portal: conn.link.portal.clone(),
                what: format!("no answer while waiting for {what}"),
            });
        }
        conn.set_read_timeout(left)?;
        conn.fill()?;
    }
}

/// What a blocking command returned.
#[derive(Debug, Default)]
pub struct Outcome {
    pub status: u8,
    pub sense: Option<Sense>,
    pub data: Vec<u8>,
}

/// Sends a command without data-out and waits for its status, answering target pings.
pub fn command(
    conn: &mut Conn,
    cdb: [u8; 16],
    read_len: u32,
    deadline: Instant,
) -> Result<Outcome, ConnError> {
    let itt = conn.link.next_ctl_itt();
    let cmd = ScsiCommand {
        immediate: false,
        final_flag: true,
        read: read_len > 0,
        write: false,
        attr: task_attr::SIMPLE,
        ahs_len_words: 0,
        data_len: 0,
        lun: conn.link.lun,
        itt,
        expected_data_len: read_len,
        cmdsn: conn.link.take_cmdsn(),
        exp_statsn: conn.link.sn.exp_statsn,
        cdb,
    };
    conn.link.queue(&cmd.encode(), &[]);
    conn.flush()?;
    let mut out = Outcome::default();
    loop {
        let (bhs, data) = recv_raw(conn, deadline, "a command's status")?;
        let r = Response::decode(&bhs).map_err(|e| protocol(conn, e.to_string()))?;
        conn.link.track(&r);
        match r {
            Response::DataIn(d) if d.itt == itt => {
                out.data.extend_from_slice(&data);
                if d.status_present {
                    out.status = d.status;
                    return Ok(out);
                }
            }
            Response::ScsiResponse(s) if s.itt == itt => {
                if s.response != 0 {
                    return Err(protocol(conn, format!("target failure {:#x}", s.response)));
                }
                out.status = s.status;
                out.sense = parse_sense_segment(&data).ok().and_then(Sense::parse);
                return Ok(out);
            }
            Response::NopIn(n) => {
                conn.link.answer_ping(&n);
                conn.flush()?;
            }
            Response::Async(_) => {}
            other => return Err(protocol(conn, format!("unexpected {other:?} during setup"))),
        }
    }
}

/// TEST UNIT READY until GOOD, retrying unit attentions and "becoming ready".
pub fn wait_ready(conn: &mut Conn, deadline: Instant) -> Result<(), ConnError> {
    for _ in 0..MAX_TUR {
        let o = command(conn, cdb::test_unit_ready(), 0, deadline)?;
        match (o.status, o.sense) {
            (status::GOOD, _) => return Ok(()),
            (status::CHECK_CONDITION, Some(s)) if s.is_transient() => {
                if s.key == cdb::sense_key::NOT_READY {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            (status::BUSY, _) => std::thread::sleep(Duration::from_millis(50)),
            (st, sense) => {
                return Err(ConnError::Scsi {
                    portal: conn.link.portal.clone(),
                    what: format!(
                        "the LUN is not ready: TEST UNIT READY returned {}{}",
                        cdb::status_name(st),
                        sense.map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                })
            }
        }
    }
    Err(ConnError::Scsi {
        portal: conn.link.portal.clone(),
        what: format!("the LUN did not become ready after {MAX_TUR} TEST UNIT READYs"),
    })
}

/// READ CAPACITY(16).
pub fn read_capacity(conn: &mut Conn, deadline: Instant) -> Result<Capacity, ConnError> {
    for _ in 0..4 {
        let o = command(
            conn,
            cdb::read_capacity16(),
            cdb::READ_CAPACITY16_LEN,
            deadline,
        )?;
        match (o.status, o.sense) {
            (status::GOOD, _) => {
                return cdb::parse_read_capacity16(&o.data).ok_or_else(|| ConnError::Scsi {
                    portal: conn.link.portal.clone(),
                    what: "READ CAPACITY(16) returned malformed data".into(),
                })
            }
            (status::CHECK_CONDITION, Some(s)) if s.is_transient() => continue,
            (st, sense) => {
                return Err(ConnError::Scsi {
                    portal: conn.link.portal.clone(),
                    what: format!(
                        "READ CAPACITY(16) failed: {}{}",
                        cdb::status_name(st),
                        sense.map(|s| format!(" ({s})")).unwrap_or_default()
                    ),
                })
            }
        }
    }
    Err(ConnError::Scsi {
        portal: conn.link.portal.clone(),
        what: "READ CAPACITY(16) kept reporting unit attentions".into(),
    })
}

/// Logs the session out (best effort: a target that is gone is not an error here).
pub fn logout(conn: &mut Conn, deadline: Instant) {
    let req = LogoutRequest {
        immediate: true,
        reason: logout_reason::CLOSE_SESSION,
        data_len: 0,
        itt: conn.link.next_ctl_itt(),
        cid: 1,
        cmdsn: conn.link.sn.cmdsn,
        exp_statsn: conn.link.sn.exp_statsn,
    };
    conn.link.queue(&req.encode(), &[]);
    if conn.flush().is_err() {
        return;
    }
    while let Ok((bhs, _)) = recv_raw(conn, deadline, "the logout response") {
        if matches!(Response::decode(&bhs), Ok(Response::Logout(_))) {
            break;
        }
    }
    conn.shutdown();
}

fn protocol(conn: &Conn, what: String) -> ConnError {
    ConnError::Protocol {
        portal: conn.link.portal.clone(),
        what,
    }
}
