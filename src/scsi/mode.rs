//! Mode parameters: MODE SENSE(6)/(10) and MODE SELECT(6)/(10) (SPC-4 §6.9-6.12), the mode
//! parameter header and block descriptors (SPC-4 §7.5.4-7.5.5, SBC-3 §6.4.2) and the pages we
//! implement: 01h Read-Write Error Recovery (SBC-3 §6.4.9), 08h Caching (SBC-3 §6.4.5), 0Ah
//! Control (SPC-4 §7.5.8), 0Ah/01h Control Extension (SPC-4 §7.5.9) and 1Ch Informational
//! Exceptions Control (SPC-4 §7.5, Informational Exceptions Control mode page).
//!
//! Defaults and why:
//! - WCE=1: writes complete before they are durable (the engine and the disks behind it have
//!   volatile caches), so we say so; Linux then sends SYNCHRONIZE CACHE for flushes and FUA for
//!   REQ_FUA and correctness follows. WCE=0 would promise that every completed write is durable.
//!   A unit whose backend writes through can be built with [`ModeState::new`]`(false)`. WCE is
//!   changeable (sdparm, `echo "write through" > cache_type`).
//! - TAS=1: a command aborted by another I_T nexus (PREEMPT AND ABORT, CLEAR TASK SET from another
//!   initiator) completes with TASK ABORTED status rather than vanishing; Linux handles that status
//!   and it is LIO's default too. QERR=00b, TST=000b (one task set), QUEUE ALGORITHM MODIFIER=1
//!   (unrestricted reordering: SIMPLE commands run concurrently), UA_INTLCK_CTRL=00b.
//! - D_SENSE=0 (fixed format) by default and changeable (libiscsi `ModeSense6.Control.D_SENSE`);
//!   SWP changeable (libiscsi `ModeSense6.Control.SWP` then expects writes to fail with WRITE
//!   PROTECTED: see [`write_protect_check`]).
//!
//! Traps:
//! - PC=11b (saved values) is ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED (SPC-4 §6.11);
//!   but MODE SELECT with SP=1 is INVALID FIELD IN CDB (SPC-4 §6.9: "If the logical unit does not
//!   implement saved pages and the SP bit is set to one, … INVALID FIELD IN CDB").
//! - In MODE SELECT, MODE DATA LENGTH is reserved and the PS bit is reserved: initiators send back
//!   what MODE SENSE returned, so neither is checked.
//! - A page's PAGE LENGTH must be exactly ours, and only bits set in the changeable mask may
//!   differ from the current values; errors point at the byte and bit in the parameter list
//!   (C/D=0). A list that ends inside a header, descriptor or page is PARAMETER LIST LENGTH ERROR.
//! - The short block descriptor's NUMBER OF LOGICAL BLOCKS saturates at FFFFFFFFh; LLBAA=1 in
//!   MODE SENSE(10) selects the 16-byte descriptor and sets LONGLBA in the header.
//! - MODE SENSE(6) cannot return more than 255 bytes of mode data; ours is at most 100.

use super::cdb::Command;
use super::geometry::LuGeometry;
use super::sense::{Asc, CommandError, Sense};

/// Mode parameter state of one logical unit (shared by all I_T nexuses: TST=000b).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeState {
    /// Caching page WCE: a volatile write cache is in use.
    pub wce: bool,
    /// Caching page RCD (not changeable, always false).
    pub rcd: bool,
    /// Control page D_SENSE: descriptor-format sense data.
    pub d_sense: bool,
    /// Control page QERR (not changeable).
    pub qerr: u8,
    /// Control page TAS (not changeable).
    pub tas: bool,
    /// Control page TST (not changeable).
    pub tst: u8,
    /// Control page SWP: software write protect.
    pub swp: bool,
    /// Control page QUEUE ALGORITHM MODIFIER (not changeable).
    pub qam: u8,
    /// The power-on WCE, reported for PC=10b (default values).
    pub wce_default: bool,
    /// Exported read-only by configuration: sets WP in the mode parameter header; not a mode page
    /// field and not changeable by MODE SELECT.
    pub read_only: bool,
}

impl Default for ModeState {
    fn default() -> Self {
        Self::new(true)
    }
}

