//! SendTargets: the Text Response body that lists targets (RFC 7143 §13.3 and Appendix C).
//!
//! `SendTargets=All` (discovery sessions) lists every target the initiator may see,
//! `SendTargets=<iSCSI name>` that one target, and an empty value (normal sessions) the
//! session's own target. Each target is a `TargetName=` pair followed by its
//! `TargetAddress=<address>:<port>,<portal group tag>` pairs.
//!
//! Traps that bite:
//! - The address must be the one the initiator actually connected to: a target bound to a
//!   wildcard address that answers `0.0.0.0` (or a different interface) sends the initiator to
//!   a portal it cannot reach.
//! - On a dual-stack socket an IPv4 client shows up as `::ffff:a.b.c.d`; it must be reported as
//!   plain IPv4, and real IPv6 addresses go in brackets (`[fe80::1]:3260,1`) without a zone id.
//! - Targets the initiator is not allowed to see are left out, so discovery does not leak them.
//! - The body can exceed the initiator's MaxRecvDataSegmentLength: the caller splits it with
//!   [`crate::iscsi::text::split_segments`] and the C bit.

use std::net::{IpAddr, SocketAddr};

use tracing::debug;

use crate::iscsi::text::{TextError, TextWriter};

/// Formats a portal as TargetAddress wants it: `a.b.c.d:port,tpgt` or `[v6]:port,tpgt`.
pub fn target_address(portal: SocketAddr, tpgt: u16) -> String {
    let ip = match portal.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{},{tpgt}", portal.port()),
        IpAddr::V6(v6) => format!("[{v6}]:{},{tpgt}", portal.port()),
    }
}

/// Builds the Text Response body for `SendTargets=<value>`.
///
/// `targets` holds (iSCSI name, portal group tag, allowed for this initiator). `All` lists every
/// allowed target; a name lists that target if allowed (nothing otherwise); an empty value lists
/// the allowed entries given, so for a normal session the caller passes only the session's
/// target. `portal` is the local address of the connection the request came on.
pub fn send_targets(
    value: &str,
    initiator: &str,
    targets: &[(String, u16, bool)],
    portal: SocketAddr,
) -> Result<Vec<u8>, TextError> {
    let mut w = TextWriter::new();
    let mut listed = 0usize;
    for (name, tpgt, allowed) in targets {
        let wanted = match value {
            "All" | "" => true,
            one => one == name,
        };
        if !wanted || !*allowed {
            continue;
        }
        w.push("TargetName", name)?;
        w.push("TargetAddress", &target_address(portal, *tpgt))?;
        listed += 1;
    }
    debug!(initiator, request = value, listed, "SendTargets");
    Ok(w.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::text::parse_with_limit;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    fn targets() -> Vec<(String, u16, bool)> {
        vec![
            ("iqn.2024-01.org.ringsan:a".into(), 1, true),
            ("iqn.2024-01.org.ringsan:b".into(), 2, false),
            ("iqn.2024-01.org.ringsan:c".into(), 3, true),
        ]
    }

    fn v4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 168, 1, 10), 3260))
    }

    /// Splits a body into its pairs; duplicate keys are legal here, so parse pair by pair.
    fn pairs(body: &[u8]) -> Vec<(String, String)> {
        body.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let kv = parse_with_limit(s, 1024).unwrap().remove(0);
                (kv.key, kv.value)
            })
            .collect()
    }

    #[test]
    fn all_lists_allowed_targets_only() {
        let body = send_targets("All", "iqn.init", &targets(), v4()).unwrap();
        assert_eq!(
            pairs(&body),
            vec![
                ("TargetName".into(), "iqn.2024-01.org.ringsan:a".into()),
                ("TargetAddress".into(), "192.168.1.10:3260,1".into()),
                ("TargetName".into(), "iqn.2024-01.org.ringsan:c".into()),
                ("TargetAddress".into(), "192.168.1.10:3260,3".into()),
            ]
        );
    }

    #[test]
    fn one_target_by_name() {
        let body = send_targets("iqn.2024-01.org.ringsan:c", "i", &targets(), v4()).unwrap();
        assert_eq!(pairs(&body).len(), 2);
        // Not allowed or unknown: empty.
        assert!(
            send_targets("iqn.2024-01.org.ringsan:b", "i", &targets(), v4())
                .unwrap()
                .is_empty()
        );
        assert!(send_targets("iqn.nope", "i", &targets(), v4())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn empty_value_lists_the_given_session_target() {
        let session = vec![("iqn.2024-01.org.ringsan:a".to_string(), 1, true)];
        let body = send_targets("", "i", &session, v4()).unwrap();
        assert_eq!(
            body,
            b"TargetName=iqn.2024-01.org.ringsan:a\0TargetAddress=192.168.1.10:3260,1\0"
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let v6 = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse::<Ipv6Addr>().unwrap(),
            3260,
            0,
            2,
        ));
        assert_eq!(target_address(v6, 7), "[fe80::1]:3260,7");
        let mapped = SocketAddr::from(("::ffff:10.0.0.5".parse::<Ipv6Addr>().unwrap(), 860));
        assert_eq!(target_address(mapped, 1), "10.0.0.5:860,1");
    }

    #[test]
    fn invalid_names_are_errors() {
        let bad = vec![("iqn.bad\u{1}".to_string(), 1, true)];
        assert!(send_targets("All", "i", &bad, v4()).is_err());
    }
}
