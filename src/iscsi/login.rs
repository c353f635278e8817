//! The per-connection login state machine, target side (RFC 7143 §5.3, §6.3, §11.12, §11.13).
//!
//! Pure code: the caller decodes each Login Request into a [`LoginPdu`] plus its data segment,
//! calls [`LoginMachine::step`], and encodes the [`LoginReply`] into a Login Response (filling
//! in Version-max/Version-active 0, ISID, TSIH, ITT, StatSN, ExpCmdSN, MaxCmdSN). The machine
//! resolves the target through a [`TargetCatalog`], runs AuthMethod/CHAP, negotiates the
//! operational keys with a [`Negotiator`] and reports [`LoginOutcome::FullFeature`] with the
//! negotiated parameters once the final response is produced.
//!
//! Stages: SecurityNegotiation (0) -> LoginOperationalNegotiation (1) -> FullFeaturePhase (3),
//! moved by the T bit. The initiator may start in stage 1 when it does not want to authenticate
//! (libiscsi does), and may ask for stage 3 directly from stage 0.
//!
//! Traps that bite:
//! - The text of one request may be split over several PDUs with the C bit (§6.1); each piece
//!   is answered with an empty response (C=0, T=0) and only the complete text is negotiated
//!   (§11.12.2). C=1 together with T=1 is a protocol error.
//! - Likewise a response longer than the initiator can take (8192 during login, or less if it
//!   declared less) is sent in pieces with C=1; the initiator fetches each next piece with an
//!   empty request, and the T bit and stage change belong to the last piece only.
//! - A target that answers T=1 while authentication is unfinished lets an unauthenticated peer
//!   into the operational stage: while CHAP runs, a transit request is answered with T=0, and a
//!   request that starts in, or asks for, a later stage without authentication fails with
//!   0x0201 when the target requires CHAP.
//! - ISID, TSIH, CID and the version range must not change during one login (§5.3, §11.12).
//! - TargetPortalGroupTag is declared in the first response when TargetName was given (§13.9),
//!   and the target's MaxRecvDataSegmentLength is declared even though nobody asked (§13.12),
//!   otherwise the initiator keeps sending at most 8192 bytes and the target must assume so.
//! - Every answer is sent once per login; a key the initiator negotiates twice fails the login
//!   (§6.2), but libiscsi re-declares InitiatorName/TargetName/SessionType after CHAP with the
//!   same values, which is tolerated.
//! - A failed login is final: every later step fails too.

use std::collections::VecDeque;
use std::fmt;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tracing::{debug, warn};

use crate::iscsi::chap::{ChapCredentials, ChapResponse, ChapTarget};
use crate::iscsi::params::{
    ConnParams, Negotiator, SessionParams, SessionType, Stage, TargetLimits, SECURITY_KEYS,
};
use crate::iscsi::text::{self, KeyValue, TextAccumulator, TextWriter};

/// NSG value of the Full Feature Phase.
pub const FULL_FEATURE_PHASE: u8 = 3;
/// Most login PDUs accepted on one connection (pieces and continuations included).
pub const MAX_LOGIN_PDUS: u32 = 256;
/// Largest data segment the target sends during login.
pub const LOGIN_SEGMENT_LIMIT: usize = 8192;
/// Longest iSCSI name (RFC 7143 §4.2.7.1: 223 bytes).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// The fields of a Login Request the state machine needs (§11.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginPdu {
    /// T bit.
    pub transit: bool,
    /// C bit.
    pub cont: bool,
    /// Current stage.
    pub csg: u8,
    /// Next stage (meaningful only with T=1).
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH (0 for a new session).
    pub tsih: u16,
    /// Initiator task tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmdsn: u32,
    /// ExpStatSN.
    pub exp_statsn: u32,
}

/// The fields of the Login Response the state machine decides (§11.13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoginReply {
    /// T bit.
    pub transit: bool,
    /// C bit.
    pub cont: bool,
    /// Current stage.
    pub csg: u8,
    /// Next stage (0 unless `transit`).
    pub nsg: u8,
    /// Status-Class.
    pub status_class: u8,
    /// Status-Detail.
    pub status_detail: u8,
    /// Data segment (key=value pairs).
    pub text: Vec<u8>,
}

/// What the caller does after sending a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // once per connection; the shape is part of the API
pub enum LoginOutcome {
    /// More login PDUs are expected.
    Continue,
    /// This reply ends login successfully; the caller assigns/validates the TSIH, puts it into
    /// the reply, and switches the connection to the Full Feature Phase after sending it.
    FullFeature(LoginResult),
    /// The reply carries an error status; the caller sends it and closes the connection.
    Failed,
}

/// The result of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResult {
    /// Discovery or Normal.
    pub session_type: SessionType,
    /// InitiatorName.
    pub initiator_name: String,
    /// InitiatorAlias, if declared.
    pub initiator_alias: Option<String>,
    /// TargetName (Normal sessions).
    pub target_name: Option<String>,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH from the request (0 = new session: the caller assigns one).
    pub tsih: u16,
    /// CID.
    pub cid: u16,
    /// Negotiated session parameters. On a non-leading connection (TSIH != 0) the LO keys were
    /// not negotiated: take them from the existing session.
    pub session: SessionParams,
    /// Negotiated connection parameters.
    pub conn: ConnParams,
}

/// Login status codes (§11.13.5), as (class, detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    /// 0x0000.
    Success,
    /// 0x0200: initiator error (malformed request, protocol violation).
    InitiatorError,
    /// 0x0201: authentication failure.
    AuthenticationFailure,
    /// 0x0202: authorization failure (ACL).
    AuthorizationFailure,
    /// 0x0203: target not found.
    NotFound,
    /// 0x0204: target removed.
    TargetRemoved,
    /// 0x0205: unsupported version.
    UnsupportedVersion,
    /// 0x0206: too many connections.
    TooManyConnections,
    /// 0x0207: missing parameter.
    MissingParameter,
    /// 0x0208: can't include in session.
    CannotIncludeInSession,
    /// 0x0209: session type not supported.
    SessionTypeNotSupported,
    /// 0x020a: session does not exist.
    SessionDoesNotExist,
    /// 0x020b: invalid request during login.
    InvalidDuringLogin,
    /// 0x0300: target error.
    TargetError,
    /// 0x0301: service unavailable.
    ServiceUnavailable,
    /// 0x0302: out of resources.
    OutOfResources,
}

impl LoginStatus {
    /// (Status-Class, Status-Detail).
    pub fn class_detail(self) -> (u8, u8) {
        use LoginStatus::*;
        match self {
            Success => (0, 0),
            InitiatorError => (2, 0),
            AuthenticationFailure => (2, 1),
            AuthorizationFailure => (2, 2),
            NotFound => (2, 3),
            TargetRemoved => (2, 4),
            UnsupportedVersion => (2, 5),
            TooManyConnections => (2, 6),
            MissingParameter => (2, 7),
            CannotIncludeInSession => (2, 8),
            SessionTypeNotSupported => (2, 9),
            SessionDoesNotExist => (2, 0x0a),
            InvalidDuringLogin => (2, 0x0b),
            TargetError => (3, 0),
            ServiceUnavailable => (3, 1),
            OutOfResources => (3, 2),
        }
    }

