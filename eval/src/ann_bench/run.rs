//! The ANN benchmark behind `steerfeed bench ann`: build an index over a base set, run
//! the queries one per call at several `ef`, and report recall@k against exact ground
//! truth, queries per second, build time and index size — one JSON object per `ef`
//! (and per allow-list share, for filtered runs).

use std::time::Instant;

use rayon::prelude::*;
use steerfeed::Embedding;
use steerfeed::ann::{
    Filter, HnswBuildParams, HnswIndex, HnswSearchParams, IdSet, Result, VectorIndex, VectorStorage,
};
use steerfeed::vector::{dot, dot_kernel};
use steerfeed::world::vectors::allow_list;

use super::texmex::FvecsFile;

/// What to run.
#[derive(Debug, Clone)]
pub struct AnnBench {
    /// Base vectors.
    pub base: Base,
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
    /// Search parameters besides `ef` (the filter rule's `exact_below`, `max_ef`).
    pub search: HnswSearchParams,
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
    /// Where the build spills its exact vectors ([`HnswIndex::bulk`]); `None` holds them
    /// in memory.
    pub spill: Option<steerfeed::ann::SpillTo>,
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
    /// The process's peak resident memory so far (`VmHWM`: the build's peak, since it
    /// comes first, counting the pages of mapped files it touched), in bytes; 0 where
    /// the kernel does not say.
    pub peak_rss_bytes: u64,
    /// The peak of the process's own memory (`RssAnon`, sampled every 50 ms) while the
    /// index was built (or loaded), without mapped files: what a spilled build saves
    /// shows here.
    pub peak_anon_bytes: u64,
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
    /// The filter rule's scan threshold searched with.
    pub exact_below: f32,
    /// The filter rule's most vectors scanned.
    pub exact_max: usize,
}

/// The base set: in memory, or an `.fvecs` file read row by row as the build takes it
/// and block by block for exact truth, so the build's copy is the only one held.
#[derive(Debug, Clone)]
pub enum Base {
    /// Row-major values.
    Memory(Vec<f32>),
    /// A file read again for each pass.
    File(FvecsFile),
}

impl Base {
    /// Rows in the set.
    pub fn len(&self, dim: usize) -> usize {
        match self {
            Base::Memory(v) => v.len() / dim.max(1),
            Base::File(f) => f.len(),
        }
    }

    /// The rows in order (a file's each checked as it is read).
    fn rows(&self, dim: usize) -> Result<Box<dyn Iterator<Item = Result<Vec<f32>>> + '_>> {
        Ok(match self {
            Base::Memory(v) => Box::new(v.chunks_exact(dim.max(1)).map(|r| Ok(r.to_vec()))),
            Base::File(f) => Box::new(f.rows()?),
        })
    }

    /// Visits the rows, each scaled to unit length, in blocks of up to `rows`:
    /// `(first row's id, row-major values)`.
    fn for_blocks(
        &self,
        dim: usize,
        rows: usize,
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let mut block = Vec::with_capacity(rows * dim);
        let mut first = 0;
        for row in self.rows(dim)? {
            block.extend_from_slice(Embedding::new("base", &row?, dim)?.as_slice());
            if block.len() == rows * dim {
                visit(first, &block);
                first += rows;
                block.clear();
            }
        }
        if !block.is_empty() {
            visit(first, &block);
        }
        Ok(())
    }
}

/// Exact top-`k` ids for each query among the base rows `keep(query, id)` lets through
/// (cosine similarity, ties to the lower id). The base is read once, block by block,
/// each block scored against every query in parallel, so a base larger than memory
/// costs one pass over its file.
pub fn exact_truth(
    base: &Base,
    queries: &[Vec<f32>],
    dim: usize,
    k: usize,
    keep: &(dyn Fn(usize, u32) -> bool + Sync),
) -> Result<Vec<Vec<u32>>> {
    exact_truth_in_blocks(base, queries, dim, k, keep, 4096)
}

