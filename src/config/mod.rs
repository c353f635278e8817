//! The daemon's configuration: the TOML file format, its validation, and the embedded default.
//!
//! A config error names the file, the line and the field, and nothing is started. Validation is
//! complete before anything is opened, so a bad file changes nothing.

mod mirror;

pub use mirror::{LunMirror, MirrorConfig, MIN_SECRET_LEN};

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The demo target the daemon serves with no arguments.
pub const DEMO_IQN: &str = "iqn.2026-11.io.ringsan:demo";
/// The demo portal.
pub const DEMO_PORTAL: &str = "127.0.0.1:3260";
/// Default seconds between NOP-In pings on an idle connection.
pub const DEFAULT_NOP_INTERVAL_SECONDS: u32 = 10;
/// Where the Prometheus metrics are served by default (`[daemon] metrics_address`).
pub const DEFAULT_METRICS_ADDRESS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9470,
));
/// Size of the demo LUN.
pub const DEMO_LUN_SIZE_BYTES: u64 = 1 << 30;

/// What went wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML could not be parsed, or a field has the wrong type or is missing.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The parser's message (names the field).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    mirror: Option<mirror::RawMirror>,
    #[serde(default, rename = "target")]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    data_dir: Option<String>,
    reactors: Option<Spanned<u32>>,
    buffer_size_kib: Option<Spanned<u32>>,
    buffer_count: Option<Spanned<u32>>,
    oui: Option<Spanned<String>>,
    #[serde(default)]
    portals: Vec<Spanned<String>>,
    nop_interval_seconds: Option<Spanned<u32>>,
    control_socket: Option<String>,
    metrics_address: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    iqn: Spanned<String>,
    tpgt: Option<Spanned<u32>>,
    alias: Option<String>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    chap: Option<RawChap>,
    mutual_chap: Option<RawChap>,
    #[serde(default, rename = "lun")]
    luns: Vec<RawLun>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChap {
    user: Spanned<String>,
    secret: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLun {
    lun: Spanned<u32>,
    path: Spanned<String>,
    size: Option<Spanned<SizeValue>>,
    block_size: Option<Spanned<u32>>,
    physical_block_size: Option<Spanned<u32>>,
    serial: Option<Spanned<String>>,
    uuid: Option<Spanned<String>>,
    write_cache: Option<bool>,
    mirror_port: Option<Spanned<u32>>,
    meta_path: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// CHAP credentials as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapConfig {
    /// CHAP_N.
    pub user: String,
    /// The shared secret.
    pub secret: String,
}

impl std::fmt::Debug for ChapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ChapConfig {{ user: {:?}, secret: <redacted> }}",
            self.user
        )
    }
}

/// One LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunConfig {
    /// LUN number.
    pub lun: u16,
    /// Backing file or block device.
    pub path: PathBuf,
    /// Size for a file that does not exist yet (created sparse); `None` uses the existing size.
    pub size_bytes: Option<u64>,
    /// Logical block size (512 or 4096).
    pub block_size: u32,
    /// Physical block size reported in READ CAPACITY(16) and the Block Limits page; `None`
    /// reports the backing store's own (its file system block or the device's physical block).
    pub physical_block_size: Option<u32>,
    /// Unit serial number (VPD 80h); derived from the UUID when absent.
    pub serial: Option<String>,
    /// The LUN's identity; derived from the target and LUN number when absent.
    pub uuid: [u8; 16],
    /// Initial WCE (write cache enabled); false by default: every write is durable on completion.
    pub write_cache: bool,
    /// Set for a mirrored volume: its link port and metadata file.
    pub mirror: Option<LunMirror>,
}

/// One target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// The iSCSI qualified name.
    pub iqn: String,
    /// Target portal group tag.
    pub tpgt: u16,
    /// TargetAlias.
    pub alias: Option<String>,
    /// Initiator names allowed; empty allows any.
    pub allow: Vec<String>,
    /// CHAP the initiator must pass.
    pub chap: Option<ChapConfig>,
    /// Credentials the target proves itself with (mutual CHAP).
    pub mutual_chap: Option<ChapConfig>,
    /// LUNs.
    pub luns: Vec<LunConfig>,
}

