//! libiscsi-style LUN URLs: `iscsi://[user%secret@]host[:port]/IQN/LUN`.
//!
//! The CHAP secret is separated from the user by `%` (as libiscsi does: `:` would be taken for a
//! port). The port defaults to 3260; an IPv6 host is written in brackets (`[::1]:3260`). The
//! secret never appears in `Display` or `Debug` output, so a URL can be logged and written into
//! a result file as it is.

use std::fmt;
use std::str::FromStr;

use ringsan::iscsi::pdu::MAX_FLAT_LUN;

/// The iSCSI port when the URL names none (RFC 7143 §13.6).
pub const DEFAULT_PORT: u16 = 3260;

/// What is wrong with a URL; each message shows the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "{0:?} does not start with iscsi:// (expected iscsi://[user%secret@]host[:port]/IQN/LUN)"
    )]
    Scheme(String),
    #[error("{0:?} names no target: expected iscsi://[user%secret@]host[:port]/IQN/LUN")]
    MissingTarget(String),
    #[error("{0:?} names no LUN: expected .../IQN/LUN, e.g. .../iqn.2026-11.io.ringsan:demo/0")]
    MissingLun(String),
    #[error("{url:?}: the LUN {lun:?} is not a number from 0 to {MAX_FLAT_LUN}")]
    BadLun { url: String, lun: String },
    #[error("{0:?} has an empty host")]
    EmptyHost(String),
    #[error("{url:?}: the port {port:?} is not a number from 1 to 65535")]
    BadPort { url: String, port: String },
    #[error("{0:?}: an IPv6 host needs its closing bracket, e.g. iscsi://[::1]:3260/IQN/0")]
    UnclosedBracket(String),
    #[error("{0:?}: CHAP credentials are written user%secret@host (a % between user and secret)")]
    BadCredentials(String),
}

/// CHAP credentials from a URL. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One LUN through one portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    pub port: u16,
    pub iqn: String,
    pub lun: u16,
    pub chap: Option<Credentials>,
}

impl IscsiUrl {
    /// Parses `iscsi://[user%secret@]host[:port]/IQN/LUN`.
    pub fn parse(text: &str) -> Result<IscsiUrl, UrlError> {
        let owned = || text.to_string();
        let rest = strip_scheme(text).ok_or_else(|| UrlError::Scheme(owned()))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| UrlError::MissingTarget(owned()))?;
        let (chap, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(credentials(userinfo, text)?), hostport),
            None => (None, authority),
        };
        let (host, port) = host_port(hostport, text)?;
        let (iqn, lun) = path
            .rsplit_once('/')
            .ok_or_else(|| UrlError::MissingLun(owned()))?;
        if iqn.is_empty() || iqn.contains('/') {
            return Err(UrlError::MissingTarget(owned()));
        }
        if lun.is_empty() {
            return Err(UrlError::MissingLun(owned()));
        }
        let lun = lun
            .parse::<u16>()
            .ok()
            .filter(|l| *l <= MAX_FLAT_LUN)
            .ok_or_else(|| UrlError::BadLun {
                url: owned(),
                lun: lun.to_string(),
            })?;
        Ok(IscsiUrl {
            host,
            port,
            iqn: iqn.to_string(),
            lun,
            chap,
        })
    }

    /// `host:port` for connecting (`[v6]:port` for IPv6 literals).
    pub fn portal(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The (IQN, LUN) pair: URLs that share it are paths to the same LUN.
    pub fn lun_key(&self) -> (&str, u16) {
        (&self.iqn, self.lun)
    }
}

impl FromStr for IscsiUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        IscsiUrl::parse(s)
    }
}

/// The URL with the secret left out: `iscsi://user@host:port/IQN/LUN`.
impl fmt::Display for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = match &self.chap {
            Some(c) => format!("{}@", c.user),
            None => String::new(),
        };
        write!(
            f,
            "iscsi://{user}{}/{}/{}",
            self.portal(),
            self.iqn,
            self.lun
        )
    }
}

fn strip_scheme(text: &str) -> Option<&str> {
    let head = text.get(..8)?;
    head.eq_ignore_ascii_case("iscsi://")
        .then(|| text.get(8..))
        .flatten()
}

fn credentials(userinfo: &str, url: &str) -> Result<Credentials, UrlError> {
    match userinfo.split_once('%') {
        Some((user, secret)) if !user.is_empty() && !secret.is_empty() => Ok(Credentials {
            user: user.to_string(),
            secret: secret.to_string(),
        }),
        _ => Err(UrlError::BadCredentials(url.to_string())),
    }
}

