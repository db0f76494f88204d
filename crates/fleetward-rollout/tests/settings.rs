//! Rollout settings as operators type them, execution ids and the fleet
//! rollback rule, as tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleetward_core::ReleaseState as S;
use fleetward_rollout::*;

fn settings(edit: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings::default();
    edit(&mut s);
    s
}

#[test]
fn every_setting_is_checked() {
    let check = |s: Settings, expected: Result<(), &str>| match (s.to_policy(), expected) {
        (Ok(policy), Ok(())) => {
            // Normalised settings describe the same policy.
            assert_eq!(Settings::from_policy(&policy).to_policy().unwrap(), policy);
        }
        (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{s:?}: {e}"),
        (got, want) => panic!("{s:?}: got {got:?}, want {want:?}"),
    };
    check(Settings::default(), Ok(()));
    check(
        Settings {
            phases: Some("1%,10%,50%,100%".into()),
            soak: Some("1h30m".into()),
            success_threshold: Some("99.5%".into()),
            max_failures: Some("2%".into()),
            max_failures_count: Some(3),
            rate: Some("100/min".into()),
            window: Some("Mon-Fri 02:00-05:00 UTC".into()),
            timeout: Some("2h".into()),
            retries: Some(2),
            continuous: true,
        },
        Ok(()),
    );
    check(
        settings(|s| s.phases = Some("10%,5%,100%".into())),
        Err("must grow"),
    );
    check(
        settings(|s| s.phases = Some("10%,50%".into())),
        Err("last phase must be 100%"),
    );
    check(settings(|s| s.soak = Some("soon".into())), Err("--soak"));
    check(
        settings(|s| s.success_threshold = Some("0%".into())),
        Err("--success-threshold"),
    );
    check(
        settings(|s| s.success_threshold = Some("101%".into())),
        Err("more than 100%"),
    );
    check(
        settings(|s| s.max_failures = Some("-5%".into())),
        Err("--max-failures"),
    );
    check(settings(|s| s.rate = Some("0/min".into())), Err("--rate"));
    check(
        settings(|s| s.window = Some("Mon-Fri 05:00-05:00".into())),
        Err("--window"),
    );
    check(
        settings(|s| s.window = Some("Funday 02:00-05:00".into())),
        Err("--window"),
    );
    check(settings(|s| s.timeout = Some("0".into())), Err("--timeout"));
    check(settings(|s| s.retries = Some(11)), Err("--retries"));
}

#[test]
fn durations_print_as_they_parse() {
    for (secs, text) in [(0, "0"), (45, "45s"), (5400, "1h30m"), (90_061, "1d1h1m1s")] {
        let d = std::time::Duration::from_secs(secs);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text, "--x").unwrap(), d);
    }
}

#[test]
fn execution_ids() {
    let check = |raw: &str, expected: Option<(u64, u32)>| {
        let parsed = ExecutionId::parse(raw);
        assert_eq!(parsed.map(|id| (id.row, id.attempt)), expected, "{raw}");
        if let Some(id) = parsed {
            assert_eq!(id.to_string(), raw);
        }
    };
    check("ex-12-1", Some((12, 1)));
    check("ex-1-3", Some((1, 3)));
    check("ex-01-1", None);
    check("ex-1", None);
    check("ex--1", None);
    check("ex-1-1-1", None);
    check("ex-a-1", None);
    check("ex-+1-1", None);
    check("ex-1-99999999999", None);
    check("ex-99999999999999999999-1", None);
    check("12-1", None);
    check("", None);
}

#[test]
fn fleet_rollback_goes_to_the_previous_published_release_only() {
    let check = |current: &str, releases: &[(&str, S)], expected: Result<&str, &str>| {
        let releases: Vec<(String, S)> = releases
            .iter()
            .map(|(v, s)| ((*v).to_owned(), *s))
            .collect();
        match (rollback_target(current, &releases), expected) {
            (Ok(v), Ok(want)) => assert_eq!(v, want),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
            (got, want) => panic!("{current}: got {got:?}, want {want:?}"),
        }
    };
    let published = S::Published;
    check(
        "1.4.0",
        &[("1.3.0", published), ("1.4.0", published)],
        Ok("1.3.0"),
    );
    check(
        "1.10.0",
        &[
            ("1.9.0", published),
            ("1.2.0", published),
            ("1.11.0", published),
        ],
        Ok("1.9.0"),
    );
    // Drafts and merely signed releases never reached devices: skipped.
    check(
        "1.4.0",
        &[
            ("1.3.0", published),
            ("1.3.5", S::Draft),
            ("1.3.6", S::Signed),
        ],
        Ok("1.3.0"),
    );
    // A deprecated or revoked release below is an anti-rollback floor.
    check(
        "1.4.0",
        &[("1.2.0", published), ("1.3.0", S::Deprecated)],
        Err("deprecated"),
    );
    check(
        "1.4.0",
        &[("1.2.0", published), ("1.3.0", S::Revoked)],
        Err("anti-rollback"),
    );
    check("1.4.0", &[("1.5.0", published)], Err("no release"));
    check("1.4.0", &[], Err("no release"));
}
