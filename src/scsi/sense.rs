//! Status codes and sense data: SAM-5 §5.3 (status), SPC-4 §4.5 (sense data: §4.5.2 descriptor
//! format, §4.5.3 fixed format, §4.5.2.4 sense-key-specific field) and the ASC/ASCQ table of
//! SPC-4 Annex D.
//!
//! A failing command is a [`CommandError`]: a status plus, for CHECK CONDITION, a [`Sense`]. The
//! sense is encoded at the last moment, fixed (70h) or descriptor (72h) format according to the
//! D_SENSE bit of the Control mode page.
//!
//! Traps:
//! - The fixed format's INFORMATION field is four bytes. A 64-bit LBA or offset that does not fit
//!   must be reported with VALID=0 (the descriptor format carries all 64 bits); setting VALID with
//!   a truncated value silently points the initiator at the wrong block.
//! - ADDITIONAL SENSE LENGTH counts the bytes after byte 7: 10 for the 18-byte fixed format, the
//!   total descriptor length for the descriptor format.
//! - The field pointer (§4.5.2.4.2): SKSV=1; C/D=1 when it points into the CDB and 0 when it points
//!   into the parameter list; BPV=1 only with a meaningful BIT POINTER, and a multi-bit field is
//!   pointed at by its most significant bit.

use std::fmt;

/// SCSI status byte (SAM-5 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ScsiStatus {
    /// 00h.
    Good = 0x00,
    /// 02h: sense data accompanies the status.
    CheckCondition = 0x02,
    /// 04h: PRE-FETCH found room in the cache.
    ConditionMet = 0x04,
    /// 08h.
    Busy = 0x08,
    /// 18h.
    ReservationConflict = 0x18,
    /// 28h.
    TaskSetFull = 0x28,
    /// 30h.
    AcaActive = 0x30,
    /// 40h: command aborted by another I_T nexus while TAS=1.
    TaskAborted = 0x40,
}

impl ScsiStatus {
    /// The status byte.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Parses a status byte; `None` for obsolete or reserved codes.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => Self::Good,
            0x02 => Self::CheckCondition,
            0x04 => Self::ConditionMet,
            0x08 => Self::Busy,
            0x18 => Self::ReservationConflict,
            0x28 => Self::TaskSetFull,
            0x30 => Self::AcaActive,
            0x40 => Self::TaskAborted,
            _ => return None,
        })
    }
}

/// Sense key (SPC-4 §4.5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    BlankCheck = 0x8,
    VendorSpecific = 0x9,
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    VolumeOverflow = 0xD,
    Miscompare = 0xE,
    Completed = 0xF,
}

impl SenseKey {
    /// The 4-bit code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Parses the low four bits of `code`; `None` for the reserved value 0Ch.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code & 0x0F {
            0x0 => Self::NoSense,
            0x1 => Self::RecoveredError,
            0x2 => Self::NotReady,
            0x3 => Self::MediumError,
            0x4 => Self::HardwareError,
            0x5 => Self::IllegalRequest,
            0x6 => Self::UnitAttention,
            0x7 => Self::DataProtect,
            0x8 => Self::BlankCheck,
            0x9 => Self::VendorSpecific,
            0xA => Self::CopyAborted,
            0xB => Self::AbortedCommand,
            0xD => Self::VolumeOverflow,
            0xE => Self::Miscompare,
            0xF => Self::Completed,
            _ => return None,
        })
    }
}

/// Additional sense code and qualifier (SPC-4 §4.5.6, Annex D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asc {
    pub asc: u8,
    pub ascq: u8,
}

