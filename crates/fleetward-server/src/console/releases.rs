//! The console's release pages: the list with each release's signature
//! state and what the vulnerability watch last found, and a page per
//! release with its SBOM scanned now, the same scan as the publish gate and
//! `GET /api/v1/sbom/vulnerabilities`: vulnerabilities with their severity,
//! licence verdicts, the other policy findings, and the waivers that let
//! findings through (who owns each, why, until when).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use fleetward_core::{Permission, ReleaseState};
use fleetward_sca::license::LicenseVerdict;
use fleetward_sca::policy::Waiver;
use fleetward_sca::scan::{Finding, FindingKind, Level, Report, Verdict};
use fleetward_sca::severity::Severity;
use fleetward_store::{ReleaseRecord, ReleaseVulnerabilities};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::pages::{Fragment, fail, urlencode, when};
use super::{Refresh, Section, Session, page};
use crate::AppState;
use crate::error::ApiError;

/// What the watch remembers of each release, by version.
async fn watched(state: &AppState) -> Result<BTreeMap<String, ReleaseVulnerabilities>, ApiError> {
    Ok(state
        .store
        .release_vulnerabilities()
        .await?
        .into_iter()
        .map(|r| (r.version.clone(), r))
        .collect())
}

fn release_link(version: &str) -> String {
    format!("/console/releases/{}", urlencode(version))
}

fn signature(release: &ReleaseRecord) -> Markup {
    html! {
        @if release.state == ReleaseState::Draft {
            span class="warn" { "unsigned" }
        } @else {
            span class="good" { "signed by the targets keys" }
        }
    }
}

fn state_cell(release: &ReleaseRecord, can_roll_out: bool) -> Markup {
    html! {
        span class=(if release.state == ReleaseState::Revoked { "bad" } else { "" }) { (release.state.as_str()) }
        @if release.state == ReleaseState::Published && can_roll_out {
            " · " a href=(format!("/console/rollouts/new?release={}", urlencode(&release.version))) { "roll out" }
        }
    }
}

/// The list's SBOM cell: what the watch last found, not a fresh scan (a
/// scan per release would make the list as slow as the fleet's SBOMs).
fn sbom_summary(release: &ReleaseRecord, watch: Option<&ReleaseVulnerabilities>) -> Markup {
    html! {
        @match (&release.sbom_sha256, watch) {
            (None, _) => span class="muted" { "none" },
            (Some(_), Some(watch)) if !watch.advisory_ids.is_empty() => {
                a class="bad" href=(release_link(&release.version)) {
                    (watch.advisory_ids.len()) " vulnerabilities"
                }
                @if let Some(since) = watch.vulnerable_since { " since " span class="mono" { (when(since)) } }
            },
            (Some(_), Some(_)) => a class="good" href=(release_link(&release.version)) { "no vulnerabilities" },
            (Some(_), None) => a href=(release_link(&release.version)) { "findings" },
        }
    }
}

/// `GET /console/releases`.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::ReleaseRead) {
        return fail(&session, refused);
    }
    let loaded =
        async { Ok::<_, ApiError>((state.store.list_releases().await?, watched(&state).await?)) }
            .await;
    let (releases, watch) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return fail(&session, error),
    };
    let can_roll_out = session.can(Permission::RolloutWrite);
    let content = html! {
        h1 { "Releases" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Version" } th scope="col" { "Hardware" } th scope="col" { "State" }
                th scope="col" { "Signature" } th scope="col" { "Image (SHA-256)" } th scope="col" { "SBOM" }
                th scope="col" { "Created" }
            } }
            tbody {
                @for release in &releases {
                    tr {
                        td { a href=(release_link(&release.version)) { (release.version) } }
                        td { (release.hardware) }
                        td { (state_cell(release, can_roll_out)) }
                        td { (signature(release)) }
                        td class="mono" { (release.artifact_sha256.get(..16).unwrap_or(&release.artifact_sha256)) "…" }
                        td { (sbom_summary(release, watch.get(&release.version))) }
                        td class="mono" { (when(release.created_at)) }
                    }
                }
                @if releases.is_empty() { tr { td colspan="7" class="muted" { "No releases yet: " code { "fleetward release create" } } } }
            }
        } }
    };
    page(
        &session,
        Section::Releases,
        "Releases",
        Refresh::Static,
        fragment.main(),
        content,
    )
}

