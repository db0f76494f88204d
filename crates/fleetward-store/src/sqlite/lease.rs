//! [`Leases`] for SQLite. One process owns the file, so this only matters
//! for a restart overlapping the old process; the statements are the same
//! atomic upserts PostgreSQL runs.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{SqliteStore, to_millis};
use crate::Result;
use crate::lease::{ACQUIRE_SQL, Leases, RELEASE_SQL, RENEW_SQL, lease_expiry};

#[async_trait]
impl Leases for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let expires = lease_expiry(name, holder, ttl, now)?;
        let (name, holder, now) = (name.to_owned(), holder.to_owned(), to_millis(now));
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(ACQUIRE_SQL)
                    .bind(&name)
                    .bind(&holder)
                    .bind(expires)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let expires = lease_expiry(name, holder, ttl, now)?;
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(RENEW_SQL)
                    .bind(expires)
                    .bind(&name)
                    .bind(&holder)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(RELEASE_SQL)
                    .bind(&name)
                    .bind(&holder)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}
