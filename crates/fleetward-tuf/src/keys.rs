//! ed25519 keys in TUF's key format.
//!
//! A key's id is the SHA-256 of its canonical JSON, as the TUF specification
//! computes it. Signing keys are held as values; where they come from (an
//! encrypted offline file, the server's data dir) is the caller's business.

use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Result, TufError, cjson};

/// A public key as TUF metadata spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Hex of the 32-byte ed25519 public key.
    pub public: String,
}

impl PublicKey {
    pub fn ed25519(public: &[u8; 32]) -> Self {
        PublicKey {
            keytype: "ed25519".to_owned(),
            scheme: "ed25519".to_owned(),
            keyval: KeyVal {
                public: hex::encode(public),
            },
        }
    }

    /// True when `sig` is this key's ed25519 signature of `message`. Keys of
    /// any other type or scheme verify nothing.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return false;
        }
        let Ok(public) = hex::decode(&self.keyval.public) else {
            return false;
        };
        let Ok(public) = <[u8; 32]>::try_from(public.as_slice()) else {
            return false;
        };
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        key.verify_strict(message, &sig).is_ok() && key.verify(message, &sig).is_ok()
    }
}

/// The TUF key id: hex SHA-256 of the key's canonical JSON.
pub fn key_id(key: &PublicKey) -> Result<String> {
    Ok(hex::encode(Sha256::digest(cjson::canonical(key)?)))
}

/// An ed25519 signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &hex::encode(self.0.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| TufError::Key("an ed25519 seed is 32 bytes".to_owned()))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::ed25519(self.0.verifying_key().as_bytes())
    }

    pub fn key_id(&self) -> Result<String> {
        key_id(&self.public())
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let a = SigningKey::from_seed(&[1; 32]).unwrap();
        let b = SigningKey::from_seed(&[2; 32]).unwrap();
        let sig = a.sign(b"hello");
        assert!(a.public().verifies(b"hello", &sig));
        assert!(!a.public().verifies(b"hellp", &sig));
        assert!(!b.public().verifies(b"hello", &sig));
        assert!(!a.public().verifies(b"hello", &sig[..63]));
        let mut rsa = a.public();
        rsa.keytype = "rsa".to_owned();
        assert!(!rsa.verifies(b"hello", &sig));
    }

    #[test]
    fn key_ids_are_stable_and_distinct() {
        let a = SigningKey::from_seed(&[1; 32]).unwrap();
        let b = SigningKey::from_seed(&[2; 32]).unwrap();
        assert_eq!(a.key_id().unwrap(), a.key_id().unwrap());
        assert_ne!(a.key_id().unwrap(), b.key_id().unwrap());
        assert_eq!(a.key_id().unwrap().len(), 64);
        assert!(format!("{a:?}").contains("public"));
        assert!(!format!("{a:?}").contains(&hex::encode([1u8; 32])));
    }
}
