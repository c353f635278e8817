//! Login Request and Login Response (RFC 7143 §11.12, §11.13): the header side of the login
//! phase. The key=value negotiation in the data segment lives in `iscsi::login`/`iscsi::text`.

use super::bhs::{flag, invalid, Bhs, Opcode, PduError};

/// Login Request, opcode 0x03 (RFC 7143 §11.12). The I bit is always set on the wire.
///
/// Traps: T (transit) and C (continue) exclude each other; CSG/NSG value 2 is reserved and NSG
/// means something only with T. CmdSN is not advanced during login: every Login Request of the
/// phase carries the same CmdSN. A new session has TSIH 0; ISID + TSIH (with the initiator
/// name) identify the session. ExpStatSN is only meaningful after the first response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    /// Current stage, see [`super::login_stage`].
    pub csg: u8,
    /// Next stage, valid when `transit`.
    pub nsg: u8,
    pub version_max: u8,
    pub version_min: u8,
    pub data_len: u32,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
}

impl LoginRequest {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::LoginRequest)?;
        let stages = LoginFlags::decode(bhs.u8_at(1))?;
        Ok(LoginRequest {
            transit: stages.transit,
            cont: stages.cont,
            csg: stages.csg,
            nsg: stages.nsg,
            version_max: bhs.u8_at(2),
            version_min: bhs.u8_at(3),
            data_len: bhs.data_len_u32(),
            isid: bhs.bytes(8),
            tsih: bhs.u16_at(14),
            itt: bhs.itt(),
            cid: bhs.u16_at(20),
            cmdsn: bhs.u32_at(24),
            exp_statsn: bhs.u32_at(28),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginRequest, true);
        b.set_u8(
            1,
            LoginFlags::encode(self.transit, self.cont, self.csg, self.nsg),
        );
        b.set_u8(2, self.version_max);
        b.set_u8(3, self.version_min);
        b.set_data_segment_len(self.data_len);
        b.put(8, self.isid);
        b.set_u16(14, self.tsih);
        b.set_u32(16, self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        b
    }
}

/// Login Response, opcode 0x23 (RFC 7143 §11.13).
///
/// Traps: the StatSN of the first response is the connection's initial StatSN; ExpCmdSN and
/// MaxCmdSN are valid from the first response on. The target may transit only when the
/// initiator asked to (T set in the request) and never to a stage the initiator did not offer.
/// On any non-zero status class the target sends this one PDU and closes the connection; the
/// TSIH is valid only in the final response of a successful leading login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    pub version_active: u8,
    pub data_len: u32,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub status_class: u8,
    pub status_detail: u8,
}

impl LoginResponse {
    pub fn decode(bhs: &Bhs) -> Result<Self, PduError> {
        bhs.expect_plain(Opcode::LoginResponse)?;
        let stages = LoginFlags::decode(bhs.u8_at(1))?;
        Ok(LoginResponse {
            transit: stages.transit,
            cont: stages.cont,
            csg: stages.csg,
            nsg: stages.nsg,
            version_max: bhs.u8_at(2),
            version_active: bhs.u8_at(3),
            data_len: bhs.data_len_u32(),
            isid: bhs.bytes(8),
            tsih: bhs.u16_at(14),
            itt: bhs.itt(),
            statsn: bhs.u32_at(24),
            exp_cmdsn: bhs.u32_at(28),
            max_cmdsn: bhs.u32_at(32),
            status_class: bhs.u8_at(36),
            status_detail: bhs.u8_at(37),
        })
    }

    pub fn encode(&self) -> Bhs {
        let mut b = Bhs::with_opcode(Opcode::LoginResponse, false);
        b.set_u8(
            1,
            LoginFlags::encode(self.transit, self.cont, self.csg, self.nsg),
        );
        b.set_u8(2, self.version_max);
        b.set_u8(3, self.version_active);
        b.set_data_segment_len(self.data_len);
        b.put(8, self.isid);
        b.set_u16(14, self.tsih);
        b.set_u32(16, self.itt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u8(36, self.status_class);
        b.set_u8(37, self.status_detail);
        b
    }

    /// Status-Class and Status-Detail as one code, e.g. [`super::login_status::NOT_FOUND`].
    pub fn status(&self) -> u16 {
        u16::from_be_bytes([self.status_class, self.status_detail])
    }

    /// Sets Status-Class and Status-Detail from a [`super::login_status`] code.
    pub fn set_status(&mut self, code: u16) {
        [self.status_class, self.status_detail] = code.to_be_bytes();
    }
}

/// Byte 1 of both Login PDUs: T | C | . . | CSG(2) | NSG(2).
struct LoginFlags {
    transit: bool,
    cont: bool,
    csg: u8,
    nsg: u8,
}

impl LoginFlags {
    const RESERVED_STAGE: u8 = 2;

