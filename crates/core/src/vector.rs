//! Embeddings: finite, non-zero, L2-normalised vectors of a fixed dimension.

use std::sync::{Arc, LazyLock};

use crate::error::{Error, Result};

/// A unit-length embedding. Construction checks the dimension, rejects NaN, infinities
/// and the zero vector, and normalises, so inner product equals cosine similarity
/// everywhere downstream.
#[derive(Clone, PartialEq)]
pub struct Embedding(Arc<[f32]>);

impl Embedding {
    /// Validates `values` for a `dim`-dimensional space and normalises them.
    pub fn new(field: &'static str, values: &[f32], dim: usize) -> Result<Self> {
        if values.len() != dim {
            return Err(Error::WrongDimension {
                field,
                expected: dim,
                got: values.len(),
            });
        }
        Self::normalized(field, values)
    }

    /// Validates and normalises `values` whatever their dimension (for callers that check
    /// the dimension themselves, such as deserialisation before the engine's dimension is known).
    pub fn normalized(field: &'static str, values: &[f32]) -> Result<Self> {
        if values.is_empty() {
            return Err(Error::Empty { field });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { field, index });
        }
        // A sub-normal component (0 < |x| < f32::MIN_POSITIVE) is below f32's normal
        // range and beneath the precision of any normal component beside it: it reads as
        // 0. A vector with no normal component has no direction to read.
        if !values.iter().any(|v| v.is_normal()) {
            return Err(match values.iter().position(|v| v.is_subnormal()) {
                None => Error::ZeroVector { field },
                Some(index) => Error::invalid(
                    field,
                    format!(
                        "no component is a normal number (component {index} is sub-normal, \
                         below {:e}): the vector has no direction",
                        f32::MIN_POSITIVE
                    ),
                ),
            });
        }
        let normal = |v: f32| if v.is_normal() { f64::from(v) } else { 0.0 };
        // All in f64: the squares of f32 values neither overflow nor underflow there, and
        // each quotient is at most 1, so every component is finite once cast back. (The
        // reciprocal of a tiny norm need not be: 1 / 1e-39 is past f32's range.)
        let norm = values
            .iter()
            .map(|&v| normal(v) * normal(v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(Error::ZeroVector { field });
        }
        // The unit vector holds no sub-normal either, so that it reads back as itself.
        let unit: Arc<[f32]> = values
            .iter()
            .map(|&v| {
                let x = (normal(v) / norm) as f32;
                if x.is_normal() { x } else { 0.0 }
            })
            .collect();
        debug_assert!(unit.iter().all(|v| v.is_finite()));
        Ok(Self(unit))
    }

    /// The number of dimensions.
    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// The unit vector.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Checks the dimension against the engine's.
    pub fn check_dim(&self, field: &'static str, dim: usize) -> Result<()> {
        if self.dim() == dim {
            Ok(())
        } else {
            Err(Error::WrongDimension {
                field,
                expected: dim,
                got: self.dim(),
            })
        }
    }

    /// Inner product with another embedding (cosine similarity, both being unit vectors).
    pub fn dot(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }
}

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
    dot_portable
}

/// Name of the [`dot`] kernel in use, for benchmark reports.
pub fn dot_kernel() -> &'static str {
    if *DOT as usize == dot_portable as DotFn as usize {
        "scalar"
    } else {
        "avx2+fma"
    }
}

/// Inner product of two slices (the shorter length wins if they differ), with an
/// AVX2+FMA kernel picked at run time where the CPU has it, else [`dot_portable`]:
/// ranking computes thousands of these per request (the objective's interest match, the
/// page's diversity), and the vector index many more.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (*DOT)(a, b)
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
    dot_portable(a, b)
}

/// Portable inner product (the shorter length wins if they differ): eight independent
/// running sums, so the compiler vectorises the loop (a single in-order sum cannot be
/// reordered and stays scalar).
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding(dim={})", self.0.len())
    }
}