impl ModeState {
    /// Power-on state with WCE = `write_cache`.
    pub fn new(write_cache: bool) -> Self {
        Self {
            wce: write_cache,
            rcd: false,
            d_sense: false,
            qerr: 0,
            tas: true,
            tst: 0,
            swp: false,
            qam: 1,
            wce_default: write_cache,
            read_only: false,
        }
    }

    /// Writes are refused (SWP or read-only export).
    pub fn write_protected(&self) -> bool {
        self.swp || self.read_only
    }

    /// The default values (PC=10b, and what a LOGICAL UNIT RESET restores): power-on values, with
    /// the configured WCE and read-only export kept.
    pub fn defaults(&self) -> Self {
        let mut d = Self::new(self.wce_default);
        d.read_only = self.read_only;
        d
    }
}

/// DATA PROTECT, WRITE PROTECTED for a command that modifies the medium while SWP is set or the
/// unit is exported read-only (SPC-4 §7.5.8 Control mode page, SWP).
pub fn write_protect_check(cmd: &Command, state: &ModeState) -> Result<(), CommandError> {
    if state.write_protected() && cmd.is_medium_write() {
        return Err(CommandError::check(Sense::data_protect(
            Asc::WRITE_PROTECTED,
        )));
    }
    Ok(())
}

/// MODE SENSE page control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    Current,
    Changeable,
    Default,
}

/// A mode page we implement.
#[derive(Debug, Clone, Copy)]
struct PageDef {
    page: u8,
    /// Subpage; `spf` tells whether the page uses the subpage format.
    subpage: u8,
    spf: bool,
    /// Total length including the 2- or 4-byte page header.
    len: usize,
}

impl PageDef {
    fn header_len(&self) -> usize {
        if self.spf {
            4
        } else {
            2
        }
    }
}

const PAGES: [PageDef; 5] = [
    PageDef {
        page: 0x01,
        subpage: 0,
        spf: false,
        len: 12,
    },
    PageDef {
        page: 0x08,
        subpage: 0,
        spf: false,
        len: 20,
    },
    PageDef {
        page: 0x0A,
        subpage: 0,
        spf: false,
        len: 12,
    },
    PageDef {
        page: 0x0A,
        subpage: 0x01,
        spf: true,
        len: 32,
    },
    PageDef {
        page: 0x1C,
        subpage: 0,
        spf: false,
        len: 12,
    },
];

fn build_page(def: &PageDef, pc: PageControl, state: &ModeState) -> Vec<u8> {
    let mut p = vec![0u8; def.len];
    let body_len = def.len - def.header_len();
    if def.spf {
        p[0] = 0x40 | def.page;
        p[1] = def.subpage;
        p[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
    } else {
        p[0] = def.page;
        p[1] = body_len as u8;
    }
    let values = match pc {
        PageControl::Current => state.clone(),
        PageControl::Default => state.defaults(),
        PageControl::Changeable => {
            match (def.page, def.subpage) {
                (0x08, 0) => p[2] = 0x04, // WCE
                (0x0A, 0) => {
                    p[2] = 0x04; // D_SENSE
                    p[4] = 0x08; // SWP
                }
                _ => {}
            }
            return p;
        }
    };
    match (def.page, def.subpage) {
        (0x08, 0) => {
            p[2] = (u8::from(values.wce) << 2) | u8::from(values.rcd);
        }
        (0x0A, 0) => {
            // TST, D_SENSE, GLTSD=1 (no log parameters to save).
            p[2] = ((values.tst & 0x07) << 5) | (u8::from(values.d_sense) << 2) | 0x02;
            p[3] = ((values.qam & 0x0F) << 4) | ((values.qerr & 0x03) << 1);
            p[4] = u8::from(values.swp) << 3; // UA_INTLCK_CTRL=00b
            p[5] = u8::from(values.tas) << 6;
        }
        (0x1C, 0) => {
            p[2] = 0x08; // DEXCPT: informational exceptions disabled; MRIE 0
        }
        _ => {}
    }
    p
}

fn find_page(page: u8, subpage: u8, spf: bool) -> Option<&'static PageDef> {
    PAGES
        .iter()
        .find(|d| d.page == page && d.subpage == subpage && d.spf == spf)
}

