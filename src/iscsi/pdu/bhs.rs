//! The 48-byte Basic Header Segment (RFC 7143 §11.2.1), the opcode table and the codec's error
//! type, plus the panic-free field accessors every PDU family builds on.

use std::fmt;

/// Length of the Basic Header Segment in bytes.
pub const BHS_LEN: usize = 48;

/// The tag value RFC 7143 reserves for "no task" (ITT of an unsolicited NOP-In or Async
/// Message, TTT of unsolicited Data-Out, Referenced Task Tag when unused, ...).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The only iSCSI protocol version defined (Version-max/min/active in Login PDUs).
pub const ISCSI_VERSION: u8 = 0x00;

/// Errors found while decoding PDU headers and segments. Each one is something a peer put on
/// the wire; none is a bug on our side.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// The opcode is not one RFC 7143 defines (vendor-specific ones included).
    #[error("unknown iSCSI opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// A target opcode arrived at the target, or an initiator opcode at the initiator.
    #[error("{0:?} PDU received in the wrong direction")]
    WrongDirection(Opcode),
    /// A PDU type's `decode` was handed a header with another opcode.
    #[error("expected a {expected:?} PDU, found opcode {found:#04x}")]
    OpcodeMismatch { expected: Opcode, found: u8 },
    /// A defined field holds a reserved or contradictory value.
    #[error("invalid {field} field: {value:#x}")]
    InvalidField { field: &'static str, value: u32 },
    /// A buffer is shorter than its own length fields say.
    #[error("truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    /// An Additional Header Segment runs past the end of the AHS area.
    #[error("additional header segment runs past the end of the AHS area")]
    AhsTooLong,
    /// An AHS type that RFC 7143 reserves.
    #[error("unsupported AHS type {0}")]
    UnsupportedAhsType(u8),
    /// The same AHS type appears twice.
    #[error("duplicate AHS type {0}")]
    DuplicateAhs(u8),
}

/// The iSCSI opcodes (RFC 7143 §11.2.1.2). Initiator opcodes have bit 5 clear.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    Snack = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    /// Every defined opcode, initiator ones first.
    pub const ALL: [Opcode; 18] = [
        Opcode::NopOut,
        Opcode::ScsiCommand,
        Opcode::TaskMgmtRequest,
        Opcode::LoginRequest,
        Opcode::TextRequest,
        Opcode::DataOut,
        Opcode::LogoutRequest,
        Opcode::Snack,
        Opcode::NopIn,
        Opcode::ScsiResponse,
        Opcode::TaskMgmtResponse,
        Opcode::LoginResponse,
        Opcode::TextResponse,
        Opcode::DataIn,
        Opcode::LogoutResponse,
        Opcode::R2t,
        Opcode::AsyncMessage,
        Opcode::Reject,
    ];

    /// True for opcodes an initiator sends (0x00..=0x1f), false for target opcodes.
    pub fn is_initiator(self) -> bool {
        (self as u8) & 0x20 == 0
    }

    /// Maps the 6-bit opcode field to an `Opcode`.
    pub fn from_raw(raw: u8) -> Result<Opcode, PduError> {
        Opcode::ALL
            .iter()
            .copied()
            .find(|op| *op as u8 == raw)
            .ok_or(PduError::UnknownOpcode(raw))
    }
}

impl TryFrom<u8> for Opcode {
    type Error = PduError;
    fn try_from(raw: u8) -> Result<Self, PduError> {
        Opcode::from_raw(raw)
    }
}

/// A raw Basic Header Segment as it travels on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl fmt::Debug for Bhs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Bhs");
        match self.opcode() {
            Ok(op) => d.field("opcode", &op),
            Err(_) => d.field("opcode", &format_args!("{:#04x}", self.opcode_raw())),
        };
        d.field("itt", &format_args!("{:#010x}", self.itt()))
            .field("data_len", &self.data_segment_len())
            .finish()
    }
}

impl From<[u8; BHS_LEN]> for Bhs {
    fn from(bytes: [u8; BHS_LEN]) -> Self {
        Bhs(bytes)
    }
}

impl Bhs {
    /// Copies the first 48 bytes of `buf` into a header.
    pub fn from_slice(buf: &[u8]) -> Result<Bhs, PduError> {
        let head = buf.get(..BHS_LEN).ok_or(PduError::Truncated {
            needed: BHS_LEN,
            got: buf.len(),
        })?;
        let mut bytes = [0u8; BHS_LEN];
        bytes.copy_from_slice(head);
        Ok(Bhs(bytes))
    }