/// `GET /console/releases/{version}`: one release, its SBOM scanned now.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(version): Path<String>,
    Query(fragment): Query<Fragment>,
) -> Response {
    if let Err(refused) = session.require(Permission::ReleaseRead) {
        return fail(&session, refused);
    }
    let loaded = async {
        let release = state
            .store
            .release(&version)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("release {version} not found")))?;
        let devices = state
            .store
            .count_devices(Some(&crate::vulns::running(&release)))
            .await?;
        let watch = watched(&state).await?.remove(&release.version);
        let scan = match &release.sbom_sha256 {
            Some(sha) => Some(
                crate::sbom_gate::scan_stored(
                    &state.config.data_dir,
                    &state.releases.artifacts,
                    &*state.store,
                    sha,
                    OffsetDateTime::now_utc(),
                )
                .await,
            ),
            None => None,
        };
        Ok::<_, ApiError>((release, devices, watch, scan))
    }
    .await;
    let (release, devices, watch, scan) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return fail(&session, error),
    };
    let can_roll_out = session.can(Permission::RolloutWrite);
    let title = format!("Release {}", release.version);
    let content = html! {
        h1 { (title) }
        div class="table-wrap" { table {
            tbody {
                tr { th scope="row" { "Hardware" } td { (release.hardware) } }
                tr { th scope="row" { "State" } td { (state_cell(&release, can_roll_out)) } }
                tr { th scope="row" { "Signature" } td { (signature(&release)) } }
                tr { th scope="row" { "Target" } td class="mono" { (release.target_name) } }
                tr { th scope="row" { "Image SHA-256" } td class="mono" { (release.artifact_sha256) } }
                tr { th scope="row" { "SBOM SHA-256" } td class="mono" { (release.sbom_sha256.as_deref().unwrap_or("none")) } }
                tr { th scope="row" { "Devices running it" } td {
                    a href=(format!("/console/devices?q={}", urlencode(&format!("version = \"{}\" and hw = \"{}\"", release.version, release.hardware)))) { (devices) }
                } }
                tr { th scope="row" { "Created" } td { span class="mono" { (when(release.created_at)) } " by " (release.created_by) } }
                @if !release.notes.is_empty() { tr { th scope="row" { "Notes" } td { (release.notes) } } }
            }
        } }
        h2 { "SBOM findings" }
        @match &scan {
            None => p class="muted" { "This release carries no SBOM: the SBOM gate had nothing to check. Attach one with " code { "fleetward release create --sbom" } "." },
            Some(Err(reason)) => div class="notice error" role="alert" { "The SBOM could not be scanned: " (reason) },
            Some(Ok(report)) => (findings(report, watch.as_ref())),
        }
    };
    page(
        &session,
        Section::Releases,
        &title,
        Refresh::Static,
        fragment.main(),
        content,
    )
}

fn sca_severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "sev-critical",
        Severity::High => "sev-high",
        Severity::Medium => "sev-medium",
        Severity::Low | Severity::None | Severity::Unknown => "",
    }
}

fn license_verdict(verdict: LicenseVerdict) -> (&'static str, &'static str) {
    match verdict {
        LicenseVerdict::Allow => ("allowed", "good"),
        LicenseVerdict::Review => ("needs review", "warn"),
        LicenseVerdict::Deny => ("denied", "bad"),
        LicenseVerdict::Invalid => ("not a valid SPDX expression", "bad"),
    }
}

/// What a finding does to the verdict.
fn outcome(finding: &Finding) -> Markup {
    html! {
        @match (&finding.waived_by, finding.level) {
            (Some(waiver), _) => span class="good" { "waived (" (waiver.id) ")" },
            (None, Level::Fail) => span class="bad" { "fails the release" },
            (None, Level::Warn) => span class="warn" { "warning" },
            (None, Level::Info) => span class="muted" { "information" },
        }
    }
}

fn component(finding: &Finding) -> Markup {
    html! {
        @if let Some(c) = &finding.component {
            (c.name) @if let Some(v) = &c.version { "@" (v) }
            @if let Some(purl) = &c.purl { br; span class="mono muted" { (purl) } }
        } @else { span class="muted" { "the whole SBOM" } }
    }
}

