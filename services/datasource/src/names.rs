//! The grammar of everything a caller may name: datasource and dataset names,
//! SQL identifiers, object names and file paths, and the allowlist that says
//! which objects are readable. Anything outside the grammar (quotes,
//! semicolons, comment markers, whitespace, `..`) is refused here, before a
//! connector sees it.

use globset::{GlobBuilder, GlobMatcher};
use pulse_common::ids::truncate;
use pulse_proto::datasource::v1::{Allowlist, StoredQuery};

use crate::error::DatasourceError;

/// A datasource or dataset name: 1 to 63 characters of a-z, 0-9, '_' and '-',
/// starting with a letter.
pub fn check_resource_name(field: &str, name: &str) -> Result<(), DatasourceError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        return Ok(());
    }
    if name.is_empty() {
        return Err(DatasourceError::invalid(field, "is required"));
    }
    Err(DatasourceError::invalid(
        field,
        format!(
            "'{}' is not a valid name: use 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter",
            truncate(name, 64)
        ),
    ))
}

/// A SQL identifier: 1 to 63 characters of A-Z a-z 0-9 _ $, not starting with
/// a digit or `$`. Matched exactly as the catalog spells it.
pub fn check_identifier(field: &str, ident: &str) -> Result<(), DatasourceError> {
    let b = ident.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$');
    if ok {
        return Ok(());
    }
    if ident.is_empty() {
        return Err(DatasourceError::invalid(field, "is required"));
    }
    Err(DatasourceError::invalid(
        field,
        format!(
            "'{}' is not a valid identifier: use 1 to 63 characters of A-Z, a-z, 0-9, '_' and '$', not starting \
             with a digit or '$' (quotes, semicolons, comments and spaces are never accepted)",
            truncate(ident, 64)
        ),
    ))
}

/// An object of a source, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectName {
    /// A table or view; `schema` is the connector's default when omitted.
    Table { schema: Option<String>, name: String },
    /// A stored query of the allowlist, named `query:<name>`.
    Query(String),
    /// A file path or glob relative to an object-storage datasource's URI.
    Path(String),
}

impl ObjectName {
    /// Parses an object name for a SQL connector (`files == false`) or an
    /// object-storage one.
    pub fn parse(field: &str, text: &str, files: bool) -> Result<Self, DatasourceError> {
        if text.is_empty() {
            return Err(DatasourceError::invalid(field, "is required: name an allowlisted object"));
        }
        if files {
            check_path(field, text)?;
            return Ok(Self::Path(text.to_string()));
        }
        if let Some(name) = text.strip_prefix("query:") {
            check_query_name(field, name)?;
            return Ok(Self::Query(name.to_string()));
        }
        match text.split_once('.') {
            Some((schema, name)) => {
                check_identifier(field, schema)?;
                check_identifier(field, name)?;
                Ok(Self::Table { schema: Some(schema.to_string()), name: name.to_string() })
            }
            None => {
                check_identifier(field, text)?;
                Ok(Self::Table { schema: None, name: text.to_string() })
            }
        }
    }

    /// The same object with the connector's default schema filled in.
    pub fn qualified(&self, default_schema: &str) -> Self {
        match self {
            Self::Table { schema: None, name } => {
                Self::Table { schema: Some(default_schema.to_string()), name: name.clone() }
            }
            other => other.clone(),
        }
    }

    /// The canonical text: `schema.name`, `query:<name>` or the path.
    pub fn canonical(&self) -> String {
        match self {
            Self::Table { schema: Some(s), name } => format!("{s}.{name}"),
            Self::Table { schema: None, name } => name.clone(),
            Self::Query(q) => format!("query:{q}"),
            Self::Path(p) => p.clone(),
        }
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn check_query_name(field: &str, name: &str) -> Result<(), DatasourceError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(DatasourceError::invalid(
            field,
            format!(
                "'{}' is not a valid stored query name: use 1 to 63 characters of a-z, 0-9 and '_', starting with a letter",
                truncate(name, 64)
            ),
        ))
    }
}

