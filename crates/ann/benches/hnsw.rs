//! Criterion benches of the HNSW index with the default (int8) rows: single-query search
//! at 100k × 384 (and 1M × 384
//! with STEERFEED_BENCH_LARGE=1), unfiltered and with 10 % and 1 % allow-lists, and the
//! build at 20k × 384. Seeded data; built indexes are cached in the set-up cache
//! (`$STEERFEED_CACHE/bench-index/`) so a second run starts at once. Results are checked
//! inside the loop so the work cannot be optimised away.
//!
//! Under `cargo test` (no `--bench` flag) the same code runs once on a 2k set, so the
//! bench is compiled and exercised by `make test` without the cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use steerfeed_ann::{Filter, HnswBuildParams, HnswIndex, HnswSearchParams, IdSet, VectorIndex};
use steerfeed_core::Embedding;
use steerfeed_world::vectors::{allow_list, dataset};

const DIM: usize = 384;
const SEED: u64 = 42;

fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1000 {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn cache_path(n: usize) -> PathBuf {
    let base = std::env::var_os("STEERFEED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/steerfeed")
        });
    base.join("bench-index").join(format!(
        "hnsw-{n}-{DIM}-m16-efc200-seed{SEED}-v{}.bin",
        steerfeed_ann::FORMAT_VERSION
    ))
}

fn items(base: &[f32]) -> Vec<(u32, Embedding)> {
    base.chunks_exact(DIM)
        .enumerate()
        .map(|(i, r)| (i as u32, Embedding::new("b", r, DIM).unwrap()))
        .collect()
}

fn index(n: usize, base: &[f32]) -> HnswIndex {
    let path = cache_path(n);
    let build = HnswBuildParams::default();
    let search = HnswSearchParams::default();
    if benching()
        && let Ok(idx) = HnswIndex::load(&path, DIM, build, search)
    {
        return idx;
    }
    let idx = HnswIndex::build(DIM, items(base), build, search).unwrap();
    if benching() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        idx.save(&path).unwrap();
    }
    idx
}

fn search_benches(c: &mut Criterion) {
    let mut sizes = vec![if benching() { 100_000 } else { 2_000 }];
    if benching() && std::env::var_os("STEERFEED_BENCH_LARGE").is_some() {
        sizes.push(1_000_000);
    }
    for n in sizes {
        let (base, queries) = dataset(n, 1000, DIM, SEED);
        let idx = index(n, &base);
        let queries: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
        // The engine's default storage, named: benches of another storage keep apart.
        let storage = format!("{:?}", HnswBuildParams::default().vectors).to_lowercase();
        let tag = format!("{}_{DIM}d_{storage}", label(n));
        for ef in [32usize, 64] {
            let params = HnswSearchParams {
                ef,
                ..HnswSearchParams::default()
            };
            let mut i = 0;
            c.bench_function(&format!("hnsw_search_{tag}_ef{ef}"), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    let hits = idx
                        .search_with(black_box(queries[i]), 10, Filter::All, &params)
                        .unwrap();
                    assert_eq!(hits.len(), 10);
                })
            });
        }
        for share in [0.1f32, 0.01] {
            let allow: IdSet = allow_list(n, share).into_iter().collect();
            let params = HnswSearchParams {
                ef: 32,
                ..HnswSearchParams::default()
            };
            let mut i = 0;
            c.bench_function(
                &format!("hnsw_search_{tag}_allow{}pct_ef32", (share * 100.0) as u32),
                |b| {
                    b.iter(|| {
                        i = (i + 1) % queries.len();
                        let hits = idx
                            .search_with(black_box(queries[i]), 10, Filter::Allow(&allow), &params)
                            .unwrap();
                        assert_eq!(hits.len(), 10);
                    })
                },
            );
        }
        assert!(idx.len() == n);
    }
}

fn build_bench(c: &mut Criterion) {
    let n = if benching() { 20_000 } else { 500 };
    let (base, _) = dataset(n, 1, DIM, SEED);
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function(format!("hnsw_build_{}_{DIM}d", label(n)), |b| {
        b.iter_batched(
            || items(&base),
            |items| {
                let idx = HnswIndex::build(
                    DIM,
                    items,
                    HnswBuildParams::default(),
                    HnswSearchParams::default(),
                )
                .unwrap();
                assert_eq!(idx.len(), n);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, search_benches, build_bench);
criterion_main!(benches);
