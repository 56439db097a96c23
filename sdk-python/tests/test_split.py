"""The notebook journey against Pulse deployed as six processes (`pulse serve
<service>`), sharing PostgreSQL and an S3-compatible bucket, each told where
the others are: the SDK talks to one of them, which forwards what it does
not serve."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import pulse
from conftest import churn_csv, pulse_bin
from test_training import CONTRACT

SERVICES = ["datasource", "snapshot", "trainer", "inference", "lineage", "drift"]
DATABASE = os.environ.get("PULSE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    """A free port outside the kernel's ephemeral range (32768-60999): the ports
    are chosen before the processes start, and an ephemeral one can be taken
    by an outgoing connection (to PostgreSQL, to S3) in between."""
    import random
    while True:
        port = random.randrange(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _psql(sql: str) -> None:
    subprocess.run(["psql", DATABASE, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


@pytest.fixture
def six(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Six processes; yields (endpoint of the datasource process, admin key)."""
    s3 = os.environ.get("PULSE_TEST_S3_ENDPOINT")
    if not s3 or not shutil.which("psql"):
        pytest.skip("needs PULSE_TEST_S3_ENDPOINT (make test starts one) and psql; "
                    "services/pulse/tests/split.rs runs the same deployment without them")
    import boto3

    name = f"pulse_split_{uuid.uuid4().hex[:8]}"
    _psql(f"CREATE DATABASE {name}")
    bucket = name.replace("_", "-")
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    url = DATABASE.rsplit("/", 1)[0] + "/" + name
    ports = {s: _free_port() for s in SERVICES}
    admin_key = "pa_" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update({
        "PULSE_DATABASE_URL": url,
        "PULSE_S3_BUCKET": bucket,
        "PULSE_S3_ENDPOINT": s3,
        "PULSE_S3_PATH_STYLE": "true",
        "PULSE_MASTER_KEY": "33" * 32,
        "PULSE_ADMIN_KEY": admin_key,
        "PULSE_FILE_ROOTS": f'["{tmp_path}"]',
        "PULSE_MODEL_POLL_MS": "200",
        "PULSE_POLICY_INTERVAL_SECONDS": "1",
        **{f"PULSE_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
    })
    processes = []
    try:
        for service in SERVICES:
            log = open(tmp_path / f"{service}.log", "wb")
            processes.append(subprocess.Popen(
                [str(pulse_bin()), "serve", service, "--listen", f"127.0.0.1:{ports[service]}", "--metrics-listen", ""],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
            # One at a time: each applies its migrations to the shared database.
            deadline = time.time() + 60
            while subprocess.run([str(pulse_bin()), "health", "--endpoint", f"http://127.0.0.1:{ports[service]}"],
                                 capture_output=True).returncode != 0:
                assert processes[-1].poll() is None, (tmp_path / f"{service}.log").read_text()
                assert time.time() < deadline, f"{service} did not become healthy"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{ports['datasource']}", admin_key
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(timeout=30)
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_journey_on_six_processes(six: tuple[str, str], tmp_path: Path) -> None:
    endpoint, admin_key = six
    admin = pulse.connect(endpoint, api_key=admin_key)
    tenant = admin.create_tenant("split")
    c = pulse.connect(endpoint, api_key=admin.create_api_key(tenant["id"], "sdk")["secret"])

    csv = tmp_path / "churn.csv"
    churn_csv(csv)
    ds = c.register_datasource("churn", kind="object_storage", uri=f"file://{csv}")
    ver = c.create_snapshot(ds.id, source="churn.csv", dataset="churn").wait(timeout=120, progress=False)
    assert c.read_snapshot(ver.dataset_id, ver.version).num_rows == ver.rows == 1500
    c.register_contract(CONTRACT.format(model="churn", min_auc=0.6))
    run = c.train(ver.dataset_id, ver.version, model="churn", params={"epochs": 6, "batch_size": 64, "learning_rate": 0.05}, seed=1).wait(
        timeout=300, progress=False
    )
    assert c.promote("churn", run.model_version).promoted
    deadline = time.time() + 30
    while True:
        try:
            p = c.predict("churn", {"tenure": 3, "spend": 90.0, "plan": "basic"})
            break
        except pulse.FailedPrecondition:
            assert time.time() < deadline
            time.sleep(0.2)
    assert p.model_version == {"model": "churn", "version": 1}
    c.predict_batch("churn", [{"tenure": t, "spend": 50.0, "plan": "pro"} for t in range(40)])
    c.record_feedback(p.id, label=True)
    report = c.check_drift("churn")
    assert report.id.startswith("drf_")
    kinds = {n["kind"] for n in c.trace(p.id).nodes}
    assert {"datasource", "dataset_version", "model_version", "prediction"} <= kinds, kinds

    # Retraining through the built-in pipeline: its steps run in the drift
    # process and call snapshot and trainer across processes.
    c.set_retraining_policy("churn", triggers=[{"feedback": {"new_feedback": 1}}], cooldown="1h")
    deadline = time.time() + 90
    while not (runs := c.list_runs(pipeline="retrain", origin="policy")):
        assert time.time() < deadline, c.list_policy_decisions("churn")
        time.sleep(0.5)
    retrain = runs[0].wait(timeout=300, progress=False)
    assert retrain.status == "SUCCEEDED", retrain.run
    assert retrain.step("train").output["model_version"]["version"] == 2
