//! The numbered log of the reservation commands a logical unit accepted: every PERSISTENT
//! RESERVE OUT that completed GOOD, with the I_T nexus it came through and the number
//! ([`PrState::log_index`](super::PrState::log_index)) the state carried after it. Applying the
//! entries in order to the state before the first one gives the state after the last one
//! ([`apply`](super::apply())), which is what a second node needs to follow, or to catch up after
//! it rejoins. Only the most recent entries are kept here; older history lives in the state.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::out::PrOut;
use super::state::PrNexus;

/// Entries kept.
pub const PR_LOG_ENTRIES: usize = 256;

/// One accepted PERSISTENT RESERVE OUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrLogEntry {
    /// The state's `log_index` after this command.
    pub index: u64,
    /// The I_T nexus it came through.
    pub origin: PrNexus,
    /// The command.
    pub op: PrOut,
}

/// The most recent [`PR_LOG_ENTRIES`] accepted commands, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrLog {
    entries: VecDeque<PrLogEntry>,
}

impl PrLog {
    /// Appends an entry, dropping the oldest beyond [`PR_LOG_ENTRIES`].
    pub fn push(&mut self, entry: PrLogEntry) {
        if self.entries.len() == PR_LOG_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &PrLogEntry> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::nexus::Nexus;
    use crate::scsi::pr::{apply, PrState, PrType};

    #[test]
    fn replaying_the_log_rebuilds_the_state_and_old_entries_go() {
        let a = Nexus::new(
            "iqn.2026-11.test:a",
            [0x80, 0, 0, 0, 0, 1],
            "iqn.2026-11.test:t",
            1,
        );
        let b = Nexus::new(
            "iqn.2026-11.test:b",
            [0x80, 0, 0, 0, 0, 2],
            "iqn.2026-11.test:t",
            1,
        );
        let ops = [
            (&a, PrOut::register_ignore(0xA)),
            (&b, PrOut::register_ignore(0xB)),
            (&a, PrOut::reserve(0xA, PrType::WriteExclusive)),
            (&b, PrOut::preempt(0xB, 0xA, PrType::WriteExclusive, true)),
        ];
        let mut state = PrState::new();
        let mut log = PrLog::default();
        for (nexus, op) in &ops {
            state = apply(&state, nexus, op).unwrap().0;
            log.push(PrLogEntry {
                index: state.log_index,
                origin: PrNexus::from(*nexus),
                op: op.clone(),
            });
        }
        let mut replayed = PrState::new();
        for e in log.entries() {
            replayed = apply(&replayed, &e.origin.to_nexus(), &e.op).unwrap().0;
            assert_eq!(replayed.log_index, e.index);
        }
        assert_eq!(replayed, state);
        for i in 0..PR_LOG_ENTRIES as u64 {
            log.push(PrLogEntry {
                index: 100 + i,
                origin: PrNexus::from(&a),
                op: PrOut::register_ignore(0xA),
            });
        }
        assert_eq!(log.entries().count(), PR_LOG_ENTRIES);
        assert_eq!(log.entries().next().map(|e| e.index), Some(100));
    }
}
