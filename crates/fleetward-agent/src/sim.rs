//! The fleet simulator: thousands of agents in one process, each with its
//! own key, certificate and state directory, speaking the real protocol
//! (mutual TLS, full TUF and director verification, hashed downloads) to
//! a real server. Only the slots are simulated: a [`MemorySlots`]
//! installer hashes the image and remembers which slot boots.
//!
//! Failure injection: `fail_rate` makes the new slot fail to come up
//! (the device rolls back), `offline_rate` skips a device's poll (its
//! reports stay buffered), `rollback_rate` plants a higher version as the
//! device's highest installed, so an ordinary offer is a rollback to it.
//! The rates draw at random; `fail_devices` and `rollback_devices` name
//! devices by index instead, so a demo or a test knows its exact counts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use rand::Rng as _;

use crate::boot::Slot;
use crate::config::{AgentConfig, InstallerConfig, Limits};
use crate::install::Installer;
use crate::{Agent, PollOutcome, Result};

/// In-memory A/B slots: bytes are counted, not kept.
#[derive(Debug, Default)]
pub struct MemorySlots {
    running: Option<Slot>,
    trying: Option<Slot>,
    pub written: u64,
    boots: u64,
    /// The next boot of a try slot fails (injected).
    pub fail_next_boot: bool,
}

impl MemorySlots {
    fn running(&self) -> Slot {
        self.running.unwrap_or(Slot::A)
    }

    /// A reboot: the try slot comes up unless a failure is injected.
    pub fn reboot(&mut self) {
        self.boots += 1;
        if let Some(slot) = self.trying.take() {
            if !self.fail_next_boot {
                self.running = Some(slot);
                // Until commit, a second reboot falls back.
                self.trying = None;
            }
            self.fail_next_boot = false;
        }
    }
}

/// Shared handle so the simulator can reboot a device its agent owns.
#[derive(Debug, Clone, Default)]
pub struct SharedSlots(pub Arc<std::sync::Mutex<MemorySlots>>);

impl SharedSlots {
    fn with<T>(&self, f: impl FnOnce(&mut MemorySlots) -> T) -> T {
        match self.0.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn reboot(&self) {
        self.with(MemorySlots::reboot);
    }

    pub fn inject_boot_failure(&self) {
        self.with(|s| s.fail_next_boot = true);
    }
}

impl Installer for SharedSlots {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn target_slot(&self) -> Result<Option<Slot>> {
        Ok(Some(self.with(|s| s.running().other())))
    }
    fn open(&mut self, offset: u64, _prefix: &mut dyn FnMut(&[u8])) -> Result<()> {
        if offset > 0 {
            // Nothing is kept: a resumed download starts over.
            return Err(crate::AgentError::Install(
                "memory slots do not resume".into(),
            ));
        }
        self.with(|s| s.written = 0);
        Ok(())
    }
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.with(|s| s.written += bytes.len() as u64);
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    fn discard(&mut self) -> Result<()> {
        self.with(|s| s.written = 0);
        Ok(())
    }
    fn activate(&mut self) -> Result<()> {
        self.with(|s| s.trying = Some(s.running().other()));
        Ok(())
    }
    fn booted_new(&self, slot: Option<Slot>) -> Result<bool> {
        Ok(slot == Some(self.with(|s| s.running())))
    }
    fn commit(&mut self, _: Option<Slot>) -> Result<()> {
        Ok(())
    }
    fn fall_back(&mut self) -> Result<()> {
        self.with(|s| s.trying = None);
        Ok(())
    }
    fn boot_id(&self) -> Option<String> {
        Some(self.with(|s| s.boots.to_string()))
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub server: String,
    pub ca_pem: Vec<u8>,
    /// The image repository's root.json, provisioned on every device.
    pub root_json: Vec<u8>,
    /// An enrolment token with at least `devices` uses.
    pub token: String,
    pub devices: usize,
    pub id_prefix: String,
    pub hardware: String,
    pub initial_version: String,
    /// Poll rounds; each device polls once per round.
    pub rounds: usize,
    /// Devices working at once.
    pub concurrency: usize,
    pub fail_rate: f64,
    pub rollback_rate: f64,
    pub offline_rate: f64,
    /// Devices (by index) whose first new slot fails to boot, whatever
    /// `fail_rate` draws.
    pub fail_devices: Vec<usize>,
    /// Devices (by index) planted with a higher installed version, whatever
    /// `rollback_rate` draws.
    pub rollback_devices: Vec<usize>,
    /// Where the devices' state directories go.
    pub work_dir: PathBuf,
}

/// Counts of what happened.
#[derive(Debug, Default)]
pub struct SimStats {
    pub enrolled: AtomicU64,
    pub enrol_failed: AtomicU64,
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub offline_skips: AtomicU64,
    pub updated: AtomicU64,
    pub rolled_back: AtomicU64,
    pub refused: AtomicU64,
    pub reports_sent: AtomicU64,
}

impl SimStats {
    pub fn summary(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "enrolled": get(&self.enrolled),
            "enrol_failed": get(&self.enrol_failed),
            "polls": get(&self.polls),
            "poll_errors": get(&self.poll_errors),
            "offline_skips": get(&self.offline_skips),
            "updated": get(&self.updated),
            "rolled_back": get(&self.rolled_back),
            "refused": get(&self.refused),
            "reports_sent": get(&self.reports_sent),
        })
    }
}

