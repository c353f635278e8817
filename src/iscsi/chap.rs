//! CHAP authentication, target side (RFC 1994, RFC 7143 §12.1.3), including mutual CHAP.
//!
//! The exchange, in the security stage of login:
//! 1. initiator `AuthMethod=CHAP,...`, target `AuthMethod=CHAP` (handled by the login machine);
//! 2. initiator `CHAP_A=<list>`, target `CHAP_A=5`, `CHAP_I=<id>`, `CHAP_C=<challenge>`;
//! 3. initiator `CHAP_N=<user>`, `CHAP_R=<MD5(id || secret || challenge)>`, and for mutual
//!    CHAP also `CHAP_I`/`CHAP_C` of its own; the target verifies and, for mutual CHAP, answers
//!    `CHAP_N=<target user>`, `CHAP_R=<MD5(I || target secret || initiator challenge)>`.
//!
//! Traps that bite:
//! - The response compare must be constant time, or the response leaks byte by byte.
//! - A target that answers an initiator challenge equal to its own challenge hands an attacker
//!   the response it needs (reflection): §12.1.3 requires refusing it. The same attack works
//!   with any challenge when the initiator and target secrets are equal, so those are refused
//!   too (§12.1.3: a secret for one direction MUST NOT be used for the other).
//! - The initiator's response is verified *before* the target computes its mutual response, so
//!   an unauthenticated peer never gets an MD5 of the target secret.
//! - Binary values come in `0x` hex (an odd digit count has an implied leading zero) or `0b`
//!   base64 (§6.1); CHAP_C/CHAP_R are at most 1024 bytes once decoded (§12.1.3).
//! - Secrets are never logged: [`ChapCredentials`] has a redacting `Debug`.

use std::fmt;

use md5::{Digest, Md5};
use rand::RngCore;
use thiserror::Error;

use crate::iscsi::text::{parse_number, KeyValue};

/// CHAP_A value of MD5, the only algorithm supported.
pub const CHAP_MD5: u64 = 5;
/// Length of the challenge the target sends.
pub const CHALLENGE_LEN: usize = 16;
/// Largest decoded CHAP_C/CHAP_R (RFC 7143 §12.1.3).
pub const MAX_BINARY_LEN: usize = 1024;

/// A CHAP user name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// The CHAP name (CHAP_N).
    pub user: String,
    /// The shared secret; never logged.
    pub secret: Vec<u8>,
}

impl ChapCredentials {
    /// Credentials from a user name and a secret.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        ChapCredentials {
            user: user.into(),
            secret: secret.into(),
        }
    }
}

impl fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a CHAP exchange failed; the login fails with "authentication failure" (0x0201).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChapError {
    /// CHAP_A did not list MD5 (5).
    #[error("the initiator offered no supported CHAP algorithm (only CHAP_A=5, MD5)")]
    NoSupportedAlgorithm,
    /// A CHAP key arrived at the wrong point of the exchange.
    #[error("CHAP key {0} out of sequence")]
    OutOfSequence(&'static str),
    /// A CHAP value could not be decoded.
    #[error("malformed value for {0}")]
    Malformed(&'static str),
    /// CHAP_N does not name the configured user.
    #[error("CHAP_N does not name the configured user")]
    UnknownUser,
    /// CHAP_R does not verify.
    #[error("CHAP response does not verify")]
    BadResponse,
    /// The configured initiator secret is empty.
    #[error("no CHAP secret configured")]
    MissingSecret,
    /// Mutual CHAP requested but no target credential configured.
    #[error("mutual CHAP requested but no target credential is configured")]
    MutualNotConfigured,
    /// The initiator's challenge equals the target's own (reflection attack).
    #[error("the initiator's challenge reflects the target's challenge")]
    ReflectedChallenge,
    /// The initiator and target secrets are identical.
    #[error("initiator and target CHAP secrets are identical")]
    SameSecrets,
    /// CHAP_I without CHAP_C or the reverse.
    #[error("mutual CHAP needs both CHAP_I and CHAP_C")]
    IncompleteMutual,
}

/// The initiator's step-3 keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChapResponse<'a> {
    /// CHAP_N.
    pub name: Option<&'a str>,
    /// CHAP_R.
    pub response: Option<&'a str>,
    /// CHAP_I of a mutual challenge.
    pub mutual_id: Option<&'a str>,
    /// CHAP_C of a mutual challenge.
    pub mutual_challenge: Option<&'a str>,
}

enum State {
    WaitAlgorithm,
    WaitResponse { id: u8, challenge: Vec<u8> },
    Done,
    Failed,
}

/// The target side of one CHAP exchange.
pub struct ChapTarget {
    initiator: ChapCredentials,
    target: Option<ChapCredentials>,
    state: State,
}

impl fmt::Debug for ChapTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::WaitAlgorithm => "wait-algorithm",
            State::WaitResponse { .. } => "wait-response",
            State::Done => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ChapTarget")
            .field("initiator_user", &self.initiator.user)
            .field("mutual", &self.target.is_some())
            .field("state", &state)
            .finish()
    }
}

