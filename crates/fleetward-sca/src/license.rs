//! Licence expressions against a policy.
//!
//! Expressions are parsed with the `spdx` crate in its lax mode (it accepts
//! what real SBOMs contain: `MIT/Apache-2.0`, `GPL-2.0+`, `Apache 2.0`) and
//! evaluated as boolean formulas: `OR` passes when one branch is allowed,
//! `AND` needs every part. Each licence requirement is one of three things:
//! allowed, denied, or unknown (a `LicenseRef-`/`DocumentRef-` the policy
//! cannot judge). The verdict is `allow` when the expression holds with only
//! allowed parts, `review` when it holds once unknown parts are given the
//! benefit of the doubt, else `deny`. `NOASSERTION`, `NONE` and a missing
//! licence are unknown; an expression that does not parse is `invalid`.

use serde::Serialize;

/// The outcome for one component's licences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseVerdict {
    Allow,
    Review,
    Deny,
    Invalid,
}

/// The licence part of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseRules {
    /// Licence ids (`MIT`) or licence-exception pairs
    /// (`GPL-3.0-or-later WITH GCC-exception-3.1`). Empty: everything not
    /// denied is allowed.
    pub allow: Vec<String>,
    /// Denied ids or pairs; a denied id is denied with any exception unless
    /// the exact pair is allowed.
    pub deny: Vec<String>,
}

/// The judgement of one expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: LicenseVerdict,
    /// The requirements that were not allowed (denied or unknown), as
    /// normalised names, or the parse error.
    pub offending: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Allowed,
    Denied,
    Unknown,
}

fn req_names(req: &spdx::LicenseReq) -> (Option<String>, Option<String>) {
    let license = match &req.license {
        spdx::LicenseItem::Spdx { id, or_later } => {
            let name = id.name;
            Some(if *or_later && id.is_gnu() {
                if let Some(base) = name.strip_suffix("-only") {
                    format!("{base}-or-later")
                } else if name.ends_with("-or-later") {
                    name.to_owned()
                } else {
                    format!("{name}-or-later")
                }
            } else if *or_later {
                format!("{name}+")
            } else {
                name.to_owned()
            })
        }
        spdx::LicenseItem::Other(_) => None,
    };
    let addition = req.addition.as_ref().map(|a| match a {
        spdx::AdditionItem::Spdx(id) => id.name.to_owned(),
        spdx::AdditionItem::Other(r) => r.to_string(),
    });
    (license, addition)
}

impl LicenseRules {
    fn listed(list: &[String], name: &str, addition: Option<&str>) -> bool {
        list.iter().any(|entry| match entry.split_once(" WITH ") {
            Some((l, a)) => l.trim() == name && Some(a.trim()) == addition,
            None => entry == name || (name.ends_with('+') && entry == name.trim_end_matches('+')),
        })
    }

    fn class(&self, req: &spdx::LicenseReq) -> Class {
        let (name, addition) = req_names(req);
        let Some(name) = name else {
            return Class::Unknown;
        };
        let addition = addition.as_deref();
        let pair_allowed = addition.is_some()
            && self.allow.iter().any(|e| {
                e.split_once(" WITH ")
                    .is_some_and(|(l, a)| l.trim() == name && Some(a.trim()) == addition)
            });
        if pair_allowed {
            return Class::Allowed;
        }
        if Self::listed(&self.deny, &name, addition) || Self::listed(&self.deny, &name, None) {
            return Class::Denied;
        }
        if self.allow.is_empty() {
            return Class::Allowed;
        }
        // With an allow-list, an exception must be allowed as a pair.
        if addition.is_none() && Self::listed(&self.allow, &name, None) {
            Class::Allowed
        } else {
            Class::Denied
        }
    }

    /// Judges one expression as written in an SBOM.
    pub fn judge(&self, expression: &str) -> Judgement {
        let trimmed = expression.trim();
        if trimmed.is_empty()
            || trimmed.eq_ignore_ascii_case("NOASSERTION")
            || trimmed.eq_ignore_ascii_case("NONE")
        {
            return Judgement {
                verdict: LicenseVerdict::Review,
                offending: vec![if trimmed.is_empty() {
                    "no licence".to_owned()
                } else {
                    trimmed.to_ascii_uppercase()
                }],
            };
        }
        let expr = match spdx::Expression::parse_mode(trimmed, spdx::ParseMode::LAX) {
            Ok(e) => e,
            Err(e) => {
                return Judgement {
                    verdict: LicenseVerdict::Invalid,
                    offending: vec![e.to_string()],
                };
            }
        };
        if expr.evaluate(|r| self.class(r) == Class::Allowed) {
            return Judgement {
                verdict: LicenseVerdict::Allow,
                offending: Vec::new(),
            };
        }
        let offending: Vec<String> = expr
            .requirements()
            .filter(|r| self.class(&r.req) != Class::Allowed)
            .map(|r| r.req.to_string())
            .collect();
        let verdict = if expr.evaluate(|r| self.class(r) != Class::Denied) {
            LicenseVerdict::Review
        } else {
            LicenseVerdict::Deny
        };
        Judgement { verdict, offending }
    }

    /// Judges all of a component's licence entries (all apply): the worst
    /// verdict wins. No entry at all is `review`.
    pub fn judge_all(&self, expressions: &[String]) -> Judgement {
        if expressions.is_empty() {
            return self.judge("");
        }
        let rank = |v: LicenseVerdict| match v {
            LicenseVerdict::Allow => 0,
            LicenseVerdict::Review => 1,
            LicenseVerdict::Deny => 2,
            LicenseVerdict::Invalid => 3,
        };
        let mut worst = Judgement {
            verdict: LicenseVerdict::Allow,
            offending: Vec::new(),
        };
        for e in expressions {
            let j = self.judge(e);
            if rank(j.verdict) > rank(worst.verdict) {
                worst.verdict = j.verdict;
            }
            worst.offending.extend(j.offending);
        }
        worst
    }
}
