//! Storage of device identity: the fleet CA's record, issued certificates,
//! enrolment tokens, the allow-list and re-key requests.
//!
//! A separate supertrait of [`crate::Store`] so that identity storage can be
//! read (and merged) on its own. Serials are canonical lower-case hex
//! strings: the store knows nothing of X.509.

use async_trait::async_trait;
use fleetward_core::query::Expr;
use fleetward_core::{DeviceId, DeviceStatus, Tag};
use time::OffsetDateTime;

use crate::{AuditEntry, Device, Result};

/// The fleet CA: its certificate and where the key file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRecord {
    pub cert_pem: String,
    pub key_path: String,
    pub fingerprint: String,
    pub created_at: OffsetDateTime,
}

/// One issued device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub serial: String,
    pub device_id: DeviceId,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub issued_at: OffsetDateTime,
    pub key_kind: String,
    /// May be in the future (renewal overlap).
    pub revoked_at: Option<OffsetDateTime>,
    /// CRL reason code name (`key-compromise`, `superseded`, ...).
    pub reason: Option<String>,
    /// The operator's words.
    pub comment: Option<String>,
}

impl CertRecord {
    /// Usable at `at`: inside its validity and not (yet) revoked.
    pub fn is_live(&self, at: OffsetDateTime) -> bool {
        self.not_before <= at && at < self.not_after && self.revoked_at.is_none_or(|r| r > at)
    }
}

/// An enrolment token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentTokenRecord {
    pub id: String,
    pub name: String,
    pub secret_hash: [u8; 32],
    /// Applied to each device that enrols with the token.
    pub tags: Vec<Tag>,
    pub uses_total: u32,
    pub uses_left: u32,
    /// Devices enrol as `pending` and wait for `fleetward device approve`.
    pub require_approval: bool,
    /// Only device ids on the allow-list may use this token.
    pub allow_listed_only: bool,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowListEntry {
    pub device_id: DeviceId,
    /// DER SubjectPublicKeyInfo the device must present, if known.
    pub public_key: Option<Vec<u8>>,
    pub added_at: OffsetDateTime,
}

/// Everything one successful enrolment writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The token whose use this consumes.
    pub token_id: String,
    pub device_id: DeviceId,
    /// For a device not registered yet.
    pub hardware: String,
    pub status: DeviceStatus,
    pub tags: Vec<Tag>,
    pub cert: CertRecord,
}

/// Which devices a re-key request covers.
#[derive(Debug, Clone, PartialEq)]
pub enum RekeyTarget {
    Devices(Vec<DeviceId>),
    Query(Expr),
    All,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Records the fleet CA; there is only ever one.
    async fn put_ca(&self, ca: &CaRecord, audit: &AuditEntry) -> Result<()>;
    async fn ca(&self) -> Result<Option<CaRecord>>;

    async fn insert_enrolment_token(
        &self,
        token: &EnrolmentTokenRecord,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn enrolment_token(&self, id: &str) -> Result<Option<EnrolmentTokenRecord>>;
    async fn list_enrolment_tokens(&self) -> Result<Vec<EnrolmentTokenRecord>>;
    /// Revokes a live token; revoking twice is a conflict.
    async fn revoke_enrolment_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<EnrolmentTokenRecord>;

    /// Adds or replaces allow-list entries, all or none.
    async fn put_allow_list(&self, entries: &[AllowListEntry], audit: &AuditEntry) -> Result<()>;
    async fn allow_list_entry(&self, id: &DeviceId) -> Result<Option<AllowListEntry>>;
    async fn count_allow_list(&self) -> Result<u64>;

    /// Consumes one use of the token (conflict if it is revoked, expired at
    /// `cert.issued_at`, or used up), creates the device or tags the
    /// existing one, and records the certificate. Conflict if the device is
    /// decommissioned or still has a live certificate (a replayed
    /// enrolment): such a device renews instead.
    async fn enroll(&self, enrolment: &Enrolment, audit: &AuditEntry) -> Result<Device>;

    async fn certificate(&self, serial: &str) -> Result<Option<CertRecord>>;
    /// A device's certificates, oldest first.
    async fn certificates(&self, device: &DeviceId) -> Result<Vec<CertRecord>>;
    /// Every certificate with a revocation time (also future ones).
    async fn revoked_certificates(&self) -> Result<Vec<CertRecord>>;

    /// Records a renewal: the new certificate, and the old one revoked
    /// (reason `superseded`) at `old_revoked_at`. Clears a re-key request.
    /// Conflict if the old certificate is not live at `new.issued_at` or was
    /// renewed already (each certificate renews once).
    async fn renew(
        &self,
        old_serial: &str,
        old_revoked_at: OffsetDateTime,
        new: &CertRecord,
        audit: &AuditEntry,
    ) -> Result<()>;

    /// Revokes every certificate of the device not revoked by `at` yet, and
    /// decommissions the device if asked. Returns the certificates revoked.
    async fn revoke_device(
        &self,
        device: &DeviceId,
        at: OffsetDateTime,
        reason: &str,
        comment: &str,
        decommission: bool,
        audit: &AuditEntry,
    ) -> Result<Vec<CertRecord>>;

    /// Asks devices to re-key at their next poll, optionally by a
    /// deadline; returns how many.
    async fn request_rekey(
        &self,
        target: &RekeyTarget,
        at: OffsetDateTime,
        deadline: Option<OffsetDateTime>,
        audit: &AuditEntry,
    ) -> Result<u64>;
    async fn rekey_requested(&self, device: &DeviceId) -> Result<Option<RekeyRequest>>;
    /// Devices whose re-key deadline is at or before `now` and that have
    /// not renewed since (at most `limit`, soonest deadline first).
    async fn overdue_rekeys(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<DeviceId>>;
}

/// A pending re-key request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyRequest {
    pub requested_at: OffsetDateTime,
    pub deadline: Option<OffsetDateTime>,
}
