//! Properties of the rollout rules over generated inputs (proptest): phases
//! add up and never overlap, a rollout pauses exactly when failures cross
//! its limits, and repeated device reports change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use fleetward_core::DeviceId;
use fleetward_rollout::*;
use proptest::prelude::*;

/// Cumulative phases ending at 100%, from 1 to 6 growing cut points.
fn phases() -> impl Strategy<Value = Phases> {
    proptest::collection::btree_set(1u32..1_000_000, 0..6).prop_map(|cuts| {
        let mut text: Vec<String> = cuts
            .into_iter()
            .map(|c| format!("{}.{:04}%", c / 10_000, c % 10_000))
            .collect();
        text.push("100%".into());
        Phases::parse(&text.join(",")).unwrap()
    })
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![
        Just(Report::Downloading),
        Just(Report::Downloaded),
        Just(Report::Installing),
        Just(Report::Rebooting),
        Just(Report::Verifying),
        (any::<bool>(), any::<bool>()).prop_map(|(right, health)| Report::Succeeded {
            running_version: if right { "2.0.0" } else { "1.9.0" }.into(),
            health_check_passed: health,
        }),
        Just(Report::Failed {
            kind: FailureKind::Install,
            reason: "x".into()
        }),
        Just(Report::RolledBack { reason: "y".into() }),
    ]
}

proptest! {
    /// Every device lands in exactly the phase whose slice holds its
    /// bucket; with the last phase at 100 % nobody is left out.
    #[test]
    fn phases_add_up(phases in phases(), rollout in "[a-z0-9-]{1,20}", device in "[a-z0-9][a-z0-9-]{0,29}") {
        let device = DeviceId::parse(&device).unwrap();
        let place = bucket(&rollout, &device);
        let phase = phase_of(&rollout, &device, &phases).expect("100% covers everyone");
        let cuts = phases.all();
        prop_assert!(place < cuts[phase].per_million());
        if phase > 0 {
            prop_assert!(place >= cuts[phase - 1].per_million());
        }
        // Stable: asking again gives the same answer.
        prop_assert_eq!(phase_of(&rollout, &device, &phases), Some(phase));
    }

    /// A rollout pauses exactly when failures cross the share or the count.
    #[test]
    fn pauses_exactly_at_the_limits(
        targeted in 0u64..10_000,
        failed_part in 0u64..10_000,
        succeeded_part in 0u64..10_000,
        share in 0u32..=1_000_000,
        count in proptest::option::of(0u64..100),
        phase in 0usize..3,
    ) {
        let failed = failed_part.min(targeted);
        let succeeded = succeeded_part.min(targeted - failed);
        let mut policy = RolloutPolicy::new(Phases::parse("10%,50%,100%").unwrap());
        policy.max_failures = FailureLimit {
            share: Percent::parse(&format!("{}.{:04}%", share / 10_000, share % 10_000), "x").unwrap(),
            count,
        };
        let stats = PhaseStats {
            targeted,
            succeeded,
            failed,
            cancelled: 0,
            pending: targeted - failed - succeeded,
        };
        let over = count.is_some_and(|c| failed > c)
            || (targeted > 0 && u128::from(failed) * 1_000_000 > u128::from(share) * u128::from(targeted));
        let decision = decide(&policy, phase, stats, Some(Duration::from_secs(3600)));
        prop_assert_eq!(matches!(decision, Decision::Pause(_)), over, "{:?}", decision);
    }

    /// A report applied twice is the same as once: agents resend after a
    /// lost answer, and a resend never moves an execution further or fails.
    #[test]
    fn repeated_reports_change_nothing(reports in proptest::collection::vec(report(), 1..12)) {
        let mut state = ExecutionState::Offered;
        for report in &reports {
            let Ok(next) = state.apply(report, "2.0.0") else { continue };
            let again = next.apply(report, "2.0.0");
            prop_assert_eq!(again.as_ref(), Ok(&next), "{:?} then {:?}", state, report);
            state = next;
        }
    }

    /// Success needs the offered version after a reboot, whatever came before.
    #[test]
    fn success_only_with_the_new_version_after_a_reboot(reports in proptest::collection::vec(report(), 1..12)) {
        let mut state = ExecutionState::Offered;
        let mut rebooted = false;
        for report in &reports {
            let Ok(next) = state.apply(report, "2.0.0") else { continue };
            if next == ExecutionState::Succeeded && state != ExecutionState::Succeeded {
                prop_assert!(rebooted, "success without a reboot");
                let proper = matches!(report, Report::Succeeded { running_version, health_check_passed: true } if running_version == "2.0.0");
                prop_assert!(proper, "success from {:?}", report);
            }
            rebooted |= matches!(next, ExecutionState::Rebooting | ExecutionState::Verifying);
            state = next;
        }
    }
}
