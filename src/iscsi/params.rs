//! Session and connection operational parameters and the target's side of their negotiation
//! (RFC 7143 §6.2, §13).
//!
//! The initiator offers keys; for each one the [`Negotiator`] computes the target's answer by
//! the rule RFC 7143 gives that key:
//! - boolean AND (ImmediateData, IFMarker, OFMarker) / OR (InitialR2T, DataPDUInOrder,
//!   DataSequenceInOrder), §6.2.2;
//! - numerical minimum (MaxBurstLength, FirstBurstLength, MaxOutstandingR2T,
//!   DefaultTime2Retain, ErrorRecoveryLevel, MaxConnections) / maximum (DefaultTime2Wait);
//! - list: the first value of the initiator's list the target accepts (HeaderDigest,
//!   DataDigest, TaskReporting), else `Reject` (§6.2.1);
//! - declarative: recorded, not answered (MaxRecvDataSegmentLength, InitiatorName, ...).
//!
//! Traps that bite:
//! - MaxRecvDataSegmentLength is *declarative and per direction* (§13.12): the initiator's value
//!   bounds what the target sends, the target's own value (which the target must declare even
//!   when not asked) bounds what the initiator sends. Mixing them up truncates or overruns PDUs.
//! - Keys the initiator does not offer keep their RFC defaults, whatever the target prefers: a
//!   target that never answers MaxBurstLength runs with 262144.
//! - FirstBurstLength must not exceed MaxBurstLength (§13.14), and is Irrelevant when
//!   InitialR2T=Yes and ImmediateData=No; its answer depends on keys that may come later in the
//!   same text, so it is answered last.
//! - A key negotiated twice during login is a protocol error (§6.2), but an unknown key is only
//!   `NotUnderstood` and private `X-` keys must never break a login.
//! - Out-of-range numerical values are answered `Reject` and keep the default.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::iscsi::text::{parse_number, KeyValue};

/// Smallest MaxRecvDataSegmentLength / MaxBurstLength / FirstBurstLength (§13.12-§13.14).
pub const MIN_DATA_LENGTH: u32 = 512;
/// Largest MaxRecvDataSegmentLength / MaxBurstLength / FirstBurstLength: 2^24 - 1.
pub const MAX_DATA_LENGTH: u32 = 16_777_215;
/// RFC default MaxRecvDataSegmentLength (§13.12).
pub const DEFAULT_MAX_RECV_DSL: u32 = 8192;
/// Most distinct keys one login may carry before it is refused (bounds the bookkeeping).
pub const MAX_TRACKED_KEYS: usize = 1024;

/// The keys of the security stage (§12.1); the login state machine handles them itself.
pub const SECURITY_KEYS: &[&str] = &[
    "AuthMethod",
    "CHAP_A",
    "CHAP_I",
    "CHAP_C",
    "CHAP_N",
    "CHAP_R",
];

/// SessionType (§13.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionType {
    /// Discovery session: Text requests (SendTargets) only.
    Discovery,
    /// Normal session (the default).
    #[default]
    Normal,
}

impl SessionType {
    /// Parses the wire value (`Discovery` / `Normal`, case sensitive).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Discovery" => Some(SessionType::Discovery),
            "Normal" => Some(SessionType::Normal),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Discovery => "Discovery",
            SessionType::Normal => "Normal",
        }
    }
}

/// Login stage (CSG/NSG values 0 and 1, §11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// SecurityNegotiation (0).
    Security,
    /// LoginOperationalNegotiation (1).
    Operational,
}

impl Stage {
    /// The CSG/NSG code.
    pub fn code(self) -> u8 {
        match self {
            Stage::Security => 0,
            Stage::Operational => 1,
        }
    }
}

/// Session-wide parameters, with the RFC 7143 defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// InitialR2T (default Yes).
    pub initial_r2t: bool,
    /// ImmediateData (default Yes).
    pub immediate_data: bool,
    /// MaxBurstLength (default 262144).
    pub max_burst_length: u32,
    /// FirstBurstLength (default 65536).
    pub first_burst_length: u32,
    /// DefaultTime2Wait in seconds (default 2).
    pub default_time2wait: u16,
    /// DefaultTime2Retain in seconds (default 20).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T (default 1).
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder (default Yes).
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder (default Yes).
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (default 0).
    pub error_recovery_level: u8,
    /// MaxConnections (default 1).
    pub max_connections: u16,
    /// SessionType (default Normal).
    pub session_type: SessionType,
    /// TargetName (normal sessions).
    pub target_name: Option<String>,
    /// InitiatorName.
    pub initiator_name: Option<String>,
    /// InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// TargetAlias the target declared.
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag the target declared.
    pub target_portal_group_tag: Option<u16>,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            initial_r2t: true,
            immediate_data: true,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            max_connections: 1,
            session_type: SessionType::Normal,
            target_name: None,
            initiator_name: None,
            initiator_alias: None,
            target_alias: None,
            target_portal_group_tag: None,
        }
    }
}

