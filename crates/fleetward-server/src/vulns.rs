//! The vulnerability watch: published releases that new advisories hit.
//!
//! A release passes the SBOM gate when it is published, yet devices run it
//! for years while advisories keep arriving (the CRA asks makers to act on
//! exploited vulnerabilities within a day). Every
//! [`ReleaseConfig::vulnerability_check`](crate::repo::ReleaseConfig) the
//! replica holding the [`crate::lease::RELEASE_VULNERABILITIES`] lease
//! re-scans the SBOM of each published or deprecated release whose scan
//! basis changed: the advisory index was re-imported, the policy file
//! changed, or a day passed (waivers expire by date). Findings that nothing
//! remembered covers ([`fleetward_sca::watch::compare`]) raise one
//! `release.vulnerable` security event per release, naming the advisories
//! and the number of devices running it; the event and the new scan record
//! are stored in one transaction, so each change is raised exactly once
//! however many replicas run and wherever one dies.
//!
//! Drafts and signed releases are not watched: nothing runs them, and the
//! gate scans them again when they are published.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetward_core::ReleaseState;
use fleetward_core::query::{CompareOp, Expr, Field, Value};
use fleetward_events::{Event, EventKind, Severity};
use fleetward_sca::scan::FindingKind;
use fleetward_store::{ReleaseRecord, ReleaseVulnerabilities, Store};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::artifacts::ArtifactStore;
use crate::sbom_gate::{POLICY_FILE, scan_stored};

/// How often the watch looks for a changed basis by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// The most advisory ids one event names in its message (all are in the
/// detail, which the event log bounds).
const IDS_IN_MESSAGE: usize = 8;

/// The most ids a detail cut short for size keeps (ids are bounded by the
/// advisory parser, so this normally fits [`Event::MAX_DETAIL`]).
const IDS_IN_TRUNCATED_DETAIL: usize = 100;

/// What one round did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Releases scanned because their basis changed.
    pub scanned: usize,
    /// Releases a `release.vulnerable` event was raised for.
    pub raised: Vec<String>,
    /// Releases whose scan failed (unreadable SBOM, broken policy), each
    /// with the reason; they are tried again next round.
    pub failed: Vec<(String, String)>,
}

