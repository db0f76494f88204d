//! Tamper tests: every way someone holding the database could change the
//! log, and what `verify` says about each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleetward_core::DeviceId;
use fleetward_events::*;

fn event(n: i64) -> Event {
    Event {
        kind: if n % 3 == 0 {
            EventKind::HandshakeRefused
        } else {
            EventKind::DeviceEnrolled
        },
        severity: Severity::Info,
        device: (n % 2 == 0).then(|| DeviceId::parse(&format!("dev-{n}")).unwrap()),
        source: Some(format!("10.0.0.{}", n % 250)),
        server_time_ms: 1_764_000_000_000 + n,
        device_time_ms: (n % 5 == 0).then_some(1_764_000_000_000 + n - 3),
        message: format!("event {n}"),
        detail: "{}".into(),
    }
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_bytes(&[7; 32])
}

/// A log of `n` entries with a checkpoint every `every` entries.
fn log(n: i64, every: u64) -> (Vec<Entry>, Vec<Checkpoint>) {
    let mut chain = Chain::new();
    let signer = signer();
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 1..=n {
        let entry = chain.append(event(i));
        if entry.seq.is_multiple_of(every) {
            checkpoints.push(signer.sign(entry.seq, entry.hash, entry.event.server_time_ms));
        }
        entries.push(entry);
    }
    (entries, checkpoints)
}

