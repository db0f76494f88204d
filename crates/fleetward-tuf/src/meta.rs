//! The four TUF roles' metadata and the signed envelope around them.
//!
//! Fields follow the TUF 1.0 specification's names exactly, so the JSON is
//! what any TUF client (python-tuf's ngclient among them) expects. Unknown
//! fields are ignored on reading: signatures are always checked over the
//! `signed` object exactly as received, never over a re-encoding of these
//! structs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{PublicKey, Result, SigningKey, TufError, cjson};

pub const SPEC_VERSION: &str = "1.0.31";
pub const ROLE_ROOT: &str = "root";
pub const ROLE_TARGETS: &str = "targets";
pub const ROLE_SNAPSHOT: &str = "snapshot";
pub const ROLE_TIMESTAMP: &str = "timestamp";

/// An expiry time, written as TUF writes it: `2030-01-01T00:00:00Z`
/// (whole seconds, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry(pub OffsetDateTime);

const EXPIRY_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl Expiry {
    /// `at`, truncated to whole seconds.
    pub fn at(at: OffsetDateTime) -> Self {
        let seconds = at.unix_timestamp();
        Expiry(OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(at))
    }

    pub fn to_rfc3339(self) -> String {
        self.0
            .to_offset(time::UtcOffset::UTC)
            .format(EXPIRY_FORMAT)
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Result<Self> {
        let parsed = time::PrimitiveDateTime::parse(text, EXPIRY_FORMAT)
            .map_err(|e| TufError::Malformed(format!("expires {text:?}: {e}")))?;
        Ok(Expiry(parsed.assume_utc()))
    }

    pub fn is_past(self, now: OffsetDateTime) -> bool {
        self.0 <= now
    }
}

impl Serialize for Expiry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Expiry::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What every role's metadata has in common.
pub trait Role: Serialize + serde::de::DeserializeOwned {
    const TYPE: &'static str;
    fn version(&self) -> u64;
    fn expires(&self) -> Expiry;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub consistent_snapshot: bool,
    pub version: u64,
    pub expires: Expiry,
    pub keys: BTreeMap<String, PublicKey>,
    pub roles: BTreeMap<String, RoleKeys>,
}

impl Root {
    /// A root naming `keys` for each role, with their thresholds.
    pub fn new(version: u64, expires: Expiry, roles: &[(&str, &[PublicKey], u64)]) -> Result<Self> {
        let mut keys = BTreeMap::new();
        let mut role_keys = BTreeMap::new();
        for (role, public_keys, threshold) in roles {
            let mut keyids = Vec::new();
            for key in *public_keys {
                let id = crate::key_id(key)?;
                keys.insert(id.clone(), key.clone());
                keyids.push(id);
            }
            role_keys.insert(
                (*role).to_owned(),
                RoleKeys {
                    keyids,
                    threshold: *threshold,
                },
            );
        }
        let root = Root {
            type_: ROLE_ROOT.to_owned(),
            spec_version: SPEC_VERSION.to_owned(),
            consistent_snapshot: true,
            version,
            expires,
            keys,
            roles: role_keys,
        };
        root.check_consistent()?;
        Ok(root)
    }

    /// Every role present, every threshold reachable, every key id known.
    pub fn check_consistent(&self) -> Result<()> {
        let bad = |m: String| Err(TufError::InconsistentRoot(m));
        for role in [ROLE_ROOT, ROLE_TARGETS, ROLE_SNAPSHOT, ROLE_TIMESTAMP] {
            let Some(keys) = self.roles.get(role) else {
                return bad(format!("no {role} role"));
            };
            if keys.threshold == 0 {
                return bad(format!("{role} threshold is 0"));
            }
            let mut distinct = keys.keyids.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() != keys.keyids.len() {
                return bad(format!("{role} lists a key twice"));
            }
            if (distinct.len() as u64) < keys.threshold {
                return bad(format!(
                    "{role} threshold {} exceeds its {} key(s)",
                    keys.threshold,
                    distinct.len()
                ));
            }
            if let Some(unknown) = keys.keyids.iter().find(|id| !self.keys.contains_key(*id)) {
                return bad(format!("{role} names unknown key {unknown}"));
            }
        }
        Ok(())
    }

    /// The keys of `role` and its threshold.
    pub fn role_keys(&self, role: &str) -> Result<(Vec<(&String, &PublicKey)>, u64)> {
        let keys = self
            .roles
            .get(role)
            .ok_or_else(|| TufError::InconsistentRoot(format!("no {role} role")))?;
        let listed = keys
            .keyids
            .iter()
            .filter_map(|id| self.keys.get(id).map(|key| (id, key)))
            .collect();
        Ok((listed, keys.threshold))
    }
}

impl Role for Root {
    const TYPE: &'static str = ROLE_ROOT;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> Expiry {
        self.expires
    }
}

/// One image as targets metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    /// Algorithm name (`sha256`, `sha512`) to lowercase hex.
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expiry,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<crate::Delegations>,
}

impl Targets {
    pub fn new(version: u64, expires: Expiry, targets: BTreeMap<String, TargetFile>) -> Self {
        Targets {
            type_: ROLE_TARGETS.to_owned(),
            spec_version: SPEC_VERSION.to_owned(),
            version,
            expires,
            targets,
            delegations: None,
        }
    }
}

impl Role for Targets {
    const TYPE: &'static str = ROLE_TARGETS;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> Expiry {
        self.expires
    }
}

/// A metadata file as snapshot and timestamp pin it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expiry,
    pub meta: BTreeMap<String, MetaFile>,
}

impl Role for Snapshot {
    const TYPE: &'static str = ROLE_SNAPSHOT;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> Expiry {
        self.expires
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: Expiry,
    pub meta: BTreeMap<String, MetaFile>,
}

impl Role for Timestamp {
    const TYPE: &'static str = ROLE_TIMESTAMP;
    fn version(&self) -> u64 {
        self.version
    }
    fn expires(&self) -> Expiry {
        self.expires
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    /// Hex of the signature bytes.
    pub sig: String,
}

/// Metadata with its signatures, as served and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    pub signatures: Vec<Signature>,
    pub signed: T,
}

impl<T: Role> Signed<T> {
    /// `signed`, signed by each of `keys`.
    pub fn sign(signed: T, keys: &[&SigningKey]) -> Result<Self> {
        let mut envelope = Signed {
            signatures: Vec::new(),
            signed,
        };
        envelope.add_signatures(keys)?;
        Ok(envelope)
    }

    /// Adds (or replaces) the signatures of `keys`, so several release
    /// managers can each add theirs to the same metadata.
    pub fn add_signatures(&mut self, keys: &[&SigningKey]) -> Result<()> {
        let message = cjson::canonical(&self.signed)?;
        for key in keys {
            let keyid = key.key_id()?;
            self.signatures.retain(|s| s.keyid != keyid);
            self.signatures.push(Signature {
                keyid,
                sig: hex::encode(key.sign(&message)),
            });
        }
        Ok(())
    }

    /// The bytes to serve and store: canonical JSON of the envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        cjson::canonical(self)
    }
}
