//! Delegated targets roles: one per product line.
//!
//! The top-level targets role is the most valuable offline key set a maker
//! has; if every release of every product line needed it, it would be used
//! daily and stop being offline. TUF's answer is delegation (spec 1.0 §4.5):
//! the top-level targets metadata names other roles, each with its own keys,
//! threshold and the target paths it may sign for. fleetward delegates by
//! product line (`rev2/*/*` to the role `rev2`), so the rev2 team's keys can
//! sign rev2 images and nothing else, and losing them cannot put an image on
//! another product line's devices.
//!
//! Path patterns are matched as python-tuf does: both the pattern and the
//! target path are split on `/`, must have the same number of segments, and
//! each segment is matched with shell wildcards (`*`, `?`, `[…]`), so a
//! wildcard never crosses a directory separator.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    PublicKey, ROLE_ROOT, ROLE_SNAPSHOT, ROLE_TARGETS, ROLE_TIMESTAMP, Result, Signature, TufError,
};

/// The `delegations` object of targets metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Delegations {
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: Vec<DelegatedRole>,
}

/// One delegated role: who may sign it and for which target paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    /// Whether a search that reaches this role stops here (no backtracking
    /// to later delegations when this role does not list the target).
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

/// Delegated role names are file names (`3.rev2.json`) and must never be
/// taken for a top-level role: a letter first, then a small alphabet.
pub fn valid_role_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
        && ![ROLE_ROOT, ROLE_TARGETS, ROLE_SNAPSHOT, ROLE_TIMESTAMP].contains(&name)
}

impl DelegatedRole {
    /// Whether this role is trusted for `target` (spec §5.6.7.2).
    pub fn is_delegated_path(&self, target: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, target));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let hash = hex::encode(Sha256::digest(target.as_bytes()));
            return prefixes.iter().any(|p| hash.starts_with(p.as_str()));
        }
        false
    }
}

impl Delegations {
    /// Names, keys and thresholds make sense: unique valid names, exactly
    /// one of `paths` or `path_hash_prefixes`, every key id known and equal
    /// to its key's id, every threshold reachable.
    pub fn check_consistent(&self) -> Result<()> {
        let bad = |m: String| Err(TufError::Malformed(format!("delegations: {m}")));
        for (id, key) in &self.keys {
            if crate::key_id(key)? != *id {
                return bad(format!("key id {id} is not the id of its key"));
            }
        }
        let mut names = BTreeSet::new();
        for role in &self.roles {
            if !valid_role_name(&role.name) {
                return bad(format!(
                    "role name {:?} (a lowercase letter, then letters, digits, - or _; not a top-level role)",
                    role.name
                ));
            }
            if !names.insert(role.name.as_str()) {
                return bad(format!("role {} is delegated twice", role.name));
            }
            match (&role.paths, &role.path_hash_prefixes) {
                (Some(paths), None) if !paths.is_empty() => {}
                (None, Some(prefixes))
                    if !prefixes.is_empty()
                        && prefixes
                            .iter()
                            .all(|p| p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))) => {
                }
                _ => {
                    return bad(format!(
                        "role {} needs either paths or lowercase-hex path_hash_prefixes",
                        role.name
                    ));
                }
            }
            let distinct: BTreeSet<_> = role.keyids.iter().collect();
            if distinct.len() != role.keyids.len() {
                return bad(format!("role {} lists a key twice", role.name));
            }
            if role.threshold == 0 || role.threshold > distinct.len() as u64 {
                return bad(format!(
                    "role {} threshold {} with {} key(s)",
                    role.name,
                    role.threshold,
                    distinct.len()
                ));
            }
            if let Some(unknown) = role.keyids.iter().find(|id| !self.keys.contains_key(*id)) {
                return bad(format!("role {} names unknown key {unknown}", role.name));
            }
        }
        Ok(())
    }

    pub fn role(&self, name: &str) -> Option<&DelegatedRole> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The roles to visit for `target`, in order, as the preorder
    /// depth-first search of spec §5.6.7.2 takes them: every role whose
    /// paths match, up to and including the first terminating one.
    /// Returns the roles and whether the last one terminates the search.
    pub fn roles_for_target(&self, target: &str) -> (Vec<&DelegatedRole>, bool) {
        let mut roles = Vec::new();
        for role in &self.roles {
            if role.is_delegated_path(target) {
                roles.push(role);
                if role.terminating {
                    return (roles, true);
                }
            }
        }
        (roles, false)
    }

    /// Succeeds when a threshold of `role`'s keys signed `canonical_signed`.
    pub fn verify(
        &self,
        role: &DelegatedRole,
        canonical_signed: &[u8],
        signatures: &[Signature],
    ) -> Result<()> {
        let keys = role
            .keyids
            .iter()
            .filter_map(|id| self.keys.get(id).map(|key| (id, key)))
            .collect();
        crate::verify::verify_threshold(
            canonical_signed,
            signatures,
            keys,
            role.threshold,
            &role.name,
        )
    }
}

/// A TUF path pattern against a target path: same number of `/`-separated
/// segments, each matched by shell wildcards.
pub fn path_matches(pattern: &str, target: &str) -> bool {
    let patterns: Vec<&str> = pattern.split('/').collect();
    let segments: Vec<&str> = target.split('/').collect();
    patterns.len() == segments.len()
        && patterns
            .iter()
            .zip(&segments)
            .all(|(p, s)| glob_segment(p.as_bytes(), s.as_bytes()))
}

