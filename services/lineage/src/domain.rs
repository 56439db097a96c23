//! The lineage model: typed nodes, the links allowed between kinds, input
//! checks, and the bounded walks (trace, impact, export) over a store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::LineageError;
use crate::store::{LineageStore, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Datasource,
    Extraction,
    DatasetVersion,
    TrainingRun,
    ModelVersion,
    Deployment,
    Prediction,
    Feedback,
    DriftReport,
    PipelineRun,
}

impl NodeKind {
    pub const ALL: [NodeKind; 10] = [
        Self::Datasource,
        Self::Extraction,
        Self::DatasetVersion,
        Self::TrainingRun,
        Self::ModelVersion,
        Self::Deployment,
        Self::Prediction,
        Self::Feedback,
        Self::DriftReport,
        Self::PipelineRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Datasource => "datasource",
            Self::Extraction => "extraction",
            Self::DatasetVersion => "dataset_version",
            Self::TrainingRun => "training_run",
            Self::ModelVersion => "model_version",
            Self::Deployment => "deployment",
            Self::Prediction => "prediction",
            Self::Feedback => "feedback",
            Self::DriftReport => "drift_report",
            Self::PipelineRun => "pipeline_run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Attributes a node of this kind must carry (the tree shows them).
    pub fn required_attributes(self) -> &'static [&'static str] {
        match self {
            Self::Datasource => &["name", "connector"],
            Self::DatasetVersion => &["dataset", "version"],
            Self::ModelVersion => &["model", "version"],
            _ => &[],
        }
    }

    /// The kinds a node of this kind can be an input to.
    pub fn downstream_kinds(self) -> &'static [NodeKind] {
        use NodeKind::*;
        match self {
            Datasource => &[Extraction, DatasetVersion],
            Extraction => &[DatasetVersion],
            // A version can be the base of an incremental extraction or version.
            DatasetVersion => &[Extraction, DatasetVersion, TrainingRun, ModelVersion, DriftReport],
            TrainingRun => &[ModelVersion],
            ModelVersion => &[TrainingRun, Deployment, Prediction, DriftReport],
            Deployment => &[Prediction, DriftReport],
            Prediction => &[Feedback, DriftReport],
            Feedback => &[DriftReport],
            DriftReport => &[PipelineRun],
            PipelineRun => &[Extraction, DatasetVersion, TrainingRun, ModelVersion, Deployment],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub attributes: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from_id: String,
    pub to_id: String,
    pub relation: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
    /// Both ways: the connected part of the graph (export around a root).
    Both,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordOutcome {
    pub nodes_created: u32,
    pub nodes_updated: u32,
    pub edges_created: u32,
}

pub const DEFAULT_DEPTH: u32 = 25;
pub const MAX_DEPTH: u32 = 100;
pub const DEFAULT_NODES: u32 = 1000;
pub const MAX_NODES: u32 = 10_000;
pub const MAX_BATCH: usize = 10_000;
const MAX_ATTRIBUTES: usize = 64;
const MAX_VALUE_LEN: usize = 2048;
/// All of a node's attributes together, so walks and answers stay bounded.
const MAX_ATTRIBUTE_BYTES: usize = 8 * 1024;

pub fn check_node_id(field: &str, id: &str) -> Result<(), LineageError> {
    if id.is_empty() {
        return Err(LineageError::invalid(field, "is required"));
    }
    let ok = id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LineageError::invalid(
            field,
            format!(
                "'{}' is not a valid node id: use 1 to 128 characters of A-Z a-z 0-9 _ . : @ -, starting with a letter or digit",
                pulse_common::ids::truncate(id, 64)
            ),
        ))
    }
}