fn check(
    entries: Vec<Entry>,
    checkpoints: &[Checkpoint],
    expected: Result<(u64, u64), (u64, &str)>,
) {
    let in_parts = verify_in_parts(&entries, checkpoints);
    let got = verify(entries, checkpoints, &signer().verifying_key(), None);
    match (&got, &expected) {
        (Ok(whole), Ok(_)) => assert!(
            in_parts.iter().all(|parts| parts.as_ref() == Some(whole)),
            "verified in parts: {in_parts:?}, whole: {whole:?}"
        ),
        // Parts never pass a log the whole verification refuses.
        _ => assert!(in_parts.iter().all(Option::is_none), "{in_parts:?}"),
    }
    match (got, expected) {
        (Ok(summary), Ok((count, tail))) => {
            assert_eq!((summary.entries, summary.unsigned_tail), (count, tail));
        }
        (Err(tamper), Err((seq, what))) => {
            assert_eq!(tamper.seq, seq, "{tamper}");
            assert!(
                tamper.to_string().contains(what),
                "{tamper} should mention {what:?}"
            );
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

/// The log verified in parts split at several places (as the server does
/// on several cores), each part from the stored hash before it, then
/// joined: the summary, or `None` where a part or a seam fails.
fn verify_in_parts(entries: &[Entry], checkpoints: &[Checkpoint]) -> Vec<Option<Summary>> {
    let n = entries.len();
    let cut_sets: Vec<Vec<usize>> = vec![
        vec![0],
        vec![n / 3, 2 * n / 3],
        vec![n / 2],
        vec![n.saturating_sub(2)],
    ];
    cut_sets
        .into_iter()
        .filter(|cuts| cuts.iter().all(|&cut| cut + 1 < n))
        .map(|cuts| {
            let boundaries: Vec<(u64, Hash)> = cuts
                .iter()
                .map(|&cut| (entries[cut].seq, entries[cut].hash))
                .collect();
            let verifier = Verifier::new(checkpoints, &signer().verifying_key(), None).ok()?;
            let mut parts = verifier.split(&boundaries).into_iter();
            let mut ranges = std::iter::once(0)
                .chain(cuts.iter().map(|&cut| cut + 1))
                .chain(std::iter::once(n))
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| (w[0], w[1]))
                .collect::<Vec<_>>()
                .into_iter();
            let mut checked = Vec::new();
            for part in parts.by_ref() {
                let (from, to) = ranges.next()?;
                let mut part = part;
                for entry in &entries[from..to] {
                    part.push(entry).ok()?;
                }
                checked.push(part);
            }
            let mut checked = checked.into_iter();
            let first = checked.next()?;
            checked
                .try_fold(first, |joined, next| joined.join(next))?
                .finish()
                .ok()
        })
        .collect()
}

#[test]
fn splitting_puts_each_checkpoint_in_its_part() {
    let (entries, checkpoints) = log(25, 5);
    let key = signer().verifying_key();
    let boundaries = [(7, entries[6].hash), (15, entries[14].hash)];
    let parts = Verifier::new(&checkpoints, &key, None)
        .unwrap()
        .split(&boundaries);
    let ranges = [(0, 7), (7, 15), (15, 25)];
    let mut checked = Vec::new();
    for (mut part, (from, to)) in parts.into_iter().zip(ranges) {
        for entry in &entries[from..to] {
            part.push(entry).unwrap();
        }
        checked.push(part);
    }
    let mut checked = checked.into_iter();
    let first = checked.next().unwrap();
    let joined = checked.try_fold(first, Verifier::join).unwrap();
    let summary = joined.finish().unwrap();
    assert_eq!(
        (summary.entries, summary.checkpoints, summary.unsigned_tail),
        (25, 5, 0)
    );

    // A part that stops short of its boundary does not join the next.
    let mut parts = Verifier::new(&checkpoints, &key, None)
        .unwrap()
        .split(&boundaries[..1])
        .into_iter();
    let (mut first, second) = (parts.next().unwrap(), parts.next().unwrap());
    for entry in &entries[..6] {
        first.push(entry).unwrap();
    }
    assert!(first.join(second).is_none());
}

#[test]
fn an_untouched_log_verifies() {
    let (entries, checkpoints) = log(25, 10);
    check(entries, &checkpoints, Ok((25, 5)));
    check(Vec::new(), &[], Ok((0, 0)));
}

#[test]
fn editing_an_entry_is_found() {
    let (mut entries, checkpoints) = log(25, 10);
    entries[6].event.message = "nothing to see".into();
    check(entries, &checkpoints, Err((7, "edited")));
}

#[test]
fn editing_and_rehashing_one_entry_breaks_the_next_link() {
    let (mut entries, checkpoints) = log(25, 10);
    entries[6].event.severity = Severity::Critical;
    entries[6].hash = chain_hash(&entries[6].prev_hash, 7, &entries[6].event);
    check(entries, &checkpoints, Err((8, "does not chain")));
}

#[test]
fn rewriting_the_whole_tail_consistently_misses_the_checkpoint() {
    let (entries, checkpoints) = log(25, 10);
    let mut chain = Chain::after(6, entries[5].hash);
    let mut forged: Vec<Entry> = entries[..6].to_vec();
    for entry in &entries[6..] {
        let mut event = entry.event.clone();
        event.message = "forged".into();
        forged.push(chain.append(event));
    }
    check(forged, &checkpoints, Err((10, "signed checkpoint")));
}

#[test]
fn deleting_an_entry_is_found() {
    let (mut entries, checkpoints) = log(25, 10);
    entries.remove(11);
    check(entries, &checkpoints, Err((13, "expected entry 12")));
}

#[test]
fn deleting_and_renumbering_is_found() {
    let (mut entries, checkpoints) = log(25, 10);
    entries.remove(11);
    for entry in &mut entries[11..] {
        entry.seq -= 1;
        entry.hash = chain_hash(&entry.prev_hash, entry.seq, &entry.event);
    }
    check(entries, &checkpoints, Err((12, "does not chain")));
}

#[test]
fn reordering_is_found() {
    let (mut entries, checkpoints) = log(25, 10);
    entries.swap(3, 4);
    check(entries, &checkpoints, Err((5, "expected entry 4")));
}

#[test]
fn truncating_below_a_checkpoint_is_found() {
    let (mut entries, checkpoints) = log(25, 10);
    entries.truncate(15);
    check(entries, &checkpoints, Err((20, "truncated")));
    // Cutting only the unsigned tail cannot be told apart from a shorter log:
    // that is what the unsigned-tail figure warns of.
    let (mut entries, checkpoints) = log(25, 10);
    entries.truncate(22);
    check(entries, &checkpoints, Ok((22, 2)));
}

#[test]
fn a_forged_checkpoint_signature_is_found() {
    let (entries, mut checkpoints) = log(25, 10);
    checkpoints[1].signed_at_ms += 1;
    check(entries, &checkpoints, Err((20, "signature")));
    let (entries, _) = log(25, 10);
    let other = CheckpointSigner::from_bytes(&[8; 32]);
    let foreign = other.sign(10, entries[9].hash, 0);
    check(entries, &[foreign], Err((10, "signature")));
}

#[test]
fn a_pruned_log_verifies_from_its_anchor() {
    let (entries, checkpoints) = log(25, 10);
    let key = signer().verifying_key();
    let anchor = checkpoints[0].clone();
    let kept: Vec<Entry> = entries[10..].to_vec();
    let summary = verify(kept.clone(), &checkpoints, &key, Some(&anchor)).unwrap();
    assert_eq!((summary.first_seq, summary.entries), (Some(11), 15));

    // Without the anchor, a log that starts at 11 is missing its prefix.
    let error = verify(kept.clone(), &checkpoints, &key, None).unwrap_err();
    assert_eq!(error.kind, TamperKind::SequenceBroken { expected: 1 });

    // An anchor that names another hash does not fit.
    let wrong = signer().sign(10, entries[3].hash, 0);
    let error = verify(kept, &checkpoints, &key, Some(&wrong)).unwrap_err();
    assert_eq!((error.seq, error.kind), (11, TamperKind::AnchorMismatch));
}

#[test]
fn every_field_is_covered_by_the_hash() {
    let base = event(10);
    let prev = Hash::GENESIS;
    let original = chain_hash(&prev, 1, &base);
    type Change = Box<dyn Fn(&mut Event)>;
    let changes: Vec<(&str, Change)> = vec![
        ("kind", Box::new(|e| e.kind = EventKind::Downgrade)),
        ("severity", Box::new(|e| e.severity = Severity::Low)),
        ("device", Box::new(|e| e.device = None)),
        ("source", Box::new(|e| e.source = Some("10.0.0.9".into()))),
        ("server time", Box::new(|e| e.server_time_ms += 1)),
        ("device time", Box::new(|e| e.device_time_ms = Some(1))),
        ("message", Box::new(|e| e.message.push('!'))),
        ("detail", Box::new(|e| e.detail = "{\"a\":1}".into())),
        // Moving bytes between adjacent fields must change the hash too.
        (
            "field boundary",
            Box::new(|e| {
                e.message = "event 1".into();
                e.detail = "0{}".into();
            }),
        ),
    ];
    for (what, change) in changes {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(chain_hash(&prev, 1, &changed), original, "{what}");
    }
    assert_ne!(chain_hash(&prev, 2, &base), original, "sequence number");
}

#[test]
fn bounds_on_logged_text() {
    let mut e = event(1);
    assert!(e.check().is_ok());
    e.message = "line\ninjected".into();
    assert_eq!(
        e.check(),
        Err(EventError::ControlCharacter { field: "message" })
    );
    e.message = "x".repeat(Event::MAX_MESSAGE + 1);
    assert!(matches!(
        e.check(),
        Err(EventError::TooLong {
            field: "message",
            ..
        })
    ));
    let mut e = event(1);
    e.detail = "x".repeat(Event::MAX_DETAIL + 1);
    assert!(e.check().is_err());
}

#[test]
fn kinds_and_severities_round_trip() {
    for kind in EventKind::ALL {
        assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
    }
    for severity in Severity::ALL {
        assert_eq!(Severity::parse(severity.as_str()), Some(severity));
    }
    assert!(Severity::Critical > Severity::High);
    assert_eq!(EventKind::parse("identity.Enrolled"), None);
}