impl Asc {
    pub const fn new(asc: u8, ascq: u8) -> Self {
        Self { asc, ascq }
    }

    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: Asc = Asc::new(0x00, 0x00);
    /// 04/00 LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const NOT_READY_CAUSE_NOT_REPORTABLE: Asc = Asc::new(0x04, 0x00);
    /// 04/01 LOGICAL UNIT IS IN PROCESS OF BECOMING READY.
    pub const NOT_READY_BECOMING_READY: Asc = Asc::new(0x04, 0x01);
    /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED (stopped by START STOP UNIT).
    pub const NOT_READY_INITIALIZING_COMMAND_REQUIRED: Asc = Asc::new(0x04, 0x02);
    /// 04/03 LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED.
    pub const NOT_READY_MANUAL_INTERVENTION_REQUIRED: Asc = Asc::new(0x04, 0x03);
    /// 04/0A LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
    pub const LU_NOT_ACCESSIBLE_TRANSITIONING: Asc = Asc::new(0x04, 0x0A);
    /// 04/0B LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
    pub const LU_NOT_ACCESSIBLE_TARGET_PORT_STANDBY: Asc = Asc::new(0x04, 0x0B);
    /// 04/0C LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
    pub const LU_NOT_ACCESSIBLE_TARGET_PORT_UNAVAILABLE: Asc = Asc::new(0x04, 0x0C);
    /// 08/00 LOGICAL UNIT COMMUNICATION FAILURE.
    pub const LOGICAL_UNIT_COMMUNICATION_FAILURE: Asc = Asc::new(0x08, 0x00);
    /// 08/01 LOGICAL UNIT COMMUNICATION TIME-OUT.
    pub const LOGICAL_UNIT_COMMUNICATION_TIMEOUT: Asc = Asc::new(0x08, 0x01);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: Asc = Asc::new(0x0C, 0x00);
    /// 0C/0C WRITE ERROR - UNEXPECTED UNSOLICITED DATA (RFC 7143 §11.4.7.2).
    pub const UNEXPECTED_UNSOLICITED_DATA: Asc = Asc::new(0x0C, 0x0C);
    /// 0C/0D WRITE ERROR - NOT ENOUGH UNSOLICITED DATA (RFC 7143 §11.4.7.2).
    pub const NOT_ENOUGH_UNSOLICITED_DATA: Asc = Asc::new(0x0C, 0x0D);
    /// 0E/03 INVALID FIELD IN COMMAND INFORMATION UNIT (the transport's command, e.g. its
    /// expected data transfer length, contradicts the CDB).
    pub const INVALID_FIELD_IN_COMMAND_IU: Asc = Asc::new(0x0E, 0x03);
    /// 11/00 UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Asc = Asc::new(0x11, 0x00);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc::new(0x1A, 0x00);
    /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc::new(0x1D, 0x00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: Asc = Asc::new(0x20, 0x00);
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Asc = Asc::new(0x21, 0x00);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Asc = Asc::new(0x24, 0x00);
    /// 25/00 LOGICAL UNIT NOT SUPPORTED.
    pub const LOGICAL_UNIT_NOT_SUPPORTED: Asc = Asc::new(0x25, 0x00);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc::new(0x26, 0x00);
    /// 26/01 PARAMETER NOT SUPPORTED.
    pub const PARAMETER_NOT_SUPPORTED: Asc = Asc::new(0x26, 0x01);
    /// 26/02 PARAMETER VALUE INVALID.
    pub const PARAMETER_VALUE_INVALID: Asc = Asc::new(0x26, 0x02);
    /// 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
    pub const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: Asc = Asc::new(0x26, 0x04);
    /// 27/00 WRITE PROTECTED.
    pub const WRITE_PROTECTED: Asc = Asc::new(0x27, 0x00);
    /// 27/07 SPACE ALLOCATION FAILED WRITE PROTECT (thin pool exhausted).
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: Asc = Asc::new(0x27, 0x07);
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: Asc = Asc::new(0x29, 0x00);
    /// 29/01 POWER ON OCCURRED.
    pub const POWER_ON_OCCURRED: Asc = Asc::new(0x29, 0x01);
    /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED (also LOGICAL UNIT RESET).
    pub const BUS_DEVICE_RESET: Asc = Asc::new(0x29, 0x03);
    /// 29/04 DEVICE INTERNAL RESET.
    pub const DEVICE_INTERNAL_RESET: Asc = Asc::new(0x29, 0x04);
    /// 29/07 I_T NEXUS LOSS OCCURRED.
    pub const I_T_NEXUS_LOSS: Asc = Asc::new(0x29, 0x07);
    /// 2A/00 PARAMETERS CHANGED.
    pub const PARAMETERS_CHANGED: Asc = Asc::new(0x2A, 0x00);
    /// 2A/01 MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc::new(0x2A, 0x01);
    /// 2A/03 RESERVATIONS PREEMPTED.
    pub const RESERVATIONS_PREEMPTED: Asc = Asc::new(0x2A, 0x03);
    /// 2A/04 RESERVATIONS RELEASED.
    pub const RESERVATIONS_RELEASED: Asc = Asc::new(0x2A, 0x04);
    /// 2A/05 REGISTRATIONS PREEMPTED.
    pub const REGISTRATIONS_PREEMPTED: Asc = Asc::new(0x2A, 0x05);
    /// 2A/06 ASYMMETRIC ACCESS STATE CHANGED.
    pub const ASYMMETRIC_ACCESS_STATE_CHANGED: Asc = Asc::new(0x2A, 0x06);
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_HAS_CHANGED: Asc = Asc::new(0x2A, 0x09);
    /// 2C/00 COMMAND SEQUENCE ERROR.
    pub const COMMAND_SEQUENCE_ERROR: Asc = Asc::new(0x2C, 0x00);
    /// 2F/00 COMMANDS CLEARED BY ANOTHER INITIATOR.
    pub const COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: Asc = Asc::new(0x2F, 0x00);
    /// 38/07 THIN PROVISIONING SOFT THRESHOLD REACHED.
    pub const THIN_PROVISIONING_SOFT_THRESHOLD_REACHED: Asc = Asc::new(0x38, 0x07);
    /// 39/00 SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc::new(0x39, 0x00);
    /// 3A/00 MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: Asc = Asc::new(0x3A, 0x00);
    /// 3F/03 INQUIRY DATA HAS CHANGED.
    pub const INQUIRY_DATA_HAS_CHANGED: Asc = Asc::new(0x3F, 0x03);
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_DATA_HAS_CHANGED: Asc = Asc::new(0x3F, 0x0E);
    /// 44/00 INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc::new(0x44, 0x00);
    /// 47/00 SCSI PARITY ERROR.
    pub const SCSI_PARITY_ERROR: Asc = Asc::new(0x47, 0x00);
    /// 47/05 PROTOCOL SERVICE CRC ERROR (iSCSI data digest failure).
    pub const PROTOCOL_SERVICE_CRC_ERROR: Asc = Asc::new(0x47, 0x05);
    /// 48/00 INITIATOR DETECTED ERROR MESSAGE RECEIVED.
    pub const INITIATOR_DETECTED_ERROR: Asc = Asc::new(0x48, 0x00);
    /// 49/00 INVALID MESSAGE ERROR.
    pub const INVALID_MESSAGE_ERROR: Asc = Asc::new(0x49, 0x00);
    /// 4B/00 DATA PHASE ERROR.
    pub const DATA_PHASE_ERROR: Asc = Asc::new(0x4B, 0x00);
    /// 4B/05 DATA OFFSET ERROR.
    pub const DATA_OFFSET_ERROR: Asc = Asc::new(0x4B, 0x05);
    /// 4B/06 INITIATOR RESPONSE TIMEOUT.
    pub const INITIATOR_RESPONSE_TIMEOUT: Asc = Asc::new(0x4B, 0x06);
    /// 4E/00 OVERLAPPED COMMANDS ATTEMPTED.
    pub const OVERLAPPED_COMMANDS_ATTEMPTED: Asc = Asc::new(0x4E, 0x00);
    /// 55/03 INSUFFICIENT RESOURCES.
    pub const INSUFFICIENT_RESOURCES: Asc = Asc::new(0x55, 0x03);
    /// 5E/00 LOW POWER CONDITION ON.
    pub const LOW_POWER_CONDITION_ON: Asc = Asc::new(0x5E, 0x00);
}

impl fmt::Display for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}h/{:02X}h", self.asc, self.ascq)
    }
}

