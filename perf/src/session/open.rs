//! Opening a path: connect, log in (same ISID every time, so a reconnect reinstates the
//! session), and TEST UNIT READY until the unit attentions of a new nexus are cleared. The
//! first open also reads the LUN's capacity.

use std::time::{Duration, Instant};

use ringsan::iscsi::pdu::encode_lun;

use crate::conn::cdb::Capacity;
use crate::conn::login::{login, LoginSpec};
use crate::conn::{setup, Conn, ConnError};
use crate::url::IscsiUrl;

/// Connects and logs in to `url`, each step within `timeout`.
pub fn open(
    url: &IscsiUrl,
    initiator: &str,
    isid: [u8; 6],
    timeout: Duration,
) -> Result<Conn, ConnError> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::connect(&url.portal(), encode_lun(url.lun), timeout)?;
    let spec = LoginSpec {
        initiator,
        target: &url.iqn,
        isid,
        chap: url.chap.as_ref(),
    };
    let ready =
        login(&mut conn, &spec, deadline).and_then(|()| setup::wait_ready(&mut conn, deadline));
    if let Err(e) = ready {
        conn.shutdown();
        return Err(e);
    }
    Ok(conn)
}

/// [`open`], then READ CAPACITY(16).
pub fn open_first(
    url: &IscsiUrl,
    initiator: &str,
    isid: [u8; 6],
    timeout: Duration,
) -> Result<(Conn, Capacity), ConnError> {
    let mut conn = open(url, initiator, isid, timeout)?;
    match setup::read_capacity(&mut conn, Instant::now() + timeout) {
        Ok(cap) => Ok((conn, cap)),
        Err(e) => {
            conn.shutdown();
            Err(e)
        }
    }
}

/// [`open_first`] on the paths in turn, from `first`: the index of the path that worked, or why
/// each failed.
pub fn open_any(
    paths: &[IscsiUrl],
    first: usize,
    initiator: &str,
    isid: [u8; 6],
    timeout: Duration,
) -> Result<(usize, Conn, Capacity), String> {
    let mut why = Vec::new();
    for k in 0..paths.len() {
        let path = (first + k) % paths.len();
        match open_first(&paths[path], initiator, isid, timeout) {
            Ok((conn, cap)) => return Ok((path, conn, cap)),
            Err(e) => why.push(format!("{}: {e}", paths[path])),
        }
    }
    Err(why.join("; "))
}
