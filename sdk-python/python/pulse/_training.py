"""Training: model contracts, training jobs on committed dataset versions,
the model registry, evaluation and gated promotion."""

from __future__ import annotations

from typing import Any, Mapping

from pulse._datasets import Record, _call, _Job, _ProgressBar
from pulse.exceptions import FailedPrecondition, PulseError

# Short algorithm names; "mlp" picks the classifier or the regressor from the
# contract's task.
_ALGORITHMS = {
    "logistic_regression": "ALGORITHM_LOGISTIC_REGRESSION",
    "logistic": "ALGORITHM_LOGISTIC_REGRESSION",
    "linear_regression": "ALGORITHM_LINEAR_REGRESSION",
    "linear": "ALGORITHM_LINEAR_REGRESSION",
    "mlp_classifier": "ALGORITHM_MLP_CLASSIFIER",
    "mlp_regressor": "ALGORITHM_MLP_REGRESSOR",
}
_STAGES = ("candidate", "staging", "production", "archived")


class ModelVersion(Record):
    """A registered model version: ``ref`` (model, version), ``stage``,
    ``metrics`` (test split), ``artifact_sha256``, ``dataset``, ``contract``,
    ``training_job_id``, ``params``, ``seed``."""


class TrainingRun(Record):
    """A finished training job: ``id``, ``status``, ``metrics``,
    ``model_version`` (the registered version, e.g. ``{"model": "churn",
    "version": 3}``), ``artifact_sha256``, ``stop_reason``, ``validation``."""


def _version_number(v: Any) -> int:
    if isinstance(v, Mapping):
        return int(v.get("version", 0))
    return int(v)


class TrainingJob(_Job):
    """A queued or running training job. ``wait()`` follows it (a progress
    bar of optimiser steps, with the loss) and returns the
    :class:`TrainingRun`."""

    _what = "training"
    _unit = "steps"
    _get_method = "get_training_job"
    _cancel_method = "cancel_training_job"

    def _bar(self) -> _ProgressBar:
        return _TrainingBar(self.id)

    def _error_class(self, code: str) -> type:
        # A contract violation fails the job with FAILED_PRECONDITION.
        return FailedPrecondition if code == "FAILED_PRECONDITION" else PulseError

    def wait(self, timeout: float | None = None, progress: bool = True, poll: float = 0.5) -> TrainingRun:
        """Block until the job ends.

        Returns:
            The :class:`TrainingRun` (``metrics``, ``model_version``).

        Raises:
            PulseError: The job failed or was canceled; ``code`` and the
                message are the job's error (a contract violation is
                ``FAILED_PRECONDITION``, with the report in the job's
                ``validation``).
            TimeoutError: ``timeout`` passed first.
        """
        self._follow(timeout, progress, poll)
        return TrainingRun(self.job)


class _TrainingBar(_ProgressBar):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, what="training", unit="steps")

    def detail(self, job: Mapping[str, Any]) -> str:
        m = job.get("latest") or {}
        parts = [job.get("status", "")]
        if m.get("epoch"):
            parts.append(f"epoch {m['epoch']}/{m.get('epochs', 0)}")
            parts.append(f"loss {m.get('loss', 0):.4f}")
        if m.get("validation_loss") is not None:
            parts.append(f"val {m['validation_loss']:.4f}")
        return " · ".join(parts)


