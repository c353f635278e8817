//! A logical unit: one volume with its geometry, identity, mode pages and the unit-attention
//! queues of every I_T nexus that has talked to it. Shared by every reactor (`Send + Sync`); its
//! locks guard only small control state, never the data path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use ringsan_engine::mirror::remote::MirrorHandle;
use ringsan_engine::range_lock::RangeLocks;
use ringsan_engine::volume::Volume;

use crate::metrics::lun::LunMetrics;
use crate::scsi::geometry::LuGeometry;
use crate::scsi::inquiry::LuIdentity;
use crate::scsi::mode::ModeState;
use crate::scsi::nexus::Nexus;
use crate::scsi::pr::{on_lun_reset, on_nexus_loss, PrEffects, PrLog, PrLogEntry, PrState};
use crate::scsi::pr_store::{PrStore, PrStoreError};
use crate::scsi::sense::CommandError;
use crate::scsi::ua::{UaQueue, UnitAttention};

/// One logical unit.
pub struct LogicalUnit {
    number: u16,
    volume: Volume,
    geometry: RwLock<LuGeometry>,
    identity: LuIdentity,
    mode: Mutex<ModeState>,
    unit_attentions: Mutex<HashMap<Nexus, UaQueue>>,
    reservations: Mutex<PrState>,
    /// The PERSISTENT RESERVE OUT commands accepted lately, numbered.
    pr_log: Mutex<PrLog>,
    /// Where the reservation state persists (APTPL); `None`: APTPL is not offered.
    pr_store: Option<PrStore>,
    /// Serializes the commands that change the reservation state (PERSISTENT RESERVE OUT,
    /// RESERVE, RELEASE) across reactors, so an APTPL write and the change it records cannot be
    /// overtaken by another: one range covering everything, used as an async lock.
    pr_gate: RangeLocks,
    /// Set while the unit is offline (see [`LogicalUnit::offline_reason`]).
    offline: AtomicBool,
    offline_reason: Mutex<Option<String>>,
    /// Commands, bytes, latency and errors, recorded by the reactors without a lock.
    metrics: LunMetrics,
    /// The unit is a mirrored volume: its data goes through [`LogicalUnit::mirror`].
    mirrored: bool,
    /// The mirrored volume's node, once it runs (the daemon starts it on a reactor after the
    /// unit is built; until then the unit is unavailable).
    mirror: OnceLock<MirrorHandle>,
}

impl LogicalUnit {
    /// A logical unit numbered `number` over `volume`.
    pub fn new(
        number: u16,
        volume: Volume,
        geometry: LuGeometry,
        identity: LuIdentity,
        mode: ModeState,
    ) -> LogicalUnit {
        LogicalUnit {
            number,
            volume,
            geometry: RwLock::new(geometry),
            identity,
            mode: Mutex::new(mode),
            unit_attentions: Mutex::new(HashMap::new()),
            reservations: Mutex::new(PrState::new()),
            pr_log: Mutex::new(PrLog::default()),
            pr_store: None,
            pr_gate: RangeLocks::default(),
            offline: AtomicBool::new(false),
            offline_reason: Mutex::new(None),
            metrics: LunMetrics::default(),
            mirrored: false,
            mirror: OnceLock::new(),
        }
    }

    /// Marks the unit as a mirrored volume (unavailable until [`LogicalUnit::set_mirror`]).
    pub fn mirrored(mut self) -> LogicalUnit {
        self.mirrored = true;
        self
    }

    /// Whether the unit is a mirrored volume.
    pub fn is_mirrored(&self) -> bool {
        self.mirrored
    }

    /// The mirrored volume's node, once it runs.
    pub fn mirror(&self) -> Option<&MirrorHandle> {
        self.mirror.get()
    }

    /// Hands the unit its running mirror node (once; a second call is ignored).
    pub fn set_mirror(&self, handle: MirrorHandle) {
        if self.mirror.set(handle).is_err() {
            tracing::warn!(lun = self.number, "mirror node set twice; the first stays");
        }
    }

    /// Gives the unit one metrics shard per reactor of a daemon with `reactors` of them (a new
    /// unit has only the shared one that any thread may write).
    pub fn with_metrics(mut self, reactors: usize) -> LogicalUnit {
        self.metrics = LunMetrics::new(reactors);
        self
    }

    /// The unit's metrics.
    pub fn metrics(&self) -> &LunMetrics {
        &self.metrics
    }

