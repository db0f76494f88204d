//! One agent: the poll, the verified download into the inactive slot, the
//! reboot and the commit or fall-back after it, and the reports.
//!
//! Order of an update (each step persisted before the next, so a power
//! cut anywhere resumes or falls back, never boots a half-written slot):
//!
//! 1. Image repository metadata (root chain, timestamp, snapshot,
//!    targets) and director metadata verified; versions persisted.
//! 2. Director and repository agree; the version is not older than what
//!    the device runs or ever committed. Until here nothing is written.
//! 3. The image streams into the inactive slot, hashed on the way, never
//!    more bytes than signed; progress persisted every few MiB so a
//!    dropped connection or a restart resumes with `Range`.
//! 4. Hash and length match: the bootloader is told to try the new slot.
//! 5. After the reboot: health check, then commit; otherwise fall back.

use std::time::Duration;

use fleetward_tuf::Root;
use fleetward_wire::device::{
    DeviceReport, DeviceSecurityKind, ExecutionAck, ExecutionReport, ExecutionStep, FailureKind,
};
use fleetward_wire::identity::DeviceSelf;
use futures::StreamExt as _;
use time::OffsetDateTime;

use crate::config::AgentConfig;
use crate::install::{self, Installer};
use crate::net::{self, Net};
use crate::reports::{ReportBuffer, clean_text};
use crate::state::{AgentState, CERT_FILE, KEY_FILE, Pending, Phase, StateDir, Unreported};
use crate::verify::{self, Decision, DirectorOffer, Me, Refusal};
use crate::{AgentError, Result};

/// Bytes between two durable progress records of a download.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The director offers nothing.
    NothingOffered,
    /// The offered version is what the device runs.
    UpToDate(String),
    /// The offer failed verification; a security report was queued.
    Refused(Refusal),
    /// The server said not to proceed (rollout paused or aborted).
    Stopped,
    /// The image is in the inactive slot and the boot slot switched; the
    /// device must reboot.
    RebootRequired(String),
    /// After the reboot: healthy and committed.
    Committed(String),
    /// After the reboot: fell back to the previous image.
    RolledBack(String),
}

/// A running agent's moving parts.
#[derive(Debug)]
pub struct Agent {
    pub config: AgentConfig,
    pub dir: StateDir,
    pub net: Net,
    pub installer: Box<dyn Installer>,
    pub reports: ReportBuffer,
    /// The clock metadata expiry is judged by (the system clock; tests
    /// move it to see expired metadata refused).
    pub clock: Clock,
}

