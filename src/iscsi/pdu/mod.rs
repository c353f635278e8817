//! The iSCSI PDU codec (RFC 7143 §11): one plain struct per PDU with `decode(&Bhs)` and
//! `encode() -> Bhs`, the [`Request`] and [`Response`] enums that dispatch on the opcode, the
//! protocol's code values, and the helpers for what surrounds a header (padding, AHS, sense
//! segment, LUN field).
//!
//! Decoding only looks at the 48-byte header; the connection reads the AHS
//! ([`Bhs::total_ahs_len_bytes`]), the header digest, the data segment
//! ([`Bhs::data_segment_len`] plus [`pad_len`]) and the data digest itself. Decoding never
//! panics: reserved bits are ignored, reserved code values and contradictory flags are
//! [`PduError`]s. Encoding is infallible and writes reserved fields as zero.
//!
//! Files: `bhs` (header, opcodes, errors), `consts` (code values), `segments` (padding, AHS,
//! sense segment, LUN), and one per PDU family: `scsi` (Command, Response, Data-Out/In, R2T),
//! `login`, `text`, `task_mgmt`, `nop`, `logout`, `snack`, `notify` (Reject, Async Message).

mod bhs;
mod consts;
mod login;
mod logout;
mod nop;
mod notify;
mod scsi;
mod segments;
mod snack;
mod task_mgmt;
mod text;

pub use bhs::{Bhs, Opcode, PduError, BHS_LEN, ISCSI_VERSION, RESERVED_TAG};
pub use consts::{
    async_event, login_stage, login_status, logout_reason, logout_response, reject_reason,
    scsi_response, snack_type, task_attr, tmf, tmf_response,
};
pub use login::{LoginRequest, LoginResponse};
pub use logout::{LogoutRequest, LogoutResponse};
pub use nop::{NopIn, NopOut};
pub use notify::{AsyncMessage, Reject};
pub use scsi::{DataIn, DataOut, R2t, ScsiCommand, ScsiResponse};
pub use segments::{
    decode_lun, encode_ahs, encode_lun, pad_len, parse_ahs, parse_sense_segment, sense_segment,
    AhsInfo, AHS_BIDI_READ_LEN, AHS_EXTENDED_CDB, MAX_EXTENDED_CDB_LEN, MAX_FLAT_LUN,
};
pub use snack::Snack;
pub use task_mgmt::{TaskMgmtRequest, TaskMgmtResponse};
pub use text::{TextRequest, TextResponse};

/// Any PDU an initiator sends: what the target decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    ScsiCommand(ScsiCommand),
    DataOut(DataOut),
    NopOut(NopOut),
    TaskMgmt(TaskMgmtRequest),
    Login(LoginRequest),
    Text(TextRequest),
    Logout(LogoutRequest),
    Snack(Snack),
}

impl Request {
    /// Decodes an initiator PDU. A target opcode is `WrongDirection` and an undefined one
    /// `UnknownOpcode`; the target answers both with a Reject (PROTOCOL_ERROR or
    /// COMMAND_NOT_SUPPORTED).
    pub fn decode(bhs: &Bhs) -> Result<Request, PduError> {
        Ok(match bhs.opcode()? {
            Opcode::ScsiCommand => Request::ScsiCommand(ScsiCommand::decode(bhs)?),
            Opcode::DataOut => Request::DataOut(DataOut::decode(bhs)?),
            Opcode::NopOut => Request::NopOut(NopOut::decode(bhs)?),
            Opcode::TaskMgmtRequest => Request::TaskMgmt(TaskMgmtRequest::decode(bhs)?),
            Opcode::LoginRequest => Request::Login(LoginRequest::decode(bhs)?),
            Opcode::TextRequest => Request::Text(TextRequest::decode(bhs)?),
            Opcode::LogoutRequest => Request::Logout(LogoutRequest::decode(bhs)?),
            Opcode::Snack => Request::Snack(Snack::decode(bhs)?),
            target_side => return Err(PduError::WrongDirection(target_side)),
        })
    }

    pub fn encode(&self) -> Bhs {
        match self {
            Request::ScsiCommand(p) => p.encode(),
            Request::DataOut(p) => p.encode(),
            Request::NopOut(p) => p.encode(),
            Request::TaskMgmt(p) => p.encode(),
            Request::Login(p) => p.encode(),
            Request::Text(p) => p.encode(),
            Request::Logout(p) => p.encode(),
            Request::Snack(p) => p.encode(),
        }
    }