    /// The 16-bit code, e.g. 0x0201.
    pub fn code(self) -> u16 {
        let (class, detail) = self.class_detail();
        u16::from_be_bytes([class, detail])
    }
}

/// How a target (or discovery) authenticates initiators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AuthPolicy {
    /// No authentication (AuthMethod=None).
    #[default]
    None,
    /// CHAP required.
    Chap {
        /// What the initiator must prove.
        initiator: ChapCredentials,
        /// Some: mutual CHAP is answered when the initiator asks for it.
        target: Option<ChapCredentials>,
    },
}

/// What the catalog knows about a target for one initiator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Tag of the portal group serving this login.
    pub tpgt: u16,
    /// TargetAlias to declare, if any.
    pub alias: Option<String>,
    /// Authentication policy.
    pub auth: AuthPolicy,
    /// ACL verdict for this initiator.
    pub initiator_allowed: bool,
}

/// The daemon's view of its configuration, as the login needs it.
pub trait TargetCatalog {
    /// The target named `target_name`, with the ACL verdict for `initiator_name`.
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Option<TargetInfo>;
    /// Authentication for discovery sessions.
    fn discovery_auth(&self) -> AuthPolicy;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    isid: [u8; 6],
    tsih: u16,
    cid: u16,
    version_max: u8,
    version_min: u8,
}

#[derive(Debug)]
struct Identity {
    session_type: SessionType,
    initiator_name: String,
    target_name: Option<String>,
}

#[derive(Debug)]
enum Auth {
    /// AuthMethod not negotiated yet.
    Pending,
    /// AuthMethod=None agreed.
    NoneAgreed,
    /// The initiator offered nothing acceptable; answered Reject (policy None only).
    Rejected,
    /// CHAP chosen.
    Chap(ChapTarget),
}

/// A login failure: the status sent and the reason logged.
struct Failure(LoginStatus, String);

fn failure(status: LoginStatus, why: impl Into<String>) -> Failure {
    Failure(status, why.into())
}

type StepResult<T> = Result<T, Failure>;

/// The login state machine of one connection.
pub struct LoginMachine {
    limits: TargetLimits,
    rng: Box<dyn RngCore + Send>,
    phase: Phase,
    stage: Stage,
    ids: Option<Ids>,
    pdus: u32,
    acc: TextAccumulator,
    identity: Option<Identity>,
    negotiator: Option<Negotiator>,
    policy: AuthPolicy,
    auth: Auth,
    /// Remaining pieces of a response split with the C bit.
    outgoing: VecDeque<Vec<u8>>,
    /// T bit and NSG of the last piece of a split response.
    deferred: (bool, u8),
    failure: Option<LoginStatus>,
}