impl ChapTarget {
    /// An exchange expecting `initiator`'s credentials; `target` enables mutual CHAP.
    pub fn new(initiator: ChapCredentials, target: Option<ChapCredentials>) -> Self {
        ChapTarget {
            initiator,
            target,
            state: State::WaitAlgorithm,
        }
    }

    /// Whether CHAP_A is expected next.
    pub fn awaiting_algorithms(&self) -> bool {
        matches!(self.state, State::WaitAlgorithm)
    }

    /// Whether CHAP_N/CHAP_R are expected next.
    pub fn awaiting_response(&self) -> bool {
        matches!(self.state, State::WaitResponse { .. })
    }

    /// Whether the initiator authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Step 2: picks MD5 from the initiator's CHAP_A list and issues the challenge. Returns
    /// `CHAP_A`, `CHAP_I`, `CHAP_C` to send.
    pub fn on_algorithms(
        &mut self,
        chap_a: &str,
        rng: &mut dyn RngCore,
    ) -> Result<Vec<KeyValue>, ChapError> {
        if !self.awaiting_algorithms() {
            self.state = State::Failed;
            return Err(ChapError::OutOfSequence("CHAP_A"));
        }
        if !chap_a.split(',').any(|a| parse_number(a) == Some(CHAP_MD5)) {
            self.state = State::Failed;
            return Err(ChapError::NoSupportedAlgorithm);
        }
        if self.initiator.secret.is_empty() {
            self.state = State::Failed;
            return Err(ChapError::MissingSecret);
        }
        let id = rng.next_u32().to_le_bytes()[0];
        let mut challenge = vec![0u8; CHALLENGE_LEN];
        rng.fill_bytes(&mut challenge);
        let answers = vec![
            KeyValue::new("CHAP_A", CHAP_MD5.to_string()),
            KeyValue::new("CHAP_I", id.to_string()),
            KeyValue::new("CHAP_C", encode_hex(&challenge)),
        ];
        self.state = State::WaitResponse { id, challenge };
        Ok(answers)
    }

    /// Step 3: verifies CHAP_N/CHAP_R; for mutual CHAP returns the target's `CHAP_N`/`CHAP_R`.
    pub fn on_response(&mut self, resp: &ChapResponse<'_>) -> Result<Vec<KeyValue>, ChapError> {
        let result = self.verify(resp);
        self.state = if result.is_ok() {
            State::Done
        } else {
            State::Failed
        };
        result
    }

