//! Typed Pulse clients, shared by the `pulse` CLI and the Python SDK: one
//! connection carrying the API key, mutations with idempotency keys and safe
//! retries, and the lineage tree as the CLI prints it.

pub mod dynamic;
mod error;
#[cfg(feature = "testing")]
pub mod testing;
mod tree;

use std::time::Duration;

use pulse_proto::admin::v1 as admin;
use pulse_proto::admin::v1::admin_service_client::AdminServiceClient;
use pulse_proto::datasource::v1 as datasource;
use pulse_proto::datasource::v1::datasource_service_client::DatasourceServiceClient;
use pulse_proto::inference::v1 as inference;
use pulse_proto::inference::v1::inference_service_client::InferenceServiceClient;
use pulse_proto::lineage::v1 as lineage;
use pulse_proto::lineage::v1::lineage_service_client::LineageServiceClient;
use pulse_proto::snapshot::v1 as snapshot;
use pulse_proto::snapshot::v1::snapshot_service_client::SnapshotServiceClient;
use pulse_proto::tonic::metadata::MetadataValue;
use pulse_proto::tonic::transport::{Channel, Endpoint};
use pulse_proto::tonic::{Code, Request};
use pulse_proto::trainer::v1 as trainer;
use pulse_proto::trainer::v1::trainer_service_client::TrainerServiceClient;

pub use error::ClientError;
pub use pulse_proto;
pub use pulse_proto::code_name;
pub use tree::{LineageTree, kind_name, parse_kind};

pub type Result<T> = std::result::Result<T, ClientError>;

/// A lineage node to record, e.g. `node("mv_churn_3", NodeKind::ModelVersion,
/// &[("model", "churn"), ("version", "3")])`.
pub fn node(id: &str, kind: lineage::NodeKind, attributes: &[(&str, &str)]) -> lineage::Node {
    lineage::Node {
        id: id.into(),
        kind: kind as i32,
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        created_at: None,
    }
}

/// A lineage edge from an input to what was made from it.
pub fn edge(from_id: &str, to_id: &str) -> lineage::Edge {
    lineage::Edge { from_id: from_id.into(), to_id: to_id.into(), relation: String::new(), created_at: None }
}

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// A channel endpoint for a Pulse address (`host:port`, `http://…` or
/// `https://…`), with TLS verified against `ca_pem` when given. Used by the
/// client and by services that call one another.
pub fn channel_endpoint(endpoint: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint> {
    use pulse_proto::tonic::transport::{Certificate, ClientTlsConfig};
    let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let mut ep = Endpoint::from_shared(url)
        .map_err(|e| ClientError::InvalidArgument(format!("endpoint '{endpoint}': {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if ep.uri().scheme_str() == Some("https") {
        install_tls_provider();
        let tls = match ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        ep =
            ep.tls_config(tls).map_err(|e| ClientError::InvalidArgument(format!("endpoint '{endpoint}': TLS: {e}")))?;
    }
    Ok(ep)
}

/// Selects rustls's crypto provider for the process (the dependency tree
/// enables two, so rustls cannot pick one itself). Idempotent; called before
/// any TLS is set up, client or server side.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another library may have installed one first; either works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The CA certificate named by `PULSE_TLS_CA`, if set.
pub fn tls_ca_from_env() -> Result<Option<Vec<u8>>> {
    match std::env::var_os("PULSE_TLS_CA") {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            ClientError::InvalidArgument(format!("PULSE_TLS_CA names {}: {e}", std::path::Path::new(&path).display()))
        }),
    }
}

/// The largest answer the client accepts (a bounded 10,000-node trace).
const MAX_ANSWER_BYTES: usize = 128 * 1024 * 1024;

fn lineage_client(channel: Channel) -> LineageServiceClient<Channel> {
    LineageServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES)
}

