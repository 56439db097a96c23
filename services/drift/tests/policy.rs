//! Retraining policies on a real platform (a trained, promoted model; the
//! embedded store, and PostgreSQL): validation, evaluation (dry), cooldown,
//! dry runs, ANY and ALL, firing exactly once when two schedulers race, and
//! the scheduler lease moving to another replica when its holder stops.
//! The pipeline engine is out of scope: a fake RunStarter counts calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pulse_client::Client;
use pulse_client::testing::{CHURN_CONTRACT, promote, snapshot_csv, train_logistic};
use pulse_common::records::record_store;
use pulse_common::testing::Sandbox;
use pulse_drift::DriftError;
use pulse_drift::policy::{Policies, RunStarter, Scheduler, spawn_scheduler, validate};
use pulse_proto::drift::v1::{self as pb, policy_trigger::Kind as K};
use pulse_proto::inference::v1::{self as inf, feature_value::Kind};
use pulse_proto::prost_types::Duration as PbDuration;

/// Counts starts per decision, answering the same run for a decision again.
#[derive(Default)]
struct CountingStarter {
    calls: AtomicUsize,
    runs: Mutex<BTreeMap<String, String>>,
}

#[async_trait::async_trait]
impl RunStarter for CountingStarter {
    async fn start_policy_run(
        &self,
        _tenant: &str,
        _policy: &pb::RetrainingPolicy,
        decision: &pb::PolicyDecision,
    ) -> Result<String, DriftError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut runs = self.runs.lock().unwrap();
        let n = runs.len();
        Ok(runs.entry(decision.id.clone()).or_insert_with(|| format!("run_{n}")).clone())
    }
}

