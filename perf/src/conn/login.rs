//! Login, initiator side (RFC 7143 §6.3, §11.12), with CHAP (MD5) when the URL carries
//! credentials.
//!
//! Sequence: the security stage (`AuthMethod=None`, or `AuthMethod=CHAP` then `CHAP_A=5`, then
//! `CHAP_N`/`CHAP_R` answering the target's `CHAP_I`/`CHAP_C`), then the operational stage with
//! the keys below, then the full feature phase. Our offers: no digests, ImmediateData=Yes,
//! InitialR2T=Yes (so writes send immediate data up to FirstBurstLength and wait for R2Ts for
//! the rest), MaxRecvDataSegmentLength 256 KiB, the largest MaxBurstLength.
//!
//! Traps: a response with C=1 is only part of the target's text; an empty request fetches the
//! rest. The target may answer T=0 and need another round. The ISID is the session's identity:
//! a reconnect logs in with the same ISID (and TSIH 0), which reinstates the session and lets
//! the target drop the old one. A non-zero status class ends the login at once.

use std::collections::HashMap;
use std::time::Instant;

use ringsan::iscsi::chap::{chap_md5_response, decode_binary, encode_hex};
use ringsan::iscsi::pdu::{login_stage, login_status, LoginRequest, LoginResponse, Response};
use ringsan::iscsi::text;

use super::{Conn, ConnError, Negotiated, OUR_MAX_RECV_DSL};
use crate::url::Credentials;

/// Most request/response rounds of one login.
const MAX_ROUNDS: usize = 16;
/// Largest login text accepted from the target (continuations included).
const MAX_TEXT: usize = 64 * 1024;

/// Who logs in to what.
#[derive(Debug, Clone)]
pub struct LoginSpec<'a> {
    pub initiator: &'a str,
    pub target: &'a str,
    pub isid: [u8; 6],
    pub chap: Option<&'a Credentials>,
}

/// The keys received so far, by name.
type Keys = HashMap<String, String>;

/// Logs `conn` in; afterwards its window, StatSN and negotiated parameters are set.
pub fn login(conn: &mut Conn, spec: &LoginSpec<'_>, deadline: Instant) -> Result<(), ConnError> {
    let mut state = Exchange {
        spec,
        itt: conn.link.next_ctl_itt(),
        deadline,
        keys: Keys::new(),
        rounds: 0,
    };
    let mut stage = security(conn, &mut state)?;
    if stage != login_stage::FULL_FEATURE {
        stage = operational(conn, &mut state)?;
    }
    debug_assert_eq!(stage, login_stage::FULL_FEATURE);
    conn.link.params = negotiated(&state.keys);
    Ok(())
}

struct Exchange<'a, 'b> {
    spec: &'a LoginSpec<'b>,
    itt: u32,
    deadline: Instant,
    /// Every key the target sent.
    keys: Keys,
    rounds: usize,
}

/// The security stage; returns the stage the target moved to (1 or 3).
fn security(conn: &mut Conn, x: &mut Exchange<'_, '_>) -> Result<u8, ConnError> {
    let s = x.spec;
    let auth = if s.chap.is_some() { "CHAP" } else { "None" };
    let first = [
        ("InitiatorName", s.initiator),
        ("SessionType", "Normal"),
        ("TargetName", s.target),
        ("AuthMethod", auth),
    ];
    let Some(creds) = s.chap else {
        let mut rsp = round(conn, x, login_stage::SECURITY, true, &first)?;
        while !rsp.transit {
            if x.keys.get("AuthMethod").is_some_and(|m| m != "None") {
                return Err(login_error(
                    conn,
                    "the target requires authentication: give CHAP credentials as iscsi://user%secret@host/...",
                ));
            }
            rsp = round(conn, x, login_stage::SECURITY, true, &[])?;
        }
        return Ok(rsp.nsg);
    };
    round(conn, x, login_stage::SECURITY, false, &first)?;
    if x.keys.get("AuthMethod").map(String::as_str) != Some("CHAP") {
        let m = x.keys.get("AuthMethod").cloned().unwrap_or_default();
        return Err(login_error(
            conn,
            &format!("the target did not accept CHAP (AuthMethod={m})"),
        ));
    }
    round(conn, x, login_stage::SECURITY, false, &[("CHAP_A", "5")])?;
    let response = chap_answer(&x.keys).map_err(|what| login_error(conn, &what))?;
    let answer = [
        ("CHAP_N", creds.user.as_str()),
        ("CHAP_R", &response(creds)),
    ];
    let mut rsp = round(conn, x, login_stage::SECURITY, true, &answer)?;
    while !rsp.transit {
        rsp = round(conn, x, login_stage::SECURITY, true, &[])?;
    }
    Ok(rsp.nsg)
}

