//! Helpers for tests that talk to real servers: a fresh PostgreSQL database
//! per test, the S3-compatible server `make test` starts, and a platform on
//! a temporary state directory.

use crate::config::Config;
use crate::objects::S3ObjectStore;

/// The PostgreSQL server tests use: `PULSE_TEST_DATABASE_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub fn postgres_admin_url() -> String {
    std::env::var("PULSE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database created for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = postgres_admin_url();
        let name = format!("pulse_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin}: {e}. Start it (`make test` does) or set PULSE_TEST_DATABASE_URL")
        });
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let mut config: tokio_postgres::Config = admin.parse().expect("PULSE_TEST_DATABASE_URL is a URL");
        config.dbname(&name);
        let url = url_of(&config);
        Self { url, name }
    }
}

fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
    format!("postgres://{user}{password}@{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (postgres_admin_url(), self.name.clone());
        // Drop runs outside any runtime guarantee: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// The S3-compatible endpoint `make test` starts (`PULSE_TEST_S3_ENDPOINT`).
pub fn s3_endpoint() -> String {
    std::env::var("PULSE_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "PULSE_TEST_S3_ENDPOINT is not set: run the tests with `make test`, which starts an S3-compatible \
             server, or point it at one (MinIO, moto_server) with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set"
        )
    })
}

/// A fresh bucket on the test S3 server and a store over it.
pub async fn s3_store() -> S3ObjectStore {
    let endpoint = s3_endpoint();
    let bucket = format!("pulse-test-{}", uuid::Uuid::new_v4().simple());
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(conf)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating bucket on {endpoint}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    S3ObjectStore::connect(&bucket, "tests", Some(&endpoint), "us-east-1", true).await.expect("connect to test bucket")
}

/// A configuration on a temporary state directory, embedded storage, no
/// metrics port; the directory lives as long as the returned guard.
pub fn embedded_config() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        listen: "127.0.0.1:0".into(),
        metrics_listen: String::new(),
        state_dir: dir.path().to_path_buf(),
        admin_key: Some("pa_test_admin_key".into()),
        ..Config::default()
    };
    (config, dir)
}

/// Both metadata backends, for suites that must pass on each.
pub enum Backend {
    Embedded(tempfile::TempDir),
    Postgres(TestDatabase),
}

impl Backend {
    pub async fn database(&self) -> crate::store::Database {
        match self {
            Self::Embedded(dir) => crate::store::Database::Embedded(dir.path().join("db")),
            Self::Postgres(db) => crate::store::Database::postgres(&db.url, 8).await.expect("test database pool"),
        }
    }
}

pub async fn embedded_backend() -> Backend {
    Backend::Embedded(tempfile::tempdir().unwrap())
}

pub async fn postgres_backend() -> Backend {
    Backend::Postgres(TestDatabase::create().await)
}

/// A real server on 127.0.0.1:0 (gRPC and metrics) over a temporary state
/// directory, with embedded storage or a fresh PostgreSQL database, and two
/// tenants with a key each. Dropping it stops the server and removes both.
pub struct Sandbox {
    pub server: crate::host::Server,
    pub platform: crate::host::Platform,
    pub endpoint: String,
    pub metrics_url: String,
    pub admin_key: String,
    /// Tenant "acme" and its key.
    pub tenant_a: (String, String),
    /// Tenant "globex" and its key.
    pub tenant_b: (String, String),
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Sandbox {
    /// Starts the services `make` returns; `postgres` picks the backend;
    /// `tune` adjusts the configuration first.
    pub async fn start<F, Fut>(postgres: bool, tune: impl FnOnce(&mut Config), make: F) -> Self
    where
        F: FnOnce(crate::host::Platform) -> Fut,
        Fut: std::future::Future<Output = Vec<crate::host::Hosted>>,
    {
        let (mut config, dir) = embedded_config();
        let database = if postgres { Some(TestDatabase::create().await) } else { None };
        config.database_url = database.as_ref().map(|d| d.url.clone());
        tune(&mut config);
        let admin_key = config.admin_key.clone().unwrap_or_default();
        let platform = crate::host::Platform::start(config).await.expect("platform starts");
        let services = make(platform.clone()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server =
            crate::host::Server::start(&platform, services, listener, Some(metrics)).await.expect("server starts");
        let tenant = async |name: &str| {
            let t = platform.auth.create_tenant(name).await.unwrap();
            let (_, secret) = platform.auth.create_key(&t.id, "tests").await.unwrap();
            (t.id, secret)
        };
        let tenant_a = tenant("acme").await;
        let tenant_b = tenant("globex").await;
        Self {
            endpoint: format!("http://{}", server.addr),
            metrics_url: format!("http://{}/metrics", server.metrics_addr.unwrap()),
            server,
            platform,
            admin_key,
            tenant_a,
            tenant_b,
            _dir: dir,
            _database: database,
        }
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.server.metrics_addr.expect("metrics are on");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut page = String::new();
        stream.read_to_string(&mut page).await.unwrap();
        assert!(page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"), "{page}");
        page
    }
}
