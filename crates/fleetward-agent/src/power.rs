//! Power-cut points: where the power-loss test cuts the agent.
//!
//! Why this exists: a device must survive losing power at any moment of an
//! update, mid-write included. Killing a process at a random time rarely
//! lands inside a write, and a failure found that way cannot be replayed.
//! So every disk write the agent makes for an update (the inactive slot,
//! the state and boot-environment files, the report buffer) passes through
//! [`point`], and a test can arm the N-th point: there the write leaves a
//! prefix of its bytes on disk and the thread unwinds with a [`PowerCut`]
//! payload. Nothing after the cut runs (no error handling, no report, no
//! further write), as after a real power loss; the test then "reboots" and
//! starts a new agent on the same files.
//!
//! What it does not model: a page cache that loses writes not yet synced.
//! Writes reach the files in the order they were made; the order of
//! `fsync` and `rename` in [`crate::state::write_atomic`] is what makes the
//! real thing safe.
//!
//! Disarmed (always, unless a test arms it), a point costs one atomic load.
//! The switch is process-wide: one armed test per process.

use std::sync::atomic::{AtomicU64, Ordering};

const DISARMED: u64 = u64::MAX;

/// Points still to pass before the cut (`DISARMED`: never).
static LEFT: AtomicU64 = AtomicU64::new(DISARMED);
/// Share of the cut write's bytes that reach the disk, per mille.
static KEEP_PER_MILLE: AtomicU64 = AtomicU64::new(500);
/// Points passed since the process started.
static SEEN: AtomicU64 = AtomicU64::new(0);

/// The payload of the unwinding that stands for a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCut {
    /// Which write was cut.
    pub what: &'static str,
}

/// Cuts the power at the point after the next `after` points; the cut
/// write keeps `keep_per_mille` of its bytes.
pub fn arm(after: u64, keep_per_mille: u64) {
    KEEP_PER_MILLE.store(keep_per_mille.min(1000), Ordering::SeqCst);
    LEFT.store(after, Ordering::SeqCst);
}

/// No cut; returns how many points were still to pass (`None` if the cut
/// already happened or none was armed).
pub fn disarm() -> Option<u64> {
    let left = LEFT.swap(DISARMED, Ordering::SeqCst);
    (left != DISARMED).then_some(left)
}

/// Points passed so far (a test counts the points of an update with it).
pub fn seen() -> u64 {
    SEEN.load(Ordering::SeqCst)
}

/// A write of `len` bytes is about to be made: `Some(n)` when the power
/// goes during it, after `n` of its bytes; the caller writes those, then
/// calls [`cut`].
pub(crate) fn point(len: usize) -> Option<usize> {
    SEEN.fetch_add(1, Ordering::SeqCst);
    let fired = LEFT
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
            DISARMED => None,
            0 => Some(DISARMED),
            n => Some(n - 1),
        })
        .is_ok_and(|before| before == 0);
    if !fired {
        return None;
    }
    let keep = u64::try_from(len)
        .unwrap_or(u64::MAX)
        .saturating_mul(KEEP_PER_MILLE.load(Ordering::SeqCst))
        / 1000;
    Some(usize::try_from(keep).unwrap_or(len).min(len))
}

/// The power is gone: unwind without running anything else of the agent.
/// Only reachable once a test armed the switch; never on input.
#[allow(clippy::panic)]
pub(crate) fn cut(what: &'static str) -> ! {
    std::panic::panic_any(PowerCut { what })
}

/// A point without bytes (between two steps of a write).
pub(crate) fn between(what: &'static str) {
    if point(0).is_some() {
        cut(what);
    }
}
