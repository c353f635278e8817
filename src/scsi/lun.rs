//! A logical unit: one volume with its geometry, identity, mode pages and the unit-attention
//! queues of every I_T nexus that has talked to it. Shared by every reactor (`Send + Sync`); its
//! locks guard only small control state, never the data path.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use ringsan_engine::volume::Volume;

use crate::scsi::geometry::LuGeometry;
use crate::scsi::inquiry::LuIdentity;
use crate::scsi::mode::ModeState;
use crate::scsi::nexus::Nexus;
use crate::scsi::ua::{UaQueue, UnitAttention};

/// One logical unit.
pub struct LogicalUnit {
    number: u16,
    volume: Volume,
    geometry: RwLock<LuGeometry>,
    identity: LuIdentity,
    mode: Mutex<ModeState>,
    unit_attentions: Mutex<HashMap<Nexus, UaQueue>>,
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
        }
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
    }

    /// A LOGICAL UNIT RESET (or target reset): every nexus but the one that asked for it gets
    /// BUS DEVICE RESET FUNCTION OCCURRED (29h/03h); mode pages return to their defaults.
    pub fn reset(&self, by: Option<&Nexus>) {
        match by {
            Some(n) => self.raise_for_others(n, UnitAttention::BusDeviceReset),
            None => self.raise_for_all(UnitAttention::BusDeviceReset),
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
