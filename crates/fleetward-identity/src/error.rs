//! The one error type of the crate.
//!
//! Every refusal of untrusted input (a CSR, a presented certificate) has its
//! own variant, so that the server can record *why* something was refused in
//! the security-event log and answer the device with a precise message
//! without matching on strings.

use std::path::PathBuf;

use fleetward_core::id::{DeviceId, IdError};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    // --- CSR input ------------------------------------------------------
    /// The CSR is larger than [`crate::MAX_CSR_LEN`].
    #[error("CSR is {len} bytes, more than the {max} allowed")]
    CsrTooLarge { len: usize, max: usize },
    /// No `CERTIFICATE REQUEST` PEM block could be found or decoded.
    #[error("CSR is not a PEM \"CERTIFICATE REQUEST\"")]
    CsrNotPem,
    /// The DER inside is not a PKCS#10 certification request.
    #[error("CSR is malformed: {0}")]
    CsrMalformed(String),
    /// The CSR's self-signature does not verify with its own public key:
    /// it was tampered with or the requester does not hold the private key.
    #[error("CSR signature does not verify")]
    CsrBadSignature,
    /// The CSR is signed with an algorithm we refuse (SHA-1, MD5, ...).
    #[error("CSR signature algorithm {oid} is refused")]
    CsrSignatureAlgorithmRefused { oid: String },

    // --- key strength ---------------------------------------------------
    /// RSA key below 2048 bits.
    #[error("RSA key of {bits} bits is too small; at least {min} bits are required")]
    RsaKeyTooSmall { bits: usize, min: usize },
    /// RSA key above 8192 bits: refused because verifying with it is a cheap
    /// way for a client to make the server burn CPU.
    #[error("RSA key of {bits} bits is too large; at most {max} bits are accepted")]
    RsaKeyTooLarge { bits: usize, max: usize },
    /// An elliptic curve other than P-256 and P-384 (secp256k1, brainpool, ...).
    #[error("elliptic curve {oid} is not accepted; use P-256 or P-384")]
    UnknownCurve { oid: String },
    /// A DSA key.
    #[error("DSA keys are not accepted")]
    DsaKeyRefused,
    /// Any other public key algorithm (GOST, Ed448, X25519, ...).
    #[error("public key algorithm {oid} is not accepted")]
    KeyAlgorithmRefused { oid: String },

    // --- device identity ------------------------------------------------
    /// The CSR (or certificate) names a different device than expected.
    #[error("CSR claims device id {claimed:?}, expected {expected}")]
    DeviceIdMismatch { claimed: String, expected: DeviceId },
    /// Subject CN and SAN URI name different devices.
    #[error("subject CN {cn:?} and SAN URI device id {san:?} disagree")]
    DeviceIdConflict { cn: String, san: String },
    /// More than one device id URI, or more than one CN.
    #[error("more than one device id is claimed")]
    DeviceIdAmbiguous,
    /// No device id where one is required.
    #[error("no device id: expected a subject CN <id> and/or a SAN URI urn:fleetward:device:<id>")]
    DeviceIdMissing,
    /// A device id that does not follow [`DeviceId`]'s rules.
    #[error("invalid device id {raw:?}: {source}")]
    DeviceIdInvalid {
        raw: String,
        #[source]
        source: IdError,
    },

    // --- certificates, keys, CRLs ---------------------------------------
    /// A certificate could not be parsed.
    #[error("certificate is malformed: {0}")]
    CertificateMalformed(String),
    /// A private key could not be parsed or is of an unsupported type.
    #[error("private key is malformed or unsupported: {0}")]
    KeyMalformed(String),
    /// The CA private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    CaKeyMismatch,
    /// The CA certificate is not a CA (no basicConstraints cA=TRUE, or no
    /// keyCertSign / cRLSign usage).
    #[error("certificate is not usable as the fleet CA: {0}")]
    NotACa(&'static str),
    /// notAfter is not after notBefore (or nextUpdate not after thisUpdate).
    #[error("validity window is empty: {not_before} is not before {not_after}")]
    EmptyValidity {
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    },
    /// A serial number that is not 1..=20 bytes of hex.
    #[error("invalid certificate serial {0:?}")]
    InvalidSerial(String),
    /// A DNS name that cannot go into a certificate.
    #[error("invalid DNS name {0:?}")]
    InvalidDnsName(String),
    /// The listener certificate would have no subject alternative name.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,

    // --- libraries and I/O ----------------------------------------------
    /// rcgen refused to build or sign something.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (bad CA or CRL).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The OS random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// A private key file that others than its owner may read.
    #[error("{path}: the key file is readable by others (mode {mode:o}); chmod 600 it")]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    /// The certificate carries no serial we can use.
    #[error("certificate serial number is missing or longer than 20 bytes")]
    BadSerial,
    /// Writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
