//! The lineage domain over each store: PostgreSQL and embedded run the same
//! suite.

use std::collections::BTreeMap;

use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::testing::{Backend, embedded_backend, postgres_backend};
use pulse_lineage::domain::{Direction, EdgeWrite, NodeKind, NodeWrite};
use pulse_lineage::{Lineage, store};

fn node(id: &str, kind: NodeKind, attrs: &[(&str, &str)]) -> NodeWrite {
    NodeWrite {
        id: id.into(),
        kind,
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }
}

fn edge(from: &str, to: &str) -> EdgeWrite {
    EdgeWrite { from_id: from.into(), to_id: to.into(), relation: String::new() }
}

async fn lineage(backend: &Backend) -> Lineage {
    let db = backend.database().await.open(store::SCHEMA, store::MIGRATIONS).await.unwrap();
    Lineage::new(store::lineage_store(&db))
}

/// datasource → extraction → dataset → run → model → deployment → 3 predictions → feedback
async fn seed(l: &Lineage, tenant: &str) {
    let nodes = vec![
        node("ds1", NodeKind::Datasource, &[("name", "orders-db"), ("connector", "postgres")]),
        node("ext1", NodeKind::Extraction, &[("mode", "full")]),
        node("dsv1", NodeKind::DatasetVersion, &[("dataset", "orders"), ("version", "1")]),
        node("run1", NodeKind::TrainingRun, &[]),
        node("mv1", NodeKind::ModelVersion, &[("model", "churn"), ("version", "1")]),
        node("dep1", NodeKind::Deployment, &[("model", "churn"), ("version", "1"), ("stage", "production")]),
        node("p1", NodeKind::Prediction, &[]),
        node("p2", NodeKind::Prediction, &[]),
        node("p3", NodeKind::Prediction, &[]),
        node("fb1", NodeKind::Feedback, &[("label", "1")]),
    ];
    let edges = vec![
        edge("ds1", "ext1"),
        edge("ext1", "dsv1"),
        edge("dsv1", "run1"),
        edge("run1", "mv1"),
        edge("dsv1", "mv1"),
        edge("mv1", "dep1"),
        edge("dep1", "p1"),
        edge("dep1", "p2"),
        edge("dep1", "p3"),
        edge("p1", "fb1"),
    ];
    let o = l.record(tenant, nodes, edges).await.unwrap();
    assert_eq!((o.nodes_created, o.nodes_updated, o.edges_created), (10, 0, 10));
}