/// The CHAP response for the target's challenge, as a function of the credentials.
fn chap_answer(keys: &Keys) -> Result<impl Fn(&Credentials) -> String, String> {
    if keys.get("CHAP_A").map(String::as_str) != Some("5") {
        return Err(format!(
            "the target chose CHAP_A={} (only 5, MD5, is supported)",
            keys.get("CHAP_A").map_or("(none)", String::as_str)
        ));
    }
    let id = keys
        .get("CHAP_I")
        .and_then(|i| text::parse_number(i))
        .and_then(|i| u8::try_from(i).ok())
        .ok_or("the target sent no valid CHAP_I")?;
    let challenge = keys
        .get("CHAP_C")
        .and_then(|c| decode_binary(c))
        .ok_or("the target sent no valid CHAP_C")?;
    Ok(move |c: &Credentials| encode_hex(&chap_md5_response(id, c.secret.as_bytes(), &challenge)))
}

/// The operational stage; returns 3 once the target moved to the full feature phase.
fn operational(conn: &mut Conn, x: &mut Exchange<'_, '_>) -> Result<u8, ConnError> {
    let our_dsl = OUR_MAX_RECV_DSL.to_string();
    let keys = [
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxConnections", "1"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxRecvDataSegmentLength", our_dsl.as_str()),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "0"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
    ];
    let mut rsp = round(conn, x, login_stage::OPERATIONAL, true, &keys)?;
    while !(rsp.transit && rsp.nsg == login_stage::FULL_FEATURE) {
        rsp = round(conn, x, login_stage::OPERATIONAL, true, &[])?;
    }
    Ok(rsp.nsg)
}

/// One request (asking to move to the next stage when `transit`) and its whole response
/// (continuations fetched); the response's keys are merged into `x.keys`.
fn round(
    conn: &mut Conn,
    x: &mut Exchange<'_, '_>,
    csg: u8,
    transit: bool,
    keys: &[(&str, &str)],
) -> Result<LoginResponse, ConnError> {
    let mut data = Vec::new();
    for (k, v) in keys {
        data.extend_from_slice(k.as_bytes());
        data.push(b'=');
        data.extend_from_slice(v.as_bytes());
        data.push(0);
    }
    let nsg = if csg == login_stage::SECURITY {
        login_stage::OPERATIONAL
    } else {
        login_stage::FULL_FEATURE
    };
    let mut text_in = Vec::new();
    let mut ask_transit = transit;
    loop {
        x.rounds += 1;
        if x.rounds > MAX_ROUNDS {
            return Err(login_error(
                conn,
                "the login did not finish within 16 rounds",
            ));
        }
        send_request(conn, x, csg, nsg, ask_transit, &data)?;
        let (rsp, piece) = receive_response(conn, x)?;
        text_in.extend_from_slice(&piece);
        if text_in.len() > MAX_TEXT {
            return Err(login_error(conn, "the target's login text exceeds 64 KiB"));
        }
        if !rsp.cont {
            merge_keys(conn, &mut x.keys, &text_in)?;
            return Ok(rsp);
        }
        // Fetch the rest of the target's text with empty requests that do not transit.
        data.clear();
        ask_transit = false;
    }
}

fn send_request(
    conn: &mut Conn,
    x: &Exchange<'_, '_>,
    csg: u8,
    nsg: u8,
    transit: bool,
    data: &[u8],
) -> Result<(), ConnError> {
    let req = LoginRequest {
        transit,
        cont: false,
        csg,
        nsg: if transit { nsg } else { 0 },
        version_max: 0,
        version_min: 0,
        data_len: data.len() as u32,
        isid: x.spec.isid,
        tsih: 0,
        itt: x.itt,
        cid: 1,
        cmdsn: conn.link.sn.cmdsn,
        exp_statsn: conn.link.sn.exp_statsn,
    };
    conn.link.queue(&req.encode(), data);
    conn.flush()
}

fn receive_response(
    conn: &mut Conn,
    x: &Exchange<'_, '_>,
) -> Result<(LoginResponse, Vec<u8>), ConnError> {
    let (bhs, data) = super::setup::recv_raw(conn, x.deadline, "a login response")?;
    let rsp = match Response::decode(&bhs) {
        Ok(Response::Login(r)) => r,
        other => {
            return Err(login_error(
                conn,
                &format!("expected a Login Response, got {other:?}"),
            ))
        }
    };
    if rsp.status_class != login_status::CLASS_SUCCESS {
        let status = rsp.status();
        if status == login_status::AUTHENTICATION_FAILURE && x.spec.chap.is_none() {
            return Err(login_error(
                conn,
                "the target requires CHAP: give credentials as iscsi://user%secret@host/... (login status 0x0201)",
            ));
        }
        return Err(login_error(conn, &status_text(status, x.spec.target)));
    }
    conn.link.sn.exp_statsn = rsp.statsn.wrapping_add(1);
    conn.link.sn.cmdsn = rsp.exp_cmdsn;
    conn.link.sn.max_cmdsn = rsp.max_cmdsn;
    Ok((rsp, data))
}

