"""The notebook journey on drift, against a live `pulse up`: traffic drawn
like the training data is OK, shifted traffic drifts (and every statistic
agrees with SciPy on the same rows to 1e-6), too few rows is
INSUFFICIENT_DATA, a dry run stores nothing, feedback gives the
performance section; monitors and baselines; bad input with clear errors."""

from __future__ import annotations

import datetime
import math
import random
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

import pulse
from test_training import CONTRACT

BINS = 10  # the monitor's default
EPS = 1e-4  # PSI's default floor
NUMERIC = ("tenure", "spend")


@pytest.fixture
def served(client: pulse.Client, churn: tuple[str, int, str]) -> str:
    dataset, version, model = churn
    client.register_contract(CONTRACT.format(model=model, min_auc=0.6))
    params = {"epochs": 6, "batch_size": 64, "learning_rate": 0.05}
    run = client.train(dataset, version, model=model, params=params, seed=1).wait(timeout=300, progress=False)
    assert client.promote(model, run.model_version).promoted
    return model


def rows_like_training(n: int, seed: int, shift: bool = False) -> list[dict[str, Any]]:
    """Rows drawn as conftest.churn_csv draws them; `shift` moves tenure up
    by 25 and scales spend by 1.6."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tenure = rng.randint(0, 60)
        spend = rng.uniform(20, 100)
        plan = rng.choice(["basic", "pro", "team"])
        if shift:
            tenure, spend = tenure + 25, spend * 1.6
        out.append({"tenure": tenure, "spend": None if i % 13 == 0 else round(spend, 2), "plan": plan})
    return out


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def traffic(client: pulse.Client, model: str, rows: list[dict[str, Any]]) -> tuple[datetime.datetime, datetime.datetime, pa.Table]:
    """Predicts `rows` and answers [start, end) covering exactly them."""
    start = now()
    time.sleep(0.01)
    table = client.predict_batch(model, rows, bypass_cache=True)
    time.sleep(0.01)
    return start, now(), table


def column(table: pa.Table, name: str) -> np.ndarray:
    """Non-null, finite values as float64, as the drift service compares them."""
    values = pc.drop_null(table.column(name)).to_numpy().astype(np.float64)
    return values[np.isfinite(values)]


def bins(reference: np.ndarray, current: np.ndarray, k: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts over reference-quantile bins: inner edges np.quantile(ref, j/k)
    ('linear'), deduplicated, outer edges ±inf; bin i is [e_i, e_i+1)."""
    inner = np.unique(np.quantile(reference, np.arange(1, k) / k))
    edges = np.concatenate(([-np.inf], inner[np.isfinite(inner)], [np.inf]))

    def hist(x: np.ndarray) -> np.ndarray:
        return np.diff(np.searchsorted(np.sort(x), edges, side="left")).astype(np.float64)

    return hist(reference), hist(current)


