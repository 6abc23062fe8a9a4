//! Inner product (core's kernel: AVX2+FMA picked at run time where the CPU has it).
//!
//! Vectors are L2-normalised, so the inner product is the cosine similarity and the
//! distance used for graph search is `1 - dot` (clamped at 0 so near-duplicates, whose
//! dot product rounds slightly above 1, never give a negative distance — the failure
//! that makes `hnsw_rs`'s scalar `DistDot` panic).

pub use steerfeed_core::vector::dot;

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

/// Hints the CPU to fetch every cache line of `v`: for a scan of rows in random order,
/// where the hardware prefetcher has no stream to follow.
#[inline(always)]
pub(crate) fn prefetch_all(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = v.as_ptr().cast::<i8>();
        let bytes = std::mem::size_of_val(v);
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: prefetch never faults and reads nothing architecturally.
            unsafe { _mm_prefetch(start.wrapping_add(offset), _MM_HINT_T0) };
            offset += 64;
        }
        // The last line, when `v` starts inside a line and ends in the next one.
        // SAFETY: as above.
        unsafe { _mm_prefetch(start.wrapping_add(bytes.saturating_sub(1)), _MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// `1 - dot`, clamped at zero: the distance between unit vectors used by graph search.
#[inline]
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - dot(a, b)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_duplicates_have_zero_distance_not_negative() {
        let v = vec![0.1f32; 100];
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let u: Vec<f32> = v.iter().map(|x| x / norm * 1.000_001).collect();
        assert!(distance(&u, &u) >= 0.0);
    }
}
