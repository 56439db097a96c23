//! The event log on both stores: publishing (validation naming the field,
//! duplicates, tenants), the drift schema's own outbox rows read as
//! envelopes, the relay copying another schema's outbox exactly once with
//! two relays racing and across a restart, list filters and paging,
//! watching from a resume point, and (PostgreSQL) transactions that commit
//! out of sequence order never being skipped by the relay or by readers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use pulse_common::error::{ErrorCode, ServiceError};
use pulse_common::records::{JOB_QUEUE_MIGRATIONS, Write, record_store};
use pulse_common::store::{Database, Db};
use pulse_common::testing::{Backend, embedded_backend, postgres_backend};
use pulse_drift::DriftError;
use pulse_drift::events::{
    EventLog, Relay, check_event_name, check_published_name, check_selector, entity_kind, filter_matches, matches,
    spawn_relay, validate_filters,
};
use pulse_proto::common::v1::{EnvelopeKind, EventEnvelope, PageRequest};
use pulse_proto::drift::v1::{EventFilter, EventSelector, FilterOp, TimeRange};
use pulse_proto::prost_types::{self, Timestamp};

const T0: i64 = 1_750_000_000;

fn event(name: &str, payload: serde_json::Value) -> EventEnvelope {
    let serde_json::Value::Object(map) = payload else { panic!("payloads are objects") };
    let fields = map.into_iter().map(|(k, v)| (k, value(v))).collect();
    EventEnvelope { name: name.into(), payload: Some(prost_types::Struct { fields }), ..Default::default() }
}

fn value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Array(a) => {
            Kind::ListValue(prost_types::ListValue { values: a.into_iter().map(value).collect() })
        }
        serde_json::Value::Object(o) => {
            Kind::StructValue(prost_types::Struct { fields: o.into_iter().map(|(k, v)| (k, value(v))).collect() })
        }
    };
    prost_types::Value { kind: Some(kind) }
}

