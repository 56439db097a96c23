"""Datasources and snapshots: register a read-only source, freeze it into an
immutable, versioned dataset, and read versions back as ``pyarrow`` tables."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

from pulse import _native
from pulse.exceptions import FailedPrecondition, PulseError

# Enum fields come back as their short lower-case names ("postgres", "succeeded").
_ENUM_PREFIXES = {
    "connector": ("CONNECTOR_KIND_",),
    "status": ("JOB_STATUS_",),
    "mode": ("EXTRACTION_MODE_",),
    "kind": ("OBJECT_KIND_", "GATE_KIND_", "STAGE_CHANGE_KIND_", "WORKER_KIND_", "FEATURE_KIND_"),
    "data_type": ("DATA_TYPE_",),
    "state": ("DATASET_VERSION_STATE_", "WORKER_STATE_"),
    "format": ("FILE_FORMAT_",),
    "task": ("TASK_",),
    "algorithm": ("ALGORITHM_",),
    "stage": ("MODEL_STAGE_",),
    "from_stage": ("MODEL_STAGE_",),
    "to_stage": ("MODEL_STAGE_",),
    "type": ("FEATURE_TYPE_",),
    "impute": ("IMPUTATION_",),
    "non_finite": ("NON_FINITE_POLICY_",),
    "metric": ("DRIFT_METRIC_",),
    "source": ("BASELINE_SOURCE_",),
    "reference_source": ("BASELINE_SOURCE_",),
}
_CHECK_STATUS = "CHECK_STATUS_"


class Record(dict):
    """A server answer: a ``dict`` whose keys also read as attributes
    (``ds.id`` is ``ds["id"]``). Nested messages are Records too."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class Datasource(Record):
    """A registered datasource: ``id``, ``name``, ``connector``,
    ``allowlist``, ``connection`` (redacted: never a secret), ``secret``
    (whether one is set, and the key that sealed it)."""


class DatasetVersion(Record):
    """A committed, immutable dataset version: ``dataset_id``, ``version``,
    ``rows``, ``bytes``, ``sha256``, ``manifest`` (source, schema, chunks and
    per-column ``statistics``)."""


def _record(value: Any, key: str = "", cls: type = Record) -> Any:
    if isinstance(value, dict):
        return cls({k: _record(v, k) for k, v in value.items()})
    if isinstance(value, list):
        return [_record(v, key) for v in value]
    if isinstance(value, str):
        for prefix in _ENUM_PREFIXES.get(key, ()):
            if value.startswith(prefix):
                return value[len(prefix):].lower()
        if value.startswith(_CHECK_STATUS):
            return value[len(_CHECK_STATUS):].lower()
    return value


def _call(native: Any, method: str, request: Mapping[str, Any], idempotency_key: str | None = None, cls: type = Record) -> Any:
    answer = native.call_json(method, json.dumps(request), idempotency_key or "")
    return _record(json.loads(answer), cls=cls)


def _value(v: Any) -> dict[str, Any]:
    """A Python scalar as a typed ``Value``."""
    import datetime as dt
    import decimal

    if isinstance(v, bool):
        return {"bool_value": v}
    if isinstance(v, int):
        return {"int_value": v}
    if isinstance(v, float):
        return {"float_value": v}
    if isinstance(v, decimal.Decimal):
        return {"decimal_value": str(v)}
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return {"timestamp_value": v.isoformat()}
    if isinstance(v, dt.date):
        return {"date_value": v.isoformat()}
    if isinstance(v, bytes):
        import base64

        return {"binary_value": base64.b64encode(v).decode()}
    return {"string_value": str(v)}


