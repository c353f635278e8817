//! The few SCSI commands a load generator sends (SBC-3, SPC-4) and what it reads back: CDB
//! builders, READ CAPACITY parsing, status codes and sense data.
//!
//! Traps: READ CAPACITY(10) reports 0xffffffff as the last LBA when the LUN is larger than
//! 2 TiB of 512-byte blocks (then READ CAPACITY(16) is needed); both report the *last* LBA, not
//! the count. Sense data comes fixed (0x70/0x71: key in byte 2, ASC/ASCQ in 12/13) or
//! descriptor format (0x72/0x73: key in byte 1, ASC/ASCQ in 2/3).

/// SCSI status codes (SAM-5 §5.3).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const BUSY: u8 = 0x08;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_SET_FULL: u8 = 0x28;
}

/// Sense keys this initiator acts on.
pub mod sense_key {
    pub const NOT_READY: u8 = 0x2;
    pub const UNIT_ATTENTION: u8 = 0x6;
}

/// READ(16): `blocks` blocks from `lba`.
pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x88, lba, blocks)
}

/// WRITE(16): `blocks` blocks to `lba`.
pub fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    rw16(0x8a, lba, blocks)
}

fn rw16(opcode: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = opcode;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// TEST UNIT READY.
pub fn test_unit_ready() -> [u8; 16] {
    [0u8; 16]
}

/// Bytes READ CAPACITY(16) asks for.
pub const READ_CAPACITY16_LEN: u32 = 32;

/// READ CAPACITY(16) (SERVICE ACTION IN(16), service action 0x10).
pub fn read_capacity16() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&READ_CAPACITY16_LEN.to_be_bytes());
    c
}

/// A LUN's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub blocks: u64,
    pub block_len: u32,
}

impl Capacity {
    pub fn bytes(&self) -> u64 {
        self.blocks * u64::from(self.block_len)
    }
}

/// Parses READ CAPACITY(16) parameter data.
pub fn parse_read_capacity16(data: &[u8]) -> Option<Capacity> {
    let last = u64::from_be_bytes(data.get(0..8)?.try_into().ok()?);
    let block_len = u32::from_be_bytes(data.get(8..12)?.try_into().ok()?);
    if block_len == 0 || !block_len.is_multiple_of(512) {
        return None;
    }
    Some(Capacity {
        blocks: last.checked_add(1)?,
        block_len,
    })
}

/// Sense key and additional sense code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// Parses fixed or descriptor format sense data; `None` when too short or unknown.
    pub fn parse(sense: &[u8]) -> Option<Sense> {
        match sense.first()? & 0x7f {
            0x70 | 0x71 => Some(Sense {
                key: sense.get(2)? & 0x0f,
                asc: *sense.get(12).unwrap_or(&0),
                ascq: *sense.get(13).unwrap_or(&0),
            }),
            0x72 | 0x73 => Some(Sense {
                key: sense.get(1)? & 0x0f,
                asc: *sense.get(2)?,
                ascq: *sense.get(3)?,
            }),
            _ => None,
        }
    }

    /// Conditions after which the same command can simply be sent again.
    pub fn is_transient(&self) -> bool {
        self.key == sense_key::UNIT_ATTENTION
            || (self.key == sense_key::NOT_READY && self.asc == 0x04 && self.ascq == 0x01)
    }

    /// The path cannot serve the LUN now (NOT READY, LOGICAL UNIT NOT ACCESSIBLE: ASYMMETRIC
    /// ACCESS STATE TRANSITION 04h/0Ah, TARGET PORT IN STANDBY 04h/0Bh or UNAVAILABLE 04h/0Ch):
    /// dm-multipath fails the path over and retries the command elsewhere.
    pub fn is_path_unavailable(&self) -> bool {
        self.key == sense_key::NOT_READY && self.asc == 0x04 && matches!(self.ascq, 0x0A..=0x0C)
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sense key {:#x} ASC/ASCQ {:02x}/{:02x}",
            self.key, self.asc, self.ascq
        )
    }
}

/// A status byte in words.
pub fn status_name(status: u8) -> &'static str {
    match status {
        status::GOOD => "GOOD",
        status::CHECK_CONDITION => "CHECK CONDITION",
        status::BUSY => "BUSY",
        status::RESERVATION_CONFLICT => "RESERVATION CONFLICT",
        status::TASK_SET_FULL => "TASK SET FULL",
        _ => "unexpected status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rw16_layout() {
        let c = read16(0x0102_0304_0506_0708, 8);
        assert_eq!(c[0], 0x88);
        assert_eq!(c[2..10], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(c[10..14], [0, 0, 0, 8]);
        assert_eq!(write16(0, 1)[0], 0x8a);
    }

    #[test]
    fn read_capacity16_counts_from_the_last_lba() {
        let c = read_capacity16();
        assert_eq!((c[0], c[1], c[13]), (0x9e, 0x10, 32));
        let mut data = [0u8; 32];
        data[0..8].copy_from_slice(&2047u64.to_be_bytes());
        data[8..12].copy_from_slice(&512u32.to_be_bytes());
        let cap = parse_read_capacity16(&data).unwrap();
        assert_eq!(
            cap,
            Capacity {
                blocks: 2048,
                block_len: 512
            }
        );
        assert_eq!(cap.bytes(), 1 << 20);
        assert!(parse_read_capacity16(&data[..10]).is_none());
        data[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert!(parse_read_capacity16(&data).is_none(), "block length 0");
    }

    #[test]
    fn unavailable_and_standby_paths_fail_over_but_becoming_ready_waits() {
        let s = |ascq| Sense {
            key: 2,
            asc: 4,
            ascq,
        };
        for ascq in [0x0A, 0x0B, 0x0C] {
            assert!(s(ascq).is_path_unavailable());
            assert!(!s(ascq).is_transient());
        }
        assert!(!s(0x01).is_path_unavailable());
        assert!(!s(0x03).is_path_unavailable());
    }

    #[test]
    fn sense_in_both_formats() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x06;
        fixed[12] = 0x29;
        let s = Sense::parse(&fixed).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (6, 0x29, 0));
        assert!(s.is_transient());
        let desc = [0x72, 0x05, 0x24, 0x00];
        let s = Sense::parse(&desc).unwrap();
        assert_eq!((s.key, s.asc), (5, 0x24));
        assert!(!s.is_transient());
        assert!(s.to_string().contains("24/00"));
        assert!(Sense::parse(&[]).is_none());
        assert!(Sense::parse(&[0x00, 1, 2]).is_none());
        let becoming_ready = Sense {
            key: 2,
            asc: 4,
            ascq: 1,
        };
        assert!(becoming_ready.is_transient());
    }
}