/// Sense data, independent of its wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: Asc,
    /// The INFORMATION field (an LBA, or the offset of the first miscompare); `Some` sets VALID.
    pub info: Option<u64>,
    /// The 3-byte SENSE KEY SPECIFIC field, SKSV bit included.
    pub sense_key_specific: Option<[u8; 3]>,
}

impl Sense {
    /// Length of fixed-format sense data as we build it.
    pub const FIXED_LEN: usize = 18;

    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            key,
            asc,
            info: None,
            sense_key_specific: None,
        }
    }

    /// NO SENSE, 00/00: what REQUEST SENSE returns when nothing is pending.
    pub const fn no_sense() -> Self {
        Self::new(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE)
    }

    pub const fn illegal_request(asc: Asc) -> Self {
        Self::new(SenseKey::IllegalRequest, asc)
    }

    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self::illegal_request(Asc::INVALID_COMMAND_OPERATION_CODE)
    }

    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::illegal_request(Asc::LBA_OUT_OF_RANGE)
    }

    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
    pub const fn parameter_list_length_error() -> Self {
        Self::illegal_request(Asc::PARAMETER_LIST_LENGTH_ERROR)
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB, with the field pointer set to CDB byte `byte` and,
    /// when given, bit `bit` (the most significant bit of a multi-bit field).
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        let mut s = Self::illegal_request(Asc::INVALID_FIELD_IN_CDB);
        s.sense_key_specific = Some(field_pointer(true, byte, bit));
        s
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, with the field pointer set to byte `byte`
    /// of the parameter list (C/D=0) and, when given, bit `bit`.
    pub const fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Self {
        let mut s = Self::illegal_request(Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        s.sense_key_specific = Some(field_pointer(false, byte, bit));
        s
    }

    /// MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION, INFORMATION = offset (in bytes, from the
    /// start of the compared data) of the first byte that differed (SBC-3 COMPARE AND WRITE and
    /// VERIFY).
    pub const fn miscompare(offset: u64) -> Self {
        let mut s = Self::new(SenseKey::Miscompare, Asc::MISCOMPARE_DURING_VERIFY);
        s.info = Some(offset);
        s
    }

    pub const fn unit_attention(asc: Asc) -> Self {
        Self::new(SenseKey::UnitAttention, asc)
    }

    pub const fn not_ready(asc: Asc) -> Self {
        Self::new(SenseKey::NotReady, asc)
    }

    pub const fn medium_error(asc: Asc) -> Self {
        Self::new(SenseKey::MediumError, asc)
    }

    pub const fn hardware_error(asc: Asc) -> Self {
        Self::new(SenseKey::HardwareError, asc)
    }

    pub const fn aborted_command(asc: Asc) -> Self {
        Self::new(SenseKey::AbortedCommand, asc)
    }

    /// DATA PROTECT with `asc` (WRITE PROTECTED, SPACE ALLOCATION FAILED WRITE PROTECT).
    pub const fn data_protect(asc: Asc) -> Self {
        Self::new(SenseKey::DataProtect, asc)
    }

    /// Sets the INFORMATION field (and so VALID).
    pub const fn with_info(mut self, info: u64) -> Self {
        self.info = Some(info);
        self
    }

    /// Fixed-format sense data (SPC-4 §4.5.3): response code 70h (current error), 18 bytes.
    pub fn to_fixed(&self, out: &mut [u8; 18]) {
        *out = [0; 18];
        out[0] = 0x70;
        if let Some(info) = self.info {
            // VALID only when the value fits the 4-byte field.
            if let Ok(v) = u32::try_from(info) {
                out[0] |= 0x80;
                out[3..7].copy_from_slice(&v.to_be_bytes());
            }
        }
        out[2] = self.key.code();
        out[7] = 10; // additional sense length: bytes 8..=17
        out[12] = self.asc.asc;
        out[13] = self.asc.ascq;
        if let Some(sks) = self.sense_key_specific {
            out[15..18].copy_from_slice(&sks);
        }
    }

    /// Descriptor-format sense data (SPC-4 §4.5.2): response code 72h, an Information descriptor
    /// (00h) when `info` is set and a Sense key specific descriptor (02h) when that is set.
    /// Appends to `out`.
    pub fn to_descriptor(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[
            0x72,
            self.key.code(),
            self.asc.asc,
            self.asc.ascq,
            0,
            0,
            0,
            0,
        ]);
        if let Some(info) = self.info {
            // Information descriptor: type 00h, additional length 0Ah, VALID=1.
            out.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            out.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(sks) = self.sense_key_specific {
            // Sense key specific descriptor: type 02h, additional length 06h.
            out.extend_from_slice(&[0x02, 0x06, 0x00, 0x00, sks[0], sks[1], sks[2], 0x00]);
        }
        let additional = out.len() - start - 8;
        out[start + 7] = additional as u8; // at most 20 + 8: fits
    }

    /// Encodes in descriptor format when `descriptor` (the Control mode page's D_SENSE), fixed
    /// otherwise.
    pub fn to_bytes(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            let mut v = Vec::with_capacity(28);
            self.to_descriptor(&mut v);
            v
        } else {
            let mut b = [0u8; 18];
            self.to_fixed(&mut b);
            b.to_vec()
        }
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.key, self.asc)?;
        if let Some(info) = self.info {
            write!(f, " info={info:#x}")?;
        }
        Ok(())
    }
}

