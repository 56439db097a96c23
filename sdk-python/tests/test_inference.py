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
