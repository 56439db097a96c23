"""The closed loop: retraining policies, pipelines and their runs, and the
event log.

Specs are plain dicts in the contracts' JSON shape (``drift.proto``), with a
few shortcuts. A policy trigger is one of::

    {"drift": {"metric": "psi", "threshold": 0.2, "feature": "tenure"}}
    {"performance": {"metric": "accuracy", "max_drop": 0.05}}
    {"feedback": 1000}                       # {"feedback": {"new_feedback": 1000}}
    {"freshness": {"new_rows": 10000, "max_lag": "6h"}}
    {"schedule": "0 3 * * *"}                # {"schedule": {"cron": ..., "timezone": "UTC"}}

each with an optional ``"name"``. A pipeline trigger is ``{"cron":
"0 3 * * *"}`` (or ``{"cron": {"expression": ..., "timezone": ...}}``) or
``{"event": "acme.orders.loaded.v1"}`` (or ``{"event": {"name": ...,
"filters": [{"field": "payload.model", "op": "equals", "values":
["churn"]}]}}``). Steps::

    {"id": "train", "action": {"method": "pulse.trainer.v1.TrainerService/StartTraining",
                               "request": {"model": "${inputs.model}", ...}},
     "retry": {"max_attempts": 3, "initial_backoff": "5s"}, "timeout": "2h"}
    {"id": "gate", "condition": {"expression": "steps.train.output.metrics.f1 > 0.8",
                                 "on_false": "stop"}}
    {"id": "wait", "delay": "10m"}           # {"delay": {"duration": "10m"}} or {"delay": {"at": datetime}}
    {"id": "both", "parallel": {"branches": [{"name": "a", "steps": [...]},
                                             {"name": "b", "steps": [...]}]}}

Durations are ``"24h"``, ``"1h30m"``, ``"10m"``, ``"30s"``, ``"500ms"``, a
number of seconds or a ``timedelta``; times are ``datetime`` (naive means
UTC) or RFC 3339 text. Enum values are taken in any case, with or without
their prefix (``"psi"``, ``"PSI"``, ``"DRIFT_METRIC_PSI"``) and come back
short and upper case (``"SUCCEEDED"``, ``"STEP_COMPLETED"``, ``"PSI"``; an
unset one is ``None``).

A malformed spec (an unknown key, enum value or duration, two kinds in one
step) raises :class:`pulse.InvalidSpec` before anything is sent; it is both a
:class:`pulse.InvalidArgument` and a ``ValueError``, and its message starts
with the field's path (``steps[1].action: unknown key 'methd'; did you mean
'method'? ...``).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

from pulse import _native
from pulse._datasets import Record, _ProgressBar
from pulse.exceptions import FailedPrecondition, PulseError, Unavailable

InvalidSpec = _native.InvalidSpec

_FINAL = ("SUCCEEDED", "FAILED", "CANCELED")


def _invalid(message: str) -> Exception:
    """An :class:`InvalidSpec` found before anything was sent."""
    e = InvalidSpec(message)
    e.code, e.message = "INVALID_ARGUMENT", message
    return e

_KEEP: Any = object()


class RetrainingPolicy(Record):
    """A model's retraining policy: ``model``, ``triggers``, ``combine``
    (``"ANY"``/``"ALL"``), ``cooldown`` (``"86400s"``), ``dry_run``,
    ``paused``, ``pipeline_id`` (empty: the built-in retraining pipeline),
    ``retrain``, ``revision``, ``updated_at``, ``last_fired_at``."""


class PolicyDecision(Record):
    """One decision: ``id`` (``dec_…``; empty from :meth:`evaluate_policies`),
    ``model``, ``policy_revision``, ``fired``, ``dry_run``, ``triggers``
    (``trigger``, ``met``, ``reason``, ``observed``, ``threshold``),
    ``reason`` (one line), ``pipeline_run_id``, ``decided_at``."""

    __slots__ = ()

    def __repr__(self) -> str:
        fired = "fired" if self.get("fired") else "not fired"
        return f"PolicyDecision({self.get('model', '')}, {fired}: {self.get('reason', '')})"


class Pipeline(Record):
    """A pipeline: ``id`` (``pip_…``), ``name``, ``description``,
    ``trigger``, ``steps``, ``default_inputs``, ``paused``, ``built_in``,
    ``revision``, ``created_at``, ``updated_at``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"Pipeline({self.get('id', '')}, {self.get('name', '')!r}, rev {self.get('revision', 0)}, "
                f"{len(self.get('steps') or [])} steps{', paused' if self.get('paused') else ''})")