impl fmt::Debug for LoginMachine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginMachine")
            .field("phase", &self.phase)
            .field("stage", &self.stage)
            .field("pdus", &self.pdus)
            .field("identity", &self.identity)
            .field("auth", &self.auth)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl LoginMachine {
    /// A machine for a new connection, with an entropy-seeded RNG for CHAP challenges.
    pub fn new(limits: TargetLimits) -> Self {
        Self::with_rng(limits, Box::new(StdRng::from_entropy()))
    }

    /// A machine drawing CHAP identifiers and challenges from `rng` (tests and fuzzing use a
    /// seeded one; production must use [`LoginMachine::new`]).
    pub fn with_rng(limits: TargetLimits, rng: Box<dyn RngCore + Send>) -> Self {
        let limits = limits.sanitized();
        LoginMachine {
            acc: TextAccumulator::new(limits.max_login_text),
            limits,
            rng,
            phase: Phase::Active,
            stage: Stage::Security,
            ids: None,
            pdus: 0,
            identity: None,
            negotiator: None,
            policy: AuthPolicy::None,
            auth: Auth::Pending,
            outgoing: VecDeque::new(),
            deferred: (false, 0),
            failure: None,
        }
    }

    /// The current login stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The status of the failure, once the login failed.
    pub fn failure(&self) -> Option<LoginStatus> {
        self.failure
    }

    /// Whether the login ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.phase != Phase::Active
    }

    /// Processes one Login Request (its header fields and data segment) and returns the reply
    /// to send and what happens next.
    pub fn step(
        &mut self,
        pdu: &LoginPdu,
        text: &[u8],
        catalog: &dyn TargetCatalog,
    ) -> (LoginReply, LoginOutcome) {
        if self.phase != Phase::Active {
            let status = self.failure.unwrap_or(LoginStatus::InitiatorError);
            return self.fail(failure(status, "login PDU after the end of login"));
        }
        match self.step_inner(pdu, text, catalog) {
            Ok(r) => r,
            Err(f) => self.fail(f),
        }
    }

    fn fail(&mut self, Failure(status, why): Failure) -> (LoginReply, LoginOutcome) {
        if self.phase == Phase::Active {
            let initiator = self.identity.as_ref().map(|i| i.initiator_name.as_str());
            warn!(
                initiator = initiator.unwrap_or("?"),
                status = format_args!("0x{:04x}", status.code()),
                "login failed: {why}"
            );
        }
        self.phase = Phase::Failed;
        self.failure.get_or_insert(status);
        self.acc.reset();
        self.outgoing.clear();
        let (status_class, status_detail) = status.class_detail();
        let reply = LoginReply {
            transit: false,
            cont: false,
            csg: self.stage.code(),
            nsg: 0,
            status_class,
            status_detail,
            text: Vec::new(),
        };
        (reply, LoginOutcome::Failed)
    }

    fn empty_reply(&self, cont: bool, text: Vec<u8>) -> LoginReply {
        LoginReply {
            transit: false,
            cont,
            csg: self.stage.code(),
            nsg: 0,
            status_class: 0,
            status_detail: 0,
            text,
        }
    }

    fn step_inner(
        &mut self,
        pdu: &LoginPdu,
        text: &[u8],
        catalog: &dyn TargetCatalog,
    ) -> StepResult<(LoginReply, LoginOutcome)> {
        use LoginStatus::*;
        self.pdus = self.pdus.saturating_add(1);
        if self.pdus > MAX_LOGIN_PDUS {
            return Err(failure(InitiatorError, "too many login PDUs"));
        }
        // Only version 0x00 exists (§11.12.4); it is supported when it lies in [min, max].
        if pdu.version_min > 0 || pdu.version_max < pdu.version_min {
            return Err(failure(UnsupportedVersion, "no common protocol version"));
        }
        let ids = Ids {
            isid: pdu.isid,
            tsih: pdu.tsih,
            cid: pdu.cid,
            version_max: pdu.version_max,
            version_min: pdu.version_min,
        };
        let first_pdu = self.ids.is_none();
        match self.ids {
            None => self.ids = Some(ids),
            Some(prev) if prev != ids => {
                return Err(failure(
                    InitiatorError,
                    "ISID/TSIH/CID/version changed during login",
                ));
            }
            Some(_) => {}
        }
        if pdu.transit && pdu.cont {
            return Err(failure(InitiatorError, "T and C bits both set"));
        }
        let csg = match pdu.csg {
            0 => Stage::Security,
            1 => Stage::Operational,
            _ => return Err(failure(InitiatorError, "invalid CSG")),
        };
        if first_pdu {
            self.stage = csg;
        } else if csg != self.stage {
            return Err(failure(
                InitiatorError,
                "CSG does not match the login stage",
            ));
        }
        if pdu.transit && (!matches!(pdu.nsg, 1 | FULL_FEATURE_PHASE) || pdu.nsg <= pdu.csg) {
            return Err(failure(InitiatorError, "invalid NSG"));
        }

        // The initiator fetches the next piece of a split response with an empty request.
        if !self.outgoing.is_empty() {
            if !text.is_empty() || pdu.cont {
                return Err(failure(
                    InitiatorError,
                    "text sent while a split response is pending",
                ));
            }
            return Ok(self.send_next_piece());
        }

        let ltds = match self.acc.push(text, pdu.cont) {
            Err(e) => return Err(failure(InitiatorError, e.to_string())),
            Ok(None) => return Ok((self.empty_reply(false, Vec::new()), LoginOutcome::Continue)),
            Ok(Some(ltds)) => ltds,
        };
        let pairs = text::parse_with_limit(&ltds, self.limits.max_login_text)
            .map_err(|e| failure(InitiatorError, e.to_string()))?;

        let mut out = TextWriter::new();
        if self.identity.is_none() {
            self.establish(&pairs, pdu, catalog, &mut out)?;
        }
        if self.stage == Stage::Operational && !self.auth_satisfied() {
            return Err(failure(
                AuthenticationFailure,
                "operational stage without authentication",
            ));
        }

        // Security keys are handled here in the security stage; everything else goes to the
        // negotiator, which answers security keys Irrelevant in the operational stage when no
        // security stage took place. After one did, they would be negotiated twice.
        let mut others = Vec::with_capacity(pairs.len());
        let mut chap_a = None;
        let mut chap = ChapResponse::default();
        for kv in &pairs {
            let security_key = SECURITY_KEYS.contains(&kv.key.as_str());
            if security_key && self.stage != Stage::Security && !matches!(self.auth, Auth::Pending)
            {
                return Err(failure(
                    InitiatorError,
                    format!("{} sent again after the security stage", kv.key),
                ));
            }
            if self.stage != Stage::Security || !security_key {
                others.push(kv.clone());
                continue;
            }
            let v = kv.value.as_str();
            match kv.key.as_str() {
                "AuthMethod" => self.auth_method(v, &mut out)?,
                "CHAP_A" => chap_a = Some(v),
                "CHAP_N" => chap.name = Some(v),
                "CHAP_R" => chap.response = Some(v),
                "CHAP_I" => chap.mutual_id = Some(v),
                "CHAP_C" => chap.mutual_challenge = Some(v),
                _ => others.push(kv.clone()),
            }
        }
        if let Some(a) = chap_a {
            self.chap_algorithms(a, &mut out)?;
        }
        if chap.name.is_some()
            || chap.response.is_some()
            || chap.mutual_id.is_some()
            || chap.mutual_challenge.is_some()
        {
            self.chap_response(&chap, &mut out)?;
        }

        let stage = self.stage;
        let negotiator = self
            .negotiator
            .as_mut()
            .ok_or_else(|| failure(TargetError, "no negotiator"))?;
        let answers = negotiator
            .negotiate(&others, stage)
            .map_err(|e| failure(InitiatorError, e.to_string()))?;
        for kv in &answers {
            push(&mut out, kv)?;
        }

        let (transit, nsg) = if pdu.transit {
            if stage == Stage::Security && !self.auth_satisfied() {
                match &self.auth {
                    // CHAP still running: not ready to leave the security stage.
                    Auth::Chap(c) if !c.is_done() => (false, 0),
                    _ => {
                        return Err(failure(
                            AuthenticationFailure,
                            "transit requested without authentication",
                        ))
                    }
                }
            } else {
                (true, pdu.nsg)
            }
        } else {
            (false, 0)
        };

        // The target declares its own MaxRecvDataSegmentLength in the operational stage, or in
        // the final response when the login skips that stage.
        if stage == Stage::Operational || (transit && nsg == FULL_FEATURE_PHASE) {
            if let Some(kv) = self
                .negotiator
                .as_mut()
                .and_then(|n| n.declare_max_recv_dsl())
            {
                push(&mut out, &kv)?;
            }
        }
        Ok(self.emit(out.into_bytes(), transit, nsg))
    }

    /// Handles the identity keys of the first complete text: InitiatorName, SessionType,
    /// TargetName, and resolves the target and its authentication policy.
    fn establish(
        &mut self,
        pairs: &[KeyValue],
        pdu: &LoginPdu,
        catalog: &dyn TargetCatalog,
        out: &mut TextWriter,
    ) -> StepResult<()> {
        use LoginStatus::*;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.as_str())
        };
        let initiator_name = get("InitiatorName")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| failure(MissingParameter, "no InitiatorName in the first request"))?;
        if initiator_name.len() > MAX_ISCSI_NAME_LEN {
            return Err(failure(InitiatorError, "InitiatorName too long"));
        }
        let session_type = match get("SessionType") {
            None => SessionType::Normal,
            Some(v) => SessionType::parse(v)
                .ok_or_else(|| failure(SessionTypeNotSupported, "unknown SessionType"))?,
        };
        let (policy, target_name, tpgt, alias) = match session_type {
            SessionType::Normal => {
                let target = get("TargetName").filter(|v| !v.is_empty()).ok_or_else(|| {
                    failure(MissingParameter, "no TargetName for a normal session")
                })?;
                let info = if target.len() > MAX_ISCSI_NAME_LEN {
                    None
                } else {
                    catalog.lookup(target, initiator_name)
                };
                let info = info.ok_or_else(|| failure(NotFound, "unknown target"))?;
                if !info.initiator_allowed {
                    return Err(failure(
                        AuthorizationFailure,
                        format!("initiator not allowed on {target}"),
                    ));
                }
                (
                    info.auth,
                    Some(target.to_owned()),
                    Some(info.tpgt),
                    info.alias,
                )
            }
            SessionType::Discovery => (catalog.discovery_auth(), None, None, None),
        };
        debug!(
            initiator = initiator_name,
            target = target_name.as_deref().unwrap_or("-"),
            session_type = session_type.as_str(),
            "login started"
        );
        // §13.9: TargetPortalGroupTag in the first response when TargetName was given.
        if let Some(tag) = tpgt {
            push(out, &KeyValue::new("TargetPortalGroupTag", tag.to_string()))?;
        }
        let alias =
            alias.filter(|a| !a.is_empty() && TextWriter::new().push("TargetAlias", a).is_ok());
        if let Some(a) = &alias {
            push(out, &KeyValue::new("TargetAlias", a.clone()))?;
        }
        let mut negotiator = Negotiator::new(self.limits, session_type, pdu.tsih == 0);
        negotiator.record_target_identity(alias, tpgt);
        self.negotiator = Some(negotiator);
        self.policy = policy;
        self.identity = Some(Identity {
            session_type,
            initiator_name: initiator_name.to_owned(),
            target_name,
        });
        Ok(())
    }

    fn auth_satisfied(&self) -> bool {
        match (&self.policy, &self.auth) {
            (AuthPolicy::None, _) => true,
            (AuthPolicy::Chap { .. }, Auth::Chap(c)) => c.is_done(),
            (AuthPolicy::Chap { .. }, _) => false,
        }
    }

    fn auth_method(&mut self, value: &str, out: &mut TextWriter) -> StepResult<()> {
        use LoginStatus::*;
        if !matches!(self.auth, Auth::Pending) {
            return Err(failure(InitiatorError, "AuthMethod negotiated twice"));
        }
        let offered = || value.split(',');
        match &self.policy {
            AuthPolicy::None => {
                if offered().any(|m| m == "None") {
                    push(out, &KeyValue::new("AuthMethod", "None"))?;
                    self.auth = Auth::NoneAgreed;
                } else {
                    push(out, &KeyValue::new("AuthMethod", "Reject"))?;
                    self.auth = Auth::Rejected;
                }
            }
            AuthPolicy::Chap { initiator, target } => {
                if !offered().any(|m| m == "CHAP") {
                    return Err(failure(
                        AuthenticationFailure,
                        "CHAP required but not offered",
                    ));
                }
                push(out, &KeyValue::new("AuthMethod", "CHAP"))?;
                self.auth = Auth::Chap(ChapTarget::new(initiator.clone(), target.clone()));
            }
        }
        Ok(())
    }

    fn chap_out_of_sequence(&self, key: &str) -> Failure {
        let status = match self.policy {
            AuthPolicy::Chap { .. } => LoginStatus::AuthenticationFailure,
            AuthPolicy::None => LoginStatus::InitiatorError,
        };
        failure(status, format!("{key} out of sequence"))
    }

    fn chap_algorithms(&mut self, value: &str, out: &mut TextWriter) -> StepResult<()> {
        let answers = match &mut self.auth {
            Auth::Chap(c) if c.awaiting_algorithms() => c
                .on_algorithms(value, &mut *self.rng)
                .map_err(|e| failure(LoginStatus::AuthenticationFailure, e.to_string()))?,
            _ => return Err(self.chap_out_of_sequence("CHAP_A")),
        };
        for kv in &answers {
            push(out, kv)?;
        }
        Ok(())
    }

    fn chap_response(&mut self, resp: &ChapResponse<'_>, out: &mut TextWriter) -> StepResult<()> {
        let answers = match &mut self.auth {
            Auth::Chap(c) if c.awaiting_response() => c
                .on_response(resp)
                .map_err(|e| failure(LoginStatus::AuthenticationFailure, e.to_string()))?,
            _ => return Err(self.chap_out_of_sequence("CHAP_N/CHAP_R")),
        };
        for kv in &answers {
            push(out, kv)?;
        }
        debug!("CHAP authentication succeeded");
        Ok(())
    }

    /// Sends `text` (split if longer than the initiator accepts) with the given T/NSG.
    fn emit(&mut self, text: Vec<u8>, transit: bool, nsg: u8) -> (LoginReply, LoginOutcome) {
        let initiator_max = self.negotiator.as_ref().map_or(LOGIN_SEGMENT_LIMIT, |n| {
            n.conn().max_recv_dsl_initiator as usize
        });
        let seg = LOGIN_SEGMENT_LIMIT.min(initiator_max).max(1);
        if text.len() <= seg {
            return self.final_reply(text, transit, nsg);
        }
        let mut pieces: VecDeque<Vec<u8>> = text.chunks(seg).map(<[u8]>::to_vec).collect();
        let first = pieces.pop_front().unwrap_or_default();
        self.outgoing = pieces;
        self.deferred = (transit, nsg);
        (self.empty_reply(true, first), LoginOutcome::Continue)
    }

    fn send_next_piece(&mut self) -> (LoginReply, LoginOutcome) {
        let piece = self.outgoing.pop_front().unwrap_or_default();
        if !self.outgoing.is_empty() {
            return (self.empty_reply(true, piece), LoginOutcome::Continue);
        }
        let (transit, nsg) = std::mem::take(&mut self.deferred);
        self.final_reply(piece, transit, nsg)
    }

    /// The last (or only) piece of a response: applies the stage transition.
    fn final_reply(&mut self, text: Vec<u8>, transit: bool, nsg: u8) -> (LoginReply, LoginOutcome) {
        let mut reply = self.empty_reply(false, text);
        if !transit {
            return (reply, LoginOutcome::Continue);
        }
        reply.transit = true;
        reply.nsg = nsg;
        if nsg == FULL_FEATURE_PHASE {
            match self.result() {
                Some(result) => {
                    self.phase = Phase::Done;
                    debug!(initiator = result.initiator_name.as_str(), "login complete");
                    (reply, LoginOutcome::FullFeature(result))
                }
                None => self.fail(failure(LoginStatus::TargetError, "login state incomplete")),
            }
        } else {
            self.stage = Stage::Operational;
            (reply, LoginOutcome::Continue)
        }
    }

    fn result(&self) -> Option<LoginResult> {
        let identity = self.identity.as_ref()?;
        let negotiator = self.negotiator.as_ref()?;
        let ids = self.ids?;
        let (mut session, conn) = negotiator.finish();
        session.initiator_name = Some(identity.initiator_name.clone());
        session.target_name = identity.target_name.clone();
        Some(LoginResult {
            session_type: identity.session_type,
            initiator_name: identity.initiator_name.clone(),
            initiator_alias: session.initiator_alias.clone(),
            target_name: identity.target_name.clone(),
            isid: ids.isid,
            tsih: ids.tsih,
            cid: ids.cid,
            session,
            conn,
        })
    }
}

