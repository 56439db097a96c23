//! Pipeline triggers at the domain level, on the embedded store and on
//! PostgreSQL: cron ticks and events start one run per cause, however often
//! they are delivered; events older than the trigger start nothing.

use chrono::{Duration, Utc};
use pulse_common::records::record_store;
use pulse_common::store::Database;
use pulse_drift::events::EventLog;
use pulse_drift::pipeline::Pipelines;
use pulse_proto::common::v1::EventEnvelope;
use pulse_proto::drift::v1 as pb;

const TENANT: &str = "ten_0000000000000000000000000A";

async fn pipelines(postgres: bool) -> (Pipelines, Option<pulse_common::testing::TestDatabase>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (database, keep) = if postgres {
        let t = pulse_common::testing::TestDatabase::create().await;
        (Database::postgres(&t.url, 4).await.unwrap(), Some(t))
    } else {
        (Database::Embedded(dir.path().join("db")), None)
    };
    let db = database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
    (Pipelines::new(record_store(&db), EventLog::new(db)), keep, dir)
}

fn delay_step() -> pb::Step {
    pb::Step {
        id: "wait".into(),
        kind: Some(pb::step::Kind::Delay(pb::DelayStep {
            until: Some(pb::delay_step::Until::Duration(pulse_proto::prost_types::Duration { seconds: 1, nanos: 0 })),
        })),
        ..Default::default()
    }
}

async fn triggers(postgres: bool) {
    let (p, _db, _dir) = pipelines(postgres).await;
    let cron = p
        .create(
            TENANT,
            pb::Pipeline {
                name: "every-five".into(),
                trigger: Some(pb::PipelineTrigger {
                    kind: Some(pb::pipeline_trigger::Kind::Cron(pb::CronTrigger {
                        expression: "*/5 * * * *".into(),
                        timezone: "Europe/Berlin".into(),
                    })),
                }),
                steps: vec![delay_step()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let now = Utc::now();
    let first = p.cron_tick(now, now + Duration::minutes(12)).await.unwrap();
    assert_eq!(first.len(), 1, "the latest tick in the window starts one run");
    // The same window again (another replica, or a restart): no second run.
    let again = p.cron_tick(now, now + Duration::minutes(12)).await.unwrap();
    assert_eq!(again, first);
    let runs = p
        .list_runs(TENANT, &pb::ListPipelineRunsRequest { pipeline_id: cron.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].origin, pb::RunOrigin::Cron as i32);
    assert_eq!(runs[0].trigger.as_ref().unwrap().name, "pulse.pipeline.cron_fired.v1");

    let on_event = p
        .create(
            TENANT,
            pb::Pipeline {
                name: "on-load".into(),
                trigger: Some(pb::PipelineTrigger {
                    kind: Some(pb::pipeline_trigger::Kind::Event(pb::EventTrigger {
                        name: "acme.orders.*".into(),
                        filters: vec![pb::EventFilter {
                            field: "payload.table".into(),
                            op: pb::FilterOp::Equals as i32,
                            values: vec!["orders".into()],
                        }],
                    })),
                }),
                steps: vec![delay_step()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let event = |id: &str, at: chrono::DateTime<Utc>, table: &str| EventEnvelope {
        name: "acme.orders.loaded.v1".into(),
        message_id: id.into(),
        tenant_id: TENANT.into(),
        timestamp: Some(pulse_common::time::to_proto(at)),
        payload: Some(pulse_common::json::to_struct(&serde_json::json!({"table": table}))),
        ..Default::default()
    };
    let later = Utc::now() + Duration::seconds(1);
    // Before the trigger existed: nothing (only a replay would deliver it).
    assert!(p.deliver(&event("m0", later - Duration::hours(1), "orders")).await.unwrap().is_empty());
    // Another table: the filter does not match.
    assert!(p.deliver(&event("m1", later, "customers")).await.unwrap().is_empty());
    let started = p.deliver(&event("m2", later, "orders")).await.unwrap();
    assert_eq!(started.len(), 1);
    // Delivered twice: the same run.
    assert_eq!(p.deliver(&event("m2", later, "orders")).await.unwrap(), started);
    // Another tenant's event never reaches this tenant's pipeline.
    let mut foreign = event("m3", later, "orders");
    foreign.tenant_id = "ten_0000000000000000000000000B".into();
    assert!(p.deliver(&foreign).await.unwrap().is_empty());
    let runs = p
        .list_runs(TENANT, &pb::ListPipelineRunsRequest { pipeline_id: on_event.id, ..Default::default() })
        .await
        .unwrap()
        .runs;
    assert_eq!(runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), started);
}

#[tokio::test]
async fn triggers_on_the_embedded_store() {
    triggers(false).await;
}

#[tokio::test]
async fn triggers_on_postgres() {
    triggers(true).await;
}
