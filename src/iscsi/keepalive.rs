//! Target-initiated NOP-In pings (RFC 7143 §11.19): an idle connection is pinged every interval
//! with a NOP-In carrying a fresh target transfer tag (ITT 0xffffffff, StatSN not advanced); the
//! initiator must answer with a NOP-Out echoing the tag. A ping left unanswered for two
//! intervals means the initiator is gone, and the connection is closed so its tasks end.

use std::rc::Rc;
use std::time::Duration;

use ringsan_engine::net::TcpStream;

use crate::iscsi::framing::Payload;
use crate::iscsi::pdu::{NopIn, RESERVED_TAG};
use crate::iscsi::session::Session;

/// Pings `session` while it lives.
pub async fn run(session: Rc<Session>, stream: Rc<TcpStream>, interval: Duration) {
    let mut unanswered_rounds = 0u32;
    loop {
        ringsan_engine::time::sleep(interval).await;
        if session.ending.get() || session.outbox.is_closed() {
            return;
        }
        let heard = session.heard_from.replace(false);
        match session.ping_outstanding.get() {
            Some(ttt) => {
                unanswered_rounds += 1;
                if unanswered_rounds >= 2 {
                    tracing::warn!(ttt, "NOP-In ping unanswered: closing the connection");
                    stream.shutdown();
                    return;
                }
            }
            None => {
                unanswered_rounds = 0;
                if !heard {
                    ping(&session);
                }
            }
        }
    }
}

fn ping(session: &Session) {
    let ttt = session.new_ttt();
    session.ping_outstanding.set(Some(ttt));
    let pdu = NopIn {
        data_len: 0,
        lun: 0,
        itt: RESERVED_TAG,
        ttt,
        statsn: session.peek_stat_sn(),
        exp_cmdsn: session.exp_cmdsn(),
        max_cmdsn: session.max_cmdsn(),
    };
    session.send(pdu.encode(), Payload::None);
}
