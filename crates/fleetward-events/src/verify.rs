//! Offline verification of a log: chain, checkpoints, anchor.

use ed25519_dalek::VerifyingKey;

use crate::{Checkpoint, Entry, EntryFields, Hash, chain_hash_fields};

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

impl Summary {
    const EMPTY: Summary = Summary {
        entries: 0,
        first_seq: None,
        last_seq: None,
        checkpoints: 0,
        unsigned_tail: 0,
    };
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
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Checkpoints not reached yet, highest first (popped from the end).
    pending: Vec<Checkpoint>,
    expected_seq: u64,
    prev: Hash,
    anchored: bool,
    last_signed: u64,
    summary: Summary,
    /// The sequence number and previous hash this verifier starts from:
    /// what the part before it must end with for [`Verifier::join`].
    start: (u64, Hash),
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
            start: (expected_seq, prev),
            summary: Summary::EMPTY,
        })
    }

    pub fn push(&mut self, entry: &Entry) -> Result<(), Tamper> {
        self.push_fields(&EntryFields::of(entry))
    }

    /// [`Verifier::push`] of a borrowed entry, as read from storage.
    pub fn push_fields(&mut self, entry: &EntryFields<'_>) -> Result<(), Tamper> {
        let seq = entry.seq;
        if seq != self.expected_seq {
            return Err(Tamper {
                seq,
                kind: TamperKind::SequenceBroken {
                    expected: self.expected_seq,
                },
            });
        }
        if chain_hash_fields(&entry.prev_hash, seq, &entry.event) != entry.hash {
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

    /// Splits the log this verifier would check into consecutive parts that
    /// can be checked independently (on several cores), then put back
    /// together with [`Verifier::join`]. `boundaries` are the last entry of
    /// each part but the last, with that entry's stored hash, ascending and
    /// after this verifier's start; each later part checks the entries after
    /// its boundary and the checkpoints among them. The stored hashes are
    /// taken on trust here and checked by `join`: a part must end on exactly
    /// the entry and hash the next one starts from.
    pub fn split(self, boundaries: &[(u64, Hash)]) -> Vec<Verifier> {
        // Highest first: each part takes the checkpoints up to its boundary
        // off the end.
        let mut pending = self.pending;
        let mut parts = Vec::with_capacity(boundaries.len() + 1);
        let mut part = Verifier {
            pending: Vec::new(),
            ..self
        };
        for &(boundary, hash) in boundaries {
            let up_to_boundary = pending.partition_point(|c| c.seq > boundary);
            part.pending = pending.split_off(up_to_boundary);
            let next = Verifier::resumed((boundary + 1, hash));
            parts.push(std::mem::replace(&mut part, next));
        }
        part.pending = pending;
        parts.push(part);
        parts
    }

    fn resumed(start: (u64, Hash)) -> Verifier {
        Verifier {
            pending: Vec::new(),
            expected_seq: start.0,
            prev: start.1,
            anchored: false,
            last_signed: 0,
            summary: Summary::EMPTY,
            start,
        }
    }

    /// Continues this verifier with `next`, a later part from
    /// [`Verifier::split`] that has checked its entries. `None` when they do
    /// not meet: this part did not end on the entry and hash `next` started
    /// from, or left checkpoints unmatched. Where exactly the log is wrong
    /// is then for a verification from the start to say.
    pub fn join(self, next: Verifier) -> Option<Verifier> {
        if !self.pending.is_empty() || (self.expected_seq, self.prev) != next.start {
            return None;
        }
        let checkpoints = self.summary.checkpoints + next.summary.checkpoints;
        Some(Verifier {
            pending: next.pending,
            expected_seq: next.expected_seq,
            prev: next.prev,
            anchored: self.anchored,
            last_signed: if next.summary.checkpoints > 0 {
                next.last_signed
            } else {
                self.last_signed
            },
            start: self.start,
            summary: Summary {
                entries: self.summary.entries + next.summary.entries,
                first_seq: self.summary.first_seq.or(next.summary.first_seq),
                last_seq: next.summary.last_seq.or(self.summary.last_seq),
                checkpoints,
                unsigned_tail: 0,
            },
        })
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
