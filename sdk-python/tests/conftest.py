"""A real `pulse up` for the whole test session.

The server runs as a subprocess on free ports (`127.0.0.1:0`) with a
temporary state directory, so it starts from nothing: a fresh embedded
database, a generated admin key and a bootstrapped `default` tenant. Its
start-up banner says where it listens and where the keys are:

    Pulse is up.
      gRPC:       127.0.0.1:41234  (grpcurl -plaintext 127.0.0.1:41234 list)
      metrics:    http://127.0.0.1:41235/metrics
      ...
      admin key:  /tmp/.../admin.key
      tenant key: /tmp/.../default.key  (export PULSE_API_KEY=...)

It is stopped with SIGTERM at the end of the session and must exit 0.

The binary is `$PULSE_BIN`, else `$CARGO_TARGET_DIR/debug/pulse` with
CARGO_TARGET_DIR defaulting to /root/.cache/pulse-target.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import pulse

START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0

BANNER = {
    "grpc": re.compile(r"gRPC:\s+(\S+)"),
    "metrics": re.compile(r"metrics:\s+(\S+)"),
    "tenant_key": re.compile(r"tenant key:\s+(\S+)"),
    "admin_key": re.compile(r"admin key:\s+(\S+)"),
}

# Settings from the caller's environment that would change what the banner
# says (or whom the tests talk to). Storage settings (PULSE_DATABASE_URL,
# PULSE_S3_*) pass through, so the suite can run against PostgreSQL and S3.
STRIPPED_ENV = (
    "PULSE_API_KEY",
    "PULSE_ENDPOINT",
    "PULSE_ADMIN_KEY",
    "PULSE_CONFIG",
    "PULSE_LISTEN",
    "PULSE_METRICS_LISTEN",
    "PULSE_STATE_DIR",
    "PULSE_BOOTSTRAP_DEFAULT_TENANT",
)


def pulse_bin() -> Path:
    explicit = os.environ.get("PULSE_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or "/root/.cache/pulse-target"
    return Path(target) / "debug" / "pulse"


@dataclasses.dataclass
class Server:
    endpoint: str
    metrics_url: str
    tenant_key: str
    admin_key: str
    process: subprocess.Popen
    output: list[str]
    stderr_path: Path

    def logs(self) -> str:
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "--- stdout ---\n" + "".join(self.output) + "\n--- stderr ---\n" + err


def _start(state_dir: Path) -> Server:
    binary = pulse_bin()
    if not binary.is_file():
        raise RuntimeError(
            f"the pulse binary is not at {binary}: build it with `cargo build -p pulse` "
            "(CARGO_TARGET_DIR=/root/.cache/pulse-target) or point PULSE_BIN at it"
        )
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
    # Tests register files from their temporary directories (siblings of the
    # state directory).
    env["PULSE_FILE_ROOTS"] = json.dumps([str(state_dir.parent)])
    # Policies are evaluated every second, so a fired policy shows at once.
    env["PULSE_POLICY_INTERVAL_SECONDS"] = "1"
    stderr_path = state_dir.parent / f"{state_dir.name}-stderr.log"
    stderr = open(stderr_path, "wb")
    cmd = [
        str(binary),
        "up",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--state-dir",
        str(state_dir),
    ]
    # cwd = the state dir, so no stray ./pulse.toml is read and nothing is
    # written where the tests were started.
    process = subprocess.Popen(
        cmd, cwd=state_dir, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1
    )
    stderr.close()
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:
        # Keeps draining stdout for the whole session so the pipe never fills.
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            for name, pattern in BANNER.items():
                m = pattern.search(line)
                if m and name not in found:
                    found[name] = m.group(1)
            if len(found) == len(BANNER):
                ready.set()
        ready.set()  # EOF: the process is gone

    threading.Thread(target=read, name="pulse-up-stdout", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            break
    partial = Server("", "", "", "", process, output, stderr_path)
    if len(found) != len(BANNER):
        if process.poll() is None:
            process.kill()
            process.wait()
            why = f"did not print its banner within {START_TIMEOUT:.0f}s"
        else:
            time.sleep(0.2)  # let the reader catch the last lines
            why = f"exited with status {process.returncode}"
        missing = sorted(set(BANNER) - set(found))
        raise RuntimeError(f"`{' '.join(cmd)}` {why} (missing: {', '.join(missing)})\n{partial.logs()}")

    grpc = found["grpc"]
    endpoint = grpc if "://" in grpc else f"http://{grpc}"
    return Server(
        endpoint=endpoint,
        metrics_url=found["metrics"],
        tenant_key=Path(found["tenant_key"]).read_text().strip(),
        admin_key=Path(found["admin_key"]).read_text().strip(),
        process=process,
        output=output,
        stderr_path=stderr_path,
    )


def _stop(server: Server) -> None:
    """SIGTERM, then the server must finish in-flight calls and exit 0."""
    if server.process.poll() is not None:
        raise RuntimeError(f"pulse up died during the tests (status {server.process.returncode})\n{server.logs()}")
    server.process.send_signal(signal.SIGTERM)
    try:
        status = server.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise RuntimeError(f"pulse up did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM\n{server.logs()}") from None
    if status != 0:
        raise RuntimeError(f"pulse up exited with status {status} after SIGTERM\n{server.logs()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The running `pulse up`."""
    s = _start(tmp_path_factory.mktemp("pulse-state"))
    try:
        yield s
    finally:
        _stop(s)


@pytest.fixture(scope="session")
def client(server: Server) -> pulse.Client:
    """A client with the `default` tenant's key."""
    return pulse.connect(server.endpoint, api_key=server.tenant_key)


@pytest.fixture(scope="session")
def admin(server: Server) -> pulse.Client:
    """A client with the admin key (tenants and keys only)."""
    return pulse.connect(server.endpoint, api_key=server.admin_key)


@pytest.fixture
def uid() -> str:
    """A suffix that keeps each test's node ids apart on the shared server."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _no_ambient_pulse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests pass endpoints and keys explicitly; the caller's shell must not leak in."""
    monkeypatch.delenv("PULSE_API_KEY", raising=False)
    monkeypatch.delenv("PULSE_ENDPOINT", raising=False)


def churn_csv(path: Path, rows: int = 1500) -> None:
    rng = random.Random(5)
    lines = ["id,tenure,spend,plan,churned"]
    for i in range(rows):
        tenure = rng.randint(0, 60)
        spend = rng.uniform(20, 100)
        plan = rng.choice(["basic", "pro", "team"])
        z = 1.5 - 0.08 * tenure + 0.02 * (spend - 60) + (0.8 if plan == "basic" else -0.4)
        churned = rng.random() < 1 / (1 + math.exp(-z))
        spend_text = "" if i % 13 == 0 else f"{spend:.2f}"
        lines.append(f"{i},{tenure},{spend_text},{plan},{str(churned).lower()}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def churn(client: pulse.Client, tmp_path: Path) -> tuple[str, int, str]:
    """A committed dataset version of churn rows, and a model name."""
    csv = tmp_path / "churn.csv"
    churn_csv(csv)
    suffix = uuid.uuid4().hex[:6]
    ds = client.register_datasource(f"churn-{suffix}", kind="object_storage", uri=f"file://{csv}")
    ver = client.create_snapshot(ds.id, source="churn.csv", dataset=f"churn-{suffix}").wait(timeout=120, progress=False)
    return ver.dataset_id, ver.version, f"churn-{suffix}"
