//! The records the store reads and writes, in domain types.
//!
//! Rows become these types only inside an adapter; nothing above the store
//! sees SQL types.

use std::collections::BTreeMap;

use fleetward_core::{DeviceId, DeviceStatus, Role, Tag, TagKey, TagValue};
use time::OffsetDateTime;

/// An operator token, without its secret (only the secret's hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret part of the token.
    pub secret_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub hardware: String,
    pub version: Option<String>,
    pub status: DeviceStatus,
    pub tags: BTreeMap<TagKey, TagValue>,
    pub created_at: OffsetDateTime,
    pub first_seen: Option<OffsetDateTime>,
    pub last_seen: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: DeviceId,
    pub hardware: String,
    pub version: Option<String>,
    pub status: DeviceStatus,
    pub tags: Vec<Tag>,
}

/// A change to one device; `None` and empty lists leave things as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChange {
    pub status: Option<DeviceStatus>,
    pub set_tags: Vec<Tag>,
    pub remove_tags: Vec<TagKey>,
}

/// Who did what to which, from where: written in the same transaction as
/// the change it describes, so that the log and the data never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

/// Run-time settings. Stored as one row per key; defaults live here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub poll_interval_secs: u32,
    pub default_token_lifetime_secs: u64,
    /// Security events older than this many days are pruned (down to the
    /// newest signed checkpoint before the cut-off).
    pub event_retention_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            poll_interval_secs: 300,
            default_token_lifetime_secs: 90 * 24 * 3600,
            event_retention_days: 365,
        }
    }
}

/// A stored artifact, named by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// Lowercase hex.
    pub sha256: String,
    /// Lowercase hex.
    pub sha512: String,
    pub length: u64,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub version: String,
    pub hardware: String,
    pub state: fleetward_core::ReleaseState,
    /// The image's name in the TUF image repository.
    pub target_name: String,
    pub artifact_sha256: String,
    pub sbom_sha256: Option<String>,
    pub notes: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
}

/// What the vulnerability watch last found in a release's SBOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseVulnerabilities {
    pub version: String,
    /// What the scan was made against (the advisory index's import time and
    /// the policy's hash): a watch round skips a release whose basis has not
    /// changed.
    pub basis: String,
    /// Ids of the vulnerabilities that break policy, sorted, each once.
    pub advisory_ids: Vec<String>,
    /// Since when the release has had any; `None` while it has none.
    pub vulnerable_since: Option<OffsetDateTime>,
    pub checked_at: OffsetDateTime,
}

/// One version of one TUF role's metadata, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufMetadataRecord {
    pub role: String,
    pub version: u64,
    pub body: Vec<u8>,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
}

/// A release changing state, checked against the state it was read in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTransition {
    pub version: String,
    pub from: fleetward_core::ReleaseState,
    pub to: fleetward_core::ReleaseState,
    pub at: OffsetDateTime,
}

/// How the fleet divides up, for dashboards: device counts per status,
/// per running version and per hardware type, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacets {
    pub by_status: Vec<(fleetward_core::DeviceStatus, u64)>,
    /// `None`: devices that never reported a version.
    pub by_version: Vec<(Option<String>, u64)>,
    pub by_hardware: Vec<(String, u64)>,
}
