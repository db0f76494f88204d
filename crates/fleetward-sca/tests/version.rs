//! Version ordering per ecosystem: tables of (a, b, expected ordering),
//! with the tricky cases each specification calls out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering::{self, Equal, Greater, Less};

use fleetward_sca::version::Scheme;

fn check(scheme: Scheme, table: &[(&str, &str, Ordering)]) {
    for (a, b, expected) in table {
        let got = scheme
            .compare(a, b)
            .unwrap_or_else(|e| panic!("{scheme:?} {a} vs {b}: {e}"));
        assert_eq!(got, *expected, "{scheme:?}: {a} vs {b}");
        let back = scheme.compare(b, a).unwrap();
        assert_eq!(
            back,
            expected.reverse(),
            "{scheme:?}: {b} vs {a} (antisymmetry)"
        );
        // Range checks parse once and compare parsed versions: same order.
        let (pa, pb) = (scheme.parse(a).unwrap(), scheme.parse(b).unwrap());
        assert_eq!(
            scheme.compare_parsed(&pa, &pb),
            *expected,
            "{scheme:?}: parsed {a} vs {b}"
        );
    }
}

fn check_invalid(scheme: Scheme, inputs: &[&str]) {
    for v in inputs {
        assert!(scheme.validate(v).is_err(), "{scheme:?} accepted {v:?}");
        assert!(scheme.parse(v).is_err(), "{scheme:?} parsed {v:?}");
    }
}

