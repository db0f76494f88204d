//! Licence expressions against policy: the default firmware policy on
//! hand-picked cases (and, when ../shared is present, the 35 firmware cases
//! and the corpus expressions with their expected verdicts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use fleetward_sca::license::LicenseVerdict::{self, *};
use fleetward_sca::policy::Policy;

fn check(table: &[(&str, LicenseVerdict)]) {
    let policy = Policy::default_firmware();
    for (expr, want) in table {
        let got = policy.licenses.judge(expr);
        assert_eq!(got.verdict, *want, "{expr:?}: {:?}", got.offending);
    }
}

#[test]
fn firmware_policy() {
    check(&[
        ("MIT", Allow),
        ("mit", Allow),
        ("MIT/Apache-2.0", Allow),
        ("Apache-2.0 OR GPL-2.0-or-later", Allow),
        // OR passes when one branch is allowed; AND needs all.
        ("MIT OR GPL-3.0-only", Allow),
        ("MIT AND GPL-3.0-only", Deny),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", Allow),
        // GPLv3 family: installation information on locked devices.
        ("GPL-3.0-only", Deny),
        ("GPL-3.0-or-later", Deny),
        ("LGPL-3.0-only", Deny),
        ("AGPL-3.0-only", Deny),
        // Exceptions count only as allowed pairs.
        ("GPL-3.0-or-later WITH GCC-exception-3.1", Allow),
        ("GPL-2.0-only WITH Linux-syscall-note", Allow),
        ("GPL-3.0-only WITH Autoconf-exception-3.0", Deny),
        ("EPL-2.0 OR GPL-2.0-only WITH Classpath-exception-2.0", Deny),
        // Deprecated ids are not the ids on the allow-list.
        ("GPL-2.0+", Allow),
        ("GPL-2.0", Deny),
        ("LGPL-2.1+", Allow),
        // Unknowns go to review, not silently anywhere.
        ("NOASSERTION", Review),
        ("NONE", Review),
        ("", Review),
        ("LicenseRef-ath10k-firmware-blob", Review),
        ("MIT AND LicenseRef-x", Review),
        ("LicenseRef-x AND GPL-3.0-only", Deny),
        ("MIT OR", Invalid),
        ("(MIT", Invalid),
    ]);
}

#[test]
fn corpus_expected_verdicts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/licenses");
    if !dir.is_dir() {
        eprintln!("SKIPPED: ../shared/data/licenses is not present");
        return;
    }
    let policy = Policy::default_firmware();
    let mut n = 0;
    let mut disagree = Vec::new();
    for file in [
        "firmware-license-cases.jsonl",
        "corpus-license-expressions.jsonl",
    ] {
        for line in std::fs::read_to_string(dir.join(file)).unwrap().lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let input = case["input"].as_str().unwrap();
            let want = case["policy_firmware_allowlist"].as_str().unwrap();
            let got = policy.licenses.judge(input).verdict;
            // The reference checker has no "review": unknowns are "deny"
            // there; NONE does not parse for it.
            let got_ref = match got {
                Allow => "allow",
                Deny | Review => "deny",
                Invalid => "unparseable",
            };
            let want = if input.trim() == "NONE" { "deny" } else { want };
            if got_ref != want {
                disagree.push(format!("{file}: {input:?} want {want} got {got:?}"));
            }
            n += 1;
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {n} disagree:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
}
