//! Text requests in full-feature phase (RFC 7143 §11.10): SendTargets discovery, answered with
//! the address the initiator actually connected to; any other key is answered NotUnderstood
//! (we renegotiate nothing after login).

use ringsan_engine::net::TcpStream;

use crate::iscsi::discovery::send_targets;
use crate::iscsi::session::Session;
use crate::iscsi::text::{parse, TextWriter};

/// The body of the Text Response to `data`.
pub fn answer(session: &Session, stream: &TcpStream, data: &[u8]) -> Vec<u8> {
    let pairs = match parse(data) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "malformed text request");
            return Vec::new();
        }
    };
    let mut out = TextWriter::new();
    for kv in &pairs {
        if kv.key == "SendTargets" {
            let Ok(portal) = stream.local_addr() else {
                continue;
            };
            let value = match (&session.target, kv.value.as_str()) {
                // In a normal session an empty value (or All) lists the session's own target.
                (Some(t), "" | "All") => t.iqn.clone(),
                (_, v) => v.to_string(),
            };
            let targets: Vec<(String, u16, bool)> = session
                .server
                .targets
                .all()
                .iter()
                .map(|t| (t.iqn.clone(), t.tpgt, t.allows(&session.initiator)))
                .collect();
            match send_targets(&value, &session.initiator, &targets, portal) {
                Ok(body) => return body,
                Err(e) => tracing::warn!(error = %e, "SendTargets"),
            }
        } else {
            let _ = out.push(&kv.key, "NotUnderstood");
        }
    }
    out.into_bytes()
}