/// The whole, validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where relative LUN paths and state live.
    pub data_dir: PathBuf,
    /// Reactor threads.
    pub reactors: usize,
    /// Size of each registered buffer.
    pub buffer_size_bytes: usize,
    /// Registered buffers per reactor.
    pub buffer_count: usize,
    /// IEEE OUI for NAA 6h designators.
    pub oui: Option<u32>,
    /// Listening addresses.
    pub portals: Vec<SocketAddr>,
    /// Seconds between NOP-In pings on an idle connection (0: no pings); a ping unanswered for
    /// two intervals closes the connection.
    pub nop_interval_seconds: u32,
    /// The control API's Unix socket (root only).
    pub control_socket: PathBuf,
    /// Where the Prometheus metrics are served over HTTP (`GET /metrics`); `None`: nowhere.
    pub metrics_address: Option<SocketAddr>,
    /// The mirror link (`[mirror]`), when this node mirrors volumes with a peer.
    pub mirror: Option<MirrorConfig>,
    /// Targets.
    pub targets: Vec<TargetConfig>,
}

impl Config {
    /// The embedded default: the demo target with a 1 GiB sparse LUN 0 under `data_dir`.
    pub fn demo(data_dir: &Path) -> Config {
        Config {
            data_dir: data_dir.to_path_buf(),
            reactors: default_reactors(),
            buffer_size_bytes: 256 * 1024,
            buffer_count: 256,
            oui: None,
            nop_interval_seconds: DEFAULT_NOP_INTERVAL_SECONDS,
            control_socket: PathBuf::from(crate::admin::protocol::DEFAULT_SOCKET),
            metrics_address: Some(DEFAULT_METRICS_ADDRESS),
            portals: vec![DEMO_PORTAL
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 3260)))],
            targets: vec![TargetConfig {
                iqn: DEMO_IQN.to_string(),
                tpgt: 1,
                alias: Some("ringsan demo".to_string()),
                allow: Vec::new(),
                chap: None,
                mutual_chap: None,
                luns: vec![LunConfig {
                    lun: 0,
                    path: data_dir.join("demo-lun0.img"),
                    size_bytes: Some(DEMO_LUN_SIZE_BYTES),
                    block_size: 512,
                    physical_block_size: None,
                    serial: None,
                    uuid: derive_uuid(DEMO_IQN, 0),
                    write_cache: false,
                    mirror: None,
                }],
            }],
            mirror: None,
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &file, base)
    }

    /// Parses and validates TOML `text`; `file` names it in errors; relative paths are taken
    /// from `base`.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().to_string(),
        })?;
        Validator { text, file, base }.config(raw)
    }
}

fn default_reactors() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

