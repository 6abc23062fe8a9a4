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
    let mut out = Vec::with_capacity(n * dim);
    ClusteredRows::new(dim, clusters, spread, seed)
        .take(n)
        .for_each(|row| out.extend_from_slice(&row));
    out
}

/// The rows of [`clustered`] one at a time, without end: the first `n` are exactly
/// `clustered(n, ..)`'s, so a set too large to hold can be written as it is drawn.
#[derive(Debug)]
pub struct ClusteredRows {
    rng: StdRng,
    centres: Vec<f32>,
    dim: usize,
    spread: f32,
}

impl ClusteredRows {
    /// Draws the centres; rows follow from the same seeded stream.
    pub fn new(dim: usize, clusters: usize, spread: f32, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let clusters = clusters.max(1);
        let mut centres = vec![0f32; clusters * dim];
        centres.iter_mut().for_each(|x| *x = normal(&mut rng));
        if dim > 0 {
            centres.chunks_exact_mut(dim).for_each(normalize);
        }
        Self {
            rng,
            centres,
            dim,
            spread,
        }
    }
}

impl Iterator for ClusteredRows {
    type Item = Vec<f32>;

    fn next(&mut self) -> Option<Vec<f32>> {
        let dim = self.dim;
        let clusters = self.centres.len() / dim.max(1);
        let c = self.rng.random_range(0..clusters.max(1));
        let centre = &self.centres[c * dim..(c + 1) * dim];
        let mut row: Vec<f32> = centre
            .iter()
            .map(|m| m + self.spread * normal(&mut self.rng) / (dim as f32).sqrt())
            .collect();
        normalize(&mut row);
        Some(row)
    }
}

/// The default clustered set: `sqrt(n)` clusters (at least 8), spread 0.5; queries
/// come from the same distribution (the rows after the base's in one stream).
pub fn dataset(n: usize, queries: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rows = dataset_rows(n, dim, seed);
    let mut take = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        rows.by_ref()
            .take(count)
            .for_each(|row| out.extend_from_slice(&row));
        out
    };
    let base = take(n);
    (base, take(queries))
}

/// The rows of [`dataset`]`(n, ..)` one at a time: the `n` base rows, then its queries.
pub fn dataset_rows(n: usize, dim: usize, seed: u64) -> ClusteredRows {
    let clusters = ((n as f64).sqrt() as usize).max(8);
    ClusteredRows::new(dim, clusters, 0.5, seed)
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

    /// The whole set drawn at once, as the generator first did: the files written from
    /// the streamed rows hold the same vectors.
    fn drawn_at_once(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut centres = vec![0f32; clusters * dim];
        centres.iter_mut().for_each(|x| *x = normal(&mut rng));
        centres.chunks_exact_mut(dim).for_each(normalize);
        let mut out = vec![0f32; n * dim];
        for row in out.chunks_exact_mut(dim) {
            let c = rng.random_range(0..clusters);
            for (x, m) in row.iter_mut().zip(&centres[c * dim..(c + 1) * dim]) {
                *x = m + spread * normal(&mut rng) / (dim as f32).sqrt();
            }
            normalize(row);
        }
        out
    }

    /// Values of `synthetic-200000-384-42` as the first generator wrote them to
    /// base.fvecs: sets written before keep matching what is drawn now (whatever the
    /// helpers or the random crate become).
    #[test]
    fn the_200k_set_begins_with_the_values_first_written() {
        let rows: Vec<Vec<f32>> = dataset_rows(200_000, 384, 42).take(2).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&rows[0][..3]), [3179244124, 1024581656, 1005478694]);
        assert_eq!(bits(&rows[1][381..]), [3172150154, 3169742767, 1012416271]);
    }

    #[test]
    fn streamed_rows_are_the_rows_drawn_at_once() {
        assert_eq!(
            clustered(300, 12, 5, 0.5, 9),
            drawn_at_once(300, 12, 5, 0.5, 9)
        );
        // The base, then the queries, from one stream of sqrt(n) clusters.
        let (base, queries) = dataset(400, 30, 8, 4);
        let all = drawn_at_once(430, 8, 20, 0.5, 4);
        assert_eq!(base, all[..400 * 8]);
        assert_eq!(queries, all[400 * 8..]);
        let streamed: Vec<f32> = dataset_rows(400, 8, 4).take(430).flatten().collect();
        assert_eq!(streamed, all);
    }
}
