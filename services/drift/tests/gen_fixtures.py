#!/usr/bin/env python3
"""Generate tests/fixtures.json: inputs plus SciPy/NumPy reference outputs.

Run:  python tests/gen_fixtures.py            (needs numpy + scipy)

Every sample array is stored as base64 of little-endian IEEE floats ("f64",
or "f32" when every value was generated exactly representable in float32, to
halve the size of the big cases). The values handed to SciPy are exactly the
decoded values (float32 values are widened to float64 before SciPy sees them),
so the Rust test reads exactly the data SciPy saw.

Reference definitions that are *not* SciPy functions (mirrored in src/stats):
  * quantile_edges: NumPy's default 'linear' quantiles of the reference at
    k/bins, k = 1..bins-1, deduplicated, with -inf / +inf outer edges.
  * histogram: bin i is [edges[i], edges[i+1]), the last bin is closed;
    with infinite outer edges this is searchsorted(inner, x, side='right').
  * psi: sum (q - p) * ln(q / p), proportions floored at eps (1e-4).
  * chi_square_homogeneity: bins empty on both sides are dropped (k remain),
    then scipy.stats.chi2_contingency([ref, cur]) with its defaults (Yates'
    correction when dof == 1), dof = k - 1; no smoothing.
"""

import base64
import json
import os
import sys
import warnings

import numpy as np
import scipy
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

EPS = 1e-4
BINS = 10
HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- references
def quantile_edges(ref, bins=BINS):
    qs = np.array([k / bins for k in range(1, bins)])
    inner = np.unique(np.quantile(np.asarray(ref, dtype=np.float64), qs))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def histogram(values, edges):
    inner = np.asarray(edges[1:-1])
    idx = np.searchsorted(inner, values, side="right")
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)