/// Connection-only parameters, with the RFC 7143 defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnParams {
    /// HeaderDigest: true when CRC32C was chosen (default None).
    pub header_digest: bool,
    /// DataDigest: true when CRC32C was chosen (default None).
    pub data_digest: bool,
    /// What the initiator declared it can receive = the most the TARGET may send in one PDU.
    pub max_recv_dsl_initiator: u32,
    /// What the target declared = the most the INITIATOR may send in one PDU.
    pub max_recv_dsl_target: u32,
    /// IFMarker (always No: markers are not supported).
    pub if_marker: bool,
    /// OFMarker (always No).
    pub of_marker: bool,
}

impl Default for ConnParams {
    fn default() -> Self {
        ConnParams {
            header_digest: false,
            data_digest: false,
            max_recv_dsl_initiator: DEFAULT_MAX_RECV_DSL,
            max_recv_dsl_target: DEFAULT_MAX_RECV_DSL,
            if_marker: false,
            of_marker: false,
        }
    }
}

/// What this target supports and prefers; the negotiation never grants more.
///
/// The target only answers keys, it never proposes them: a limit below the RFC default (e.g.
/// `max_burst_length` < 262144) only takes effect when the initiator offers that key; keys it
/// does not offer keep their defaults (§6.2). Keep the limits at or above the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimits {
    /// Largest MaxBurstLength granted (the size of a command's data buffer).
    pub max_burst_length: u32,
    /// The target's own MaxRecvDataSegmentLength, declared to the initiator.
    pub max_recv_data_segment_length: u32,
    /// Largest FirstBurstLength granted.
    pub first_burst_length: u32,
    /// Largest MaxOutstandingR2T granted.
    pub max_outstanding_r2t: u16,
    /// Highest ErrorRecoveryLevel supported.
    pub max_error_recovery_level: u8,
    /// Largest MaxConnections granted.
    pub max_connections: u16,
    /// The target's DefaultTime2Wait (the answer is the maximum of both).
    pub default_time2wait: u16,
    /// The target's DefaultTime2Retain (the answer is the minimum of both).
    pub default_time2retain: u16,
    /// Whether CRC32C header/data digests are accepted.
    pub crc32c_digests: bool,
    /// Whether ImmediateData=Yes is accepted.
    pub allow_immediate_data: bool,
    /// Whether InitialR2T=No (unsolicited Data-Out) is accepted.
    pub allow_initial_r2t_no: bool,
    /// Bound on one accumulated login text.
    pub max_login_text: usize,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_burst_length: 262_144,
            max_recv_data_segment_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            max_error_recovery_level: 0,
            max_connections: 1,
            default_time2wait: 2,
            default_time2retain: 20,
            crc32c_digests: true,
            allow_immediate_data: true,
            allow_initial_r2t_no: true,
            max_login_text: crate::iscsi::text::DEFAULT_TEXT_LIMIT,
        }
    }
}

impl TargetLimits {
    /// Clamps every field into its RFC range (and FirstBurstLength to MaxBurstLength), so the
    /// target never answers a value the RFC forbids. The login text bound is kept within
    /// 8 KiB (the RFC minimum) .. 16 MiB.
    pub fn sanitized(mut self) -> Self {
        self.max_burst_length = self
            .max_burst_length
            .clamp(MIN_DATA_LENGTH, MAX_DATA_LENGTH);
        self.max_recv_data_segment_length = self
            .max_recv_data_segment_length
            .clamp(MIN_DATA_LENGTH, MAX_DATA_LENGTH);
        self.first_burst_length = self
            .first_burst_length
            .clamp(MIN_DATA_LENGTH, self.max_burst_length);
        self.max_outstanding_r2t = self.max_outstanding_r2t.max(1);
        self.max_error_recovery_level = self.max_error_recovery_level.min(2);
        self.max_connections = self.max_connections.max(1);
        self.default_time2wait = self.default_time2wait.min(3600);
        self.default_time2retain = self.default_time2retain.min(3600);
        self.max_login_text = self.max_login_text.clamp(8192, 16 << 20);
        self
    }
}

/// A negotiation the target cannot answer with a key value: the login fails with
/// "initiator error" (0x0200).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NegotiationError {
    /// A key already negotiated or declared during this login came again (§6.2).
    #[error("key {0} negotiated more than once during login")]
    Renegotiated(String),
    /// A declarative key with an invalid value (e.g. MaxRecvDataSegmentLength=100).
    #[error("invalid value for declarative key {0}")]
    InvalidDeclaration(String),
    /// Too many distinct keys during one login.
    #[error("too many distinct keys during one login")]
    TooManyKeys,
}

const IRRELEVANT: &str = "Irrelevant";
const REJECT: &str = "Reject";
const NOT_UNDERSTOOD: &str = "NotUnderstood";

/// How the answer to a negotiated key is computed.
#[derive(Clone, Copy)]
enum Rule {
    /// Boolean AND with the target's value.
    And(bool),
    /// Boolean OR with the target's value.
    Or(bool),
    /// Minimum of the offer and the target's value, offer within `lo..=hi`.
    Min { lo: u64, hi: u64, target: u64 },
    /// Maximum of the offer and the target's value, offer within `lo..=hi`.
    Max { lo: u64, hi: u64, target: u64 },
    /// Digest list: None always, CRC32C when `crc`.
    Digest { crc: bool },
    /// TaskReporting list: only RFC3720.
    TaskReporting,
}