/// `fnmatch` for one segment: `*` any run, `?` one byte, `[abc]`, `[a-z]`,
/// `[!…]`; an unclosed `[` is a literal, as in Python's `fnmatch`.
///
/// Iterative, backtracking only to the last `*`, so that a hostile pattern
/// such as `*a*a*a*a*b` costs at most pattern × text steps, never an
/// exponential search.
fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(&c) = pattern.get(p) {
            let step = match c {
                b'*' => {
                    last_star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => Some(1),
                b'[' => match bracket(&pattern[p + 1..]) {
                    Some((set, rest)) => set
                        .contains(text[t])
                        .then(|| pattern.len() - p - rest.len()),
                    None => (text[t] == b'[').then_some(1),
                },
                literal => (text[t] == literal).then_some(1),
            };
            if let Some(width) = step {
                p += width;
                t += 1;
                continue;
            }
        }
        match last_star {
            Some((after_star, from)) => {
                p = after_star;
                t = from + 1;
                last_star = Some((after_star, from + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

struct ByteSet {
    negated: bool,
    items: Vec<(u8, u8)>,
}

impl ByteSet {
    fn contains(&self, c: u8) -> bool {
        self.items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != self.negated
    }
}

/// Parses the inside of `[…]` (after the `[`); `None` when unclosed.
fn bracket(pattern: &[u8]) -> Option<(ByteSet, &[u8])> {
    let (negated, mut i) = match pattern.first() {
        Some(b'!') => (true, 1),
        _ => (false, 0),
    };
    let mut items = Vec::new();
    let start = i;
    loop {
        let c = *pattern.get(i)?;
        // A `]` first in the set is a literal, as in Python.
        if c == b']' && i > start {
            return Some((ByteSet { negated, items }, &pattern[i + 1..]));
        }
        match (pattern.get(i + 1), pattern.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                items.push((c, hi));
                i += 3;
            }
            _ => {
                items.push((c, c));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_match_segment_by_segment() {
        let check = |pattern: &str, target: &str, expected: bool| {
            assert_eq!(
                path_matches(pattern, target),
                expected,
                "{pattern:?} against {target:?}"
            );
        };
        check("rev2/*/*", "rev2/1.4.0/fw.img", true);
        check("rev2/*/*", "rev3/1.4.0/fw.img", false);
        // A wildcard never crosses a separator.
        check("rev2/*", "rev2/1.4.0/fw.img", false);
        check("*", "rev2/fw.img", false);
        check("rev2/*/*.img", "rev2/1.4.0/fw.img", true);
        check("rev2/*/*.img", "rev2/1.4.0/fw.bin", false);
        check("foo-version-?.tgz", "foo-version-2.tgz", true);
        check("foo-version-?.tgz", "foo-version-alpha.tgz", false);
        check("rev[0-9]/*/*", "rev7/1.0/a", true);
        check("rev[!0-9]/*/*", "rev7/1.0/a", false);
        check("rev[!0-9]/*/*", "revx/1.0/a", true);
        check("[]]x", "]x", true);
        check("[abc", "[abc", true);
        check("", "", true);
        check("rev2/*/*", "", false);
        check("rev2//*", "rev2//x", true);
        check("*a*a*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(60), false);
        check("*.img", ".img", true);
        check("a*", "a", true);
        check("a*?", "a", false);
        check("*[0-9]", "rev2", true);
    }

    fn role(name: &str, paths: &[&str], terminating: bool) -> DelegatedRole {
        DelegatedRole {
            name: name.into(),
            keyids: vec![],
            threshold: 1,
            terminating,
            paths: Some(paths.iter().map(|p| (*p).to_owned()).collect()),
            path_hash_prefixes: None,
        }
    }

    #[test]
    fn roles_for_a_target_stop_at_the_first_terminating_match() {
        let delegations = Delegations {
            keys: BTreeMap::new(),
            roles: vec![
                role("a", &["rev2/*/*"], false),
                role("b", &["rev3/*/*"], true),
                role("c", &["rev2/*/*"], true),
                role("d", &["rev2/*/*"], false),
            ],
        };
        let names = |target: &str| {
            let (roles, terminated) = delegations.roles_for_target(target);
            (
                roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                terminated,
            )
        };
        assert_eq!(names("rev2/1/x"), (vec!["a", "c"], true));
        assert_eq!(names("rev3/1/x"), (vec!["b"], true));
        assert_eq!(names("rev4/1/x"), (vec![], false));
    }

    #[test]
    fn hash_prefixes_delegate_by_the_sha256_of_the_path() {
        let hash = hex::encode(Sha256::digest(b"rev2/1/x"));
        let mut by_hash = role("h", &[], false);
        by_hash.paths = None;
        by_hash.path_hash_prefixes = Some(vec![hash[..2].to_owned()]);
        assert!(by_hash.is_delegated_path("rev2/1/x"));
        let other = if &hash[..1] == "0" { "1" } else { "0" };
        by_hash.path_hash_prefixes = Some(vec![other.to_owned()]);
        assert!(!by_hash.is_delegated_path("rev2/1/x"));
    }

    #[test]
    fn role_names_are_safe_file_names_and_never_top_level_roles() {
        for (name, ok) in [
            ("rev2", true),
            ("gateway-eu_2", true),
            ("targets", false),
            ("root", false),
            ("2rev", false),
            ("Rev2", false),
            ("rev.2", false),
            ("", false),
            ("../x", false),
        ] {
            assert_eq!(valid_role_name(name), ok, "{name:?}");
        }
    }
}