/// A connection to a Pulse server (or to `pulse up`).
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    endpoint: String,
    api_key: Option<MetadataValue<pulse_proto::tonic::metadata::Ascii>>,
    retries: u32,
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://localhost:50051`). The API key
    /// is sent as `authorization: Bearer <key>` on every call.
    ///
    /// An `https://` endpoint is verified against the CA certificate in the
    /// PEM file named by `PULSE_TLS_CA` when it is set, else the system's
    /// roots.
    pub async fn connect(endpoint: &str, api_key: Option<&str>) -> Result<Self> {
        let ca = tls_ca_from_env()?;
        Self::connect_with_ca(endpoint, api_key, ca.as_deref()).await
    }

    /// [`Client::connect`] trusting `ca_pem` (a PEM CA certificate) for TLS.
    pub async fn connect_with_ca(endpoint: &str, api_key: Option<&str>, ca_pem: Option<&[u8]>) -> Result<Self> {
        let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
        let channel = channel_endpoint(&url, ca_pem)?
            .connect()
            .await
            .map_err(|e| ClientError::Connect { endpoint: url.clone(), reason: error::source_chain(&e) })?;
        let api_key = match api_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(
                format!("Bearer {k}")
                    .parse()
                    .map_err(|_| ClientError::InvalidArgument("api_key: must be printable ASCII".into()))?,
            ),
            None => None,
        };
        Ok(Self { channel, endpoint: url, api_key, retries: 3 })
    }

    /// Connects with `PULSE_ENDPOINT` (default `http://127.0.0.1:50051`) and
    /// `PULSE_API_KEY`.
    pub async fn from_env() -> Result<Self> {
        let endpoint = std::env::var("PULSE_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        let key = std::env::var("PULSE_API_KEY").ok();
        Self::connect(&endpoint, key.as_deref()).await
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How often a call that failed with UNAVAILABLE is retried (default 3).
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn request<T>(&self, message: T, idempotency_key: Option<&str>) -> Result<Request<T>> {
        let mut req = Request::new(message);
        if let Some(key) = &self.api_key {
            req.metadata_mut().insert("authorization", key.clone());
        }
        if let Some(k) = idempotency_key {
            let value = k
                .parse()
                .map_err(|_| ClientError::InvalidArgument("idempotency_key: must be printable ASCII".into()))?;
            req.metadata_mut().insert("idempotency-key", value);
        }
        Ok(req)
    }

    /// Runs a unary call, retrying UNAVAILABLE with backoff. A mutation keeps
    /// one idempotency key across its retries, so it runs at most once.
    async fn call<M, R, F, Fut>(&self, message: M, mutation: Option<&str>, f: F) -> Result<R>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<pulse_proto::tonic::Response<R>, pulse_proto::tonic::Status>,
            >,
    {
        let generated;
        let key = match mutation {
            Some("") => {
                generated = uuid::Uuid::new_v4().to_string();
                Some(generated.as_str())
            }
            other => other,
        };
        let mut attempt = 0;
        loop {
            let req = self.request(message.clone(), key)?;
            match f(self.channel.clone(), req).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if s.code() == Code::Unavailable && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    // ---- admin -------------------------------------------------------------

    pub async fn who_am_i(&self) -> Result<admin::WhoAmIResponse> {
        self.call(admin::WhoAmIRequest {}, None, |ch, r| async move { AdminServiceClient::new(ch).who_am_i(r).await })
            .await
    }

    pub async fn create_tenant(&self, name: &str, idempotency_key: Option<&str>) -> Result<admin::Tenant> {
        let msg = admin::CreateTenantRequest { name: name.into() };
        self.call(msg, Some(idempotency_key.unwrap_or("")), |ch, r| async move {
            AdminServiceClient::new(ch).create_tenant(r).await
        })
        .await
    }

    pub async fn list_tenants(&self, page_token: &str, page_size: u32) -> Result<admin::ListTenantsResponse> {
        let page = Some(pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() });
        self.call(admin::ListTenantsRequest { page }, None, |ch, r| async move {
            AdminServiceClient::new(ch).list_tenants(r).await
        })
        .await
    }

    pub async fn create_api_key(&self, tenant_id: &str, name: &str) -> Result<admin::CreateApiKeyResponse> {
        let msg = admin::CreateApiKeyRequest { tenant_id: tenant_id.into(), name: name.into() };
        self.call(msg, Some(""), |ch, r| async move { AdminServiceClient::new(ch).create_api_key(r).await }).await
    }

    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<admin::ListApiKeysResponse> {
        let msg = admin::ListApiKeysRequest { tenant_id: tenant_id.into(), page: None };
        self.call(msg, None, |ch, r| async move { AdminServiceClient::new(ch).list_api_keys(r).await }).await
    }

    pub async fn revoke_api_key(&self, key_id: &str) -> Result<admin::ApiKey> {
        let msg = admin::RevokeApiKeyRequest { key_id: key_id.into() };
        self.call(msg, Some(""), |ch, r| async move { AdminServiceClient::new(ch).revoke_api_key(r).await }).await
    }

    // ---- lineage -----------------------------------------------------------

    /// Records a node (created, or its attributes merged).
    pub async fn record_node(
        &self,
        node: lineage::Node,
        idempotency_key: Option<&str>,
    ) -> Result<lineage::RecordNodeResponse> {
        let msg = lineage::RecordNodeRequest { node: Some(node) };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { lineage_client(ch).record_node(r).await },
        )
        .await
    }

    pub async fn record_edge(
        &self,
        edge: lineage::Edge,
        idempotency_key: Option<&str>,
    ) -> Result<lineage::RecordEdgeResponse> {
        let msg = lineage::RecordEdgeRequest { edge: Some(edge) };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { lineage_client(ch).record_edge(r).await },
        )
        .await
    }

    pub async fn record_batch(
        &self,
        nodes: Vec<lineage::Node>,
        edges: Vec<lineage::Edge>,
        idempotency_key: Option<&str>,
    ) -> Result<lineage::RecordBatchResponse> {
        let msg = lineage::RecordBatchRequest { nodes, edges };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { lineage_client(ch).record_batch(r).await },
        )
        .await
    }

    pub async fn get_node(&self, id: &str) -> Result<lineage::Node> {
        let msg = lineage::GetNodeRequest { id: id.into() };
        self.call(msg, None, |ch, r| async move { lineage_client(ch).get_node(r).await }).await
    }

    pub async fn list_nodes(
        &self,
        kind: lineage::NodeKind,
        page_token: &str,
        page_size: u32,
    ) -> Result<lineage::ListNodesResponse> {
        let page = Some(pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() });
        let msg = lineage::ListNodesRequest { kind: kind as i32, page };
        self.call(msg, None, |ch, r| async move { lineage_client(ch).list_nodes(r).await }).await
    }

    pub async fn trace(
        &self,
        id: &str,
        direction: lineage::Direction,
        max_depth: u32,
        max_nodes: u32,
    ) -> Result<lineage::TraceResponse> {
        let msg = lineage::TraceRequest { id: id.into(), direction: direction as i32, max_depth, max_nodes };
        self.call(msg, None, |ch, r| async move { lineage_client(ch).trace(r).await }).await
    }

    pub async fn impact(&self, id: &str, max_depth: u32, max_nodes: u32) -> Result<lineage::ImpactResponse> {
        let msg = lineage::ImpactRequest { id: id.into(), max_depth, max_nodes };
        self.call(msg, None, |ch, r| async move { lineage_client(ch).impact(r).await }).await
    }

    /// The graph (or the part connected to `root_id`), all chunks gathered.
    pub async fn export(&self, root_id: &str, max_nodes: u32) -> Result<lineage::ExportChunk> {
        use futures::StreamExt;
        let msg = lineage::ExportRequest { root_id: root_id.into(), max_nodes };
        let mut stream = lineage_client(self.channel.clone()).export(self.request(msg, None)?).await?.into_inner();
        let mut all = lineage::ExportChunk::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            all.nodes.extend(chunk.nodes);
            all.edges.extend(chunk.edges);
        }
        Ok(all)
    }

    // ---- datasources -------------------------------------------------------

    /// Registers a datasource; `idempotency_key` "" generates one.
    pub async fn register_datasource(
        &self,
        req: datasource::RegisterDatasourceRequest,
        idempotency_key: &str,
    ) -> Result<datasource::Datasource> {
        self.call(req, Some(idempotency_key), |ch, r| async move { datasource_client(ch).register_datasource(r).await })
            .await
    }

    pub async fn get_datasource(&self, id: &str) -> Result<datasource::Datasource> {
        let msg = datasource::GetDatasourceRequest { id: id.into() };
        self.call(msg, None, |ch, r| async move { datasource_client(ch).get_datasource(r).await }).await
    }

    pub async fn list_datasources(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<datasource::ListDatasourcesResponse> {
        let msg = datasource::ListDatasourcesRequest {
            connector: 0,
            page: Some(pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() }),
        };
        self.call(msg, None, |ch, r| async move { datasource_client(ch).list_datasources(r).await }).await
    }

    pub async fn update_datasource(
        &self,
        req: datasource::UpdateDatasourceRequest,
        idempotency_key: &str,
    ) -> Result<datasource::Datasource> {
        self.call(req, Some(idempotency_key), |ch, r| async move { datasource_client(ch).update_datasource(r).await })
            .await
    }

    pub async fn delete_datasource(&self, id: &str) -> Result<datasource::Datasource> {
        let msg = datasource::DeleteDatasourceRequest { id: id.into() };
        self.call(msg, Some(""), |ch, r| async move { datasource_client(ch).delete_datasource(r).await }).await
    }

    pub async fn validate_datasource(&self, id: &str) -> Result<datasource::DatasourceValidation> {
        let msg = datasource::ValidateDatasourceRequest { id: id.into() };
        self.call(msg, None, |ch, r| async move { datasource_client(ch).validate_datasource(r).await }).await
    }

    pub async fn inspect_schema(&self, id: &str, objects: &[String]) -> Result<datasource::InspectSchemaResponse> {
        let msg = datasource::InspectSchemaRequest { id: id.into(), objects: objects.to_vec() };
        self.call(msg, None, |ch, r| async move { datasource_client(ch).inspect_schema(r).await }).await
    }

    pub async fn estimate_size(
        &self,
        req: datasource::EstimateSizeRequest,
    ) -> Result<datasource::EstimateSizeResponse> {
        self.call(req, None, |ch, r| async move { datasource_client(ch).estimate_size(r).await }).await
    }

    // ---- snapshots ---------------------------------------------------------

    pub async fn start_extraction(
        &self,
        req: snapshot::StartExtractionRequest,
        idempotency_key: &str,
    ) -> Result<snapshot::ExtractionJob> {
        self.call(req, Some(idempotency_key), |ch, r| async move { snapshot_client(ch).start_extraction(r).await })
            .await
    }

    pub async fn get_extraction_job(&self, job_id: &str) -> Result<snapshot::ExtractionJob> {
        let msg = snapshot::GetExtractionJobRequest { job_id: job_id.into() };
        self.call(msg, None, |ch, r| async move { snapshot_client(ch).get_extraction_job(r).await }).await
    }

    /// The job's updates as they happen, until it ends.
    pub async fn watch_extraction_job(
        &self,
        job_id: &str,
        min_interval: Duration,
    ) -> Result<pulse_proto::tonic::Streaming<snapshot::ExtractionJob>> {
        let msg = snapshot::WatchExtractionJobRequest {
            job_id: job_id.into(),
            min_interval: prost_types::Duration::try_from(min_interval).ok(),
        };
        Ok(snapshot_client(self.channel.clone()).watch_extraction_job(self.request(msg, None)?).await?.into_inner())
    }

    pub async fn cancel_extraction_job(&self, job_id: &str, reason: &str) -> Result<snapshot::ExtractionJob> {
        let msg = snapshot::CancelExtractionJobRequest { job_id: job_id.into(), reason: reason.into() };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).cancel_extraction_job(r).await }).await
    }

    pub async fn resume_extraction_job(&self, job_id: &str) -> Result<snapshot::ExtractionJob> {
        let msg = snapshot::ResumeExtractionJobRequest { job_id: job_id.into() };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).resume_extraction_job(r).await }).await
    }

    pub async fn list_datasets(&self, page_token: &str, page_size: u32) -> Result<snapshot::ListDatasetsResponse> {
        let msg = snapshot::ListDatasetsRequest {
            datasource_id: String::new(),
            page: Some(pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() }),
        };
        self.call(msg, None, |ch, r| async move { snapshot_client(ch).list_datasets(r).await }).await
    }

    pub async fn get_dataset(&self, dataset_id: &str) -> Result<snapshot::Dataset> {
        let msg = snapshot::GetDatasetRequest { dataset_id: dataset_id.into() };
        self.call(msg, None, |ch, r| async move { snapshot_client(ch).get_dataset(r).await }).await
    }

    pub async fn list_dataset_versions(&self, dataset_id: &str) -> Result<snapshot::ListDatasetVersionsResponse> {
        let msg = snapshot::ListDatasetVersionsRequest { dataset_id: dataset_id.into(), ..Default::default() };
        self.call(msg, None, |ch, r| async move { snapshot_client(ch).list_dataset_versions(r).await }).await
    }

    pub async fn get_dataset_version(&self, dataset_id: &str, version: u64) -> Result<snapshot::DatasetVersion> {
        let msg = snapshot::GetDatasetVersionRequest { dataset_id: dataset_id.into(), version };
        self.call(msg, None, |ch, r| async move { snapshot_client(ch).get_dataset_version(r).await }).await
    }

    /// A version as one Arrow IPC stream (every chunk's SHA-256 verified by
    /// the server), with the version read and its SHA-256.
    pub async fn read_dataset_version(
        &self,
        dataset_id: &str,
        version: u64,
        columns: &[String],
        limit: u64,
    ) -> Result<(pulse_proto::common::v1::DatasetVersionRef, String, Vec<u8>)> {
        use futures::StreamExt;
        let msg = snapshot::ReadDatasetVersionRequest {
            dataset_id: dataset_id.into(),
            version,
            columns: columns.to_vec(),
            chunks: Vec::new(),
            limit,
        };
        let mut stream =
            snapshot_client(self.channel.clone()).read_dataset_version(self.request(msg, None)?).await?.into_inner();
        let mut ipc = Vec::new();
        let mut reference = Default::default();
        let mut sha = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if chunk.sequence == 0 {
                reference = chunk.r#ref.clone().unwrap_or_default();
                sha = chunk.version_sha256.clone();
            }
            ipc.extend_from_slice(&chunk.arrow_ipc);
        }
        Ok((reference, sha, ipc))
    }

    pub async fn pin_dataset_version(&self, dataset_id: &str, version: u64, reason: &str) -> Result<snapshot::Dataset> {
        let msg = snapshot::PinDatasetVersionRequest { dataset_id: dataset_id.into(), version, reason: reason.into() };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).pin_dataset_version(r).await }).await
    }

    pub async fn unpin_dataset(&self, dataset_id: &str) -> Result<snapshot::Dataset> {
        let msg = snapshot::UnpinDatasetRequest { dataset_id: dataset_id.into() };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).unpin_dataset(r).await }).await
    }

    pub async fn set_retention_policy(
        &self,
        dataset_id: &str,
        retention: snapshot::RetentionPolicy,
    ) -> Result<snapshot::Dataset> {
        let msg = snapshot::SetRetentionPolicyRequest { dataset_id: dataset_id.into(), retention: Some(retention) };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).set_retention_policy(r).await }).await
    }

    pub async fn add_retention_hold(
        &self,
        dataset_id: &str,
        version: u64,
        holder: &str,
        reason: &str,
    ) -> Result<snapshot::DatasetVersion> {
        let msg = snapshot::AddRetentionHoldRequest {
            r#ref: Some(pulse_proto::common::v1::DatasetVersionRef { dataset_id: dataset_id.into(), version }),
            holder: holder.into(),
            reason: reason.into(),
        };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).add_retention_hold(r).await }).await
    }

    pub async fn rollback_dataset(&self, dataset_id: &str, to_version: u64, reason: &str) -> Result<snapshot::Dataset> {
        let msg = snapshot::RollbackDatasetRequest { dataset_id: dataset_id.into(), to_version, reason: reason.into() };
        self.call(msg, Some(""), |ch, r| async move { snapshot_client(ch).rollback_dataset(r).await }).await
    }

    // ---- trainer -----------------------------------------------------------

    pub async fn register_contract(&self, yaml: &str) -> Result<trainer::RegisterContractResponse> {
        let msg = trainer::RegisterContractRequest { yaml: yaml.into() };
        self.call(msg, Some(""), |ch, r| async move { trainer_client(ch).register_contract(r).await }).await
    }

    pub async fn get_contract(&self, model: &str, version: u32) -> Result<trainer::Contract> {
        let msg = trainer::GetContractRequest { model: model.into(), version };
        self.call(msg, None, |ch, r| async move { trainer_client(ch).get_contract(r).await }).await
    }

    pub async fn list_contracts(&self, req: trainer::ListContractsRequest) -> Result<trainer::ListContractsResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_contracts(r).await }).await
    }

    pub async fn validate_dataset(&self, req: trainer::ValidateDatasetRequest) -> Result<trainer::ValidationReport> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).validate_dataset(r).await }).await
    }

    pub async fn start_training(
        &self,
        req: trainer::StartTrainingRequest,
        idempotency_key: &str,
    ) -> Result<trainer::TrainingJob> {
        self.call(req, Some(idempotency_key), |ch, r| async move { trainer_client(ch).start_training(r).await }).await
    }

    pub async fn get_training_job(&self, job_id: &str) -> Result<trainer::TrainingJob> {
        let msg = trainer::GetTrainingJobRequest { job_id: job_id.into() };
        self.call(msg, None, |ch, r| async move { trainer_client(ch).get_training_job(r).await }).await
    }

    /// The job's progress as it trains, until it ends.
    pub async fn watch_training_job(
        &self,
        job_id: &str,
        min_interval: Duration,
    ) -> Result<pulse_proto::tonic::Streaming<trainer::TrainingUpdate>> {
        let msg = trainer::WatchTrainingJobRequest {
            job_id: job_id.into(),
            min_interval: prost_types::Duration::try_from(min_interval).ok(),
        };
        Ok(trainer_client(self.channel.clone()).watch_training_job(self.request(msg, None)?).await?.into_inner())
    }

    pub async fn cancel_training_job(&self, job_id: &str, reason: &str) -> Result<trainer::TrainingJob> {
        let msg = trainer::CancelTrainingJobRequest { job_id: job_id.into(), reason: reason.into() };
        self.call(msg, Some(""), |ch, r| async move { trainer_client(ch).cancel_training_job(r).await }).await
    }

    pub async fn retry_training_job(&self, job_id: &str) -> Result<trainer::TrainingJob> {
        let msg = trainer::RetryTrainingJobRequest { job_id: job_id.into() };
        self.call(msg, Some(""), |ch, r| async move { trainer_client(ch).retry_training_job(r).await }).await
    }

    pub async fn list_training_jobs(
        &self,
        req: trainer::ListTrainingJobsRequest,
    ) -> Result<trainer::ListTrainingJobsResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_training_jobs(r).await }).await
    }

    pub async fn list_models(&self, req: trainer::ListModelsRequest) -> Result<trainer::ListModelsResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_models(r).await }).await
    }

    pub async fn get_model(&self, model: &str) -> Result<trainer::Model> {
        let msg = trainer::GetModelRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { trainer_client(ch).get_model(r).await }).await
    }

    pub async fn list_model_versions(
        &self,
        req: trainer::ListModelVersionsRequest,
    ) -> Result<trainer::ListModelVersionsResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_model_versions(r).await }).await
    }

    pub async fn get_model_version(&self, req: trainer::GetModelVersionRequest) -> Result<trainer::ModelVersion> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).get_model_version(r).await }).await
    }

    pub async fn evaluate_model(&self, req: trainer::EvaluateModelRequest) -> Result<trainer::Evaluation> {
        self.call(req, Some(""), |ch, r| async move { trainer_client(ch).evaluate_model(r).await }).await
    }

    pub async fn promote_model(&self, req: trainer::PromoteModelRequest) -> Result<trainer::PromoteModelResponse> {
        self.call(req, Some(""), |ch, r| async move { trainer_client(ch).promote_model(r).await }).await
    }

    pub async fn rollback_model(&self, req: trainer::RollbackModelRequest) -> Result<trainer::RollbackModelResponse> {
        self.call(req, Some(""), |ch, r| async move { trainer_client(ch).rollback_model(r).await }).await
    }

    pub async fn register_worker(&self, req: trainer::RegisterWorkerRequest) -> Result<trainer::Worker> {
        self.call(req, Some(""), |ch, r| async move { trainer_client(ch).register_worker(r).await }).await
    }

    pub async fn heartbeat(&self, req: trainer::HeartbeatRequest) -> Result<trainer::HeartbeatResponse> {
        self.call(req, Some(""), |ch, r| async move { trainer_client(ch).heartbeat(r).await }).await
    }

    pub async fn deregister_worker(&self, worker_id: &str) -> Result<trainer::Worker> {
        let msg = trainer::DeregisterWorkerRequest { worker_id: worker_id.into() };
        self.call(msg, Some(""), |ch, r| async move { trainer_client(ch).deregister_worker(r).await }).await
    }

    pub async fn list_workers(&self, req: trainer::ListWorkersRequest) -> Result<trainer::ListWorkersResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_workers(r).await }).await
    }

    /// Saves a checkpoint from chunks of bytes (each at most 4 MiB) sent on
    /// `data`: nothing is buffered beyond the chunks in flight. Closing the
    /// sender ends the checkpoint.
    pub async fn save_checkpoint(
        &self,
        header: trainer::CheckpointHeader,
        mut data: tokio::sync::mpsc::Receiver<Vec<u8>>,
        idempotency_key: Option<String>,
    ) -> Result<trainer::Checkpoint> {
        use trainer::save_checkpoint_request::Part;
        // A channel-backed stream (no combinator closures): tonic can then
        // prove the call `Send` wherever it is awaited.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let _ = tx.send(trainer::SaveCheckpointRequest { part: Some(Part::Header(header)) }).await;
        tokio::spawn(async move {
            while let Some(d) = data.recv().await {
                if tx.send(trainer::SaveCheckpointRequest { part: Some(Part::Data(d)) }).await.is_err() {
                    break;
                }
            }
        });
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(rx), idempotency_key.as_deref())?;
        let mut client = trainer_client(self.channel.clone());
        Ok(client.save_checkpoint(req).await?.into_inner())
    }

    pub async fn get_checkpoint(&self, checkpoint_id: &str) -> Result<trainer::Checkpoint> {
        let msg = trainer::GetCheckpointRequest { checkpoint_id: checkpoint_id.into() };
        self.call(msg, None, |ch, r| async move { trainer_client(ch).get_checkpoint(r).await }).await
    }

    /// The checkpoint's description first, then its bytes in order.
    pub async fn load_checkpoint(
        &self,
        req: trainer::LoadCheckpointRequest,
    ) -> Result<pulse_proto::tonic::Streaming<trainer::CheckpointChunk>> {
        Ok(trainer_client(self.channel.clone()).load_checkpoint(self.request(req, None)?).await?.into_inner())
    }

    pub async fn list_checkpoints(
        &self,
        req: trainer::ListCheckpointsRequest,
    ) -> Result<trainer::ListCheckpointsResponse> {
        self.call(req, None, |ch, r| async move { trainer_client(ch).list_checkpoints(r).await }).await
    }
}

