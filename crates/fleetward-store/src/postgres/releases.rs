//! The PostgreSQL adapter's part for signed releases: artifacts, releases and
//! TUF metadata.

use fleetward_core::{DeviceId, ReleaseState, version};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::postgres::{insert_audit, is_unique_violation};
use crate::sqlite::{from_millis, to_millis};
use crate::{
    ArtifactRecord, AuditEntry, PostgresStore, ReleaseRecord, ReleaseTransition,
    ReleaseVulnerabilities, Result, StoreError, TufMetadataRecord,
};

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Conflict(format!("{what} {n} is out of range")))
}

fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} is negative")))
}

fn artifact_from_row(row: &PgRow) -> Result<ArtifactRecord> {
    Ok(ArtifactRecord {
        sha256: row.try_get("sha256")?,
        sha512: row.try_get("sha512")?,
        length: to_u64(row.try_get("length")?, "artifact length")?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

fn release_from_row(row: &PgRow) -> Result<ReleaseRecord> {
    let state: String = row.try_get("state")?;
    Ok(ReleaseRecord {
        version: row.try_get("version")?,
        hardware: row.try_get("hardware")?,
        state: ReleaseState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown release state {state:?}")))?,
        target_name: row.try_get("target_name")?,
        artifact_sha256: row.try_get("artifact_sha256")?,
        sbom_sha256: row.try_get("sbom_sha256")?,
        notes: row.try_get("notes")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

fn metadata_from_row(row: &PgRow) -> Result<TufMetadataRecord> {
    Ok(TufMetadataRecord {
        role: row.try_get("role")?,
        version: to_u64(row.try_get("version")?, "metadata version")?,
        body: row.try_get("body")?,
        expires_at: from_millis(row.try_get("expires_at")?)?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

impl PostgresStore {
    pub(crate) async fn release_vulnerabilities_impl(&self) -> Result<Vec<ReleaseVulnerabilities>> {
        let rows = sqlx::query("SELECT * FROM release_vulnerabilities ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(crate::sqlite::releases::vulnerabilities_from_row)
            .collect()
    }

    pub(crate) async fn put_release_vulnerabilities_impl(
        &self,
        record: &ReleaseVulnerabilities,
        replaces: Option<&str>,
        events: &[fleetward_events::Event],
    ) -> Result<Vec<fleetward_events::Entry>> {
        let record = record.clone();
        let replaces = replaces.map(str::to_owned);
        let events = events.to_vec();
        let ids = serde_json::to_string(&record.advisory_ids)
            .map_err(|e| StoreError::Invalid(format!("advisory ids: {e}")))?;
        self.write(move |tx| {
            Box::pin(async move {
                let current: Option<String> = sqlx::query_scalar(
                    "SELECT basis FROM release_vulnerabilities WHERE version = $1",
                )
                .bind(&record.version)
                .fetch_optional(&mut **tx)
                .await?;
                if current != replaces {
                    return Err(StoreError::Conflict(format!(
                        "the vulnerability record of release {} changed meanwhile",
                        record.version
                    )));
                }
                sqlx::query(
                    "INSERT INTO release_vulnerabilities
                        (version, basis, advisory_ids, vulnerable_since, checked_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (version) DO UPDATE SET basis = excluded.basis,
                        advisory_ids = excluded.advisory_ids,
                        vulnerable_since = excluded.vulnerable_since,
                        checked_at = excluded.checked_at",
                )
                .bind(&record.version)
                .bind(&record.basis)
                .bind(&ids)
                .bind(record.vulnerable_since.map(to_millis))
                .bind(to_millis(record.checked_at))
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                        StoreError::NotFound(format!("release {}", record.version))
                    } else {
                        e.into()
                    }
                })?;
                crate::postgres::events::append_in(tx, &events).await
            })
        })
        .await
    }

    pub(crate) async fn insert_artifact_impl(
        &self,
        artifact: &ArtifactRecord,
        audit: &AuditEntry,
    ) -> Result<bool> {
        let artifact = artifact.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let length = to_i64(artifact.length, "artifact length")?;
                let done = sqlx::query(
                    "INSERT INTO artifacts (sha256, sha512, length, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&artifact.sha256)
                .bind(&artifact.sha512)
                .bind(length)
                .bind(to_millis(artifact.created_at))
                .execute(&mut **tx)
                .await?;
                insert_audit(tx, &audit).await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    pub(crate) async fn artifact_impl(&self, sha256: &str) -> Result<Option<ArtifactRecord>> {
        let row = sqlx::query("SELECT * FROM artifacts WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(artifact_from_row).transpose()
    }

    pub(crate) async fn insert_release_impl(
        &self,
        release: &ReleaseRecord,
        audit: &AuditEntry,
    ) -> Result<()> {
        let release = release.clone();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO releases (version, version_key, hardware, state, target_name, artifact_sha256,
                        sbom_sha256, notes, created_at, created_by, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&release.version)
                .bind(version::sort_key(&release.version))
                .bind(&release.hardware)
                .bind(release.state.as_str())
                .bind(&release.target_name)
                .bind(&release.artifact_sha256)
                .bind(&release.sbom_sha256)
                .bind(&release.notes)
                .bind(to_millis(release.created_at))
                .bind(&release.created_by)
                .bind(to_millis(release.updated_at))
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict(format!(
                            "release {} exists already",
                            release.version
                        ))
                    } else if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
                        StoreError::NotFound("artifact".to_owned())
                    } else {
                        e.into()
                    }
                })?;
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    pub(crate) async fn release_impl(&self, version: &str) -> Result<Option<ReleaseRecord>> {
        let row = sqlx::query("SELECT * FROM releases WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(release_from_row).transpose()
    }

    pub(crate) async fn list_releases_impl(&self) -> Result<Vec<ReleaseRecord>> {
        let rows = sqlx::query("SELECT * FROM releases ORDER BY version_key DESC, version DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(release_from_row).collect()
    }

    pub(crate) async fn latest_published_release_impl(
        &self,
        hardware: &str,
    ) -> Result<Option<ReleaseRecord>> {
        let row = sqlx::query(
            "SELECT * FROM releases WHERE hardware = $1 AND state = $2
             ORDER BY version_key DESC, version DESC LIMIT 1",
        )
        .bind(hardware)
        .bind(ReleaseState::Published.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(release_from_row).transpose()
    }

    pub(crate) async fn publish_tuf_impl(
        &self,
        metadata: &[TufMetadataRecord],
        transitions: &[ReleaseTransition],
        audit: &AuditEntry,
    ) -> Result<()> {
        let metadata = metadata.to_vec();
        let transitions = transitions.to_vec();
        let audit = audit.clone();
        self.write(move |tx| {
            Box::pin(async move {
                for item in &metadata {
                    let version = to_i64(item.version, "metadata version")?;
                    let newest: Option<i64> =
                        sqlx::query_scalar("SELECT max(version) FROM tuf_metadata WHERE role = $1")
                            .bind(&item.role)
                            .fetch_one(&mut **tx)
                            .await?;
                    if newest.is_some_and(|newest| version <= newest) {
                        return Err(StoreError::Conflict(format!(
                            "{} metadata version {} does not follow version {}",
                            item.role,
                            item.version,
                            newest.unwrap_or_default()
                        )));
                    }
                    sqlx::query(
                        "INSERT INTO tuf_metadata (role, version, body, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&item.role)
                    .bind(version)
                    .bind(&item.body)
                    .bind(to_millis(item.expires_at))
                    .bind(to_millis(item.created_at))
                    .execute(&mut **tx)
                    .await?;
                }
                for change in &transitions {
                    let done = sqlx::query(
                        "UPDATE releases SET state = $1, updated_at = $2 WHERE version = $3 AND state = $4",
                    )
                    .bind(change.to.as_str())
                    .bind(to_millis(change.at))
                    .bind(&change.version)
                    .bind(change.from.as_str())
                    .execute(&mut **tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Conflict(format!(
                            "release {} is no longer {}",
                            change.version, change.from
                        )));
                    }
                }
                insert_audit(tx, &audit).await
            })
        })
        .await
    }

    pub(crate) async fn tuf_latest_impl(&self, role: &str) -> Result<Option<TufMetadataRecord>> {
        let row =
            sqlx::query("SELECT * FROM tuf_metadata WHERE role = $1 ORDER BY version DESC LIMIT 1")
                .bind(role)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    pub(crate) async fn tuf_version_impl(
        &self,
        role: &str,
        version: u64,
    ) -> Result<Option<TufMetadataRecord>> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM tuf_metadata WHERE role = $1 AND version = $2")
            .bind(role)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(metadata_from_row).transpose()
    }

    pub(crate) async fn devices_running_impl(
        &self,
        hardware: &str,
        version: &str,
        limit: u32,
    ) -> Result<Vec<DeviceId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM devices WHERE hardware = $1 AND version = $2 ORDER BY id LIMIT $3",
        )
        .bind(hardware)
        .bind(version)
        .bind(i64::from(limit.min(crate::MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|id| DeviceId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}
