//! fleetward's storage port.
//!
//! Everything the server keeps goes through the [`Store`] trait. SQLite is the
//! embedded default (zero set-up); PostgreSQL is the scale-out backend. A
//! `--database-url` picks one at start-up ([`open`]), and one conformance
//! suite (`tests/conformance.rs`) runs against both, so domain code never
//! knows which it talks to.
//!
//! Every mutating method takes the [`AuditEntry`] that describes it and
//! writes both in one transaction.

pub mod copy;
pub mod events;
mod identity;
pub mod lease;
mod model;
mod point_read;
mod postgres;
mod query_sql;
pub mod reports;
pub mod rollouts;
mod sqlite;

use async_trait::async_trait;
use fleetward_core::{DeviceId, query::Expr};
use time::OffsetDateTime;

pub use copy::{CopyReport, copy_sqlite_to_postgres};
pub use events::{EventFilter, EventLog};
pub use identity::*;
pub use lease::Leases;
pub use model::*;
pub use postgres::{DEFAULT_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS, PostgresStore};
pub use reports::{DeviceErrorRecord, DeviceReports, ReportStore, TelemetryRecord};
pub use rollouts::*;
pub use sqlite::SqliteStore;
/// Re-exported so adapters above the store can classify failures.
pub use sqlx::Error as SqlxError;

/// The largest page any listing returns.
pub const MAX_PAGE: u32 = 1000;

/// The largest number of devices registered in one call.
pub const MAX_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be stored as given (a bound exceeded, a malformed value).
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported database URL {0:?}; use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A point read on the calling thread failed (see `point_read`).
    #[error("database error: {0}")]
    PointRead(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection-pool figures for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

#[async_trait]
pub trait Store:
    EventLog + IdentityStore + Leases + RolloutStore + ReportStore + Send + Sync + std::fmt::Debug
{
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<()>;
    fn pool_stats(&self) -> PoolStats;
    /// Waits for in-flight statements and closes the pool.
    async fn close(&self);

    // Tokens.
    async fn insert_token(&self, token: &TokenRecord, audit: &AuditEntry) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Revokes a live token; revoking twice is a conflict.
    async fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<TokenRecord>;

    // Devices.
    /// Registers all devices or none; an id that exists already is a conflict.
    async fn register_devices(
        &self,
        devices: &[NewDevice],
        at: OffsetDateTime,
        audit: &AuditEntry,
    ) -> Result<()>;
    async fn device(&self, id: &DeviceId) -> Result<Option<Device>>;
    async fn update_device(
        &self,
        id: &DeviceId,
        change: &DeviceChange,
        audit: &AuditEntry,
    ) -> Result<Device>;
    /// Devices matching `query` (all when `None`) with ids after `after`, in id order.
    async fn list_devices(
        &self,
        query: Option<&Expr>,
        after: Option<&DeviceId>,
        limit: u32,
    ) -> Result<Vec<Device>>;
    async fn count_devices(&self, query: Option<&Expr>) -> Result<u64>;
    /// How many devices have been seen at or after `since`.
    async fn count_devices_seen_since(&self, since: OffsetDateTime) -> Result<u64>;

    // Audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    async fn list_audit(&self, after: Option<i64>, limit: u32) -> Result<Vec<AuditRecord>>;

    // Settings.
    async fn settings(&self) -> Result<Settings>;
    async fn put_settings(&self, settings: &Settings, audit: &AuditEntry) -> Result<()>;

    // Artifacts, releases and TUF metadata (signed releases).
    /// Records an artifact whose content is stored; `false` when it was known.
    async fn insert_artifact(&self, artifact: &ArtifactRecord, audit: &AuditEntry) -> Result<bool>;
    async fn artifact(&self, sha256: &str) -> Result<Option<ArtifactRecord>>;
    /// A new draft release; a version that exists already is a conflict.
    async fn insert_release(&self, release: &ReleaseRecord, audit: &AuditEntry) -> Result<()>;
    async fn release(&self, version: &str) -> Result<Option<ReleaseRecord>>;
    /// All releases, newest version first.
    async fn list_releases(&self) -> Result<Vec<ReleaseRecord>>;
    /// The highest published release for `hardware`.
    async fn latest_published_release(&self, hardware: &str) -> Result<Option<ReleaseRecord>>;
    /// Stores new metadata versions and applies release transitions, all or
    /// nothing. A role version that exists already, or a release no longer in
    /// its `from` state, is a conflict.
    async fn publish_tuf(
        &self,
        metadata: &[TufMetadataRecord],
        transitions: &[ReleaseTransition],
        audit: &AuditEntry,
    ) -> Result<()>;
    /// The highest version of a role's metadata.
    async fn tuf_latest(&self, role: &str) -> Result<Option<TufMetadataRecord>>;
    async fn tuf_version(&self, role: &str, version: u64) -> Result<Option<TufMetadataRecord>>;
    /// Devices reporting `version` on `hardware` (at most `limit`), in id order.
    async fn devices_running(
        &self,
        hardware: &str,
        version: &str,
        limit: u32,
    ) -> Result<Vec<DeviceId>>;
    /// What the vulnerability watch last recorded, one row per release
    /// it has scanned, in version order.
    async fn release_vulnerabilities(&self) -> Result<Vec<ReleaseVulnerabilities>>;
    /// Records a release's scan and appends the security `events` the
    /// change raises, in one transaction: an event is never raised for a
    /// change that was not stored, nor a change stored without its event.
    /// `replaces` is the basis of the record the caller compared with
    /// (`None`: there was none); if another writer changed it meanwhile,
    /// the call is a conflict and stores nothing, so two rounds racing over
    /// one change raise it once. An unknown release is not found.
    async fn put_release_vulnerabilities(
        &self,
        record: &ReleaseVulnerabilities,
        replaces: Option<&str>,
        events: &[fleetward_events::Event],
    ) -> Result<Vec<fleetward_events::Entry>>;
    /// Device counts per status, version and hardware, each list largest
    /// first and cut at `limit` entries.
    async fn device_facets(&self, limit: u32) -> Result<DeviceFacets>;
}

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
