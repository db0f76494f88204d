//! The identity a presented (already chain-verified) certificate carries.
//!
//! The device listener calls this once per connection; the result is the
//! only device identity the device API knows.

use fleetward_core::DeviceId;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

use crate::{DEVICE_URI_PREFIX, IdentityError, Result, Serial};

/// Who a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub device_id: DeviceId,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The DER SubjectPublicKeyInfo, to tell whether a renewal changes the key.
    pub spki_der: Vec<u8>,
}

impl PeerCert {
    /// Reads the device id (CN and SAN URI, which must agree), serial and
    /// validity of a DER certificate. Does not check the chain: the TLS
    /// verifier has done that before this is called.
    pub fn from_der(der: &[u8]) -> Result<PeerCert> {
        let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| IdentityError::CertificateMalformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(IdentityError::CertificateMalformed("trailing bytes".into()));
        }
        let mut cns = cert.subject().iter_common_name();
        let cn = match (cns.next(), cns.next()) {
            (Some(cn), None) => cn
                .as_str()
                .map_err(|_| IdentityError::CertificateMalformed("CN is not a string".into()))?
                .to_owned(),
            (None, _) => return Err(IdentityError::DeviceIdMissing),
            (Some(_), Some(_)) => return Err(IdentityError::DeviceIdAmbiguous),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::CertificateMalformed(e.to_string()))?
            .ok_or(IdentityError::DeviceIdMissing)?;
        let mut uris = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => uri.strip_prefix(DEVICE_URI_PREFIX),
                _ => None,
            });
        let uri = match (uris.next(), uris.next()) {
            (Some(uri), None) => uri.to_owned(),
            (None, _) => return Err(IdentityError::DeviceIdMissing),
            (Some(_), Some(_)) => return Err(IdentityError::DeviceIdAmbiguous),
        };
        if uri != cn {
            return Err(IdentityError::DeviceIdConflict { cn, san: uri });
        }
        let device_id = DeviceId::parse(&cn)
            .map_err(|source| IdentityError::DeviceIdInvalid { raw: cn, source })?;
        Ok(PeerCert {
            device_id,
            serial: Serial::from_bytes(cert.raw_serial())?,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            spki_der: cert.public_key().raw.to_vec(),
        })
    }
}