/// Where the agent reads the time.
#[derive(Clone)]
pub struct Clock(pub std::sync::Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(OffsetDateTime::now_utc))
    }

    pub fn now(&self) -> OffsetDateTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Agent {
    /// An enrolled agent with the installer its configuration names.
    pub fn open(config: AgentConfig) -> Result<Self> {
        let installer = install::from_config(&config.installer, &config.state_dir);
        Self::with_installer(config, installer)
    }

    pub fn with_installer(config: AgentConfig, installer: Box<dyn Installer>) -> Result<Self> {
        let dir = StateDir::new(&config.state_dir);
        if !dir.enrolled() {
            return Err(AgentError::NotEnrolled);
        }
        let read = |name: &str| {
            let path = dir.path(name);
            std::fs::read(&path).map_err(|e| AgentError::io(&path, e))
        };
        let ca = std::fs::read(&config.ca_cert).map_err(|e| AgentError::io(&config.ca_cert, e))?;
        let net = Net::new(
            &config.server,
            &ca,
            Some((&read(CERT_FILE)?, &read(KEY_FILE)?)),
            &config.limits,
        )?;
        let reports = ReportBuffer::new(&config.state_dir, config.limits.max_buffered_reports);
        Ok(Agent {
            config,
            dir,
            net,
            installer,
            reports,
            clock: Clock::system(),
        })
    }

    pub fn state(&self) -> Result<AgentState> {
        self.dir.load()
    }

    /// Queues a report; a full disk must not stop an update, so failures
    /// are logged only.
    pub fn report(&self, report: DeviceReport) {
        if let Err(error) = self.reports.push(report) {
            tracing::warn!(%error, "could not buffer a report");
        }
    }

    pub fn report_security(&self, kind: DeviceSecurityKind, message: &str) {
        tracing::warn!(?kind, message, "security event");
        self.report(DeviceReport::Security {
            device_time: now(),
            kind,
            message: clean_text(message),
        });
    }

    pub fn report_error(&self, context: &str, message: &str) {
        self.report(DeviceReport::Error {
            device_time: now(),
            context: clean_text(context),
            message: clean_text(message),
        });
    }

    pub fn report_telemetry(&self, cpu: Option<f64>) -> Result<()> {
        let state = self.state()?;
        let conditions = crate::telemetry::conditions(
            state.running_version.clone(),
            &self.config.state_dir,
            cpu,
        );
        self.reports.push(DeviceReport::Telemetry {
            device_time: now(),
            conditions,
        })
    }

    /// Sends buffered reports; offline is not an error (they wait).
    pub async fn flush_reports(&self) -> usize {
        match self.reports.flush(&self.net).await {
            Ok(sent) => sent,
            Err(error) => {
                tracing::info!(%error, "reports stay buffered");
                0
            }
        }
    }

    /// `GET /device/v1/self`.
    pub async fn whoami(&self) -> Result<DeviceSelf> {
        self.net.get_json("/device/v1/self").await
    }

    /// Renews the certificate with a fresh key when the server says it is
    /// time (or asks for a re-key); the new key and certificate replace the
    /// old ones atomically and the client is rebuilt with them.
    pub async fn renew_if_due(&mut self, me: &DeviceSelf) -> Result<bool> {
        if !me.rekey_required && now() < me.renew_after {
            return Ok(false);
        }
        self.renew().await?;
        Ok(true)
    }

    /// `POST /device/v1/renew` with a new key pair made here.
    pub async fn renew(&mut self) -> Result<()> {
        let (key_pem, csr) = crate::enroll::make_key_and_csr(&self.config.device_id)?;
        let issued: fleetward_wire::identity::IssuedCertificate = self
            .net
            .post_json(
                "/device/v1/renew",
                &fleetward_wire::identity::RenewRequest { csr },
            )
            .await?;
        let ca = std::fs::read(&self.config.ca_cert)
            .map_err(|e| AgentError::io(&self.config.ca_cert, e))?;
        let net = Net::new(
            &self.config.server,
            &ca,
            Some((issued.certificate.as_bytes(), key_pem.as_bytes())),
            &self.config.limits,
        )?;
        // Each file is replaced atomically; a power cut between the two
        // leaves a key and certificate that do not match, which fails
        // closed (the device re-enrols), never open.
        crate::state::write_atomic(&self.dir.path(KEY_FILE), key_pem.as_bytes(), 0o600)?;
        crate::state::write_atomic(
            &self.dir.path(CERT_FILE),
            issued.certificate.as_bytes(),
            0o600,
        )?;
        self.net = net;
        Ok(())
    }

    /// Notices a reboot that no update asked for. Call once at start.
    pub fn note_boot(&self) -> Result<()> {
        let mut state = self.state()?;
        let current = self.installer.boot_id();
        let expected = state
            .pending
            .as_ref()
            .is_some_and(|p| p.phase == Phase::Rebooting);
        if let (Some(before), Some(now)) = (&state.boot_id, &current)
            && before != now
            && !expected
        {
            self.report_security(
                DeviceSecurityKind::UnexpectedReboot,
                "the device rebooted outside an update",
            );
        }
        if current != state.boot_id {
            state.boot_id = current;
            self.dir.save(&state)?;
        }
        Ok(())
    }

    /// One poll: finish an update across a reboot, report, check for an
    /// offer, install it.
    pub async fn poll(&mut self) -> Result<PollOutcome> {
        // Buffered reports first: they describe the device before this
        // poll (telemetry naming the old version must not arrive after the
        // commit's report, where it reads as a downgrade).
        self.flush_reports().await;
        self.send_unreported().await?;
        if let Some(outcome) = self.after_boot().await? {
            self.flush_reports().await;
            return Ok(outcome);
        }
        let outcome = self.check_offer().await;
        self.flush_reports().await;
        outcome
    }

    async fn check_offer(&mut self) -> Result<PollOutcome> {
        let max = self.config.limits.max_metadata_bytes;
        let director = match self
            .net
            .get_bounded("/device/v1/director/targets.json", max)
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                self.abandon_download()?;
                return Ok(PollOutcome::NothingOffered);
            }
            Err(AgentError::TooLarge(message)) => {
                return self
                    .refused(None, Refusal::Mismatch(format!("director: {message}")))
                    .await;
            }
            Err(e) => return Err(e),
        };
        let (offer, root) = match self.verify_offer(&director).await {
            Ok(verified) => verified,
            Err(AgentError::Refused(refusal)) => return self.refused(None, refusal).await,
            Err(AgentError::TooLarge(message)) => {
                return self.refused(None, Refusal::Mismatch(message)).await;
            }
            Err(e) => {
                // The director answered, so the server is reachable: a
                // repository that stalls (slow retrieval) or breaks off
                // mid-answer is worth reporting, not just logging.
                self.report_error("repository metadata", &e.to_string());
                return Err(e);
            }
        };
        drop(root);
        let state = self.state()?;
        match verify::decide(
            &offer.release,
            state.running_version.as_deref(),
            state.highest_version.as_deref(),
        ) {
            Ok(Decision::UpToDate) => {
                self.abandon_download()?;
                Ok(PollOutcome::UpToDate(offer.release))
            }
            Ok(Decision::Install) => self.install(offer).await,
            Err(refusal) => self.refused(Some(&offer), refusal).await,
        }
    }

    /// A refusal: security report, execution report, nothing written.
    async fn refused(
        &mut self,
        offer: Option<&DirectorOffer>,
        refusal: Refusal,
    ) -> Result<PollOutcome> {
        self.report_security(refusal.security_kind(), &refusal.to_string());
        if let Some(offer) = offer {
            self.execution(
                offer,
                failed(FailureKind::Verification, &refusal.to_string()),
            )
            .await?;
        }
        Ok(PollOutcome::Refused(refusal))
    }

    /// Sends an execution report when the offer names an execution.
    /// `Ok(false)`: the server said not to proceed.
    pub async fn execution(&self, offer: &DirectorOffer, report: ExecutionReport) -> Result<bool> {
        let Some(id) = &offer.execution_id else {
            return Ok(true);
        };
        let path = format!("/device/v1/executions/{id}");
        let mut last = None;
        for attempt in 0..3u64 {
            match self.net.post_json::<_, ExecutionAck>(&path, &report).await {
                Ok(ack) => return Ok(ack.proceed),
                Err(AgentError::Server {
                    status,
                    code,
                    message,
                }) if status < 500 => {
                    tracing::warn!(status, code, message, "execution report refused");
                    return Ok(true);
                }
                Err(error) => {
                    last = Some(error);
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
            }
        }
        if let Some(error) = last {
            self.report_error("execution", &error.to_string());
        }
        Ok(true)
    }

    /// The image repository's metadata, then the director's, checked and
    /// agreed. Seen versions and the newest root are persisted.
    pub async fn verify_offer(&mut self, director: &[u8]) -> Result<(DirectorOffer, Root)> {
        let limits = self.config.limits.clone();
        let mut state = self.state()?;
        let at = self.clock.now();
        let mut root_bytes = self.dir.trusted_root(&self.config.trusted_root)?;
        let mut root = crate::enroll::check_provisioned_root(&root_bytes)?;
        let mut rotated = false;
        for _ in 0..limits.max_root_rotations {
            let next = format!("/tuf/metadata/{}.root.json", root.version + 1);
            match self
                .net
                .get_bounded(&next, limits.max_metadata_bytes)
                .await?
            {
                Some(bytes) => {
                    root = verify::next_root(&root, &bytes)?;
                    root_bytes = bytes;
                    rotated = true;
                }
                None => break,
            }
        }
        verify::check_root_fresh(&root, at)?;
        if rotated {
            self.dir.save_root(&root_bytes)?;
        }
        let timestamp = self
            .net
            .get_bounded("/tuf/metadata/timestamp.json", limits.max_metadata_bytes)
            .await?
            .ok_or_else(|| Refusal::Mismatch("the repository has no timestamp".into()))?;
        let (timestamp, snapshot_pin) =
            verify::check_timestamp(&root, &timestamp, &state.seen, at)?;
        let snapshot_max = snapshot_pin.length.unwrap_or(limits.max_metadata_bytes);
        let snapshot = self
            .net
            .get_bounded(
                &format!("/tuf/metadata/{}.snapshot.json", snapshot_pin.version),
                snapshot_max.min(limits.max_metadata_bytes),
            )
            .await?
            .ok_or_else(|| Refusal::Mismatch("the pinned snapshot is missing".into()))?;
        let (snapshot, targets_pin) =
            verify::check_snapshot(&root, &snapshot, &snapshot_pin, &state.seen, at)?;
        let targets_max = targets_pin.length.unwrap_or(limits.max_targets_bytes);
        let targets = self
            .net
            .get_bounded(
                &format!("/tuf/metadata/{}.targets.json", targets_pin.version),
                targets_max.min(limits.max_targets_bytes),
            )
            .await?
            .ok_or_else(|| Refusal::Mismatch("the pinned targets metadata is missing".into()))?;
        let targets = verify::check_repo_targets(&root, &targets, &targets_pin, at)?;
        verify::check_snapshot_delegated(&snapshot, &state.seen_delegated)?;
        state.seen.timestamp = timestamp.version;
        state.seen.snapshot = snapshot.version;
        state.seen.targets = targets.version;
        self.dir.save(&state)?;

        let key = state.director_key.clone().ok_or(AgentError::NotEnrolled)?;
        let me = Me {
            device_id: &self.config.device_id,
            hardware: &self.config.hardware,
        };
        let offer = verify::check_director(&key, director, me, &state.seen, at)?;
        let listed = self
            .find_target(&snapshot, &targets, &offer.target_name, &mut state, at)
            .await?;
        verify::check_agreement(&offer, listed.as_ref(), me)?;
        if offer.length > limits.max_image_bytes {
            return Err(Refusal::Mismatch(format!(
                "the image is {} bytes; this device takes at most {}",
                offer.length, limits.max_image_bytes
            ))
            .into());
        }
        state.seen.director = offer.version_of_metadata;
        self.dir.save(&state)?;
        Ok((offer, root))
    }

    /// What the image repository lists for `target`: the top-level targets
    /// role, or the delegated role (product line) trusted for it, each
    /// fetched at the version the snapshot pins and checked with the keys
    /// its delegator names. Versions seen are persisted by the caller.
    async fn find_target(
        &self,
        snapshot: &fleetward_tuf::Snapshot,
        top: &fleetward_tuf::Targets,
        target: &str,
        state: &mut AgentState,
        at: time::OffsetDateTime,
    ) -> Result<Option<fleetward_tuf::TargetFile>> {
        let max = self.config.limits.max_targets_bytes;
        let (mut search, mut found) = verify::TargetSearch::start(top, target);
        loop {
            match found {
                verify::Found::Listed(file) => return Ok(Some(file)),
                verify::Found::Absent => return Ok(None),
                verify::Found::Next(role, delegations) => {
                    let pin = verify::delegated_pin(snapshot, &role.name)?;
                    let bytes = self
                        .net
                        .get_bounded(
                            &format!("/tuf/metadata/{}.{}.json", pin.version, role.name),
                            pin.length.unwrap_or(max).min(max),
                        )
                        .await?
                        .ok_or_else(|| {
                            Refusal::Mismatch(format!(
                                "the pinned {} metadata is missing",
                                role.name
                            ))
                        })?;
                    let targets = verify::check_delegated(&delegations, &role, &bytes, &pin, at)?;
                    state
                        .seen_delegated
                        .insert(role.name.clone(), targets.version);
                    found = search.visit(&role.name, &targets);
                }
            }
        }
    }

    /// Drops a partial download nobody offers any more.
    fn abandon_download(&mut self) -> Result<()> {
        let mut state = self.state()?;
        if state
            .pending
            .as_ref()
            .is_some_and(|p| p.phase == Phase::Downloading)
        {
            self.installer.discard()?;
            state.pending = None;
            self.dir.save(&state)?;
        }
        Ok(())
    }

    async fn install(&mut self, offer: DirectorOffer) -> Result<PollOutcome> {
        let mut state = self.state()?;
        let resume = state
            .pending
            .take()
            .filter(|p| p.phase == Phase::Downloading && same_image(&p.offer, &offer));
        if resume.is_none() {
            // A different image than the partial one: start over.
            self.installer.discard()?;
        }
        let mut pending = resume.unwrap_or(Pending {
            offer: offer.clone(),
            phase: Phase::Downloading,
            written: 0,
            slot: self.installer.target_slot()?,
            switched_in_boot: None,
        });
        pending.offer = offer.clone();
        state.pending = Some(pending.clone());
        self.dir.save(&state)?;

        if !self
            .execution(&offer, step(ExecutionStep::Downloading))
            .await?
        {
            return Ok(PollOutcome::Stopped);
        }
        match self.download(&mut pending).await {
            Ok(()) => {}
            Err(AgentError::Refused(refusal)) => {
                self.installer.discard()?;
                let mut state = self.state()?;
                state.pending = None;
                self.dir.save(&state)?;
                self.report_security(refusal.security_kind(), &refusal.to_string());
                self.execution(
                    &offer,
                    failed(FailureKind::Verification, &refusal.to_string()),
                )
                .await?;
                return Ok(PollOutcome::Refused(refusal));
            }
            Err(error) => {
                self.report_error("download", &error.to_string());
                return Err(error);
            }
        }
        self.execution(&offer, step(ExecutionStep::Downloaded))
            .await?;
        if !self
            .execution(&offer, step(ExecutionStep::Installing))
            .await?
        {
            return Ok(PollOutcome::Stopped);
        }
        // Recorded before the switch: a power cut between the two then
        // reads as "switched", and a device that comes back on its old
        // slot reports a roll-back instead of writing over the old slot
        // while the new one may still be on trial.
        let mut state = self.state()?;
        pending.phase = Phase::Rebooting;
        pending.switched_in_boot = self.installer.boot_id();
        state.pending = Some(pending);
        self.dir.save(&state)?;
        if let Err(error) = self.installer.activate() {
            self.installer.discard()?;
            let mut state = self.state()?;
            state.pending = None;
            self.dir.save(&state)?;
            self.report_error("install", &error.to_string());
            self.execution(&offer, failed(FailureKind::Install, &error.to_string()))
                .await?;
            return Err(error);
        }
        self.execution(&offer, step(ExecutionStep::Rebooting))
            .await?;
        Ok(PollOutcome::RebootRequired(offer.release))
    }

    /// Streams the image into the installer, resuming where a previous
    /// attempt stopped; the hash and length are checked on the way.
    async fn download(&mut self, pending: &mut Pending) -> Result<()> {
        let offer = pending.offer.clone();
        let mut hasher = ImageHash::new();
        let opened = self
            .installer
            .open(pending.written, &mut |bytes| hasher.update(bytes));
        if let Err(error) = opened {
            tracing::info!(%error, "cannot resume; starting over");
            pending.written = 0;
            hasher = ImageHash::new();
            self.installer.open(0, &mut |_| {})?;
        }
        let mut written = pending.written;
        if written < offer.length {
            let mut request = self.net.http.get(self.net.url(&target_path(&offer)));
            if written > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={written}-"));
            }
            let response = request.send().await.map_err(net::reqwest_error)?;
            // Images on object storage: one hop to a pre-signed URL.
            let response = if response.status().is_redirection() {
                self.net
                    .follow_download_redirect(
                        &response,
                        written,
                        self.config.downloads.allow_http_redirects,
                    )
                    .await?
            } else {
                response
            };
            let response = net::check_status(response).await?;
            if written > 0 && response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                // The server ignored the range: start over.
                pending.written = 0;
                written = 0;
                hasher = ImageHash::new();
                self.installer.open(0, &mut |_| {})?;
            } else if written > 0 {
                let range = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {written}-")) {
                    return Err(AgentError::Network(format!(
                        "asked for bytes from {written}, got {range:?}"
                    )));
                }
            }
            let allowed = offer.length - written;
            if response.content_length().is_some_and(|len| len > allowed) {
                return Err(Refusal::Mismatch(format!(
                    "the server offers more than the {} signed bytes of the image",
                    offer.length
                ))
                .into());
            }
            let mut stream = response.bytes_stream();
            let mut since_sync = 0u64;
            let started = std::time::Instant::now();
            let started_at = written;
            let min_rate = self.config.limits.min_download_rate;
            let grace = self.config.limits.slow_download_grace_secs;
            let timeout = Duration::from_secs(self.config.limits.request_timeout_secs);
            loop {
                let chunk = match tokio::time::timeout(timeout, stream.next()).await {
                    Err(_) => {
                        self.save_progress(pending, written)?;
                        return Err(AgentError::Network("the download stalled".into()));
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        self.save_progress(pending, written)?;
                        return Err(net::reqwest_error(e));
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                if written + chunk.len() as u64 > offer.length {
                    return Err(Refusal::Mismatch(format!(
                        "the server sent more than the {} signed bytes of the image",
                        offer.length
                    ))
                    .into());
                }
                self.installer.write(&chunk)?;
                hasher.update(&chunk);
                written += chunk.len() as u64;
                since_sync += chunk.len() as u64;
                // Slow retrieval: a server that trickles bytes to hold the
                // device on old software is cut off (progress is kept).
                let elapsed = started.elapsed().as_secs();
                if elapsed >= grace && (written - started_at) / elapsed.max(1) < min_rate {
                    self.save_progress(pending, written)?;
                    return Err(AgentError::Network(format!(
                        "the download is slower than {min_rate} bytes/s"
                    )));
                }
                if since_sync >= SYNC_EVERY {
                    self.save_progress(pending, written)?;
                    since_sync = 0;
                }
            }
        }
        if written != offer.length {
            self.save_progress(pending, written)?;
            return Err(AgentError::Network(format!(
                "the download ended after {written} of {} bytes",
                offer.length
            )));
        }
        let sha256 = hasher.finish_hex();
        if sha256 != offer.sha256 {
            return Err(Refusal::Mismatch(format!(
                "the image's sha256 is {sha256}; {} was signed",
                offer.sha256
            ))
            .into());
        }
        self.installer.sync()?;
        pending.written = written;
        Ok(())
    }

    fn save_progress(&mut self, pending: &mut Pending, written: u64) -> Result<()> {
        self.installer.sync()?;
        pending.written = written;
        let mut state = self.state()?;
        state.pending = Some(pending.clone());
        self.dir.save(&state)
    }

    /// Saves `state` with the final `report` of `offer` kept in it, then
    /// sends the report: the outcome and its report are one durable step.
    async fn finish(
        &mut self,
        mut state: AgentState,
        offer: &DirectorOffer,
        report: ExecutionReport,
    ) -> Result<()> {
        state.unreported = Some(Unreported {
            offer: offer.clone(),
            report,
        });
        self.dir.save(&state)?;
        self.send_unreported().await
    }

    /// Sends a final report that a power cut kept from going out.
    async fn send_unreported(&mut self) -> Result<()> {
        let mut state = self.state()?;
        let Some(unreported) = state.unreported.take() else {
            return Ok(());
        };
        self.execution(&unreported.offer, unreported.report).await?;
        self.dir.save(&state)
    }

    /// After a reboot into (or away from) an update: health check, then
    /// commit or fall back. `None` when no update awaited a reboot.
    pub async fn after_boot(&mut self) -> Result<Option<PollOutcome>> {
        let mut state = self.state()?;
        let Some(pending) = state.pending.clone() else {
            return Ok(None);
        };
        if pending.phase != Phase::Rebooting {
            return Ok(None);
        }
        if pending.switched_in_boot.is_some()
            && pending.switched_in_boot == self.installer.boot_id()
        {
            // The agent restarted but the device has not rebooted yet.
            return Ok(Some(PollOutcome::RebootRequired(pending.offer.release)));
        }
        let offer = pending.offer.clone();
        self.execution(&offer, step(ExecutionStep::Verifying))
            .await?;
        if !self.installer.booted_new(pending.slot)? {
            self.installer.fall_back()?;
            state.pending = None;
            let reason = "the new image did not boot; the bootloader fell back to the previous one";
            self.finish(state, &offer, rolled_back(reason)).await?;
            self.report_error("boot", reason);
            return Ok(Some(PollOutcome::RolledBack(reason.into())));
        }
        let health = self.health_check().await;
        if let Err(reason) = health {
            self.installer.fall_back()?;
            state.pending = None;
            let reason = format!("health check failed: {reason}");
            self.finish(state, &offer, rolled_back(&reason)).await?;
            self.report_error("health-check", &reason);
            self.reboot();
            return Ok(Some(PollOutcome::RolledBack(reason)));
        }
        self.installer.commit(pending.slot)?;
        state.pending = None;
        state.running_version = Some(offer.release.clone());
        let higher = state.highest_version.as_deref().is_none_or(|h| {
            fleetward_core::version::compare(&offer.release, h) == std::cmp::Ordering::Greater
        });
        if higher {
            state.highest_version = Some(offer.release.clone());
        }
        let report = ExecutionReport {
            running_version: Some(offer.release.clone()),
            health_check_passed: Some(true),
            ..step(ExecutionStep::Succeeded)
        };
        self.finish(state, &offer, report).await?;
        Ok(Some(PollOutcome::Committed(offer.release)))
    }

    async fn health_check(&self) -> std::result::Result<(), String> {
        let Some(command) = &self.config.health_check else {
            return Ok(());
        };
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .await
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{command}` exited with {status}"))
        }
    }

    /// Runs the configured reboot command, if any.
    pub fn reboot(&self) {
        if let Some(command) = &self.config.reboot_command {
            tracing::info!(command, "rebooting");
            if let Err(error) = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .status()
            {
                tracing::error!(%error, "reboot command failed");
            }
        }
    }

    /// The daemon: poll at the server's interval with jitter, back off
    /// when the server is unreachable, report telemetry each round.
    pub async fn run(&mut self, stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        self.note_boot()?;
        let mut interval = 300u64;
        let mut failures = 0u32;
        let mut cpu_before = crate::telemetry::cpu_jiffies();
        loop {
            let cpu_now = crate::telemetry::cpu_jiffies();
            let cpu = cpu_before
                .zip(cpu_now)
                .and_then(|(a, b)| crate::telemetry::cpu_percent(a, b));
            cpu_before = cpu_now;
            if let Err(error) = self.report_telemetry(cpu) {
                tracing::warn!(%error, "telemetry");
            }
            let round = async {
                if let Ok(me) = self.whoami().await {
                    interval = u64::from(me.poll_interval_secs).clamp(5, 86_400);
                    if let Err(error) = self.renew_if_due(&me).await {
                        tracing::warn!(%error, "certificate renewal failed");
                        self.report_error("renew", &error.to_string());
                    }
                }
                self.poll().await
            }
            .await;
            let wait = match round {
                Ok(outcome) => {
                    failures = 0;
                    tracing::info!(?outcome, "poll");
                    if matches!(outcome, PollOutcome::RebootRequired(_)) {
                        self.reboot();
                    }
                    jitter(interval)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, failures, "poll failed");
                    backoff(interval, failures)
                }
            };
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return Ok(()),
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }
}

fn same_image(a: &DirectorOffer, b: &DirectorOffer) -> bool {
    a.sha256 == b.sha256 && a.length == b.length && a.target_name == b.target_name
}

/// SHA-256 of an image as it streams. `ring`'s implementation (already
/// linked for TLS) uses the CPU's SHA extensions where present, which
/// keeps hashing as fast as `openssl dgst` (see BENCHMARKS.md).
pub struct ImageHash(ring::digest::Context);

impl ImageHash {
    pub fn new() -> Self {
        ImageHash(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

impl Default for ImageHash {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ImageHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageHash")
    }
}

/// `dir/name` → `dir/<sha256>.name` (TUF consistent snapshots).
pub fn target_path(offer: &DirectorOffer) -> String {
    let (dir, base) = offer
        .target_name
        .rsplit_once('/')
        .map_or(("", offer.target_name.as_str()), |(d, b)| (d, b));
    if dir.is_empty() {
        format!("/tuf/targets/{}.{base}", offer.sha256)
    } else {
        format!("/tuf/targets/{dir}/{}.{base}", offer.sha256)
    }
}

/// The interval ±10%, so a fleet does not poll in lockstep.
pub fn jitter(interval: u64) -> Duration {
    use rand::Rng as _;
    let spread = (interval / 10).max(1);
    let secs = interval - spread + rand::thread_rng().gen_range(0..=2 * spread);
    Duration::from_secs(secs.max(1))
}

/// Exponential back-off from 5 s, capped at the poll interval (and an hour).
pub fn backoff(interval: u64, failures: u32) -> Duration {
    let exp = 5u64.saturating_mul(1u64 << failures.min(12));
    jitter(exp.min(interval.max(5)).min(3600))
}

pub fn step(step: ExecutionStep) -> ExecutionReport {
    ExecutionReport {
        step,
        failure: None,
        reason: None,
        running_version: None,
        health_check_passed: None,
        device_time: Some(now()),
    }
}

fn failed(failure: FailureKind, reason: &str) -> ExecutionReport {
    ExecutionReport {
        failure: Some(failure),
        reason: Some(clean_text(reason)),
        ..step(ExecutionStep::Failed)
    }
}

fn rolled_back(reason: &str) -> ExecutionReport {
    ExecutionReport {
        reason: Some(clean_text(reason)),
        ..step(ExecutionStep::RolledBack)
    }
}