impl serde::Serialize for Embedding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Embedding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let values = Vec::<f32>::deserialize(d)?;
        Embedding::normalized("embedding", &values).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn dot_matches_the_plain_sum_at_every_length(
            a in proptest::collection::vec(-1.0f32..1.0, 0..200),
            b in proptest::collection::vec(-1.0f32..1.0, 0..200),
        ) {
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            prop_assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4);
            prop_assert!((f64::from(dot_portable(&a, &b)) - plain).abs() < 1e-4);
        }
    }

    /// Finite f32 values across the whole range: zeros, sub-normals, tiny and huge
    /// normals, both signs.
    fn extreme() -> impl Strategy<Value = f32> {
        prop_oneof![
            Just(0.0f32),
            Just(-0.0f32),
            (1u32..0x0080_0000).prop_map(f32::from_bits), // positive sub-normals
            (1u32..0x0080_0000).prop_map(|b| -f32::from_bits(b)),
            Just(f32::MIN_POSITIVE),
            Just(f32::MAX),
            Just(f32::MIN),
            -1e38f32..1e38,
            -1.0f32..1.0,
            (-45i32..39).prop_map(|e| 10f32.powi(e)),
        ]
    }

    /// The oracle: the unit vector computed all in f64 from the same input, its
    /// sub-normal components read as 0 (below 2^-126 by their bits' exponent field).
    fn unit_f64(values: &[f32]) -> Option<Vec<f64>> {
        let read = |v: f32| {
            if v.to_bits() & 0x7f80_0000 == 0 {
                0.0
            } else {
                f64::from(v)
            }
        };
        let norm = values.iter().map(|&v| read(v).powi(2)).sum::<f64>().sqrt();
        (norm > 0.0).then(|| values.iter().map(|&v| read(v) / norm).collect())
    }

    fn check_unit(values: &[f32]) -> std::result::Result<(), TestCaseError> {
        match (Embedding::normalized("e", values), unit_f64(values)) {
            (Ok(e), Some(want)) => {
                prop_assert!(e.as_slice().iter().all(|v| v.is_finite()));
                let len: f64 = e.as_slice().iter().map(|&v| f64::from(v).powi(2)).sum();
                prop_assert!((len - 1.0).abs() < 1e-5, "squared length {len}");
                for (got, want) in e.as_slice().iter().zip(&want) {
                    prop_assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
                }
                // What JSON carries reads back as the same unit vector.
                let json = serde_json::to_string(&e).unwrap();
                let back: Embedding = serde_json::from_str(&json).unwrap();
                for (a, b) in back.as_slice().iter().zip(e.as_slice()) {
                    prop_assert!((a - b).abs() < 1e-6);
                }
            }
            (Err(Error::ZeroVector { .. }), None) => {
                prop_assert!(values.iter().all(|v| *v == 0.0));
            }
            (Err(Error::Invalid { .. }), None) => {
                prop_assert!(values.iter().any(|v| *v != 0.0));
            }
            (got, want) => prop_assert!(false, "{got:?} for an f64 unit vector {want:?}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_finite_non_zero_vector_normalises_to_a_finite_unit_vector(
            values in proptest::collection::vec(extreme(), 1..64),
        ) {
            check_unit(&values)?;
        }

        #[test]
        fn a_single_non_zero_value_of_any_size_becomes_a_signed_one(
            value in extreme(),
            at in 0usize..384,
        ) {
            let mut values = vec![0.0f32; 384];
            values[at] = value;
            check_unit(&values)?;
            if value.is_normal() {
                let e = Embedding::new("e", &values, 384).unwrap();
                prop_assert_eq!(e.as_slice()[at], value.signum());
            } else {
                prop_assert!(Embedding::new("e", &values, 384).is_err());
            }
        }
    }

    #[test]
    fn sub_normal_values_alone_are_refused_and_beside_a_normal_one_read_as_zero() {
        let mut v = vec![0.0f32; 384];
        v[3] = 1e-39;
        let err = Embedding::new("e", &v, 384).unwrap_err();
        assert_eq!(err.field(), Some("e"));
        assert!(err.to_string().contains("component 3"), "{err}");
        let tiny: Vec<f32> = (0..384).map(|i| f32::from_bits(1 + i)).collect();
        assert!(Embedding::new("e", &tiny, 384).is_err());
        // The smallest normal value is a direction; a sub-normal beside it reads as 0.
        v[0] = f32::MIN_POSITIVE;
        let e = Embedding::new("e", &v, 384).unwrap();
        assert_eq!(e.as_slice()[0], 1.0);
        assert!(e.as_slice()[1..].iter().all(|&x| x == 0.0));
        // A unit vector holds no sub-normal, so its JSON reads back as itself.
        let mut wide = vec![0.0f32; 384];
        wide[0] = 1e30;
        wide[1] = 1e-10;
        let e = Embedding::new("e", &wide, 384).unwrap();
        assert!(e.as_slice().iter().all(|x| *x == 0.0 || x.is_normal()));
        assert_eq!(e.as_slice()[1], 0.0);
        let back: Embedding = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn embeddings_are_normalised() {
        let e = Embedding::new("e", &[3.0, 4.0], 2).unwrap();
        assert!((e.as_slice()[0] - 0.6).abs() < 1e-6);
        assert!((e.dot(&e) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_embeddings_are_rejected_with_the_reason() {
        assert!(matches!(
            Embedding::new("e", &[1.0, 2.0, 3.0], 2),
            Err(Error::WrongDimension {
                expected: 2,
                got: 3,
                ..
            })
        ));
        assert!(matches!(
            Embedding::new("e", &[1.0, f32::NAN], 2),
            Err(Error::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            Embedding::new("e", &[f32::INFINITY, 0.0], 2),
            Err(Error::NonFinite { index: 0, .. })
        ));
        assert!(matches!(
            Embedding::new("e", &[0.0, 0.0], 2),
            Err(Error::ZeroVector { .. })
        ));
        assert!(serde_json::from_str::<Embedding>("[0.0, 0.0]").is_err());
        assert!(serde_json::from_str::<Embedding>("[]").is_err());
    }
}
