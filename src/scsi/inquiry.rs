//! INQUIRY (SPC-4 §6.6): the identity of a logical unit and its standard INQUIRY data
//! (§6.6.2). The VPD pages (EVPD=1) are in [`super::vpd`].
//!
//! What we claim: peripheral device type 00h (SBC direct access), VERSION 06h (SPC-4), RESPONSE
//! DATA FORMAT 2 with HISUP=1 (hierarchical LUN addressing, SAM-5 LUN structure), TPGS=01b
//! (implicit ALUA only: REPORT TARGET PORT GROUPS works, SET TARGET PORT GROUPS does not exist),
//! CMDQUE=1, and the version descriptors SAM-5, iSCSI, SPC-4 and SBC-3 (all "no version
//! claimed").
//!
//! Traps:
//! - ADDITIONAL LENGTH is the length minus 5 (libiscsi `Inquiry.Standard` compares it with what
//!   it received); the 96-byte layout puts the version descriptors at bytes 58..74.
//! - VENDOR/PRODUCT/REVISION are left-aligned, space-padded printable ASCII (SPC-4 §4.4.1):
//!   anything else in a configured name is replaced, never passed through.
//! - A LUN that does not exist still answers INQUIRY, with PERIPHERAL QUALIFIER 011b and device
//!   type 1Fh ([`inquiry_no_lun`]); Linux's scan depends on that byte being 7Fh.
//! - The caller truncates every response to the allocation length; the lengths inside stay those
//!   of the full response.

use super::geometry::LuGeometry;
use super::sense::CommandError;
use super::vpd;

/// Who a logical unit is: what INQUIRY and the Device Identification VPD page report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuIdentity {
    /// Stable unique id of the LU; the NAA designator and T10 vendor id derive from it.
    pub uuid: [u8; 16],
    /// Unit serial number (VPD 80h); the UUID in hex when empty.
    pub serial: String,
    /// 24-bit IEEE OUI: with one, the NAA designator is IEEE Registered Extended (6h), otherwise
    /// Locally Assigned (3h).
    pub oui: Option<u32>,
    pub vendor: [u8; 8],
    pub product: [u8; 16],
    pub revision: [u8; 4],
    /// The target port's SCSI name: `"iqn.…,t,0x0001"` (iSCSI target name, ",t,0x", target
    /// portal group tag in hex: the iSCSI target port name of RFC 7143 and SPC-4's SCSI name
    /// string designator). The part before ",t," is the target device name.
    pub target_port_name: String,
    pub relative_port_id: u16,
    pub target_port_group: u16,
    /// SCSI name string of the LU (`"naa.…"`, `"eui.…"` or `"iqn.…"`); derived from the NAA
    /// designator when empty.
    pub lu_name: String,
}

/// Default T10 vendor identification.
pub const DEFAULT_VENDOR: [u8; 8] = *b"RINGSAN ";
/// Default product identification.
pub const DEFAULT_PRODUCT: [u8; 16] = *b"VIRTUAL-DISK    ";
/// Default product revision level.
pub const DEFAULT_REVISION: [u8; 4] = *b"0001";

/// Length of our standard INQUIRY data.
pub const STANDARD_INQUIRY_LEN: usize = 96;

/// Version descriptors (SPC-4 §6.6.2): SAM-5, iSCSI, SPC-4, SBC-3, each "no version claimed".
pub const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0960, 0x0460, 0x04C0];

/// Peripheral qualifier 000b, device type 00h (direct access block device).
pub const PERIPHERAL_DISK: u8 = 0x00;
/// Peripheral qualifier 011b, device type 1Fh: no logical unit here.
pub const PERIPHERAL_NO_LUN: u8 = 0x7F;

