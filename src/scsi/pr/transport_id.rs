//! iSCSI TransportIDs (SPC-4 §7.6.4.6, protocol identifier 5h): how PERSISTENT RESERVE OUT
//! (SPEC_I_PT, REGISTER AND MOVE, SPC-4 §6.16.3 and §6.16.4) names initiator ports and how READ
//! FULL STATUS (SPC-4 §6.15.5) reports them.
//!
//! Two formats:
//! - 00b: `iSCSI NAME` only, null terminated: every initiator port of that initiator device
//!   (every ISID).
//! - 01b: `iSCSI NAME` + `,i,0x` + the ISID as 12 hexadecimal ASCII digits, null terminated: one
//!   initiator port, named exactly as [`crate::scsi::nexus::initiator_port_name`] names it.
//!
//! Layout: byte 0 FORMAT CODE (bits 7-6) and PROTOCOL IDENTIFIER (bits 3-0), byte 1 reserved,
//! bytes 2-3 ADDITIONAL LENGTH (the bytes after byte 3), then the text, null padded.
//!
//! Traps:
//! - ADDITIONAL LENGTH shall be a multiple of four and at least 20: we build them so, and accept
//!   others as long as they fit (being strict buys nothing and breaks odd initiators).
//! - The ISID is matched case-insensitively and kept in lowercase, the way the nexus names it.
//! - Names are at most 223 bytes (RFC 7143 §4.2.7.1); a comma or a control character in a name
//!   would make our port names ambiguous, so such a TransportID is refused.

use serde::{Deserialize, Serialize};

/// The iSCSI PROTOCOL IDENTIFIER (SPC-4 §7.6.1, protocol identifier values).
pub const PROTOCOL_ISCSI: u8 = 0x5;

/// The longest iSCSI name (RFC 7143 §4.2.7.1).
pub const MAX_NAME_LEN: usize = 223;

/// The separator between the iSCSI name and the ISID in an initiator port name.
pub const ISID_SEPARATOR: &str = ",i,0x";

/// An iSCSI TransportID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransportId {
    /// The iSCSI name of the initiator device.
    pub name: String,
    /// The ISID as 12 lowercase hexadecimal digits (format 01b); `None` for format 00b, which
    /// names every initiator port of `name`.
    pub isid: Option<String>,
}

/// Why a TransportID was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportIdError {
    /// Fewer bytes than the header or its ADDITIONAL LENGTH need (a truncated TransportID).
    Truncated,
    /// A field is invalid: `byte` (relative to the TransportID) and, when meaningful, `bit`.
    Invalid { byte: u16, bit: Option<u8> },
}

impl TransportId {
    /// A TransportID for one initiator port (format 01b).
    pub fn port(name: &str, isid: [u8; 6]) -> TransportId {
        TransportId {
            name: name.to_owned(),
            isid: Some(hex::encode(isid)),
        }
    }

    /// A TransportID for every port of an initiator device (format 00b).
    pub fn device(name: &str) -> TransportId {
        TransportId {
            name: name.to_owned(),
            isid: None,
        }
    }

    /// The TransportID naming the initiator port `initiator_port` (`IQN,i,0x<ISID>`, or a bare
    /// name for every port); `None` if that is not a valid name.
    pub fn from_initiator_port(initiator_port: &str) -> Option<TransportId> {
        let (name, isid) = split_initiator_port(initiator_port);
        if !valid_name(name) {
            return None;
        }
        match isid {
            None => Some(Self::device(name)),
            Some(isid) => {
                let isid = normalize_isid(isid)?;
                Some(TransportId {
                    name: name.to_owned(),
                    isid: Some(isid),
                })
            }
        }
    }

    /// The initiator port name this TransportID stands for: `IQN,i,0x<ISID>` for format 01b,
    /// the bare iSCSI name (every port of that initiator) for format 00b.
    pub fn initiator_port(&self) -> String {
        match &self.isid {
            Some(isid) => format!("{}{ISID_SEPARATOR}{isid}", self.name),
            None => self.name.clone(),
        }
    }

    /// The FORMAT CODE: 00b or 01b.
    pub const fn format_code(&self) -> u8 {
        if self.isid.is_some() {
            1
        } else {
            0
        }
    }

    /// Encodes the TransportID: ADDITIONAL LENGTH a multiple of four and at least 20, the text
    /// null terminated and null padded.
    pub fn encode(&self) -> Vec<u8> {
        let text = self.initiator_port();
        let mut body_len = (text.len() + 1).div_ceil(4) * 4;
        body_len = body_len.max(20);
        let mut out = Vec::with_capacity(4 + body_len);
        out.push((self.format_code() << 6) | PROTOCOL_ISCSI);
        out.push(0);
        // At most 4 + 223 + 5 + 12 + 1 rounded up: fits 16 bits.
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
        out.resize(4 + body_len, 0);
        out
    }

