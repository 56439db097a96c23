"""Drift benchmark: the statistics of one drift check over 1M reference and
1M current rows × 20 numeric and 5 categorical features, in one run, three
ways:

  * Pulse: the drift engine (services/drift/examples/drift_bench.rs, release
    build): the service's Parquet decode, column folding and
    `compare::statistics`, one blocking task per column as CheckDrift runs;
  * SciPy column by column: ks_2samp, wasserstein_distance, NumPy quantile
    bins with PSI, scipy.spatial.distance.jensenshannon, and
    scipy.stats.chi2_contingency on the 2×k table of category counts
    (the definitions of services/drift/tests/gen_fixtures.py);
  * Evidently's DataDriftPreset (0.7.x API, or 0.4.x's Report/ColumnMapping).

    make bench-drift        # or: python bench/drift/bench.py --rows 1000000

Each contender runs in its own process (peak RSS from wait4's ru_maxrss),
at least twice; the best wall time is reported. Pulse's values are checked
against SciPy's per column and statistic (max |difference| must be ≤ 1e-6);
Evidently uses other tests (normed Wasserstein, Jensen–Shannon over its own
bins), so only its drift verdicts are set side by side. The Pulse engine is
also run on the first 250k and 500k rows to show how its memory grows.

Requirements (tested): numpy 2.4, scipy 1.17, pandas 2.3 (Evidently 0.7.23
does not import under pandas 3: it needs pandas.core.dtypes.common.
infer_dtype_from_object), pyarrow 26, evidently 0.7.23:

    pip install -r bench/drift/requirements.txt
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
ENGINE = TARGET_DIR / "release" / "examples" / "drift_bench"

SEED = 20261203
N_NUMERIC = 20
CATEGORY_SIZES = [3, 5, 7, 9, 12]
NUMERIC = [f"num_{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{j}" for j in range(len(CATEGORY_SIZES))]
# What the current side changes (the ground truth of the verdicts).
SHIFTED_NUMERIC = {
    "num_00": "normal mean +0.25 sd",
    "num_02": "lognormal sigma 0.75 -> 0.9",
    "num_09": "poisson lambda 4 -> 4.4",
    "num_14": "normal mean +0.1 sd (subtle)",
    "num_17": "pareto shape 3 -> 2.5",
}
SHIFTED_CATEGORICAL = {"cat_3": "category weights re-drawn (halfway to another Dirichlet draw)"}
BINS = 10
EPS = 1e-4
TOLERANCE = 1e-6
# Pulse's default thresholds (compare.rs `defaults()`): breach when
# PSI > 0.2, KS p < 0.05, JS > 0.1, chi-square p < 0.05.
THRESHOLDS = {"PSI": (0.2, "above"), "KS_P_VALUE": (0.05, "below"), "JENSEN_SHANNON": (0.1, "above"),
              "CHI_SQUARE_P_VALUE": (0.05, "below")}


# ------------------------------------------------------------------ data
def numeric_column(i: int, n: int, rng, shifted: bool):
    import numpy as np

    s = shifted and NUMERIC[i] in SHIFTED_NUMERIC
    match i:
        case 0: return rng.normal(0.25 if s else 0.0, 1.0, n)
        case 1: return rng.normal(50.0, 10.0, n)
        case 2: return rng.lognormal(0.0, 0.9 if s else 0.75, n)
        case 3: return rng.uniform(-5.0, 5.0, n)
        case 4: return rng.exponential(2.0, n)
        case 5: return rng.gamma(2.0, 2.0, n)
        case 6: return rng.standard_t(5, n)
        case 7: return rng.beta(2.0, 5.0, n)
        case 8: return np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.5, 1.0, n))
        case 9: return rng.poisson(4.4 if s else 4.0, n).astype(np.float64)  # heavy ties
        case 10: return np.round(rng.normal(0.0, 1.0, n), 2)  # ties
        case 11: return rng.laplace(0.0, 1.0, n)
        case 12: return rng.weibull(1.5, n)
        case 13: return rng.chisquare(3.0, n)
        case 14: return rng.normal(1025.0 if s else 1000.0, 250.0, n)
        case 15: return rng.logistic(0.0, 1.0, n)
        case 16: return rng.integers(0, 100, n).astype(np.float64)  # ties
        case 17: return rng.pareto(2.5 if s else 3.0, n)
        case 18: return rng.normal(0.0, 0.001, n)
        case _: return rng.triangular(-1.0, 0.0, 3.0, n)


def categorical_column(j: int, n: int, rng, shifted: bool):
    import numpy as np
    import pyarrow as pa

    k = CATEGORY_SIZES[j]
    weights_rng = np.random.default_rng([SEED, 99, j])  # same weights on both sides
    p = weights_rng.dirichlet(np.full(k, 2.0))
    if shifted and CATEGORICAL[j] in SHIFTED_CATEGORICAL:
        p = 0.5 * p + 0.5 * weights_rng.dirichlet(np.full(k, 2.0))
    names = np.array([f"{CATEGORICAL[j]}_v{v:02d}" for v in range(k)], dtype=object)
    idx = rng.choice(k, size=n, p=p)
    return pa.array(names[idx], type=pa.string())


def side(n: int, current: bool):
    import numpy as np
    import pyarrow as pa

    cols = {}
    for i, name in enumerate(NUMERIC):
        rng = np.random.default_rng([SEED, int(current), i])
        cols[name] = pa.array(numeric_column(i, n, rng, current), type=pa.float64())
    for j, name in enumerate(CATEGORICAL):
        rng = np.random.default_rng([SEED, int(current), 100 + j])
        cols[name] = categorical_column(j, n, rng, current)
    return pa.table(cols)


def generate(workdir: Path, rows: int, sizes: list[int]) -> dict[int, tuple[Path, Path]]:
    import pyarrow.parquet as pq

    out = {}
    tables = {"reference": side(rows, False), "current": side(rows, True)}
    for n in sorted(set(sizes + [rows])):
        paths = []
        for name, t in tables.items():
            p = workdir / f"{name}_{n}.parquet"
            pq.write_table(t.slice(0, n), p, compression="zstd")
            paths.append(p)
        out[n] = (paths[0], paths[1])
    return out


# ------------------------------------------------------------ contenders
def run_measured(cmd: list[str]) -> tuple[dict, float, float]:
    """Runs a contender in its own process; returns its JSON, its wall time
    and its peak RSS in MiB (the child's VmHWM, which it reports itself)."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fo.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, fe.fileno(), 2)])
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''} failed ({code}):\n{err[-4000:]}")
    res = json.loads(out[out.find("{"):])
    # The child's own VmHWM: wait4's ru_maxrss also counts what the child
    # held before exec (posix_spawn shares this process's memory until
    # then), so it is never below this harness's own size.
    rss = res.get("peak_rss_mb") or usage.ru_maxrss / 1024.0
    return res, wall, rss


