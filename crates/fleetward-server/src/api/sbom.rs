//! `GET /api/v1/sbom/vulnerabilities`: every release that carries an SBOM,
//! scanned now (so a release that was clean at publication shows up once
//! new advisories are imported), with the number of devices running it and,
//! for published releases, since when the vulnerability watch
//! ([`crate::vulns`]) has seen them vulnerable.

use axum::extract::State;
use fleetward_sca::scan::{FindingKind, Verdict};
use fleetward_wire::ErrorBody;
use fleetward_wire::sca::{ReleaseScan, ReleaseVulns, ScanFinding};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::AppState;
use crate::auth::{Auth, perm};
use crate::error::{ApiError, Json};

/// Scans every release with an SBOM against the current advisory index and
/// policy, with the number of devices running each.
#[utoipa::path(get, path = "/api/v1/sbom/vulnerabilities", tag = "releases",
    responses((status = 200, body = ReleaseVulns), (status = 403, body = ErrorBody)))]
pub async fn release_vulnerabilities(
    State(state): State<AppState>,
    _auth: Auth<perm::ReleaseRead>,
) -> Result<Json<ReleaseVulns>, ApiError> {
    let releases = &state.releases;
    let data_dir = state.config.data_dir.clone();
    let imported_at = fleetward_advisories::Index::open(&data_dir.join("advisories"))
        .ok()
        .and_then(|i| i.imported_at().format(&Rfc3339).ok());
    let watched: std::collections::BTreeMap<String, fleetward_store::ReleaseVulnerabilities> =
        state
            .store
            .release_vulnerabilities()
            .await?
            .into_iter()
            .map(|r| (r.version.clone(), r))
            .collect();
    let mut out = Vec::new();
    for record in state.store.list_releases().await? {
        let Some(sha) = record.sbom_sha256.clone() else {
            continue;
        };
        let devices = state
            .store
            .count_devices(Some(&crate::vulns::running(&record)))
            .await?;
        let scanned = crate::sbom_gate::scan_stored(
            &data_dir,
            &releases.artifacts,
            &*state.store,
            &sha,
            OffsetDateTime::now_utc(),
        )
        .await;
        let (verdict, error, failing) = match scanned {
            Ok(report) => {
                let failing = report
                    .findings
                    .iter()
                    .filter(|f| f.fails())
                    .map(|f| ScanFinding {
                        rule: f.rule.to_owned(),
                        message: f.message.clone(),
                        ids: match &f.kind {
                            FindingKind::Vulnerability { ids, .. } => ids.clone(),
                            _ => Vec::new(),
                        },
                        component: f.component.as_ref().map(|c| c.name.clone()),
                    })
                    .collect();
                let verdict = match report.verdict {
                    Verdict::Pass => "pass",
                    Verdict::Fail => "fail",
                };
                (verdict, None, failing)
            }
            Err(e) => ("error", Some(e), Vec::new()),
        };
        out.push(ReleaseScan {
            version: record.version.clone(),
            hardware: record.hardware.clone(),
            state: record.state.to_string(),
            verdict: verdict.to_owned(),
            error,
            devices,
            failing,
            vulnerable_since: watched
                .get(&record.version)
                .and_then(|w| w.vulnerable_since)
                .and_then(|t| t.format(&Rfc3339).ok()),
        });
    }
    Ok(Json(ReleaseVulns {
        advisories_imported_at: imported_at,
        releases: out,
    }))
}
