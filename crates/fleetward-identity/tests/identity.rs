//! The CA, CSR policy, certificates, CRLs and the client verifier, with
//! plain values (no sockets: the server crate's tests use real TLS).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fleetward_core::DeviceId;
use fleetward_identity::ca::{CaKeyAlgorithm, read_key_file, write_key_file};
use fleetward_identity::{
    FleetCa, IdentityError, IdentityPolicy, KeyKind, PeerCert, RevocationReason, RevocationSet,
    RevokedCert, Serial, parse_csr,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier as _;
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn ca() -> FleetCa {
    FleetCa::generate(
        "test fleet CA",
        CaKeyAlgorithm::EcdsaP256,
        now(),
        time::Duration::days(3650),
    )
    .unwrap()
    .0
}

/// A CSR the way a device makes one: CN and/or SAN URI.
fn csr_with(key: &KeyPair, cn: Option<&str>, uris: &[&str]) -> String {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn csr(id: &str) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let pem = csr_with(&key, Some(id), &[&format!("urn:fleetward:device:{id}")]);
    (key, pem)
}

#[test]
fn good_csrs_of_every_accepted_key_type() {
    let check = |pem: &str, id: &str, key: KeyKind| {
        let valid = parse_csr(pem).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(valid.device_id.as_str(), id);
        assert_eq!(valid.key, key);
    };
    check(&csr("dev-1").1, "dev-1", KeyKind::EcP256);
    check(
        &fixture("rsa2048.csr"),
        "dev-rsa",
        KeyKind::Rsa { bits: 2048 },
    );
    check(&fixture("p384.csr"), "dev-p384", KeyKind::EcP384);
    check(&fixture("ed25519.csr"), "dev-ed", KeyKind::Ed25519);
    let key = KeyPair::generate().unwrap();
    check(
        &csr_with(&key, Some("cn-only"), &[]),
        "cn-only",
        KeyKind::EcP256,
    );
    check(
        &csr_with(&key, None, &["urn:fleetward:device:san-only"]),
        "san-only",
        KeyKind::EcP256,
    );
}

#[test]
fn bad_csrs_are_refused_with_their_reason() {
    let key = KeyPair::generate().unwrap();
    let good = csr("dev-1").1;
    let mut tampered = good.clone().into_bytes();
    // Flip a byte of the base64 body in the middle (inside the signed part).
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let check = |name: &str, pem: &str, expected: fn(&IdentityError) -> bool| match parse_csr(pem) {
        Ok(v) => panic!("{name}: accepted as {v:?}"),
        Err(e) => assert!(expected(&e), "{name}: wrong refusal {e:?}"),
    };
    check("empty", "", |e| matches!(e, IdentityError::CsrNotPem));
    check("not pem", "hello", |e| {
        matches!(e, IdentityError::CsrNotPem)
    });
    check(
        "garbage der",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        |e| matches!(e, IdentityError::CsrMalformed(_)),
    );
    check("huge", &"A".repeat(20_000), |e| {
        matches!(e, IdentityError::CsrTooLarge { .. })
    });
    check("tampered", &tampered, |e| {
        matches!(
            e,
            IdentityError::CsrBadSignature | IdentityError::CsrMalformed(_)
        )
    });
    check("rsa 1024", &fixture("rsa1024.csr"), |e| {
        matches!(e, IdentityError::RsaKeyTooSmall { bits: 1024, .. })
    });
    check("secp256k1", &fixture("secp256k1.csr"), |e| {
        matches!(e, IdentityError::UnknownCurve { .. })
    });
    check("dsa", &fixture("dsa.csr"), |e| {
        matches!(e, IdentityError::DsaKeyRefused)
    });
    check("sha1", &fixture("rsa2048-sha1.csr"), |e| {
        matches!(e, IdentityError::CsrSignatureAlgorithmRefused { .. })
    });
    check("no id", &csr_with(&key, None, &[]), |e| {
        matches!(e, IdentityError::DeviceIdMissing)
    });
    check(
        "cn and san disagree",
        &csr_with(&key, Some("dev-1"), &["urn:fleetward:device:dev-2"]),
        |e| matches!(e, IdentityError::DeviceIdConflict { .. }),
    );
    check(
        "two sans",
        &csr_with(
            &key,
            None,
            &["urn:fleetward:device:a", "urn:fleetward:device:b"],
        ),
        |e| matches!(e, IdentityError::DeviceIdAmbiguous),
    );
    check("bad id", &csr_with(&key, Some("dev 1/.."), &[]), |e| {
        matches!(e, IdentityError::DeviceIdInvalid { .. })
    });
}

#[test]
fn a_csr_claiming_another_device_is_refused() {
    let valid = parse_csr(&csr("dev-1").1).unwrap();
    assert!(
        valid
            .require_device(&DeviceId::parse("dev-1").unwrap())
            .is_ok()
    );
    assert!(matches!(
        valid.require_device(&DeviceId::parse("dev-2").unwrap()),
        Err(IdentityError::DeviceIdMismatch { .. })
    ));
}

#[test]
fn issued_certificates_name_the_device_twice_and_live_by_policy() {
    let ca = ca();
    let policy = IdentityPolicy::default();
    for pem in [
        csr("dev-1").1,
        fixture("rsa2048.csr"),
        fixture("p384.csr"),
        fixture("ed25519.csr"),
    ] {
        let valid = parse_csr(&pem).unwrap();
        let serial = Serial::random().unwrap();
        let issued = ca
            .issue_device(
                &valid,
                &serial,
                now(),
                &policy,
                Some("https://x/device/v1/crl"),
            )
            .unwrap();
        assert_eq!(issued.not_after, now() + time::Duration::days(90));
        let peer = PeerCert::from_der(&issued.der).unwrap();
        assert_eq!(peer.device_id, valid.device_id);
        assert_eq!(peer.serial, serial);
        assert_eq!(peer.not_after, issued.not_after);
        // The verifier accepts it while valid and not revoked.
        let revocations = Arc::new(RevocationSet::new());
        let verifier =
            fleetward_identity::DeviceClientVerifier::new(&ca, revocations.clone()).unwrap();
        let at = |t: OffsetDateTime| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(t.unix_timestamp()).unwrap(),
            ))
        };
        verifier
            .verify_client_cert(&issued.der, &[], at(now()))
            .unwrap();
        let expired =
            verifier.verify_client_cert(&issued.der, &[], at(now() + time::Duration::days(91)));
        assert!(expired.is_err(), "expired must fail");
        revocations.revoke(serial.clone(), now());
        let revoked = verifier.verify_client_cert(&issued.der, &[], at(now()));
        assert!(
            matches!(
                revoked,
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked
                ))
            ),
            "{revoked:?}"
        );
    }
}

