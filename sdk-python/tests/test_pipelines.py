"""Closing the loop through the SDK, against a live `pulse up`: shifted
traffic drifts, a retraining policy fires once and its run extracts,
validates, trains, evaluates and promotes (or refuses, saying why on the
timeline); event-triggered pipelines, duplicate signals, replay (dry run and
real, with unsafe steps skipped), cancel, retry from the failed step, and
bad definitions refused naming the field. (`kill -9` in the middle of a
policy's run: services/pulse/tests/up.rs.)"""

from __future__ import annotations

import time
import uuid

import pytest

import pulse
from test_drift import rows_like_training, served, traffic  # noqa: F401  (fixture)

GET_MODEL = "pulse.trainer.v1.TrainerService/GetModel"
EVALUATE = "pulse.trainer.v1.TrainerService/EvaluateModel"


def wait_for(what: str, f, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = f()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_drift_fires_the_policy_once_and_the_run_retrains(client: pulse.Client, served: str) -> None:
    model = served
    policy = client.set_retraining_policy(
        model, triggers=[{"drift": {"metric": "psi", "threshold": 0.2}}], cooldown="1h")
    assert policy.revision == 1
    # Nothing has drifted yet: evaluating fires nothing and records nothing.
    decisions = client.evaluate_policies(model)
    assert len(decisions) == 1 and not decisions[0].fired, decisions
    assert client.list_policy_decisions(model, fired_only=True) == []

    start, end, _ = traffic(client, model, rows_like_training(400, seed=5, shift=True))
    report = client.check_drift(model, window=(start, end))
    assert report.status == "DRIFT", report

    runs = wait_for("the policy's run", lambda: client.list_runs(pipeline="retrain", origin="policy"))
    run = runs[0].wait(timeout=300, progress=False)
    assert run.status == "SUCCEEDED", run.run
    assert [s.step_id for s in run.steps] == ["extract", "validate", "valid", "train", "evaluate", "promote"]
    assert all(s.status == "COMPLETED" for s in run.steps), run.steps
    assert run.inputs["model"] == model
    promote = run.step("promote").output
    timeline = client.pipeline_timeline(run.id)
    messages = [e.message for e in timeline]
    if promote["promoted"]:
        assert any("promoted" in m for m in messages), messages
    else:
        assert promote["refusal"], promote
        assert any("promotion refused" in m for m in messages), messages
    kinds = [e.kind for e in timeline]
    assert kinds[0] == "RUN_CREATED" and kinds[-1] == "RUN_COMPLETED", kinds
    # The run's steps made exactly one new version.
    trained = run.step("train").output["model_version"]["version"]
    assert trained == 2

    # Fired once: the cooldown holds it back on the following ticks.
    time.sleep(2.5)
    fired = client.list_policy_decisions(model, fired_only=True)
    assert len(fired) == 1 and fired[0].pipeline_run_id == run.id, fired
    assert len(client.list_runs(pipeline="retrain", origin="policy")) >= 1
    assert [r.id for r in client.list_runs(pipeline="retrain", origin="policy") if r.inputs["model"] == model] == [run.id]


def test_events_trigger_runs_once_and_replay_skips_unsafe_steps(client: pulse.Client, served: str) -> None:
    model = served
    name = f"on-load-{uuid.uuid4().hex[:6]}"
    signal = f"acme.orders{uuid.uuid4().hex[:6]}.loaded.v1"
    p = client.create_pipeline(
        name,
        trigger={"event": {"name": signal, "filters": [{"field": "payload.model", "op": "equals", "values": [model]}]}},
        steps=[
            {"id": "model", "action": {"method": GET_MODEL, "request": {"model": "${trigger.payload.model}"}}},
            {"id": "live", "condition": {"expression": "steps.model.output.production_version >= 1"}},
            {"id": "eval", "action": {"method": EVALUATE, "request": {
                "model_version": {"model": "${trigger.payload.model}",
                                  "version": "${steps.model.output.production_version}"}}}},
        ],
    )
    assert p.revision == 1

    # An event for another model does not match the filter.
    other = client.publish_event(signal, {"model": "someone-else"})
    assert other["started_run_ids"] == []
    sent = client.publish_event(signal, {"model": model}, idempotency_key=f"load-{name}")
    assert len(sent["started_run_ids"]) == 1
    run = client.get_run(sent["started_run_ids"][0]).wait(timeout=120, progress=False)
    assert run.status == "SUCCEEDED", run.run
    assert run.origin == "EVENT" and run.trigger["name"] == signal
    assert run.step("eval").status == "COMPLETED"

    # The same signal again, by idempotency key: one run, not two.
    again = client.publish_event(signal, {"model": model}, idempotency_key=f"load-{name}")
    assert again["message_ids"] == sent["message_ids"]
    assert len(client.list_runs(pipeline=name)) == 1
    # Every state change is in the event log.
    events = client.list_events(name=signal)
    assert [e.message_id for e in events] == [other["message_ids"][0], sent["message_ids"][0]]
    changes = wait_for("the run's events", lambda: [
        e for e in client.list_events(name="pulse.pipeline.*", entity_id=run.id)])
    assert {e.name for e in changes} >= {"pulse.pipeline.run_created.v1", "pulse.pipeline.run_completed.v1"}

    # Replay: a dry run plans without starting; EvaluateModel is a mutation,
    # so it is not replay-safe and is skipped.
    plan = client.replay(message_ids=sent["message_ids"], dry_run=True)
    assert plan["dry_run"] and plan["matched_events"] == 1
    (planned,) = plan["replays"][0]["runs"]
    assert planned.id == ""
    assert planned.step("eval").status == "SKIPPED" and planned.step("eval").skip_reason == "not replay-safe"
    assert planned.step("model").status == "PENDING"
    assert len(client.list_runs(pipeline=name)) == 1
    replayed = client.replay(message_ids=sent["message_ids"])
    (started,) = replayed["replays"][0]["runs"]
    done = client.get_run(started.id).wait(timeout=120, progress=False)
    assert done.status == "SUCCEEDED" and done.origin == "REPLAY"
    assert done.replay_of == sent["message_ids"][0]
    assert done.step("model").status == "COMPLETED" and done.step("eval").status == "SKIPPED"

    # The same manual start twice with one idempotency key: one run.
    key = f"manual-{name}"
    a = client.start_pipeline(name, signal={"name": signal, "payload": {"model": model}}, idempotency_key=key)
    b = client.start_pipeline(name, signal={"name": signal, "payload": {"model": model}}, idempotency_key=key)
    assert a.id == b.id


def test_cancel_retry_and_bad_definitions(client: pulse.Client, served: str) -> None:
    model = served
    suffix = uuid.uuid4().hex[:6]

    # A durable delay holds the run; cancel skips what is left.
    waits = client.create_pipeline(f"waits-{suffix}", steps=[
        {"id": "pause", "delay": {"duration": "10m"}},
        {"id": "after", "action": {"method": GET_MODEL, "request": {"model": model}}},
    ])
    run = client.start_pipeline(waits.id)
    wait_for("the delay", lambda: (client.get_run(run.id).waiting or {}).get("reason"))
    canceled = client.cancel_run(run.id, reason="not today")
    canceled = wait_for("cancel", lambda: (r := client.get_run(run.id)).status == "CANCELED" and r)
    assert canceled.cancel_reason == "not today"
    assert canceled.step("after").status == "SKIPPED" and canceled.step("after").skip_reason == "run canceled"
    with pytest.raises(pulse.FailedPrecondition):
        client.cancel_run(run.id)

    # A step that fails for good fails the run; retry runs the failed step
    # again, not the completed one before it.
    flaky = client.create_pipeline(f"flaky-{suffix}", steps=[
        {"id": "first", "action": {"method": GET_MODEL, "request": {"model": model}}},
        {"id": "missing", "action": {"method": GET_MODEL, "request": {"model": "${inputs.name}"}}},
    ])
    with pytest.raises(pulse.PulseError) as e:
        client.start_pipeline(flaky.id, inputs={"name": f"nope-{suffix}"}).wait(timeout=60, progress=False)
    failed = e.value.run
    assert failed.status == "FAILED"
    assert failed.error["step"] == "missing" and failed.error["code"] == "NOT_FOUND", failed.error
    assert failed.step("missing").attempt == 1  # NOT_FOUND is not retried
    with pytest.raises(pulse.FailedPrecondition):
        client.retry_run(wait_for("a finished run", lambda: client.list_runs(pipeline=waits.id))[0].id)
    client.retry_run(failed.id)
    with pytest.raises(pulse.PulseError) as e:
        client.get_run(failed.id).wait(timeout=60, progress=False)
    assert e.value.run.attempt == 2
    timeline = client.pipeline_timeline(failed.id)
    started = [(t.step, t.kind) for t in timeline if t.kind == "STEP_STARTED"]
    assert started.count(("first", "STEP_STARTED")) == 1, started
    assert started.count(("missing", "STEP_STARTED")) == 2, started
    assert "RUN_RETRIED" in [t.kind for t in timeline]

    # Malformed definitions name the field.
    with pytest.raises(pulse.InvalidArgument, match=r"steps\[1\]\.condition\.expression.*'trian'"):
        client.create_pipeline(f"bad-{suffix}", steps=[
            {"id": "train", "action": {"method": GET_MODEL, "request": {"model": model}}},
            {"id": "gate", "condition": {"expression": "steps.trian.output.x == 1"}},
        ])
    with pytest.raises(pulse.InvalidArgument, match=r"trigger\.cron\.expression"):
        client.create_pipeline(f"bad-{suffix}", trigger={"cron": "61 * * * *"}, steps=[
            {"id": "a", "delay": {"duration": "1s"}}])
    with pytest.raises(pulse.InvalidArgument, match=r"steps\[0\]\.action\.method"):
        client.create_pipeline(f"bad-{suffix}", steps=[{"id": "a", "action": {"method": "pulse.trainer.v1.TrainerService/Trian"}}])
    with pytest.raises(pulse.AlreadyExists):
        client.create_pipeline(f"waits-{suffix}", steps=[{"id": "a", "delay": {"duration": "1s"}}])
    with pytest.raises(pulse.InvalidArgument, match=r"policy\.triggers\[0\]\.drift\.threshold"):
        client.set_retraining_policy(model, triggers=[{"drift": {"metric": "psi", "threshold": -1}}])
    with pytest.raises(pulse.NotFound):
        client.get_run("run_00000000000000000000000000")


def test_parallel_branches_skips_delays_and_a_trigger_on_another_services_event(
        client: pulse.Client, served: str) -> None:
    model = served
    suffix = uuid.uuid4().hex[:6]
    get = {"method": GET_MODEL, "request": {"model": "${trigger.payload.model}"}}
    # Started by the trainer's own event (relayed from its outbox into the
    # log): a promotion of this model.
    p = client.create_pipeline(
        f"after-promotion-{suffix}",
        trigger={"event": {"name": "pulse.model.promoted.v1",
                           "filters": [{"field": "payload.model", "op": "equals", "values": [model]}]}},
        steps=[
            {"id": "both", "parallel": {"branches": [
                {"name": "a", "steps": [{"id": "a1", "action": get},
                                        {"id": "a2", "delay": {"duration": "1s"}}]},
                {"name": "b", "steps": [{"id": "b1", "action": get}]},
            ]}},
            {"id": "never", "condition": {"expression": "steps.a1.output.production_version > 1000",
                                          "on_false": "skip_next"}},
            {"id": "skipped", "action": get},
            {"id": "last", "condition": {"expression": "steps.b1.output.name == trigger.payload.model"}},
        ],
    )
    assert client.list_runs(pipeline=p.id) == []
    # A new version, forced into production: the trainer's event starts the run.
    ver = client.get_model_version(model, stage="production")
    new = client.train(ver.dataset["dataset_id"], ver.dataset["version"], model=model,
                       params={"epochs": 2, "batch_size": 64}, seed=3).wait(timeout=300, progress=False)
    client.promote(model, new.model_version, force=True, reason="pipeline trigger test")
    runs = wait_for("the promotion's run", lambda: client.list_runs(pipeline=p.id), timeout=60)
    run = runs[0].wait(timeout=120, progress=False)
    assert run.status == "SUCCEEDED", run.run
    assert run.trigger["name"] == "pulse.model.promoted.v1"
    status = {s.path: s.status for s in run.steps}
    assert status == {
        "both": "COMPLETED", "both/a/a1": "COMPLETED", "both/a/a2": "COMPLETED", "both/b/b1": "COMPLETED",
        "never": "COMPLETED", "skipped": "SKIPPED", "last": "COMPLETED",
    }, status
    assert run.step("never").output == {"result": False}
    assert run.step("skipped").skip_reason == "condition 'never' was false"
    assert run.step("last").output == {"result": True}
