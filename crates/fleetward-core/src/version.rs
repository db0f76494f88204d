//! Ordering software versions, in Rust and in SQL.
//!
//! Stores keep, beside each version string, a *sort key*: a string whose
//! byte order is the version order. `version < "2.0.0"` then becomes a plain
//! indexed string comparison in any database, and a query never has to load
//! the fleet to compare versions.
//!
//! For [Semantic Versioning 2.0.0](https://semver.org/#spec-item-11) the key
//! order is exactly semver precedence: numeric identifiers compare as
//! numbers, pre-releases sort before their release, numeric pre-release
//! identifiers before alphanumeric ones, a longer pre-release after its
//! prefix, and build metadata is ignored (`1.0.0+a` and `1.0.0+b` have the
//! same key). Versions that are not semver (`2023.10`, `v1.2`, `1.2.3.4`,
//! `5.4~rc1`) get the same treatment, generalised: runs of digits compare as
//! numbers, runs of letters as text, anything else separates, and `-` or `~`
//! starts a pre-release.
//!
//! The key alphabet, chosen so that plain byte order does the work:
//!
//! | bytes            | meaning                                             |
//! |------------------|-----------------------------------------------------|
//! | `'1'..='?'`      | a number follows, with that many digits (1 to 15)   |
//! | `'@'`            | a run of text follows                               |
//! | `'-'`            | the release part ended and a pre-release follows    |
//! | `'/'`            | the release part ended with no pre-release          |
//! | `','`            | next pre-release identifier                         |
//!
//! `'-'` < `'/'` puts a pre-release before its release; both are below the
//! number and text markers, so `1.2` sorts before `1.2.0` and `1.2.1`.
//! Text runs use only letters and `-`, all above `'@'`, so a shorter run
//! sorts first, as semver's ASCII comparison wants.

use std::cmp::Ordering;

/// Numbers longer than this compare as text; no real version has them.
const MAX_NUMBER_DIGITS: usize = 15;

const NUMBER_BASE: u8 = b'0';
const TEXT: char = '@';
const PRE_RELEASE: char = '-';
const RELEASE: char = '/';
const NEXT_IDENTIFIER: char = ',';

/// The sort key of a version string: `a < b` as versions exactly when
/// `sort_key(a) < sort_key(b)` as strings.
pub fn sort_key(version: &str) -> String {
    let version = strip_v_prefix(version.trim());
    // Build metadata never takes part in precedence.
    let version = version.split_once('+').map_or(version, |(head, _)| head);
    let (release, pre_release) = match version.find(['-', '~']) {
        Some(at) => (&version[..at], Some(&version[at + 1..])),
        None => (version, None),
    };

    let mut key = String::with_capacity(version.len() * 2 + 2);
    push_release(&mut key, release);
    match pre_release {
        None => key.push(RELEASE),
        Some(pre) => {
            key.push(PRE_RELEASE);
            for (n, identifier) in pre.split('.').enumerate() {
                if n > 0 {
                    key.push(NEXT_IDENTIFIER);
                }
                push_identifier(&mut key, identifier);
            }
        }
    }
    key
}

/// Compares two version strings by the order [`sort_key`] gives them.
pub fn compare(a: &str, b: &str) -> Ordering {
    sort_key(a).cmp(&sort_key(b))
}

/// `v1.2.3` and `V1.2.3` are `1.2.3`; `vendor-1` is left alone.
fn strip_v_prefix(version: &str) -> &str {
    match version.as_bytes() {
        [b'v' | b'V', next, ..] if next.is_ascii_digit() => &version[1..],
        _ => version,
    }
}

/// The release part: runs of digits and runs of letters, in order.
fn push_release(key: &mut String, release: &str) {
    let mut rest = release;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric()) {
        rest = &rest[start..];
        let is_digit = rest.starts_with(|c: char| c.is_ascii_digit());
        let end = rest
            .find(|c: char| {
                if is_digit {
                    !c.is_ascii_digit()
                } else {
                    !c.is_ascii_alphabetic()
                }
            })
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        if is_digit {
            push_number(key, run);
        } else {
            key.push(TEXT);
            key.push_str(run);
        }
        rest = tail;
    }
}

