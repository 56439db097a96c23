//! Connection secrets: what is sealed at rest, and redacted views.

/// The DSN with any password replaced by `****` (for logs and answers).
pub fn redact_dsn(dsn: &str) -> String {
    match url::Url::parse(dsn) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable DSN>".into(),
    }
}
