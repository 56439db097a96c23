//! The one place SQL text is built, for every SQL dialect. Identifiers come
//! only from validated names and are quoted by the dialect; values become bind
//! parameters, or (PostgreSQL COPY, which takes none) typed literals rendered
//! by the dialect. Nothing a caller typed is ever concatenated unquoted.

use pulse_proto::datasource::v1::Value;

use super::{CursorWindow, RangeFilter, ReadSpec};
use crate::names::ObjectName;

/// How a dialect spells things.
pub trait Dialect: Sync {
    /// Quotes an identifier (already validated: no quote characters inside).
    fn quote(&self, ident: &str) -> String;
    /// Adds `value` as parameter number `n` (1-based) and answers its SQL:
    /// a placeholder, or an escaped, typed literal.
    fn param(&self, n: usize, value: &Value) -> String;
    /// `ORDER BY` term for ascending order with nulls first.
    fn order_asc_nulls_first(&self, quoted: &str) -> String;
    /// Wraps a complete SELECT with a row limit.
    fn limit(&self, select: String, limit: u64, ordered: bool) -> String;
}

/// A statement and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// The FROM source of an object: a quoted table or view, or a stored query as
/// a derived table.
pub fn source(d: &dyn Dialect, object: &ObjectName, stored_sql: Option<&str>) -> String {
    match object {
        ObjectName::Table { schema: Some(s), name } => format!("{}.{}", d.quote(s), d.quote(name)),
        ObjectName::Table { schema: None, name } => d.quote(name),
        ObjectName::Query(_) => {
            let sql = stored_sql.unwrap_or("SELECT 1 WHERE 1 = 0").trim().trim_end_matches(';');
            format!("({sql}) AS pulse_q")
        }
        ObjectName::Path(p) => d.quote(p),
    }
}

/// Accumulates WHERE terms and parameters.
pub struct Filter<'d> {
    d: &'d dyn Dialect,
    terms: Vec<String>,
    params: Vec<Value>,
}

impl<'d> Filter<'d> {
    pub fn new(d: &'d dyn Dialect) -> Self {
        Self { d, terms: Vec::new(), params: Vec::new() }
    }

    fn bind(&mut self, v: &Value) -> String {
        self.params.push(v.clone());
        self.d.param(self.params.len(), v)
    }

    pub fn cursor(&mut self, w: &CursorWindow) {
        let c = self.d.quote(&w.field);
        if let Some(after) = &w.after {
            let p = self.bind(after);
            self.terms.push(format!("{c} > {p}"));
        }
        if let Some(until) = &w.until {
            let p = self.bind(until);
            self.terms.push(format!("{c} <= {p}"));
        }
    }

    pub fn range(&mut self, r: &RangeFilter) {
        let c = self.d.quote(&r.column);
        let mut parts = Vec::new();
        if let Some(lo) = &r.lower {
            let p = self.bind(lo);
            parts.push(format!("{c} >= {p}"));
        }
        if let Some(hi) = &r.upper {
            let p = self.bind(hi);
            parts.push(format!("{c} < {p}"));
        }
        let bounded = if parts.is_empty() { format!("{c} IS NOT NULL") } else { parts.join(" AND ") };
        if r.include_nulls {
            self.terms.push(format!("(({bounded}) OR {c} IS NULL)"));
        } else {
            self.terms.push(format!("({bounded})"));
        }
    }

    /// Rows whose `order_by` tuple sorts strictly after `key`:
    /// `(a > ?) OR (a = ? AND b > ?) OR …`.
    pub fn after_key(&mut self, order_by: &[String], key: &[Value]) {
        let mut ors = Vec::new();
        for i in 0..order_by.len().min(key.len()) {
            let mut ands = Vec::new();
            for j in 0..i {
                let p = self.bind(&key[j]);
                ands.push(format!("{} = {p}", self.d.quote(&order_by[j])));
            }
            let p = self.bind(&key[i]);
            ands.push(format!("{} > {p}", self.d.quote(&order_by[i])));
            ors.push(format!("({})", ands.join(" AND ")));
        }
        if !ors.is_empty() {
            self.terms.push(format!("({})", ors.join(" OR ")));
        }
    }

    pub fn push_raw(&mut self, term: String) {
        self.terms.push(term);
    }

    pub fn into_parts(self) -> (String, Vec<Value>) {
        let clause = if self.terms.is_empty() { String::new() } else { format!(" WHERE {}", self.terms.join(" AND ")) };
        (clause, self.params)
    }
}

