//! Kolmogorov–Smirnov distributions, ported from SciPy 1.17:
//!
//! * [`kstwo_sf`]: `scipy.stats.kstwo.sf(x, n)` (two-sided one-sample
//!   statistic D_n), i.e. `scipy/stats/_ksstats.py::_kolmogn(n, x, cdf=False)`
//!   with its Ruben–Gambino, Durbin/Marsaglia–Tsang–Wang, Pomeranz,
//!   Pelz–Good and `2 * smirnov` branches, and the same cut-overs.
//! * [`smirnov_sf`]: `scipy.special.smirnov(n, x)` (one-sided D_n^+), the
//!   Birnbaum–Tingey sum of xsf `cephes/kolmogorov.h`. SciPy sums in
//!   double-double; here each term is a binomial-like probability evaluated
//!   with Loader's saddle-point method, which keeps ~1e-13 relative accuracy
//!   up to n = 10^6 in plain f64.
//! * [`prob_outside_square`] / [`outer_prob_inside_method`]: the exact
//!   two-sample p-values of `scipy.stats.ks_2samp`
//!   (`_compute_prob_outside_square`, `_stats_pythran._compute_outer_prob_inside_method`).

use super::special::{LN_2PI, bd0, ldexp, stirlerr};
use std::f64::consts::PI;

const E128: i64 = 128;
const EP128: f64 = f64::from_bits((1023 + 128) << 52); // 2^128
const EM128: f64 = f64::from_bits((1023 - 128) << 52); // 2^-128
const LOG_2PI: f64 = LN_2PI;
const SQRT2PI: f64 = 2.506_628_274_631_000_7;
const MIN_LOG: f64 = -708.0;
const PI_SQUARED: f64 = PI * PI;
const PI_FOUR: f64 = PI_SQUARED * PI_SQUARED;
const PI_SIX: f64 = PI_FOUR * PI_SQUARED;
/// Cephes MINLOG = log(2^-1022).
const CEPHES_MINLOG: f64 = -7.083_964_185_322_641e2;

fn clip01(p: f64) -> f64 {
    // np.clip keeps NaN
    if p.is_nan() { p } else { p.clamp(0.0, 1.0) }
}

/// `log(n! / n^n)` via Stirling with the `n log n` term removed (`_log_nfactorial_div_n_pow_n`).
fn log_nfactorial_div_n_pow_n(n: u64) -> f64 {
    // B_2k / (2k (2k - 1)) for k = 8..1
    const STIRLING_COEFFS: [f64; 8] = [
        -3617.0 / 122_400.0,
        1.0 / 156.0,
        -691.0 / 360_360.0,
        1.0 / 1188.0,
        -1.0 / 1680.0,
        1.0 / 1260.0,
        -1.0 / 360.0,
        1.0 / 12.0,
    ];
    let nf = n as f64;
    let rn = 1.0 / nf;
    let x = rn / nf;
    let mut poly = 0.0;
    for c in STIRLING_COEFFS {
        poly = poly * x + c;
    }
    nf.ln() / 2.0 - nf + LOG_2PI / 2.0 + rn * poly
}

/// Square matrix product (row-major, `m x m`).
fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * m];
    for i in 0..m {
        let crow = &mut c[i * m..(i + 1) * m];
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            let brow = &b[k * m..(k + 1) * m];
            for (cv, bv) in crow.iter_mut().zip(brow) {
                *cv += aik * bv;
            }
        }
    }
    c
}

/// Pr(D_n <= d) by the Durbin matrix / Marsaglia–Tsang–Wang method (`_kolmogn_DMTW`, cdf).
fn kolmogn_dmtw_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powf(j as f64)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powf(m as f64) - 2.0 * h.powf(m as f64);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }

    let mut hpwr: Vec<f64> = (0..m * m).map(|i| if i / m == i % m { 1.0 } else { 0.0 }).collect();
    let mut nn = n;
    let mut expnt: i64 = 0;
    let mut hexpnt: i64 = 0;
    let kk = (k - 1) * m + (k - 1);
    while nn > 0 {
        if nn % 2 == 1 {
            hpwr = matmul(&hpwr, &hm, m);
            expnt += hexpnt;
            // SciPy holds these in numpy longdouble (80-bit) after the first
            // rescale; f64 needs the running product rescaled too. Same value.
            if hpwr[kk].abs() > EP128 {
                hpwr.iter_mut().for_each(|x| *x /= EP128);
                expnt += E128;
            }
        }
        hm = matmul(&hm, &hm, m);
        hexpnt *= 2;
        if hm[kk].abs() > EP128 {
            hm.iter_mut().for_each(|x| *x /= EP128);
            hexpnt += E128;
        }
        nn /= 2;
    }
    let mut p = hpwr[kk];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < EM128 {
            p *= EP128;
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p = ldexp(p, expnt);
    }
    clip01(p)
}

