//! Drift statistics between a reference and a current sample of one column,
//! agreeing with SciPy 1.17 / NumPy 2.x to better than 1e-6 (see
//! `tests/scipy_agreement.rs`, fixtures from `tests/gen_fixtures.py`).
//!
//! Pure functions on slices (std only, no unsafe), so a caller can hold one
//! column at a time and parallelise across columns. Numeric inputs are the
//! non-NaN values of a column (the caller drops NaN); sorted-input functions
//! take slices sorted ascending, e.g. by [`sort_f64`], sorted once and reused
//! for KS, Wasserstein and the histograms. Sortedness is `debug_assert`ed.
//!
//! Typical column:
//! ```
//! use pulse_drift::stats::*;
//! let (mut r, mut c) = (vec![0.3, 1.2, -0.5, 0.9], vec![1.1, 2.0, 0.4]);
//! sort_f64(&mut r);
//! sort_f64(&mut c);
//! let ks = ks_2samp(&r, &c)?;
//! let w = wasserstein(&r, &c)?;
//! let edges = quantile_edges(&r, DEFAULT_BINS)?;
//! let (hr, hc) = (histogram(&r, &edges)?, histogram(&c, &edges)?);
//! let (p, js) = (psi(&hr, &hc, DEFAULT_EPS)?, jensen_shannon(&hr, &hc)?);
//! let chi = chi_square_homogeneity(&hr, &hc)?;
//! # let _ = (ks, w, p, js, chi);
//! # Ok::<(), StatsError>(())
//! ```

mod kolmogorov;
mod sort;
mod special;

pub use kolmogorov::{kstwo_sf, smirnov_sf};
pub use sort::sort_f64;
pub use special::chi2_sf;

use std::fmt;

/// Default number of quantile bins for [`quantile_edges`] (deciles).
pub const DEFAULT_BINS: usize = 10;
/// Default proportion floor for [`psi`].
pub const DEFAULT_EPS: f64 = 1e-4;
/// `ks_2samp(method='auto')` computes the exact p-value when `max(n1, n2)` is at most this.
pub const KS_MAX_EXACT_N: usize = 10_000;

/// User-facing input errors.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsError {
    /// A sample (or a count vector's total) is empty.
    EmptySample,
    /// Two count vectors that must align have different lengths.
    LengthMismatch { reference: usize, current: usize },
    /// `bins` must be at least 1.
    InvalidBins,
    /// Histogram edges must be at least two, non-NaN and strictly increasing.
    InvalidEdges,
    /// `eps` must be finite and > 0.
    InvalidEps,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptySample => write!(f, "empty sample"),
            Self::LengthMismatch { reference, current } => {
                write!(f, "histogram length mismatch: reference {reference}, current {current}")
            }
            Self::InvalidBins => write!(f, "bins must be >= 1"),
            Self::InvalidEdges => write!(f, "edges must be >= 2 strictly increasing non-NaN values"),
            Self::InvalidEps => write!(f, "eps must be finite and > 0"),
        }
    }
}

impl std::error::Error for StatsError {}

/// How the KS p-value was obtained (SciPy `method='auto'` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    /// Exact lattice-path count (`max(n1, n2) <= 10000`).
    Exact,
    /// `kstwo.sf(D, round(n1*n2/(n1+n2)))` because `max(n1, n2) > 10000`.
    Asymptotic,
    /// Exact was attempted but gave a value outside [0, 1]; SciPy warns
    /// "Exact calculation unsuccessful" and uses the asymptotic formula.
    ExactFellBack,
}

/// Two-sample Kolmogorov–Smirnov result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// sup |F_a - F_b|. In the exact path SciPy returns it rounded to the
    /// lattice, `round(D * lcm) / lcm` (also kept when falling back).
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// Pearson chi-square result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiResult {
    pub statistic: f64,
    /// `chi2.sf(statistic, dof)`; 1 when `dof == 0` (as SciPy's
    /// `chi2_contingency`).
    pub p_value: f64,
    /// Number of bins kept (non-empty on at least one side) minus one.
    pub dof: usize,
}

