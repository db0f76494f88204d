//! Device identity over real mutual TLS on 127.0.0.1: enrolment, renewal,
//! revocation, and every bad input of issue 3, each refused, recorded, and
//! issuing nothing. The last tests use clients nobody here wrote (curl,
//! openssl) and skip loudly when those are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use fleetward_identity::ca::{CaKeyAlgorithm, read_key_file};
use fleetward_identity::{FleetCa, IdentityPolicy, Serial, parse_csr};
use fleetward_store::CertRecord;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Answer, TestServer};
use time::OffsetDateTime;

/// A device: its key (which never leaves it) and CSR.
struct Device {
    id: String,
    key: KeyPair,
    csr: String,
    cert: Option<String>,
}

impl Device {
    fn new(id: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let csr = csr_for(&key, id);
        Device {
            id: id.to_owned(),
            key,
            csr,
            cert: None,
        }
    }

    fn identity(&self) -> (&str, String) {
        (self.cert.as_deref().unwrap(), self.key.serialize_pem())
    }
}

fn csr_for(key: &KeyPair, id: &str) -> String {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        format!("urn:fleetward:device:{id}").try_into().unwrap(),
    )];
    params.serialize_request(key).unwrap().pem().unwrap()
}

fn identity_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fleetward-identity/tests/data")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let text = response.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