/// A relative path or glob under an object-storage URI.
pub fn check_path(field: &str, path: &str) -> Result<(), DatasourceError> {
    let bad = |reason: &str| Err(DatasourceError::invalid(field, format!("'{}' {reason}", truncate(path, 200))));
    if path.len() > 1024 {
        return bad("is longer than 1024 characters");
    }
    if path.starts_with('/') || path.contains("://") {
        return bad("must be relative to the datasource URI (no leading '/', no scheme)");
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return bad("must not contain '.' or '..' segments");
    }
    if path.split('/').any(str::is_empty) {
        return bad("must not contain empty segments ('//' or a trailing '/')");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.=*/".contains(c);
    if !path.chars().all(allowed) {
        return bad("may contain only A-Z, a-z, 0-9 and _ - . = * / (no spaces, quotes or other characters)");
    }
    Ok(())
}

/// Checks a stored query: one SELECT (or WITH … SELECT) statement.
pub fn check_stored_query(field: &str, q: &StoredQuery) -> Result<(), DatasourceError> {
    check_query_name(&format!("{field}.name"), &q.name)?;
    let sql = q.sql.trim().trim_end_matches(';').trim();
    let head = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    if head != "SELECT" && head != "WITH" {
        return Err(DatasourceError::invalid(
            format!("{field}.sql"),
            "must be one SELECT (or WITH … SELECT) statement",
        ));
    }
    if sql.contains(';') {
        return Err(DatasourceError::invalid(format!("{field}.sql"), "must be one statement: remove the ';'"));
    }
    if sql.contains("--") || sql.contains("/*") {
        return Err(DatasourceError::invalid(format!("{field}.sql"), "must not contain comments"));
    }
    let upper = sql.to_ascii_uppercase();
    for word in ["INSERT", "UPDATE", "DELETE", "MERGE", "DROP", "ALTER", "CREATE", "TRUNCATE", "GRANT", "COPY", "CALL"]
    {
        if upper.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| w == word) {
            return Err(DatasourceError::invalid(
                format!("{field}.sql"),
                format!("must only read: '{word}' is not allowed in a stored query"),
            ));
        }
    }
    Ok(())
}

/// A validated allowlist, ready to answer "may this object be read?".
#[derive(Debug, Clone)]
pub struct Rules {
    pub allowlist: Allowlist,
    files: bool,
    globs: Vec<GlobMatcher>,
}