#[test]
fn a_foreign_ca_is_not_accepted() {
    let ours = ca();
    let foreign = ca();
    let valid = parse_csr(&csr("dev-1").1).unwrap();
    let issued = foreign
        .issue_device(
            &valid,
            &Serial::random().unwrap(),
            now(),
            &IdentityPolicy::default(),
            None,
        )
        .unwrap();
    let verifier =
        fleetward_identity::DeviceClientVerifier::new(&ours, Arc::new(RevocationSet::new()))
            .unwrap();
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000));
    assert!(verifier.verify_client_cert(&issued.der, &[], at).is_err());
    // Nor is the CA's own certificate presented as a client certificate.
    let own: &CertificateDer<'_> = ours.cert_der();
    assert!(verifier.verify_client_cert(own, &[], at).is_err());
}

#[test]
fn the_ca_round_trips_through_files_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, key_pem) = FleetCa::generate(
        "test",
        CaKeyAlgorithm::EcdsaP384,
        now(),
        time::Duration::days(1),
    )
    .unwrap();
    let path = dir.path().join("elsewhere/ca.key");
    write_key_file(&path, &key_pem).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        write_key_file(&path, &key_pem).is_err(),
        "never overwritten"
    );
    let loaded = FleetCa::from_pem(ca.cert_pem(), &read_key_file(&path).unwrap()).unwrap();
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(IdentityError::KeyFilePermissions { .. })
        ));
    }
    // Another CA's key does not load with this certificate.
    let (_, other_key) = FleetCa::generate(
        "x",
        CaKeyAlgorithm::EcdsaP384,
        now(),
        time::Duration::days(1),
    )
    .unwrap();
    assert!(matches!(
        FleetCa::from_pem(ca.cert_pem(), &other_key),
        Err(IdentityError::CaKeyMismatch)
    ));
}

#[test]
fn crls_list_revoked_serials_and_are_signed_by_the_ca() {
    use x509_parser::prelude::FromDer as _;
    let ca = ca();
    let serial = Serial::random().unwrap();
    let der = ca
        .crl(
            &[RevokedCert {
                serial: serial.clone(),
                revoked_at: now(),
                reason: RevocationReason::KeyCompromise,
            }],
            7,
            now(),
            now() + time::Duration::days(1),
        )
        .unwrap();
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let serials: Vec<_> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(serials, vec![serial.as_bytes().to_vec()]);
    let (_, ca_cert) = x509_parser::certificate::X509Certificate::from_der(ca.cert_der()).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    assert!(
        ca.crl(&[], 1, now(), now()).is_err(),
        "an empty window is refused"
    );
}