    /// The header bytes.
    pub fn as_bytes(&self) -> &[u8; BHS_LEN] {
        &self.0
    }

    /// The 6-bit opcode field (byte 0 & 0x3f).
    pub fn opcode_raw(&self) -> u8 {
        self.0[0] & 0x3f
    }

    /// The opcode, or `UnknownOpcode`.
    pub fn opcode(&self) -> Result<Opcode, PduError> {
        Opcode::from_raw(self.opcode_raw())
    }

    /// The I (immediate delivery) bit, byte 0 & 0x40. Meaningful on initiator PDUs only.
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }

    /// The F (final) bit, byte 1 & 0x80.
    pub fn final_flag(&self) -> bool {
        self.0[1] & 0x80 != 0
    }

    /// TotalAHSLength converted from 4-byte words to bytes.
    pub fn total_ahs_len_bytes(&self) -> usize {
        usize::from(self.0[4]) * 4
    }

    /// DataSegmentLength: bytes 5..8, 24-bit big-endian, padding excluded.
    pub fn data_segment_len(&self) -> usize {
        let [a, b, c] = self.bytes::<3>(5);
        usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)
    }

    /// The Initiator Task Tag, bytes 16..20.
    pub fn itt(&self) -> u32 {
        self.u32_at(16)
    }

    /// Bytes 8..16 as a big-endian number (the LUN field on PDUs that carry one).
    pub fn lun_raw(&self) -> u64 {
        self.u64_at(8)
    }

    // ---- builders and fixed-offset accessors used by the PDU families ----

    /// A zeroed header carrying `opcode` and, for initiator PDUs, the I bit.
    pub(super) fn with_opcode(opcode: Opcode, immediate: bool) -> Bhs {
        let mut bhs = Bhs::default();
        bhs.0[0] = opcode as u8 | if immediate { 0x40 } else { 0 };
        bhs
    }

    /// `N` bytes from `off`; offsets are constants inside the header, so the fallback of
    /// zeroes can only be reached by a bug in this module, never by wire data.
    pub(super) fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(off..off + N) {
            out.copy_from_slice(src);
        }
        out
    }

    pub(super) fn put<const N: usize>(&mut self, off: usize, value: [u8; N]) {
        if let Some(dst) = self.0.get_mut(off..off + N) {
            dst.copy_from_slice(&value);
        }
    }

    pub(super) fn u8_at(&self, off: usize) -> u8 {
        self.bytes::<1>(off)[0]
    }

    pub(super) fn u16_at(&self, off: usize) -> u16 {
        u16::from_be_bytes(self.bytes(off))
    }

    pub(super) fn u32_at(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.bytes(off))
    }

    pub(super) fn u64_at(&self, off: usize) -> u64 {
        u64::from_be_bytes(self.bytes(off))
    }

    pub(super) fn bit(&self, off: usize, mask: u8) -> bool {
        self.u8_at(off) & mask != 0
    }

    pub(super) fn set_u8(&mut self, off: usize, v: u8) {
        self.put(off, [v]);
    }

    pub(super) fn set_u16(&mut self, off: usize, v: u16) {
        self.put(off, v.to_be_bytes());
    }

    pub(super) fn set_u32(&mut self, off: usize, v: u32) {
        self.put(off, v.to_be_bytes());
    }

    pub(super) fn set_u64(&mut self, off: usize, v: u64) {
        self.put(off, v.to_be_bytes());
    }

    /// Writes DataSegmentLength; values above 2^24-1 are masked (callers never exceed
    /// MaxRecvDataSegmentLength, which is itself at most 2^24-1).
    pub(super) fn set_data_segment_len(&mut self, len: u32) {
        let [_, a, b, c] = (len & 0x00ff_ffff).to_be_bytes();
        self.put(5, [a, b, c]);
    }

    pub(super) fn set_total_ahs_words(&mut self, words: u8) {
        self.set_u8(4, words);
    }

    pub(super) fn data_len_u32(&self) -> u32 {
        // At most 2^24-1, so the conversion is lossless.
        self.data_segment_len() as u32
    }

    // ---- shared decode guards ----

    /// Fails unless this header carries `expected`.
    pub(super) fn expect_opcode(&self, expected: Opcode) -> Result<(), PduError> {
        if self.opcode_raw() == expected as u8 {
            Ok(())
        } else {
            Err(PduError::OpcodeMismatch {
                expected,
                found: self.opcode_raw(),
            })
        }
    }

    /// Fails when TotalAHSLength is non-zero: RFC 7143 defines AHSs for SCSI Command only.
    pub(super) fn expect_no_ahs(&self) -> Result<(), PduError> {
        match self.u8_at(4) {
            0 => Ok(()),
            words => Err(invalid("TotalAHSLength", u32::from(words))),
        }
    }

    /// Fails when DataSegmentLength is non-zero on a PDU that has no data segment.
    pub(super) fn expect_no_data(&self) -> Result<(), PduError> {
        match self.data_len_u32() {
            0 => Ok(()),
            len => Err(invalid("DataSegmentLength", len)),
        }
    }

    /// The common prefix of every decode: right opcode, no AHS.
    pub(super) fn expect_plain(&self, expected: Opcode) -> Result<(), PduError> {
        self.expect_opcode(expected)?;
        self.expect_no_ahs()
    }
}