/// Where a negotiated key may appear (§13 "Use").
#[derive(Clone, Copy)]
struct KeyUse {
    /// LO: only on the leading connection of a session.
    leading_only: bool,
    /// Irrelevant for discovery sessions.
    normal_only: bool,
}

const LO_NORMAL: KeyUse = KeyUse {
    leading_only: true,
    normal_only: true,
};
const LO_ALL: KeyUse = KeyUse {
    leading_only: true,
    normal_only: false,
};
const IO_ALL: KeyUse = KeyUse {
    leading_only: false,
    normal_only: false,
};
const IO_NORMAL: KeyUse = KeyUse {
    leading_only: false,
    normal_only: true,
};

/// The target's side of the operational negotiation of one connection's login.
#[derive(Debug, Clone)]
pub struct Negotiator {
    limits: TargetLimits,
    leading: bool,
    session: SessionParams,
    conn: ConnParams,
    /// Keys the initiator sent that have been answered (or deliberately left unanswered).
    seen: HashSet<String>,
    /// Declarative keys with the value first declared (a same-value re-declaration is ignored).
    declared: HashMap<String, String>,
    target_mrdsl_declared: bool,
}

impl Negotiator {
    /// A negotiator for a session of `session_type`; `leading` is false for a connection that
    /// joins an existing session (TSIH != 0), where the LO keys are Irrelevant.
    pub fn new(limits: TargetLimits, session_type: SessionType, leading: bool) -> Self {
        let session = SessionParams {
            session_type,
            ..SessionParams::default()
        };
        Negotiator {
            limits: limits.sanitized(),
            leading,
            session,
            conn: ConnParams::default(),
            seen: HashSet::new(),
            declared: HashMap::new(),
            target_mrdsl_declared: false,
        }
    }

    /// The session type this negotiator was built for.
    pub fn session_type(&self) -> SessionType {
        self.session.session_type
    }

    /// Session parameters as negotiated so far.
    pub fn session(&self) -> &SessionParams {
        &self.session
    }

    /// Connection parameters as negotiated so far.
    pub fn conn(&self) -> &ConnParams {
        &self.conn
    }

    /// Records the declarations the target itself makes (TargetAlias, TargetPortalGroupTag).
    pub fn record_target_identity(&mut self, alias: Option<String>, tpgt: Option<u16>) {
        self.session.target_alias = alias;
        self.session.target_portal_group_tag = tpgt;
    }

    /// The target's own `MaxRecvDataSegmentLength` declaration, returned once (None after);
    /// from then on the initiator may send up to that value.
    pub fn declare_max_recv_dsl(&mut self) -> Option<KeyValue> {
        if self.target_mrdsl_declared {
            return None;
        }
        self.target_mrdsl_declared = true;
        self.conn.max_recv_dsl_target = self.limits.max_recv_data_segment_length;
        Some(KeyValue::new(
            "MaxRecvDataSegmentLength",
            self.limits.max_recv_data_segment_length.to_string(),
        ))
    }

    /// Whether the target's MaxRecvDataSegmentLength was declared.
    pub fn max_recv_dsl_declared(&self) -> bool {
        self.target_mrdsl_declared
    }

    /// Answers every key of one LTDS offered in `stage`; returns the answers in order (the
    /// FirstBurstLength answer last). Declarative keys get no answer; a repeated unknown key is
    /// ignored; a repeated negotiated key is an error.
    pub fn negotiate(
        &mut self,
        pairs: &[KeyValue],
        stage: Stage,
    ) -> Result<Vec<KeyValue>, NegotiationError> {
        let mut answers = Vec::new();
        let mut deferred: Vec<&KeyValue> = Vec::new();
        for kv in pairs {
            if kv.key == "FirstBurstLength" {
                deferred.push(kv);
                continue;
            }
            if let Some(answer) = self.offer(kv, stage)? {
                answers.push(KeyValue::new(kv.key.clone(), answer));
            }
        }
        for kv in deferred {
            if let Some(answer) = self.offer(kv, stage)? {
                answers.push(KeyValue::new(kv.key.clone(), answer));
            }
        }
        Ok(answers)
    }

    /// The negotiated parameters, with FirstBurstLength clamped to MaxBurstLength (§13.14).
    pub fn finish(&self) -> (SessionParams, ConnParams) {
        let mut session = self.session.clone();
        if session.first_burst_length > session.max_burst_length {
            session.first_burst_length = session.max_burst_length;
        }
        (session, self.conn)
    }

    fn is_known(key: &str) -> bool {
        Self::rule(key, &TargetLimits::default()).is_some()
            || SECURITY_KEYS.contains(&key)
            || matches!(
                key,
                "MaxRecvDataSegmentLength"
                    | "InitiatorName"
                    | "TargetName"
                    | "InitiatorAlias"
                    | "SessionType"
                    | "IFMarkInt"
                    | "OFMarkInt"
                    | "SendTargets"
            )
    }

