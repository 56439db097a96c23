"""Inference: predictions from a model's production version (or a canary),
the prediction log, ground-truth feedback, and canary and shadow routing."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from pulse._datasets import Record, _call


class Prediction(Record):
    """One answer: ``id`` (``prd_…``), ``model_version`` (model, version),
    ``role`` (``primary``, ``canary``, ``pinned``, …), ``label`` and
    ``probabilities`` (classification) or ``value`` (regression),
    ``cache_hit``, ``latency_us``. From :meth:`get_prediction` also the input
    ``features``, ``feedback`` and the ``shadow`` answer."""


class Feedback(Record):
    """Ground truth joined to a prediction: ``label`` or ``value``,
    ``correct`` (classification) or ``error`` (regression)."""


def _feature(v: Any) -> dict[str, Any]:
    """A Python scalar as a typed ``FeatureValue`` (``None`` is null)."""
    if v is None:
        return {}
    if isinstance(v, bool):
        return {"bool_value": v}
    if isinstance(v, int):
        return {"int_value": v}
    if isinstance(v, float):
        if math.isnan(v):
            return {"float_value": "NaN"}
        if math.isinf(v):
            return {"float_value": "Infinity" if v > 0 else "-Infinity"}
        return {"float_value": v}
    if isinstance(v, str):
        return {"category_value": v}
    # numpy scalars and the like.
    item = getattr(v, "item", None)
    if callable(item):
        return _feature(item())
    raise TypeError(f"a feature value must be None, bool, int, float or str, not {type(v).__name__}")


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"features": {str(k): _feature(v) for k, v in row.items()}}


def _rows(rows: Any) -> list[Mapping[str, Any]]:
    """Rows from a list of dicts, a pandas DataFrame or a pyarrow Table."""
    if hasattr(rows, "to_pylist"):  # pyarrow.Table / RecordBatch
        return rows.to_pylist()
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas.DataFrame
        records = rows.to_dict(orient="records")
        # pandas spells a missing value NaN even in object columns.
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]
    return list(rows)


def _plain(p: Record) -> Record:
    role = p.get("role", "")
    if isinstance(role, str) and role.startswith("SERVING_ROLE_"):
        p["role"] = role[len("SERVING_ROLE_"):].lower()
    return p


class InferenceMixin:
    _native: Any

    def predict(
        self,
        model: str,
        row: Mapping[str, Any],
        version: int = 0,
        bypass_cache: bool = False,
        routing_key: str = "",
    ) -> Prediction:
        """Predicts one row (feature name → value) with the model's
        production version (or its canary, by the traffic policy; or
        ``version`` when given).

        Raises:
            InvalidArgument: The row breaks the contract; the message lists
                every problem.
            NotFound: Unknown model (or version).
            FailedPrecondition: The model has no production version.
            Unavailable: The model's circuit breaker is open.
        """
        req = {"model": model, "version": int(version), "row": _row(row), "bypass_cache": bypass_cache,
               "routing_key": routing_key}
        return _plain(_call(self._native, "predict", req, cls=Prediction))

    def predict_batch(
        self,
        model: str,
        rows: Any,
        version: int = 0,
        bypass_cache: bool = False,
    ) -> Any:
        """Predicts many rows (a list of dicts, a pandas DataFrame or a
        pyarrow Table) with one model version, and answers a
        ``pyarrow.Table``: ``prediction_id``, ``model``, ``version``,
        ``role``, ``label`` and ``probability_<class>`` columns
        (classification) or ``value`` (regression), ``cache_hit``, in input
        order. One invalid row refuses the batch, listing every problem."""
        import pyarrow as pa

        req = {"model": model, "version": int(version), "rows": {"rows": [_row(r) for r in _rows(rows)]},
               "bypass_cache": bypass_cache}
        answer = _call(self._native, "predict_batch", req)
        preds = answer.get("predictions", [])
        mv = answer.get("model_version", {})
        role = str(answer.get("role", "")).replace("SERVING_ROLE_", "").lower()
        cols: dict[str, Any] = {
            "prediction_id": [p["id"] for p in preds],
            "model": [mv.get("model", model)] * len(preds),
            "version": pa.array([int(mv.get("version", 0))] * len(preds), pa.uint64()),
            "role": [role] * len(preds),
        }
        classes = sorted({c for p in preds for c in (p.get("probabilities") or {})})
        if classes:
            cols["label"] = [p.get("label", "") for p in preds]
            for c in classes:
                cols[f"probability_{c}"] = pa.array([float(p["probabilities"].get(c, 0.0)) for p in preds], pa.float64())
        else:
            cols["value"] = pa.array([p.get("value") for p in preds], pa.float64())
        cols["cache_hit"] = [bool(p.get("cache_hit", False)) for p in preds]
        return pa.table(cols)

    def record_feedback(
        self,
        prediction_id: str,
        label: Any = None,
        value: float | None = None,
        replace: bool = False,
        idempotency_key: str | None = None,
    ) -> Feedback:
        """Joins ground truth to a prediction: ``label`` for a classifier
        (as the contract spells classes; ``True`` is ``"true"``), ``value``
        for a regression. The same truth again returns the stored feedback;
        a different one raises ``AlreadyExists`` unless ``replace``."""
        req: dict[str, Any] = {"prediction_id": prediction_id, "replace": replace}
        if label is not None:
            req["label"] = str(label).lower() if isinstance(label, bool) else str(label)
        if value is not None:
            req["value"] = float(value)
        return _call(self._native, "record_feedback", req, idempotency_key, cls=Feedback)

    def get_prediction(self, prediction_id: str) -> Prediction:
        """A logged prediction with its input features, feedback and shadow
        answer."""
        p = _plain(_call(self._native, "get_prediction", {"prediction_id": prediction_id}, cls=Prediction))
        if p.get("shadow"):
            p["shadow"] = _plain(Prediction(p["shadow"]))
        return p

    def list_predictions(self, model: str, version: int = 0, with_feedback: bool = False,
                         include_features: bool = False, page_size: int = 100) -> list[Prediction]:
        """The newest logged predictions of a model."""
        req = {"model": model, "version": int(version), "with_feedback": with_feedback,
               "include_features": include_features, "page": {"page_size": page_size}}
        answer = _call(self._native, "list_predictions", req)
        return [_plain(Prediction(p)) for p in answer.get("predictions", [])]

    def export_predictions(
        self,
        model: str,
        since: Any,
        until: Any = None,
        version: int = 0,
        role: str = "",
        last_n: int = 0,
        with_feedback: bool = False,
    ) -> Any:
        """The prediction log of ``model`` from ``since`` (a ``datetime`` or
        an RFC 3339 string) to ``until`` (default now) as a ``pyarrow.Table``,
        newest first: ``prediction_id``, ``created_at``, ``model``,
        ``version``, ``role``, ``label``, ``probability``, ``value``,
        ``latency_us``, the input and output hashes, one column per contract
        feature, and ``feedback_label`` / ``feedback_value``. ``role``:
        ``""`` (answers returned to callers), ``primary``, ``canary``,
        ``shadow``, ``fallback``; ``last_n`` keeps the newest rows only."""
        import pyarrow as pa

        req: dict[str, Any] = {"model": model, "version": int(version), "from": _timestamp(since),
                               "last_n": int(last_n), "with_feedback": with_feedback}
        if until is not None:
            req["to"] = _timestamp(until)
        if role:
            req["role"] = "SERVING_ROLE_" + role.upper()
        ipc = self._native.export_predictions(json.dumps(req))
        return pa.ipc.open_stream(pa.py_buffer(ipc)).read_all()

    def set_traffic(
        self,
        model: str,
        canary_version: int = 0,
        canary_share: float = 0.0,
        shadow_version: int = 0,
        shadow_share: float = 0.0,
        fallback_to_previous: bool = False,
    ) -> Record:
        """Canary and shadow routing: ``canary_version`` answers
        ``canary_share`` of requests (e.g. 0.1); ``shadow_version`` gets a copy
        of ``shadow_share`` of them (default all), logged and never returned.
        ``fallback_to_previous`` answers with the previous production version
        while the breaker is open. Zeros turn each off."""
        policy = {"model": model, "canary_version": int(canary_version), "canary_share": float(canary_share),
                  "shadow_version": int(shadow_version), "shadow_share": float(shadow_share),
                  "fallback_to_previous": fallback_to_previous}
        return _call(self._native, "set_traffic_policy", {"policy": policy})

    def get_traffic(self, model: str) -> Record:
        return _call(self._native, "get_traffic_policy", {"model": model})

    def serving_status(self, model: str = "") -> list[Record]:
        """Loaded versions, breaker, queue and cache of each served model."""
        return list(_call(self._native, "get_serving_status", {"model": model}).get("models", []))

    def refresh_model(self, model: str) -> Record:
        """Loads the model's current production version now (answers once it
        is warm)."""
        return _call(self._native, "refresh_model", {"model": model})


def _timestamp(t: Any) -> str:
    """RFC 3339 for a ``datetime`` (naive means UTC) or a string as given."""
    import datetime as _dt

    if isinstance(t, str):
        return t
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"expected a datetime or an RFC 3339 string, got {type(t).__name__}")