/// `mask` when `on`, else 0: builds flag bytes for `encode`.
pub(super) fn flag(mask: u8, on: bool) -> u8 {
    if on {
        mask
    } else {
        0
    }
}

/// Shorthand for `PduError::InvalidField`.
pub(super) fn invalid(field: &'static str, value: u32) -> PduError {
    PduError::InvalidField { field, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_table_round_trips_and_splits_by_direction() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_raw(op as u8), Ok(op));
            assert_eq!(op.is_initiator(), (op as u8) < 0x20);
        }
        let initiators = Opcode::ALL.iter().filter(|o| o.is_initiator()).count();
        assert_eq!(initiators, 8);
        for raw in [0x07u8, 0x0f, 0x1c, 0x1e, 0x27, 0x30, 0x3c, 0x3e] {
            assert_eq!(Opcode::from_raw(raw), Err(PduError::UnknownOpcode(raw)));
        }
    }

    #[test]
    fn common_accessors_read_the_rfc_offsets() {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0xc1; // reserved bit 7 set, I set, opcode 0x01
        b[1] = 0x80;
        b[4] = 3;
        b[5..8].copy_from_slice(&[0x12, 0x34, 0x56]);
        b[8..16].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        b[16..20].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let bhs = Bhs(b);
        assert_eq!(bhs.opcode_raw(), 0x01);
        assert_eq!(bhs.opcode(), Ok(Opcode::ScsiCommand));
        assert!(bhs.immediate());
        assert!(bhs.final_flag());
        assert_eq!(bhs.total_ahs_len_bytes(), 12);
        assert_eq!(bhs.data_segment_len(), 0x12_3456);
        assert_eq!(bhs.lun_raw(), 0x0102_0304_0506_0708);
        assert_eq!(bhs.itt(), 0xdead_beef);
    }

    #[test]
    fn data_segment_length_is_24_bits() {
        let mut bhs = Bhs::default();
        bhs.set_data_segment_len(0xff_ffff);
        assert_eq!(bhs.0[4..8], [0, 0xff, 0xff, 0xff]);
        assert_eq!(bhs.data_segment_len(), 0xff_ffff);
        bhs.set_data_segment_len(0x0100_0001);
        assert_eq!(bhs.data_segment_len(), 1, "bits above 24 are dropped");
        assert_eq!(bhs.0[4], 0, "TotalAHSLength untouched");
    }

    #[test]
    fn from_slice_needs_48_bytes() {
        assert_eq!(
            Bhs::from_slice(&[0u8; 47]),
            Err(PduError::Truncated {
                needed: 48,
                got: 47
            })
        );
        let mut long = vec![0u8; 60];
        long[0] = 0x20;
        assert_eq!(
            Bhs::from_slice(&long).map(|b| b.opcode()),
            Ok(Ok(Opcode::NopIn))
        );
    }

    #[test]
    fn debug_names_opcode_and_itt() {
        let mut bhs = Bhs::with_opcode(Opcode::NopOut, true);
        bhs.set_u32(16, 0x1234);
        let text = format!("{bhs:?}");
        assert!(
            text.contains("NopOut") && text.contains("0x00001234"),
            "{text}"
        );
        bhs.0[0] = 0x1c;
        assert!(format!("{bhs:?}").contains("0x1c"));
    }
}
