//! The lineage tree as `pulse lineage <id>` and the SDK's `trace()` print it:
//!
//! ```text
//! Prediction: pred_abc123
//! ├── Model: fraud-detector@3 (sha256:def456…)
//! │   ├── Training run: run_xyz789  started 2026-01-15T02:00:00Z  duration 4m32s
//! │   │   └── Metrics: accuracy 0.9847, f1 0.9621
//! │   └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…
//! │       └── Datasource: transactions-db (postgres)
//! ├── Input sha256:a9f2d4…
//! └── Output sha256:7c8b1a…
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use pulse_proto::lineage::v1::{Direction, Node, NodeKind, TraceResponse};

/// `model_version` for `NodeKind::ModelVersion`.
pub fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Unspecified => "unspecified",
        NodeKind::Datasource => "datasource",
        NodeKind::Extraction => "extraction",
        NodeKind::DatasetVersion => "dataset_version",
        NodeKind::TrainingRun => "training_run",
        NodeKind::ModelVersion => "model_version",
        NodeKind::Deployment => "deployment",
        NodeKind::Prediction => "prediction",
        NodeKind::Feedback => "feedback",
        NodeKind::DriftReport => "drift_report",
        NodeKind::PipelineRun => "pipeline_run",
    }
}

/// The kind named `model_version` (also `model-version`, `MODEL_VERSION`).
pub fn parse_kind(name: &str) -> Option<NodeKind> {
    let n = name.trim().to_ascii_lowercase().replace('-', "_");
    let n = n.strip_prefix("node_kind_").unwrap_or(&n);
    [
        NodeKind::Datasource,
        NodeKind::Extraction,
        NodeKind::DatasetVersion,
        NodeKind::TrainingRun,
        NodeKind::ModelVersion,
        NodeKind::Deployment,
        NodeKind::Prediction,
        NodeKind::Feedback,
        NodeKind::DriftReport,
        NodeKind::PipelineRun,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == n)
}

/// A trace answer arranged as a tree from its root.
#[derive(Debug, Clone)]
pub struct LineageTree {
    root: String,
    nodes: HashMap<String, Node>,
    children: HashMap<String, Vec<String>>,
    /// Each node's place in the printed tree: the first parent that reaches
    /// it at its smallest depth from the root.
    placed_under: HashMap<String, (String, usize)>,
    truncation: Option<String>,
}

impl LineageTree {
    pub fn new(trace: &TraceResponse) -> Self {
        let upstream = trace.direction() != Direction::Downstream;
        let nodes: HashMap<String, Node> = trace.nodes.iter().map(|n| (n.id.clone(), n.clone())).collect();
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for e in &trace.edges {
            let (parent, child) = if upstream { (&e.to_id, &e.from_id) } else { (&e.from_id, &e.to_id) };
            if nodes.contains_key(child) {
                children.entry(parent.clone()).or_default().push(child.clone());
            }
        }
        // Siblings in pipeline order, nearest stage first (a model's training
        // run before its snapshot), then by id: the same tree however the
        // graph was recorded.
        for list in children.values_mut() {
            list.sort_by_key(|id| {
                let stage = nodes.get(id).map(|n| n.kind).unwrap_or_default();
                (if upstream { -stage } else { stage }, id.clone())
            });
            list.dedup();
        }
        // Breadth-first from the root, so a node reached both directly and
        // through a sibling (a snapshot that fed the model and its run) is
        // printed once, at its nearest place.
        let mut placed_under: HashMap<String, (String, usize)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([(trace.root_id.clone(), 0usize)]);
        let mut seen = HashSet::from([trace.root_id.clone()]);
        while let Some((id, depth)) = queue.pop_front() {
            for child in children.get(&id).into_iter().flatten() {
                if seen.insert(child.clone()) {
                    placed_under.insert(child.clone(), (id.clone(), depth + 1));
                    queue.push_back((child.clone(), depth + 1));
                }
            }
        }
        let truncation = trace.truncation.as_ref().filter(|t| t.truncated).map(|t| t.reason.clone());
        Self { root: trace.root_id.clone(), nodes, children, placed_under, truncation }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn depth(&self, id: &str) -> usize {
        self.placed_under.get(id).map(|(_, d)| *d).unwrap_or(0)
    }

    fn write_node(&self, f: &mut fmt::Formatter<'_>, id: &str, prefix: &str) -> fmt::Result {
        let Some(node) = self.nodes.get(id) else { return Ok(()) };
        let mut lines: Vec<Line<'_>> = Vec::new();
        let (before, after) = extras(node);
        lines.extend(before.into_iter().map(Line::Text));
        for child in self.children.get(id).into_iter().flatten() {
            match self.placed_under.get(child) {
                Some((parent, _)) if parent == id => lines.push(Line::Node(child)),
                // Another parent at the same level: say where it is printed.
                Some((parent, depth)) if *depth == self.depth(id) + 1 => {
                    lines.push(Line::Text(format!("{} (see under {parent})", label(&self.nodes[child]))))
                }
                // Printed nearer the root already.
                _ => {}
            }
        }
        lines.extend(after.into_iter().map(Line::Text));
        let count = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let last = i + 1 == count;
            let (branch, indent) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
            match line {
                Line::Text(text) => writeln!(f, "{prefix}{branch}{text}")?,
                Line::Node(child) => {
                    writeln!(f, "{prefix}{branch}{}", label(&self.nodes[child]))?;
                    self.write_node(f, child, &format!("{prefix}{indent}"))?;
                }
            }
        }
        Ok(())
    }
}