/// The SELECT of a read. `select_list` holds one expression per column
/// (already quoted, possibly cast by the connector).
pub fn select(d: &dyn Dialect, from: &str, select_list: &[String], spec: &ReadSpec) -> Statement {
    let mut f = Filter::new(d);
    if let Some(w) = &spec.cursor {
        f.cursor(w);
    }
    if let Some(r) = &spec.range {
        f.range(r);
    }
    if !spec.after_key.is_empty() {
        f.after_key(&spec.order_by, &spec.after_key);
    }
    let (clause, params) = f.into_parts();
    let mut sql = format!("SELECT {} FROM {from}{clause}", select_list.join(", "));
    if !spec.order_by.is_empty() {
        let terms: Vec<String> = spec.order_by.iter().map(|c| d.order_asc_nulls_first(&d.quote(c))).collect();
        sql.push_str(&format!(" ORDER BY {}", terms.join(", ")));
    }
    if let Some(n) = spec.limit {
        sql = d.limit(sql, n, !spec.order_by.is_empty());
    }
    Statement { sql, params }
}

/// `SELECT count(*), max(cursor) FROM … WHERE cursor window`.
pub fn count_and_max(d: &dyn Dialect, from: &str, cursor: Option<&CursorWindow>) -> Statement {
    let mut f = Filter::new(d);
    if let Some(w) = cursor {
        f.cursor(w);
    }
    let (clause, params) = f.into_parts();
    let max = cursor.map(|w| format!("max({})", d.quote(&w.field))).unwrap_or_else(|| "NULL".into());
    Statement { sql: format!("SELECT count(*), {max} FROM {from}{clause}"), params }
}

/// `SELECT min(c), max(c) FROM … WHERE cursor window`.
pub fn min_max(d: &dyn Dialect, from: &str, column: &str, cursor: Option<&CursorWindow>) -> Statement {
    let mut f = Filter::new(d);
    if let Some(w) = cursor {
        f.cursor(w);
    }
    let (clause, params) = f.into_parts();
    let c = d.quote(column);
    Statement { sql: format!("SELECT min({c}), max({c}) FROM {from}{clause}"), params }
}

/// The first value of each of `count` equal-sized buckets but the first
/// (`NTILE`), over the non-null values of `column` inside `cursor`: split
/// points that give ranges of about the same number of rows.
pub fn ntile_starts(d: &dyn Dialect, from: &str, column: &str, count: u32, cursor: Option<&CursorWindow>) -> Statement {
    let c = d.quote(column);
    let mut f = Filter::new(d);
    if let Some(w) = cursor {
        f.cursor(w);
    }
    f.push_raw(format!("{c} IS NOT NULL"));
    let (clause, params) = f.into_parts();
    let sql = format!(
        "SELECT min(pulse_v) FROM (SELECT {c} AS pulse_v, NTILE({count}) OVER (ORDER BY {c}) AS pulse_b \
         FROM {from}{clause}) AS pulse_s GROUP BY pulse_b HAVING pulse_b > 1 ORDER BY pulse_b"
    );
    Statement { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_proto::datasource::v1::value::Kind;

    struct Ansi;
    impl Dialect for Ansi {
        fn quote(&self, ident: &str) -> String {
            format!("\"{ident}\"")
        }
        fn param(&self, n: usize, _: &Value) -> String {
            format!("${n}")
        }
        fn order_asc_nulls_first(&self, q: &str) -> String {
            format!("{q} ASC NULLS FIRST")
        }
        fn limit(&self, select: String, limit: u64, _: bool) -> String {
            format!("{select} LIMIT {limit}")
        }
    }

    fn int(i: i64) -> Value {
        Value { kind: Some(Kind::IntValue(i)) }
    }

    #[test]
    fn builds_a_filtered_ordered_read() {
        let spec = ReadSpec {
            cursor: Some(CursorWindow { field: "updated".into(), after: Some(int(5)), until: Some(int(9)) }),
            range: Some(RangeFilter { column: "id".into(), lower: Some(int(0)), upper: None, include_nulls: true }),
            order_by: vec!["a".into(), "b".into()],
            after_key: vec![int(1), int(2)],
            limit: Some(10),
            ..Default::default()
        };
        let obj = ObjectName::Table { schema: Some("s".into()), name: "t".into() };
        let st = select(&Ansi, &source(&Ansi, &obj, None), &["\"a\"".into(), "\"b\"".into()], &spec);
        assert_eq!(
            st.sql,
            "SELECT \"a\", \"b\" FROM \"s\".\"t\" WHERE \"updated\" > $1 AND \"updated\" <= $2 AND \
             ((\"id\" >= $3) OR \"id\" IS NULL) AND ((\"a\" > $4) OR (\"a\" = $5 AND \"b\" > $6)) \
             ORDER BY \"a\" ASC NULLS FIRST, \"b\" ASC NULLS FIRST LIMIT 10"
        );
        assert_eq!(st.params, vec![int(5), int(9), int(0), int(1), int(1), int(2)]);
    }

    #[test]
    fn stored_queries_are_derived_tables() {
        let from = source(&Ansi, &ObjectName::Query("q".into()), Some("SELECT * FROM x;"));
        assert_eq!(from, "(SELECT * FROM x) AS pulse_q");
    }
}