/// The 3-byte field pointer (SPC-4 §4.5.2.4.2): SKSV=1, C/D, BPV + BIT POINTER, FIELD POINTER.
pub const fn field_pointer(in_cdb: bool, byte: u16, bit: Option<u8>) -> [u8; 3] {
    let mut b0 = 0x80u8;
    if in_cdb {
        b0 |= 0x40;
    }
    if let Some(bit) = bit {
        b0 |= 0x08 | (bit & 0x07);
    }
    let fp = byte.to_be_bytes();
    [b0, fp[0], fp[1]]
}

/// How a command failed: its status and, for CHECK CONDITION, the sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandError {
    pub status: ScsiStatus,
    pub sense: Option<Sense>,
}

impl CommandError {
    /// CHECK CONDITION with `sense`.
    pub const fn check(sense: Sense) -> Self {
        Self {
            status: ScsiStatus::CheckCondition,
            sense: Some(sense),
        }
    }

    pub const fn reservation_conflict() -> Self {
        Self {
            status: ScsiStatus::ReservationConflict,
            sense: None,
        }
    }

    pub const fn busy() -> Self {
        Self {
            status: ScsiStatus::Busy,
            sense: None,
        }
    }

    pub const fn task_set_full() -> Self {
        Self {
            status: ScsiStatus::TaskSetFull,
            sense: None,
        }
    }