struct SimDevice {
    agent: Agent,
    slots: SharedSlots,
    /// Boot failures still to inject whatever the rate draws.
    forced_failures: u32,
}

fn device_config(sim: &SimConfig, n: usize) -> Result<AgentConfig> {
    let dir = sim.work_dir.join(format!("{}{n:06}", sim.id_prefix));
    std::fs::create_dir_all(&dir).map_err(|e| crate::AgentError::io(&dir, e))?;
    let ca = sim.work_dir.join("ca.pem");
    let root = sim.work_dir.join("root.json");
    Ok(AgentConfig {
        server: sim.server.clone(),
        device_id: format!("{}{n:06}", sim.id_prefix),
        hardware: sim.hardware.clone(),
        state_dir: dir.join("state"),
        ca_cert: ca,
        trusted_root: root,
        initial_version: Some(sim.initial_version.clone()),
        limits: Limits {
            request_timeout_secs: 120,
            // Thousands of devices share this process's file descriptors
            // with the server under test: a device's connection closes
            // soon after its poll, as a real device's does between polls.
            idle_connection_secs: 1,
            ..Limits::default()
        },
        downloads: Default::default(),
        installer: InstallerConfig::Command {
            program: "true".into(),
            args: Vec::new(),
        },
        health_check: None,
        reboot_command: None,
    })
}

