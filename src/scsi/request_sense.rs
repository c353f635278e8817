//! REQUEST SENSE (SPC-4 §6.39): the sense data of a pending condition, fixed format (70h) or
//! descriptor format (72h) as the DESC bit asks.
//!
//! With iSCSI, sense data travels with the CHECK CONDITION status (autosense), so REQUEST SENSE
//! mostly reports pending unit attentions ([`super::ua::UaQueue::gate`] returns the sense to use)
//! or, when nothing is pending, NO SENSE with ASC/ASCQ 00h/00h.
//!
//! Traps:
//! - REQUEST SENSE itself completes with GOOD status; the sense is its parameter data.
//! - DESC=1 selects the format for this response only, independent of the Control mode page's
//!   D_SENSE; we support descriptor format, so DESC=1 is never an error.
//! - The caller truncates to the allocation length (18 for fixed format is usual).

use super::sense::Sense;

/// REQUEST SENSE parameter data for `pending` (NO SENSE when `None`).
pub fn request_sense_data(pending: Option<&Sense>, desc: bool) -> Vec<u8> {
    pending.copied().unwrap_or(Sense::no_sense()).to_bytes(desc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    #[test]
    fn nothing_pending() {
        let d = request_sense_data(None, false);
        assert_eq!(
            d,
            vec![0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            request_sense_data(None, true),
            vec![0x72, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn pending_unit_attention() {
        let s = Sense::unit_attention(Asc::POWER_ON_RESET);
        let d = request_sense_data(Some(&s), false);
        assert_eq!(d.len(), 18);
        assert_eq!(
            (d[0], d[2], d[7], d[12], d[13]),
            (0x70, 0x06, 10, 0x29, 0x00)
        );
        assert_eq!(
            request_sense_data(Some(&s), true),
            vec![0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]
        );
    }
}