async fn suite(backend: Backend) {
    let l = lineage(&backend).await;
    seed(&l, "ten_a").await;

    // Upstream from a prediction reaches the datasource, breadth-first (ties
    // in recording time broken by id).
    let up = l.trace("ten_a", "p1", Direction::Upstream, 0, 0).await.unwrap();
    let ids: Vec<&str> = up.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["p1", "dep1", "mv1", "dsv1", "run1", "ext1", "ds1"]);
    assert_eq!(up.depth_reached, 5);
    assert!(up.truncated.is_none());
    assert_eq!(up.edges.len(), 7);

    // Downstream from the dataset version; the limits say when they stop it.
    let down = l.trace("ten_a", "dsv1", Direction::Downstream, 2, 0).await.unwrap();
    let ids: Vec<&str> = down.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["dsv1", "mv1", "run1", "dep1"]);
    assert!(down.truncated.as_deref().unwrap().starts_with("depth limit 2 reached"), "{down:?}");
    let narrow = l.trace("ten_a", "dep1", Direction::Downstream, 0, 2).await.unwrap();
    assert_eq!(narrow.nodes.len(), 2);
    assert!(narrow.truncated.as_deref().unwrap().starts_with("node limit 2 reached"));
    // At the depth limit the edges among returned nodes are still there.
    let shallow = l.trace("ten_a", "mv1", Direction::Upstream, 1, 0).await.unwrap();
    let mut pairs: Vec<(&str, &str)> = shallow.edges.iter().map(|e| (e.from_id.as_str(), e.to_id.as_str())).collect();
    pairs.sort();
    assert_eq!(pairs, [("dsv1", "mv1"), ("dsv1", "run1"), ("run1", "mv1")]);
    assert!(shallow.truncated.as_deref().unwrap().starts_with("depth limit 1"), "{shallow:?}");
    // A walk that ends exactly at the limit is not truncated.
    let exact = l.trace("ten_a", "p1", Direction::Downstream, 1, 0).await.unwrap();
    assert!(exact.truncated.is_none(), "{exact:?}");
    let err = l.trace("ten_a", "p1", Direction::Upstream, 101, 0).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    assert!(err.to_string().starts_with("max_depth:"), "{err}");

    // Impact of the datasource: every model and deployment it feeds.
    let impact = l.impact("ten_a", "ds1", 0, 0).await.unwrap();
    assert_eq!(impact.counts.get("prediction"), Some(&3));
    assert_eq!(impact.counts.get("feedback"), Some(&1));
    assert_eq!(impact.counts.get("model_version"), Some(&1));
    let affected: Vec<&str> = impact.affected.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(affected, ["ext1", "dsv1", "mv1", "run1", "dep1"]);

    // Attributes merge; a kind change is refused.
    let o = l
        .record(
            "ten_a",
            vec![node("mv1", NodeKind::ModelVersion, &[("model", "churn"), ("version", "1"), ("sha256", "abc")])],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!((o.nodes_created, o.nodes_updated), (0, 1));
    let mv = l.node("ten_a", "mv1").await.unwrap();
    assert_eq!(mv.attributes.get("sha256").map(String::as_str), Some("abc"));
    assert_eq!(mv.attributes.get("model").map(String::as_str), Some("churn"));
    let err = l.record("ten_a", vec![node("mv1", NodeKind::Prediction, &[])], vec![]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AlreadyExists, "{err}");

    // Cycles are refused, directly or through a long path; nothing is written.
    let err = l.record("ten_a", vec![], vec![edge("fb1", "p1")]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "feedback cannot feed a prediction: {err}");
    l.record(
        "ten_a",
        vec![node("dsv2", NodeKind::DatasetVersion, &[("dataset", "orders"), ("version", "2")])],
        vec![edge("dsv1", "dsv2")],
    )
    .await
    .unwrap();
    let err = l.record("ten_a", vec![], vec![edge("dsv2", "dsv1")]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("cycle"), "{err}");

    // A batch is atomic: one bad edge and none of it is recorded.
    let err = l
        .record(
            "ten_a",
            vec![node("ds9", NodeKind::Datasource, &[("name", "n"), ("connector", "mysql")])],
            vec![edge("ds9", "ghost")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");
    assert_eq!(l.node("ten_a", "ds9").await.unwrap_err().code(), ErrorCode::NotFound);

    // Recording an edge twice is a no-op.
    let o = l.record("ten_a", vec![], vec![edge("ds1", "ext1")]).await.unwrap();
    assert_eq!(o.edges_created, 0);

    // Tenants never see each other.
    assert_eq!(l.node("ten_b", "p1").await.unwrap_err().code(), ErrorCode::NotFound);
    assert_eq!(l.trace("ten_b", "p1", Direction::Upstream, 0, 0).await.unwrap_err().code(), ErrorCode::NotFound);
    l.record("ten_b", vec![node("p1", NodeKind::Feedback, &[])], vec![]).await.unwrap();
    assert_eq!(l.node("ten_b", "p1").await.unwrap().kind, NodeKind::Feedback);
    assert_eq!(l.node("ten_a", "p1").await.unwrap().kind, NodeKind::Prediction);
    let err = l
        .record(
            "ten_b",
            vec![node("mvb", NodeKind::ModelVersion, &[("model", "x"), ("version", "1")])],
            vec![edge("mvb", "dep1")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound, "another tenant's node is not there: {err}");

    // Listing pages through by id, optionally by kind.
    let (preds, next) = l.list("ten_a", Some(NodeKind::Prediction), "", 2).await.unwrap();
    assert_eq!(preds.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    let (rest, end) = l.list("ten_a", Some(NodeKind::Prediction), &next, 2).await.unwrap();
    assert_eq!(rest.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["p3"]);
    assert!(end.is_empty());

    // Export around a root reaches the connected part, both ways.
    let connected = l.export_connected("ten_a", "run1", 0).await.unwrap();
    assert_eq!(connected.nodes.len(), 11);
}

#[tokio::test]
async fn lineage_store_embedded() {
    suite(embedded_backend().await).await;
}

#[tokio::test]
async fn lineage_store_postgres() {
    suite(postgres_backend().await).await;
}

/// Two writers adding opposite edges at once, each with its own connection
/// (as two processes would have): exactly one wins, so no cycle can be made
/// by racing.
async fn racing_edges_never_close_a_cycle(backend: Backend) {
    let l = lineage(&backend).await;
    let other = lineage(&backend).await;
    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let nodes = vec![
            node(&a, NodeKind::DatasetVersion, &[("dataset", "d"), ("version", "1")]),
            node(&b, NodeKind::DatasetVersion, &[("dataset", "d"), ("version", "2")]),
        ];
        l.record("ten_r", nodes, vec![]).await.unwrap();
        let (l1, l2) = (l.clone(), other.clone());
        let (x, y) = tokio::join!(
            l1.record("ten_r", vec![], vec![edge(&a, &b)]),
            l2.record("ten_r", vec![], vec![edge(&b, &a)]),
        );
        let ok = [x.is_ok(), y.is_ok()].iter().filter(|o| **o).count();
        assert_eq!(ok, 1, "round {round}: {x:?} {y:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_edges_embedded() {
    racing_edges_never_close_a_cycle(embedded_backend().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_edges_postgres() {
    racing_edges_never_close_a_cycle(postgres_backend().await).await;
}
