//! Detection rules against fixtures of what a server sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use fleetward_core::DeviceId;
use fleetward_core::detect::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

/// `"dev-1@10.0.0.1+30"`: device, address, seconds after T0.
fn sightings(fixture: &[&str]) -> Vec<Sighting> {
    fixture
        .iter()
        .map(|line| {
            let (device, rest) = line.split_once('@').unwrap();
            let (address, secs) = rest.split_once('+').unwrap();
            Sighting {
                device: DeviceId::parse(device).unwrap(),
                address: address.into(),
                at: T0 + Duration::seconds(secs.parse().unwrap()),
            }
        })
        .collect()
}

#[test]
fn clones_alternate_between_addresses_and_moves_do_not() {
    let policy = DetectionPolicy::default();
    let check = |fixture: &[&str], expected: &[&str]| {
        let found: Vec<String> = clones(&sightings(fixture), &policy)
            .into_iter()
            .map(|f| f.device.to_string())
            .collect();
        assert_eq!(found, expected, "{fixture:?}");
    };
    check(&["d1@a+0", "d1@a+60", "d1@a+120"], &[]);
    check(&["d1@a+0", "d1@b+60", "d1@b+120", "d1@b+180"], &[]);
    check(&["d1@a+0", "d1@b+30", "d1@a+60", "d1@b+90"], &["d1"]);
    // The same flip-flop, but hours apart, is a device moving between networks.
    check(&["d1@a+0", "d1@b+3600", "d1@a+7200"], &[]);
    // Order of arrival does not matter; other devices do not mix in.
    check(
        &["d2@x+0", "d1@b+30", "d1@a+0", "d2@x+30", "d1@a+60"],
        &["d1"],
    );
    check(&["d1@a+0", "d1@b+30", "d1@c+60"], &[]);
}

#[test]
fn auth_failure_bursts_per_source() {
    let policy = DetectionPolicy {
        auth_burst_count: 5,
        auth_burst_window: Duration::seconds(10),
        ..DetectionPolicy::default()
    };
    let failures = |source: &str, every_ms: i64, n: i64| -> Vec<(String, OffsetDateTime)> {
        (0..n)
            .map(|i| (source.to_owned(), T0 + Duration::milliseconds(i * every_ms)))
            .collect()
    };
    let mut seen = failures("198.51.100.7", 500, 12);
    seen.extend(failures("203.0.113.1", 3000, 12));
    seen.extend(failures("192.0.2.9", 100, 5));
    let bursts = auth_failure_bursts(&seen, &policy);
    assert_eq!(bursts, vec![("198.51.100.7".to_owned(), 12)]);
}

#[test]
fn reported_versions() {
    let released: BTreeSet<String> = ["1.2.0", "1.3.0", "2.0.0"].map(String::from).into();
    let check = |reported: &str, previous: Option<&str>, expected: VersionVerdict| {
        assert_eq!(
            judge_version(reported, previous, &released),
            expected,
            "{reported} after {previous:?}"
        );
    };
    check("1.3.0", Some("1.2.0"), VersionVerdict::Expected);
    check("1.3.0", None, VersionVerdict::Expected);
    check("1.3.0", Some("1.3.0"), VersionVerdict::Expected);
    check(
        "1.2.0",
        Some("2.0.0"),
        VersionVerdict::Downgrade {
            from: "2.0.0".into(),
        },
    );
    check("1.3.0-dev", Some("1.2.0"), VersionVerdict::Unapproved);
    check("9.9.9", Some("99.0.0"), VersionVerdict::Unapproved);
}

#[test]
fn poll_schedules() {
    let policy = DetectionPolicy::default();
    let interval = Duration::minutes(30);
    let check = |gap_minutes: i64, expected: Schedule| {
        assert_eq!(
            schedule(Duration::minutes(gap_minutes), interval, &policy),
            expected,
            "{gap_minutes} min"
        );
    };
    check(30, Schedule::OnTime);
    check(8, Schedule::OnTime);
    check(7, Schedule::TooEarly);
    check(0, Schedule::TooEarly);
    check(120, Schedule::OnTime);
    check(121, Schedule::TooLate);
    assert!(is_silent(T0, interval, T0 + Duration::hours(3), &policy));
    assert!(!is_silent(T0, interval, T0 + Duration::hours(1), &policy));
}

#[test]
fn telemetry_outliers_against_the_devices_own_baseline() {
    let policy = DetectionPolicy::default();
    let mut cpu = Baseline::default();
    // A quiet device: 10 % CPU ± 2.
    for i in 0..100 {
        cpu.add(10.0 + f64::from(i % 5) - 2.0);
    }
    assert!((cpu.mean() - 10.0).abs() < 1e-9);
    assert_eq!(cpu.outlier(12.0, &policy), None);
    let z = cpu.outlier(95.0, &policy).expect("a miner stands out");
    assert!(z > 4.0);
    assert!(cpu.outlier(-50.0, &policy).unwrap() < -4.0);
    assert_eq!(cpu.outlier(f64::NAN, &policy), None);

    // A young baseline judges nothing.
    let mut young = Baseline::default();
    for _ in 0..10 {
        young.add(1.0);
    }
    assert_eq!(young.outlier(1000.0, &policy), None);

    // A perfectly flat baseline still has a floor under its spread.
    let mut flat = Baseline::default();
    for _ in 0..50 {
        flat.add(100.0);
    }
    assert_eq!(flat.outlier(102.0, &policy), None);
    assert!(flat.outlier(110.0, &policy).is_some());

    // Garbage from a device does not poison the baseline.
    flat.add(f64::INFINITY);
    assert_eq!(flat.samples, 50);
}
