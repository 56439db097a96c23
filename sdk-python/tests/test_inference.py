"""The notebook journey on serving, against a live `pulse up`: predict one
row and a batch (list, pandas-free pyarrow table) after a promotion, bad
input with every problem named, feedback, a canary and a shadow, and the
serving status."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

import pulse
from test_training import CONTRACT


@pytest.fixture
def served(client: pulse.Client, churn: tuple[str, int, str]) -> str:
    dataset, version, model = churn
    client.register_contract(CONTRACT.format(model=model, min_auc=0.6))
    params = {"epochs": 6, "batch_size": 64, "learning_rate": 0.05}
    run = client.train(dataset, version, model=model, params=params, seed=1).wait(timeout=300, progress=False)
    assert client.promote(model, run.model_version).promoted
    return model


def test_predict_batch_feedback_canary_and_shadow(client: pulse.Client, churn, served: str) -> None:
    model = served
    p = client.predict(model, {"tenure": 2, "spend": 95.0, "plan": "basic"})
    assert p.id.startswith("prd_") and p.role == "primary"
    assert p.model_version == {"model": model, "version": 1}
    assert p.label in ("true", "false") and abs(sum(p.probabilities.values()) - 1) < 1e-6
    assert client.predict(model, {"tenure": 2, "spend": 95.0, "plan": "basic"}).cache_hit
    assert client.predict(model, {"tenure": 5, "spend": None, "plan": "pro"}).label in ("true", "false")

    with pytest.raises(pulse.InvalidArgument) as e:
        client.predict(model, {"tenure": 500, "plan": 3, "colour": "red"})
    for part in ("tenure: 500 is above max 100", "spend: is missing", "plan: is an int", "colour: is not a feature"):
        assert part in str(e.value), str(e.value)
    with pytest.raises(pulse.NotFound):
        client.predict("no-such-model", {"tenure": 1})

    rows = [{"tenure": t, "spend": 30.0 + t, "plan": "pro" if t % 2 else "basic"} for t in range(20)]
    table = client.predict_batch(model, rows)
    assert isinstance(table, pa.Table) and table.num_rows == 20
    assert {"prediction_id", "label", "probability_true", "probability_false"} <= set(table.column_names)
    again = client.predict_batch(model, pa.Table.from_pylist(rows), bypass_cache=True)
    assert again.column("label").to_pylist() == table.column("label").to_pylist()
    one = client.predict(model, rows[7], bypass_cache=True)
    assert abs(one.probabilities["true"] - table.column("probability_true")[7].as_py()) < 1e-6

    fb = client.record_feedback(p.id, label=True)
    assert fb.correct == (p.label == "true")
    assert client.record_feedback(p.id, label=True).id == fb.id
    with pytest.raises(pulse.AlreadyExists):
        client.record_feedback(p.id, label=False)
    with pytest.raises(pulse.NotFound):
        client.record_feedback("prd_00000000000000000000000000", label=True)
    logged = client.get_prediction(p.id)
    assert logged.features["tenure"] == {"int_value": 2} and logged.feedback.label == "true"

    dataset, version, _ = churn
    v2 = client.train(dataset, version, model=model, params={"epochs": 2}, seed=9).wait(timeout=300, progress=False)
    number = v2.model_version["version"]
    client.set_traffic(model, canary_version=number, canary_share=0.1, shadow_version=number)
    roles = [client.predict(model, r, routing_key=f"u{i}", bypass_cache=True).role for i, r in enumerate(rows * 10)]
    assert 4 <= roles.count("canary") <= 50, roles.count("canary")
    primary = next(
        p for p in (client.predict(model, rows[0], routing_key=f"x{i}") for i in range(50)) if p.role == "primary"
    )
    deadline = time.time() + 10
    while not client.get_prediction(primary.id).get("shadow"):
        assert time.time() < deadline, "no shadow answer was logged"
        time.sleep(0.05)
    assert client.get_prediction(primary.id).shadow.model_version["version"] == number
    status = client.serving_status(model)[0]
    assert status.production_version == 1 and status.breaker.state == "BREAKER_STATE_CLOSED"


def test_promotion_under_load_loses_nothing_and_the_log_exports(client: pulse.Client, churn, served: str) -> None:
    """A promotion while four threads predict: no request fails, answers move
    from version 1 to version 2, and every answer is in the exported log."""
    import datetime
    import threading

    model = served
    dataset, version, _ = churn
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    v2 = client.train(dataset, version, model=model, params={"epochs": 3}, seed=4).wait(timeout=300, progress=False)
    stop = threading.Event()
    answers: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            row = {"tenure": (worker * 7 + i) % 60, "spend": 40.0 + i % 50, "plan": "pro" if i % 2 else "basic"}
            try:
                p = client.predict(model, row, bypass_cache=True)
                answers.append((p.id, p.model_version["version"]))
            except BaseException as e:  # noqa: BLE001 - every failure counts
                errors.append(e)
            i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        assert client.promote(model, v2.model_version, force=True, reason="promotion under load").promoted
        deadline = time.time() + 15
        while not any(v == v2.model_version["version"] for _, v in answers[-50:]):
            assert time.time() < deadline, "the new version never answered"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [], errors[:3]
    versions = [v for _, v in answers]
    assert versions.count(1) > 0 and versions.count(v2.model_version["version"]) > 0
    # Once the new version answered, the old one no longer does.
    first_new = versions.index(v2.model_version["version"])
    assert versions[first_new:].count(1) <= 8, "in-flight requests only"

    table = client.export_predictions(model, since=started)
    ids = set(table.column("prediction_id").to_pylist())
    assert {i for i, _ in answers} <= ids, "every answered prediction is in the log"
    assert table.schema.field("tenure").type == pa.int64() and table.schema.field("plan").type == pa.string()
    assert set(table.column("version").to_pylist()) >= {1, v2.model_version["version"]}
    newest = client.export_predictions(model, since=started, last_n=5)
    assert newest.num_rows == 5
    with pytest.raises(pulse.InvalidArgument, match="from"):
        client._native.export_predictions('{"model": "%s"}' % model)


REGRESSION = """
model: {model}
task: regression
target: {{name: spend, type: float}}
features:
  - {{name: visits, type: float, min: 0}}
