//! Inner product, with an AVX2+FMA kernel picked at run time where the CPU has it.
//!
//! Vectors are L2-normalised, so the inner product is the cosine similarity and the
//! distance used for graph search is `1 - dot` (clamped at 0 so near-duplicates, whose
//! dot product rounds slightly above 1, never give a negative distance — the failure
//! that makes `hnsw_rs`'s scalar `DistDot` panic).

use std::sync::LazyLock;

type DotFn = fn(&[f32], &[f32]) -> f32;

static DOT: LazyLock<DotFn> = LazyLock::new(select);

fn select() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return dot_avx2_fma;
        }
    }
    dot_scalar
}

/// Name of the kernel in use, for benchmark reports.
pub fn kernel_name() -> &'static str {
    if *DOT as usize == dot_scalar as DotFn as usize {
        "scalar"
    } else {
        "avx2+fma"
    }
}

/// Inner product of two slices of equal length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (*DOT)(a, b)
}

/// Portable inner product with 8 independent accumulators (auto-vectorises to SSE).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] += a[i * 8 + j] * b[i * 8 + j];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only selected when the CPU reports avx2 and fma.
    unsafe { dot_avx2_fma_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma_impl(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let pa = a.as_ptr();
    let pb = b.as_ptr();
    let mut i = 0;
    // SAFETY: every load reads 8 floats at offset i + 8*j < n, inside both slices;
    // unaligned loads are used throughout.
    unsafe {
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let hi = _mm256_extractf128_ps(s, 1);
        let lo = _mm256_castps256_ps128(s);
        let q = _mm_add_ps(hi, lo);
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
        let mut sum = _mm_cvtss_f32(q);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_scalar(a, b)
}

/// Hints the CPU to fetch the cache lines of a vector that is about to be read.
#[inline(always)]
pub(crate) fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr().cast::<i8>();
        // Two lines cover the first 32 floats; the hardware prefetcher follows the rest.
        // SAFETY: prefetch never faults and reads nothing architecturally.
        unsafe {
            _mm_prefetch(p, _MM_HINT_T0);
            _mm_prefetch(p.wrapping_add(64), _MM_HINT_T0);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// `1 - dot`, clamped at zero: the distance between unit vectors used by graph search.
#[inline]
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - dot(a, b)).max(0.0)
}

/// The distance `hnsw_rs` builds graphs with: ours, so build and search agree and
/// near-duplicates are safe.
#[derive(Debug, Default, Clone, Copy)]
pub struct InnerProduct;

impl hnsw_rs::prelude::Distance<f32> for InnerProduct {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        distance(va, vb)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_kernel_agrees_with_a_plain_sum(
            pairs in proptest::collection::vec((-1.0f32..1.0, -1.0f32..1.0), 0..200)
        ) {
            let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
            let b: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            let reference: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            prop_assert!((f64::from(dot(&a, &b)) - reference).abs() < 1e-3);
            prop_assert!((f64::from(dot_scalar(&a, &b)) - reference).abs() < 1e-3);
        }
    }

    #[test]
    fn near_duplicates_have_zero_distance_not_negative() {
        let v = vec![0.1f32; 100];
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let u: Vec<f32> = v.iter().map(|x| x / norm * 1.000_001).collect();
        assert!(distance(&u, &u) >= 0.0);
    }
}
