//! Targets as the transport sees them: name, portal group tag, access list, CHAP credentials and
//! the LUN map, shared by every reactor. Implements the login code's [`TargetCatalog`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::{ChapConfig, TargetConfig};
use crate::iscsi::chap::ChapCredentials;
use crate::iscsi::login::{AuthPolicy, TargetCatalog, TargetInfo};
use crate::scsi::lun::LogicalUnit;

/// One target.
pub struct Target {
    /// iSCSI name (lower case).
    pub iqn: String,
    /// Target portal group tag (also the relative target port identifier).
    pub tpgt: u16,
    /// TargetAlias.
    pub alias: Option<String>,
    /// Allowed initiator names; empty allows any.
    pub allow: Vec<String>,
    /// CHAP the initiator must pass.
    pub chap: Option<ChapConfig>,
    /// Credentials for mutual CHAP.
    pub mutual_chap: Option<ChapConfig>,
    luns: RwLock<BTreeMap<u16, Arc<LogicalUnit>>>,
}

impl Target {
    /// A target from its configuration, with already opened LUNs.
    pub fn new(config: &TargetConfig, luns: Vec<Arc<LogicalUnit>>) -> Target {
        Target {
            iqn: config.iqn.clone(),
            tpgt: config.tpgt,
            alias: config.alias.clone(),
            allow: config.allow.clone(),
            chap: config.chap.clone(),
            mutual_chap: config.mutual_chap.clone(),
            luns: RwLock::new(luns.into_iter().map(|l| (l.number(), l)).collect()),
        }
    }

    /// Whether `initiator` may log in.
    pub fn allows(&self, initiator: &str) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|a| a.eq_ignore_ascii_case(initiator))
    }

    /// The LUN `number`, if configured.
    pub fn lun(&self, number: u16) -> Option<Arc<LogicalUnit>> {
        self.luns.read().ok()?.get(&number).cloned()
    }

    /// Every configured LUN number, ascending.
    pub fn lun_numbers(&self) -> Vec<u16> {
        self.luns
            .read()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every LUN.
    pub fn luns(&self) -> Vec<Arc<LogicalUnit>> {
        self.luns
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn auth(&self) -> AuthPolicy {
        match &self.chap {
            None => AuthPolicy::None,
            Some(c) => AuthPolicy::Chap {
                initiator: credentials(c),
                target: self.mutual_chap.as_ref().map(credentials),
            },
        }
    }
}

fn credentials(c: &ChapConfig) -> ChapCredentials {
    ChapCredentials {
        user: c.user.clone(),
        secret: c.secret.as_bytes().to_vec(),
    }
}

/// Every target of the daemon.
#[derive(Default)]
pub struct Targets {
    targets: RwLock<Vec<Arc<Target>>>,
}

impl Targets {
    /// A set of targets.
    pub fn new(targets: Vec<Arc<Target>>) -> Targets {
        Targets {
            targets: RwLock::new(targets),
        }
    }

    /// The target named `iqn` (case-insensitive, as iSCSI names are).
    pub fn get(&self, iqn: &str) -> Option<Arc<Target>> {
        self.targets
            .read()
            .ok()?
            .iter()
            .find(|t| t.iqn.eq_ignore_ascii_case(iqn))
            .cloned()
    }

    /// All targets.
    pub fn all(&self) -> Vec<Arc<Target>> {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }
}

impl TargetCatalog for Targets {
    fn lookup(&self, target_name: &str, initiator_name: &str) -> Option<TargetInfo> {
        let t = self.get(target_name)?;
        Some(TargetInfo {
            tpgt: t.tpgt,
            alias: t.alias.clone(),
            auth: t.auth(),
            initiator_allowed: t.allows(initiator_name),
        })
    }

    fn discovery_auth(&self) -> AuthPolicy {
        AuthPolicy::None
    }
}
