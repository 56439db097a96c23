//! Protobuf ↔ domain. Messages are destructured without `..`, so a new field
//! in the contract fails the build here until it is handled.

use pulse_common::time::to_proto;
use pulse_proto::lineage::v1 as pb;

use crate::domain::{Direction, Edge, EdgeWrite, Node, NodeKind, NodeWrite, Walk};
use crate::error::LineageError;

pub fn kind_from_pb(field: &str, kind: i32) -> Result<NodeKind, LineageError> {
    use pb::NodeKind as K;
    Ok(match K::try_from(kind) {
        Ok(K::Datasource) => NodeKind::Datasource,
        Ok(K::Extraction) => NodeKind::Extraction,
        Ok(K::DatasetVersion) => NodeKind::DatasetVersion,
        Ok(K::TrainingRun) => NodeKind::TrainingRun,
        Ok(K::ModelVersion) => NodeKind::ModelVersion,
        Ok(K::Deployment) => NodeKind::Deployment,
        Ok(K::Prediction) => NodeKind::Prediction,
        Ok(K::Feedback) => NodeKind::Feedback,
        Ok(K::DriftReport) => NodeKind::DriftReport,
        Ok(K::PipelineRun) => NodeKind::PipelineRun,
        Ok(K::Unspecified) => {
            return Err(LineageError::invalid(field, "is required: set a node kind such as NODE_KIND_MODEL_VERSION"));
        }
        Err(_) => return Err(LineageError::invalid(field, format!("{kind} is not a node kind"))),
    })
}

pub fn kind_to_pb(kind: NodeKind) -> pb::NodeKind {
    use pb::NodeKind as K;
    match kind {
        NodeKind::Datasource => K::Datasource,
        NodeKind::Extraction => K::Extraction,
        NodeKind::DatasetVersion => K::DatasetVersion,
        NodeKind::TrainingRun => K::TrainingRun,
        NodeKind::ModelVersion => K::ModelVersion,
        NodeKind::Deployment => K::Deployment,
        NodeKind::Prediction => K::Prediction,
        NodeKind::Feedback => K::Feedback,
        NodeKind::DriftReport => K::DriftReport,
        NodeKind::PipelineRun => K::PipelineRun,
    }
}

/// An optional kind filter: unspecified means all kinds.
pub fn kind_filter(kind: i32) -> Result<Option<NodeKind>, LineageError> {
    if kind == pb::NodeKind::Unspecified as i32 { Ok(None) } else { kind_from_pb("kind", kind).map(Some) }
}

pub fn direction_from_pb(direction: i32) -> Result<Direction, LineageError> {
    match pb::Direction::try_from(direction) {
        Ok(pb::Direction::Unspecified | pb::Direction::Upstream) => Ok(Direction::Upstream),
        Ok(pb::Direction::Downstream) => Ok(Direction::Downstream),
        Err(_) => Err(LineageError::invalid(
            "direction",
            format!("{direction} is not a direction: use UPSTREAM or DOWNSTREAM"),
        )),
    }
}

pub fn node_write(field: &str, node: Option<pb::Node>) -> Result<NodeWrite, LineageError> {
    let pb::Node { id, kind, attributes, created_at: _ } =
        node.ok_or_else(|| LineageError::invalid(field, "is required"))?;
    Ok(NodeWrite {
        id,
        kind: kind_from_pb(&format!("{field}.kind"), kind)?,
        attributes: attributes.into_iter().collect(),
    })
}

pub fn edge_write(field: &str, edge: Option<pb::Edge>) -> Result<EdgeWrite, LineageError> {
    let pb::Edge { from_id, to_id, relation, created_at: _ } =
        edge.ok_or_else(|| LineageError::invalid(field, "is required"))?;
    Ok(EdgeWrite { from_id, to_id, relation })
}

pub fn node_pb(node: Node) -> pb::Node {
    let Node { id, kind, attributes, created_at } = node;
    pb::Node {
        id,
        kind: kind_to_pb(kind) as i32,
        attributes: attributes.into_iter().collect(),
        created_at: Some(to_proto(created_at)),
    }
}

pub fn edge_pb(edge: Edge) -> pb::Edge {
    let Edge { from_id, to_id, relation, created_at } = edge;
    pb::Edge { from_id, to_id, relation, created_at: Some(to_proto(created_at)) }
}

pub fn truncation_pb(reason: Option<String>) -> Option<pb::Truncation> {
    Some(match reason {
        Some(reason) => pb::Truncation { truncated: true, reason },
        None => pb::Truncation { truncated: false, reason: String::new() },
    })
}

pub fn trace_pb(walk: Walk, direction: Direction) -> pb::TraceResponse {
    let Walk { root, nodes, edges, truncated, depth_reached } = walk;
    let direction = match direction {
        Direction::Downstream => pb::Direction::Downstream,
        _ => pb::Direction::Upstream,
    };
    pb::TraceResponse {
        root_id: root,
        direction: direction as i32,
        nodes: nodes.into_iter().map(node_pb).collect(),
        edges: edges.into_iter().map(edge_pb).collect(),
        truncation: truncation_pb(truncated),
        depth_reached,
    }
}
