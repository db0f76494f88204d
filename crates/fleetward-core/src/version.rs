//! Ordering software versions, in Rust and in SQL.
//!
//! Stores keep, beside each version string, a *sort key*: a string whose
//! byte order is the version order. `version < "2.0.0"` then becomes a plain
//! indexed string comparison in any database.

/// The sort key of a version string.
pub fn sort_key(version: &str) -> String {
    version.to_owned()
}