fn datasource_client(channel: Channel) -> DatasourceServiceClient<Channel> {
    DatasourceServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

fn snapshot_client(channel: Channel) -> SnapshotServiceClient<Channel> {
    SnapshotServiceClient::new(channel).max_decoding_message_size(256 * 1024 * 1024)
}

impl Client {
    /// `grpc.health.v1` for `service` ("" is the whole server): true when
    /// it is SERVING. Needs no API key.
    pub async fn health(&self, service: &str) -> Result<bool> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let req = tonic_health::pb::HealthCheckRequest { service: service.to_string() };
        let answer =
            self.call(req, None, |ch, r| async move {
                tonic_health::pb::health_client::HealthClient::new(ch).check(r).await
            })
            .await?;
        Ok(answer.status() == ServingStatus::Serving)
    }

    // ---- inference -------------------------------------------------------

    /// The prediction log of a window as one Arrow IPC stream.
    pub async fn export_predictions(&self, req: inference::ExportPredictionsRequest) -> Result<Vec<u8>> {
        use futures::StreamExt;
        let mut stream =
            inference_client(self.channel.clone()).export_predictions(self.request(req, None)?).await?.into_inner();
        let mut ipc = Vec::new();
        while let Some(chunk) = stream.next().await {
            ipc.extend_from_slice(&chunk?.arrow_ipc);
        }
        Ok(ipc)
    }

    // Predictions are not mutations: a retry is a new prediction.

    pub async fn predict(&self, req: inference::PredictRequest) -> Result<inference::Prediction> {
        self.call(req, None, |ch, r| async move { inference_client(ch).predict(r).await }).await
    }

    pub async fn predict_batch(&self, req: inference::PredictBatchRequest) -> Result<inference::PredictBatchResponse> {
        self.call(req, None, |ch, r| async move { inference_client(ch).predict_batch(r).await }).await
    }

    /// Opens a bidirectional prediction stream fed from `requests`.
    pub async fn predict_stream(
        &self,
        requests: tokio::sync::mpsc::Receiver<inference::PredictStreamRequest>,
    ) -> Result<pulse_proto::tonic::Streaming<inference::PredictStreamResponse>> {
        let req = self.request(tokio_stream::wrappers::ReceiverStream::new(requests), None)?;
        Ok(inference_client(self.channel.clone()).predict_stream(req).await?.into_inner())
    }

    pub async fn record_feedback(&self, req: inference::RecordFeedbackRequest) -> Result<inference::Feedback> {
        self.call(req, Some(""), |ch, r| async move { inference_client(ch).record_feedback(r).await }).await
    }

    pub async fn get_prediction(&self, prediction_id: &str) -> Result<inference::Prediction> {
        let msg = inference::GetPredictionRequest { prediction_id: prediction_id.into() };
        self.call(msg, None, |ch, r| async move { inference_client(ch).get_prediction(r).await }).await
    }

    pub async fn list_predictions(
        &self,
        req: inference::ListPredictionsRequest,
    ) -> Result<inference::ListPredictionsResponse> {
        self.call(req, None, |ch, r| async move { inference_client(ch).list_predictions(r).await }).await
    }

    pub async fn get_traffic_policy(&self, model: &str) -> Result<inference::TrafficPolicy> {
        let msg = inference::GetTrafficPolicyRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { inference_client(ch).get_traffic_policy(r).await }).await
    }

    pub async fn set_traffic_policy(&self, policy: inference::TrafficPolicy) -> Result<inference::TrafficPolicy> {
        let msg = inference::SetTrafficPolicyRequest { policy: Some(policy) };
        self.call(msg, Some(""), |ch, r| async move { inference_client(ch).set_traffic_policy(r).await }).await
    }

    pub async fn serving_status(&self, model: &str) -> Result<inference::ServingStatus> {
        let msg = inference::GetServingStatusRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { inference_client(ch).get_serving_status(r).await }).await
    }

    pub async fn refresh_model(&self, model: &str) -> Result<inference::ModelServing> {
        let msg = inference::RefreshModelRequest { model: model.into() };
        self.call(msg, Some(""), |ch, r| async move { inference_client(ch).refresh_model(r).await }).await
    }
}

