//! The SCSI data path PDUs: SCSI Command and SCSI Response (RFC 7143 §11.3, §11.4), Data-Out and
//! Data-In (§11.7) and Ready To Transfer (§11.8).

use super::bhs::{flag, invalid, Bhs, Opcode, PduError};
use super::consts::task_attr;

/// SCSI Command, opcode 0x01 (RFC 7143 §11.3).
///
/// Traps: an immediate command (I bit) carries the current CmdSN but does not advance it.
/// `expected_data_len` is the whole transfer, immediate and unsolicited data included; for a
/// bidirectional command it is the write length and the read length travels in the Expected
/// Bidirectional Read Data Length AHS. A CDB longer than 16 bytes continues in the Extended CDB
/// AHS; `ahs_len_words` counts 4-byte words, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    pub immediate: bool,
    /// No unsolicited Data-Out PDUs follow.
    pub final_flag: bool,
    pub read: bool,
    pub write: bool,
    /// Task attribute, see [`task_attr`] (3 bits; 5..=7 are reserved).
    pub attr: u8,
    /// TotalAHSLength in 4-byte words.
    pub ahs_len_words: u8,
    /// DataSegmentLength (immediate data).
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub expected_data_len: u32,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_opcode(Opcode::ScsiCommand)?;
        let attr = bhs.u8_at(1) & 0x07;
        if attr > task_attr::ACA {
            return Err(invalid("ATTR", u32::from(attr)));
        }
        Ok(ScsiCommand {
            immediate: bhs.immediate(),
            final_flag: bhs.final_flag(),
            read: bhs.bit(1, 0x40),
            write: bhs.bit(1, 0x20),
            attr,
            ahs_len_words: bhs.u8_at(4),
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            expected_data_len: bhs.u32_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
            cdb: bhs.bytes(32),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiCommand, self.immediate);
        let flags = flag(0x80, self.final_flag) | flag(0x40, self.read) | flag(0x20, self.write);
        b.set_u8(1, flags | (self.attr & 0x07));
        b.set_total_ahs_words(self.ahs_len_words);
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.expected_data_len);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b.put(32, self.cdb);
        b
    }
}

/// SCSI Response, opcode 0x21 (RFC 7143 §11.4).
///
/// Traps: it advances StatSN and carries ExpCmdSN/MaxCmdSN like every target PDU. The data
/// segment is not raw sense data but a 2-byte SenseLength followed by the sense
/// ([`super::sense_segment`]). `exp_data_sn` is the number of Data-In (and, for bidirectional
/// commands, R2T) PDUs sent for the command. Residual counts mean something only with their
/// flag bits, and overflow and underflow exclude each other. `status` is valid only when
/// `response` is COMMAND_COMPLETED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// o: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O: residual overflow.
    pub overflow: bool,
    /// U: residual underflow.
    pub underflow: bool,
    /// See [`super::scsi_response`]; 0x02..=0x7f are reserved.
    pub response: u8,
    /// SCSI status byte.
    pub status: u8,
    pub data_len: u32,
    pub itt: u32,
    pub snack_tag: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub exp_data_sn: u32,
    pub bidi_read_residual: u32,
    pub residual_count: u32,
}

