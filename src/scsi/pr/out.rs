//! Decoding PERSISTENT RESERVE OUT (SPC-4 §6.16): the CDB (§6.16.1), the basic parameter list
//! (§6.16.3) with its SPEC_I_PT TransportID list, and the REGISTER AND MOVE parameter list
//! (§6.16.4).
//!
//! The result, [`PrOut`], is plain serializable data: it is what the cluster log carries, and
//! [`super::apply()`] turns it into a new state on every node.
//!
//! Order of checks: opcode, CDB length, NACA, SERVICE ACTION (INVALID FIELD IN CDB), SCOPE and
//! TYPE for the service actions that use them (INVALID FIELD IN CDB), then the parameter list:
//! SPEC_I_PT on a service action other than REGISTER (INVALID FIELD IN PARAMETER LIST), the
//! length (PARAMETER LIST LENGTH ERROR), then each TransportID.
//!
//! Traps:
//! - Without SPEC_I_PT every service action but REGISTER AND MOVE needs a parameter list of
//!   exactly 24 bytes (PARAMETER LIST LENGTH ERROR otherwise), even CLEAR and RELEASE.
//! - SPEC_I_PT is checked before the length: a 32-byte RESERVE list with SPEC_I_PT=1 is INVALID
//!   FIELD IN PARAMETER LIST, not a length error (LIO and libiscsi agree).
//! - A TransportID list or REGISTER AND MOVE list whose length fields disagree with the parameter
//!   list length, or that ends inside a TransportID, is PARAMETER LIST LENGTH ERROR; a TransportID
//!   that is whole but wrong is INVALID FIELD IN PARAMETER LIST, pointing at it.
//! - ALL_TG_PT is ignored except for REGISTER and REGISTER AND IGNORE EXISTING KEY, APTPL except
//!   for those and REGISTER AND MOVE (SPC-4 §6.16.3): decoding clears them elsewhere.

use serde::{Deserialize, Serialize};

use super::state::key_serde;
use super::transport_id::{TransportId, TransportIdError};
use super::types::{PrScope, PrType, ServiceAction};
use crate::scsi::opcodes;
use crate::scsi::sense::{Asc, CommandError};

/// A decoded PERSISTENT RESERVE OUT command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrOut {
    pub action: ServiceAction,
    /// The TYPE for RESERVE, RELEASE, PREEMPT and PREEMPT AND ABORT; `None` for the service
    /// actions that ignore it.
    pub pr_type: Option<PrType>,
    /// The SCOPE (always LU_SCOPE when used).
    pub scope: PrScope,
    /// RESERVATION KEY.
    #[serde(with = "key_serde")]
    pub key: u64,
    /// SERVICE ACTION RESERVATION KEY.
    #[serde(with = "key_serde")]
    pub sa_key: u64,
    /// Specify initiator ports: register the ports of `transport_ids` too (REGISTER only).
    pub spec_i_pt: bool,
    /// Register through every target port (REGISTER and REGISTER AND IGNORE EXISTING KEY).
    pub all_tg_pt: bool,
    /// Activate persist through power loss (the REGISTER service actions).
    pub aptpl: bool,
    /// SPEC_I_PT: the initiator ports to register; REGISTER AND MOVE: the destination (one).
    pub transport_ids: Vec<TransportId>,
    /// REGISTER AND MOVE: unregister the I_T nexus the command came through.
    pub unreg: bool,
    /// REGISTER AND MOVE: the RELATIVE TARGET PORT IDENTIFIER of the destination.
    pub relative_port: u16,
}

impl PrOut {
    /// A command with service action `action`, both keys and nothing else set.
    pub fn new(action: ServiceAction, key: u64, sa_key: u64) -> PrOut {
        PrOut {
            action,
            pr_type: None,
            scope: PrScope::LogicalUnit,
            key,
            sa_key,
            spec_i_pt: false,
            all_tg_pt: false,
            aptpl: false,
            transport_ids: Vec::new(),
            unreg: false,
            relative_port: 0,
        }
    }

    /// REGISTER with RESERVATION KEY `key` and SERVICE ACTION RESERVATION KEY `sa_key`.
    pub fn register(key: u64, sa_key: u64) -> PrOut {
        Self::new(ServiceAction::Register, key, sa_key)
    }

    /// REGISTER AND IGNORE EXISTING KEY with SERVICE ACTION RESERVATION KEY `sa_key`.
    pub fn register_ignore(sa_key: u64) -> PrOut {
        Self::new(ServiceAction::RegisterAndIgnoreExistingKey, 0, sa_key)
    }