    fn verify(&self, resp: &ChapResponse<'_>) -> Result<Vec<KeyValue>, ChapError> {
        let State::WaitResponse { id, challenge } = &self.state else {
            return Err(ChapError::OutOfSequence("CHAP_R"));
        };
        let name = resp.name.ok_or(ChapError::OutOfSequence("CHAP_N"))?;
        let response = resp.response.ok_or(ChapError::OutOfSequence("CHAP_R"))?;
        let response = decode_binary(response).ok_or(ChapError::Malformed("CHAP_R"))?;
        let expected = chap_md5_response(*id, &self.initiator.secret, challenge);
        let user_ok = constant_time_eq(name.as_bytes(), self.initiator.user.as_bytes());
        let response_ok = constant_time_eq(&response, &expected);
        if !user_ok {
            return Err(ChapError::UnknownUser);
        }
        if !response_ok {
            return Err(ChapError::BadResponse);
        }
        match (resp.mutual_id, resp.mutual_challenge) {
            (None, None) => Ok(Vec::new()),
            (Some(i), Some(c)) => {
                let target = self.target.as_ref().ok_or(ChapError::MutualNotConfigured)?;
                if constant_time_eq(&target.secret, &self.initiator.secret) {
                    return Err(ChapError::SameSecrets);
                }
                if target.secret.is_empty() {
                    return Err(ChapError::MissingSecret);
                }
                let their_id = parse_number(i)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or(ChapError::Malformed("CHAP_I"))?;
                let their_challenge = decode_binary(c).ok_or(ChapError::Malformed("CHAP_C"))?;
                if constant_time_eq(&their_challenge, challenge) {
                    return Err(ChapError::ReflectedChallenge);
                }
                let r = chap_md5_response(their_id, &target.secret, &their_challenge);
                Ok(vec![
                    KeyValue::new("CHAP_N", target.user.clone()),
                    KeyValue::new("CHAP_R", encode_hex(&r)),
                ])
            }
            _ => Err(ChapError::IncompleteMutual),
        }
    }
}

