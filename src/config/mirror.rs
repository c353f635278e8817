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
