//! Carrying out control requests: every change is validated first (a refusal names the field and
//! changes nothing), then applied live to the running daemon (other LUNs' sessions undisturbed,
//! the unit attentions the standard names raised), then persisted atomically to the config file.
//! One change at a time: the configuration lock is held across all three steps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::admin::protocol::{
    Command, LunInfo, Refusal, Request, Response, SessionInfo, TargetInfo, PROTOCOL_VERSION,
};
use crate::admin::{pr, volume};
use crate::config::{
    derive_uuid, parse_size, valid_iscsi_name, ChapConfig, Config, LunConfig, TargetConfig,
};
use crate::daemon::open_lun;
use crate::iscsi::server::Server;
use crate::iscsi::target::{Access, Target};
use crate::scsi::lun::LogicalUnit;

/// The control API's view of the daemon.
pub struct Control {
    server: Arc<Server>,
    config: Mutex<Config>,
    config_path: PathBuf,
}

type Outcome = Result<Value, Refusal>;

fn refuse(kind: &str, field: Option<&str>, message: impl Into<String>) -> Refusal {
    Refusal {
        field: field.map(str::to_string),
        message: message.into(),
        kind: kind.to_string(),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Refusal {
    refuse("invalid", Some(field), message)
}

fn not_found(field: &str, message: impl Into<String>) -> Refusal {
    refuse("not-found", Some(field), message)
}

fn to_value<T: serde::Serialize>(v: &T) -> Outcome {
    serde_json::to_value(v).map_err(|e| refuse("io", None, e.to_string()))
}

impl Control {
    /// The control API over `server`, whose configuration is `config`, persisted at `config_path`.
    pub fn new(server: Arc<Server>, config: Config, config_path: PathBuf) -> Control {
        Control {
            server,
            config: Mutex::new(config),
            config_path,
        }
    }

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Response {
        if request.version != PROTOCOL_VERSION {
            return Response {
                version: PROTOCOL_VERSION,
                ok: false,
                data: Value::Null,
                error: Some(refuse(
                    "protocol",
                    Some("version"),
                    format!(
                        "the daemon speaks protocol {PROTOCOL_VERSION}, the request {}",
                        request.version
                    ),
                )),
            };
        }
        let span = tracing::info_span!("admin", op = op_name(&request.command));
        let _g = span.enter();
        let result = self.dispatch(request.command);
        match result {
            Ok(data) => Response {
                version: PROTOCOL_VERSION,
                ok: true,
                data,
                error: None,
            },
            Err(e) => {
                tracing::info!(field = e.field.as_deref().unwrap_or(""), kind = %e.kind, "admin request refused: {}", e.message);
                Response {
                    version: PROTOCOL_VERSION,
                    ok: false,
                    data: Value::Null,
                    error: Some(e),
                }
            }
        }
    }

    fn dispatch(&self, command: Command) -> Outcome {
        let mut config = match self.config.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let mut next = config.clone();
        let (data, changed) = match command {
            Command::TargetList => (to_value(&self.target_infos())?, false),
            Command::LunList { target } => (to_value(&self.lun_infos(&config, &target)?)?, false),
            Command::LunShow { target, lun } => {
                let infos = self.lun_infos(&config, &target)?;
                let info = infos
                    .into_iter()
                    .find(|l| l.lun == lun)
                    .ok_or_else(|| not_found("lun", format!("{target} has no LUN {lun}")))?;
                (to_value(&info)?, false)
            }
            Command::AclList { target } => {
                (to_value(&self.target(&target)?.access().allow)?, false)
            }
            Command::PortalList => (
                to_value(
                    &self
                        .server
                        .portal_list()
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>(),
                )?,
                false,
            ),
            Command::SessionList => (to_value(&self.session_infos())?, false),
            Command::PrShow { target, lun } => {
                let (t, lu) = self.lun(&target, lun)?;
                (to_value(&pr::pr_info(&t, &lu))?, false)
            }
            Command::PrClear { target, lun, force } => {
                let (t, lu) = self.lun(&target, lun)?;
                (pr::pr_clear(&t, &lu, force)?, false)
            }
            Command::TargetCreate { iqn, tpgt, alias } => {
                (self.target_create(&mut next, &iqn, tpgt, alias)?, true)
            }
            Command::TargetDelete { iqn, force } => {
                (self.target_delete(&mut next, &iqn, force)?, true)
            }
            Command::LunCreate {
                target,
                lun,
                path,
                size,
                block_size,
                write_cache,
            } => (
                self.lun_create(
                    &mut next,
                    &target,
                    lun,
                    &path,
                    size.as_deref(),
                    block_size,
                    write_cache,
                )?,
                true,
            ),
            Command::LunResize {
                target,
                lun,
                size,
                force,
            } => (
                self.lun_resize(&mut next, &target, lun, &size, force)?,
                true,
            ),
            Command::LunDelete { target, lun, force } => {
                (self.lun_delete(&mut next, &target, lun, force)?, true)
            }
            Command::AclAdd { target, initiator } => {
                (self.acl(&mut next, &target, &initiator, true)?, true)
            }
            Command::AclRemove { target, initiator } => {
                (self.acl(&mut next, &target, &initiator, false)?, true)
            }
            Command::ChapSet {
                target,
                user,
                secret,
                mutual_user,
                mutual_secret,
            } => (
                self.chap_set(&mut next, &target, user, secret, mutual_user, mutual_secret)?,
                true,
            ),
            Command::ChapClear { target } => (self.chap_clear(&mut next, &target)?, true),
            Command::VolumeStatus { volume } => (
                to_value(&volume::status(&self.server, volume.as_deref())?)?,
                false,
            ),
            Command::VolumePromote { volume, force } => (
                volume::act(&self.server, &volume, volume::Action::Promote { force })?,
                false,
            ),
            Command::VolumeDemote { volume } => (
                volume::act(&self.server, &volume, volume::Action::Demote)?,
                false,
            ),
            Command::VolumeVerify { volume, resync } => (
                volume::act(&self.server, &volume, volume::Action::Verify { resync })?,
                false,
            ),
            Command::VolumeResyncFull { volume } => (
                volume::act(&self.server, &volume, volume::Action::ResyncFull)?,
                false,
            ),
            Command::VolumeDiscardMyData { volume, force } => (
                volume::act(
                    &self.server,
                    &volume,
                    volume::Action::DiscardMyData { force },
                )?,
                false,
            ),
            Command::VolumeConnect { volume } => (
                volume::act(&self.server, &volume, volume::Action::Connect)?,
                false,
            ),
            Command::VolumeAttach { volume } => (
                volume::act(&self.server, &volume, volume::Action::Attach)?,
                false,
            ),
            Command::PortalAdd { address } => (self.portal_add(&mut next, &address)?, true),
            Command::PortalRemove { address } => (self.portal_remove(&mut next, &address)?, true),
        };
        if changed {
            // The change is live either way: keep the in-memory configuration in step with it so
            // the next successful save carries it.
            let saved = next.save_atomically(&self.config_path);
            *config = next;
            saved.map_err(|e| {
                refuse(
                    "io",
                    None,
                    format!(
                        "the change is live but writing {} failed: {e}",
                        self.config_path.display()
                    ),
                )
            })?;
        }
        Ok(data)
    }

    fn target(&self, iqn: &str) -> Result<Arc<Target>, Refusal> {
        self.server
            .targets
            .get(iqn)
            .ok_or_else(|| not_found("target", format!("no target named {iqn}")))
    }

    fn sessions_of(&self, iqn: &str) -> Vec<Arc<crate::iscsi::registry::SessionEntry>> {
        self.server
            .registry
            .all()
            .into_iter()
            .filter(|s| s.target.eq_ignore_ascii_case(iqn))
            .collect()
    }

    fn target_infos(&self) -> Vec<TargetInfo> {
        self.server
            .targets
            .all()
            .iter()
            .map(|t| {
                let a = t.access();
                TargetInfo {
                    iqn: t.iqn.clone(),
                    tpgt: t.tpgt,
                    alias: t.alias.clone(),
                    luns: t.lun_numbers(),
                    acl: a.allow.clone(),
                    chap: a.chap.is_some(),
                    mutual_chap: a.mutual_chap.is_some(),
                    sessions: self.sessions_of(&t.iqn).len(),
                }
            })
            .collect()
    }

    fn lun(&self, iqn: &str, lun: u16) -> Result<(Arc<Target>, Arc<LogicalUnit>), Refusal> {
        let t = self.target(iqn)?;
        let lu = t
            .lun(lun)
            .ok_or_else(|| not_found("lun", format!("{iqn} has no LUN {lun}")))?;
        Ok((t, lu))
    }

    fn lun_infos(&self, config: &Config, iqn: &str) -> Result<Vec<LunInfo>, Refusal> {
        let t = self.target(iqn)?;
        let tc = config
            .targets
            .iter()
            .find(|x| x.iqn.eq_ignore_ascii_case(iqn));
        Ok(t.luns()
            .iter()
            .map(|lu| {
                lun_info(
                    &t,
                    lu,
                    tc.and_then(|tc| tc.luns.iter().find(|l| l.lun == lu.number())),
                )
            })
            .collect())
    }

    fn session_infos(&self) -> Vec<SessionInfo> {
        self.server
            .registry
            .all()
            .iter()
            .map(|s| SessionInfo {
                tsih: s.tsih,
                initiator: s.initiator.clone(),
                isid: hex::encode(s.isid),
                target: s.target.clone(),
                portal: s.details.portal.clone(),
                peer: s.details.peer.clone(),
                connections: 1,
                parameters: s.details.parameters.clone(),
                commands_in_flight: s.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect()
    }

    fn target_create(
        &self,
        next: &mut Config,
        iqn: &str,
        tpgt: Option<u16>,
        alias: Option<String>,
    ) -> Outcome {
        if !valid_iscsi_name(iqn) {
            return Err(invalid("iqn", format!("{iqn:?} is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:name], eui.<16 hex>, naa.<16 or 32 hex>)")));
        }
        if self.server.targets.get(iqn).is_some() {
            return Err(refuse(
                "exists",
                Some("iqn"),
                format!("target {iqn} already exists"),
            ));
        }
        let tpgt = tpgt.unwrap_or(1);
        if tpgt == 0 {
            return Err(invalid("tpgt", "must be between 1 and 65535"));
        }
        let tc = TargetConfig {
            iqn: iqn.to_ascii_lowercase(),
            tpgt,
            alias,
            allow: Vec::new(),
            chap: None,
            mutual_chap: None,
            luns: Vec::new(),
        };
        self.server
            .targets
            .add(Arc::new(Target::new(&tc, Vec::new())));
        next.targets.push(tc);
        to_value(
            &self
                .target_infos()
                .into_iter()
                .find(|t| t.iqn.eq_ignore_ascii_case(iqn)),
        )
    }

    fn target_delete(&self, next: &mut Config, iqn: &str, force: bool) -> Outcome {
        let t = self.target(iqn).map_err(|mut e| {
            e.field = Some("iqn".into());
            e
        })?;
        if t.lun_numbers()
            .iter()
            .any(|&n| t.lun(n).is_some_and(|lu| lu.is_mirrored()))
        {
            return Err(invalid(
                "iqn",
                "the target has mirrored volumes: remove them from the configuration file and restart the daemon",
            ));
        }
        let sessions = self.sessions_of(&t.iqn);
        if !sessions.is_empty() && !force {
            return Err(refuse(
                "busy",
                Some("iqn"),
                format!(
                    "{} session(s) are logged in to {iqn}; --force cuts them",
                    sessions.len()
                ),
            ));
        }
        self.server.targets.remove(&t.iqn);
        for s in &sessions {
            s.shutdown.shutdown();
        }
        next.targets.retain(|x| !x.iqn.eq_ignore_ascii_case(iqn));
        Ok(json!({ "sessions_cut": sessions.len() }))
    }

    #[allow(clippy::too_many_arguments)]
    fn lun_create(
        &self,
        next: &mut Config,
        iqn: &str,
        lun: u16,
        path: &str,
        size: Option<&str>,
        block_size: Option<u32>,
        write_cache: Option<bool>,
    ) -> Outcome {
        let t = self.target(iqn)?;
        if lun > 16383 {
            return Err(invalid("lun", "must be between 0 and 16383"));
        }
        if t.lun(lun).is_some() {
            return Err(refuse(
                "exists",
                Some("lun"),
                format!("{iqn} already has LUN {lun}"),
            ));
        }
        let block_size = block_size.unwrap_or(512);
        if block_size != 512 && block_size != 4096 {
            return Err(invalid("block-size", "must be 512 or 4096"));
        }
        let path = absolute(&next.data_dir, path);
        let size_bytes = match size {
            None => None,
            Some(s) => match parse_size(s) {
                Some(b) if b > 0 && b % block_size as u64 == 0 => Some(b),
                Some(_) => {
                    return Err(invalid(
                        "size",
                        format!("must be a positive multiple of the block size ({block_size})"),
                    ))
                }
                None => {
                    return Err(invalid(
                        "size",
                        format!("{s:?} is not a size like 10G, 512M or 1073741824"),
                    ))
                }
            },
        };
        match (std::fs::metadata(&path), size_bytes) {
            (Err(_), None) => {
                return Err(invalid(
                    "path",
                    format!(
                        "{} does not exist; give --size to create it sparse",
                        path.display()
                    ),
                ))
            }
            (Ok(m), Some(want)) if m.is_file() && m.len() != want => {
                return Err(invalid(
                    "size",
                    format!(
                        "{} exists with {} bytes, not {want}; leave --size out to use it as it is",
                        path.display(),
                        m.len()
                    ),
                ));
            }
            _ => {}
        }
        let tc = next
            .targets
            .iter()
            .find(|x| x.iqn.eq_ignore_ascii_case(iqn))
            .cloned()
            .ok_or_else(|| not_found("target", format!("no target named {iqn}")))?;
        let lc = LunConfig {
            lun,
            path: path.clone(),
            size_bytes,
            block_size,
            physical_block_size: None,
            serial: None,
            uuid: derive_uuid(&tc.iqn, lun),
            write_cache: write_cache.unwrap_or(false),
            mirror: None,
        };
        let lu = open_lun(&tc, &lc, next).map_err(|e| invalid("path", e.to_string()))?;
        let lu = Arc::new(lu);
        if !t.add_lun(lu.clone()) {
            return Err(refuse(
                "exists",
                Some("lun"),
                format!("{iqn} already has LUN {lun}"),
            ));
        }
        if let Some(x) = next
            .targets
            .iter_mut()
            .find(|x| x.iqn.eq_ignore_ascii_case(iqn))
        {
            x.luns.push(lc.clone());
        }
        to_value(&lun_info(&t, &lu, Some(&lc)))
    }

    fn lun_resize(
        &self,
        next: &mut Config,
        iqn: &str,
        lun: u16,
        size: &str,
        force: bool,
    ) -> Outcome {
        let t = self.target(iqn)?;
        let lu = t
            .lun(lun)
            .ok_or_else(|| not_found("lun", format!("{iqn} has no LUN {lun}")))?;
        let g = lu.geometry();
        let bytes = match parse_size(size) {
            Some(b) if b > 0 && b % g.block_size as u64 == 0 => b,
            Some(_) => {
                return Err(invalid(
                    "size",
                    format!(
                        "must be a positive multiple of the block size ({})",
                        g.block_size
                    ),
                ))
            }
            None => return Err(invalid("size", format!("{size:?} is not a size like 10G"))),
        };
        if lu.is_mirrored() {
            return Err(invalid(
                "lun",
                "a mirrored volume's size is fixed (both nodes and the metadata agree on it)",
            ));
        }
        let current = g.num_blocks * g.block_size as u64;
        if bytes < current && !force {
            return Err(invalid("size", format!("shrinking from {current} to {bytes} bytes cuts data off the end; --force does it")));
        }
        let lc = next
            .targets
            .iter_mut()
            .find(|x| x.iqn.eq_ignore_ascii_case(iqn))
            .and_then(|x| x.luns.iter_mut().find(|l| l.lun == lun));
        let Some(lc) = lc else {
            return Err(not_found(
                "lun",
                format!("{iqn} has no LUN {lun} in the configuration"),
            ));
        };
        if lu.volume().info().block_device {
            return Err(invalid(
                "size",
                "a block device's size is the device's: resize the device instead",
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&lc.path)
            .map_err(|e| refuse("io", Some("path"), format!("{}: {e}", lc.path.display())))?;
        file.set_len(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| refuse("io", Some("size"), format!("{}: {e}", lc.path.display())))?;
        lu.resize(bytes / g.block_size as u64);
        lc.size_bytes = Some(bytes);
        let lc = lc.clone();
        to_value(&lun_info(&t, &lu, Some(&lc)))
    }

    fn lun_delete(&self, next: &mut Config, iqn: &str, lun: u16, force: bool) -> Outcome {
        let t = self.target(iqn)?;
        match t.lun(lun) {
            None => return Err(not_found("lun", format!("{iqn} has no LUN {lun}"))),
            Some(lu) if lu.is_mirrored() => return Err(invalid(
                "lun",
                "a mirrored volume is removed from the configuration file and the daemon restarted",
            )),
            Some(_) => {}
        }
        let sessions = self.sessions_of(&t.iqn);
        if !sessions.is_empty() && !force {
            return Err(refuse("busy", Some("lun"), format!("{} session(s) are logged in to {iqn}; --force deletes LUN {lun} under them (they get REPORTED LUNS DATA HAS CHANGED)", sessions.len())));
        }
        let removed = t.lun(lun);
        t.remove_lun(lun);
        // A LUN created later under the same name must not inherit these reservations.
        if let Some(store) = removed.as_ref().and_then(|lu| lu.pr_store()) {
            if let Err(e) = store.remove() {
                tracing::warn!(error = %e, "the deleted LUN's reservation state file stays");
            }
        }
        if let Some(x) = next
            .targets
            .iter_mut()
            .find(|x| x.iqn.eq_ignore_ascii_case(iqn))
        {
            x.luns.retain(|l| l.lun != lun);
        }
        // Sessions stay logged in; the LUN is gone from under them (counted as affected).
        Ok(json!({ "sessions_cut": 0, "sessions_affected": sessions.len() }))
    }

    fn acl(&self, next: &mut Config, iqn: &str, initiator: &str, add: bool) -> Outcome {
        let t = self.target(iqn)?;
        if !valid_iscsi_name(initiator) {
            return Err(invalid(
                "initiator",
                format!("{initiator:?} is not an iSCSI name"),
            ));
        }
        let name = initiator.to_ascii_lowercase();
        let mut access = t.access();
        let present = access.allow.iter().any(|a| a.eq_ignore_ascii_case(&name));
        match (add, present) {
            (true, true) => {
                return Err(refuse(
                    "exists",
                    Some("initiator"),
                    format!("{name} is already allowed"),
                ))
            }
            (false, false) => {
                return Err(not_found("initiator", format!("{name} is not on the list")))
            }
            (true, false) => access.allow.push(name),
            (false, true) => access.allow.retain(|a| !a.eq_ignore_ascii_case(&name)),
        }
        self.set_access(next, &t, access.clone());
        to_value(&access.allow)
    }

    fn set_access(&self, next: &mut Config, t: &Target, access: Access) {
        if let Some(x) = next
            .targets
            .iter_mut()
            .find(|x| x.iqn.eq_ignore_ascii_case(&t.iqn))
        {
            x.allow = access.allow.clone();
            x.chap = access.chap.clone();
            x.mutual_chap = access.mutual_chap.clone();
        }
        t.set_access(access);
    }

    fn chap_set(
        &self,
        next: &mut Config,
        iqn: &str,
        user: String,
        secret: String,
        mutual_user: Option<String>,
        mutual_secret: Option<String>,
    ) -> Outcome {
        let t = self.target(iqn)?;
        if user.is_empty() || user.len() > 255 {
            return Err(invalid("user", "must be 1 to 255 characters"));
        }
        if !(12..=255).contains(&secret.len()) {
            return Err(invalid(
                "secret",
                "must be 12 to 255 characters (RFC 7143 §12.1.3 wants at least 96 bits)",
            ));
        }
        let mutual = match (mutual_user, mutual_secret) {
            (None, None) => None,
            (Some(u), Some(s)) => {
                if u.is_empty() || u.len() > 255 {
                    return Err(invalid("mutual-user", "must be 1 to 255 characters"));
                }
                if !(12..=255).contains(&s.len()) {
                    return Err(invalid("mutual-secret", "must be 12 to 255 characters"));
                }
                if s == secret {
                    return Err(invalid(
                        "mutual-secret",
                        "must differ from the initiator's secret (RFC 7143 §12.1.3)",
                    ));
                }
                Some(ChapConfig { user: u, secret: s })
            }
            (Some(_), None) => {
                return Err(invalid("mutual-secret", "mutual CHAP needs a secret too"))
            }
            (None, Some(_)) => {
                return Err(invalid("mutual-user", "mutual CHAP needs a user name too"))
            }
        };
        let mut access = t.access();
        access.chap = Some(ChapConfig { user, secret });
        access.mutual_chap = mutual;
        self.set_access(next, &t, access);
        Ok(json!({ "chap": true, "mutual_chap": t.access().mutual_chap.is_some() }))
    }

    fn chap_clear(&self, next: &mut Config, iqn: &str) -> Outcome {
        let t = self.target(iqn)?;
        let mut access = t.access();
        access.chap = None;
        access.mutual_chap = None;
        self.set_access(next, &t, access);
        Ok(json!({ "chap": false, "mutual_chap": false }))
    }

    fn portal_add(&self, next: &mut Config, address: &str) -> Outcome {
        let addr: SocketAddr = address.parse().map_err(|_| {
            invalid(
                "address",
                format!("{address:?} is not ADDRESS:PORT (e.g. 127.0.0.1:3260 or [::1]:3260)"),
            )
        })?;
        if self.server.portal_list().contains(&addr) {
            return Err(refuse(
                "exists",
                Some("address"),
                format!("{addr} is already a portal"),
            ));
        }
        let bound = self
            .server
            .add_portal(addr)
            .map_err(|e| refuse("io", Some("address"), format!("{addr}: {e}")))?;
        next.portals.push(bound);
        Ok(json!(bound.to_string()))
    }

    fn portal_remove(&self, next: &mut Config, address: &str) -> Outcome {
        let addr: SocketAddr = address
            .parse()
            .map_err(|_| invalid("address", format!("{address:?} is not ADDRESS:PORT")))?;
        if !self.server.remove_portal(addr) {
            return Err(not_found("address", format!("{addr} is not a portal")));
        }
        next.portals.retain(|p| *p != addr);
        Ok(json!(addr.to_string()))
    }
}

/// The operation's name for logs (never its arguments: CHAP secrets ride in some).
fn op_name(c: &Command) -> &'static str {
    match c {
        Command::TargetCreate { .. } => "target-create",
        Command::TargetList => "target-list",
        Command::TargetDelete { .. } => "target-delete",
        Command::LunCreate { .. } => "lun-create",
        Command::LunList { .. } => "lun-list",
        Command::LunShow { .. } => "lun-show",
        Command::LunResize { .. } => "lun-resize",
        Command::LunDelete { .. } => "lun-delete",
        Command::AclAdd { .. } => "acl-add",
        Command::AclRemove { .. } => "acl-remove",
        Command::AclList { .. } => "acl-list",
        Command::ChapSet { .. } => "chap-set",
        Command::ChapClear { .. } => "chap-clear",
        Command::PortalAdd { .. } => "portal-add",
        Command::PortalRemove { .. } => "portal-remove",
        Command::PortalList => "portal-list",
        Command::SessionList => "session-list",
        Command::PrShow { .. } => "pr-show",
        Command::PrClear { .. } => "pr-clear",
        Command::VolumeStatus { .. } => "volume-status",
        Command::VolumePromote { .. } => "volume-promote",
        Command::VolumeDemote { .. } => "volume-demote",
        Command::VolumeVerify { .. } => "volume-verify",
        Command::VolumeResyncFull { .. } => "volume-resync-full",
        Command::VolumeDiscardMyData { .. } => "volume-discard-my-data",
        Command::VolumeConnect { .. } => "volume-connect",
        Command::VolumeAttach { .. } => "volume-attach",
    }
}

fn absolute(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn lun_info(t: &Target, lu: &LogicalUnit, lc: Option<&LunConfig>) -> LunInfo {
    let g = lu.geometry();
    let info = lu.volume().info();
    LunInfo {
        target: t.iqn.clone(),
        lun: lu.number(),
        path: lc.map(|l| l.path.display().to_string()).unwrap_or_default(),
        size_bytes: g.num_blocks * g.block_size as u64,
        block_size: g.block_size,
        physical_block_size: g.block_size << g.physical_block_exp,
        write_cache: lu.mode().wce,
        thin: g.thin,
        direct: info.direct,
        serial: crate::scsi::vpd::serial_string(lu.identity()),
        uuid: uuid::Uuid::from_bytes(lu.identity().uuid).to_string(),
        offline: lu.offline_reason(),
    }
}