fn inference_client(channel: Channel) -> InferenceServiceClient<Channel> {
    InferenceServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES)
}

fn trainer_client(channel: Channel) -> TrainerServiceClient<Channel> {
    TrainerServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
}

// ---- drift ----

use pulse_proto::drift::v1 as drift;
use pulse_proto::drift::v1::drift_service_client::DriftServiceClient;

fn drift_client(channel: Channel) -> DriftServiceClient<Channel> {
    DriftServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES)
}

impl Client {
    /// Compares a window of the prediction log (or a dataset version) with
    /// the model version's baseline; stores the report unless `dry_run`.
    pub async fn check_drift(&self, req: drift::CheckDriftRequest) -> Result<drift::DriftReport> {
        self.call(req, Some(""), |ch, r| async move { drift_client(ch).check_drift(r).await }).await
    }

    pub async fn list_drift_reports(
        &self,
        req: drift::ListDriftReportsRequest,
    ) -> Result<drift::ListDriftReportsResponse> {
        self.call(req, None, |ch, r| async move { drift_client(ch).list_drift_reports(r).await }).await
    }

    pub async fn get_drift_report(&self, report_id: &str) -> Result<drift::DriftReport> {
        let msg = drift::GetDriftReportRequest { report_id: report_id.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_drift_report(r).await }).await
    }

    pub async fn set_baseline(&self, req: drift::SetBaselineRequest) -> Result<drift::Baseline> {
        self.call(req, Some(""), |ch, r| async move { drift_client(ch).set_baseline(r).await }).await
    }

    /// `version` 0 is the production version.
    pub async fn get_baseline(&self, model: &str, version: u64) -> Result<drift::Baseline> {
        let msg = drift::GetBaselineRequest { model: model.into(), version };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_baseline(r).await }).await
    }

    pub async fn set_monitor(&self, monitor: drift::Monitor) -> Result<drift::Monitor> {
        let msg = drift::SetMonitorRequest { monitor: Some(monitor) };
        self.call(msg, Some(""), |ch, r| async move { drift_client(ch).set_monitor(r).await }).await
    }

    pub async fn get_monitor(&self, model: &str) -> Result<drift::Monitor> {
        let msg = drift::GetMonitorRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_monitor(r).await }).await
    }

    pub async fn list_monitors(&self, page_token: &str, page_size: u32) -> Result<drift::ListMonitorsResponse> {
        let page = pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() };
        let msg = drift::ListMonitorsRequest { page: Some(page) };
        self.call(msg, None, |ch, r| async move { drift_client(ch).list_monitors(r).await }).await
    }
}