/// MODE SENSE(6)/(10) data for `cmd` (which must be [`Command::ModeSense`]): header, block
/// descriptor unless DBD, then the pages. The caller truncates to the allocation length.
pub fn mode_sense(
    cmd: &Command,
    state: &ModeState,
    geom: &LuGeometry,
) -> Result<Vec<u8>, CommandError> {
    let Command::ModeSense {
        ten,
        dbd,
        llbaa,
        pc,
        page,
        subpage,
        ..
    } = *cmd
    else {
        return Err(CommandError::invalid_opcode());
    };
    let pc = match pc {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => {
            let mut s = Sense::illegal_request(Asc::SAVING_PARAMETERS_NOT_SUPPORTED);
            s.sense_key_specific = Some(super::sense::field_pointer(true, 2, Some(7)));
            return Err(CommandError::check(s));
        }
    };
    let defs: Vec<&PageDef> = if page == 0x3F {
        match subpage {
            0x00 => PAGES.iter().filter(|d| !d.spf).collect(),
            0xFF => PAGES.iter().collect(),
            _ => return Err(CommandError::invalid_field_in_cdb(3, None)),
        }
    } else {
        let defs: Vec<&PageDef> = PAGES
            .iter()
            .filter(|d| d.page == page && (subpage == 0xFF || d.subpage == subpage))
            .collect();
        if defs.is_empty() {
            return Err(if PAGES.iter().any(|d| d.page == page) {
                CommandError::invalid_field_in_cdb(3, None)
            } else {
                CommandError::invalid_field_in_cdb(2, Some(5))
            });
        }
        defs
    };

    let long = ten && llbaa;
    let mut out = vec![0u8; if ten { 8 } else { 4 }];
    if !dbd {
        let zero = pc == PageControl::Changeable;
        let blocks = if zero { 0 } else { geom.num_blocks };
        let block_len = if zero { 0 } else { geom.block_size };
        if long {
            out.extend_from_slice(&blocks.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&block_len.to_be_bytes());
        } else {
            out.extend_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
            out.push(0); // reserved (density code)
            out.extend_from_slice(&block_len.to_be_bytes()[1..]);
        }
    }
    let bd_len = out.len() - if ten { 8 } else { 4 };
    for def in defs {
        out.extend_from_slice(&build_page(def, pc, state));
    }
    // DEVICE-SPECIFIC PARAMETER: WP, DPOFUA=1 (DPO and FUA honoured).
    let dsp = (u8::from(state.write_protected()) << 7) | 0x10;
    if ten {
        let len = u16::try_from(out.len() - 2).unwrap_or(u16::MAX);
        out[0..2].copy_from_slice(&len.to_be_bytes());
        out[3] = dsp;
        out[4] = u8::from(long && !dbd); // LONGLBA
        out[6..8].copy_from_slice(&(bd_len as u16).to_be_bytes());
    } else {
        out[0] = u8::try_from(out.len() - 1).unwrap_or(u8::MAX);
        out[2] = dsp;
        out[3] = bd_len as u8;
    }
    Ok(out)
}

