//! Driving a connection through login (RFC 7143 §6.3): Login Request PDUs go to the pure
//! [`LoginMachine`]; this file adds what needs the daemon: TSIH assignment, session
//! reinstatement (same InitiatorName, ISID and target with TSIH 0 ends the old session, keeps the
//! nexus and queues I_T NEXUS LOSS OCCURRED), and the first sequence numbers of the session.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringsan_engine::net::TcpStream;
use tracing::{info, warn};

use crate::iscsi::framing::{frame, Digests, FramingError, Payload, Reader};
use crate::iscsi::login::{
    LoginMachine, LoginOutcome, LoginPdu, LoginReply, LoginResult, LOGIN_SEGMENT_LIMIT,
};
use crate::iscsi::params::SessionType;
use crate::iscsi::pdu::{login_status, LoginRequest, LoginResponse, Opcode};
use crate::iscsi::registry::{end_session, SessionDetails};
use crate::iscsi::server::Server;
use crate::iscsi::session::{Session, MAX_QUEUE_DEPTH};
use crate::scsi::nexus::Nexus;

/// How long a reinstating login waits for the old session's tasks to end.
const REINSTATEMENT_WAIT: Duration = Duration::from_secs(30);

/// Why a login did not reach full-feature phase.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The connection failed.
    #[error("{0}")]
    Framing(#[from] FramingError),
    /// The initiator sent something other than a Login Request.
    #[error("expected a Login Request, got opcode {0:#04x}")]
    NotLogin(u8),
    /// The login was refused (the reply said why).
    #[error("login refused with status {0:#06x}")]
    Refused(u16),
}

/// The CmdSN window a new session starts with: what the free buffers allow, at most the queue
/// depth, at least one.
fn initial_window() -> u32 {
    let free = ringsan_engine::reactor::buffer_pool().free_count() as u32;
    free.clamp(1, MAX_QUEUE_DEPTH)
}

struct Wire<'a> {
    stream: &'a TcpStream,
    stat_sn: u32,
}

impl Wire<'_> {
    async fn reply(&mut self, req: &LoginRequest, reply: &LoginReply, tsih: u16) {
        let pdu = LoginResponse {
            transit: reply.transit,
            cont: reply.cont,
            csg: reply.csg,
            nsg: reply.nsg,
            version_max: 0,
            version_active: 0,
            data_len: reply.text.len() as u32,
            isid: req.isid,
            tsih,
            itt: req.itt,
            statsn: self.stat_sn,
            exp_cmdsn: req.cmdsn,
            max_cmdsn: req.cmdsn.wrapping_add(initial_window() - 1),
            status_class: reply.status_class,
            status_detail: reply.status_detail,
        };
        self.stat_sn = self.stat_sn.wrapping_add(1);
        let payload = Payload::from_vec(reply.text.clone());
        let (result, _) = ringsan_engine::net::Transport::send_all(
            self.stream,
            frame(&pdu.encode(), payload, Digests::default()),
        )
        .await;
        if let Err(e) = result {
            warn!(error = %e, "sending a login response failed");
        }
    }

    async fn refuse(&mut self, req: &LoginRequest, status: u16) -> LoginError {
        let reply = LoginReply {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: 0,
            status_class: (status >> 8) as u8,
            status_detail: status as u8,
            text: Vec::new(),
        };
        self.reply(req, &reply, 0).await;
        LoginError::Refused(status)
    }
}

/// What `session list` shows of a new session.
fn details(stream: &TcpStream, r: &LoginResult) -> SessionDetails {
    let addr =
        |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let yn = |b: bool| if b { "Yes" } else { "No" };
    let digest = |b: bool| if b { "CRC32C" } else { "None" };
    SessionDetails {
        portal: addr(stream.local_addr()),
        peer: addr(stream.peer_addr()),
        parameters: vec![
            format!("HeaderDigest={}", digest(r.conn.header_digest)),
            format!("DataDigest={}", digest(r.conn.data_digest)),
            format!("MaxRecvDataSegmentLength={}", r.conn.max_recv_dsl_initiator),
            format!("MaxBurstLength={}", r.session.max_burst_length),
            format!("FirstBurstLength={}", r.session.first_burst_length),
            format!("ImmediateData={}", yn(r.session.immediate_data)),
            format!("InitialR2T={}", yn(r.session.initial_r2t)),
            format!("MaxOutstandingR2T={}", r.session.max_outstanding_r2t),
            format!("ErrorRecoveryLevel={}", r.session.error_recovery_level),
        ],
    }
}

