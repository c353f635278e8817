//! Vital product data pages (INQUIRY with EVPD=1): SPC-4 §7.8 (00h Supported VPD Pages, 80h Unit
//! Serial Number, 83h Device Identification, 86h Extended INQUIRY Data) and SBC-3 §6.5 (B0h Block
//! Limits, B1h Block Device Characteristics, B2h Logical Block Provisioning).
//!
//! Every page starts with the same 4-byte header: peripheral qualifier/type, page code, and a
//! 2-byte PAGE LENGTH that counts the bytes after the header.
//!
//! Traps:
//! - 83h: Linux and multipath build the WWID from the first NAA designator with association 00b
//!   (the LU), so it must be stable and unique: it is derived from the LU's UUID, NAA 6h (IEEE
//!   Registered Extended, 16 bytes) when an OUI is configured, NAA 3h (Locally Assigned, 8 bytes)
//!   otherwise. Target port designators (association 01b) carry PIV=1 and protocol identifier 5h
//!   (iSCSI) or scsi_dh_alua cannot find its relative port and port group.
//! - A SCSI name string designator is NUL-terminated and NUL-padded to a multiple of 4 bytes, at
//!   most 252 bytes (the length byte cannot say 256).
//! - B0h: the page length is 3Ch for SBC-3 (libiscsi `Inquiry.BlockLimits`); with LBPU=0 the
//!   unmap limits must be 0, with LBPU=1 they must be non-zero; WSNZ=1 because WRITE SAME with 0
//!   blocks is refused.
//! - B2h: LBPRZ is only claimed on a thin unit whose unmapped blocks read as zeros; PAGE LENGTH is
//!   0004h (no provisioning group descriptor, DP=0).

use super::geometry::LuGeometry;
use super::inquiry::LuIdentity;
use super::sense::CommandError;

/// The pages we support, ascending (the order page 00h must list them in).
pub const SUPPORTED_VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2];

pub const PAGE_SUPPORTED: u8 = 0x00;
pub const PAGE_UNIT_SERIAL: u8 = 0x80;
pub const PAGE_DEVICE_ID: u8 = 0x83;
pub const PAGE_EXTENDED_INQUIRY: u8 = 0x86;
pub const PAGE_BLOCK_LIMITS: u8 = 0xB0;
pub const PAGE_BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
pub const PAGE_LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;

/// Protocol identifier for iSCSI (SPC-4 protocol identifier values).
pub const PROTOCOL_ISCSI: u8 = 0x5;

const CODE_SET_BINARY: u8 = 0x1;
const CODE_SET_ASCII: u8 = 0x2;
const CODE_SET_UTF8: u8 = 0x3;
const ASSOC_LU: u8 = 0x00;
const ASSOC_TARGET_PORT: u8 = 0x10;
const ASSOC_TARGET_DEVICE: u8 = 0x20;
const PIV: u8 = 0x80;
const TYPE_T10_VENDOR_ID: u8 = 0x1;
const TYPE_NAA: u8 = 0x3;
const TYPE_RELATIVE_TARGET_PORT: u8 = 0x4;
const TYPE_TARGET_PORT_GROUP: u8 = 0x5;
const TYPE_SCSI_NAME: u8 = 0x8;

/// Longest serial number we report.
const MAX_SERIAL: usize = 252;

pub fn is_supported_page(page: u8) -> bool {
    SUPPORTED_VPD_PAGES.contains(&page)
}

/// The VPD page `page`, or INVALID FIELD IN CDB (byte 2) when we do not support it.
pub fn vpd_page(page: u8, id: &LuIdentity, geom: &LuGeometry) -> Result<Vec<u8>, CommandError> {
    Ok(match page {
        PAGE_SUPPORTED => supported_pages(),
        PAGE_UNIT_SERIAL => unit_serial_number(id),
        PAGE_DEVICE_ID => device_identification(id),
        PAGE_EXTENDED_INQUIRY => extended_inquiry(),
        PAGE_BLOCK_LIMITS => block_limits(geom),
        PAGE_BLOCK_DEVICE_CHARACTERISTICS => block_device_characteristics(geom),
        PAGE_LOGICAL_BLOCK_PROVISIONING => logical_block_provisioning(geom),
        _ => return Err(CommandError::invalid_field_in_cdb(2, None)),
    })
}

