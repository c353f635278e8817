//! SNACK Request (RFC 7143 §11.16): the initiator's request for retransmission or its
//! acknowledgement of Data-In, used only with ErrorRecoveryLevel > 0.

use super::bhs::{invalid, Bhs, Opcode, PduError};
use super::consts::snack_type;

/// SNACK Request, opcode 0x10 (RFC 7143 §11.16). Never immediate; no data segment.
///
/// Traps: the meaning of the numbers depends on the type: for Data/R2T SNACK they are
/// DataSN/R2TSN of the task named by ITT; for Status SNACK they are StatSNs and ITT is
/// reserved; for DataACK `ttt` echoes the Data-In's TTT and `beg_run` is the next expected
/// DataSN; for R-Data `ttt` is the SNACK Tag and both run fields are 0. RunLength 0 means
/// "everything from BegRun on". A target at ErrorRecoveryLevel 0 answers with a Reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snack {
    /// See [`super::snack_type`]; 4..=15 are reserved.
    pub snack_type: u8,
    pub lun: u64,
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag.
    pub ttt: u32,
    pub exp_statsn: u32,
    pub beg_run: u32,
    pub run_length: u32,
}

impl Snack {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::Snack)?;
        bhs.expect_no_data()?;
        let kind = bhs.u8_at(1) & 0x0f;
        if kind > snack_type::R_DATA {
            return Err(invalid("Type", u32::from(kind)));
        }
        Ok(Snack {
            snack_type: kind,
            lun: bhs.lun_raw(),
            itt: bhs.itt(),
            ttt: bhs.u32_at(20),
            exp_statsn: bhs.u32_at(28),
            beg_run: bhs.u32_at(40),
            run_length: bhs.u32_at(44),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::Snack, false);
        b.set_u8(1, 0x80 | (self.snack_type & 0x0f));
        b.set_u64(8, self.lun);
        b.set_u32(16, self.itt);
        b.set_u32(20, self.ttt);
        b.set_u32(28, self.exp_statsn);
        b.set_u32(40, self.beg_run);
        b.set_u32(44, self.run_length);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ack_snack_layout() {
        let snack = Snack {
            snack_type: snack_type::DATA_ACK,
            lun: 0,
            itt: 4,
            ttt: 0x99,
            exp_statsn: 12,
            beg_run: 8,
            run_length: 0,
        };
        let b = snack.encode().0;
        assert_eq!(b[..2], [0x10, 0x82]);
        assert_eq!(b[20..24], [0, 0, 0, 0x99]);
        assert_eq!(b[28..32], [0, 0, 0, 12]);
        assert_eq!(b[40..48], [0, 0, 0, 8, 0, 0, 0, 0]);
        assert_eq!(Snack::decode(&Bhs(b)), Ok(snack));
    }

    #[test]
    fn reserved_snack_type_is_rejected() {
        let mut b = Snack::default().encode().0;
        b[1] = 0x84;
        assert!(matches!(
            Snack::decode(&Bhs(b)),
            Err(PduError::InvalidField {
                field: "Type",
                value: 4
            })
        ));
    }
}
