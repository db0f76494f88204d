//! The fleet CA: one self-signed ECDSA root per installation that signs
//! device certificates, the device listener's server certificate and the CRL.
//!
//! The CA's private key is a PKCS#8 PEM file written with mode 0600 and never
//! overwritten; reading it refuses a file others may read, the way `ssh`
//! does, because a leaked CA key lets anyone mint any device.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer as _;

use crate::csr::ValidCsr;
use crate::{IdentityError, Result, Serial, device_uri};

/// Key algorithm of the fleet CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaKeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
}

impl CaKeyAlgorithm {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            CaKeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CaKeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// Why a certificate was revoked, as RFC 5280 CRL reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    fn rcgen(self) -> rcgen::RevocationReason {
        match self {
            RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// A certificate just issued to a device.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub serial: Serial,
    pub der: CertificateDer<'static>,
    pub pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The loaded fleet CA.
pub struct FleetCa {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// The public key a device sent, in the form rcgen signs over.
struct DevicePublicKey(rcgen::SubjectPublicKeyInfo);

impl rcgen::PublicKeyData for DevicePublicKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

fn empty_window(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<()> {
    if not_after <= not_before {
        return Err(IdentityError::EmptyValidity {
            not_before,
            not_after,
        });
    }
    Ok(())
}

impl FleetCa {
    /// Makes a new CA valid from `now` for `lifetime`. Returns the CA and its
    /// private key as PKCS#8 PEM, for [`write_key_file`].
    pub fn generate(
        name: &str,
        algorithm: CaKeyAlgorithm,
        now: OffsetDateTime,
        lifetime: time::Duration,
    ) -> Result<(FleetCa, String)> {
        let key = KeyPair::generate_for(algorithm.rcgen())?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "fleetward");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + lifetime;
        empty_window(params.not_before, params.not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let ca = FleetCa::from_pem(&cert.pem(), &key_pem)?;
        Ok((ca, key_pem))
    }

    /// Loads a CA from its certificate and key, checking that the key is the
    /// certificate's and that the certificate may sign certificates and CRLs.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<FleetCa> {
        use rustls::pki_types::pem::PemObject as _;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| IdentityError::CertificateMalformed(e.to_string()))?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| IdentityError::KeyMalformed(e.to_string()))?;
        {
            let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&cert_der)
                .map_err(|e| IdentityError::CertificateMalformed(e.to_string()))?;
            let is_ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                return Err(IdentityError::NotACa("basicConstraints cA is not TRUE"));
            }
            let usage = cert.key_usage().ok().flatten().map(|ku| ku.value);
            if !usage.is_some_and(|u| u.key_cert_sign() && u.crl_sign()) {
                return Err(IdentityError::NotACa(
                    "keyUsage lacks keyCertSign or cRLSign",
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(IdentityError::CaKeyMismatch);
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(FleetCa {
            cert_pem: cert_pem.trim().to_owned() + "\n",
            cert_der,
            issuer,
        })
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate, hex: what an operator compares when
    /// provisioning devices with the CA out of band.
    pub fn fingerprint(&self) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &self.cert_der))
    }

    /// Issues a client certificate for the device a checked CSR names.
    /// Only the CSR's key and device id are used.
    pub fn issue_device(
        &self,
        csr: &ValidCsr,
        serial: &Serial,
        now: OffsetDateTime,
        policy: &crate::IdentityPolicy,
        crl_url: Option<&str>,
    ) -> Result<IssuedCert> {
        let public_key = DevicePublicKey(
            rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der).map_err(|_| {
                IdentityError::KeyAlgorithmRefused {
                    oid: csr.key.name(),
                }
            })?,
        );
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, csr.device_id.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            device_uri(&csr.device_id)
                .try_into()
                .map_err(|_| IdentityError::DeviceIdMissing)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - policy.clock_skew;
        params.not_after = now + policy.cert_lifetime;
        empty_window(now, params.not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        if let Some(url) = crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        let cert = params.signed_by(&public_key, &self.issuer)?;
        Ok(IssuedCert {
            serial: serial.clone(),
            pem: cert.pem(),
            der: cert.der().clone(),
            not_before: params.not_before,
            not_after: params.not_after,
        })
    }

    /// A server certificate for the device listener with a fresh P-256 key
    /// that never touches the disk. Returns the chain (leaf, CA) and key.
    pub fn issue_server(
        &self,
        names: &[String],
        now: OffsetDateTime,
        lifetime: time::Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        if names.is_empty() {
            return Err(IdentityError::NoServerNames);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "fleetward device listener");
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| IdentityError::InvalidDnsName(name.clone())),
            })
            .collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + lifetime;
        empty_window(now, params.not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(Serial::random()?.as_bytes()));
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }

    /// A signed DER CRL listing `revoked`, valid from `this_update` until
    /// `next_update`.
    pub fn crl(
        &self,
        revoked: &[RevokedCert],
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>> {
        empty_window(this_update, next_update)?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number.to_be_bytes().to_vec()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(r.serial.as_bytes()),
                    revocation_time: r.revoked_at,
                    reason_code: Some(r.reason.rcgen()),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// Writes a private key file readable only by its owner. Refuses to replace
/// an existing file: losing the CA key would orphan every device.
pub fn write_key_file(path: &Path, pem: &str) -> Result<()> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_key_file(path: &Path) -> Result<String> {
    let io = |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::KeyFilePermissions {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    let meta_len = std::fs::metadata(path).map_err(io)?.len();
    if meta_len > 64 * 1024 {
        return Err(IdentityError::KeyMalformed(format!(
            "{} is {meta_len} bytes; not a key",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(io)
}
