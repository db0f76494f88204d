//! Device identity: the fleet CA, CSR checks, device certificates, CRLs and
//! the rustls configuration of the device listener.
//!
//! This crate exists so that every decision about *who a device is* lives in
//! one place that does no network I/O and never reads the clock: callers pass
//! `now` in, so expiry, overlap and CRL windows are testable with plain values.
//! The only file I/O is writing and reading the CA key ([`ca::write_key_file`],
//! [`ca::read_key_file`]), because its permissions are part of its security.
//!
//! **Where the device id lives.** A device certificate names its device twice:
//! subject `CN=<id>` (what people and tools like `openssl x509 -subject` show)
//! and a SAN URI `urn:fleetward:device:<id>` (what RFC 6125-style matching and
//! most TLS stacks look at). The URN form is ours to define, needs no DNS, and
//! cannot be confused with a host name. A CSR may carry either or both; when
//! both are present they must agree. Issued certificates always carry both,
//! and [`PeerCert::from_der`] insists on both agreeing, so no certificate can
//! be read as two different devices.
//!
//! Crypto is `ring` throughout (rcgen, x509-parser's signature checks,
//! rustls), so there is one backend to audit.

pub mod ca;
pub mod csr;
pub mod error;
pub mod peer;
pub mod revocation;
pub mod tls;

use std::fmt;

pub use ca::{FleetCa, IssuedCert, RevocationReason, RevokedCert};
pub use csr::{KeyKind, ValidCsr, parse_csr};
pub use error::{IdentityError, Result};
pub use fleetward_core::DeviceId;
pub use peer::PeerCert;
pub use revocation::RevocationSet;
pub use tls::{DeviceClientVerifier, crypto_provider, device_server_config, plain_server_config};

/// The largest PEM CSR accepted. A P-384 or RSA-4096 CSR is under 2 KiB;
/// 16 KiB leaves room for RSA-8192 and long subjects, and bounds parsing.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// SAN URI prefix naming a device: `urn:fleetward:device:<id>`.
pub const DEVICE_URI_PREFIX: &str = "urn:fleetward:device:";

/// The SAN URI of a device.
pub fn device_uri(id: &DeviceId) -> String {
    format!("{DEVICE_URI_PREFIX}{id}")
}

/// A certificate serial number in canonical form: big-endian, no leading
/// zero bytes, 1 to 20 bytes (RFC 5280 §4.1.2.2). Displayed as lower-case hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 128 random bits with the top bit clear, so the DER INTEGER is
    /// positive and exactly 16 bytes long (the first byte is never zero).
    pub fn random() -> Result<Self> {
        use ring::rand::SecureRandom as _;
        let rng = ring::rand::SystemRandom::new();
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes).map_err(|_| IdentityError::Rng)?;
        bytes[0] &= 0x7f;
        bytes[0] |= 0x40;
        Ok(Serial(bytes.to_vec()))
    }

    /// From the content bytes of a DER INTEGER (leading zeros allowed).
    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let canonical = &raw[first..];
        if canonical.is_empty() || canonical.len() > 20 {
            return Err(IdentityError::BadSerial);
        }
        Ok(Serial(canonical.to_vec()))
    }

    /// From lower- or upper-case hex, as stored.
    pub fn parse_hex(raw: &str) -> Result<Self> {
        let bytes = hex::decode(raw).map_err(|_| IdentityError::InvalidSerial(raw.to_owned()))?;
        Self::from_bytes(&bytes).map_err(|_| IdentityError::InvalidSerial(raw.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

/// How long certificates live and when devices renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPolicy {
    /// Lifetime of a device certificate.
    pub cert_lifetime: time::Duration,
    /// A device should renew once less than this is left.
    pub renew_before: time::Duration,
    /// How long the previous certificate stays valid after a renewal.
    pub renewal_overlap: time::Duration,
    /// Backdating of `notBefore`, for devices whose clocks run a little late.
    pub clock_skew: time::Duration,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            cert_lifetime: time::Duration::days(90),
            renew_before: time::Duration::days(30),
            renewal_overlap: time::Duration::hours(24),
            clock_skew: time::Duration::minutes(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_canonical() {
        let check = |raw: &[u8], expected: Option<&str>| {
            assert_eq!(
                Serial::from_bytes(raw).ok().map(|s| s.to_hex()),
                expected.map(str::to_owned),
                "{raw:?}"
            );
        };
        check(&[0, 0, 1, 2], Some("0102"));
        check(&[0x7f], Some("7f"));
        check(&[], None);
        check(&[0, 0], None);
        check(&[1; 21], None);
        check(&[1; 20], Some(&"01".repeat(20)));
        let random = Serial::random().unwrap();
        assert_eq!(random.as_bytes().len(), 16);
        assert!(random.as_bytes()[0] < 0x80 && random.as_bytes()[0] >= 0x40);
        assert_eq!(Serial::parse_hex(&random.to_hex()).unwrap(), random);
        assert!(Serial::parse_hex("zz").is_err());
    }
}