fn exact_truth_in_blocks(
    base: &Base,
    queries: &[Vec<f32>],
    dim: usize,
    k: usize,
    keep: &(dyn Fn(usize, u32) -> bool + Sync),
    block_rows: usize,
) -> Result<Vec<Vec<u32>>> {
    let queries = queries
        .iter()
        .map(|q| Embedding::new("query", q, dim))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::new(); queries.len()];
    base.for_blocks(dim, block_rows.max(1), |first, block| {
        best.par_iter_mut()
            .zip(queries.par_iter())
            .enumerate()
            .for_each(|(j, (top, q))| {
                for (r, row) in block.chunks_exact(dim).enumerate() {
                    let id = (first + r) as u32;
                    if keep(j, id) {
                        top.push((dot(q.as_slice(), row), id));
                    }
                }
                if top.len() > 4 * k.max(16) {
                    keep_best(top, k);
                }
            });
    })?;
    Ok(best
        .into_iter()
        .map(|mut top| {
            keep_best(&mut top, k);
            top.into_iter().map(|(_, id)| id).collect()
        })
        .collect())
}

/// Keeps the `k` most similar of `top`, most similar first.
fn keep_best(top: &mut Vec<(f32, u32)>, k: usize) {
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if top.len() > k {
        top.select_nth_unstable_by(k, order);
        top.truncate(k);
    }
    top.sort_by(order);
}

/// Runs the benchmark; rows come in order of allow share, then `ef`; searches within
/// one topic come last.
pub fn run(b: &AnnBench) -> Result<Vec<AnnBenchRow>> {
    let dim = b.dim;
    let n = b.base.len(dim);
    let nq = b.queries.len() / dim;
    let topic_of = |i: usize| (b.topics > 0).then(|| i as u32 % b.topics);
    let queries = b
        .queries
        .chunks_exact(dim)
        .map(|q| Ok(Embedding::new("query", q, dim)?.as_slice().to_vec()))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let anon = AnonPeak::start();
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
            // A damaged file is refused before a build that can take hours, not after.
            if let Base::File(file) = &b.base {
                file.rows()?.try_for_each(|row| row.map(drop))?;
            }
            // The rows go to the builder one at a time: the index holds the only copy
            // (or, spilled, the page cache does).
            let mut bulk =
                HnswIndex::bulk(dim, b.build, HnswSearchParams::default(), b.spill.as_ref())?;
            for (i, row) in b.base.rows(dim)?.enumerate() {
                let e = Embedding::new("base", &row?, dim)?;
                let tags: Vec<u32> = topic_of(i).into_iter().collect();
                bulk.push(i as u32, &e, &tags)?;
            }
            let idx = bulk.finish()?;
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
    let peak_anon_bytes = anon.finish();
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
            (_, _, None) => {
                let topics = b.topics;
                let keep = move |j: usize, id: u32| id % topics == j as u32 % topics;
                exact_truth(&b.base, &queries, dim, b.k, &keep)?
            }
            (_, Some(allow), _) => {
                exact_truth(&b.base, &queries, dim, b.k, &|_, id| allow.contains(id))?
            }
            (None, None, Some(_)) => exact_truth(&b.base, &queries, dim, b.k, &|_, _| true)?,
        };
        let filter = allow.as_ref().map_or(Filter::All, Filter::Allow);
        let search = |j: usize, q: &[f32], params: &HnswSearchParams| match share {
            Some(_) => index.search_with(q, b.k, filter, params),
            None => index.search_tagged(q, b.k, &[j as u32 % b.topics], filter, params),
        };
        // One untimed pass warms caches and page tables, as a freshly built index is.
        for (j, q) in queries.iter().enumerate().take(200) {
            search(j, q, &b.search)?;
        }
        for &ef in &b.efs {
            let params = HnswSearchParams { ef, ..b.search };
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
                peak_rss_bytes: status_bytes("VmHWM:"),
                peak_anon_bytes,
                n,
                dim,
                k: b.k,
                threads: b.threads.max(1),
                kernel: dot_kernel(),
                vectors: b.build.vectors,
                exact_below: b.search.exact_below,
                exact_max: b.search.exact_max,
            });
        }
    }
    let _ = index.len();
    Ok(rows)
}

/// A field of `/proc/self/status` given in kB, in bytes; 0 where there is none.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// The peak of the process's own memory (`RssAnon`: not the pages of mapped files,
/// which the kernel can drop) while it lives, sampled every 50 ms.
struct AnonPeak {
    stop: std::sync::mpsc::Sender<()>,
    sampler: std::thread::JoinHandle<u64>,
}

