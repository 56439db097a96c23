//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use pulse_common::grpc::{status, tenant};
use pulse_proto::common::v1::PageResponse;
use pulse_proto::datasource::v1 as pb;
use pulse_proto::datasource::v1::datasource_service_server::DatasourceService;
use pulse_proto::tonic::{Request, Response, Status};

use crate::connector::values::{arrow_schema, compare_values, value_at};
use crate::domain::Datasources;
use crate::ipc::IpcFramer;

#[derive(Debug, Clone)]
pub struct DatasourceGrpc {
    datasources: Datasources,
}

impl DatasourceGrpc {
    pub fn new(datasources: Datasources) -> Self {
        Self { datasources }
    }
}

type DataStream = Pin<Box<dyn Stream<Item = Result<pb::DataBatch, Status>> + Send>>;

#[pulse_proto::tonic::async_trait]
impl DatasourceService for DatasourceGrpc {
    async fn register_datasource(
        &self,
        req: Request<pb::RegisterDatasourceRequest>,
    ) -> Result<Response<pb::Datasource>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.register(&tenant, req.into_inner()).await.map_err(status)?))
    }

    async fn get_datasource(&self, req: Request<pb::GetDatasourceRequest>) -> Result<Response<pb::Datasource>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.get(&tenant, &req.get_ref().id).await.map_err(status)?))
    }

    async fn list_datasources(
        &self,
        req: Request<pb::ListDatasourcesRequest>,
    ) -> Result<Response<pb::ListDatasourcesResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::ListDatasourcesRequest { connector, page } = req.into_inner();
        let connector = pb::ConnectorKind::try_from(connector).unwrap_or(pb::ConnectorKind::Unspecified);
        let (datasources, next) = self.datasources.list(&tenant, connector, page).await.map_err(status)?;
        Ok(Response::new(pb::ListDatasourcesResponse {
            datasources,
            page: Some(PageResponse { next_page_token: next }),
        }))
    }

    async fn update_datasource(
        &self,
        req: Request<pb::UpdateDatasourceRequest>,
    ) -> Result<Response<pb::Datasource>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.update(&tenant, req.into_inner()).await.map_err(status)?))
    }

    async fn delete_datasource(
        &self,
        req: Request<pb::DeleteDatasourceRequest>,
    ) -> Result<Response<pb::Datasource>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.delete(&tenant, &req.get_ref().id).await.map_err(status)?))
    }

    async fn validate_datasource(
        &self,
        req: Request<pb::ValidateDatasourceRequest>,
    ) -> Result<Response<pb::DatasourceValidation>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.validate(&tenant, &req.get_ref().id).await.map_err(status)?))
    }

    async fn inspect_schema(
        &self,
        req: Request<pb::InspectSchemaRequest>,
    ) -> Result<Response<pb::InspectSchemaResponse>, Status> {
        let tenant = tenant(&req)?;
        let r = req.get_ref();
        Ok(Response::new(self.datasources.inspect(&tenant, &r.id, &r.objects).await.map_err(status)?))
    }

    async fn estimate_size(
        &self,
        req: Request<pb::EstimateSizeRequest>,
    ) -> Result<Response<pb::EstimateSizeResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.estimate(&tenant, req.into_inner()).await.map_err(status)?))
    }

    async fn plan_ranges(
        &self,
        req: Request<pb::PlanRangesRequest>,
    ) -> Result<Response<pb::PlanRangesResponse>, Status> {
        let tenant = tenant(&req)?;
        Ok(Response::new(self.datasources.plan_ranges(&tenant, req.into_inner()).await.map_err(status)?))
    }

    type StreamDataStream = DataStream;

    async fn stream_data(
        &self,
        req: Request<pb::StreamDataRequest>,
    ) -> Result<Response<Self::StreamDataStream>, Status> {
        let tenant = tenant(&req)?;
        let req = req.into_inner();
        let order_by = req.order_by.clone();
        let cursor_field = req.cursor_field.clone();
        let (schema, mut batches) = self.datasources.stream(&tenant, req).await.map_err(status)?;
        let arrow = arrow_schema(&schema);
        let mut framer = IpcFramer::new(&arrow).map_err(status)?;
        let stream = async_stream::try_stream! {
            yield pb::DataBatch { sequence: 0, arrow_ipc: framer.take(), rows: 0, schema: Some(schema), ..Default::default() };
            let mut sequence = 0;
            let mut max_cursor: Option<pb::Value> = None;
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(status)?;
                sequence += 1;
                let rows = batch.num_rows();
                let last_key = if rows == 0 {
                    Vec::new()
                } else {
                    order_by
                        .iter()
                        .filter_map(|c| batch.column_by_name(c).map(|a| value_at(a.as_ref(), rows - 1)))
                        .collect()
                };
                if let Some(col) = (!cursor_field.is_empty()).then(|| batch.column_by_name(&cursor_field)).flatten()
                    && let Some(v) = max_value(col.as_ref())
                {
                    max_cursor = Some(match max_cursor.take() {
                        Some(cur) if compare_values(&cur, &v).is_ge() => cur,
                        _ => v,
                    });
                }
                let bytes = framer.batch(&batch).map_err(status)?;
                yield pb::DataBatch {
                    sequence,
                    arrow_ipc: bytes,
                    rows: rows as u64,
                    schema: None,
                    last_key,
                    max_cursor: max_cursor.clone(),
                };
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The largest non-null value of an array.
pub(crate) fn max_value(array: &dyn arrow::array::Array) -> Option<pb::Value> {
    let options = arrow::compute::SortOptions { descending: true, nulls_first: false };
    let idx = arrow::compute::sort_to_indices(array, Some(options), Some(1)).ok()?;
    let i = idx.values().first().copied()? as usize;
    (!array.is_null(i)).then(|| value_at(array, i))
}
