//! Seeded clustered unit vectors and allow-lists, for the vector index's tests and
//! benches and `steerfeed bench ann --synthetic`. The same `(n, dim, seed)` always gives
//! the same vectors.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// `n` unit vectors of `dim` dimensions around `clusters` random centres, row-major.
/// `spread` is the noise added to each centre before normalising (0.5 gives clusters
/// that overlap like real caption embeddings do).
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let clusters = clusters.max(1);
    let mut centres = vec![0f32; clusters * dim];
    centres.iter_mut().for_each(|x| *x = normal(&mut rng));
    centres.chunks_exact_mut(dim).for_each(normalize);
    let mut out = vec![0f32; n * dim];
    for row in out.chunks_exact_mut(dim) {
        let c = rng.random_range(0..clusters);
        let centre = &centres[c * dim..(c + 1) * dim];
        for (x, m) in row.iter_mut().zip(centre) {
            *x = m + spread * normal(&mut rng) / (dim as f32).sqrt();
        }
        normalize(row);
    }
    out
}

/// The default clustered set: `sqrt(n)` clusters (at least 8), spread 0.5; queries
/// come from the same distribution under `seed + 1`.
pub fn dataset(n: usize, queries: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let clusters = ((n as f64).sqrt() as usize).max(8);
    let base = clustered(n, dim, clusters, 0.5, seed);
    // Queries share the centres (same seed stream for centres) but draw fresh points.
    let mut both = clustered(n + queries, dim, clusters, 0.5, seed);
    let q = both.split_off(n * dim);
    debug_assert_eq!(&both[..], &base[..]);
    (base, q)
}

/// About `share` of the ids `0..n`, evenly spread (deterministic): an allow-list filter
/// for benchmarks.
pub fn allow_list(n: usize, share: f32) -> Vec<u32> {
    let step = (1.0 / f64::from(share.clamp(1e-6, 1.0))).max(1.0);
    let mut ids = Vec::new();
    let mut x = 0.0f64;
    while (x as usize) < n {
        ids.push(x as u32);
        x += step;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_vectors_and_unit_norm() {
        let a = clustered(50, 16, 4, 0.5, 7);
        let b = clustered(50, 16, 4, 0.5, 7);
        assert_eq!(a, b);
        assert_ne!(a, clustered(50, 16, 4, 0.5, 8));
        for row in a.chunks_exact(16) {
            let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-4);
        }
        let (base, q) = dataset(100, 10, 16, 3);
        assert_eq!(base.len(), 100 * 16);
        assert_eq!(q.len(), 10 * 16);
    }
}