class TimelineEntry(Record):
    """One entry of a run's timeline: ``at``, ``kind`` (``"RUN_CREATED"``,
    ``"STEP_STARTED"``, ``"STEP_COMPLETED"``, ``"STEP_FAILED"``, ``"LOG"``,
    ``"RUN_WAITING"``, ``"RUN_COMPLETED"``, …), ``step`` (the step's path,
    empty for the run), ``status`` (the step's status for step entries),
    ``run_status`` (the run's status after the entry), ``attempt``,
    ``message`` and ``data``."""


class RunTimeline(list):
    """A run's timeline, oldest first: a list of :class:`TimelineEntry`
    with ``run_id`` and ``status``; ``print()`` it for a table."""

    def __init__(self, run_id: str, status: Any, entries: Iterable[TimelineEntry]) -> None:
        super().__init__(entries)
        self.run_id = run_id
        self.status = status

    def __str__(self) -> str:
        lines = [f"Run {self.run_id}: {self.status or ''}"]
        for e in self:
            attempt = f"attempt {e.get('attempt')}" if e.get("attempt") else ""
            cells = [e.get("at") or "", e.get("kind") or "", e.get("step") or "-", e.get("status") or "", attempt,
                     e.get("message") or ""]
            lines.append("  {:<24} {:<22} {:<24} {:<10} {:<10} {}".format(*cells).rstrip())
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"RunTimeline({self.run_id}, {self.status}, {len(self)} entries)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self).rstrip("\n"))


class Event(Record):
    """An event of the log (an envelope): ``name``, ``version``,
    ``message_id`` (UUIDv7), ``timestamp``, ``kind`` (``"EVENT"``,
    ``"MUTATION"``, ``"QUERY"``), ``payload``, ``metadata`` (by convention
    ``entity_kind`` and ``entity_id``), ``tenant_id``, ``idempotency_key``,
    ``protocol``."""

    __slots__ = ()

    def __repr__(self) -> str:
        md = self.get("metadata") or {}
        entity = f", {md.get('entity_kind', '')}:{md['entity_id']}" if md.get("entity_id") else ""
        return f"Event({self.get('name', '')}, {self.get('message_id', '')}, {self.get('timestamp', '')}{entity})"


# ---------------------------------------------------------------- plumbing


def _json_default(v: Any) -> Any:
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, _dt.datetime):
        return _rfc3339(v)
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    if isinstance(v, Mapping):
        return dict(v)
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise _invalid(f"cannot send {v!r} (a {type(v).__name__}); use dicts, lists, str, numbers, bool, "
                      "None, datetime or timedelta")


def _send(native: Any, method: str, request: Mapping[str, Any], idempotency_key: str | None = None) -> Any:
    """One call: the request as JSON (checked against the contract by the
    native module), the answer as :class:`Record` s."""
    try:
        body = json.dumps(request, default=_json_default, allow_nan=False)
    except ValueError as e:  # NaN or infinity
        if isinstance(e, InvalidSpec):
            raise
        raise _invalid(f"request: {e} (NaN and infinity cannot be sent)") from None
    answer = native.call_json(method, body, idempotency_key or "")
    return json.loads(answer, object_hook=Record)


