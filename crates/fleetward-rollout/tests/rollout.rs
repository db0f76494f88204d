//! Rollout decisions as specifications: each table row is one situation an
//! operator could meet and what fleetward does about it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fleetward_core::DeviceId;
use fleetward_rollout::*;
use time::macros::datetime;

fn phases(raw: &str) -> Phases {
    Phases::parse(raw).unwrap()
}

#[test]
fn percentages() {
    let check =
        |raw: &str, expected: Result<u32, &str>| match (Percent::parse(raw, "--x"), expected) {
            (Ok(p), Ok(per_million)) => assert_eq!(p.per_million(), per_million, "{raw}"),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{raw}: {e}"),
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        };
    check("1%", Ok(10_000));
    check("0.5%", Ok(5_000));
    check("0.0001%", Ok(1));
    check("100%", Ok(1_000_000));
    check(" 95 % ", Ok(950_000));
    check("95", Ok(950_000));
    check("100.5%", Err("more than 100%"));
    check("101%", Err("more than 100%"));
    check("-1%", Err("not a percentage"));
    check("1e2%", Err("not a percentage"));
    check("0.00001%", Err("not a percentage"));
    check("", Err("not a percentage"));
    check("%", Err("not a percentage"));
    assert_eq!(
        Percent::parse("12.50%", "--x").unwrap().to_string(),
        "12.5%"
    );
}