#[inline]
fn debug_assert_sorted(x: &[f64]) {
    debug_assert!(x.is_sorted(), "input must be sorted ascending and NaN-free");
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// What one merge pass over two sorted samples collects. With
/// `k(i, j) = i * (n2 / g) - j * (n1 / g)` (so `F_a - F_b = k / lcm` exactly):
/// the first maximal / minimal `k` over all data points with its `i`, and
/// `sum |k| * gap` over consecutive merged values.
struct Walk {
    kmax: i64,
    imax: usize,
    kmin: i64,
    imin: usize,
    wsum: f64,
}

/// One branch-light merge of two sorted slices (ties: `a` first). A data
/// point is the last element of a group of equal values, where `i`/`j` equal
/// `np.searchsorted(.., v, side='right')`; SciPy's `cddiffs` are taken there.
#[inline(always)]
fn walk<const KS: bool, const W: bool>(a: &[f64], b: &[f64], n1g: i64, n2g: i64) -> Walk {
    let (n1, n2) = (a.len(), b.len());
    let (mut i, mut j, mut k) = (0usize, 0usize, 0i64);
    let mut out = Walk { kmax: 0, imax: 0, kmin: 0, imin: 0, wsum: 0.0 };
    // `pending_*` describe the state after the previous element; they are a
    // data point iff the value changes now. Committing a non-final 0 instead
    // is harmless: the last point has k = 0, so kmin <= 0 <= kmax anyway.
    let (mut pending_k, mut pending_i) = (0i64, 0usize);
    let mut last = a[0].min(b[0]);
    let (mut block, mut nblock) = (0.0f64, 0u32);
    let mut step = |v: f64, i: usize, k: i64| {
        if KS {
            let commit = if v != last { pending_k } else { 0 };
            let gt = commit > out.kmax;
            out.kmax = if gt { commit } else { out.kmax };
            out.imax = if gt { pending_i } else { out.imax };
            let lt = commit < out.kmin;
            out.kmin = if lt { commit } else { out.kmin };
            out.imin = if lt { pending_i } else { out.imin };
        }
        if W {
            // gap is 0 inside a tie group; blocked summation, all terms >= 0
            block += pending_k.unsigned_abs() as f64 * (v - last);
            nblock += 1;
            if nblock == 1024 {
                out.wsum += block;
                block = 0.0;
                nblock = 0;
            }
        }
        pending_k = k;
        pending_i = i;
        last = v;
    };
    while i < n1 && j < n2 {
        let (x, y) = (a[i], b[j]);
        let take_a = x <= y;
        let v = if take_a { x } else { y };
        i += usize::from(take_a);
        j += usize::from(!take_a);
        k += if take_a { n2g } else { -n1g };
        step(v, i, k);
    }
    for &v in &a[i..] {
        i += 1;
        k += n2g;
        step(v, i, k);
    }
    for &v in &b[j..] {
        k -= n1g;
        step(v, i, k);
    }
    if KS {
        // final point (k == 0 there)
        if pending_k > out.kmax {
            (out.kmax, out.imax) = (pending_k, pending_i);
        }
        if pending_k < out.kmin {
            (out.kmin, out.imin) = (pending_k, pending_i);
        }
    }
    out.wsum += block;
    out
}

/// Sizes, gcd and `lcm = n1 * n2 / g`; errors on an empty sample.
fn sizes(a: &[f64], b: &[f64]) -> Result<(u64, u64, u64, u64), StatsError> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::EmptySample);
    }
    debug_assert_sorted(a);
    debug_assert_sorted(b);
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    let g = gcd(n1, n2);
    Ok((n1, n2, g, (n1 / g) * n2))
}