/// A stable identity for a LUN that has none configured: FNV-1a of target name and LUN,
/// shaped as a version-4-like UUID. Stable across restarts, distinct across LUNs.
pub fn derive_uuid(iqn: &str, lun: u16) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, seed) in [0xcbf29ce484222325u64, 0x84222325cbf29ce4]
        .iter()
        .enumerate()
    {
        let mut h = *seed;
        for b in iqn.bytes().chain(lun.to_be_bytes()).chain([half as u8]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        out[half * 8..half * 8 + 8].copy_from_slice(&h.to_be_bytes());
    }
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// Parses "10G", "512M", "4096", "1T" (binary units) into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Whether `name` is a plausible iSCSI name (RFC 7143 §4.2.7: iqn., eui. or naa. forms).
pub fn valid_iscsi_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 223 {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("iqn.") {
        let date_ok = rest.len() > 8
            && rest.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[4] == b'-'
            && rest.as_bytes()[5..7].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[7] == b'.';
        date_ok
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    } else if let Some(hex) = lower.strip_prefix("eui.") {
        hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else if let Some(hex) = lower.strip_prefix("naa.") {
        (hex.len() == 16 || hex.len() == 32) && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        false
    }
}

struct Validator<'a> {
    text: &'a str,
    file: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: String,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::Invalid {
            file: self.file.to_string(),
            line: line_of(self.text, span.start),
            field,
            message: message.into(),
        })
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let data_dir = self.path(raw.daemon.data_dir.as_deref().unwrap_or("data"));
        let reactors = match &raw.daemon.reactors {
            Some(r) if !(1..=64).contains(r.get_ref()) => {
                return self.err(
                    r.span(),
                    "daemon.reactors".into(),
                    "must be between 1 and 64",
                )
            }
            Some(r) => *r.get_ref() as usize,
            None => default_reactors(),
        };
        let buffer_size_bytes = match &raw.daemon.buffer_size_kib {
            Some(b) if !(64..=4096).contains(b.get_ref()) || b.get_ref() % 4 != 0 => {
                return self.err(
                    b.span(),
                    "daemon.buffer_size_kib".into(),
                    "must be a multiple of 4 between 64 and 4096",
                )
            }
            Some(b) => *b.get_ref() as usize * 1024,
            None => 256 * 1024,
        };
        let buffer_count = match &raw.daemon.buffer_count {
            Some(c) if !(16..=16384).contains(c.get_ref()) => {
                return self.err(
                    c.span(),
                    "daemon.buffer_count".into(),
                    "must be between 16 and 16384",
                )
            }
            Some(c) => *c.get_ref() as usize,
            None => 256,
        };
        let oui = match &raw.daemon.oui {
            Some(o) => match u32::from_str_radix(o.get_ref().trim_start_matches("0x"), 16) {
                Ok(v) if v <= 0xFF_FFFF && !o.get_ref().is_empty() => Some(v),
                _ => {
                    return self.err(
                        o.span(),
                        "daemon.oui".into(),
                        "must be a 24-bit IEEE OUI in hex, e.g. \"001405\"",
                    )
                }
            },
            None => None,
        };
        let mut portals = Vec::new();
        for (i, p) in raw.daemon.portals.iter().enumerate() {
            match p.get_ref().parse::<SocketAddr>() {
                Ok(a) if !portals.contains(&a) => portals.push(a),
                Ok(_) => {
                    return self.err(p.span(), format!("daemon.portals[{i}]"), "duplicate portal")
                }
                Err(_) => {
                    return self.err(
                        p.span(),
                        format!("daemon.portals[{i}]"),
                        "must be ADDRESS:PORT, e.g. \"127.0.0.1:3260\" or \"[::1]:3260\"",
                    )
                }
            }
        }
        if portals.is_empty() {
            portals.push(SocketAddr::from(([127, 0, 0, 1], 3260)));
        }
        let control_socket = raw
            .daemon
            .control_socket
            .as_deref()
            .map(|p| self.path(p))
            .unwrap_or_else(|| PathBuf::from(crate::admin::protocol::DEFAULT_SOCKET));
        let metrics_address =
            self.metrics_address(raw.daemon.metrics_address.as_ref(), &portals)?;
        let nop_interval_seconds = match &raw.daemon.nop_interval_seconds {
            Some(n) if *n.get_ref() > 3600 => {
                return self.err(
                    n.span(),
                    "daemon.nop_interval_seconds".into(),
                    "must be between 0 (off) and 3600",
                )
            }
            Some(n) => *n.get_ref(),
            None => DEFAULT_NOP_INTERVAL_SECONDS,
        };
        let mirror = match raw.mirror {
            Some(m) => Some(self.mirror(m)?),
            None => None,
        };
        let mut targets: Vec<TargetConfig> = Vec::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let target = self.target(i, t, &data_dir, mirror.as_ref())?;
            targets.push(target);
        }
        self.check_unique_targets(&targets)?;
        Ok(Config {
            data_dir,
            reactors,
            buffer_size_bytes,
            buffer_count,
            oui,
            portals,
            nop_interval_seconds,
            control_socket,
            metrics_address,
            mirror,
            targets,
        })
    }

    /// `[daemon] metrics_address`: ADDRESS:PORT, or "off" or "" for none; absent: the default.
    fn metrics_address(
        &self,
        raw: Option<&Spanned<String>>,
        portals: &[SocketAddr],
    ) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(m) = raw else {
            return Ok(Some(DEFAULT_METRICS_ADDRESS));
        };
        let text = m.get_ref().trim();
        if text.is_empty() || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        match text.parse::<SocketAddr>() {
            Ok(a) if portals.contains(&a) => self.err(
                m.span(),
                "daemon.metrics_address".into(),
                format!("{a} is also an iSCSI portal; pick another port"),
            ),
            Ok(a) => Ok(Some(a)),
            Err(_) => self.err(
                m.span(),
                "daemon.metrics_address".into(),
                "must be ADDRESS:PORT, e.g. \"127.0.0.1:9470\", or \"off\" (or \"\") to serve no metrics",
            ),
        }
    }

    fn check_unique_targets(&self, targets: &[TargetConfig]) -> Result<(), ConfigError> {
        for (i, t) in targets.iter().enumerate() {
            if let Some(j) = targets[..i]
                .iter()
                .position(|o| o.iqn.eq_ignore_ascii_case(&t.iqn))
            {
                return Err(ConfigError::Invalid {
                    file: self.file.to_string(),
                    line: 1,
                    field: format!("target[{i}].iqn"),
                    message: format!("{} is already defined by target[{j}]", t.iqn),
                });
            }
        }
        Ok(())
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn target(
        &self,
        i: usize,
        t: RawTarget,
        data_dir: &Path,
        mirror: Option<&MirrorConfig>,
    ) -> Result<TargetConfig, ConfigError> {
        let field = |f: &str| format!("target[{i}].{f}");
        if !valid_iscsi_name(t.iqn.get_ref()) {
            return self.err(t.iqn.span(), field("iqn"), "not a valid iSCSI name (iqn.YYYY-MM.reversed.domain[:name], eui.<16 hex>, naa.<16 or 32 hex>)");
        }
        let iqn = t.iqn.get_ref().to_ascii_lowercase();
        let tpgt = match &t.tpgt {
            Some(v) if !(1..=65535).contains(v.get_ref()) => {
                return self.err(v.span(), field("tpgt"), "must be between 1 and 65535")
            }
            Some(v) => *v.get_ref() as u16,
            None => 1,
        };
        let mut allow = Vec::new();
        for (k, a) in t.allow.iter().enumerate() {
            if !valid_iscsi_name(a.get_ref()) {
                return self.err(
                    a.span(),
                    field(&format!("allow[{k}]")),
                    "not a valid iSCSI initiator name",
                );
            }
            allow.push(a.get_ref().to_ascii_lowercase());
        }
        let chap = t.chap.map(|c| self.chap(&field("chap"), c)).transpose()?;
        let mutual_chap = t
            .mutual_chap
            .map(|c| self.chap(&field("mutual_chap"), c))
            .transpose()?;
        if let (None, Some(_)) = (&chap, &mutual_chap) {
            return self.err(
                0..0,
                field("mutual_chap"),
                "mutual CHAP needs `chap` for the initiator as well",
            );
        }
        if let (Some(a), Some(b)) = (&chap, &mutual_chap) {
            if a.secret == b.secret {
                return self.err(
                    0..0,
                    field("mutual_chap.secret"),
                    "must differ from the initiator's CHAP secret (RFC 7143 §12.1.3)",
                );
            }
        }
        let mut luns: Vec<LunConfig> = Vec::new();
        for (k, l) in t.luns.into_iter().enumerate() {
            let lun = self.lun(&field(&format!("lun[{k}]")), &iqn, l, data_dir, mirror)?;
            if luns.iter().any(|o| o.lun == lun.lun) {
                return self.err(
                    0..0,
                    field(&format!("lun[{k}].lun")),
                    format!("LUN {} is defined twice", lun.lun),
                );
            }
            luns.push(lun);
        }
        Ok(TargetConfig {
            iqn,
            tpgt,
            alias: t.alias,
            allow,
            chap,
            mutual_chap,
            luns,
        })
    }

    fn chap(&self, field: &str, c: RawChap) -> Result<ChapConfig, ConfigError> {
        if c.user.get_ref().is_empty() || c.user.get_ref().len() > 255 {
            return self.err(
                c.user.span(),
                format!("{field}.user"),
                "must be 1 to 255 characters",
            );
        }
        if !(12..=255).contains(&c.secret.get_ref().len()) {
            return self.err(
                c.secret.span(),
                format!("{field}.secret"),
                "must be 12 to 255 characters (RFC 7143 §12.1.3 wants at least 96 bits)",
            );
        }
        Ok(ChapConfig {
            user: c.user.into_inner(),
            secret: c.secret.into_inner(),
        })
    }

    fn lun(
        &self,
        field: &str,
        iqn: &str,
        l: RawLun,
        data_dir: &Path,
        mirror: Option<&MirrorConfig>,
    ) -> Result<LunConfig, ConfigError> {
        let number = *l.lun.get_ref();
        if number > 16383 {
            return self.err(
                l.lun.span(),
                format!("{field}.lun"),
                "must be between 0 and 16383",
            );
        }
        let block_size = match &l.block_size {
            Some(b) if *b.get_ref() != 512 && *b.get_ref() != 4096 => {
                return self.err(
                    b.span(),
                    format!("{field}.block_size"),
                    "must be 512 or 4096",
                )
            }
            Some(b) => *b.get_ref(),
            None => 512,
        };
        let physical_block_size = match &l.physical_block_size {
            Some(p) => {
                let v = *p.get_ref();
                if v < block_size || !v.is_power_of_two() || v > 65536 {
                    return self.err(p.span(), format!("{field}.physical_block_size"), format!("must be a power of two between the block size ({block_size}) and 65536"));
                }
                Some(v)
            }
            None => None,
        };
        let size_bytes = match &l.size {
            None => None,
            Some(s) => {
                let bytes = match s.get_ref() {
                    SizeValue::Bytes(b) => Some(*b),
                    SizeValue::Text(t) => parse_size(t),
                };
                match bytes {
                    Some(b) if b > 0 && b % block_size as u64 == 0 => Some(b),
                    Some(_) => {
                        return self.err(
                            s.span(),
                            format!("{field}.size"),
                            format!("must be a positive multiple of the block size ({block_size})"),
                        )
                    }
                    None => {
                        return self.err(
                            s.span(),
                            format!("{field}.size"),
                            "must be a size like 1073741824, \"512M\", \"10G\"",
                        )
                    }
                }
            }
        };
        let uuid = match &l.uuid {
            Some(u) => match uuid::Uuid::parse_str(u.get_ref()) {
                Ok(v) => *v.as_bytes(),
                Err(_) => return self.err(u.span(), format!("{field}.uuid"), "not a UUID"),
            },
            None => derive_uuid(iqn, number as u16),
        };
        if let Some(s) = &l.serial {
            if s.get_ref().is_empty()
                || s.get_ref().len() > 64
                || !s.get_ref().chars().all(|c| c.is_ascii_graphic())
            {
                return self.err(
                    s.span(),
                    format!("{field}.serial"),
                    "must be 1 to 64 printable ASCII characters",
                );
            }
        }
        let path = {
            let p = Path::new(l.path.get_ref());
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                data_dir.join(p)
            }
        };
        let lun_mirror = self.lun_mirror(
            field,
            l.mirror_port.as_ref(),
            l.meta_path.as_ref(),
            &path,
            size_bytes.is_some(),
            mirror,
        )?;
        Ok(LunConfig {
            lun: number as u16,
            path,
            size_bytes,
            block_size,
            physical_block_size,
            serial: l.serial.map(|s| s.into_inner()),
            uuid,
            write_cache: l.write_cache.unwrap_or(false),
            mirror: lun_mirror,
        })
    }
}

