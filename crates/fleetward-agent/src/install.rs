//! Installers: where verified image bytes go and how they become the
//! running system.
//!
//! The agent streams the image into [`Installer::write`] while hashing it,
//! and calls [`Installer::activate`] only after the hash and length match
//! what both the director and the image repository signed. A mismatch
//! calls [`Installer::discard`], which leaves the inactive slot unbootable
//! and the boot configuration untouched.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;

use crate::boot::{self, Bootloader, Slot};
use crate::config::InstallerConfig;
use crate::{AgentError, Result};

/// One way of installing images.
pub trait Installer: Send + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// The slot an image goes to (A/B installers), for the record.
    fn target_slot(&self) -> Result<Option<Slot>>;
    /// Opens the destination at `offset`, first passing the `offset` bytes
    /// already there to `prefix` (a resumed download re-hashes them).
    fn open(&mut self, offset: u64, prefix: &mut dyn FnMut(&[u8])) -> Result<()>;
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<()>;
    /// Throws a partial or refused image away.
    fn discard(&mut self) -> Result<()>;
    /// The complete, verified image: switch the boot slot / run the
    /// external installer. A reboot follows.
    fn activate(&mut self) -> Result<()>;
    /// After the reboot: did the device boot the new image?
    fn booted_new(&self, slot: Option<Slot>) -> Result<bool>;
    /// Health check passed: keep the new image.
    fn commit(&mut self, slot: Option<Slot>) -> Result<()>;
    /// Health check failed: boot the old image next.
    fn fall_back(&mut self) -> Result<()>;
    /// An id of the current boot (see [`Bootloader::boot_id`]).
    fn boot_id(&self) -> Option<String> {
        crate::telemetry::boot_id()
    }
}

/// A/B slots as files or block devices, switched by a bootloader.
#[derive(Debug)]
pub struct AbFiles {
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    pub boot: Box<dyn Bootloader>,
    pub boot_limit: u32,
    file: Option<std::fs::File>,
}

impl AbFiles {
    pub fn new(
        slot_a: PathBuf,
        slot_b: PathBuf,
        boot: Box<dyn Bootloader>,
        boot_limit: u32,
    ) -> Self {
        AbFiles {
            slot_a,
            slot_b,
            boot,
            boot_limit,
            file: None,
        }
    }

    fn path(&self, slot: Slot) -> &PathBuf {
        match slot {
            Slot::A => &self.slot_a,
            Slot::B => &self.slot_b,
        }
    }

    fn inactive(&self) -> Result<Slot> {
        Ok(self.boot.running_slot()?.other())
    }

    fn file(&mut self) -> Result<&mut std::fs::File> {
        self.file
            .as_mut()
            .ok_or_else(|| AgentError::Install("the slot is not open".into()))
    }
}

impl Installer for AbFiles {
    fn name(&self) -> &'static str {
        "ab-files"
    }

    fn target_slot(&self) -> Result<Option<Slot>> {
        self.inactive().map(Some)
    }

    fn open(&mut self, offset: u64, prefix: &mut dyn FnMut(&[u8])) -> Result<()> {
        let path = self.path(self.inactive()?).clone();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| AgentError::io(&path, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = offset;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let read = file
                .read(&mut buf[..want])
                .map_err(|e| AgentError::io(&path, e))?;
            if read == 0 {
                return Err(AgentError::Install(format!(
                    "{} is shorter than the {offset} bytes written before",
                    path.display()
                )));
            }
            prefix(&buf[..read]);
            left -= read as u64;
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| AgentError::io(&path, e))?;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(keep) = crate::power::point(bytes.len()) {
            let _ = self.file()?.write_all(&bytes[..keep]);
            crate::power::cut("a write to the inactive slot");
        }
        self.file()?
            .write_all(bytes)
            .map_err(|e| AgentError::io_ctx("writing the inactive slot", e))
    }

    fn sync(&mut self) -> Result<()> {
        self.file()?
            .sync_data()
            .map_err(|e| AgentError::io_ctx("syncing the inactive slot", e))
    }

    fn discard(&mut self) -> Result<()> {
        self.file = None;
        let path = self.path(self.inactive()?).clone();
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(AgentError::io(&path, e)),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| AgentError::io(&path, e))?;
        if meta.is_file() {
            file.set_len(0).map_err(|e| AgentError::io(&path, e))?;
        } else {
            // A block device: wipe the start so nothing boots from it.
            file.write_all(&[0u8; 64 * 1024])
                .map_err(|e| AgentError::io(&path, e))?;
        }
        file.sync_all().map_err(|e| AgentError::io(&path, e))
    }

    fn activate(&mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| AgentError::io_ctx("syncing the inactive slot", e))?;
        }
        boot::try_slot(&*self.boot, self.inactive()?, self.boot_limit)
    }

    fn booted_new(&self, slot: Option<Slot>) -> Result<bool> {
        Ok(slot.is_some_and(|slot| self.boot.running_slot().is_ok_and(|r| r == slot)))
    }

    fn commit(&mut self, slot: Option<Slot>) -> Result<()> {
        let slot = slot.ok_or_else(|| AgentError::Install("no slot to commit".into()))?;
        boot::commit_slot(&*self.boot, slot)
    }

    fn fall_back(&mut self) -> Result<()> {
        boot::abandon_try(&*self.boot)
    }

    fn boot_id(&self) -> Option<String> {
        self.boot.boot_id()
    }
}

