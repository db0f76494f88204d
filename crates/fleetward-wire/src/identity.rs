//! Device identity on the wire: the device API's enrolment and renewal
//! (`/device/v1`) and the operator API's enrolment tokens, allow-list,
//! revocation and re-keying (`/api/v1`).

use std::collections::BTreeMap;

use fleetward_core::DeviceStatus;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

// --- device API -------------------------------------------------------------

/// `POST /device/v1/enroll`: an enrolment token and a PEM CSR. The CSR
/// names the device (subject CN and/or SAN URI `urn:fleetward:device:<id>`)
/// and is signed with the key the device made; the key never leaves it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// `fwe_<id>_<secret>`, from `fleetward enroll-token create`.
    pub token: String,
    /// PKCS#10 certificate signing request, PEM.
    pub csr: String,
    /// Hardware type, for a device the registry does not know yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
}

/// `POST /device/v1/renew`, over a connection authenticated with the
/// device's current certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// CSR for the new key, naming the same device, PEM.
    pub csr: String,
}

/// A certificate issued to a device, with the chain to trust.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub device_id: String,
    #[schema(value_type = String, example = "active")]
    pub status: DeviceStatus,
    /// The device certificate, PEM.
    pub certificate: String,
    /// The fleet CA certificate(s), PEM, leaf-most first.
    pub ca_chain: Vec<String>,
    /// Serial number, lower-case hex.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    /// Renew after this instant (policy).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub renew_after: OffsetDateTime,
}

/// `GET /device/v1/self`: what the server knows of the calling device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeviceSelf {
    pub device_id: String,
    #[schema(value_type = String, example = "active")]
    pub status: DeviceStatus,
    /// Serial of the certificate this connection presented.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub renew_after: OffsetDateTime,
    /// An operator asked this device to make a new key and renew now.
    pub rekey_required: bool,
    /// When the device's current certificates are revoked if it has not
    /// re-keyed by then.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rekey_deadline: Option<OffsetDateTime>,
    pub poll_interval_secs: u32,
}

// --- operator API -----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollToken {
    /// A label for people, e.g. the production line.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags applied to each device that enrols with the token.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How many devices may enrol with it (1-1,000,000).
    pub uses: u32,
    /// Lifetime in seconds (60 s to 366 days).
    pub expires_in_secs: u64,
    /// Devices enrol as `pending` until `fleetward device approve`.
    #[serde(default)]
    pub require_approval: bool,
    /// Only device ids on the allow-list may enrol with this token.
    #[serde(default)]
    pub allow_listed_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EnrollTokenInfo {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub uses_total: u32,
    pub uses_left: u32,
    pub require_approval: bool,
    pub allow_listed_only: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: String,
}

/// The only time an enrolment token's secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CreatedEnrollToken {
    pub token: String,
    pub info: EnrollTokenInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EnrollTokenList {
    pub items: Vec<EnrollTokenInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowListItem {
    pub id: String,
    /// The device's public key (PEM SubjectPublicKeyInfo); when given, the
    /// device must enrol with exactly this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowListUpload {
    pub devices: Vec<AllowListItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AllowListResult {
    pub added: u64,
    pub total: u64,
}

/// Revoke or decommission a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevokeDevice {
    /// Why, in the operator's words (kept in the audit log).
    pub reason: String,
    /// CRL reason code: unspecified, key-compromise, superseded,
    /// cessation-of-operation, privilege-withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Quarantine a device: it gets no rollouts until an operator sets it
/// `active` again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuarantineDevice {
    /// Why, in the operator's words (kept in the event log).
    pub reason: String,
    /// Whether its certificates stay valid (so it can still report) or are
    /// revoked at once (it is cut off and must enrol again).
    #[serde(default)]
    pub certificate: QuarantineCertificate,
}

/// What quarantine does to a device's certificates.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QuarantineCertificate {
    /// Keep them: the device can still report, so it can be watched.
    #[default]
    Keep,
    /// Revoke them (reason key-compromise): the device is cut off.
    Revoke,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RevokedDevice {
    pub device_id: String,
    #[schema(value_type = String, example = "decommissioned")]
    pub status: DeviceStatus,
    pub revoked_serials: Vec<String>,
}

/// Which devices must make a new key: ids, a target query, or all.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub all: bool,
    /// Seconds from now after which devices that have not re-keyed have
    /// their certificates revoked (they must enrol again). None: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RekeyResult {
    pub devices: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CertificateInfo {
    pub serial: String,
    pub device_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: OffsetDateTime,
    pub key_kind: String,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct CertificateList {
    pub items: Vec<CertificateInfo>,
}
