"""Retraining policies, pipelines, runs and events: what the SDK checks
before anything is sent.

A malformed spec (an unknown key, enum value or duration, two kinds in one
step or trigger) raises `pulse.InvalidSpec` — both a `ValueError` and a
`pulse.InvalidArgument` — whose message names the field's path, and the
server sees no call at all (its per-method request counters do not move).
Well-formed specs, written in every spelling the SDK accepts, pass these
checks and reach the server.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.request
from typing import Any, Callable

import pytest
from conftest import Server

import pulse

SAMPLE = re.compile(r"^pulse_grpc_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)

# The drift service's new calls, by their gRPC method names.
METHODS = (
    "SetRetrainingPolicy",
    "GetRetrainingPolicy",
    "ListRetrainingPolicies",
    "EvaluatePolicies",
    "ListPolicyDecisions",
    "CreatePipeline",
    "UpdatePipeline",
    "GetPipeline",
    "ListPipelines",
    "StartPipelineRun",
    "GetPipelineRun",
    "ListPipelineRuns",
    "CancelPipelineRun",
    "RetryPipelineRun",
    "GetRunTimeline",
    "PublishEvents",
    "ListEvents",
    "WatchEvents",
    "ReplayEvents",
)


def calls_seen(server: Server) -> float:
    """Requests the server counted for the calls above, whatever their answer."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for m in SAMPLE.finditer(text):
        labels = m.group("labels")
        if any(f'method="{name}"' in labels for name in METHODS):
            total += float(m.group("value"))
    return total


ACTION = {"method": "pulse.trainer.v1.TrainerService/StartTraining", "request": {"model": "${inputs.model}"}}


def policy(c: pulse.Client, **kw: Any) -> Any:
    return c.set_retraining_policy("churn", **{"triggers": [{"feedback": 10}], **kw})


def pipeline(c: pulse.Client, steps: Any, **kw: Any) -> Any:
    return c.create_pipeline("p", steps, **kw)


