//! Which reactor serves a new connection. Connections are spread round-robin, except those that
//! log in to a target with mirrored volumes: they go to the volumes' home reactor, where a
//! write's buffer goes to both copies as received and reads need no hand-off (see
//! `ringsan_engine::mirror::remote`). The target is learned by peeking (`MSG_PEEK`) at the
//! first Login Request's TargetName without consuming it; the login itself then runs on the
//! chosen reactor as usual. Anything unexpected (no data in time, another PDU, no TargetName,
//! a discovery session) falls back to round-robin: placement is an optimisation, never a gate.

use std::time::Duration;

use ringsan_engine::net::TcpStream;

/// Bytes looked at: a BHS and the start of the login text, where initiators put TargetName.
const PEEK_BYTES: usize = 4096;
/// How long the first Login Request may take to arrive before round-robin is used.
const PEEK_WAIT: Duration = Duration::from_millis(500);

/// The TargetName of a Login Request whose first bytes are `bytes`, if they hold one.
pub fn login_target_name(bytes: &[u8]) -> Option<&str> {
    const BHS: usize = 48;
    let bhs = bytes.get(..BHS)?;
    if bhs[0] & 0x3f != 0x03 {
        return None; // not a Login Request
    }
    let ahs = usize::from(bhs[4]) * 4;
    let dsl = (usize::from(bhs[5]) << 16) | (usize::from(bhs[6]) << 8) | usize::from(bhs[7]);
    let start = BHS + ahs;
    let end = bytes.len().min(start.saturating_add(dsl));
    let text = bytes.get(start..end)?;
    text.split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("TargetName="))
        .filter(|name| !name.is_empty())
}

/// The target name the connection's first Login Request asks for, when it arrives in time.
pub async fn peek_target_name(stream: &TcpStream) -> Option<String> {
    let peeked = ringsan_engine::time::timeout(PEEK_WAIT, stream.peek(vec![0u8; PEEK_BYTES])).await;
    let (result, buf) = peeked.ok()?;
    let n = result.ok()?;
    login_target_name(buf.get(..n)?).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(text: &str, ahs_words: u8) -> Vec<u8> {
        let mut b = vec![0u8; 48];
        b[0] = 0x43; // immediate Login Request
        b[4] = ahs_words;
        let len = text.len();
        b[5] = (len >> 16) as u8;
        b[6] = (len >> 8) as u8;
        b[7] = len as u8;
        b.extend(std::iter::repeat_n(0u8, usize::from(ahs_words) * 4));
        b.extend_from_slice(text.as_bytes());
        b
    }

    #[test]
    fn the_target_name_is_found_in_the_login_text() {
        let text =
            "InitiatorName=iqn.a:b\0SessionType=Normal\0TargetName=iqn.2026-11.io.ringsan:vm\0";
        assert_eq!(
            login_target_name(&login(text, 0)),
            Some("iqn.2026-11.io.ringsan:vm")
        );
        assert_eq!(
            login_target_name(&login(text, 2)),
            Some("iqn.2026-11.io.ringsan:vm"),
            "after an AHS"
        );
    }

    #[test]
    fn anything_else_gives_no_name() {
        let discovery = "InitiatorName=iqn.a:b\0SessionType=Discovery\0";
        assert_eq!(login_target_name(&login(discovery, 0)), None);
        let mut nop = login("TargetName=x\0", 0);
        nop[0] = 0x00;
        assert_eq!(login_target_name(&nop), None, "not a login");
        assert_eq!(login_target_name(&[0x43; 20]), None, "short");
        let mut cut = login("TargetName=iqn.x:y\0", 0);
        cut.truncate(48 + 5);
        assert_eq!(login_target_name(&cut), None, "the name did not arrive");
        // A data segment length beyond what arrived reads only what is there.
        let mut long = login("TargetName=iqn.x:y\0", 0);
        long[5] = 0xff;
        assert_eq!(login_target_name(&long), Some("iqn.x:y"));
        assert_eq!(login_target_name(&login("TargetName=\0", 0)), None);
    }
}
