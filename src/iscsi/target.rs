//! Targets as the transport sees them: name, portal group tag, access list, CHAP credentials and
//! the LUN map, shared by every reactor and changed live by the control API. Implements the login
//! code's [`TargetCatalog`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::{ChapConfig, TargetConfig};
use crate::iscsi::chap::ChapCredentials;
use crate::iscsi::login::{AuthPolicy, TargetCatalog, TargetInfo};
use crate::scsi::lun::LogicalUnit;
use crate::scsi::ua::UnitAttention;

/// Who may log in and how they prove it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Allowed initiator names; empty allows any.
    pub allow: Vec<String>,
    /// CHAP the initiator must pass.
    pub chap: Option<ChapConfig>,
    /// Credentials for mutual CHAP.
    pub mutual_chap: Option<ChapConfig>,
}

/// One target.
pub struct Target {
    /// iSCSI name (lower case).
    pub iqn: String,
    /// Target portal group tag (also the relative target port identifier).
    pub tpgt: u16,
    /// TargetAlias.
    pub alias: Option<String>,
    access: RwLock<Access>,
    luns: RwLock<BTreeMap<u16, Arc<LogicalUnit>>>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

impl Target {
    /// A target from its configuration, with already opened LUNs.
    pub fn new(config: &TargetConfig, luns: Vec<Arc<LogicalUnit>>) -> Target {
        Target {
            iqn: config.iqn.clone(),
            tpgt: config.tpgt,
            alias: config.alias.clone(),
            access: RwLock::new(Access {
                allow: config.allow.clone(),
                chap: config.chap.clone(),
                mutual_chap: config.mutual_chap.clone(),
            }),
            luns: RwLock::new(luns.into_iter().map(|l| (l.number(), l)).collect()),
        }
    }

    /// The access rules now.
    pub fn access(&self) -> Access {
        read(&self.access)
    }

    /// Replaces the access rules (sessions already logged in stay).
    pub fn set_access(&self, access: Access) {
        if let Ok(mut a) = self.access.write() {
            *a = access;
        }
    }

    /// Whether `initiator` may log in.
    pub fn allows(&self, initiator: &str) -> bool {
        let a = self.access();
        a.allow.is_empty() || a.allow.iter().any(|x| x.eq_ignore_ascii_case(initiator))
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

    /// The reactor the target's mirrored volumes run on, if it has any: its sessions are best
    /// served there (their data then goes to both copies without a hand-off).
    pub fn home_reactor(&self) -> Option<usize> {
        self.luns()
            .iter()
            .find_map(|lu| lu.mirror().map(|m| m.home_id()))
    }

    /// Adds a LUN live; every I_T nexus known to the target's other LUNs gets REPORTED LUNS
    /// DATA HAS CHANGED (SPC-4 §6.33). Returns false when the number is taken.
    pub fn add_lun(&self, lu: Arc<LogicalUnit>) -> bool {
        let added = match self.luns.write() {
            Ok(mut m) if !m.contains_key(&lu.number()) => {
                m.insert(lu.number(), lu.clone());
                true
            }
            _ => false,
        };
        if added {
            self.luns_changed();
        }
        added
    }

    /// Removes a LUN live (its in-flight commands finish on the removed unit); the remaining
    /// LUNs' nexuses get REPORTED LUNS DATA HAS CHANGED.
    pub fn remove_lun(&self, number: u16) -> Option<Arc<LogicalUnit>> {
        let removed = self.luns.write().ok()?.remove(&number);
        if removed.is_some() {
            self.luns_changed();
        }
        removed
    }

    fn luns_changed(&self) {
        let luns = self.luns();
        let mut nexuses = Vec::new();
        for lu in &luns {
            for n in lu.known_nexuses() {
                if !nexuses.contains(&n) {
                    nexuses.push(n);
                }
            }
        }
        // Every unit of the target reports it (a new one after its power-on condition), and
        // REPORT LUNS clears it on all of them (LUICLR=1).
        for lu in &luns {
            for n in &nexuses {
                lu.raise(n, UnitAttention::ReportedLunsDataChanged);
            }
        }
    }

    fn auth(&self) -> AuthPolicy {
        let a = self.access();
        match &a.chap {
            None => AuthPolicy::None,
            Some(c) => AuthPolicy::Chap {
                initiator: credentials(c),
                target: a.mutual_chap.as_ref().map(credentials),
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
        read(&self.targets)
    }

    /// Adds a target; false when the name is taken.
    pub fn add(&self, target: Arc<Target>) -> bool {
        match self.targets.write() {
            Ok(mut v) if !v.iter().any(|t| t.iqn.eq_ignore_ascii_case(&target.iqn)) => {
                v.push(target);
                true
            }
            _ => false,
        }
    }

    /// Removes a target (new logins fail; the caller cuts its sessions).
    pub fn remove(&self, iqn: &str) -> Option<Arc<Target>> {
        let mut v = self.targets.write().ok()?;
        let at = v.iter().position(|t| t.iqn.eq_ignore_ascii_case(iqn))?;
        Some(v.remove(at))
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