async fn enrol_one(sim: &SimConfig, n: usize, stats: &SimStats) -> Option<SimDevice> {
    let run = async {
        let config = device_config(sim, n)?;
        crate::enroll::enroll(&config, &sim.token).await?;
        let slots = SharedSlots::default();
        let agent = Agent::with_installer(config, Box::new(slots.clone()))?;
        if sim.rollback_devices.contains(&n)
            || rand::thread_rng().gen_bool(sim.rollback_rate.clamp(0.0, 1.0))
        {
            let mut state = agent.state()?;
            state.highest_version = Some("999.0.0".into());
            agent.dir.save(&state)?;
        }
        Ok::<_, crate::AgentError>(SimDevice {
            agent,
            slots,
            forced_failures: u32::from(sim.fail_devices.contains(&n)),
        })
    };
    match run.await {
        Ok(device) => {
            stats.enrolled.fetch_add(1, Ordering::Relaxed);
            Some(device)
        }
        Err(error) => {
            tracing::warn!(device = n, %error, "enrolment failed");
            stats.enrol_failed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

async fn poll_one(sim: &SimConfig, device: &mut SimDevice, stats: &SimStats) {
    let (offline, fail) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_bool(sim.offline_rate.clamp(0.0, 1.0)),
            rng.gen_bool(sim.fail_rate.clamp(0.0, 1.0)),
        )
    };
    if device.agent.report_telemetry(None).is_err() {
        stats.poll_errors.fetch_add(1, Ordering::Relaxed);
    }
    if offline {
        stats.offline_skips.fetch_add(1, Ordering::Relaxed);
        return;
    }
    stats.polls.fetch_add(1, Ordering::Relaxed);
    match device.agent.poll().await {
        Ok(PollOutcome::RebootRequired(_)) => {
            let forced = device.forced_failures > 0;
            device.forced_failures = device.forced_failures.saturating_sub(1);
            if fail || forced {
                device.slots.inject_boot_failure();
            }
            device.slots.reboot();
        }
        Ok(PollOutcome::Committed(_)) => {
            stats.updated.fetch_add(1, Ordering::Relaxed);
        }
        Ok(PollOutcome::RolledBack(_)) => {
            stats.rolled_back.fetch_add(1, Ordering::Relaxed);
        }
        Ok(PollOutcome::Refused(_)) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(%error, "poll failed");
            stats.poll_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A simulated fleet, enrolled and ready to poll round by round.
pub struct SimFleet {
    devices: Vec<SimDevice>,
    stats: Arc<SimStats>,
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet")
            .field("devices", &self.devices.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl SimFleet {
    /// Enrols `sim.devices` agents (`sim.concurrency` at a time).
    pub async fn enrol(sim: &SimConfig) -> Result<SimFleet> {
        // Simulated devices do not lose power; their fsyncs would only
        // measure the shared disk.
        crate::state::set_durable(false);
        std::fs::create_dir_all(&sim.work_dir)
            .map_err(|e| crate::AgentError::io(&sim.work_dir, e))?;
        crate::state::write_atomic(&sim.work_dir.join("ca.pem"), &sim.ca_pem, 0o644)?;
        crate::state::write_atomic(&sim.work_dir.join("root.json"), &sim.root_json, 0o644)?;
        let stats = Arc::new(SimStats::default());
        let concurrency = sim.concurrency.max(1);
        let devices: Vec<SimDevice> = futures::stream::iter(0..sim.devices)
            .map(|n| {
                let stats = &stats;
                async move { enrol_one(sim, n, stats).await }
            })
            .buffer_unordered(concurrency)
            .filter_map(|d| async move { d })
            .collect()
            .await;
        Ok(SimFleet { devices, stats })
    }

    /// Every device polls once (and reboots, installs, reports as it must).
    pub async fn round(&mut self, sim: &SimConfig) {
        let stats = &self.stats;
        futures::stream::iter(self.devices.iter_mut())
            .for_each_concurrent(sim.concurrency.max(1), |device| async move {
                poll_one(sim, device, stats).await
            })
            .await;
    }

    /// Sends whatever reports are still buffered.
    pub async fn flush(&self) {
        for device in &self.devices {
            let sent = device.agent.flush_reports().await;
            self.stats
                .reports_sent
                .fetch_add(sent as u64, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> Arc<SimStats> {
        self.stats.clone()
    }
}

/// Enrols `devices` agents and runs `rounds` poll rounds. Returns the
/// stats and the wall time of the poll rounds.
pub async fn run(sim: SimConfig) -> Result<(Arc<SimStats>, Duration)> {
    let mut fleet = SimFleet::enrol(&sim).await?;
    let started = Instant::now();
    for _ in 0..sim.rounds {
        fleet.round(&sim).await;
    }
    // Whatever is still buffered goes out at the end.
    fleet.flush().await;
    Ok((fleet.stats(), started.elapsed()))
}