impl ScsiResponse {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::ScsiResponse)?;
        let flags = bhs.u8_at(1);
        exclusive_flags(flags, 0x10, 0x08, "o/u")?;
        exclusive_flags(flags, 0x04, 0x02, "O/U")?;
        let response = bhs.u8_at(2);
        if (0x02..0x80).contains(&response) {
            return Err(invalid("Response", u32::from(response)));
        }
        Ok(ScsiResponse {
            bidi_overflow: flags & 0x10 != 0,
            bidi_underflow: flags & 0x08 != 0,
            overflow: flags & 0x04 != 0,
            underflow: flags & 0x02 != 0,
            response,
            status: bhs.u8_at(3),
            data_len: bhs.data_len_u32(),
            itt: bhs.itt(),
            snack_tag: bhs.u32_at(20),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            exp_data_sn: bhs.u32_at(36),
            bidi_read_residual: bhs.u32_at(40),
            residual_count: bhs.u32_at(44),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::ScsiResponse, false);
        let flags = flag(0x10, self.bidi_overflow)
            | flag(0x08, self.bidi_underflow)
            | flag(0x04, self.overflow)
            | flag(0x02, self.underflow);
        b.set_u8(1, 0x80 | flags);
        b.set_u8(2, self.response);
        b.set_u8(3, self.status);
        b.set_data_segment_len(self.data_len);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.snack_tag);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.exp_data_sn);
        b.set_u32(40, self.bidi_read_residual);
        b.set_u32(44, self.residual_count);
        b
    }
}

/// SCSI Data-Out, opcode 0x05 (RFC 7143 §11.7).
///
/// Traps: DataSN restarts at 0 for every R2T's sequence and for the unsolicited sequence; it
/// is not a per-connection counter. Unsolicited Data-Out carries TTT 0xffffffff. Data-Out has
/// no CmdSN and is not ordered by the command window; `buffer_offset` places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOut {
    /// Last PDU of this sequence (R2T answer or unsolicited burst).
    pub final_flag: bool,
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_statsn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

impl DataOut {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::DataOut)?;
        Ok(DataOut {
            final_flag: bhs.final_flag(),
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            exp_statsn: bhs.u32_at(28),
            data_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::DataOut, false);
        b.set_u8(1, flag(0x80, self.final_flag));
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(28, self.exp_statsn);
        b.set_u32(36, self.data_sn);
        b.set_u32(40, self.buffer_offset);
        b
    }
}

/// SCSI Data-In, opcode 0x25 (RFC 7143 §11.7).
///
/// Traps: DataSN counts per command, from 0; for a bidirectional command Data-In and R2T share
/// that one counter (R2TSN). StatSN advances only on the Data-In that carries status (S bit,
/// which requires F); without S, `statsn`, `status` and the residual fields are not valid and
/// StatSN must not be consumed. ExpCmdSN/MaxCmdSN are in every target PDU. A (ack) asks for a
/// DataACK SNACK and needs ErrorRecoveryLevel > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_flag: bool,
    /// A: acknowledge request.
    pub ack: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// S: status is present (phase collapse).
    pub status_present: bool,
    pub status: u8,
    pub data_len: u32,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub residual_count: u32,
}

impl DataIn {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::DataIn)?;
        let flags = bhs.u8_at(1);
        if flags & 0x01 != 0 && flags & 0x80 == 0 {
            return Err(invalid("S", u32::from(flags)));
        }
        exclusive_flags(flags, 0x04, 0x02, "O/U")?;
        Ok(DataIn {
            final_flag: flags & 0x80 != 0,
            ack: flags & 0x40 != 0,
            overflow: flags & 0x04 != 0,
            underflow: flags & 0x02 != 0,
            status_present: flags & 0x01 != 0,
            status: bhs.u8_at(3),
            data_len: bhs.data_len_u32(),
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            data_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
            residual_count: bhs.u32_at(44),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::DataIn, false);
        let flags = flag(0x80, self.final_flag)
            | flag(0x40, self.ack)
            | flag(0x04, self.overflow)
            | flag(0x02, self.underflow)
            | flag(0x01, self.status_present);
        b.set_u8(1, flags);
        b.set_u8(3, self.status);
        b.set_data_segment_len(self.data_len);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.data_sn);
        b.set_u32(40, self.buffer_offset);
        b.set_u32(44, self.residual_count);
        b
    }
}

/// Ready To Transfer, opcode 0x31 (RFC 7143 §11.8).
///
/// Traps: R2TSN counts per command from 0, and for a bidirectional command it shares the
/// counter with the Data-In DataSN. `statsn` is the next StatSN but is not consumed. No data
/// segment; `desired_len` must be non-zero and at most MaxBurstLength; the initiator answers
/// with Data-Out PDUs whose DataSN restarts at 0 and that echo `ttt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_len: u32,
}