    fn is_declarative(key: &str) -> bool {
        matches!(
            key,
            "MaxRecvDataSegmentLength"
                | "InitiatorName"
                | "TargetName"
                | "InitiatorAlias"
                | "SessionType"
        )
    }

    /// Handles one offered key; `Ok(None)` means no answer is sent.
    fn offer(&mut self, kv: &KeyValue, stage: Stage) -> Result<Option<String>, NegotiationError> {
        let key = kv.key.as_str();
        if Self::is_declarative(key) {
            return self.declare(kv);
        }
        if matches!(
            key,
            "TargetAlias" | "TargetAddress" | "TargetPortalGroupTag"
        ) {
            // Keys only the target sends: nothing to answer, nothing to record.
            return Ok(None);
        }
        if self.seen.contains(key) {
            if Self::is_known(key) {
                return Err(NegotiationError::Renegotiated(key.to_owned()));
            }
            // A repeated unknown key: it was answered NotUnderstood once; never answer twice.
            return Ok(None);
        }
        if self.seen.len() >= MAX_TRACKED_KEYS {
            return Err(NegotiationError::TooManyKeys);
        }
        self.seen.insert(key.to_owned());
        Ok(self.answer(key, &kv.value, stage))
    }

    fn declare(&mut self, kv: &KeyValue) -> Result<Option<String>, NegotiationError> {
        if let Some(previous) = self.declared.get(&kv.key) {
            // libiscsi repeats InitiatorName/TargetName/SessionType in the operational stage
            // after CHAP; an identical re-declaration is harmless, a changed one is not.
            if *previous == kv.value {
                return Ok(None);
            }
            return Err(NegotiationError::Renegotiated(kv.key.clone()));
        }
        let invalid = || NegotiationError::InvalidDeclaration(kv.key.clone());
        match kv.key.as_str() {
            "MaxRecvDataSegmentLength" => {
                let v = parse_number(&kv.value)
                    .filter(|v| {
                        (u64::from(MIN_DATA_LENGTH)..=u64::from(MAX_DATA_LENGTH)).contains(v)
                    })
                    .ok_or_else(invalid)?;
                self.conn.max_recv_dsl_initiator = u32::try_from(v).map_err(|_| invalid())?;
            }
            "InitiatorName" | "TargetName" if kv.value.is_empty() => return Err(invalid()),
            "InitiatorName" => self.session.initiator_name = Some(kv.value.clone()),
            "TargetName" => self.session.target_name = Some(kv.value.clone()),
            "InitiatorAlias" => self.session.initiator_alias = Some(kv.value.clone()),
            // The login machine chose the session type from the first text; a different value
            // later is a change of declaration.
            "SessionType" if SessionType::parse(&kv.value) != Some(self.session.session_type) => {
                return Err(NegotiationError::Renegotiated(kv.key.clone()));
            }
            _ => {}
        }
        if self.declared.len() >= MAX_TRACKED_KEYS {
            return Err(NegotiationError::TooManyKeys);
        }
        self.declared.insert(kv.key.clone(), kv.value.clone());
        Ok(None)
    }

    fn rule(key: &str, l: &TargetLimits) -> Option<(Rule, KeyUse)> {
        let data = (u64::from(MIN_DATA_LENGTH), u64::from(MAX_DATA_LENGTH));
        Some(match key {
            "HeaderDigest" | "DataDigest" => (
                Rule::Digest {
                    crc: l.crc32c_digests,
                },
                IO_ALL,
            ),
            "MaxConnections" => (
                Rule::Min {
                    lo: 1,
                    hi: 65535,
                    target: l.max_connections.into(),
                },
                LO_NORMAL,
            ),
            "InitialR2T" => (Rule::Or(!l.allow_initial_r2t_no), LO_NORMAL),
            "ImmediateData" => (Rule::And(l.allow_immediate_data), LO_NORMAL),
            "MaxBurstLength" => (
                Rule::Min {
                    lo: data.0,
                    hi: data.1,
                    target: l.max_burst_length.into(),
                },
                LO_NORMAL,
            ),
            "FirstBurstLength" => (
                Rule::Min {
                    lo: data.0,
                    hi: data.1,
                    target: l.first_burst_length.into(),
                },
                LO_NORMAL,
            ),
            "DefaultTime2Wait" => (
                Rule::Max {
                    lo: 0,
                    hi: 3600,
                    target: l.default_time2wait.into(),
                },
                LO_ALL,
            ),
            "DefaultTime2Retain" => (
                Rule::Min {
                    lo: 0,
                    hi: 3600,
                    target: l.default_time2retain.into(),
                },
                LO_ALL,
            ),
            "MaxOutstandingR2T" => (
                Rule::Min {
                    lo: 1,
                    hi: 65535,
                    target: l.max_outstanding_r2t.into(),
                },
                LO_NORMAL,
            ),
            "DataPDUInOrder" | "DataSequenceInOrder" => (Rule::Or(true), LO_NORMAL),
            "ErrorRecoveryLevel" => (
                Rule::Min {
                    lo: 0,
                    hi: 2,
                    target: l.max_error_recovery_level.into(),
                },
                LO_ALL,
            ),
            "IFMarker" | "OFMarker" => (Rule::And(false), IO_NORMAL),
            "TaskReporting" => (Rule::TaskReporting, LO_NORMAL),
            _ => return None,
        })
    }