/// The TOML form of a configuration, written by the control API; [`Config::parse`] reads it
/// back to an equal configuration.
#[derive(serde::Serialize)]
struct OutConfig<'a> {
    daemon: OutDaemon<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<OutMirror<'a>>,
    target: Vec<OutTarget<'a>>,
}

#[derive(serde::Serialize)]
struct OutMirror<'a> {
    node_id: u32,
    peer_id: u32,
    address: String,
    peer_address: String,
    secret: &'a str,
    private_cable: bool,
    resync_rate: u64,
    link_timeout_ms: u32,
}

#[derive(serde::Serialize)]
struct OutDaemon<'a> {
    data_dir: String,
    reactors: usize,
    buffer_size_kib: usize,
    buffer_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    oui: Option<String>,
    portals: Vec<String>,
    nop_interval_seconds: u32,
    control_socket: String,
    metrics_address: String,
    #[serde(skip)]
    _marker: std::marker::PhantomData<&'a ()>,
}

#[derive(serde::Serialize)]
struct OutTarget<'a> {
    iqn: &'a str,
    tpgt: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<&'a str>,
    allow: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    chap: Option<OutChap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mutual_chap: Option<OutChap<'a>>,
    lun: Vec<OutLun>,
}

#[derive(serde::Serialize)]
struct OutChap<'a> {
    user: &'a str,
    secret: &'a str,
}

