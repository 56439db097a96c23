"""Training benchmark: Pulse's training engine (burn, Flex CPU backend, the
same contract → feature pipeline → optimiser path a training job runs) side
by side with scikit-learn on the same train/test split, in one run.

    make bench-trainer            # or: python bench/trainer/bench.py --rows 1000000

Data: a 1M-row × 32-feature binary classification set generated with a
fixed seed (linear signal plus an interaction, label noise), and scikit-learn's
breast cancer set (569 × 30). Reported: training seconds, seconds per epoch,
test accuracy and log loss, and for logistic regression the time Pulse needs
to reach scikit-learn's test log loss (+0.001).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
ENGINE = TARGET_DIR / "release" / "examples" / "bench_train"


def synthetic(rows: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 32)).astype(np.float32)
    w = rng.standard_normal(32)
    z = x @ w / np.sqrt(32) + 0.8 * np.sin(x[:, 0] * x[:, 1]) + 0.3 * rng.standard_normal(rows)
    return x, (z > 0).astype(np.int64)


def write(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    cols = {f"f{i}": pa.array(x[:, i].astype(np.float64)) for i in range(x.shape[1])}
    cols["label"] = pa.array(y)
    pq.write_table(pa.table(cols), path, compression="zstd")


def pulse(train: Path, test: Path, algorithm: str, epochs: int, batch: int, lr: float) -> list[dict]:
    out = subprocess.run(
        [str(ENGINE), "--train", str(train), "--test", str(test), "--algorithm", algorithm,
         "--epochs", str(epochs), "--batch", str(batch), "--lr", str(lr), "--hidden", "64,32"],
        capture_output=True, text=True, check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def sk_logistic(xtr, ytr, xte, yte) -> dict:
    scaler = StandardScaler().fit(xtr)
    t = time.perf_counter()
    m = LogisticRegression(max_iter=1000).fit(scaler.transform(xtr), ytr)
    secs = time.perf_counter() - t
    p = m.predict_proba(scaler.transform(xte))
    return {"train_seconds": secs, "test_accuracy": accuracy_score(yte, p.argmax(1)), "test_log_loss": log_loss(yte, p)}


def sk_mlp(xtr, ytr, xte, yte, epochs: int, batch: int, lr: float) -> dict:
    scaler = StandardScaler().fit(xtr)
    m = MLPClassifier(hidden_layer_sizes=(64, 32), batch_size=batch, learning_rate_init=lr, max_iter=epochs,
                      shuffle=True, random_state=42, early_stopping=False, n_iter_no_change=epochs + 1, tol=0)
    t = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.fit(scaler.transform(xtr), ytr)
    secs = time.perf_counter() - t
    p = m.predict_proba(scaler.transform(xte))
    return {"train_seconds": secs, "epoch_seconds": secs / m.n_iter_, "test_accuracy": accuracy_score(yte, p.argmax(1)),
            "test_log_loss": log_loss(yte, p)}


def torch_train(xtr, ytr, xte, yte, hidden: tuple[int, ...], epochs: int, batch: int, lr: float) -> dict:
    """The usual PyTorch loop on in-memory tensors (no DataLoader overhead):
    shuffle each epoch, Adam, one logit with BCE-with-logits as Pulse does."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(42)
    scaler = StandardScaler().fit(xtr)
    xt = torch.from_numpy(scaler.transform(xtr).astype(np.float32))
    yt = torch.from_numpy(ytr.astype(np.float32))
    xe = torch.from_numpy(scaler.transform(xte).astype(np.float32))
    dims = [xt.shape[1], *hidden]
    layers: list = []
    for i, o in zip(dims, dims[1:]):
        layers += [torch.nn.Linear(i, o), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(dims[-1], 1))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    spent, epochs_out = 0.0, []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        model.train()
        perm = torch.randperm(xt.shape[0])
        for i in range(0, xt.shape[0], batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt[idx]).squeeze(1), yt[idx]).backward()
            opt.step()
        spent += time.perf_counter() - t
        with torch.no_grad():
            p1 = torch.sigmoid(model(xe).squeeze(1)).numpy().astype(np.float64)
        p = np.stack([1 - p1, p1], axis=1)
        epochs_out.append({"epoch": epoch, "train_seconds": spent, "test_log_loss": log_loss(yte, p),
                           "test_accuracy": accuracy_score(yte, p.argmax(1))})
    return {"train_seconds": spent, "epoch_seconds": spent / epochs, "epochs": epochs_out,
            "test_accuracy": epochs_out[-1]["test_accuracy"], "test_log_loss": epochs_out[-1]["test_log_loss"]}