/// Two-sample Kolmogorov–Smirnov test on sorted samples; matches
/// `scipy.stats.ks_2samp(a, b)` (two-sided, `method='auto'`): exact p-value
/// when `max(n1, n2) <= 10000`, otherwise `kstwo.sf(D, round(n1*n2/(n1+n2)))`,
/// including SciPy's exact-to-asymptotic fallback. O(n1 + n2) for D, plus
/// the p-value: exact path O(n) for equal sizes, else O(max(n) * window)
/// with window ~ D * min(n) (up to ~0.5 s at 10000 vs 9999 with D near 1,
/// as in SciPy); asymptotic path O(1) except for `2.2 <= en * D^2 < 370`
/// (one-sided Smirnov sum, O(en) terms, ~20 ms at en = 500000).
/// Requires `n1 * n2 < 9.2e18`.
pub fn ks_2samp(sorted_a: &[f64], sorted_b: &[f64]) -> Result<KsResult, StatsError> {
    let (n1, n2, g, lcm) = sizes(sorted_a, sorted_b)?;
    let w = walk::<true, false>(sorted_a, sorted_b, (n1 / g) as i64, (n2 / g) as i64);
    Ok(ks_from_walk(&w, n1, n2, g, lcm))
}

/// [`ks_2samp`] and [`wasserstein`] from a single merge pass (same results).
pub fn ks_and_wasserstein(sorted_a: &[f64], sorted_b: &[f64]) -> Result<(KsResult, f64), StatsError> {
    let (n1, n2, g, lcm) = sizes(sorted_a, sorted_b)?;
    let w = walk::<true, true>(sorted_a, sorted_b, (n1 / g) as i64, (n2 / g) as i64);
    Ok((ks_from_walk(&w, n1, n2, g, lcm), w.wsum / lcm as f64))
}

fn ks_from_walk(w: &Walk, n1: u64, n2: u64, g: u64, lcm: u64) -> KsResult {
    let (f1, f2) = (n1 as f64, n2 as f64);
    // SciPy's float cddiffs = i/n1 - j/n2 at the first argmax / argmin
    let cddiff = |k: i64, i: usize| {
        let j = (i as i64 * (n2 / g) as i64 - k) / (n1 / g) as i64;
        i as f64 / f1 - j as f64 / f2
    };
    let max_s = cddiff(w.kmax, w.imax);
    let min_s = (-cddiff(w.kmin, w.imin)).clamp(0.0, 1.0);
    let mut d = if min_s > max_s { min_s } else { max_s };

    let mut method = if n1.max(n2) as usize <= KS_MAX_EXACT_N { KsMethod::Exact } else { KsMethod::Asymptotic };
    let mut prob = f64::NAN;
    if method == KsMethod::Exact {
        // _attempt_exact_2kssamp
        let h = (d * lcm as f64).round_ties_even() as u64;
        d = h as f64 / lcm as f64;
        prob = if h == 0 {
            1.0
        } else if n1 == n2 {
            kolmogorov::prob_outside_square(n1, h)
        } else {
            kolmogorov::outer_prob_inside_method(n1, n2, g, h)
        };
        if !(0.0..=1.0).contains(&prob) {
            method = KsMethod::ExactFellBack;
        }
    }
    if method != KsMethod::Exact {
        let (m, n) = if f1 >= f2 { (f1, f2) } else { (f2, f1) };
        let en = m * n / (m + n);
        let nn = en.round_ties_even();
        prob = if nn >= 1.0 { kstwo_sf(nn as u64, d) } else { f64::NAN };
    }
    let p_value = if prob.is_nan() { prob } else { prob.clamp(0.0, 1.0) };
    KsResult { statistic: d, p_value, method }
}

