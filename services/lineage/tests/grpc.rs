//! The lineage service on a real server (port 0), through real clients: the
//! shared runtime's promises (auth, tenants, idempotency, limits, metrics,
//! reflection, health) proven on the first service, on both backends.

use pulse_client::{Client, LineageTree, edge, node};
use pulse_common::grpc::pending::Pending;
use pulse_common::host::Hosted;
use pulse_common::testing::Sandbox;
use pulse_proto::lineage::v1::lineage_service_client::LineageServiceClient;
use pulse_proto::lineage::v1::{self as pb, Direction, Edge, Node, NodeKind};
use pulse_proto::tonic::{Code, Request};

async fn sandbox(postgres: bool) -> Sandbox {
    Sandbox::start(
        postgres,
        |c| c.max_message_bytes = 64 * 1024,
        async |platform| {
            vec![
                pulse_lineage::hosted(&platform).await.unwrap(),
                Hosted::new(
                    Pending::<pulse_proto::trainer::v1::trainer_service_server::TrainerServiceServer<()>>::new(),
                ),
            ]
        },
    )
    .await
}

const TREE: &str = "\
Prediction: pred_abc123
├── Model: fraud-detector@3 (sha256:def456…)
│   ├── Training run: run_xyz789  started 2026-01-15T02:00:00Z  duration 4m32s
│   │   └── Metrics: accuracy 0.9847, f1 0.9621
│   └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…
│       └── Extraction: ext_1  full  rows 1,247,832
│           └── Datasource: transactions-db (postgres)
├── Input sha256:a9f2d4…
└── Output sha256:7c8b1a…
";

async fn record_documented_graph(client: &Client) {
    let nodes = vec![
        node("ds_tx", NodeKind::Datasource, &[("name", "transactions-db"), ("connector", "postgres")]),
        node("ext_1", NodeKind::Extraction, &[("mode", "full"), ("rows", "1247832")]),
        node(
            "dsv_orders_7",
            NodeKind::DatasetVersion,
            &[("dataset", "orders"), ("version", "7"), ("rows", "1247832"), ("sha256", "e3b0c44298fc")],
        ),
        node(
            "run_xyz789",
            NodeKind::TrainingRun,
            &[
                ("started_at", "2026-01-15T02:00:00Z"),
                ("finished_at", "2026-01-15T02:04:32Z"),
                ("metric.accuracy", "0.9847"),
                ("metric.f1", "0.9621"),
            ],
        ),
        node(
            "mv_fraud_3",
            NodeKind::ModelVersion,
            &[("model", "fraud-detector"), ("version", "3"), ("sha256", "def4567890")],
        ),
        node("pred_abc123", NodeKind::Prediction, &[("input_sha256", "a9f2d4aa"), ("output_sha256", "7c8b1abb")]),
    ];
    let edges = vec![
        edge("ds_tx", "ext_1"),
        edge("ext_1", "dsv_orders_7"),
        edge("dsv_orders_7", "run_xyz789"),
        edge("run_xyz789", "mv_fraud_3"),
        edge("dsv_orders_7", "mv_fraud_3"),
        edge("mv_fraud_3", "pred_abc123"),
    ];
    let out = client.record_batch(nodes, edges, None).await.unwrap();
    assert_eq!((out.nodes_created, out.edges_created), (6, 6));
}

async fn trace_prints_the_tree(postgres: bool) {
    let sb = sandbox(postgres).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    record_documented_graph(&client).await;
    let trace = client.trace("pred_abc123", Direction::Upstream, 0, 0).await.unwrap();
    // The snapshot feeds both the model and its run: it is shown once, at
    // its nearest place, as in the documented tree.
    let text = LineageTree::new(&trace).to_string();
    assert_eq!(text, TREE, "\n{text}");

    let impact = client.impact("ds_tx", 0, 0).await.unwrap();
    assert_eq!(impact.model_versions.len(), 1);
    assert_eq!(impact.model_versions[0].model, "fraud-detector");
    assert_eq!(impact.model_versions[0].version, 3);
    assert_eq!(impact.counts.get("prediction"), Some(&1));

    let all = client.export("", 0).await.unwrap();
    assert_eq!((all.nodes.len(), all.edges.len()), (6, 6));
    // With a limit, only edges between the exported nodes come along.
    let some = client.export("", 3).await.unwrap();
    assert_eq!(some.nodes.len(), 3);
    let ids: Vec<&str> = some.nodes.iter().map(|n| n.id.as_str()).collect();
    assert!(some.edges.iter().all(|e| ids.contains(&e.from_id.as_str()) && ids.contains(&e.to_id.as_str())));
}

