//! PostgreSQL over TLS against the test server (`PULSE_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`), which must have
//! `ssl = on`: each `sslmode` either encrypts the session, as
//! `pg_stat_ssl` reports it, or fails with a message that says what to do.

use pulse_common::store::{Database, StoreError};
use pulse_common::testing::postgres_admin_url;

/// The test server's URL with `params` added to its query.
fn url_with(params: &str) -> String {
    let url = postgres_admin_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// Whether this pool's session is encrypted, as the server sees it.
async fn encrypted(database: &Database) -> bool {
    let Database::Postgres(pool) = database else { panic!("not PostgreSQL: {database:?}") };
    let client = pool.get().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

async fn connect(params: &str) -> Result<Database, StoreError> {
    Database::postgres(&url_with(params), 2).await
}

/// The server's certificate file, when this user may read it.
async fn server_certificate() -> Result<std::path::PathBuf, String> {
    let database = connect("sslmode=disable").await.unwrap();
    let Database::Postgres(pool) = &database else { unreachable!() };
    let client = pool.get().await.unwrap();
    let file: String = client.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    let data_dir: String = client.query_one("SHOW data_directory", &[]).await.map(|r| r.get(0)).unwrap_or_default();
    // A relative ssl_cert_file is relative to the data directory.
    let path = std::path::Path::new(&data_dir).join(&file);
    match std::fs::read(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(format!("cannot read the server's certificate {}: {e}", path.display())),
    }
}

#[tokio::test]
async fn require_encrypts_the_session() {
    let database = connect("sslmode=require").await.unwrap();
    assert!(encrypted(&database).await, "sslmode=require gave a plaintext session");
}

#[tokio::test]
async fn prefer_encrypts_when_the_server_offers_tls() {
    assert!(encrypted(&connect("sslmode=prefer").await.unwrap()).await);
    // No sslmode is prefer, as in libpq.
    assert!(encrypted(&Database::postgres(&postgres_admin_url(), 2).await.unwrap()).await);
}

#[tokio::test]
async fn disable_is_plaintext() {
    let database = connect("sslmode=disable").await.unwrap();
    assert!(!encrypted(&database).await, "sslmode=disable gave an encrypted session");
}

#[tokio::test]
async fn verify_full_refuses_an_untrusted_certificate() {
    // A CA that did not sign the server's certificate, in the URL and as database_ca.
    let other = tempfile::NamedTempFile::new().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["elsewhere".into()]).unwrap();
    std::fs::write(other.path(), ca.cert.pem()).unwrap();
    let path = other.path().display().to_string();
    let encoded = percent_encoding::utf8_percent_encode(&path, percent_encoding::NON_ALPHANUMERIC);
    let err = connect(&format!("sslmode=verify-full&sslrootcert={encoded}")).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    assert!(message.contains(&format!("is not signed by a CA in sslrootcert={path} in database_url")), "{message}");
    assert!(message.contains("database_ca (PULSE_DATABASE_CA)"), "{message}");
    let err = Database::postgres_with_ca(&url_with("sslmode=verify-ca"), 2, Some(other.path())).await.unwrap_err();
    assert!(err.to_string().contains(&format!("is not signed by a CA in database_ca ({path})")), "{err}");

    // With no CA given, the system's certificates. Debian's ssl-cert package
    // puts the snakeoil certificate itself in /etc/ssl/certs, which
    // rustls-native-certs reads whole: then the chain passes and the name
    // (CN only, no subjectAltName) does not.
    let message = connect("sslmode=verify-full").await.unwrap_err().to_string();
    assert!(
        message.contains("is not signed by a CA in the system's CA certificates")
            || message.contains("use sslmode=verify-ca"),
        "{message}"
    );
}

#[tokio::test]
async fn verify_ca_trusts_the_servers_certificate() {
    let cert = match server_certificate().await {
        Ok(path) => path,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let encoded =
        percent_encoding::utf8_percent_encode(&cert.display().to_string(), percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let database = connect(&format!("sslmode=verify-ca&sslrootcert={encoded}")).await.unwrap();
    assert!(encrypted(&database).await);
    // The same CA through database_ca.
    let database = Database::postgres_with_ca(&url_with("sslmode=verify-ca"), 2, Some(&cert)).await.unwrap();
    assert!(encrypted(&database).await);
    // verify-full also checks the name: the snakeoil certificate names
    // its machine in CN only (rustls reads subjectAltName), so 127.0.0.1 is
    // refused with a hint towards verify-ca. A test server whose
    // certificate does name its host connects.
    match connect(&format!("sslmode=verify-full&sslrootcert={encoded}")).await {
        Ok(database) => assert!(encrypted(&database).await),
        Err(err) => assert!(err.to_string().contains("use sslmode=verify-ca"), "{err}"),
    }
}

#[tokio::test]
async fn require_fails_clearly_when_the_server_offers_no_tls() {
    // A server that answers the TLS request with 'N' (no TLS), as one with
    // `ssl = off` does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            if socket.read_exact(&mut request).await.is_ok() {
                let _ = socket.write_all(b"N").await;
            }
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require");
    let err = Database::postgres(&url, 1).await.unwrap_err();
    server.abort();
    let message = err.to_string();
    assert!(message.contains("does not offer TLS but database_url has sslmode=require"), "{message}");
}

#[tokio::test]
async fn a_ca_makes_require_check_the_chain_as_libpq_does() {
    let other = tempfile::NamedTempFile::new().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["elsewhere".into()]).unwrap();
    std::fs::write(other.path(), ca.cert.pem()).unwrap();
    let err = Database::postgres_with_ca(&url_with("sslmode=require"), 2, Some(other.path())).await.unwrap_err();
    assert!(err.to_string().contains("which sslmode=require requires"), "{err}");
    // disable never looks at the CA.
    let database = Database::postgres_with_ca(&url_with("sslmode=disable"), 2, Some(other.path())).await.unwrap();
    assert!(!encrypted(&database).await);
}

#[tokio::test]
async fn the_key_value_form_keeps_tokio_postgres_sslmodes() {
    let Some(rest) = postgres_admin_url().strip_prefix("postgres://postgres@127.0.0.1:5432/").map(str::to_owned) else {
        println!("skipped: PULSE_TEST_DATABASE_URL is not the default postgres://postgres@127.0.0.1:5432/…");
        return;
    };
    let base = format!("host=127.0.0.1 port=5432 user=postgres dbname={rest}");
    let database = Database::postgres(&format!("{base} sslmode=require"), 2).await.unwrap();
    assert!(encrypted(&database).await);
    let err = Database::postgres(&format!("{base} sslmode=verify-full"), 2).await.unwrap_err();
    assert!(err.to_string().contains("need the postgres:// URL form"), "{err}");
}

#[tokio::test]
async fn a_question_mark_in_the_password_is_not_the_query() {
    // Trust authentication ignores the password; the URL must still parse
    // with sslmode taken from the query, not from inside the password.
    let url = postgres_admin_url().replacen("postgres://postgres@", "postgres://postgres:p%3Fq?x@", 1);
    if url == postgres_admin_url() {
        println!("skipped: PULSE_TEST_DATABASE_URL has no bare postgres@ user");
        return;
    }
    let sep = if url.rsplit('@').next().is_some_and(|tail| tail.contains('?')) { '&' } else { '?' };
    let database = Database::postgres(&format!("{url}{sep}sslmode=disable"), 2).await.unwrap();
    assert!(!encrypted(&database).await);
    // The sslrootcert after the password's `?` is found and read.
    let err = Database::postgres(&format!("{url}{sep}sslmode=verify-ca&sslrootcert=%2Fnonexistent.pem"), 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot read the CA certificates of sslrootcert=/nonexistent.pem"), "{err}");
}

#[tokio::test]
async fn unusable_settings_say_what_to_do() {
    let err = |params: &'static str| async move { connect(params).await.unwrap_err().to_string() };
    assert!(err("sslmode=allow").await.contains("use sslmode=prefer"));
    assert!(err("sslmode=verify").await.contains("use one of disable, prefer, require, verify-ca, verify-full"));
    assert!(err("sslmode=require&sslrootcert=system").await.contains("use sslmode=verify-full"));
    let missing = err("sslmode=verify-ca&sslrootcert=%2Fnonexistent%2Fca.pem").await;
    assert!(missing.contains("cannot read the CA certificates of sslrootcert=/nonexistent/ca.pem"), "{missing}");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let err = Database::postgres_with_ca(&url_with("sslmode=verify-full"), 2, Some(empty.path())).await.unwrap_err();
    assert!(err.to_string().contains("holds no PEM certificate"), "{err}");
}