/// One pre-release identifier: a number if it is all digits, text otherwise.
fn push_identifier(key: &mut String, identifier: &str) {
    if !identifier.is_empty() && identifier.bytes().all(|b| b.is_ascii_digit()) {
        push_number(key, identifier);
        return;
    }
    key.push(TEXT);
    // Semver identifiers are [0-9A-Za-z-]; anything else becomes `-` so it
    // cannot fall below the markers and break the order.
    key.extend(identifier.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '-'
        }
    }));
}

fn push_number(key: &mut String, digits: &str) {
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if digits.len() > MAX_NUMBER_DIGITS {
        key.push(TEXT);
        key.push_str(digits);
        return;
    }
    // The length first, so that 9 < 10 in byte order.
    key.push(char::from(NUMBER_BASE + digits.len() as u8));
    key.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each version sorts strictly before the next.
    fn check_ascending(versions: &[&str]) {
        for pair in versions.windows(2) {
            assert_eq!(
                compare(pair[0], pair[1]),
                Ordering::Less,
                "{} < {} (keys {:?} and {:?})",
                pair[0],
                pair[1],
                sort_key(pair[0]),
                sort_key(pair[1]),
            );
        }
    }

    fn check_equal(a: &str, b: &str) {
        assert_eq!(
            sort_key(a),
            sort_key(b),
            "{a} and {b} have equal precedence"
        );
    }

    #[test]
    fn semver_spec_precedence_example() {
        // semver.org, item 11, verbatim.
        check_ascending(&[
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ]);
        check_ascending(&["1.0.0", "2.0.0", "2.1.0", "2.1.1"]);
    }

    #[test]
    fn numbers_compare_as_numbers() {
        check_ascending(&[
            "1.9.0",
            "1.10.0",
            "1.100.0",
            "10.0.0",
            "999999999999999.0.0",
        ]);
        check_ascending(&["1.0.0-rc.9", "1.0.0-rc.10"]);
    }

    #[test]
    fn pre_release_identifiers() {
        check_ascending(&[
            "1.0.0-1",
            "1.0.0-2",
            "1.0.0-10",
            "1.0.0-a",
            "1.0.0-a-b",
            "1.0.0-ab",
        ]);
        check_ascending(&["1.0.0-alpha", "1.0.0-alpha-x", "1.0.0-alpha0"]);
        check_ascending(&["1.0.0-A", "1.0.0-Z", "1.0.0-a"]);
        check_ascending(&["2.0.0-rc.1", "2.0.0", "2.0.1-0"]);
    }

    #[test]
    fn build_metadata_is_ignored() {
        check_equal("1.0.0+build.1", "1.0.0+build.2");
        check_equal("1.0.0-rc.1+x", "1.0.0-rc.1");
        check_equal("1.0.0", "v1.0.0");
    }

    #[test]
    fn versions_that_are_not_semver() {
        check_ascending(&["1", "1.2", "1.2.0", "1.2.1", "1.2.3.4", "1.3"]);
        check_ascending(&["2023.9", "2023.10", "2024.1"]);
        check_ascending(&["5.4~rc1", "5.4"]);
        check_ascending(&["1.2a", "1.2b", "1.3"]);
        check_equal("01.002", "1.2");
        check_equal("  1.2.3 ", "1.2.3");
    }

    #[test]
    fn oversized_numbers_stay_ordered_after_normal_ones() {
        check_ascending(&["999999999999999", "1000000000000000"]);
    }

    #[test]
    fn odd_characters_cannot_break_the_order() {
        // A pre-release with bytes below the markers still sorts before the release.
        check_ascending(&["1.0.0-\u{1}", "1.0.0"]);
        check_ascending(&["1.0.0-a!b", "1.0.0"]);
        assert_eq!(sort_key(""), "/");
    }
}