def psi(hr: np.ndarray, hc: np.ndarray, eps: float = EPS) -> float:
    p = np.maximum(hr / hr.sum(), eps)
    q = np.maximum(hc / hc.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def scipy_agreement(report: pulse.DriftReport, reference: pa.Table, current: pa.Table) -> dict[str, float]:
    """Recomputes every statistic of the report's features with SciPy and
    answers the largest |Pulse - SciPy| per metric (asserting ≤ 1e-6)."""
    worst: dict[str, float] = {}

    def agree(feature: str, metric: str, expected: float) -> None:
        got = report.feature(feature).value(metric)
        assert got is not None, f"{feature}: no {metric} in {report.feature(feature)}"
        diff = abs(got - expected)
        worst[metric] = max(worst.get(metric, 0.0), diff)
        assert diff <= 1e-6, f"{feature} {metric}: Pulse {got!r}, SciPy {expected!r}"

    for name in NUMERIC:
        ref, cur = column(reference, name), column(current, name)
        f = report.feature(name)
        assert (f.reference_count, f.current_count) == (len(ref), len(cur)), (name, f)
        ks = stats.ks_2samp(ref, cur)
        agree(name, "ks_statistic", float(ks.statistic))
        agree(name, "ks_p_value", float(ks.pvalue))
        agree(name, "wasserstein", float(stats.wasserstein_distance(ref, cur)))
        hr, hc = bins(ref, cur)
        agree(name, "psi", psi(hr, hc))
        agree(name, "jensen_shannon", float(jensenshannon(hr, hc)))

    # The categorical feature: PSI over the categories and the chi-square
    # test of homogeneity of the two samples' counts (the 2×k table, SciPy's
    # default Yates correction when there are two categories).
    ref_plan = pc.drop_null(reference.column("plan")).to_pylist()
    cur_plan = pc.drop_null(current.column("plan")).to_pylist()
    cats = sorted(set(ref_plan) | set(cur_plan))
    hr = np.array([ref_plan.count(c) for c in cats], dtype=np.float64)
    hc = np.array([cur_plan.count(c) for c in cats], dtype=np.float64)
    agree("plan", "psi", psi(hr, hc))
    keep = (hr > 0) | (hc > 0)
    chi = stats.chi2_contingency(np.array([hr[keep], hc[keep]]))
    agree("plan", "chi_square_statistic", float(chi.statistic))
    agree("plan", "chi_square_p_value", float(chi.pvalue))
    return worst


def test_drift_ok_then_drift_and_scipy_agrees(client: pulse.Client, churn, served: str) -> None:
    model = served
    dataset, version, _ = churn
    reference = client.read_snapshot(dataset, version)

    # Traffic like the training data: OK.
    calm_from, calm_to, _ = traffic(client, model, rows_like_training(800, seed=11))
    calm = client.check_drift(model, window=(calm_from, calm_to))
    assert isinstance(calm, pulse.DriftReport)
    assert calm.status == "OK", calm
    assert calm.id.startswith("drf_") and calm.drifted_features == [] and calm.score == 0.0
    assert calm.current_rows == 800 and calm.reference_source == "training"
    assert calm.reference_dataset == {"dataset_id": dataset, "version": version}
    assert calm.model_version == {"model": model, "version": 1}
    assert [f.feature for f in calm.features] == ["tenure", "spend", "plan"]
    tenure = calm.feature("tenure")
    assert tenure.kind == "numeric" and calm.feature("plan").kind == "categorical"
    assert {m.metric for m in tenure.metrics} == {"psi", "ks_statistic", "ks_p_value", "jensen_shannon", "wasserstein"}
    assert tenure.metric("psi").threshold == 0.2 and tenure.metric("ks_p_value").threshold == 0.05
    assert not tenure.drifted and tenure.reference_count == 1500
    spend = calm.feature("spend")
    assert spend.current_null_count == len(range(0, 800, 13)) and spend.current_count == 800 - spend.current_null_count
    assert calm.prediction.feature == "_prediction" and calm.prediction.kind == "categorical"
    calm_log = client.export_predictions(model, since=calm_from, until=calm_to)
    assert calm_log.num_rows == 800
    worst_calm = scipy_agreement(calm, reference, calm_log)

    # Shifted traffic in a later window: DRIFT, tenure first among the drifted.
    time.sleep(0.01)
    shift_from, shift_to, shifted = traffic(client, model, rows_like_training(400, seed=12, shift=True))
    drift = client.check_drift(model, window=(shift_from, shift_to))
    assert drift.status == "DRIFT", drift
    assert "tenure" in drift.drifted_features and "spend" in drift.drifted_features
    assert "plan" not in drift.drifted_features
    assert drift.score == pytest.approx(2 / 3)
    tenure = drift.feature("tenure")
    assert tenure.drifted and tenure.metric("psi").breached and tenure.metric("ks_p_value").breached
    assert tenure.value("wasserstein") == pytest.approx(25, abs=3)
    assert drift.window["from"] and drift.window["to"]
    assert drift.current_rows == 400

    # SciPy on the same rows: the exported log of the window and the
    # training dataset version (all of it: fewer rows than max_reference_rows).
    log = client.export_predictions(model, since=shift_from, until=shift_to)
    assert log.num_rows == 400
    assert sorted(log.column("prediction_id").to_pylist()) == sorted(shifted.column("prediction_id").to_pylist())
    worst = scipy_agreement(drift, reference, log)
    for metric, diff in sorted(worst.items()):
        print(f"max |Pulse - SciPy| {metric}: {max(diff, worst_calm.get(metric, 0.0)):.3e}")

    # The stored report, with the current statistics the check leaves out.
    stored = client.get_drift_report(drift.id)
    assert stored.id == drift.id and stored.status == "DRIFT"
    assert stored.drifted_features == drift.drifted_features
    for a, b in zip(stored.features, drift.features):
        assert a.metrics == b.metrics
    assert "current" not in drift.features[0] or not drift.features[0].current
    assert stored.feature("tenure").current.count == 400
    assert stored.feature("tenure").current.mean == pytest.approx(float(np.mean(column(log, "tenure"))))
    listed = client.list_drift_reports(model, status="DRIFT")
    assert [r.id for r in listed] == [drift.id]
    assert [r.id for r in client.list_drift_reports(model)] == [drift.id, calm.id]
    assert client.list_drift_reports(model, status="ok")[0].id == calm.id

    # Too few rows: a report, INSUFFICIENT_DATA, nothing judged.
    few = client.check_drift(model, window=50)
    assert few.status == "INSUFFICIENT_DATA" and few.current_rows == 50
    assert few.drifted_features == []
    assert all(not m.breached and m.get("threshold") is None for f in few.features for m in f.metrics)

    # A dry run computes and stores nothing.
    before = len(client.list_drift_reports(model, page_size=1000))
    dry = client.check_drift(model, window=(shift_from, shift_to), dry_run=True)
    assert dry.id == "" and dry.status == "DRIFT"
    assert dry.feature("tenure").metrics == drift.feature("tenure").metrics
    assert len(client.list_drift_reports(model, page_size=1000)) == before

    # Per-check thresholds: a lenient PSI and KS p-value for every feature and
    # JS for tenure, stricter for none: the window reads as OK for tenure's PSI.
    lenient = client.check_drift(
        model, window=(shift_from, shift_to), features=["tenure"], dry_run=True,
        thresholds={"psi": 50.0, "ks_p_value": 1e-300, ("jensen_shannon", "tenure"): 0.8},
    )
    assert [f.feature for f in lenient.features] == ["tenure"]
    assert lenient.feature("tenure").metric("psi").threshold == 50.0
    assert not lenient.feature("tenure").drifted

    # Feedback on the shifted window: the performance section, judged
    # against the version's test metrics.
    labels = shifted.column("label").to_pylist()
    ids = shifted.column("prediction_id").to_pylist()
    truths = [label if i % 2 else ("false" if label == "true" else "true") for i, label in enumerate(labels[:120])]
    for pid, truth in zip(ids[:120], truths):
        client.record_feedback(pid, label=truth)
    with_feedback = client.check_drift(model, window=(shift_from, shift_to))
    perf = with_feedback.performance
    assert perf.feedback_count == 120
    accuracy = next(m for m in perf.metrics if m.metric == "accuracy")
    assert accuracy.value == pytest.approx(0.5)
    assert accuracy.reference_value == client.get_model_version(model, 1).metrics.accuracy
    assert accuracy.breached and perf.drifted
    assert {m.metric for m in perf.metrics} >= {"accuracy", "f1", "roc_auc"}
    # Below min_feedback (100) only the count is given.
    assert client.check_drift(model, window=(calm_from, calm_to), dry_run=True).performance.metrics == []


def test_bad_requests_name_the_field(client: pulse.Client, churn, served: str, uid: str) -> None:
    model = served
    dataset, version, _ = churn
    with pytest.raises(pulse.NotFound):
        client.check_drift(f"no-such-model-{uid}")
    with pytest.raises(pulse.NotFound):
        client.check_drift(model, version=7)
    trained = f"unpromoted-{uid}"
    client.register_contract(CONTRACT.format(model=trained, min_auc=0.6))
    client.train(dataset, version, model=trained, params={"epochs": 1}, seed=1).wait(timeout=300, progress=False)
    with pytest.raises(pulse.FailedPrecondition) as e:
        client.check_drift(trained)
    assert "no production version" in str(e.value)
    assert client.check_drift(trained, version=1, window=10, dry_run=True).status == "INSUFFICIENT_DATA"
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=100, thresholds={("ks_p_value", "tenure"): 1.5})
    assert "thresholds[0].value" in str(e.value) and "1.5" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=100, thresholds=[{"metric": "psi", "value": 0.1},
                                                          {"metric": "psi", "feature": "colour", "value": 0.1}])
    assert "thresholds[1].feature" in str(e.value) and "colour" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=100, thresholds={("wasserstein", "plan"): 1.0})
    assert "thresholds[0].metric" in str(e.value) and "categorical" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=100, thresholds={"psy": 0.1})
    assert "thresholds[0].metric" in str(e.value) and "'psy'" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, features=["colour"])
    assert "features[0]" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=0)
    assert "window.last_count" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.check_drift(model, window=(now(), now() - datetime.timedelta(hours=1)))
    assert "window.range.to" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.get_drift_report("not-a-report")
    assert "report_id" in str(e.value)
    with pytest.raises(pulse.NotFound):
        client.get_drift_report("drf_00000000000000000000000000")
    with pytest.raises(pulse.InvalidArgument) as e:
        client.set_monitor(model, thresholds={"ks_p_value": 0.0})
    assert "monitor.thresholds[0].value" in str(e.value)
    with pytest.raises(pulse.InvalidArgument) as e:
        client.set_monitor(model, bins=1)
    assert "monitor.options.bins" in str(e.value)