/// The CHAP MD5 response: MD5(identifier || secret || challenge) (RFC 1994 §4.1).
pub fn chap_md5_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// Encodes bytes as a `0x` hex-constant.
pub fn encode_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Decodes a binary value (`0x`/`0X` hex or `0b`/`0B` base64, §6.1) of 1..=1024 bytes.
pub fn decode_binary(value: &str) -> Option<Vec<u8>> {
    let bytes = match value.get(..2)? {
        "0x" | "0X" => decode_hex(value.get(2..)?)?,
        "0b" | "0B" => decode_base64(value.get(2..)?)?,
        _ => return None,
    };
    if bytes.is_empty() || bytes.len() > MAX_BINARY_LEN {
        return None;
    }
    Some(bytes)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Hex digits to bytes; an odd count has an implied leading zero digit (§6.1).
fn decode_hex(digits: &str) -> Option<Vec<u8>> {
    let d = digits.as_bytes();
    if d.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(d.len() / 2 + 1);
    let (head, rest) = if d.len() % 2 == 1 {
        d.split_at(1)
    } else {
        (&[][..], d)
    };
    if let Some(&h) = head.first() {
        out.push(hex_val(h)?);
    }
    for pair in rest.chunks_exact(2) {
        let hi = hex_val(*pair.first()?)?;
        let lo = hex_val(*pair.get(1)?)?;
        out.push((hi << 4) | lo);
    }
    Some(out)
}

fn b64_val(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Standard base64 (RFC 4648 §4); padding optional but, when present, it must complete the
/// last quantum.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let data = bytes.get(..bytes.len() - pad)?;
    if data.is_empty() || data.len() % 4 == 1 || (pad > 0 && (data.len() + pad) % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 6) | b64_val(b)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn value<'a>(answers: &'a [KeyValue], key: &str) -> &'a str {
        &answers.iter().find(|kv| kv.key == key).unwrap().value
    }

    #[test]
    fn md5_response_matches_hand_computed_vector() {
        // MD5(0x01 || "secretsecret" || 00112233445566778899aabbccddeeff), computed with an
        // independent MD5 implementation.
        let challenge = decode_binary("0x00112233445566778899aabbccddeeff").unwrap();
        let r = chap_md5_response(1, b"secretsecret", &challenge);
        assert_eq!(hex::encode(r), "3d3d7f13199a65926f355637d73daf5c");
    }

    #[test]
    fn binary_encodings() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_binary("0XABC"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0x"), None);
        assert_eq!(decode_binary("0xzz"), None);
        assert_eq!(decode_binary("abcd"), None);
        assert_eq!(decode_binary("0"), None);
        assert_eq!(decode_binary("0bAAEC"), Some(vec![0, 1, 2]));
        assert_eq!(decode_binary("0bAAECAw=="), Some(vec![0, 1, 2, 3]));
        assert_eq!(decode_binary("0bAAECAw"), Some(vec![0, 1, 2, 3]));
        assert_eq!(decode_binary("0BAAECAwQ="), Some(vec![0, 1, 2, 3, 4]));
        assert_eq!(decode_binary("0bAAECAw="), None);
        assert_eq!(decode_binary("0bA"), None);
        assert_eq!(decode_binary("0b===="), None);
        assert_eq!(decode_binary("0bAA=A"), None);
        assert_eq!(decode_binary("0b+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(
            decode_binary(&format!("0x{}", "ff".repeat(1024))).map(|v| v.len()),
            Some(1024)
        );
        assert_eq!(decode_binary(&format!("0x{}", "ff".repeat(1025))), None);
        assert_eq!(decode_binary("0é"), None);
        assert_eq!(encode_hex(&[0, 0xab]), "0x00ab");
    }

    #[test]
    fn debug_redacts_secret() {
        let c = ChapCredentials::new("alice", b"topsecret-value".to_vec());
        let s = format!("{c:?}");
        assert!(s.contains("alice"));
        assert!(!s.contains("topsecret"));
        let t = ChapTarget::new(c.clone(), Some(c));
        assert!(!format!("{t:?}").contains("topsecret"));
    }

    #[test]
    fn one_way_chap() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut chap = ChapTarget::new(ChapCredentials::new("alice", "alice-secret-1"), None);
        let a = chap.on_algorithms("7,6,5", &mut rng).unwrap();
        assert_eq!(value(&a, "CHAP_A"), "5");
        let id: u8 = value(&a, "CHAP_I").parse().unwrap();
        let c = decode_binary(value(&a, "CHAP_C")).unwrap();
        assert_eq!(c.len(), CHALLENGE_LEN);
        let r = encode_hex(&chap_md5_response(id, b"alice-secret-1", &c));
        let out = chap
            .on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                ..Default::default()
            })
            .unwrap();
        assert!(out.is_empty());
        assert!(chap.is_done());
    }

    #[test]
    fn base64_response_accepted() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut chap = ChapTarget::new(ChapCredentials::new("alice", "alice-secret-1"), None);
        let a = chap.on_algorithms("5", &mut rng).unwrap();
        let id: u8 = value(&a, "CHAP_I").parse().unwrap();
        let c = decode_binary(value(&a, "CHAP_C")).unwrap();
        let r = chap_md5_response(id, b"alice-secret-1", &c);
        // Hand-rolled base64 of r for the test (encoder not needed in production).
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::from("0b");
        for chunk in r.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                b64.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        assert!(chap
            .on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&b64),
                ..Default::default()
            })
            .is_ok());
    }

    #[test]
    fn failures() {
        let creds = ChapCredentials::new("alice", "alice-secret-1");
        let mut rng = StdRng::seed_from_u64(9);
        let mut chap = ChapTarget::new(creds.clone(), None);
        assert_eq!(
            chap.on_algorithms("6,7", &mut rng),
            Err(ChapError::NoSupportedAlgorithm)
        );
        assert_eq!(
            chap.on_algorithms("5", &mut rng),
            Err(ChapError::OutOfSequence("CHAP_A"))
        );

        let mut chap = ChapTarget::new(creds.clone(), None);
        let resp = ChapResponse {
            name: Some("alice"),
            response: Some("0x00"),
            ..Default::default()
        };
        assert_eq!(
            chap.on_response(&resp),
            Err(ChapError::OutOfSequence("CHAP_R"))
        );

        let mut chap = ChapTarget::new(creds.clone(), None);
        chap.on_algorithms("5", &mut rng).unwrap();
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some("0x00112233445566778899aabbccddeeff"),
                ..Default::default()
            }),
            Err(ChapError::BadResponse)
        );
        assert!(!chap.is_done());

        let mut chap = ChapTarget::new(creds.clone(), None);
        chap.on_algorithms("5", &mut rng).unwrap();
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some("junk"),
                ..Default::default()
            }),
            Err(ChapError::Malformed("CHAP_R"))
        );

        let mut chap = ChapTarget::new(creds.clone(), None);
        chap.on_algorithms("5", &mut rng).unwrap();
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                ..Default::default()
            }),
            Err(ChapError::OutOfSequence("CHAP_R"))
        );

        let mut chap = ChapTarget::new(ChapCredentials::new("alice", ""), None);
        assert_eq!(
            chap.on_algorithms("5", &mut rng),
            Err(ChapError::MissingSecret)
        );
    }

    /// Runs step 2 and returns (id, challenge) with a correct initiator response.
    fn start(chap: &mut ChapTarget, rng: &mut StdRng, secret: &[u8]) -> String {
        let a = chap.on_algorithms("5", rng).unwrap();
        let id: u8 = value(&a, "CHAP_I").parse().unwrap();
        let c = decode_binary(value(&a, "CHAP_C")).unwrap();
        encode_hex(&chap_md5_response(id, secret, &c))
    }

    #[test]
    fn mutual_chap() {
        let mut rng = StdRng::seed_from_u64(10);
        let mut chap = ChapTarget::new(
            ChapCredentials::new("alice", "alice-secret-1"),
            Some(ChapCredentials::new("target-user", "target-secret-2")),
        );
        let r = start(&mut chap, &mut rng, b"alice-secret-1");
        let out = chap
            .on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                mutual_id: Some("42"),
                mutual_challenge: Some("0xdeadbeefcafebabe0123456789abcdef"),
            })
            .unwrap();
        assert_eq!(value(&out, "CHAP_N"), "target-user");
        // MD5(0x2a || "target-secret-2" || deadbeef...) computed independently.
        assert_eq!(value(&out, "CHAP_R"), "0x914e9f4a0c5702997b8dd6bb7f3307a2");
    }

    #[test]
    fn mutual_refusals() {
        let mut rng = StdRng::seed_from_u64(11);
        let alice = ChapCredentials::new("alice", "alice-secret-1");
        let mutual = |r: &str, i: Option<&'static str>, c: Option<String>| (r.to_owned(), i, c);

        // No target credential.
        let mut chap = ChapTarget::new(alice.clone(), None);
        let r = start(&mut chap, &mut rng, b"alice-secret-1");
        let (r, i, c) = mutual(&r, Some("1"), Some("0x0102".into()));
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                mutual_id: i,
                mutual_challenge: c.as_deref(),
            }),
            Err(ChapError::MutualNotConfigured)
        );

        // Same secrets.
        let mut chap = ChapTarget::new(
            alice.clone(),
            Some(ChapCredentials::new("tgt", "alice-secret-1")),
        );
        let r = start(&mut chap, &mut rng, b"alice-secret-1");
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                mutual_id: Some("1"),
                mutual_challenge: Some("0x0102"),
            }),
            Err(ChapError::SameSecrets)
        );

        // Reflected challenge.
        let mut chap = ChapTarget::new(
            alice.clone(),
            Some(ChapCredentials::new("tgt", "other-secret")),
        );
        let a = chap.on_algorithms("5", &mut rng).unwrap();
        let id: u8 = value(&a, "CHAP_I").parse().unwrap();
        let own_c = value(&a, "CHAP_C").to_owned();
        let c = decode_binary(&own_c).unwrap();
        let r = encode_hex(&chap_md5_response(id, b"alice-secret-1", &c));
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                mutual_id: Some("3"),
                mutual_challenge: Some(&own_c),
            }),
            Err(ChapError::ReflectedChallenge)
        );

        // Half a mutual challenge.
        let mut chap = ChapTarget::new(
            alice.clone(),
            Some(ChapCredentials::new("tgt", "other-secret")),
        );
        let r = start(&mut chap, &mut rng, b"alice-secret-1");
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some(&r),
                mutual_id: Some("3"),
                mutual_challenge: None,
            }),
            Err(ChapError::IncompleteMutual)
        );

        // Bad initiator response: no mutual answer is computed.
        let mut chap = ChapTarget::new(
            alice.clone(),
            Some(ChapCredentials::new("tgt", "other-secret")),
        );
        let _ = start(&mut chap, &mut rng, b"alice-secret-1");
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("alice"),
                response: Some("0x00000000000000000000000000000000"),
                mutual_id: Some("3"),
                mutual_challenge: Some("0x0102"),
            }),
            Err(ChapError::BadResponse)
        );

        // Wrong user.
        let mut chap = ChapTarget::new(alice, None);
        let r = start(&mut chap, &mut rng, b"alice-secret-1");
        assert_eq!(
            chap.on_response(&ChapResponse {
                name: Some("mallory"),
                response: Some(&r),
                ..Default::default()
            }),
            Err(ChapError::UnknownUser)
        );
    }
}
