//! The operator API (`/api/v1`): tokens, devices, audit log, settings.

use std::collections::BTreeMap;

use fleetward_core::{DeviceStatus, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// Who is calling, as the server sees the token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct WhoAmI {
    pub token_id: String,
    pub name: String,
    #[schema(value_type = String, example = "operator")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label for people: who or what uses the token.
    pub name: String,
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
    /// Lifetime in seconds; absent means the server's default (90 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A token's record. The secret is never part of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    /// The token id of whoever created it; `init` for the first admin token.
    pub created_by: String,
}

/// Answer to token creation: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CreatedToken {
    /// Pass as `Authorization: Bearer <token>`. Store it now: it is not kept.
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TokenList {
    pub items: Vec<TokenInfo>,
}

/// A device as the registry knows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub hardware: String,
    /// The software version the device last reported running.
    pub version: Option<String>,
    #[schema(value_type = String, example = "active")]
    pub status: DeviceStatus,
    pub tags: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<OffsetDateTime>,
}

/// Pre-registers a device (the manufacturing line knows it before it ever
/// connects).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    pub id: String,
    pub hardware: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `pending` (the default) or `active`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "pending")]
    pub status: Option<DeviceStatus>,
}

/// Registers many devices at once; all or nothing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevices {
    pub devices: Vec<RegisterDevice>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Registered {
    pub registered: u64,
}

/// A change to one device. Absent fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "active")]
    pub status: Option<DeviceStatus>,
    /// Tags to add or overwrite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_tags: BTreeMap<String, String>,
    /// Tag keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
}

/// Filters and paging for device listings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListParams {
    /// A target query, e.g. `hw = "rev2" and region in ("eu", "us")`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceCountParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DevicePage {
    pub items: Vec<Device>,
    /// Present when there may be more: pass it as `cursor`.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceCount {
    pub count: u64,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Token id (and name) of the caller.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The caller's network address.
    pub source: String,
    /// Action-specific details as JSON text.
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListParams {
    /// Return entries with `seq` greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `after` for the next page.
    pub next_after: Option<i64>,
}

/// Server-wide settings an admin may change at run time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How often devices are told to poll, in seconds (10 to 86400).
    pub poll_interval_secs: u32,
    /// Lifetime of newly created operator tokens when the request names none, in seconds.
    pub default_token_lifetime_secs: u64,
    /// Days security events are kept (1 to 3650); absent means 365.
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: u32,
}

fn default_event_retention_days() -> u32 {
    365
}