/// An external installer (`swupdate -i`, `rauc install`) handed the
/// verified file; it owns slots and bootloader itself.
#[derive(Debug)]
pub struct CommandInstaller {
    pub program: String,
    pub args: Vec<String>,
    pub download: PathBuf,
    file: Option<std::fs::File>,
}

impl CommandInstaller {
    pub fn new(program: String, args: Vec<String>, download: PathBuf) -> Self {
        CommandInstaller {
            program,
            args,
            download,
            file: None,
        }
    }
}

impl Installer for CommandInstaller {
    fn name(&self) -> &'static str {
        "command"
    }

    fn target_slot(&self) -> Result<Option<Slot>> {
        Ok(None)
    }

    fn open(&mut self, offset: u64, prefix: &mut dyn FnMut(&[u8])) -> Result<()> {
        let path = self.download.clone();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(offset == 0)
            .open(&path)
            .map_err(|e| AgentError::io(&path, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = offset;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let read = file
                .read(&mut buf[..want])
                .map_err(|e| AgentError::io(&path, e))?;
            if read == 0 {
                return Err(AgentError::Install("the partial download is short".into()));
            }
            prefix(&buf[..read]);
            left -= read as u64;
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| AgentError::io(&path, e))?;
        file.set_len(offset).map_err(|e| AgentError::io(&path, e))?;
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .as_mut()
            .ok_or_else(|| AgentError::Install("the download is not open".into()))?
            .write_all(bytes)
            .map_err(|e| AgentError::io_ctx("writing the download", e))
    }

    fn sync(&mut self) -> Result<()> {
        match &self.file {
            Some(file) => file
                .sync_data()
                .map_err(|e| AgentError::io_ctx("syncing the download", e)),
            None => Ok(()),
        }
    }

    fn discard(&mut self) -> Result<()> {
        self.file = None;
        match std::fs::remove_file(&self.download) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(AgentError::io(&self.download, e))
            }
            _ => Ok(()),
        }
    }

    fn activate(&mut self) -> Result<()> {
        self.sync()?;
        self.file = None;
        let status = std::process::Command::new(&self.program)
            .args(&self.args)
            .arg(&self.download)
            .status()
            .map_err(|e| AgentError::io_ctx(self.program.clone(), e))?;
        let _ = std::fs::remove_file(&self.download);
        if !status.success() {
            return Err(AgentError::Install(format!(
                "{} exited with {status}",
                self.program
            )));
        }
        Ok(())
    }

    fn booted_new(&self, _: Option<Slot>) -> Result<bool> {
        Ok(true)
    }

    fn commit(&mut self, _: Option<Slot>) -> Result<()> {
        Ok(())
    }

    fn fall_back(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The installer a configuration names.
pub fn from_config(config: &InstallerConfig, state_dir: &std::path::Path) -> Box<dyn Installer> {
    match config {
        InstallerConfig::AbFiles {
            slot_a,
            slot_b,
            bootloader,
            boot_limit,
        } => Box::new(AbFiles::new(
            slot_a.clone(),
            slot_b.clone(),
            boot::from_config(bootloader),
            *boot_limit,
        )),
        InstallerConfig::Command { program, args } => Box::new(CommandInstaller::new(
            program.clone(),
            args.clone(),
            state_dir.join("download.img"),
        )),
    }
}
