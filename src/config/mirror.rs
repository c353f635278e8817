//! The mirror link's configuration: `[mirror]` (this node's id and address, the peer's, the
//! shared secret, the resync rate) and the per-LUN `mirror_port` / `meta_path` that make a LUN a
//! mirrored volume. Parsed and validated here; each error names its field.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{parse_size, ConfigError, Validator};

/// Shortest shared secret accepted (it authenticates the peer and keys every frame's tag).
pub const MIN_SECRET_LEN: usize = 16;

/// `[mirror]`: how this node reaches its peer.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// This node's id (distinct from the peer's; the lower id dials, the higher accepts).
    pub node_id: u32,
    /// The peer's id.
    pub peer_id: u32,
    /// This node's mirror-link address: each mirrored LUN listens on its own port there.
    pub address: IpAddr,
    /// The peer's mirror-link address.
    pub peer_address: IpAddr,
    /// The shared secret.
    pub secret: String,
    /// The link is a private cable: frames carry CRC32C but no HMAC tag.
    pub private_cable: bool,
    /// Most bytes per second a resync copies (0: no limit).
    pub resync_rate_bytes_per_s: u64,
    /// A link on which nothing arrives for this long is dropped.
    pub link_timeout_ms: u32,
}

impl std::fmt::Debug for MirrorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorConfig")
            .field("node_id", &self.node_id)
            .field("peer_id", &self.peer_id)
            .field("address", &self.address)
            .field("peer_address", &self.peer_address)
            .field("secret", &"<redacted>")
            .field("private_cable", &self.private_cable)
            .field("resync_rate_bytes_per_s", &self.resync_rate_bytes_per_s)
            .field("link_timeout_ms", &self.link_timeout_ms)
            .finish()
    }
}

/// A LUN's mirror settings: it is a mirrored volume (its UUID and size must match the peer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunMirror {
    /// The volume's link port (on both nodes' mirror addresses).
    pub port: u16,
    /// The metadata file (bitmap, activity log, generation ids).
    pub meta_path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMirror {
    node_id: Spanned<u32>,
    peer_id: Spanned<u32>,
    address: Spanned<String>,
    peer_address: Spanned<String>,
    secret: Spanned<String>,
    private_cable: Option<bool>,
    resync_rate: Option<Spanned<super::SizeValue>>,
    link_timeout_ms: Option<Spanned<u32>>,
}

