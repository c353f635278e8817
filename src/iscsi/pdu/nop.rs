//! NOP-Out and NOP-In (RFC 7143 §11.18, §11.19): pings in both directions.

use super::bhs::{Bhs, Opcode, PduError};

/// NOP-Out, opcode 0x00 (RFC 7143 §11.18).
///
/// Traps: ITT 0xffffffff means "no answer wanted" (then the I bit must be set and CmdSN is not
/// advanced). An answer to a target's NOP-In ping echoes its TTT (and LUN) and uses ITT
/// 0xffffffff; an initiator ping uses TTT 0xffffffff. The ping data in the data segment comes
/// back in the NOP-In.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopOut {
    pub immediate: bool,
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl NopOut {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::NopOut)?;
        Ok(NopOut {
            immediate: bhs.immediate(),
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::NopOut, self.immediate);
        b.set_u8(1, 0x80);
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b
    }
}

/// NOP-In, opcode 0x20 (RFC 7143 §11.19).
///
/// Traps: a NOP-In answering a NOP-Out echoes its ITT, uses TTT 0xffffffff and advances
/// StatSN; a target-initiated ping uses ITT 0xffffffff, a real TTT, and does NOT advance StatSN
/// (the field carries the next StatSN). ExpCmdSN/MaxCmdSN are valid in both, so an unsolicited
/// NOP-In is also how the target opens a closed command window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NopIn {
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
}

impl NopIn {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::NopIn)?;
        Ok(NopIn {
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
        let mut b = Bhs::with_opcode(Opcode::NopIn, false);
        b.set_u8(1, 0x80);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nop_out_ping_layout() {
        let ping = NopOut {
            immediate: true,
            data_len: 0,
            lun: 0,
            itt: 0xffff_ffff,
            ttt: 0x0000_0042,
            cmdsn: 7,
            exp_statsn: 8,
        };
        let b = ping.encode().0;
        assert_eq!(b[..4], [0x40, 0x80, 0, 0]);
        assert_eq!(
            b[16..32],
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x42, 0, 0, 0, 7, 0, 0, 0, 8]
        );
        assert_eq!(NopOut::decode(&Bhs(b)), Ok(ping));
    }

    #[test]
    fn nop_in_layout() {
        let nop = NopIn {
            data_len: 4,
            itt: 3,
            ttt: 0xffff_ffff,
            statsn: 1,
            exp_cmdsn: 2,
            max_cmdsn: 33,
            lun: 0,
        };
        let b = nop.encode().0;
        assert_eq!(b[..8], [0x20, 0x80, 0, 0, 0, 0, 0, 4]);
        assert_eq!(b[32..36], [0, 0, 0, 33]);
        assert_eq!(NopIn::decode(&Bhs(b)), Ok(nop));
        let mut ahs = b;
        ahs[4] = 1;
        assert!(NopIn::decode(&Bhs(ahs)).is_err());
    }
}
