//! Once-at-a-time background work across replicas.
//!
//! Several server processes may share one PostgreSQL. Periodic work that
//! must not run twice at once (re-signing timestamp metadata, signing event
//! checkpoints, retention, re-key deadlines, the vulnerability watch) first takes a lease in the
//! store ([`fleetward_store::Leases`]); a replica that does not get it skips
//! that round. The holder keeps extending its lease each round, so the work
//! stays with one replica while it lives, and passes to another within
//! [`ttl_for`] of its death. No in-process state decides: two servers in one
//! process are two holders.
//!
//! The work itself stays idempotent (a checkpoint for the same head is
//! ignored, a metadata version that exists is a conflict), so a lease
//! lapsing mid-round because of a stalled replica costs a repeat, never a
//! fork.

use std::sync::Arc;
use std::time::Duration;

use fleetward_store::Store;
use rand::RngCore as _;
use time::OffsetDateTime;

/// Who holds a lease: one per running server, random.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder(Arc<str>);

impl Holder {
    /// A fresh holder name: process id and 64 random bits.
    pub fn generate() -> Holder {
        let mut random = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut random);
        Holder(format!("pid{}-{}", std::process::id(), hex::encode(random)).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The lease names; one per kind of periodic work.
pub const TUF_TIMESTAMP: &str = "tuf-timestamp";
pub const EVENT_CHECKPOINT: &str = "event-checkpoint";
pub const EVENT_RETENTION: &str = "event-retention";
pub const REKEY_DEADLINES: &str = "rekey-deadlines";
pub const ROLLOUT_ENGINE: &str = "rollout-engine";
pub const RELEASE_VULNERABILITIES: &str = "release-vulnerabilities";

/// How long a lease lasts for work repeated every `interval`: three rounds,
/// so a slow round or two does not hand it over, and at least 30 seconds.
pub fn ttl_for(interval: Duration) -> Duration {
    interval
        .saturating_mul(3)
        .max(Duration::from_secs(30))
        .min(Duration::from_secs(24 * 3600))
}

/// Whether this replica runs `name`'s work this round: takes or extends
/// the lease. A store error means "not this round" (and is logged).
pub async fn hold(
    store: &dyn Store,
    name: &str,
    holder: &Holder,
    interval: Duration,
    now: OffsetDateTime,
) -> bool {
    match store
        .acquire_lease(name, holder.as_str(), ttl_for(interval), now)
        .await
    {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(%error, lease = name, "taking a lease failed; skipping this round");
            false
        }
    }
}

/// Gives the lease up on shutdown, so another replica takes over at once.
pub async fn release(store: &dyn Store, name: &str, holder: &Holder) {
    if let Err(error) = store.release_lease(name, holder.as_str()).await {
        tracing::warn!(%error, lease = name, "releasing a lease failed; it lapses by itself");
    }
}