fn pomeranz_j1j2(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let ip1div2 = (i + 1) / 2;
        let ip1mod2 = (i + 1) % 2;
        if ip1mod2 == 0 {
            if ip1div2 == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (ip1div2 - 1 - ll - roundf - 1, ip1div2 + ll - 1 + ceilf - 1)
            }
        } else {
            (ip1div2 - 1 - ll - 1, ip1div2 + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// Pr(D_n <= x) by the Pomeranz recursion (`_kolmogn_Pomeranz`, cdf).
fn kolmogn_pomeranz_cdf(n: u64, x: f64) -> f64 {
    let ni = n as i64;
    let nf = n as f64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let mut gpower = vec![0.0; npwrs];
    let mut twogpower = vec![0.0; npwrs];
    let mut onem2gpower = vec![0.0; npwrs];
    gpower[0] = 1.0;
    twogpower[0] = 1.0;
    onem2gpower[0] = 1.0;
    let mut expnt: i64 = 0;
    let (g_over_n, two_g_over_n, one_minus_two_g_over_n) = (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        gpower[m] = gpower[m - 1] * g_over_n / m as f64;
        twogpower[m] = twogpower[m - 1] * two_g_over_n / m as f64;
        onem2gpower[m] = onem2gpower[m - 1] * one_minus_two_g_over_n / m as f64;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0i64, 0i64);
    let (mut j1, _) = pomeranz_j1j2(0, ni, ll, ceilf, roundf);
    for i in 1..(2 * ni + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.iter_mut().for_each(|x| *x = 0.0);
        let j2;
        (j1, j2) = pomeranz_j1j2(i, ni, ll, ceilf, roundf);
        let pwrs = if i == 1 || i == 2 * ni + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            // np.convolve(V0[k1 - V0s : k1 - V0s + ln2], pwrs[:ln2]) (slices truncate)
            let s = (k1 - v0s) as usize;
            let a = &v0[s.min(npwrs)..(s + ln2 as usize).min(npwrs)];
            let b = &pwrs[..(ln2 as usize).min(npwrs)];
            let conv_start = (j1 - k1) as usize;
            let conv_len = (j2 - j1 + 1).max(0) as usize;
            for (out, idx) in v1.iter_mut().take(conv_len).zip(conv_start..) {
                let lo = idx.saturating_sub(b.len().saturating_sub(1));
                let hi = idx.min(a.len().saturating_sub(1));
                let mut acc = 0.0;
                if !a.is_empty() {
                    for ia in lo..=hi {
                        acc += a[ia] * b[idx - ia];
                    }
                }
                *out = acc;
            }
            let vmax = v1.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < vmax && vmax < EM128 {
                v1.iter_mut().for_each(|x| *x *= EP128);
                expnt -= E128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let mut ans = v1[(ni - v1s) as usize];
    for m in 1..=n {
        if ans.abs() > EP128 {
            ans *= EM128;
            expnt += E128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans = ldexp(ans, expnt);
    }
    clip01(ans)
}

/// Pelz–Good asymptotic approximation to Pr(D_n <= x) (`_kolmogn_PelzGood`, cdf; unclipped).
fn kolmogn_pelz_good_cdf(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (zsquared, zthree, zfour, zsix) = (z.powi(2), z.powf(3.0), z.powf(4.0), z.powf(6.0));
    let qlog = -PI_SQUARED / 8.0 / zsquared;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();
    let k1a = -zsquared;
    let k1b = PI_SQUARED / 4.0;
    let k2a = 6.0 * zsix + 2.0 * zfour;
    let k2b = (2.0 * zfour - 5.0 * zsquared) * PI_SQUARED / 4.0;
    let k2c = PI_FOUR * (1.0 - 2.0 * zsquared) / 16.0;
    let k3d = PI_SIX * (5.0 - 30.0 * zsquared) / 64.0;
    let k3c = PI_FOUR * (-60.0 * zsquared + 212.0 * zfour) / 16.0;
    let k3b = PI_SQUARED * (135.0 * zfour - 96.0 * zsix) / 4.0;
    let k3a = -30.0 * zsix - 90.0 * z.powf(8.0);

    let mut kk = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf((8 * k) as f64);
        let coeffs = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6];
        for i in 0..4 {
            kk[i] = kk[i] * qpower + coeffs[i];
        }
    }
    let denom = [z, 6.0 * zfour, 72.0 * z.powf(7.0), 6480.0 * z.powf(10.0)];
    for i in 0..4 {
        kk[i] = kk[i] * q * SQRT2PI / denom[i];
    }
    let q = (-PI_SQUARED / 2.0 / zsquared).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let mut k2extra = 0.0;
    let mut k3extra = 0.0;
    for k in (1..=maxk).rev() {
        let ksq = (k * k) as f64;
        let kspi = PI * k as f64;
        let qp = q.powf(ksq);
        k2extra += ksq * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
    }
    kk[2] += k2extra * (PI_SQUARED * SQRT2PI / (-36.0 * zthree));
    kk[3] += k3extra * (PI_SQUARED * SQRT2PI / (216.0 * zsix));
    for (i, v) in kk.iter_mut().enumerate() {
        *v /= nf.powf(i as f64 / 2.0);
    }
    kk.iter().sum()
}

/// `scipy.stats.kstwo.sf(x, n)`: Pr(D_n > x) for the two-sided one-sample
/// Kolmogorov–Smirnov statistic with `n` observations.
pub fn kstwo_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    let nf = n as f64;
    // rv_continuous.sf: support is [0.5/n, 1]
    if x <= 0.5 / nf {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    kolmogn_sf(n, x)
}

/// `_kolmogn(n, x, cdf=False)`.
fn kolmogn_sf(n: u64, x: f64) -> f64 {
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        let prob = if n <= 140 {
            let base = 2.0 * t - 1.0;
            let inv = 1.0 / nf;
            (1..=n).fold(1.0, |acc, i| acc * (i as f64 * inv * base))
        } else {
            (log_nfactorial_div_n_pow_n(n) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip01(1.0 - prob);
    }
    if t >= nf - 1.0 {
        return clip01(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip01(2.0 * smirnov_sf(n, x));
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754_693 {
            return clip01(1.0 - kolmogn_dmtw_cdf(n, x));
        }
        if nxsquared <= 4.0 {
            return clip01(1.0 - kolmogn_pomeranz_cdf(n, x));
        }
        return clip01(2.0 * smirnov_sf(n, x));
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return clip01(2.0 * smirnov_sf(n, x));
    }
    let cdfprob = if nxsquared >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        kolmogn_dmtw_cdf(n, x)
    } else {
        kolmogn_pelz_good_cdf(n, x)
    };
    clip01(1.0 - cdfprob)
}

/// `floor(n*x)` and the fractional part `alpha`, computed exactly with an FMA (`modNX`).
fn mod_nx(n: u64, x: f64) -> (i64, f64, f64) {
    let nf = n as f64;
    let hi = nf * x;
    let lo = nf.mul_add(x, -hi); // exact: n*x = hi + lo
    let mut fl = hi.floor();
    let mut alpha = (hi - fl) + lo;
    if alpha < 0.0 {
        fl -= 1.0;
        alpha += 1.0;
    }
    if alpha >= 1.0 {
        fl += 1.0;
        alpha -= 1.0;
    }
    (fl as i64, alpha, hi)
}

/// `scipy.special.smirnov(n, x)`: Pr(D_n^+ >= x), one-sided one-sample KS.
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if !(n > 0 && (0.0..=1.0).contains(&x)) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let ni = n as i64;
    let nf = n as f64;
    let (nxfl, alpha, nx_hi) = mod_nx(n, x);
    let mut n1mxfl = ni - nxfl - i64::from(alpha != 0.0);
    let mut n1mxceil = ni - nxfl;
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }
    // x <= 1/n
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = ((nf - 1.0) * x.ln_1p()).exp();
        return 1.0 - x * t;
    }
    if -2.0 * nf * x * x < CEPHES_MINLOG {
        return 0.0;
    }
    // x >= 1 - 1/n
    if nxfl >= ni - 1 {
        return (nf * (-x).ln_1p()).exp();
    }
    if n > 1_000_000 {
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        return if logp < -std::f64::consts::LN_2 { logp.exp() } else { 1.0 - (-logp.exp_m1()) };
    }
    let n_upper_terms = ni - n1mxceil + 1;
    let use_upper = (n_upper_terms <= 1 && x < 0.5) || (ni >= 10 && n_upper_terms <= 3 && x <= 0.5 / nf.sqrt());
    if use_upper {
        // Few alternating terms, v = n, n-1, ...: A_v with j = n - v,
        // C(n, j) (j/n - x)^j (1 + x - j/n)^(n - j - 1); cdf = x * sum.
        let mut sum = 0.0;
        let mut binom = 1.0;
        for j in 0..n_upper_terms {
            let jf = j as f64;
            let a = binom * (jf / nf - x).powf(jf) * ((nf - jf - 1.0) * (x - jf / nf).ln_1p()).exp();
            if a.is_finite() {
                sum += a;
            }
            binom = binom * (nf - jf) / (jf + 1.0);
        }
        return clip01(1.0 - x * sum);
    }
    // Lower (Birnbaum–Tingey) sum, all terms positive:
    //   sf = sum_{v=0}^{n1mxfl} x A_v,  x A_v = (nx / (v + nx)) * Binom(n, p_v).pmf(v),
    //   p_v = x + v/n, q_v = 1 - p_v = (n - v - nxfl - alpha) / n.
    let n_terms = n1mxfl + 1;
    let vmid = ni / 2;
    let sn = stirlerr(n);
    let mut sum = (nf * (-x).ln_1p()).exp(); // v = 0: (1 - x)^n
    for v in 1..n_terms {
        let vf = v as f64;
        let nmv = (ni - v) as f64;
        let np = vf + nx_hi; // n p_v
        let nq = ((ni - v - nxfl) as f64) - alpha; // n q_v, exact up to alpha
        let lc = sn - stirlerr(v as u64) - stirlerr((ni - v) as u64) - bd0(vf, np, -nx_hi) - bd0(nmv, nq, nx_hi);
        let lf = LN_2PI + (vf * (nmv / nf)).ln(); // ln(2 pi v (n - v) / n)
        let term = nx_hi / np * (lc - 0.5 * lf).exp();
        if term.is_finite() && term != 0.0 {
            sum += term;
        }
        if term != 0.0 {
            if 4.0 * ((n_terms - v) as f64) * term.abs() < f64::EPSILON * sum && v != n_terms - 1 {
                break;
            }
        } else if v > vmid {
            break;
        }
    }
    clip01(sum)
}

/// Exact Pr(D_{n,n} >= h/n) for two samples of equal size `n`
/// (`scipy.stats._stats_py._compute_prob_outside_square`).
pub(crate) fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0f64;
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0f64;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// Exact two-sided two-sample p-value Pr(D_{m,n} >= h/lcm(m,n)) by Hodges'
/// inside method with Viehmann's 1-p recursion
/// (`scipy.stats._stats_pythran._compute_outer_prob_inside_method`).
pub(crate) fn outer_prob_inside_method(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let ceil_div = |a: i64, b: i64| -> i64 { -((-a).div_euclid(b)) };
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let fi = i as f64;
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let off = (minj - lastminj) as usize;
        for jj in 0..(maxj - minj) as usize {
            let j = jj as i64 + minj;
            val = (a[jj + off] * fi + val * j as f64) / (i + j) as f64;
            a[jj] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let s = (maxj - minj) as usize;
            let e = (s + (lastlen - curlen) as usize).min(len_a);
            for v in &mut a[s..e] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kstwo_sf_limits() {
        assert_eq!(kstwo_sf(10, 0.0), 1.0);
        assert_eq!(kstwo_sf(10, 0.05), 1.0); // <= 0.5/n
        assert_eq!(kstwo_sf(10, 1.0), 0.0);
        assert!(kstwo_sf(0, 0.5).is_nan());
        // n = 1: D_1 is uniform on [1/2, 1], sf = 2 (1 - x)
        assert!((kstwo_sf(1, 0.75) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn smirnov_limits() {
        assert_eq!(smirnov_sf(5, 0.0), 1.0);
        assert_eq!(smirnov_sf(5, 1.0), 0.0);
        assert!((smirnov_sf(1, 0.3) - 0.7).abs() < 1e-15);
        assert!(smirnov_sf(0, 0.3).is_nan());
    }

    #[test]
    fn exact_two_sample_small() {
        // n = m = 2, D = 1: only the 2 of C(4,2) = 6 orderings aabb/bbaa
        assert!((prob_outside_square(2, 2) - 2.0 / 6.0).abs() < 1e-15);
        // m = 2, n = 1 (lcm 2), D = 1 (h = 2): orderings aab, baa of 3
        assert!((outer_prob_inside_method(2, 1, 1, 2) - 2.0 / 3.0).abs() < 1e-15);
    }
}