impl Validator<'_> {
    pub(super) fn mirror(&self, m: RawMirror) -> Result<MirrorConfig, ConfigError> {
        let node_id = *m.node_id.get_ref();
        let peer_id = *m.peer_id.get_ref();
        if node_id == peer_id {
            return self.err(
                m.peer_id.span(),
                "mirror.peer_id".into(),
                "must differ from mirror.node_id",
            );
        }
        let ip = |s: &Spanned<String>, field: &str| -> Result<IpAddr, ConfigError> {
            s.get_ref().parse::<IpAddr>().or_else(|_| {
                self.err(
                    s.span(),
                    format!("mirror.{field}"),
                    "must be an IP address, e.g. \"10.0.0.1\" (each mirrored LUN names its port)",
                )
            })
        };
        let address = ip(&m.address, "address")?;
        let peer_address = ip(&m.peer_address, "peer_address")?;
        if m.secret.get_ref().len() < MIN_SECRET_LEN {
            return self.err(
                m.secret.span(),
                "mirror.secret".into(),
                format!("must be at least {MIN_SECRET_LEN} characters"),
            );
        }
        let resync_rate_bytes_per_s = match &m.resync_rate {
            None => 0,
            Some(r) => match r.get_ref() {
                super::SizeValue::Bytes(b) => *b,
                super::SizeValue::Text(t) => match parse_size(t) {
                    Some(b) => b,
                    None => {
                        return self.err(
                            r.span(),
                            "mirror.resync_rate".into(),
                            "must be bytes per second like 104857600 or \"100M\" (0: no limit)",
                        )
                    }
                },
            },
        };
        let link_timeout_ms = match &m.link_timeout_ms {
            Some(t) if !(500..=600_000).contains(t.get_ref()) => {
                return self.err(
                    t.span(),
                    "mirror.link_timeout_ms".into(),
                    "must be between 500 and 600000",
                )
            }
            Some(t) => *t.get_ref(),
            None => 6000,
        };
        Ok(MirrorConfig {
            node_id,
            peer_id,
            address,
            peer_address,
            secret: m.secret.into_inner(),
            private_cable: m.private_cable.unwrap_or(false),
            resync_rate_bytes_per_s,
            link_timeout_ms,
        })
    }

    /// A LUN's `mirror_port` and `meta_path`.
    pub(super) fn lun_mirror(
        &self,
        field: &str,
        port: Option<&Spanned<u32>>,
        meta_path: Option<&Spanned<String>>,
        path: &Path,
        size_given: bool,
        mirror: Option<&MirrorConfig>,
    ) -> Result<Option<LunMirror>, ConfigError> {
        let Some(port) = port else {
            if let Some(m) = meta_path {
                return self.err(
                    m.span(),
                    format!("{field}.meta_path"),
                    "only a mirrored LUN (with mirror_port) has metadata",
                );
            }
            return Ok(None);
        };
        if mirror.is_none() {
            return self.err(
                port.span(),
                format!("{field}.mirror_port"),
                "a mirrored LUN needs the [mirror] section (node ids, addresses, secret)",
            );
        }
        if !(1..=65535).contains(port.get_ref()) {
            return self.err(
                port.span(),
                format!("{field}.mirror_port"),
                "must be a TCP port between 1 and 65535",
            );
        }
        if !size_given {
            return self.err(
                port.span(),
                format!("{field}.size"),
                "a mirrored LUN needs its size (both nodes must agree on it)",
            );
        }
        let meta_path = match meta_path {
            Some(m) => {
                let p = Path::new(m.get_ref());
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(p)
                }
            }
            None => {
                let mut p = path.as_os_str().to_owned();
                p.push(".meta");
                PathBuf::from(p)
            }
        };
        Ok(Some(LunMirror {
            port: *port.get_ref() as u16,
            meta_path,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{Config, ConfigError};

    const MIRRORED: &str = r#"
[daemon]
data_dir = "/var/lib/ringsan"

[mirror]
node_id = 1
peer_id = 2
address = "10.0.0.1"
peer_address = "10.0.0.2"
secret = "sixteen+chars+ok"
resync_rate = "100M"

[[target]]
iqn = "iqn.2026-11.io.ringsan:vm"

[[target.lun]]
lun = 0
path = "vm.img"
size = "10G"
mirror_port = 7789
"#;

    fn invalid(text: &str) -> (String, usize, String) {
        match Config::parse(text, "t.toml", Path::new("/etc")) {
            Err(ConfigError::Invalid {
                field,
                line,
                message,
                ..
            }) => (field, line, message),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn a_mirrored_lun_and_its_link() {
        let c = Config::parse(MIRRORED, "t.toml", Path::new("/etc")).unwrap();
        let m = c.mirror.as_ref().unwrap();
        assert_eq!((m.node_id, m.peer_id), (1, 2));
        assert_eq!(m.resync_rate_bytes_per_s, 100 << 20);
        assert_eq!(m.link_timeout_ms, 6000);
        assert!(!m.private_cable);
        assert!(!format!("{m:?}").contains("sixteen"), "secret redacted");
        let lm = c.targets[0].luns[0].mirror.as_ref().unwrap();
        assert_eq!(lm.port, 7789);
        assert_eq!(lm.meta_path, PathBuf::from("/var/lib/ringsan/vm.img.meta"));
        // Written back by the control API and read again: the same configuration.
        let again = Config::parse(&c.to_toml().unwrap(), "w.toml", Path::new("/")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn bad_mirror_settings_name_their_field() {
        let cases = [
            ("peer_id = 2", "peer_id = 1", "mirror.peer_id", "differ"),
            (
                "address = \"10.0.0.1\"",
                "address = \"10.0.0.1:7789\"",
                "mirror.address",
                "IP address",
            ),
            (
                "secret = \"sixteen+chars+ok\"",
                "secret = \"short\"",
                "mirror.secret",
                "16",
            ),
            (
                "resync_rate = \"100M\"",
                "resync_rate = \"fast\"",
                "mirror.resync_rate",
                "bytes per second",
            ),
            (
                "mirror_port = 7789",
                "mirror_port = 70000",
                "target[0].lun[0].mirror_port",
                "port",
            ),
            ("size = \"10G\"\n", "", "target[0].lun[0].size", "size"),
        ];
        for (from, to, field, words) in cases {
            let text = MIRRORED.replace(from, to);
            let (f, line, message) = invalid(&text);
            assert_eq!(f, field, "{to}: {message}");
            assert!(line > 1, "{field}: line {line}");
            assert!(message.contains(words), "{field}: {message}");
        }
        // A mirrored LUN needs [mirror]; metadata without mirroring is refused.
        let start = MIRRORED.find("[mirror]").unwrap();
        let end = MIRRORED.find("[[target]]").unwrap();
        let no_section = format!("{}{}", &MIRRORED[..start], &MIRRORED[end..]);
        assert_eq!(invalid(&no_section).0, "target[0].lun[0].mirror_port");
        let meta_only = MIRRORED.replace("mirror_port = 7789", "meta_path = \"x.meta\"");
        assert_eq!(invalid(&meta_only).0, "target[0].lun[0].meta_path");
    }
}