    fn answer(&mut self, key: &str, value: &str, stage: Stage) -> Option<String> {
        let Some((rule, key_use)) = Self::rule(key, &self.limits) else {
            return match key {
                // Markers are never enabled, so their intervals never matter (RFC 3720 §A.3.2).
                "IFMarkInt" | "OFMarkInt" => Some(IRRELEVANT.into()),
                // Security keys outside the security stage, SendTargets (FFP only) in login.
                k if SECURITY_KEYS.contains(&k) || k == "SendTargets" => Some(IRRELEVANT.into()),
                // Unknown keys, X- and X# private/extension keys.
                _ => Some(NOT_UNDERSTOOD.into()),
            };
        };
        // Operational keys are negotiated in the operational stage only; session-wide keys are
        // irrelevant on a discovery session and LO keys on a non-leading connection.
        if stage == Stage::Security
            || (key_use.leading_only && !self.leading)
            || (key_use.normal_only && self.session.session_type == SessionType::Discovery)
        {
            return Some(IRRELEVANT.into());
        }
        if key == "FirstBurstLength" && self.session.initial_r2t && !self.session.immediate_data {
            return Some(IRRELEVANT.into());
        }
        let answer = match rule {
            Rule::And(target) => parse_bool(value).map(|offer| {
                let result = offer && target;
                self.set_bool(key, result);
                yes_no(result)
            }),
            Rule::Or(target) => parse_bool(value).map(|offer| {
                let result = offer || target;
                self.set_bool(key, result);
                yes_no(result)
            }),
            Rule::Min { lo, hi, target } => parse_number(value)
                .filter(|v| (lo..=hi).contains(v))
                .map(|offer| {
                    let mut result = offer.min(target);
                    if key == "FirstBurstLength" {
                        result = result.min(u64::from(self.session.max_burst_length));
                    }
                    self.set_number(key, result);
                    result.to_string()
                }),
            Rule::Max { lo, hi, target } => parse_number(value)
                .filter(|v| (lo..=hi).contains(v))
                .map(|offer| {
                    let result = offer.max(target);
                    self.set_number(key, result);
                    result.to_string()
                }),
            Rule::Digest { crc } => {
                let choice = value
                    .split(',')
                    .find(|v| *v == "None" || (crc && *v == "CRC32C"));
                if let Some(choice) = choice {
                    let on = choice == "CRC32C";
                    if key == "HeaderDigest" {
                        self.conn.header_digest = on;
                    } else {
                        self.conn.data_digest = on;
                    }
                }
                choice.map(str::to_owned)
            }
            Rule::TaskReporting => value
                .split(',')
                .find(|v| *v == "RFC3720")
                .map(str::to_owned),
        };
        Some(answer.unwrap_or_else(|| REJECT.into()))
    }

    fn set_bool(&mut self, key: &str, v: bool) {
        match key {
            "InitialR2T" => self.session.initial_r2t = v,
            "ImmediateData" => self.session.immediate_data = v,
            "DataPDUInOrder" => self.session.data_pdu_in_order = v,
            "DataSequenceInOrder" => self.session.data_sequence_in_order = v,
            "IFMarker" => self.conn.if_marker = v,
            "OFMarker" => self.conn.of_marker = v,
            _ => {}
        }
    }

