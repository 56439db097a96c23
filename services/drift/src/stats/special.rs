//! Special functions needed by the drift statistics: log-gamma, the
//! regularized upper incomplete gamma function (Cephes `igamc` algorithm),
//! the chi-square survival function (SciPy `special.chdtrc`), and the
//! saddle-point pieces (`stirlerr`, `bd0`, Loader 2000) used to evaluate
//! binomial-like terms accurately for very large `n`.

/// ln(sqrt(2*pi)).
pub(crate) const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// ln(2*pi).
pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_5;

const MACHEP: f64 = 1.110_223_024_625_156_5e-16;
const MAXLOG: f64 = 7.097_827_128_933_84e2;
const BIG: f64 = 4.503_599_627_370_496e15;
const BIGINV: f64 = 2.220_446_049_250_313e-16;

/// `2^e` as an exact power of two, for `-1022 <= e <= 1023`.
fn pow2i(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// C `ldexp`: `x * 2^e`, without intermediate overflow/underflow for large |e|.
pub(crate) fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 {
        x *= pow2i(1000);
        e -= 1000;
        if x.is_infinite() || x == 0.0 {
            return x;
        }
    }
    while e < -1000 {
        x *= pow2i(-1000);
        e += 1000;
        if x == 0.0 || x.is_infinite() {
            return x;
        }
    }
    if e < -1022 {
        // two steps so that the result may be subnormal
        x * pow2i(-1000) * pow2i((e + 1000) as i32)
    } else {
        x * pow2i(e as i32)
    }
}

/// Natural log of the gamma function for `x > 0` (shift + Stirling series,
/// absolute error ~1e-15). Returns NaN for `x <= 0` or NaN input.
pub(crate) fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    let mut z = x;
    let mut prod = 1.0;
    while z < 15.0 {
        prod *= z;
        z += 1.0;
    }
    let r = 1.0 / z;
    let r2 = r * r;
    // Bernoulli series B_2k / (2k (2k-1) z^(2k-1)), k = 1..7
    let series = r
        * (1.0 / 12.0
            + r2 * (-1.0 / 360.0
                + r2 * (1.0 / 1260.0
                    + r2 * (-1.0 / 1680.0 + r2 * (1.0 / 1188.0 + r2 * (-691.0 / 360_360.0 + r2 * (1.0 / 156.0)))))));
    (z - 0.5) * z.ln() - z + LN_SQRT_2PI + series - prod.ln()
}

/// Regularized lower incomplete gamma P(a, x) by its power series (Cephes `igam`).
fn igam_series(a: f64, x: f64) -> f64 {
    let ax = a * x.ln() - x - ln_gamma(a);
    if ax < -MAXLOG {
        return 0.0;
    }
    let ax = ax.exp();
    let mut r = a;
    let mut c = 1.0;
    let mut ans = 1.0;
    for _ in 0..100_000 {
        r += 1.0;
        c *= x / r;
        ans += c;
        if c / ans <= MACHEP {
            break;
        }
    }
    ans * ax / a
}

/// Regularized upper incomplete gamma Q(a, x) (Cephes `igamc`: series for
/// `x < 1 || x < a`, Legendre continued fraction otherwise).
pub(crate) fn igamc(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() || x < 0.0 || a < 0.0 {
        return f64::NAN;
    }
    if a == 0.0 {
        return if x > 0.0 { 0.0 } else { f64::NAN };
    }
    if x == 0.0 {
        return 1.0;
    }
    if a.is_infinite() {
        return if x.is_infinite() { f64::NAN } else { 1.0 };
    }
    if x.is_infinite() {
        return 0.0;
    }
    if x < 1.0 || x < a {
        return 1.0 - igam_series(a, x);
    }
    let ax = a * x.ln() - x - ln_gamma(a);
    if ax < -MAXLOG {
        return 0.0;
    }
    let ax = ax.exp();
    let mut y = 1.0 - a;
    let mut z = x + y + 1.0;
    let mut c = 0.0;
    let mut pkm2 = 1.0;
    let mut qkm2 = x;
    let mut pkm1 = x + 1.0;
    let mut qkm1 = z * x;
    let mut ans = pkm1 / qkm1;
    for _ in 0..100_000 {
        c += 1.0;
        y += 1.0;
        z += 2.0;
        let yc = y * c;
        let pk = pkm1 * z - pkm2 * yc;
        let qk = qkm1 * z - qkm2 * yc;
        let t = if qk != 0.0 {
            let r = pk / qk;
            let t = ((ans - r) / r).abs();
            ans = r;
            t
        } else {
            1.0
        };
        pkm2 = pkm1;
        pkm1 = pk;
        qkm2 = qkm1;
        qkm1 = qk;
        if pk.abs() > BIG {
            pkm2 *= BIGINV;
            pkm1 *= BIGINV;
            qkm2 *= BIGINV;
            qkm1 *= BIGINV;
        }
        if t <= MACHEP {
            break;
        }
    }
    ans * ax
}

