//! Release lifecycle: draft → signed → published → deprecated | revoked.
//!
//! One table of allowed moves, so the API, the store and the tests agree on
//! what may happen to a release. A revoked release is final: it is never
//! offered again, whatever anyone asks later.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Uploaded; not in any signed metadata yet.
    Draft,
    /// Listed in targets metadata signed by the offline targets keys.
    Signed,
    /// Offered to devices (the director may name it).
    Published,
    /// No longer offered for new installs; devices running it are fine.
    Deprecated,
    /// Withdrawn: never offered, devices running it are flagged.
    Revoked,
}

/// What an operator asks to do to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAction {
    Sign,
    Publish,
    Deprecate,
    Revoke,
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 5] = [
        ReleaseState::Draft,
        ReleaseState::Signed,
        ReleaseState::Published,
        ReleaseState::Deprecated,
        ReleaseState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Draft => "draft",
            ReleaseState::Signed => "signed",
            ReleaseState::Published => "published",
            ReleaseState::Deprecated => "deprecated",
            ReleaseState::Revoked => "revoked",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether devices may be told to install a release in this state.
    pub fn offerable(self) -> bool {
        self == ReleaseState::Published
    }

    /// Whether the release's image belongs in the next targets metadata.
    pub fn listed_in_targets(self) -> bool {
        !matches!(self, ReleaseState::Revoked)
    }

    /// The state after `action`, or why it is not allowed.
    pub fn after(self, action: ReleaseAction) -> Result<ReleaseState, String> {
        use ReleaseAction as A;
        use ReleaseState as S;
        match (self, action) {
            // Re-signing a signed release is how new targets versions are made.
            (S::Draft | S::Signed, A::Sign) => Ok(S::Signed),
            (S::Published | S::Deprecated, A::Sign) => Ok(self),
            (S::Signed, A::Publish) => Ok(S::Published),
            (S::Published, A::Deprecate) => Ok(S::Deprecated),
            (S::Draft | S::Signed | S::Published | S::Deprecated, A::Revoke) => Ok(S::Revoked),
            (S::Draft, A::Publish) => {
                Err("a draft release must be signed before it is published".into())
            }
            (S::Revoked, _) => Err("the release is revoked; that is final".into()),
            (state, action) => Err(format!("cannot {action:?} a {state} release").to_lowercase()),
        }
    }
}

impl fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ReleaseAction as A;
    use super::ReleaseState as S;

    #[test]
    fn transitions() {
        let check = |from: S, action: A, expected: Option<S>| {
            assert_eq!(from.after(action).ok(), expected, "{from} {action:?}");
        };
        check(S::Draft, A::Sign, Some(S::Signed));
        check(S::Draft, A::Publish, None);
        check(S::Draft, A::Deprecate, None);
        check(S::Draft, A::Revoke, Some(S::Revoked));
        check(S::Signed, A::Sign, Some(S::Signed));
        check(S::Signed, A::Publish, Some(S::Published));
        check(S::Signed, A::Deprecate, None);
        check(S::Published, A::Publish, None);
        check(S::Published, A::Deprecate, Some(S::Deprecated));
        check(S::Published, A::Revoke, Some(S::Revoked));
        check(S::Deprecated, A::Publish, None);
        check(S::Deprecated, A::Revoke, Some(S::Revoked));
        for action in [A::Sign, A::Publish, A::Deprecate, A::Revoke] {
            check(S::Revoked, action, None);
        }
        assert!(S::Published.offerable());
        assert!(!S::Revoked.offerable() && !S::Deprecated.offerable());
    }

    #[test]
    fn names_round_trip() {
        for state in S::ALL {
            assert_eq!(S::parse(state.as_str()), Some(state));
        }
    }
}
