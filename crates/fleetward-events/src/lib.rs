//! The security-event log, as pure functions.
//!
//! Every security-relevant thing that happens (an enrolment, a refused
//! handshake, an operator's change, a verification failure a device reports)
//! becomes an [`Event`] appended to one log. The log must stay trustworthy
//! against someone who holds the database file, so:
//!
//! - each [`Entry`] carries the hash of the one before ([`chain_hash`]): an
//!   edited, deleted or reordered entry breaks the chain at that point;
//! - the server periodically signs a [`Checkpoint`] (sequence number and
//!   chain hash, ed25519): rewriting the chain consistently from some point
//!   on no longer matches the checkpoints, and a truncated log misses the
//!   entries its last checkpoint covers;
//! - [`verify`] checks all of it from the entries alone, streaming, offline
//!   (from the database or an export) and names the first bad entry.
//!
//! Pruning old events keeps the rest verifiable: the checkpoint at the
//! pruning point becomes the *anchor* the remaining entries chain from.
//!
//! Hashes cover a length-prefixed binary encoding of every field, not JSON,
//! so there is exactly one byte string per event and no canonicalisation to
//! get wrong.

mod chain;
mod event;
mod verify;

pub use chain::{
    Chain, Checkpoint, CheckpointSigner, Entry, EntryFields, EventFields, Hash, chain_hash,
    chain_hash_fields,
};
pub use event::{Event, EventError, EventKind, Severity};
pub use verify::{Summary, Tamper, TamperKind, Verifier, verify};
