//! READ CAPACITY(10) and READ CAPACITY(16) parameter data (SBC-3 §5.15, §5.16).
//!
//! Traps:
//! - Both return the LAST LBA, not the number of blocks.
//! - READ CAPACITY(10) returns FFFFFFFFh when the last LBA does not fit in 32 bits (and also when
//!   it is exactly FFFFFFFFh): the initiator must then use READ CAPACITY(16). Linux does this for
//!   any disk over 2 TiB with 512-byte blocks.
//! - READ CAPACITY(16) byte 14 carries LBPME (thin provisioning, bit 7) and LBPRZ (bit 6): Linux
//!   only enables discard when LBPME=1, and trusts unmapped blocks to read as zeros when LBPRZ=1,
//!   so LBPRZ is only set for a thin unit that really zeroes. Byte 13's low nibble is the LOGICAL
//!   BLOCKS PER PHYSICAL BLOCK EXPONENT; the LOWEST ALIGNED LBA is 0.

use super::geometry::LuGeometry;

/// READ CAPACITY(10) data: RETURNED LOGICAL BLOCK ADDRESS and LOGICAL BLOCK LENGTH IN BYTES.
pub fn read_capacity10(geom: &LuGeometry) -> [u8; 8] {
    let last = u32::try_from(geom.last_lba()).unwrap_or(u32::MAX);
    let mut d = [0u8; 8];
    d[0..4].copy_from_slice(&last.to_be_bytes());
    d[4..8].copy_from_slice(&geom.block_size.to_be_bytes());
    d
}

/// READ CAPACITY(16) data, 32 bytes; the caller truncates to the allocation length.
pub fn read_capacity16(geom: &LuGeometry) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[0..8].copy_from_slice(&geom.last_lba().to_be_bytes());
    d[8..12].copy_from_slice(&geom.block_size.to_be_bytes());
    // Byte 12: P_TYPE/PROT_EN 0 (no protection information).
    d[13] = geom.physical_block_exp & 0x0F;
    if geom.thin {
        d[14] = 0x80; // LBPME
        if geom.lbprz {
            d[14] |= 0x40; // LBPRZ
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc10() {
        assert_eq!(
            read_capacity10(&LuGeometry::new(512, 2048)),
            [0, 0, 0x07, 0xFF, 0, 0, 0x02, 0]
        );
        assert_eq!(
            read_capacity10(&LuGeometry::new(4096, 1 << 32)),
            [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x10, 0]
        );
        // Exactly 2^32 - 1 blocks: last LBA FFFFFFFEh still fits.
        assert_eq!(
            &read_capacity10(&LuGeometry::new(512, 0xFFFF_FFFF))[..4],
            &[0xFF, 0xFF, 0xFF, 0xFE]
        );
        assert_eq!(
            &read_capacity10(&LuGeometry::new(512, (1 << 32) + 1))[..4],
            &[0xFF; 4]
        );
        assert_eq!(&read_capacity10(&LuGeometry::new(512, 0))[..4], &[0; 4]);
    }

    #[test]
    fn rc16() {
        let mut g = LuGeometry::new(512, 0x1_2345_6789);
        g.physical_block_exp = 3;
        let d = read_capacity16(&g);
        assert_eq!(
            &d[..12],
            &[0, 0, 0, 0x01, 0x23, 0x45, 0x67, 0x88, 0, 0, 0x02, 0x00]
        );
        assert_eq!(&d[12..16], &[0x00, 0x03, 0x00, 0x00]);
        assert!(d[16..].iter().all(|&b| b == 0));
        g.thin = true;
        assert_eq!(read_capacity16(&g)[14], 0x80);
        g.lbprz = true;
        assert_eq!(read_capacity16(&g)[14], 0xC0);
        g.thin = false;
        assert_eq!(read_capacity16(&g)[14], 0x00, "LBPRZ only with LBPME");
    }
}