#[tokio::test]
async fn trace_prints_the_tree_embedded() {
    trace_prints_the_tree(false).await;
}

#[tokio::test]
async fn trace_prints_the_tree_postgres() {
    trace_prints_the_tree(true).await;
}

async fn auth_and_tenants(postgres: bool) {
    let sb = sandbox(postgres).await;
    let a = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let b = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    a.record_node(node("ds1", NodeKind::Datasource, &[("name", "crm"), ("connector", "mysql")]), None).await.unwrap();

    // No key, a made-up key, a forged secret.
    let anonymous = Client::connect(&sb.endpoint, None).await.unwrap();
    let err = anonymous.get_node("ds1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("authorization: Bearer"), "{err}");
    let made_up = Client::connect(&sb.endpoint, Some("pk_nothing")).await.unwrap();
    assert_eq!(made_up.get_node("ds1").await.unwrap_err().code(), Code::Unauthenticated);
    // The real secret with its last hex digit changed (to another digit).
    let (head, last) = sb.tenant_a.1.split_at(sb.tenant_a.1.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    assert_ne!(forged, sb.tenant_a.1);
    let forged = Client::connect(&sb.endpoint, Some(&forged)).await.unwrap();
    assert_eq!(forged.get_node("ds1").await.unwrap_err().code(), Code::Unauthenticated);

    // Another tenant's id is NOT_FOUND, with none of its data.
    let err = b.get_node("ds1").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(!err.message().contains("crm"), "{err}");
    assert_eq!(b.trace("ds1", Direction::Downstream, 0, 0).await.unwrap_err().code(), Code::NotFound);
    assert!(b.export("", 0).await.unwrap().nodes.is_empty());

    // The admin key manages tenants only; tenant keys cannot manage tenants.
    let admin = Client::connect(&sb.endpoint, Some(&sb.admin_key)).await.unwrap();
    assert_eq!(admin.get_node("ds1").await.unwrap_err().code(), Code::PermissionDenied);
    let err = a.create_tenant("sneaky", None).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("admin key"), "{err}");
    assert_eq!(a.who_am_i().await.unwrap().tenant_id, sb.tenant_a.0);

    // A key made through the admin RPC works, and stops working once revoked.
    let created = admin.create_api_key(&sb.tenant_b.0, "second").await.unwrap();
    let b2 = Client::connect(&sb.endpoint, Some(&created.secret)).await.unwrap();
    assert_eq!(b2.who_am_i().await.unwrap().tenant_id, sb.tenant_b.0);
    admin.revoke_api_key(&created.key.unwrap().id).await.unwrap();
    assert_eq!(b2.who_am_i().await.unwrap_err().code(), Code::Unauthenticated);
    let err = admin.create_api_key("ten_00000000000000000000000000", "x").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A new key's secret is shown once: a retry with the same idempotency
    // key does not make a second key, and no copy of the secret is kept.
    let mut raw_admin =
        pulse_proto::admin::v1::admin_service_client::AdminServiceClient::connect(sb.endpoint.clone()).await.unwrap();
    let create = || {
        let mut req = Request::new(pulse_proto::admin::v1::CreateApiKeyRequest {
            tenant_id: sb.tenant_b.0.clone(),
            name: "ci".into(),
        });
        req.metadata_mut().insert("authorization", format!("Bearer {}", sb.admin_key).parse().unwrap());
        req.metadata_mut().insert("idempotency-key", "key-once".parse().unwrap());
        req
    };
    let first = raw_admin.create_api_key(create()).await.unwrap().into_inner();
    assert!(first.secret.starts_with("pk_"));
    let again = raw_admin.create_api_key(create()).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert!(!again.message().contains(&first.secret), "{again:?}");
    let keys = admin.list_api_keys(&sb.tenant_b.0).await.unwrap().keys;
    assert_eq!(keys.iter().filter(|k| k.name == "ci").count(), 1, "one key, not two");
}

#[tokio::test]
async fn auth_and_tenants_embedded() {
    auth_and_tenants(false).await;
}

#[tokio::test]
async fn auth_and_tenants_postgres() {
    auth_and_tenants(true).await;
}

fn raw_request<T>(sb: &Sandbox, msg: T, key: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {}", sb.tenant_a.1).parse().unwrap());
    if let Some(k) = key {
        req.metadata_mut().insert("idempotency-key", k.parse().unwrap());
    }
    req
}

async fn idempotency_and_bad_input(postgres: bool) {
    let sb = sandbox(postgres).await;
    let mut raw = LineageServiceClient::connect(sb.endpoint.clone()).await.unwrap();
    let create = || pb::RecordNodeRequest { node: Some(node("run1", NodeKind::TrainingRun, &[("algorithm", "mlp")])) };

    // Same key, same request: the first answer, marked as a replay.
    let first = raw.record_node(raw_request(&sb, create(), Some("k-1"))).await.unwrap();
    assert!(first.metadata().get("idempotent-replay").is_none());
    assert!(first.get_ref().created);
    let again = raw.record_node(raw_request(&sb, create(), Some("k-1"))).await.unwrap();
    assert_eq!(again.metadata().get("idempotent-replay").unwrap(), "true");
    assert_eq!(again.get_ref(), first.get_ref(), "a replay returns the first answer byte for byte");
    // Without the key the call runs again (and now finds the node).
    let plain = raw.record_node(raw_request(&sb, create(), None)).await.unwrap();
    assert!(!plain.get_ref().created);

    // Same key, different request: refused, and nothing is written.
    let other = pb::RecordNodeRequest { node: Some(node("run2", NodeKind::TrainingRun, &[])) };
    let err = raw.record_node(raw_request(&sb, other, Some("k-1"))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("k-1"), "{err:?}");
    let get = raw.get_node(raw_request(&sb, pb::GetNodeRequest { id: "run2".into() }, None)).await.unwrap_err();
    assert_eq!(get.code(), Code::NotFound);

    // A failed mutation is not remembered: fixing the input with the same key works.
    let bad = pb::RecordNodeRequest { node: Some(node("run3", NodeKind::Unspecified, &[])) };
    let err = raw.record_node(raw_request(&sb, bad, Some("k-2"))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("node.kind: is required"), "{err:?}");
    // (A different request under k-2 is allowed because the failure was released.)
    let good = pb::RecordNodeRequest { node: Some(node("run3", NodeKind::TrainingRun, &[])) };
    raw.record_node(raw_request(&sb, good, Some("k-2"))).await.unwrap();

    // Equal requests built separately (map entries inserted in another
    // order) encode to the same bytes, so a retry from a new process is
    // still recognised.
    let attrs: Vec<(String, String)> = (0..12).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    let built = |reverse: bool| {
        let mut n = node("run9", NodeKind::TrainingRun, &[]);
        let mut pairs = attrs.clone();
        if reverse {
            pairs.reverse();
        }
        n.attributes = pairs.into_iter().collect();
        pb::RecordNodeRequest { node: Some(n) }
    };
    raw.record_node(raw_request(&sb, built(false), Some("k-map"))).await.unwrap();
    let retry = raw.record_node(raw_request(&sb, built(true), Some("k-map"))).await.unwrap();
    assert_eq!(retry.metadata().get("idempotent-replay").unwrap(), "true");

    // Another tenant's identical key is its own.
    let b = Client::connect(&sb.endpoint, Some(&sb.tenant_b.1)).await.unwrap();
    b.record_node(node("run1", NodeKind::TrainingRun, &[]), Some("k-1")).await.unwrap();

    // Bad input names the field and the reason.
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let cases: Vec<(pb::Node, &str)> = vec![
        (node("has space", NodeKind::Datasource, &[("name", "n"), ("connector", "c")]), "node.id:"),
        (node("", NodeKind::Datasource, &[]), "node.id: is required"),
        (node("ds", NodeKind::Datasource, &[("name", "n")]), "node.attributes.connector: is required"),
        (node("mv", NodeKind::ModelVersion, &[("model", "m"), ("Version", "1")]), "node.attributes:"),
    ];
    for (n, expected) in cases {
        let err = client.record_node(n, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(expected), "{err} should start with {expected}");
    }
    let err = client.record_edge(edge("run1", "run1"), None).await.unwrap_err();
    assert!(err.message().starts_with("edge.to_id:"), "{err}");
    let err = client.record_edge(edge("run1", "ghost"), None).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.trace("run1", Direction::Upstream, 1000, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("max_depth:"), "{err}");
    let err = client.record_batch(vec![], vec![Edge::default()], None).await.unwrap_err();
    assert!(err.message().starts_with("edges[0].from_id: is required"), "{err}");
    let mut raw_bad = Request::new(pb::TraceRequest { id: "run1".into(), direction: 9, max_depth: 0, max_nodes: 0 });
    raw_bad.metadata_mut().insert("authorization", format!("Bearer {}", sb.tenant_a.1).parse().unwrap());
    assert!(raw.trace(raw_bad).await.unwrap_err().message().starts_with("direction:"));
    let err = raw.record_node(raw_request(&sb, create(), Some("bad key with spaces"))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("idempotency-key:"), "{err:?}");

    // Oversized messages are refused with the limit, with or without a key.
    let big =
        pb::RecordNodeRequest { node: Some(node("big", NodeKind::TrainingRun, &[("note", &"x".repeat(100 * 1024))])) };
    let err = raw.record_node(raw_request(&sb, big.clone(), None)).await.unwrap_err();
    assert!(err.message().contains("65536"), "{err:?}");
    assert_eq!(err.code(), Code::OutOfRange);
    let err = raw.record_node(raw_request(&sb, big, Some("k-big"))).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "the same answer with an idempotency key");
    assert!(err.message().contains("65536"), "{err:?}");
}

