//! Lineage benchmark: builds a 100,000-node graph shaped like a year of
//! Pulse use (datasources → extractions → dataset versions → runs → models
//! → deployments → predictions → feedback), then measures trace and impact
//! latency (p50/p99) on the embedded store and on PostgreSQL, next to the
//! raw limit of one recursive-CTE query on the same PostgreSQL data.
//!
//! `make bench-lineage` (or `cargo run --release -p pulse-lineage --example
//! bench_lineage -- --nodes 100000`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pulse_common::store::Database;
use pulse_common::testing::TestDatabase;
use pulse_lineage::domain::{Direction, EdgeWrite, NodeKind, NodeWrite};
use pulse_lineage::{Lineage, store};

const TENANT: &str = "ten_bench";

struct Graph {
    nodes: Vec<NodeWrite>,
    edges: Vec<EdgeWrite>,
    predictions: Vec<String>,
    datasets: Vec<String>,
    datasources: Vec<String>,
}

fn graph(total: usize) -> Graph {
    let mut g = Graph { nodes: vec![], edges: vec![], predictions: vec![], datasets: vec![], datasources: vec![] };
    let add = |g: &mut Graph, id: String, kind: NodeKind, attrs: &[(&str, String)]| {
        g.nodes.push(NodeWrite {
            id: id.clone(),
            kind,
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        });
        id
    };
    let link = |g: &mut Graph, from: &str, to: &str| {
        g.edges.push(EdgeWrite { from_id: from.into(), to_id: to.into(), relation: String::new() })
    };
    let mut deployments = Vec::new();
    for s in 0..10 {
        let ds = add(
            &mut g,
            format!("ds{s}"),
            NodeKind::Datasource,
            &[("name", format!("db-{s}")), ("connector", "postgres".into())],
        );
        g.datasources.push(ds.clone());
        let mut previous: Option<String> = None;
        for e in 0..10 {
            let ext = add(
                &mut g,
                format!("ext{s}_{e}"),
                NodeKind::Extraction,
                &[("mode", "incremental".into()), ("rows", "100000".into())],
            );
            link(&mut g, &ds, &ext);
            let dsv = add(
                &mut g,
                format!("dsv{s}_{e}"),
                NodeKind::DatasetVersion,
                &[("dataset", format!("d{s}")), ("version", e.to_string())],
            );
            link(&mut g, &ext, &dsv);
            if let Some(p) = &previous {
                link(&mut g, p, &dsv);
            }
            previous = Some(dsv.clone());
            g.datasets.push(dsv.clone());
            for r in 0..5 {
                let run =
                    add(&mut g, format!("run{s}_{e}_{r}"), NodeKind::TrainingRun, &[("metric.accuracy", "0.9".into())]);
                link(&mut g, &dsv, &run);
                let mv = add(
                    &mut g,
                    format!("mv{s}_{e}_{r}"),
                    NodeKind::ModelVersion,
                    &[("model", format!("m{s}")), ("version", (e * 5 + r).to_string())],
                );
                link(&mut g, &run, &mv);
                link(&mut g, &dsv, &mv);
                let dep =
                    add(&mut g, format!("dep{s}_{e}_{r}"), NodeKind::Deployment, &[("stage", "production".into())]);
                link(&mut g, &mv, &dep);
                deployments.push(dep);
            }
        }
    }
    // The rest: predictions through the deployments, a fifth with feedback.
    let remaining = total.saturating_sub(g.nodes.len());
    let predictions = remaining * 4 / 5 + (!remaining.is_multiple_of(5)) as usize;
    for i in 0..predictions {
        let p = add(&mut g, format!("pred{i}"), NodeKind::Prediction, &[("input_sha256", format!("{i:064x}"))]);
        link(&mut g, &deployments[i % deployments.len()], &p);
        if g.nodes.len() < total && i % 4 == 0 {
            let f = add(&mut g, format!("fb{i}"), NodeKind::Feedback, &[("label", "1".into())]);
            link(&mut g, &p, &f);
        }
        g.predictions.push(p);
    }
    while g.nodes.len() < total {
        let i = g.nodes.len();
        let f = add(&mut g, format!("fbx{i}"), NodeKind::Feedback, &[]);
        let p = g.predictions[i % g.predictions.len()].clone();
        link(&mut g, &p, &f);
    }
    g
}