/// Chi-square survival function, `scipy.special.chdtrc(df, x)` =
/// `scipy.stats.chi2.sf(x, df)` = Q(df/2, x/2). `x < 0` gives 1; `df == 0`
/// gives NaN at `x == 0` and 0 for `x > 0` (as Cephes).
pub fn chi2_sf(df: f64, x: f64) -> f64 {
    if x < 0.0 {
        return 1.0;
    }
    igamc(df / 2.0, x / 2.0)
}

/// Stirling-formula error `ln(n!) - [(n + 1/2) ln n - n + ln sqrt(2 pi)]`
/// for integer `n >= 0` (0 at n = 0 by convention).
pub(crate) fn stirlerr(n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    if n <= 15 {
        // n! is exact in f64 for n <= 15 (1.3e12 < 2^53)
        let mut fact = 1.0f64;
        for i in 2..=n {
            fact *= i as f64;
        }
        return fact.ln() - (nf + 0.5) * nf.ln() + nf - LN_SQRT_2PI;
    }
    let r = 1.0 / nf;
    let r2 = r * r;
    r * (1.0 / 12.0 + r2 * (-1.0 / 360.0 + r2 * (1.0 / 1260.0 + r2 * (-1.0 / 1680.0 + r2 * (1.0 / 1188.0)))))
}

/// Loader's deviance term `x ln(x / np) + np - x`, evaluated stably.
/// `d` must equal `x - np` (passed separately so it can be exact). Near
/// `x == np` the series `d v + 2x sum_{j>=1} v^(2j+1) / (2j+1)`,
/// `v = d / (x + np)`, |v| < 0.1, is summed to j = 10 by Horner (truncation
/// < 1e-20 relative); otherwise the direct formula.
pub(crate) fn bd0(x: f64, np: f64, d: f64) -> f64 {
    let s = x + np;
    if d.abs() < 0.1 * s {
        let v = d / s;
        let v2 = v * v;
        let mut poly = 1.0 / 21.0;
        for c in
            [1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0]
        {
            poly = poly * v2 + c;
        }
        d * v + 2.0 * x * v * v2 * poly
    } else {
        x * (x / np).ln() + np - x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(2.0)).abs() < 1e-14);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
        // ln(10!) = ln(3628800)
        assert!((ln_gamma(11.0) - 3_628_800f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(100.0) - 359.134_205_369_575_4).abs() < 1e-11);
    }

    #[test]
    fn chi2_sf_known_values() {
        // df = 2: sf = exp(-x/2)
        for x in [0.1, 1.0, 5.0, 30.0] {
            assert!((chi2_sf(2.0, x) - (-x / 2.0f64).exp()).abs() < 1e-14);
        }
        assert_eq!(chi2_sf(3.0, 0.0), 1.0);
        assert_eq!(chi2_sf(3.0, -1.0), 1.0);
        assert!(chi2_sf(0.0, 0.0).is_nan());
        assert_eq!(chi2_sf(0.0, 1.0), 0.0);
    }

    /// R's / Loader's original loop form of bd0.
    fn bd0_loop(x: f64, np: f64) -> f64 {
        if (x - np).abs() < 0.1 * (x + np) {
            let v = (x - np) / (x + np);
            let mut s = (x - np) * v;
            let mut ej = 2.0 * x * v;
            for j in 1..1000 {
                ej *= v * v;
                let s1 = s + ej / (2 * j + 1) as f64;
                if s1 == s {
                    return s1;
                }
                s = s1;
            }
            s
        } else {
            x * (x / np).ln() + np - x
        }
    }

    #[test]
    fn bd0_matches_loop_form() {
        for (x, np) in [(10.0, 10.5), (1000.0, 1010.0), (5.0, 50.0), (1e5, 100_001.0), (3.0, 2.9), (2.0, 2.44)] {
            let (want, got) = (bd0_loop(x, np), bd0(x, np, x - np));
            assert!((got - want).abs() <= 1e-14 * want.abs(), "{x} {np} {got} {want}");
        }
    }

    #[test]
    fn ldexp_extremes() {
        assert_eq!(ldexp(1.0, 3), 8.0);
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(ldexp(1.5, -1060), 1060), 1.5);
        assert_eq!(ldexp(ldexp(1.5, 1500), -1500), f64::INFINITY);
    }
}
