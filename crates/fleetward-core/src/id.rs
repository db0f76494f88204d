//! Validated identifiers.
//!
//! A device id ends up in certificates (subject and SAN URI), URLs, SQL
//! parameters and log lines, so its alphabet is deliberately small: nothing
//! that needs escaping anywhere it travels.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("device id is empty")]
    Empty,
    #[error("device id is longer than {max} characters")]
    TooLong { max: usize },
    #[error("device id contains {found:?} at position {position}; allowed are A-Z a-z 0-9 . _ : -")]
    BadCharacter { found: char, position: usize },
    #[error("device id must start with a letter or digit")]
    BadStart,
}

/// The stable identity of one device, as carried in its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { max: Self::MAX_LEN });
        }
        for (position, found) in raw.chars().enumerate() {
            let allowed = found.is_ascii_alphanumeric() || matches!(found, '.' | '_' | ':' | '-');
            if !allowed {
                return Err(IdError::BadCharacter { found, position });
            }
        }
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(IdError::BadStart);
        }
        Ok(DeviceId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DeviceId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), IdError>) {
        assert_eq!(
            DeviceId::parse(input).map(|_| ()),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn device_ids() {
        check("dev-0001", Ok(()));
        check("A1.b_2:c-3", Ok(()));
        check("", Err(IdError::Empty));
        check(&"a".repeat(128), Ok(()));
        check(&"a".repeat(129), Err(IdError::TooLong { max: 128 }));
        check(
            "dev 1",
            Err(IdError::BadCharacter {
                found: ' ',
                position: 3,
            }),
        );
        check(
            "dev/1",
            Err(IdError::BadCharacter {
                found: '/',
                position: 3,
            }),
        );
        check(
            "dév",
            Err(IdError::BadCharacter {
                found: 'é',
                position: 1,
            }),
        );
        check(
            "<script>",
            Err(IdError::BadCharacter {
                found: '<',
                position: 0,
            }),
        );
        check("-dev", Err(IdError::BadStart));
        check(".dev", Err(IdError::BadStart));
    }
}