#[test]
fn semver() {
    check(
        Scheme::Semver,
        &[
            ("1.0.0", "1.0.0", Equal),
            ("1.0.0-alpha", "1.0.0", Less),
            // The precedence chain from the semver 2.0 spec, item 11.
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-alpha.beta", "1.0.0-beta", Less),
            ("1.0.0-beta", "1.0.0-beta.2", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-beta.11", "1.0.0-rc.1", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            // Build metadata does not take part in precedence.
            ("1.0.0+build.1", "1.0.0+build.2", Equal),
            ("1.0.0+20130313144700", "1.0.0", Equal),
            ("0.4.20-rc.1", "0.4.20", Less),
            ("0.4.20-rc.1", "0.4.19", Greater),
            ("1.10.0", "1.9.0", Greater),
            ("7.66.0", "7.71.0", Less),
            // Lenient forms found in advisories.
            ("1.2", "1.2.0", Equal),
            ("2", "1.9.9", Greater),
        ],
    );
    check_invalid(
        Scheme::Semver,
        &["", "abc", "1.2.3.4.5", "01.2.3", "1.2.3-"],
    );
}

#[test]
fn go() {
    check(
        Scheme::Go,
        &[
            ("v1.2.3", "1.2.3", Equal),
            ("v0.0.0-20210101000000-abcdef123456", "v0.0.1", Less),
            (
                "v0.0.0-20210101000000-abcdef123456",
                "v0.0.0-20220101000000-abcdef123456",
                Less,
            ),
            ("v2.0.0+incompatible", "v2.0.0", Equal),
            ("v1.20.0", "v1.3.0", Greater),
        ],
    );
}

#[test]
fn pep440() {
    check(
        Scheme::Pep440,
        &[
            // The ordering example of PEP 440 ("Summary of permitted suffixes").
            ("1.0.dev456", "1.0a1", Less),
            ("1.0a1", "1.0a2.dev456", Less),
            ("1.0a2.dev456", "1.0a12.dev456", Less),
            ("1.0a12.dev456", "1.0a12", Less),
            ("1.0a12", "1.0b1.dev456", Less),
            ("1.0b1.dev456", "1.0b2", Less),
            ("1.0b2", "1.0b2.post345.dev456", Less),
            ("1.0b2.post345.dev456", "1.0b2.post345", Less),
            ("1.0b2.post345", "1.0rc1.dev456", Less),
            ("1.0rc1.dev456", "1.0rc1", Less),
            ("1.0rc1", "1.0", Less),
            ("1.0", "1.0+abc.5", Less),
            ("1.0+abc.5", "1.0+abc.7", Less),
            ("1.0+abc.7", "1.0+5", Less),
            ("1.0+5", "1.0.post456.dev34", Less),
            ("1.0.post456.dev34", "1.0.post456", Less),
            ("1.0.post456", "1.1.dev1", Less),
            // Epochs beat everything.
            ("1!1.0", "2013.10", Greater),
            ("1!0.1", "999", Greater),
            // Normalisation: trailing zeros, spellings, separators, case.
            ("1.0", "1.0.0", Equal),
            ("1.0alpha1", "1.0a1", Equal),
            ("1.0-c1", "1.0rc1", Equal),
            ("1.0.preview2", "1.0rc2", Equal),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0.rev1", "1.0.post1", Equal),
            ("v1.0", "1.0", Equal),
            ("1.0RC1", "1.0rc1", Equal),
            ("1.0a", "1.0a0", Equal),
            ("5.3", "5.4", Less),
            ("5.3.1", "5.3", Greater),
        ],
    );
    check_invalid(
        Scheme::Pep440,
        &["", "abc", "1.0+", "1.0+a..b", "1.0.dev1a1", "1.0 foo"],
    );
}

#[test]
fn debian() {
    check(
        Scheme::Debian,
        &[
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            // Tilde sorts before anything, even the end of the version.
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1.0", "1.0a", Less),
            // Epochs.
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("2:0.1", "1:9.9", Greater),
            // Revisions: the last hyphen splits; missing revision is "0".
            ("1.2-3-4", "1.2-3-5", Less),
            ("1.0", "1.0-0", Equal),
            ("1.1.1d-0+deb10u3", "1.1.1d-0+deb10u4", Less),
            ("1.1.1n-0+deb10u3", "1.1.1d-0+deb10u4", Greater),
            ("7.64.0-4+deb10u2", "7.64.0-4", Greater),
            ("2.31-13+deb11u5", "2.31-13+deb11u10", Less),
            // Letters sort before non-letters.
            ("1.0a", "1.0+", Less),
            ("1.0.", "1.0a", Greater),
            ("10", "9", Greater),
            ("1.001", "1.1", Equal),
        ],
    );
    check_invalid(Scheme::Debian, &["", "a1.0", "x:1.0", "1.0 2"]);
}

#[test]
fn alpine() {
    check(
        Scheme::Alpine,
        &[
            ("1.2.3", "1.2.3-r0", Equal),
            ("1.2.3-r1", "1.2.3-r10", Less),
            ("1.2.3_rc1", "1.2.3", Less),
            ("1.2.3_alpha", "1.2.3_beta", Less),
            ("1.2.3_beta2", "1.2.3_pre1", Less),
            ("1.2.3_pre1", "1.2.3_rc1", Less),
            ("1.2.3", "1.2.3_p1", Less),
            ("1.2.3_git20200101", "1.2.3_p1", Less),
            ("1.2.3a", "1.2.3", Greater),
            ("1.2.3a", "1.2.3b", Less),
            ("1.1.1d-r3", "1.1.1k-r0", Less),
            ("1.2.10", "1.2.9", Greater),
            ("1.2", "1.2.0", Less),
        ],
    );
    check_invalid(Scheme::Alpine, &["", "abc", "1.2_foo", "1.2-rx"]);
}

#[test]
fn rpm() {
    check(
        Scheme::Rpm,
        &[
            ("1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1:1.0", "2.0", Greater),
            ("1.1.1k-7.el8_6", "1.1.1k-12.el8_9", Less),
            ("2a", "2.0", Less),
            ("1.01", "1.1", Equal),
        ],
    );
}

#[test]
fn generic() {
    check(
        Scheme::Generic,
        &[
            ("7.66.0", "7.71.0", Less),
            ("1.1.1d", "1.1.1k", Less),
            ("2019.78", "2020.79", Less),
            ("2019-12-28", "2019-09-01", Greater),
            ("v1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
        ],
    );
}

#[test]
fn ecosystem_names_pick_schemes() {
    for (eco, scheme) in [
        ("crates.io", Scheme::Semver),
        ("npm", Scheme::Semver),
        ("Go", Scheme::Go),
        ("PyPI", Scheme::Pep440),
        ("Debian:11", Scheme::Debian),
        ("Ubuntu:22.04:LTS", Scheme::Debian),
        ("Alpine:v3.16", Scheme::Alpine),
        ("AlmaLinux:8", Scheme::Rpm),
        ("OSS-Fuzz", Scheme::Generic),
    ] {
        assert_eq!(Scheme::for_ecosystem(eco), scheme, "{eco}");
    }
}
