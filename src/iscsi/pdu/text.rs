//! Text Request and Text Response (RFC 7143 §11.10, §11.11): the full-feature-phase
//! negotiation and SendTargets discovery PDUs.

use super::bhs::{flag, invalid, Bhs, Opcode, PduError};

/// Text Request, opcode 0x04 (RFC 7143 §11.10).
///
/// Traps: F and C exclude each other. A new negotiation starts with TTT 0xffffffff; later PDUs
/// of the same exchange echo the target's TTT. A key=value pair may be split across PDUs
/// (C bit), so text is reassembled before parsing. Non-immediate requests advance CmdSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_flag: bool,
    pub cont: bool,
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl TextRequest {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::TextRequest)?;
        let (final_flag, cont) = final_and_continue(bhs)?;
        Ok(TextRequest {
            immediate: bhs.immediate(),
            final_flag,
            cont,
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextRequest, self.immediate);
        b.set_u8(1, flag(0x80, self.final_flag) | flag(0x40, self.cont));
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b
    }
}

/// Text Response, opcode 0x24 (RFC 7143 §11.11).
///
/// Traps: F and C exclude each other. When the response is not final the target must put a
/// TTT other than 0xffffffff so the initiator can continue; with F set, TTT is 0xffffffff.
/// Every Text Response advances StatSN and carries ExpCmdSN/MaxCmdSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextResponse {
    pub final_flag: bool,
    pub cont: bool,
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

impl TextResponse {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::TextResponse)?;
        let (final_flag, cont) = final_and_continue(bhs)?;
        Ok(TextResponse {
            final_flag,
            cont,
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::TextResponse, false);
        b.set_u8(1, flag(0x80, self.final_flag) | flag(0x40, self.cont));
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b
    }
}

/// The F and C bits of a Text PDU, which may not both be set.
fn final_and_continue(bhs: &Bhs) -> Result<(bool, bool), PduError> {
    let (final_flag, cont) = (bhs.final_flag(), bhs.bit(1, 0x40));
    if final_flag && cont {
        return Err(invalid("F/C", u32::from(bhs.u8_at(1))));
    }
    Ok((final_flag, cont))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_targets_request_layout() {
        let req = TextRequest {
            immediate: true,
            final_flag: true,
            data_len: 16, // "SendTargets=All\0"
            itt: 1,
            ttt: 0xffff_ffff,
            cmdsn: 2,
            exp_statsn: 3,
            ..Default::default()
        };
        let b = req.encode().0;
        assert_eq!(b[..8], [0x44, 0x80, 0, 0, 0, 0, 0, 16]);
        assert_eq!(b[20..32], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 0, 0, 0, 3]);
        assert_eq!(TextRequest::decode(&Bhs(b)), Ok(req));
    }

    #[test]
    fn final_and_continue_exclude_each_other() {
        let mut b = TextResponse {
            cont: true,
            ttt: 9,
            ..Default::default()
        }
        .encode()
        .0;
        assert_eq!(b[..2], [0x24, 0x40]);
        assert!(TextResponse::decode(&Bhs(b)).is_ok());
        b[1] = 0xc0;
        assert!(matches!(
            TextResponse::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "F/C", .. })
        ));
        b[0] = 0x04;
        assert!(TextRequest::decode(&Bhs(b)).is_err());
    }
}
