//! The live set of revoked certificate serials.
//!
//! The TLS verifier consults it on every full handshake and the device API
//! on every request (resumed TLS sessions skip certificate verification, so
//! the per-request check is what makes a revocation reach connections that
//! are already open). A revocation may be scheduled: a certificate replaced
//! by renewal is revoked only when its overlap ends, so each entry carries
//! the instant from which it counts.

use std::collections::HashMap;
use std::sync::RwLock;

use time::OffsetDateTime;

use crate::Serial;

#[derive(Debug, Default)]
pub struct RevocationSet {
    revoked: RwLock<HashMap<Serial, OffsetDateTime>>,
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Revoked at or before `now`?
    pub fn is_revoked(&self, serial: &Serial, now: OffsetDateTime) -> bool {
        // A poisoned lock still holds a consistent map: every write is a
        // single insert.
        let map = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        map.get(serial).is_some_and(|at| *at <= now)
    }

    /// Revokes `serial` from `at` on; an earlier existing time wins.
    ///
    /// `at` is rounded down to the whole second: TLS verifiers are handed
    /// the time in whole seconds, and a revocation must not wait for the
    /// next second to reach new handshakes.
    pub fn revoke(&self, serial: Serial, at: OffsetDateTime) {
        let at = at.replace_nanosecond(0).unwrap_or(at);
        let mut map = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(serial).or_insert(at);
        if at < *entry {
            *entry = at;
        }
    }

    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_revocations_count_from_their_time() {
        let set = RevocationSet::new();
        let serial = Serial::from_bytes(&[1, 2, 3]).unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(10_000);
        assert!(!set.is_revoked(&serial, t0));
        set.revoke(serial.clone(), t0 + time::Duration::hours(1));
        assert!(!set.is_revoked(&serial, t0));
        assert!(set.is_revoked(&serial, t0 + time::Duration::hours(1)));
        set.revoke(serial.clone(), t0);
        assert!(set.is_revoked(&serial, t0));
        set.revoke(serial.clone(), t0 + time::Duration::days(1));
        assert!(set.is_revoked(&serial, t0), "an earlier revocation stands");
        assert_eq!(set.len(), 1);
        let other = Serial::from_bytes(&[9]).unwrap();
        set.revoke(other.clone(), t0 + time::Duration::milliseconds(700));
        assert!(
            set.is_revoked(&other, t0),
            "effective from the whole second, as verifiers see time"
        );
    }
}
