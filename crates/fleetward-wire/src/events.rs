//! The security-event log on the wire: listings, exports, verification.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// One entry of the security-event log, with its place in the hash chain.
/// Exports are JSON Lines of these, so `fleetward events verify --from`
/// can check them offline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecurityEvent {
    pub seq: u64,
    /// Stable kind name, e.g. `identity.handshake_refused`.
    pub kind: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub server_time: OffsetDateTime,
    /// Unix milliseconds, exact (the chain hash covers milliseconds).
    pub server_time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_time_ms: Option<i64>,
    pub message: String,
    /// Kind-specific details, JSON text.
    pub detail: String,
    /// Hex SHA-256 of the entry before.
    pub prev_hash: String,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// A signed checkpoint of the chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventCheckpoint {
    pub seq: u64,
    pub hash: String,
    pub signed_at_ms: i64,
    /// Hex ed25519 signature.
    pub signature: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Comma-separated kind names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The lowest severity to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// RFC 3339; inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339; exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Return entries with `seq` greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EventPage {
    pub items: Vec<SecurityEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// What the server knows to check the log offline: its checkpoints, the
/// anchor of a pruned prefix, and the public key that signs them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventCheckpoints {
    /// Hex ed25519 public key of the server's checkpoint key.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<EventCheckpoint>,
    pub checkpoints: Vec<EventCheckpoint>,
}

/// The result of verifying the log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EventVerification {
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    /// Entries after the last checkpoint (chained, not yet signed).
    pub unsigned_tail: u64,
    /// The first bad entry, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