    pub fn opcode(&self) -> Opcode {
        match self {
            Request::ScsiCommand(_) => Opcode::ScsiCommand,
            Request::DataOut(_) => Opcode::DataOut,
            Request::NopOut(_) => Opcode::NopOut,
            Request::TaskMgmt(_) => Opcode::TaskMgmtRequest,
            Request::Login(_) => Opcode::LoginRequest,
            Request::Text(_) => Opcode::TextRequest,
            Request::Logout(_) => Opcode::LogoutRequest,
            Request::Snack(_) => Opcode::Snack,
        }
    }

    /// The Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        match self {
            Request::ScsiCommand(p) => p.itt,
            Request::DataOut(p) => p.itt,
            Request::NopOut(p) => p.itt,
            Request::TaskMgmt(p) => p.itt,
            Request::Login(p) => p.itt,
            Request::Text(p) => p.itt,
            Request::Logout(p) => p.itt,
            Request::Snack(p) => p.itt,
        }
    }
}

/// Any PDU a target sends: what an initiator (our test tools) decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    ScsiResponse(ScsiResponse),
    DataIn(DataIn),
    R2t(R2t),
    NopIn(NopIn),
    TaskMgmt(TaskMgmtResponse),
    Login(LoginResponse),
    Text(TextResponse),
    Logout(LogoutResponse),
    Reject(Reject),
    Async(AsyncMessage),
}

impl Response {
    /// Decodes a target PDU; an initiator opcode is `WrongDirection`.
    pub fn decode(bhs: &Bhs) -> Result<Response, PduError> {
        Ok(match bhs.opcode()? {
            Opcode::ScsiResponse => Response::ScsiResponse(ScsiResponse::decode(bhs)?),
            Opcode::DataIn => Response::DataIn(DataIn::decode(bhs)?),
            Opcode::R2t => Response::R2t(R2t::decode(bhs)?),
            Opcode::NopIn => Response::NopIn(NopIn::decode(bhs)?),
            Opcode::TaskMgmtResponse => Response::TaskMgmt(TaskMgmtResponse::decode(bhs)?),
            Opcode::LoginResponse => Response::Login(LoginResponse::decode(bhs)?),
            Opcode::TextResponse => Response::Text(TextResponse::decode(bhs)?),
            Opcode::LogoutResponse => Response::Logout(LogoutResponse::decode(bhs)?),
            Opcode::Reject => Response::Reject(Reject::decode(bhs)?),
            Opcode::AsyncMessage => Response::Async(AsyncMessage::decode(bhs)?),
            initiator_side => return Err(PduError::WrongDirection(initiator_side)),
        })
    }

    pub fn encode(&self) -> Bhs {
        match self {
            Response::ScsiResponse(p) => p.encode(),
            Response::DataIn(p) => p.encode(),
            Response::R2t(p) => p.encode(),
            Response::NopIn(p) => p.encode(),
            Response::TaskMgmt(p) => p.encode(),
            Response::Login(p) => p.encode(),
            Response::Text(p) => p.encode(),
            Response::Logout(p) => p.encode(),
            Response::Reject(p) => p.encode(),
            Response::Async(p) => p.encode(),
        }
    }

    pub fn opcode(&self) -> Opcode {
        match self {
            Response::ScsiResponse(_) => Opcode::ScsiResponse,
            Response::DataIn(_) => Opcode::DataIn,
            Response::R2t(_) => Opcode::R2t,
            Response::NopIn(_) => Opcode::NopIn,
            Response::TaskMgmt(_) => Opcode::TaskMgmtResponse,
            Response::Login(_) => Opcode::LoginResponse,
            Response::Text(_) => Opcode::TextResponse,
            Response::Logout(_) => Opcode::LogoutResponse,
            Response::Reject(_) => Opcode::Reject,
            Response::Async(_) => Opcode::AsyncMessage,
        }
    }