    /// Decodes the TransportID at the start of `buf`; returns it and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<(TransportId, usize), TransportIdError> {
        if buf.len() < 4 {
            return Err(TransportIdError::Truncated);
        }
        let format = buf[0] >> 6;
        if format > 1 {
            return Err(TransportIdError::Invalid {
                byte: 0,
                bit: Some(7),
            });
        }
        if buf[0] & 0x0F != PROTOCOL_ISCSI {
            return Err(TransportIdError::Invalid {
                byte: 0,
                bit: Some(3),
            });
        }
        let additional = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let total = 4 + additional;
        let Some(body) = buf.get(4..total) else {
            return Err(TransportIdError::Truncated);
        };
        let text_len = body.iter().position(|&b| b == 0).unwrap_or(body.len());
        let invalid_text = TransportIdError::Invalid { byte: 4, bit: None };
        let text = std::str::from_utf8(&body[..text_len]).map_err(|_| invalid_text)?;
        let tid = if format == 0 {
            if !valid_name(text) {
                return Err(invalid_text);
            }
            Self::device(text)
        } else {
            let Some(at) = find_separator(text) else {
                return Err(invalid_text);
            };
            let name = &text[..at];
            let isid = &text[at + ISID_SEPARATOR.len()..];
            if !valid_name(name) {
                return Err(invalid_text);
            }
            let Some(isid) = normalize_isid(isid) else {
                return Err(TransportIdError::Invalid {
                    byte: (4 + at + ISID_SEPARATOR.len()) as u16,
                    bit: None,
                });
            };
            TransportId {
                name: name.to_owned(),
                isid: Some(isid),
            }
        };
        Ok((tid, total))
    }
}

/// Splits an initiator port name into the iSCSI name and the ISID text, if any.
pub fn split_initiator_port(port: &str) -> (&str, Option<&str>) {
    match find_separator(port) {
        Some(at) => (&port[..at], Some(&port[at + ISID_SEPARATOR.len()..])),
        None => (port, None),
    }
}

/// Byte offset of the last `,i,0x` (ASCII case-insensitive) in `s`.
fn find_separator(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let sep = ISID_SEPARATOR.as_bytes();
    (0..=b.len().checked_sub(sep.len())?)
        .rev()
        .find(|&i| b[i..i + sep.len()].eq_ignore_ascii_case(sep))
}

/// Exactly 12 hexadecimal digits, returned in lowercase.
fn normalize_isid(isid: &str) -> Option<String> {
    (isid.len() == 12 && isid.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| isid.to_ascii_lowercase())
}