fn host_port(hostport: &str, url: &str) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::UnclosedBracket(url.to_string()))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(UrlError::UnclosedBracket(url.to_string())),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost(url.to_string()));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| UrlError::BadPort {
                url: url.to_string(),
                port: p.to_string(),
            })?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IQN: &str = "iqn.2026-11.io.ringsan:demo";

    #[test]
    fn plain_url_takes_the_default_port() {
        let u = IscsiUrl::parse(&format!("iscsi://127.0.0.1/{IQN}/0")).unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 3260);
        assert_eq!(u.iqn, IQN);
        assert_eq!(u.lun, 0);
        assert!(u.chap.is_none());
        assert_eq!(u.portal(), "127.0.0.1:3260");
    }

    #[test]
    fn port_lun_and_chap_credentials() {
        let u = IscsiUrl::parse(&format!(
            "iscsi://dom0%twelve+chars@host.example:3261/{IQN}/17"
        ))
        .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.lun), ("host.example", 3261, 17));
        let chap = u.chap.clone().unwrap();
        assert_eq!(
            (chap.user.as_str(), chap.secret.as_str()),
            ("dom0", "twelve+chars")
        );
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("twelve"), "secret leaked: {shown}");
        assert_eq!(
            u.to_string(),
            format!("iscsi://dom0@host.example:3261/{IQN}/17")
        );
    }

    #[test]
    fn ipv6_hosts_go_in_brackets() {
        let u = IscsiUrl::parse(&format!("iscsi://[::1]:3300/{IQN}/1")).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3300));
        assert_eq!(u.portal(), "[::1]:3300");
        let u = IscsiUrl::parse(&format!("iscsi://[fe80::2]/{IQN}/1")).unwrap();
        assert_eq!(u.port, 3260);
    }

    #[test]
    fn secret_may_hold_a_percent_sign_and_an_at() {
        let u = IscsiUrl::parse(&format!("iscsi://u%s%e@c@h:1/{IQN}/0")).unwrap();
        assert_eq!(u.chap.unwrap().secret, "s%e@c");
        assert_eq!(u.host, "h");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        type Case = (&'static str, fn(&UrlError) -> bool, &'static str);
        let cases: [Case; 11] = [
            (
                "http://h/iqn.x/0",
                |e| matches!(e, UrlError::Scheme(_)),
                "iscsi://",
            ),
            (
                "iscsi://h",
                |e| matches!(e, UrlError::MissingTarget(_)),
                "names no target",
            ),
            (
                "iscsi://h/iqn.x",
                |e| matches!(e, UrlError::MissingLun(_)),
                "names no LUN",
            ),
            (
                "iscsi://h/iqn.x/",
                |e| matches!(e, UrlError::MissingLun(_)),
                "names no LUN",
            ),
            (
                "iscsi://h//0",
                |e| matches!(e, UrlError::MissingTarget(_)),
                "names no target",
            ),
            (
                "iscsi://h/iqn.x/abc",
                |e| matches!(e, UrlError::BadLun { .. }),
                "0 to 16383",
            ),
            (
                "iscsi://h/iqn.x/99999",
                |e| matches!(e, UrlError::BadLun { .. }),
                "0 to 16383",
            ),
            (
                "iscsi://:3260/iqn.x/0",
                |e| matches!(e, UrlError::EmptyHost(_)),
                "empty host",
            ),
            (
                "iscsi://h:0/iqn.x/0",
                |e| matches!(e, UrlError::BadPort { .. }),
                "1 to 65535",
            ),
            (
                "iscsi://[::1/iqn.x/0",
                |e| matches!(e, UrlError::UnclosedBracket(_)),
                "bracket",
            ),
            (
                "iscsi://user@h/iqn.x/0",
                |e| matches!(e, UrlError::BadCredentials(_)),
                "user%secret",
            ),
        ];
        for (text, is_kind, words) in cases {
            let err = IscsiUrl::parse(text).unwrap_err();
            assert!(is_kind(&err), "{text}: {err:?}");
            assert!(err.to_string().contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn urls_of_one_lun_share_a_key() {
        let a = IscsiUrl::parse(&format!("iscsi://127.0.0.1:3260/{IQN}/0")).unwrap();
        let b = IscsiUrl::parse(&format!("iscsi://127.0.0.2:3262/{IQN}/0")).unwrap();
        let c = IscsiUrl::parse(&format!("iscsi://127.0.0.1:3260/{IQN}/1")).unwrap();
        assert_eq!(a.lun_key(), b.lun_key());
        assert_ne!(a.lun_key(), c.lun_key());
    }
}
