//! The bootloader interface for A/B updates.
//!
//! The agent and the bootloader share four environment variables:
//!
//! - `fleetward_slot`: the committed slot (`a` or `b`), booted normally.
//! - `fleetward_try`: a slot to try (empty: none).
//! - `fleetward_bootcount`: boots of the try slot so far.
//! - `fleetward_bootlimit`: boots allowed before falling back.
//!
//! The bootloader's script (U-Boot `bootcmd`, GRUB `grub.cfg`; examples in
//! `dist/`) does, at each boot: if `fleetward_try` is set and
//! `fleetward_bootcount < fleetward_bootlimit`, increment the count and
//! boot the try slot; if the count is exhausted, clear `fleetward_try`
//! and boot `fleetward_slot`. It passes `fleetward.slot=<x>` on the kernel
//! command line, which is how the agent knows where it runs.
//! [`simulate_boot`] is that script for the `file` backend.
//!
//! Committing sets `fleetward_slot` to the try slot and clears the rest, so
//! a power cut anywhere leaves a slot that boots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::BootloaderConfig;
use crate::state::write_atomic;
use crate::{AgentError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn parse(raw: &str) -> Option<Slot> {
        match raw.trim() {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

pub const VAR_SLOT: &str = "fleetward_slot";
pub const VAR_TRY: &str = "fleetward_try";
pub const VAR_BOOTCOUNT: &str = "fleetward_bootcount";
pub const VAR_BOOTLIMIT: &str = "fleetward_bootlimit";
/// Written by [`simulate_boot`]: the slot the simulated kernel runs.
pub const VAR_RUNNING: &str = "fleetward_running";
/// Written by [`simulate_boot`]: boots so far (the simulated boot id).
pub const VAR_BOOTS: &str = "fleetward_boots";

/// Access to the bootloader's environment.
pub trait Bootloader: Send + Sync + std::fmt::Debug {
    fn read_env(&self) -> Result<BTreeMap<String, String>>;
    /// Sets all `vars` at once (empty value: unset).
    fn write_env(&self, vars: &[(&str, &str)]) -> Result<()>;
    /// An id of the current boot, to tell a reboot from an agent restart.
    fn boot_id(&self) -> Option<String> {
        crate::telemetry::boot_id()
    }
    /// The slot the running system booted from.
    fn running_slot(&self) -> Result<Slot> {
        let cmdline = std::fs::read_to_string("/proc/cmdline")
            .map_err(|e| AgentError::io_ctx("/proc/cmdline", e))?;
        cmdline
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix("fleetward.slot="))
            .and_then(Slot::parse)
            .ok_or_else(|| {
                AgentError::Install("no fleetward.slot= on the kernel command line".into())
            })
    }
}

/// Tells the bootloader to try `slot` on the next boots (up to `limit`).
pub fn try_slot(boot: &dyn Bootloader, slot: Slot, limit: u32) -> Result<()> {
    boot.write_env(&[
        (VAR_TRY, slot.as_str()),
        (VAR_BOOTCOUNT, "0"),
        (VAR_BOOTLIMIT, &limit.to_string()),
    ])
}

/// Makes `slot` the committed one.
pub fn commit_slot(boot: &dyn Bootloader, slot: Slot) -> Result<()> {
    boot.write_env(&[
        (VAR_SLOT, slot.as_str()),
        (VAR_TRY, ""),
        (VAR_BOOTCOUNT, "0"),
    ])
}

/// Gives up on the try slot: the next boot is the committed slot.
pub fn abandon_try(boot: &dyn Bootloader) -> Result<()> {
    boot.write_env(&[(VAR_TRY, ""), (VAR_BOOTCOUNT, "0")])
}

pub fn committed_slot(env: &BTreeMap<String, String>) -> Slot {
    env.get(VAR_SLOT)
        .and_then(|s| Slot::parse(s))
        .unwrap_or(Slot::A)
}

/// The bootloader's boot-time logic, for the `file` backend: picks the
/// slot to boot, counts the try, records the running slot. Returns it.
pub fn simulate_boot(path: &Path) -> Result<Slot> {
    let file = FileEnv {
        path: path.to_owned(),
    };
    let env = file.read_env()?;
    let committed = committed_slot(&env);
    let try_slot = env.get(VAR_TRY).and_then(|s| Slot::parse(s));
    let count: u32 = env
        .get(VAR_BOOTCOUNT)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: u32 = env
        .get(VAR_BOOTLIMIT)
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let booted = match try_slot {
        Some(slot) if count < limit => {
            file.write_env(&[(VAR_BOOTCOUNT, &(count + 1).to_string())])?;
            slot
        }
        Some(_) => {
            file.write_env(&[(VAR_TRY, ""), (VAR_BOOTCOUNT, "0")])?;
            committed
        }
        None => committed,
    };
    let boots: u64 = env.get(VAR_BOOTS).and_then(|c| c.parse().ok()).unwrap_or(0);
    file.write_env(&[
        (VAR_RUNNING, booted.as_str()),
        (VAR_BOOTS, &(boots + 1).to_string()),
    ])?;
    Ok(booted)
}

/// `key=value` lines in a file, replaced atomically.
#[derive(Debug, Clone)]
pub struct FileEnv {
    pub path: PathBuf,
}

impl Bootloader for FileEnv {
    fn read_env(&self) -> Result<BTreeMap<String, String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(parse_env(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(AgentError::io(&self.path, e)),
        }
    }

    fn write_env(&self, vars: &[(&str, &str)]) -> Result<()> {
        let mut env = self.read_env()?;
        for (key, value) in vars {
            if value.is_empty() {
                env.remove(*key);
            } else {
                env.insert((*key).to_owned(), (*value).to_owned());
            }
        }
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        write_atomic(&self.path, text.as_bytes(), 0o644)
    }

    fn boot_id(&self) -> Option<String> {
        self.read_env().ok()?.get(VAR_BOOTS).cloned()
    }

    fn running_slot(&self) -> Result<Slot> {
        let env = self.read_env()?;
        Ok(env
            .get(VAR_RUNNING)
            .and_then(|s| Slot::parse(s))
            .unwrap_or_else(|| committed_slot(&env)))
    }
}

/// `key=value` lines (as `fw_printenv` and `grub-editenv list` print them).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| k.starts_with("fleetward_"))
        .collect()
}

fn run(program: &str, args: &[String]) -> Result<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| AgentError::io_ctx(program, e))?;
    if !output.status.success() {
        return Err(AgentError::Install(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// U-Boot's environment through `fw_printenv` / `fw_setenv` (libubootenv),
/// which write both redundant copies so a power cut keeps one.
#[derive(Debug, Clone)]
pub struct UBootEnv;

impl Bootloader for UBootEnv {
    fn read_env(&self) -> Result<BTreeMap<String, String>> {
        Ok(parse_env(&run("fw_printenv", &[])?))
    }

    fn write_env(&self, vars: &[(&str, &str)]) -> Result<()> {
        // `fw_setenv -s -` sets several variables in one write.
        let script: String = vars.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        let mut child = std::process::Command::new("fw_setenv")
            .args(["-s", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| AgentError::io_ctx("fw_setenv", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| AgentError::io_ctx("fw_setenv", e))?;
        }
        let status = child
            .wait()
            .map_err(|e| AgentError::io_ctx("fw_setenv", e))?;
        if !status.success() {
            return Err(AgentError::Install(format!("fw_setenv failed: {status}")));
        }
        Ok(())
    }
}

/// GRUB's environment block through `grub-editenv`.
#[derive(Debug, Clone)]
pub struct GrubEnv {
    pub envfile: PathBuf,
}

impl Bootloader for GrubEnv {
    fn read_env(&self) -> Result<BTreeMap<String, String>> {
        let file = self.envfile.display().to_string();
        Ok(parse_env(&run("grub-editenv", &[file, "list".into()])?))
    }

    fn write_env(&self, vars: &[(&str, &str)]) -> Result<()> {
        let file = self.envfile.display().to_string();
        let (unset, set): (Vec<_>, Vec<_>) = vars.iter().partition(|(_, v)| v.is_empty());
        if !set.is_empty() {
            let mut args = vec![file.clone(), "set".to_owned()];
            args.extend(set.iter().map(|(k, v)| format!("{k}={v}")));
            run("grub-editenv", &args)?;
        }
        if !unset.is_empty() {
            let mut args = vec![file, "unset".to_owned()];
            args.extend(unset.iter().map(|(k, _)| (*k).to_owned()));
            run("grub-editenv", &args)?;
        }
        Ok(())
    }
}

/// The backend a configuration names.
pub fn from_config(config: &BootloaderConfig) -> Box<dyn Bootloader> {
    match config {
        BootloaderConfig::File { path } => Box::new(FileEnv { path: path.clone() }),
        BootloaderConfig::UBoot => Box::new(UBootEnv),
        BootloaderConfig::Grub { envfile } => Box::new(GrubEnv {
            envfile: envfile.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_bootloader_tries_then_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        let env = FileEnv { path: path.clone() };
        assert_eq!(simulate_boot(&path).unwrap(), Slot::A);
        try_slot(&env, Slot::B, 2).unwrap();
        assert_eq!(simulate_boot(&path).unwrap(), Slot::B);
        assert_eq!(env.running_slot().unwrap(), Slot::B);
        assert_eq!(simulate_boot(&path).unwrap(), Slot::B);
        // Two boots without a commit: the third falls back.
        assert_eq!(simulate_boot(&path).unwrap(), Slot::A);
        assert_eq!(simulate_boot(&path).unwrap(), Slot::A);
        try_slot(&env, Slot::B, 2).unwrap();
        assert_eq!(simulate_boot(&path).unwrap(), Slot::B);
        commit_slot(&env, Slot::B).unwrap();
        for _ in 0..4 {
            assert_eq!(simulate_boot(&path).unwrap(), Slot::B);
        }
    }
}
