//! The hash chain and signed checkpoints.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Event;

/// A SHA-256 chain hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// What the first entry chains from.
    pub const GENESIS: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Hash(bytes))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// One logged event in its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    pub prev_hash: Hash,
    pub event: Event,
    /// [`chain_hash`] of `prev_hash`, `seq` and `event`.
    pub hash: Hash,
}

/// The hash of an entry: SHA-256 over a domain tag, the previous hash, the
/// sequence number and every field of the event, each length-prefixed.
pub fn chain_hash(prev: &Hash, seq: u64, event: &Event) -> Hash {
    chain_hash_fields(prev, seq, &EventFields::of(event))
}

/// An event's fields as stored bytes, borrowed: what [`chain_hash`] covers.
///
/// Verification hashes the stored bytes through this view instead of
/// decoding each row into an [`Event`]: no allocation or UTF-8 check per
/// entry, and a field edited into something that no longer parses (an
/// unknown kind, say) is caught as an edit like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields<'a> {
    pub kind: &'a [u8],
    pub severity: &'a [u8],
    pub device: Option<&'a [u8]>,
    pub source: Option<&'a [u8]>,
    pub server_time_ms: i64,
    pub device_time_ms: Option<i64>,
    pub message: &'a [u8],
    pub detail: &'a [u8],
}

impl<'a> EventFields<'a> {
    pub fn of(event: &'a Event) -> EventFields<'a> {
        EventFields {
            kind: event.kind.as_str().as_bytes(),
            severity: event.severity.as_str().as_bytes(),
            device: event.device.as_ref().map(|d| d.as_str().as_bytes()),
            source: event.source.as_deref().map(str::as_bytes),
            server_time_ms: event.server_time_ms,
            device_time_ms: event.device_time_ms,
            message: event.message.as_bytes(),
            detail: event.detail.as_bytes(),
        }
    }
}

/// One stored entry, borrowed (see [`EventFields`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub seq: u64,
    pub prev_hash: Hash,
    pub event: EventFields<'a>,
    pub hash: Hash,
}

impl<'a> EntryFields<'a> {
    pub fn of(entry: &'a Entry) -> EntryFields<'a> {
        EntryFields {
            seq: entry.seq,
            prev_hash: entry.prev_hash,
            event: EventFields::of(&entry.event),
            hash: entry.hash,
        }
    }
}

/// [`chain_hash`] of a borrowed event.
pub fn chain_hash_fields(prev: &Hash, seq: u64, event: &EventFields<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"fleetward-event-v1\0");
    h.update(prev.0);
    h.update(seq.to_be_bytes());
    field(&mut h, event.kind);
    field(&mut h, event.severity);
    optional(&mut h, event.device);
    optional(&mut h, event.source);
    h.update(event.server_time_ms.to_be_bytes());
    match event.device_time_ms {
        Some(ms) => {
            h.update([1]);
            h.update(ms.to_be_bytes());
        }
        None => h.update([0]),
    }
    field(&mut h, event.message);
    field(&mut h, event.detail);
    Hash(h.finalize().into())
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn optional(h: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            h.update([1]);
            field(h, bytes);
        }
        None => h.update([0]),
    }
}

/// The head of a chain: where the next entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub next_seq: u64,
    pub last_hash: Hash,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            next_seq: 1,
            last_hash: Hash::GENESIS,
        }
    }

    /// Continues after a stored entry (or an anchor checkpoint).
    pub fn after(seq: u64, hash: Hash) -> Chain {
        Chain {
            next_seq: seq + 1,
            last_hash: hash,
        }
    }

    pub fn append(&mut self, event: Event) -> Entry {
        let seq = self.next_seq;
        let hash = chain_hash(&self.last_hash, seq, &event);
        let entry = Entry {
            seq,
            prev_hash: self.last_hash,
            event,
            hash,
        };
        self.next_seq += 1;
        self.last_hash = hash;
        entry
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

/// A signed statement: "the chain's entry `seq` has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: Hash,
    /// Unix milliseconds.
    pub signed_at_ms: i64,
    pub signature: [u8; 64],
}

impl Checkpoint {
    fn message(seq: u64, hash: &Hash, signed_at_ms: i64) -> Vec<u8> {
        let mut message = b"fleetward-checkpoint-v1\0".to_vec();
        message.extend_from_slice(&seq.to_be_bytes());
        message.extend_from_slice(&hash.0);
        message.extend_from_slice(&signed_at_ms.to_be_bytes());
        message
    }

    pub fn signature_is_valid(&self, key: &VerifyingKey) -> bool {
        let message = Self::message(self.seq, &self.hash, self.signed_at_ms);
        key.verify(&message, &Signature::from_bytes(&self.signature))
            .is_ok()
    }
}

/// The server's checkpoint key.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl CheckpointSigner {
    pub fn from_bytes(secret: &[u8; 32]) -> CheckpointSigner {
        CheckpointSigner {
            key: SigningKey::from_bytes(secret),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, seq: u64, hash: Hash, signed_at_ms: i64) -> Checkpoint {
        let message = Checkpoint::message(seq, &hash, signed_at_ms);
        Checkpoint {
            seq,
            hash,
            signed_at_ms,
            signature: self.key.sign(&message).to_bytes(),
        }
    }
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("CheckpointSigner")
            .field("public", &hex::encode(self.key.verifying_key().as_bytes()))
            .finish()
    }
}