impl AnonPeak {
    fn start() -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let sampler = std::thread::spawn(move || {
            let mut peak = status_bytes("RssAnon:");
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_millis(50))
            {
                peak = peak.max(status_bytes("RssAnon:"));
            }
            peak.max(status_bytes("RssAnon:"))
        });
        Self { stop, sampler }
    }

    fn finish(self) -> u64 {
        let _ = self.stop.send(());
        self.sampler.join().unwrap_or(0)
    }
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

    use steerfeed::ann::FlatIndex;
    use steerfeed::world::vectors::dataset;

    use super::*;

    /// Exact neighbours by the flat index (the engine's exact scan), an oracle apart
    /// from the blocked pass.
    fn flat_truth(base: &[f32], q: &[f32], dim: usize, k: usize, allow: &IdSet) -> Vec<u32> {
        let flat = FlatIndex::new(dim);
        for (i, row) in base.chunks_exact(dim).enumerate() {
            flat.insert(i as u32, &Embedding::new("base", row, dim).unwrap())
                .unwrap();
        }
        let hits = flat.search(q, k, Filter::Allow(allow)).unwrap();
        hits.into_iter().map(|h| h.id).collect()
    }

    #[test]
    fn the_blocked_truth_is_exact_from_memory_and_from_a_file() {
        let (dim, n, topics) = (16, 3_000, 7u32);
        let (base, queries) = dataset(n, 12, dim, 8);
        let queries: Vec<Vec<f32>> = queries.chunks_exact(dim).map(<[f32]>::to_vec).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.fvecs");
        super::super::texmex::write_fvecs(&path, &base, dim).unwrap();
        let file = Base::File(FvecsFile::open(&path).unwrap());
        let memory = Base::Memory(base.clone());
        let keep = |j: usize, id: u32| id % topics == j as u32 % topics;
        // Blocks that do not divide the base, and one block holding all of it.
        for block in [97, 4096] {
            for source in [&memory, &file] {
                let topic = exact_truth_in_blocks(source, &queries, dim, 10, &keep, block).unwrap();
                let all =
                    exact_truth_in_blocks(source, &queries, dim, 10, &|_, _| true, block).unwrap();
                for (j, q) in queries.iter().enumerate() {
                    let members: IdSet = (0..n as u32).filter(|&i| keep(j, i)).collect();
                    assert_eq!(topic[j], flat_truth(&base, q, dim, 10, &members));
                    let everyone: IdSet = (0..n as u32).collect();
                    assert_eq!(all[j], flat_truth(&base, q, dim, 10, &everyone));
                }
            }
        }
    }

    #[test]
    fn topic_rows_search_each_querys_topic_with_the_recall_of_exact_search() {
        let (dim, topics) = (16, 7);
        let (base, queries) = dataset(3_000, 40, dim, 8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.fvecs");
        super::super::texmex::write_fvecs(&path, &base, dim).unwrap();
        // In memory, read from its file as a set larger than memory is, and that with
        // the build's floats spilled to a file from the first row.
        let spill = steerfeed::ann::SpillTo {
            dir: dir.path().to_path_buf(),
            above: 0,
        };
        for (base, spill) in [
            (Base::Memory(base), None),
            (Base::File(FvecsFile::open(&path).unwrap()), None),
            (Base::File(FvecsFile::open(&path).unwrap()), Some(spill)),
        ] {
            let spilled = spill.is_some();
            let bench = AnnBench {
                base,
                queries: queries.clone(),
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
                search: HnswSearchParams::default(),
                threads: 1,
                allow: vec![0.1],
                topics,
                index_cache: None,
                spill,
            };
            let rows = run(&bench).unwrap();
            // The int8 graph's exact vectors: held, or mapped from the spill file.
            let floats = 3_000 * dim * 4;
            assert_eq!(rows[0].mapped_bytes, if spilled { floats } else { 0 });
            assert_eq!(rows.len(), 3);
            assert_eq!((rows[0].allow, rows[0].topics, rows[0].n), (1.0, 0, 3_000));
            assert_eq!((rows[1].allow, rows[1].topics), (0.1, 0));
            let topic = &rows[2];
            assert_eq!(topic.topics, topics);
            assert!((topic.allow - 1.0 / 7.0).abs() < 1e-6);
            for row in &rows {
                assert!(row.recall_at_k >= 0.95, "{row:?}");
            }
        }
    }
}
