//! The store suites, each run against PostgreSQL and the embedded store, and
//! the object store suite against a real S3-compatible server and a local
//! directory.

use std::time::Duration;

use bytes::Bytes;
use chrono::TimeDelta;
use pulse_common::auth::{self, Auth};
use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::idempotency::{Claim, idempotency_store};
use pulse_common::objects::{LocalObjectStore, ObjectError, ObjectStore};
use pulse_common::store::Database;
use pulse_common::testing::{Backend, embedded_backend, postgres_backend, s3_store};

async fn auth_suite(backend: Backend) {
    let database: Database = backend.database().await;
    let db = database.open(auth::SCHEMA, auth::MIGRATIONS).await.unwrap();
    // Opening again applies nothing and fails nothing.
    database.open(auth::SCHEMA, auth::MIGRATIONS).await.unwrap();
    let auth = Auth::new(auth::auth_store(&db), "pa_admin", Duration::from_secs(60));

    let admin = auth.authenticate("pa_admin").await.unwrap();
    assert!(admin.admin && admin.tenant_id.is_none());
    assert_eq!(admin.tenant().unwrap_err().code(), ErrorCode::PermissionDenied);

    let acme = auth.create_tenant("acme").await.unwrap();
    let dup = auth.create_tenant("acme").await.unwrap_err();
    assert_eq!(dup.code(), ErrorCode::AlreadyExists, "{dup}");
    assert_eq!(auth.create_tenant("Bad Name").await.unwrap_err().code(), ErrorCode::InvalidArgument);
    let globex = auth.create_tenant("globex").await.unwrap();

    let (key, secret) = auth.create_key(&acme.id, "notebooks").await.unwrap();
    assert!(secret.starts_with("pk_"));
    let caller = auth.authenticate(&secret).await.unwrap();
    assert_eq!(caller.tenant_id.as_deref(), Some(acme.id.as_str()));
    assert_eq!(caller.key_id, key.id);

    // A wrong secret for a real key id, garbage, and an unknown tenant.
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    assert_eq!(auth.authenticate(&forged).await.unwrap_err().code(), ErrorCode::Unauthenticated);
    assert_eq!(auth.authenticate("nonsense").await.unwrap_err().code(), ErrorCode::Unauthenticated);
    let missing = auth.create_key("ten_00000000000000000000000000", "x").await.unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    assert_eq!(auth.create_key("not-an-id", "x").await.unwrap_err().code(), ErrorCode::InvalidArgument);

    // Paging walks every tenant once.
    let (first, token) = auth.tenants("", 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(!token.is_empty());
    let (second, _) = auth.tenants(&token, 10).await.unwrap();
    let mut names: Vec<_> = first.iter().chain(&second).map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["acme", "globex"]);

    let (keys, _) = auth.keys(&acme.id, "", 0).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(auth.keys(&globex.id, "", 0).await.unwrap().0.is_empty());

    // Revocation takes effect at once in this process, cache or not.
    let revoked = auth.revoke_key(&key.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(auth.authenticate(&secret).await.unwrap_err().code(), ErrorCode::Unauthenticated);
    // A second revocation keeps the first time.
    assert_eq!(auth.revoke_key(&key.id).await.unwrap().revoked_at, revoked.revoked_at);

    // Service tokens: one per tenant, the same from every process sharing
    // the store (a second Auth stands for another process); tampering with
    // the tenant or the signature fails.
    let token = auth.service_token(&acme.id).await.unwrap();
    let other_process = Auth::new(auth::auth_store(&db), "pa_other", Duration::from_secs(60));
    assert_eq!(other_process.service_token(&acme.id).await.unwrap(), token);
    let caller = other_process.authenticate(&token).await.unwrap();
    assert_eq!(caller.tenant_id.as_deref(), Some(acme.id.as_str()));
    assert!(!caller.admin);
    assert_eq!(caller.key_id, auth::SERVICE_KEY_ID);
    let swapped = token.replace(&acme.id, &globex.id);
    assert_eq!(auth.authenticate(&swapped).await.unwrap_err().code(), ErrorCode::Unauthenticated);
    let forged = format!("{}0", &token[..token.len() - 1]);
    let forged = if forged == token { format!("{}1", &token[..token.len() - 1]) } else { forged };
    assert_eq!(auth.authenticate(&forged).await.unwrap_err().code(), ErrorCode::Unauthenticated);
    assert_eq!(auth.authenticate("pst.nodot").await.unwrap_err().code(), ErrorCode::Unauthenticated);

    // Bootstrap does nothing once a tenant exists.
    let dir = tempfile::tempdir().unwrap();
    assert!(auth.bootstrap_tenant("default", &dir.path().join("k")).await.unwrap().is_none());
    assert!(!dir.path().join("k").exists());
}

#[tokio::test]
async fn auth_store_embedded() {
    auth_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn auth_store_postgres() {
    auth_suite(postgres_backend().await).await;
}

async fn idempotency_suite(backend: Backend) {
    let database = backend.database().await;
    let db = database.open(auth::SCHEMA, auth::MIGRATIONS).await.unwrap();
    let store = idempotency_store(&db);
    let now = pulse_common::time::now_millis();
    let stale = TimeDelta::seconds(60);

    assert_eq!(store.claim("t1", "k", "/m", "sha-a", now, stale).await.unwrap(), Claim::Claimed(now));
    // While the first runs, the same request waits and a different one is refused.
    assert_eq!(store.claim("t1", "k", "/m", "sha-a", now, stale).await.unwrap(), Claim::InProgress);
    assert_eq!(
        store.claim("t1", "k", "/m", "sha-b", now, stale).await.unwrap(),
        Claim::Mismatch { method: "/m".into() }
    );
    store.complete("t1", "k", now, b"answer", now).await.unwrap();
    assert_eq!(store.claim("t1", "k", "/m", "sha-a", now, stale).await.unwrap(), Claim::Replay(b"answer".to_vec()));
    assert_eq!(
        store.claim("t1", "k", "/other", "sha-a", now, stale).await.unwrap(),
        Claim::Mismatch { method: "/m".into() }
    );
    // Another tenant's identical key is its own.
    assert_eq!(store.claim("t2", "k", "/m", "sha-a", now, stale).await.unwrap(), Claim::Claimed(now));

    // A released claim (the call failed) can run again.
    store.release("t2", "k", now).await.unwrap();
    assert_eq!(store.claim("t2", "k", "/m", "sha-z", now, stale).await.unwrap(), Claim::Claimed(now));
    // A claim abandoned by a dead process is taken over once stale...
    let later = now + TimeDelta::seconds(61);
    assert_eq!(store.claim("t2", "k", "/m", "sha-z", later, stale).await.unwrap(), Claim::Claimed(later));
    // ...and the first holder, if it was only slow, can no longer touch it.
    store.release("t2", "k", now).await.unwrap();
    store.complete("t2", "k", now, b"stale answer", later).await.unwrap();
    assert_eq!(store.claim("t2", "k", "/m", "sha-z", later, stale).await.unwrap(), Claim::InProgress);
    store.complete("t2", "k", later, b"second answer", later).await.unwrap();
    assert_eq!(
        store.claim("t2", "k", "/m", "sha-z", later, stale).await.unwrap(),
        Claim::Replay(b"second answer".to_vec())
    );
    // Release never forgets a completed answer.
    store.release("t1", "k", now).await.unwrap();
    assert_eq!(store.claim("t1", "k", "/m", "sha-a", now, stale).await.unwrap(), Claim::Replay(b"answer".to_vec()));

    assert_eq!(store.sweep(now + TimeDelta::seconds(1)).await.unwrap(), 1);
    assert_eq!(store.claim("t1", "k", "/m", "sha-b", later, stale).await.unwrap(), Claim::Claimed(later));
}

#[tokio::test]
async fn idempotency_store_embedded() {
    idempotency_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn idempotency_store_postgres() {
    idempotency_suite(postgres_backend().await).await;
}

async fn object_suite(store: &dyn ObjectStore, tamper: impl AsyncFnOnce(&str, &[u8])) {
    let key = "ten_a/datasets/orders/v1/part-0.parquet";
    let info = store.put(key, Bytes::from_static(b"chunk zero")).await.unwrap();
    assert_eq!(info.size, 10);
    assert_eq!(info.sha256, pulse_common::objects::sha256_hex(b"chunk zero"));
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"chunk zero"));
    assert_eq!(store.head(key).await.unwrap(), Some(info.clone()));

    // Write-once: the same bytes again is a safe retry, other bytes are refused.
    assert_eq!(store.put(key, Bytes::from_static(b"chunk zero")).await.unwrap(), info);
    let err = store.put(key, Bytes::from_static(b"something else")).await.unwrap_err();
    assert!(matches!(err, ObjectError::AlreadyExists(_)), "{err}");
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"chunk zero"));

    store.put("ten_a/datasets/orders/v1/manifest.json", Bytes::from_static(b"{}")).await.unwrap();
    store.put("ten_b/datasets/orders/v1/part-0.parquet", Bytes::from_static(b"b")).await.unwrap();
    let listed: Vec<String> = store.list("ten_a/datasets/orders/").await.unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(listed, ["ten_a/datasets/orders/v1/manifest.json", "ten_a/datasets/orders/v1/part-0.parquet"]);

    assert!(matches!(store.get("ten_a/missing").await.unwrap_err(), ObjectError::NotFound(_)));
    assert_eq!(store.head("ten_a/missing").await.unwrap(), None);
    for bad in ["", "../etc/passwd", "a//b", "/abs", "a/./b", "sp ace"] {
        assert!(matches!(store.put(bad, Bytes::new()).await.unwrap_err(), ObjectError::InvalidKey(..)), "{bad:?}");
    }

    // A changed object is an error on read, never silently returned.
    tamper(key, b"chunk 0ero").await;
    let err = store.get(key).await.unwrap_err();
    assert!(matches!(err, ObjectError::Corrupt { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::Internal);
}

#[tokio::test]
async fn tenant_objects_stay_in_their_tenant() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalObjectStore::new(dir.path()).unwrap());
    let a = pulse_common::objects::TenantObjects::new(store.clone(), "ten_a").unwrap();
    let b = pulse_common::objects::TenantObjects::new(store.clone(), "ten_b").unwrap();
    let info = a.put("models/churn/v1/model.bin", Bytes::from_static(b"weights")).await.unwrap();
    assert_eq!(info.key, "models/churn/v1/model.bin");
    assert!(store.head("ten_a/models/churn/v1/model.bin").await.unwrap().is_some(), "stored under the tenant");
    assert!(matches!(b.get("models/churn/v1/model.bin").await.unwrap_err(), ObjectError::NotFound(_)));
    assert!(b.list("").await.unwrap().is_empty());
    assert_eq!(a.list("models/").await.unwrap()[0].key, "models/churn/v1/model.bin");
    for escape in ["../ten_a/models/churn/v1/model.bin", "/ten_a/x", "a//b"] {
        assert!(matches!(b.get(escape).await.unwrap_err(), ObjectError::InvalidKey(..)), "{escape}");
    }
    for escape in ["../ten_a/", "../../", "/", "/etc/", "a//"] {
        assert!(matches!(b.list(escape).await.unwrap_err(), ObjectError::InvalidKey(..)), "{escape}");
        assert!(matches!(store.list(escape).await.unwrap_err(), ObjectError::InvalidKey(..)), "{escape}");
    }
    assert!(pulse_common::objects::TenantObjects::new(store, "ten_a/x").is_err());
}

#[tokio::test]
async fn object_store_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalObjectStore::new(dir.path()).unwrap();
    let root = dir.path().to_path_buf();
    object_suite(&store, async |key, bytes| {
        // Replace the file behind the store's back (a new inode, as an
        // editor or a bad copy would).
        let path = root.join(key);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn object_store_s3() {
    let store = s3_store().await;
    let endpoint = pulse_common::testing::s3_endpoint();
    let raw = raw_s3(&endpoint).await;
    let bucket = store.describe().trim_start_matches("s3://").split('/').next().unwrap().to_string();
    object_suite(&store, async |key, bytes| {
        // Overwrite through another client, keeping the recorded checksum.
        let head = raw.head_object().bucket(&bucket).key(format!("tests/{key}")).send().await.unwrap();
        let sha = head.metadata().unwrap().get("sha256").unwrap().clone();
        raw.put_object()
            .bucket(&bucket)
            .key(format!("tests/{key}"))
            .metadata("sha256", sha)
            .body(bytes.to_vec().into())
            .send()
            .await
            .unwrap();
    })
    .await;
}

async fn raw_s3(endpoint: &str) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build())
}
