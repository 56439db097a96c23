"""The notebook journey on training, against a live `pulse up`: snapshot a
CSV, register a contract, train with a seed (twice: the same bytes), read
the registry, evaluate, promote behind the contract's gates, roll back; and
bad input with clear errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import pulse

CONTRACT = """
model: {model}
task: binary_classification
target: {{name: churned, type: bool}}
features:
  - {{name: tenure, type: int, min: 0, max: 100}}
  - {{name: spend, type: float, nullable: true}}
  - {{name: plan, type: category}}
promotion:
  min_metrics: {{roc_auc: {min_auc}}}
"""


def test_train_promote_and_roll_back(client: pulse.Client, churn: tuple[str, int, str]) -> None:
    dataset, version, model = churn
    contract = client.register_contract(CONTRACT.format(model=model, min_auc=0.7))
    assert contract.version == 1 and contract.created
    assert contract.task == "binary_classification"
    assert [f.name for f in contract.features] == ["tenure", "spend", "plan"]
    report = client.validate_dataset(dataset, version, model)
    assert report.passed and report.rows_checked == 1500

    params = {"epochs": 6, "batch_size": 64, "learning_rate": 0.05}
    run = client.train(dataset, version, model=model, algorithm="logistic_regression", params=params, seed=3).wait(
        timeout=300, progress=False
    )
    assert run.status == "succeeded"
    assert run.metrics.roc_auc > 0.7, run.metrics
    assert run.model_version == {"model": model, "version": 1}
    again = client.train(dataset, version, model=model, algorithm="logistic_regression", params=params, seed=3).wait(
        timeout=300, progress=False
    )
    assert again.artifact_sha256 == run.artifact_sha256, "same data, contract, parameters and seed"

    mlp = client.train(
        dataset, version, model=model, algorithm="mlp", params={"epochs": 4, "hidden_layers": [8]}, seed=1
    ).wait(timeout=300, progress=False)
    assert mlp.model_version["version"] == 3

    versions = client.list_model_versions(model)
    assert [v.ref.version for v in versions] == [3, 2, 1]
    assert all(v.stage == "candidate" for v in versions)
    v1 = client.get_model_version(model, 1)
    assert v1.dataset == {"dataset_id": dataset, "version": version}
    assert v1.params["epochs"] == 6

    ev = client.evaluate(model, 1)
    assert ev.split == "test" and ev.metrics.accuracy == run.metrics.accuracy

    promoted = client.promote(model, run.model_version)
    assert promoted.promoted, promoted.refusal
    assert client.get_model(model).production_version == 1
    dry = client.promote(model, 2, dry_run=True)
    assert not dry.promoted and dry.gates, "a dry run evaluates the gates and changes nothing"
    assert client.get_model(model).production_version == 1

    client.register_contract(CONTRACT.format(model=model, min_auc=0.999))
    strict = client.train(dataset, version, model=model, params=params, seed=4).wait(timeout=300, progress=False)
    refused = client.promote(model, strict.model_version)
    assert not refused.promoted
    assert "roc_auc" in refused.refusal and "minimum 0.9990" in refused.refusal
    gate = next(g for g in refused.gates if g.name == "min_metric:roc_auc")
    assert gate.passed is False and gate.slack < 0
    forced = client.promote(model, strict.model_version, force=True, reason="approved")
    assert forced.promoted and forced.change.forced
    assert client.get_model_version(model, 1).stage == "archived"

    back = client.rollback(model, reason="regression in the canary")
    assert back.production.ref.version == 1
    assert client.get_model_version(model, stage="production").ref.version == 1


def test_bad_input_raises_clear_errors(client: pulse.Client, churn: tuple[str, int, str]) -> None:
    dataset, version, model = churn
    with pytest.raises(pulse.InvalidArgument, match=r"features\[0\]"):
        client.register_contract(CONTRACT.format(model=model, min_auc=0.7).replace("max: 100", "max: -5"))
    client.register_contract(CONTRACT.format(model=model, min_auc=0.7))
    with pytest.raises(pulse.InvalidArgument, match="params.epochz"):
        client.train(dataset, version, model=model, params={"epochz": 3})
    with pytest.raises(pulse.InvalidArgument, match="algorithm"):
        client.train(dataset, version, model=model, algorithm="linear_regression")
    with pytest.raises(pulse.InvalidArgument, match="algorithm"):
        client.train(dataset, version, model=model, algorithm="random_forest")
    with pytest.raises(pulse.NotFound):
        client.train("no-such-dataset", 1, model=model)
    with pytest.raises(pulse.NotFound):
        client.get_model(model)
    # A dataset that breaks the contract fails the job with the report.
    client.register_contract(CONTRACT.format(model=model, min_auc=0.7).replace("max: 100", "max: 5"))
    job = client.train(dataset, version, model=model, params={"epochs": 1})
    with pytest.raises(pulse.FailedPrecondition, match="tenure"):
        job.wait(timeout=120, progress=False)
    violations = job.job.validation.violations
    assert any(v.column == "tenure" and v.rule == "max" and v.count > 0 for v in violations)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_an_external_loop_checkpoints_with_bounded_memory(client: pulse.Client, server, tmp_path: Path) -> None:
    import hashlib
    import os

    worker = f"notebook-{uuid.uuid4().hex[:6]}"
    w = client.register_worker(worker, metadata={"gpu": "none"}, heartbeat_timeout=120)
    assert w.state == "active" and w.kind == "external"
    beat = client.heartbeat(worker, metadata={"epoch": "1"})
    assert beat.worker.metadata == {"gpu": "none", "epoch": "1"}

    small = client.save_checkpoint(worker, data=b"weights-v1", metadata={"epoch": 1, "loss": 0.5})
    assert small.sequence == 1 and small.size_bytes == 10
    assert client.load_checkpoint(small.id).data == b"weights-v1"

    # A large checkpoint streamed from a file and back into a file: the
    # server's peak memory grows by far less than the checkpoint's size.
    size = 2 << 30  # the 2 GB
    src, dst = tmp_path / "big.ckpt", tmp_path / "big.out"
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            piece = block[:-8] + i.to_bytes(8, "little")
            digest.update(piece)
            f.write(piece)
    before = _peak_rss_mib(server.process.pid)
    big = client.save_checkpoint(worker, path=str(src), metadata={"epoch": 2}, sha256=digest.hexdigest())
    assert big.size_bytes == size and big.sha256 == digest.hexdigest() and big.parts == size // (8 << 20)
    loaded = client.load_checkpoint(latest_for_worker=worker, path=str(dst))
    assert loaded.id == big.id and loaded.sequence == 2
    with open(dst, "rb") as f:
        check = hashlib.sha256()
        while chunk := f.read(1 << 22):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    grown = _peak_rss_mib(server.process.pid) - before
    assert grown < 256, f"the server's peak memory grew by {grown:.0f} MiB for a {size >> 20} MiB checkpoint"
    src.unlink()
    dst.unlink()

    with pytest.raises(pulse.PulseError) as e:
        client.save_checkpoint(worker, data=b"abc", sha256="0" * 64)
    assert e.value.code == "DATA_LOSS"
    assert [c.id for c in client.list_checkpoints(worker_id=worker)] == [big.id, small.id], "nothing partial is kept"

    # A save retried with its idempotency key answers the first checkpoint.
    key = f"save-{uuid.uuid4().hex}"
    first = client.save_checkpoint(worker, data=b"weights-v3", idempotency_key=key)
    assert client.save_checkpoint(worker, data=b"weights-v3", idempotency_key=key).id == first.id
    with pytest.raises(pulse.FailedPrecondition, match="new key"):
        client.save_checkpoint(worker, data=b"other", idempotency_key=key)
    assert len(client.list_checkpoints(worker_id=worker)) == 3

    client.deregister_worker(worker)
    with pytest.raises(pulse.FailedPrecondition, match="register it again"):
        client.heartbeat(worker)
    with pytest.raises(pulse.FailedPrecondition):
        client.save_checkpoint(worker, data=b"late")