enum Line<'a> {
    Text(String),
    Node(&'a String),
}

impl fmt::Display for LineageTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(root) = self.nodes.get(&self.root) else {
            return writeln!(f, "{} (not found)", self.root);
        };
        writeln!(f, "{}", label(root))?;
        self.write_node(f, &self.root, "")?;
        if let Some(reason) = &self.truncation {
            writeln!(f, "… truncated: {reason}")?;
        }
        Ok(())
    }
}

fn attr<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.attributes.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

fn short_sha(sha: &str) -> String {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    format!("sha256:{}…", &hex[..hex.len().min(6)])
}

/// 1247832 → "1,247,832"; anything not an integer is returned as is.
fn thousands(n: &str) -> String {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return n.to_string();
    }
    let mut out = String::new();
    for (i, c) in n.chars().enumerate() {
        if i > 0 && (n.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(started: &str, finished: &str) -> Option<String> {
    let s = chrono::DateTime::parse_from_rfc3339(started).ok()?;
    let e = chrono::DateTime::parse_from_rfc3339(finished).ok()?;
    let secs = (e - s).num_seconds();
    if secs < 0 {
        return None;
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    Some(match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    })
}

/// The one-line description of a node.
pub fn label(node: &Node) -> String {
    let mut out = String::new();
    let id = node.id.as_str();
    match node.kind() {
        NodeKind::Prediction => out.push_str(&format!("Prediction: {id}")),
        NodeKind::ModelVersion => {
            out.push_str(&format!(
                "Model: {}@{}",
                attr(node, "model").unwrap_or(id),
                attr(node, "version").unwrap_or("?")
            ));
            if let Some(sha) = attr(node, "sha256") {
                out.push_str(&format!(" ({})", short_sha(sha)));
            }
        }
        NodeKind::TrainingRun => {
            out.push_str(&format!("Training run: {id}"));
            if let Some(started) = attr(node, "started_at") {
                out.push_str(&format!("  started {started}"));
                if let Some(d) = attr(node, "finished_at").and_then(|f| duration(started, f)) {
                    out.push_str(&format!("  duration {d}"));
                }
            }
        }
        NodeKind::DatasetVersion => {
            out.push_str(&format!(
                "Snapshot: {}@{}",
                attr(node, "dataset").unwrap_or(id),
                attr(node, "version").unwrap_or("?")
            ));
            if let Some(rows) = attr(node, "rows") {
                out.push_str(&format!("  rows {}", thousands(rows)));
            }
            if let Some(sha) = attr(node, "sha256") {
                out.push_str(&format!("  {}", short_sha(sha)));
            }
        }
        NodeKind::Datasource => {
            out.push_str(&format!("Datasource: {}", attr(node, "name").unwrap_or(id)));
            if let Some(c) = attr(node, "connector") {
                out.push_str(&format!(" ({c})"));
            }
        }
        NodeKind::Extraction => {
            out.push_str(&format!("Extraction: {id}"));
            if let Some(mode) = attr(node, "mode") {
                out.push_str(&format!("  {mode}"));
            }
            if let Some(rows) = attr(node, "rows") {
                out.push_str(&format!("  rows {}", thousands(rows)));
            }
        }
        NodeKind::Deployment => {
            out.push_str(&format!("Deployment: {id}"));
            if let (Some(m), Some(v)) = (attr(node, "model"), attr(node, "version")) {
                out.push_str(&format!("  {m}@{v}"));
            }
            if let Some(stage) = attr(node, "stage") {
                out.push_str(&format!("  {stage}"));
            }
        }
        NodeKind::Feedback => {
            out.push_str(&format!("Feedback: {id}"));
            if let Some(l) = attr(node, "label") {
                out.push_str(&format!("  label {l}"));
            }
        }
        NodeKind::DriftReport => {
            out.push_str(&format!("Drift report: {id}"));
            if let Some(s) = attr(node, "status") {
                out.push_str(&format!("  {s}"));
            }
            if let Some(s) = attr(node, "score") {
                out.push_str(&format!("  score {s}"));
            }
        }
        NodeKind::PipelineRun => {
            out.push_str(&format!("Pipeline run: {id}"));
            if let Some(p) = attr(node, "pipeline") {
                out.push_str(&format!("  {p}"));
            }
            if let Some(s) = attr(node, "status") {
                out.push_str(&format!("  {s}"));
            }
        }
        NodeKind::Unspecified => out.push_str(id),
    }
    out
}

/// Lines printed under a node besides its graph neighbours: metrics first,
/// input and output hashes last.
fn extras(node: &Node) -> (Vec<String>, Vec<String>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    if node.kind() == NodeKind::TrainingRun {
        let mut metrics: Vec<(&String, &String)> =
            node.attributes.iter().filter(|(k, _)| k.starts_with("metric.")).collect();
        // Headline metrics first, in the order people read them.
        const ORDER: [&str; 6] = ["accuracy", "f1", "precision", "recall", "roc_auc", "rmse"];
        metrics.sort_by_key(|(k, _)| {
            let name = &k["metric.".len()..];
            (ORDER.iter().position(|o| *o == name).unwrap_or(ORDER.len()), name.to_string())
        });
        if !metrics.is_empty() {
            let list: Vec<String> = metrics.iter().map(|(k, v)| format!("{} {v}", &k["metric.".len()..])).collect();
            before.push(format!("Metrics: {}", list.join(", ")));
        }
    }
    if node.kind() == NodeKind::Prediction {
        if let Some(sha) = attr(node, "input_sha256") {
            after.push(format!("Input {}", short_sha(sha)));
        }
        if let Some(sha) = attr(node, "output_sha256") {
            after.push(format!("Output {}", short_sha(sha)));
        }
    }
    (before, after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{edge, node};
    use pulse_proto::lineage::v1::Truncation;

    #[test]
    fn renders_the_documented_tree() {
        let trace = TraceResponse {
            root_id: "pred_abc123".into(),
            direction: Direction::Upstream as i32,
            nodes: vec![
                node(
                    "pred_abc123",
                    NodeKind::Prediction,
                    &[("input_sha256", "a9f2d4ee"), ("output_sha256", "7c8b1a00")],
                ),
                node(
                    "mv_fraud_3",
                    NodeKind::ModelVersion,
                    &[("model", "fraud-detector"), ("version", "3"), ("sha256", "def456789")],
                ),
                node(
                    "run_xyz789",
                    NodeKind::TrainingRun,
                    &[
                        ("started_at", "2026-01-15T02:00:00Z"),
                        ("finished_at", "2026-01-15T02:04:32Z"),
                        ("metric.f1", "0.9621"),
                        ("metric.accuracy", "0.9847"),
                    ],
                ),
                node(
                    "dsv_orders_7",
                    NodeKind::DatasetVersion,
                    &[("dataset", "orders"), ("version", "7"), ("rows", "1247832"), ("sha256", "e3b0c44298")],
                ),
                node("ds_tx", NodeKind::Datasource, &[("name", "transactions-db"), ("connector", "postgres")]),
            ],
            edges: vec![
                edge("mv_fraud_3", "pred_abc123"),
                edge("run_xyz789", "mv_fraud_3"),
                edge("dsv_orders_7", "mv_fraud_3"),
                edge("ds_tx", "dsv_orders_7"),
            ],
            truncation: Some(Truncation::default()),
            depth_reached: 3,
        };
        let expected = "\
Prediction: pred_abc123
├── Model: fraud-detector@3 (sha256:def456…)
│   ├── Training run: run_xyz789  started 2026-01-15T02:00:00Z  duration 4m32s
│   │   └── Metrics: accuracy 0.9847, f1 0.9621
│   └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…
│       └── Datasource: transactions-db (postgres)
├── Input sha256:a9f2d4…
└── Output sha256:7c8b1a…
";
        assert_eq!(LineageTree::new(&trace).to_string(), expected);
    }

    #[test]
    fn shared_ancestors_print_once_and_truncation_is_said() {
        // b feeds c directly and through a: shown once, under c.
        let trace = TraceResponse {
            root_id: "c".into(),
            direction: Direction::Upstream as i32,
            nodes: vec![
                node("c", NodeKind::ModelVersion, &[("model", "m"), ("version", "1")]),
                node("a", NodeKind::TrainingRun, &[]),
                node("b", NodeKind::DatasetVersion, &[("dataset", "d"), ("version", "1")]),
            ],
            edges: vec![edge("a", "c"), edge("b", "c"), edge("b", "a")],
            truncation: Some(Truncation { truncated: true, reason: "depth limit 2 reached".into() }),
            depth_reached: 2,
        };
        let text = LineageTree::new(&trace).to_string();
        assert_eq!(text, "Model: m@1\n├── Training run: a\n└── Snapshot: d@1\n… truncated: depth limit 2 reached\n",);

        // s feeds two runs at the same level: printed under the first, pointed
        // to from the second.
        let trace = TraceResponse {
            root_id: "m".into(),
            direction: Direction::Upstream as i32,
            nodes: vec![
                node("m", NodeKind::ModelVersion, &[("model", "m"), ("version", "2")]),
                node("r1", NodeKind::TrainingRun, &[]),
                node("r2", NodeKind::TrainingRun, &[]),
                node("s", NodeKind::DatasetVersion, &[("dataset", "d"), ("version", "3")]),
            ],
            edges: vec![edge("r1", "m"), edge("r2", "m"), edge("s", "r1"), edge("s", "r2")],
            truncation: None,
            depth_reached: 2,
        };
        let text = LineageTree::new(&trace).to_string();
        assert_eq!(
            text,
            "Model: m@2\n├── Training run: r1\n│   └── Snapshot: d@3\n└── Training run: r2\n    └── Snapshot: d@3 (see under r1)\n",
        );
    }

    #[test]
    fn kinds_parse_from_names() {
        assert_eq!(parse_kind("model_version"), Some(NodeKind::ModelVersion));
        assert_eq!(parse_kind("Dataset-Version"), Some(NodeKind::DatasetVersion));
        assert_eq!(parse_kind("NODE_KIND_PREDICTION"), Some(NodeKind::Prediction));
        assert_eq!(parse_kind("model"), None);
        assert_eq!(thousands("1247832"), "1,247,832");
        assert_eq!(thousands("999"), "999");
    }
}