class TrainingMixin:
    """Contract, training, registry and promotion calls of :class:`pulse.Client`."""

    _native: Any

    # ---- contracts -----------------------------------------------------------

    def register_contract(self, yaml_text: str) -> Record:
        """Registers a YAML model contract as its model's next version (the
        same YAML as the latest version returns that version). Malformed YAML
        or an invalid field raises ``InvalidArgument`` naming the YAML path."""
        answer = _call(self._native, "register_contract", {"yaml": yaml_text})
        contract = answer["contract"]
        contract["created"] = answer.get("created", False)
        return contract

    def get_contract(self, model: str, version: int = 0) -> Record:
        """A contract version (0: the latest)."""
        return _call(self._native, "get_contract", {"model": model, "version": version})

    def list_contracts(self, model: str = "") -> list[Record]:
        """The latest contract of every model, or every version of one."""
        return _call(self._native, "list_contracts", {"model": model}).get("contracts", [])

    def validate_dataset(
        self, dataset_id: str, version: int, model: str, contract_version: int = 0, max_examples: int = 5
    ) -> Record:
        """Checks a dataset version against a contract: ``passed``,
        ``violations`` (column, rule, count, examples)."""
        return _call(
            self._native,
            "validate_dataset",
            {
                "dataset": {"dataset_id": dataset_id, "version": version},
                "model": model,
                "contract_version": contract_version,
                "max_examples": max_examples,
            },
        )

    # ---- training ------------------------------------------------------------

    def train(
        self,
        dataset_id: str,
        version: int,
        model: str,
        algorithm: str = "logistic_regression",
        params: Mapping[str, Any] | None = None,
        target: str = "",
        seed: int | None = None,
        split: Mapping[str, float] | None = None,
        contract_version: int = 0,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> TrainingJob:
        """Queues a training job on one committed dataset version.

        Args:
            algorithm: ``logistic_regression``, ``linear_regression``,
                ``mlp_classifier``, ``mlp_regressor``, or ``mlp`` (picked by
                the contract's task).
            params: Algorithm parameters (``epochs``, ``batch_size``,
                ``learning_rate``, ``hidden_layers``, …); unknown names and
                out-of-range values raise ``InvalidArgument``.
            seed: Same data, contract, parameters and seed → the same model
                bytes. Unset: the server picks one and records it.
            split: ``{"train": 0.7, "validation": 0.15, "test": 0.15}``.

        Returns:
            A :class:`TrainingJob`; ``.wait()`` returns the finished run.
        """
        name = algorithm.lower()
        if name == "mlp":
            task = self.get_contract(model, contract_version).get("task", "")
            name = "mlp_regressor" if task == "regression" else "mlp_classifier"
        if name not in _ALGORITHMS:
            from pulse.exceptions import InvalidArgument

            raise InvalidArgument(f"algorithm: '{algorithm}' is not one of {', '.join(sorted(_ALGORITHMS))}, mlp")
        request: dict[str, Any] = {
            "dataset": {"dataset_id": dataset_id, "version": version},
            "model": model,
            "contract_version": contract_version,
            "target": target,
            "algorithm": _ALGORITHMS[name],
            "params": dict(params or {}),
            "description": description,
            "labels": dict(labels or {}),
        }
        if seed is not None:
            request["seed"] = seed
        if split is not None:
            request["split"] = dict(split)
        job = _call(self._native, "start_training", request, idempotency_key)
        return TrainingJob(self._native, job)

    def get_training_job(self, job_id: str) -> TrainingJob:
        return TrainingJob(self._native, _call(self._native, "get_training_job", {"job_id": job_id}))

    def cancel_training(self, job_id: str, reason: str = "") -> TrainingJob:
        return TrainingJob(self._native, _call(self._native, "cancel_training_job", {"job_id": job_id, "reason": reason}))

    def retry_training(self, job_id: str) -> TrainingJob:
        """Queues a failed job again; it continues from its last checkpoint."""
        return TrainingJob(self._native, _call(self._native, "retry_training_job", {"job_id": job_id}))

    def list_training_jobs(self, model: str = "", status: str = "", dataset_id: str = "") -> list[Record]:
        request: dict[str, Any] = {"model": model, "dataset_id": dataset_id}
        if status:
            request["status"] = "JOB_STATUS_" + status.upper()
        return _call(self._native, "list_training_jobs", request).get("jobs", [])

    # ---- registry ------------------------------------------------------------

    def list_models(self) -> list[Record]:
        return _call(self._native, "list_models", {}).get("models", [])

    def get_model(self, model: str) -> Record:
        """``latest_version``, ``production_version``, ``staging_version``."""
        return _call(self._native, "get_model", {"model": model})

    def list_model_versions(self, model: str, stage: str = "") -> list[ModelVersion]:
        request: dict[str, Any] = {"model": model}
        if stage:
            request["stage"] = "MODEL_STAGE_" + stage.upper()
        return [ModelVersion(v) for v in _call(self._native, "list_model_versions", request).get("versions", [])]

    def get_model_version(self, model: str, version: Any = 0, stage: str = "") -> ModelVersion:
        """A version by number, or the one in ``stage`` (e.g. ``production``)."""
        request: dict[str, Any] = {"model": model, "version": _version_number(version)}
        if stage:
            request["stage"] = "MODEL_STAGE_" + stage.upper()
        return ModelVersion(_call(self._native, "get_model_version", request))

    def evaluate(
        self,
        model: str,
        version: Any,
        dataset_id: str = "",
        dataset_version: int = 0,
        compare_with_production: bool = False,
    ) -> Record:
        """Metrics of a version on its held-out test split, or on every row
        of another dataset version."""
        request: dict[str, Any] = {
            "model_version": {"model": model, "version": _version_number(version)},
            "compare_with_production": compare_with_production,
        }
        if dataset_id:
            request["dataset"] = {"dataset_id": dataset_id, "version": dataset_version}
        return _call(self._native, "evaluate_model", request)

    def promote(
        self,
        model: str,
        version: Any,
        stage: str = "production",
        force: bool = False,
        reason: str = "",
        dry_run: bool = False,
    ) -> Record:
        """Moves a version to a stage. Promotion to production is gated by
        the contract's minimum metrics and no regression against production;
        a refusal is not an exception: ``promoted`` is False and ``gates`` and
        ``refusal`` say why. ``force`` skips the gates (``reason`` required)."""
        if stage not in _STAGES:
            from pulse.exceptions import InvalidArgument

            raise InvalidArgument(f"stage: '{stage}' is not one of {', '.join(_STAGES)}")
        return _call(
            self._native,
            "promote_model",
            {
                "model_version": {"model": model, "version": _version_number(version)},
                "stage": "MODEL_STAGE_" + stage.upper(),
                "force": force,
                "reason": reason,
                "dry_run": dry_run,
            },
        )

    def rollback(self, model: str, to_version: int = 0, reason: str = "") -> Record:
        """Restores the previous production version (or ``to_version``)."""
        return _call(self._native, "rollback_model", {"model": model, "to_version": to_version, "reason": reason})


class Checkpoint(Record):
    """A saved checkpoint: ``id``, ``worker_id`` or ``training_job_id``,
    ``sequence``, ``metadata``, ``size_bytes``, ``sha256``, ``parts``;
    ``data`` holds the bytes when loaded into memory."""


class WorkersMixin:
    """Workers and checkpoints for training loops outside Pulse."""

    _native: Any

    def register_worker(
        self, worker_id: str, metadata: Mapping[str, str] | None = None, heartbeat_timeout: float = 30.0
    ) -> Record:
        """Registers (or re-registers) a worker; heartbeat within
        ``heartbeat_timeout`` seconds or it is marked lost."""
        seconds = int(heartbeat_timeout)
        nanos = int(round((heartbeat_timeout - seconds) * 1e9))
        return _call(
            self._native,
            "register_worker",
            {
                "worker_id": worker_id,
                "kind": "WORKER_KIND_EXTERNAL",
                "metadata": {k: str(v) for k, v in (metadata or {}).items()},
                "heartbeat_timeout": f"{seconds}.{nanos:09d}s",
            },
        )

    def heartbeat(self, worker_id: str, metadata: Mapping[str, str] | None = None) -> Record:
        """Keeps the worker active; ``metadata`` is merged into its own."""
        return _call(
            self._native,
            "heartbeat",
            {"worker_id": worker_id, "metadata": {k: str(v) for k, v in (metadata or {}).items()}},
        )

    def deregister_worker(self, worker_id: str) -> Record:
        return _call(self._native, "deregister_worker", {"worker_id": worker_id})

    def list_workers(self, state: str = "") -> list[Record]:
        request: dict[str, Any] = {}
        if state:
            request["state"] = "WORKER_STATE_" + state.upper()
        return _call(self._native, "list_workers", request).get("workers", [])

    def save_checkpoint(
        self,
        worker_id: str | None = None,
        data: bytes | None = None,
        path: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        training_job_id: str | None = None,
        sha256: str = "",
        idempotency_key: str | None = None,
    ) -> Checkpoint:
        """Saves a checkpoint from ``data`` or streamed from the file at
        ``path`` (never read into memory whole). It becomes visible only
        once complete; a ``sha256`` that does not match raises ``DataLoss``."""
        import json

        if (data is None) == (path is None):
            from pulse.exceptions import InvalidArgument

            raise InvalidArgument("data: give exactly one of data and path")
        header: dict[str, Any] = {"metadata": dict(metadata or {}), "sha256": sha256}
        if worker_id:
            header["worker_id"] = worker_id
        elif training_job_id:
            header["training_job_id"] = training_job_id
        if data is not None:
            header["size_bytes"] = len(data)
        answer = self._native.save_checkpoint(
            json.dumps(header), path=str(path) if path is not None else None, data=data, idempotency_key=idempotency_key or ""
        )
        return _record_of(answer, Checkpoint)

    def get_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        return Checkpoint(_call(self._native, "get_checkpoint", {"checkpoint_id": checkpoint_id}))

    def list_checkpoints(self, worker_id: str = "", training_job_id: str = "") -> list[Checkpoint]:
        answer = _call(self._native, "list_checkpoints", {"worker_id": worker_id, "training_job_id": training_job_id})
        return [Checkpoint(c) for c in answer.get("checkpoints", [])]

    def load_checkpoint(
        self, checkpoint_id: str = "", latest_for_worker: str = "", path: str | None = None
    ) -> Checkpoint:
        """Loads a checkpoint (every part verified against its SHA-256):
        into ``path`` when given (bounded memory), else into ``.data``."""
        import json

        if checkpoint_id:
            request: dict[str, Any] = {"checkpoint_id": checkpoint_id}
        elif latest_for_worker:
            request = {"latest_for_worker": latest_for_worker}
        else:
            from pulse.exceptions import InvalidArgument

            raise InvalidArgument("checkpoint_id: give a checkpoint id or latest_for_worker")
        answer, data = self._native.load_checkpoint(json.dumps(request), path=str(path) if path is not None else None)
        ckpt = _record_of(answer, Checkpoint)
        if data is not None:
            ckpt["data"] = bytes(data)
        return ckpt


def _record_of(answer: str, cls: type) -> Any:
    import json

    from pulse._datasets import _record

    return cls(_record(json.loads(answer)))