def _rfc3339(t: _dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _when(t: Any, field: str) -> Any:
    """A point in time: a ``datetime``, RFC 3339 text, epoch seconds, or a
    ``timedelta`` meaning that long ago."""
    if isinstance(t, _dt.timedelta):
        return _rfc3339(_dt.datetime.now(_dt.timezone.utc) - t)
    if isinstance(t, _dt.datetime):
        return _rfc3339(t)
    if isinstance(t, (str, int, float)) and not isinstance(t, bool):
        return t
    raise _invalid(f"{field}: expected a datetime, a timedelta (ago) or RFC 3339 text, got {type(t).__name__}")


def _range(since: Any, until: Any, field: str) -> dict[str, Any] | None:
    if since is None and until is None:
        return None
    r: dict[str, Any] = {}
    if since is not None:
        r["from"] = _when(since, f"{field}.from")
    if until is not None:
        r["to"] = _when(until, f"{field}.to")
    return r


def _list_of(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise _invalid(f"{field}: expected a list, got {type(value).__name__}")
    if isinstance(value, Mapping):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise _invalid(f"{field}: expected a list, got {type(value).__name__}") from None


def _mapping(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _invalid(f"{field}: expected a dict, got {type(value).__name__}")
    return dict(value)


_VERSION = re.compile(r"\.v(\d+)$")


def _envelope(event: Any, field: str) -> dict[str, Any]:
    """An event to publish: an envelope dict, where ``entity_id`` and
    ``entity_kind`` may be given at the top (they go to ``metadata``) and
    ``version`` defaults to the name's ``.v<N>``."""
    if not isinstance(event, Mapping):
        raise _invalid(f"{field}: expected a dict with 'name' and 'payload', got {type(event).__name__}")
    e = dict(event)
    metadata = dict(e.pop("metadata", None) or {})
    for key in ("entity_id", "entity_kind"):
        value = e.pop(key, None)
        if value is not None:
            metadata[key] = value
    if metadata:
        e["metadata"] = metadata
    name = e.get("name")
    if "version" not in e and isinstance(name, str):
        m = _VERSION.search(name)
        if m:
            e["version"] = int(m.group(1))
    return e


def _pages(native: Any, method: str, request: dict[str, Any], key: str, limit: int | None = None) -> list[Any]:
    out: list[Any] = []
    token = ""
    while True:
        size = 0 if limit is None else max(1, min(1000, limit - len(out)))
        page = _send(native, method, {**request, "page": {"page_token": token, "page_size": size}})
        out.extend(page.get(key) or [])
        token = (page.get("page") or {}).get("next_page_token", "")
        if not token or (limit is not None and len(out) >= limit):
            return out if limit is None else out[:limit]


def _timeline_entry(e: Mapping[str, Any]) -> TimelineEntry:
    entry = e.get("entry") or {}
    return TimelineEntry(
        at=entry.get("at"),
        kind=e.get("kind"),
        step=entry.get("step", ""),
        status=e.get("step_status"),
        run_status=entry.get("status"),
        attempt=e.get("attempt", 0),
        message=entry.get("message", ""),
        data=e.get("data") or Record(),
    )


# ---------------------------------------------------------------- runs


_RUN_FIELDS = frozenset({
    "pipeline_id", "pipeline_name", "pipeline_revision", "waiting", "progress", "origin", "trigger",
    "policy_decision_id", "inputs", "error", "dry_run", "replay_of", "attempt", "cancel_reason",
    "created_at", "started_at", "finished_at",
})


class PipelineRun:
    """A pipeline run, followed from the notebook: ``id``, ``status``
    (``"PENDING"``, ``"QUEUED"``, ``"RUNNING"``, ``"SUCCEEDED"``,
    ``"FAILED"``, ``"CANCELING"``, ``"CANCELED"``), ``steps`` (one
    :class:`Record` per step, branches flattened: ``step_id``, ``path``,
    ``kind``, ``status``, ``attempt``, ``output``, ``error``,
    ``skip_reason``, ``job_id``, …), and every other field of the run as an
    attribute (``pipeline_name``, ``waiting``, ``progress``, ``origin``,
    ``inputs``, ``error``, ``trigger``, ``replay_of``, …; ``run.run`` is the
    whole record). ``wait()`` follows it to the end."""

    def __init__(self, native: Any, run: Record) -> None:
        self._native = native
        self.run = run

    @property
    def id(self) -> str:
        """``run_…``; empty for a dry-run plan from :meth:`replay`."""
        return self.run.get("id", "")

    @property
    def status(self) -> str:
        return self.run.get("status") or ""

    @property
    def steps(self) -> list[Record]:
        return self.run.get("steps") or []

    @property
    def done(self) -> bool:
        """True once the run succeeded, failed or was canceled."""
        return self.status in _FINAL

    def step(self, id_or_path: str) -> Record:
        """The step run with this id or path (``"train_all/fast/train"``)."""
        for s in self.steps:
            if id_or_path in (s.get("path"), s.get("step_id")):
                return s
        raise KeyError(f"run {self.id} has no step '{id_or_path}'")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "run":
            raise AttributeError(name)
        try:
            return self.run[name]
        except KeyError:
            # A field of the contract that is unset reads as None.
            if name in _RUN_FIELDS:
                return None
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self.run[key]

    def __repr__(self) -> str:
        p = self.run.get("progress") or {}
        waiting = self.run.get("waiting") or {}
        extra = f", waiting: {waiting.get('reason')}" if waiting.get("reason") else ""
        return (f"PipelineRun({self.id or '(plan)'}, {self.run.get('pipeline_name', '')}, {self.status}, "
                f"{p.get('done', 0)}/{p.get('total', 0)} steps{extra})")

    def refresh(self) -> PipelineRun:
        """Reads the run again."""
        self.run = _send(self._native, "get_pipeline_run", {"run_id": self.id})
        return self

    def cancel(self, reason: str = "") -> PipelineRun:
        """Stops the run: the running step is told to stop, pending steps are skipped."""
        self.run = _send(self._native, "cancel_pipeline_run", {"run_id": self.id, "reason": reason})
        return self

    def retry(self) -> PipelineRun:
        """Runs a failed run again from its failed step(s)."""
        self.run = _send(self._native, "retry_pipeline_run", {"run_id": self.id})
        return self

    def timeline(self) -> RunTimeline:
        """Everything that happened in the run, oldest first."""
        return _timeline(self._native, self.id)

    def wait(self, timeout: float | None = None, progress: bool = True, poll: float = 1.0) -> PipelineRun:
        """Blocks until the run succeeded, failed or was canceled, polling
        every ``poll`` seconds (a progress bar of steps when ``progress``).

        Returns:
            The run itself, refreshed (``status`` ``"SUCCEEDED"``).

        Raises:
            PulseError: The run failed (``code`` and the message are the
                run's error, naming the step) or was canceled
                (:class:`FailedPrecondition`); ``e.run`` is this run.
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _RunBar(self.id) if progress else None
        try:
            while True:
                self.refresh()
                if bar:
                    bar.update(self.run)
                if self.done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"pipeline run {self.id} still {self.status} after {timeout}s")
                time.sleep(poll)
        finally:
            if bar:
                bar.close()
        if self.status != "SUCCEEDED":
            err = self.run.get("error") or {}
            canceled = self.status == "CANCELED"
            code = err.get("code") or ("CANCELLED" if canceled else "UNKNOWN")
            message = err.get("message", "") or self.run.get("cancel_reason", "")
            where = f" at step {err['step']}" if err.get("step") else ""
            e = (FailedPrecondition if canceled else PulseError)(
                f"pipeline run {self.id} {self.status.lower()}{where}: {code}: {message}")
            e.code, e.message = code, message
            e.run = self
            raise e
        return self


class _RunBar(_ProgressBar):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id, what="pipeline", unit="steps")

    def detail(self, run: Mapping[str, Any]) -> str:
        parts = [str(run.get("status") or "")]
        waiting = run.get("waiting") or {}
        running = [s.get("path") or s.get("step_id") for s in run.get("steps") or [] if s.get("status") == "RUNNING"]
        if waiting.get("reason"):
            parts.append(waiting["reason"])
        elif running:
            parts.append(", ".join(running))
        return " · ".join(parts)


def _timeline(native: Any, run_id: str) -> RunTimeline:
    entries: list[TimelineEntry] = []
    token = ""
    status = None
    while True:
        page = _send(native, "get_run_timeline", {"run_id": run_id, "page": {"page_token": token}})
        entries.extend(_timeline_entry(e) for e in page.get("entries") or [])
        status = page.get("status")
        token = (page.get("page") or {}).get("next_page_token", "")
        if not token:
            return RunTimeline(page.get("run_id") or run_id, status, entries)


# ---------------------------------------------------------------- events


class EventWatch:
    """Events as they are published, from a resume point or from now: an
    iterator that blocks until the next event (Ctrl-C interrupts the wait;
    the watch stays usable). ``close()`` ends it, also from another thread,
    and so do ``break`` in a ``with`` block or garbage collection. A dropped
    connection is resumed after the last event seen (``last_message_id``)."""

    _RECONNECTS = 3

    def __init__(self, native: Any, request: dict[str, Any]) -> None:
        self._native = native
        self._request = request
        self._closed = False
        self.last_message_id: str = request.get("after_message_id", "")
        self._stream = native.watch_events(json.dumps(request))

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        failures = 0
        while True:
            if self._closed:
                raise StopIteration
            try:
                text = next(self._stream)
            except StopIteration:
                self._closed = True
                raise
            except Unavailable:
                if self._closed or failures >= self._RECONNECTS:
                    raise
                failures += 1
                time.sleep(0.2 * 2**failures)
                request = {**self._request, "after_message_id": self.last_message_id}
                self._stream = self._native.watch_events(json.dumps(request))
                continue
            event = json.loads(text, object_hook=Record)
            event = Event(event)
            self.last_message_id = event.get("message_id", self.last_message_id)
            return event

    def close(self) -> None:
        """Ends the watch; iterating stops."""
        self._closed = True
        self._stream.close()

    @property
    def closed(self) -> bool:
        return self._closed or self._stream.closed

    def __enter__(self) -> EventWatch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.close()

    def __repr__(self) -> str:
        name = (self._request.get("selector") or {}).get("name") or "*"
        return f"<EventWatch {name} {'closed' if self.closed else 'open'}>"


# ---------------------------------------------------------------- the mixin


class PipelinesMixin:
    """Retraining policy, pipeline, run and event calls of :class:`pulse.Client`."""

    _native: Any

    # ---- retraining policies --------------------------------------------------

    def set_retraining_policy(
        self,
        model: str,
        triggers: Iterable[Mapping[str, Any]] | Mapping[str, Any] = (),
        combine: str = "any",
        cooldown: Any = None,
        dry_run: bool = False,
        paused: bool = False,
        pipeline: str | None = None,
        retrain: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RetrainingPolicy:
        """Creates or replaces the model's retraining policy.

        Args:
            triggers: Trigger dicts (see the module's help), e.g.
                ``[{"drift": {"metric": "psi", "threshold": 0.2}},
                {"schedule": "0 3 * * 0"}]``.
            combine: ``"any"`` trigger fires the policy, or ``"all"``.
            cooldown: No firing again within this long of the last
                (``"24h"``, seconds or a ``timedelta``); default 24 h.
            dry_run: Decide and record, never start a run.
            paused: Not evaluated by the scheduler.
            pipeline: The pipeline (id or name) started with inputs
                ``{model, policy_decision_id, reasons}``; default the
                built-in retraining pipeline, run with ``retrain``.
            retrain: How the built-in pipeline retrains: ``dataset_id``,
                ``mode`` (``"incremental"``/``"full"``), ``skip_extraction``,
                ``algorithm``, ``params``, ``promote_to``
                (``"production"``, gated; ``"staging"``; ``"candidate"``).

        Raises:
            InvalidSpec: A malformed trigger, duration or enum value, before
                anything is sent.
            InvalidArgument: The server refused a field (e.g. a cron
                expression); the message names it.

        Example::

            >>> c.set_retraining_policy("churn", triggers=[{"drift": {"metric": "psi"}},
            ...                                            {"feedback": 1000}], cooldown="12h")
        """
        policy: dict[str, Any] = {
            "model": model,
            "triggers": _list_of(triggers, "triggers"),
            "combine": combine,
            "dry_run": bool(dry_run),
            "paused": bool(paused),
            "pipeline_id": pipeline or "",
        }
        if cooldown is not None:
            policy["cooldown"] = cooldown
        if retrain is not None:
            policy["retrain"] = _mapping(retrain, "retrain")
        answer = _send(self._native, "set_retraining_policy", {"policy": policy}, idempotency_key)
        return RetrainingPolicy(answer)

    def get_retraining_policy(self, model: str) -> RetrainingPolicy:
        """The model's policy; :class:`NotFound` when it has none."""
        return RetrainingPolicy(_send(self._native, "get_retraining_policy", {"model": model}))

    def list_retraining_policies(self) -> list[RetrainingPolicy]:
        """Every policy of the tenant."""
        return [RetrainingPolicy(p) for p in _pages(self._native, "list_retraining_policies", {}, "policies")]

    def evaluate_policies(self, model: str | None = None) -> list[PolicyDecision]:
        """Evaluates the model's policy (or every policy) now, as the
        scheduler would, cooldown included; nothing is recorded and nothing
        starts. Each decision says why (``reason``, ``triggers``)."""
        answer = _send(self._native, "evaluate_policies", {"model": model or ""})
        return [PolicyDecision(d) for d in answer.get("decisions") or []]

    def list_policy_decisions(
        self,
        model: str | None = None,
        fired_only: bool = False,
        since: Any = None,
        until: Any = None,
        limit: int | None = 100,
    ) -> list[PolicyDecision]:
        """The scheduler's recorded decisions, newest first (at most
        ``limit``; None: all). ``since``/``until``: datetimes, RFC 3339 text
        or a ``timedelta`` ago."""
        request: dict[str, Any] = {"model": model or "", "fired_only": bool(fired_only)}
        decided = _range(since, until, "decided")
        if decided:
            request["decided"] = decided
        return [PolicyDecision(d) for d in _pages(self._native, "list_policy_decisions", request, "decisions", limit)]

    # ---- pipelines ------------------------------------------------------------

    def create_pipeline(
        self,
        name: str,
        steps: Sequence[Mapping[str, Any]],
        trigger: Mapping[str, Any] | None = None,
        description: str = "",
        default_inputs: Mapping[str, Any] | None = None,
        paused: bool = False,
        idempotency_key: str | None = None,
    ) -> Pipeline:
        """Creates a pipeline.

        Args:
            name: 1 to 63 characters of a-z, 0-9, '_' and '-', starting with
                a letter; unique in the tenant.
            steps: Step dicts, run in order (see the module's help). String
                values of an action's ``request`` may hold references:
                ``${inputs.<name>}``, ``${trigger.payload.<path>}``,
                ``${steps.<id>.output.<path>}``, ``${run.id}``.
            trigger: ``{"cron": "0 3 * * *"}`` or ``{"event":
                "acme.orders.loaded.v1"}``; None: started by hand or by a
                policy only.
            default_inputs: Values for ``${inputs.…}`` a run does not give.
            paused: Triggers are ignored while paused.

        Raises:
            InvalidSpec: A malformed step, trigger or duration, before
                anything is sent.
            AlreadyExists: The name is taken.
            InvalidArgument: The server refused a step or reference (e.g.
                ``steps[2].condition.expression: unknown step 'trian'``).

        Example::

            >>> c.create_pipeline("nightly", trigger={"cron": "0 3 * * *"}, steps=[
            ...     {"id": "check", "action": {"method": "pulse.drift.v1.DriftService/CheckDrift",
            ...                                "request": {"model": "churn"}}},
            ...     {"id": "gate", "condition": "steps.check.output.status == 'DRIFT_STATUS_DRIFT'"},
            ...     {"id": "train", "action": {"method": "pulse.trainer.v1.TrainerService/StartTraining",
            ...                                "request": {...}}, "retry": 3},
            ... ])
        """
        pipeline: dict[str, Any] = {
            "name": name,
            "description": description,
            "steps": _list_of(steps, "steps"),
            "paused": bool(paused),
        }
        if trigger is not None:
            pipeline["trigger"] = _mapping(trigger, "trigger")
        if default_inputs is not None:
            pipeline["default_inputs"] = _mapping(default_inputs, "default_inputs")
        return Pipeline(_send(self._native, "create_pipeline", {"pipeline": pipeline}, idempotency_key))

    def update_pipeline(
        self,
        id_or_name: str,
        steps: Sequence[Mapping[str, Any]] = _KEEP,
        trigger: Mapping[str, Any] | None = _KEEP,
        description: str = _KEEP,
        default_inputs: Mapping[str, Any] | None = _KEEP,
        paused: bool = _KEEP,
        name: str = _KEEP,
        idempotency_key: str | None = None,
    ) -> Pipeline:
        """Replaces the pipeline's definition (revision + 1) with the
        current one where an argument is not given: reads it, changes what
        is given, writes it back (``trigger=None`` removes the trigger).
        Runs already started keep their definition. The built-in pipeline
        is :class:`FailedPrecondition`."""
        current = _send(self._native, "get_pipeline", {"pipeline_id": id_or_name})
        pipeline: dict[str, Any] = {
            "id": current.get("id", ""),
            "name": current.get("name", "") if name is _KEEP else name,
            "description": current.get("description", "") if description is _KEEP else description,
            "trigger": current.get("trigger") if trigger is _KEEP else _mapping(trigger, "trigger"),
            "steps": (current.get("steps") or []) if steps is _KEEP else _list_of(steps, "steps"),
            "default_inputs": current.get("default_inputs") if default_inputs is _KEEP
            else _mapping(default_inputs, "default_inputs"),
            "paused": bool(current.get("paused", False) if paused is _KEEP else paused),
        }
        return Pipeline(_send(self._native, "update_pipeline", {"pipeline": pipeline}, idempotency_key))

    def get_pipeline(self, id_or_name: str) -> Pipeline:
        """A pipeline by id (``pip_…``) or name (``"retrain"`` is the built-in one)."""
        return Pipeline(_send(self._native, "get_pipeline", {"pipeline_id": id_or_name}))

    def list_pipelines(self) -> list[Pipeline]:
        """Every pipeline of the tenant, the built-in one included."""
        return [Pipeline(p) for p in _pages(self._native, "list_pipelines", {}, "pipelines")]

    # ---- runs -----------------------------------------------------------------

    def start_pipeline(
        self,
        id_or_name: str,
        inputs: Mapping[str, Any] | None = None,
        signal: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> PipelineRun:
        """Starts a run by hand.

        Args:
            inputs: Values for ``${inputs.…}`` (over the pipeline's defaults).
            signal: Start as if triggered by this event (seen as
                ``${trigger…}``): ``{"name", "payload", "entity_id", …}`` as
                in :meth:`publish_events`.
            idempotency_key: The same key starts one run.

        Returns:
            A :class:`PipelineRun`; ``.wait()`` follows it to the end.

        Example::

            >>> run = c.start_pipeline("nightly", inputs={"model": "churn"}).wait()
            >>> print(run.timeline())
        """
        request: dict[str, Any] = {"pipeline_id": id_or_name}
        if inputs is not None:
            request["inputs"] = _mapping(inputs, "inputs")
        if signal is not None:
            request["signal"] = _envelope(signal, "signal")
        return PipelineRun(self._native, _send(self._native, "start_pipeline_run", request, idempotency_key))

    def get_run(self, run_id: str) -> PipelineRun:
        """A run by id (``run_…``)."""
        return PipelineRun(self._native, _send(self._native, "get_pipeline_run", {"run_id": run_id}))

    def list_runs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        origin: str | None = None,
        limit: int | None = 100,
    ) -> list[PipelineRun]:
        """Runs, newest first (at most ``limit``; None: all), of one pipeline
        (id or name) or all, with one ``status`` (``"running"``,
        ``"failed"``, …) and ``origin`` (``"manual"``, ``"event"``,
        ``"cron"``, ``"policy"``, ``"replay"``) or any."""
        request: dict[str, Any] = {"pipeline_id": pipeline or "", "status": status, "origin": origin}
        return [PipelineRun(self._native, r) for r in _pages(self._native, "list_pipeline_runs", request, "runs", limit)]

    def pipeline_timeline(self, run_id: str) -> RunTimeline:
        """Everything that happened in a run, oldest first: a list of
        :class:`TimelineEntry` (``at``, ``kind`` such as
        ``"STEP_COMPLETED"``, ``step`` path, ``status``, ``attempt``,
        ``message``, ``data``); ``print()`` shows a table."""
        return _timeline(self._native, run_id)

    def cancel_run(self, run_id: str, reason: str = "") -> PipelineRun:
        """Cancels a run (``CANCELING``, then ``CANCELED``); a finished run
        is :class:`FailedPrecondition`."""
        return PipelineRun(self._native, _send(self._native, "cancel_pipeline_run",
                                               {"run_id": run_id, "reason": reason}))

    def retry_run(self, run_id: str) -> PipelineRun:
        """Runs a FAILED run again from its failed step(s); completed steps
        are not repeated. Any other status is :class:`FailedPrecondition`."""
        return PipelineRun(self._native, _send(self._native, "retry_pipeline_run", {"run_id": run_id}))

    # ---- events ---------------------------------------------------------------

    def list_events(
        self,
        name: str | None = None,
        entity_id: str | None = None,
        since: Any = None,
        until: Any = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[Event]:
        """Events of the log, oldest first (or newest first), at most
        ``limit`` (None: all that match).

        Args:
            name: An event name, or a prefix ending in ``.*``
                (``"pulse.drift.*"``).
            entity_id: The events' ``metadata.entity_id``.
            since, until: ``[since, until)``: datetimes, RFC 3339 text or a
                ``timedelta`` ago.
        """
        request: dict[str, Any] = {"selector": _selector(name, entity_id, since, until),
                                   "newest_first": bool(newest_first)}
        return [Event(e) for e in _pages(self._native, "list_events", request, "events", limit)]

    def publish_events(self, events: Iterable[Mapping[str, Any]], idempotency_key: str | None = None) -> Record:
        """Appends events to the log (1 to 500); pipelines whose triggers
        match start runs.

        Args:
            events: Dicts with ``name`` (``<domain>.<what>….v<N>``, lower
                case, e.g. ``"acme.orders.loaded.v1"``), ``payload`` (a dict)
                and optionally ``entity_id``, ``entity_kind``, ``metadata``,
                ``message_id`` (a retry with the same id is ignored as a
                duplicate), ``timestamp``. ``version`` defaults to the
                name's N.

        Returns:
            ``{"message_ids": [...], "published": int, "duplicates": int,
            "started_run_ids": [...]}``.
        """
        envelopes = [_envelope(e, f"events[{i}]") for i, e in enumerate(_list_of(events, "events"))]
        return _send(self._native, "publish_events", {"events": envelopes}, idempotency_key)

    def publish_event(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        entity_id: str | None = None,
        entity_kind: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record:
        """Publishes one event; as :meth:`publish_events`.

        Example::

            >>> c.publish_event("acme.orders.loaded.v1", {"rows": 1200}, entity_id="orders")
        """
        event: dict[str, Any] = {"name": name, "payload": _mapping(payload, "payload") or {},
                                 "entity_id": entity_id, "entity_kind": entity_kind}
        return self.publish_events([event], idempotency_key)

    def watch_events(self, name: str | None = None, entity_id: str | None = None,
                     after: str | None = None) -> EventWatch:
        """Events as they are published: an iterator that blocks for the
        next one. ``after`` (a ``message_id``) sends the events since first;
        default: from now.

        Example::

            >>> with c.watch_events("pulse.pipeline.*") as events:
            ...     for e in events:
            ...         print(e.name, e.payload)
            ...         if e.name == "pulse.pipeline.run_completed.v1":
            ...             break
        """
        request = {"selector": _selector(name, entity_id, None, None), "after_message_id": after or ""}
        return EventWatch(self._native, request)

    def replay(
        self,
        message_ids: Iterable[str] | None = None,
        name: str | None = None,
        since: Any = None,
        until: Any = None,
        pipeline: str | None = None,
        dry_run: bool = False,
        allow_unsafe_steps: bool = False,
        max_events: int = 0,
        idempotency_key: str | None = None,
    ) -> Record:
        """Delivers past events again to the pipelines whose triggers match
        (or only to ``pipeline``), starting runs marked as replays in which
        steps that are not replay-safe are skipped (unless
        ``allow_unsafe_steps``).

        Args:
            message_ids: These events, in this order; or select them with
                ``name``, ``since`` and ``until`` (oldest first).
            dry_run: Start nothing; show the runs that would start and which
                steps would run or be skipped.
            max_events: Default 100, at most 1000; more matching events is
                :class:`InvalidArgument`.

        Returns:
            ``{"dry_run", "matched_events", "replays": [{"event": Event,
            "runs": [PipelineRun, ...]}]}``.
        """
        ids = None if message_ids is None else [str(i) for i in _list_of(message_ids, "message_ids")]
        if ids is not None and (name is not None or since is not None or until is not None):
            raise _invalid("message_ids: give message_ids, or name/since/until, not both")
        request: dict[str, Any] = {
            "pipeline_id": pipeline or "",
            "dry_run": bool(dry_run),
            "allow_unsafe_steps": bool(allow_unsafe_steps),
            "max_events": max_events,
        }
        if ids is not None:
            request["message_ids"] = {"ids": ids}
        else:
            request["selector"] = _selector(name, None, since, until)
        answer = _send(self._native, "replay_events", request, idempotency_key)
        answer["replays"] = [
            Record(event=Event(r.get("event") or {}), runs=[PipelineRun(self._native, run) for run in r.get("runs") or []])
            for r in answer.get("replays") or []
        ]
        return answer


def _selector(name: Any, entity_id: Any, since: Any, until: Any) -> dict[str, Any]:
    selector: dict[str, Any] = {"name": name or "", "entity_id": entity_id or ""}
    r = _range(since, until, "selector.range")
    if r:
        selector["range"] = r
    return selector