    /// Persists the reservation state in `store` (APTPL) and starts from what it holds. A file
    /// that cannot be trusted keeps the unit offline, with the reason, until an administrator
    /// clears the reservations ([`LogicalUnit::admin_clear_reservations`]).
    pub fn with_pr_store(mut self, store: PrStore) -> LogicalUnit {
        match store.load() {
            Ok(state) => {
                if !state.registrations.is_empty() {
                    tracing::info!(
                        lun = self.number,
                        registrations = state.registrations.len(),
                        reserved = state.reservation.is_some(),
                        file = %store.path().display(),
                        "persistent reservations restored (APTPL)"
                    );
                }
                self.reservations = Mutex::new(state);
            }
            Err(e) => {
                tracing::error!(lun = self.number, error = %e, "persistent reservation state cannot be trusted: LUN offline until `target-admin pr clear --force`");
                self.set_offline(Some(format!(
                    "persistent reservation state cannot be trusted: {e}"
                )));
            }
        }
        self.pr_store = Some(store);
        self
    }

    /// Records an accepted PERSISTENT RESERVE OUT in the unit's numbered log.
    pub fn log_pr_out(&self, entry: PrLogEntry) {
        match self.pr_log.lock() {
            Ok(mut log) => log.push(entry),
            Err(p) => p.into_inner().push(entry),
        }
    }

    /// The unit's recent accepted PERSISTENT RESERVE OUT commands, oldest first.
    pub fn pr_log(&self) -> Vec<PrLogEntry> {
        match self.pr_log.lock() {
            Ok(log) => log.entries().cloned().collect(),
            Err(p) => p.into_inner().entries().cloned().collect(),
        }
    }

    /// Where the reservation state persists, when APTPL is offered.
    pub fn pr_store(&self) -> Option<&PrStore> {
        self.pr_store.as_ref()
    }

    /// The lock the commands changing the reservation state hold while they run.
    pub fn pr_gate(&self) -> &RangeLocks {
        &self.pr_gate
    }

