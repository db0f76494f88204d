//! SBOM scan results of releases, for `fleetward release vulns`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every release that carries an SBOM, scanned now against the server's
/// advisory index and policy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleaseVulns {
    /// When the advisory index was imported (RFC 3339), if there is one.
    pub advisories_imported_at: Option<String>,
    pub releases: Vec<ReleaseScan>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReleaseScan {
    pub version: String,
    pub hardware: String,
    pub state: String,
    /// `pass`, `fail`, or `error` (no index, unreadable SBOM or policy).
    pub verdict: String,
    pub error: Option<String>,
    /// Devices whose reported version is this release's.
    pub devices: u64,
    /// The findings that fail the policy.
    pub failing: Vec<ScanFinding>,
    /// RFC 3339: since when the vulnerability watch has seen this published
    /// release vulnerable (it raised a `release.vulnerable` event then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerable_since: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ScanFinding {
    pub rule: String,
    pub message: String,
    /// Advisory ids, for vulnerability findings.
    pub ids: Vec<String>,
    pub component: Option<String>,
}
