//! The ANN benchmark behind `steerfeed bench ann`: build an index over a base set, run
//! the queries one per call at several `ef`, and report recall@k against exact ground
//! truth, queries per second, build time and index size — one JSON object per `ef`
//! (and per allow-list share, for filtered runs).

use std::time::Instant;

use rayon::prelude::*;
use steerfeed::Embedding;
use steerfeed::ann::{
    Filter, FlatIndex, HnswBuildParams, HnswIndex, HnswSearchParams, IdSet, Result, VectorIndex,
    VectorStorage,
};
use steerfeed::vector::dot_kernel;
use steerfeed::world::vectors::allow_list;

/// What to run.
#[derive(Debug, Clone)]
pub struct AnnBench {
    /// Base vectors, row-major.
    pub base: Vec<f32>,
    /// Query vectors, row-major.
    pub queries: Vec<f32>,
    /// Dimension.
    pub dim: usize,
    /// Ground truth (`gt_k` ids per query), when given; computed exactly otherwise.
    pub ground_truth: Option<(Vec<i32>, usize)>,
    /// Neighbours per query.
    pub k: usize,
    /// Build parameters.
    pub build: HnswBuildParams,
    /// The `ef` values to try.
    pub efs: Vec<usize>,
    /// Threads running queries (each thread one query per call).
    pub threads: usize,
    /// Allow-list shares to test as filters (e.g. 0.01, 0.1, 0.5); empty for none.
    pub allow: Vec<f32>,
    /// Topics to tag the base with: vector `i` carries topic `i % topics`, and query `j`
    /// is also searched within topic `j % topics` ([`HnswIndex::search_tagged`]). 0 for
    /// none.
    pub topics: u32,
    /// Load the index from this file when it holds one of the right dimension and size
    /// (`build_s` is then the load time), else build it (timed), save it there and
    /// measure the index read back from it.
    pub index_cache: Option<std::path::PathBuf>,
}

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnnBenchRow {
    /// The `ef` searched with.
    pub ef: usize,
    /// Share of ids an allow-list filter or a topic let through (1.0 unfiltered).
    pub allow: f32,
    /// For a search within one topic: the number of topics (0 otherwise).
    pub topics: u32,
    /// Mean recall@k against exact search.
    pub recall_at_k: f64,
    /// Queries per second over all query threads.
    pub qps: f64,
    /// Mean latency of one query in microseconds.
    pub mean_us: f64,
    /// Mean CPU time of one query in microseconds (the process's CPU time over the timed
    /// queries): unlike `mean_us`, it does not grow when other work shares the cores.
    pub cpu_us: f64,
    /// Seconds to build the index.
    pub build_s: f64,
    /// Bytes held by vectors and links in memory.
    pub index_bytes: usize,
    /// Bytes of exact vectors memory-mapped from the index file (with `--index-cache`
    /// and int8 vectors).
    pub mapped_bytes: usize,
    /// Base size.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// k.
    pub k: usize,
    /// Query threads.
    pub threads: usize,
    /// Inner-product kernel in use.
    pub kernel: &'static str,
    /// How the graph held vectors for its walk.
    pub vectors: VectorStorage,
}

/// Exact top-`k` ids per query under an optional allow-list, in parallel (the
/// [`FlatIndex`] scan).
pub fn exact_ground_truth(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    allow: Option<&IdSet>,
) -> Result<Vec<Vec<u32>>> {
    let flat = FlatIndex::new(dim);
    for (i, row) in base.chunks_exact(dim).enumerate() {
        flat.insert(i as u32, &Embedding::new("base", row, dim)?)?;
    }
    let filter = allow.map_or(Filter::All, Filter::Allow);
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            Ok(flat
                .search(q, k, filter)?
                .into_iter()
                .map(|h| h.id)
                .collect())
        })
        .collect()
}