def vm_hwm_mb() -> float | None:
    """Peak resident set of this process (Linux VmHWM), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def pulse_cmd(ref: Path, cur: Path, parallel: int = 0) -> list[str]:
    return [str(ENGINE), str(ref), str(cur), "--numeric", ",".join(NUMERIC), "--categorical", ",".join(CATEGORICAL),
            "--bins", str(BINS), "--psi-epsilon", str(EPS), "--parallel", str(parallel)]


def worker_cmd(kind: str, ref: Path, cur: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(ref), str(cur)]


# SciPy: the reference definitions of services/drift/tests/gen_fixtures.py
def quantile_edges(ref, bins=BINS):
    import numpy as np

    qs = np.array([k / bins for k in range(1, bins)])
    inner = np.unique(np.quantile(np.asarray(ref, dtype=np.float64), qs))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def histogram(values, edges):
    import numpy as np

    idx = np.searchsorted(np.asarray(edges[1:-1]), values, side="right")
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)


def psi_ref(r, c, eps=EPS):
    import numpy as np

    r, c = np.asarray(r, dtype=np.float64), np.asarray(c, dtype=np.float64)
    p, q = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_ref(r, c):
    import numpy as np
    from scipy import stats

    # the chi-square test of homogeneity (defaults: Yates' correction at dof 1)
    r, c = np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)
    keep = (r > 0) | (c > 0)
    res = stats.chi2_contingency(np.array([r[keep], c[keep]]))
    return float(res.statistic), float(res.pvalue)


def worker_scipy(ref: Path, cur: Path) -> dict:
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import scipy
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    t0 = time.perf_counter()
    rt, ct = pq.read_table(ref), pq.read_table(cur)
    rnum = {c: rt[c].to_numpy() for c in NUMERIC}
    cnum = {c: ct[c].to_numpy() for c in NUMERIC}
    t1 = time.perf_counter()
    columns = []
    for c in NUMERIC:
        a, b = rnum[c], cnum[c]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]  # Pulse drops nulls and non-finite values
        ks = stats.ks_2samp(a, b)
        w = stats.wasserstein_distance(a, b)
        edges = quantile_edges(a)
        hr, hc = histogram(a, edges), histogram(b, edges)
        columns.append({"name": c, "kind": "numeric", "metrics": {
            "PSI": psi_ref(hr, hc), "KS_STATISTIC": float(ks.statistic), "KS_P_VALUE": float(ks.pvalue),
            "JENSEN_SHANNON": float(jensenshannon(hr.astype(float), hc.astype(float))), "WASSERSTEIN": float(w)}})
    for c in CATEGORICAL:
        counts = []
        for t in (rt, ct):
            vc = pc.value_counts(t[c].drop_null())
            counts.append(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
        cats = sorted(set(counts[0]) | set(counts[1]))  # Pulse's order (a BTreeSet of the names)
        hr = np.array([counts[0].get(k, 0) for k in cats], dtype=np.int64)
        hc = np.array([counts[1].get(k, 0) for k in cats], dtype=np.int64)
        chi, chi_p = chi_ref(hr, hc)
        columns.append({"name": c, "kind": "categorical", "metrics": {
            "PSI": psi_ref(hr, hc), "CHI_SQUARE_STATISTIC": chi, "CHI_SQUARE_P_VALUE": chi_p}})
    t2 = time.perf_counter()
    return {"engine": f"scipy {scipy.__version__}, numpy {np.__version__}", "read_seconds": t1 - t0,
            "compute_seconds": t2 - t1, "total_seconds": t2 - t0, "columns": columns}


def worker_evidently(ref: Path, cur: Path) -> dict:
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    rdf, cdf = pq.read_table(ref).to_pandas(), pq.read_table(cur).to_pandas()
    t1 = time.perf_counter()
    import evidently

    version = getattr(evidently, "__version__", "?")
    verdicts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # evidently >= 0.7
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset

            dd = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
            rd, cd = Dataset.from_pandas(rdf, data_definition=dd), Dataset.from_pandas(cdf, data_definition=dd)
            t2 = time.perf_counter()
            snapshot = Report([DataDriftPreset()]).run(current_data=cd, reference_data=rd)
            t3 = time.perf_counter()
            for m in snapshot.dict()["metrics"]:
                cfg = m.get("config", {})
                if cfg.get("type", "").endswith("ValueDrift"):
                    method, thr, v = cfg.get("method", ""), cfg.get("threshold"), m["value"]
                    below = "p_value" in method
                    verdicts[cfg["column"]] = {"method": method, "threshold": thr, "score": v,
                                               "drifted": bool(v < thr if below else v >= thr)}
        except ImportError:  # evidently 0.4.x
            from evidently import ColumnMapping
            from evidently.metric_preset import DataDriftPreset
            from evidently.report import Report

            mapping = ColumnMapping(numerical_features=NUMERIC, categorical_features=CATEGORICAL)
            report = Report(metrics=[DataDriftPreset()])
            t2 = time.perf_counter()
            report.run(reference_data=rdf, current_data=cdf, column_mapping=mapping)
            t3 = time.perf_counter()
            for m in report.as_dict()["metrics"]:
                if m.get("metric") == "DataDriftTable":
                    for col, r in m["result"]["drift_by_columns"].items():
                        verdicts[col] = {"method": r["stattest_name"], "threshold": r.get("stattest_threshold"),
                                         "score": r["drift_score"], "drifted": bool(r["drift_detected"])}
    return {"engine": f"evidently {version}", "read_seconds": t1 - t0, "prepare_seconds": t2 - t1,
            "compute_seconds": t3 - t2, "total_seconds": t3 - t0, "verdicts": verdicts}


# --------------------------------------------------------------- report
def verdict(metrics: dict) -> tuple[bool, list[str]]:
    hits = []
    for m, (thr, how) in THRESHOLDS.items():
        v = metrics.get(m)
        if v is not None and ((v > thr) if how == "above" else (v < thr)):
            hits.append(m)
    return bool(hits), hits


def compare_values(pulse: dict, scipy_: dict) -> dict:
    diffs: dict[str, dict] = {}
    worst = {"abs": 0.0}
    s_cols = {c["name"]: c["metrics"] for c in scipy_["columns"]}
    for col in pulse["columns"]:
        sm = s_cols[col["name"]]
        for m, sv in sm.items():
            pv = col["metrics"].get(m)
            if pv is None:  # Pulse leaves out non-finite values
                d = 0.0 if not (sv == sv and abs(sv) != float("inf")) else float("inf")
            else:
                d = abs(pv - sv)
            rel = d / abs(sv) if sv not in (0.0,) and d not in (0.0,) else 0.0
            e = diffs.setdefault(m, {"max_abs": 0.0, "max_rel": 0.0, "column": None, "pulse": None, "scipy": None})
            if d > e["max_abs"] or e["column"] is None:
                e.update(max_abs=d, column=col["name"], pulse=pv, scipy=sv)
            e["max_rel"] = max(e["max_rel"], rel)
            if d > worst["abs"]:
                worst = {"abs": d, "metric": m, "column": col["name"], "pulse": pv, "scipy": sv}
    return {"per_metric": diffs, "worst": worst, "within_tolerance": worst["abs"] <= TOLERANCE}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def best(runs: list[dict], key: str) -> float:
    return min(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    ap.add_argument("--sizes", default="250000,500000", help="smaller sizes for Pulse's memory curve")
    ap.add_argument("--repeat", type=int, default=2, help="runs per contender (best wall time reported)")
    ap.add_argument("--pulse-repeat", type=int, default=3)
    ap.add_argument("--skip-evidently", action="store_true")
    ap.add_argument("--workdir", help="where the Parquet files go (default: a temporary directory)")
    ap.add_argument("--json", help="write the full results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        fn = {"scipy": worker_scipy, "evidently": worker_evidently}[a.worker]
        res = fn(Path(a.files[0]), Path(a.files[1]))
        res["peak_rss_mb"] = vm_hwm_mb()
        print(json.dumps(res))
        return

    if not ENGINE.exists():
        sys.exit(f"{ENGINE} is missing: cargo build --release -p pulse-drift --example drift_bench")
    sizes = [int(s) for s in a.sizes.split(",") if s] if a.sizes else []
    sizes = [s for s in sizes if s < a.rows]
    tmp = None
    if a.workdir:
        workdir = Path(a.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="pulse-drift-bench-")
        workdir = Path(tmp.name)
    results: dict = {"date": datetime.date.today().isoformat(), "rows": a.rows, "numeric": len(NUMERIC),
                     "categorical": len(CATEGORICAL), "bins": BINS, "psi_epsilon": EPS,
                     "cpus": os.cpu_count(), "load": {"start": uptime()}}
    print(f"load at start: {results['load']['start']}", flush=True)
    t = time.perf_counter()
    files = generate(workdir, a.rows, sizes)
    ref, cur = files[a.rows]
    results["generate_seconds"] = time.perf_counter() - t
    results["parquet_mb"] = {"reference": ref.stat().st_size / 2**20, "current": cur.stat().st_size / 2**20}
    print(f"data: {a.rows:,} rows per side in {workdir} ({results['generate_seconds']:.1f} s; "
          f"{results['parquet_mb']['reference']:.0f} + {results['parquet_mb']['current']:.0f} MiB Parquet)",
          flush=True)

    cores = os.cpu_count() or 1
    runs: dict[str, list[dict]] = {"pulse": [], "pulse_bounded": [], "scipy": [], "evidently": []}
    errors: dict[str, str] = {}
    # Interleaved rounds so a burst of load on the shared machine does not
    # land on one contender only.
    rounds = max(a.repeat, a.pulse_repeat)
    for r in range(rounds):
        plan = []
        if r < a.pulse_repeat:
            plan.append(("pulse", pulse_cmd(ref, cur)))
            # Not the service's behaviour: column tasks bounded to the cores.
            plan.append(("pulse_bounded", pulse_cmd(ref, cur, cores)))
        if r < a.repeat:
            plan.append(("scipy", worker_cmd("scipy", ref, cur)))
            if not a.skip_evidently and "evidently" not in errors:
                plan.append(("evidently", worker_cmd("evidently", ref, cur)))
        for name, cmd in plan:
            load = os.getloadavg()[0]
            try:
                out, wall, rss = run_measured(cmd)
            except RuntimeError as e:
                errors[name] = str(e)
                print(f"{name}: FAILED\n{e}", flush=True)
                continue
            out.update(process_seconds=wall, peak_rss_mb=rss, load1_before=load)
            runs[name].append(out)
            print(f"round {r + 1} {name}: statistics {out['compute_seconds']:.3f} s, total {out['total_seconds']:.3f} s, "
                  f"peak RSS {rss:.0f} MiB (load {load:.2f})", flush=True)

    scaling = []
    for n in sorted(sizes) + [a.rows]:
        rs = runs["pulse"] if n == a.rows else []
        for _ in range(2 if n != a.rows else 0):
            out, wall, rss = run_measured(pulse_cmd(*files[n]))
            out.update(peak_rss_mb=rss)
            rs.append(out)
        scaling.append({"rows": n, "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
                        "peak_rss_mb_after_read": max(x["peak_rss_mb_after_read"] for x in rs),
                        "compute_seconds": best(rs, "compute_seconds"), "total_seconds": best(rs, "total_seconds")})
    results["load"]["end"] = uptime()
    results["runs"] = runs
    results["errors"] = errors
    results["memory_scaling"] = scaling

    p = runs["pulse"]
    pc, pt = best(p, "compute_seconds"), best(p, "total_seconds")
    table = []
    for name in ("pulse", "pulse_bounded", "scipy", "evidently"):
        rs = runs[name]
        if not rs:
            continue
        c, tt = best(rs, "compute_seconds"), best(rs, "total_seconds")
        engine = rs[0]["engine"] + (f", --parallel {cores}" if name == "pulse_bounded" else "")
        table.append({"contender": name, "engine": engine, "runs": len(rs), "compute_seconds": c,
                      "total_seconds": tt, "all_compute": [x["compute_seconds"] for x in rs],
                      "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
                      "ratio_compute": c / pc, "ratio_total": tt / pt})
    results["table"] = table
    if runs["scipy"]:
        results["values"] = compare_values(p[0], runs["scipy"][0])
        # SciPy is deterministic run to run; so is Pulse.
        results["values"]["pulse_runs_identical"] = all(x["columns"] == p[0]["columns"] for x in p)

    # verdicts
    ev = runs["evidently"][0]["verdicts"] if runs["evidently"] else {}
    sc = {c["name"]: c["metrics"] for c in runs["scipy"][0]["columns"]} if runs["scipy"] else {}
    verdicts = []
    for col in p[0]["columns"]:
        name = col["name"]
        pd_, hits = verdict(col["metrics"])
        row = {"column": name, "shifted": SHIFTED_NUMERIC.get(name) or SHIFTED_CATEGORICAL.get(name) or "",
               "pulse_drifted": pd_, "pulse_breaches": hits}
        if name in sc:
            row["scipy_drifted"] = verdict(sc[name])[0]
        if name in ev:
            row.update(evidently_drifted=ev[name]["drifted"], evidently_method=ev[name]["method"],
                       evidently_score=ev[name]["score"])
        verdicts.append(row)
    results["verdicts"] = verdicts

    print_report(results)
    out = Path(a.json) if a.json else workdir / "results.json"
    if tmp is not None and not a.json:
        out = Path(tempfile.gettempdir()) / "pulse-drift-bench.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfull results: {out}")


def print_report(res: dict) -> None:
    print(f"\n## Drift check, {res['rows']:,} + {res['rows']:,} rows × {res['numeric']} numeric + "
          f"{res['categorical']} categorical ({res['date']}, {res['cpus']} CPUs)")
    print(f"load: start `{res['load']['start']}`; end `{res['load']['end']}`\n")
    print("| contender | statistics, s (best; Evidently: report.run) | all runs, s | incl. reading Parquet, s (best) "
          "| peak RSS MiB (max) | ÷ Pulse (statistics) | ÷ Pulse (incl. read) |")
    print("|---|---|---|---|---|---|---|")
    for r in res["table"]:
        runs = ", ".join(f"{x:.2f}" for x in r["all_compute"])
        print(f"| {r['contender']} ({r['engine']}) | {r['compute_seconds']:.3f} | {runs} | {r['total_seconds']:.3f} "
              f"| {r['peak_rss_mb']:,.0f} | {r['ratio_compute']:.1f}× | {r['ratio_total']:.1f}× |")
    for name, e in res["errors"].items():
        print(f"| {name} | failed: {e.splitlines()[-1] if e else '?'} | | | | | |")
    if "values" in res:
        v = res["values"]
        print("\nPulse vs SciPy, max |difference| per statistic over all columns:\n")
        print("| statistic | max abs diff | max rel diff | at column | Pulse | SciPy |")
        print("|---|---|---|---|---|---|")
        for m, d in v["per_metric"].items():
            print(f"| {m} | {d['max_abs']:.3g} | {d['max_rel']:.3g} | {d['column']} | {d['pulse']!r} | "
                  f"{d['scipy']!r} |")
        print(f"\nworst: {v['worst']}; within 1e-6: {v['within_tolerance']}; "
              f"Pulse runs identical: {v['pulse_runs_identical']}")
    print("\nPulse engine memory by window size:\n")
    print("| rows per side | peak RSS MiB | after reading both sides MiB | statistics s | incl. read s |")
    print("|---|---|---|---|---|")
    for s in res["memory_scaling"]:
        print(f"| {s['rows']:,} | {s['peak_rss_mb']:,.0f} | {s['peak_rss_mb_after_read']:,.0f} | "
              f"{s['compute_seconds']:.3f} | {s['total_seconds']:.3f} |")
    print("\nVerdicts (Pulse's default thresholds for Pulse and SciPy; Evidently's own tests):\n")
    print("| column | shifted | Pulse | breaches | SciPy | Evidently | Evidently test, score |")
    print("|---|---|---|---|---|---|---|")
    yn = lambda b: "—" if b is None else ("drift" if b else "ok")  # noqa: E731
    for r in res["verdicts"]:
        es = f"{r.get('evidently_method', '')}, {r['evidently_score']:.4f}" if "evidently_score" in r else ""
        print(f"| {r['column']} | {r['shifted']} | {yn(r['pulse_drifted'])} | {', '.join(r['pulse_breaches'])} | "
              f"{yn(r.get('scipy_drifted'))} | {yn(r.get('evidently_drifted'))} | {es} |")


if __name__ == "__main__":
    main()