    /// Stores a numerical result; the rule's range check guarantees each value fits its field.
    fn set_number(&mut self, key: &str, v: u64) {
        let u32v = u32::try_from(v).unwrap_or(u32::MAX);
        let u16v = u16::try_from(v).unwrap_or(u16::MAX);
        match key {
            "MaxConnections" => self.session.max_connections = u16v,
            "MaxBurstLength" => self.session.max_burst_length = u32v,
            "FirstBurstLength" => self.session.first_burst_length = u32v,
            "DefaultTime2Wait" => self.session.default_time2wait = u16v,
            "DefaultTime2Retain" => self.session.default_time2retain = u16v,
            "MaxOutstandingR2T" => self.session.max_outstanding_r2t = u16v,
            "ErrorRecoveryLevel" => {
                self.session.error_recovery_level = u8::try_from(v).unwrap_or(u8::MAX)
            }
            _ => {}
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yes_no(v: bool) -> String {
    if v { "Yes" } else { "No" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()
    }

    fn normal() -> Negotiator {
        Negotiator::new(TargetLimits::default(), SessionType::Normal, true)
    }

    fn one(n: &mut Negotiator, key: &str, value: &str) -> Option<String> {
        let answers = n
            .negotiate(&kvs(&[(key, value)]), Stage::Operational)
            .unwrap();
        assert!(answers.len() <= 1);
        answers.into_iter().next().map(|kv| {
            assert_eq!(kv.key, key);
            kv.value
        })
    }

    #[test]
    fn defaults_are_rfc7143() {
        let s = SessionParams::default();
        assert!(s.initial_r2t && s.immediate_data);
        assert_eq!(s.max_burst_length, 262144);
        assert_eq!(s.first_burst_length, 65536);
        assert_eq!(s.default_time2wait, 2);
        assert_eq!(s.default_time2retain, 20);
        assert_eq!(s.max_outstanding_r2t, 1);
        assert!(s.data_pdu_in_order && s.data_sequence_in_order);
        assert_eq!(s.error_recovery_level, 0);
        assert_eq!(s.max_connections, 1);
        assert_eq!(s.session_type, SessionType::Normal);
        let c = ConnParams::default();
        assert!(!c.header_digest && !c.data_digest && !c.if_marker && !c.of_marker);
        assert_eq!(c.max_recv_dsl_initiator, 8192);
        assert_eq!(c.max_recv_dsl_target, 8192);
        // Keys not offered keep their defaults.
        let n = normal();
        let (s2, c2) = n.finish();
        assert_eq!(s2, s);
        assert_eq!(c2, c);
    }

    #[test]
    fn boolean_and() {
        assert_eq!(
            one(&mut normal(), "ImmediateData", "Yes").as_deref(),
            Some("Yes")
        );
        assert_eq!(
            one(&mut normal(), "ImmediateData", "No").as_deref(),
            Some("No")
        );
        let mut n = normal();
        assert_eq!(one(&mut n, "ImmediateData", "No").as_deref(), Some("No"));
        assert!(!n.session().immediate_data);
        let limits = TargetLimits {
            allow_immediate_data: false,
            ..TargetLimits::default()
        };
        let mut n = Negotiator::new(limits, SessionType::Normal, true);
        assert_eq!(one(&mut n, "ImmediateData", "Yes").as_deref(), Some("No"));
        assert_eq!(one(&mut normal(), "IFMarker", "Yes").as_deref(), Some("No"));
        assert_eq!(one(&mut normal(), "OFMarker", "No").as_deref(), Some("No"));
    }

    #[test]
    fn boolean_or() {
        let mut n = normal();
        assert_eq!(one(&mut n, "InitialR2T", "No").as_deref(), Some("No"));
        assert!(!n.session().initial_r2t);
        assert_eq!(
            one(&mut normal(), "InitialR2T", "Yes").as_deref(),
            Some("Yes")
        );
        let limits = TargetLimits {
            allow_initial_r2t_no: false,
            ..TargetLimits::default()
        };
        let mut n = Negotiator::new(limits, SessionType::Normal, true);
        assert_eq!(one(&mut n, "InitialR2T", "No").as_deref(), Some("Yes"));
        // The target requires in-order data.
        assert_eq!(
            one(&mut normal(), "DataPDUInOrder", "No").as_deref(),
            Some("Yes")
        );
        assert_eq!(
            one(&mut normal(), "DataSequenceInOrder", "No").as_deref(),
            Some("Yes")
        );
    }

    #[test]
    fn numerical_min_and_max() {
        let mut n = normal();
        assert_eq!(
            one(&mut n, "MaxBurstLength", "16776192").as_deref(),
            Some("262144")
        );
        assert_eq!(n.session().max_burst_length, 262144);
        assert_eq!(
            one(&mut normal(), "MaxBurstLength", "65536").as_deref(),
            Some("65536")
        );
        assert_eq!(
            one(&mut normal(), "FirstBurstLength", "262144").as_deref(),
            Some("65536")
        );
        assert_eq!(
            one(&mut normal(), "MaxOutstandingR2T", "8").as_deref(),
            Some("1")
        );
        assert_eq!(
            one(&mut normal(), "DefaultTime2Retain", "0").as_deref(),
            Some("0")
        );
        assert_eq!(
            one(&mut normal(), "DefaultTime2Retain", "60").as_deref(),
            Some("20")
        );
        assert_eq!(
            one(&mut normal(), "ErrorRecoveryLevel", "2").as_deref(),
            Some("0")
        );
        assert_eq!(
            one(&mut normal(), "MaxConnections", "8").as_deref(),
            Some("1")
        );
        let mut n = normal();
        assert_eq!(one(&mut n, "DefaultTime2Wait", "0").as_deref(), Some("2"));
        assert_eq!(
            one(&mut n, "DefaultTime2Retain", "0x10").as_deref(),
            Some("16")
        );
        assert_eq!(n.session().default_time2retain, 16);
        assert_eq!(
            one(&mut normal(), "DefaultTime2Wait", "10").as_deref(),
            Some("10")
        );
        // Hex.
        assert_eq!(
            one(&mut normal(), "MaxBurstLength", "0x10000").as_deref(),
            Some("65536")
        );
    }

    #[test]
    fn out_of_range_and_malformed_are_rejected() {
        for (k, v) in [
            ("MaxBurstLength", "511"),
            ("MaxBurstLength", "16777216"),
            ("FirstBurstLength", "0"),
            ("MaxOutstandingR2T", "0"),
            ("MaxConnections", "65536"),
            ("DefaultTime2Wait", "3601"),
            ("ErrorRecoveryLevel", "3"),
            ("MaxBurstLength", "lots"),
            ("MaxBurstLength", ""),
            ("ImmediateData", "yes"),
            ("InitialR2T", "Maybe"),
            ("HeaderDigest", "MD5"),
            ("HeaderDigest", ""),
        ] {
            let mut n = normal();
            assert_eq!(one(&mut n, k, v).as_deref(), Some("Reject"), "{k}={v}");
            assert_eq!(
                n.finish().0,
                SessionParams::default(),
                "{k}={v} changed a default"
            );
        }
    }

    #[test]
    fn digest_list_choice() {
        let mut n = normal();
        assert_eq!(
            one(&mut n, "HeaderDigest", "CRC32C,None").as_deref(),
            Some("CRC32C")
        );
        assert_eq!(
            one(&mut n, "DataDigest", "None,CRC32C").as_deref(),
            Some("None")
        );
        assert!(n.conn().header_digest);
        assert!(!n.conn().data_digest);
        let limits = TargetLimits {
            crc32c_digests: false,
            ..TargetLimits::default()
        };
        let mut n = Negotiator::new(limits, SessionType::Normal, true);
        assert_eq!(
            one(&mut n, "HeaderDigest", "CRC32C,None").as_deref(),
            Some("None")
        );
        assert_eq!(
            one(&mut n, "DataDigest", "CRC32C").as_deref(),
            Some("Reject")
        );
        assert!(!n.conn().data_digest);
        assert_eq!(
            one(&mut normal(), "HeaderDigest", "Foo,,CRC32C").as_deref(),
            Some("CRC32C")
        );
    }

    #[test]
    fn task_reporting() {
        assert_eq!(
            one(&mut normal(), "TaskReporting", "FastAbort,RFC3720").as_deref(),
            Some("RFC3720")
        );
        assert_eq!(
            one(&mut normal(), "TaskReporting", "FastAbort").as_deref(),
            Some("Reject")
        );
    }

    #[test]
    fn unknown_and_private_keys_not_understood() {
        for k in [
            "X-com.example.Foo",
            "X#Bar",
            "Frobnicate",
            "iSCSIProtocolLevel",
        ] {
            assert_eq!(
                one(&mut normal(), k, "1").as_deref(),
                Some("NotUnderstood"),
                "{k}"
            );
        }
        // A repeated unknown key is not answered twice.
        let mut n = normal();
        assert_eq!(one(&mut n, "X-foo", "1").as_deref(), Some("NotUnderstood"));
        assert_eq!(one(&mut n, "X-foo", "1"), None);
    }

    #[test]
    fn irrelevant_keys() {
        assert_eq!(
            one(&mut normal(), "OFMarkInt", "2048~8192").as_deref(),
            Some("Irrelevant")
        );
        assert_eq!(
            one(&mut normal(), "IFMarkInt", "2048").as_deref(),
            Some("Irrelevant")
        );
        assert_eq!(
            one(&mut normal(), "SendTargets", "All").as_deref(),
            Some("Irrelevant")
        );
        assert_eq!(
            one(&mut normal(), "AuthMethod", "None").as_deref(),
            Some("Irrelevant")
        );
        // FirstBurstLength with InitialR2T=Yes and ImmediateData=No, in either order.
        let mut n = normal();
        let a = n
            .negotiate(
                &kvs(&[
                    ("FirstBurstLength", "8192"),
                    ("InitialR2T", "Yes"),
                    ("ImmediateData", "No"),
                ]),
                Stage::Operational,
            )
            .unwrap();
        assert_eq!(
            a.last().unwrap(),
            &KeyValue::new("FirstBurstLength", "Irrelevant")
        );
        assert_eq!(n.session().first_burst_length, 65536);
        // Operational keys in the security stage.
        let mut n = normal();
        let a = n
            .negotiate(&kvs(&[("MaxBurstLength", "4096")]), Stage::Security)
            .unwrap();
        assert_eq!(a, kvs(&[("MaxBurstLength", "Irrelevant")]));
        assert_eq!(n.session().max_burst_length, 262144);
    }

    #[test]
    fn discovery_session_only_negotiates_discovery_keys() {
        let mut n = Negotiator::new(TargetLimits::default(), SessionType::Discovery, true);
        let a = n
            .negotiate(
                &kvs(&[
                    ("HeaderDigest", "None"),
                    ("DataDigest", "None"),
                    ("MaxRecvDataSegmentLength", "32768"),
                    ("DefaultTime2Wait", "2"),
                    ("DefaultTime2Retain", "0"),
                    ("ErrorRecoveryLevel", "0"),
                    ("MaxBurstLength", "4096"),
                    ("ImmediateData", "Yes"),
                    ("MaxConnections", "1"),
                    ("IFMarker", "No"),
                ]),
                Stage::Operational,
            )
            .unwrap();
        assert_eq!(
            a,
            kvs(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("DefaultTime2Wait", "2"),
                ("DefaultTime2Retain", "0"),
                ("ErrorRecoveryLevel", "0"),
                ("MaxBurstLength", "Irrelevant"),
                ("ImmediateData", "Irrelevant"),
                ("MaxConnections", "Irrelevant"),
                ("IFMarker", "Irrelevant"),
            ])
        );
        assert_eq!(n.conn().max_recv_dsl_initiator, 32768);
    }

    #[test]
    fn leading_only_keys_on_non_leading_connection() {
        let mut n = Negotiator::new(TargetLimits::default(), SessionType::Normal, false);
        let a = n
            .negotiate(
                &kvs(&[
                    ("MaxConnections", "2"),
                    ("ErrorRecoveryLevel", "0"),
                    ("HeaderDigest", "None"),
                ]),
                Stage::Operational,
            )
            .unwrap();
        assert_eq!(
            a,
            kvs(&[
                ("MaxConnections", "Irrelevant"),
                ("ErrorRecoveryLevel", "Irrelevant"),
                ("HeaderDigest", "None"),
            ])
        );
    }

    #[test]
    fn max_recv_dsl_is_declarative_both_ways() {
        let mut n = normal();
        let a = n
            .negotiate(
                &kvs(&[("MaxRecvDataSegmentLength", "0x2000")]),
                Stage::Operational,
            )
            .unwrap();
        assert!(a.is_empty());
        assert_eq!(n.conn().max_recv_dsl_initiator, 8192);
        assert_eq!(n.conn().max_recv_dsl_target, 8192);
        assert_eq!(
            n.declare_max_recv_dsl(),
            Some(KeyValue::new("MaxRecvDataSegmentLength", "262144"))
        );
        assert_eq!(n.declare_max_recv_dsl(), None);
        assert_eq!(n.conn().max_recv_dsl_target, 262144);
        for bad in ["511", "16777216", "x"] {
            let mut n = normal();
            assert_eq!(
                n.negotiate(
                    &kvs(&[("MaxRecvDataSegmentLength", bad)]),
                    Stage::Operational
                ),
                Err(NegotiationError::InvalidDeclaration(
                    "MaxRecvDataSegmentLength".into()
                ))
            );
        }
    }

    #[test]
    fn renegotiation_is_an_error_but_identical_declarations_are_not() {
        let mut n = normal();
        one(&mut n, "MaxBurstLength", "65536");
        assert_eq!(
            n.negotiate(&kvs(&[("MaxBurstLength", "65536")]), Stage::Operational),
            Err(NegotiationError::Renegotiated("MaxBurstLength".into()))
        );
        let mut n = normal();
        let ident = kvs(&[("InitiatorName", "iqn.a"), ("SessionType", "Normal")]);
        assert!(n.negotiate(&ident, Stage::Security).unwrap().is_empty());
        assert!(n.negotiate(&ident, Stage::Operational).unwrap().is_empty());
        assert_eq!(n.session().initiator_name.as_deref(), Some("iqn.a"));
        assert_eq!(
            n.negotiate(&kvs(&[("InitiatorName", "iqn.b")]), Stage::Operational),
            Err(NegotiationError::Renegotiated("InitiatorName".into()))
        );
        assert_eq!(
            n.negotiate(&kvs(&[("SessionType", "Discovery")]), Stage::Operational),
            Err(NegotiationError::Renegotiated("SessionType".into()))
        );
    }

    #[test]
    fn first_burst_never_exceeds_max_burst() {
        // Same text: FirstBurstLength is answered after MaxBurstLength.
        let mut n = normal();
        let a = n
            .negotiate(
                &kvs(&[("FirstBurstLength", "65536"), ("MaxBurstLength", "16384")]),
                Stage::Operational,
            )
            .unwrap();
        assert_eq!(
            a,
            kvs(&[("MaxBurstLength", "16384"), ("FirstBurstLength", "16384")])
        );
        // Different texts: finish() clamps.
        let mut n = normal();
        one(&mut n, "FirstBurstLength", "65536");
        one(&mut n, "MaxBurstLength", "8192");
        let (s, _) = n.finish();
        assert_eq!(s.first_burst_length, 8192);
        assert_eq!(s.max_burst_length, 8192);
    }

    #[test]
    fn limits_are_sanitized() {
        let l = TargetLimits {
            max_burst_length: 1,
            first_burst_length: 1 << 30,
            max_recv_data_segment_length: u32::MAX,
            max_outstanding_r2t: 0,
            max_error_recovery_level: 9,
            max_connections: 0,
            max_login_text: 0,
            ..TargetLimits::default()
        }
        .sanitized();
        assert_eq!(l.max_burst_length, 512);
        assert_eq!(l.first_burst_length, 512);
        assert_eq!(l.max_recv_data_segment_length, MAX_DATA_LENGTH);
        assert_eq!(l.max_outstanding_r2t, 1);
        assert_eq!(l.max_error_recovery_level, 2);
        assert_eq!(l.max_connections, 1);
        assert_eq!(l.max_login_text, 8192);
    }
}