/// First Wasserstein distance between the empirical distributions of two
/// sorted samples; matches `scipy.stats.wasserstein_distance(a, b)`
/// (unweighted): sum over consecutive merged values of |F_a - F_b| * gap
/// (here `|F_a - F_b| = |k| / lcm` exactly). O(n1 + n2). Infinite values
/// give inf/NaN as in SciPy.
pub fn wasserstein(sorted_a: &[f64], sorted_b: &[f64]) -> Result<f64, StatsError> {
    let (n1, n2, g, lcm) = sizes(sorted_a, sorted_b)?;
    let w = walk::<false, true>(sorted_a, sorted_b, (n1 / g) as i64, (n2 / g) as i64);
    Ok(w.wsum / lcm as f64)
}

/// Bin edges from reference quantiles: the `bins - 1` inner edges are
/// `np.quantile(reference, k / bins)` for k = 1..bins-1 (NumPy's default
/// 'linear' method, bit-exact), deduplicated, and the outer edges are
/// -inf and +inf, so every value falls in some bin. Ties in the reference
/// can merge quantiles, giving fewer than `bins` bins (at least one).
/// `bins = DEFAULT_BINS` gives deciles. The reference should be finite.
pub fn quantile_edges(sorted_reference: &[f64], bins: usize) -> Result<Vec<f64>, StatsError> {
    if sorted_reference.is_empty() {
        return Err(StatsError::EmptySample);
    }
    if bins == 0 {
        return Err(StatsError::InvalidBins);
    }
    debug_assert_sorted(sorted_reference);
    let x = sorted_reference;
    let last = x.len() - 1;
    let mut inner: Vec<f64> = (1..bins)
        .map(|k| {
            let q = k as f64 / bins as f64;
            let vi = last as f64 * q;
            let (lo, hi) = if vi >= last as f64 {
                (last, last)
            } else {
                let f = vi.floor() as usize;
                (f, f + 1)
            };
            let t = vi - vi.floor();
            // numpy _lerp
            let (a, b) = (x[lo], x[hi]);
            let diff = b - a;
            if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
        })
        .collect();
    inner.sort_unstable_by(f64::total_cmp);
    inner.dedup_by(|a, b| a == b);
    let mut edges = Vec::with_capacity(inner.len() + 2);
    edges.push(f64::NEG_INFINITY);
    edges.extend(inner.into_iter().filter(|e| e.is_finite()));
    edges.push(f64::INFINITY);
    Ok(edges)
}

/// Counts of sorted values per bin: bin `i` is `[edges[i], edges[i+1])`,
/// the last bin is closed (as `np.histogram`); values outside
/// `[edges[0], edges[last]]` are not counted (none, with the infinite outer
/// edges of [`quantile_edges`]). O(bins * log n) by binary search.
/// An empty `sorted_values` gives all-zero counts.
pub fn histogram(sorted_values: &[f64], edges: &[f64]) -> Result<Vec<u64>, StatsError> {
    if edges.len() < 2 || edges.iter().any(|e| e.is_nan()) || !edges.windows(2).all(|w| w[0] < w[1]) {
        return Err(StatsError::InvalidEdges);
    }
    debug_assert_sorted(sorted_values);
    let below = |e: f64| sorted_values.partition_point(|&v| v < e);
    let nb = edges.len() - 1;
    let mut counts = Vec::with_capacity(nb);
    let mut lo = below(edges[0]);
    for (k, &e) in edges[1..].iter().enumerate() {
        let hi = if k + 1 == nb { sorted_values.partition_point(|&v| v <= e) } else { below(e) };
        counts.push((hi - lo) as u64);
        lo = hi;
    }
    Ok(counts)
}