# (case, the call, words its message must contain)
BAD: list[tuple[str, Callable[[pulse.Client], Any], list[str]]] = [
    ("bad duration", lambda c: policy(c, triggers=[{"feedback": 10}], cooldown="24x"),
     ["cooldown", "'24x'", "not a duration"]),
    ("words as a duration", lambda c: pipeline(c, steps=[{"id": "wait", "delay": "ten minutes"}]),
     ["steps[0].delay.duration", "'ten minutes'"]),
    ("negative duration", lambda c: policy(c, triggers=[{"feedback": 10}], cooldown=-60),
     ["cooldown", "negative"]),
    ("bad nested duration",
     lambda c: pipeline(c, steps=[{"id": "train", "action": ACTION, "retry": {"initial_backoff": "1y"}}]),
     ["steps[0].retry.initial_backoff", "'1y'"]),
    ("unknown metric", lambda c: policy(c, triggers=[{"drift": {"metric": "psx"}}]),
     ["triggers[0].drift.metric", "'psx'", "PSI"]),
    ("unknown combination", lambda c: policy(c, triggers=[{"feedback": 10}], combine="most"),
     ["combine", "'most'", "ANY", "ALL"]),
    ("unknown on_false",
     lambda c: pipeline(c, steps=[{"id": "gate", "condition": {"expression": "true", "on_false": "halt"}}]),
     ["steps[0].condition.on_false", "'halt'", "STOP"]),
    ("unknown promotion stage",
     lambda c: policy(c, triggers=[{"feedback": 10}], retrain={"promote_to": "prod"}),
     ["retrain.promote_to", "'prod'", "PRODUCTION"]),
    ("unknown run status", lambda c: c.list_runs(status="sleeping"), ["status", "'sleeping'", "RUNNING"]),
    ("unknown filter op",
     lambda c: pipeline(c, steps=[{"id": "train", "action": ACTION}],
                      trigger={"event": {"name": "acme.orders.loaded.v1",
                                         "filters": [{"field": "payload.model", "op": "like"}]}}),
     ["trigger.event.filters[0].op", "'like'", "EQUALS"]),
    ("unknown trigger key", lambda c: policy(c, triggers=[{"drift": {"metric": "psi", "treshold": 0.2}}]),
     ["triggers[0].drift", "'treshold'", "did you mean 'threshold'"]),
    ("unknown trigger kind", lambda c: policy(c, triggers=[{"drfit": {"metric": "psi"}}]),
     ["triggers[0]", "'drfit'", "drift", "schedule"]),
    ("unknown step key", lambda c: pipeline(c, steps=[{"id": "train", "action": {"methd": "x"}}]),
     ["steps[0].action", "'methd'", "did you mean 'method'"]),
    ("unknown key in a branch",
     lambda c: pipeline(c, steps=[{"id": "both", "parallel": {"branches": [
         {"name": "a", "steps": [{"id": "train", "action": ACTION}]},
         {"name": "b", "steps": [{"id": "wait", "delay": "1m", "colour": "red"}]}]}}]),
     ["steps[0].parallel.branches[1].steps[0]", "'colour'"]),
    ("unknown pipeline trigger", lambda c: pipeline(c, steps=[{"id": "train", "action": ACTION}],
                                                  trigger={"crn": "0 3 * * *"}),
     ["trigger", "'crn'", "did you mean 'cron'"]),
    ("unknown retrain key", lambda c: policy(c, triggers=[{"feedback": 10}], retrain={"epochs": 3}),
     ["retrain", "'epochs'", "params"]),
    ("unknown event key", lambda c: c.publish_events([{"name": "acme.orders.loaded.v1", "paylod": {}}]),
     ["events[0]", "'paylod'", "did you mean 'payload'"]),
    ("two kinds in one step",
     lambda c: pipeline(c, steps=[{"id": "x", "action": ACTION, "delay": "10m"}]),
     ["steps[0]", "'action'", "'delay'"]),
    ("two kinds in one trigger",
     lambda c: policy(c, triggers=[{"drift": {"metric": "psi"}, "schedule": "0 3 * * *"}]),
     ["triggers[0]", "'drift'", "'schedule'"]),
    ("a number for text", lambda c: policy(c, triggers=[{"schedule": {"cron": 3}}]),
     ["triggers[0].schedule.cron", "str"]),
    ("a negative count", lambda c: pipeline(c, steps=[{"id": "train", "action": ACTION, "retry": -1}]),
     ["steps[0].retry.max_attempts", "-1"]),
    ("a list for inputs", lambda c: c.start_pipeline("p", inputs=["model", "churn"]), ["inputs", "dict"]),
    ("steps as text", lambda c: pipeline(c, steps="train"), ["steps", "list"]),
    ("not a time", lambda c: c.list_events(since="yesterday"), ["selector.range.from", "'yesterday'"]),
    ("NaN in a payload", lambda c: c.publish_event("acme.orders.loaded.v1", {"rows": float("nan")}),
     ["NaN"]),
    ("a number for an event name", lambda c: c.watch_events(name=5), ["selector.name", "str"]),
    ("ids and a selector", lambda c: c.replay(message_ids=["m1"], name="acme.orders.loaded.v1"),
     ["message_ids", "not both"]),
]


@pytest.mark.parametrize(("call", "words"), [(call, words) for _, call, words in BAD], ids=[b[0] for b in BAD])
def test_a_malformed_spec_is_refused_before_sending(
    client: pulse.Client, server: Server, call: Callable[[pulse.Client], Any], words: list[str]
) -> None:
    before = calls_seen(server)
    with pytest.raises(ValueError) as e:
        call(client)
    err = e.value
    assert isinstance(err, pulse.InvalidSpec) and isinstance(err, pulse.InvalidArgument)
    assert err.code == "INVALID_ARGUMENT"
    assert err.message == str(err)
    for word in words:
        assert word in str(err), f"{word!r} not in {str(err)!r}"
    assert calls_seen(server) == before, "the malformed request reached the server"


def test_invalid_spec_is_a_value_error_and_an_invalid_argument() -> None:
    assert issubclass(pulse.InvalidSpec, ValueError)
    assert issubclass(pulse.InvalidSpec, pulse.InvalidArgument)
    assert issubclass(pulse.InvalidSpec, pulse.PulseError)
    assert pulse.InvalidSpec is pulse._native.InvalidSpec
    assert pulse.InvalidSpec.__module__ == "pulse" and pulse.InvalidSpec.__doc__
    assert "InvalidSpec" in pulse.__all__