/// Applies a MODE SELECT(6) (`ten == false`) or (10) parameter list to `state` and returns the new
/// state; nothing changes unless the whole list is valid. The caller establishes MODE PARAMETERS
/// CHANGED for the other I_T nexuses when the result differs from `state`.
pub fn mode_select(
    ten: bool,
    pf: bool,
    sp: bool,
    params: &[u8],
    state: &ModeState,
    geom: &LuGeometry,
) -> Result<ModeState, CommandError> {
    if !pf {
        return Err(CommandError::invalid_field_in_cdb(1, Some(4)));
    }
    if sp {
        return Err(CommandError::invalid_field_in_cdb(1, Some(0)));
    }
    if params.is_empty() {
        return Ok(state.clone());
    }
    let hdr = if ten { 8 } else { 4 };
    if params.len() < hdr {
        return Err(CommandError::parameter_list_length_error());
    }
    let medium_at = if ten { 2 } else { 1 };
    if params[medium_at] != 0 {
        return Err(CommandError::invalid_field_in_param(medium_at as u16, None));
    }
    let (bd_len, bd_len_at) = if ten {
        (
            usize::from(u16::from_be_bytes([params[6], params[7]])),
            6u16,
        )
    } else {
        (usize::from(params[3]), 3u16)
    };
    let long = ten && params[4] & 0x01 != 0;
    if bd_len != 0 && bd_len != if long { 16 } else { 8 } {
        return Err(CommandError::invalid_field_in_param(bd_len_at, None));
    }
    let Some(bd) = params.get(hdr..hdr + bd_len) else {
        return Err(CommandError::parameter_list_length_error());
    };
    if !bd.is_empty() {
        check_block_descriptor(bd, long, hdr, geom)?;
    }

    let mut new = state.clone();
    let mut off = hdr + bd_len;
    while off < params.len() {
        let rest = &params[off..];
        let spf = rest[0] & 0x40 != 0;
        let page = rest[0] & 0x3F;
        let (subpage, page_len, ph) = if spf {
            if rest.len() < 4 {
                return Err(CommandError::parameter_list_length_error());
            }
            (
                rest[1],
                usize::from(u16::from_be_bytes([rest[2], rest[3]])),
                4,
            )
        } else {
            if rest.len() < 2 {
                return Err(CommandError::parameter_list_length_error());
            }
            (0, usize::from(rest[1]), 2)
        };
        let Some(def) = find_page(page, subpage, spf) else {
            let at = if spf && PAGES.iter().any(|d| d.page == page) {
                off + 1
            } else {
                off
            };
            let bit = if at == off { Some(5) } else { None };
            return Err(CommandError::invalid_field_in_param(at as u16, bit));
        };
        if ph + page_len != def.len {
            return Err(CommandError::invalid_field_in_param(
                (off + ph - 1) as u16,
                None,
            ));
        }
        let Some(given) = params.get(off..off + def.len) else {
            return Err(CommandError::parameter_list_length_error());
        };
        let current = build_page(def, PageControl::Current, &new);
        let mask = build_page(def, PageControl::Changeable, &new);
        for i in ph..def.len {
            let diff = (given[i] ^ current[i]) & !mask[i];
            if diff != 0 {
                let bit = 7 - diff.leading_zeros() as u8;
                return Err(CommandError::invalid_field_in_param(
                    (off + i) as u16,
                    Some(bit),
                ));
            }
        }
        match (def.page, def.subpage) {
            (0x08, 0) => new.wce = given[2] & 0x04 != 0,
            (0x0A, 0) => {
                new.d_sense = given[2] & 0x04 != 0;
                new.swp = given[4] & 0x08 != 0;
            }
            _ => {}
        }
        off += def.len;
    }
    Ok(new)
}