class _Job:
    """A server-side job followed from the notebook: its last known state in
    ``job``, ``refresh()``, ``cancel()``, and ``_follow()`` for ``wait()``."""

    _what = "job"
    _unit = "units"
    _get_method = ""
    _cancel_method = ""

    def __init__(self, native: Any, job: Record) -> None:
        self._native = native
        self.job = job

    @property
    def id(self) -> str:
        return self.job["id"]

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, canceling or canceled."""
        return self.job.get("status", "")

    def __repr__(self) -> str:
        p = self.job.get("progress") or {}
        return f"{type(self).__name__}({self.id}, {self.status}, {p.get('done', 0)}/{p.get('total', 0)} {self._unit})"

    def refresh(self) -> Any:
        self.job = _call(self._native, self._get_method, {"job_id": self.id})
        return self

    def cancel(self, reason: str = "") -> Any:
        """Stops the job (at its next chunk or step)."""
        self.job = _call(self._native, self._cancel_method, {"job_id": self.id, "reason": reason})
        return self

    def _bar(self) -> _ProgressBar:
        return _ProgressBar(self.id)

    def _error_class(self, code: str) -> type:
        return FailedPrecondition if self.status == "canceled" else PulseError

    def _follow(self, timeout: float | None, progress: bool, poll: float) -> None:
        """Polls until the job ends; raises its error unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = self._bar() if progress else None
        try:
            while True:
                self.refresh()
                if bar:
                    bar.update(self.job)
                if self.status in ("succeeded", "failed", "canceled"):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self._what} {self.id} still {self.status} after {timeout}s")
                time.sleep(poll)
        finally:
            if bar:
                bar.close()
        if self.status != "succeeded":
            err = self.job.get("error") or {}
            code = err.get("code") or ("CANCELLED" if self.status == "canceled" else "UNKNOWN")
            e = self._error_class(code)(f"{self._what} {self.id} {self.status}: {code}: {err.get('message', '')}")
            e.code, e.message = code, err.get("message", "")
            raise e


class SnapshotJob(_Job):
    """A running extraction. ``wait()`` follows it to the end (with a progress
    bar in notebooks) and returns the committed :class:`DatasetVersion`."""

    _what = "extraction"
    _unit = "rows"
    _get_method = "get_extraction_job"
    _cancel_method = "cancel_extraction_job"

    def wait(self, timeout: float | None = None, progress: bool = True, poll: float = 0.5) -> DatasetVersion:
        """Block until the job ends.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).
            progress: Show a progress bar (``tqdm`` when installed, else a
                text line on stderr).

        Returns:
            The committed :class:`DatasetVersion`.

        Raises:
            PulseError: The job failed or was canceled; the exception's
                ``code`` and message are the job's error.
            TimeoutError: ``timeout`` passed first.
        """
        self._follow(timeout, progress, poll)
        result = self.job["result"]
        return _call(
            self._native,
            "get_dataset_version",
            {"dataset_id": result["dataset_id"], "version": result["version"]},
            cls=DatasetVersion,
        )


class _ProgressBar:
    def __init__(self, job_id: str, what: str = "snapshot", unit: str = "rows") -> None:
        self.job_id = job_id
        self.what, self.unit = what, unit
        self.tqdm = None
        try:
            from tqdm.auto import tqdm

            self.tqdm = tqdm(desc=f"{what} {job_id[-8:]}", unit=unit, unit_scale=True)
        except ImportError:
            pass
        self.last = ""

    def detail(self, job: Mapping[str, Any]) -> str:
        p = job.get("progress") or {}
        return f"{job.get('status', '')} · {p.get('rate', 0):,.0f} {self.unit}/s"

    def update(self, job: Mapping[str, Any]) -> None:
        p = job.get("progress") or {}
        done, total = int(p.get("done", 0)), int(p.get("total", 0))
        if self.tqdm is not None:
            if total and self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.n = done
            self.tqdm.set_postfix_str(self.detail(job), refresh=False)
            self.tqdm.refresh()
        else:
            line = f"\r{self.what} {self.job_id}: {done:,}/{total:,} {self.unit} ({self.detail(job)})"
            if line != self.last:
                sys.stderr.write(line)
                sys.stderr.flush()
                self.last = line

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.last:
            sys.stderr.write("\n")