fn page(code: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + body.len());
    v.extend_from_slice(&[0x00, code]);
    v.extend_from_slice(&(body.len().min(0xFFFF) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// 00h: the supported pages, ascending.
pub fn supported_pages() -> Vec<u8> {
    page(PAGE_SUPPORTED, &SUPPORTED_VPD_PAGES)
}

/// The serial as reported: printable ASCII, the UUID in hex when none is configured.
pub fn serial_string(id: &LuIdentity) -> String {
    let s: String = id
        .serial
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .take(MAX_SERIAL)
        .collect();
    if s.trim().is_empty() {
        hex::encode(id.uuid)
    } else {
        s
    }
}

/// 80h: PRODUCT SERIAL NUMBER.
pub fn unit_serial_number(id: &LuIdentity) -> Vec<u8> {
    page(PAGE_UNIT_SERIAL, serial_string(id).as_bytes())
}

/// The NAA designator of the LU: 6h IEEE Registered Extended (OUI + 100 bits from the UUID)
/// when an OUI is set, 3h Locally Assigned (60 bits from the UUID) otherwise.
pub fn naa_designator(id: &LuIdentity) -> Vec<u8> {
    let v = u128::from_be_bytes(id.uuid);
    match id.oui {
        Some(oui) => {
            let vendor = (v ^ (v >> 100)) & ((1u128 << 100) - 1);
            let naa = (6u128 << 124) | (u128::from(oui & 0x00FF_FFFF) << 100) | vendor;
            naa.to_be_bytes().to_vec()
        }
        None => {
            let folded = ((v >> 64) as u64) ^ (v as u64);
            let naa = (3u64 << 60) | (folded & ((1u64 << 60) - 1));
            naa.to_be_bytes().to_vec()
        }
    }
}

/// The LU's SCSI name string: `lu_name`, or `"naa."` and the NAA designator in upper-case hex.
pub fn lu_scsi_name(id: &LuIdentity) -> String {
    if id.lu_name.is_empty() {
        format!("naa.{}", hex::encode_upper(naa_designator(id)))
    } else {
        id.lu_name.clone()
    }
}

fn designator(out: &mut Vec<u8>, protocol_code_set: u8, piv_assoc_type: u8, value: &[u8]) {
    out.extend_from_slice(&[protocol_code_set, piv_assoc_type, 0, value.len() as u8]);
    out.extend_from_slice(value);
}

/// A SCSI name string designator value: UTF-8, NUL-terminated, NUL-padded to a multiple of 4,
/// cut (at a character boundary) so that it fits 252 bytes.
fn scsi_name_value(name: &str) -> Vec<u8> {
    let mut end = name.len().min(251);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut v = name.as_bytes()[..end].to_vec();
    v.resize((end + 1).next_multiple_of(4), 0);
    v
}

/// 83h: designators for the LU (NAA, T10 vendor id, SCSI name string), the target port (SCSI
/// name string, relative target port, target port group) and the target device (SCSI name).
pub fn device_identification(id: &LuIdentity) -> Vec<u8> {
    let mut d = Vec::with_capacity(256);
    designator(
        &mut d,
        CODE_SET_BINARY,
        ASSOC_LU | TYPE_NAA,
        &naa_designator(id),
    );

    let mut t10 = id.vendor.to_vec();
    for b in &mut t10 {
        if !(0x20..=0x7E).contains(b) {
            *b = b'?';
        }
    }
    t10.extend_from_slice(hex::encode(id.uuid).as_bytes());
    designator(&mut d, CODE_SET_ASCII, ASSOC_LU | TYPE_T10_VENDOR_ID, &t10);

    designator(
        &mut d,
        CODE_SET_UTF8,
        ASSOC_LU | TYPE_SCSI_NAME,
        &scsi_name_value(&lu_scsi_name(id)),
    );

    let iscsi = PROTOCOL_ISCSI << 4;
    if !id.target_port_name.is_empty() {
        let v = scsi_name_value(&id.target_port_name);
        designator(
            &mut d,
            iscsi | CODE_SET_UTF8,
            PIV | ASSOC_TARGET_PORT | TYPE_SCSI_NAME,
            &v,
        );
    }
    let rtp = id.relative_port_id.to_be_bytes();
    designator(
        &mut d,
        iscsi | CODE_SET_BINARY,
        PIV | ASSOC_TARGET_PORT | TYPE_RELATIVE_TARGET_PORT,
        &[0, 0, rtp[0], rtp[1]],
    );
    let tpg = id.target_port_group.to_be_bytes();
    designator(
        &mut d,
        iscsi | CODE_SET_BINARY,
        PIV | ASSOC_TARGET_PORT | TYPE_TARGET_PORT_GROUP,
        &[0, 0, tpg[0], tpg[1]],
    );
    if let Some((device, _)) = id.target_port_name.split_once(",t,") {
        if !device.is_empty() {
            let v = scsi_name_value(device);
            designator(
                &mut d,
                iscsi | CODE_SET_UTF8,
                PIV | ASSOC_TARGET_DEVICE | TYPE_SCSI_NAME,
                &v,
            );
        }
    }
    page(PAGE_DEVICE_ID, &d)
}

/// 86h: HEADSUP/ORDSUP/SIMPSUP (all task attributes), V_SUP (a volatile write cache: WCE is
/// changeable), LUICLR=1 (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED on every LU of the
/// I_T nexus, as SPC-4 requires). No protection information.
pub fn extended_inquiry() -> Vec<u8> {
    let mut b = [0u8; 0x3C];
    b[1] = 0x07; // HEADSUP, ORDSUP, SIMPSUP
    b[2] = 0x01; // V_SUP
    b[3] = 0x01; // LUICLR
    page(PAGE_EXTENDED_INQUIRY, &b)
}

/// B0h: Block Limits (SBC-3 §6.5.3), page length 3Ch.
pub fn block_limits(geom: &LuGeometry) -> Vec<u8> {
    let mut b = [0u8; 0x3C];
    b[0] = 0x01; // WSNZ
    b[1] = geom.max_compare_write_blocks;
    let granularity = u16::try_from(geom.blocks_per_physical()).unwrap_or(u16::MAX);
    b[2..4].copy_from_slice(&granularity.to_be_bytes());
    b[4..8].copy_from_slice(&geom.max_transfer_blocks.to_be_bytes());
    b[8..12].copy_from_slice(&geom.optimal_transfer_blocks.to_be_bytes());
    // 12..16 MAXIMUM PREFETCH LENGTH: 0, no limit.
    if geom.thin {
        b[16..20].copy_from_slice(&geom.max_unmap_lba_count.to_be_bytes());
        b[20..24].copy_from_slice(&geom.max_unmap_descriptors.to_be_bytes());
        b[24..28].copy_from_slice(&geom.unmap_granularity_blocks.to_be_bytes());
        b[28] = 0x80; // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
    }
    b[32..40].copy_from_slice(&geom.max_write_same_blocks.to_be_bytes());
    page(PAGE_BLOCK_LIMITS, &b)
}

/// B1h: Block Device Characteristics (SBC-3 §6.5.2): MEDIUM ROTATION RATE 0001h, non-rotating.
pub fn block_device_characteristics(_geom: &LuGeometry) -> Vec<u8> {
    let mut b = [0u8; 0x3C];
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    page(PAGE_BLOCK_DEVICE_CHARACTERISTICS, &b)
}

/// B2h: Logical Block Provisioning (SBC-3 §6.5.4): LBPU, LBPWS, LBPWS10 and PROVISIONING TYPE
/// 010b (thin) on a thin unit, LBPRZ per geometry; all zero (fully provisioned) otherwise.
pub fn logical_block_provisioning(geom: &LuGeometry) -> Vec<u8> {
    let mut b = [0u8; 4];
    if geom.thin {
        b[1] = 0x80 | 0x40 | 0x20; // LBPU, LBPWS, LBPWS10
        if geom.lbprz {
            b[1] |= 0x04;
        }
        b[2] = 0x02; // thin provisioned
    }
    page(PAGE_LOGICAL_BLOCK_PROVISIONING, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// Splits a page 83h body into (byte0, byte1, value) designators, checking the lengths.
    fn designators(p: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        assert_eq!(usize::from(be16(p, 2)), p.len() - 4);
        let mut out = Vec::new();
        let mut at = 4;
        while at < p.len() {
            let len = usize::from(p[at + 3]);
            assert_eq!(p[at + 2], 0);
            out.push((p[at], p[at + 1], p[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        assert_eq!(at, p.len());
        out
    }

    #[test]
    fn page_00() {
        assert_eq!(
            supported_pages(),
            vec![0, 0, 0, 7, 0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2]
        );
        let id = LuIdentity::example();
        let g = LuGeometry::new(512, 8);
        for p in SUPPORTED_VPD_PAGES {
            let d = vpd_page(p, &id, &g).unwrap();
            assert_eq!(d[0], 0);
            assert_eq!(d[1], p);
            assert_eq!(usize::from(be16(&d, 2)), d.len() - 4);
        }
        let e = vpd_page(0x81, &id, &g).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_FIELD_IN_CDB);
    }

    #[test]
    fn page_80() {
        let mut id = LuIdentity::example();
        assert_eq!(unit_serial_number(&id), b"\x00\x80\x00\x06SN0001".to_vec());
        id.serial = "\u{1}\u{2}".into();
        let d = unit_serial_number(&id);
        assert_eq!(&d[4..], hex::encode(id.uuid).as_bytes());
        id.serial = "x".repeat(400);
        assert_eq!(unit_serial_number(&id).len(), 4 + MAX_SERIAL);
    }

    #[test]
    fn page_83_naa3() {
        let id = LuIdentity::example();
        let p = device_identification(&id);
        assert_eq!(&p[..2], &[0x00, 0x83]);
        let d = designators(&p);
        assert_eq!(d.len(), 7);
        // NAA 3h, LU association, binary, 8 bytes.
        assert_eq!((d[0].0, d[0].1), (0x01, 0x03));
        assert_eq!(d[0].2.len(), 8);
        assert_eq!(d[0].2[0] >> 4, 3);
        let u = id.uuid;
        let a = u64::from_be_bytes(u[..8].try_into().unwrap());
        let b = u64::from_be_bytes(u[8..].try_into().unwrap());
        assert_eq!(
            u64::from_be_bytes(d[0].2.clone().try_into().unwrap()),
            (3 << 60) | ((a ^ b) & ((1 << 60) - 1))
        );
        // T10 vendor id: ASCII, vendor + uuid hex.
        assert_eq!((d[1].0, d[1].1), (0x02, 0x01));
        assert_eq!(&d[1].2[..8], b"RINGSAN ");
        assert_eq!(&d[1].2[8..], hex::encode(u).as_bytes());
        // LU SCSI name: UTF-8, "naa." + hex, NUL padded to 4.
        assert_eq!((d[2].0, d[2].1), (0x03, 0x08));
        let name = format!("naa.{}", hex::encode_upper(&d[0].2));
        assert_eq!(&d[2].2[..name.len()], name.as_bytes());
        assert_eq!(d[2].2.len() % 4, 0);
        assert!(d[2].2[name.len()..].iter().all(|&b| b == 0));
        assert!(d[2].2.len() > name.len());
        // Target port SCSI name: iSCSI, UTF-8, PIV, target port, type 8.
        assert_eq!((d[3].0, d[3].1), (0x53, 0x98));
        assert_eq!(&d[3].2[..35], b"iqn.2024-01.org.ringsan:t1,t,0x0001");
        assert_eq!(d[3].2.len(), 36);
        // Relative target port 3.
        assert_eq!(
            (d[4].0, d[4].1, d[4].2.clone()),
            (0x51, 0x94, vec![0, 0, 0, 3])
        );
        // Target port group 7.
        assert_eq!(
            (d[5].0, d[5].1, d[5].2.clone()),
            (0x51, 0x95, vec![0, 0, 0, 7])
        );
        // Target device name.
        assert_eq!((d[6].0, d[6].1), (0x53, 0xA8));
        assert_eq!(&d[6].2[..26], b"iqn.2024-01.org.ringsan:t1");
        assert_eq!(d[6].2.len(), 28);
    }

    #[test]
    fn page_83_naa6() {
        let mut id = LuIdentity::example();
        id.oui = Some(0x00_14_05);
        id.lu_name = "eui.0123456789ABCDEF".into();
        id.target_port_name = String::new();
        let d = designators(&device_identification(&id));
        assert_eq!(d.len(), 5, "no port name, no device name");
        assert_eq!(d[0].2.len(), 16);
        // NAA 6h, IEEE company id 001405h, then 100 bits of vendor specific data.
        assert_eq!(
            &d[0].2[..4],
            &[0x60, 0x01, 0x40, 0x50 | (id.uuid[3] & 0x0F)]
        );
        assert_eq!(&d[0].2[4..12], &id.uuid[4..12]);
        let v = u128::from_be_bytes(id.uuid);
        let low28 = ((v ^ (v >> 100)) & 0x0FFF_FFFF) as u32;
        assert_eq!(be32(&d[0].2, 12) & 0x0FFF_FFFF, low28);
        assert_eq!(&d[2].2, b"eui.0123456789ABCDEF\0\0\0\0");
        // Stable: same UUID, same designator.
        assert_eq!(naa_designator(&id), naa_designator(&id.clone()));
        let mut other = id.clone();
        other.uuid[15] ^= 1;
        assert_ne!(naa_designator(&id), naa_designator(&other));
    }

    #[test]
    fn scsi_name_limits() {
        assert_eq!(scsi_name_value("abc"), b"abc\0".to_vec());
        assert_eq!(scsi_name_value("abcd"), b"abcd\0\0\0\0".to_vec());
        let long = "é".repeat(200);
        let v = scsi_name_value(&long);
        assert!(v.len() <= 252);
        assert_eq!(v.len() % 4, 0);
        assert!(std::str::from_utf8(&v[..v.iter().position(|&b| b == 0).unwrap()]).is_ok());
    }

    #[test]
    fn page_86() {
        let p = extended_inquiry();
        assert_eq!(p.len(), 64);
        assert_eq!(&p[..8], &[0x00, 0x86, 0x00, 0x3C, 0x00, 0x07, 0x01, 0x01]);
        assert!(p[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn page_b0_thick() {
        let mut g = LuGeometry::new(512, 1 << 30);
        g.physical_block_exp = 3;
        let p = block_limits(&g);
        assert_eq!(p.len(), 64);
        assert_eq!(&p[..4], &[0x00, 0xB0, 0x00, 0x3C]);
        assert_eq!(p[4], 0x01, "WSNZ");
        assert_eq!(p[5], 1, "MAXIMUM COMPARE AND WRITE LENGTH");
        assert_eq!(be16(&p, 6), 8, "granularity = physical block");
        assert_eq!(be32(&p, 8), g.max_transfer_blocks);
        assert_eq!(be32(&p, 12), g.optimal_transfer_blocks);
        assert_eq!(be32(&p, 16), 0);
        assert_eq!(be32(&p, 20), 0, "no UNMAP: max unmap LBA count 0");
        assert_eq!(be32(&p, 24), 0, "no UNMAP: max descriptors 0");
        assert_eq!(be32(&p, 28), 0);
        assert_eq!(be32(&p, 32), 0);
        assert_eq!(
            u64::from_be_bytes(p[36..44].try_into().unwrap()),
            g.max_write_same_blocks
        );
        assert!(p[44..].iter().all(|&b| b == 0));
    }

    #[test]
    fn page_b0_thin() {
        let mut g = LuGeometry::new(4096, 1 << 30);
        g.thin = true;
        g.unmap_granularity_blocks = 8;
        let p = block_limits(&g);
        assert_eq!(be32(&p, 20), g.max_unmap_lba_count);
        assert_eq!(be32(&p, 24), g.max_unmap_descriptors);
        assert_eq!(be32(&p, 28), 8);
        assert_eq!(be32(&p, 32), 0x8000_0000, "UGAVALID, alignment 0");
        assert!(be32(&p, 20) <= 1024 * 1024 && be32(&p, 20) > 0);
    }

    #[test]
    fn page_b1() {
        let p = block_device_characteristics(&LuGeometry::new(512, 1));
        assert_eq!(p.len(), 64);
        assert_eq!(&p[..6], &[0x00, 0xB1, 0x00, 0x3C, 0x00, 0x01]);
        assert!(p[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn page_b2() {
        let mut g = LuGeometry::new(512, 1);
        assert_eq!(
            logical_block_provisioning(&g),
            vec![0, 0xB2, 0, 4, 0, 0, 0, 0]
        );
        g.lbprz = true;
        assert_eq!(logical_block_provisioning(&g)[5], 0, "LBPRZ only when thin");
        g.thin = true;
        assert_eq!(
            logical_block_provisioning(&g),
            vec![0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]
        );
        g.lbprz = false;
        assert_eq!(logical_block_provisioning(&g)[5], 0xE0);
    }
}