impl TestServer {
    async fn enroll_token(&self, body: Value) -> String {
        let answer = self.post(&self.admin, "/api/v1/enroll-tokens", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    async fn enroll_raw(&self, body: Value) -> Answer {
        let http = self.device_client(None).await;
        let response = http
            .post(format!("{}/device/v1/enroll", self.device_base()))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn enroll(&self, token: &str, device: &mut Device) -> Answer {
        let answer = self
            .enroll_raw(json!({ "token": token, "csr": device.csr }))
            .await;
        if answer.status == StatusCode::CREATED {
            device.cert = Some(answer.body["certificate"].as_str().unwrap().to_owned());
        }
        answer
    }

    /// A client presenting the device's certificate.
    async fn as_device(&self, device: &Device) -> reqwest::Client {
        let (cert, key) = device.identity();
        self.device_client(Some((cert, &key))).await
    }

    async fn device_get(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> Result<Answer, reqwest::Error> {
        let response = client
            .get(format!("{}{}", self.device_base(), path))
            .send()
            .await?;
        Ok(answer(response).await)
    }

    async fn certs(&self) -> Vec<CertRecord> {
        let store = self.store().await;
        let mut all = Vec::new();
        for device in store.list_devices(None, None, 1000).await.unwrap() {
            all.extend(store.certificates(&device.id).await.unwrap());
        }
        store.close().await;
        all
    }

    async fn audit_actions(&self) -> Vec<(String, Value)> {
        let answer = self.get(&self.admin, "/api/v1/audit?limit=1000").await;
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let detail = match &e["detail"] {
                    Value::String(text) => serde_json::from_str(text).unwrap(),
                    other => other.clone(),
                };
                (e["action"].as_str().unwrap().to_owned(), detail)
            })
            .collect()
    }

    /// Refused handshakes are recorded by the connection's task, which may
    /// finish after the client has seen the failure: wait (bounded) for the
    /// record instead of racing it. This asserts an outcome, not a time.
    async fn wait_for_refusal(&self, reason: &str) -> bool {
        for _ in 0..200 {
            let found = self
                .audit_actions()
                .await
                .iter()
                .any(|(a, d)| a == "device.tls_refused" && d["reason"] == reason);
            if found {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        false
    }

    fn ca_key_path(&self) -> PathBuf {
        self.dir.path().join("ca/fleet-ca.key")
    }
}

fn standard_token() -> Value {
    json!({ "tags": {"hw": "rev2", "region": "eu"}, "uses": 100, "expires_in_secs": 86400 })
}

#[tokio::test]
async fn enrolment_issues_a_certificate_that_is_the_devices_only_identity() {
    let server = TestServer::start().await;
    let token = server.enroll_token(standard_token()).await;
    let mut device = Device::new("dev-1");
    let enrolled = server.enroll(&token, &mut device).await;
    assert_eq!(enrolled.status, StatusCode::CREATED, "{:?}", enrolled.body);
    assert_eq!(enrolled.body["device_id"], "dev-1");
    assert_eq!(enrolled.body["status"], "active");
    assert_eq!(
        enrolled.body["ca_chain"][0].as_str().unwrap(),
        server.ca_pem().await
    );

    // The certificate names the device in CN and SAN URI, lives 90 days.
    let der = rustls::pki_types::CertificateDer::from(pem_to_der(device.cert.as_deref().unwrap()));
    let peer = fleetward_identity::PeerCert::from_der(&der).unwrap();
    assert_eq!(peer.device_id.as_str(), "dev-1");
    assert_eq!(
        (peer.not_after - peer.not_before).whole_days(),
        90,
        "90 days plus the 5-minute skew allowance, rounded down"
    );

    // The registry has the device with the token's tags.
    let shown = server.get(&server.admin, "/api/v1/devices/dev-1").await;
    assert_eq!(shown.body["tags"], json!({"hw": "rev2", "region": "eu"}));
    assert_eq!(shown.body["status"], "active");

    // With its certificate the device is itself; without, nobody.
    let client = server.as_device(&device).await;
    let me = server.device_get(&client, "/device/v1/self").await.unwrap();
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["device_id"], "dev-1");
    assert_eq!(me.body["rekey_required"], false);
    let anonymous = server.device_client(None).await;
    let refused = server
        .device_get(&anonymous, "/device/v1/self")
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "client_certificate_required");

    // The operator sees the certificate; the audit log the enrolment.
    let certs = server
        .get(&server.admin, "/api/v1/devices/dev-1/certificates")
        .await;
    assert_eq!(certs.body["items"][0]["serial"], enrolled.body["serial"]);
    assert!(
        server
            .audit_actions()
            .await
            .iter()
            .any(|(a, _)| a == "device.enroll")
    );

    // The device API has its own OpenAPI document.
    let doc = server
        .device_get(&anonymous, "/device/v1/openapi.json")
        .await
        .unwrap();
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/device/v1/enroll",
        "/device/v1/renew",
        "/device/v1/self",
        "/device/v1/crl",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    assert!(!paths.keys().any(|p| p.starts_with("/api/")));
    server.stop().await;
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn bad_enrolments_are_refused_recorded_and_issue_nothing() {
    let server = TestServer::start().await;
    let token = server.enroll_token(standard_token()).await;
    let single = server
        .enroll_token(json!({ "uses": 1, "expires_in_secs": 3600 }))
        .await;
    let revoked = server
        .enroll_token(json!({ "uses": 5, "expires_in_secs": 3600 }))
        .await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    let answer = server
        .call(
            Some(&server.admin),
            reqwest::Method::DELETE,
            &format!("/api/v1/enroll-tokens/{revoked_id}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let expired = server
        .enroll_token(json!({ "uses": 5, "expires_in_secs": 60 }))
        .await;
    {
        // Age the token: the API will not make one that is born expired.
        let url = fleetward_server::ServerConfig::default_database_url(server.dir.path());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE enrolment_tokens SET expires_at = 0 WHERE id = ?")
            .bind(expired.split('_').nth(1).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let listed = server
        .enroll_token(json!({ "uses": 5, "expires_in_secs": 3600, "allow_listed_only": true }))
        .await;
    let keyed = Device::new("line-2");
    let other_key = KeyPair::generate().unwrap();
    let upload = server
        .post(
            &server.admin,
            "/api/v1/allow-list",
            json!({ "devices": [
                { "id": "line-1" },
                { "id": "line-2", "public_key": other_key.public_key_pem() },
            ]}),
        )
        .await;
    assert_eq!(upload.status, StatusCode::CREATED, "{:?}", upload.body);

    // Use up the single-use token, and enrol dev-e once for the replay.
    let mut first = Device::new("dev-single");
    assert_eq!(
        server.enroll(&single, &mut first).await.status,
        StatusCode::CREATED
    );
    let mut enrolled = Device::new("dev-e");
    assert_eq!(
        server.enroll(&token, &mut enrolled).await.status,
        StatusCode::CREATED
    );
    let baseline = server.certs().await.len();

    let good = Device::new("dev-new");
    let last = if token.ends_with('x') { "y" } else { "x" };
    let wrong_secret = format!("{}{last}", &token[..token.len() - 1]);
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "malformed CSR",
            json!({"token": token, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_csr",
        ),
        (
            "not PEM",
            json!({"token": token, "csr": "hello"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_csr",
        ),
        (
            "RSA 1024",
            json!({"token": token, "csr": identity_fixture("rsa1024.csr")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_key",
        ),
        (
            "unknown curve",
            json!({"token": token, "csr": identity_fixture("secp256k1.csr")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_key",
        ),
        (
            "DSA",
            json!({"token": token, "csr": identity_fixture("dsa.csr")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_key",
        ),
        (
            "SHA-1 signature",
            json!({"token": token, "csr": identity_fixture("rsa2048-sha1.csr")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_csr",
        ),
        (
            "garbage token",
            json!({"token": "fwe_nope", "csr": good.csr}),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "wrong secret",
            json!({"token": wrong_secret, "csr": good.csr}),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "operator token",
            json!({"token": server.admin, "csr": good.csr}),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "revoked token",
            json!({"token": revoked, "csr": good.csr}),
            StatusCode::UNAUTHORIZED,
            "token_revoked",
        ),
        (
            "expired token",
            json!({"token": expired, "csr": good.csr}),
            StatusCode::UNAUTHORIZED,
            "token_expired",
        ),
        (
            "exhausted token",
            json!({"token": single, "csr": good.csr}),
            StatusCode::FORBIDDEN,
            "token_exhausted",
        ),
        (
            "replayed enrolment",
            json!({"token": token, "csr": enrolled.csr}),
            StatusCode::CONFLICT,
            "already_enrolled",
        ),
        (
            "not on the allow-list",
            json!({"token": listed, "csr": good.csr}),
            StatusCode::FORBIDDEN,
            "not_allow_listed",
        ),
        (
            "allow-listed with another key",
            json!({"token": listed, "csr": keyed.csr}),
            StatusCode::FORBIDDEN,
            "key_mismatch",
        ),
        (
            "unknown field",
            json!({"token": token, "csr": good.csr, "admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "bad hardware",
            json!({"token": token, "csr": good.csr, "hardware": "a b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_hardware",
        ),
    ];
    for (name, body, status, code) in cases {
        let refused_before = server
            .audit_actions()
            .await
            .iter()
            .filter(|(a, _)| a == "device.enroll_refused")
            .count();
        let answer = server.enroll_raw(body).await;
        assert_eq!(answer.status, status, "{name}: {:?}", answer.body);
        assert_eq!(answer.code(), code, "{name}: {:?}", answer.body);
        assert_eq!(
            server.certs().await.len(),
            baseline,
            "{name}: nothing issued"
        );
        if code != "invalid_body" {
            let refusals: Vec<_> = server
                .audit_actions()
                .await
                .into_iter()
                .filter(|(a, _)| a == "device.enroll_refused")
                .collect();
            assert_eq!(refusals.len(), refused_before + 1, "{name}: recorded");
            assert_eq!(refusals.last().unwrap().1["code"], code, "{name}");
        }
    }
    assert!(
        server
            .get(&server.admin, "/api/v1/devices/dev-new")
            .await
            .status
            == StatusCode::NOT_FOUND,
        "no device was created by a refused enrolment"
    );
    // The allow-listed device with no key on file enrols.
    let mut line1 = Device::new("line-1");
    assert_eq!(
        server.enroll(&listed, &mut line1).await.status,
        StatusCode::CREATED
    );
    server.stop().await;
}

#[tokio::test]
async fn renewal_rotates_the_key_and_the_old_certificate_lasts_the_overlap() {
    let server = TestServer::start().await;
    let token = server.enroll_token(standard_token()).await;
    let mut device = Device::new("dev-r");
    server.enroll(&token, &mut device).await;
    let old_client = server.as_device(&device).await;

    // Operator forces a re-key; the device sees it at its next poll.
    let rekey = server
        .post(
            &server.admin,
            "/api/v1/devices/rekey",
            json!({ "ids": ["dev-r"] }),
        )
        .await;
    assert_eq!(rekey.body["devices"], 1, "{:?}", rekey.body);
    let me = server
        .device_get(&old_client, "/device/v1/self")
        .await
        .unwrap();
    assert_eq!(me.body["rekey_required"], true);

    let renew = |client: reqwest::Client, csr: String| {
        let url = format!("{}/device/v1/renew", server.device_base());
        async move {
            answer(
                client
                    .post(url)
                    .json(&json!({ "csr": csr }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Bad renewals: another device's id, the same key, no certificate.
    let other = Device::new("dev-other");
    let mismatch = renew(old_client.clone(), other.csr.clone()).await;
    assert_eq!(
        mismatch.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        mismatch.body
    );
    assert_eq!(mismatch.code(), "device_id_mismatch");
    let same_key = renew(old_client.clone(), device.csr.clone()).await;
    assert_eq!(same_key.status, StatusCode::CONFLICT, "{:?}", same_key.body);
    let anonymous = renew(server.device_client(None).await, device.csr.clone()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.certs().await.len(), 1, "nothing issued");

    let new_key = KeyPair::generate().unwrap();
    let renewed = renew(old_client.clone(), csr_for(&new_key, "dev-r")).await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    let renewed_device = Device {
        id: "dev-r".into(),
        key: new_key,
        csr: String::new(),
        cert: Some(renewed.body["certificate"].as_str().unwrap().to_owned()),
    };
    let new_client = server.as_device(&renewed_device).await;
    let me = server
        .device_get(&new_client, "/device/v1/self")
        .await
        .unwrap();
    assert_eq!(me.body["serial"], renewed.body["serial"]);
    assert_eq!(
        me.body["rekey_required"], false,
        "renewal clears the re-key request"
    );
    // Overlap (default 24 h): the old certificate still works...
    let fresh_old = server.as_device(&device).await;
    assert_eq!(
        server
            .device_get(&fresh_old, "/device/v1/self")
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );
    // ...but renews only once.
    let again = renew(fresh_old, csr_for(&KeyPair::generate().unwrap(), "dev-r")).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    let certs = server.certs().await;
    assert_eq!(certs.len(), 2);
    let old = certs.iter().find(|c| c.revoked_at.is_some()).unwrap();
    assert_eq!(old.reason.as_deref(), Some("superseded"));
    let _ = device.id;
    server.stop().await;
}

#[tokio::test]
async fn without_overlap_the_renewed_certificate_is_refused_at_once() {
    let server = TestServer::start_with(|config| {
        config.identity.policy.renewal_overlap = time::Duration::ZERO;
    })
    .await;
    let token = server.enroll_token(standard_token()).await;
    let mut device = Device::new("dev-z");
    server.enroll(&token, &mut device).await;
    let client = server.as_device(&device).await;
    let renewed = answer(
        client
            .post(format!("{}/device/v1/renew", server.device_base()))
            .json(&json!({ "csr": csr_for(&KeyPair::generate().unwrap(), "dev-z") }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK);
    // The open connection: refused on its next request.
    match server.device_get(&client, "/device/v1/self").await {
        Ok(answer) => assert_eq!(answer.code(), "certificate_revoked"),
        Err(error) => eprintln!("open connection closed instead: {error}"),
    }
    // A new connection: refused in the handshake.
    let fresh = server.as_device(&device).await;
    assert!(server.device_get(&fresh, "/device/v1/self").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_forced_rekey_with_a_deadline_cuts_off_devices_that_ignore_it() {
    let server = TestServer::start_with(|config| {
        config.identity.deadline_check = std::time::Duration::from_millis(100);
    })
    .await;
    let token = server
        .enroll_token(json!({"uses": 2, "expires_in_secs": 3600}))
        .await;
    let mut obedient = Device::new("dev-ok");
    let mut ignorer = Device::new("dev-late");
    server.enroll(&token, &mut obedient).await;
    server.enroll(&token, &mut ignorer).await;

    for (body, code) in [
        (json!({"all": true, "deadline_secs": 0}), "invalid_deadline"),
        (
            json!({"all": true, "deadline_secs": 400 * 24 * 3600}),
            "invalid_deadline",
        ),
    ] {
        let refused = server
            .post(&server.admin, "/api/v1/devices/rekey", body)
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            refused.body
        );
        assert_eq!(refused.code(), code);
    }
    let rekey = server
        .post(
            &server.admin,
            "/api/v1/devices/rekey",
            json!({ "ids": ["dev-ok", "dev-late"], "deadline_secs": 2 }),
        )
        .await;
    assert_eq!(rekey.body["devices"], 2, "{:?}", rekey.body);
    let obedient_client = server.as_device(&obedient).await;
    let me = server
        .device_get(&obedient_client, "/device/v1/self")
        .await
        .unwrap();
    assert_eq!(me.body["rekey_required"], true);
    assert!(me.body["rekey_deadline"].is_string(), "{:?}", me.body);
    // One device re-keys in time.
    let new_key = KeyPair::generate().unwrap();
    let renewed = answer(
        obedient_client
            .post(format!("{}/device/v1/renew", server.device_base()))
            .json(&json!({ "csr": csr_for(&new_key, "dev-ok") }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    let renewed = Device {
        id: "dev-ok".into(),
        key: new_key,
        csr: String::new(),
        cert: Some(renewed.body["certificate"].as_str().unwrap().to_owned()),
    };

    // The other does not: after the deadline its certificate is revoked.
    let mut revoked = false;
    for _ in 0..300 {
        let certs = server.certs().await;
        if certs.iter().any(|c| {
            c.device_id.as_str() == "dev-late" && c.reason.as_deref() == Some("privilege-withdrawn")
        }) {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(revoked, "the ignoring device's certificate was revoked");
    let fresh = server.as_device(&ignorer).await;
    assert!(server.device_get(&fresh, "/device/v1/self").await.is_err());
    // The device that re-keyed keeps working with its new key.
    let fresh = server.as_device(&renewed).await;
    let me = server.device_get(&fresh, "/device/v1/self").await.unwrap();
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["rekey_required"], false);
    let revocations = server
        .get(&server.admin, "/api/v1/events?kind=identity.revoked")
        .await;
    let items = revocations.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["device"], "dev-late");
    server.stop().await;
}

#[tokio::test]
async fn revocation_reaches_new_and_open_connections_and_the_crl() {
    let server = TestServer::start().await;
    let token = server.enroll_token(standard_token()).await;
    let mut device = Device::new("dev-v");
    let enrolled = server.enroll(&token, &mut device).await;
    let serial = enrolled.body["serial"].as_str().unwrap().to_owned();
    let client = server.as_device(&device).await;
    assert_eq!(
        server
            .device_get(&client, "/device/v1/self")
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );

    let bad = server
        .post(
            &server.admin,
            "/api/v1/devices/dev-v/revoke",
            json!({ "reason": "" }),
        )
        .await;
    assert_eq!(bad.code(), "invalid_reason");
    let revoked = server
        .post(
            &server.admin,
            "/api/v1/devices/dev-v/revoke",
            json!({ "reason": "stolen from the field", "code": "key-compromise" }),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert_eq!(revoked.body["revoked_serials"], json!([serial]));

    // The open (kept-alive) connection: its next request is refused.
    match server.device_get(&client, "/device/v1/self").await {
        Ok(answer) => {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            assert_eq!(answer.code(), "certificate_revoked");
        }
        Err(error) => eprintln!("open connection closed instead: {error}"),
    }
    // A new connection is refused in the handshake, and that is recorded.
    let fresh = server.as_device(&device).await;
    assert!(server.device_get(&fresh, "/device/v1/self").await.is_err());
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, _)| a == "device.revoke"));
    assert!(
        server.wait_for_refusal("certificate_revoked").await,
        "{:?}",
        server.audit_actions().await
    );

    // The CRL lists the serial, signed by the fleet CA.
    let crl = fetch_crl(&server).await;
    assert!(crl_serials(&crl, &server.ca_pem().await).contains(&serial));

    // The device can enrol again with a new key; decommissioning is final.
    let mut again = Device::new("dev-v");
    assert_eq!(
        server.enroll(&token, &mut again).await.status,
        StatusCode::CREATED
    );
    let gone = server
        .post(
            &server.admin,
            "/api/v1/devices/dev-v/decommission",
            json!({ "reason": "end of life" }),
        )
        .await;
    assert_eq!(gone.body["status"], "decommissioned", "{:?}", gone.body);
    let mut zombie = Device::new("dev-v");
    let refused = server.enroll(&token, &mut zombie).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "decommissioned");
    server.stop().await;
}

async fn fetch_crl(server: &TestServer) -> Vec<u8> {
    let anonymous = server.device_client(None).await;
    let response = anonymous
        .get(format!("{}/device/v1/crl", server.device_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pkix-crl");
    response.bytes().await.unwrap().to_vec()
}

fn crl_serials(der: &[u8], ca_pem: &str) -> Vec<String> {
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).unwrap();
    let ca_der = pem_to_der(ca_pem);
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca_der).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| Serial::from_bytes(r.raw_serial()).unwrap().to_hex())
        .collect()
}

/// A certificate the server's verifier must refuse, made by a CA.
fn issue_with(ca: &FleetCa, id: &str, at: OffsetDateTime) -> Device {
    let mut device = Device::new(id);
    let csr = parse_csr(&device.csr).unwrap();
    let issued = ca
        .issue_device(
            &csr,
            &Serial::random().unwrap(),
            at,
            &IdentityPolicy::default(),
            None,
        )
        .unwrap();
    device.cert = Some(issued.pem);
    device
}

#[tokio::test]
async fn foreign_expired_and_missing_certificates_and_garbage_are_refused() {
    let server = TestServer::start().await;
    let now = OffsetDateTime::now_utc();
    let (foreign_ca, _) = FleetCa::generate(
        "foreign",
        CaKeyAlgorithm::EcdsaP256,
        now,
        time::Duration::days(10),
    )
    .unwrap();
    let ours = FleetCa::from_pem(
        &server.ca_pem().await,
        &read_key_file(&server.ca_key_path()).unwrap(),
    )
    .unwrap();
    let foreign = issue_with(&foreign_ca, "dev-f", now);
    let expired = issue_with(&ours, "dev-x", now - time::Duration::days(100));
    for (name, device, reason) in [
        ("foreign CA", &foreign, "unknown_ca"),
        ("expired", &expired, "certificate_expired"),
    ] {
        let client = server.as_device(device).await;
        let result = server.device_get(&client, "/device/v1/self").await;
        assert!(
            result.is_err(),
            "{name}: must fail, got {:?}",
            result.map(|a| a.status)
        );
        assert!(
            server.wait_for_refusal(reason).await,
            "{name}: {:?}",
            server.audit_actions().await
        );
        // Nor can it enrol with a certificate in place of a token.
        let enrol = client
            .post(format!("{}/device/v1/enroll", server.device_base()))
            .json(&json!({ "token": "", "csr": device.csr }))
            .send()
            .await;
        assert!(enrol.is_err(), "{name}: the handshake fails before HTTP");
    }

    // Plain HTTP and random bytes on the TLS port: the connection closes
    // without an HTTP answer, and the refusal is recorded.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = server.server.as_ref().unwrap().addrs.device;
    for garbage in [
        b"GET /device/v1/self HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
        (0..=255u8).cycle().take(4096).collect(),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(&garbage).await;
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply).await;
        assert!(
            !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
            "no HTTP over a failed handshake"
        );
    }
    assert!(
        server.wait_for_refusal("not_tls").await,
        "{:?}",
        server.audit_actions().await
    );
    assert!(server.certs().await.is_empty(), "nothing issued");
    server.stop().await;
}

#[tokio::test]
async fn approval_holds_a_device_pending() {
    let server = TestServer::start().await;
    let token = server
        .enroll_token(json!({ "uses": 2, "expires_in_secs": 3600, "require_approval": true }))
        .await;
    let mut device = Device::new("dev-p");
    let enrolled = server.enroll(&token, &mut device).await;
    assert_eq!(enrolled.body["status"], "pending");
    let client = server.as_device(&device).await;
    let me = server.device_get(&client, "/device/v1/self").await.unwrap();
    assert_eq!(me.body["status"], "pending");
    let approved = server
        .call(
            Some(&server.admin),
            reqwest::Method::PATCH,
            "/api/v1/devices/dev-p",
            Some(json!({ "status": "active" })),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK);
    let me = server.device_get(&client, "/device/v1/self").await.unwrap();
    assert_eq!(me.body["status"], "active");
    server.stop().await;
}

// --- Clients nobody here wrote ----------------------------------------------

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok()
        || Command::new(name).arg("version").output().is_ok();
    if !found {
        eprintln!("SKIPPED: `{name}` is not installed; the external-client proof did not run");
    }
    found
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn write(dir: &Path, name: &str, content: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

// Multi-threaded: the external tools run as blocking child processes while
// the server answers them on another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_accept_issued_and_refuse_revoked_and_foreign_certificates() {
    if !tool("curl") || !tool("openssl") {
        return;
    }
    let server = TestServer::start().await;
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let token = server.enroll_token(standard_token()).await;

    // Enrol with a key and CSR made by openssl, posted by curl: a device
    // that does not run our agent.
    let key = dir.join("dev.key").display().to_string();
    let csr = dir.join("dev.csr").display().to_string();
    let (ok, out) = run(
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            "/CN=dev-curl",
            "-addext",
            "subjectAltName=URI:urn:fleetward:device:dev-curl",
            "-out",
            &csr,
        ],
    );
    assert!(ok, "{out}");
    let ca = write(dir, "ca.pem", server.ca_pem().await.as_bytes());
    let body = write(
        dir,
        "enroll.json",
        json!({ "token": token, "csr": std::fs::read_to_string(&csr).unwrap() })
            .to_string()
            .as_bytes(),
    );
    let base = server.device_base();
    let (ok, out) = run(
        "curl",
        &[
            "-sS",
            "--fail-with-body",
            "--cacert",
            &ca,
            "-H",
            "content-type: application/json",
            "--data-binary",
            &format!("@{body}"),
            &format!("{base}/device/v1/enroll"),
        ],
    );
    assert!(ok, "curl enrol: {out}");
    let enrolled: Value = serde_json::from_str(&out).unwrap();
    let cert = write(
        dir,
        "dev.pem",
        enrolled["certificate"].as_str().unwrap().as_bytes(),
    );

    // curl and s_client with the issued certificate succeed.
    let self_url = format!("{base}/device/v1/self");
    let (ok, out) = run(
        "curl",
        &[
            "-sS",
            "--fail-with-body",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &self_url,
        ],
    );
    assert!(
        ok && out.contains("\"device_id\":\"dev-curl\""),
        "curl with cert: {out}"
    );
    let connect = server.server.as_ref().unwrap().addrs.device.to_string();
    let s_client = |cert: &str, key: &str| {
        run(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-CAfile",
                &ca,
                "-cert",
                cert,
                "-key",
                key,
                "-verify_return_error",
                "-tls1_2",
                "-brief",
            ],
        )
    };
    let (ok, out) = s_client(&cert, &key);
    assert!(ok, "s_client with the issued cert: {out}");

    // Without a certificate curl reaches TLS but the API refuses.
    let (ok, out) = run(
        "curl",
        &["-sS", "--fail-with-body", "--cacert", &ca, &self_url],
    );
    assert!(!ok && out.contains("client_certificate_required"), "{out}");

    // A foreign CA's certificate fails the handshake.
    let (foreign_ca, _) = FleetCa::generate(
        "foreign",
        CaKeyAlgorithm::EcdsaP256,
        OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .unwrap();
    let foreign = issue_with(&foreign_ca, "dev-curl", OffsetDateTime::now_utc());
    let foreign_cert = write(
        dir,
        "foreign.pem",
        foreign.cert.as_deref().unwrap().as_bytes(),
    );
    let foreign_key = write(dir, "foreign.key", foreign.key.serialize_pem().as_bytes());
    let (ok, out) = run(
        "curl",
        &[
            "-sS",
            "--cacert",
            &ca,
            "--cert",
            &foreign_cert,
            "--key",
            &foreign_key,
            &self_url,
        ],
    );
    assert!(!ok, "curl with a foreign cert must fail: {out}");
    let (ok, out) = s_client(&foreign_cert, &foreign_key);
    assert!(
        !ok || out.contains("alert"),
        "s_client with a foreign cert: {out}"
    );

    // The CRL before revocation: accepted by openssl, serial absent.
    let crl_der = write(dir, "crl.der", &fetch_crl(&server).await);
    let (ok, out) = run(
        "openssl",
        &[
            "crl", "-inform", "DER", "-in", &crl_der, "-noout", "-CAfile", &ca,
        ],
    );
    assert!(ok && out.contains("verify OK"), "openssl crl: {out}");
    let crl_pem = dir.join("crl.pem").display().to_string();
    let (ok, out) = run(
        "openssl",
        &["crl", "-inform", "DER", "-in", &crl_der, "-out", &crl_pem],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            &ca,
            "-CRLfile",
            &crl_pem,
            &cert,
        ],
    );
    assert!(ok, "openssl verify -crl_check before revocation: {out}");

    // Revoke: curl and s_client now fail; the CRL says revoked.
    let revoked = server
        .post(
            &server.admin,
            "/api/v1/devices/dev-curl/revoke",
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let (ok, out) = run(
        "curl",
        &[
            "-sS", "--cacert", &ca, "--cert", &cert, "--key", &key, &self_url,
        ],
    );
    assert!(!ok, "curl with a revoked cert must fail: {out}");
    let (ok, out) = s_client(&cert, &key);
    assert!(
        !ok || out.contains("alert"),
        "s_client with a revoked cert: {out}"
    );
    let crl_der = write(dir, "crl2.der", &fetch_crl(&server).await);
    let (ok, out) = run(
        "openssl",
        &[
            "crl", "-inform", "DER", "-in", &crl_der, "-noout", "-CAfile", &ca, "-text",
        ],
    );
    assert!(ok && out.contains("verify OK"), "openssl crl: {out}");
    assert!(
        out.to_uppercase()
            .contains(&enrolled["serial"].as_str().unwrap().to_uppercase()),
        "the CRL lists the serial: {out}"
    );
    let (ok, out) = run(
        "openssl",
        &["crl", "-inform", "DER", "-in", &crl_der, "-out", &crl_pem],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            &ca,
            "-CRLfile",
            &crl_pem,
            &cert,
        ],
    );
    assert!(
        !ok && out.contains("revoked"),
        "openssl verify -crl_check after revocation: {out}"
    );
    server.stop().await;
}
