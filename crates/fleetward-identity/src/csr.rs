//! Certificate signing requests from devices: untrusted input.
//!
//! The order of checks is deliberate: size, PEM, DER, then the key policy
//! (cheap, and it bounds RSA sizes before any RSA arithmetic), then the
//! self-signature (proof that the requester holds the private key), then
//! the device id. Nothing from the CSR is copied into a certificate except
//! the public key and the device id: requested extensions are ignored, so a
//! device cannot ask to become a CA or a TLS server.

use fleetward_core::DeviceId;
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{DEVICE_URI_PREFIX, IdentityError, MAX_CSR_LEN, Result};

pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 8192;

/// The kinds of device key we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// A short name for logs and the API.
    pub fn name(self) -> String {
        match self {
            KeyKind::Rsa { bits } => format!("rsa-{bits}"),
            KeyKind::EcP256 => "ec-p256".to_owned(),
            KeyKind::EcP384 => "ec-p384".to_owned(),
            KeyKind::Ed25519 => "ed25519".to_owned(),
        }
    }

    /// The key policy: RSA 2048-8192, EC P-256/P-384, Ed25519.
    pub fn of(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyKind> {
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm == OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa_bits(rsa.modulus),
                _ => return Err(IdentityError::CsrMalformed("bad RSA public key".into())),
            };
            if bits < MIN_RSA_BITS {
                return Err(IdentityError::RsaKeyTooSmall {
                    bits,
                    min: MIN_RSA_BITS,
                });
            }
            if bits > MAX_RSA_BITS {
                return Err(IdentityError::RsaKeyTooLarge {
                    bits,
                    max: MAX_RSA_BITS,
                });
            }
            Ok(KeyKind::Rsa { bits })
        } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .ok_or_else(|| IdentityError::UnknownCurve {
                    oid: "(none)".to_owned(),
                })?;
            if curve == OID_EC_P256 {
                Ok(KeyKind::EcP256)
            } else if curve == OID_NIST_EC_P384 {
                Ok(KeyKind::EcP384)
            } else {
                Err(IdentityError::UnknownCurve {
                    oid: curve.to_id_string(),
                })
            }
        } else if *algorithm == OID_SIG_ED25519 {
            Ok(KeyKind::Ed25519)
        } else if *algorithm == OID_KEY_TYPE_DSA {
            Err(IdentityError::DsaKeyRefused)
        } else {
            Err(IdentityError::KeyAlgorithmRefused {
                oid: algorithm.to_id_string(),
            })
        }
    }
}

/// Bits of a big-endian unsigned modulus, ignoring leading zero bytes.
fn rsa_bits(modulus: &[u8]) -> usize {
    let first = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let rest = &modulus[first..];
    match rest.first() {
        None => 0,
        Some(top) => rest.len() * 8 - top.leading_zeros() as usize,
    }
}

/// A CSR that passed every check: its key is acceptable, it is signed by
/// that key, and it names exactly one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCsr {
    pub device_id: DeviceId,
    pub key: KeyKind,
    /// The DER SubjectPublicKeyInfo, as the certificate will carry it.
    pub spki_der: Vec<u8>,
}

impl ValidCsr {
    /// Refuses a CSR naming another device than `expected`.
    pub fn require_device(&self, expected: &DeviceId) -> Result<()> {
        if &self.device_id == expected {
            Ok(())
        } else {
            Err(IdentityError::DeviceIdMismatch {
                claimed: self.device_id.to_string(),
                expected: expected.clone(),
            })
        }
    }
}

/// Parses and checks a PEM CSR (see the module docs for the order).
pub fn parse_csr(pem: &str) -> Result<ValidCsr> {
    if pem.len() > MAX_CSR_LEN {
        return Err(IdentityError::CsrTooLarge {
            len: pem.len(),
            max: MAX_CSR_LEN,
        });
    }
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| IdentityError::CsrNotPem)?;
    parse_csr_der(der.as_ref())
}

/// As [`parse_csr`], from DER.
pub fn parse_csr_der(der: &[u8]) -> Result<ValidCsr> {
    if der.len() > MAX_CSR_LEN {
        return Err(IdentityError::CsrTooLarge {
            len: der.len(),
            max: MAX_CSR_LEN,
        });
    }
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| IdentityError::CsrMalformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IdentityError::CsrMalformed(
            "trailing bytes after the CSR".into(),
        ));
    }
    let info = &csr.certification_request_info;
    let key = KeyKind::of(&info.subject_pki)?;
    let sig = &csr.signature_algorithm.algorithm;
    let allowed = [
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
        OID_PKCS1_RSASSAPSS,
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ED25519,
    ];
    if !allowed.contains(sig) {
        return Err(IdentityError::CsrSignatureAlgorithmRefused {
            oid: sig.to_id_string(),
        });
    }
    csr.verify_signature()
        .map_err(|_| IdentityError::CsrBadSignature)?;

    let mut common_names = info.subject.iter_common_name();
    let cn = match (common_names.next(), common_names.next()) {
        (None, _) => None,
        (Some(cn), None) => Some(
            cn.as_str()
                .map_err(|_| IdentityError::CsrMalformed("subject CN is not a string".into()))?
                .to_owned(),
        ),
        (Some(_), Some(_)) => return Err(IdentityError::DeviceIdAmbiguous),
    };
    let mut uris = Vec::new();
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name
                        && let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX)
                    {
                        uris.push(id.to_owned());
                    }
                }
            }
        }
    }
    if uris.len() > 1 {
        return Err(IdentityError::DeviceIdAmbiguous);
    }
    let raw = match (cn, uris.pop()) {
        (None, None) => return Err(IdentityError::DeviceIdMissing),
        (Some(cn), Some(san)) if cn != san => {
            return Err(IdentityError::DeviceIdConflict { cn, san });
        }
        (Some(id), _) | (None, Some(id)) => id,
    };
    let device_id =
        DeviceId::parse(&raw).map_err(|source| IdentityError::DeviceIdInvalid { raw, source })?;
    Ok(ValidCsr {
        device_id,
        key,
        spki_der: info.subject_pki.raw.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_bits_ignore_leading_zeros() {
        assert_eq!(rsa_bits(&[0, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0x01, 0]), 9);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
