//! What the agent keeps on disk, and how it writes it so that a power cut
//! at any instant leaves either the old or the new version: write to a
//! temporary file, fsync it, rename over the old one, fsync the directory.
//!
//! Layout of the state directory (mode 0700):
//! - `device.key`, `device.crt`: the identity (0600; the key never leaves).
//! - `root.json`: the newest trusted image-repository root.
//! - `state.json`: anti-rollback versions, the pinned director key, the
//!   running and highest installed versions, the update in progress.
//! - `reports.jsonl`: reports waiting to be sent (bounded).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use fleetward_tuf::PublicKey;
use serde::{Deserialize, Serialize};

use crate::verify::{DirectorOffer, SeenVersions};
use crate::{AgentError, Result};

pub const KEY_FILE: &str = "device.key";
pub const CERT_FILE: &str = "device.crt";
pub const ROOT_FILE: &str = "root.json";
pub const STATE_FILE: &str = "state.json";

/// Persisted agent state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Metadata versions seen verified; never go back.
    pub seen: SeenVersions,
    /// Versions of delegated targets roles (product lines) seen verified.
    #[serde(default)]
    pub seen_delegated: crate::verify::SeenDelegated,
    /// The director's key, pinned right after enrolment.
    pub director_key: Option<PublicKey>,
    /// What the device runs now.
    pub running_version: Option<String>,
    /// The highest version ever committed; nothing older is installed.
    pub highest_version: Option<String>,
    /// The update in progress, if any.
    pub pending: Option<Pending>,
    /// The kernel's boot id at the last start, to notice reboots.
    pub boot_id: Option<String>,
    /// The final report of an update, saved with the commit or fall-back
    /// it reports, until sent: a power cut between the two must not leave
    /// the server waiting for an execution the device has finished.
    #[serde(default)]
    pub unreported: Option<Unreported>,
}

/// A final execution report not yet sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unreported {
    pub offer: DirectorOffer,
    pub report: fleetward_wire::device::ExecutionReport,
}

/// An update between "offered" and "committed".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub offer: DirectorOffer,
    pub phase: Phase,
    /// Image bytes durably written (fsynced) so far; a restart resumes here.
    pub written: u64,
    /// The slot the image goes to (A/B installers).
    #[serde(default)]
    pub slot: Option<crate::boot::Slot>,
    /// The boot id when the boot slot was switched.
    #[serde(default)]
    pub switched_in_boot: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Downloading,
    /// The boot slot was switched; the next start is after the reboot.
    Rebooting,
}

static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns fsync off for this process. Only the simulator does this: its
/// thousands of devices share one disk and none of them loses power.
pub fn set_durable(durable: bool) {
    DURABLE.store(durable, std::sync::atomic::Ordering::Relaxed);
}

pub fn durable() -> bool {
    DURABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .ok_or_else(|| AgentError::State(format!("{} has no directory", path.display())))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| AgentError::io(&tmp, e))?;
    if let Some(keep) = crate::power::point(bytes.len()) {
        let _ = file.write_all(&bytes[..keep]);
        crate::power::cut("a state or boot-environment file's temporary copy");
    }
    file.write_all(bytes).map_err(|e| AgentError::io(&tmp, e))?;
    if durable() {
        file.sync_all().map_err(|e| AgentError::io(&tmp, e))?;
    }
    drop(file);
    crate::power::between("before a state or boot-environment file's rename");
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io(path, e))?;
    crate::power::between("after a state or boot-environment file's rename");
    if durable() { sync_dir(dir) } else { Ok(()) }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io(dir, e))
}

/// The state directory and the files in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        StateDir {
            dir: dir.to_owned(),
        }
    }

    pub fn create(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| AgentError::io(&self.dir, e))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn load(&self) -> Result<AgentState> {
        let path = self.path(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::State(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(AgentError::io(&path, e)),
        }
    }

    pub fn save(&self, state: &AgentState) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| AgentError::State(format!("encoding state: {e}")))?;
        write_atomic(&self.path(STATE_FILE), &bytes, 0o600)
    }

    /// The newest trusted root's bytes, or the provisioned one.
    pub fn trusted_root(&self, provisioned: &Path) -> Result<Vec<u8>> {
        let path = self.path(ROOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::read(provisioned).map_err(|e| AgentError::io(provisioned, e))
            }
            Err(e) => Err(AgentError::io(&path, e)),
        }
    }

    pub fn save_root(&self, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(ROOT_FILE), bytes, 0o600)
    }

    pub fn enrolled(&self) -> bool {
        self.path(KEY_FILE).exists() && self.path(CERT_FILE).exists()
    }
}
