//! Severity from CVSS vectors.
//!
//! Scores are computed from the vector (CVSS 3.0/3.1 base score per the
//! FIRST specification, CVSS 4.0 by its MacroVector lookup), never taken from
//! a number an advisory states next to it, using RustSec's `cvss` crate,
//! which implements both specifications and is what cargo-audit uses. When
//! an advisory has no vector, the source's qualitative rating is used
//! (GitHub's `MODERATE` is `medium`); with neither, the severity is unknown
//! and the policy decides what unknown means.

use serde::{Deserialize, Serialize};

/// The qualitative rating scale shared by CVSS v3 and v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::None,
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" => Severity::Low,
            "none" => Severity::None,
            "unknown" => Severity::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A score computed from a vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub vector: String,
    pub score: f64,
    pub severity: Severity,
}

/// The base score of a CVSS v3.x or v4.0 vector; `None` if it does not
/// parse (CVSS v2 vectors are not scored: every advisory here that has one
/// also has a v3 vector or a qualitative rating).
pub fn score(vector: &str) -> Option<Scored> {
    let parsed: cvss::Cvss = vector.trim().parse().ok()?;
    let score = parsed.score();
    Some(Scored {
        vector: vector.trim().to_owned(),
        score,
        severity: Severity::from_score(score),
    })
}

/// The highest severity among an advisory's vectors, else its qualitative
/// rating, else unknown.
pub fn advisory_severity(
    vectors: &[String],
    qualitative: Option<&str>,
) -> (Severity, Option<Scored>) {
    let best = vectors
        .iter()
        .filter_map(|v| score(v))
        .max_by(|a, b| a.score.total_cmp(&b.score));
    match best {
        Some(s) => (s.severity, Some(s)),
        None => (
            qualitative
                .and_then(Severity::parse)
                .unwrap_or(Severity::Unknown),
            None,
        ),
    }
}
