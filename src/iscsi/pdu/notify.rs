//! Target-initiated notices: Reject (RFC 7143 §11.17) and Asynchronous Message (§11.9).

use super::bhs::{Bhs, Opcode, PduError, RESERVED_TAG};

/// Reject, opcode 0x3f (RFC 7143 §11.17). ITT is always 0xffffffff.
///
/// Traps: the data segment is the complete 48-byte header of the rejected PDU (`data_len` 48),
/// which is how the initiator finds the task. A Reject advances StatSN and carries
/// ExpCmdSN/MaxCmdSN; a rejected non-immediate command still consumed its CmdSN, so the window
/// must move past it. Never send one for a header-digest error (the header is untrusted): drop
/// the PDU or the connection instead. `data_sn_or_r2t_sn` is set only for a rejected Data/R2T
/// SNACK. `reason` is kept raw, see [`super::reject_reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject {
    pub reason: u8,
    pub data_len: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_sn_or_r2t_sn: u32,
}

impl Reject {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::Reject)?;
        Ok(Reject {
            reason: bhs.u8_at(2),
            data_len: bhs.data_len_u32(),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            data_sn_or_r2t_sn: bhs.u32_at(36),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::Reject, false);
        b.set_u8(1, 0x80);
        b.set_u8(2, self.reason);
        b.set_data_segment_len(self.data_len);
        b.set_u32(16, RESERVED_TAG);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.data_sn_or_r2t_sn);
        b
    }
}

/// Asynchronous Message, opcode 0x32 (RFC 7143 §11.9). ITT is always 0xffffffff.
///
/// Traps: it advances StatSN (it is a status-bearing PDU even though no task owns it) and
/// carries ExpCmdSN/MaxCmdSN. The parameters mean different things per event (see
/// [`super::async_event`]); for SCSI_ASYNC_EVENT the data segment holds sense data in the same
/// SenseLength-prefixed format as a SCSI Response, and `lun` names the logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    pub data_len: u32,
    pub lun: u64,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub async_event: u8,
    pub async_vcode: u8,
    pub parameter1: u16,
    pub parameter2: u16,
    pub parameter3: u16,
}

impl AsyncMessage {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::AsyncMessage)?;
        Ok(AsyncMessage {
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            async_event: bhs.u8_at(36),
            async_vcode: bhs.u8_at(37),
            parameter1: bhs.u16_at(38),
            parameter2: bhs.u16_at(40),
            parameter3: bhs.u16_at(42),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::AsyncMessage, false);
        b.set_u8(1, 0x80);
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, RESERVED_TAG);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u8(36, self.async_event);
        b.set_u8(37, self.async_vcode);
        b.set_u16(38, self.parameter1);
        b.set_u16(40, self.parameter2);
        b.set_u16(42, self.parameter3);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::super::consts::{async_event, reject_reason};
    use super::*;

    #[test]
    fn reject_layout() {
        let rej = Reject {
            reason: reject_reason::PROTOCOL_ERROR,
            data_len: 48,
            statsn: 5,
            exp_cmdsn: 6,
            max_cmdsn: 7,
            data_sn_or_r2t_sn: 0,
        };
        let b = rej.encode().0;
        assert_eq!(b[..8], [0x3f, 0x80, 0x04, 0, 0, 0, 0, 48]);
        assert_eq!(b[16..20], [0xff; 4]);
        assert_eq!(Reject::decode(&Bhs(b)), Ok(rej));
    }

    #[test]
    fn async_logout_request_layout() {
        let msg = AsyncMessage {
            async_event: async_event::LOGOUT_REQUEST,
            statsn: 9,
            exp_cmdsn: 10,
            max_cmdsn: 11,
            parameter3: 30,
            ..Default::default()
        };
        let b = msg.encode().0;
        assert_eq!(b[..2], [0x32, 0x80]);
        assert_eq!(b[16..20], [0xff; 4]);
        assert_eq!(b[36..44], [1, 0, 0, 0, 0, 0, 0, 30]);
        assert_eq!(AsyncMessage::decode(&Bhs(b)), Ok(msg));
    }
}
