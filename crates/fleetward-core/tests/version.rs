//! `version::sort_key` orders semantic versions exactly as the `semver`
//! crate's precedence does, for any versions it accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;

use fleetward_core::version::sort_key;
use proptest::prelude::*;

fn arb_semver() -> impl Strategy<Value = String> {
    let number = prop_oneof![0u64..12, 0u64..=u32::MAX as u64];
    let identifier = prop_oneof![
        (0u64..30).prop_map(|n| n.to_string()),
        "[0-9A-Za-z-]{0,5}[A-Za-z-][0-9A-Za-z-]{0,5}",
    ];
    (
        number.clone(),
        number.clone(),
        number,
        prop::collection::vec(identifier, 0..4),
        prop::option::of("[0-9A-Za-z]{1,4}"),
    )
        .prop_map(|(major, minor, patch, pre, build)| {
            let mut v = format!("{major}.{minor}.{patch}");
            if !pre.is_empty() {
                v.push('-');
                v.push_str(&pre.join("."));
            }
            if let Some(build) = build {
                v.push('+');
                v.push_str(&build);
            }
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn key_order_is_semver_precedence(a in arb_semver(), b in arb_semver()) {
        let parsed_a = semver::Version::parse(&a).unwrap();
        let parsed_b = semver::Version::parse(&b).unwrap();
        let expected = parsed_a.cmp_precedence(&parsed_b);
        prop_assert_eq!(sort_key(&a).cmp(&sort_key(&b)), expected, "{} vs {}", a, b);
    }

    #[test]
    fn equal_keys_only_for_equal_precedence(a in arb_semver()) {
        prop_assert_eq!(sort_key(&a).cmp(&sort_key(&a)), Ordering::Equal);
    }
}
