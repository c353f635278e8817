//! Persist Through Power Loss (APTPL, SPC-4 §5.9.4): the file that keeps one logical unit's
//! persistent reservation state across restarts, crashes included.
//!
//! One TOML file per logical unit, `<data_dir>/pr/<uuid>.toml`, named by the unit's UUID (the
//! identity VPD page 83h reports) and bound to it by the `unit` field inside, so a file never
//! lands on another unit. It is written before the PERSISTENT RESERVE OUT that changed the state
//! completes: a temporary file, `fsync`, `rename` over the old one, `fsync` of the folder, so a
//! crash leaves the old state or the new one, never a torn file.
//!
//! At start a missing file is the empty state. A file that cannot be read, parsed or trusted
//! (wrong unit, unknown format, broken invariants) is an error naming the file and what is wrong
//! in it: the unit then stays offline until an administrator decides (`target-admin pr clear`);
//! the state is never silently dropped. A file written with APTPL off yields the empty state, as a
//! power on would ([`PrState::power_on`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scsi::pr::PrState;

/// The format number written into every file.
pub const FORMAT: u32 = 1;

/// Why a state file could not be read or written.
#[derive(Debug, Error)]
pub enum PrStoreError {
    /// The file system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file's content cannot be trusted.
    #[error("{}: {detail}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file when the parser knows.
        detail: String,
    },
}

/// The file's layout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrFile {
    /// [`FORMAT`].
    format: u32,
    /// The UUID of the unit the state belongs to.
    unit: String,
    /// The state as the last completed PERSISTENT RESERVE OUT left it.
    state: PrState,
}

/// The state file of one logical unit.
#[derive(Debug, Clone)]
pub struct PrStore {
    path: PathBuf,
    unit: String,
}

impl PrStore {
    /// The store of the unit with `uuid` under `data_dir`.
    pub fn new(data_dir: &Path, uuid: &[u8; 16]) -> PrStore {
        let unit = uuid::Uuid::from_bytes(*uuid).hyphenated().to_string();
        PrStore {
            path: data_dir.join("pr").join(format!("{unit}.toml")),
            unit,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state to start with: empty without a file, else what survives a power on of the
    /// state in the file.
    pub fn load(&self) -> Result<PrState, PrStoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PrState::new()),
            Err(source) => {
                return Err(PrStoreError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let damaged = |detail: String| PrStoreError::Damaged {
            path: self.path.clone(),
            detail,
        };
        let file: PrFile = toml::from_str(&text).map_err(|e| damaged(one_line(&e)))?;
        if file.format != FORMAT {
            return Err(damaged(format!(
                "format {} is not the {FORMAT} this ringsand reads",
                file.format
            )));
        }
        if file.unit != self.unit {
            return Err(damaged(format!(
                "the state belongs to unit {} but this LUN is unit {}",
                file.unit, self.unit
            )));
        }
        file.state
            .check_invariants()
            .map_err(|e| damaged(format!("inconsistent state: {e}")))?;
        Ok(file.state.power_on())
    }

    /// Writes `state` so that it survives a crash at any point: the old file or the new one.
    pub fn save(&self, state: &PrState) -> Result<(), PrStoreError> {
        let io_err = |source| PrStoreError::Io {
            path: self.path.clone(),
            source,
        };
        let file = PrFile {
            format: FORMAT,
            unit: self.unit.clone(),
            state: state.clone(),
        };
        let text = toml::to_string(&file).map_err(|e| PrStoreError::Damaged {
            path: self.path.clone(),
            detail: format!("cannot serialize the state: {e}"),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err)?;
        let tmp = self.path.with_extension("toml.tmp");
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err)?;
        out.write_all(b"# ringsand: persistent reservation state (APTPL); written by ringsand\n")
            .and_then(|_| out.write_all(text.as_bytes()))
            .and_then(|_| out.sync_all())
            .map_err(io_err)?;
        drop(out);
        fs::rename(&tmp, &self.path).map_err(io_err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
    }

    /// Moves a damaged file aside (`<file>.damaged`), so the unit can start afresh; the old
    /// content stays for whoever wants to look at it. Nothing to do without a file.
    pub fn set_aside(&self) -> Result<Option<PathBuf>, PrStoreError> {
        if !self.path.exists() {
            return Ok(None);
        }
        let aside = self.path.with_extension("toml.damaged");
        fs::rename(&self.path, &aside).map_err(|source| PrStoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(Some(aside))
    }

    /// Removes the file (the unit was deleted: a new unit must not inherit its state).
    pub fn remove(&self) -> Result<(), PrStoreError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PrStoreError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// A parser message on one line (the TOML parser's spans several, with the offending line).
fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::nexus::Nexus;
    use crate::scsi::pr::{apply, PrOut, PrType, ServiceAction};

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ringsan-pr-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn nexus() -> Nexus {
        Nexus::new(
            "iqn.2026-11.test:a",
            [0x80, 0, 0, 0, 0, 1],
            "iqn.2026-11.test:t",
            1,
        )
    }

    fn registered(aptpl: bool) -> PrState {
        let mut op = PrOut::register(0, 0x1234);
        op.aptpl = aptpl;
        let (s, _) = apply(&PrState::new(), &nexus(), &op).unwrap();
        let mut op = PrOut::new(ServiceAction::Reserve, 0x1234, 0);
        op.pr_type = Some(PrType::WriteExclusive);
        apply(&s, &nexus(), &op).unwrap().0
    }

    #[test]
    fn a_saved_aptpl_state_comes_back_as_after_a_power_on() {
        let dir = scratch();
        let store = PrStore::new(&dir, &[7; 16]);
        assert_eq!(store.load().unwrap(), PrState::new(), "no file: empty");
        let s = registered(true);
        store.save(&s).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back, s.power_on());
        assert_eq!(back.registrations.len(), 1);
        assert!(back.reservation.is_some() && back.aptpl);
        assert!(!store.path().with_extension("toml.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_saved_with_aptpl_off_starts_empty() {
        let dir = scratch();
        let store = PrStore::new(&dir, &[8; 16]);
        store.save(&registered(false)).unwrap();
        assert_eq!(store.load().unwrap().registrations.len(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn damage_is_reported_with_the_file_and_the_place() {
        let dir = scratch();
        let store = PrStore::new(&dir, &[9; 16]);
        store.save(&registered(true)).unwrap();
        let good = fs::read_to_string(store.path()).unwrap();

        fs::write(
            store.path(),
            good.replace("generation = ", "generation = x"),
        )
        .unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains(&store.path().display().to_string()), "{e}");
        assert!(e.contains("line"), "where in the file: {e}");

        fs::write(store.path(), &good[..good.len() / 2]).unwrap();
        assert!(matches!(store.load(), Err(PrStoreError::Damaged { .. })));

        let other = PrStore::new(&dir, &[10; 16]);
        fs::write(other.path(), &good).unwrap();
        let e = other.load().unwrap_err().to_string();
        assert!(e.contains("belongs to unit"), "{e}");

        fs::write(store.path(), good.replace("format = 1", "format = 99")).unwrap();
        assert!(store.load().unwrap_err().to_string().contains("format 99"));

        let aside = store.set_aside().unwrap().unwrap();
        assert!(aside.exists() && !store.path().exists());
        assert_eq!(store.load().unwrap(), PrState::new());
        let _ = fs::remove_dir_all(&dir);
    }
}