#[tokio::test]
async fn idempotency_and_bad_input_embedded() {
    idempotency_and_bad_input(false).await;
}

#[tokio::test]
async fn idempotency_and_bad_input_postgres() {
    idempotency_and_bad_input(true).await;
}

#[tokio::test]
async fn bounded_walks_say_which_limit_stopped_them() {
    let sb = sandbox(false).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    // A chain of 30 dataset versions and one version feeding 50 runs.
    let chain: Vec<Node> = (0..30)
        .map(|i| node(&format!("v{i}"), NodeKind::DatasetVersion, &[("dataset", "d"), ("version", &i.to_string())]))
        .collect();
    let links: Vec<Edge> = (1..30).map(|i| edge(&format!("v{}", i - 1), &format!("v{i}"))).collect();
    client.record_batch(chain, links, None).await.unwrap();
    let runs: Vec<Node> = (0..50).map(|i| node(&format!("r{i}"), NodeKind::TrainingRun, &[])).collect();
    let fan: Vec<Edge> = (0..50).map(|i| edge("v0", &format!("r{i}"))).collect();
    client.record_batch(runs, fan, None).await.unwrap();

    let deep = client.trace("v29", Direction::Upstream, 5, 0).await.unwrap();
    assert_eq!(deep.nodes.len(), 6);
    assert_eq!(deep.depth_reached, 5);
    let t = deep.truncation.unwrap();
    assert!(t.truncated && t.reason.starts_with("depth limit 5 reached"), "{t:?}");
    assert!(
        LineageTree::new(&client.trace("v29", Direction::Upstream, 5, 0).await.unwrap())
            .to_string()
            .contains("… truncated: depth limit 5")
    );

    let wide = client.trace("v0", Direction::Downstream, 0, 10).await.unwrap();
    assert_eq!(wide.nodes.len(), 10);
    let t = wide.truncation.unwrap();
    assert!(t.truncated && t.reason.starts_with("node limit 10 reached"), "{t:?}");

    // The default depth (25) bounds a deeper chain; a larger one sees it all.
    let default = client.trace("v29", Direction::Upstream, 0, 0).await.unwrap();
    assert_eq!(default.nodes.len(), 26);
    assert!(default.truncation.unwrap().reason.starts_with("depth limit 25 reached"));
    let whole = client.trace("v29", Direction::Upstream, 40, 0).await.unwrap();
    assert_eq!(whole.nodes.len(), 30);
    assert!(!whole.truncation.unwrap().truncated);
}

