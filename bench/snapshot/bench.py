"""Extraction benchmark: Pulse vs ConnectorX vs the raw COPY limit, in one run.

On the TPC-H `lineitem` table (scale factor 1, ~6M rows; `make bench-snapshot`
creates it with bench/snapshot/lineitem.sql when missing) this measures, one
after the other on the same machine:

  raw COPY      `COPY (SELECT *) TO STDOUT (FORMAT binary)` into /dev/null (psql)
  cx→arrow      ConnectorX `read_sql(..., return_type="arrow")`
  cx→parquet    ConnectorX to Arrow, then pyarrow writes Parquet (zstd)
  pulse         a committed Pulse snapshot (Parquet zstd chunks on local
                object storage, hashed, with column statistics), through a
                fresh `pulse up` (release build) driven over gRPC

each at the same parallelism, and reports rows/s, peak memory and the ratios
the issue sets as goals. With --mysql it does the same against MariaDB.

Usage: python bench/snapshot/bench.py [--parallelism 2] [--mysql] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/pulse_bench")
MYSQL_URL = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/pulse_bench")
TABLE = "lineitem"


def run_child(code: str) -> tuple[float, int, str]:
    """Runs Python code in a fresh process; returns (seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    peak = int(proc.stdout.strip().splitlines()[-1])
    return elapsed, peak, proc.stdout


PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def count_rows(url: str) -> int:
    code = f"""
import connectorx as cx
t = cx.read_sql({url!r}, "SELECT count(*) AS n FROM {TABLE}", return_type="arrow")
print(t.column(0)[0].as_py())
print(0)
"""
    _, _, out = run_child(code)
    return int(out.strip().splitlines()[0])


def raw_copy(parallelism: int) -> tuple[float, int]:
    """COPY binary to /dev/null, `parallelism` key ranges at once."""
    bounds = subprocess.run(
        ["psql", PG_URL, "-Atc", f"SELECT min(l_orderkey), max(l_orderkey) FROM {TABLE}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split("|")
    lo, hi = int(bounds[0]), int(bounds[1]) + 1
    step = (hi - lo) // parallelism + 1
    start = time.perf_counter()
    procs = []
    for i in range(parallelism):
        a, b = lo + i * step, min(hi, lo + (i + 1) * step)
        sql = f"COPY (SELECT * FROM {TABLE} WHERE l_orderkey >= {a} AND l_orderkey < {b}) TO STDOUT (FORMAT binary)"
        procs.append(subprocess.Popen(["psql", PG_URL, "-c", sql], stdout=subprocess.DEVNULL))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("psql COPY failed")
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return elapsed, peak


def cx_arrow(url: str, parallelism: int, parquet_path: str | None) -> tuple[float, int]:
    write = ""
    if parquet_path:
        write = f"import pyarrow.parquet as pq; pq.write_table(t, {parquet_path!r}, compression='zstd')"
    code = f"""
import connectorx as cx
t = cx.read_sql({url!r}, "SELECT * FROM {TABLE}", return_type="arrow",
                partition_on="l_orderkey", partition_num={parallelism})
{write}
{PEAK}
"""
    elapsed, peak, _ = run_child(code)
    return elapsed, peak


class PulseServer:
    def __init__(self, binary: Path, state: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env["PULSE_EXTRACTION_WORKERS"] = "1"
        self.state = state
        self.proc = subprocess.Popen(
            [str(binary), "up", "--listen", "127.0.0.1:0", "--metrics-listen", ""],
            cwd=state, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        banner = ""
        assert self.proc.stdout is not None
        while "tenant key:" not in banner:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("pulse up exited:\n" + banner)
            banner += line
        self.endpoint = "http://" + next(
            l.split("gRPC:")[1].split()[0] for l in banner.splitlines() if "gRPC:" in l
        )
        self.key = (state / ".pulse" / "default.key").read_text().strip()

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def pulse_snapshot(binary: Path, driver: Path, kind: str, dsn: str, parallelism: int) -> tuple[float, int, dict]:
    """A snapshot through a fresh `pulse up`: registered, extracted, committed."""
    with tempfile.TemporaryDirectory() as tmp:
        server = PulseServer(binary, Path(tmp))
        try:
            out = subprocess.run(
                [str(driver), server.endpoint, server.key, kind, dsn, TABLE, str(parallelism),
                 "l_orderkey", "l_orderkey,l_linenumber"],
                capture_output=True, text=True, check=True,
            ).stdout.split()
            peak = server.peak_rss()
        finally:
            server.stop()
    return float(out[0]), peak, {"rows": int(out[1]), "bytes": int(out[2]), "sha256": out[3]}


def mib(n: int) -> str:
    return f"{n / 1048576:,.0f} MiB"


def report(title: str, rows: int, results: dict[str, tuple[float, int]]) -> None:
    print(f"\n{title}: {rows:,} rows")
    print(f"{'':14} {'seconds':>9} {'rows/s':>12} {'peak memory':>12}")
    for name, (secs, peak) in results.items():
        print(f"{name:14} {secs:9.2f} {rows / secs:12,.0f} {mib(peak):>12}")
    p = results["pulse"][0]
    if "cx→arrow" in results:
        print(f"pulse / ConnectorX→Arrow:        {results['cx→arrow'][0] / p:.2f}×  (goal ≥ 1.3×)")
    if "cx→parquet" in results:
        print(f"pulse / ConnectorX+pyarrow:      {results['cx→parquet'][0] / p:.2f}×  (goal ≥ 2×)")
    if "raw COPY" in results:
        print(f"pulse / raw COPY:                {results['raw COPY'][0] / p:.2f}   (goal ≥ 0.75)")
    print(f"pulse peak memory:               {mib(results['pulse'][1])}  (goal ≤ 512 MiB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--mysql", action="store_true", help="also benchmark MariaDB")
    ap.add_argument("--pulse-bin", default=None)
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = Path(args.pulse_bin) if args.pulse_bin else target / "release" / "pulse"
    driver = target / "release" / "examples" / "bench_extract"
    for b in (binary, driver):
        if not b.exists():
            sys.exit(f"{b} is missing: build with `cargo build --release -p pulse` and "
                     "`cargo build --release -p pulse-snapshot --example bench_extract`")
    n = args.parallelism

    rows = count_rows(PG_URL)
    results: dict[str, tuple[float, int]] = {}
    results["raw COPY"] = raw_copy(n)
    results["cx→arrow"] = cx_arrow(PG_URL, n, None)
    out = tempfile.mkdtemp()
    try:
        results["cx→parquet"] = cx_arrow(PG_URL, n, os.path.join(out, "lineitem.parquet"))
    finally:
        shutil.rmtree(out)
    secs, peak, info = pulse_snapshot(binary, driver, "postgres", PG_URL.replace("postgresql://", "postgres://"), n)
    assert info["rows"] == rows, info
    results["pulse"] = (secs, peak)
    report(f"PostgreSQL lineitem, parallelism {n}", rows, results)

    if args.mysql:
        rows = count_rows(MYSQL_URL)
        results = {"cx→arrow": cx_arrow(MYSQL_URL, n, None)}
        out = tempfile.mkdtemp()
        try:
            results["cx→parquet"] = cx_arrow(MYSQL_URL, n, os.path.join(out, "lineitem.parquet"))
        finally:
            shutil.rmtree(out)
        secs, peak, info = pulse_snapshot(binary, driver, "mysql", MYSQL_URL, n)
        assert info["rows"] == rows, info
        results["pulse"] = (secs, peak)
        report(f"MariaDB lineitem, parallelism {n}", rows, results)


if __name__ == "__main__":
    main()
