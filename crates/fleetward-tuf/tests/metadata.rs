//! Building and checking metadata the way the server and the CLI do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use fleetward_tuf::*;
use time::{Duration, OffsetDateTime, macros::datetime};

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

fn in_days(days: i64) -> Expiry {
    Expiry::at(NOW + Duration::days(days))
}

/// Root keys 1..=3 (threshold 2), targets 4..=6 (threshold 2), snapshot 7, timestamp 8.
fn root(version: u64, root_keys: &[u8], threshold: u64) -> Root {
    let public = |ns: &[u8]| ns.iter().map(|n| key(*n).public()).collect::<Vec<_>>();
    Root::new(
        version,
        in_days(365),
        &[
            (ROLE_ROOT, &public(root_keys), threshold),
            (ROLE_TARGETS, &public(&[4, 5, 6]), 2),
            (ROLE_SNAPSHOT, &public(&[7]), 1),
            (ROLE_TIMESTAMP, &public(&[8]), 1),
        ],
    )
    .unwrap()
}

fn signed_bytes<T: Role>(meta: T, signers: &[u8]) -> Vec<u8> {
    let keys: Vec<SigningKey> = signers.iter().map(|n| key(*n)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    Signed::sign(meta, &refs).unwrap().to_bytes().unwrap()
}

fn targets(version: u64, expires: Expiry) -> Targets {
    let mut files = BTreeMap::new();
    files.insert(
        "rev2/1.4.0/fw.img".to_owned(),
        TargetFile {
            length: 3,
            hashes: BTreeMap::from([("sha256".to_owned(), "ab".repeat(32))]),
            custom: None,
        },
    );
    Targets::new(version, expires, files)
}

#[test]
fn initial_root_needs_its_own_threshold() {
    let check = |signers: &[u8], expected: Result<u64>| {
        let got = check_initial_root(&signed_bytes(root(1, &[1, 2, 3], 2), signers), NOW)
            .map(|r| r.version);
        assert_eq!(got, expected, "signed by {signers:?}");
    };
    check(&[1, 2], Ok(1));
    check(&[1, 2, 3], Ok(1));
    let below = |valid| {
        Err(TufError::BelowThreshold {
            role: "root".into(),
            valid,
            threshold: 2,
        })
    };
    check(&[1], below(1));
    check(&[1, 9], below(1));
    check(&[4, 5], below(0));
}

#[test]
fn a_key_signing_twice_counts_once() {
    let mut envelope = Signed::sign(root(1, &[1, 2, 3], 2), &[&key(1)]).unwrap();
    let copy = envelope.signatures[0].clone();
    envelope.signatures.push(copy);
    let bytes = envelope.to_bytes().unwrap();
    assert!(matches!(
        check_initial_root(&bytes, NOW),
        Err(TufError::BelowThreshold { valid: 1, .. })
    ));
}

#[test]
fn root_rotation_needs_old_and_new_thresholds_and_the_next_version() {
    let trusted = root(1, &[1, 2, 3], 2);
    // The new root replaces root keys 1..3 by 10..12.
    let check = |version: u64, signers: &[u8], ok: bool| {
        let result = check_root_update(
            &trusted,
            &signed_bytes(root(version, &[10, 11, 12], 2), signers),
            NOW,
        );
        assert_eq!(result.is_ok(), ok, "v{version} by {signers:?}: {result:?}");
        result
    };
    let _ = check(2, &[1, 2, 10, 11], true);
    let _ = check(2, &[1, 10, 11], false); // old threshold missed
    let _ = check(2, &[1, 2, 10], false); // new threshold missed
    assert!(matches!(
        check(3, &[1, 2, 10, 11], false),
        Err(TufError::VersionNotIncreasing { .. })
    ));
    let _ = check(1, &[1, 2, 10, 11], false);
}

#[test]
fn targets_checks() {
    let root = root(1, &[1, 2, 3], 2);
    let check = |bytes: Vec<u8>, current: Option<u64>, expected: &str| {
        let got = match check_targets(&root, &bytes, current, NOW) {
            Ok(t) => format!("ok v{}", t.version),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expected), "{got} !~ {expected}");
    };
    check(
        signed_bytes(targets(1, in_days(30)), &[4, 5]),
        None,
        "ok v1",
    );
    check(
        signed_bytes(targets(3, in_days(30)), &[4, 5, 6]),
        Some(2),
        "ok v3",
    );
    check(
        signed_bytes(targets(1, in_days(30)), &[4]),
        None,
        "1 valid signature(s) from its keys; it needs 2",
    );
    check(
        signed_bytes(targets(1, in_days(30)), &[1, 2, 3]),
        None,
        "0 valid signature(s)",
    );
    check(
        signed_bytes(targets(1, in_days(-1)), &[4, 5]),
        None,
        "expired at",
    );
    check(
        signed_bytes(targets(2, in_days(30)), &[4, 5]),
        Some(2),
        "version 2 does not follow version 2",
    );
    check(
        signed_bytes(targets(1, in_days(30)), &[4, 5]),
        Some(2),
        "version 1 does not follow version 2",
    );
    check(
        signed_bytes(root.clone(), &[4, 5]),
        None,
        "expected targets metadata, got \"root\"",
    );
    check(b"{not json".to_vec(), None, "malformed");
    let mut bad_name = targets(1, in_days(30));
    let file = bad_name.targets.values().next().unwrap().clone();
    bad_name.targets.insert("../etc/passwd".to_owned(), file);
    check(signed_bytes(bad_name, &[4, 5]), None, "target name");
}

