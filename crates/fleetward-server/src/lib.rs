//! The fleetward server: two listeners over one store.
//!
//! The operator listener serves the JSON API under `/api/v1` (and, later, the
//! console); the device listener serves devices under `/device/v1`. They have
//! separate routers so that nothing meant for operators is reachable from the
//! device network. Handlers are thin: they authenticate, validate into core
//! types, call the store, and map errors through [`error::ApiError`].

pub mod api;
pub mod artifacts;
pub mod auth;
pub mod cache;
pub mod console;
pub mod device;
pub mod error;
pub mod events;
pub mod identity;
pub mod init;
pub mod lease;
pub mod metrics;
pub mod monitor;
pub mod repo;
pub mod rollout;
pub mod sbom_gate;
pub mod tuf_http;
pub mod vulns;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use fleetward_store::Store;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Everything a running server needs to know, already resolved from file,
/// environment and flags by the caller.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub listen: SocketAddr,
    pub device_listen: SocketAddr,
    /// Largest JSON body the operator API accepts.
    pub max_body_bytes: usize,
    /// Certificate policy and the device listener's names.
    pub identity: identity::IdentityConfig,
    /// Artifacts, TUF lifetimes (signed releases).
    pub releases: repo::ReleaseConfig,
    /// Detection settings, alert sinks, automatic quarantine.
    pub monitor: monitor::MonitorConfig,
    /// How often the rollout engine ticks (`rollout::DEFAULT_TICK`).
    pub rollout_tick: std::time::Duration,
}

impl ServerConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

    /// The SQLite database inside a data dir.
    pub fn default_database_url(data_dir: &std::path::Path) -> String {
        format!("sqlite://{}", data_dir.join("fleetward.db").display())
    }
}

/// Shared state of both routers: one reference-counted pointer.
///
/// axum clones the state into every request, several times (the router's
/// service, each `State` extractor). With a field per shared part that was
/// ten atomic increments and ten decrements per clone, on counters both
/// cores write: a twentieth of a device lookup's time (perf, BENCHMARKS.md).
/// One `Arc` makes it one of each.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<metrics::Metrics>,
    pub config: Arc<ServerConfig>,
    pub tokens: Arc<auth::TokenCache>,
    /// The settings row, read at most once a second per process.
    pub settings: Arc<cache::SettingsCache>,
    /// Devices the director recently had nothing for (see [`cache::DirectorCache`]).
    pub director: Arc<cache::DirectorCache>,
    /// Signs checkpoints of the security-event log.
    pub event_signer: Arc<fleetward_events::CheckpointSigner>,
    /// The fleet CA, revocations, CRL and device TLS configuration.
    pub identity: Arc<identity::IdentityState>,
    /// Artifact store, online TUF keys, publish gates.
    pub releases: Arc<repo::Releases>,
    /// Live rogue-device detection.
    pub monitor: Arc<monitor::Monitor>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }

    /// The server's clock. Domain code never reads it; handlers pass it in.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// The run-time settings, cached for at most [`cache::SettingsCache::TTL`].
    pub async fn settings(&self) -> fleetward_store::Result<fleetward_store::Settings> {
        self.settings.get(&*self.store).await
    }
}

/// Where a running server listens; also written to `<data-dir>/server.json`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BoundAddrs {
    pub operator: SocketAddr,
    pub device: SocketAddr,
}

/// A server that has bound its sockets and is serving.
#[derive(Debug)]
pub struct RunningServer {
    pub addrs: BoundAddrs,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Asks both listeners to stop accepting, lets in-flight requests finish,
    /// closes the store, and waits for all of it.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task")?
    }

    /// Waits until the server stops by itself (it only does on error) or
    /// `signal` resolves, then shuts down gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            () = signal => {}
            _ = self.shutdown.closed() => {}
        }
        self.shutdown().await
    }
}

pub fn operator_router(state: AppState) -> Router {
    let (api, _) = api::operator_api().split_for_parts();
    Router::new()
        .merge(api)
        .merge(console::router(state.clone()))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(api::openapi_json),
        )
        .route("/healthz", axum::routing::get(api::meta::healthz))
        .route("/readyz", axum::routing::get(api::meta::readyz))
        .route("/metrics", axum::routing::get(metrics::render))
        .route(
            "/tuf/metadata/{file}",
            axum::routing::get(tuf_http::operator_metadata),
        )
        .route(
            "/tuf/targets/{*path}",
            axum::routing::get(tuf_http::operator_target),
        )
        .fallback(api::meta::not_found)
        .method_not_allowed_fallback(api::meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_operator,
        ))
        .with_state(state)
}

/// The device router. Served over mutual TLS by [`device::listener`].
pub fn device_router(state: AppState) -> Router {
    let (identity, _) = device::device_api().split_for_parts();
    Router::new()
        .merge(identity)
        .route(
            "/device/v1/openapi.json",
            axum::routing::get(device::openapi_json),
        )
        .route("/healthz", axum::routing::get(api::meta::healthz))
        .route(
            "/tuf/metadata/{file}",
            axum::routing::get(tuf_http::device_metadata),
        )
        .route(
            "/tuf/targets/{*path}",
            axum::routing::get(tuf_http::device_target),
        )
        .route(
            "/device/v1/director/targets.json",
            axum::routing::get(tuf_http::director_targets),
        )
        .fallback(api::meta::not_found)
        .method_not_allowed_fallback(api::meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track_device,
        ))
        .with_state(state)
}