/// `np.sum` of a contiguous f64 array, bit-exact: NumPy's pairwise
/// summation (sequential below 8 elements, 8 accumulators up to 128, split
/// in halves above). Keeps large statistics (chi-square over many
/// categories and rows) identical to SciPy's, not just close.
fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        for chunk in a[8..full].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[full..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

fn totals(reference: &[u64], current: &[u64]) -> Result<(f64, f64), StatsError> {
    if reference.len() != current.len() {
        return Err(StatsError::LengthMismatch { reference: reference.len(), current: current.len() });
    }
    let r: u64 = reference.iter().sum();
    let c: u64 = current.iter().sum();
    if r == 0 || c == 0 {
        return Err(StatsError::EmptySample);
    }
    Ok((r as f64, c as f64))
}

/// Population stability index between two aligned count vectors:
/// `sum_i (q_i - p_i) * ln(q_i / p_i)` with `p_i = max(ref_i / R, eps)`,
/// `q_i = max(cur_i / C, eps)` (no renormalisation; `DEFAULT_EPS` = 1e-4 is
/// the usual floor). Not a SciPy function; the reference implementation is
/// `psi_ref` in `tests/gen_fixtures.py`.
pub fn psi(ref_counts: &[u64], cur_counts: &[u64], eps: f64) -> Result<f64, StatsError> {
    if !(eps.is_finite() && eps > 0.0) {
        return Err(StatsError::InvalidEps);
    }
    let (r, c) = totals(ref_counts, cur_counts)?;
    let terms: Vec<f64> = ref_counts
        .iter()
        .zip(cur_counts)
        .map(|(&ri, &ci)| {
            let p = (ri as f64 / r).max(eps);
            let q = (ci as f64 / c).max(eps);
            (q - p) * (q / p).ln()
        })
        .collect();
    Ok(np_sum(&terms))
}

/// `scipy.special.rel_entr(x, y)`.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen–Shannon *distance* (square root of the divergence, natural log)
/// between two count vectors, each normalised to proportions; matches
/// `scipy.spatial.distance.jensenshannon(ref_counts, cur_counts)`. A
/// divergence that rounds to a tiny negative value gives 0 (SciPy: NaN).
pub fn jensen_shannon(ref_counts: &[u64], cur_counts: &[u64]) -> Result<f64, StatsError> {
    let (r, c) = totals(ref_counts, cur_counts)?;
    let (left, right): (Vec<f64>, Vec<f64>) = ref_counts
        .iter()
        .zip(cur_counts)
        .map(|(&ri, &ci)| {
            let p = ri as f64 / r;
            let q = ci as f64 / c;
            let m = (p + q) / 2.0;
            (rel_entr(p, m), rel_entr(q, m))
        })
        .unzip();
    Ok(((np_sum(&left) + np_sum(&right)) / 2.0).max(0.0).sqrt())
}

/// Pearson chi-square test of homogeneity of two samples of counts (the
/// reference and the current one are both samples, so neither side's
/// proportions are taken as exact): the 2×k contingency table
/// `[ref_counts, cur_counts]`, bins empty on both sides dropped (k bins
/// remain). Matches `scipy.stats.chi2_contingency([ref, cur])` with its
/// default `correction=True`, bit for bit (counts below 2^53): expectations
/// `E_ij = row_i * col_j / N`, `dof = k - 1`; when `dof == 1` Yates'
/// continuity correction moves each observed count towards its expectation
/// by `min(0.5, |E - O|)`; statistic `sum (O - E)^2 / E` over the
/// flattened table, `p_value = chi2.sf(statistic, dof)`; `dof == 0` (one
/// category) gives statistic 0 and p-value 1, as SciPy. A category absent
/// from one side needs no smoothing: its column total is positive.
pub fn chi_square_homogeneity(ref_counts: &[u64], cur_counts: &[u64]) -> Result<ChiResult, StatsError> {
    let (r, c) = totals(ref_counts, cur_counts)?;
    let cols: Vec<(f64, f64)> = ref_counts
        .iter()
        .zip(cur_counts)
        .filter(|&(&ri, &ci)| ri > 0 || ci > 0)
        .map(|(&ri, &ci)| (ri as f64, ci as f64))
        .collect();
    let dof = cols.len() - 1;
    if dof == 0 {
        return Ok(ChiResult { statistic: 0.0, p_value: 1.0, dof });
    }
    // SciPy: expected = (row sums (2, 1) * column sums (1, k)) / observed.sum()
    let n = r + c;
    let yates = dof == 1;
    let term = |o: f64, total: f64, col: f64| {
        let e = total * col / n;
        // Yates: observed + min(0.5, |E - O|) * sign(E - O), sign(0) = 0
        let diff = e - o;
        let o = if !yates || diff == 0.0 {
            o
        } else if diff > 0.0 {
            o + diff.min(0.5)
        } else {
            o - (-diff).min(0.5)
        };
        let d = o - e;
        d * d / e
    };
    // row-major, as `power_divergence(axis=None)` flattens the table
    let terms: Vec<f64> = cols
        .iter()
        .map(|&(ri, ci)| term(ri, r, ri + ci))
        .chain(cols.iter().map(|&(ri, ci)| term(ci, c, ri + ci)))
        .collect();
    let statistic = np_sum(&terms);
    Ok(ChiResult { statistic, p_value: chi2_sf(dof as f64, statistic), dof })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_inputs_are_errors() {
        assert_eq!(ks_2samp(&[], &[1.0]), Err(StatsError::EmptySample));
        assert_eq!(ks_2samp(&[1.0], &[]), Err(StatsError::EmptySample));
        assert_eq!(wasserstein(&[], &[1.0]), Err(StatsError::EmptySample));
        assert_eq!(quantile_edges(&[], 10), Err(StatsError::EmptySample));
        assert_eq!(psi(&[0, 0], &[1, 2], DEFAULT_EPS), Err(StatsError::EmptySample));
        assert_eq!(jensen_shannon(&[1, 2], &[0, 0]), Err(StatsError::EmptySample));
        assert_eq!(chi_square_homogeneity(&[], &[]), Err(StatsError::EmptySample));
        assert_eq!(chi_square_homogeneity(&[0, 0], &[1, 2]), Err(StatsError::EmptySample));
        // empty values are fine for a histogram
        assert_eq!(histogram(&[], &[f64::NEG_INFINITY, 0.0, f64::INFINITY]), Ok(vec![0, 0]));
    }

    #[test]
    fn mismatched_lengths_and_bad_params() {
        let e = StatsError::LengthMismatch { reference: 2, current: 3 };
        assert_eq!(psi(&[1, 2], &[1, 2, 3], DEFAULT_EPS), Err(e.clone()));
        assert_eq!(jensen_shannon(&[1, 2], &[1, 2, 3]), Err(e.clone()));
        assert_eq!(chi_square_homogeneity(&[1, 2], &[1, 2, 3]), Err(e));
        assert_eq!(psi(&[1, 2], &[1, 2], 0.0), Err(StatsError::InvalidEps));
        assert_eq!(quantile_edges(&[1.0], 0), Err(StatsError::InvalidBins));
        assert_eq!(histogram(&[1.0], &[0.0]), Err(StatsError::InvalidEdges));
        assert_eq!(histogram(&[1.0], &[1.0, 0.0]), Err(StatsError::InvalidEdges));
        assert_eq!(histogram(&[1.0], &[0.0, f64::NAN]), Err(StatsError::InvalidEdges));
        assert!(StatsError::EmptySample.to_string().contains("empty"));
    }

    #[test]
    fn ks_basic_properties() {
        let a = [1.0, 2.0, 3.0];
        let r = ks_2samp(&a, &a).unwrap();
        assert_eq!((r.statistic, r.p_value, r.method), (0.0, 1.0, KsMethod::Exact));
        let r = ks_2samp(&[0.0, 1.0], &[5.0, 6.0]).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!((r.p_value - 2.0 / 6.0).abs() < 1e-15);
        // symmetric
        let (x, y) = ([0.1, 0.4, 0.5, 0.9], [0.2, 0.3, 0.35, 0.6, 0.7, 1.5]);
        assert_eq!(ks_2samp(&x, &y), ks_2samp(&y, &x));
        // tie groups are handled like searchsorted(side='right')
        let r = ks_2samp(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0]).unwrap();
        assert!((r.statistic - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn wasserstein_simple() {
        assert_eq!(wasserstein(&[0.0], &[2.5]), Ok(2.5));
        assert_eq!(wasserstein(&[1.0, 2.0], &[1.0, 2.0]), Ok(0.0));
        // scipy docs: wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        assert_eq!(wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]), Ok(5.0));
    }

    #[test]
    fn edges_and_histogram() {
        let x: Vec<f64> = (0..=10).map(f64::from).collect();
        let e = quantile_edges(&x, 10).unwrap();
        assert_eq!(e.len(), 11);
        assert_eq!(e[0], f64::NEG_INFINITY);
        assert_eq!(e[10], f64::INFINITY);
        assert_eq!(&e[1..10], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        let h = histogram(&x, &e).unwrap();
        assert_eq!(h, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        // heavy ties collapse edges
        let t = [1.0, 1.0, 1.0, 1.0, 2.0];
        let e = quantile_edges(&t, 10).unwrap();
        assert!(e.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(histogram(&t, &e).unwrap().iter().sum::<u64>(), 5);
        // one bin: just the infinite edges
        assert_eq!(quantile_edges(&t, 1).unwrap(), vec![f64::NEG_INFINITY, f64::INFINITY]);
        // finite edges: outside values dropped, last bin closed
        assert_eq!(histogram(&[-1.0, 0.0, 0.5, 1.0, 2.0], &[0.0, 0.5, 1.0]), Ok(vec![1, 2]));
    }

    #[test]
    fn psi_js_chi_identical_are_zero() {
        let h = [10, 20, 30, 0];
        assert_eq!(psi(&h, &h, DEFAULT_EPS), Ok(0.0));
        assert_eq!(jensen_shannon(&h, &h), Ok(0.0));
        let c = chi_square_homogeneity(&h, &h).unwrap();
        assert_eq!((c.dof, c.statistic, c.p_value), (2, 0.0, 1.0));
        // proportional counts are homogeneous too (no reference smoothing)
        let c = chi_square_homogeneity(&[5, 10, 15], &[50, 100, 150]).unwrap();
        assert_eq!((c.dof, c.statistic, c.p_value), (2, 0.0, 1.0));
        // one category: dof 0, statistic 0 and p-value 1 (chi2_contingency)
        let single = chi_square_homogeneity(&[5], &[9]).unwrap();
        assert_eq!((single.dof, single.statistic, single.p_value), (0, 0.0, 1.0));
    }

    #[test]
    fn chi_square_homogeneity_matches_chi2_contingency() {
        // (ref, cur, statistic, p-value, dof) from scipy.stats.chi2_contingency([ref, cur]) (SciPy 1.17.1)
        type Case<'a> = (&'a [u64], &'a [u64], f64, f64, usize);
        let cases: [Case; 4] = [
            // dof 1: Yates' correction
            (&[10, 20], &[30, 25], 2.706155303030302, 0.0999616438735349, 1),
            // |E - O| < 0.5: the correction stops at E (gh-13875), statistic 0
            (&[10, 10], &[11, 10], 0.0, 1.0, 1),
            // a category absent from one side, and one absent from both (dropped)
            (&[10, 0, 0], &[0, 0, 3], 7.976944444444444, 0.004737684017899719, 1),
            (&[10, 20, 30], &[5, 25, 20], 3.340740740740742, 0.18817735741305242, 2),
        ];
        for (r, c, stat, p, dof) in cases {
            let got = chi_square_homogeneity(r, c).unwrap();
            assert_eq!(got.dof, dof, "{r:?} {c:?}");
            assert!((got.statistic - stat).abs() <= 1e-12 * stat.max(1.0), "{r:?} {c:?}: {got:?}");
            assert!((got.p_value - p).abs() <= 1e-12 * p.max(1e-300), "{r:?} {c:?}: {got:?}");
        }
        // symmetric in the two samples
        let (a, b) = ([120, 40, 0, 7, 33], [90, 55, 4, 0, 51]);
        assert_eq!(chi_square_homogeneity(&a, &b), chi_square_homogeneity(&b, &a));
    }

    /// Two large samples drawn from the *same* distribution: the two-sample
    /// test rejects at 5% about 5% of the time. The one-sample goodness of
    /// fit against the reference proportions (the former definition, here
    /// without its smoothing) treats the reference as exact, so with equal
    /// sizes its statistic is about twice a chi2(k - 1) and it rejects far
    /// more often (~31% for k = 5).
    #[test]
    fn chi_square_homogeneity_is_calibrated_for_two_large_samples() {
        const N: usize = 200_000;
        const REPS: usize = 200;
        const P: [f64; 5] = [0.4, 0.25, 0.15, 0.12, 0.08];
        let mut state = 0x5EED_2026_u64;
        // SplitMix64
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut cum = [0u64; 5];
        let mut acc = 0.0;
        for (c, p) in cum.iter_mut().zip(P) {
            acc += p;
            *c = (acc * (1u64 << 53) as f64) as u64;
        }
        cum[4] = u64::MAX;
        let mut draw = |n: usize| {
            let mut h = [0u64; 5];
            for _ in 0..n {
                let u = next() >> 11;
                h[cum.iter().position(|&c| u < c).unwrap()] += 1;
            }
            h
        };
        let (mut rejected, mut rejected_one_sample, mut mean_stat) = (0usize, 0usize, 0.0);
        for _ in 0..REPS {
            let (r, c) = (draw(N), draw(N));
            let chi = chi_square_homogeneity(&r, &c).unwrap();
            assert_eq!(chi.dof, 4);
            mean_stat += chi.statistic / REPS as f64;
            rejected += usize::from(chi.p_value < 0.05);
            // one-sample form: scipy.stats.chisquare(c, f_exp = r / R * C)
            let (rt, ct) = (r.iter().sum::<u64>() as f64, c.iter().sum::<u64>() as f64);
            let gof: f64 = r
                .iter()
                .zip(&c)
                .map(|(&ri, &ci)| {
                    let e = ri as f64 / rt * ct;
                    (ci as f64 - e).powi(2) / e
                })
                .sum();
            rejected_one_sample += usize::from(chi2_sf(4.0, gof) < 0.05);
        }
        let (rate, rate_one_sample) = (rejected as f64 / REPS as f64, rejected_one_sample as f64 / REPS as f64);
        println!(
            "same distribution, {REPS} x {N} vs {N}: P(p < 0.05) two-sample {rate:.3}, one-sample {rate_one_sample:.3}; \
             mean statistic {mean_stat:.3} (dof 4)"
        );
        assert!(rate < 0.10, "two-sample rejection rate {rate}");
        assert!(rate_one_sample > 0.20, "one-sample rejection rate {rate_one_sample}");
        assert!((mean_stat - 4.0).abs() < 1.0, "mean statistic {mean_stat}");
    }

    #[test]
    fn np_sum_is_pairwise() {
        // 0.1 * k summed sequentially differs from NumPy's pairwise order
        let v: Vec<f64> = (0..300).map(|k| 0.1 * k as f64 + 1e-3 / (k + 1) as f64).collect();
        let exact: f64 = v.iter().sum();
        assert!((np_sum(&v) - exact).abs() < 1e-9);
        assert_eq!(np_sum(&[]), 0.0);
        assert_eq!(np_sum(&[1.5; 3]), 4.5);
        // 9 elements: 8-lane tree then remainder
        let w = [1e16, 1.0, -1e16, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0];
        assert_eq!(np_sum(&w), ((1e16 + 1.0) + (-1e16 + 1.0)) + 3.0);
    }

    #[test]
    fn js_disjoint_is_sqrt_ln2() {
        let d = jensen_shannon(&[1, 0], &[0, 1]).unwrap();
        assert!((d - std::f64::consts::LN_2.sqrt()).abs() < 1e-15);
    }
}
