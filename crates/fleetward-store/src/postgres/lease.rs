//! [`Leases`] for PostgreSQL.
//!
//! Each operation is one statement on the pool, outside the event-chain
//! lock: `INSERT … ON CONFLICT DO UPDATE … WHERE` locks the conflicting row
//! and re-checks the condition against its newest version, so of replicas
//! racing for a lapsed lease exactly one gets `rows_affected == 1`.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::Result;
use crate::lease::{ACQUIRE_SQL, Leases, RELEASE_SQL, RENEW_SQL, lease_expiry, numbered};
use crate::sqlite::to_millis;

#[async_trait]
impl Leases for PostgresStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let expires = lease_expiry(name, holder, ttl, now)?;
        let done = sqlx::query(&numbered(ACQUIRE_SQL))
            .bind(name)
            .bind(holder)
            .bind(expires)
            .bind(to_millis(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let expires = lease_expiry(name, holder, ttl, now)?;
        let done = sqlx::query(&numbered(RENEW_SQL))
            .bind(expires)
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(&numbered(RELEASE_SQL))
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
