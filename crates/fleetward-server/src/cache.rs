//! The settings row, cached briefly.
//!
//! Every device check-in needs the poll interval, and the settings live in
//! the database, which several replicas may share (PostgreSQL). Rather than
//! read the row on every poll, each process keeps the last value read for at
//! most [`SettingsCache::TTL`]: a change made through this process replaces
//! the cached value at once, and another replica sees it within the TTL, the
//! same bound as operator-token revocation ([`crate::auth::TokenCache`]). No
//! cross-replica invalidation channel is needed, and nothing depends on a
//! replica seeing a settings change sooner (the poll interval and retention
//! are rhythms, not security decisions).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetward_store::{Settings, Store};

#[derive(Debug, Default)]
pub struct SettingsCache {
    cached: Mutex<Option<(Settings, Instant)>>,
}

impl SettingsCache {
    pub const TTL: Duration = Duration::from_secs(1);

    /// The settings, from the cache when read less than [`Self::TTL`] ago.
    pub async fn get(&self, store: &dyn Store) -> fleetward_store::Result<Settings> {
        if let Some(settings) = self.fresh(Instant::now()) {
            return Ok(settings);
        }
        let settings = store.settings().await?;
        self.put(settings.clone(), Instant::now());
        Ok(settings)
    }

    fn fresh(&self, now: Instant) -> Option<Settings> {
        let cached = self.cached.lock().ok()?;
        let (settings, read_at) = cached.as_ref()?;
        (now.saturating_duration_since(*read_at) < Self::TTL).then(|| settings.clone())
    }

    /// Records settings just written (or read) by this process.
    pub fn put(&self, settings: Settings, now: Instant) {
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((settings, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_settings_go_stale_after_the_ttl() {
        let cache = SettingsCache::default();
        let start = Instant::now();
        assert!(cache.fresh(start).is_none());
        let settings = Settings {
            poll_interval_secs: 42,
            ..Settings::default()
        };
        cache.put(settings.clone(), start);
        assert_eq!(cache.fresh(start), Some(settings));
        assert!(cache.fresh(start + SettingsCache::TTL).is_none());
    }
}

/// Devices the director recently had nothing to offer.
///
/// A device that polls and gets "nothing new" (no released execution, or a
/// status that receives no updates) is remembered for at most
/// [`DirectorCache::TTL`], so that its next polls within that time skip the
/// database: the registry read, the open-execution read and the settings.
/// Everything else about the request still runs every time (certificate
/// expiry and revocation, clone detection, the poll-schedule rule).
///
/// "Nothing" is the safe answer: a cached answer can only delay an offer,
/// never make one. Every rollout-engine tick and every operator change to a
/// rollout in this process starts a new epoch, which drops all entries at
/// once, so executions released here are offered on the next poll; changes
/// made by another replica reach the device within the TTL. An entry is
/// recorded only if no new epoch began while the answer was being worked
/// out, so an answer computed before a release never outlives it.
#[derive(Debug, Default)]
pub struct DirectorCache {
    epoch: std::sync::atomic::AtomicU64,
    idle: Mutex<std::collections::HashMap<fleetward_core::DeviceId, (Instant, u64)>>,
}

impl DirectorCache {
    pub const TTL: Duration = Duration::from_secs(1);
    /// Bounds memory: past this many entries the map is swept, then cleared.
    const MAX_ENTRIES: usize = 100_000;

    /// The current epoch; pass it to [`Self::remember_nothing`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the director answered "nothing" to `device` in this epoch,
    /// less than [`Self::TTL`] ago.
    pub fn has_nothing_for(&self, device: &fleetward_core::DeviceId, now: Instant) -> bool {
        let epoch = self.epoch();
        let Ok(idle) = self.idle.lock() else {
            return false;
        };
        idle.get(device).is_some_and(|(at, seen_epoch)| {
            *seen_epoch == epoch && now.saturating_duration_since(*at) < Self::TTL
        })
    }

    /// Records "nothing for `device`", worked out from reads that started in
    /// `epoch`.
    pub fn remember_nothing(&self, device: &fleetward_core::DeviceId, epoch: u64, now: Instant) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let current = self.epoch();
        if epoch != current {
            return;
        }
        if idle.len() >= Self::MAX_ENTRIES && !idle.contains_key(device) {
            idle.retain(|_, (at, e)| {
                *e == current && now.saturating_duration_since(*at) < Self::TTL
            });
            if idle.len() >= Self::MAX_ENTRIES {
                idle.clear();
            }
        }
        match idle.get_mut(device) {
            Some(entry) => *entry = (now, epoch),
            None => {
                idle.insert(device.clone(), (now, epoch));
            }
        }
    }

    /// Something may have become offerable: forget every cached answer.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod director_tests {
    use super::*;

    #[test]
    fn nothing_is_remembered_briefly_and_dropped_on_a_new_epoch() {
        let cache = DirectorCache::default();
        let device = fleetward_core::DeviceId::parse("dev-1").unwrap();
        let start = Instant::now();
        assert!(!cache.has_nothing_for(&device, start));
        cache.remember_nothing(&device, cache.epoch(), start);
        assert!(cache.has_nothing_for(&device, start));
        assert!(!cache.has_nothing_for(&device, start + DirectorCache::TTL));
        cache.invalidate();
        assert!(
            !cache.has_nothing_for(&device, start),
            "a new epoch drops it"
        );
        // An answer worked out before an invalidation is not recorded.
        let before = cache.epoch();
        cache.invalidate();
        cache.remember_nothing(&device, before, start);
        assert!(!cache.has_nothing_for(&device, start));
    }
}
