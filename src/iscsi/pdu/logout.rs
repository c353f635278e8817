//! Logout Request and Logout Response (RFC 7143 §11.14, §11.15).

use super::bhs::{invalid, Bhs, Opcode, PduError};
use super::consts::{logout_reason, logout_response};

/// Logout Request, opcode 0x06 (RFC 7143 §11.14).
///
/// Traps: the reason code sits in byte 1 under an always-set top bit. `cid` is reserved for
/// CLOSE_SESSION and names the connection otherwise (it may be another connection of the
/// session). A Logout is usually immediate but still carries CmdSN; once it is sent the
/// initiator sends no new commands on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    pub immediate: bool,
    /// See [`super::logout_reason`]; 3..=127 are reserved.
    pub reason: u8,
    pub data_len: u32,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl LogoutRequest {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::LogoutRequest)?;
        let reason = bhs.u8_at(1) & 0x7f;
        if reason > logout_reason::REMOVE_CONNECTION_FOR_RECOVERY {
            return Err(invalid("ReasonCode", u32::from(reason)));
        }
        Ok(LogoutRequest {
            immediate: bhs.immediate(),
            reason,
            data_len: bhs.data_len_u32(),
            itt: bhs.itt(),
            cid: bhs.u16_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutRequest, self.immediate);
        b.set_u8(1, 0x80 | (self.reason & 0x7f));
        b.set_data_segment_len(self.data_len);
        b.set_u32(16, self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b
    }
}

/// Logout Response, opcode 0x26 (RFC 7143 §11.15).
///
/// Traps: it advances StatSN and carries ExpCmdSN/MaxCmdSN. Time2Wait/Time2Retain are
/// meaningful only for a connection-recovery logout (or a failed one) and are 0 otherwise.
/// After sending it the target closes the connection. No data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// See [`super::logout_response`]; 4..=255 are reserved.
    pub response: u8,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl LogoutResponse {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::LogoutResponse)?;
        bhs.expect_no_data()?;
        let response = bhs.u8_at(2);
        if response > logout_response::CLEANUP_FAILED {
            return Err(invalid("Response", u32::from(response)));
        }
        Ok(LogoutResponse {
            response,
            itt: bhs.itt(),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            time2wait: bhs.u16_at(40),
            time2retain: bhs.u16_at(42),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LogoutResponse, false);
        b.set_u8(1, 0x80);
        b.set_u8(2, self.response);
        b.set_u32(16, self.itt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u16(40, self.time2wait);
        b.set_u16(42, self.time2retain);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logout_request_layout() {
        let req = LogoutRequest {
            immediate: true,
            reason: logout_reason::CLOSE_CONNECTION,
            data_len: 0,
            itt: 0x55,
            cid: 0x0102,
            cmdsn: 10,
            exp_statsn: 11,
        };
        let b = req.encode().0;
        assert_eq!(b[..2], [0x46, 0x81]);
        assert_eq!(b[20..24], [0x01, 0x02, 0, 0]);
        assert_eq!(LogoutRequest::decode(&Bhs(b)), Ok(req));
        let mut bad = b;
        bad[1] = 0x83;
        assert!(matches!(
            LogoutRequest::decode(&Bhs(bad)),
            Err(PduError::InvalidField {
                field: "ReasonCode",
                value: 3
            })
        ));
    }

    #[test]
    fn logout_response_layout() {
        let rsp = LogoutResponse {
            response: logout_response::SUCCESS,
            itt: 0x55,
            statsn: 1,
            exp_cmdsn: 2,
            max_cmdsn: 3,
            time2wait: 2,
            time2retain: 20,
        };
        let b = rsp.encode().0;
        assert_eq!(b[..4], [0x26, 0x80, 0, 0]);
        assert_eq!(b[40..44], [0, 2, 0, 20]);
        assert_eq!(LogoutResponse::decode(&Bhs(b)), Ok(rsp));
        let mut bad = b;
        bad[2] = 4;
        assert!(LogoutResponse::decode(&Bhs(bad)).is_err());
    }
}