"""


def test_a_failing_model_trips_the_breaker_and_recovers(client: pulse.Client, tmp_path, uid: str) -> None:
    """A model that overflows fails loudly (INTERNAL, never a non-finite
    answer); the failures open its circuit (UNAVAILABLE at once, for every
    input); after the open period a good request closes it again."""
    csv = tmp_path / "spend.csv"
    csv.write_text("visits,spend\n" + "".join(f"{(i % 50) / 5},{3 * (i % 50) / 5 + (i % 7) * 0.1}\n" for i in range(300)))
    model = f"spend-{uid}"
    ds = client.register_datasource(model, kind="object_storage", uri=f"file://{csv}")
    ver = client.create_snapshot(ds.id, source="spend.csv", dataset=model).wait(timeout=120, progress=False)
    client.register_contract(REGRESSION.format(model=model))
    run = client.train(ver.dataset_id, ver.version, model=model, algorithm="linear_regression", seed=1).wait(
        timeout=300, progress=False
    )
    assert client.promote(model, run.model_version, force=True, reason="breaker test").promoted
    assert abs(client.predict(model, {"visits": 4.0}).value - 12.0) < 2.0

    failures = 0
    while True:
        try:
            client.predict(model, {"visits": 1e300}, bypass_cache=True)
            raise AssertionError("an overflowing model answered")
        except pulse.Internal as e:
            assert "non-finite" in str(e)
            failures += 1
            assert failures <= 20, "20 outcomes at >= 50% errors open the circuit"
        except pulse.Unavailable:
            break
    assert failures >= 10
    with pytest.raises(pulse.Unavailable, match="circuit"):
        client.predict(model, {"visits": 4.0}, bypass_cache=True)
    assert client.serving_status(model)[0].breaker.state == "BREAKER_STATE_OPEN"
    deadline = time.time() + 15
    while True:
        try:
            p = client.predict(model, {"visits": 4.0}, bypass_cache=True)
            break
        except pulse.Unavailable:
            assert time.time() < deadline, "the circuit never closed"
            time.sleep(0.25)
    assert abs(p.value - 12.0) < 2.0
    # Half-open lets probes through; enough good ones close it.
    while client.serving_status(model)[0].breaker.state != "BREAKER_STATE_CLOSED":
        assert time.time() < deadline, client.serving_status(model)[0].breaker
        client.predict(model, {"visits": 4.0}, bypass_cache=True)