fn findings(report: &Report, watch: Option<&ReleaseVulnerabilities>) -> Markup {
    let vulnerabilities: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::Vulnerability { .. }))
        .collect();
    let licences: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::License { .. }))
        .collect();
    let others: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| {
            !matches!(
                f.kind,
                FindingKind::Vulnerability { .. } | FindingKind::License { .. }
            )
        })
        .collect();
    let waived: Vec<(&Finding, &Waiver)> = report
        .findings
        .iter()
        .filter_map(|f| f.waived_by.as_ref().map(|w| (f, w)))
        .collect();
    let failing = report.findings.iter().filter(|f| f.fails()).count();
    html! {
        p {
            @match report.verdict {
                Verdict::Pass => span class="good" { "Passes the policy" },
                Verdict::Fail => span class="bad" { "Breaks the policy: " (failing) " failing findings" },
            }
            " · " (report.stats.components) " components ("
            (report.stats.identifiable) " identifiable, " (report.stats.unidentifiable) " unidentifiable) · advisories imported "
            @match report.advisories_imported_at {
                Some(at) => span class="mono" { (when(at)) },
                None => "at an unknown time",
            }
        }
        @if let Some(since) = watch.and_then(|w| w.vulnerable_since) {
            div class="notice error" role="alert" {
                "The vulnerability watch has seen this release vulnerable since " span class="mono" { (when(since)) } "."
            }
        }
        h2 { "Vulnerabilities" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Severity" } th scope="col" { "Advisory" } th scope="col" { "Component" }
                th scope="col" { "Fixed in" } th scope="col" { "Outcome" }
            } }
            tbody {
                @for finding in &vulnerabilities {
                    @if let FindingKind::Vulnerability { ids, aliases, summary, severity, score, fixed, .. } = &finding.kind {
                        tr {
                            td class=(sca_severity_class(*severity)) {
                                (severity.as_str()) @if let Some(score) = score { " (" (format!("{score:.1}")) ")" }
                            }
                            td {
                                span class="mono" { (ids.join(", ")) }
                                @if !aliases.is_empty() { br; span class="mono muted" { (aliases.join(", ")) } }
                                @if !summary.is_empty() { br; (summary) }
                            }
                            td { (component(finding)) }
                            td class="mono" { @if fixed.is_empty() { span class="muted" { "no fix" } } @else { (fixed.join(", ")) } }
                            td { (outcome(finding)) }
                        }
                    }
                }
                @if vulnerabilities.is_empty() { tr { td colspan="5" class="muted" { "No known vulnerabilities in the identifiable components." } } }
            }
        } }
        h2 { "Licences" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Component" } th scope="col" { "Licence" } th scope="col" { "Verdict" }
                th scope="col" { "Not allowed" } th scope="col" { "Outcome" }
            } }
            tbody {
                @for finding in &licences {
                    @if let FindingKind::License { expressions, verdict, offending } = &finding.kind {
                        @let (label, class) = license_verdict(*verdict);
                        tr {
                            td { (component(finding)) }
                            td class="mono" { (expressions.join(" AND ")) }
                            td class=(class) { (label) }
                            td class="mono" { (offending.join(", ")) }
                            td { (outcome(finding)) }
                        }
                    }
                }
                @if licences.is_empty() { tr { td colspan="5" class="muted" { "Every licence is allowed by the policy." } } }
            }
        } }
        @if !others.is_empty() {
            h2 { "Other findings" }
            div class="table-wrap" { table {
                thead { tr { th scope="col" { "Rule" } th scope="col" { "Component" } th scope="col" { "Finding" } th scope="col" { "Outcome" } } }
                tbody {
                    @for finding in &others {
                        tr {
                            td class="mono" { (finding.rule) }
                            td { (component(finding)) }
                            td { (finding.message) }
                            td { (outcome(finding)) }
                        }
                    }
                }
            } }
        }
        h2 { "Waivers" }
        div class="table-wrap" { table {
            thead { tr {
                th scope="col" { "Waiver" } th scope="col" { "Covers" } th scope="col" { "Reason" }
                th scope="col" { "Owner" } th scope="col" { "Expires" }
            } }
            tbody {
                @for (finding, waiver) in &waived {
                    tr {
                        td class="mono" { (waiver.id) @if let Some(c) = &waiver.component { " (" (c) ")" } }
                        td { span class="mono" { (finding.rule) } " · " (component(finding)) }
                        td { (waiver.reason) }
                        td { (waiver.owner) }
                        td class="mono" { (waiver.expires) }
                    }
                }
                @if waived.is_empty() { tr { td colspan="5" class="muted" { "No finding of this release is waived." } } }
            }
        } }
    }
}
