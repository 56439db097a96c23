//! Agreement with SciPy/NumPy on the cases in `tests/fixtures.json`
//! (written by `tests/gen_fixtures.py`): every statistic within 1e-6
//! absolute; the chi-square test of homogeneity (`chi2_contingency`) also
//! within 1e-9 relative.

use pulse_drift::stats::*;
use serde_json::Value;
use std::collections::BTreeMap;

const TOL: f64 = 1e-6;
/// Relative tolerance of the statistics held to it ([`Checker::close_rel`]).
const REL_TOL: f64 = 1e-9;

fn b64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Decode `{"dtype": "f32"|"f64", "n": .., "b64": ..}` to the f64 values SciPy saw.
fn decode_array(v: &Value) -> Vec<f64> {
    let raw = b64_decode(v["b64"].as_str().unwrap());
    let out: Vec<f64> = match v["dtype"].as_str().unwrap() {
        "f32" => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "f64" => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        d => panic!("unknown dtype {d}"),
    };
    assert_eq!(out.len() as u64, v["n"].as_u64().unwrap());
    out
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => panic!("bad number {s}"),
        },
        _ => v.as_f64().unwrap(),
    }
}

fn counts(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[derive(Default)]
struct Checker {
    max_err: BTreeMap<&'static str, (f64, String)>,
    /// informational: relative error where |scipy| > 1e-300
    max_rel: BTreeMap<&'static str, f64>,
    checked: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Checker {
    fn close(&mut self, stat: &'static str, case: &str, rust: f64, scipy: f64) {
        *self.checked.entry(stat).or_default() += 1;
        let err = if rust.is_nan() && scipy.is_nan() || rust == scipy { 0.0 } else { (rust - scipy).abs() };
        let ok = err <= TOL; // NaN err (one side NaN) fails
        if scipy.abs() > 1e-300 && scipy.is_finite() {
            let rel = self.max_rel.entry(stat).or_insert(0.0);
            *rel = rel.max(err / scipy.abs());
        }
        let e = self.max_err.entry(stat).or_insert((0.0, String::new()));
        if !ok || err > e.0 {
            *e = (if err.is_nan() { f64::INFINITY } else { err }, case.to_string());
        }
        if !ok {
            self.failures.push(format!("{case}: {stat}: rust {rust:e} scipy {scipy:e} (|diff| {err:e})"));
        }
    }

    /// [`Checker::close`], and also within [`REL_TOL`] of SciPy's value.
    fn close_rel(&mut self, stat: &'static str, case: &str, rust: f64, scipy: f64) {
        self.close(stat, case, rust, scipy);
        if rust == scipy || rust.is_nan() && scipy.is_nan() {
            return;
        }
        let rel = (rust - scipy).abs() / scipy.abs();
        if rel.is_nan() || rel > REL_TOL {
            self.failures.push(format!("{case}: {stat}: rust {rust:e} scipy {scipy:e} (rel {rel:e} > {REL_TOL:e})"));
        }
    }

    fn exact<T: PartialEq + std::fmt::Debug>(&mut self, stat: &'static str, case: &str, rust: T, scipy: T) {
        *self.checked.entry(stat).or_default() += 1;
        if rust != scipy {
            self.failures.push(format!("{case}: {stat}: rust {rust:?} != scipy {scipy:?}"));
        }
    }
}

fn fixtures() -> Value {
    // Expected quantile edges are compared bit-exactly and grid points must be
    // the exact x SciPy saw: serde_json needs its `float_roundtrip` feature.
    let probe: f64 = serde_json::from_str("0.42000000000000004").unwrap();
    assert_eq!(probe.to_bits(), 0.42000000000000004f64.to_bits(), "enable serde_json/float_roundtrip");
    // DRIFT_FIXTURES may point at another file in the same format (ad-hoc fuzzing)
    let path = std::env::var("DRIFT_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures.json").to_string());
    serde_json::from_str(&std::fs::read_to_string(path).expect("read fixtures.json")).unwrap()
}

fn check_counts_stats(ck: &mut Checker, name: &str, c: &Value, hr: &[u64], hc: &[u64]) {
    ck.close("psi", name, psi(hr, hc, DEFAULT_EPS).unwrap(), num(&c["psi"]));
    ck.close("jensen_shannon", name, jensen_shannon(hr, hc).unwrap(), num(&c["js"]));
    // scipy.stats.chi2_contingency([ref, cur]) over the non-empty bins
    let chi = chi_square_homogeneity(hr, hc).unwrap();
    ck.close_rel("chi_square.statistic", name, chi.statistic, num(&c["chi_statistic"]));
    ck.close_rel("chi_square.p_value", name, chi.p_value, num(&c["chi_pvalue"]));
    ck.exact("chi_square.dof", name, chi.dof as u64, c["chi_dof"].as_u64().unwrap());
}

#[test]
fn agrees_with_scipy() {
    let fx = fixtures();
    let mut ck = Checker::default();
    let cases = fx["cases"].as_array().unwrap();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        match c["kind"].as_str().unwrap() {
            "continuous" => {
                let (mut a, mut b) = (decode_array(&c["a"]), decode_array(&c["b"]));
                sort_f64(&mut a);
                sort_f64(&mut b);
                let ks = ks_2samp(&a, &b).unwrap();
                ck.close("ks.statistic", name, ks.statistic, num(&c["ks_statistic"]));
                ck.close("ks.p_value", name, ks.p_value, num(&c["ks_pvalue"]));
                let mode = match ks.method {
                    KsMethod::Exact => "exact",
                    KsMethod::Asymptotic => "asymp",
                    KsMethod::ExactFellBack => "exact->asymp",
                };
                ck.exact("ks.method", name, mode, c["ks_mode"].as_str().unwrap());
                let wd = wasserstein(&a, &b).unwrap();
                ck.close("wasserstein", name, wd, num(&c["wasserstein"]));
                ck.exact("ks_and_wasserstein == separate", name, ks_and_wasserstein(&a, &b).unwrap(), (ks, wd));
                let edges = quantile_edges(&a, DEFAULT_BINS).unwrap();
                let want: Vec<f64> = c["edges"].as_array().unwrap().iter().map(num).collect();
                ck.exact("quantile_edges (bit-exact)", name, edges.clone(), want);
                let (hr, hc) = (histogram(&a, &edges).unwrap(), histogram(&b, &edges).unwrap());
                ck.exact("histogram.ref", name, hr.clone(), counts(&c["ref_counts"]));
                ck.exact("histogram.cur", name, hc.clone(), counts(&c["cur_counts"]));
                check_counts_stats(&mut ck, name, c, &hr, &hc);
            }
            "categorical" => {
                let (hr, hc) = (counts(&c["ref_counts"]), counts(&c["cur_counts"]));
                check_counts_stats(&mut ck, name, c, &hr, &hc);
            }
            k => panic!("unknown kind {k}"),
        }
    }
    let grids = &fx["grids"];
    for row in grids["kstwo_sf"].as_array().unwrap() {
        let (n, x) = (row[0].as_u64().unwrap(), row[1].as_f64().unwrap());
        ck.close("grid kstwo.sf", &format!("kstwo.sf({x}, {n})"), kstwo_sf(n, x), num(&row[2]));
    }
    for row in grids["smirnov_sf"].as_array().unwrap() {
        let (n, x) = (row[0].as_u64().unwrap(), row[1].as_f64().unwrap());
        ck.close("grid smirnov", &format!("smirnov({n}, {x})"), smirnov_sf(n, x), num(&row[2]));
    }
    for row in grids["chi2_sf"].as_array().unwrap() {
        let (df, x) = (row[0].as_f64().unwrap(), row[1].as_f64().unwrap());
        ck.close("grid chi2.sf", &format!("chi2.sf({x}, {df})"), chi2_sf(df, x), num(&row[2]));
    }

    println!("{} cases (scipy {}):", cases.len(), fx["scipy_version"]);
    for (stat, n) in &ck.checked {
        match ck.max_err.get(stat) {
            Some((e, case)) => println!(
                "  {stat:<31} {n:>4} checked, max |err| {e:.2e}, max rel {:.1e} (worst: {case})",
                ck.max_rel.get(stat).copied().unwrap_or(0.0)
            ),
            None => println!("  {stat:<31} {n:>4} checked, exact"),
        }
    }
    assert!(ck.failures.is_empty(), "{} failures:\n{}", ck.failures.len(), ck.failures.join("\n"));
}