// ---- retraining policies, pipelines, runs and events (drift service) ----

impl Client {
    /// Creates or replaces a model's retraining policy (revision and
    /// timestamps are ignored). `idempotency_key` None generates one.
    pub async fn set_retraining_policy(
        &self,
        policy: drift::RetrainingPolicy,
        idempotency_key: Option<&str>,
    ) -> Result<drift::RetrainingPolicy> {
        let msg = drift::SetRetrainingPolicyRequest { policy: Some(policy) };
        self.call(msg, Some(idempotency_key.unwrap_or("")), |ch, r| async move {
            drift_client(ch).set_retraining_policy(r).await
        })
        .await
    }

    /// NOT_FOUND when the model has no policy.
    pub async fn get_retraining_policy(&self, model: &str) -> Result<drift::RetrainingPolicy> {
        let msg = drift::GetRetrainingPolicyRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_retraining_policy(r).await }).await
    }

    pub async fn list_retraining_policies(
        &self,
        page_token: &str,
        page_size: u32,
    ) -> Result<drift::ListRetrainingPoliciesResponse> {
        let page = pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() };
        let msg = drift::ListRetrainingPoliciesRequest { page: Some(page) };
        self.call(msg, None, |ch, r| async move { drift_client(ch).list_retraining_policies(r).await }).await
    }

    /// Evaluates the policies of `model` ("" is every policy of the tenant)
    /// as the scheduler would, without recording or starting anything.
    pub async fn evaluate_policies(&self, model: &str) -> Result<drift::EvaluatePoliciesResponse> {
        let msg = drift::EvaluatePoliciesRequest { model: model.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).evaluate_policies(r).await }).await
    }

    /// The scheduler's recorded decisions, newest first.
    pub async fn list_policy_decisions(
        &self,
        req: drift::ListPolicyDecisionsRequest,
    ) -> Result<drift::ListPolicyDecisionsResponse> {
        self.call(req, None, |ch, r| async move { drift_client(ch).list_policy_decisions(r).await }).await
    }

    /// Creates a pipeline (id, built_in, revision and timestamps are ignored).
    pub async fn create_pipeline(
        &self,
        pipeline: drift::Pipeline,
        idempotency_key: Option<&str>,
    ) -> Result<drift::Pipeline> {
        let msg = drift::CreatePipelineRequest { pipeline: Some(pipeline) };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { drift_client(ch).create_pipeline(r).await },
        )
        .await
    }

    /// Replaces the definition of the pipeline with `pipeline.id`.
    pub async fn update_pipeline(
        &self,
        pipeline: drift::Pipeline,
        idempotency_key: Option<&str>,
    ) -> Result<drift::Pipeline> {
        let msg = drift::UpdatePipelineRequest { pipeline: Some(pipeline) };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { drift_client(ch).update_pipeline(r).await },
        )
        .await
    }

    /// A pipeline by id (`pip_…`) or name.
    pub async fn get_pipeline(&self, id_or_name: &str) -> Result<drift::Pipeline> {
        let msg = drift::GetPipelineRequest { pipeline_id: id_or_name.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_pipeline(r).await }).await
    }

    pub async fn list_pipelines(&self, page_token: &str, page_size: u32) -> Result<drift::ListPipelinesResponse> {
        let page = pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() };
        let msg = drift::ListPipelinesRequest { page: Some(page) };
        self.call(msg, None, |ch, r| async move { drift_client(ch).list_pipelines(r).await }).await
    }

    /// Starts a run by hand; the same idempotency key starts one run.
    pub async fn start_pipeline_run(
        &self,
        req: drift::StartPipelineRunRequest,
        idempotency_key: Option<&str>,
    ) -> Result<drift::PipelineRun> {
        self.call(req, Some(idempotency_key.unwrap_or("")), |ch, r| async move {
            drift_client(ch).start_pipeline_run(r).await
        })
        .await
    }

    pub async fn get_pipeline_run(&self, run_id: &str) -> Result<drift::PipelineRun> {
        let msg = drift::GetPipelineRunRequest { run_id: run_id.into() };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_pipeline_run(r).await }).await
    }

    /// Runs, newest first.
    pub async fn list_pipeline_runs(
        &self,
        req: drift::ListPipelineRunsRequest,
    ) -> Result<drift::ListPipelineRunsResponse> {
        self.call(req, None, |ch, r| async move { drift_client(ch).list_pipeline_runs(r).await }).await
    }

    pub async fn cancel_pipeline_run(&self, run_id: &str, reason: &str) -> Result<drift::PipelineRun> {
        let msg = drift::CancelPipelineRunRequest { run_id: run_id.into(), reason: reason.into() };
        self.call(msg, Some(""), |ch, r| async move { drift_client(ch).cancel_pipeline_run(r).await }).await
    }

    /// Runs a FAILED run again from its failed step(s).
    pub async fn retry_pipeline_run(&self, run_id: &str) -> Result<drift::PipelineRun> {
        let msg = drift::RetryPipelineRunRequest { run_id: run_id.into() };
        self.call(msg, Some(""), |ch, r| async move { drift_client(ch).retry_pipeline_run(r).await }).await
    }

    /// One page of a run's timeline, oldest first.
    pub async fn get_run_timeline(&self, run_id: &str, page_token: &str, page_size: u32) -> Result<drift::RunTimeline> {
        let page = pulse_proto::common::v1::PageRequest { page_size, page_token: page_token.into() };
        let msg = drift::GetRunTimelineRequest { run_id: run_id.into(), page: Some(page) };
        self.call(msg, None, |ch, r| async move { drift_client(ch).get_run_timeline(r).await }).await
    }

    /// A run's whole timeline, every page gathered (`page` is left unset).
    pub async fn run_timeline(&self, run_id: &str) -> Result<drift::RunTimeline> {
        let mut all = self.get_run_timeline(run_id, "", 0).await?;
        let mut token = all.page.take().map(|p| p.next_page_token).unwrap_or_default();
        while !token.is_empty() {
            let mut next = self.get_run_timeline(run_id, &token, 0).await?;
            token = next.page.take().map(|p| p.next_page_token).unwrap_or_default();
            all.status = next.status;
            all.entries.append(&mut next.entries);
        }
        Ok(all)
    }

    /// Appends events to the log (1 to 500); a `message_id` already stored
    /// is ignored as a duplicate.
    pub async fn publish_events(
        &self,
        events: Vec<pulse_proto::common::v1::EventEnvelope>,
        idempotency_key: Option<&str>,
    ) -> Result<drift::PublishEventsResponse> {
        let msg = drift::PublishEventsRequest { events };
        self.call(
            msg,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { drift_client(ch).publish_events(r).await },
        )
        .await
    }

    pub async fn list_events(&self, req: drift::ListEventsRequest) -> Result<drift::ListEventsResponse> {
        self.call(req, None, |ch, r| async move { drift_client(ch).list_events(r).await }).await
    }

    /// Matching events as they are published: after `after_message_id`
    /// (events since are sent first), or from now when it is empty. Dropping
    /// the stream ends the call.
    pub async fn watch_events(
        &self,
        selector: drift::EventSelector,
        after_message_id: &str,
    ) -> Result<pulse_proto::tonic::Streaming<pulse_proto::common::v1::EventEnvelope>> {
        let msg = drift::WatchEventsRequest { selector: Some(selector), after_message_id: after_message_id.into() };
        Ok(drift_client(self.channel.clone()).watch_events(self.request(msg, None)?).await?.into_inner())
    }

    /// Delivers past events again to the pipelines whose triggers match
    /// (with `dry_run`, only shows the runs that would start).
    pub async fn replay_events(
        &self,
        req: drift::ReplayEventsRequest,
        idempotency_key: Option<&str>,
    ) -> Result<drift::ReplayEventsResponse> {
        self.call(
            req,
            Some(idempotency_key.unwrap_or("")),
            |ch, r| async move { drift_client(ch).replay_events(r).await },
        )
        .await
    }
}

