//! Human output of `target-admin`: aligned tables and key/value blocks built from the control
//! protocol's info types ([`TargetInfo`], [`LunInfo`], [`SessionInfo`]).
//!
//! Pure string building with no I/O and no crate beyond std. None of the types it formats carries
//! a secret, and nothing here may print one: CHAP shows as a yes/no state only.

use super::protocol::{LunInfo, PrInfo, SessionInfo, TargetInfo};

/// Spaces between two columns.
const GAP: usize = 2;
/// Indentation of a row's detail lines.
const DETAIL_INDENT: &str = "    ";

/// A table: a header row, data rows, and per row optional detail lines printed indented below
/// it. Columns are left-aligned to their widest cell; the last column is not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<(Vec<String>, Vec<String>)>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) -> &mut Table {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push((cells, Vec::new()));
        self
    }

    /// Adds a detail line under the last row (ignored before the first row).
    pub fn detail(&mut self, line: String) -> &mut Table {
        if let Some((_, details)) = self.rows.last_mut() {
            details.push(line);
        }
        self
    }

    /// The rendered table, one line per row and detail, each ending in a newline.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|(cells, _)| width(&cells[c]))
                    .chain(std::iter::once(width(&self.headers[c])))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        line(&mut out, &self.headers, &widths);
        for (cells, details) in &self.rows {
            line(&mut out, cells, &widths);
            for d in details {
                out.push_str(DETAIL_INDENT);
                out.push_str(d);
                out.push('\n');
            }
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut text = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        text.push_str(cell);
        if i + 1 < cells.len() {
            text.extend(std::iter::repeat_n(' ', w - width(cell) + GAP));
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

/// Key/value lines with the keys aligned: `key:  value`.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push(':');
        out.extend(std::iter::repeat_n(' ', w - width(k) + 1));
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// A byte count in binary units: exact ("64 MiB") when it is a whole number of the largest unit
/// that fits, else with two decimals ("1.50 GiB").
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 1)) > 0 {
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    // `scale` is a power of two: a whole number of units has no bits below it.
    if bytes & (scale - 1) == 0 {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.2} {}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn auth(t: &TargetInfo) -> String {
    match (t.chap, t.mutual_chap) {
        (false, false) => "none",
        (true, false) => "chap",
        (_, true) => "chap+mutual",
    }
    .to_string()
}

fn lun_numbers(luns: &[u16]) -> String {
    if luns.is_empty() {
        return "-".into();
    }
    luns.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn acl_summary(acl: &[String]) -> String {
    match acl.len() {
        0 => "any".into(),
        1 => "1 initiator".into(),
        n => format!("{n} initiators"),
    }
}

/// `target list`: IQN TPGT ALIAS LUNS ACL AUTH SESSIONS.
pub fn targets(targets: &[TargetInfo]) -> String {
    let mut t = Table::new(&["IQN", "TPGT", "ALIAS", "LUNS", "ACL", "AUTH", "SESSIONS"]);
    for x in targets {
        t.row(vec![
            x.iqn.clone(),
            x.tpgt.to_string(),
            x.alias.clone().unwrap_or_else(|| "-".into()),
            lun_numbers(&x.luns),
            acl_summary(&x.acl),
            auth(x),
            x.sessions.to_string(),
        ]);
    }
    t.render()
}

/// One target (after `target create`), as key/value lines.
pub fn target(x: &TargetInfo) -> String {
    fields(&[
        ("target", x.iqn.clone()),
        ("tpgt", x.tpgt.to_string()),
        ("alias", x.alias.clone().unwrap_or_else(|| "-".into())),
        ("luns", lun_numbers(&x.luns)),
        (
            "acl",
            if x.acl.is_empty() {
                "any initiator".into()
            } else {
                x.acl.join(", ")
            },
        ),
        ("auth", auth(x)),
        ("sessions", x.sessions.to_string()),
    ])
}

/// `lun list`: LUN SIZE BLOCK PHYS CACHE THIN PATH.
pub fn luns(luns: &[LunInfo]) -> String {
    let mut t = Table::new(&["LUN", "SIZE", "BLOCK", "PHYS", "CACHE", "THIN", "PATH"]);
    for l in luns {
        t.row(vec![
            l.lun.to_string(),
            size(l.size_bytes),
            l.block_size.to_string(),
            l.physical_block_size.to_string(),
            if l.write_cache {
                "write-back"
            } else {
                "write-through"
            }
            .into(),
            yes_no(l.thin),
            l.path.clone(),
        ]);
        if let Some(why) = &l.offline {
            t.detail(format!("OFFLINE: {why}"));
        }
    }
    t.render()
}

/// `lun show` (and a created or resized LUN), as key/value lines.
pub fn lun(l: &LunInfo) -> String {
    fields(&[
        ("target", l.target.clone()),
        ("lun", l.lun.to_string()),
        ("path", l.path.clone()),
        (
            "size",
            format!("{} ({} bytes)", size(l.size_bytes), l.size_bytes),
        ),
        (
            "blocks",
            (l.size_bytes / u64::from(l.block_size.max(1))).to_string(),
        ),
        ("block size", l.block_size.to_string()),
        ("physical block size", l.physical_block_size.to_string()),
        ("write cache", yes_no(l.write_cache)),
        ("thin", yes_no(l.thin)),
        ("direct I/O", yes_no(l.direct)),
        ("serial", l.serial.clone()),
        ("uuid", l.uuid.clone()),
        (
            "state",
            match &l.offline {
                None => "online".to_string(),
                Some(why) => format!("OFFLINE: {why}"),
            },
        ),
    ])
}

/// `pr show`: the summary as key/value lines, then the registrations as a table.
pub fn pr(p: &PrInfo) -> String {
    let mut out = fields(&[
        ("target", p.target.clone()),
        ("lun", p.lun.to_string()),
        ("generation", format!("0x{:08x}", p.generation)),
        (
            "reservation",
            p.reservation_holder
                .clone()
                .or_else(|| p.reservation_type.clone())
                .unwrap_or("none".into()),
        ),
        ("aptpl", yes_no(p.aptpl)),
        (
            "legacy reserve",
            p.legacy_holder.clone().unwrap_or("none".into()),
        ),
        ("log index", p.log_index.to_string()),
        ("state file", p.state_file.clone().unwrap_or("none".into())),
        (
            "state",
            match &p.offline {
                None => "online".to_string(),
                Some(why) => format!("OFFLINE: {why}"),
            },
        ),
    ]);
    out.push('\n');
    if p.registrations.is_empty() {
        out.push_str("no registrations\n");
        return out;
    }
    let mut t = Table::new(&["INITIATOR PORT", "TARGET PORT", "KEY", "APTPL", "HOLDER"]);
    for r in &p.registrations {
        t.row(vec![
            r.initiator_port.clone(),
            r.target_port.clone(),
            r.key.clone(),
            yes_no(r.aptpl),
            yes_no(r.holder),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `session list`: TSIH INITIATOR ISID TARGET PORTAL CONNS IN-FLIGHT, with the peer address and
/// the negotiated parameters on an indented line below each session.
pub fn sessions(sessions: &[SessionInfo]) -> String {
    let mut t = Table::new(&[
        "TSIH",
        "INITIATOR",
        "ISID",
        "TARGET",
        "PORTAL",
        "CONNS",
        "IN-FLIGHT",
    ]);
    for s in sessions {
        t.row(vec![
            s.tsih.to_string(),
            s.initiator.clone(),
            s.isid.clone(),
            s.target.clone(),
            s.portal.clone(),
            s.connections.to_string(),
            s.commands_in_flight.to_string(),
        ]);
        let mut detail = format!("from {}", s.peer);
        if !s.parameters.is_empty() {
            detail.push_str(": ");
            detail.push_str(&s.parameters.join(" "));
        }
        t.detail(detail);
    }
    t.render()
}

/// A one-column list (`acl list`, `portal list`) under `header`; `empty` is printed instead of
/// the table when there is nothing to list.
pub fn names(header: &str, names: &[String], empty: &str) -> String {
    if names.is_empty() {
        return format!("{empty}\n");
    }
    let mut t = Table::new(&[header]);
    for n in names {
        t.row(vec![n.clone()]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_spaces() {
        let mut t = Table::new(&["A", "LONGER", "C"]);
        t.row(vec!["xyz".into(), "1".into(), "end".into()]);
        t.row(vec!["q".into(), "22".into(), String::new()]);
        t.detail("k=v".into());
        assert_eq!(
            t.render(),
            "A    LONGER  C\nxyz  1       end\nq    22\n    k=v\n"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(10 << 30), "10 GiB");
        assert_eq!(size(3 << 29), "1.50 GiB");
    }

    #[test]
    fn sessions_show_parameters_on_an_indented_second_line() {
        let s = SessionInfo {
            tsih: 7,
            initiator: "iqn.2026-11.io.ringsan:init".into(),
            isid: "800000000001".into(),
            target: "iqn.2026-11.io.ringsan:test".into(),
            portal: "127.0.0.1:3260".into(),
            peer: "127.0.0.1:50000".into(),
            connections: 1,
            parameters: vec!["HeaderDigest=None".into(), "MaxBurstLength=262144".into()],
            commands_in_flight: 0,
        };
        let text = sessions(&[s]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TSIH  INITIATOR"), "{text}");
        assert!(
            lines[1].starts_with("7     iqn.2026-11.io.ringsan:init"),
            "{text}"
        );
        assert_eq!(
            lines[2],
            "    from 127.0.0.1:50000: HeaderDigest=None MaxBurstLength=262144"
        );
    }

    #[test]
    fn targets_show_auth_state_not_secrets() {
        let t = TargetInfo {
            iqn: "iqn.2026-11.io.ringsan:a".into(),
            tpgt: 1,
            alias: None,
            luns: vec![0, 3],
            acl: vec![],
            chap: true,
            mutual_chap: true,
            sessions: 2,
        };
        let text = targets(&[t]);
        assert!(text.contains("0,3"), "{text}");
        assert!(text.contains("chap+mutual"), "{text}");
        assert!(text.contains(" any "), "{text}");
    }
}
