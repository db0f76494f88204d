//! `/etc/fleetward/agent.toml`: where the server is, what this device is,
//! what it trusts, how it installs.
//!
//! The trust anchors are files provisioned with the device image, never
//! fetched: the fleet CA certificate (which server the agent talks to)
//! and the image repository's first `root.json` (whose offline keys sign
//! software). See ARCHITECTURE.md, "How a device trusts the director".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AgentError;

pub const DEFAULT_PATH: &str = "/etc/fleetward/agent.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The device listener, e.g. `https://updates.example.com:8443`.
    pub server: String,
    /// This device's id (as the registry knows it).
    pub device_id: String,
    /// Hardware type; the director must name the same.
    pub hardware: String,
    /// Keys, certificate, trusted metadata, report buffer, download state.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The fleet CA certificate (PEM), provisioned.
    pub ca_cert: PathBuf,
    /// The image repository's initial root metadata, provisioned.
    pub trusted_root: PathBuf,
    /// The software version the device ran when provisioned.
    #[serde(default)]
    pub initial_version: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub downloads: Downloads,
    pub installer: InstallerConfig,
    /// Command run after booting an update (`sh -c`); exit 0 is healthy.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Command that reboots the device (`sh -c`); `None`: the agent exits
    /// with a message and the next start finishes the update.
    #[serde(default)]
    pub reboot_command: Option<String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/fleetward")
}

/// Bounds on what the agent reads from the network and keeps on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest root, timestamp, snapshot or director metadata file.
    pub max_metadata_bytes: u64,
    /// Largest image repository targets metadata.
    pub max_targets_bytes: u64,
    /// Largest image the agent will install.
    pub max_image_bytes: u64,
    /// Most root versions fetched in one poll.
    pub max_root_rotations: u32,
    /// Reports kept on disk while offline; the oldest go first.
    pub max_buffered_reports: usize,
    /// Seconds a request may take before it is abandoned (slow retrieval).
    pub request_timeout_secs: u64,
    /// Fewest bytes per second a download must sustain (slow retrieval).
    pub min_download_rate: u64,
    /// Seconds a download runs before its rate is judged (a slow start,
    /// e.g. TCP ramping up, is not an attack).
    pub slow_download_grace_secs: u64,
    /// Seconds an idle connection to the server is kept for the next
    /// request. A poll's requests share one connection; between polls it
    /// is closed (NAT boxes drop idle flows anyway) and the next poll
    /// resumes the TLS session instead of a full handshake.
    pub idle_connection_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_metadata_bytes: 256 * 1024,
            max_targets_bytes: 8 * 1024 * 1024,
            max_image_bytes: 16 * 1024 * 1024 * 1024,
            max_root_rotations: 32,
            max_buffered_reports: 2048,
            request_timeout_secs: 60,
            min_download_rate: 1024,
            slow_download_grace_secs: 30,
            idle_connection_secs: 30,
        }
    }
}

/// Where image bytes may come from besides the server itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Downloads {
    /// Follow the server's redirect of an image download to a plain
    /// `http://` object store (a pre-signed URL on a trusted network).
    /// `https://` redirects are always followed. The image is verified
    /// against signed length and hashes either way.
    pub allow_http_redirects: bool,
}

/// How a verified image is installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum InstallerConfig {
    /// Two slots as files or block devices; the image streams into the
    /// inactive one and the bootloader is told to try it once.
    AbFiles {
        slot_a: PathBuf,
        slot_b: PathBuf,
        bootloader: BootloaderConfig,
        /// Boots of an untested slot before the bootloader falls back.
        #[serde(default = "default_boot_limit")]
        boot_limit: u32,
    },
    /// An external installer (`swupdate -i`, `rauc install`) given the
    /// verified file's path as its last argument.
    Command { program: String, args: Vec<String> },
}

fn default_boot_limit() -> u32 {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootloaderConfig {
    /// A `key=value` file standing in for the bootloader environment
    /// (tests, simulators, devices whose bootloader reads such a file).
    File { path: PathBuf },
    /// U-Boot environment through `fw_printenv` / `fw_setenv`.
    UBoot,
    /// GRUB environment block through `grub-editenv`.
    Grub {
        #[serde(default = "default_grubenv")]
        envfile: PathBuf,
    },
}

fn default_grubenv() -> PathBuf {
    PathBuf::from("/boot/grub/grubenv")
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
        toml::from_str(&text).map_err(|e| AgentError::Config(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let config: AgentConfig = toml::from_str(include_str!("../dist/agent.toml")).unwrap();
        assert_eq!(config.hardware, "rev2");
        assert!(matches!(
            config.installer,
            InstallerConfig::AbFiles {
                bootloader: BootloaderConfig::UBoot,
                boot_limit: 3,
                ..
            }
        ));
        assert_eq!(
            config.limits.max_metadata_bytes,
            Limits::default().max_metadata_bytes
        );
        for bad in [
            "server = 1",
            "server = \"x\"\ndevice_id = \"d\"\nhardware = \"h\"\nca_cert = \"c\"\ntrusted_root = \"r\"\nsurprise = 1\n[installer]\nkind = \"command\"\nprogram = \"p\"\nargs = []",
        ] {
            assert!(toml::from_str::<AgentConfig>(bad).is_err(), "{bad}");
        }
    }
}
