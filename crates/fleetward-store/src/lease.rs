//! Leases: background work that must run once at a time across replicas
//! (re-signing timestamp metadata, signing checkpoints, retention, re-key
//! deadlines).
//!
//! A lease is a row naming its holder and when it lapses. Taking one is a
//! single conditional upsert, atomic in both databases: it succeeds when the
//! lease is free, lapsed at `now`, or held by the same holder already
//! (which extends it). No in-process state is involved, so it holds across
//! processes. Time is passed in, like everywhere in the store; replicas'
//! clocks need only agree to well within a lease's time to live.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{Result, StoreError};

/// The longest lease or holder name.
pub const MAX_LEASE_NAME: usize = 200;

#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes lease `name` for `holder` until `now + ttl` if it is free,
    /// lapsed at `now`, or already `holder`'s (then it is extended).
    /// Returns whether `holder` now holds it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// Extends a lease `holder` still holds until `now + ttl`; `false` when
    /// another holder has taken it (the caller must stop the work).
    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// Gives a lease up, if `holder` holds it, so another may take it at once.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Checks names and computes the expiry (Unix milliseconds).
pub(crate) fn lease_expiry(
    name: &str,
    holder: &str,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<i64> {
    for (what, value) in [("lease name", name), ("lease holder", holder)] {
        if value.is_empty() || value.len() > MAX_LEASE_NAME {
            return Err(StoreError::Invalid(format!(
                "a {what} must have 1 to {MAX_LEASE_NAME} bytes"
            )));
        }
    }
    if ttl.is_zero() || ttl > Duration::from_secs(7 * 24 * 3600) {
        return Err(StoreError::Invalid(
            "a lease lasts more than nothing and at most a week".into(),
        ));
    }
    let ttl = time::Duration::try_from(ttl)
        .map_err(|e| StoreError::Invalid(format!("lease time to live: {e}")))?;
    Ok(crate::sqlite::to_millis(now + ttl))
}

/// The statements, in the `?` form; PostgreSQL numbers them.
pub(crate) const ACQUIRE_SQL: &str = "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?";
pub(crate) const RENEW_SQL: &str = "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?";
pub(crate) const RELEASE_SQL: &str = "DELETE FROM leases WHERE name = ? AND holder = ?";

/// `?` placeholders numbered `$1`, `$2`, … for PostgreSQL.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}