/// Exact top-`k` ids per query `j` among the base vectors of topic `j % topics` (vector
/// `i` is of topic `i % topics`), by brute force in parallel.
pub fn topic_ground_truth(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    topics: u32,
) -> Result<Vec<Vec<u32>>> {
    Ok(queries
        .par_chunks_exact(dim)
        .enumerate()
        .map(|(j, q)| {
            let topic = j as u32 % topics;
            let mut scored: Vec<(f32, u32)> = base
                .chunks_exact(dim)
                .enumerate()
                .filter(|(i, _)| *i as u32 % topics == topic)
                .map(|(i, row)| (steerfeed::vector::dot(q, row), i as u32))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(k).map(|(_, i)| i).collect()
        })
        .collect())
}

/// Runs the benchmark; rows come in order of allow share, then `ef`; searches within
/// one topic come last.
pub fn run(b: &AnnBench) -> Result<Vec<AnnBenchRow>> {
    let dim = b.dim;
    let n = b.base.len() / dim;
    let nq = b.queries.len() / dim;
    let topic_of = |i: usize| (b.topics > 0).then(|| i as u32 % b.topics);
    let items = b
        .base
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, row)| {
            let tags = topic_of(i).into_iter().collect();
            Ok((i as u32, Embedding::new("base", row, dim)?, tags))
        })
        .collect::<Result<Vec<_>>>()?;
    let queries = b
        .queries
        .chunks_exact(dim)
        .map(|q| Ok(Embedding::new("query", q, dim)?.as_slice().to_vec()))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let cached = b
        .index_cache
        .as_deref()
        .and_then(|p| HnswIndex::load(p, dim, b.build, HnswSearchParams::default()).ok())
        .filter(|idx| {
            // The same data and the same topics (the first ids' tags stand for all).
            idx.len() == n
                && (0..n.min(64))
                    .all(|i| idx.tags(i as u32) == topic_of(i).into_iter().collect::<Vec<_>>())
        });
    let (index, build_s) = match cached {
        Some(idx) => (idx, started.elapsed().as_secs_f64()),
        None => {
            let idx = HnswIndex::build_tagged(dim, items, b.build, HnswSearchParams::default())?;
            let build_s = started.elapsed().as_secs_f64();
            match &b.index_cache {
                Some(p) => {
                    // Saved and read back, the index is measured as an engine that opens
                    // its file serves it (an int8 graph then maps its exact vectors).
                    idx.save(p)?;
                    drop(idx);
                    let idx = HnswIndex::load(p, dim, b.build, HnswSearchParams::default())?;
                    (idx, build_s)
                }
                None => (idx, build_s),
            }
        }
    };
    let stats = index.stats();
    let (index_bytes, mapped_bytes) = (stats.heap_bytes, stats.mapped_bytes);
    tracing::info!(
        n,
        dim,
        build_s,
        mean_degree = stats.mean_degree,
        "index ready"
    );

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(b.threads.max(1))
        .build()
        .map_err(|e| steerfeed::Error::internal("bench", e))?;
    // Allow-list shares, then (`None`) the searches within one topic.
    let mut shares: Vec<Option<f32>> = vec![Some(1.0)];
    shares.extend(b.allow.iter().copied().filter(|s| *s < 1.0).map(Some));
    if b.topics > 0 {
        shares.push(None);
    }
    let mut rows = Vec::new();
    for share in shares {
        let allow = share
            .filter(|s| *s < 1.0)
            .map(|s| allow_list(n, s).into_iter().collect::<IdSet>());
        let truth: Vec<Vec<u32>> = match (&b.ground_truth, &allow, share) {
            (Some((gt, gt_k)), None, Some(_)) => gt
                .chunks_exact(*gt_k)
                .map(|row| row.iter().take(b.k).map(|&x| x as u32).collect())
                .collect(),
            (_, _, None) => topic_ground_truth(&b.base, &b.queries, dim, b.k, b.topics)?,
            _ => exact_ground_truth(&b.base, &b.queries, dim, b.k, allow.as_ref())?,
        };
        let filter = allow.as_ref().map_or(Filter::All, Filter::Allow);
        let search = |j: usize, q: &[f32], params: &HnswSearchParams| match share {
            Some(_) => index.search_with(q, b.k, filter, params),
            None => index.search_tagged(q, b.k, &[j as u32 % b.topics], filter, params),
        };
        // One untimed pass warms caches and page tables, as a freshly built index is.
        for (j, q) in queries.iter().enumerate().take(200) {
            search(j, q, &HnswSearchParams::default())?;
        }
        for &ef in &b.efs {
            let params = HnswSearchParams {
                ef,
                ..HnswSearchParams::default()
            };
            let started = Instant::now();
            let cpu_started = process_cpu_seconds();
            let results: Vec<Result<Vec<u32>>> = pool.install(|| {
                queries
                    .par_iter()
                    .enumerate()
                    .with_max_len(1)
                    .map(|(j, q)| Ok(search(j, q, &params)?.iter().map(|h| h.id).collect()))
                    .collect()
            });
            let seconds = started.elapsed().as_secs_f64();
            let cpu_seconds = process_cpu_seconds() - cpu_started;
            let mut recall = 0.0;
            for (got, want) in results.into_iter().zip(&truth) {
                let got = got?;
                let hits = got.iter().filter(|id| want.contains(id)).count();
                recall += hits as f64 / want.len().clamp(1, b.k) as f64;
            }
            rows.push(AnnBenchRow {
                ef,
                allow: share.unwrap_or(1.0 / b.topics as f32),
                topics: if share.is_some() { 0 } else { b.topics },
                recall_at_k: recall / nq.max(1) as f64,
                qps: nq as f64 / seconds,
                mean_us: seconds * 1e6 * b.threads.max(1) as f64 / nq.max(1) as f64,
                cpu_us: cpu_seconds * 1e6 / nq.max(1) as f64,
                build_s,
                index_bytes,
                mapped_bytes,
                n,
                dim,
                k: b.k,
                threads: b.threads.max(1),
                kernel: dot_kernel(),
                vectors: b.build.vectors,
            });
        }
    }
    let _ = index.len();
    Ok(rows)
}