/// What a scan is made against: the advisory import, the policy and the
/// day. `None` without an advisory index (nothing to compare with; the
/// gate refuses to publish then).
pub fn basis(data_dir: &Path, now: OffsetDateTime) -> Result<Option<String>, String> {
    let imported_at = match fleetward_advisories::Index::open(&data_dir.join("advisories")) {
        Ok(index) => index.imported_at(),
        Err(fleetward_advisories::IndexError::Missing(_)) => return Ok(None),
        Err(e) => return Err(format!("the advisory index: {e}")),
    };
    let policy_path = data_dir.join(POLICY_FILE);
    let policy = match std::fs::read(&policy_path) {
        Ok(bytes) => hex::encode(&Sha256::digest(&bytes)[..8]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "built-in".to_owned(),
        Err(e) => return Err(format!("reading {}: {e}", policy_path.display())),
    };
    let imported_at = imported_at
        .format(&Rfc3339)
        .map_err(|e| format!("the advisory import time: {e}"))?;
    Ok(Some(format!(
        "advisories {imported_at}; policy {policy}; day {}",
        now.date()
    )))
}

/// One round: scans every watched release whose basis changed and records
/// the result, raising events for new vulnerabilities.
pub async fn check_releases(
    store: &dyn Store,
    artifacts: &ArtifactStore,
    data_dir: &Path,
    now: OffsetDateTime,
) -> Result<Round, fleetward_store::StoreError> {
    let mut round = Round::default();
    let basis = match basis(data_dir, now) {
        Ok(Some(basis)) => basis,
        Ok(None) => return Ok(round),
        Err(reason) => {
            round.failed.push(("*".to_owned(), reason));
            return Ok(round);
        }
    };
    let remembered: BTreeMap<String, ReleaseVulnerabilities> = store
        .release_vulnerabilities()
        .await?
        .into_iter()
        .map(|r| (r.version.clone(), r))
        .collect();
    for release in store.list_releases().await? {
        if !matches!(
            release.state,
            ReleaseState::Published | ReleaseState::Deprecated
        ) {
            continue;
        }
        let Some(sbom) = &release.sbom_sha256 else {
            continue;
        };
        let previous = remembered.get(&release.version);
        if previous.is_some_and(|p| p.basis == basis) {
            continue;
        }
        round.scanned += 1;
        let report = match scan_stored(data_dir, artifacts, store, sbom, now).await {
            Ok(report) => report,
            Err(reason) => {
                tracing::warn!(release = %release.version, %reason, "vulnerability watch: scan failed");
                round.failed.push((release.version.clone(), reason));
                continue;
            }
        };
        // A published release passed the gate: with nothing remembered,
        // everything failing now is new.
        let known = previous.map_or(&[][..], |p| p.advisory_ids.as_slice());
        let change = fleetward_sca::watch::compare(known, &report.findings);
        let mut events = Vec::new();
        if !change.new.is_empty() {
            let devices = store.count_devices(Some(&running(&release))).await?;
            events.push(became_vulnerable(&release, &change, devices, &report, now));
            round.raised.push(release.version.clone());
        }
        let vulnerable_since = match (change.ids.is_empty(), previous) {
            (true, _) => None,
            (false, Some(p)) if p.vulnerable_since.is_some() => p.vulnerable_since,
            (false, _) => Some(now),
        };
        let record = ReleaseVulnerabilities {
            version: release.version.clone(),
            basis: basis.clone(),
            advisory_ids: change.ids.clone(),
            vulnerable_since,
            checked_at: now,
        };
        let replaces = previous.map(|p| p.basis.as_str());
        match store
            .put_release_vulnerabilities(&record, replaces, &events)
            .await
        {
            Ok(_) if !events.is_empty() => {
                tracing::warn!(release = %release.version, new = change.new.len(), "published release became vulnerable");
            }
            Ok(_) => {}
            // Another round (a replica whose lease lapsed) recorded this
            // release meanwhile, with its events: nothing to add.
            Err(fleetward_store::StoreError::Conflict(_)) => {
                round.raised.retain(|v| v != &release.version);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(round)
}

/// Devices reporting this release's version on its hardware.
pub fn running(release: &ReleaseRecord) -> Expr {
    let compare = |field, value: &str| Expr::Compare {
        field,
        op: CompareOp::Eq,
        value: Value::Text(value.to_owned()),
    };
    Expr::And(
        Box::new(compare(Field::Version, &release.version)),
        Box::new(compare(Field::Hardware, &release.hardware)),
    )
}

fn became_vulnerable(
    release: &ReleaseRecord,
    change: &fleetward_sca::watch::Change<'_>,
    devices: u64,
    report: &fleetward_sca::Report,
    now: OffsetDateTime,
) -> Event {
    use fleetward_sca::severity::Severity as Cvss;
    let kind = EventKind::ReleaseBecameVulnerable;
    let severity = match change.worst_new_severity() {
        Some(Cvss::Critical) => Severity::Critical,
        _ => kind.default_severity(),
    };
    let mut new_ids: Vec<&str> = change
        .new
        .iter()
        .filter_map(|f| fleetward_sca::watch::finding_ids(f).next())
        .collect();
    new_ids.dedup();
    let shown = new_ids
        .iter()
        .take(IDS_IN_MESSAGE)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = new_ids.len().saturating_sub(IDS_IN_MESSAGE);
    let findings: Vec<serde_json::Value> = change
        .new
        .iter()
        .map(|f| {
            let (ids, aliases, severity) = match &f.kind {
                FindingKind::Vulnerability {
                    ids,
                    aliases,
                    severity,
                    ..
                } => (ids.clone(), aliases.clone(), severity.as_str()),
                _ => (Vec::new(), Vec::new(), "unknown"),
            };
            serde_json::json!({
                "ids": ids,
                "aliases": aliases,
                "severity": severity,
                "rule": f.rule,
                "component": f.component.as_ref().map(|c| match &c.version {
                    Some(v) => format!("{}@{v}", c.name),
                    None => c.name.clone(),
                }),
            })
        })
        .collect();
    let detail = serde_json::json!({
        "release": release.version,
        "hardware": release.hardware,
        "state": release.state.as_str(),
        "devices": devices,
        "new": findings,
        "advisory_ids": change.ids,
        "advisories_imported_at": report
            .advisories_imported_at
            .and_then(|t| t.format(&Rfc3339).ok()),
    });
    let mut detail = detail.to_string();
    if detail.len() > Event::MAX_DETAIL {
        // Very many findings: keep the event (it is the point) with the
        // ids only; `fleetward release vulns` lists the rest.
        detail = serde_json::json!({
            "release": release.version,
            "hardware": release.hardware,
            "devices": devices,
            "new_ids": new_ids.iter().take(IDS_IN_TRUNCATED_DETAIL).collect::<Vec<_>>(),
            "truncated": true,
        })
        .to_string();
    }
    if detail.len() > Event::MAX_DETAIL {
        detail = serde_json::json!({"devices": devices, "truncated": true}).to_string();
    }
    let mut message = format!(
        "release {} ({}) is affected by {} new vulnerabilit{}: {shown}{}; {devices} device{} run{} it",
        release.version,
        release.hardware,
        change.new.len(),
        if change.new.len() == 1 { "y" } else { "ies" },
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
        if devices == 1 { "" } else { "s" },
        if devices == 1 { "s" } else { "" },
    );
    if message.len() > Event::MAX_MESSAGE {
        let mut end = Event::MAX_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    Event {
        kind,
        severity,
        device: None,
        source: None,
        server_time_ms: crate::events::millis(now),
        device_time_ms: None,
        message,
        detail,
    }
}

/// Runs [`check_releases`] every `interval` on the replica holding the
/// [`crate::lease::RELEASE_VULNERABILITIES`] lease.
pub async fn watch_task(
    store: Arc<dyn Store>,
    releases: Arc<crate::repo::Releases>,
    data_dir: std::path::PathBuf,
    holder: crate::lease::Holder,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::lease::{RELEASE_VULNERABILITIES, hold, release};
    let interval = releases.config.vulnerability_check;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let now = OffsetDateTime::now_utc();
        if !hold(&*store, RELEASE_VULNERABILITIES, &holder, interval, now).await {
            continue;
        }
        match check_releases(&*store, &releases.artifacts, &data_dir, now).await {
            Ok(round) => {
                for (version, reason) in &round.failed {
                    tracing::warn!(release = %version, %reason, "vulnerability watch");
                }
            }
            Err(error) => tracing::warn!(%error, "vulnerability watch round failed; will retry"),
        }
    }
    release(&*store, RELEASE_VULNERABILITIES, &holder).await;
}
