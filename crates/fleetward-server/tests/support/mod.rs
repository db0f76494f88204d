//! A real server on 127.0.0.1:0 with a fresh SQLite data dir, and a client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fleetward_core::Role;
use fleetward_server::{RunningServer, ServerConfig};
use fleetward_store::{SqliteStore, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = ServerConfig::default_database_url(dir.path());
        let init =
            fleetward_server::init::initialize(dir.path(), &url, time::OffsetDateTime::now_utc())
                .await
                .unwrap();
        let mut config = ServerConfig {
            data_dir: dir.path().to_owned(),
            database_url: url,
            listen: "127.0.0.1:0".parse().unwrap(),
            device_listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: ServerConfig::DEFAULT_MAX_BODY_BYTES,
            releases: Default::default(),
        };
        adjust(&mut config);
        let server = fleetward_server::start(config).await.unwrap();
        let base = format!("http://{}", server.addrs.operator);
        TestServer {
            dir,
            server: Some(server),
            base,
            admin: init.admin_token,
            http: reqwest::Client::new(),
        }
    }

    /// A second handle on the same database, for checking what was stored
    /// and for planting records the API cannot make (an expired token).
    pub async fn store(&self) -> Arc<dyn Store> {
        let url = ServerConfig::default_database_url(self.dir.path());
        Arc::new(SqliteStore::open(&url).await.unwrap())
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    pub async fn raw(
        &self,
        token: &str,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let response = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(Some(token), Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(Some(token), Method::POST, path, Some(body)).await
    }

    pub async fn token_for(&self, role: Role) -> String {
        let answer = self
            .post(
                &self.admin,
                "/api/v1/tokens",
                serde_json::json!({ "name": format!("test {role}"), "role": role }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn register(
        &self,
        id: &str,
        hardware: &str,
        version: Option<&str>,
        tags: &[(&str, &str)],
    ) {
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let mut body =
            serde_json::json!({ "id": id, "hardware": hardware, "tags": tags, "status": "active" });
        if let Some(version) = version {
            body["version"] = Value::String(version.to_owned());
        }
        let answer = self.post(&self.admin, "/api/v1/devices", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    }

    pub async fn audit_len(&self) -> usize {
        let answer = self.get(&self.admin, "/api/v1/audit?limit=1000").await;
        answer.body["items"].as_array().unwrap().len()
    }

    pub async fn device_count(&self) -> u64 {
        self.get(&self.admin, "/api/v1/devices/count").await.body["count"]
            .as_u64()
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }
}
