"""Drift: compare a window of the prediction log (or a dataset version) with
a model version's baseline, read stored reports, and set monitors and
baselines.

Metric names are the short ones: ``psi``, ``ks_statistic`` (``ks``),
``ks_p_value``, ``jensen_shannon`` (``js``), ``wasserstein``,
``chi_square_statistic`` (``chi2``), ``chi_square_p_value``
(``chi2_p_value``), and from feedback ``accuracy``, ``f1``, ``roc_auc``,
``rmse``, ``mae``. A report's status is ``"OK"``, ``"DRIFT"`` or
``"INSUFFICIENT_DATA"``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Union

from pulse._datasets import Record, _call
from pulse._inference import _timestamp

_METRICS = (
    "psi",
    "ks_statistic",
    "ks_p_value",
    "jensen_shannon",
    "wasserstein",
    "chi_square_statistic",
    "chi_square_p_value",
    "accuracy",
    "f1",
    "roc_auc",
    "rmse",
    "mae",
)
# The gauge labels (`pulse_drift_score{metric=…}`) work too.
_ALIASES = {"ks": "ks_statistic", "js": "jensen_shannon", "chi2": "chi_square_statistic",
            "chi2_p_value": "chi_square_p_value"}
_STATUSES = ("OK", "DRIFT", "INSUFFICIENT_DATA")

Thresholds = Union[Mapping[Any, float], Iterable[Any], None]
"""``{"psi": 0.1, ("ks_p_value", "tenure"): 0.01}`` (a metric for every
feature, or for one feature), or a list of ``{"metric", "feature",
"value"}`` dicts or ``(metric, feature, value)`` tuples."""


class MetricValue(Record):
    """One statistic: ``metric``, ``value``, ``threshold`` (absent when
    the metric is computed, not judged), ``breached``, and for performance
    metrics ``reference_value`` (the version's test-split value)."""


class FeatureDrift(Record):
    """One feature (or ``"_prediction"``, the outputs): ``feature``,
    ``kind`` (``numeric`` or ``categorical``), ``reference_count``,
    ``current_count``, ``current_null_count``, ``metrics``, ``drifted``, and
    from :meth:`get_drift_report` the ``current`` column statistics."""

    __slots__ = ()

    def metric(self, name: str) -> MetricValue | None:
        """The :class:`MetricValue` of ``name`` (e.g. ``"psi"``), or None."""
        wanted = _metric_name(name, "metric")
        return next((m for m in self.get("metrics", []) if m.get("metric") == wanted), None)

    def value(self, name: str) -> float | None:
        """The value of metric ``name``, or None when it was not computed."""
        m = self.metric(name)
        return None if m is None else m.get("value")


class DriftReport(Record):
    """A drift check: ``id`` (``drf_…``; empty for a dry run),
    ``model_version``, ``status`` (``"OK"``, ``"DRIFT"``,
    ``"INSUFFICIENT_DATA"``), ``score`` (share of features drifted),
    ``drifted_features``, ``window`` (``from``, ``to``) or
    ``current_dataset``, ``current_rows``, ``reference_source``,
    ``reference_dataset`` / ``reference_window``, ``features`` (one
    :class:`FeatureDrift` each), ``prediction`` (the outputs),
    ``performance`` (from feedback), ``triggered_by``, ``compute_time``,
    ``created_at``. ``report.feature("tenure")`` picks one feature."""

    __slots__ = ()

    def feature(self, name: str) -> FeatureDrift:
        """The :class:`FeatureDrift` of ``name`` (``"_prediction"``: the outputs)."""
        if name == "_prediction" and self.get("prediction"):
            return self["prediction"]
        for f in self.get("features", []):
            if f.get("feature") == name:
                return f
        raise KeyError(f"the report has no feature '{name}'")

    def __repr__(self) -> str:
        mv = self.get("model_version") or {}
        drifted = ", ".join(self.get("drifted_features", [])) or "-"
        return (f"DriftReport({self.get('id') or '(dry run)'}, {mv.get('model', '')}@{mv.get('version', '')}, "
                f"{self.get('status', '')}, score {self.get('score', 0.0):.3f}, "
                f"{self.get('current_rows', 0)} rows, drifted: {drifted})")


class Monitor(Record):
    """A model's monitor: ``model``, ``window``, ``interval``,
    ``features``, ``thresholds``, ``min_samples``, ``min_feedback``,
    ``options`` (``bins``, ``psi_epsilon``, ``max_reference_rows``),
    ``paused``, ``updated_at``, ``last_checked_at``."""


class Baseline(Record):
    """What a model version is compared with: ``model_version``,
    ``source`` (``training``, ``dataset_version``, ``prediction_window``),
    ``dataset`` or ``window``, per-feature ``features`` statistics,
    ``outputs``, ``reference_metrics``, ``created_at``."""


# ---------------------------------------------------------------- requests


def _invalid(message: str) -> Exception:
    from pulse.exceptions import InvalidArgument

    return InvalidArgument(message)


def _metric_name(name: Any, field: str) -> str:
    n = str(name).lower()
    n = n[len("drift_metric_"):] if n.startswith("drift_metric_") else n
    n = _ALIASES.get(n, n)
    if n not in _METRICS:
        raise _invalid(f"{field}: '{name}' is not a drift metric ({', '.join(_METRICS)})")
    return n


def _threshold(i: int, metric: Any, feature: Any, value: Any, field: str) -> dict[str, Any]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _invalid(f"{field}[{i}].value: {value!r} is not a number") from None
    return {"metric": "DRIFT_METRIC_" + _metric_name(metric, f"{field}[{i}].metric").upper(),
            "feature": str(feature or ""), "value": v}


def _thresholds(thresholds: Thresholds, field: str = "thresholds") -> list[dict[str, Any]]:
    if thresholds is None:
        return []
    out = []
    if isinstance(thresholds, Mapping):
        for i, (key, value) in enumerate(thresholds.items()):
            metric, feature = key if isinstance(key, tuple) else (key, "")
            out.append(_threshold(i, metric, feature, value, field))
        return out
    for i, t in enumerate(thresholds):
        if isinstance(t, Mapping):
            out.append(_threshold(i, t.get("metric"), t.get("feature", ""), t.get("value"), field))
        else:
            metric, feature, value = t
            out.append(_threshold(i, metric, feature, value, field))
    return out


def _duration(d: Any, field: str) -> str:
    """A ``timedelta`` (or seconds) as a proto3 JSON Duration."""
    if isinstance(d, _dt.timedelta):
        micros = d // _dt.timedelta(microseconds=1)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        micros = round(d * 1_000_000)
    else:
        raise _invalid(f"{field}: expected a timedelta or seconds, got {type(d).__name__}")
    sign = "-" if micros < 0 else ""
    seconds, rest = divmod(abs(micros), 1_000_000)
    return f"{sign}{seconds}.{rest:06d}s" if rest else f"{sign}{seconds}s"


def _range(r: Any, field: str) -> dict[str, Any]:
    try:
        start, end = r
    except (TypeError, ValueError):
        raise _invalid(f"{field}: expected (from, to) with to None meaning now") from None
    out = {"from": _timestamp(start)}
    if end is not None:
        out["to"] = _timestamp(end)
    return out


def _window(w: Any, field: str = "window") -> dict[str, Any]:
    """``timedelta`` → the last period; ``int`` → the newest N predictions;
    ``(from, to)`` → a time range (``to`` None: now)."""
    if isinstance(w, _dt.timedelta):
        return {"last": _duration(w, f"{field}.last")}
    if isinstance(w, int) and not isinstance(w, bool):
        return {"last_count": w}
    if isinstance(w, (tuple, list)):
        return {"range": _range(w, f"{field}.range")}
    raise _invalid(f"{field}: expected a timedelta (the last period), an int (the newest N) or (from, to), "
                   f"got {type(w).__name__}")


def _dataset(d: Any, field: str) -> dict[str, Any]:
    """``(dataset_id, version)`` or a :class:`DatasetVersion`."""
    if isinstance(d, Mapping):
        return {"dataset_id": str(d.get("dataset_id", "")), "version": int(d.get("version", 0))}
    try:
        dataset_id, version = d
    except (TypeError, ValueError):
        raise _invalid(f"{field}: expected (dataset_id, version)") from None
    return {"dataset_id": str(dataset_id), "version": int(version)}


def _status(s: str) -> str:
    if not s:
        return "DRIFT_STATUS_UNSPECIFIED"
    n = s.upper().removeprefix("DRIFT_STATUS_")
    if n not in _STATUSES:
        raise _invalid(f"status: '{s}' is not one of {', '.join(_STATUSES)}")
    return "DRIFT_STATUS_" + n


# ---------------------------------------------------------------- answers


def _report(r: Record) -> DriftReport:
    def feature(f: Any) -> Any:
        if not f:
            return f
        f = FeatureDrift(f)
        f["metrics"] = [MetricValue(m) for m in f.get("metrics", [])]
        return f

    rep = DriftReport(r)
    rep["status"] = str(rep.get("status", "")).removeprefix("DRIFT_STATUS_")
    rep["features"] = [feature(f) for f in rep.get("features", [])]
    if rep.get("prediction"):
        rep["prediction"] = feature(rep["prediction"])
    perf = rep.get("performance")
    if perf:
        perf["metrics"] = [MetricValue(m) for m in perf.get("metrics", [])]
    return rep


class DriftMixin:
    _native: Any

    def check_drift(
        self,
        model: str,
        version: int = 0,
        window: Any = None,
        dataset: Any = None,
        reference_dataset: Any = None,
        reference_window: Any = None,
        features: Iterable[str] | None = None,
        thresholds: Thresholds = None,
        dry_run: bool = False,
    ) -> DriftReport:
        """Compares current data with the model version's baseline (by
        default its training dataset version) and stores the report.

        Args:
            version: 0 is the production version.
            window: The predictions to check: a ``timedelta`` (the last
                period), an ``int`` (the newest N) or ``(from, to)``
                datetimes (``to`` None: now). Default: the monitor's window
                (the last 24 h).
            dataset: ``(dataset_id, version)`` to check a dataset version's
                rows instead of predictions.
            reference_dataset: ``(dataset_id, version)`` to compare with
                instead of the baseline; ``reference_window`` a ``(from, to)``
                range of the version's own predictions.
            features: Default: the monitor's (every contract feature).
            thresholds: Override the monitor's for this check, e.g.
                ``{"psi": 0.1, ("ks_p_value", "tenure"): 0.01}``.
            dry_run: Compute only: nothing stored, no event.

        Raises:
            NotFound: Unknown model or version.
            FailedPrecondition: No production version (with ``version=0``).
            InvalidArgument: A malformed window, feature or threshold; the
                message names it (e.g. ``thresholds[0].value``).

        Example::

            >>> rep = c.check_drift("churn", window=timedelta(hours=6))
            >>> rep.status, rep.drifted_features, rep.feature("tenure").value("psi")
        """
        if window is not None and dataset is not None:
            raise _invalid("window: give window or dataset, not both")
        if reference_dataset is not None and reference_window is not None:
            raise _invalid("reference_dataset: give reference_dataset or reference_window, not both")
        req: dict[str, Any] = {"model": model, "version": int(version), "features": list(features or []),
                               "thresholds": _thresholds(thresholds), "dry_run": bool(dry_run)}
        if window is not None:
            req["window"] = _window(window)
        if dataset is not None:
            req["dataset"] = _dataset(dataset, "dataset")
        if reference_dataset is not None:
            req["reference_dataset"] = _dataset(reference_dataset, "reference_dataset")
        if reference_window is not None:
            req["reference_window"] = _range(reference_window, "reference_window")
        return _report(_call(self._native, "check_drift", req))

    def list_drift_reports(self, model: str = "", version: int = 0, status: str = "",
                           page_size: int = 100) -> list[DriftReport]:
        """Stored reports, newest first (without the per-feature
        ``current`` statistics), filtered by model, version and status
        (``"DRIFT"``, ``"OK"``, ``"INSUFFICIENT_DATA"``; any case)."""
        req = {"model": model, "version": int(version), "status": _status(status),
               "page": {"page_size": int(page_size)}}
        answer = _call(self._native, "list_drift_reports", req)
        return [_report(r) for r in answer.get("reports", [])]

    def get_drift_report(self, report_id: str) -> DriftReport:
        """One stored report, with the current window's column statistics."""
        return _report(_call(self._native, "get_drift_report", {"report_id": report_id}))

    def set_monitor(
        self,
        model: str,
        window: Any = None,
        features: Iterable[str] | None = None,
        thresholds: Thresholds = None,
        min_samples: int = 0,
        min_feedback: int = 0,
        bins: int = 0,
        interval: Any = None,
        psi_epsilon: float = 0.0,
        max_reference_rows: int = 0,
        paused: bool = False,
    ) -> Monitor:
        """Creates or replaces the model's monitor; what is not given takes
        its default (window: the last 24 h; ``interval`` — a ``timedelta``,
        zero for checks on request only — every hour; ``min_samples`` and
        ``min_feedback`` 100; ``bins`` 10; thresholds: PSI 0.2, KS p-value
        0.05, Jensen–Shannon 0.1, chi-square p-value 0.05, a drop of 0.05
        in accuracy, F1 or ROC AUC). ``window`` and ``thresholds`` as in
        :meth:`check_drift`."""
        monitor: dict[str, Any] = {
            "model": model,
            "features": list(features or []),
            "thresholds": _thresholds(thresholds, "monitor.thresholds"),
            "min_samples": int(min_samples),
            "min_feedback": int(min_feedback),
            "options": {"bins": int(bins), "psi_epsilon": float(psi_epsilon),
                        "max_reference_rows": int(max_reference_rows)},
            "paused": bool(paused),
        }
        if window is not None:
            monitor["window"] = _window(window, "monitor.window")
        if interval is not None:
            monitor["interval"] = _duration(interval, "monitor.interval")
        return _call(self._native, "set_monitor", {"monitor": monitor}, cls=Monitor)

    def get_monitor(self, model: str) -> Monitor:
        """The model's monitor (the defaults when none is set)."""
        return _call(self._native, "get_monitor", {"model": model}, cls=Monitor)

    def list_monitors(self, page_size: int = 100) -> list[Monitor]:
        """The tenant's monitors."""
        answer = _call(self._native, "list_monitors", {"page": {"page_size": int(page_size)}})
        return [Monitor(m) for m in answer.get("monitors", [])]

    def set_baseline(self, model: str, version: int = 0, dataset: Any = None, window: Any = None,
                     from_training: bool | None = None) -> Baseline:
        """Replaces what a model version (0: production) is compared with:
        a dataset version's rows (``dataset=(dataset_id, version)``), a past
        ``window=(from, to)`` of its own predictions, or (the default,
        ``from_training=True``) its training dataset version."""
        given = [x is not None for x in (dataset, window)] + [bool(from_training)]
        if sum(given) > 1:
            raise _invalid("source: give one of dataset, window and from_training")
        req: dict[str, Any] = {"model": model, "version": int(version)}
        if dataset is not None:
            req["dataset"] = _dataset(dataset, "dataset")
        elif window is not None:
            req["window"] = _range(window, "window")
        else:
            req["from_training"] = True
        return _call(self._native, "set_baseline", req, cls=Baseline)

    def get_baseline(self, model: str, version: int = 0) -> Baseline:
        """The baseline of a model version (0: production)."""
        return _call(self._native, "get_baseline", {"model": model, "version": int(version)}, cls=Baseline)
