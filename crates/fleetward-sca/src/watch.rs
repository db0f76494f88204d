//! Which of a release's vulnerabilities are new since its last scan.
//!
//! A release passes the SBOM gate when it is published; advisories
//! imported later (or a waiver that expires) can make it vulnerable while
//! devices run it. The server re-scans published releases and raises one
//! `release.vulnerable` event per change. This is the decision behind that
//! event, kept pure so it is tested on plain findings: what to remember of
//! a scan, and which findings nothing remembered covers.
//!
//! A finding counts as known when any of its ids or aliases was remembered,
//! so an advisory that gains a CVE alias in a later import is not raised a
//! second time, and one advisory hitting two components is one change.

use std::collections::BTreeSet;

use crate::scan::{Finding, FindingKind};
use crate::severity::Severity;

/// A scan compared with what was remembered of the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<'r> {
    /// Every id and alias of the vulnerability findings that fail the
    /// policy, sorted, each once: what to remember of this scan.
    pub ids: Vec<String>,
    /// The failing vulnerability findings none of whose ids or aliases was
    /// remembered, in report order.
    pub new: Vec<&'r Finding>,
}

impl Change<'_> {
    /// The highest severity among the new findings (`None` without any).
    pub fn worst_new_severity(&self) -> Option<Severity> {
        self.new
            .iter()
            .filter_map(|f| match &f.kind {
                FindingKind::Vulnerability { severity, .. } => Some(*severity),
                _ => None,
            })
            .max()
    }
}

/// The ids and aliases a vulnerability finding is known by.
pub fn finding_ids(finding: &Finding) -> impl Iterator<Item = &str> {
    let (ids, aliases): (&[String], &[String]) = match &finding.kind {
        FindingKind::Vulnerability { ids, aliases, .. } => (ids, aliases),
        _ => (&[], &[]),
    };
    ids.iter().chain(aliases).map(String::as_str)
}

/// Compares `findings` (one scan's) with the ids `remembered` of the last.
/// Licence and identification findings are not vulnerabilities and never
/// count; neither do findings that pass (below the threshold, waived).
pub fn compare<'r>(remembered: &[String], findings: &'r [Finding]) -> Change<'r> {
    let remembered: BTreeSet<&str> = remembered.iter().map(String::as_str).collect();
    let failing: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.fails() && matches!(f.kind, FindingKind::Vulnerability { .. }))
        .collect();
    let ids: BTreeSet<&str> = failing.iter().flat_map(|f| finding_ids(f)).collect();
    let new = failing
        .into_iter()
        .filter(|f| finding_ids(f).all(|id| !remembered.contains(id)))
        .collect();
    Change {
        ids: ids.into_iter().map(str::to_owned).collect(),
        new,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::policy::Waiver;
    use crate::scan::Level;

    fn vulnerability(ids: &[&str], aliases: &[&str], severity: Severity, level: Level) -> Finding {
        Finding {
            rule: "vulnerability.severity",
            level,
            message: format!("{} affects openssl@1.1.1", ids.join(", ")),
            component: None,
            kind: FindingKind::Vulnerability {
                ids: ids.iter().map(|s| s.to_string()).collect(),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                summary: String::new(),
                severity,
                score: None,
                vector: None,
                informational: None,
                fixed: Vec::new(),
            },
            waived_by: None,
        }
    }

    fn unidentifiable() -> Finding {
        Finding {
            rule: "component.unidentifiable",
            level: Level::Fail,
            message: "no purl or CPE".into(),
            component: None,
            kind: FindingKind::Unidentifiable,
            waived_by: None,
        }
    }

    fn waived(mut finding: Finding) -> Finding {
        finding.waived_by = Some(Waiver {
            id: "GHSA-w".into(),
            component: None,
            reason: "not reachable".into(),
            owner: "sec@example.com".into(),
            expires: time::Date::from_calendar_date(2999, time::Month::December, 31).unwrap(),
        });
        finding
    }

    /// `remembered` ids, the scan's findings → (ids to remember, the first
    /// id of each new finding).
    fn check(remembered: &[&str], findings: &[Finding], expected: (&[&str], &[&str])) {
        let remembered: Vec<String> = remembered.iter().map(|s| s.to_string()).collect();
        let change = compare(&remembered, findings);
        let new: Vec<&str> = change
            .new
            .iter()
            .map(|f| finding_ids(f).next().unwrap_or(""))
            .collect();
        assert_eq!(
            (change.ids.as_slice(), new.as_slice()),
            (
                expected
                    .0
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .as_slice(),
                expected.1
            ),
            "remembered {remembered:?}"
        );
    }

    #[test]
    fn new_vulnerabilities_are_those_nothing_remembered_covers() {
        use Level::{Fail, Warn};
        use Severity::{Critical, High, Low};
        let a = || vulnerability(&["GHSA-a"], &["CVE-2026-1"], High, Fail);
        let b = || vulnerability(&["RUSTSEC-2026-0002"], &[], Critical, Fail);
        // A clean release stays clean.
        check(&[], &[], (&[], &[]));
        // Everything is new the first time.
        check(
            &[],
            &[a(), b()],
            (
                &["CVE-2026-1", "GHSA-a", "RUSTSEC-2026-0002"],
                &["GHSA-a", "RUSTSEC-2026-0002"],
            ),
        );
        // Known by its id, or by its alias alone: not new.
        check(
            &["GHSA-a", "CVE-2026-1"],
            &[a(), b()],
            (
                &["CVE-2026-1", "GHSA-a", "RUSTSEC-2026-0002"],
                &["RUSTSEC-2026-0002"],
            ),
        );
        check(&["CVE-2026-1"], &[a()], (&["CVE-2026-1", "GHSA-a"], &[]));
        // One advisory on two components is one remembered id, two findings.
        check(
            &[],
            &[a(), a()],
            (&["CVE-2026-1", "GHSA-a"], &["GHSA-a", "GHSA-a"]),
        );
        // A fix (the advisory gone) shrinks what is remembered; nothing new.
        check(
            &["GHSA-a", "CVE-2026-1", "RUSTSEC-2026-0002"],
            &[b()],
            (&["RUSTSEC-2026-0002"], &[]),
        );
        // Below the threshold, waived, or not a vulnerability: not a vulnerability change.
        check(
            &[],
            &[vulnerability(&["GHSA-low"], &[], Low, Warn)],
            (&[], &[]),
        );
        check(&[], &[waived(a())], (&[], &[]));
        check(&[], &[unidentifiable()], (&[], &[]));
        // The waiver expired: the finding fails again and is new.
        check(&[], &[a()], (&["CVE-2026-1", "GHSA-a"], &["GHSA-a"]));
    }

    #[test]
    fn the_worst_new_severity_ranks_critical_highest() {
        let findings = [
            vulnerability(&["GHSA-a"], &[], Severity::High, Level::Fail),
            vulnerability(&["GHSA-b"], &[], Severity::Critical, Level::Fail),
        ];
        assert_eq!(
            compare(&[], &findings).worst_new_severity(),
            Some(Severity::Critical)
        );
        let remembered = vec!["GHSA-b".to_owned()];
        assert_eq!(
            compare(&remembered, &findings).worst_new_severity(),
            Some(Severity::High)
        );
        assert_eq!(compare(&[], &[]).worst_new_severity(), None);
    }
}