#[test]
fn phase_lists() {
    let check = |raw: &str, expected: Result<&str, &str>| match (Phases::parse(raw), expected) {
        (Ok(p), Ok(printed)) => assert_eq!(p.to_string(), printed),
        (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{raw}: {e}"),
        (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
    };
    check("1%,10%,50%,100%", Ok("1%,10%,50%,100%"));
    check("100%", Ok("100%"));
    check("5%,20%", Ok("5%,20%"));
    check("10%,5%", Err("must grow"));
    check("10%,10%", Err("must grow"));
    check("0%,100%", Err("must grow"));
    check("", Err("not a percentage"));
    check("1%,,100%", Err("not a percentage"));
    let many: Vec<String> = (1..=21).map(|n| format!("{n}%")).collect();
    check(&many.join(","), Err("at most 20 phases"));
}

#[test]
fn phase_membership_is_stable_and_proportional() {
    let plan = phases("1%,10%,50%,100%");
    let devices: Vec<DeviceId> = (0..100_000)
        .map(|n| DeviceId::parse(&format!("dev-{n}")).unwrap())
        .collect();
    let mut counts = [0u32; 4];
    for device in &devices {
        let phase = phase_of("r-1", device, &plan).expect("100% covers every device");
        assert_eq!(phase_of("r-1", device, &plan), Some(phase), "stable");
        counts[phase] += 1;
    }
    // Expected 1 %, 9 %, 40 %, 50 %; allow five standard deviations.
    for (got, share) in counts.iter().zip([0.01f64, 0.09, 0.40, 0.50]) {
        let expected = 100_000.0 * share;
        let sigma = (100_000.0 * share * (1.0 - share)).sqrt();
        assert!(
            (f64::from(*got) - expected).abs() < 5.0 * sigma,
            "{counts:?} against {share}"
        );
    }
    // Another rollout orders the fleet differently.
    let first_a: Vec<_> = devices
        .iter()
        .filter(|d| phase_of("r-1", d, &plan) == Some(0))
        .collect();
    let first_b: Vec<_> = devices
        .iter()
        .filter(|d| phase_of("r-2", d, &plan) == Some(0))
        .collect();
    assert_ne!(first_a, first_b);
    // Growing the last phase never moves a device that was already in.
    let partial = phases("1%,10%");
    for device in devices.iter().take(5000) {
        if let Some(p) = phase_of("r-1", device, &partial) {
            assert_eq!(phase_of("r-1", device, &plan), Some(p));
        }
    }
}

#[test]
fn rates() {
    let rate = Rate::parse("100/min").unwrap();
    assert_eq!(
        rate.budget(Duration::ZERO, 0),
        1,
        "the first offer goes at once"
    );
    assert_eq!(rate.budget(Duration::from_secs(30), 0), 51);
    assert_eq!(rate.budget(Duration::from_secs(60), 101), 0);
    assert_eq!(rate.budget(Duration::from_secs(600), 500), 501);
    for bad in ["0/min", "100", "100/week", "x/min", "-1/s"] {
        assert!(Rate::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(Rate::parse("10/s").unwrap().per, Duration::from_secs(1));
}

#[test]
fn durations() {
    let check = |raw: &str, secs: Option<u64>| {
        assert_eq!(
            parse_duration(raw, "--soak").ok().map(|d| d.as_secs()),
            secs,
            "{raw}"
        );
    };
    check("30m", Some(1800));
    check("2h", Some(7200));
    check("1h30m", Some(5400));
    check("90s", Some(90));
    check("7d", Some(604_800));
    check("0", Some(0));
    check("", None);
    check("30", None);
    check("1x", None);
    check("m", None);
    check("99999999999999999999d", None);
}

fn policy() -> RolloutPolicy {
    let mut policy = RolloutPolicy::new(phases("10%,50%,100%"));
    policy.soak = Duration::from_secs(600);
    policy.success_threshold = Percent::parse("90%", "t").unwrap();
    policy.max_failures = FailureLimit {
        share: Percent::parse("5%", "f").unwrap(),
        count: Some(20),
    };
    policy
}

fn stats(targeted: u64, succeeded: u64, failed: u64, pending: u64) -> PhaseStats {
    PhaseStats {
        targeted,
        succeeded,
        failed,
        cancelled: 0,
        pending,
    }
}

#[test]
fn phases_advance_soak_pause_and_complete() {
    let p = policy();
    let check = |phase: usize, s: PhaseStats, soaking: Option<u64>, expected: Decision| {
        assert_eq!(
            decide(&p, phase, s, soaking.map(Duration::from_secs)),
            expected,
            "phase {phase}, {s:?}, soaking {soaking:?}"
        );
    };
    check(0, stats(100, 50, 0, 50), None, Decision::Continue);
    check(0, stats(100, 90, 0, 10), None, Decision::StartSoak);
    check(0, stats(100, 90, 0, 10), Some(599), Decision::Continue);
    check(
        0,
        stats(100, 95, 0, 5),
        Some(600),
        Decision::Advance { to_phase: 1 },
    );
    check(
        0,
        stats(100, 90, 6, 4),
        Some(600),
        Decision::Pause(PauseReason::FailureShare {
            failed: 6,
            targeted: 100,
            limit: Percent::parse("5%", "f").unwrap(),
        }),
    );
    check(
        0,
        stats(100, 90, 5, 5),
        Some(600),
        Decision::Advance { to_phase: 1 },
    );
    check(
        1,
        stats(1000, 500, 21, 479),
        None,
        Decision::Pause(PauseReason::FailureCount {
            failed: 21,
            limit: 20,
        }),
    );
    check(2, stats(1000, 990, 2, 8), None, Decision::Continue);
    check(2, stats(1000, 998, 2, 0), None, Decision::Complete);
    check(2, stats(1000, 800, 2, 0), None, Decision::Continue);
}

#[test]
fn continuous_rollouts_never_complete() {
    let mut p = policy();
    p.mode = TargetMode::Continuous;
    assert_eq!(decide(&p, 2, stats(10, 10, 0, 0), None), Decision::Continue);
}

#[test]
fn cancelled_devices_do_not_count_either_way() {
    let p = policy();
    let s = PhaseStats {
        targeted: 100,
        succeeded: 81,
        failed: 0,
        cancelled: 10,
        pending: 9,
    };
    assert_eq!(
        decide(&p, 0, s, None),
        Decision::StartSoak,
        "81 of 90 is 90 %"
    );
}

#[test]
fn policies_that_could_never_finish_are_refused() {
    let mut p = policy();
    p.success_threshold = Percent::ZERO;
    assert!(p.validate().is_err());
    let mut p = policy();
    p.timeout = Duration::ZERO;
    assert!(p.validate().is_err());
    assert!(policy().validate().is_ok());
}

#[test]
fn execution_state_machine() {
    use ExecutionState as S;
    let ok = |v: &str| Report::Succeeded {
        running_version: v.into(),
        health_check_passed: true,
    };
    let check = |from: S, report: Report, expected: Result<S, &str>| {
        let got = from.apply(&report, "1.4.0");
        match (&got, &expected) {
            (Ok(state), Ok(want)) => assert_eq!(state, want, "{from} + {report:?}"),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{e}"),
            _ => panic!("{from} + {report:?}: got {got:?}, want {expected:?}"),
        }
    };
    check(S::Offered, Report::Downloading, Ok(S::Downloading));
    check(S::Downloading, Report::Downloaded, Ok(S::Downloaded));
    check(S::Downloaded, Report::Installing, Ok(S::Installing));
    check(S::Installing, Report::Rebooting, Ok(S::Rebooting));
    check(S::Rebooting, Report::Verifying, Ok(S::Verifying));
    check(S::Verifying, ok("1.4.0"), Ok(S::Succeeded));
    check(S::Rebooting, ok("1.4.0"), Ok(S::Succeeded));
    check(S::Offered, Report::Installing, Ok(S::Installing));
    check(S::Downloading, Report::Downloading, Ok(S::Downloading));
    check(
        S::Installing,
        Report::Downloading,
        Err("never go backwards"),
    );
    check(S::Installing, ok("1.4.0"), Err("after a reboot"));
    check(
        S::Verifying,
        ok("1.3.0"),
        Err("does not run the offered version"),
    );
    check(
        S::Verifying,
        Report::Succeeded {
            running_version: "1.4.0".into(),
            health_check_passed: false,
        },
        Ok(S::Failed {
            kind: FailureKind::HealthCheck,
            reason: "health check failed after reboot".into(),
        }),
    );
    check(S::Queued, Report::Downloading, Err("nothing was offered"));
    check(
        S::Downloading,
        Report::RolledBack { reason: "x".into() },
        Err("nothing was installed"),
    );
    check(
        S::Rebooting,
        Report::RolledBack {
            reason: "boot count".into(),
        },
        Ok(S::RolledBack {
            reason: "boot count".into(),
        }),
    );
    check(S::Succeeded, Report::Downloading, Err("already finished"));
    check(S::Succeeded, ok("1.4.0"), Ok(S::Succeeded));
    check(S::Cancelled, Report::Installing, Err("already finished"));
    check(
        S::Downloading,
        Report::Failed {
            kind: FailureKind::Verification,
            reason: "x".repeat(10_000),
        },
        Ok(S::Failed {
            kind: FailureKind::Verification,
            reason: format!("{}…", "x".repeat(512)),
        }),
    );
}

#[test]
fn abort_timeouts_and_retries() {
    use ExecutionState as S;
    assert_eq!(S::Queued.on_abort(), Some(S::Cancelled));
    assert_eq!(S::Downloading.on_abort(), Some(S::Cancelled));
    assert_eq!(
        S::Installing.on_abort(),
        None,
        "an install in progress finishes"
    );
    assert_eq!(S::Succeeded.on_abort(), None);
    assert!(S::Installing.is_install_in_progress());

    assert!(S::Downloading.is_overdue(0, 7200, 7200));
    assert!(!S::Downloading.is_overdue(0, 7199, 7200));
    assert!(
        !S::Queued.is_overdue(0, 99_999, 7200),
        "not offered, not running late"
    );
    assert!(!S::Succeeded.is_overdue(0, 99_999, 7200));

    let failed = S::Failed {
        kind: FailureKind::Download,
        reason: "x".into(),
    };
    assert!(failed.may_retry(1, 2));
    assert!(failed.may_retry(2, 2));
    assert!(!failed.may_retry(3, 2));
    assert!(
        !S::RolledBack { reason: "x".into() }.may_retry(1, 5),
        "a rolled-back image is not retried"
    );
}

#[test]
fn maintenance_windows() {
    let window = Window::parse("Mon-Fri 02:00-05:00 UTC").unwrap();
    // 2026-11-23 is a Monday.
    assert!(window.contains(datetime!(2026-11-23 02:00 UTC)));
    assert!(window.contains(datetime!(2026-11-23 04:59 UTC)));
    assert!(!window.contains(datetime!(2026-11-23 05:00 UTC)));
    assert!(
        !window.contains(datetime!(2026-11-28 03:00 UTC)),
        "Saturday"
    );
    assert_eq!(
        window.next_open(datetime!(2026-11-27 06:00 UTC)),
        datetime!(2026-11-30 02:00 UTC),
        "Friday after the window: next Monday"
    );
    assert_eq!(
        window.next_open(datetime!(2026-11-23 03:00 UTC)),
        datetime!(2026-11-23 03:00 UTC)
    );

    let overnight = Window::parse("Fri 22:00-02:00 +01:00").unwrap();
    // Friday 22:00 at +01:00 is 21:00 UTC; Saturday 01:59 local is still Friday's window.
    assert!(overnight.contains(datetime!(2026-11-27 21:00 UTC)));
    assert!(overnight.contains(datetime!(2026-11-28 00:59 UTC)));
    assert!(!overnight.contains(datetime!(2026-11-28 01:00 UTC)));
    assert!(
        !overnight.contains(datetime!(2026-11-26 21:30 UTC)),
        "Thursday"
    );

    let all_day = Window::parse("daily 00:00-24:00").unwrap();
    assert!(all_day.contains(datetime!(2026-11-25 12:34 UTC)));
    assert_eq!(
        Window::parse("Sat,Sun 10:00-12:00").unwrap().to_string(),
        "Sat,Sun 10:00-12:00 UTC"
    );
    assert_eq!(
        Window::parse("Fri-Mon 10:00-12:00").unwrap().to_string(),
        "Mon,Fri,Sat,Sun 10:00-12:00 UTC"
    );

    for bad in [
        "",
        "Mon-Fri",
        "Mon-Fri 02:00",
        "Mon-Fri 02:00-02:00 UTC",
        "Funday 02:00-03:00",
        "Mon 2:00-3:00",
        "Mon 25:00-26:00",
        "Mon 02:00-03:00 CET",
        "Mon 02:00-03:00 UTC extra",
    ] {
        assert!(Window::parse(bad).is_err(), "{bad:?}");
    }
}