fn merge_keys(conn: &Conn, into: &mut Keys, data: &[u8]) -> Result<(), ConnError> {
    let pairs =
        text::parse(data).map_err(|e| login_error(conn, &format!("bad login text: {e}")))?;
    for kv in pairs {
        into.insert(kv.key, kv.value);
    }
    Ok(())
}

/// The parameters that matter to the I/O path, from the target's answers (RFC defaults where
/// it said nothing).
fn negotiated(keys: &Keys) -> Negotiated {
    let d = Negotiated::default();
    let num = |k: &str, default: usize| {
        keys.get(k)
            .and_then(|v| text::parse_number(v))
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(default)
    };
    let yes = |k: &str, default: bool| keys.get(k).map_or(default, |v| v == "Yes");
    let max_burst = num("MaxBurstLength", d.max_burst);
    Negotiated {
        max_send_dsl: num("MaxRecvDataSegmentLength", d.max_send_dsl).max(512),
        first_burst: num("FirstBurstLength", d.first_burst).min(max_burst),
        max_burst,
        immediate_data: yes("ImmediateData", d.immediate_data),
        initial_r2t: yes("InitialR2T", d.initial_r2t),
    }
}

fn status_text(status: u16, target: &str) -> String {
    let what = match status {
        login_status::TARGET_MOVED_TEMPORARILY | login_status::TARGET_MOVED_PERMANENTLY => {
            "the target moved (redirection is not followed)".to_string()
        }
        login_status::AUTHENTICATION_FAILURE => {
            "authentication failed: check the CHAP user and secret in the URL".to_string()
        }
        login_status::AUTHORIZATION_FAILURE => {
            "not authorized: is this initiator name (--initiator) on the target's ACL?".to_string()
        }
        login_status::NOT_FOUND => format!("target {target} not found: check the IQN in the URL"),
        login_status::TARGET_REMOVED => format!("target {target} was removed"),
        login_status::TOO_MANY_CONNECTIONS => "too many connections".to_string(),
        login_status::SERVICE_UNAVAILABLE => "service unavailable (try again)".to_string(),
        login_status::OUT_OF_RESOURCES => "the target is out of resources".to_string(),
        _ => "refused".to_string(),
    };
    format!("{what} (login status {status:#06x})")
}

fn login_error(conn: &Conn, what: &str) -> ConnError {
    ConnError::Login {
        portal: conn.link.portal.clone(),
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> Keys {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn negotiated_values_fall_back_to_rfc_defaults() {
        assert_eq!(negotiated(&Keys::new()), Negotiated::default());
        let n = negotiated(&keys(&[
            ("MaxRecvDataSegmentLength", "262144"),
            ("FirstBurstLength", "0x40000"),
            ("MaxBurstLength", "131072"),
            ("ImmediateData", "No"),
            ("InitialR2T", "Yes"),
        ]));
        assert_eq!(n.max_send_dsl, 262144);
        assert_eq!(n.first_burst, 131072, "clamped to MaxBurstLength");
        assert!(!n.immediate_data && n.initial_r2t);
    }

    #[test]
    fn chap_answer_is_md5_of_id_secret_challenge() {
        let k = keys(&[("CHAP_A", "5"), ("CHAP_I", "7"), ("CHAP_C", "0x0102030405")]);
        let answer = chap_answer(&k).unwrap();
        let creds = Credentials {
            user: "u".into(),
            secret: "twelve+chars".into(),
        };
        let want = encode_hex(&chap_md5_response(7, b"twelve+chars", &[1, 2, 3, 4, 5]));
        assert_eq!(answer(&creds), want);
    }

    #[test]
    fn chap_without_md5_or_challenge_is_refused() {
        let no_md5 = keys(&[("CHAP_A", "7"), ("CHAP_I", "1"), ("CHAP_C", "0x01")]);
        assert!(chap_answer(&no_md5).err().unwrap().contains("CHAP_A=7"));
        let no_c = keys(&[("CHAP_A", "5"), ("CHAP_I", "1")]);
        assert!(chap_answer(&no_c).err().unwrap().contains("CHAP_C"));
        let bad_i = keys(&[("CHAP_A", "5"), ("CHAP_I", "300"), ("CHAP_C", "0x01")]);
        assert!(chap_answer(&bad_i).err().unwrap().contains("CHAP_I"));
    }

    #[test]
    fn login_statuses_say_what_to_fix() {
        assert!(status_text(login_status::NOT_FOUND, "iqn.x").contains("check the IQN"));
        assert!(status_text(login_status::AUTHENTICATION_FAILURE, "t").contains("CHAP"));
        assert!(status_text(login_status::AUTHORIZATION_FAILURE, "t").contains("ACL"));
        assert!(status_text(0x0300, "t").contains("0x0300"));
    }
}