    /// RESERVE of type `pr_type` with key `key`.
    pub fn reserve(key: u64, pr_type: PrType) -> PrOut {
        Self::new(ServiceAction::Reserve, key, 0).with_type(pr_type)
    }

    /// RELEASE of type `pr_type` with key `key`.
    pub fn release(key: u64, pr_type: PrType) -> PrOut {
        Self::new(ServiceAction::Release, key, 0).with_type(pr_type)
    }

    /// CLEAR with key `key`.
    pub fn clear(key: u64) -> PrOut {
        Self::new(ServiceAction::Clear, key, 0)
    }

    /// PREEMPT (or PREEMPT AND ABORT when `abort`) of `sa_key` by `key`, new type `pr_type`.
    pub fn preempt(key: u64, sa_key: u64, pr_type: PrType, abort: bool) -> PrOut {
        let action = if abort {
            ServiceAction::PreemptAndAbort
        } else {
            ServiceAction::Preempt
        };
        Self::new(action, key, sa_key).with_type(pr_type)
    }

    /// REGISTER AND MOVE to `dest` through relative target port `relative_port`.
    pub fn register_and_move(
        key: u64,
        sa_key: u64,
        dest: TransportId,
        relative_port: u16,
        unreg: bool,
    ) -> PrOut {
        PrOut {
            transport_ids: vec![dest],
            relative_port,
            unreg,
            ..Self::new(ServiceAction::RegisterAndMove, key, sa_key)
        }
    }

    fn with_type(mut self, pr_type: PrType) -> PrOut {
        self.pr_type = Some(pr_type);
        self
    }