    pub const fn task_aborted() -> Self {
        Self {
            status: ScsiStatus::TaskAborted,
            sense: None,
        }
    }

    /// CHECK CONDITION, ILLEGAL REQUEST, `asc`.
    pub const fn illegal_request(asc: Asc) -> Self {
        Self::check(Sense::illegal_request(asc))
    }

    /// CHECK CONDITION, INVALID COMMAND OPERATION CODE.
    pub const fn invalid_opcode() -> Self {
        Self::check(Sense::invalid_opcode())
    }

    /// CHECK CONDITION, INVALID FIELD IN CDB with a field pointer.
    pub const fn invalid_field_in_cdb(byte: u16, bit: Option<u8>) -> Self {
        Self::check(Sense::invalid_field_in_cdb(byte, bit))
    }

    /// CHECK CONDITION, INVALID FIELD IN PARAMETER LIST with a field pointer.
    pub const fn invalid_field_in_param(byte: u16, bit: Option<u8>) -> Self {
        Self::check(Sense::invalid_field_in_param(byte, bit))
    }

    /// CHECK CONDITION, PARAMETER LIST LENGTH ERROR.
    pub const fn parameter_list_length_error() -> Self {
        Self::check(Sense::parameter_list_length_error())
    }

    /// CHECK CONDITION, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const fn lba_out_of_range() -> Self {
        Self::check(Sense::lba_out_of_range())
    }
}

impl From<Sense> for CommandError {
    fn from(sense: Sense) -> Self {
        Self::check(sense)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sense {
            Some(s) => write!(f, "{:?}: {s}", self.status),
            None => write!(f, "{:?}", self.status),
        }
    }
}