def run(name: str, x: np.ndarray, y: np.ndarray, epochs: int, batch: int, tmp: Path) -> list[str]:
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=7, stratify=y)
    train, test = tmp / f"{name}-train.parquet", tmp / f"{name}-test.parquet"
    write(train, xtr, ytr)
    write(test, xte, yte)
    rows = []
    skl = sk_logistic(xtr, ytr, xte, yte)
    pl = pulse(train, test, "logistic", epochs, batch, 0.01)
    summary = pl[-1]
    reach = next((e["train_seconds"] for e in pl if "epoch" in e and e["test_log_loss"] <= skl["test_log_loss"] + 0.001), None)
    rows.append(f"| {name} | logistic regression | scikit-learn lbfgs | {skl['train_seconds']:.2f} s | – | "
                f"{skl['test_accuracy']:.4f} | {skl['test_log_loss']:.4f} |")
    rows.append(f"| {name} | logistic regression | Pulse ({epochs} epochs, Adam) | {summary['train_seconds']:.2f} s | "
                f"{summary['train_seconds'] / epochs:.3f} s | {summary['test_accuracy']:.4f} | {summary['test_log_loss']:.4f} |")
    rows.append(f"| {name} | logistic regression | Pulse time to scikit-learn's log loss +0.001 | "
                f"{'%.2f s' % reach if reach is not None else 'not reached'} | "
                f"{'%.2f×' % (reach / skl['train_seconds']) if reach is not None else '–'} | | |")
    tl = torch_train(xtr, ytr, xte, yte, (), epochs, batch, 0.01)
    treach = next((e["train_seconds"] for e in tl["epochs"] if e["test_log_loss"] <= skl["test_log_loss"] + 0.001), None)
    rows.append(f"| {name} | logistic regression | PyTorch ({epochs} epochs, Adam) | {tl['train_seconds']:.2f} s | "
                f"{tl['epoch_seconds']:.3f} s | {tl['test_accuracy']:.4f} | {tl['test_log_loss']:.4f} |")
    rows.append(f"| {name} | logistic regression | PyTorch time to scikit-learn's log loss +0.001 | "
                f"{'%.2f s' % treach if treach is not None else 'not reached'} | "
                f"{'%.2f×' % (treach / skl['train_seconds']) if treach is not None else '–'} | | |")
    skm = sk_mlp(xtr, ytr, xte, yte, epochs, batch, 0.001)
    pm = pulse(train, test, "mlp", epochs, batch, 0.001)[-1]
    rows.append(f"| {name} | MLP 64-32 | scikit-learn adam | {skm['train_seconds']:.2f} s | {skm['epoch_seconds']:.3f} s | "
                f"{skm['test_accuracy']:.4f} | {skm['test_log_loss']:.4f} |")
    rows.append(f"| {name} | MLP 64-32 | Pulse adam | {pm['train_seconds']:.2f} s | {pm['train_seconds'] / epochs:.3f} s | "
                f"{pm['test_accuracy']:.4f} | {pm['test_log_loss']:.4f} |")
    tm = torch_train(xtr, ytr, xte, yte, (64, 32), epochs, batch, 0.001)
    rows.append(f"| {name} | MLP 64-32 | PyTorch adam | {tm['train_seconds']:.2f} s | {tm['epoch_seconds']:.3f} s | "
                f"{tm['test_accuracy']:.4f} | {tm['test_log_loss']:.4f} |")
    rows.append(f"| {name} | MLP 64-32 | Pulse epoch throughput / PyTorch's | {tm['epoch_seconds'] / (pm['train_seconds'] / epochs):.2f}× | | | |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    if not ENGINE.is_file():
        sys.exit(f"build the engine first: cargo build --release -p pulse-trainer --example bench_train ({ENGINE})")
    import torch

    print(f"threads: numpy/sklearn, PyTorch {torch.__version__} (2 threads) and Pulse on the same {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lines = ["| data | model | system | train time | per epoch | test accuracy | test log loss |",
                 "|---|---|---|---|---|---|---|"]
        bc = load_breast_cancer()
        lines += run("breast_cancer (569×30)", bc.data.astype(np.float32), bc.target, 50, 32, tmp)
        x, y = synthetic(args.rows)
        lines += run(f"synthetic ({args.rows:,}×32)", x, y, args.epochs, 256, tmp)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