impl CountingStarter {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct Setup {
    sb: Sandbox,
    client: Client,
    tenant: String,
    policies: Policies,
    _dir: tempfile::TempDir,
}

async fn setup(postgres: bool) -> Setup {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let mut csv = String::from("tenure,spend,plan,churned\n");
    for i in 0..400u64 {
        let tenure = (i * 7919) % 60;
        let plan = if i % 2 == 0 { "basic" } else { "pro" };
        csv.push_str(&format!("{tenure},{}.5,{plan},{}\n", 20 + i % 80, tenure < 12));
    }
    std::fs::write(dir.path().join("churn.csv"), csv).unwrap();
    let captured: Arc<Mutex<Option<Policies>>> = Arc::default();
    let slot = captured.clone();
    let sb = Sandbox::start(
        postgres,
        |c| {
            c.file_roots = vec![std::env::temp_dir()];
            if postgres {
                c.master_key = Some("11".repeat(32));
            }
        },
        async move |platform| {
            let datasources = pulse_datasource::open(&platform).await.unwrap();
            let snapshots = pulse_snapshot::open(&platform, datasources.clone(), None, true).await.unwrap();
            let trainer = pulse_trainer::open(&platform, snapshots.clone(), None, true).await.unwrap();
            let inference = pulse_inference::open(&platform, trainer.clone(), None).await.unwrap();
            let drift = pulse_drift::open(&platform, trainer.clone(), snapshots.clone(), inference.clone(), None)
                .await
                .unwrap();
            let db = platform.database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
            let policies = Policies::new(
                drift.drift.clone(),
                inference.clone(),
                trainer.clone(),
                snapshots.clone(),
                record_store(&db),
            )
            .with_datasources(datasources.clone());
            *slot.lock().unwrap() = Some(policies);
            vec![
                pulse_datasource::hosted(datasources, &platform),
                pulse_snapshot::hosted(snapshots, &platform),
                pulse_trainer::hosted(trainer, &platform),
                pulse_inference::hosted(inference, &platform),
                pulse_drift::hosted(drift, &platform),
            ]
        },
    )
    .await;
    let policies = captured.lock().unwrap().take().unwrap();
    let client = Client::connect(&sb.endpoint, Some(&sb.tenant_a.1)).await.unwrap();
    let data = snapshot_csv(&client, dir.path(), "churn.csv", "churn").await;
    client.register_contract(CHURN_CONTRACT).await.unwrap();
    let version = train_logistic(&client, &data, "churn", 1, 2.0).await;
    promote(&client, "churn", version).await;
    let tenant = sb.tenant_a.0.clone();
    Setup { sb, client, tenant, policies, _dir: dir }
}

fn schedule(cron: &str) -> pb::PolicyTrigger {
    pb::PolicyTrigger {
        name: String::new(),
        kind: Some(K::Schedule(pb::ScheduleCondition { cron: cron.into(), timezone: String::new() })),
    }
}

fn feedback(n: u64) -> pb::PolicyTrigger {
    pb::PolicyTrigger { name: String::new(), kind: Some(K::Feedback(pb::FeedbackCondition { new_feedback: n })) }
}

fn policy(triggers: Vec<pb::PolicyTrigger>) -> pb::RetrainingPolicy {
    pb::RetrainingPolicy {
        model: "churn".into(),
        triggers,
        cooldown: Some(PbDuration { seconds: 3600, nanos: 0 }),
        ..Default::default()
    }
}

fn minutes(t: DateTime<Utc>, m: i64) -> DateTime<Utc> {
    t + chrono::Duration::minutes(m)
}

async fn decisions(s: &Setup) -> Vec<pb::PolicyDecision> {
    s.policies.decisions(&s.tenant, &pb::ListPolicyDecisionsRequest::default()).await.unwrap().decisions
}

/// Predictions with feedback, `n` of them.
async fn feedback_on(client: &Client, n: usize) {
    let v = |k: Kind| inf::FeatureValue { kind: Some(k) };
    let rows = (0..n)
        .map(|i| inf::Row {
            features: BTreeMap::from([
                ("tenure".to_string(), v(Kind::IntValue(i as i64 % 50))),
                ("spend".to_string(), v(Kind::FloatValue(42.0))),
                ("plan".to_string(), v(Kind::CategoryValue("pro".into()))),
            ]),
        })
        .collect();
    let answer = client
        .predict_batch(inf::PredictBatchRequest {
            model: "churn".into(),
            input: Some(inf::predict_batch_request::Input::Rows(inf::Rows { rows })),
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .unwrap();
    for p in answer.predictions {
        client
            .record_feedback(inf::RecordFeedbackRequest {
                prediction_id: p.id,
                truth: Some(inf::record_feedback_request::Truth::Label("true".into())),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn invalid_field(e: DriftError) -> String {
    match e {
        DriftError::Invalid { field, .. } => field,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

async fn policies_end_to_end(postgres: bool) {
    let s = setup(postgres).await;
    let (p, t) = (&s.policies, s.tenant.as_str());
    let starter = Arc::new(CountingStarter::default());
    let scheduler = Scheduler::new(p.clone(), starter.clone(), Duration::from_secs(60));

    // Validation names fields; the model must exist; no policy yet.
    let bad = policy(vec![schedule("@daily"), schedule("61 * * * *")]);
    assert_eq!(invalid_field(p.set(t, bad).await.unwrap_err()), "policy.triggers[1].schedule.cron");
    let mut unknown = policy(vec![schedule("@daily")]);
    unknown.model = "nope".into();
    assert!(matches!(p.set(t, unknown).await.unwrap_err(), DriftError::Trainer(_)));
    let e = p.get(t, "churn").await.unwrap_err();
    assert!(matches!(e, DriftError::NotFound(_)) && e.to_string().contains("SetRetrainingPolicy"), "{e}");

    // ALL: a schedule every minute and 3 new feedback; no cooldown.
    let mut both = policy(vec![schedule("* * * * *"), feedback(3)]);
    both.combine = pb::TriggerCombination::All as i32;
    both.cooldown = Some(PbDuration::default());
    let set = p.set(t, both).await.unwrap();
    assert_eq!(
        (set.revision, set.triggers[0].name.as_str(), set.triggers[1].name.as_str()),
        (1, "schedule", "feedback")
    );
    let t0 = pulse_common::time::from_proto(set.updated_at.as_ref().unwrap()).unwrap();
    // Evaluate is dry: a decision without id, nothing recorded.
    let dry = p.evaluate(t, "churn", minutes(t0, 2)).await.unwrap();
    assert_eq!(dry.len(), 1);
    assert!(!dry[0].fired && dry[0].id.is_empty(), "{:?}", dry[0]);
    assert!(dry[0].triggers[0].met, "{:?}", dry[0]);
    assert!(decisions(&s).await.is_empty());
    assert_eq!(p.evaluate(t, "", minutes(t0, 2)).await.unwrap().len(), 1);
    // The schedule alone is not enough.
    assert!(scheduler.tick(minutes(t0, 2)).await.unwrap().fired.is_empty());
    let d = &decisions(&s).await[0];
    assert!(
        d.reason.starts_with("not fired: 1 of 2 triggers not met (feedback: 0 new feedback < 3 (since the production"),
        "{}",
        d.reason
    );
    // With the feedback it fires.
    feedback_on(&s.client, 3).await;
    let evaluated = p.evaluate(t, "churn", minutes(t0, 3)).await.unwrap();
    assert_eq!(evaluated[0].triggers[1].observed, Some(3.0), "{:?}", evaluated[0]);
    let tick = scheduler.tick(minutes(t0, 3)).await.unwrap();
    assert_eq!((tick.fired.len(), tick.runs_started), (1, 1), "{tick:?}");
    assert_eq!(starter.calls(), 1);
    let d = &decisions(&s).await[0];
    assert!(d.fired && !d.dry_run && d.pipeline_run_id == "run_0", "{d:?}");
    assert!(d.reason.starts_with("fired: schedule: cron '* * * * * (UTC)' ticked at"), "{}", d.reason);
    let fired_at = p.get(t, "churn").await.unwrap().last_fired_at.unwrap();
    assert_eq!(pulse_common::time::from_proto(&fired_at).unwrap(), minutes(t0, 3));
    // Feedback counts restart at the firing.
    let after = p.evaluate(t, "churn", minutes(t0, 4)).await.unwrap();
    assert!(!after[0].fired && after[0].triggers[1].reason.starts_with("0 new feedback < 3 (since the last firing)"));

    // ANY: a schedule every minute or much feedback; cooldown 1 h.
    let set = p.set(t, policy(vec![schedule("* * * * *"), feedback(1_000_000)])).await.unwrap();
    assert_eq!(set.revision, 2);
    assert_eq!(set.last_fired_at, Some(fired_at), "a new revision keeps the last firing");
    let now1 = minutes(t0, 120);
    let e = p.evaluate(t, "churn", now1).await.unwrap();
    assert!(e[0].fired && e[0].triggers[1].reason.contains("new feedback < 1000000"), "{:?}", e[0]);
    assert_eq!(scheduler.tick(now1).await.unwrap().fired.len(), 1);
    assert_eq!(starter.calls(), 2);

    // Cooldown: not fired, recorded once with the reason, then not again.
    let tick = scheduler.tick(minutes(now1, 2)).await.unwrap();
    assert!(tick.fired.is_empty());
    let all = decisions(&s).await;
    assert_eq!(all.len(), 4);
    assert!(!all[0].fired && all[0].reason.starts_with("not fired: in cooldown until"), "{}", all[0].reason);
    scheduler.tick(minutes(now1, 4)).await.unwrap();
    assert_eq!(decisions(&s).await.len(), 4, "an unchanged not-fired reason is not recorded again");
    let fired_only = p
        .decisions(t, &pb::ListPolicyDecisionsRequest { fired_only: true, ..Default::default() })
        .await
        .unwrap()
        .decisions;
    assert_eq!(fired_only.len(), 2);
    let paged = p
        .decisions(
            t,
            &pb::ListPolicyDecisionsRequest {
                page: Some(pulse_proto::common::v1::PageRequest { page_size: 3, page_token: String::new() }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let next = paged.page.unwrap().next_page_token;
    assert_eq!((paged.decisions.len(), next.as_str()), (3, paged.decisions[2].id.as_str()));
    // After the cooldown it fires again.
    let now3 = minutes(now1, 62);
    assert_eq!(scheduler.tick(now3).await.unwrap().fired.len(), 1);
    assert_eq!(starter.calls(), 3);

    // Dry run: fired, recorded, nothing started.
    let mut dry = policy(vec![schedule("* * * * *")]);
    dry.dry_run = true;
    p.set(t, dry).await.unwrap();
    let calls = starter.calls();
    let tick = scheduler.tick(minutes(now3, 180)).await.unwrap();
    assert_eq!((tick.fired.len(), tick.runs_started), (1, 0));
    let d = &decisions(&s).await[0];
    assert!(d.fired && d.dry_run && d.pipeline_run_id.is_empty(), "{d:?}");
    assert!(d.reason.starts_with("fired (dry run)"));
    assert_eq!(starter.calls(), calls);

    // Paused: not fired.
    let mut paused = policy(vec![schedule("* * * * *")]);
    paused.paused = true;
    p.set(t, paused).await.unwrap();
    let e = p.evaluate(t, "churn", minutes(now3, 600)).await.unwrap();
    assert_eq!((e[0].fired, e[0].reason.as_str()), (false, "not fired: paused"));

    // Two schedulers racing on the same store fire exactly once per tick.
    let mut race = policy(vec![schedule("* * * * *")]);
    race.cooldown = Some(PbDuration { seconds: 60, nanos: 0 });
    p.set(t, race).await.unwrap();
    let other = Scheduler::new(p.clone(), starter.clone(), Duration::from_secs(60));
    let (before_calls, before) = (starter.calls(), decisions(&s).await.iter().filter(|d| d.fired).count());
    let before_runs = starter.runs.lock().unwrap().len();
    let mut fired = 0;
    for round in 0..5 {
        let now = minutes(now3, 1000 + round * 10);
        let (a, b) = tokio::join!(scheduler.tick(now), other.tick(now));
        fired += a.unwrap().fired.len() + b.unwrap().fired.len();
    }
    assert_eq!(fired, 5, "one firing per round");
    assert!(starter.calls() - before_calls >= 5);
    assert_eq!(starter.runs.lock().unwrap().len(), before_runs + 5, "one run per firing");
    let after = decisions(&s).await.iter().filter(|d| d.fired).count();
    assert_eq!(after - before, 5);
    assert!(decisions(&s).await.iter().filter(|d| d.fired && !d.dry_run).all(|d| !d.pipeline_run_id.is_empty()));

    // Due monitors are checked by the tick (once per interval), and a drift
    // trigger reads the report: 3 predictions are too few to judge.
    s.client.set_monitor(pb::Monitor { model: "churn".into(), ..Default::default() }).await.unwrap();
    let drift = pb::PolicyTrigger { name: String::new(), kind: Some(K::Drift(pb::DriftCondition::default())) };
    p.set(t, policy(vec![drift])).await.unwrap();
    let now = Utc::now();
    assert_eq!(scheduler.tick(now).await.unwrap().monitors_checked, 1);
    assert_eq!(scheduler.tick(now).await.unwrap().monitors_checked, 0, "not due again within the interval");
    let e = p.evaluate(t, "churn", now).await.unwrap();
    assert!(!e[0].fired && e[0].triggers[0].reason.contains("too few rows to judge (3)"), "{:?}", e[0]);

    // Other tenants see nothing.
    let b = &s.sb.tenant_b.0;
    assert!(p.list(b, &pb::ListRetrainingPoliciesRequest::default()).await.unwrap().policies.is_empty());
    assert!(matches!(p.get(b, "churn").await.unwrap_err(), DriftError::NotFound(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_on_the_embedded_store() {
    policies_end_to_end(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_on_postgres() {
    policies_end_to_end(true).await;
}

async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lease: taken, renewed, refused to others, taken over once expired;
/// with spawned schedulers it moves when the holder stops renewing, and a
/// graceful stop gives it up.
async fn lease_moves(postgres: bool) {
    let backend = if postgres {
        pulse_common::testing::postgres_backend().await
    } else {
        pulse_common::testing::embedded_backend().await
    };
    // The lease needs only the drift store; the domains are never called.
    let (s, _dir) = setup_lease_only(&backend).await;
    let starter: Arc<dyn RunStarter> = Arc::new(CountingStarter::default());
    let a = Scheduler::new(s.clone(), starter.clone(), Duration::from_millis(500));
    let b = Scheduler::new(s.clone(), starter.clone(), Duration::from_millis(500));
    let now = Utc::now();
    assert!(a.try_lead(now).await.unwrap());
    assert!(!b.try_lead(now).await.unwrap());
    assert!(a.try_lead(now + chrono::Duration::milliseconds(400)).await.unwrap(), "the holder renews");
    assert!(!b.try_lead(now + chrono::Duration::milliseconds(800)).await.unwrap(), "renewed until 900 ms");
    assert!(b.try_lead(now + chrono::Duration::milliseconds(901)).await.unwrap(), "expired: taken over");
    assert!(!a.try_lead(now + chrono::Duration::milliseconds(902)).await.unwrap());
    b.release().await.unwrap();
    assert!(a.try_lead(now + chrono::Duration::milliseconds(903)).await.unwrap(), "released: free at once");
    a.release().await.unwrap();

    // Spawned: the first replica leads; killed, the second takes over.
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let first = spawn_scheduler(s.clone(), starter.clone(), Duration::from_millis(50), rx_a);
    let holder = async || a.lease().await.unwrap().map(|l| l.holder).unwrap_or_default();
    wait_for("the first replica to lead", async || !holder().await.is_empty()).await;
    let first_holder = holder().await;
    let (stop_b, rx_b) = tokio::sync::watch::channel(false);
    let second = spawn_scheduler(s.clone(), starter.clone(), Duration::from_millis(50), rx_b);
    // While the first renews, it keeps the lease.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(holder().await, first_holder);
    }
    first.abort();
    let _ = first.await;
    drop(stop_a);
    wait_for("the second replica to take over", async || {
        let h = holder().await;
        !h.is_empty() && h != first_holder
    })
    .await;
    // A graceful stop gives the lease up.
    stop_b.send(true).unwrap();
    second.await.unwrap();
    let lease = a.lease().await.unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.until_ms), ("", 0));
}

/// Policies over a bare drift store: enough for the lease.
async fn setup_lease_only(backend: &pulse_common::testing::Backend) -> (Policies, tempfile::TempDir) {
    let (mut config, dir) = pulse_common::testing::embedded_config();
    if let pulse_common::testing::Backend::Postgres(db) = backend {
        config.database_url = Some(db.url.clone());
        config.master_key = Some("11".repeat(32));
    }
    let platform = pulse_common::host::Platform::start(config).await.unwrap();
    let datasources = pulse_datasource::open(&platform).await.unwrap();
    let snapshots = pulse_snapshot::open(&platform, datasources, None, false).await.unwrap();
    let trainer = pulse_trainer::open(&platform, snapshots.clone(), None, false).await.unwrap();
    let inference = pulse_inference::open(&platform, trainer.clone(), None).await.unwrap();
    let drift =
        pulse_drift::open(&platform, trainer.clone(), snapshots.clone(), inference.clone(), None).await.unwrap();
    let db = platform.database.open(pulse_drift::SCHEMA, pulse_drift::MIGRATIONS).await.unwrap();
    (Policies::new(drift.drift, inference, trainer, snapshots, record_store(&db)), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_moves_on_the_embedded_store() {
    lease_moves(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_moves_on_postgres() {
    lease_moves(true).await;
}

#[test]
fn validation_is_reachable_without_a_platform() {
    let p = validate(&policy(vec![schedule("@hourly")])).unwrap();
    assert_eq!(p.combine, pb::TriggerCombination::Any as i32);
}