    /// The CDB and parameter list that decode to this command (for tests, tools and replays).
    pub fn encode(&self) -> ([u8; 10], Vec<u8>) {
        let mut params = Vec::with_capacity(24);
        params.extend_from_slice(&self.key.to_be_bytes());
        params.extend_from_slice(&self.sa_key.to_be_bytes());
        if self.action == ServiceAction::RegisterAndMove {
            params.push(0);
            params.push((u8::from(self.unreg) << 1) | u8::from(self.aptpl));
            params.extend_from_slice(&self.relative_port.to_be_bytes());
            let tids: Vec<u8> = self.transport_ids.iter().flat_map(|t| t.encode()).collect();
            params.extend_from_slice(&(tids.len() as u32).to_be_bytes());
            params.extend_from_slice(&tids);
        } else {
            params.extend_from_slice(&[0; 4]);
            params.push(
                (u8::from(self.spec_i_pt) << 3)
                    | (u8::from(self.all_tg_pt) << 2)
                    | u8::from(self.aptpl),
            );
            params.extend_from_slice(&[0; 3]);
            if self.spec_i_pt {
                let tids: Vec<u8> = self.transport_ids.iter().flat_map(|t| t.encode()).collect();
                params.extend_from_slice(&(tids.len() as u32).to_be_bytes());
                params.extend_from_slice(&tids);
            }
        }
        let mut cdb = [0u8; 10];
        cdb[0] = opcodes::PERSISTENT_RESERVE_OUT;
        cdb[1] = self.action.code();
        cdb[2] = (self.scope.code() << 4) | self.pr_type.map_or(0, PrType::code);
        cdb[5..9].copy_from_slice(&(params.len() as u32).to_be_bytes());
        (cdb, params)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// Maps a TransportID error at parameter list offset `at` to its sense.
fn tid_error(e: TransportIdError, at: usize) -> CommandError {
    match e {
        TransportIdError::Truncated => CommandError::parameter_list_length_error(),
        TransportIdError::Invalid { byte, bit } => {
            let byte = u16::try_from(at + usize::from(byte)).unwrap_or(u16::MAX);
            CommandError::invalid_field_in_param(byte, bit)
        }
    }
}

/// Decodes a PERSISTENT RESERVE OUT CDB and its parameter list. `params` holds the data-out
/// buffer; bytes past the CDB's PARAMETER LIST LENGTH are ignored, fewer is a PARAMETER LIST
/// LENGTH ERROR.
pub fn decode_prout(cdb: &[u8], params: &[u8]) -> Result<PrOut, CommandError> {
    if cdb.first() != Some(&opcodes::PERSISTENT_RESERVE_OUT) {
        return Err(CommandError::invalid_opcode());
    }
    if cdb.len() < 10 {
        return Err(CommandError::illegal_request(Asc::INVALID_FIELD_IN_CDB));
    }
    if cdb[9] & 0x04 != 0 {
        return Err(CommandError::invalid_field_in_cdb(9, Some(2))); // NACA
    }
    let Some(action) = ServiceAction::from_code(cdb[1] & 0x1F) else {
        return Err(CommandError::invalid_field_in_cdb(1, Some(4)));
    };
    let mut out = PrOut::new(action, 0, 0);
    if action.uses_type() {
        if PrScope::from_code(cdb[2] >> 4).is_none() {
            return Err(CommandError::invalid_field_in_cdb(2, Some(7)));
        }
        let Some(t) = PrType::from_code(cdb[2] & 0x0F) else {
            return Err(CommandError::invalid_field_in_cdb(2, Some(3)));
        };
        out.pr_type = Some(t);
    }
    let len = usize::try_from(be32(cdb, 5)).unwrap_or(usize::MAX);
    let Some(p) = params.get(..len) else {
        return Err(CommandError::parameter_list_length_error());
    };
    if p.len() < 24 {
        return Err(CommandError::parameter_list_length_error());
    }
    out.key = be64(p, 0);
    out.sa_key = be64(p, 8);

    if action == ServiceAction::RegisterAndMove {
        out.unreg = p[17] & 0x02 != 0;
        out.aptpl = p[17] & 0x01 != 0;
        out.relative_port = be16(p, 18);
        let tid_len = u64::from(be32(p, 20));
        if 24 + tid_len != p.len() as u64 {
            return Err(CommandError::parameter_list_length_error());
        }
        let (tid, used) = TransportId::decode(&p[24..]).map_err(|e| tid_error(e, 24))?;
        if 24 + used != p.len() {
            return Err(CommandError::parameter_list_length_error());
        }
        out.transport_ids.push(tid);
        return Ok(out);
    }

    out.spec_i_pt = p[20] & 0x08 != 0;
    if out.spec_i_pt && action != ServiceAction::Register {
        return Err(CommandError::invalid_field_in_param(20, Some(3)));
    }
    if matches!(
        action,
        ServiceAction::Register | ServiceAction::RegisterAndIgnoreExistingKey
    ) {
        out.all_tg_pt = p[20] & 0x04 != 0;
        out.aptpl = p[20] & 0x01 != 0;
    }
    if !out.spec_i_pt {
        if p.len() != 24 {
            return Err(CommandError::parameter_list_length_error());
        }
        return Ok(out);
    }
    if p.len() < 28 {
        return Err(CommandError::parameter_list_length_error());
    }
    let data_len = u64::from(be32(p, 24));
    if 28 + data_len != p.len() as u64 {
        return Err(CommandError::parameter_list_length_error());
    }
    let mut at = 28;
    while at < p.len() {
        let (tid, used) = TransportId::decode(&p[at..]).map_err(|e| tid_error(e, at))?;
        out.transport_ids.push(tid);
        at += used;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{ScsiStatus, Sense, SenseKey};

    fn asc(e: &CommandError) -> Asc {
        e.sense.expect("sense").asc
    }

    fn cdb(sa: u8, scope_type: u8, len: u32) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = 0x5F;
        c[1] = sa;
        c[2] = scope_type;
        c[5..9].copy_from_slice(&len.to_be_bytes());
        c
    }

    fn basic(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
        let mut p = key.to_be_bytes().to_vec();
        p.extend_from_slice(&sa_key.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, flags, 0, 0, 0]);
        p
    }

    #[test]
    fn round_trips() {
        let tid = TransportId::port("iqn.x:y", [0x40, 0, 0, 1, 2, 3]);
        let mut spec = PrOut::register(0, 5);
        spec.spec_i_pt = true;
        spec.all_tg_pt = true;
        spec.aptpl = true;
        spec.transport_ids = vec![tid.clone(), TransportId::device("iqn.z:w")];
        let mut rmove = PrOut::register_and_move(1, 2, tid, 7, true);
        rmove.aptpl = true;
        let mut riek = PrOut::register_ignore(9);
        riek.all_tg_pt = true;
        for op in [
            PrOut::register(1, 2),
            riek,
            PrOut::reserve(1, PrType::WriteExclusiveRegistrantsOnly),
            PrOut::release(1, PrType::ExclusiveAccess),
            PrOut::clear(3),
            PrOut::preempt(1, 2, PrType::ExclusiveAccessAllRegistrants, false),
            PrOut::preempt(1, 0, PrType::WriteExclusive, true),
            spec,
            rmove,
        ] {
            let (c, p) = op.encode();
            assert_eq!(decode_prout(&c, &p), Ok(op.clone()), "{op:?}");
            // Extra data-out bytes beyond PARAMETER LIST LENGTH are ignored; a 16-byte CDB slot
            // is fine.
            let mut more = p.clone();
            more.extend_from_slice(&[0xEE; 5]);
            let mut c16 = c.to_vec();
            c16.resize(16, 0);
            assert_eq!(decode_prout(&c16, &more), Ok(op));
        }
    }

    #[test]
    fn serde_round_trip() {
        let mut op = PrOut::preempt(u64::MAX, 1 << 63, PrType::WriteExclusive, true);
        op.transport_ids = vec![TransportId::device("iqn.a:b")];
        let text = toml::to_string(&op).unwrap();
        assert_eq!(toml::from_str::<PrOut>(&text).unwrap(), op);
    }

    #[test]
    fn cdb_errors() {
        let p = basic(1, 2, 0);
        assert_eq!(
            decode_prout(&[0x5E; 10], &p),
            Err(CommandError::invalid_opcode())
        );
        assert_eq!(decode_prout(&[], &p), Err(CommandError::invalid_opcode()));
        let e = decode_prout(&cdb(0, 0, 24)[..9], &p).unwrap_err();
        assert_eq!(asc(&e), Asc::INVALID_FIELD_IN_CDB);
        let mut c = cdb(0, 0, 24);
        c[9] = 0x04;
        assert_eq!(
            decode_prout(&c, &p),
            Err(CommandError::invalid_field_in_cdb(9, Some(2)))
        );
        for sa in 8..=0x1F {
            assert_eq!(
                decode_prout(&cdb(sa, 0, 24), &p),
                Err(CommandError::invalid_field_in_cdb(1, Some(4)))
            );
        }
        // Scope and type are checked where they are used ...
        for sa in [1, 2, 4, 5] {
            assert_eq!(
                decode_prout(&cdb(sa, 0x21, 24), &p),
                Err(CommandError::invalid_field_in_cdb(2, Some(7))),
                "element scope"
            );
            for t in [0u8, 2, 4, 9, 0xF] {
                assert_eq!(
                    decode_prout(&cdb(sa, t, 24), &p),
                    Err(CommandError::invalid_field_in_cdb(2, Some(3)))
                );
            }
        }
        // ... and ignored elsewhere.
        for sa in [0, 3, 6] {
            let op = decode_prout(&cdb(sa, 0xFF, 24), &p).unwrap();
            assert_eq!(op.pr_type, None);
        }
    }

    #[test]
    fn length_errors() {
        let plle = CommandError::parameter_list_length_error();
        assert_eq!(
            plle.sense.map(|s| s.asc),
            Some(Asc::PARAMETER_LIST_LENGTH_ERROR)
        );
        let p = basic(1, 2, 0);
        for sa in [0u8, 1, 2, 3, 4, 5, 6] {
            let t = if matches!(sa, 1 | 2 | 4 | 5) { 1 } else { 0 };
            for len in [0u32, 8, 23, 25, 28, 32] {
                let mut params = p.clone();
                params.resize(len as usize, 0);
                assert_eq!(
                    decode_prout(&cdb(sa, t, len), &params),
                    Err(plle),
                    "sa {sa} len {len}"
                );
            }
            // Less data than the CDB announces.
            assert_eq!(decode_prout(&cdb(sa, t, 24), &p[..20]), Err(plle));
            assert!(decode_prout(&cdb(sa, t, 24), &p).is_ok());
        }
    }

    #[test]
    fn spec_i_pt_rules() {
        let tid = TransportId::port("iqn.x:y", [0x40, 0, 0, 1, 2, 3]).encode();
        let mut p = basic(0, 5, 0x08);
        p.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&tid);
        let len = p.len() as u32;
        let op = decode_prout(&cdb(0, 0, len), &p).unwrap();
        assert!(op.spec_i_pt);
        assert_eq!(op.transport_ids.len(), 1);
        assert_eq!(
            op.transport_ids[0].initiator_port(),
            "iqn.x:y,i,0x400000010203"
        );
        // SPEC_I_PT on any other service action: INVALID FIELD IN PARAMETER LIST, byte 20 bit 3,
        // even with a length that is wrong for it.
        for sa in [1u8, 2, 3, 4, 5, 6] {
            let t = if matches!(sa, 1 | 2 | 4 | 5) { 1 } else { 0 };
            assert_eq!(
                decode_prout(&cdb(sa, t, len), &p),
                Err(CommandError::invalid_field_in_param(20, Some(3)))
            );
            assert_eq!(
                decode_prout(&cdb(sa, t, 24), &basic(0, 5, 0x08)),
                Err(CommandError::invalid_field_in_param(20, Some(3)))
            );
        }
        let plle = Err(CommandError::parameter_list_length_error());
        // SPEC_I_PT with only 24 bytes, a data length that disagrees, a truncated TransportID.
        assert_eq!(decode_prout(&cdb(0, 0, 24), &basic(0, 5, 0x08)), plle);
        let mut bad = p.clone();
        bad[27] += 4;
        assert_eq!(decode_prout(&cdb(0, 0, len), &bad), plle);
        let mut short = basic(0, 5, 0x08);
        short.extend_from_slice(&10u32.to_be_bytes());
        short.extend_from_slice(&tid[..10]);
        assert_eq!(decode_prout(&cdb(0, 0, short.len() as u32), &short), plle);
        // An empty TransportID list is fine.
        let mut none = basic(0, 5, 0x08);
        none.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            decode_prout(&cdb(0, 0, 28), &none).unwrap().transport_ids,
            vec![]
        );
        // A bad TransportID is pointed at: the second one, a Fibre Channel one, at byte 28 + len.
        let mut two = basic(0, 5, 0x08);
        let mut fc = tid.clone();
        fc[0] = 0x00;
        two.extend_from_slice(&((tid.len() * 2) as u32).to_be_bytes());
        two.extend_from_slice(&tid);
        two.extend_from_slice(&fc);
        let e = decode_prout(&cdb(0, 0, two.len() as u32), &two).unwrap_err();
        assert_eq!(
            e,
            CommandError::invalid_field_in_param((28 + tid.len()) as u16, Some(3))
        );
        assert_eq!(e.status, ScsiStatus::CheckCondition);
        assert_eq!(
            e.sense.map(|s: Sense| s.key),
            Some(SenseKey::IllegalRequest)
        );
    }

    #[test]
    fn ignored_bits_are_cleared() {
        let op = decode_prout(&cdb(1, 1, 24), &basic(1, 0, 0x05)).unwrap();
        assert!(!op.all_tg_pt && !op.aptpl);
        let op = decode_prout(&cdb(6, 0, 24), &basic(1, 2, 0x05)).unwrap();
        assert!(op.all_tg_pt && op.aptpl);
        assert_eq!(op.key, 1, "kept, though REGISTER AND IGNORE ignores it");
    }

    #[test]
    fn register_and_move_list() {
        let tid = TransportId::device("iqn.x:y").encode();
        let mut p = basic(1, 2, 0);
        p[17] = 0x03;
        p[18..20].copy_from_slice(&5u16.to_be_bytes());
        p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        p.extend_from_slice(&tid);
        let op = decode_prout(&cdb(7, 0xFF, p.len() as u32), &p).unwrap();
        assert!(op.unreg && op.aptpl);
        assert_eq!(op.relative_port, 5);
        assert_eq!(op.pr_type, None, "scope and type ignored");
        assert_eq!(op.transport_ids, vec![TransportId::device("iqn.x:y")]);
        let plle = Err(CommandError::parameter_list_length_error());
        // No TransportID, a length that disagrees, a list shorter than the header.
        assert_eq!(decode_prout(&cdb(7, 0, 24), &basic(1, 2, 0)), plle);
        let mut bad = p.clone();
        bad[23] -= 4;
        assert_eq!(decode_prout(&cdb(7, 0, p.len() as u32), &bad), plle);
        bad[23] += 8;
        assert_eq!(decode_prout(&cdb(7, 0, p.len() as u32), &bad), plle);
        assert_eq!(decode_prout(&cdb(7, 0, 20), &p), plle);
        // A TransportID whose ADDITIONAL LENGTH is shorter than its data length.
        let mut pad = p.clone();
        pad.extend_from_slice(&[0; 4]);
        pad[20..24].copy_from_slice(&((tid.len() + 4) as u32).to_be_bytes());
        assert_eq!(decode_prout(&cdb(7, 0, pad.len() as u32), &pad), plle);
        // A SAS TransportID.
        let mut sas = p.clone();
        sas[24] = 0x06;
        assert_eq!(
            decode_prout(&cdb(7, 0, p.len() as u32), &sas),
            Err(CommandError::invalid_field_in_param(24, Some(3)))
        );
    }
}
