//! The process around the services: [`Platform`] holds what every service
//! shares (configuration, metadata database, object store, auth, idempotency,
//! metrics); [`Server`] serves a set of services on one port with the shared
//! layers, reflection, health and `/metrics`, and shuts down gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use pulse_proto::tonic::body::Body;
use pulse_proto::tonic::server::NamedService;
use pulse_proto::tonic::service::Routes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tower_service::Service;

use crate::auth::{self, Auth};
use crate::config::Config;
use crate::error::PulseError;
use crate::grpc;
use crate::idempotency::{self, IdempotencyStore};
use crate::metrics::Metrics;
use crate::objects::{self, ObjectStore};
use crate::store::Database;

/// Where the admin key came from, for the start-up message.
#[derive(Debug, Clone)]
pub enum AdminKeySource {
    Config,
    File(PathBuf),
}

/// What every service in a process shares.
#[derive(Clone, Debug)]
pub struct Platform {
    pub config: Config,
    pub database: Database,
    pub objects: Arc<dyn ObjectStore>,
    pub auth: Arc<Auth>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub metrics: Metrics,
    pub admin_key_source: AdminKeySource,
}

impl Platform {
    /// Connects storage, applies the platform migrations and loads (or
    /// generates) the admin key.
    pub async fn start(config: Config) -> Result<Self, PulseError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| PulseError::Config(format!("cannot create state_dir {}: {e}", config.state_dir.display())))?;
        let database = Database::connect(&config).await?;
        let db = database.open(auth::SCHEMA, auth::MIGRATIONS).await?;
        let objects = objects::from_config(&config).await?;
        let (admin_key, admin_key_source) = match &config.admin_key {
            Some(k) if !k.is_empty() => (k.clone(), AdminKeySource::Config),
            _ => {
                let path = config.state_dir.join("admin.key");
                (auth::load_or_create_admin_key(&path)?, AdminKeySource::File(path))
            }
        };
        let auth =
            Arc::new(Auth::new(auth::auth_store(&db), &admin_key, Duration::from_secs(config.auth_cache_seconds)));
        Ok(Self {
            idempotency: idempotency::idempotency_store(&db),
            config,
            database,
            objects,
            auth,
            metrics: Metrics::new(),
            admin_key_source,
        })
    }
}

/// A service ready to be added to a [`Server`].
pub struct Hosted {
    pub name: &'static str,
    add: Box<dyn FnOnce(Routes) -> Routes + Send>,
}

impl Hosted {
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        Self { name: S::NAME, add: Box::new(move |routes: Routes| routes.add_service(service)) }
    }
}

/// A running gRPC server (and its `/metrics` endpoint). Dropping it stops it.
pub struct Server {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub services: Vec<&'static str>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), PulseError>>>,
}