/// Opens the store, binds both listeners, writes `server.json`, and serves
/// until [`RunningServer::shutdown`].
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let store = fleetward_store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the store at {}", redact_url(&config.database_url)))?;
    start_with_store(config, store).await
}

pub async fn start_with_store(
    config: ServerConfig,
    store: Arc<dyn Store>,
) -> anyhow::Result<RunningServer> {
    let operator_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the operator listener {}", config.listen))?;
    let device_listener = TcpListener::bind(config.device_listen)
        .await
        .with_context(|| format!("binding the device listener {}", config.device_listen))?;
    let addrs = BoundAddrs {
        operator: operator_listener.local_addr()?,
        device: device_listener.local_addr()?,
    };
    let event_signer = events::load_or_create_key(&config.data_dir)?;
    // Alert sinks start at the present; doing it before serving means no
    // event of this run can slip in ahead of a new sink's cursor.
    monitor::respond::init_cursors(&*store, &config.monitor).await?;
    write_server_json(&config.data_dir, &addrs)?;
    tracing::info!(operator = %addrs.operator, device = %addrs.device, "listening");

    let identity = identity::IdentityState::load(
        &*store,
        config.identity.clone(),
        addrs.device,
        OffsetDateTime::now_utc(),
    )
    .await?;
    let releases = Arc::new(
        repo::Releases::open(&config.data_dir, config.releases.clone())
            .context("opening the artifact store and online keys")?,
    );
    releases.artifacts.probe().await.with_context(|| {
        format!(
            "the artifact store {} does not answer (bucket, endpoint, credentials?)",
            releases.artifacts.location()
        )
    })?;
    let monitor = Arc::new(monitor::Monitor::new(config.monitor.detection.clone()));
    let state = AppState::new(Shared {
        store: store.clone(),
        metrics: metrics::Metrics::new(),
        config: Arc::new(config),
        tokens: Arc::default(),
        settings: Arc::default(),
        director: Arc::default(),
        event_signer: Arc::new(event_signer),
        identity: Arc::new(identity),
        releases: releases.clone(),
        monitor,
    });
    let (shutdown, watcher) = watch::channel(false);
    // This server's name in leases: periodic work runs on one replica.
    let holder = lease::Holder::generate();
    let refresher = tokio::spawn(repo::refresh_task(
        store.clone(),
        releases.clone(),
        holder.clone(),
        watcher.clone(),
    ));
    let vulnerabilities = tokio::spawn(vulns::watch_task(
        store.clone(),
        releases,
        state.config.data_dir.clone(),
        holder.clone(),
        watcher.clone(),
    ));
    let operator = axum::serve(
        operator_listener,
        operator_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped(watcher.clone()));
    let device = device::listener::serve(
        device_listener,
        device_router(state.clone()),
        state.clone(),
        watcher,
    );
    let data_dir = state.config.data_dir.clone();
    let checkpoints = events::checkpoint_task(
        store.clone(),
        state.event_signer.clone(),
        holder.clone(),
        shutdown.subscribe(),
    );
    let retention = events::retention_task(store.clone(), holder.clone(), shutdown.subscribe());
    let responder = monitor::respond::respond_task(
        store.clone(),
        state.identity.clone(),
        state.config.monitor.clone(),
        shutdown.subscribe(),
    );
    let deadlines = identity::deadline_task(
        store.clone(),
        state.identity.clone(),
        holder.clone(),
        shutdown.subscribe(),
    );
    let rollouts = rollout::engine_task(
        store.clone(),
        state.director.clone(),
        state.config.rollout_tick,
        holder,
        shutdown.subscribe(),
    );
    let task = tokio::spawn(async move {
        let (operator, device, (), (), (), (), ()) = tokio::join!(
            operator.into_future(),
            device,
            checkpoints,
            retention,
            responder,
            deadlines,
            rollouts
        );
        let _ = refresher.await;
        let _ = vulnerabilities.await;
        store.close().await;
        let _ = std::fs::remove_file(data_dir.join(SERVER_JSON));
        operator.context("operator listener")?;
        device.context("device listener")?;
        tracing::info!("stopped");
        Ok(())
    });
    Ok(RunningServer {
        addrs,
        shutdown,
        task,
    })
}

async fn stopped(mut watcher: watch::Receiver<bool>) {
    let _ = watcher.wait_for(|stop| *stop).await;
}

pub const SERVER_JSON: &str = "server.json";

/// Written atomically (temp file, then rename) so a reader never sees half.
fn write_server_json(data_dir: &std::path::Path, addrs: &BoundAddrs) -> anyhow::Result<()> {
    let path = data_dir.join(SERVER_JSON);
    let temp = data_dir.join(".server.json.tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(addrs)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the addresses a local server wrote into its data dir.
pub fn read_server_json(data_dir: &std::path::Path) -> anyhow::Result<BoundAddrs> {
    let path = data_dir.join(SERVER_JSON);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Database URLs may carry passwords; logs and errors get them without.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_credentials() {
        for (url, expected) in [
            (
                "postgres://user:secret@db:5432/fw",
                "postgres://***@db:5432/fw",
            ),
            ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
            ("postgres://db/fw", "postgres://db/fw"),
        ] {
            assert_eq!(super::redact_url(url), expected);
        }
    }
}