class DatasetsMixin:
    """Datasource and snapshot calls of :class:`pulse.Client`."""

    _native: Any

    # ---- datasources ------------------------------------------------------

    def register_datasource(
        self,
        name: str,
        kind: str = "postgres",
        dsn: str | None = None,
        password: str | None = None,
        uri: str | None = None,
        allowed_views: Iterable[str] | None = None,
        allowed_tables: Iterable[str] | None = None,
        allowed_schemas: Iterable[str] | None = None,
        queries: Mapping[str, str] | None = None,
        paths: Iterable[str] | None = None,
        format: str | None = None,
        csv: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        force_path_style: bool = False,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Datasource:
        """Register a read-only, allowlisted datasource.

        SQL sources (``kind`` postgres, mysql, sqlserver) take a ``dsn`` and
        an allowlist of views, tables, schemas or named ``queries``. Files
        (``kind="object_storage"``) take a ``uri`` (``file:///dir/`` or
        ``s3://bucket/prefix/``) and ``paths`` (globs allowed); a ``uri``
        naming one file registers its directory with that file allowed.
        Secrets are encrypted at rest and never returned.

        Example::

            >>> ds = c.register_datasource("shop", kind="postgres",
            ...     dsn="postgres://reader:pw@db:5432/shop", allowed_views=["ai_orders_v1"])
            >>> files = c.register_datasource("sales", kind="object_storage",
            ...     uri="file:///data/sales.csv")
        """
        allowlist: dict[str, Any] = {
            "objects": [*(allowed_views or []), *(allowed_tables or [])],
            "schemas": list(allowed_schemas or []),
            "queries": [{"name": k, "sql": v} for k, v in (queries or {}).items()],
            "paths": list(paths or []),
        }
        kind = kind.lower()
        if kind == "object_storage":
            if not uri:
                raise ValueError("uri: required for object_storage (file:///dir/ or s3://bucket/prefix/)")
            if not uri.endswith("/") and not allowlist["paths"]:
                uri, _, file_name = uri.rpartition("/")
                uri += "/"
                allowlist["paths"] = [file_name]
            conn: dict[str, Any] = {
                "object_storage": {
                    "uri": uri,
                    "format": f"FILE_FORMAT_{(format or 'auto').upper()}",
                    "csv": dict(csv or {}),
                    "endpoint": endpoint or "",
                    "region": region or "",
                    "force_path_style": force_path_style,
                    "access_key_id": access_key_id or "",
                    "secret_access_key": secret_access_key or "",
                }
            }
        elif kind == "http":
            conn = {"http": {"url": uri or dsn or ""}}
        else:
            conn = {"sql": {"dsn": dsn or "", "password": password or ""}}
        request = {
            "name": name,
            "connector": f"CONNECTOR_KIND_{kind.upper()}",
            "description": description,
            "connection": conn,
            "allowlist": allowlist,
            "labels": dict(labels or {}),
        }
        return _call(self._native, "register_datasource", request, idempotency_key, cls=Datasource)

    def get_datasource(self, id_or_name: str) -> Datasource:
        return _call(self._native, "get_datasource", {"id": id_or_name}, cls=Datasource)

    def list_datasources(self) -> list[Datasource]:
        out: list[Datasource] = []
        token = ""
        while True:
            page = _call(self._native, "list_datasources", {"page": {"page_token": token}})
            out.extend(Datasource(d) for d in page.get("datasources", []))
            token = (page.get("page") or {}).get("next_page_token", "")
            if not token:
                return out

    def validate_datasource(self, id: str) -> Record:
        """Connect and check: reachable, authenticated, read-only (a warning
        when the role can write), and each allowlisted object. Failures come
        back as ``checks`` with their cause (``ok`` is False), never a secret."""
        return _call(self._native, "validate_datasource", {"id": id})

    def inspect_schema(self, id: str, objects: Sequence[str] | None = None) -> list[Record]:
        """Columns, types, nullability and primary keys of allowlisted objects."""
        return _call(self._native, "inspect_schema", {"id": id, "objects": list(objects or [])}).get("objects", [])

    def estimate_size(
        self,
        id: str,
        objects: Sequence[str] | None = None,
        exact: bool = False,
        cursor_field: str | None = None,
        cursor_after: Any = None,
    ) -> Record:
        """Rows and bytes of allowlisted objects (``total_rows``, ``total_bytes``)."""
        request: dict[str, Any] = {"id": id, "objects": list(objects or []), "exact": exact}
        if cursor_field:
            request["cursor_field"] = cursor_field
        if cursor_after is not None:
            request["cursor_after"] = _value(cursor_after)
        return _call(self._native, "estimate_size", request)

    # ---- snapshots ----------------------------------------------------------

    def create_snapshot(
        self,
        datasource_id: str,
        source: str,
        dataset: str,
        mode: str = "full",
        cursor_field: str | None = None,
        primary_key: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        parallelism: int = 1,
        partition_column: str | None = None,
        chunk_rows: int | None = None,
        description: str = "",
        idempotency_key: str | None = None,
    ) -> SnapshotJob:
        """Freeze an allowlisted object into a new version of ``dataset``.

        ``mode="incremental"`` reads only rows whose ``cursor_field`` moved
        past the last version's and merges them by ``primary_key``, so the new
        version reads like a full snapshot. Returns a :class:`SnapshotJob`;
        ``.wait()`` returns the :class:`DatasetVersion`.

        Example::

            >>> job = c.create_snapshot(ds.id, source="ai_orders_v1", dataset="orders",
            ...                         cursor_field="updated_at", primary_key=["id"])
            >>> ver = job.wait()
        """
        request = {
            "datasource_id": datasource_id,
            "object": source,
            "dataset": dataset,
            "mode": f"EXTRACTION_MODE_{mode.upper()}",
            "cursor_field": cursor_field or "",
            "primary_key": list(primary_key or []),
            "columns": list(columns or []),
            "parallelism": parallelism,
            "partition_column": partition_column or "",
            "chunk_rows": chunk_rows or 0,
            "description": description,
        }
        job = _call(self._native, "start_extraction", request, idempotency_key)
        return SnapshotJob(self._native, job)

    def get_snapshot_job(self, job_id: str) -> SnapshotJob:
        return SnapshotJob(self._native, _call(self._native, "get_extraction_job", {"job_id": job_id}))

    def list_datasets(self) -> list[Record]:
        out: list[Record] = []
        token = ""
        while True:
            page = _call(self._native, "list_datasets", {"page": {"page_token": token}})
            out.extend(page.get("datasets", []))
            token = (page.get("page") or {}).get("next_page_token", "")
            if not token:
                return out

    def get_dataset(self, dataset_id: str) -> Record:
        return _call(self._native, "get_dataset", {"dataset_id": dataset_id})

    def list_dataset_versions(self, dataset_id: str) -> list[DatasetVersion]:
        page = _call(self._native, "list_dataset_versions", {"dataset_id": dataset_id})
        return [DatasetVersion(v) for v in page.get("versions", [])]

    def get_dataset_version(self, dataset_id: str, version: int = 0) -> DatasetVersion:
        """A version with its full manifest; ``version=0`` is the current one."""
        return _call(self._native, "get_dataset_version", {"dataset_id": dataset_id, "version": version}, cls=DatasetVersion)

    def read_snapshot(self, dataset_id: str, version: int = 0, columns: Sequence[str] | None = None, limit: int = 0) -> Any:
        """A dataset version as a ``pyarrow.Table`` (``version=0``: current).

        The server checks every chunk's SHA-256 before sending its rows; a
        tampered chunk raises instead of being read. The table's schema
        metadata holds ``pulse.dataset``, ``pulse.version`` and
        ``pulse.sha256``.
        """
        import pyarrow as pa

        ds_id, ver, sha, ipc = self._native.read_dataset_version(dataset_id, version, list(columns or []), limit)
        table = pa.ipc.open_stream(pa.py_buffer(ipc)).read_all()
        meta = dict(table.schema.metadata or {})
        meta.update({b"pulse.dataset": ds_id.encode(), b"pulse.version": str(ver).encode(), b"pulse.sha256": sha.encode()})
        return table.replace_schema_metadata(meta)

    def pin_dataset_version(self, dataset_id: str, version: int, reason: str = "") -> Record:
        """Point the dataset's current version at ``version`` and hold it there."""
        return _call(self._native, "pin_dataset_version", {"dataset_id": dataset_id, "version": version, "reason": reason})

    def unpin_dataset(self, dataset_id: str) -> Record:
        return _call(self._native, "unpin_dataset", {"dataset_id": dataset_id})

    def rollback_dataset(self, dataset_id: str, to_version: int = 0, reason: str = "") -> Record:
        """Move the current pointer back (to its previous value, or ``to_version``)."""
        return _call(self._native, "rollback_dataset", {"dataset_id": dataset_id, "to_version": to_version, "reason": reason})
