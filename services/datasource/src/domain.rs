//! The datasource registry: register, update and delete datasources with their
//! sealed secrets, and open connectors over allowlisted objects for validate,
//! inspect, estimate, range planning and streaming.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pulse_common::ids::new_id;
use pulse_common::paging::page_size;
use pulse_common::records::{ListQuery, Record, RecordStore, Write};
use pulse_common::secrets::MasterKeys;
use pulse_common::time::{now_millis, to_proto};
use pulse_proto::common::v1::{PageRequest, Schema};
use pulse_proto::datasource::v1 as pb;
use pulse_proto::datasource::v1::connection_spec::Spec;
use pulse_proto::datasource::v1::connection_view::View;
use pulse_proto::datasource::v1::{ConnectorKind, Value};

use crate::connector::files::{FileConnector, ReadScope};
use crate::connector::mysql::MysqlConnector;
use crate::connector::postgres::PostgresConnector;
use crate::connector::sqlserver::SqlServerConnector;
use crate::connector::values::check_value_for;
use crate::connector::{
    BatchStream, Connector, CursorWindow, FileSettings, RangeFilter, ReadSpec, SqlSettings, project, require_column,
};
use crate::error::DatasourceError;
use crate::names::{ObjectName, Rules, check_resource_name};
use crate::secret::redact_dsn;

const DATASOURCE: &str = "datasource";
/// The sealed connection spec of a datasource (same id).
const SECRET: &str = "datasource_secret";
/// Name → id, so names are unique per tenant.
const NAME: &str = "datasource_name";