impl LuIdentity {
    /// An identity with the default vendor, product and revision. `serial` may be `None` (the
    /// UUID in hex is reported), `lu_name` empty (a `naa.` name is derived).
    pub fn new(
        uuid: [u8; 16],
        serial: impl Into<Option<String>>,
        oui: Option<u32>,
        target_port_name: impl Into<String>,
        relative_port_id: u16,
        target_port_group: u16,
        lu_name: impl Into<String>,
    ) -> Self {
        Self {
            uuid,
            serial: serial.into().unwrap_or_default(),
            oui,
            vendor: DEFAULT_VENDOR,
            product: DEFAULT_PRODUCT,
            revision: DEFAULT_REVISION,
            target_port_name: target_port_name.into(),
            relative_port_id,
            target_port_group,
            lu_name: lu_name.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn example() -> Self {
        Self::new(
            [
                0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab,
                0xcd, 0xef,
            ],
            "SN0001".to_string(),
            None,
            "iqn.2024-01.org.ringsan:t1,t,0x0001",
            3,
            7,
            "",
        )
    }
}

/// A left-aligned, space-padded ASCII field of `N` bytes from `s` (SPC-4 §4.4.1): characters
/// outside 20h..7Eh become `'?'`, excess is cut.
pub fn ascii_field<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    for (o, c) in out.iter_mut().zip(s.bytes()) {
        *o = printable(c);
    }
    out
}

fn printable(c: u8) -> u8 {
    if (0x20..=0x7E).contains(&c) {
        c
    } else {
        b'?'
    }
}

fn standard(
    peripheral: u8,
    vendor: &[u8; 8],
    product: &[u8; 16],
    revision: &[u8; 4],
    tpgs: bool,
) -> Vec<u8> {
    let mut d = vec![0u8; STANDARD_INQUIRY_LEN];
    d[0] = peripheral;
    d[1] = 0x00; // RMB=0: not removable
    d[2] = 0x06; // SPC-4
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = (STANDARD_INQUIRY_LEN - 5) as u8;
    d[5] = if tpgs { 0x10 } else { 0x00 }; // TPGS=01b: implicit ALUA
    d[6] = 0x00;
    d[7] = 0x02; // CMDQUE
    for (dst, src) in d[8..16].iter_mut().zip(vendor) {
        *dst = printable(*src);
    }
    for (dst, src) in d[16..32].iter_mut().zip(product) {
        *dst = printable(*src);
    }
    for (dst, src) in d[32..36].iter_mut().zip(revision) {
        *dst = printable(*src);
    }
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// Standard INQUIRY data (SPC-4 §6.6.2) of an existing LU: 96 bytes.
pub fn standard_inquiry(id: &LuIdentity) -> Vec<u8> {
    standard(PERIPHERAL_DISK, &id.vendor, &id.product, &id.revision, true)
}

/// Standard INQUIRY data for a LUN with no logical unit: PERIPHERAL QUALIFIER 011b, type 1Fh.
pub fn inquiry_no_lun() -> Vec<u8> {
    standard(
        PERIPHERAL_NO_LUN,
        &DEFAULT_VENDOR,
        &DEFAULT_PRODUCT,
        &DEFAULT_REVISION,
        false,
    )
}

/// The INQUIRY response: standard data for EVPD=0 (PAGE CODE must be 0), otherwise the VPD page.
/// INVALID FIELD IN CDB (byte 2) for a page code that is not allowed.
pub fn inquiry(
    evpd: bool,
    page: u8,
    id: &LuIdentity,
    geom: &LuGeometry,
) -> Result<Vec<u8>, CommandError> {
    if !evpd {
        if page != 0 {
            return Err(CommandError::invalid_field_in_cdb(2, None));
        }
        return Ok(standard_inquiry(id));
    }
    vpd::vpd_page(page, id, geom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::Asc;

    #[test]
    fn standard_layout() {
        let id = LuIdentity::example();
        let d = standard_inquiry(&id);
        assert_eq!(d.len(), 96);
        assert_eq!(d[0], 0x00);
        assert_eq!(d[1], 0x00);
        assert_eq!(d[2], 0x06);
        assert_eq!(d[3], 0x12);
        assert_eq!(usize::from(d[4]), d.len() - 5);
        assert_eq!(d[5], 0x10, "TPGS=01b");
        assert_eq!(d[6], 0x00);
        assert_eq!(d[7], 0x02, "CMDQUE");
        assert_eq!(&d[8..16], b"RINGSAN ");
        assert_eq!(&d[16..32], b"VIRTUAL-DISK    ");
        assert_eq!(&d[32..36], b"0001");
        assert!(d[36..58].iter().all(|&b| b == 0));
        assert_eq!(
            &d[58..66],
            &[0x00, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xC0]
        );
        assert!(d[66..].iter().all(|&b| b == 0));
        // AERC / TRMTSK clear (libiscsi).
        assert_eq!(d[3] & 0xC0, 0);
    }

    #[test]
    fn ascii_sanitized() {
        let mut id = LuIdentity::example();
        id.vendor = *b"AB\x01\xFFCDEF";
        id.product = ascii_field("caf\u{e9} product name that is long");
        let d = standard_inquiry(&id);
        assert_eq!(&d[8..16], b"AB??CDEF");
        assert_eq!(&d[16..32], b"caf?? product na");
        assert!(d[8..36].iter().all(|&b| (0x20..=0x7E).contains(&b)));
        assert_eq!(ascii_field::<4>("ab"), *b"ab  ");
    }

    #[test]
    fn no_lun() {
        let d = inquiry_no_lun();
        assert_eq!(d[0], 0x7F);
        assert_eq!(d[2], 0x06);
        assert_eq!(d[3] & 0x0F, 2);
        assert_eq!(usize::from(d[4]), d.len() - 5);
        assert_eq!(d[5], 0);
    }

    #[test]
    fn constructor() {
        let id = LuIdentity::new([7; 16], None, Some(0x001405), "iqn.x,t,0x0002", 2, 9, "");
        assert_eq!(id.serial, "");
        assert_eq!(
            (id.oui, id.relative_port_id, id.target_port_group),
            (Some(0x001405), 2, 9)
        );
        assert_eq!(id.vendor, DEFAULT_VENDOR);
        assert_eq!(
            &vpd::unit_serial_number(&id)[4..],
            hex::encode([7u8; 16]).as_bytes()
        );
        let id = LuIdentity::new(
            [7; 16],
            "S1".to_string(),
            None,
            String::new(),
            1,
            1,
            "naa.1",
        );
        assert_eq!(id.serial, "S1");
        assert_eq!(id.lu_name, "naa.1");
    }

    #[test]
    fn dispatch() {
        let id = LuIdentity::example();
        let g = LuGeometry::new(512, 100);
        assert_eq!(inquiry(false, 0, &id, &g).unwrap(), standard_inquiry(&id));
        let e = inquiry(false, 0x83, &id, &g).unwrap_err();
        assert_eq!(e.sense.unwrap().asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(inquiry(true, 0x80, &id, &g).unwrap()[1], 0x80);
        assert!(inquiry(true, 0xC0, &id, &g).is_err());
    }
}