/// A pipeline run and its timeline as `pulse runs show <run id>` prints
/// them: the run's state, one line per step, then every timeline entry,
/// oldest first. Enum values are printed without their prefix.
pub fn run_report(run: &drift::PipelineRun, timeline: &drift::RunTimeline) -> String {
    use std::fmt::Write as _;
    fn short<'a>(name: &'a str, prefix: &str) -> &'a str {
        name.strip_prefix(prefix).unwrap_or(name)
    }
    fn when(ts: Option<&prost_types::Timestamp>) -> String {
        ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
    let status = |s: i32| {
        pulse_proto::common::v1::JobStatus::try_from(s)
            .map(|s| short(s.as_str_name(), "JOB_STATUS_").to_string())
            .unwrap_or_else(|_| s.to_string())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {}  pipeline {} ({}) rev {}",
        run.id, run.pipeline_name, run.pipeline_id, run.pipeline_revision
    );
    let progress = run.progress.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "  status {}  origin {}  attempt {}  steps {}/{}{}",
        status(run.status),
        short(run.origin().as_str_name(), "RUN_ORIGIN_"),
        run.attempt,
        progress.done,
        progress.total,
        if run.dry_run { "  dry run" } else { "" }
    );
    if let Some(w) = run.waiting.as_ref().filter(|w| !w.reason.is_empty() || !w.step.is_empty()) {
        let until = when(w.until.as_ref());
        let until = if until.is_empty() { String::new() } else { format!(" (until {until})") };
        let _ = writeln!(out, "  waiting: {} — {}{until}", w.step, w.reason);
    }
    if let Some(e) = run.error.as_ref().filter(|e| !e.code.is_empty() || !e.message.is_empty()) {
        let at = if e.step.is_empty() { String::new() } else { format!(" at {}", e.step) };
        let _ = writeln!(out, "  error: {}{at}: {}", e.code, e.message);
    }
    if !run.cancel_reason.is_empty() {
        let _ = writeln!(out, "  cancel reason: {}", run.cancel_reason);
    }
    if !run.replay_of.is_empty() {
        let _ = writeln!(out, "  replay of event {}", run.replay_of);
    }
    if !run.steps.is_empty() {
        let width = run.steps.iter().map(|s| s.path.chars().count().max(s.step_id.chars().count())).max().unwrap_or(0);
        let _ = writeln!(out, "Steps");
        for s in &run.steps {
            let path = if s.path.is_empty() { &s.step_id } else { &s.path };
            let mut line = format!("  {path:<width$}  {:<9}", short(s.status().as_str_name(), "STEP_STATUS_"));
            if s.attempt > 0 {
                let _ = write!(line, "  attempt {}/{}", s.attempt, s.max_attempts);
            }
            if !s.job_id.is_empty() {
                let _ = write!(line, "  {}", s.job_id);
            }
            if !s.skip_reason.is_empty() {
                let _ = write!(line, "  {}", s.skip_reason);
            }
            if let Some(e) = s.error.as_ref().filter(|e| !e.code.is_empty() || !e.message.is_empty()) {
                let _ = write!(line, "  {}: {}", e.code, e.message);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let _ = writeln!(out, "Timeline");
    if timeline.entries.is_empty() {
        let _ = writeln!(out, "  (empty)");
    }
    let kind = |e: &drift::RunTimelineEntry| short(e.kind().as_str_name(), "RUN_EVENT_KIND_").to_string();
    let kind_width = timeline.entries.iter().map(|e| kind(e).len()).max().unwrap_or(0);
    let step_width =
        timeline.entries.iter().map(|e| e.entry.as_ref().map_or(0, |t| t.step.chars().count())).max().unwrap_or(0);
    for e in &timeline.entries {
        let entry = e.entry.clone().unwrap_or_default();
        let step_status = match e.step_status() {
            drift::StepStatus::Unspecified => "",
            s => short(s.as_str_name(), "STEP_STATUS_"),
        };
        let mut line = format!(
            "  {:<20}  {:<kind_width$}  {:<step_width$}  {step_status:<9}",
            when(entry.at.as_ref()),
            kind(e),
            entry.step
        );
        if e.attempt > 0 {
            let _ = write!(line, "  attempt {}", e.attempt);
        }
        if !entry.message.is_empty() {
            let _ = write!(line, "  {}", entry.message);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