impl Server {
    /// Binds `listen` and `metrics_listen` from the configuration.
    pub async fn bind(platform: &Platform, services: Vec<Hosted>) -> Result<Self, PulseError> {
        let listener = TcpListener::bind(&platform.config.listen)
            .await
            .map_err(|e| PulseError::Config(format!("cannot listen on {}: {e}", platform.config.listen)))?;
        let metrics_listener = match platform.config.metrics_listen.as_str() {
            "" => None,
            addr => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| PulseError::Config(format!("cannot listen on {addr} for metrics: {e}")))?,
            ),
        };
        Self::start(platform, services, listener, metrics_listener).await
    }

    /// Serves on listeners the caller bound (tests bind port 0).
    pub async fn start(
        platform: &Platform,
        services: Vec<Hosted>,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
    ) -> Result<Self, PulseError> {
        let addr = listener.local_addr().map_err(|e| PulseError::Internal(e.to_string()))?;
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let max = platform.config.max_message_bytes;

        let mut services = services;
        services.push(Hosted::new(grpc::admin::server(platform.auth.clone(), max)));
        let names: Vec<&'static str> = services.iter().map(|s| s.name).collect();

        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &names {
            health.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
        }
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;

        let mut sets: Vec<&'static [u8]> = vec![tonic_health::pb::FILE_DESCRIPTOR_SET];
        for name in &names {
            let info = pulse_proto::service(name)
                .ok_or_else(|| PulseError::Internal(format!("{name} is not in the contracts")))?;
            sets.push(info.descriptor_set);
        }
        // grpcurl and older tools speak v1alpha, newer ones v1: serve both.
        let reflection = || {
            sets.iter().fold(tonic_reflection::server::Builder::configure(), |b, set| {
                b.register_encoded_file_descriptor_set(set)
            })
        };
        let reflection_v1 = reflection().build_v1().map_err(|e| PulseError::Internal(e.to_string()))?;
        let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| PulseError::Internal(e.to_string()))?;

        let mut routes = Routes::new(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);
        for service in services {
            routes = (service.add)(routes);
        }

        let (tx, rx) = oneshot::channel::<()>();
        let (closing_tx, closing_rx) = oneshot::channel::<()>();
        let draining = health;
        let health_names = names.clone();
        let drain = Duration::from_secs(platform.config.shutdown_drain_seconds);
        let grace = Duration::from_secs(platform.config.shutdown_grace_seconds);
        let stop = async move {
            let _ = rx.await;
            // Health checks say NOT_SERVING first, so load balancers drain
            // this process, then the listener closes and in-flight calls finish.
            for name in health_names.into_iter().chain([""]) {
                draining.set_service_status(name, tonic_health::ServingStatus::NotServing).await;
            }
            tokio::time::sleep(drain).await;
            let _ = closing_tx.send(());
        };
        let (metrics_tx, metrics_rx) = tokio::sync::watch::channel(false);
        if let Some(l) = metrics_listener {
            let metrics = platform.metrics.clone();
            let mut rx = metrics_rx.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|stopped| *stopped).await;
                };
                if let Err(e) = crate::metrics::serve(l, metrics, stop).await {
                    tracing::error!(error = %e, "metrics endpoint stopped");
                }
            });
        }
        let sweeper = spawn_idempotency_sweeper(platform.idempotency.clone(), platform.config.idempotency_ttl_hours);

        let forward = forward_layer(&platform.config, &names)?;
        let mut builder = pulse_proto::tonic::transport::Server::builder();
        if let Some(tls) = tls_config(&platform.config, &platform.metrics)? {
            builder = builder.tls_config(tls).map_err(|e| PulseError::Config(format!("TLS: {e}")))?;
        }
        let server = builder
            .layer(forward)
            .layer(grpc::metrics::MetricsLayer::new(platform.metrics.rpc.clone()))
            .layer(grpc::auth::AuthLayer::new(platform.auth.clone()))
            .layer(grpc::idempotency::IdempotencyLayer::new(platform.idempotency.clone(), max))
            .add_routes(routes);
        let task = tokio::spawn(async move {
            let serve = server.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop);
            // Streams that never end (health watches, slow exports) must not
            // hold the process past its grace period.
            let deadline = async move {
                if closing_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(grace).await;
            };
            let served = tokio::select! {
                served = serve => served,
                () = deadline => {
                    tracing::warn!(grace_seconds = grace.as_secs(), "grace period over: dropping open connections");
                    Ok(())
                }
            };
            sweeper.abort();
            let _ = metrics_tx.send(true);
            served.map_err(|e| PulseError::Internal(format!("gRPC server: {e}")))
        });
        Ok(Self { addr, metrics_addr, services: names, shutdown: Some(tx), task: Some(task) })
    }

    /// Stops accepting, lets in-flight calls finish, and returns.
    pub async fn shutdown(mut self) -> Result<(), PulseError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join().await
    }

    /// Waits until the server stops (after [`Server::shutdown`] or an error).
    pub async fn join(&mut self) -> Result<(), PulseError> {
        match self.task.take() {
            Some(task) => task.await.map_err(|e| PulseError::Internal(e.to_string()))?,
            None => Ok(()),
        }
    }

    /// A handle that asks the server to stop, usable while another task
    /// waits in [`Server::join`].
    pub fn stopper(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads one service's address from the configuration.
type AddressOf = fn(&Config) -> &Option<String>;

/// Which configuration setting names where each service runs.
const PEERS: [(&str, AddressOf); 6] = [
    ("pulse.datasource.v1.DatasourceService", |c| &c.datasource_url),
    ("pulse.snapshot.v1.SnapshotService", |c| &c.snapshot_url),
    ("pulse.trainer.v1.TrainerService", |c| &c.trainer_url),
    ("pulse.inference.v1.InferenceService", |c| &c.inference_url),
    ("pulse.lineage.v1.LineageService", |c| &c.lineage_url),
    ("pulse.drift.v1.DriftService", |c| &c.drift_url),
];

/// Forwards calls for the services that this process does not host and
/// whose address is configured.
fn forward_layer(config: &Config, hosted: &[&str]) -> Result<grpc::forward::ForwardLayer, PulseError> {
    let ca = match &config.tls_ca {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| PulseError::Config(format!("tls_ca = {}: {e}", path.display())))?)
        }
        None => None,
    };
    let mut routes = Vec::new();
    for (name, url_of) in PEERS {
        let Some(url) = url_of(config).as_deref().filter(|u| !u.is_empty()) else { continue };
        if hosted.contains(&name) {
            continue;
        }
        let channel = pulse_client::channel_endpoint(url, ca.as_deref())
            .map_err(|e| PulseError::Config(format!("the address of {name}: {e}")))?
            .connect_lazy();
        routes.push((name.to_string(), url.to_string(), channel));
    }
    Ok(grpc::forward::ForwardLayer::new(routes))
}

/// The server's TLS identity when `tls_cert` and `tls_key` are set; the
/// certificate's expiry goes to `pulse_tls_certificate_expiry_timestamp_seconds`.
fn tls_config(
    config: &Config,
    metrics: &Metrics,
) -> Result<Option<pulse_proto::tonic::transport::ServerTlsConfig>, PulseError> {
    use pulse_proto::tonic::transport::{Identity, ServerTlsConfig};
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    pulse_client::install_tls_provider();
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| PulseError::Config(format!("{what} = {}: {e}", path.display())))
    };
    let cert = read("tls_cert", cert_path)?;
    let key = read("tls_key", key_path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert)
        .map_err(|e| PulseError::Config(format!("tls_cert = {}: not a PEM certificate ({e})", cert_path.display())))?;
    let parsed = pem.parse_x509().map_err(|e| {
        PulseError::Config(format!("tls_cert = {}: not an X.509 certificate ({e})", cert_path.display()))
    })?;
    let expiry = parsed.validity().not_after.timestamp();
    let gauge = prometheus::IntGauge::new(
        "pulse_tls_certificate_expiry_timestamp_seconds",
        "When the served TLS certificate expires (Unix seconds)",
    )
    .expect("valid metric");
    gauge.set(expiry);
    let _ = metrics.registry.register(Box::new(gauge));
    Ok(Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key))))
}

fn spawn_idempotency_sweeper(store: Arc<dyn IdempotencyStore>, ttl_hours: u64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = crate::time::now_millis() - chrono::TimeDelta::hours(ttl_hours as i64);
            match store.sweep(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "expired idempotency records removed"),
                Err(e) => tracing::warn!(error = %e, "idempotency sweep failed; will retry"),
            }
        }
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