impl Rules {
    /// Validates every entry for a SQL connector (`files == false`) or an
    /// object-storage one. At least one entry is required.
    pub fn new(allowlist: Allowlist, files: bool) -> Result<Self, DatasourceError> {
        let total = allowlist.schemas.len() + allowlist.objects.len() + allowlist.queries.len() + allowlist.paths.len();
        if total == 0 {
            return Err(DatasourceError::invalid(
                "allowlist",
                if files {
                    "is empty: list the paths (or globs) that may be read"
                } else {
                    "is empty: list the schemas, tables, views or stored queries that may be read"
                },
            ));
        }
        let mut globs = Vec::new();
        if files {
            for field in ["schemas", "objects", "queries"] {
                let used = match field {
                    "schemas" => !allowlist.schemas.is_empty(),
                    "objects" => !allowlist.objects.is_empty(),
                    _ => !allowlist.queries.is_empty(),
                };
                if used {
                    return Err(DatasourceError::invalid(
                        format!("allowlist.{field}"),
                        "is for SQL connectors; object storage allowlists `paths`",
                    ));
                }
            }
            for (i, p) in allowlist.paths.iter().enumerate() {
                let field = format!("allowlist.paths[{i}]");
                check_path(&field, p)?;
                let glob = GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| DatasourceError::invalid(&field, format!("is not a valid glob: {e}")))?;
                globs.push(glob.compile_matcher());
            }
        } else {
            if !allowlist.paths.is_empty() {
                return Err(DatasourceError::invalid(
                    "allowlist.paths",
                    "is for object storage; SQL connectors allowlist schemas, objects and queries",
                ));
            }
            for (i, s) in allowlist.schemas.iter().enumerate() {
                check_identifier(&format!("allowlist.schemas[{i}]"), s)?;
            }
            for (i, o) in allowlist.objects.iter().enumerate() {
                let field = format!("allowlist.objects[{i}]");
                if !matches!(ObjectName::parse(&field, o, false)?, ObjectName::Table { .. }) {
                    return Err(DatasourceError::invalid(field, "must be a table or view; list queries in `queries`"));
                }
            }
            let mut names = std::collections::HashSet::new();
            for (i, q) in allowlist.queries.iter().enumerate() {
                check_stored_query(&format!("allowlist.queries[{i}]"), q)?;
                if !names.insert(q.name.as_str()) {
                    return Err(DatasourceError::invalid(
                        format!("allowlist.queries[{i}].name"),
                        format!("'{}' is used twice", q.name),
                    ));
                }
            }
        }
        Ok(Self { allowlist, files, globs })
    }

    pub fn files(&self) -> bool {
        self.files
    }

    /// Whether the object may be read. Tables must be named with their schema
    /// filled in (`default_schema` is the connector's).
    pub fn permits(&self, object: &ObjectName, default_schema: &str) -> bool {
        match object {
            ObjectName::Table { schema, name } => {
                let schema = schema.as_deref().unwrap_or(default_schema);
                self.allowlist.schemas.iter().any(|s| s == schema)
                    || self.allowlist.objects.iter().any(|o| match o.split_once('.') {
                        Some((s, n)) => s == schema && n == name,
                        None => schema == default_schema && o == name,
                    })
            }
            ObjectName::Query(q) => self.allowlist.queries.iter().any(|s| &s.name == q),
            ObjectName::Path(p) => {
                self.allowlist.paths.iter().any(|a| a == p)
                    || (!p.contains('*') && self.globs.iter().any(|g| g.is_match(p)))
            }
        }
    }

    /// The stored query's SQL.
    pub fn query(&self, name: &str) -> Option<&StoredQuery> {
        self.allowlist.queries.iter().find(|q| q.name == name)
    }

    /// Every object named directly (tables, queries, paths), schemas not
    /// expanded.
    pub fn named_objects(&self, default_schema: &str) -> Vec<ObjectName> {
        let mut out = Vec::new();
        for o in &self.allowlist.objects {
            if let Ok(obj) = ObjectName::parse("allowlist", o, false) {
                out.push(obj.qualified(default_schema));
            }
        }
        for q in &self.allowlist.queries {
            out.push(ObjectName::Query(q.name.clone()));
        }
        for p in &self.allowlist.paths {
            out.push(ObjectName::Path(p.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_injection() {
        for bad in
            ["orders; DROP TABLE x", "orders--", "a\"b", "a'b", "a/*b", "1abc", "$abc", "a b", "", &"a".repeat(64)]
        {
            assert!(check_identifier("object", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["orders", "Orders_2024", "_x", "a$b"] {
            check_identifier("object", good).unwrap();
        }
    }

    #[test]
    fn object_names_parse() {
        assert_eq!(
            ObjectName::parse("o", "shop.orders", false).unwrap(),
            ObjectName::Table { schema: Some("shop".into()), name: "orders".into() }
        );
        assert_eq!(ObjectName::parse("o", "query:recent", false).unwrap(), ObjectName::Query("recent".into()));
        assert!(ObjectName::parse("o", "a.b.c", false).is_err());
        assert!(ObjectName::parse("o", "query:Bad Name", false).is_err());
        let err = ObjectName::parse("object", "orders;--", false).unwrap_err().to_string();
        assert!(err.starts_with("object:"), "{err}");
    }

    #[test]
    fn paths_stay_under_the_uri() {
        for bad in ["../etc/passwd", "/etc/passwd", "s3://other/x.csv", "a//b.csv", "a b.csv", "a/./b", "x'.csv"] {
            assert!(check_path("p", bad).is_err(), "{bad:?} accepted");
        }
        check_path("p", "events/2024/*.parquet").unwrap();
        check_path("p", "dt=2024-01-01/part-0.csv").unwrap();
    }

    #[test]
    fn stored_queries_only_read() {
        let q = |sql: &str| StoredQuery { name: "q".into(), sql: sql.into(), description: String::new() };
        check_stored_query("q", &q("SELECT * FROM orders WHERE total > 0;")).unwrap();
        check_stored_query("q", &q("with x as (select 1) select * from x")).unwrap();
        for bad in ["DELETE FROM orders", "SELECT 1; DROP TABLE x", "SELECT 1 -- hi", "select * into y from x; update"]
        {
            assert!(check_stored_query("q", &q(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(check_stored_query("q", &q("SELECT 1 FROM t WHERE updated_at > now()")).is_ok());
    }

    #[test]
    fn allowlist_matching() {
        let rules = Rules::new(
            Allowlist {
                schemas: vec!["analytics".into()],
                objects: vec!["orders".into(), "shop.customers".into()],
                queries: vec![StoredQuery {
                    name: "recent".into(),
                    sql: "SELECT 1".into(),
                    description: String::new(),
                }],
                paths: vec![],
            },
            false,
        )
        .unwrap();
        let t = |s: &str, n: &str| ObjectName::Table { schema: Some(s.into()), name: n.into() };
        assert!(rules.permits(&t("public", "orders"), "public"));
        assert!(!rules.permits(&t("shop", "orders"), "public"));
        assert!(rules.permits(&t("shop", "customers"), "public"));
        assert!(rules.permits(&t("analytics", "anything"), "public"));
        assert!(!rules.permits(&t("public", "secrets"), "public"));
        assert!(rules.permits(&ObjectName::Query("recent".into()), "public"));
        assert!(!rules.permits(&ObjectName::Query("other".into()), "public"));

        let files = Rules::new(
            Allowlist { paths: vec!["events/*.parquet".into(), "a.csv".into()], ..Default::default() },
            true,
        )
        .unwrap();
        assert!(files.permits(&ObjectName::Path("events/x.parquet".into()), ""));
        assert!(!files.permits(&ObjectName::Path("events/sub/x.parquet".into()), ""));
        assert!(files.permits(&ObjectName::Path("events/*.parquet".into()), ""));
        assert!(!files.permits(&ObjectName::Path("b.csv".into()), ""));
        assert!(Rules::new(Allowlist::default(), true).is_err());
    }
}
