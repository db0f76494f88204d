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
/// at entry 1 from the genesis hash. Memory stays constant in the number of
/// entries.
pub fn verify<I>(
    entries: I,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    anchor: Option<&Checkpoint>,
) -> Result<Summary, Tamper>
where
    I: IntoIterator<Item = Entry>,
{
    let mut sorted: Vec<&Checkpoint> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    if let Some(anchor) = anchor {
        sorted.retain(|c| c.seq > anchor.seq);
        if !anchor.signature_is_valid(key) {
            return Err(Tamper {
                seq: anchor.seq,
                kind: TamperKind::BadSignature,
            });
        }
    }
    for checkpoint in &sorted {
        if !checkpoint.signature_is_valid(key) {
            return Err(Tamper {
                seq: checkpoint.seq,
                kind: TamperKind::BadSignature,
            });
        }
    }

    let (mut expected_seq, mut prev) = match anchor {
        Some(anchor) => (anchor.seq + 1, anchor.hash),
        None => (1, Hash::GENESIS),
    };
    let mut pending = sorted.iter().peekable();
    let mut summary = Summary {
        entries: 0,
        first_seq: None,
        last_seq: None,
        checkpoints: 0,
        unsigned_tail: 0,
    };
    let mut last_signed = anchor.map_or(0, |a| a.seq);
    for entry in entries {
        let seq = entry.seq;
        if seq != expected_seq {
            return Err(Tamper {
                seq,
                kind: TamperKind::SequenceBroken {
                    expected: expected_seq,
                },
            });
        }
        if chain_hash(&entry.prev_hash, seq, &entry.event) != entry.hash {
            return Err(Tamper {
                seq,
                kind: TamperKind::Edited,
            });
        }
        if entry.prev_hash != prev {
            let kind = if summary.entries == 0 && anchor.is_some() {
                TamperKind::AnchorMismatch
            } else {
                TamperKind::BrokenLink
            };
            return Err(Tamper { seq, kind });
        }
        while let Some(checkpoint) = pending.next_if(|c| c.seq <= seq) {
            if checkpoint.seq < seq || checkpoint.hash != entry.hash {
                return Err(Tamper {
                    seq: checkpoint.seq,
                    kind: TamperKind::CheckpointMismatch,
                });
            }
            summary.checkpoints += 1;
            last_signed = seq;
        }
        summary.first_seq.get_or_insert(seq);
        summary.last_seq = Some(seq);
        summary.entries += 1;
        prev = entry.hash;
        expected_seq = seq + 1;
    }
    if let Some(checkpoint) = pending.next() {
        return Err(Tamper {
            seq: checkpoint.seq,
            kind: TamperKind::Truncated {
                checkpoint_seq: checkpoint.seq,
                last_seq: summary.last_seq.unwrap_or(last_signed),
            },
        });
    }
    summary.unsigned_tail = summary.last_seq.map_or(0, |last| last - last_signed);
    Ok(summary)
}