impl std::error::Error for CommandError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert_eq!(ScsiStatus::Good.code(), 0x00);
        assert_eq!(ScsiStatus::CheckCondition.code(), 0x02);
        assert_eq!(ScsiStatus::ConditionMet.code(), 0x04);
        assert_eq!(ScsiStatus::Busy.code(), 0x08);
        assert_eq!(ScsiStatus::ReservationConflict.code(), 0x18);
        assert_eq!(ScsiStatus::TaskSetFull.code(), 0x28);
        assert_eq!(ScsiStatus::AcaActive.code(), 0x30);
        assert_eq!(ScsiStatus::TaskAborted.code(), 0x40);
        for c in 0..=255u8 {
            if let Some(s) = ScsiStatus::from_code(c) {
                assert_eq!(s.code(), c);
            }
        }
        for c in 0..16u8 {
            if let Some(k) = SenseKey::from_code(c) {
                assert_eq!(k.code(), c);
            } else {
                assert_eq!(c, 0xC);
            }
        }
    }

    #[test]
    fn fixed_layout_invalid_field_in_cdb() {
        let s = Sense::invalid_field_in_cdb(1, Some(7));
        let mut b = [0u8; 18];
        s.to_fixed(&mut b);
        assert_eq!(
            b,
            [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xCF, 0x00, 0x01]
        );
        // Byte pointer without a bit pointer: BPV=0.
        Sense::invalid_field_in_cdb(0x0102, None).to_fixed(&mut b);
        assert_eq!(&b[15..18], &[0xC0, 0x01, 0x02]);
    }

    #[test]
    fn fixed_layout_param_pointer_has_cd_clear() {
        let mut b = [0u8; 18];
        Sense::invalid_field_in_param(14, Some(2)).to_fixed(&mut b);
        assert_eq!(b[2], 0x05);
        assert_eq!((b[12], b[13]), (0x26, 0x00));
        assert_eq!(&b[15..18], &[0x8A, 0x00, 0x0E]);
    }

    #[test]
    fn fixed_layout_miscompare_info() {
        let mut b = [0u8; 18];
        Sense::miscompare(0x1234).to_fixed(&mut b);
        assert_eq!(b[0], 0xF0, "VALID bit + 70h");
        assert_eq!(b[2], 0x0E);
        assert_eq!(&b[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!((b[12], b[13]), (0x1D, 0x00));
        assert_eq!(&b[15..18], &[0, 0, 0]);
    }

    #[test]
    fn fixed_layout_info_too_wide_clears_valid() {
        let mut b = [0u8; 18];
        Sense::medium_error(Asc::UNRECOVERED_READ_ERROR)
            .with_info(1 << 40)
            .to_fixed(&mut b);
        assert_eq!(b[0], 0x70);
        assert_eq!(&b[3..7], &[0, 0, 0, 0]);
        assert_eq!(b[2], 0x03);
    }

    #[test]
    fn descriptor_layout_plain() {
        let mut v = Vec::new();
        Sense::unit_attention(Asc::POWER_ON_RESET).to_descriptor(&mut v);
        assert_eq!(v, vec![0x72, 0x06, 0x29, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_layout_info_and_sks() {
        let mut s = Sense::invalid_field_in_cdb(2, Some(5));
        s.info = Some(0x0102_0304_0506_0708);
        let mut v = vec![0xEE]; // appends
        s.to_descriptor(&mut v);
        let v = &v[1..];
        assert_eq!(&v[..8], &[0x72, 0x05, 0x24, 0x00, 0, 0, 0, 20]);
        assert_eq!(&v[8..20], &[0x00, 0x0A, 0x80, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&v[20..28], &[0x02, 0x06, 0, 0, 0xCD, 0x00, 0x02, 0x00]);
        assert_eq!(v.len(), 28);
    }

    #[test]
    fn encode_selects_format() {
        let s = Sense::lba_out_of_range();
        assert_eq!(s.to_bytes(false).len(), 18);
        assert_eq!(s.to_bytes(false)[0], 0x70);
        assert_eq!(s.to_bytes(true), vec![0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]);
    }

    #[test]
    fn command_error_constructors() {
        let e = CommandError::check(Sense::lba_out_of_range());
        assert_eq!(e.status, ScsiStatus::CheckCondition);
        assert_eq!(e.sense.map(|s| s.asc), Some(Asc::LBA_OUT_OF_RANGE));
        assert_eq!(
            CommandError::reservation_conflict().status,
            ScsiStatus::ReservationConflict
        );
        assert_eq!(CommandError::reservation_conflict().sense, None);
        assert_eq!(CommandError::busy().status, ScsiStatus::Busy);
        assert_eq!(
            CommandError::task_set_full().status,
            ScsiStatus::TaskSetFull
        );
        assert_eq!(CommandError::task_aborted().status, ScsiStatus::TaskAborted);
        let e: CommandError = Sense::invalid_opcode().into();
        assert_eq!(e, CommandError::invalid_opcode());
        assert!(!e.to_string().is_empty());
    }
}
