//! Int8 scalar quantization: what a graph walk reads when the index holds its vectors
//! as codes ([`crate::params::VectorStorage::Int8`]).
//!
//! A vector `x` becomes a scale `s = max|x_i| / 127` and codes `c_i = round(x_i / s)`
//! in `-127..=127`, so `x ≈ s·c`, each coordinate within `s / 2`. The inner product of
//! two vectors is then `s_a·s_b·Σ c_a c_b`, an integer sum a CPU computes 32 codes at a
//! time. A scale per vector (rather than qdrant's one per collection) needs no statistics
//! of the collection, so a vector added later is quantized like the first.
//!
//! For unit vectors of 384 dimensions the approximate inner product is within about
//! 0.003 of the exact one: enough to steer a walk, not to rank its result, so searches
//! rescore the best candidates with the exact vectors.

use std::sync::LazyLock;

/// Largest code magnitude (-128 is never used, so `|c|` fits a `u8` and a product of
/// two pairs fits an `i16`).
const MAX_CODE: f32 = 127.0;

/// Writes the codes of `v` into `codes` (same length) and returns the scale. A zero
/// vector has scale 0 and zero codes.
pub(crate) fn quantize(v: &[f32], codes: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.fill(0);
        return 0.0;
    }
    let inv = MAX_CODE / max;
    for (c, &x) in codes.iter_mut().zip(v) {
        *c = (x * inv).round().clamp(-MAX_CODE, MAX_CODE) as i8;
    }
    max / MAX_CODE
}

/// A query quantized once for a whole search.
pub(crate) struct QueryCodes {
    scale: f32,
    codes: Vec<i8>,
}

impl QueryCodes {
    pub(crate) fn new(query: &[f32]) -> Self {
        let mut codes = vec![0; query.len()];
        let scale = quantize(query, &mut codes);
        Self { scale, codes }
    }

    /// The approximate distance `1 - dot` (clamped at zero, like [`crate::distance`])
    /// to a vector held as `scale` and `codes`.
    #[inline]
    pub(crate) fn distance(&self, scale: f32, codes: &[i8]) -> f32 {
        code_distance((self.scale, &self.codes), (scale, codes))
    }
}

/// The approximate distance `1 - dot` (clamped at zero) between two vectors held as
/// scale and codes.
#[inline]
pub(crate) fn code_distance((sa, a): (f32, &[i8]), (sb, b): (f32, &[i8])) -> f32 {
    (1.0 - sa * sb * dot_i8(a, b) as f32).max(0.0)
}

type DotI8 = fn(&[i8], &[i8]) -> i32;

static DOT_I8: LazyLock<DotI8> = LazyLock::new(|| {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return dot_i8_avx2;
        }
    }
    dot_i8_portable
});

/// The integer inner product of two code slices (the shorter length wins), with an
/// AVX2 kernel picked at run time where the CPU has it. Codes must lie in
/// `-127..=127`, as [`quantize`] writes them.
#[inline]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    (*DOT_I8)(a, b)
}

/// The portable kernel (and the tests' reference).
pub(crate) fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

#[cfg(target_arch = "x86_64")]
fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: only selected when the CPU reports avx2.
    unsafe { dot_i8_avx2_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2_impl(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads 32 bytes at offset i with i + 32 <= n, inside both
    // slices; unaligned loads throughout.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        while i + 32 <= n {
            let va = _mm256_loadu_si256(pa.add(i).cast());
            let vb = _mm256_loadu_si256(pb.add(i).cast());
            // |a| as unsigned times b with a's sign: maddubs multiplies u8 by i8 and
            // adds pairs into i16 (at most 2·127·127, so it never saturates).
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
            i += 32;
        }
        let hi = _mm256_extracti128_si256(acc, 1);
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(s);
        while i < n {
            sum += i32::from(*pa.add(i)) * i32::from(*pb.add(i));
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / norm).collect()
    }

    proptest! {
        #[test]
        fn the_kernel_matches_the_plain_sum_at_every_length(
            a in proptest::collection::vec(-127i8..=127, 0..300),
            b in proptest::collection::vec(-127i8..=127, 0..300),
        ) {
            let expected: i64 = a.iter().zip(&b).map(|(&x, &y)| i64::from(x) * i64::from(y)).sum();
            prop_assert_eq!(i64::from(dot_i8(&a, &b)), expected);
            prop_assert_eq!(i64::from(dot_i8_portable(&a, &b)), expected);
        }

        #[test]
        fn codes_reconstruct_every_coordinate_within_half_a_step(
            v in proptest::collection::vec(-1.0f32..1.0, 1..400),
        ) {
            let mut codes = vec![0i8; v.len()];
            let s = quantize(&v, &mut codes);
            for (&x, &c) in v.iter().zip(&codes) {
                prop_assert!((-127..=127).contains(&c));
                prop_assert!((x - s * f32::from(c)).abs() <= s * 0.5 + 1e-6);
            }
        }

        #[test]
        fn the_approximate_inner_product_of_unit_vectors_is_close(
            a in proptest::collection::vec(-1.0f32..1.0, 384),
            b in proptest::collection::vec(-1.0f32..1.0, 384),
        ) {
            let (a, b) = (unit(&a), unit(&b));
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let q = QueryCodes::new(&a);
            let mut codes = vec![0i8; b.len()];
            let s = quantize(&b, &mut codes);
            let approx = 1.0 - q.distance(s, &codes);
            prop_assert!((approx - exact).abs() < 0.01, "exact {} approx {}", exact, approx);
        }
    }

    proptest! {
        #[test]
        fn the_distance_between_two_coded_vectors_is_close_to_the_exact_one(
            a in proptest::collection::vec(-1.0f32..1.0, 384),
            b in proptest::collection::vec(-1.0f32..1.0, 384),
        ) {
            let (a, b) = (unit(&a), unit(&b));
            let exact = (1.0 - a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()).max(0.0);
            let (mut ca, mut cb) = (vec![0i8; 384], vec![0i8; 384]);
            let (sa, sb) = (quantize(&a, &mut ca), quantize(&b, &mut cb));
            let d = code_distance((sa, &ca), (sb, &cb));
            prop_assert_eq!(d, code_distance((sb, &cb), (sa, &ca)));
            prop_assert_eq!(d, QueryCodes::new(&a).distance(sb, &cb));
            prop_assert!((d - exact).abs() < 0.01, "exact {} coded {}", exact, d);
        }
    }

    #[test]
    fn a_zero_vector_has_zero_codes() {
        let mut codes = vec![5i8; 8];
        assert_eq!(quantize(&[0.0; 8], &mut codes), 0.0);
        assert_eq!(codes, vec![0; 8]);
    }
}