/// A non-empty name of at most 223 bytes without commas, spaces or control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(format: u8, text: &[u8], additional: u16) -> Vec<u8> {
        let mut v = vec![(format << 6) | PROTOCOL_ISCSI, 0];
        v.extend_from_slice(&additional.to_be_bytes());
        v.extend_from_slice(text);
        v.resize(4 + usize::from(additional), 0);
        v
    }

    #[test]
    fn format_01_round_trip() {
        let t = TransportId::port("iqn.1994-05.com.redhat:abc", [0x40, 0, 1, 0x37, 0, 0]);
        assert_eq!(
            t.initiator_port(),
            "iqn.1994-05.com.redhat:abc,i,0x400001370000"
        );
        let bytes = t.encode();
        assert_eq!(bytes[0], 0x45, "format 01b, protocol 5h");
        assert_eq!(bytes[1], 0);
        let additional = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        assert_eq!(bytes.len(), 4 + additional);
        assert_eq!(additional % 4, 0);
        assert!(additional >= 20);
        // Null terminated.
        assert_eq!(bytes[4 + t.initiator_port().len()], 0);
        assert_eq!(TransportId::decode(&bytes), Ok((t, bytes.len())));
    }

    #[test]
    fn format_00_round_trip_and_minimum_length() {
        let t = TransportId::device("iqn.a:b");
        let bytes = t.encode();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(bytes.len(), 24, "ADDITIONAL LENGTH is at least 20");
        assert_eq!(&bytes[4..11], b"iqn.a:b");
        assert!(bytes[11..].iter().all(|&b| b == 0));
        assert_eq!(TransportId::decode(&bytes), Ok((t.clone(), 24)));
        assert_eq!(t.initiator_port(), "iqn.a:b");
        // Trailing bytes after the TransportID are not ours.
        let mut more = bytes.clone();
        more.extend_from_slice(&[0xAA; 7]);
        assert_eq!(TransportId::decode(&more), Ok((t, 24)));
    }

    #[test]
    fn decode_is_lenient_about_case_and_padding() {
        let b = raw(1, b"iqn.x:y,I,0X40000137ABCD", 25);
        let (t, used) = TransportId::decode(&b).unwrap();
        assert_eq!(used, 29);
        assert_eq!(t.initiator_port(), "iqn.x:y,i,0x40000137abcd");
        // No terminating null: the whole field is the text.
        let text = b"iqn.x:y,i,0x400001370000";
        let b = raw(1, text, text.len() as u16);
        assert_eq!(
            TransportId::decode(&b).unwrap().0,
            TransportId::port("iqn.x:y", [0x40, 0, 1, 0x37, 0, 0])
        );
    }

    #[test]
    fn decode_refuses_garbage() {
        use TransportIdError::*;
        assert_eq!(TransportId::decode(&[]), Err(Truncated));
        assert_eq!(TransportId::decode(&[0x05, 0, 0]), Err(Truncated));
        assert_eq!(TransportId::decode(&[0x05, 0, 0, 20, 0]), Err(Truncated));
        // Fibre Channel (0h) and SAS (6h) TransportIDs.
        let mut b = raw(0, b"iqn.a:b", 20);
        b[0] = 0x00;
        assert_eq!(
            TransportId::decode(&b),
            Err(Invalid {
                byte: 0,
                bit: Some(3)
            })
        );
        b[0] = 0x06;
        assert!(matches!(
            TransportId::decode(&b),
            Err(Invalid { byte: 0, .. })
        ));
        // Formats 10b and 11b.
        b[0] = 0x85;
        assert_eq!(
            TransportId::decode(&b),
            Err(Invalid {
                byte: 0,
                bit: Some(7)
            })
        );
        // Empty name.
        assert!(matches!(
            TransportId::decode(&raw(0, b"", 20)),
            Err(Invalid { byte: 4, .. })
        ));
        // Format 01b without a separator, with a short ISID, with non-hex digits.
        assert!(TransportId::decode(&raw(1, b"iqn.a:b", 20)).is_err());
        assert!(TransportId::decode(&raw(1, b"iqn.a:b,i,0x4000", 20)).is_err());
        assert!(matches!(
            TransportId::decode(&raw(1, b"iqn.a:b,i,0x40000137zz00", 28)),
            Err(Invalid { byte: 16, .. })
        ));
        assert!(TransportId::decode(&raw(1, b",i,0x400001370000", 20)).is_err());
        // Commas, spaces, control characters, invalid UTF-8, overlong names.
        assert!(TransportId::decode(&raw(0, b"iqn.a,b", 20)).is_err());
        assert!(TransportId::decode(&raw(0, b"iqn a", 20)).is_err());
        assert!(TransportId::decode(&raw(0, b"iqn\x01a", 20)).is_err());
        assert!(TransportId::decode(&raw(0, b"iqn\xffa", 20)).is_err());
        let long = vec![b'a'; MAX_NAME_LEN + 1];
        assert!(TransportId::decode(&raw(0, &long, 228)).is_err());
        let ok = vec![b'a'; MAX_NAME_LEN];
        assert!(TransportId::decode(&raw(0, &ok, 224)).is_ok());
    }

    #[test]
    fn initiator_port_names() {
        assert_eq!(
            split_initiator_port("iqn.a:b,i,0x400001370000"),
            ("iqn.a:b", Some("400001370000"))
        );
        assert_eq!(split_initiator_port("iqn.a:b"), ("iqn.a:b", None));
        assert_eq!(
            TransportId::from_initiator_port("iqn.a:b,i,0x40000137AAAA"),
            Some(TransportId {
                name: "iqn.a:b".into(),
                isid: Some("40000137aaaa".into())
            })
        );
        assert_eq!(
            TransportId::from_initiator_port("iqn.a:b"),
            Some(TransportId::device("iqn.a:b"))
        );
        assert_eq!(TransportId::from_initiator_port("iqn.a:b,i,0x12"), None);
        assert_eq!(TransportId::from_initiator_port(""), None);
        // A name long enough to need more than the minimum length.
        let t = TransportId::port(&"n".repeat(40), [1, 2, 3, 4, 5, 6]);
        let b = t.encode();
        assert_eq!(b.len() % 4, 0);
        assert_eq!(TransportId::decode(&b).unwrap().0, t);
    }
}