async fn load(l: &Lineage, g: &Graph) -> Duration {
    let start = Instant::now();
    for chunk in g.nodes.chunks(5000) {
        l.record(TENANT, chunk.to_vec(), vec![]).await.unwrap();
    }
    for chunk in g.edges.chunks(5000) {
        l.record(TENANT, vec![], chunk.to_vec()).await.unwrap();
    }
    start.elapsed()
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

/// Deterministic spread of picks without a random-number dependency.
fn pick(items: &[String], i: usize) -> &str {
    &items[(i * 7919) % items.len()]
}

async fn measure<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..n.min(20) {
        f(i).await; // warm caches and prepared statements
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f(i).await;
        samples.push(start.elapsed());
    }
    percentiles(samples)
}

async fn run(name: &str, database: Database, g: &Graph, rows: &mut Vec<String>) {
    let db = database.open(store::SCHEMA, store::MIGRATIONS).await.unwrap();
    let l = Lineage::new(store::lineage_store(&db));
    let loaded = load(&l, g).await;
    eprintln!("{name}: loaded {} nodes and {} edges in {:.1}s", g.nodes.len(), g.edges.len(), loaded.as_secs_f64());

    let (p50, p99) = measure(1000, |i| {
        let l = l.clone();
        let id = pick(&g.predictions, i).to_string();
        async move {
            let w = l.trace(TENANT, &id, Direction::Upstream, 0, 0).await.unwrap();
            assert!(w.nodes.len() >= 6 && w.truncated.is_none());
        }
    })
    .await;
    rows.push(format!("| {name} | trace upstream from a prediction (7+ nodes) | 1000 | {p50:.2} | {p99:.2} |"));

    let (p50, p99) = measure(200, |i| {
        let l = l.clone();
        let id = pick(&g.datasets, i).to_string();
        async move {
            let impact = l.impact(TENANT, &id, 0, 0).await.unwrap();
            assert!(impact.counts.get("model_version").copied().unwrap_or(0) >= 5);
        }
    })
    .await;
    rows.push(format!(
        "| {name} | impact of a dataset version (bounded at 10,000 nodes) | 200 | {p50:.2} | {p99:.2} |"
    ));

    let (p50, p99) = measure(20, |i| {
        let l = l.clone();
        let id = pick(&g.datasources, i).to_string();
        async move {
            let impact = l.impact(TENANT, &id, 0, 0).await.unwrap();
            assert!(impact.counts.get("deployment").copied().unwrap_or(0) >= 50);
        }
    })
    .await;
    rows.push(format!("| {name} | impact of a datasource (~10,000 nodes) | 20 | {p50:.2} | {p99:.2} |"));

    if let Database::Postgres(pool) = &database {
        // The raw limit: one recursive query, no limits, no node rows.
        let client = pool.get().await.unwrap();
        let stmt = client
            .prepare(
                "WITH RECURSIVE up(id) AS (SELECT $2::text UNION
                    SELECT e.from_id FROM lineage.edges e JOIN up ON e.tenant_id = $1 AND e.to_id = up.id)
                 SELECT count(*) FROM up",
            )
            .await
            .unwrap();
        let client = &client;
        let stmt = &stmt;
        let (p50, p99) = measure(1000, |i| {
            let id = pick(&g.predictions, i).to_string();
            async move {
                let n: i64 = client.query_one(stmt, &[&TENANT, &id]).await.unwrap().get(0);
                assert!(n >= 7);
            }
        })
        .await;
        rows.push(format!("| PostgreSQL, raw recursive CTE (ids only; the floor) | trace upstream from a prediction | 1000 | {p50:.2} | {p99:.2} |"));
    }
}

#[tokio::main]
async fn main() {
    let nodes = std::env::args()
        .skip_while(|a| a != "--nodes")
        .nth(1)
        .map(|n| n.parse().expect("--nodes takes a number"))
        .unwrap_or(100_000);
    let g = graph(nodes);
    let mut rows =
        vec!["| store | operation | samples | p50 ms | p99 ms |".to_string(), "|---|---|---|---|---|".to_string()];
    let dir = tempfile::tempdir().unwrap();
    run("embedded (SQLite)", Database::Embedded(dir.path().to_path_buf()), &g, &mut rows).await;
    let pg = TestDatabase::create().await;
    run("PostgreSQL", Database::postgres(&pg.url, 4).await.unwrap(), &g, &mut rows).await;
    println!("\nLineage graph: {} nodes, {} edges\n", g.nodes.len(), g.edges.len());
    for r in rows {
        println!("{r}");
    }
}
