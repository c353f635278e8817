//! REPORT TARGET PORT GROUPS (SPC-4 §6.37) for implicit asymmetric logical unit access (the
//! SPC-4 ALUA model): ringsan reports TPGS=01b, so the initiator (Linux scsi_dh_alua,
//! dm-multipath) learns the state of each target port group from this command and from
//! ASYMMETRIC ACCESS STATE CHANGED unit attentions, and never sends SET TARGET PORT GROUPS.
//!
//! Supported states: AO, AN, S, U and T (SUPPORTED_STATES). A mirrored pair moves the peer's group
//! between these implicitly (a node that lost its mirror goes Unavailable or Transitioning, a
//! secondary may be Standby or Active/Non-optimized); claiming only AO would make those states
//! illegal to report later. scsi_dh_alua only prints the bits and acts on the state field.
//!
//! [`report_target_port_groups`] builds what ringsan reports today: one active/optimized group
//! in the length-only format, whichever PARAMETER DATA FORMAT was asked for. Linux's scsi_dh_alua
//! asks for the extended format and then parses by the FORMAT TYPE bits (6-4) of response byte 4,
//! which in the length-only format is the first descriptor's PREF/state byte with those bits
//! reserved (0), so it reads the length-only data correctly. [`report_target_port_groups_ext`]
//! builds any set of groups, extended header included, for when the decoder passes the format on.
//!
//! Traps:
//! - PARAMETER DATA FORMAT 001b (extended header: FORMAT TYPE and IMPLICIT TRANSITION TIME in
//!   bytes 4-5, descriptors from byte 8) is what scsi_dh_alua asks for first; 000b has the
//!   descriptors at byte 4. RETURN DATA LENGTH excludes its own 4 bytes in both.
//! - Each group descriptor is followed by its target port descriptors (4 bytes each: 2 reserved,
//!   RELATIVE TARGET PORT IDENTIFIER) and TARGET PORT COUNT says how many.

/// Asymmetric access state (SPC-4, target port group descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AluaState {
    ActiveOptimized = 0x0,
    ActiveNonOptimized = 0x1,
    Standby = 0x2,
    Unavailable = 0x3,
    Offline = 0xE,
    Transitioning = 0xF,
}

/// T_SUP | U_SUP | S_SUP | AN_SUP | AO_SUP.
pub const SUPPORTED_STATES: u8 = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

/// One target port group as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPortGroup {
    pub id: u16,
    pub state: AluaState,
    /// PREF: preferred group for this LU.
    pub preferred: bool,
    /// STATUS CODE: 00h none, 01h altered by SET TARGET PORT GROUPS, 02h altered by implicit
    /// behavior.
    pub status_code: u8,
    pub relative_port_ids: Vec<u16>,
}

impl TargetPortGroup {
    /// An active/optimized group with these relative target port identifiers.
    pub fn active(id: u16, relative_port_ids: Vec<u16>) -> Self {
        Self {
            id,
            state: AluaState::ActiveOptimized,
            preferred: false,
            status_code: 0,
            relative_port_ids,
        }
    }
}

/// REPORT TARGET PORT GROUPS parameter data for one active/optimized group `group_id` holding
/// the target ports `relative_port_ids`, length-only header. The caller truncates to the
/// allocation length.
pub fn report_target_port_groups(group_id: u16, relative_port_ids: &[u16]) -> Vec<u8> {
    report_target_port_groups_ext(
        &[TargetPortGroup::active(
            group_id,
            relative_port_ids.to_vec(),
        )],
        false,
        0,
    )
}

/// REPORT TARGET PORT GROUPS parameter data for any groups, length-only header
/// (`extended == false`) or extended header with IMPLICIT TRANSITION TIME `transition_secs`. At
/// most 255 ports per group are listed (TARGET PORT COUNT is one byte).
pub fn report_target_port_groups_ext(
    groups: &[TargetPortGroup],
    extended: bool,
    transition_secs: u8,
) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    if extended {
        out.extend_from_slice(&[0x10, transition_secs, 0, 0]); // FORMAT TYPE 001b
    }
    for g in groups {
        let ports = &g.relative_port_ids[..g.relative_port_ids.len().min(255)];
        out.push((u8::from(g.preferred) << 7) | g.state as u8);
        out.push(SUPPORTED_STATES);
        out.extend_from_slice(&g.id.to_be_bytes());
        out.push(0);
        out.push(g.status_code);
        out.push(0); // vendor specific
        out.push(ports.len() as u8);
        for p in ports {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group() {
        assert_eq!(
            report_target_port_groups(7, &[1, 2]),
            report_target_port_groups_ext(&[TargetPortGroup::active(7, vec![1, 2])], false, 0)
        );
    }

    #[test]
    fn length_only_header() {
        let d = report_target_port_groups_ext(&[TargetPortGroup::active(7, vec![1, 2])], false, 10);
        assert_eq!(
            d,
            vec![0, 0, 0, 16, 0x00, 0x8F, 0, 7, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]
        );
    }

    #[test]
    fn extended_header_and_states() {
        let mut g = TargetPortGroup::active(0x0102, vec![0x0304]);
        g.state = AluaState::Transitioning;
        g.preferred = true;
        g.status_code = 2;
        let other = TargetPortGroup {
            id: 2,
            state: AluaState::Standby,
            preferred: false,
            status_code: 0,
            relative_port_ids: vec![],
        };
        let d = report_target_port_groups_ext(&[g, other], true, 30);
        assert_eq!(&d[..8], &[0, 0, 0, 24, 0x10, 30, 0, 0]);
        assert_eq!(
            &d[8..20],
            &[0x8F, 0x8F, 0x01, 0x02, 0, 2, 0, 1, 0, 0, 0x03, 0x04]
        );
        assert_eq!(&d[20..28], &[0x02, 0x8F, 0, 2, 0, 0, 0, 0]);
        assert_eq!(d.len(), 28);
    }

    #[test]
    fn port_count_capped() {
        let g = TargetPortGroup::active(1, (0..300).collect());
        let d = report_target_port_groups_ext(&[g], false, 0);
        assert_eq!(d[11], 255);
        assert_eq!(d.len(), 4 + 8 + 4 * 255);
    }
}
