//! The SBOM publish gate: a release that carries an SBOM is scanned with
//! `fleetward-sca` against the advisory index and policy in the server's
//! data dir, and publishing is refused (422, the failing findings in the
//! message) while it breaks the policy, unless the policy waives them.
//!
//! The server never reads advisory databases themselves: operators import
//! them into `<data-dir>/advisories` with `fleetward advisories import`, and
//! the gate says so when there is no index. The policy is
//! `<data-dir>/fleetward-policy.toml`, else the built-in firmware policy.
//! Both are read at each check, so a new import or a new waiver counts at
//! once, without a restart.

use std::path::{Path, PathBuf};

use fleetward_sca::policy::Policy;
use fleetward_sca::sbom::{self, Limits};
use fleetward_sca::scan::{Report, Verdict};
use fleetward_store::{ReleaseRecord, Store};
use time::OffsetDateTime;

use crate::artifacts::ArtifactStore;
use crate::repo::PublishGate;

/// The policy file the gate reads from the data dir.
pub const POLICY_FILE: &str = "fleetward-policy.toml";

#[derive(Debug, Clone)]
pub struct SbomGate {
    data_dir: PathBuf,
    artifacts: ArtifactStore,
}

impl SbomGate {
    pub fn new(data_dir: &Path, artifacts: ArtifactStore) -> Self {
        SbomGate {
            data_dir: data_dir.to_owned(),
            artifacts,
        }
    }

    /// Scans `sbom` bytes now with the data dir's index and policy.
    pub fn scan(data_dir: &Path, sbom_bytes: &[u8], now: OffsetDateTime) -> Result<Report, String> {
        let policy_path = data_dir.join(POLICY_FILE);
        let policy = match std::fs::read_to_string(&policy_path) {
            Ok(text) => Policy::parse(&text)
                .map_err(|e| format!("the policy {} is invalid: {e}", policy_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Policy::default_firmware(),
            Err(e) => return Err(format!("reading {}: {e}", policy_path.display())),
        };
        let sbom = sbom::parse(sbom_bytes, &Limits::default())
            .map_err(|e| format!("the release's SBOM is not readable: {e}"))?;
        let dir = data_dir.join("advisories");
        let index = fleetward_advisories::Index::open(&dir).map_err(|e| match e {
            fleetward_advisories::IndexError::Missing(_) => format!(
                "no advisory index on the server ({}): import one with `fleetward --data-dir <server data dir> advisories import <DIR|ZIP>`",
                dir.display()
            ),
            other => other.to_string(),
        })?;
        let imported_at = index.imported_at();
        fleetward_sca::scan(&sbom, &index, Some(imported_at), &policy, now)
    }
}

/// The failing findings, one per line, for the refusal message.
pub fn summarise(report: &Report) -> String {
    let failing: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.fails())
        .map(|f| format!("[{}] {}", f.rule, f.message))
        .collect();
    format!(
        "the SBOM breaks the policy ({} findings): {}",
        failing.len(),
        failing.join("; ")
    )
}

/// Reads the stored SBOM `sha` (bounded by the parser's size limit).
pub async fn read_sbom(
    artifacts: &ArtifactStore,
    store: &dyn Store,
    sha: &str,
) -> Result<Vec<u8>, String> {
    let limit = Limits::default().max_bytes;
    let record = store
        .artifact(sha)
        .await
        .map_err(|e| format!("reading the SBOM record: {e}"))?
        .ok_or_else(|| format!("the SBOM artifact {sha} is not stored"))?;
    if record.length > limit as u64 {
        return Err(format!(
            "the SBOM is {} bytes, more than {limit}",
            record.length
        ));
    }
    let download = artifacts
        .download(sha, 0..record.length)
        .await
        .map_err(|e| format!("reading the SBOM: {e}"))?;
    axum::body::to_bytes(download.body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|e| format!("reading the SBOM: {e}"))
}

/// Scans the stored SBOM `sha` with the data dir's index and policy as of
/// `now`, off the async runtime: the one scan behind the publish gate, the
/// vulnerability report and the console's release page.
pub async fn scan_stored(
    data_dir: &Path,
    artifacts: &ArtifactStore,
    store: &dyn Store,
    sha: &str,
    now: OffsetDateTime,
) -> Result<Report, String> {
    let bytes = read_sbom(artifacts, store, sha).await?;
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || SbomGate::scan(&data_dir, &bytes, now))
        .await
        .map_err(|e| format!("the SBOM scan did not finish: {e}"))?
}

/// Whether the stored SBOM `sha` parses (CycloneDX, SPDX, Cargo.lock);
/// the error names the position.
pub async fn check_readable(
    releases: &crate::repo::Releases,
    store: &dyn Store,
    sha: &str,
) -> Result<(), String> {
    let bytes = read_sbom(&releases.artifacts, store, sha).await?;
    tokio::task::spawn_blocking(move || sbom::parse(&bytes, &Limits::default()).map(|_| ()))
        .await
        .map_err(|e| format!("reading the SBOM: {e}"))?
        .map_err(|e| format!("the SBOM is not readable: {e}"))
}

#[async_trait::async_trait]
impl PublishGate for SbomGate {
    fn name(&self) -> &'static str {
        "sbom-policy"
    }

    async fn check(&self, release: &ReleaseRecord, store: &dyn Store) -> Result<(), String> {
        let Some(sha) = &release.sbom_sha256 else {
            return Ok(());
        };
        let report = scan_stored(
            &self.data_dir,
            &self.artifacts,
            store,
            sha,
            OffsetDateTime::now_utc(),
        )
        .await?;
        match report.verdict {
            Verdict::Pass => Ok(()),
            Verdict::Fail => Err(summarise(&report)),
        }
    }
}