/// A block descriptor in MODE SELECT may only restate the geometry: NUMBER OF LOGICAL BLOCKS 0
/// (no change), the current count, or all ones; LOGICAL BLOCK LENGTH equal to ours.
fn check_block_descriptor(
    bd: &[u8],
    long: bool,
    at: usize,
    geom: &LuGeometry,
) -> Result<(), CommandError> {
    let (blocks, blocks_ok, len, len_at) = if long {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bd[0..8]);
        let blocks = u64::from_be_bytes(n);
        let len = u32::from_be_bytes([bd[12], bd[13], bd[14], bd[15]]);
        (blocks, geom.num_blocks, len, at + 12)
    } else {
        let blocks = u64::from(u32::from_be_bytes([bd[0], bd[1], bd[2], bd[3]]));
        let len = u32::from_be_bytes([0, bd[5], bd[6], bd[7]]);
        (
            blocks,
            geom.num_blocks.min(u64::from(u32::MAX)),
            len,
            at + 5,
        )
    };
    let all_ones = if long { u64::MAX } else { u64::from(u32::MAX) };
    if blocks != 0 && blocks != blocks_ok && blocks != all_ones {
        return Err(CommandError::invalid_field_in_param(at as u16, None));
    }
    if len != geom.block_size {
        return Err(CommandError::invalid_field_in_param(len_at as u16, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::sense::{field_pointer, SenseKey};

    fn g() -> LuGeometry {
        LuGeometry::new(512, 2048)
    }

    fn sense_cmd(ten: bool, dbd: bool, llbaa: bool, pc: u8, page: u8, subpage: u8) -> Command {
        Command::ModeSense {
            ten,
            dbd,
            llbaa,
            pc,
            page,
            subpage,
            alloc_len: 4096,
        }
    }

    fn ms(ten: bool, dbd: bool, pc: u8, page: u8, subpage: u8, st: &ModeState) -> Vec<u8> {
        mode_sense(&sense_cmd(ten, dbd, false, pc, page, subpage), st, &g()).unwrap()
    }

    fn param_err(r: Result<ModeState, CommandError>) -> Sense {
        r.unwrap_err().sense.unwrap()
    }

    #[test]
    fn defaults() {
        let s = ModeState::default();
        assert!(s.wce && s.tas && !s.d_sense && !s.swp && s.qerr == 0 && s.tst == 0 && s.qam == 1);
        assert!(!ModeState::new(false).wce);
    }

    #[test]
    fn defaults_keep_configuration() {
        let mut st = ModeState::new(false);
        st.read_only = true;
        st.swp = true;
        st.d_sense = true;
        st.wce = true;
        let d = st.defaults();
        assert!(!d.wce && !d.swp && !d.d_sense && d.read_only);
        assert_eq!(
            d,
            ModeState {
                read_only: true,
                ..ModeState::new(false)
            }
        );
    }

    #[test]
    fn sense6_all_pages() {
        let st = ModeState::default();
        let d = ms(false, false, 0, 0x3F, 0x00, &st);
        assert_eq!(d.len(), 4 + 8 + 12 + 20 + 12 + 12);
        assert_eq!(usize::from(d[0]), d.len() - 1);
        assert_eq!(d[1], 0, "medium type");
        assert_eq!(d[2], 0x10, "DPOFUA, not WP");
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..12], &[0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
        let p = &d[12..];
        assert_eq!(&p[..12], &[0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&p[12..16], &[0x08, 0x12, 0x04, 0x00]);
        assert!(p[16..32].iter().all(|&b| b == 0));
        assert_eq!(
            &p[32..44],
            &[0x0A, 0x0A, 0x02, 0x10, 0x00, 0x40, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&p[44..56], &[0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // Subpage FFh adds the Control Extension page after the Control page.
        let d = ms(false, true, 0, 0x3F, 0xFF, &st);
        assert_eq!(d[3], 0);
        assert_eq!(d.len(), 4 + 12 + 20 + 12 + 32 + 12);
        assert_eq!(&d[4 + 44..4 + 48], &[0x4A, 0x01, 0x00, 0x1C]);
    }

    #[test]
    fn sense10_long_descriptor() {
        let mut geom = g();
        geom.num_blocks = 0x1_0000_0001;
        let st = ModeState::default();
        let d = mode_sense(&sense_cmd(true, false, true, 0, 0x08, 0), &st, &geom).unwrap();
        assert_eq!(d.len(), 8 + 16 + 20);
        assert_eq!(usize::from(u16::from_be_bytes([d[0], d[1]])), d.len() - 2);
        assert_eq!(&d[2..8], &[0, 0x10, 0x01, 0, 0, 16]);
        assert_eq!(
            &d[8..24],
            &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x02, 0x00]
        );
        assert_eq!(d[24], 0x08);
        // Short descriptor saturates.
        let d = mode_sense(&sense_cmd(true, false, false, 0, 0x08, 0), &st, &geom).unwrap();
        assert_eq!(&d[4..8], &[0, 0, 0, 8]);
        assert_eq!(&d[8..16], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x02, 0x00]);
        // DBD wins over LLBAA.
        let d = mode_sense(&sense_cmd(true, true, true, 0, 0x08, 0), &st, &geom).unwrap();
        assert_eq!(&d[2..8], &[0, 0x10, 0, 0, 0, 0]);
    }

    #[test]
    fn page_control() {
        let st = ModeState {
            wce: false,
            d_sense: true,
            ..ModeState::default()
        };
        let cur = ms(false, true, 0, 0x08, 0, &st);
        assert_eq!(cur[4 + 2], 0x00);
        let def = ms(false, true, 2, 0x08, 0, &st);
        assert_eq!(def[4 + 2], 0x04, "default WCE");
        let chg = ms(false, true, 1, 0x0A, 0, &st);
        assert_eq!(
            &chg[4..16],
            &[0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]
        );
        let cur = ms(false, true, 0, 0x0A, 0, &st);
        assert_eq!(cur[4 + 2], 0x06);
        let e = mode_sense(&sense_cmd(false, true, false, 3, 0x08, 0), &st, &g()).unwrap_err();
        let s = e.sense.unwrap();
        assert_eq!(s.key, SenseKey::IllegalRequest);
        assert_eq!(s.asc, Asc::SAVING_PARAMETERS_NOT_SUPPORTED);
    }

    #[test]
    fn page_selection_errors() {
        let st = ModeState::default();
        let err = |page, sub| {
            mode_sense(&sense_cmd(false, true, false, 0, page, sub), &st, &g())
                .unwrap_err()
                .sense
                .unwrap()
        };
        assert_eq!(
            err(0x19, 0).sense_key_specific,
            Some(field_pointer(true, 2, Some(5)))
        );
        assert_eq!(err(0x03, 0).asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            err(0x08, 0x01).sense_key_specific,
            Some(field_pointer(true, 3, None))
        );
        assert_eq!(
            err(0x3F, 0x05).sense_key_specific,
            Some(field_pointer(true, 3, None))
        );
        let d = ms(false, true, 0, 0x0A, 0x01, &st);
        assert_eq!(d.len(), 4 + 32);
        let d = ms(false, true, 0, 0x0A, 0xFF, &st);
        assert_eq!(d.len(), 4 + 12 + 32);
        let d = ms(true, true, 0, 0x01, 0xFF, &st);
        assert_eq!(d.len(), 8 + 12);
        assert!(mode_sense(&Command::TestUnitReady, &st, &g()).is_err());
    }

    #[test]
    fn write_protect_header_and_check() {
        let st = ModeState {
            read_only: true,
            ..ModeState::default()
        };
        assert_eq!(ms(false, true, 0, 0x08, 0, &st)[2], 0x90);
        let w = Command::Write {
            lba: 0,
            blocks: 1,
            fua: false,
            dpo: false,
        };
        let s = write_protect_check(&w, &st).unwrap_err().sense.unwrap();
        assert_eq!(
            (s.key, s.asc),
            (SenseKey::DataProtect, Asc::WRITE_PROTECTED)
        );
        assert!(write_protect_check(
            &Command::Read {
                lba: 0,
                blocks: 1,
                fua: false,
                dpo: false
            },
            &st
        )
        .is_ok());
        assert!(write_protect_check(&w, &ModeState::default()).is_ok());
    }

    #[test]
    fn select_round_trip_wce() {
        let st = ModeState::default();
        let mut list = ms(false, false, 0, 0x08, 0, &st);
        list[12 + 2] &= !0x04;
        let new = mode_select(false, true, false, &list, &st, &g()).unwrap();
        assert!(!new.wce);
        assert_eq!(ms(false, true, 0, 0x08, 0, &new)[4 + 2], 0);
        // MODE SELECT(10) with every page, as read back, is a no-op.
        let all = ms(true, false, 0, 0x3F, 0xFF, &new);
        assert_eq!(
            mode_select(true, true, false, &all, &new, &g()).unwrap(),
            new
        );
    }

    #[test]
    fn select_d_sense_and_swp() {
        let st = ModeState::default();
        let mut list = ms(false, true, 0, 0x0A, 0, &st);
        list[4] &= 0x7F; // PS reserved: libiscsi clears it
        list[4 + 2] |= 0x04;
        list[4 + 4] |= 0x08;
        let new = mode_select(false, true, false, &list, &st, &g()).unwrap();
        assert!(new.d_sense && new.swp);
        let w = Command::WriteSame {
            lba: 0,
            blocks: 1,
            unmap: false,
            anchor: false,
            ndob: false,
        };
        assert!(write_protect_check(&w, &new).is_err());
    }

    #[test]
    fn select_refuses_unchangeable_bits() {
        let st = ModeState::default();
        let mut list = ms(false, true, 0, 0x0A, 0, &st);
        list[4 + 5] &= !0x40; // TAS
        let s = param_err(mode_select(false, true, false, &list, &st, &g()));
        assert_eq!(s.asc, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
        assert_eq!(s.sense_key_specific, Some(field_pointer(false, 9, Some(6))));
        let mut list = ms(true, false, 0, 0x08, 0, &st);
        list[8 + 8 + 2] |= 0x01; // RCD
        let s = param_err(mode_select(true, true, false, &list, &st, &g()));
        assert_eq!(
            s.sense_key_specific,
            Some(field_pointer(false, 18, Some(0)))
        );
    }

    #[test]
    fn select_structure_errors() {
        let st = ModeState::default();
        let geom = g();
        let sel = |ten, list: &[u8]| param_err(mode_select(ten, true, false, list, &st, &geom));
        // Empty list: nothing to do.
        assert_eq!(
            mode_select(false, true, false, &[], &st, &geom).unwrap(),
            st
        );
        // Header cut.
        assert_eq!(sel(false, &[0, 0, 0]).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
        assert_eq!(
            sel(true, &[0, 0, 0, 0, 0, 0, 0]).asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
        // Medium type.
        assert_eq!(
            sel(false, &[0, 1, 0, 0]).sense_key_specific,
            Some(field_pointer(false, 1, None))
        );
        // Block descriptor length not 0/8.
        assert_eq!(
            sel(false, &[0, 0, 0, 4, 0, 0, 0, 0]).sense_key_specific,
            Some(field_pointer(false, 3, None))
        );
        // Block descriptor cut.
        assert_eq!(
            sel(false, &[0, 0, 0, 8, 0, 0, 0, 0]).asc,
            Asc::PARAMETER_LIST_LENGTH_ERROR
        );
        // Wrong block length.
        let s = sel(false, &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0x00]);
        assert_eq!(s.sense_key_specific, Some(field_pointer(false, 9, None)));
        // Block count other than 0 / current / all ones.
        let s = sel(false, &[0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0x02, 0x00]);
        assert_eq!(s.sense_key_specific, Some(field_pointer(false, 4, None)));
        assert!(mode_select(
            false,
            true,
            false,
            &[0, 0, 0, 8, 0, 0, 0x08, 0, 0, 0, 2, 0],
            &st,
            &geom
        )
        .is_ok());
        assert!(mode_select(
            false,
            true,
            false,
            &[0, 0, 0, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0],
            &st,
            &geom
        )
        .is_ok());
        // Long descriptor in MODE SELECT(10).
        let mut l = vec![0, 0, 0, 0, 1, 0, 0, 16];
        l.extend_from_slice(&2048u64.to_be_bytes());
        l.extend_from_slice(&[0, 0, 0, 0, 0, 0, 2, 0]);
        assert!(mode_select(true, true, false, &l, &st, &geom).is_ok());
        l[7] = 8;
        l.truncate(16);
        assert!(
            mode_select(true, true, false, &l, &st, &geom).is_err(),
            "LONGLBA needs 16 bytes"
        );
        // Unknown page, wrong length, cut page, stray byte.
        assert_eq!(
            sel(false, &[0, 0, 0, 0, 0x19, 0x06, 0, 0, 0, 0, 0, 0]).sense_key_specific,
            Some(field_pointer(false, 4, Some(5)))
        );
        assert_eq!(
            sel(false, &[0, 0, 0, 0, 0x08, 0x10, 0, 0]).sense_key_specific,
            Some(field_pointer(false, 5, None))
        );
        let mut cut = ms(false, true, 0, 0x08, 0, &st);
        cut.truncate(cut.len() - 1);
        assert_eq!(sel(false, &cut).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
        let mut stray = ms(false, true, 0, 0x08, 0, &st);
        stray.push(0x08);
        assert_eq!(sel(false, &stray).asc, Asc::PARAMETER_LIST_LENGTH_ERROR);
        // Subpage format with an unknown subpage of a known page: pointer at the subpage byte.
        assert_eq!(
            sel(false, &[0, 0, 0, 0, 0x4A, 0x02, 0, 0x1C]).sense_key_specific,
            Some(field_pointer(false, 5, None))
        );
        // CDB-level refusals.
        let e = mode_select(false, false, false, &[], &st, &geom)
            .unwrap_err()
            .sense
            .unwrap();
        assert_eq!(e.sense_key_specific, Some(field_pointer(true, 1, Some(4))));
        let e = mode_select(false, true, true, &[], &st, &geom)
            .unwrap_err()
            .sense
            .unwrap();
        assert_eq!(
            (e.asc, e.sense_key_specific),
            (
                Asc::INVALID_FIELD_IN_CDB,
                Some(field_pointer(true, 1, Some(0)))
            )
        );
    }

    #[test]
    fn select_is_all_or_nothing() {
        let st = ModeState::default();
        let mut list = ms(false, true, 0, 0x08, 0, &st);
        list[4 + 2] &= !0x04; // valid WCE change…
        list.extend_from_slice(&[0x1C, 0x0A, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // …then DEXCPT cleared
        assert!(mode_select(false, true, false, &list, &st, &g()).is_err());
    }
}