/// CPU time the process has used so far, over all its threads, in seconds (0 where the
/// clock is unavailable).
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use steerfeed::world::vectors::dataset;

    use super::*;

    #[test]
    fn topic_rows_search_each_querys_topic_with_the_recall_of_exact_search() {
        let (dim, topics) = (16, 7);
        let (base, queries) = dataset(3_000, 40, dim, 8);
        // The topic truth agrees with the flat index under the topic's allow-list.
        let truth = topic_ground_truth(&base, &queries, dim, 10, topics).unwrap();
        for (j, q) in queries.chunks_exact(dim).enumerate().take(5) {
            let members: IdSet = (0..3_000u32)
                .filter(|i| i % topics == j as u32 % topics)
                .collect();
            let flat = exact_ground_truth(&base, q, dim, 10, Some(&members)).unwrap();
            assert_eq!(truth[j], flat[0]);
        }
        let bench = AnnBench {
            base,
            queries,
            dim,
            ground_truth: None,
            k: 10,
            build: HnswBuildParams {
                m: 8,
                ef_construction: 64,
                threads: 2,
                partition_min: 100,
                ..HnswBuildParams::default()
            },
            efs: vec![64],
            threads: 1,
            allow: vec![0.1],
            topics,
            index_cache: None,
        };
        let rows = run(&bench).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].allow, rows[0].topics), (1.0, 0));
        assert_eq!((rows[1].allow, rows[1].topics), (0.1, 0));
        let topic = &rows[2];
        assert_eq!(topic.topics, topics);
        assert!((topic.allow - 1.0 / 7.0).abs() < 1e-6);
        assert!(topic.recall_at_k >= 0.95, "{topic:?}");
    }
}