def test_monitor_and_baseline(client: pulse.Client, churn, served: str) -> None:
    model = served
    dataset, version, _ = churn
    defaults = client.get_monitor(model)
    assert defaults.window == {"last": "86400s"} and defaults.min_samples == 100 and defaults.options.bins == 10

    m = client.set_monitor(model, window=datetime.timedelta(hours=6), features=["tenure", "spend"],
                           thresholds={"psi": 0.3, ("ks_p_value", "tenure"): 0.01}, min_samples=50, bins=8,
                           interval=datetime.timedelta(0))
    assert m.window == {"last": "21600s"} and m.interval == "0s" and m.features == ["tenure", "spend"]
    assert m.thresholds == [{"metric": "psi", "feature": "", "value": 0.3},
                            {"metric": "ks_p_value", "feature": "tenure", "value": 0.01}]
    assert (m.min_samples, m.min_feedback, m.options.bins) == (50, 100, 8)
    assert client.get_monitor(model) == m
    assert model in [x.model for x in client.list_monitors(page_size=1000)]

    calm_from, calm_to, _ = traffic(client, model, rows_like_training(200, seed=21))
    time.sleep(0.01)
    shift_from, shift_to, _ = traffic(client, model, rows_like_training(60, seed=22, shift=True))
    # The monitor's features, thresholds, bins and min_samples apply.
    rep = client.check_drift(model, window=(shift_from, shift_to))
    assert [f.feature for f in rep.features] == ["tenure", "spend"]
    assert rep.status == "DRIFT" and rep.current_rows == 60
    assert rep.feature("tenure").metric("psi").threshold == 0.3
    assert rep.feature("tenure").metric("ks_p_value").threshold == 0.01
    assert rep.feature("spend").metric("ks_p_value").threshold == 0.05
    assert client.get_monitor(model).last_checked_at

    base = client.get_baseline(model)
    assert base.source == "training" and base.dataset == {"dataset_id": dataset, "version": version}
    assert [s.column for s in base.features] == ["tenure", "spend", "plan"]
    assert base.reference_metrics["accuracy"] == client.get_model_version(model, 1).metrics.accuracy
    assert base.outputs and base.outputs[0].column == "label"

    # The unshifted window as the baseline: the shifted one still drifts.
    mine = client.set_baseline(model, window=(calm_from, calm_to))
    assert mine.source == "prediction_window" and mine.window["from"]
    assert client.get_baseline(model).source == "prediction_window"
    vs_window = client.check_drift(model, window=(shift_from, shift_to))
    assert vs_window.reference_source == "prediction_window" and vs_window.status == "DRIFT"
    assert vs_window.feature("tenure").reference_count == 200
    same = client.check_drift(model, window=(calm_from, calm_to), dry_run=True)
    assert same.status == "OK" and same.feature("tenure").value("ks_statistic") == 0.0

    assert client.set_baseline(model, dataset=(dataset, version)).source == "dataset_version"
    assert client.set_baseline(model).source == "training"
    assert client.check_drift(model, window=(shift_from, shift_to)).reference_source == "training"
    assert math.isfinite(client.check_drift(model, dataset=(dataset, version), dry_run=True).score)