/// The sealed form of a connection spec.
#[derive(Clone, PartialEq, prost::Message)]
struct SealedSpec {
    #[prost(bytes = "vec", tag = "1")]
    sealed: Vec<u8>,
    #[prost(string, tag = "2")]
    key_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NameEntry {
    #[prost(string, tag = "1")]
    id: String,
}

/// An allowlisted object opened for reading.
#[derive(Debug, Clone)]
pub struct OpenObject {
    pub datasource: pb::Datasource,
    pub connector: Arc<dyn Connector>,
    pub object: ObjectName,
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Datasources {
    records: Arc<dyn RecordStore>,
    keys: Arc<MasterKeys>,
    scope: Arc<ReadScope>,
}

fn sql_defaults(c: &pb::SqlConnection) -> (Duration, Duration, u32) {
    let dur = |d: &Option<prost_types::Duration>, default: u64| {
        d.as_ref()
            .and_then(|d| Duration::try_from(*d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(default))
    };
    let max = if c.max_connections == 0 { 4 } else { c.max_connections };
    (dur(&c.connect_timeout, 10), dur(&c.statement_timeout, 3600), max)
}

/// The default schema of a SQL connector: `public`, `dbo`, or the DSN's
/// database for MySQL.
fn default_schema(kind: ConnectorKind, spec: &Spec) -> String {
    match (kind, spec) {
        (ConnectorKind::Postgres, _) => "public".into(),
        (ConnectorKind::Sqlserver, _) => "dbo".into(),
        (ConnectorKind::Mysql, Spec::Sql(s)) => {
            url::Url::parse(&s.dsn).map(|u| u.path().trim_start_matches('/').to_string()).unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// Checks the connection spec against the connector, before anything is
/// stored.
fn check_spec(kind: ConnectorKind, spec: Option<&pb::ConnectionSpec>) -> Result<Spec, DatasourceError> {
    let spec = spec.and_then(|s| s.spec.clone()).ok_or_else(|| {
        DatasourceError::invalid(
            "connection",
            "is required: `sql` for postgres, mysql and sqlserver, `object_storage` for files",
        )
    })?;
    match (kind, &spec) {
        (ConnectorKind::Http, _) | (_, Spec::Http(_)) => Err(DatasourceError::Unimplemented(
            "the http connector is reserved for a later version of Pulse; use postgres, mysql, sqlserver or \
             object_storage"
                .into(),
        )),
        (ConnectorKind::Postgres | ConnectorKind::Mysql | ConnectorKind::Sqlserver, Spec::Sql(s)) => {
            let scheme = match kind {
                ConnectorKind::Postgres => &["postgres", "postgresql"][..],
                ConnectorKind::Mysql => &["mysql", "mariadb"][..],
                _ => &["sqlserver", "mssql"][..],
            };
            let url = url::Url::parse(&s.dsn).map_err(|_| {
                DatasourceError::invalid(
                    "connection.sql.dsn",
                    format!("is not a URL: use {}://user:password@host:port/database", scheme[0]),
                )
            })?;
            if !scheme.contains(&url.scheme()) {
                return Err(DatasourceError::invalid(
                    "connection.sql.dsn",
                    format!("scheme '{}' does not match the connector: use {}://…", url.scheme(), scheme[0]),
                ));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(DatasourceError::invalid("connection.sql.dsn", "must name a host"));
            }
            if s.max_connections > 32 {
                return Err(DatasourceError::invalid("connection.sql.max_connections", "must be at most 32"));
            }
            Ok(spec)
        }
        (ConnectorKind::ObjectStorage, Spec::ObjectStorage(o)) => {
            if !(o.uri.starts_with("s3://") || o.uri.starts_with("file:///")) {
                return Err(DatasourceError::invalid(
                    "connection.object_storage.uri",
                    "must be s3://bucket/prefix/ or file:///absolute/dir/",
                ));
            }
            Ok(spec)
        }
        (ConnectorKind::Unspecified, _) => {
            Err(DatasourceError::invalid("connector", "is required: postgres, mysql, sqlserver or object_storage"))
        }
        (_, _) => Err(DatasourceError::invalid(
            "connection",
            "does not match the connector: `sql` for postgres, mysql and sqlserver, `object_storage` for files",
        )),
    }
}

/// The redacted view of a spec.
fn view_of(spec: &Spec) -> pb::ConnectionView {
    let view = match spec {
        Spec::Sql(s) => {
            let (connect, statement, max) = sql_defaults(s);
            let url = url::Url::parse(&s.dsn).ok();
            View::Sql(pb::SqlConnectionView {
                dsn_redacted: redact_dsn(&s.dsn),
                host: url.as_ref().and_then(|u| u.host_str()).unwrap_or("").to_string(),
                port: url.as_ref().and_then(|u| u.port()).map(u32::from).unwrap_or(0),
                database: url.as_ref().map(|u| u.path().trim_start_matches('/').to_string()).unwrap_or_default(),
                user: url.as_ref().map(|u| u.username().to_string()).unwrap_or_default(),
                password_set: !s.password.is_empty() || url.as_ref().is_some_and(|u| u.password().is_some()),
                connect_timeout: prost_types::Duration::try_from(connect).ok(),
                statement_timeout: prost_types::Duration::try_from(statement).ok(),
                max_connections: max,
            })
        }
        Spec::ObjectStorage(o) => View::ObjectStorage(pb::ObjectStorageConnectionView {
            uri: o.uri.clone(),
            format: o.format,
            csv: o.csv.clone(),
            endpoint: o.endpoint.clone(),
            region: o.region.clone(),
            force_path_style: o.force_path_style,
            access_key_id_redacted: if o.access_key_id.len() > 4 {
                format!("****{}", &o.access_key_id[o.access_key_id.len() - 4..])
            } else if o.access_key_id.is_empty() {
                String::new()
            } else {
                "****".into()
            },
            secret_access_key_set: !o.secret_access_key.is_empty(),
        }),
        Spec::Http(h) => View::Http(h.clone()),
    };
    pb::ConnectionView { view: Some(view) }
}

fn has_secret(spec: &Spec) -> bool {
    match spec {
        Spec::Sql(s) => !s.password.is_empty() || url::Url::parse(&s.dsn).is_ok_and(|u| u.password().is_some()),
        Spec::ObjectStorage(o) => !o.secret_access_key.is_empty() || !o.session_token.is_empty(),
        Spec::Http(_) => false,
    }
}

fn connector_kind(d: &pb::Datasource) -> ConnectorKind {
    ConnectorKind::try_from(d.connector).unwrap_or(ConnectorKind::Unspecified)
}

fn labels_checked(labels: &std::collections::BTreeMap<String, String>) -> Result<(), DatasourceError> {
    if labels.len() > 64 {
        return Err(DatasourceError::invalid("labels", "at most 64 labels"));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > 63 || v.len() > 256 {
            return Err(DatasourceError::invalid(
                format!("labels[{k}]"),
                "keys are 1 to 63 characters, values at most 256",
            ));
        }
    }
    Ok(())
}

impl Datasources {
    pub fn new(records: Arc<dyn RecordStore>, keys: Arc<MasterKeys>, mut scope: ReadScope) -> Self {
        if scope.file_roots.is_empty() {
            scope.file_roots = std::env::current_dir().map(|d| vec![d]).unwrap_or_default();
        }
        Self { records, keys, scope: Arc::new(scope) }
    }

    fn seal(&self, tenant: &str, id: &str, spec: &Spec) -> SealedSpec {
        let bytes = prost::Message::encode_to_vec(&pb::ConnectionSpec { spec: Some(spec.clone()) });
        SealedSpec {
            sealed: self.keys.seal(&bytes, format!("{tenant}/{id}").as_bytes()),
            key_id: self.keys.current_id().into(),
        }
    }

    async fn unseal(&self, tenant: &str, id: &str) -> Result<Spec, DatasourceError> {
        let record = self
            .records
            .get(tenant, SECRET, id)
            .await?
            .ok_or_else(|| DatasourceError::Precondition(format!("datasource '{id}' has no stored connection")))?;
        let sealed: SealedSpec = record.decode()?;
        let bytes = self.keys.open(&sealed.sealed, format!("{tenant}/{id}").as_bytes())?;
        let spec: pb::ConnectionSpec = prost::Message::decode(bytes.as_slice())
            .map_err(|e| DatasourceError::Precondition(format!("stored connection does not decode: {e}")))?;
        let spec = spec.spec.ok_or_else(|| DatasourceError::Precondition("stored connection is empty".into()))?;
        // Sealed under a previous master key: re-seal under the current one,
        // so the old key can be retired. Losing the race to another writer is
        // fine; the next read tries again.
        if self.keys.needs_rotation(&sealed.sealed)? {
            let resealed = self.seal(tenant, id, &spec);
            if self.records.apply(tenant, vec![Write::update(&record, "", &resealed)]).await? {
                tracing::info!(tenant, datasource = id, key_id = %resealed.key_id, "re-sealed a datasource secret under the current master key");
            }
        }
        Ok(spec)
    }

    pub async fn register(
        &self,
        tenant: &str,
        req: pb::RegisterDatasourceRequest,
    ) -> Result<pb::Datasource, DatasourceError> {
        check_resource_name("name", &req.name)?;
        let kind = ConnectorKind::try_from(req.connector).unwrap_or(ConnectorKind::Unspecified);
        let spec = check_spec(kind, req.connection.as_ref())?;
        let allowlist = req.allowlist.unwrap_or_default();
        Rules::new(allowlist.clone(), kind == ConnectorKind::ObjectStorage)?;
        if req.description.len() > 2000 {
            return Err(DatasourceError::invalid("description", "at most 2000 characters"));
        }
        let labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        labels_checked(&labels)?;
        if let Spec::ObjectStorage(o) = &spec {
            // Outside what this server may read: refused now, not at first read.
            let settings = FileSettings {
                uri: o.uri.clone(),
                access_key_id: o.access_key_id.clone(),
                region: o.region.clone(),
                ..Default::default()
            };
            FileConnector::new(settings, &self.scope).await?;
        }
        let id = new_id("dsrc");
        let now = to_proto(now_millis());
        let sealed = self.seal(tenant, &id, &spec);
        let ds = pb::Datasource {
            id: id.clone(),
            name: req.name.clone(),
            connector: kind as i32,
            description: req.description,
            connection: Some(view_of(&spec)),
            allowlist: Some(allowlist),
            secret: Some(pb::SecretInfo {
                set: has_secret(&spec),
                key_id: sealed.key_id.clone(),
                updated_at: Some(now),
            }),
            labels: labels.into_iter().collect(),
            created_at: Some(now),
            updated_at: Some(now),
        };
        let written = self
            .records
            .apply(
                tenant,
                vec![
                    Write::insert(NAME, &req.name, "", "", &NameEntry { id: id.clone() }),
                    Write::insert(DATASOURCE, &id, "", "", &ds),
                    Write::insert(SECRET, &id, "", "", &sealed),
                    Write::event(
                        "pulse.datasource.registered.v1",
                        &id,
                        serde_json::json!({"datasource_id": id, "name": req.name, "connector": kind.as_str_name()}),
                    ),
                ],
            )
            .await?;
        if !written {
            return Err(DatasourceError::NameTaken(req.name));
        }
        tracing::info!(tenant, datasource = %id, name = %ds.name, "registered datasource");
        Ok(ds)
    }

    async fn record(&self, tenant: &str, id_or_name: &str) -> Result<(Record, pb::Datasource), DatasourceError> {
        if id_or_name.is_empty() {
            return Err(DatasourceError::invalid("id", "is required: a datasource id (dsrc_…) or name"));
        }
        let id = if id_or_name.starts_with("dsrc_") {
            id_or_name.to_string()
        } else {
            match self.records.get(tenant, NAME, id_or_name).await? {
                Some(r) => r.decode::<NameEntry>()?.id,
                None => return Err(DatasourceError::NotFound(id_or_name.to_string())),
            }
        };
        let record = self
            .records
            .get(tenant, DATASOURCE, &id)
            .await?
            .ok_or_else(|| DatasourceError::NotFound(id_or_name.into()))?;
        let ds = record.decode()?;
        Ok((record, ds))
    }

    pub async fn get(&self, tenant: &str, id_or_name: &str) -> Result<pb::Datasource, DatasourceError> {
        Ok(self.record(tenant, id_or_name).await?.1)
    }

    pub async fn list(
        &self,
        tenant: &str,
        connector: ConnectorKind,
        page: Option<PageRequest>,
    ) -> Result<(Vec<pb::Datasource>, String), DatasourceError> {
        let page = page.unwrap_or_default();
        let limit = page_size(page.page_size);
        let mut out = Vec::new();
        let mut after = page.page_token.clone();
        // Filtering by connector happens after the read; keep reading until the
        // page is full or the records run out.
        loop {
            let batch = self
                .records
                .list(tenant, DATASOURCE, ListQuery { after: &after, limit: limit + 1, ..Default::default() })
                .await?;
            let exhausted = batch.len() <= limit as usize;
            for r in batch.iter().take(limit as usize) {
                after = r.id.clone();
                let ds: pb::Datasource = r.decode()?;
                if connector == ConnectorKind::Unspecified || connector_kind(&ds) == connector {
                    out.push(ds);
                    if out.len() == limit as usize {
                        let more = !exhausted || r.id != batch.last().map(|l| l.id.clone()).unwrap_or_default();
                        return Ok((out, if more { after } else { String::new() }));
                    }
                }
            }
            if exhausted {
                return Ok((out, String::new()));
            }
        }
    }

    pub async fn update(
        &self,
        tenant: &str,
        req: pb::UpdateDatasourceRequest,
    ) -> Result<pb::Datasource, DatasourceError> {
        let (record, mut ds) = self.record(tenant, &req.id).await?;
        let kind = connector_kind(&ds);
        let mut writes = Vec::new();
        if let Some(desc) = req.description {
            if desc.len() > 2000 {
                return Err(DatasourceError::invalid("description", "at most 2000 characters"));
            }
            ds.description = desc;
        }
        if let Some(allowlist) = req.allowlist {
            Rules::new(allowlist.clone(), kind == ConnectorKind::ObjectStorage)?;
            ds.allowlist = Some(allowlist);
        }
        let now = to_proto(now_millis());
        if let Some(connection) = req.connection {
            let spec = check_spec(kind, Some(&connection))?;
            let sealed = self.seal(tenant, &ds.id, &spec);
            ds.connection = Some(view_of(&spec));
            ds.secret =
                Some(pb::SecretInfo { set: has_secret(&spec), key_id: sealed.key_id.clone(), updated_at: Some(now) });
            let secret_record = self.records.get(tenant, SECRET, &ds.id).await?;
            writes.push(match secret_record {
                Some(r) => Write::update(&r, "", &sealed),
                None => Write::insert(SECRET, &ds.id, "", "", &sealed),
            });
        }
        if req.replace_labels {
            ds.labels = req.labels.into_iter().collect();
        } else {
            ds.labels.extend(req.labels);
        }
        labels_checked(&ds.labels.clone().into_iter().collect())?;
        ds.updated_at = Some(now);
        writes.push(Write::update(&record, "", &ds));
        writes.push(Write::event("pulse.datasource.updated.v1", &ds.id, serde_json::json!({"datasource_id": ds.id})));
        if !self.records.apply(tenant, writes).await? {
            return Err(DatasourceError::Precondition(format!(
                "datasource '{}' changed while this update ran; read it again and retry",
                ds.id
            )));
        }
        Ok(ds)
    }

    pub async fn delete(&self, tenant: &str, id: &str) -> Result<pb::Datasource, DatasourceError> {
        let (record, ds) = self.record(tenant, id).await?;
        let mut writes = vec![Write::Delete { kind: DATASOURCE, id: ds.id.clone(), revision: record.revision }];
        if let Some(name) = self.records.get(tenant, NAME, &ds.name).await? {
            writes.push(Write::Delete { kind: NAME, id: ds.name.clone(), revision: name.revision });
        }
        if let Some(secret) = self.records.get(tenant, SECRET, &ds.id).await? {
            writes.push(Write::Delete { kind: SECRET, id: ds.id.clone(), revision: secret.revision });
        }
        writes.push(Write::event("pulse.datasource.deleted.v1", &ds.id, serde_json::json!({"datasource_id": ds.id})));
        if !self.records.apply(tenant, writes).await? {
            return Err(DatasourceError::Precondition(format!(
                "datasource '{}' changed while being deleted; retry",
                ds.id
            )));
        }
        Ok(ds)
    }

    /// The connector for a datasource, with its secret unsealed.
    async fn connector(
        &self,
        tenant: &str,
        ds: &pb::Datasource,
    ) -> Result<(Arc<dyn Connector>, Spec), DatasourceError> {
        let spec = self.unseal(tenant, &ds.id).await?;
        let kind = connector_kind(ds);
        let queries: BTreeMap<String, String> = ds
            .allowlist
            .as_ref()
            .map(|a| a.queries.iter().map(|q| (q.name.clone(), q.sql.clone())).collect())
            .unwrap_or_default();
        let connector: Arc<dyn Connector> = match (&spec, kind) {
            (Spec::Sql(s), _) => {
                let (connect_timeout, statement_timeout, max_connections) = sql_defaults(s);
                let mut dsn = s.dsn.clone();
                if !s.password.is_empty()
                    && let Ok(mut u) = url::Url::parse(&dsn)
                {
                    let _ = u.set_password(Some(&s.password));
                    dsn = u.to_string();
                }
                let settings = SqlSettings { dsn, connect_timeout, statement_timeout, max_connections, queries };
                match kind {
                    ConnectorKind::Postgres => Arc::new(PostgresConnector::new(settings)?),
                    ConnectorKind::Mysql => Arc::new(MysqlConnector::new(settings)?),
                    ConnectorKind::Sqlserver => Arc::new(SqlServerConnector::new(settings)?),
                    _ => return Err(DatasourceError::Precondition("connector and connection disagree".into())),
                }
            }
            (Spec::ObjectStorage(o), _) => {
                let settings = FileSettings {
                    uri: o.uri.clone(),
                    format: pb::FileFormat::try_from(o.format).unwrap_or(pb::FileFormat::Auto),
                    csv: o.csv.clone().unwrap_or_default(),
                    endpoint: o.endpoint.clone(),
                    region: o.region.clone(),
                    force_path_style: o.force_path_style,
                    access_key_id: o.access_key_id.clone(),
                    secret_access_key: o.secret_access_key.clone(),
                    session_token: o.session_token.clone(),
                };
                Arc::new(FileConnector::new(settings, &self.scope).await?)
            }
            (Spec::Http(_), _) => {
                return Err(DatasourceError::Unimplemented(
                    "the http connector is reserved for a later version".into(),
                ));
            }
        };
        Ok((connector, spec))
    }

    fn rules(ds: &pb::Datasource) -> Result<Rules, DatasourceError> {
        Rules::new(ds.allowlist.clone().unwrap_or_default(), connector_kind(ds) == ConnectorKind::ObjectStorage)
    }

    /// Every allowlisted object, schemas expanded to their tables and views.
    async fn allowlisted(
        &self,
        connector: &dyn Connector,
        rules: &Rules,
        default_schema: &str,
    ) -> Result<Vec<ObjectName>, DatasourceError> {
        let mut objects = rules.named_objects(default_schema);
        if !rules.files() && !rules.allowlist.schemas.is_empty() {
            for o in connector.list_objects(&rules.allowlist.schemas).await? {
                if !objects.contains(&o) {
                    objects.push(o);
                }
            }
        }
        Ok(objects)
    }

    /// Opens one allowlisted object: the object name is parsed (quotes,
    /// semicolons, comments are INVALID_ARGUMENT) and checked against the
    /// allowlist (PERMISSION_DENIED) before any connection is made.
    pub async fn open(&self, tenant: &str, id: &str, object: &str, field: &str) -> Result<OpenObject, DatasourceError> {
        let ds = self.get(tenant, id).await?;
        let rules = Self::rules(&ds)?;
        let parsed = ObjectName::parse(field, object, rules.files())?;
        let spec = self.unseal(tenant, &ds.id).await?;
        let default = default_schema(connector_kind(&ds), &spec);
        let parsed = parsed.qualified(&default);
        if !rules.permits(&parsed, &default) {
            return Err(DatasourceError::NotAllowlisted { datasource: ds.name.clone(), object: parsed.canonical() });
        }
        let statement_timeout = match &spec {
            Spec::Sql(s) => sql_defaults(s).1,
            _ => Duration::from_secs(3600),
        };
        let (connector, _) = self.connector(tenant, &ds).await?;
        Ok(OpenObject { datasource: ds, connector, object: parsed, statement_timeout })
    }

    pub async fn validate(&self, tenant: &str, id: &str) -> Result<pb::DatasourceValidation, DatasourceError> {
        let ds = self.get(tenant, id).await?;
        let rules = Self::rules(&ds)?;
        let (connector, spec) = self.connector(tenant, &ds).await?;
        let default = default_schema(connector_kind(&ds), &spec);
        // Listing schemas needs a connection; if it fails, validate reports why.
        let objects = match self.allowlisted(connector.as_ref(), &rules, &default).await {
            Ok(o) => o,
            Err(_) => rules.named_objects(&default),
        };
        let outcome = connector.validate(&objects).await;
        let ok = outcome
            .checks
            .iter()
            .all(|c| c.status != pb::CheckStatus::Failed as i32 && c.status != pb::CheckStatus::Skipped as i32);
        Ok(pb::DatasourceValidation {
            datasource_id: ds.id,
            ok,
            reachable: outcome.reachable,
            authenticated: outcome.authenticated,
            read_only: outcome.read_only,
            server_version: outcome.server_version,
            checks: outcome.checks,
            checked_at: Some(to_proto(now_millis())),
        })
    }

    /// Parses and allowlist-checks requested objects, or lists every
    /// allowlisted one when none are given.
    async fn objects(
        &self,
        tenant: &str,
        ds: &pb::Datasource,
        requested: &[String],
    ) -> Result<(Arc<dyn Connector>, Vec<ObjectName>), DatasourceError> {
        let rules = Self::rules(ds)?;
        let parsed = requested
            .iter()
            .enumerate()
            .map(|(i, o)| ObjectName::parse(&format!("objects[{i}]"), o, rules.files()))
            .collect::<Result<Vec<_>, _>>()?;
        let (connector, spec) = self.connector(tenant, ds).await?;
        let default = default_schema(connector_kind(ds), &spec);
        if parsed.is_empty() {
            let all = self.allowlisted(connector.as_ref(), &rules, &default).await?;
            return Ok((connector, all));
        }
        let mut out = Vec::new();
        for p in parsed {
            let p = p.qualified(&default);
            if !rules.permits(&p, &default) {
                return Err(DatasourceError::NotAllowlisted { datasource: ds.name.clone(), object: p.canonical() });
            }
            out.push(p);
        }
        Ok((connector, out))
    }

    pub async fn inspect(
        &self,
        tenant: &str,
        id: &str,
        objects: &[String],
    ) -> Result<pb::InspectSchemaResponse, DatasourceError> {
        let ds = self.get(tenant, id).await?;
        let (connector, objects) = self.objects(tenant, &ds, objects).await?;
        let mut out = Vec::with_capacity(objects.len());
        for o in &objects {
            out.push(connector.inspect(o).await?);
        }
        Ok(pb::InspectSchemaResponse { datasource_id: ds.id, objects: out })
    }

    pub async fn estimate(
        &self,
        tenant: &str,
        req: pb::EstimateSizeRequest,
    ) -> Result<pb::EstimateSizeResponse, DatasourceError> {
        let ds = self.get(tenant, &req.id).await?;
        let (connector, objects) = self.objects(tenant, &ds, &req.objects).await?;
        let mut out = Vec::new();
        for o in &objects {
            let cursor = if req.cursor_field.is_empty() {
                None
            } else {
                let schema = connector.inspect(o).await?.schema.unwrap_or_default();
                let col = require_column(&schema, &req.cursor_field, "cursor_field")?;
                if let Some(v) = &req.cursor_after {
                    check_value_for("cursor_after", v, col)?;
                }
                Some(CursorWindow { field: req.cursor_field.clone(), after: req.cursor_after.clone(), until: None })
            };
            out.push(connector.estimate(o, req.exact, cursor.as_ref()).await?);
        }
        Ok(pb::EstimateSizeResponse {
            datasource_id: ds.id,
            total_rows: out.iter().map(|o| o.rows).sum(),
            total_bytes: out.iter().map(|o| o.bytes).sum(),
            objects: out,
        })
    }

    pub async fn plan_ranges(
        &self,
        tenant: &str,
        req: pb::PlanRangesRequest,
    ) -> Result<pb::PlanRangesResponse, DatasourceError> {
        if req.count == 0 || req.count > 64 {
            return Err(DatasourceError::invalid("count", "must be 1 to 64"));
        }
        let open = self.open(tenant, &req.id, &req.object, "object").await?;
        let schema = open.connector.inspect(&open.object).await?.schema.unwrap_or_default();
        require_column(&schema, &req.column, "column")?;
        let cursor = cursor_window(&schema, &req.cursor_field, &req.cursor_after, &req.cursor_until)?;
        let bounds = open.connector.column_bounds(&open.object, &req.column, req.count, cursor.as_ref()).await?;
        Ok(plan_from_bounds(bounds))
    }

    /// Opens a read of an allowlisted object: checks every column name and
    /// value against the object's schema first.
    pub async fn stream(
        &self,
        tenant: &str,
        req: pb::StreamDataRequest,
    ) -> Result<(Schema, BatchStream), DatasourceError> {
        let open = self.open(tenant, &req.id, &req.object, "object").await?;
        let inspected = open.connector.inspect(&open.object).await?;
        let schema = inspected.schema.unwrap_or_default();
        let spec = read_spec(&schema, &req, open.statement_timeout)?;
        let projected = project(&schema, &spec.columns, "columns")?;
        let stream = open.connector.stream(&open.object, spec).await?;
        Ok((projected, stream))
    }
}

/// Ranges from split points: contiguous, the first without a lower bound,
/// the last without an upper one, nulls read by the first.
pub fn plan_from_bounds(bounds: crate::connector::ColumnBounds) -> pb::PlanRangesResponse {
    let mut ranges = Vec::new();
    let mut lower: Option<Value> = None;
    for s in &bounds.splits {
        ranges.push(pb::Range { lower: lower.clone(), upper: Some(s.clone()) });
        lower = Some(s.clone());
    }
    ranges.push(pb::Range { lower, upper: None });
    pb::PlanRangesResponse { min: bounds.min, max: bounds.max, ranges, null_range: 0 }
}

/// The cursor window of a request, with its values checked against the
/// column's type.
pub fn cursor_window(
    schema: &Schema,
    field: &str,
    after: &Option<Value>,
    until: &Option<Value>,
) -> Result<Option<CursorWindow>, DatasourceError> {
    if field.is_empty() {
        if after.as_ref().is_some_and(|v| v.kind.is_some()) || until.as_ref().is_some_and(|v| v.kind.is_some()) {
            return Err(DatasourceError::invalid("cursor_field", "is required when a cursor bound is given"));
        }
        return Ok(None);
    }
    let col = require_column(schema, field, "cursor_field")?;
    let after = after.clone().filter(|v| v.kind.is_some());
    let until = until.clone().filter(|v| v.kind.is_some());
    if let Some(v) = &after {
        check_value_for("cursor_after", v, col)?;
    }
    if let Some(v) = &until {
        check_value_for("cursor_until", v, col)?;
    }
    Ok(Some(CursorWindow { field: field.to_string(), after, until }))
}

/// Checks a stream request against the object's schema and turns it into a
/// read.
pub fn read_spec(
    schema: &Schema,
    req: &pb::StreamDataRequest,
    statement_timeout: Duration,
) -> Result<ReadSpec, DatasourceError> {
    project(schema, &req.columns, "columns")?;
    let cursor = cursor_window(schema, &req.cursor_field, &req.cursor_after, &req.cursor_until)?;
    let range = if req.range_column.is_empty() {
        if req.range.is_some() {
            return Err(DatasourceError::invalid("range_column", "is required when a range is given"));
        }
        None
    } else {
        let col = require_column(schema, &req.range_column, "range_column")?;
        let r = req.range.clone().unwrap_or_default();
        let lower = r.lower.filter(|v| v.kind.is_some());
        let upper = r.upper.filter(|v| v.kind.is_some());
        if let Some(v) = &lower {
            check_value_for("range.lower", v, col)?;
        }
        if let Some(v) = &upper {
            check_value_for("range.upper", v, col)?;
        }
        Some(RangeFilter { column: req.range_column.clone(), lower, upper, include_nulls: req.range_includes_nulls })
    };
    for (i, c) in req.order_by.iter().enumerate() {
        require_column(schema, c, &format!("order_by[{i}]"))?;
    }
    if !req.after_key.is_empty() {
        if req.after_key.len() != req.order_by.len() {
            return Err(DatasourceError::invalid(
                "after_key",
                format!("needs one value per order_by column ({}), got {}", req.order_by.len(), req.after_key.len()),
            ));
        }
        for (i, (v, c)) in req.after_key.iter().zip(&req.order_by).enumerate() {
            let col = require_column(schema, c, "order_by")?;
            check_value_for(&format!("after_key[{i}]"), v, col)?;
        }
    }
    if req.batch_rows > 1_048_576 {
        return Err(DatasourceError::invalid("batch_rows", "must be at most 1048576"));
    }
    Ok(ReadSpec {
        columns: req.columns.clone(),
        cursor,
        range,
        order_by: req.order_by.clone(),
        after_key: req.after_key.clone(),
        batch_rows: if req.batch_rows == 0 { 65_536 } else { req.batch_rows as usize },
        limit: (req.limit > 0).then_some(req.limit),
        statement_timeout,
    })
}