/// Runs the login phase on `stream`; returns the session ready for full-feature phase.
pub async fn run(
    server: &Arc<Server>,
    stream: &Rc<TcpStream>,
    reader: &mut Reader,
) -> Result<Rc<Session>, LoginError> {
    let mut machine = LoginMachine::new(server.limits);
    let mut wire = Wire {
        stream,
        stat_sn: rand::random::<u32>() & 0x00ff_ffff,
    };
    loop {
        let header = reader.header(stream).await?;
        if header.bhs.opcode() != Ok(Opcode::LoginRequest) {
            return Err(LoginError::NotLogin(header.bhs.opcode_raw()));
        }
        let req = match LoginRequest::decode(&header.bhs) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "malformed Login Request");
                return Err(LoginError::NotLogin(header.bhs.opcode_raw()));
            }
        };
        let (text, _) = reader
            .data_vec(stream, header.bhs.data_segment_len(), LOGIN_SEGMENT_LIMIT)
            .await?;
        if server.is_shutting_down() {
            return Err(wire.refuse(&req, login_status::SERVICE_UNAVAILABLE).await);
        }
        let pdu = LoginPdu {
            transit: req.transit,
            cont: req.cont,
            csg: req.csg,
            nsg: req.nsg,
            version_max: req.version_max,
            version_min: req.version_min,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            cid: req.cid,
            cmdsn: req.cmdsn,
            exp_statsn: req.exp_statsn,
        };
        let (reply, outcome) = machine.step(&pdu, &text, &server.targets);
        match outcome {
            LoginOutcome::Continue => wire.reply(&req, &reply, req.tsih).await,
            LoginOutcome::Failed => {
                wire.reply(&req, &reply, req.tsih).await;
                return Err(LoginError::Refused(
                    ((reply.status_class as u16) << 8) | reply.status_detail as u16,
                ));
            }
            LoginOutcome::FullFeature(result) => {
                return enter_full_feature(server, stream, &mut wire, &req, &reply, result).await
            }
        }
    }
}

async fn enter_full_feature(
    server: &Arc<Server>,
    stream: &Rc<TcpStream>,
    wire: &mut Wire<'_>,
    req: &LoginRequest,
    reply: &LoginReply,
    result: LoginResult,
) -> Result<Rc<Session>, LoginError> {
    let pool = ringsan_engine::reactor::buffer_pool();
    if result.session_type == SessionType::Discovery {
        let tsih = 0x8000 | (rand::random::<u16>() & 0x7fff);
        wire.reply(req, reply, tsih).await;
        info!(initiator = %result.initiator_name, "discovery session");
        return Ok(Rc::new(Session::new(
            server.clone(),
            None,
            None,
            None,
            result.initiator_name,
            result.session,
            result.conn,
            req.cmdsn,
            wire.stat_sn,
            pool,
        )));
    }
    let Some(target) = result
        .target_name
        .as_deref()
        .and_then(|n| server.targets.get(n))
    else {
        return Err(wire.refuse(req, login_status::NOT_FOUND).await);
    };
    if result.tsih != 0 {
        // MaxConnections=1: a connection cannot join an existing session.
        let status = if server.registry.by_tsih(result.tsih).is_some() {
            login_status::TOO_MANY_CONNECTIONS
        } else {
            login_status::SESSION_DOES_NOT_EXIST
        };
        return Err(wire.refuse(req, status).await);
    }
    let nexus = Nexus::new(
        &result.initiator_name,
        result.isid,
        &target.iqn,
        target.tpgt,
    );
    if let Some(old) = server
        .registry
        .find(&result.initiator_name, result.isid, &target.iqn)
    {
        info!(
            tsih = old.tsih,
            "session reinstatement: ending the old session"
        );
        if !end_session(&old, REINSTATEMENT_WAIT).await {
            return Err(wire.refuse(req, login_status::SERVICE_UNAVAILABLE).await);
        }
        for lu in target.luns() {
            lu.nexus_lost(&nexus);
        }
    }
    let Some(entry) = server.registry.register(
        &result.initiator_name,
        result.isid,
        &target.iqn,
        ringsan_engine::reactor::current_handle(),
        stream.shutdown_handle(),
        details(stream, &result),
    ) else {
        return Err(wire.refuse(req, login_status::OUT_OF_RESOURCES).await);
    };
    wire.reply(req, reply, entry.tsih).await;
    info!(
        initiator = %result.initiator_name,
        target = %target.iqn,
        tsih = entry.tsih,
        header_digest = result.conn.header_digest,
        data_digest = result.conn.data_digest,
        immediate_data = result.session.immediate_data,
        initial_r2t = result.session.initial_r2t,
        max_burst = result.session.max_burst_length,
        first_burst = result.session.first_burst_length,
        max_recv_dsl = result.conn.max_recv_dsl_initiator,
        "session logged in"
    );
    Ok(Rc::new(Session::new(
        server.clone(),
        Some(target),
        Some(entry),
        Some(nexus),
        result.initiator_name,
        result.session,
        result.conn,
        req.cmdsn,
        wire.stat_sn,
        pool,
    )))
}
