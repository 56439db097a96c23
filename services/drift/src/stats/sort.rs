//! Sorting of f64 columns for the sorted-input statistics.
//!
//! [`sort_f64`] is an LSD radix sort on the order-preserving bit pattern of
//! the floats (the same total order as `f64::total_cmp`: -0.0 < +0.0; NaN,
//! which callers exclude, would land at the ends), 8-bit digits, passes in
//! which all keys share a digit skipped. For 1M random normals it beats
//! `sort_unstable_by(f64::total_cmp)` (see `examples/speed.rs`); 11- and
//! 16-bit digits were measured slower. Small inputs use the comparison sort.

/// Below this length the comparison sort is faster than radix passes.
const RADIX_MIN_LEN: usize = 512;
const BITS: u32 = 8;
const BUCKETS: usize = 1 << BITS;
const PASSES: usize = 64usize.div_ceil(BITS as usize);

/// Order-preserving map from f64 to u64 (flip all bits of negatives, the sign bit of positives).
#[inline]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

#[inline]
fn unkey(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Sort `values` ascending in the `f64::total_cmp` order (radix sort for
/// large inputs). Allocates two `u64` buffers of `values.len()`.
pub fn sort_f64(values: &mut [f64]) {
    let n = values.len();
    if n < RADIX_MIN_LEN {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|&x| key(x)).collect();
    let mut hist = vec![[0usize; BUCKETS]; PASSES];
    for &k in &keys {
        for (p, h) in hist.iter_mut().enumerate() {
            h[((k >> (p as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut buf = vec![0u64; n];
    for (p, h) in hist.iter_mut().enumerate() {
        // a pass where every key has the same digit is a no-op
        if h.contains(&n) {
            continue;
        }
        let mut sum = 0usize;
        for c in h.iter_mut() {
            let t = *c;
            *c = sum;
            sum += t;
        }
        let shift = p as u32 * BITS;
        for &k in &keys {
            let d = ((k >> shift) as usize) & (BUCKETS - 1);
            buf[h[d]] = k;
            h[d] += 1;
        }
        std::mem::swap(&mut keys, &mut buf);
    }
    for (v, &k) in values.iter_mut().zip(&keys) {
        *v = unkey(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_order() {
        let xs = [f64::NEG_INFINITY, -1e300, -1.0, -1e-310, -0.0, 0.0, 1e-310, 1.0, 1e300, f64::INFINITY];
        for w in xs.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{} {}", w[0], w[1]);
        }
        for &x in &xs {
            assert_eq!(unkey(key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn radix_matches_comparison_sort() {
        let mut s: u64 = 12345;
        let mut v: Vec<f64> = (0..5000)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                match i % 7 {
                    0 => (u * 10.0).floor() - 5.0, // ties, including 0.0
                    1 => -u * 1e-300,
                    _ => (u - 0.5) * 1e6,
                }
            })
            .collect();
        v.push(-0.0);
        v.push(f64::INFINITY);
        let mut expected = v.clone();
        expected.sort_unstable_by(f64::total_cmp);
        sort_f64(&mut v);
        assert!(v.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