fn with(mut e: EventEnvelope, f: impl FnOnce(&mut EventEnvelope)) -> EventEnvelope {
    f(&mut e);
    e
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn invalid_field(result: Result<impl std::fmt::Debug, DriftError>) -> (String, String) {
    match result {
        Err(e @ DriftError::Invalid { .. }) => {
            assert_eq!(e.code(), ErrorCode::InvalidArgument);
            let DriftError::Invalid { field, reason } = e else { unreachable!() };
            (field, reason)
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

fn selector(name: &str) -> EventSelector {
    EventSelector { name: name.into(), ..Default::default() }
}

fn page(size: u32, token: &str) -> PageRequest {
    PageRequest { page_size: size, page_token: token.into() }
}

async fn names(log: &EventLog, tenant: &str, sel: &EventSelector) -> Vec<String> {
    let (events, next) = log.list(tenant, sel, false, &page(1000, "")).await.unwrap();
    assert_eq!(next, "");
    events.into_iter().map(|e| e.name).collect()
}

async fn publish_suite(backend: Backend) {
    let log = EventLog::open(&backend.database().await).await.unwrap();

    // Validation names the field; nothing of a bad batch is stored.
    let ok = || event("acme.orders.loaded.v1", serde_json::json!({"n": 1}));
    assert_eq!(invalid_field(log.publish("t1", vec![], "").await).0, "events");
    assert_eq!(invalid_field(log.publish("t1", vec![ok(); 501], "").await).0, "events");
    let reserved = vec![ok(), ok(), ok(), event("pulse.drift.detected.v1", serde_json::json!({}))];
    let err = log.publish("t1", reserved, "").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "events[3].name: the pulse. prefix is reserved for Pulse services; use your own domain, e.g. acme.orders.loaded.v1"
    );
    let cases: Vec<(EventEnvelope, &str)> = vec![
        (event("Acme.Orders.Loaded.v1", serde_json::json!({})), "events[1].name"),
        (event("acme.orders.loaded", serde_json::json!({})), "events[1].name"),
        (event("", serde_json::json!({})), "events[1].name"),
        (with(ok(), |e| e.version = 2), "events[1].version"),
        (with(ok(), |e| e.message_id = "has space".into()), "events[1].message_id"),
        (with(ok(), |e| e.kind = 42), "events[1].kind"),
        (with(ok(), |e| e.protocol = "pulse/2".into()), "events[1].protocol"),
        (with(ok(), |e| e.timestamp = Some(Timestamp { seconds: -5, nanos: 0 })), "events[1].timestamp"),
    ];
    for (bad, field) in cases {
        assert_eq!(invalid_field(log.publish("t1", vec![ok(), bad.clone()], "").await).0, field, "{bad:?}");
    }
    assert!(names(&log, "t1", &selector("")).await.is_empty(), "a refused batch stores nothing");

    // Filled in: id (UUIDv7), time, protocol, kind, version, tenant; the
    // request's idempotency key unless the event has its own.
    let before = chrono::Utc::now().timestamp();
    let out = log
        .publish(
            "t1",
            vec![
                with(ok(), |e| {
                    e.metadata.insert("entity_id".into(), "o-1".into());
                }),
                with(event("acme.orders.shipped.v3", serde_json::json!({"order": "o-1", "late": true})), |e| {
                    e.message_id = "order-o-1-shipped".into();
                    e.timestamp = Some(Timestamp { seconds: T0, nanos: 123_456_789 });
                    e.tenant_id = "someone-else".into();
                    e.idempotency_key = "own-key".into();
                    e.kind = EnvelopeKind::Mutation as i32;
                }),
            ],
            "request-key",
        )
        .await
        .unwrap();
    assert_eq!((out.published, out.duplicates, out.message_ids.len(), out.stored.len()), (2, 0, 2, 2));
    let first = &out.stored[0];
    assert_eq!(first.message_id.len(), 36);
    assert_eq!(&first.message_id[14..15], "7", "a UUIDv7: {}", first.message_id);
    assert_eq!((first.protocol.as_str(), first.version, first.kind), ("pulse/1", 1, EnvelopeKind::Event as i32));
    assert_eq!((first.tenant_id.as_str(), first.idempotency_key.as_str()), ("t1", "request-key"));
    assert!(first.timestamp.as_ref().unwrap().seconds >= before);
    let second = &out.stored[1];
    assert_eq!(out.message_ids[1], "order-o-1-shipped");
    assert_eq!((second.version, second.kind), (3, EnvelopeKind::Mutation as i32));
    assert_eq!((second.tenant_id.as_str(), second.idempotency_key.as_str()), ("t1", "own-key"));
    // Stored to the millisecond.
    assert_eq!(second.timestamp, Some(Timestamp { seconds: T0, nanos: 123_000_000 }));
    // Read back exactly as answered.
    assert_eq!(&log.get("t1", &out.message_ids[0]).await.unwrap(), first);
    assert_eq!(&log.get("t1", "order-o-1-shipped").await.unwrap(), second);

    // A stored message_id is a duplicate, ignored (also twice in one call).
    let again = log
        .publish(
            "t1",
            vec![
                with(ok(), |e| e.message_id = "order-o-1-shipped".into()),
                with(ok(), |e| e.message_id = "fresh".into()),
                with(ok(), |e| e.message_id = "fresh".into()),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!((again.published, again.duplicates), (1, 2));
    assert_eq!(again.message_ids, ["order-o-1-shipped", "fresh", "fresh"]);
    assert_eq!(again.stored.len(), 1);
    assert_eq!(log.get("t1", "order-o-1-shipped").await.unwrap().name, "acme.orders.shipped.v3", "the first stays");
    assert_eq!(names(&log, "t1", &selector("")).await.len(), 3);

    // Another tenant sees none of it.
    let other = log.publish("t2", vec![event("globex.x.happened.v1", serde_json::json!({}))], "").await.unwrap();
    assert!(matches!(log.get("t2", "order-o-1-shipped").await, Err(DriftError::NotFound(_))));
    assert!(matches!(log.get("t1", &other.message_ids[0]).await, Err(DriftError::NotFound(_))));
    assert_eq!(names(&log, "t2", &selector("")).await, ["globex.x.happened.v1"]);
    assert!(names(&log, "t2", &selector("acme.*")).await.is_empty());
    let err = log.watch("t2", &selector(""), Some("order-o-1-shipped")).await.err().unwrap();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.to_string().contains("order-o-1-shipped"), "{err}");

    // The dispatcher's cross-tenant view: everything, positions increasing.
    let all = log.since(0, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(all.iter().filter(|(_, e)| e.tenant_id == "t2").count(), 1);
    let last = all[1].0;
    assert_eq!(log.since(last, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn publish_embedded() {
    publish_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn publish_postgres() {
    publish_suite(postgres_backend().await).await;
}

/// Events the drift domain writes with `Write::event` are in the log with
/// the envelope shape.
async fn own_events_suite(backend: Backend) {
    let database = backend.database().await;
    let log = EventLog::open(&database).await.unwrap();
    let db = database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
    let report = "drf_01JDQ0000000000000000000AB";
    let payload = serde_json::json!({"model": "churn", "version": 3, "score": 0.5});
    let writes = vec![
        Write::event("pulse.drift.checked.v1", report, payload.clone()),
        Write::event("pulse.drift.detected.v2", report, payload),
    ];
    assert!(record_store(&db).apply("t1", writes).await.unwrap());
    let (events, _) = log.list("t1", &selector("pulse.drift.*"), false, &page(0, "")).await.unwrap();
    assert_eq!(events.len(), 2);
    let e = &events[1];
    assert_eq!((e.name.as_str(), e.version, e.kind), ("pulse.drift.detected.v2", 2, EnvelopeKind::Event as i32));
    assert_eq!((e.protocol.as_str(), e.tenant_id.as_str()), ("pulse/1", "t1"));
    assert_eq!(e.message_id.len(), 36);
    let metadata: BTreeMap<_, _> = e.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(metadata, BTreeMap::from([("entity_id", report), ("entity_kind", "drift_report"), ("source", "drift")]));
    let fields = &e.payload.as_ref().unwrap().fields;
    assert_eq!(fields["model"], value(serde_json::json!("churn")));
    assert_eq!(fields["score"], value(serde_json::json!(0.5)));
    let by_entity = EventSelector { entity_id: report.into(), ..Default::default() };
    assert_eq!(names(&log, "t1", &by_entity).await.len(), 2);
    assert!(names(&log, "t2", &selector("")).await.is_empty());
}

#[tokio::test]
async fn own_events_embedded() {
    own_events_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn own_events_postgres() {
    own_events_suite(postgres_backend().await).await;
}

/// Writes `n` outbox events to the snapshot schema, `per_apply` per
/// transaction, alternating tenants; their ids.
async fn write_outbox(db: &Db, from: usize, n: usize, per_apply: usize) {
    let store = record_store(db);
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(per_apply) {
        let tenant = if chunk[0] % 2 == 0 { "t1" } else { "t2" };
        let writes = chunk
            .iter()
            .map(|i| {
                let job = format!("ext_01JDQ00000000000000000{i:04}");
                Write::event("pulse.extraction.started.v1", &job, serde_json::json!({"job_id": job, "i": i}))
            })
            .collect();
        assert!(store.apply(tenant, writes).await.unwrap());
    }
}

/// Every relayed event, checked for duplicates.
async fn relayed(log: &EventLog) -> Vec<EventEnvelope> {
    let all: Vec<EventEnvelope> = log.since(0, 10_000).await.unwrap().into_iter().map(|(_, e)| e).collect();
    let ids: BTreeSet<&str> = all.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "no event is in the log twice");
    all
}

async fn relay_suite(backend: Backend) {
    // The "snapshot service" and two drift replicas, each with its own
    // connections.
    let source_db = backend.database().await.open("snapshot", JOB_QUEUE_MIGRATIONS).await.unwrap();
    let (db_a, db_b) = (backend.database().await, backend.database().await);
    let (log_a, log_b) = (EventLog::open(&db_a).await.unwrap(), EventLog::open(&db_b).await.unwrap());
    let mut relay = Relay::new(log_a.clone(), db_a.clone());
    // An empty outbox (and schemas without one) are fine.
    assert_eq!(relay.step().await.unwrap(), 0);
    write_outbox(&source_db, 0, 10, 3).await;

    // Two relays racing while the service keeps writing.
    let writer = {
        let db = source_db.clone();
        tokio::spawn(async move {
            for round in 0..10 {
                write_outbox(&db, 10 + round * 5, 5, 2).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let racers: Vec<_> = [(log_a.clone(), db_a.clone()), (log_b.clone(), db_b.clone())]
        .into_iter()
        .map(|(log, db)| {
            tokio::spawn(async move {
                let mut relay = Relay::new(log, db);
                let mut copied = 0;
                for _ in 0..30 {
                    copied += relay.step().await.unwrap();
                    tokio::task::yield_now().await;
                }
                copied
            })
        })
        .collect();
    writer.await.unwrap();
    let mut copied = 0;
    for r in racers {
        copied += r.await.unwrap();
    }
    copied += relay.step().await.unwrap();
    copied += Relay::new(log_b.clone(), db_b.clone()).step().await.unwrap();
    assert_eq!(copied, 60, "each event copied by exactly one relay");
    let all = relayed(&log_a).await;
    assert_eq!(all.len(), 60);
    assert_eq!(relayed(&log_b).await, all, "both replicas read the one log");

    // Exactly the outbox, as envelopes.
    let outbox: Vec<_> = [record_store(&source_db).events("t1", None, 0, 1000).await.unwrap()]
        .into_iter()
        .chain([record_store(&source_db).events("t2", None, 0, 1000).await.unwrap()])
        .flatten()
        .collect();
    let last_seq = outbox.iter().map(|e| e.seq).max().unwrap();
    let by_id: BTreeMap<&str, &EventEnvelope> = all.iter().map(|e| (e.message_id.as_str(), e)).collect();
    assert_eq!(by_id.len(), outbox.len());
    for o in &outbox {
        let e = by_id[o.id.as_str()];
        assert_eq!((e.name.as_str(), e.version, e.kind), (o.name.as_str(), 1, EnvelopeKind::Event as i32));
        assert_eq!(e.tenant_id, o.tenant);
        assert_eq!(e.timestamp.as_ref().unwrap().seconds, o.at / 1000);
        assert_eq!(e.metadata["entity_id"], o.entity);
        assert_eq!(e.metadata["entity_kind"], "extraction");
        assert_eq!(e.metadata["source"], "snapshot");
        assert_eq!(e.payload.as_ref().unwrap().fields["job_id"], value(o.payload["job_id"].clone()));
    }
    // Tenants stay apart.
    let t1 = names(&log_a, "t1", &selector("pulse.extraction.*")).await.len();
    let t2 = names(&log_a, "t2", &selector("")).await.len();
    assert_eq!((t1 + t2, t1 > 0, t2 > 0), (60, true, true));
    assert_eq!(log_a.relay_cursor("snapshot").await.unwrap(), last_seq);

    // A restarted process (new connections, fresh relay state) copies only
    // what is new, through the background relay.
    drop((relay, log_b));
    write_outbox(&source_db, 60, 5, 5).await;
    let db_c = backend.database().await;
    let log_c = EventLog::open(&db_c).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_relay(log_c.clone(), db_c.clone(), Duration::from_millis(20), async move {
        let _ = stopped.await;
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while relayed(&log_c).await.len() < 65 {
        assert!(tokio::time::Instant::now() < deadline, "the relay copies the new events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(Relay::new(log_c.clone(), db_c).step().await.unwrap(), 0);
    assert_eq!(relayed(&log_c).await.len(), 65);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_embedded() {
    relay_suite(embedded_backend().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_postgres() {
    relay_suite(postgres_backend().await).await;
}

async fn list_suite(backend: Backend) {
    let log = EventLog::open(&backend.database().await).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..10i64 {
        let (name, entity) = match i {
            0..5 => ("acme.orders.loaded.v1", if i % 2 == 0 { "o-1" } else { "o-2" }),
            5..8 => ("acme.orders.shipped.v1", "o-1"),
            _ => ("acme.billing.charged.v1", "b-1"),
        };
        batch.push(with(event(name, serde_json::json!({"i": i})), |e| {
            e.message_id = format!("m{i}");
            e.timestamp = at(T0 + i);
            e.metadata.insert("entity_id".into(), entity.into());
            if i == 9 {
                e.kind = EnvelopeKind::Mutation as i32;
            }
        }));
    }
    log.publish("t1", batch, "").await.unwrap();
    log.publish("t2", vec![event("acme.orders.loaded.v1", serde_json::json!({}))], "").await.unwrap();

    let ids = |events: Vec<EventEnvelope>| events.into_iter().map(|e| e.message_id).collect::<Vec<_>>();
    let count = async |sel: EventSelector| names(&log, "t1", &sel).await.len();
    assert_eq!(count(selector("acme.orders.loaded.v1")).await, 5);
    assert_eq!(count(selector("acme.orders.*")).await, 8);
    assert_eq!(count(selector("acme.*")).await, 10);
    assert_eq!(count(selector("*")).await, 10);
    assert_eq!(count(selector("acme.orders")).await, 0, "a name without .* is exact");
    assert_eq!(count(EventSelector { entity_id: "o-1".into(), ..Default::default() }).await, 6);
    assert_eq!(count(EventSelector { kind: EnvelopeKind::Mutation as i32, ..Default::default() }).await, 1);
    assert_eq!(count(EventSelector { kind: EnvelopeKind::Event as i32, ..Default::default() }).await, 9);
    let range = |from: i64, to: Option<i64>| EventSelector {
        range: Some(TimeRange { from: at(T0 + from), to: to.and_then(|t| at(T0 + t)) }),
        ..Default::default()
    };
    let (window, _) = log.list("t1", &range(2, Some(5)), false, &page(0, "")).await.unwrap();
    assert_eq!(ids(window), ["m2", "m3", "m4"], "[from, to)");
    assert_eq!(count(range(8, None)).await, 2);
    let mixed = EventSelector { name: "acme.orders.*".into(), entity_id: "o-1".into(), ..range(1, Some(7)) };
    let (mixed, _) = log.list("t1", &mixed, false, &page(0, "")).await.unwrap();
    assert_eq!(ids(mixed), ["m2", "m4", "m5", "m6"]);

    // Paging, oldest and newest first.
    for newest_first in [false, true] {
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let (events, next) = log.list("t1", &selector(""), newest_first, &page(3, &token)).await.unwrap();
            pages += 1;
            seen.extend(ids(events));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let mut expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        if newest_first {
            expected.reverse();
        }
        assert_eq!((seen, pages), (expected, 4));
    }
    let (newest, _) = log.list("t1", &selector("acme.orders.shipped.v1"), true, &page(2, "")).await.unwrap();
    assert_eq!(ids(newest), ["m7", "m6"]);

    assert_eq!(invalid_field(log.list("t1", &selector(""), false, &page(3, "nope")).await).0, "page.page_token");
    assert_eq!(invalid_field(log.list("t1", &selector("acme.*.x"), false, &page(0, "")).await).0, "selector.name");
    assert_eq!(invalid_field(log.list("t1", &range(5, Some(5)), false, &page(0, "")).await).0, "selector.range");
}

#[tokio::test]
async fn list_embedded() {
    list_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn list_postgres() {
    list_suite(postgres_backend().await).await;
}

async fn next<S: futures::Stream<Item = Result<EventEnvelope, DriftError>> + Unpin>(stream: &mut S) -> EventEnvelope {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream goes on")
        .unwrap()
}

async fn watch_suite(backend: Backend) {
    let database = backend.database().await;
    let log = EventLog::open(&database).await.unwrap();
    // Another replica: its publishes do not wake this process, polling finds them.
    let other = EventLog::open(&backend.database().await).await.unwrap();
    let named = |name: &str, id: &str| with(event(name, serde_json::json!({})), |e| e.message_id = id.into());
    log.publish(
        "t1",
        vec![
            named("acme.orders.loaded.v1", "a"),
            named("acme.orders.loaded.v1", "b"),
            named("acme.billing.charged.v1", "c"),
            named("acme.orders.shipped.v1", "d"),
        ],
        "",
    )
    .await
    .unwrap();

    let orders = selector("acme.orders.*");
    let mut resumed = Box::pin(log.watch("t1", &orders, Some("a")).await.unwrap());
    let mut live = Box::pin(log.watch("t1", &orders, None).await.unwrap());
    // First what happened since the resume point (matching only).
    assert_eq!(next(&mut resumed).await.message_id, "b");
    assert_eq!(next(&mut resumed).await.message_id, "d");
    // Then new events, woken in this process...
    log.publish("t1", vec![named("acme.billing.charged.v1", "e"), named("acme.orders.loaded.v1", "f")], "")
        .await
        .unwrap();
    log.publish("t2", vec![named("acme.orders.loaded.v1", "t2-g")], "").await.unwrap();
    assert_eq!(next(&mut resumed).await.message_id, "f");
    assert_eq!(next(&mut live).await.message_id, "f", "from now: nothing older");
    // ...or found by polling when another process stored them.
    other.publish("t1", vec![named("acme.orders.shipped.v1", "h")], "").await.unwrap();
    assert_eq!(next(&mut resumed).await.message_id, "h");
    assert_eq!(next(&mut live).await.message_id, "h");
    // Nothing else (another tenant's, other names) is sent.
    assert!(tokio::time::timeout(Duration::from_millis(500), resumed.next()).await.is_err());

    let err = log.watch("t1", &orders, Some("no-such-id")).await.err().unwrap();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(err.to_string().contains("no-such-id"), "{err}");
    assert!(matches!(log.watch("t1", &orders, Some("t2-g")).await, Err(DriftError::NotFound(_))));
}

#[tokio::test]
async fn watch_embedded() {
    watch_suite(embedded_backend().await).await;
}

#[tokio::test]
async fn watch_postgres() {
    watch_suite(postgres_backend().await).await;
}

fn pg(db: &Db) -> &pulse_common::store::PgDb {
    match db {
        Db::Postgres(pg) => pg,
        Db::Embedded(_) => panic!("a PostgreSQL test"),
    }
}

/// PostgreSQL hands out sequence numbers before commit, so a transaction
/// can commit a lower number after a higher one is visible. The relay keeps
/// its cursor below a missing number until it commits (or its grace runs
/// out: a rollback), and log readers never skip a late row.
#[tokio::test]
async fn postgres_late_commits_are_never_skipped() {
    let backend = postgres_backend().await;
    let database: Database = backend.database().await;
    let source = database.open("snapshot", JOB_QUEUE_MIGRATIONS).await.unwrap();
    let log = EventLog::open(&database).await.unwrap();
    let mut relay = Relay::new(log.clone(), database.clone()).gap_grace(Duration::from_millis(400));
    let insert = |schema: &str, id: &str| {
        format!(
            "INSERT INTO {schema}.events (tenant, id, name, entity, at, payload) \
             VALUES ('t1', '{id}', 'pulse.extraction.started.v1', 'ext_x', 1, '{{}}')"
        )
    };

    // The outbox: a transaction holds a lower number while a higher commits.
    let mut slow = pg(&source).pool.get().await.unwrap();
    let slow_tx = slow.transaction().await.unwrap();
    slow_tx.execute(&insert("snapshot", "late"), &[]).await.unwrap();
    write_outbox(&source, 0, 1, 1).await;
    assert_eq!(relay.step().await.unwrap(), 1, "what is committed is copied at once");
    assert_eq!(log.relay_cursor("snapshot").await.unwrap(), 0, "the cursor waits below the missing number");
    slow_tx.commit().await.unwrap();
    assert_eq!(relay.step().await.unwrap(), 1, "the late row is copied");
    assert_eq!(log.relay_cursor("snapshot").await.unwrap(), 2);

    // A rolled-back number is waited for, then passed.
    let mut gone = pg(&source).pool.get().await.unwrap();
    let gone_tx = gone.transaction().await.unwrap();
    gone_tx.execute(&insert("snapshot", "rolled-back"), &[]).await.unwrap();
    gone_tx.rollback().await.unwrap();
    write_outbox(&source, 1, 1, 1).await;
    assert_eq!(relay.step().await.unwrap(), 1);
    assert_eq!(log.relay_cursor("snapshot").await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.step().await.unwrap(), 0);
    assert_eq!(log.relay_cursor("snapshot").await.unwrap(), 4);
    let ids: Vec<String> = relayed(&log).await.into_iter().map(|e| e.message_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&"late".to_string()));

    // The log itself: a reader following positions sees a late drift row.
    let drift_db = database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
    let head = log.head().await.unwrap();
    let mut slow = pg(&drift_db).pool.get().await.unwrap();
    let slow_tx = slow.transaction().await.unwrap();
    slow_tx.execute(&insert("drift", "late-drift"), &[]).await.unwrap();
    log.publish("t1", vec![event("acme.orders.loaded.v1", serde_json::json!({}))], "").await.unwrap();
    let seen = log.since(head, 100).await.unwrap();
    assert_eq!(seen.len(), 1);
    let cursor = seen[0].0;
    slow_tx.commit().await.unwrap();
    let later = log.since(cursor, 100).await.unwrap();
    assert_eq!(later.len(), 1, "the late row comes after the cursor, not before it");
    assert_eq!(later[0].1.message_id, "late-drift");
}

// ---------------------------------------------------------------- matching, without a store

fn env(name: &str, payload: serde_json::Value, metadata: &[(&str, &str)]) -> EventEnvelope {
    with(event(name, payload), |e| {
        e.kind = EnvelopeKind::Event as i32;
        e.version = 1;
        e.metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        e.timestamp = at(1_700_000_000);
    })
}

fn filter(field: &str, op: FilterOp, values: &[&str]) -> EventFilter {
    EventFilter { field: field.into(), op: op as i32, values: values.iter().map(|v| v.to_string()).collect() }
}

#[test]
fn filters_compare_text_forms() {
    use FilterOp::*;
    let e = env(
        "pulse.drift.detected.v1",
        serde_json::json!({"model": "churn", "version": 3, "score": 0.25, "breach": true,
                           "features": [{"name": "age"}], "nested": {"a": {"b": "c"}}, "none": null}),
        &[("entity_id", "drf_1"), ("entity_kind", "drift_report")],
    );
    let yes = |f: EventFilter| assert!(filter_matches(std::slice::from_ref(&f), &e), "{f:?}");
    let no = |f: EventFilter| assert!(!filter_matches(std::slice::from_ref(&f), &e), "{f:?}");
    yes(filter("payload.model", Equals, &["churn"]));
    yes(filter("payload.model", Unspecified, &["churn"]));
    yes(filter("payload.version", Equals, &["3"]));
    yes(filter("payload.score", Equals, &["0.25"]));
    yes(filter("payload.breach", Equals, &["true"]));
    yes(filter("payload.nested.a.b", Equals, &["c"]));
    yes(filter("payload.features.0.name", Equals, &["age"]));
    yes(filter("metadata.entity_id", Prefix, &["drf_"]));
    yes(filter("name", Prefix, &["pulse.drift."]));
    yes(filter("kind", Equals, &["event"]));
    yes(filter("kind", Equals, &["ENVELOPE_KIND_EVENT"]));
    yes(filter("version", In, &["2", "1"]));
    yes(filter("payload.model", NotEquals, &["fraud"]));
    yes(filter("payload.missing", NotEquals, &["x"]));
    yes(filter("payload.model", Exists, &[]));
    yes(filter("timestamp", Prefix, &["2023-11-14T22:13:20"]));
    no(filter("payload.none", Exists, &[]));
    no(filter("payload.missing", Exists, &[]));
    no(filter("payload.missing", Equals, &["x"]));
    no(filter("payload.model", In, &["a", "b"]));
    no(filter("payload.version", Equals, &["3.0"]));
    no(filter("payload.model.deeper", Equals, &["churn"]));
    // All must match.
    assert!(!filter_matches(&[filter("payload.model", Equals, &["churn"]), filter("kind", Equals, &["query"])], &e));
    assert!(filter_matches(&[], &e));
}

#[test]
fn filters_are_validated_naming_the_field() {
    use FilterOp::*;
    validate_filters("f", &[filter("payload.model", In, &["a"]), filter("kind", Exists, &[])]).unwrap();
    let field = |filters: &[EventFilter]| match validate_filters("trigger.event.filters", filters) {
        Err(DriftError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(&[filter("", Equals, &["a"])]), "trigger.event.filters[0].field");
    assert_eq!(
        field(&[filter("kind", Equals, &["a"]), filter("payload.", Equals, &["a"])]),
        "trigger.event.filters[1].field"
    );
    assert_eq!(field(&[filter("bogus", Equals, &["a"])]), "trigger.event.filters[0].field");
    assert_eq!(field(&[filter("name", Equals, &[])]), "trigger.event.filters[0].values");
    assert_eq!(field(&[filter("name", Exists, &["x"])]), "trigger.event.filters[0].values");
    assert_eq!(field(&[filter("name", In, &[])]), "trigger.event.filters[0].values");
    let bad_op = EventFilter { field: "name".into(), op: 42, values: vec!["a".into()] };
    assert_eq!(field(&[bad_op]), "trigger.event.filters[0].op");
}

#[test]
fn names_versions_and_entity_kinds() {
    assert_eq!(check_event_name("n", "acme.orders.loaded.v2").unwrap(), 2);
    assert_eq!(check_event_name("n", "pulse.drift.detected.v1").unwrap(), 1, "a trigger may name a Pulse event");
    assert!(check_published_name("n", "pulse.drift.detected.v1").is_err());
    assert_eq!(check_published_name("n", "acme.orders.loaded.v3").unwrap(), 3);
    for bad in ["acme.v1", "acme.orders.loaded", "acme.orders.loaded.v0", "acme..x.v1", "acme.orders.v01", "1acme.x.v1"]
    {
        assert!(check_event_name("n", bad).is_err(), "{bad}");
    }
    assert_eq!(entity_kind("pulse.extraction.started.v1", "ext_01JDQ0000000000000000000AB"), "extraction");
    assert_eq!(entity_kind("pulse.training.queued.v1", "trn_01JDQ0000000000000000000AB"), "training_job");
    assert_eq!(entity_kind("pulse.model.promoted.v1", "churn@00000000000000000003"), "model_version");
    assert_eq!(entity_kind("pulse.snapshot.created.v1", "orders@3"), "dataset_version");
    assert_eq!(entity_kind("pulse.dataset.current_changed.v1", "orders"), "dataset");
    assert_eq!(entity_kind("pulse.drift.monitor_set.v1", "churn"), "model");
}

#[test]
fn selectors_match_like_the_store() {
    let e = env("acme.orders.loaded.v1", serde_json::json!({}), &[("entity_id", "o-1")]);
    let sel = |name: &str| EventSelector { name: name.into(), ..Default::default() };
    assert!(matches(&sel(""), &e));
    assert!(matches(&sel("acme.*"), &e));
    assert!(matches(&sel("acme.orders.loaded.v1"), &e));
    assert!(!matches(&sel("acme.orders"), &e));
    assert!(!matches(&sel("acme.orders.x.*"), &e));
    let mut s = sel("");
    s.entity_id = "o-2".into();
    assert!(!matches(&s, &e));
    s.entity_id = "o-1".into();
    s.kind = EnvelopeKind::Query as i32;
    assert!(!matches(&s, &e));
    s.kind = 0;
    s.range = Some(TimeRange {
        from: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }),
        to: Some(Timestamp { seconds: 1_700_000_001, nanos: 0 }),
    });
    assert!(matches(&s, &e));
    s.range = Some(TimeRange { from: None, to: Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }) });
    assert!(!matches(&s, &e));
    assert!(check_selector("selector", &sel("acme.*.x")).is_err());
}