    /// The Initiator Task Tag (0xffffffff for Reject and Async Message).
    pub fn itt(&self) -> u32 {
        match self {
            Response::ScsiResponse(p) => p.itt,
            Response::DataIn(p) => p.itt,
            Response::R2t(p) => p.itt,
            Response::NopIn(p) => p.itt,
            Response::TaskMgmt(p) => p.itt,
            Response::Login(p) => p.itt,
            Response::Text(p) => p.itt,
            Response::Logout(p) => p.itt,
            Response::Reject(_) | Response::Async(_) => RESERVED_TAG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request of every type, every field non-default where the type allows it.
    fn every_request() -> Vec<Request> {
        let cdb = [0x2a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
        vec![
            Request::ScsiCommand(ScsiCommand {
                immediate: true,
                final_flag: true,
                read: false,
                write: true,
                attr: task_attr::SIMPLE,
                ahs_len_words: 2,
                data_len: 4096,
                lun: encode_lun(2),
                itt: 0x0102_0304,
                expected_data_len: 8 * 512,
                cmdsn: 0xffff_fffe,
                exp_statsn: 0x8000_0000,
                cdb,
            }),
            Request::DataOut(DataOut {
                final_flag: true,
                data_len: 0xff_ffff,
                lun: encode_lun(300),
                itt: 1,
                ttt: 2,
                exp_statsn: 3,
                data_sn: 4,
                buffer_offset: 5,
            }),
            Request::NopOut(NopOut {
                immediate: true,
                data_len: 3,
                lun: 7,
                itt: 8,
                ttt: 9,
                cmdsn: 10,
                exp_statsn: 11,
            }),
            Request::TaskMgmt(TaskMgmtRequest {
                immediate: true,
                function: tmf::LOGICAL_UNIT_RESET,
                lun: encode_lun(1),
                itt: 12,
                ref_task_tag: RESERVED_TAG,
                cmdsn: 13,
                exp_statsn: 14,
                ref_cmdsn: 15,
                exp_data_sn: 16,
            }),
            Request::Login(LoginRequest {
                transit: true,
                cont: false,
                csg: login_stage::SECURITY,
                nsg: login_stage::OPERATIONAL,
                version_max: 0,
                version_min: 0,
                data_len: 300,
                isid: [0x80, 1, 2, 3, 4, 5],
                tsih: 0x1234,
                itt: 17,
                cid: 18,
                cmdsn: 19,
                exp_statsn: 20,
            }),
            Request::Text(TextRequest {
                immediate: false,
                final_flag: false,
                cont: true,
                data_len: 8192,
                lun: 21,
                itt: 22,
                ttt: 23,
                cmdsn: 24,
                exp_statsn: 25,
            }),
            Request::Logout(LogoutRequest {
                immediate: true,
                reason: logout_reason::REMOVE_CONNECTION_FOR_RECOVERY,
                data_len: 0,
                itt: 26,
                cid: 27,
                cmdsn: 28,
                exp_statsn: 29,
            }),
            Request::Snack(Snack {
                snack_type: snack_type::R_DATA,
                lun: 30,
                itt: 31,
                ttt: 32,
                exp_statsn: 33,
                beg_run: 34,
                run_length: 35,
            }),
        ]
    }

    /// One response of every type, every field non-default where the type allows it.
    fn every_response() -> Vec<Response> {
        vec![
            Response::ScsiResponse(ScsiResponse {
                bidi_overflow: false,
                bidi_underflow: true,
                overflow: true,
                underflow: false,
                response: scsi_response::COMMAND_COMPLETED,
                status: 0x02,
                data_len: 20,
                itt: 1,
                snack_tag: 2,
                statsn: 3,
                exp_cmdsn: 4,
                max_cmdsn: 5,
                exp_data_sn: 6,
                bidi_read_residual: 7,
                residual_count: 8,
            }),
            Response::DataIn(DataIn {
                final_flag: true,
                ack: true,
                overflow: false,
                underflow: true,
                status_present: true,
                status: 0,
                data_len: 65536,
                lun: encode_lun(9),
                itt: 10,
                ttt: 11,
                statsn: 12,
                exp_cmdsn: 13,
                max_cmdsn: 14,
                data_sn: 15,
                buffer_offset: 16,
                residual_count: 17,
            }),
            Response::R2t(R2t {
                lun: 18,
                itt: 19,
                ttt: 20,
                statsn: 21,
                exp_cmdsn: 22,
                max_cmdsn: 23,
                r2t_sn: 24,
                buffer_offset: 25,
                desired_len: 26,
            }),
            Response::NopIn(NopIn {
                data_len: 27,
                lun: 28,
                itt: RESERVED_TAG,
                ttt: 29,
                statsn: 30,
                exp_cmdsn: 31,
                max_cmdsn: 32,
            }),
            Response::TaskMgmt(TaskMgmtResponse {
                response: tmf_response::REJECTED,
                itt: 33,
                statsn: 34,
                exp_cmdsn: 35,
                max_cmdsn: 36,
            }),
            Response::Login(LoginResponse {
                transit: false,
                cont: true,
                csg: login_stage::OPERATIONAL,
                nsg: login_stage::FULL_FEATURE,
                version_max: 0,
                version_active: 0,
                data_len: 37,
                isid: [0x40, 0, 0, 0, 0, 1],
                tsih: 38,
                itt: 39,
                statsn: 40,
                exp_cmdsn: 41,
                max_cmdsn: 42,
                status_class: 0x03,
                status_detail: 0x02,
            }),
            Response::Text(TextResponse {
                final_flag: true,
                cont: false,
                data_len: 43,
                lun: 44,
                itt: 45,
                ttt: RESERVED_TAG,
                statsn: 46,
                exp_cmdsn: 47,
                max_cmdsn: 48,
            }),
            Response::Logout(LogoutResponse {
                response: logout_response::CLEANUP_FAILED,
                itt: 49,
                statsn: 50,
                exp_cmdsn: 51,
                max_cmdsn: 52,
                time2wait: 53,
                time2retain: 54,
            }),
            Response::Reject(Reject {
                reason: reject_reason::WAITING_FOR_LOGOUT,
                data_len: 48,
                statsn: 55,
                exp_cmdsn: 56,
                max_cmdsn: 57,
                data_sn_or_r2t_sn: 58,
            }),
            Response::Async(AsyncMessage {
                data_len: 18,
                lun: encode_lun(3),
                statsn: 59,
                exp_cmdsn: 60,
                max_cmdsn: 61,
                async_event: async_event::CONNECTION_DROP,
                async_vcode: 62,
                parameter1: 63,
                parameter2: 64,
                parameter3: 65,
            }),
        ]
    }

    #[test]
    fn every_request_round_trips() {
        let all = every_request();
        assert_eq!(all.len(), 8);
        for req in all {
            let bhs = req.encode();
            assert_eq!(bhs.opcode(), Ok(req.opcode()));
            assert_eq!(bhs.itt(), req.itt());
            assert!(req.opcode().is_initiator());
            assert_eq!(Request::decode(&bhs), Ok(req), "{bhs:?}");
            assert_eq!(
                Response::decode(&bhs),
                Err(PduError::WrongDirection(req.opcode()))
            );
        }
    }

    #[test]
    fn every_response_round_trips() {
        let all = every_response();
        assert_eq!(all.len(), 10);
        for rsp in all {
            let bhs = rsp.encode();
            assert_eq!(bhs.opcode(), Ok(rsp.opcode()));
            assert_eq!(bhs.itt(), rsp.itt());
            assert!(!rsp.opcode().is_initiator());
            assert_eq!(Response::decode(&bhs), Ok(rsp), "{bhs:?}");
            assert_eq!(
                Request::decode(&bhs),
                Err(PduError::WrongDirection(rsp.opcode()))
            );
        }
    }

    #[test]
    fn target_pdus_never_carry_the_immediate_bit() {
        for rsp in every_response() {
            assert!(!rsp.encode().immediate(), "{rsp:?}");
        }
    }

    #[test]
    fn reserved_bits_are_ignored_on_decode() {
        for req in every_request() {
            let mut bytes = req.encode().0;
            bytes[0] |= 0x80; // reserved bit of byte 0
            if !matches!(req, Request::Login(_)) {
                bytes[2] = 0xa5; // bytes 2..4 are reserved except in Login (versions)
                bytes[3] = 0x5a;
            }
            assert_eq!(Request::decode(&Bhs(bytes)), Ok(req));
        }
    }

    #[test]
    fn unknown_opcodes_are_reported_as_such() {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x1c; // vendor-specific initiator opcode
        assert_eq!(Request::decode(&Bhs(b)), Err(PduError::UnknownOpcode(0x1c)));
        b[0] = 0x7e;
        assert_eq!(
            Response::decode(&Bhs(b)),
            Err(PduError::UnknownOpcode(0x3e))
        );
    }
}
