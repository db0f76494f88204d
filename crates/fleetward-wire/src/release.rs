//! Signed releases on the operator API: artifacts, releases, the TUF image
//! repository's management endpoints.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Headers of an artifact upload (`POST /api/v1/artifacts`, raw body).
pub const HEADER_SHA256: &str = "x-fleetward-sha256";
pub const HEADER_SHA512: &str = "x-fleetward-sha512";

/// A stored artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Artifact {
    pub sha256: String,
    pub sha512: String,
    pub length: u64,
    /// False when the same content was stored before (deduplicated).
    pub created: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    /// The release's version, unique across releases.
    pub version: String,
    /// The hardware revision the image is for.
    pub hardware: String,
    /// SHA-256 of an uploaded artifact: the image.
    pub artifact_sha256: String,
    /// The image's file name; its name in the image repository is
    /// `<hardware>/<version>/<file_name>`.
    pub file_name: String,
    /// SHA-256 of an uploaded artifact: the image's SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub hardware: String,
    /// draft, signed, published, deprecated or revoked.
    pub state: String,
    pub target_name: String,
    pub artifact_sha256: String,
    pub artifact_sha512: String,
    pub length: u64,
    pub sbom_sha256: Option<String>,
    pub notes: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// For a revoked release: devices still reporting it (flagged), at most 1000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged_devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReleaseList {
    pub items: Vec<Release>,
}

/// Targets metadata for the release manager to check and sign offline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct SigningRequest {
    /// The `signed` part of the next targets metadata (TUF 1.0): every
    /// release that stays listed, plus this one. The signer may change
    /// `expires`.
    #[schema(value_type = Object)]
    pub signed: serde_json::Value,
    /// The currently served metadata of that role, if any (signed envelope).
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
    /// The delegated role (product line) that signs this release, or
    /// absent for the top-level targets role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// New top-level targets metadata that changes the delegations, with the
/// metadata of each delegated role it adds or re-keys (signed envelopes).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DelegationUpload {
    #[schema(value_type = Object)]
    pub targets: serde_json::Value,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub roles: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The server's online public keys, to put into root metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OnlineKeys {
    /// TUF key objects (`keytype`, `scheme`, `keyval`).
    #[schema(value_type = Object)]
    pub snapshot: serde_json::Value,
    #[schema(value_type = Object)]
    pub timestamp: serde_json::Value,
    /// Signs per-device director metadata.
    #[schema(value_type = Object)]
    pub director: serde_json::Value,
}

/// The image repository's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RepositoryStatus {
    pub root_version: Option<u64>,
    pub targets_version: Option<u64>,
    pub snapshot_version: Option<u64>,
    pub timestamp_version: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timestamp_expires: Option<OffsetDateTime>,
}