    /// Whether the unit is offline (a cheap check for every command).
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Why the unit is offline; `None` when it is online. An offline unit answers every command
    /// but INQUIRY, REPORT LUNS and REQUEST SENSE with NOT READY, MANUAL INTERVENTION REQUIRED.
    pub fn offline_reason(&self) -> Option<String> {
        if !self.is_offline() {
            return None;
        }
        match self.offline_reason.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_offline(&self, reason: Option<String>) {
        let offline = reason.is_some();
        match self.offline_reason.lock() {
            Ok(mut r) => *r = reason,
            Err(p) => *p.into_inner() = reason,
        }
        self.offline.store(offline, Ordering::Release);
    }

    /// The administrator breaks every registration and reservation (`target-admin pr clear`):
    /// the state becomes empty (APTPL off), its file is rewritten (a damaged one is first moved
    /// aside as `<file>.damaged`), an offline unit comes back online, and every I_T nexus that
    /// was registered learns it through REGISTRATIONS PREEMPTED. Returns the registrations
    /// removed. The caller holds [`LogicalUnit::pr_gate`].
    pub fn admin_clear_reservations(&self) -> Result<usize, PrStoreError> {
        let was_offline = self.is_offline();
        if let Some(store) = &self.pr_store {
            if was_offline {
                if let Some(aside) = store.set_aside()? {
                    tracing::warn!(lun = self.number, file = %aside.display(), "damaged persistent reservation state moved aside");
                }
            }
        }
        let before = self.reservations();
        let cleared = PrState {
            log_index: before.log_index.wrapping_add(1),
            generation: before.generation.wrapping_add(1),
            ..PrState::default()
        };
        if let Some(store) = &self.pr_store {
            store.save(&cleared)?;
        }
        let removed = before.registrations.len();
        let affected = self.known_nexuses();
        {
            let mut guard = match self.reservations.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *guard = cleared;
        }
        for nexus in affected {
            if before.is_registered(&nexus) {
                self.raise(&nexus, UnitAttention::RegistrationsPreempted);
            }
        }
        self.set_offline(None);
        Ok(removed)
    }

    /// The LUN.
    pub fn number(&self) -> u16 {
        self.number
    }

    /// The volume.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// The geometry now.
    pub fn geometry(&self) -> LuGeometry {
        match self.geometry.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The identity (VPD data).
    pub fn identity(&self) -> &LuIdentity {
        &self.identity
    }

    /// The mode state now.
    pub fn mode(&self) -> ModeState {
        match self.mode.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the mode state; other nexuses get MODE PARAMETERS CHANGED when it changed.
    pub fn set_mode(&self, new: ModeState, by: &Nexus) {
        let changed = match self.mode.lock() {
            Ok(mut m) => {
                let changed = *m != new;
                *m = new;
                changed
            }
            Err(_) => false,
        };
        if changed {
            self.raise_for_others(by, UnitAttention::ModeParametersChanged);
        }
    }

    /// The unit attention to report to `nexus` now, if any, without clearing it. A nexus seen
    /// for the first time starts with POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub fn peek_unit_attention(&self, nexus: &Nexus) -> Option<UnitAttention> {
        let mut map = self.unit_attentions.lock().ok()?;
        map.entry(nexus.clone())
            .or_insert_with(UaQueue::power_on)
            .peek()
    }

    /// Takes (clears) the unit attention reported to `nexus`.
    pub fn take_unit_attention(&self, nexus: &Nexus) -> Option<UnitAttention> {
        let mut map = self.unit_attentions.lock().ok()?;
        map.entry(nexus.clone())
            .or_insert_with(UaQueue::power_on)
            .pop()
    }

    /// Clears one kind of unit attention for `nexus` (REPORT LUNS clears REPORTED LUNS DATA HAS
    /// CHANGED).
    pub fn clear_unit_attention(&self, nexus: &Nexus, ua: UnitAttention) {
        if let Ok(mut map) = self.unit_attentions.lock() {
            if let Some(q) = map.get_mut(nexus) {
                q.remove(ua);
            }
        }
    }

    /// Queues `ua` for `nexus`.
    pub fn raise(&self, nexus: &Nexus, ua: UnitAttention) {
        if let Ok(mut map) = self.unit_attentions.lock() {
            map.entry(nexus.clone())
                .or_insert_with(UaQueue::power_on)
                .push(ua);
        }
    }

    /// Queues `ua` for every known nexus except `by`.
    pub fn raise_for_others(&self, by: &Nexus, ua: UnitAttention) {
        if let Ok(mut map) = self.unit_attentions.lock() {
            for (n, q) in map.iter_mut() {
                if n != by {
                    q.push(ua);
                }
            }
        }
    }

    /// Queues `ua` for every known nexus.
    pub fn raise_for_all(&self, ua: UnitAttention) {
        if let Ok(mut map) = self.unit_attentions.lock() {
            for q in map.values_mut() {
                q.push(ua);
            }
        }
    }

    /// The nexus was lost (session reinstated or dropped): I_T NEXUS LOSS OCCURRED (29h/07h).
    pub fn nexus_lost(&self, nexus: &Nexus) {
        self.raise(nexus, UnitAttention::ItNexusLoss);
        let _ = self.update_reservations(|s| Ok((on_nexus_loss(s, nexus), ())));
    }

    /// Every I_T nexus that has talked to this unit.
    pub fn known_nexuses(&self) -> Vec<Nexus> {
        self.unit_attentions
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes the capacity live; every nexus gets CAPACITY DATA HAS CHANGED (SBC-3 §4.11).
    pub fn resize(&self, num_blocks: u64) {
        if let Ok(mut g) = self.geometry.write() {
            g.num_blocks = num_blocks;
        }
        self.raise_for_all(UnitAttention::CapacityDataChanged);
    }

    /// The nexus ended (logout or connection loss): a legacy RESERVE it held is released
    /// (SPC-2 §5.5.1); persistent registrations stay, they belong to the nexus, not the session.
    pub fn nexus_ended(&self, nexus: &Nexus) {
        let _ = self.update_reservations(|s| Ok((on_nexus_loss(s, nexus), ())));
    }

    /// Runs `f` on the reservation state now, under its lock and without copying it (the check
    /// every command passes through must not clone the registrations).
    pub fn with_reservations<R>(&self, f: impl FnOnce(&PrState) -> R) -> R {
        match self.reservations.lock() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// A copy of the reservation state now.
    pub fn reservations(&self) -> PrState {
        match self.reservations.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the reservation state with what `f` makes of it, atomically; `f`'s error leaves
    /// it unchanged and is returned.
    pub fn update_reservations<T>(
        &self,
        f: impl FnOnce(&PrState) -> Result<(PrState, T), CommandError>,
    ) -> Result<T, CommandError> {
        let mut guard = match self.reservations.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (next, out) = f(&guard)?;
        *guard = next;
        Ok(out)
    }

    /// Queues the unit attentions a PERSISTENT RESERVE OUT established, on every I_T nexus known
    /// to this unit that they cover.
    pub fn raise_pr_effects(&self, effects: &PrEffects) {
        if let Ok(mut map) = self.unit_attentions.lock() {
            for (nexus, queue) in map.iter_mut() {
                for ua in effects.unit_attentions_for(nexus) {
                    queue.push(ua);
                }
            }
        }
    }

    /// A LOGICAL UNIT RESET (or target reset) through `by`: every I_T nexus, the one that asked
    /// for it included (SAM-5 §6.3.3, "all I_T nexuses"), gets BUS DEVICE RESET FUNCTION
    /// OCCURRED (29h/03h). A nexus that has never addressed this unit still starts with POWER
    /// ON, RESET, OR BUS DEVICE RESET OCCURRED, the more general condition. Mode pages keep their
    /// current values (there are no saved pages to restore).
    pub fn reset(&self, by: Option<&Nexus>) {
        let _ = self.update_reservations(|s| Ok((on_lun_reset(s), ())));
        if let Ok(mut map) = self.unit_attentions.lock() {
            if let Some(n) = by {
                map.entry(n.clone()).or_insert_with(UaQueue::power_on);
            }
            for q in map.values_mut() {
                q.push(UnitAttention::BusDeviceReset);
            }
        }
    }

    /// CLEAR TASK SET by `by`: other nexuses whose tasks were cleared learn it (TAS=0) through
    /// COMMANDS CLEARED BY ANOTHER INITIATOR.
    pub fn tasks_cleared_by(&self, by: &Nexus) {
        if !self.mode().tas {
            self.raise_for_others(by, UnitAttention::CommandsClearedByAnotherInitiator);
        }
    }
}

/// Logical units over scratch files, for the SCSI layer's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::atomic::{AtomicU32, Ordering};

    use ringsan_engine::disk::{create_sparse, FileDisk};
    use ringsan_engine::volume::Volume;

    use super::LogicalUnit;
    use crate::scsi::geometry::LuGeometry;
    use crate::scsi::inquiry::LuIdentity;
    use crate::scsi::mode::ModeState;
    use crate::scsi::nexus::Nexus;

    /// A thin-provisioned unit of `blocks` 512-byte blocks over a sparse scratch file (unlinked at
    /// once: the open descriptor keeps it alive), with `tune` applied to its geometry.
    pub(crate) fn scratch_unit(blocks: u64, tune: impl FnOnce(&mut LuGeometry)) -> LogicalUnit {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringsan-scsi-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        create_sparse(&path, blocks * 512).unwrap();
        let disk = FileDisk::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut geometry = LuGeometry::new(512, blocks);
        geometry.thin = true;
        geometry.lbprz = true;
        tune(&mut geometry);
        let identity = LuIdentity::new([1; 16], None, None, "iqn.t:x,t,0x0001", 1, 1, "lu");
        LogicalUnit::new(
            0,
            Volume::new(disk),
            geometry,
            identity,
            ModeState::new(true),
        )
    }

    /// The I_T nexus of initiator `name`.
    pub(crate) fn nexus(name: &str) -> Nexus {
        Nexus::new(name, [0x40, 0, 0, 0, 0, 1], "iqn.t:x", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{nexus, scratch_unit};
    use super::*;

    #[test]
    fn lun_reset_reaches_every_nexus_including_the_issuer() {
        let lu = scratch_unit(64, |_| {});
        let (a, b) = (nexus("iqn.a:1"), nexus("iqn.b:2"));
        for n in [&a, &b] {
            assert_eq!(lu.take_unit_attention(n), Some(UnitAttention::PowerOnReset));
            assert_eq!(lu.take_unit_attention(n), None);
        }
        lu.reset(Some(&a));
        for n in [&a, &b] {
            assert_eq!(
                lu.take_unit_attention(n),
                Some(UnitAttention::BusDeviceReset),
                "{}",
                n.initiator_port
            );
            assert_eq!(lu.take_unit_attention(n), None);
        }
        // A nexus first seen after the reset reports the more general power-on condition.
        let c = nexus("iqn.c:3");
        assert_eq!(
            lu.take_unit_attention(&c),
            Some(UnitAttention::PowerOnReset)
        );
        assert_eq!(lu.take_unit_attention(&c), None);
    }

    #[test]
    fn reset_by_a_new_nexus_or_by_the_target() {
        let lu = scratch_unit(64, |_| {});
        let a = nexus("iqn.a:1");
        lu.take_unit_attention(&a);
        // The issuer had never addressed this unit: it still learns of the reset, as power-on.
        let d = nexus("iqn.d:4");
        lu.reset(Some(&d));
        assert_eq!(
            lu.take_unit_attention(&d),
            Some(UnitAttention::PowerOnReset)
        );
        assert_eq!(lu.take_unit_attention(&d), None);
        assert_eq!(
            lu.take_unit_attention(&a),
            Some(UnitAttention::BusDeviceReset)
        );
        // Without an issuing nexus every known one gets it, once.
        lu.reset(None);
        lu.reset(None);
        for n in [&a, &d] {
            assert_eq!(
                lu.take_unit_attention(n),
                Some(UnitAttention::BusDeviceReset)
            );
            assert_eq!(lu.take_unit_attention(n), None);
        }
    }
}
