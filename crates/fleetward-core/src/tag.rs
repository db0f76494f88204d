//! Device tags: `key=value` labels that rollouts and queries select on.
//!
//! Keys are lower-case so that `Region` and `region` can never be two tags;
//! both halves use an alphabet that needs no escaping in URLs, SQL
//! parameters, shell arguments or HTML.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {0:?} is not of the form key=value")]
    NoEquals(String),
    #[error("tag key is empty")]
    EmptyKey,
    #[error("tag key {key:?} is longer than {max} characters")]
    KeyTooLong { key: String, max: usize },
    #[error(
        "tag key {key:?} contains {found:?}; keys use a-z 0-9 . _ - and start with a letter or digit"
    )]
    BadKey { key: String, found: char },
    #[error("tag key {0:?} is a word of the query language")]
    ReservedKey(String),
    #[error("tag value for {key:?} is longer than {max} characters")]
    ValueTooLong { key: String, max: usize },
    #[error("tag value {value:?} contains {found:?}; values use A-Z a-z 0-9 . _ : / + @ -")]
    BadValue { value: String, found: char },
}

/// The words of the target query language; a tag key may not be one.
pub const RESERVED_WORDS: &[&str] = &["and", "or", "not", "in", "true", "false"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TagKey(String);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TagValue(String);

/// One `key=value` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub key: TagKey,
    pub value: TagValue,
}

impl TagKey {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, TagError> {
        if raw.is_empty() {
            return Err(TagError::EmptyKey);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(TagError::KeyTooLong {
                key: truncated(raw),
                max: Self::MAX_LEN,
            });
        }
        if let Some(found) = raw.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(TagError::BadKey {
                key: raw.to_owned(),
                found,
            });
        }
        if let Some(found) = raw.chars().next().filter(|c| !c.is_ascii_alphanumeric()) {
            return Err(TagError::BadKey {
                key: raw.to_owned(),
                found,
            });
        }
        if RESERVED_WORDS.contains(&raw) {
            return Err(TagError::ReservedKey(raw.to_owned()));
        }
        Ok(TagKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TagValue {
    pub const MAX_LEN: usize = 128;

    pub fn parse_for(key: &TagKey, raw: &str) -> Result<Self, TagError> {
        if raw.len() > Self::MAX_LEN {
            return Err(TagError::ValueTooLong {
                key: key.0.clone(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(found) = raw.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '+' | '@' | '-'))
        }) {
            return Err(TagError::BadValue {
                value: truncated(raw),
                found,
            });
        }
        Ok(TagValue(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tag {
    /// Parses `key=value`. A bare `key` is a flag: the value is empty.
    pub fn parse(raw: &str) -> Result<Self, TagError> {
        let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
        Self::new(key, value)
    }

    pub fn new(key: &str, value: &str) -> Result<Self, TagError> {
        let key = TagKey::parse(key)?;
        let value = TagValue::parse_for(&key, value)?;
        Ok(Tag { key, value })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key.0, self.value.0)
    }
}

impl fmt::Display for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tag {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tag::parse(s)
    }
}

impl std::str::FromStr for TagKey {
    type Err = TagError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TagKey::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for TagKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TagKey::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Error messages echo input back; keep them short.
fn truncated(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, &str), TagError>) {
        let got = Tag::parse(input);
        let got = got
            .as_ref()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .map_err(Clone::clone);
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn tags() {
        check("hw=rev2", Ok(("hw", "rev2")));
        check("region=eu-west-1", Ok(("region", "eu-west-1")));
        check("beta", Ok(("beta", "")));
        check("beta=", Ok(("beta", "")));
        check("owner=ops@example.com", Ok(("owner", "ops@example.com")));
        check("path=a/b:c+d", Ok(("path", "a/b:c+d")));
        check(
            "k=v=w",
            Err(TagError::BadValue {
                value: "v=w".into(),
                found: '=',
            }),
        );
        check("=v", Err(TagError::EmptyKey));
        check(
            "Region=eu",
            Err(TagError::BadKey {
                key: "Region".into(),
                found: 'R',
            }),
        );
        check(
            "-x=1",
            Err(TagError::BadKey {
                key: "-x".into(),
                found: '-',
            }),
        );
        check(
            "a b=1",
            Err(TagError::BadKey {
                key: "a b".into(),
                found: ' ',
            }),
        );
        check("and=1", Err(TagError::ReservedKey("and".into())));
        check("in", Err(TagError::ReservedKey("in".into())));
        check(
            "k=<script>",
            Err(TagError::BadValue {
                value: "<script>".into(),
                found: '<',
            }),
        );
        check(
            "k=a\"b",
            Err(TagError::BadValue {
                value: "a\"b".into(),
                found: '"',
            }),
        );
        check(
            &format!("{}=1", "k".repeat(64)),
            Err(TagError::KeyTooLong {
                key: "k".repeat(40),
                max: 63,
            }),
        );
        check(
            &format!("k={}", "v".repeat(129)),
            Err(TagError::ValueTooLong {
                key: "k".into(),
                max: 128,
            }),
        );
        check(
            &format!("k={}", "v".repeat(128)),
            Ok(("k", &"v".repeat(128))),
        );
    }
}