    fn decode(byte: u8) -> Result<Self, PduError> {
        let flags = LoginFlags {
            transit: byte & 0x80 != 0,
            cont: byte & 0x40 != 0,
            csg: (byte >> 2) & 0x03,
            nsg: byte & 0x03,
        };
        if flags.transit && flags.cont {
            return Err(invalid("T/C", u32::from(byte)));
        }
        if flags.csg == Self::RESERVED_STAGE {
            return Err(invalid("CSG", u32::from(flags.csg)));
        }
        if flags.transit && flags.nsg == Self::RESERVED_STAGE {
            return Err(invalid("NSG", u32::from(flags.nsg)));
        }
        Ok(flags)
    }

    fn encode(transit: bool, cont: bool, csg: u8, nsg: u8) -> u8 {
        flag(0x80, transit) | flag(0x40, cont) | (csg & 0x03) << 2 | (nsg & 0x03)
    }
}

#[cfg(test)]
mod tests {
    use super::super::consts::{login_stage, login_status};
    use super::*;

    /// The first Login Request open-iscsi sends with no CHAP configured, built by hand from
    /// RFC 7143 figure 11.12: I + opcode 0x03, T=1 CSG=1 NSG=3, versions 0, ISID 00023d000001
    /// (OUI format, open-iscsi's default), TSIH 0, ITT 0, CID 0, CmdSN 1, ExpStatSN 0, and
    /// 0x1c4 bytes of text keys.
    const OPEN_ISCSI_LOGIN: [u8; 48] = [
        0x43, 0x87, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc4, //
        0x00, 0x02, 0x3d, 0x00, 0x00, 0x01, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    #[test]
    fn open_iscsi_login_request_field_by_field() {
        let bhs = Bhs(OPEN_ISCSI_LOGIN);
        assert!(bhs.immediate());
        let req = LoginRequest::decode(&bhs).unwrap();
        assert!(req.transit && !req.cont);
        assert_eq!(req.csg, login_stage::OPERATIONAL);
        assert_eq!(req.nsg, login_stage::FULL_FEATURE);
        assert_eq!((req.version_max, req.version_min), (0, 0));
        assert_eq!(req.data_len, 0x1c4);
        assert_eq!(req.isid, [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01]);
        assert_eq!((req.tsih, req.itt, req.cid), (0, 0, 0));
        assert_eq!((req.cmdsn, req.exp_statsn), (1, 0));
        assert_eq!(req.encode().0, OPEN_ISCSI_LOGIN);
    }

    #[test]
    fn security_stage_with_chap() {
        let req = LoginRequest {
            transit: true,
            csg: login_stage::SECURITY,
            nsg: login_stage::OPERATIONAL,
            ..Default::default()
        };
        assert_eq!(req.encode().0[..2], [0x43, 0x81]);
        let cont = LoginRequest {
            cont: true,
            csg: login_stage::SECURITY,
            ..Default::default()
        };
        assert_eq!(cont.encode().0[1], 0x40);
    }

    #[test]
    fn login_flag_contradictions_are_rejected() {
        let mut b = OPEN_ISCSI_LOGIN;
        b[1] = 0xc7; // T and C
        assert!(matches!(
            LoginRequest::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "T/C", .. })
        ));
        b[1] = 0x89; // CSG 2
        assert!(matches!(
            LoginRequest::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "CSG", .. })
        ));
        b[1] = 0x86; // NSG 2 with T
        assert!(matches!(
            LoginRequest::decode(&Bhs(b)),
            Err(PduError::InvalidField { field: "NSG", .. })
        ));
        b[1] = 0x06; // NSG 2 without T is ignored
        assert!(LoginRequest::decode(&Bhs(b)).is_ok());
    }

    #[test]
    fn login_response_layout_and_status() {
        let mut rsp = LoginResponse {
            transit: true,
            csg: login_stage::OPERATIONAL,
            nsg: login_stage::FULL_FEATURE,
            version_max: 0,
            version_active: 0,
            data_len: 100,
            isid: [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01],
            tsih: 0x0102,
            itt: 0x0a,
            statsn: 0x3344,
            exp_cmdsn: 1,
            max_cmdsn: 64,
            ..Default::default()
        };
        rsp.set_status(login_status::NOT_FOUND);
        assert_eq!((rsp.status_class, rsp.status_detail), (0x02, 0x03));
        assert_eq!(rsp.status(), login_status::NOT_FOUND);
        let b = rsp.encode().0;
        assert_eq!(b[..8], [0x23, 0x87, 0, 0, 0, 0, 0, 100]);
        assert_eq!(b[14..16], [0x01, 0x02]);
        assert_eq!(b[20..24], [0; 4], "reserved");
        assert_eq!(b[36..38], [0x02, 0x03]);
        assert_eq!(LoginResponse::decode(&Bhs(b)), Ok(rsp));
    }
}
