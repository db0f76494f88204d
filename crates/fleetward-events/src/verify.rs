//! Offline verification of a log: chain, checkpoints, anchor.

use ed25519_dalek::VerifyingKey;

use crate::{Checkpoint, Entry, Hash, chain_hash};

/// What a clean log looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub checkpoints: u64,
    /// Entries after the last checkpoint: chained, but not yet signed, so a
    /// holder of the database could rewrite them without detection.
    pub unsigned_tail: u64,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq}: {kind}")]
pub struct Tamper {
    /// The first entry (or checkpoint position) that does not verify.
    pub seq: u64,
    pub kind: TamperKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TamperKind {
    #[error("its content does not match its hash (edited)")]
    Edited,
    #[error("expected entry {expected} here (entries deleted or reordered)")]
    SequenceBroken { expected: u64 },
    #[error("it does not chain from the entry before it (deleted, inserted or reordered)")]
    BrokenLink,
    #[error("the signed checkpoint for this entry names another hash (the chain was rewritten)")]
    CheckpointMismatch,
    #[error("the checkpoint's signature is not valid for the server key")]
    BadSignature,
    #[error(
        "a signed checkpoint covers entry {checkpoint_seq} but the log ends at {last_seq} (truncated)"
    )]
    Truncated { checkpoint_seq: u64, last_seq: u64 },
    #[error("the first entry does not chain from the anchor checkpoint of the pruned prefix")]
    AnchorMismatch,
}

/// Verifies `entries` (in stored order) against `checkpoints` (any order)
/// and the server's checkpoint key. `anchor` is the checkpoint that covers
/// a pruned prefix, if entries were pruned; without one the log must start
/// at entry 1 from the genesis hash.
pub fn verify<I>(
    entries: I,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
) -> Result<Summary, Tamper>
where
    I: IntoIterator<Item = Entry>,
{
    let mut verifier = Verifier::new(checkpoints, key, anchor)?;
    for entry in entries {
        verifier.push(&entry)?;
    }
    verifier.finish()
}

/// [`verify`] one entry at a time, for logs read in pages from a database
/// or a file: memory stays constant in the number of entries.
#[derive(Debug)]
pub struct Verifier {
    /// Checkpoints not reached yet, highest first (popped from the end).
    pending: Vec<Checkpoint>,
    expected_seq: u64,
    prev: Hash,
    anchored: bool,
    last_signed: u64,
    summary: Summary,
}

impl Verifier {
    /// Checks every signature up front; a forged checkpoint fails here.
    pub fn new(
        checkpoints: &[Checkpoint],
        key: &VerifyingKey,
        anchor: Option<&Checkpoint>,
    ) -> Result<Verifier, Tamper> {
        let mut pending: Vec<Checkpoint> = checkpoints
            .iter()
            .filter(|c| anchor.is_none_or(|a| c.seq > a.seq))
            .cloned()
            .collect();
        for checkpoint in anchor.into_iter().chain(pending.iter()) {
            if !checkpoint.signature_is_valid(key) {
                return Err(Tamper {
                    seq: checkpoint.seq,
                    kind: TamperKind::BadSignature,
                });
            }
        }
        pending.sort_by_key(|c| std::cmp::Reverse(c.seq));
        let (expected_seq, prev) = match anchor {
            Some(anchor) => (anchor.seq + 1, anchor.hash),
            None => (1, Hash::GENESIS),
        };
        Ok(Verifier {
            pending,
            expected_seq,
            prev,
            anchored: anchor.is_some(),
            last_signed: anchor.map_or(0, |a| a.seq),
            summary: Summary {
                entries: 0,
                first_seq: None,
                last_seq: None,
                checkpoints: 0,
                unsigned_tail: 0,
            },
        })
    }

    pub fn push(&mut self, entry: &Entry) -> Result<(), Tamper> {
        let seq = entry.seq;
        if seq != self.expected_seq {
            return Err(Tamper {
                seq,
                kind: TamperKind::SequenceBroken {
                    expected: self.expected_seq,
                },
            });
        }
        if chain_hash(&entry.prev_hash, seq, &entry.event) != entry.hash {
            return Err(Tamper {
                seq,
                kind: TamperKind::Edited,
            });
        }
        if entry.prev_hash != self.prev {
            let kind = if self.summary.entries == 0 && self.anchored {
                TamperKind::AnchorMismatch
            } else {
                TamperKind::BrokenLink
            };
            return Err(Tamper { seq, kind });
        }
        while self.pending.last().is_some_and(|c| c.seq <= seq) {
            let Some(checkpoint) = self.pending.pop() else {
                break;
            };
            if checkpoint.seq < seq || checkpoint.hash != entry.hash {
                return Err(Tamper {
                    seq: checkpoint.seq,
                    kind: TamperKind::CheckpointMismatch,
                });
            }
            self.summary.checkpoints += 1;
            self.last_signed = seq;
        }
        self.summary.first_seq.get_or_insert(seq);
        self.summary.last_seq = Some(seq);
        self.summary.entries += 1;
        self.prev = entry.hash;
        self.expected_seq = seq + 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Summary, Tamper> {
        if let Some(checkpoint) = self.pending.pop() {
            return Err(Tamper {
                seq: checkpoint.seq,
                kind: TamperKind::Truncated {
                    checkpoint_seq: checkpoint.seq,
                    last_seq: self.summary.last_seq.unwrap_or(self.last_signed),
                },
            });
        }
        self.summary.unsigned_tail = self
            .summary
            .last_seq
            .map_or(0, |last| last - self.last_signed);
        Ok(self.summary)
    }
}