/// Checks a node being recorded; `field` is its place in the request.
pub fn check_node(
    field: &str,
    id: &str,
    kind: NodeKind,
    attributes: &BTreeMap<String, String>,
) -> Result<(), LineageError> {
    check_node_id(&format!("{field}.id"), id)?;
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(LineageError::invalid(
            format!("{field}.attributes"),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (k, v) in attributes {
        let key_ok = !k.is_empty()
            && k.len() <= 64
            && k.as_bytes()[0].is_ascii_lowercase()
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if !key_ok {
            return Err(LineageError::invalid(
                format!("{field}.attributes"),
                format!(
                    "key '{}' must be 1 to 64 characters of a-z 0-9 _ . starting with a letter",
                    pulse_common::ids::truncate(k, 64)
                ),
            ));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(LineageError::invalid(
                format!("{field}.attributes.{k}"),
                format!("is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
    }
    let total: usize = attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ATTRIBUTE_BYTES {
        return Err(LineageError::invalid(
            format!("{field}.attributes"),
            format!(
                "{total} bytes in all, over the limit of {MAX_ATTRIBUTE_BYTES}; keep large values elsewhere and link to them"
            ),
        ));
    }
    for required in kind.required_attributes() {
        if attributes.get(*required).is_none_or(|v| v.is_empty()) {
            return Err(LineageError::invalid(
                format!("{field}.attributes.{required}"),
                format!("is required for a {} node", kind.as_str()),
            ));
        }
    }
    Ok(())
}

fn check_edge(field: &str, e: &EdgeWrite) -> Result<(), LineageError> {
    check_edge_ids(field, &e.from_id, &e.to_id)?;
    if e.relation.len() > 64 {
        return Err(LineageError::invalid(format!("{field}.relation"), "at most 64 characters"));
    }
    Ok(())
}

pub fn check_edge_ids(field: &str, from: &str, to: &str) -> Result<(), LineageError> {
    check_node_id(&format!("{field}.from_id"), from)?;
    check_node_id(&format!("{field}.to_id"), to)?;
    if from == to {
        return Err(LineageError::invalid(format!("{field}.to_id"), "an edge cannot join a node to itself"));
    }
    Ok(())
}

/// Whether a `from` node can be an input to a `to` node.
pub fn check_link(from: &str, from_kind: NodeKind, to: &str, to_kind: NodeKind) -> Result<(), LineageError> {
    if from_kind.downstream_kinds().contains(&to_kind) {
        return Ok(());
    }
    let allowed: Vec<&str> = from_kind.downstream_kinds().iter().map(|k| k.as_str()).collect();
    Err(LineageError::KindsNotLinked {
        from: from.into(),
        to: to.into(),
        from_kind: from_kind.as_str(),
        to_kind: to_kind.as_str(),
        allowed: allowed.join(", "),
    })
}

fn check_limits(max_depth: u32, max_nodes: u32, default_nodes: u32) -> Result<(u32, u32), LineageError> {
    let depth = match max_depth {
        0 => DEFAULT_DEPTH,
        d if d > MAX_DEPTH => {
            return Err(LineageError::invalid("max_depth", format!("{d} is over the limit of {MAX_DEPTH}")));
        }
        d => d,
    };
    let nodes = match max_nodes {
        0 => default_nodes,
        n if n > MAX_NODES => {
            return Err(LineageError::invalid("max_nodes", format!("{n} is over the limit of {MAX_NODES}")));
        }
        n => n,
    };
    Ok((depth, nodes))
}

/// The result of a bounded walk.
#[derive(Debug, Clone)]
pub struct Walk {
    pub root: String,
    /// The root first, then breadth-first.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub truncated: Option<String>,
    pub depth_reached: u32,
}

#[derive(Debug, Clone)]
pub struct Impact {
    pub root: Node,
    pub affected: Vec<Node>,
    pub counts: BTreeMap<&'static str, u64>,
    pub truncated: Option<String>,
}

/// Nodes kept outside the graph and resolved on demand: a prediction is a
/// row of the prediction log, not a lineage write per request, yet a trace
/// starts from it. Services register one with [`Lineage::add_resolver`].
#[async_trait::async_trait]
pub trait NodeResolver: Send + Sync + std::fmt::Debug {
    /// The node with this id and the edges into it from the graph (its
    /// upstream), or `None` when the id is not this resolver's.
    async fn resolve(&self, tenant: &str, id: &str) -> Option<(Node, Vec<Edge>)>;
}

/// The lineage service's domain operations for one store.
#[derive(Debug, Clone)]
pub struct Lineage {
    store: Arc<dyn LineageStore>,
    resolvers: Arc<std::sync::RwLock<Vec<Arc<dyn NodeResolver>>>>,
}

/// A node to record: attributes are merged into an existing node.
#[derive(Debug, Clone)]
pub struct NodeWrite {
    pub id: String,
    pub kind: NodeKind,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct EdgeWrite {
    pub from_id: String,
    pub to_id: String,
    pub relation: String,
}

impl Lineage {
    pub fn new(store: Arc<dyn LineageStore>) -> Self {
        Self { store, resolvers: Arc::default() }
    }

    pub fn add_resolver(&self, resolver: Arc<dyn NodeResolver>) {
        if let Ok(mut r) = self.resolvers.write() {
            r.push(resolver);
        }
    }

    /// A node of the graph, or one a resolver knows (with its edges in).
    async fn node_or_resolved(&self, tenant: &str, id: &str) -> Result<(Node, Vec<Edge>), LineageError> {
        match self.node(tenant, id).await {
            Err(LineageError::NodeNotFound(missing)) => {
                let resolvers: Vec<Arc<dyn NodeResolver>> =
                    self.resolvers.read().map(|r| r.clone()).unwrap_or_default();
                for r in resolvers {
                    if let Some(found) = r.resolve(tenant, id).await {
                        return Ok(found);
                    }
                }
                Err(LineageError::NodeNotFound(missing))
            }
            other => other.map(|n| (n, Vec::new())),
        }
    }

    /// Records nodes and edges atomically: all of them or none.
    pub async fn record(
        &self,
        tenant: &str,
        nodes: Vec<NodeWrite>,
        edges: Vec<EdgeWrite>,
    ) -> Result<RecordOutcome, LineageError> {
        if nodes.len() > MAX_BATCH || edges.len() > MAX_BATCH {
            return Err(LineageError::invalid(
                "nodes",
                format!("at most {MAX_BATCH} nodes and {MAX_BATCH} edges per call; split the batch"),
            ));
        }
        for (i, n) in nodes.iter().enumerate() {
            check_node(&format!("nodes[{i}]"), &n.id, n.kind, &n.attributes)?;
        }
        for (i, e) in edges.iter().enumerate() {
            check_edge(&format!("edges[{i}]"), e)?;
        }
        self.store.record(tenant, nodes, edges).await
    }

    /// Records one node; errors name the field `node`.
    pub async fn record_node(&self, tenant: &str, node: NodeWrite) -> Result<RecordOutcome, LineageError> {
        check_node("node", &node.id, node.kind, &node.attributes)?;
        self.store.record(tenant, vec![node], vec![]).await
    }

    /// Records one edge; errors name the field `edge`.
    pub async fn record_edge(&self, tenant: &str, edge: EdgeWrite) -> Result<RecordOutcome, LineageError> {
        check_edge("edge", &edge)?;
        self.store.record(tenant, vec![], vec![edge]).await
    }

    pub async fn node(&self, tenant: &str, id: &str) -> Result<Node, LineageError> {
        check_node_id("id", id)?;
        self.store.node(tenant, id).await?.ok_or_else(|| LineageError::NodeNotFound(id.into()))
    }

    pub async fn edge(&self, tenant: &str, from: &str, to: &str) -> Result<Option<Edge>, LineageError> {
        Ok(self.store.edge(tenant, from, to).await?)
    }

    pub async fn list(
        &self,
        tenant: &str,
        kind: Option<NodeKind>,
        page_token: &str,
        page_size: u32,
    ) -> Result<(Vec<Node>, String), LineageError> {
        let limit = pulse_common::paging::page_size(page_size);
        let nodes = self.store.list(tenant, kind, page_token, limit).await?;
        let next = pulse_common::paging::next_token(&nodes, limit, |n| &n.id);
        Ok((nodes, next))
    }

    /// Everything reachable from `id` in `direction`, breadth-first, within
    /// the limits; the answer says which limit stopped it.
    pub async fn trace(
        &self,
        tenant: &str,
        id: &str,
        direction: Direction,
        max_depth: u32,
        max_nodes: u32,
    ) -> Result<Walk, LineageError> {
        let (depth, nodes) = check_limits(max_depth, max_nodes, DEFAULT_NODES)?;
        self.walk(tenant, id, direction, depth, nodes).await
    }

    async fn walk(
        &self,
        tenant: &str,
        id: &str,
        direction: Direction,
        max_depth: u32,
        max_nodes: u32,
    ) -> Result<Walk, LineageError> {
        let (root, resolved_edges) = self.node_or_resolved(tenant, id).await?;
        let mut seen: HashSet<String> = HashSet::from([root.id.clone()]);
        let mut edge_seen: HashSet<(String, String)> = HashSet::new();
        let mut order: Vec<Node> = vec![root.clone()];
        let mut edges: Vec<Edge> = Vec::new();
        let mut frontier = vec![root.id.clone()];
        let mut depth = 0;
        let mut truncated = None;
        if !resolved_edges.is_empty() {
            // A resolved node is a leaf of the graph: its first level is the
            // edges the resolver gave, then the walk goes on in the store.
            frontier.clear();
            if direction != Direction::Downstream && max_depth > 0 {
                for e in resolved_edges {
                    if seen.insert(e.from_id.clone())
                        && let Some(parent) = self.store.node(tenant, &e.from_id).await?
                    {
                        frontier.push(parent.id.clone());
                        order.push(parent);
                    }
                    edge_seen.insert((e.from_id.clone(), e.to_id.clone()));
                    edges.push(e);
                }
                depth = 1;
            }
        }
        // One store round trip per level: the edges leaving the frontier
        // together with the nodes at their far ends.
        // Rows read per level are bounded too, so one node with millions of
        // edges cannot make a walk hold them all.
        let row_limit = max_nodes.saturating_mul(2).saturating_add(1);
        while !frontier.is_empty() {
            let found = self.store.step(tenant, &frontier, direction, row_limit).await?;
            let cut = found.len() as u32 == row_limit;
            if depth == max_depth {
                // The last level: keep the edges among nodes already
                // returned, and say whether anything lies beyond.
                let mut beyond = cut;
                for Step { edge, far } in found {
                    if !seen.contains(&far.id) {
                        beyond = true;
                    } else if edge_seen.insert((edge.from_id.clone(), edge.to_id.clone())) {
                        edges.push(edge);
                    }
                }
                if beyond {
                    truncated = Some(format!(
                        "depth limit {max_depth} reached: raise max_depth (at most {MAX_DEPTH}) to see further"
                    ));
                }
                break;
            }
            if cut {
                truncated =
                    Some(format!("node limit {max_nodes} reached: raise max_nodes (at most {MAX_NODES}) to see more"));
            }
            let mut next = Vec::new();
            for Step { edge, far } in found {
                if !seen.contains(&far.id) {
                    if seen.len() as u32 >= max_nodes {
                        truncated.get_or_insert_with(|| {
                            format!("node limit {max_nodes} reached: raise max_nodes (at most {MAX_NODES}) to see more")
                        });
                        continue;
                    }
                    seen.insert(far.id.clone());
                    next.push(far.id.clone());
                    order.push(far);
                }
                if edge_seen.insert((edge.from_id.clone(), edge.to_id.clone())) {
                    edges.push(edge);
                }
            }
            if next.is_empty() {
                break;
            }
            depth += 1;
            if truncated.is_some() {
                break;
            }
            frontier = next;
        }
        Ok(Walk { root: root.id, nodes: order, edges, truncated, depth_reached: depth })
    }

    /// Everything downstream of `id`: what a change to it would affect.
    pub async fn impact(&self, tenant: &str, id: &str, max_depth: u32, max_nodes: u32) -> Result<Impact, LineageError> {
        let (depth, nodes) = check_limits(max_depth, max_nodes, MAX_NODES)?;
        let walk = self.walk(tenant, id, Direction::Downstream, depth, nodes).await?;
        let mut all = walk.nodes.into_iter();
        let root = all.next().expect("a walk starts at its root");
        let mut counts = BTreeMap::new();
        let mut affected = Vec::new();
        for n in all {
            *counts.entry(n.kind.as_str()).or_insert(0) += 1;
            if !matches!(n.kind, NodeKind::Prediction | NodeKind::Feedback) {
                affected.push(n);
            }
        }
        Ok(Impact { root, affected, counts, truncated: walk.truncated })
    }

    /// The part of the graph connected to `root` (bounded).
    pub async fn export_connected(&self, tenant: &str, root: &str, max_nodes: u32) -> Result<Walk, LineageError> {
        let (_, nodes) = check_limits(MAX_DEPTH, max_nodes, MAX_NODES)?;
        self.walk(tenant, root, Direction::Both, MAX_DEPTH, nodes).await
    }

    /// A page of the tenant's nodes, by id, for export.
    pub async fn export_nodes(&self, tenant: &str, after: &str, limit: u32) -> Result<Vec<Node>, LineageError> {
        Ok(self.store.list(tenant, None, after, limit).await?)
    }

    /// A page of the tenant's edges, by (from, to), for export.
    pub async fn export_edges(&self, tenant: &str, after: (&str, &str), limit: u32) -> Result<Vec<Edge>, LineageError> {
        Ok(self.store.edges_page(tenant, after, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_attributes_and_links_are_checked() {
        check_node_id("id", "pred_abc123").unwrap();
        check_node_id("id", "orders@7:v1.2-x").unwrap();
        for bad in ["", "-x", "a b", "a/b", &"a".repeat(129), "ü"] {
            assert!(check_node_id("id", bad).is_err(), "{bad:?} accepted");
        }
        let mut attrs = BTreeMap::new();
        let err = check_node("node", "mv1", NodeKind::ModelVersion, &attrs).unwrap_err().to_string();
        assert!(err.starts_with("node.attributes.model: is required"), "{err}");
        attrs.insert("model".into(), "m".into());
        attrs.insert("version".into(), "1".into());
        check_node("node", "mv1", NodeKind::ModelVersion, &attrs).unwrap();
        let mut big = attrs.clone();
        big.insert("a".into(), "x".repeat(2000));
        big.insert("b".into(), "x".repeat(2000));
        big.insert("c".into(), "x".repeat(2000));
        big.insert("d".into(), "x".repeat(2000));
        big.insert("e".into(), "x".repeat(2000));
        let err = check_node("node", "mv1", NodeKind::ModelVersion, &big).unwrap_err().to_string();
        assert!(err.starts_with("node.attributes:") && err.contains("over the limit"), "{err}");
        attrs.insert("Bad Key".into(), "x".into());
        assert!(check_node("node", "mv1", NodeKind::ModelVersion, &attrs).is_err());

        check_link("d", NodeKind::Datasource, "e", NodeKind::Extraction).unwrap();
        let err = check_link("p", NodeKind::Prediction, "d", NodeKind::Datasource).unwrap_err().to_string();
        assert!(err.contains("a prediction can lead to feedback, drift_report"), "{err}");
        assert!(check_edge_ids("edge", "a", "a").is_err());
    }

    #[test]
    fn limits_default_and_refuse_excess() {
        assert_eq!(check_limits(0, 0, DEFAULT_NODES).unwrap(), (DEFAULT_DEPTH, DEFAULT_NODES));
        assert_eq!(check_limits(3, 7, DEFAULT_NODES).unwrap(), (3, 7));
        assert!(check_limits(MAX_DEPTH + 1, 0, DEFAULT_NODES).unwrap_err().to_string().starts_with("max_depth"));
        assert!(check_limits(0, MAX_NODES + 1, DEFAULT_NODES).unwrap_err().to_string().starts_with("max_nodes"));
    }

    #[test]
    fn every_kind_round_trips_by_name() {
        for k in NodeKind::ALL {
            assert_eq!(NodeKind::parse(k.as_str()), Some(k));
        }
    }
}
