//! The gRPC adapter: request → domain call → response or Status.

use std::pin::Pin;

use futures::Stream;
use pulse_common::grpc::{status, tenant};
use pulse_proto::common::v1::{ModelVersionRef, PageResponse};
use pulse_proto::lineage::v1 as pb;
use pulse_proto::lineage::v1::lineage_service_server::LineageService;
use pulse_proto::tonic::{Request, Response, Status};

use crate::convert::{
    direction_from_pb, edge_pb, edge_write, kind_filter, node_pb, node_write, trace_pb, truncation_pb,
};
use crate::domain::{Lineage, NodeKind};

#[derive(Debug, Clone)]
pub struct LineageGrpc {
    lineage: Lineage,
}

impl LineageGrpc {
    pub fn new(lineage: Lineage) -> Self {
        Self { lineage }
    }
}

/// Export chunk size, in nodes.
const EXPORT_CHUNK: u32 = 1000;

#[pulse_proto::tonic::async_trait]
impl LineageService for LineageGrpc {
    async fn record_node(
        &self,
        req: Request<pb::RecordNodeRequest>,
    ) -> Result<Response<pb::RecordNodeResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::RecordNodeRequest { node } = req.into_inner();
        let node = node_write("node", node).map_err(status)?;
        let id = node.id.clone();
        let outcome = self.lineage.record_node(&tenant, node).await.map_err(status)?;
        let stored = self.lineage.node(&tenant, &id).await.map_err(status)?;
        Ok(Response::new(pb::RecordNodeResponse { node: Some(node_pb(stored)), created: outcome.nodes_created == 1 }))
    }

    async fn record_edge(
        &self,
        req: Request<pb::RecordEdgeRequest>,
    ) -> Result<Response<pb::RecordEdgeResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::RecordEdgeRequest { edge } = req.into_inner();
        let edge = edge_write("edge", edge).map_err(status)?;
        let outcome = self.lineage.record_edge(&tenant, edge.clone()).await.map_err(status)?;
        let stored = self
            .lineage
            .edge(&tenant, &edge.from_id, &edge.to_id)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::internal("the recorded edge could not be read back"))?;
        Ok(Response::new(pb::RecordEdgeResponse { edge: Some(edge_pb(stored)), created: outcome.edges_created == 1 }))
    }

    async fn record_batch(
        &self,
        req: Request<pb::RecordBatchRequest>,
    ) -> Result<Response<pb::RecordBatchResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::RecordBatchRequest { nodes, edges } = req.into_inner();
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| node_write(&format!("nodes[{i}]"), Some(n)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(status)?;
        let edges = edges
            .into_iter()
            .enumerate()
            .map(|(i, e)| edge_write(&format!("edges[{i}]"), Some(e)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(status)?;
        let o = self.lineage.record(&tenant, nodes, edges).await.map_err(status)?;
        Ok(Response::new(pb::RecordBatchResponse {
            nodes_created: o.nodes_created,
            nodes_updated: o.nodes_updated,
            edges_created: o.edges_created,
        }))
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let tenant = tenant(&req)?;
        let pb::GetNodeRequest { id } = req.into_inner();
        Ok(Response::new(node_pb(self.lineage.node(&tenant, &id).await.map_err(status)?)))
    }

    async fn list_nodes(&self, req: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::ListNodesRequest { kind, page } = req.into_inner();
        let page = page.unwrap_or_default();
        let kind = kind_filter(kind).map_err(status)?;
        let (nodes, next) = self.lineage.list(&tenant, kind, &page.page_token, page.page_size).await.map_err(status)?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: nodes.into_iter().map(node_pb).collect(),
            page: Some(PageResponse { next_page_token: next }),
        }))
    }

    async fn trace(&self, req: Request<pb::TraceRequest>) -> Result<Response<pb::TraceResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::TraceRequest { id, direction, max_depth, max_nodes } = req.into_inner();
        let direction = direction_from_pb(direction).map_err(status)?;
        let walk = self.lineage.trace(&tenant, &id, direction, max_depth, max_nodes).await.map_err(status)?;
        Ok(Response::new(trace_pb(walk, direction)))
    }

    async fn impact(&self, req: Request<pb::ImpactRequest>) -> Result<Response<pb::ImpactResponse>, Status> {
        let tenant = tenant(&req)?;
        let pb::ImpactRequest { id, max_depth, max_nodes } = req.into_inner();
        let impact = self.lineage.impact(&tenant, &id, max_depth, max_nodes).await.map_err(status)?;
        let model_versions = impact
            .affected
            .iter()
            .filter(|n| n.kind == NodeKind::ModelVersion)
            .map(|n| ModelVersionRef {
                model: n.attributes.get("model").cloned().unwrap_or_default(),
                version: n.attributes.get("version").and_then(|v| v.parse().ok()).unwrap_or_default(),
            })
            .collect();
        let deployments =
            impact.affected.iter().filter(|n| n.kind == NodeKind::Deployment).cloned().map(node_pb).collect();
        Ok(Response::new(pb::ImpactResponse {
            root: Some(node_pb(impact.root)),
            affected: impact.affected.into_iter().map(node_pb).collect(),
            counts: impact.counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            model_versions,
            deployments,
            truncation: truncation_pb(impact.truncated),
        }))
    }

    type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

    async fn export(&self, req: Request<pb::ExportRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let tenant = tenant(&req)?;
        let pb::ExportRequest { root_id, max_nodes } = req.into_inner();
        if !root_id.is_empty() {
            let walk = self.lineage.export_connected(&tenant, &root_id, max_nodes).await.map_err(status)?;
            let chunk = pb::ExportChunk {
                nodes: walk.nodes.into_iter().map(node_pb).collect(),
                edges: walk.edges.into_iter().map(edge_pb).collect(),
            };
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(chunk)]))));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let lineage = self.lineage.clone();
        tokio::spawn(async move {
            let sent = async {
                // Nodes first, by id; with a limit, only edges between the
                // nodes sent follow.
                let mut after = String::new();
                let mut exported: Option<std::collections::HashSet<String>> =
                    (max_nodes > 0).then(std::collections::HashSet::new);
                let mut sent: u32 = 0;
                loop {
                    let room = if max_nodes == 0 { EXPORT_CHUNK } else { (max_nodes - sent).min(EXPORT_CHUNK) };
                    if room == 0 {
                        break;
                    }
                    let nodes = lineage.export_nodes(&tenant, &after, room).await?;
                    let Some(last) = nodes.last() else { break };
                    after = last.id.clone();
                    sent += nodes.len() as u32;
                    if let Some(set) = exported.as_mut() {
                        set.extend(nodes.iter().map(|n| n.id.clone()));
                    }
                    let chunk = pb::ExportChunk { nodes: nodes.into_iter().map(node_pb).collect(), edges: vec![] };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
                let (mut from, mut to) = (String::new(), String::new());
                loop {
                    let edges = lineage.export_edges(&tenant, (&from, &to), EXPORT_CHUNK).await?;
                    let Some(last) = edges.last() else { break };
                    (from, to) = (last.from_id.clone(), last.to_id.clone());
                    let edges: Vec<pb::Edge> = edges
                        .into_iter()
                        .filter(|e| exported.as_ref().is_none_or(|s| s.contains(&e.from_id) && s.contains(&e.to_id)))
                        .map(edge_pb)
                        .collect();
                    if !edges.is_empty() && tx.send(Ok(pb::ExportChunk { nodes: vec![], edges })).await.is_err() {
                        return Ok(());
                    }
                }
                Ok::<(), crate::error::LineageError>(())
            }
            .await;
            if let Err(e) = sent {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