impl R2t {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::R2t)?;
        bhs.expect_no_data()?;
        let desired_len = bhs.u32_at(44);
        if desired_len == 0 {
            return Err(invalid("DesiredDataTransferLength", 0));
        }
        Ok(R2t {
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            r2t_sn: bhs.u32_at(36),
            buffer_offset: bhs.u32_at(40),
            desired_len,
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::R2t, false);
        b.set_u8(1, 0x80);
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u32(36, self.r2t_sn);
        b.set_u32(40, self.buffer_offset);
        b.set_u32(44, self.desired_len);
        b
    }
}

/// Overflow and underflow bits of one residual exclude each other.
fn exclusive_flags(flags: u8, over: u8, under: u8, field: &'static str) -> Result<(), PduError> {
    if flags & over != 0 && flags & under != 0 {
        Err(invalid(field, u32::from(flags)))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::segments::encode_lun;
    use super::*;

    /// The SCSI Read (10) Command PDU of RFC 7143 Appendix A.4 (RFC 3720 B.4).
    const RFC_READ10_PDU: [u8; 48] = [
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, //
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, //
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    #[test]
    fn rfc_read10_command_decodes_field_by_field() {
        let cmd = ScsiCommand::decode(&Bhs(RFC_READ10_PDU)).unwrap();
        assert!(!cmd.immediate);
        assert!(cmd.final_flag && cmd.read && !cmd.write);
        assert_eq!(cmd.attr, task_attr::UNTAGGED);
        assert_eq!((cmd.ahs_len_words, cmd.data_len, cmd.lun), (0, 0, 0));
        assert_eq!(cmd.itt, 0x1400_0000);
        assert_eq!(cmd.expected_data_len, 1024);
        assert_eq!((cmd.cmdsn, cmd.exp_statsn), (0x14, 0x18));
        assert_eq!(cmd.cdb[0], 0x28, "READ(10)");
        assert_eq!(cmd.cdb[7..9], [0x00, 0x02], "transfer length 2 blocks");
        assert_eq!(cmd.encode().0, RFC_READ10_PDU);
    }

    #[test]
    fn scsi_command_flags_and_attr_bits() {
        let cmd = ScsiCommand {
            immediate: true,
            final_flag: false,
            read: true,
            write: true,
            attr: task_attr::HEAD_OF_QUEUE,
            ahs_len_words: 2,
            data_len: 0x01_0203,
            lun: encode_lun(3),
            ..Default::default()
        };
        let b = cmd.encode().0;
        assert_eq!(b[0], 0x41);
        assert_eq!(b[1], 0x63);
        assert_eq!(b[4..8], [2, 0x01, 0x02, 0x03]);
        assert_eq!(b[8..10], [0, 3]);
        for attr in 5..=7u8 {
            let mut bad = b;
            bad[1] = (bad[1] & !0x07) | attr;
            assert_eq!(
                ScsiCommand::decode(&Bhs(bad)),
                Err(PduError::InvalidField {
                    field: "ATTR",
                    value: u32::from(attr)
                })
            );
        }
    }

    #[test]
    fn scsi_response_layout() {
        let rsp = ScsiResponse {
            underflow: true,
            bidi_overflow: true,
            response: 0x00,
            status: 0x02,
            data_len: 20,
            itt: 7,
            statsn: 0x0102_0304,
            exp_cmdsn: 9,
            max_cmdsn: 40,
            exp_data_sn: 3,
            residual_count: 512,
            ..Default::default()
        };
        let b = rsp.encode().0;
        assert_eq!(b[..8], [0x21, 0x92, 0x00, 0x02, 0, 0, 0, 20]);
        assert_eq!(b[24..28], [1, 2, 3, 4]);
        assert_eq!(b[36..40], [0, 0, 0, 3]);
        assert_eq!(b[44..48], [0, 0, 2, 0]);
        assert_eq!(ScsiResponse::decode(&Bhs(b)), Ok(rsp));
    }

    #[test]
    fn scsi_response_rejects_contradictions() {
        let b = ScsiResponse::default().encode().0;
        let with = |i: usize, v: u8| {
            let mut x = b;
            x[i] = v;
            ScsiResponse::decode(&Bhs(x))
        };
        assert!(matches!(
            with(1, 0x86),
            Err(PduError::InvalidField { field: "O/U", .. })
        ));
        assert!(matches!(
            with(1, 0x98),
            Err(PduError::InvalidField { field: "o/u", .. })
        ));
        assert!(matches!(
            with(2, 0x02),
            Err(PduError::InvalidField {
                field: "Response",
                ..
            })
        ));
        assert!(with(2, 0x80).is_ok(), "vendor-specific response");
        assert!(matches!(
            with(4, 1),
            Err(PduError::InvalidField {
                field: "TotalAHSLength",
                ..
            })
        ));
    }

    #[test]
    fn data_in_status_needs_final() {
        let din = DataIn {
            final_flag: true,
            status_present: true,
            overflow: true,
            ..Default::default()
        };
        let mut b = din.encode().0;
        assert_eq!(b[..2], [0x25, 0x85]);
        b[1] = 0x01;
        assert!(matches!(
            DataIn::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "S", .. })
        ));
        b[1] = 0x86;
        assert!(matches!(
            DataIn::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "O/U", .. })
        ));
        b[1] = 0xc0;
        assert_eq!(
            DataIn::decode(&Bhs(b)).map(|d| (d.final_flag, d.ack)),
            Ok((true, true))
        );
    }

    #[test]
    fn data_out_layout() {
        let dout = DataOut {
            final_flag: true,
            data_len: 8192,
            lun: encode_lun(1),
            itt: 0x10,
            ttt: 0xffff_ffff,
            exp_statsn: 5,
            data_sn: 2,
            buffer_offset: 16384,
        };
        let b = dout.encode().0;
        assert_eq!(b[..8], [0x05, 0x80, 0, 0, 0, 0, 0x20, 0]);
        assert_eq!(b[20..24], [0xff; 4]);
        assert_eq!(b[24..28], [0; 4], "reserved, not CmdSN");
        assert_eq!(b[36..44], [0, 0, 0, 2, 0, 0, 0x40, 0]);
        assert_eq!(DataOut::decode(&Bhs(b)), Ok(dout));
    }

    #[test]
    fn r2t_has_no_data_and_wants_some() {
        let r2t = R2t {
            ttt: 1,
            r2t_sn: 0,
            buffer_offset: 0,
            desired_len: 65536,
            ..Default::default()
        };
        let b = r2t.encode().0;
        assert_eq!(b[..2], [0x31, 0x80]);
        assert_eq!(R2t::decode(&Bhs(b)), Ok(r2t));
        let mut with_data = b;
        with_data[7] = 4;
        assert!(matches!(
            R2t::decode(&Bhs(with_data)),
            Err(PduError::InvalidField {
                field: "DataSegmentLength",
                value: 4
            })
        ));
        let zero = R2t {
            desired_len: 0,
            ..r2t
        }
        .encode();
        assert!(R2t::decode(&zero).is_err());
    }

    #[test]
    fn decode_checks_the_opcode() {
        let nop = Bhs::with_opcode(Opcode::NopOut, false);
        assert_eq!(
            ScsiCommand::decode(&nop),
            Err(PduError::OpcodeMismatch {
                expected: Opcode::ScsiCommand,
                found: 0
            })
        );
        assert!(DataIn::decode(&nop).is_err());
        assert!(DataOut::decode(&nop).is_err());
        assert!(R2t::decode(&nop).is_err());
        assert!(ScsiResponse::decode(&nop).is_err());
    }
}
