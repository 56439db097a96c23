"""Inference benchmark: one model (logistic regression and a small MLP, 32
features) served by Pulse (`pulse up`, release build) side by side, in one
run, with the limit (an empty tonic call, `grpc.health.v1` Check, on the same
Pulse server), and the same model trained with scikit-learn served by
MLflow's model server (`mlflow models serve --env-manager local`) and by
Seldon's MLServer (`mlserver` + `mlserver-sklearn`). Load comes from
`services/inference/examples/loadgen.rs` (release), on the same machine.

    make bench-inference          # or: python bench/inference/bench.py --seconds 5

Reported per system: the highest closed-loop throughput whose p99 stays
under 10 ms (concurrency swept 1, 2, 4, 8, 16, 32, 64), then p50/p99 in open
loop at half that rate; and Pulse with micro-batching off
(`PULSE_INFERENCE_MAX_BATCH_SIZE=1`) the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PULSE = TARGET_DIR / "release" / "pulse"
LOADGEN = TARGET_DIR / "release" / "examples" / "loadgen"
CONCURRENCY_SMOKE = (1, 8)
FEATURES = 32
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def wait_http(url: str, body: Path, timeout: float = 180) -> None:
    """Until the server answers a real request (workers load after the port opens)."""
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            req = urllib.request.Request(url, data=body.read_bytes(), headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{url} does not answer")
        time.sleep(0.5)


def data(rows: int = 50_000, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES))
    w = rng.standard_normal(FEATURES)
    y = ((x @ w / np.sqrt(FEATURES) + 0.3 * rng.standard_normal(rows)) > 0).astype(int)
    return x, y


def loadgen(*args: str) -> dict:
    out = subprocess.run([str(LOADGEN), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, target_args: list[str], seconds: float) -> dict:
    best = None
    for c in CONCURRENCY:
        r = loadgen(*target_args, "--concurrency", str(c), "--seconds", str(seconds))
        print(f"  {name}: concurrency {c}: {r}", flush=True)
        if r["errors"] == 0 and r["p99_ms"] < 10 and (best is None or r["throughput"] > best["throughput"]):
            best = dict(r, concurrency=c)
    if best is None:
        return {"name": name, "max_rps": 0.0}
    half = best["throughput"] / 2
    o = loadgen(*target_args, "--rate", f"{half:.0f}", "--seconds", str(seconds))
    print(f"  {name}: open loop at {half:.0f}/s: {o}", flush=True)
    return {"name": name, "max_rps": best["throughput"], "at_concurrency": best["concurrency"],
            "half_rate": half, "p50_ms": o["p50_ms"], "p99_ms": o["p99_ms"], "errors": o["errors"]}


class Pulse:
    def __init__(self, state: Path, batching: bool) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update({"PULSE_FILE_ROOTS": json.dumps([str(state)]), "PULSE_LOG_LEVEL": "warn",
                    "PULSE_TRAINING_WORKERS": "1"})
        if not batching:
            env["PULSE_INFERENCE_MAX_BATCH_SIZE"] = "1"
        self.proc = subprocess.Popen([str(PULSE), "up", "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", ""],
                                     cwd=state, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        deadline = time.time() + 30
        while not (state / ".pulse" / "default.key").exists():
            assert time.time() < deadline, "no tenant key"
            time.sleep(0.1)
        self.key = (state / ".pulse" / "default.key").read_text().strip()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def train_pulse(state: Path, x: np.ndarray, y: np.ndarray) -> None:
    import pulse

    lines = [",".join([f"f{i}" for i in range(FEATURES)] + ["label"])]
    lines += [",".join(f"{v:.6f}" for v in row) + f",{int(t)}" for row, t in zip(x, y)]
    (state / "train.csv").write_text("\n".join(lines) + "\n")
    p = Pulse(state, batching=True)
    try:
        c = pulse.connect(f"http://127.0.0.1:{p.port}", api_key=p.key)
        ds = c.register_datasource("bench", kind="object_storage", uri=f"file://{state}/train.csv")
        ver = c.create_snapshot(ds.id, source="train.csv", dataset="bench").wait(progress=False)
        feats = "\n".join(f"  - {{name: f{i}, type: float}}" for i in range(FEATURES))
        for model, algorithm, params in (("logreg", "logistic_regression", {"epochs": 3}),
                                         ("mlp", "mlp", {"epochs": 3, "hidden_layers": [16]})):
            c.register_contract(f"model: {model}\ntask: binary_classification\n"
                                f"target: {{name: label, type: int}}\nfeatures:\n{feats}\n")
            run = c.train(ver.dataset_id, ver.version, model=model, algorithm=algorithm, params=params,
                          seed=1).wait(progress=False)
            assert c.promote(model, run.model_version, force=True, reason="benchmark").promoted
    finally:
        p.stop()


def sklearn_models(x: np.ndarray, y: np.ndarray, tmp: Path) -> dict[str, Path]:
    import joblib
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    out = {}
    for name, model in (("logreg", LogisticRegression(max_iter=200)),
                        ("mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=1))):
        model.fit(x, y)
        d = tmp / f"mlflow-{name}"
        trusted = ["sklearn.neural_network._stochastic_optimizers.AdamOptimizer"] if name == "mlp" else None
        mlflow.sklearn.save_model(model, str(d), skops_trusted_types=trusted)
        s = tmp / f"mlserver-{name}"
        s.mkdir()
        joblib.dump(model, s / "model.joblib")
        (s / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}))
        out[name] = (d, s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--smoke", action="store_true", help="debug builds, two concurrency levels: checks the driver only")
    args = ap.parse_args()
    global PULSE, LOADGEN, CONCURRENCY
    if args.smoke:
        PULSE, LOADGEN = TARGET_DIR / "debug" / "pulse", TARGET_DIR / "debug" / "examples" / "loadgen"
        CONCURRENCY = CONCURRENCY_SMOKE
    for b in (PULSE, LOADGEN):
        if not b.is_file():
            sys.exit(f"build first: cargo build --release -p pulse --bin pulse; cargo build --release -p pulse-inference --example loadgen ({b})")
    x, y = data()
    row = [round(float(v), 6) for v in x[0]]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        state = tmp / "pulse"
        state.mkdir()
        train_pulse(state, x, y)
        models = sklearn_models(x, y, tmp)
        (tmp / "mlflow.json").write_text(json.dumps(
            {"dataframe_split": {"columns": [f"f{i}" for i in range(FEATURES)], "data": [row]}}))
        (tmp / "v2.json").write_text(json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, FEATURES], "datatype": "FP64", "data": row}]}))
        for model in ("logreg", "mlp"):
            rows = results.setdefault(model, [])
            for batching in (True, False):
                p = Pulse(state, batching=batching)
                try:
                    common = ["--addr", f"127.0.0.1:{p.port}"]
                    if batching:
                        rows.append(measure("empty tonic call (the limit)", ["--target", "empty", *common], args.seconds))
                    name = "Pulse" if batching else "Pulse, micro-batching off"
                    rows.append(measure(name, ["--target", "pulse", *common, "--key", p.key, "--model", model],
                                        args.seconds))
                finally:
                    p.stop()
            mlflow_dir, mlserver_dir = models[model]
            port = free_port()
            bin_dir = Path(sys.executable).parent
            # MLflow starts uvicorn by name: the venv's bin must be on PATH.
            env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
            mf = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", str(mlflow_dir), "--env-manager",
                                   "local", "-h", "127.0.0.1", "-p", str(port), "-w", "2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                wait_http(f"http://127.0.0.1:{port}/invocations", tmp / "mlflow.json")
                rows.append(measure("MLflow (2 workers)", ["--target", "http", "--addr", f"127.0.0.1:{port}",
                                                            "--path", "/invocations", "--body-file",
                                                            str(tmp / "mlflow.json")], args.seconds))
            finally:
                mf.send_signal(signal.SIGTERM)
                mf.wait(timeout=30)
            http, grpc = free_port(), free_port()
            (mlserver_dir / "settings.json").write_text(json.dumps(
                {"http_port": http, "grpc_port": grpc, "metrics_port": free_port(), "host": "127.0.0.1"}))
            ms = subprocess.Popen([str(bin_dir / "mlserver"), "start", str(mlserver_dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                wait_http(f"http://127.0.0.1:{http}/v2/models/{model}/infer", tmp / "v2.json")
                rows.append(measure("MLServer", ["--target", "http", "--addr", f"127.0.0.1:{http}", "--path",
                                                 f"/v2/models/{model}/infer", "--body-file", str(tmp / "v2.json")],
                                    args.seconds))
            finally:
                ms.send_signal(signal.SIGTERM)
                ms.wait(timeout=30)
    print("\n| model | system | max throughput, p99 < 10 ms | at concurrency | p50 at half load | p99 at half load |")
    print("|---|---|---|---|---|---|")
    for model, rows in results.items():
        for r in rows:
            if r["max_rps"] == 0:
                print(f"| {model} | {r['name']} | none under 10 ms | | | |")
                continue
            print(f"| {model} | {r['name']} | {r['max_rps']:,.0f}/s | {r['at_concurrency']} | {r['p50_ms']:.2f} ms | "
                  f"{r['p99_ms']:.2f} ms |")
        by = {r["name"]: r["max_rps"] for r in rows}
        pulse_rps = by.get("Pulse", 0)
        for peer in ("empty tonic call (the limit)", "MLflow (2 workers)", "MLServer", "Pulse, micro-batching off"):
            if by.get(peer):
                print(f"{model}: Pulse / {peer} = {pulse_rps / by[peer]:.2f}")


if __name__ == "__main__":
    main()