#[derive(serde::Serialize)]
struct OutLun {
    lun: u16,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    block_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    physical_block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    serial: Option<String>,
    uuid: String,
    write_cache: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta_path: Option<String>,
}

/// `path` made absolute against the current folder: a written file is read back from its own
/// folder, where relative paths would mean something else.
fn absolute(path: &Path) -> String {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    p.display().to_string()
}

impl Config {
    /// This configuration as a TOML file (paths absolute, secrets included: write it 0600).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let out = OutConfig {
            daemon: OutDaemon {
                data_dir: absolute(&self.data_dir),
                reactors: self.reactors,
                buffer_size_kib: self.buffer_size_bytes / 1024,
                buffer_count: self.buffer_count,
                oui: self.oui.map(|o| format!("{o:06x}")),
                portals: self.portals.iter().map(|p| p.to_string()).collect(),
                nop_interval_seconds: self.nop_interval_seconds,
                control_socket: absolute(&self.control_socket),
                metrics_address: self
                    .metrics_address
                    .map_or_else(|| "off".to_string(), |a| a.to_string()),
                _marker: std::marker::PhantomData,
            },
            mirror: self.mirror.as_ref().map(|m| OutMirror {
                node_id: m.node_id,
                peer_id: m.peer_id,
                address: m.address.to_string(),
                peer_address: m.peer_address.to_string(),
                secret: &m.secret,
                private_cable: m.private_cable,
                resync_rate: m.resync_rate_bytes_per_s,
                link_timeout_ms: m.link_timeout_ms,
            }),
            target: self
                .targets
                .iter()
                .map(|t| OutTarget {
                    iqn: &t.iqn,
                    tpgt: t.tpgt,
                    alias: t.alias.as_deref(),
                    allow: &t.allow,
                    chap: t.chap.as_ref().map(|c| OutChap {
                        user: &c.user,
                        secret: &c.secret,
                    }),
                    mutual_chap: t.mutual_chap.as_ref().map(|c| OutChap {
                        user: &c.user,
                        secret: &c.secret,
                    }),
                    lun: t
                        .luns
                        .iter()
                        .map(|l| OutLun {
                            lun: l.lun,
                            path: absolute(&l.path),
                            size: l.size_bytes,
                            block_size: l.block_size,
                            physical_block_size: l.physical_block_size,
                            serial: l.serial.clone(),
                            uuid: uuid::Uuid::from_bytes(l.uuid).to_string(),
                            write_cache: l.write_cache,
                            mirror_port: l.mirror.as_ref().map(|m| m.port),
                            meta_path: l.mirror.as_ref().map(|m| absolute(&m.meta_path)),
                        })
                        .collect(),
                })
                .collect(),
        };
        toml::to_string(&out)
    }

    /// Writes this configuration to `path` atomically: a temporary file in the same folder,
    /// fsync, rename over the old one, fsync the folder. A crash at any point leaves the old file
    /// or the new one, never a torn one.
    pub fn save_atomically(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = self.to_toml().map_err(std::io::Error::other)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ringsand.toml".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[daemon]
data_dir = "/var/lib/ringsan"
reactors = 2
portals = ["127.0.0.1:3260", "[::1]:3260"]

[[target]]
iqn = "iqn.2026-11.io.ringsan:one"
allow = ["iqn.2026-11.org.libiscsi:init1"]
chap = { user = "alice", secret = "0123456789abcdef" }

[[target.lun]]
lun = 0
path = "one.img"
size = "10G"

[[target.lun]]
lun = 1
path = "/dev/sdz"
block_size = 4096
"#;

    #[test]
    fn parses_a_full_file() {
        let c = Config::parse(GOOD, "t.toml", Path::new("/etc")).unwrap();
        assert_eq!(c.reactors, 2);
        assert_eq!(c.portals.len(), 2);
        let t = &c.targets[0];
        assert_eq!(t.luns[0].path, PathBuf::from("/var/lib/ringsan/one.img"));
        assert_eq!(t.luns[0].size_bytes, Some(10 << 30));
        assert_eq!(t.luns[1].block_size, 4096);
        assert_ne!(t.luns[0].uuid, t.luns[1].uuid);
        assert!(format!("{:?}", t.chap).contains("redacted"));
        assert!(!format!("{:?}", t.chap).contains("0123456789abcdef"));
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = GOOD.replace("block_size = 4096", "block_size = 1000");
        let e = Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:20: field `target[0].lun[1].block_size`"),
            "{e}"
        );
        let bad = GOOD.replace("size = \"10G\"", "size = \"10Q\"");
        let e = Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:15:") && e.contains("lun[0].size"), "{e}");
        let bad = GOOD.replace("lun = 1", "lun = 0");
        assert!(Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("defined twice"));
        let bad = GOOD.replace("iqn.2026-11.io.ringsan:one", "not-a-name");
        assert!(Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("target[0].iqn"));
        let bad = GOOD.replace("reactors = 2", "reactor = 2");
        let e = Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:4:") && e.contains("reactor"), "{e}");
        let bad = GOOD.replace("0123456789abcdef", "short");
        assert!(Config::parse(&bad, "t.toml", Path::new("/"))
            .unwrap_err()
            .to_string()
            .contains("chap.secret"));
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("3 MiB"), Some(3 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert!(valid_iscsi_name("iqn.2026-11.io.ringsan:demo"));
        assert!(valid_iscsi_name("eui.0123456789ABCDEF"));
        assert!(!valid_iscsi_name("iqn.26-11.x"));
        assert!(!valid_iscsi_name("iqn.2026-11.io ringsan"));
    }

    #[test]
    fn written_toml_reads_back_equal() {
        let c = Config::parse(GOOD, "t.toml", Path::new("/etc")).unwrap();
        let text = c.to_toml().unwrap();
        let back = Config::parse(&text, "written.toml", Path::new("/elsewhere")).unwrap();
        assert_eq!(back, c, "{text}");
        let dir = std::env::temp_dir().join(format!("ringsan-config-{}", std::process::id()));
        let path = dir.join("ringsand.toml");
        c.save_atomically(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), c);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "secrets inside: owner only"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metrics_address_default_off_and_errors() {
        let c = Config::parse(GOOD, "t.toml", Path::new("/etc")).unwrap();
        assert_eq!(c.metrics_address, Some(DEFAULT_METRICS_ADDRESS));
        assert_eq!(DEFAULT_METRICS_ADDRESS.to_string(), "127.0.0.1:9470");
        let with = |value: &str| {
            let text = GOOD.replace(
                "reactors = 2",
                &format!("reactors = 2\nmetrics_address = {value}"),
            );
            Config::parse(&text, "t.toml", Path::new("/etc"))
        };
        assert_eq!(with("\"off\"").unwrap().metrics_address, None);
        assert_eq!(with("\"\"").unwrap().metrics_address, None);
        assert_eq!(
            with("\"[::1]:9100\"").unwrap().metrics_address,
            Some("[::1]:9100".parse().unwrap())
        );
        let e = with("\"localhost\"").unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:5: field `daemon.metrics_address`") && e.contains("\"off\""),
            "{e}"
        );
        let e = with("\"127.0.0.1:3260\"").unwrap_err().to_string();
        assert!(
            e.contains("daemon.metrics_address") && e.contains("portal"),
            "{e}"
        );
        let e = with("9470").unwrap_err().to_string();
        assert!(e.contains("t.toml:5:"), "{e}");
        // Both forms survive the control API's rewrite of the file.
        for value in ["\"off\"", "\"127.0.0.1:9999\""] {
            let c = with(value).unwrap();
            let back = Config::parse(&c.to_toml().unwrap(), "w.toml", Path::new("/")).unwrap();
            assert_eq!(back.metrics_address, c.metrics_address);
        }
    }

    #[test]
    fn demo_is_valid_and_stable() {
        let a = Config::demo(Path::new("/tmp/x"));
        let b = Config::demo(Path::new("/tmp/x"));
        assert_eq!(a, b);
        assert_eq!(a.targets[0].iqn, DEMO_IQN);
        assert_eq!(a.portals[0].to_string(), DEMO_PORTAL);
        assert_eq!(a.targets[0].luns[0].size_bytes, Some(1 << 30));
    }
}