def psi_ref(r, c, eps=EPS):
    r = np.asarray(r, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    p = np.maximum(r / r.sum(), eps)
    q = np.maximum(c / c.sum(), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def chi_ref(r, c):
    r = np.asarray(r, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    keep = (r > 0) | (c > 0)
    res = stats.chi2_contingency(np.array([r[keep], c[keep]]))
    return float(res.statistic), float(res.pvalue), int(res.dof)


def js_ref(r, c):
    return float(jensenshannon(np.asarray(r, float), np.asarray(c, float)))


# ------------------------------------------------------------------- helpers
def enc(x):
    x = np.asarray(x, dtype=np.float64)
    x32 = x.astype("<f4")
    if np.array_equal(x32.astype(np.float64), x):
        dtype, raw = "f32", x32.tobytes()
    else:
        dtype, raw = "f64", x.astype("<f8").tobytes()
    return {"dtype": dtype, "n": int(len(x)), "b64": base64.b64encode(raw).decode()}


def f32(x):
    """Round to float32 precision (stored compactly, still float64 for SciPy)."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def fnum(x):
    """JSON-safe float: NaN/inf become strings."""
    x = float(x)
    if np.isnan(x):
        return "nan"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def continuous_case(name, a, b, note=""):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ks = stats.ks_2samp(a, b)
    fallback = any("Exact calculation unsuccessful" in str(x.message) for x in w)
    mode = "exact" if max(len(a), len(b)) <= 10000 else "asymp"
    if fallback:
        mode = "exact->asymp"
    wd = stats.wasserstein_distance(a, b)
    edges = quantile_edges(a)
    cr = histogram(a, edges)
    cc = histogram(b, edges)
    chi = chi_ref(cr, cc)
    return {
        "name": name,
        "kind": "continuous",
        "note": note,
        "a": enc(a),
        "b": enc(b),
        "ks_mode": mode,
        "ks_statistic": fnum(ks.statistic),
        "ks_pvalue": fnum(ks.pvalue),
        "wasserstein": fnum(wd),
        "edges": [fnum(e) for e in edges],
        "ref_counts": [int(v) for v in cr],
        "cur_counts": [int(v) for v in cc],
        "psi": fnum(psi_ref(cr, cc)),
        "js": fnum(js_ref(cr, cc)),
        "chi_statistic": fnum(chi[0]),
        "chi_pvalue": fnum(chi[1]),
        "chi_dof": chi[2],
    }


def categorical_case(name, r, c, note=""):
    chi = chi_ref(r, c)
    return {
        "name": name,
        "kind": "categorical",
        "note": note,
        "ref_counts": [int(v) for v in r],
        "cur_counts": [int(v) for v in c],
        "psi": fnum(psi_ref(r, c)),
        "js": fnum(js_ref(r, c)),
        "chi_statistic": fnum(chi[0]),
        "chi_pvalue": fnum(chi[1]),
        "chi_dof": chi[2],
    }


# --------------------------------------------------------------------- cases
def build():
    cases = []
    rng = np.random.default_rng(20240601)
    N = rng.standard_normal

    cases.append(continuous_case("equal_normal_1000", N(1000), N(1000),
                                 note="n1 == n2: _compute_prob_outside_square"))
    cases.append(continuous_case("shifted_mean_800_1200", N(800), N(1200) + 0.3))
    cases.append(continuous_case("scaled_variance_1500_1000", N(1500), 1.5 * N(1000)))
    cases.append(continuous_case("small_5_5", N(5), N(5)))
    cases.append(continuous_case("small_5_5_h1_fallback",
                                 [0.1, 0.3, 0.5, 0.7, 0.9], [0.2, 0.4, 0.6, 0.8, 1.0],
                                 note="D = 1/5: exact square method gives 2P > 1, SciPy falls back "
                                      "to kstwo.sf(D, round(2.5) = 2)"))
    cases.append(continuous_case("small_7_7_h1_fallback",
                                 np.arange(7) * 2.0, np.arange(7) * 2.0 + 1.0,
                                 note="D = 1/7: fallback to kstwo.sf(D, round(3.5) = 4)"))
    cases.append(continuous_case("small_7_9_ties",
                                 [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 5.0],
                                 [2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0]))
    cases.append(continuous_case("identical_samples", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0],
                                 note="D = 0: h = 0 -> p = 1"))
    cases.append(continuous_case("single_vs_single", [1.0], [2.0]))
    cases.append(continuous_case("medium_2000_3000", N(2000), N(3000) * 1.05 + 0.05,
                                 note="exact inside method"))
    cases.append(continuous_case("medium_equal_dist_4000_6000", N(4000), N(6000)))
    cases.append(continuous_case("large_20000_30000", f32(N(20000)), f32(N(30000)),
                                 note="asymptotic, en = 12000, small D"))
    cases.append(continuous_case("large_shift_12000_15000", f32(N(12000)), f32(N(15000) + 0.05),
                                 note="asymptotic smirnov path"))
    cases.append(continuous_case("heavy_ties_poisson_3000_2500",
                                 rng.poisson(3.0, 3000).astype(float),
                                 rng.poisson(3.2, 2500).astype(float)))
    cases.append(continuous_case("heavy_ties_poisson_large_11000_12000",
                                 rng.poisson(3.0, 11000).astype(float),
                                 rng.poisson(3.0, 12000).astype(float)))
    cases.append(continuous_case("disjoint_50_60", rng.uniform(0, 1, 50), rng.uniform(2, 3, 60),
                                 note="D = 1, exact p ~ 1e-32"))
    cases.append(continuous_case("disjoint_equal_40_40", rng.uniform(0, 1, 40),
                                 rng.uniform(2, 3, 40)))
    cases.append(continuous_case("disjoint_large_10001_10200", f32(rng.uniform(0, 1, 10001)),
                                 f32(rng.uniform(2, 3, 10200)),
                                 note="asymptotic, D = 1 -> p = 0"))
    cases.append(continuous_case("tiny_vs_huge_5_20000", N(5), f32(N(20000)), note="asymptotic with en = 5"))
    cases.append(continuous_case("small_vs_huge_30_15000", N(30) + 0.8, f32(N(15000)),
                                 note="asymptotic with en = 30"))
    cases.append(continuous_case("small_vs_huge_150_12000", N(150) + 0.25, f32(N(12000)),
                                 note="asymptotic with en = 148"))
    cases.append(continuous_case("small_vs_huge_100_11000_far", N(100) + 2.5, f32(N(11000)),
                                 note="asymptotic with en = 99, large D"))

    cases.append(continuous_case("exact_unequal_large_D_3000_2999", N(3000), N(2999) + 1.0,
                                 note="inside method with a wide window"))
    cases.append(continuous_case("exact_equal_n_10000", f32(N(10000)), f32(N(10000) + 0.03),
                                 note="largest exact size, square method"))
    cases.append(continuous_case("asymp_10001_10001", f32(N(10001)), f32(N(10001) + 0.03),
                                 note="en = 5000.5 rounds half-to-even to 5000"))
    for i in range(40):
        n1, n2 = (int(v) for v in rng.integers(1, 41, size=2))
        if i % 2 == 0:
            a, b = rng.integers(0, 5, n1).astype(float), rng.integers(0, 5, n2).astype(float) + (i % 4 == 0)
        else:
            a, b = N(n1), N(n2) + 0.5 * (i % 3)
        cases.append(continuous_case(f"random_small_{i:02d}_{n1}_{n2}", a, b))

    # categorical
    cases.append(categorical_case("cat_basic", [100, 200, 300, 400], [110, 190, 310, 390]))
    cases.append(categorical_case("cat_missing_in_reference", [500, 300, 200, 0], [450, 310, 190, 50],
                                  note="category absent from reference: column total > 0, no smoothing"))
    cases.append(categorical_case("cat_missing_in_current", [500, 300, 200, 40], [450, 310, 240, 0]))
    cases.append(categorical_case("cat_both_zero_dropped", [10, 0, 5, 7], [3, 0, 7, 1],
                                  note="bin empty on both sides is dropped from chi-square"))
    cases.append(categorical_case("cat_identical", [5, 10, 15], [5, 10, 15]))
    cases.append(categorical_case("cat_proportional", [5, 10, 15], [50, 100, 150]))
    cases.append(categorical_case("cat_single_category", [7], [11],
                                  note="dof 0: chi2_contingency gives statistic 0, p-value 1"))
    cases.append(categorical_case("cat_disjoint", [100, 0], [0, 100], note="dof 1: Yates"))
    cases.append(categorical_case("cat_two_yates", [10, 20], [30, 25], note="dof 1: Yates"))
    cases.append(categorical_case("cat_two_yates_clamped", [10, 10], [11, 10],
                                  note="dof 1: |E - O| < 0.5, correction stops at E (gh-13875)"))
    cases.append(categorical_case("cat_two_large_unequal", [612345, 387655], [61900, 38100],
                                  note="dof 1: Yates at 1M vs 100k"))
    cases.append(categorical_case("cat_two_with_empty_bin", [0, 40, 0, 9], [0, 31, 0, 22],
                                  note="two bins dropped, dof 1"))
    cases.append(categorical_case("cat_only_in_current", [300, 200, 0], [0, 0, 50],
                                  note="categories disjoint across sides"))
    r = rng.multinomial(100000, rng.dirichlet(np.ones(60)))
    c = rng.multinomial(80000, rng.dirichlet(np.ones(60) * 5))
    cases.append(categorical_case("cat_many_60", r, c))
    p = rng.dirichlet(np.ones(25))
    cases.append(categorical_case("cat_same_dist_25", rng.multinomial(5000, p),
                                  rng.multinomial(7000, p)))
    p = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
    cases.append(categorical_case("cat_same_dist_1m_200k", rng.multinomial(1000000, p),
                                  rng.multinomial(200000, p), note="large samples, same distribution"))
    cases.append(categorical_case("cat_tiny_p", [500000, 500000, 1], [400000, 600000, 0],
                                  note="p-value far below 1e-300 underflows to 0"))
    cases.append(categorical_case("cat_small_p", [50000, 50000, 100], [49000, 51000, 90],
                                  note="p-value ~1e-5"))
    return cases


def special_grids():
    """Direct checks of the special functions on a grid covering each branch."""
    kstwo = []
    ns = [1, 2, 3, 4, 5, 7, 10, 30, 99, 140, 141, 148, 500, 5000, 12000, 99999,
          100001, 500000, 2000000]
    xs = [1e-4, 0.01, 0.02, 0.035, 0.05, 0.08, 0.1, 0.15, 0.2, 0.26, 0.3, 0.4, 0.49,
          0.5, 0.6, 0.75, 0.9, 0.999, 1.0]
    for n in ns:
        cand = set(xs)
        # points around the branch cut-overs in n * x**2 for this n
        for nx2 in (0.3, 0.754693, 1.0, 2.2, 4.0, 10.0, 18.0, 100.0, 369.0):
            cand.add(float(np.sqrt(nx2 / n)))
        for t in (0.6, 1.0, 1.5, 2.5, n - 1.5, n - 1.0):
            if t > 0:
                cand.add(t / n)
        if n <= 100000:
            cand.add(float((1.4 / n) ** (2.0 / 3.0)) * 0.99)
        for x in sorted(cand):
            if 0 < x <= 1:
                kstwo.append([n, x, fnum(stats.kstwo.sf(x, n))])
    smirnov = []
    for n in [1, 2, 3, 5, 10, 11, 50, 141, 1000, 12000, 500000, 1000001, 3000000]:
        for x in [0.0, 1e-7, 0.5 / n, 1.0 / n, 1.5 / n, 2.5 / n, 0.001, 0.01, 0.02, 0.05,
                  0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1.0 / n, 1 - 0.5 / n, 1.0]:
            if 0 <= x <= 1:
                smirnov.append([n, x, fnum(special.smirnov(n, x))])
    chi2 = []
    for df in [1, 2, 3, 4, 5, 9, 10, 24, 59, 101, 500, 2000]:
        for x in [0.0, 1e-6, 0.01, 0.1, 0.5, 1, 2, 3.5, 5, 8, 10, 15, 20, 30, 50, 80, 100,
                  200, 450, 500, 550, 1000, 1900, 2000, 2100, 5000]:
            chi2.append([df, x, fnum(stats.chi2.sf(x, df))])
    return {"kstwo_sf": kstwo, "smirnov_sf": smirnov, "chi2_sf": chi2}


def main():
    out = {
        "generator": "tests/gen_fixtures.py",
        "scipy_version": scipy.__version__,
        "numpy_version": np.__version__,
        "eps": EPS,
        "bins": BINS,
        "cases": build(),
        "grids": special_grids(),
    }
    path = os.path.join(HERE, "fixtures.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=0, allow_nan=False)
        fh.write("\n")
    size = os.path.getsize(path)
    print(f"wrote {path}: {len(out['cases'])} cases, {size / 1e6:.2f} MB", file=sys.stderr)
    for c in out["cases"]:
        extra = f" ks={c['ks_statistic']:.6g} p={c['ks_pvalue']!s:.12} mode={c['ks_mode']}" \
            if c["kind"] == "continuous" else ""
        print(f"  {c['name']}:{extra} chi_p={c['chi_pvalue']}", file=sys.stderr)


if __name__ == "__main__":
    main()