fn push(out: &mut TextWriter, kv: &KeyValue) -> StepResult<()> {
    out.push_pair(kv)
        .map_err(|e| failure(LoginStatus::TargetError, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::chap::{decode_binary, encode_hex};
    use md5::{Digest, Md5};
    use std::collections::HashMap;

    const INITIATOR: &str = "iqn.1993-08.org.debian:01:abcdef";
    const TARGET: &str = "iqn.2024-01.org.ringsan:disk1";
    const ISID: [u8; 6] = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];

    #[derive(Default)]
    struct Catalog {
        targets: HashMap<String, TargetInfo>,
        denied: Vec<String>,
        discovery: AuthPolicy,
    }

    impl TargetCatalog for Catalog {
        fn lookup(&self, target_name: &str, initiator_name: &str) -> Option<TargetInfo> {
            let mut info = self.targets.get(target_name)?.clone();
            info.initiator_allowed = !self.denied.iter().any(|d| d == initiator_name);
            Some(info)
        }
        fn discovery_auth(&self) -> AuthPolicy {
            self.discovery.clone()
        }
    }

    fn catalog(auth: AuthPolicy) -> Catalog {
        let mut c = Catalog::default();
        c.targets.insert(
            TARGET.into(),
            TargetInfo {
                tpgt: 1,
                alias: None,
                auth,
                initiator_allowed: true,
            },
        );
        c
    }

    fn chap_policy(mutual: bool) -> AuthPolicy {
        AuthPolicy::Chap {
            initiator: ChapCredentials::new("alice", "alice-secret-1"),
            target: mutual.then(|| ChapCredentials::new("ringsan", "target-secret-2")),
        }
    }

    fn pdu(csg: u8, nsg: u8, transit: bool) -> LoginPdu {
        LoginPdu {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: ISID,
            tsih: 0,
            itt: 1,
            cid: 0,
            cmdsn: 1,
            exp_statsn: 0,
        }
    }

    fn text(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut w = TextWriter::new();
        for (k, v) in pairs {
            w.push(k, v).unwrap();
        }
        w.into_bytes()
    }

    fn answers(reply: &LoginReply) -> Vec<(String, String)> {
        let pairs = text::parse(&reply.text).expect("reply parses (no duplicate answers)");
        pairs.into_iter().map(|kv| (kv.key, kv.value)).collect()
    }

    fn get<'a>(a: &'a [(String, String)], k: &str) -> Option<&'a str> {
        a.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    fn machine() -> LoginMachine {
        LoginMachine::with_rng(TargetLimits::default(), Box::new(StdRng::seed_from_u64(42)))
    }

    fn assert_status(r: &(LoginReply, LoginOutcome), code: u16) {
        assert_eq!(r.1, LoginOutcome::Failed, "{r:?}");
        assert_eq!(
            u16::from_be_bytes([r.0.status_class, r.0.status_detail]),
            code,
            "{r:?}"
        );
        assert!(r.0.text.is_empty());
    }

    const OPEN_ISCSI_OP: &[(&str, &str)] = &[
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("MaxConnections", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("MaxOutstandingR2T", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
    ];

    fn check_open_iscsi_op_answers(a: &[(String, String)]) {
        let expect = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("MaxOutstandingR2T", "1"),
            ("MaxRecvDataSegmentLength", "262144"),
        ];
        for (k, v) in expect {
            assert_eq!(get(a, k), Some(v), "{k}");
        }
        assert_eq!(get(a, "InitiatorName"), None);
        assert_eq!(get(a, "TargetName"), None);
    }

    fn check_open_iscsi_result(r: &LoginResult) {
        assert_eq!(r.session_type, SessionType::Normal);
        assert_eq!(r.initiator_name, INITIATOR);
        assert_eq!(r.target_name.as_deref(), Some(TARGET));
        assert_eq!(r.isid, ISID);
        let s = &r.session;
        assert!(!s.initial_r2t);
        assert!(s.immediate_data);
        assert_eq!(s.max_burst_length, 262144);
        assert_eq!(s.first_burst_length, 65536);
        assert_eq!(s.default_time2wait, 2);
        assert_eq!(s.default_time2retain, 0);
        assert_eq!(s.target_portal_group_tag, Some(1));
        assert_eq!(r.conn.max_recv_dsl_initiator, 262144);
        assert_eq!(r.conn.max_recv_dsl_target, 262144);
        assert!(!r.conn.header_digest && !r.conn.data_digest);
    }

    #[test]
    fn open_iscsi_login() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t1 = text(&[
            ("InitiatorName", INITIATOR),
            ("InitiatorAlias", "host1"),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
            ("AuthMethod", "None"),
        ]);
        let (r, o) = m.step(&pdu(0, 1, true), &t1, &cat);
        assert_eq!(o, LoginOutcome::Continue);
        assert!(r.transit && !r.cont);
        assert_eq!((r.csg, r.nsg, r.status_class), (0, 1, 0));
        let a = answers(&r);
        assert_eq!(
            a,
            vec![
                ("TargetPortalGroupTag".into(), "1".into()),
                ("AuthMethod".into(), "None".into())
            ]
        );
        assert_eq!(m.stage(), Stage::Operational);

        let (r, o) = m.step(&pdu(1, 3, true), &text(OPEN_ISCSI_OP), &cat);
        assert!(r.transit);
        assert_eq!((r.csg, r.nsg, r.status_class), (1, 3, 0));
        let a = answers(&r);
        check_open_iscsi_op_answers(&a);
        assert_eq!(get(&a, "TargetPortalGroupTag"), None, "declared only once");
        let LoginOutcome::FullFeature(res) = o else {
            panic!("expected FullFeature, got {o:?}")
        };
        check_open_iscsi_result(&res);
        assert_eq!(res.initiator_alias.as_deref(), Some("host1"));
        assert!(m.is_finished());
        // After the end of login, any PDU fails.
        let r = m.step(&pdu(1, 3, true), &[], &cat);
        assert_eq!(r.1, LoginOutcome::Failed);
    }

    #[test]
    fn open_iscsi_login_with_identity_in_operational_stage() {
        // Some initiators repeat the identity keys with the operational keys.
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t1 = text(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Normal"),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ]);
        m.step(&pdu(0, 1, true), &t1, &cat);
        let mut op = vec![
            ("InitiatorName", INITIATOR),
            ("SessionType", "Normal"),
            ("TargetName", TARGET),
        ];
        op.extend_from_slice(OPEN_ISCSI_OP);
        let (r, o) = m.step(&pdu(1, 3, true), &text(&op), &cat);
        check_open_iscsi_op_answers(&answers(&r));
        let LoginOutcome::FullFeature(res) = o else {
            panic!("{o:?}")
        };
        check_open_iscsi_result(&res);
    }

    const LIBISCSI_OP: &[(&str, &str)] = &[
        ("HeaderDigest", "None,CRC32C"),
        ("DataDigest", "None"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("MaxConnections", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
    ];

    #[test]
    fn libiscsi_login_straight_to_full_feature() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let mut keys = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
        ];
        keys.extend_from_slice(LIBISCSI_OP);
        let (r, o) = m.step(&pdu(1, 3, true), &text(&keys), &cat);
        assert!(r.transit);
        assert_eq!((r.csg, r.nsg), (1, 3));
        let a = answers(&r);
        assert_eq!(get(&a, "TargetPortalGroupTag"), Some("1"));
        assert_eq!(get(&a, "HeaderDigest"), Some("None"));
        assert_eq!(get(&a, "MaxRecvDataSegmentLength"), Some("262144"));
        assert_eq!(get(&a, "FirstBurstLength"), Some("65536"));
        let LoginOutcome::FullFeature(res) = o else {
            panic!("{o:?}")
        };
        assert_eq!(res.session.first_burst_length, 65536);
        assert!(!res.session.initial_r2t);
    }

    #[test]
    fn security_stage_straight_to_full_feature_declares_mrdsl() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ]);
        let (r, o) = m.step(&pdu(0, 3, true), &t, &cat);
        assert_eq!((r.transit, r.csg, r.nsg), (true, 0, 3));
        let a = answers(&r);
        assert_eq!(get(&a, "MaxRecvDataSegmentLength"), Some("262144"));
        let LoginOutcome::FullFeature(res) = o else {
            panic!("{o:?}")
        };
        assert_eq!(res.conn.max_recv_dsl_target, 262144);
        assert_eq!(res.conn.max_recv_dsl_initiator, 8192);
        let expected = SessionParams {
            initiator_name: Some(INITIATOR.into()),
            target_name: Some(TARGET.into()),
            target_portal_group_tag: Some(1),
            ..SessionParams::default()
        };
        assert_eq!(res.session, expected);
    }

    /// Runs AuthMethod and CHAP_A; returns (CHAP_I, CHAP_C bytes).
    fn chap_start(m: &mut LoginMachine, cat: &Catalog, transit: bool) -> (u8, Vec<u8>) {
        let t1 = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None"),
        ]);
        let (r, o) = m.step(&pdu(0, 1, transit), &t1, cat);
        assert_eq!(o, LoginOutcome::Continue);
        assert!(!r.transit, "CHAP unfinished: the target must not transit");
        assert_eq!(r.csg, 0);
        let a = answers(&r);
        assert_eq!(get(&a, "AuthMethod"), Some("CHAP"));
        assert_eq!(get(&a, "TargetPortalGroupTag"), Some("1"));

        let (r, o) = m.step(&pdu(0, 1, false), &text(&[("CHAP_A", "5")]), cat);
        assert_eq!(o, LoginOutcome::Continue);
        assert!(!r.transit);
        let a = answers(&r);
        assert_eq!(get(&a, "CHAP_A"), Some("5"));
        let id: u8 = get(&a, "CHAP_I").unwrap().parse().unwrap();
        let c = decode_binary(get(&a, "CHAP_C").unwrap()).unwrap();
        assert!(c.len() >= 16);
        (id, c)
    }

    fn md5_hex(parts: &[&[u8]]) -> String {
        let mut h = Md5::new();
        for p in parts {
            h.update(p);
        }
        encode_hex(&h.finalize())
    }

    #[test]
    fn libiscsi_chap_login() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let (id, c) = chap_start(&mut m, &cat, true);
        let resp = md5_hex(&[&[id], b"alice-secret-1", &c]);
        let (r, o) = m.step(
            &pdu(0, 1, true),
            &text(&[("CHAP_N", "alice"), ("CHAP_R", &resp)]),
            &cat,
        );
        assert_eq!(o, LoginOutcome::Continue);
        assert!(r.transit);
        assert_eq!((r.csg, r.nsg), (0, 1));
        assert!(answers(&r).is_empty());
        // libiscsi repeats the identity keys in the operational stage.
        let mut op = vec![
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
        ];
        op.extend_from_slice(LIBISCSI_OP);
        let (r, o) = m.step(&pdu(1, 3, true), &text(&op), &cat);
        assert!(r.transit, "{r:?}");
        assert!(matches!(o, LoginOutcome::FullFeature(_)));
    }

    #[test]
    fn chap_with_hand_computed_response() {
        // Seeded RNG: the challenge is whatever the machine sent; the response is computed
        // here independently of chap.rs.
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let (id, c) = chap_start(&mut m, &cat, false);
        let mut input = vec![id];
        input.extend_from_slice(b"alice-secret-1");
        input.extend_from_slice(&c);
        let resp = format!("0x{}", hex::encode(Md5::digest(&input)));
        let (r, _) = m.step(
            &pdu(0, 1, true),
            &text(&[("CHAP_N", "alice"), ("CHAP_R", &resp)]),
            &cat,
        );
        assert!(r.transit && r.status_class == 0, "{r:?}");
    }

    #[test]
    fn mutual_chap_login() {
        let cat = catalog(chap_policy(true));
        let mut m = machine();
        let (id, c) = chap_start(&mut m, &cat, true);
        let resp = md5_hex(&[&[id], b"alice-secret-1", &c]);
        let my_c = [0x11u8; 16];
        let (r, _) = m.step(
            &pdu(0, 1, true),
            &text(&[
                ("CHAP_N", "alice"),
                ("CHAP_R", &resp),
                ("CHAP_I", "77"),
                ("CHAP_C", &encode_hex(&my_c)),
            ]),
            &cat,
        );
        assert!(r.transit, "{r:?}");
        let a = answers(&r);
        assert_eq!(get(&a, "CHAP_N"), Some("ringsan"));
        assert_eq!(
            get(&a, "CHAP_R"),
            Some(md5_hex(&[&[77], b"target-secret-2", &my_c]).as_str())
        );
        let (_, o) = m.step(&pdu(1, 3, true), &text(OPEN_ISCSI_OP), &cat);
        assert!(matches!(o, LoginOutcome::FullFeature(_)));
    }

    #[test]
    fn mutual_chap_refused_without_target_credentials() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let (id, c) = chap_start(&mut m, &cat, true);
        let resp = md5_hex(&[&[id], b"alice-secret-1", &c]);
        let r = m.step(
            &pdu(0, 1, true),
            &text(&[
                ("CHAP_N", "alice"),
                ("CHAP_R", &resp),
                ("CHAP_I", "1"),
                ("CHAP_C", "0x0102030405060708"),
            ]),
            &cat,
        );
        assert_status(&r, 0x0201);
    }

    #[test]
    fn bad_chap_response_fails() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let (id, c) = chap_start(&mut m, &cat, true);
        let resp = md5_hex(&[&[id], b"wrong-secret", &c]);
        let r = m.step(
            &pdu(0, 1, true),
            &text(&[("CHAP_N", "alice"), ("CHAP_R", &resp)]),
            &cat,
        );
        assert_status(&r, 0x0201);
        // Failed is final.
        let r = m.step(&pdu(0, 1, false), &[], &cat);
        assert_status(&r, 0x0201);
        assert_eq!(m.failure(), Some(LoginStatus::AuthenticationFailure));
    }

    #[test]
    fn chap_required_but_only_none_offered() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ]);
        assert_status(&m.step(&pdu(0, 1, true), &t, &cat), 0x0201);
    }

    #[test]
    fn chap_required_but_security_stage_skipped() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let mut keys = vec![("InitiatorName", INITIATOR), ("TargetName", TARGET)];
        keys.extend_from_slice(LIBISCSI_OP);
        assert_status(&m.step(&pdu(1, 3, true), &text(&keys), &cat), 0x0201);
        // Or transit requested without any AuthMethod.
        let mut m = machine();
        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
        assert_status(&m.step(&pdu(0, 1, true), &t, &cat), 0x0201);
    }

    #[test]
    fn chap_keys_out_of_sequence() {
        let cat = catalog(chap_policy(false));
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "CHAP"),
            ("CHAP_N", "alice"),
            ("CHAP_R", "0x00"),
        ]);
        assert_status(&m.step(&pdu(0, 1, false), &t, &cat), 0x0201);
        // CHAP keys when no authentication was negotiated.
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("CHAP_A", "5"),
        ]);
        assert_status(&m.step(&pdu(0, 1, false), &t, &cat), 0x0200);
    }

    #[test]
    fn auth_method_without_acceptable_value_is_rejected() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "KRB5,SRP"),
        ]);
        let (r, o) = m.step(&pdu(0, 1, false), &t, &cat);
        assert_eq!(o, LoginOutcome::Continue);
        assert_eq!(get(&answers(&r), "AuthMethod"), Some("Reject"));
        // AuthMethod again: negotiated twice.
        let r = m.step(&pdu(0, 1, false), &text(&[("AuthMethod", "None")]), &cat);
        assert_status(&r, 0x0200);
    }

    #[test]
    fn discovery_session() {
        let mut cat = catalog(AuthPolicy::None);
        cat.discovery = AuthPolicy::None;
        let mut m = machine();
        let t1 = text(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ]);
        let (r, _) = m.step(&pdu(0, 1, true), &t1, &cat);
        let a = answers(&r);
        assert_eq!(a, vec![("AuthMethod".to_string(), "None".to_string())]);
        let (r, o) = m.step(&pdu(1, 3, true), &text(OPEN_ISCSI_OP), &cat);
        let a = answers(&r);
        assert_eq!(get(&a, "MaxBurstLength"), Some("Irrelevant"));
        assert_eq!(get(&a, "ImmediateData"), Some("Irrelevant"));
        assert_eq!(get(&a, "HeaderDigest"), Some("None"));
        assert_eq!(get(&a, "MaxRecvDataSegmentLength"), Some("262144"));
        let LoginOutcome::FullFeature(res) = o else {
            panic!("{o:?}")
        };
        assert_eq!(res.session_type, SessionType::Discovery);
        assert_eq!(res.target_name, None);
        assert_eq!(res.session.max_burst_length, 262144);
    }

    #[test]
    fn discovery_with_chap() {
        let mut cat = catalog(AuthPolicy::None);
        cat.discovery = chap_policy(false);
        let mut m = machine();
        let t1 = text(&[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ]);
        assert_status(&m.step(&pdu(0, 1, true), &t1, &cat), 0x0201);
    }

    #[test]
    fn failure_statuses() {
        let cat = catalog(AuthPolicy::None);
        let ok = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);

        let mut p = pdu(0, 1, true);
        p.version_min = 1;
        p.version_max = 2;
        assert_status(&machine().step(&p, &ok, &cat), 0x0205);

        let t = text(&[("TargetName", TARGET)]);
        assert_status(&machine().step(&pdu(0, 1, true), &t, &cat), 0x0207);
        let t = text(&[("InitiatorName", INITIATOR), ("SessionType", "Normal")]);
        assert_status(&machine().step(&pdu(0, 1, true), &t, &cat), 0x0207);

        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", "iqn.nope")]);
        assert_status(&machine().step(&pdu(0, 1, true), &t, &cat), 0x0203);

        let mut denied = catalog(AuthPolicy::None);
        denied.denied.push(INITIATOR.into());
        assert_status(&machine().step(&pdu(0, 1, true), &ok, &denied), 0x0202);

        let t = text(&[("InitiatorName", INITIATOR), ("SessionType", "Bogus")]);
        assert_status(&machine().step(&pdu(0, 1, true), &t, &cat), 0x0209);

        // Invalid stages.
        assert_status(&machine().step(&pdu(2, 3, true), &ok, &cat), 0x0200);
        assert_status(&machine().step(&pdu(3, 3, true), &ok, &cat), 0x0200);
        assert_status(&machine().step(&pdu(1, 1, true), &ok, &cat), 0x0200);
        assert_status(&machine().step(&pdu(1, 0, true), &ok, &cat), 0x0200);
        assert_status(&machine().step(&pdu(0, 2, true), &ok, &cat), 0x0200);
        let mut p = pdu(0, 1, true);
        p.cont = true;
        assert_status(&machine().step(&p, &ok, &cat), 0x0200);

        // Malformed text, duplicate key.
        assert_status(
            &machine().step(&pdu(0, 1, true), b"InitiatorName\0", &cat),
            0x0200,
        );
        let mut dup = ok.clone();
        dup.extend_from_slice(b"InitiatorName=iqn.other\0");
        assert_status(&machine().step(&pdu(0, 1, true), &dup, &cat), 0x0200);
    }

    #[test]
    fn header_fields_must_not_change() {
        let cat = catalog(AuthPolicy::None);
        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
        for change in 0..4 {
            let mut m = machine();
            let (r, _) = m.step(&pdu(0, 1, false), &t, &cat);
            assert_eq!(r.status_class, 0);
            let mut p = pdu(0, 1, false);
            match change {
                0 => p.isid[5] ^= 1,
                1 => p.tsih = 7,
                2 => p.cid = 9,
                _ => p.version_max = 1,
            }
            assert_status(&m.step(&p, &[], &cat), 0x0200);
        }
        // The ITT, CmdSN and ExpStatSN may change.
        let mut m = machine();
        m.step(&pdu(0, 1, false), &t, &cat);
        let mut p = pdu(0, 1, true);
        p.itt = 99;
        p.exp_statsn = 5;
        let (r, _) = m.step(&p, &[], &cat);
        assert!(r.transit && r.status_class == 0);
    }

    #[test]
    fn stage_must_follow_the_target() {
        let cat = catalog(AuthPolicy::None);
        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
        let mut m = machine();
        let (r, _) = m.step(&pdu(0, 1, false), &t, &cat);
        assert!(!r.transit);
        // The target did not transit: CSG=1 is wrong.
        assert_status(&m.step(&pdu(1, 3, true), &[], &cat), 0x0200);
        // Going back after a transit.
        let mut m = machine();
        m.step(&pdu(0, 1, true), &t, &cat);
        assert_status(&m.step(&pdu(0, 1, true), &[], &cat), 0x0200);
    }

    #[test]
    fn renegotiation_across_pdus_fails() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
        m.step(&pdu(1, 3, false), &t, &cat);
        let (r, _) = m.step(
            &pdu(1, 3, false),
            &text(&[("MaxBurstLength", "8192")]),
            &cat,
        );
        assert_eq!(r.status_class, 0);
        let r = m.step(&pdu(1, 3, true), &text(&[("MaxBurstLength", "8192")]), &cat);
        assert_status(&r, 0x0200);
        // A changed identity.
        let mut m = machine();
        m.step(&pdu(1, 3, false), &t, &cat);
        let r = m.step(
            &pdu(1, 3, true),
            &text(&[("TargetName", "iqn.other")]),
            &cat,
        );
        assert_status(&r, 0x0200);
    }

    #[test]
    fn operational_answers_are_sent_once_and_mrdsl_declared_once() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("HeaderDigest", "None"),
        ]);
        let (r, _) = m.step(&pdu(1, 3, false), &t, &cat);
        let a = answers(&r);
        assert_eq!(get(&a, "MaxRecvDataSegmentLength"), Some("262144"));
        assert_eq!(get(&a, "HeaderDigest"), Some("None"));
        let (r, o) = m.step(&pdu(1, 3, true), &text(&[("X-com.example.foo", "1")]), &cat);
        let a = answers(&r);
        assert_eq!(
            a,
            vec![("X-com.example.foo".into(), "NotUnderstood".into())]
        );
        assert!(matches!(o, LoginOutcome::FullFeature(_)));
    }

    #[test]
    fn c_bit_accumulation() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let full = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
            ("AuthMethod", "None"),
        ]);
        let (a, rest) = full.split_at(7);
        let (b, c) = rest.split_at(20);
        let mut p = pdu(0, 1, false);
        p.cont = true;
        for piece in [a, b] {
            let (r, o) = m.step(&p, piece, &cat);
            assert_eq!(o, LoginOutcome::Continue);
            assert_eq!(r, LoginReply::default(), "empty, C=0, T=0 for every piece");
        }
        let (r, o) = m.step(&pdu(0, 1, true), c, &cat);
        assert_eq!(o, LoginOutcome::Continue);
        assert!(r.transit);
        assert_eq!(get(&answers(&r), "AuthMethod"), Some("None"));
    }

    #[test]
    fn text_over_the_limit_fails() {
        let cat = catalog(AuthPolicy::None);
        let limits = TargetLimits {
            max_login_text: 8192,
            ..TargetLimits::default()
        };
        let mut m = LoginMachine::with_rng(limits, Box::new(StdRng::seed_from_u64(1)));
        let mut p = pdu(0, 1, false);
        p.cont = true;
        let chunk = vec![b'a'; 4096];
        assert_eq!(m.step(&p, &chunk, &cat).1, LoginOutcome::Continue);
        assert_eq!(m.step(&p, &chunk, &cat).1, LoginOutcome::Continue);
        assert_status(&m.step(&p, b"x", &cat), 0x0200);
    }

    #[test]
    fn long_response_is_split_with_the_c_bit() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let mut keys = vec![
            ("InitiatorName".to_string(), INITIATOR.to_string()),
            ("TargetName".to_string(), TARGET.to_string()),
            ("MaxRecvDataSegmentLength".to_string(), "512".to_string()),
        ];
        for i in 0..100 {
            keys.push((format!("X-com.example.key-number-{i:03}"), "v".into()));
        }
        let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (mut r, mut o) = m.step(&pdu(1, 3, true), &text(&refs), &cat);
        let mut all = Vec::new();
        let mut pieces = 0;
        while r.cont {
            assert!(!r.transit);
            assert!(r.text.len() <= 512);
            assert_eq!(o, LoginOutcome::Continue);
            all.extend_from_slice(&r.text);
            pieces += 1;
            (r, o) = m.step(&pdu(1, 3, true), &[], &cat);
        }
        all.extend_from_slice(&r.text);
        assert!(pieces >= 5);
        assert!(r.transit);
        assert_eq!((r.csg, r.nsg), (1, 3));
        assert!(matches!(o, LoginOutcome::FullFeature(_)));
        let a = text::parse(&all).unwrap();
        assert_eq!(
            a.iter().filter(|kv| kv.value == "NotUnderstood").count(),
            100
        );
    }

    #[test]
    fn text_during_a_split_response_fails() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let mut keys = vec![
            ("InitiatorName".to_string(), INITIATOR.to_string()),
            ("TargetName".to_string(), TARGET.to_string()),
            ("MaxRecvDataSegmentLength".to_string(), "512".to_string()),
        ];
        for i in 0..50 {
            keys.push((format!("X-k{i:03}"), "v".into()));
        }
        let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (r, _) = m.step(&pdu(1, 3, true), &text(&refs), &cat);
        assert!(r.cont);
        assert_status(
            &m.step(&pdu(1, 3, false), &text(&[("A", "b")]), &cat),
            0x0200,
        );
    }

    #[test]
    fn non_leading_connection() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let mut p = pdu(1, 3, true);
        p.tsih = 0x1234;
        p.cid = 1;
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("MaxConnections", "2"),
            ("HeaderDigest", "CRC32C"),
        ]);
        let (r, o) = m.step(&p, &t, &cat);
        let a = answers(&r);
        assert_eq!(get(&a, "MaxConnections"), Some("Irrelevant"));
        assert_eq!(get(&a, "HeaderDigest"), Some("CRC32C"));
        assert_eq!(get(&a, "TargetPortalGroupTag"), Some("1"));
        let LoginOutcome::FullFeature(res) = o else {
            panic!("{o:?}")
        };
        assert_eq!((res.tsih, res.cid), (0x1234, 1));
        assert!(res.conn.header_digest);
    }

    #[test]
    fn target_alias_is_declared() {
        let mut cat = catalog(AuthPolicy::None);
        if let Some(info) = cat.targets.get_mut(TARGET) {
            info.alias = Some("disk one".into());
        }
        let mut m = machine();
        let t = text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]);
        let (r, _) = m.step(&pdu(0, 1, true), &t, &cat);
        assert_eq!(get(&answers(&r), "TargetAlias"), Some("disk one"));
    }

    #[test]
    fn too_many_pdus_fail() {
        let cat = catalog(AuthPolicy::None);
        let mut m = machine();
        let mut p = pdu(0, 1, false);
        p.cont = true;
        let mut last = None;
        for _ in 0..=MAX_LOGIN_PDUS {
            last = Some(m.step(&p, &[], &cat));
        }
        assert_status(&last.unwrap(), 0x0200);
    }

    #[test]
    fn security_keys_after_the_security_stage() {
        let cat = catalog(AuthPolicy::None);
        // Without a security stage they are Irrelevant...
        let mut m = machine();
        let t = text(&[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ]);
        let (r, _) = m.step(&pdu(1, 3, true), &t, &cat);
        assert_eq!(get(&answers(&r), "AuthMethod"), Some("Irrelevant"));
        // ...after one, sending them again is a renegotiation.
        let mut m = machine();
        m.step(&pdu(0, 1, true), &t, &cat);
        let r = m.step(&pdu(1, 3, true), &text(&[("AuthMethod", "None")]), &cat);
        assert_status(&r, 0x0200);
    }

    #[test]
    fn status_codes() {
        assert_eq!(LoginStatus::InitiatorError.code(), 0x0200);
        assert_eq!(LoginStatus::AuthenticationFailure.code(), 0x0201);
        assert_eq!(LoginStatus::AuthorizationFailure.code(), 0x0202);
        assert_eq!(LoginStatus::NotFound.code(), 0x0203);
        assert_eq!(LoginStatus::UnsupportedVersion.code(), 0x0205);
        assert_eq!(LoginStatus::MissingParameter.code(), 0x0207);
        assert_eq!(LoginStatus::SessionTypeNotSupported.code(), 0x0209);
        assert_eq!(LoginStatus::OutOfResources.code(), 0x0302);
    }
}