#[test]
fn tampering_after_signing_breaks_every_signature() {
    let root = root(1, &[1, 2, 3], 2);
    let bytes = signed_bytes(targets(1, in_days(30)), &[4, 5]);
    let tampered = String::from_utf8(bytes)
        .unwrap()
        .replace("\"length\":3", "\"length\":4");
    assert!(matches!(
        check_targets(&root, tampered.as_bytes(), None, NOW),
        Err(TufError::BelowThreshold { valid: 0, .. })
    ));
}

#[test]
fn signatures_cover_unknown_fields_as_received() {
    // A field this code does not know still counts: the signature is over
    // the object as received, and removing the field breaks it.
    let root = root(1, &[1, 2, 3], 2);
    let mut value = serde_json::to_value(targets(1, in_days(30))).unwrap();
    value["x-extra"] = serde_json::json!("kept");
    let message = canonical(&value).unwrap();
    let signatures = [4u8, 5]
        .iter()
        .map(|n| Signature {
            keyid: key(*n).key_id().unwrap(),
            sig: hex::encode(key(*n).sign(&message)),
        })
        .collect::<Vec<_>>();
    let envelope = serde_json::json!({"signatures": signatures, "signed": value});
    let bytes = canonical(&envelope).unwrap();
    assert!(check_targets(&root, &bytes, None, NOW).is_ok());
    let mut stripped = envelope.clone();
    stripped["signed"]
        .as_object_mut()
        .unwrap()
        .remove("x-extra");
    assert!(check_targets(&root, &canonical(&stripped).unwrap(), None, NOW).is_err());
}

#[test]
fn timestamp_pins_snapshot_bytes_and_is_refreshed_at_half_life() {
    let snapshot = snapshot_for(4, in_days(7), 3);
    let snapshot_bytes = signed_bytes(snapshot, &[7]);
    let timestamp = timestamp_for(9, in_days(1), 4, &snapshot_bytes);
    let meta = &timestamp.meta["snapshot.json"];
    assert_eq!(meta.version, 4);
    assert_eq!(meta.length, Some(snapshot_bytes.len() as u64));
    let day = Duration::days(1);
    for (hours_left, due) in [
        (24, false),
        (13, false),
        (12, false),
        (11, true),
        (0, true),
        (-5, true),
    ] {
        let expires = Expiry::at(NOW + Duration::hours(hours_left));
        assert_eq!(
            timestamp_refresh_due(NOW, expires, day),
            due,
            "{hours_left}h left"
        );
    }
}

#[test]
fn expiry_is_written_in_whole_utc_seconds() {
    let at = datetime!(2027-01-02 03:04:05.678 UTC);
    assert_eq!(Expiry::at(at).to_rfc3339(), "2027-01-02T03:04:05Z");
    assert_eq!(
        Expiry::parse("2027-01-02T03:04:05Z").unwrap(),
        Expiry::at(at)
    );
    assert!(Expiry::parse("2027-01-02 03:04:05").is_err());
}

#[test]
fn director_names_exactly_one_image() {
    let image = DirectorImage {
        device_id: "dev-1".into(),
        target_name: "rev2/1.4.0/fw.img".into(),
        length: 3,
        sha256: "ab".repeat(32),
        sha512: "cd".repeat(64),
        release_version: "1.4.0".into(),
        hardware: "rev2".into(),
    };
    let meta = director_targets(5, in_days(1), &image);
    assert_eq!(meta.targets.len(), 1);
    let file = &meta.targets["rev2/1.4.0/fw.img"];
    assert_eq!(file.length, 3);
    assert_eq!(file.hashes["sha512"], "cd".repeat(64));
    assert_eq!(file.custom.as_ref().unwrap()["hardware"], "rev2");
}

#[test]
fn root_consistency() {
    let public = key(1).public();
    let check = |roles: &[(&str, &[PublicKey], u64)], expected: &str| {
        let got = Root::new(1, in_days(1), roles).map(|_| "ok".to_owned());
        let got = got.unwrap_or_else(|e| e.to_string());
        assert!(got.contains(expected), "{got} !~ {expected}");
    };
    let one = std::slice::from_ref(&public);
    check(
        &[
            (ROLE_ROOT, one, 1),
            (ROLE_TARGETS, one, 1),
            (ROLE_SNAPSHOT, one, 1),
            (ROLE_TIMESTAMP, one, 1),
        ],
        "ok",
    );
    check(
        &[
            (ROLE_ROOT, one, 2),
            (ROLE_TARGETS, one, 1),
            (ROLE_SNAPSHOT, one, 1),
            (ROLE_TIMESTAMP, one, 1),
        ],
        "root threshold 2 exceeds",
    );
    check(
        &[
            (ROLE_ROOT, one, 0),
            (ROLE_TARGETS, one, 1),
            (ROLE_SNAPSHOT, one, 1),
            (ROLE_TIMESTAMP, one, 1),
        ],
        "threshold is 0",
    );
    check(&[(ROLE_ROOT, one, 1)], "no targets role");
}