def test_the_counter_sees_calls_that_reach_the_server(client: pulse.Client, server: Server, uid: str) -> None:
    # The control for the test above: a well-formed request is counted,
    # whatever the server answers.
    before = calls_seen(server)
    try:
        client.get_run(f"run_missing{uid}")
    except pulse.PulseError as e:
        assert not isinstance(e, pulse.InvalidSpec)
    assert calls_seen(server) > before


def reaches_server(call: Callable[[], Any]) -> None:
    """The SDK accepted the request: it was sent, and any refusal is the
    server's (UNIMPLEMENTED while the server side is being written)."""
    try:
        call()
    except pulse.InvalidSpec:
        raise
    except (pulse.Unimplemented, pulse.NotFound):
        pass


def test_every_accepted_spelling_passes_the_checks(client: pulse.Client, uid: str) -> None:
    # Paused and dry-run throughout: once the server side lands, nothing here
    # may start a run on the shared server.
    name = f"p-{uid}".lower()[:60]
    steps = [
        {"id": "check", "action": {"method": "pulse.drift.v1.DriftService/CheckDrift",
                                   "request": {"model": "${inputs.model}", "dry_run": True}, "wait": True},
         "retry": {"max_attempts": 3, "initial_backoff": "1s", "max_backoff": "5m", "multiplier": 2},
         "timeout": dt.timedelta(minutes=30)},
        {"id": "gate", "condition": "steps.check.output.status == 'DRIFT_STATUS_DRIFT'"},
        {"id": "gate2", "condition": {"expression": "true", "on_false": "skip_n", "skip_count": 1}},
        {"id": "pause", "delay": "1h30m"},
        {"id": "until", "delay": {"at": dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)}},
        {"id": "both", "parallel": {"branches": [
            {"name": "a", "steps": [{"id": "wait_a", "delay": 0.5}]},
            {"name": "b", "steps": [{"id": "wait_b", "delay": {"duration": "500ms"}, "replay_safe": True}]},
        ]}},
    ]
    reaches_server(lambda: client.create_pipeline(name, steps, trigger={"cron": "0 3 * * *"},
                                                  default_inputs={"model": "churn"}, paused=True))
    reaches_server(lambda: client.create_pipeline(
        name + "-e", [{"id": "train", "action": ACTION, "retry": 2}],
        trigger={"event": {"name": "acme.orders.*", "filters": [{"field": "payload.model", "op": "FILTER_OP_IN",
                                                                 "values": ["churn", "fraud"]}]}},
        paused=True))
    reaches_server(lambda: client.set_retraining_policy(
        "churn",
        triggers=[
            {"name": "psi", "drift": {"metric": "PSI", "threshold": 0.2, "max_report_age": "6h"}},
            {"drift": {"metric": "drift_metric_ks_p_value", "feature": "tenure"}},
            {"drift": {"metric": "ks"}},
            {"performance": {"metric": "accuracy", "max_drop": 0.05}},
            {"feedback": 1000},
            {"freshness": {"new_rows": 10_000, "max_lag": 3600}},
            {"schedule": "0 3 * * 0"},
            {"schedule": {"cron": "@daily", "timezone": "Europe/Paris"}},
        ],
        combine="ALL", cooldown=dt.timedelta(hours=12), dry_run=True, paused=True,
        retrain={"mode": "incremental", "algorithm": "logistic_regression", "params": {"epochs": 3},
                 "promote_to": "staging"}))
    reaches_server(lambda: client.set_retraining_policy("churn", triggers={"feedback": 10}, cooldown=90,
                                                        dry_run=True, paused=True))
    reaches_server(lambda: client.list_runs(pipeline=name, status="running", origin="Manual"))
    reaches_server(lambda: client.list_policy_decisions("churn", fired_only=True, since=dt.timedelta(days=1)))
    reaches_server(lambda: client.list_events(name="pulse.drift.*", since=dt.datetime(2025, 1, 1),
                                              until="2030-01-01T00:00:00+02:00", newest_first=True, limit=5))
    reaches_server(lambda: client.replay(name="acme.orders.loaded.v1", since=dt.timedelta(hours=1), dry_run=True))
    reaches_server(lambda: client.replay(message_ids=["0190a1b2-0000-7000-8000-000000000000"], pipeline=name,
                                         dry_run=True))