#[tokio::test]
async fn metrics_reflection_health_and_pending_services() {
    let sb = sandbox(false).await;
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    client
        .record_node(node("ds1", NodeKind::Datasource, &[("name", "n"), ("connector", "postgres")]), None)
        .await
        .unwrap();
    client.trace("ds1", Direction::Downstream, 0, 0).await.unwrap();
    client.get_node("missing").await.unwrap_err();
    Client::connect(&sb.endpoint, None).await.unwrap().get_node("ds1").await.unwrap_err();

    let page = sb.metrics().await;
    for line in [
        r#"pulse_grpc_requests_total{code="OK",method="Trace",service="pulse.lineage.v1.LineageService"} 1"#,
        r#"pulse_grpc_requests_total{code="OK",method="RecordNode",service="pulse.lineage.v1.LineageService"} 1"#,
        r#"pulse_grpc_requests_total{code="NOT_FOUND",method="GetNode",service="pulse.lineage.v1.LineageService"} 1"#,
        r#"pulse_grpc_requests_total{code="UNAUTHENTICATED",method="GetNode",service="pulse.lineage.v1.LineageService"} 1"#,
        r#"pulse_grpc_request_duration_seconds_count{code="OK",method="Trace",service="pulse.lineage.v1.LineageService"} 1"#,
    ] {
        assert!(page.contains(line), "missing {line} in\n{page}");
    }

    // Reflection lists every hosted service, health and reflection, on v1 and v1alpha.
    let channel =
        pulse_proto::tonic::transport::Endpoint::from_shared(sb.endpoint.clone()).unwrap().connect().await.unwrap();
    let listed_v1 = {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(futures::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    for name in [
        "pulse.lineage.v1.LineageService",
        "pulse.trainer.v1.TrainerService",
        "pulse.admin.v1.AdminService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(listed_v1.iter().any(|s| s == name), "{name} not in {listed_v1:?}");
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("pulse.lineage.v1.LineageService".into())),
        };
        let mut stream = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(futures::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response.unwrap() {
            MessageResponse::FileDescriptorResponse(f) => assert!(!f.file_descriptor_proto.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    // Health answers without a key, per service and overall.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "pulse.lineage.v1.LineageService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }

    // Every answer carries a request id: the caller's, or a new one.
    let mut lineage = LineageServiceClient::new(channel.clone());
    let mut req = Request::new(pb::GetNodeRequest { id: "ds1".into() });
    req.metadata_mut().insert("authorization", format!("Bearer {}", sb.tenant_a.1).parse().unwrap());
    req.metadata_mut().insert("x-request-id", "req-42".parse().unwrap());
    assert_eq!(lineage.get_node(req).await.unwrap().metadata().get("x-request-id").unwrap(), "req-42");
    let mut req = Request::new(pb::GetNodeRequest { id: "missing".into() });
    req.metadata_mut().insert("authorization", format!("Bearer {}", sb.tenant_a.1).parse().unwrap());
    let status = lineage.get_node(req).await.unwrap_err();
    assert_eq!(status.metadata().get("x-request-id").unwrap().len(), 36, "a UUID is made when none is sent");

    // A service whose implementation has not landed says so.
    let mut trainer = pulse_proto::trainer::v1::trainer_service_client::TrainerServiceClient::new(channel);
    let mut req = Request::new(Default::default());
    req.metadata_mut().insert("authorization", format!("Bearer {}", sb.tenant_a.1).parse().unwrap());
    let err = trainer.start_training(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("TrainerService/StartTraining is not served yet"), "{err:?}");
}

#[tokio::test]
async fn shutdown_is_graceful_and_bounded() {
    let sb = Sandbox::start(
        false,
        |c| c.shutdown_grace_seconds = 1,
        async |platform| vec![pulse_lineage::hosted(&platform).await.unwrap()],
    )
    .await;
    let endpoint = sb.endpoint.clone();
    let client = Client::connect(&endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    client
        .record_node(node("ds1", NodeKind::Datasource, &[("name", "n"), ("connector", "postgres")]), None)
        .await
        .unwrap();
    // A health watch never ends on its own; shutdown must not wait for it
    // past the grace period, and the watcher is told NOT_SERVING first.
    let channel =
        pulse_proto::tonic::transport::Endpoint::from_shared(endpoint.clone()).unwrap().connect().await.unwrap();
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(watch.message().await.unwrap().unwrap().status, serving);
    let Sandbox { server, .. } = sb;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    let next = watch.message().await.unwrap().unwrap().status;
    assert_eq!(next, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
    stopping.await.unwrap().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    let err = Client::connect(&endpoint, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}
