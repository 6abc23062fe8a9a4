//! Tests of the vector indexes against exact search.
//!
//! 1. HNSW recall@10 >= 0.95 against `FlatIndex` on a seeded clustered set.
//! 2. The same with 90 % of ids filtered out (allow-list and predicate), and with a 1 %
//!    allow-list (the exact path): always k results, recall >= 0.95.
//! 3. After deletes: deleted ids never appear, recall stays; compaction drops tombstones.
//! 4. Live inserts are searchable at once and are folded in by compaction; compactions
//!    chain while the live segment stays at `max_live`, and a loaded index over it
//!    compacts when asked. A live segment beside a larger graph is folded into it
//!    without a rebuild: recall holds, every folded vector is its own nearest
//!    neighbour, searches meanwhile see each id once, and the folded graph saves and
//!    loads.
//! 5. Dump and load give the same answers; damaged, truncated, foreign, other-version or
//!    wrong-dimension files are clear errors.
//! 6. Property: a deleted or filtered id never appears in a result.
//! 7. Concurrency: searches while inserts, deletes and compactions run never return an
//!    id whose delete had returned before the search started.
//! 8. Bad queries (wrong dimension, NaN) are errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::manual_is_multiple_of
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use steerfeed_ann::{
    Error, Filter, FlatIndex, HnswBuildParams, HnswIndex, HnswSearchParams, IdSet, VectorIndex,
    VectorStorage,
};
use steerfeed_core::Embedding;
use steerfeed_world::vectors::dataset;

const DIM: usize = 48;
const K: usize = 10;

fn emb(row: &[f32]) -> Embedding {
    Embedding::new("v", row, DIM).unwrap()
}

fn params() -> HnswBuildParams {
    params_as(VectorStorage::default())
}

fn params_as(vectors: VectorStorage) -> HnswBuildParams {
    HnswBuildParams {
        m: 12,
        ef_construction: 100,
        vectors,
        ..HnswBuildParams::default()
    }
}

/// Both storages, for tests of behaviour that must not depend on the rows' form.
const STORAGES: [VectorStorage; 2] = [VectorStorage::Int8, VectorStorage::F32];

struct Fixture {
    hnsw: HnswIndex,
    flat: FlatIndex,
    queries: Vec<f32>,
}

fn fixture(n: usize, seed: u64) -> Fixture {
    fixture_as(n, seed, VectorStorage::default())
}

fn fixture_as(n: usize, seed: u64, storage: VectorStorage) -> Fixture {
    let (base, queries) = dataset(n, 100, DIM, seed);
    let items: Vec<(u32, Embedding)> = base
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, r)| (i as u32, emb(r)))
        .collect();
    let flat = FlatIndex::new(DIM);
    for (id, e) in &items {
        flat.insert(*id, e).unwrap();
    }
    let hnsw =
        HnswIndex::build(DIM, items, params_as(storage), HnswSearchParams::default()).unwrap();
    Fixture {
        hnsw,
        flat,
        queries,
    }
}

/// Mean recall@K of `index` against `flat` over the queries, under `filter`; also checks
/// that every search returned K results.
fn recall(index: &dyn VectorIndex, flat: &FlatIndex, queries: &[f32], filter: Filter<'_>) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for q in queries.chunks_exact(DIM) {
        let truth: HashSet<u32> = flat
            .search(q, K, filter)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let got = index.search(q, K, filter).unwrap();
        assert_eq!(
            got.len(),
            truth.len().min(K),
            "a search returned too few results"
        );
        assert!(got.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        total +=
            got.iter().filter(|h| truth.contains(&h.id)).count() as f64 / truth.len().max(1) as f64;
        count += 1;
    }
    total / f64::from(count)
}

#[test]
fn hnsw_recall_at_10_is_at_least_0_95() {
    for storage in STORAGES {
        let f = fixture_as(6000, 1, storage);
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::All);
        assert!(r >= 0.95, "{storage:?}: recall {r}");
    }
}

/// Every hit's similarity is the inner product of the query with its base row (an
/// int8 graph rescores exactly).
fn assert_exact_similarities(index: &HnswIndex, base: &[f32], queries: &[f32]) {
    for q in queries.chunks_exact(DIM) {
        for hit in index.search(q, K, Filter::All).unwrap() {
            let v = &base[hit.id as usize * DIM..][..DIM];
            let want: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
            let got = hit.similarity;
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
    }
}

/// Int8 codes in the graph: recall holds and similarities are exact (rescored) after a
/// build, after folds of live vectors into the graph, and after a save and a load in
/// either storage (the file holds the exact vectors).
#[test]
fn int8_vectors_keep_recall_and_exact_similarities_through_folds_and_reloads() {
    let (base, queries) = dataset(5600, 100, DIM, 9);
    let int8 = HnswBuildParams {
        vectors: VectorStorage::Int8,
        max_live: 200,
        ..params()
    };
    let flat = FlatIndex::new(DIM);
    let mut items = Vec::new();
    for (i, row) in base.chunks_exact(DIM).enumerate() {
        flat.insert(i as u32, &emb(row)).unwrap();
        items.push((i as u32, emb(row)));
    }
    let last = items.split_off(5000);
    let later = items.split_off(3000);
    let hnsw = HnswIndex::build(DIM, items, int8, HnswSearchParams::default()).unwrap();
    let exact = |index: &HnswIndex| assert_exact_similarities(index, &base, &queries[..20 * DIM]);
    let flat_all = flat;
    let flat = FlatIndex::new(DIM);
    for (i, row) in base.chunks_exact(DIM).take(5000).enumerate() {
        flat.insert(i as u32, &emb(row)).unwrap();
    }
    // Recall is measured on the base's first 3,000 only, before the rest arrives.
    let first = FlatIndex::new(DIM);
    for (i, row) in base.chunks_exact(DIM).take(3000).enumerate() {
        first.insert(i as u32, &emb(row)).unwrap();
    }
    let r = recall(&hnsw, &first, &queries, Filter::All);
    assert!(r >= 0.95, "built: recall {r}");
    exact(&hnsw);
    for (id, e) in &later {
        hnsw.insert(*id, e).unwrap();
    }
    hnsw.compact_if_needed();
    settle(&hnsw);
    let s = hnsw.stats();
    assert!(s.folded > 0 && s.live_segment < 200, "{s:?}");
    let r = recall(&hnsw, &flat, &queries, Filter::All);
    assert!(r >= 0.95, "folded: recall {r}");
    exact(&hnsw);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.bin");
    assert!(hnsw.save_and_map(&path).unwrap());
    // Saved, the graph built here reads its exact vectors from the file's map.
    let s = hnsw.stats();
    assert_eq!(s.mapped_bytes, s.graph_nodes * DIM * 4, "{s:?}");
    assert_eq!(recall(&hnsw, &flat, &queries, Filter::All), r);
    exact(&hnsw);
    for storage in [VectorStorage::Int8, VectorStorage::F32] {
        let build = HnswBuildParams {
            vectors: storage,
            ..int8
        };
        let loaded = HnswIndex::load(&path, DIM, build, HnswSearchParams::default()).unwrap();
        assert_eq!(loaded.len(), 5000);
        let r = recall(&loaded, &flat, &queries, Filter::All);
        assert!(r >= 0.95, "loaded as {storage:?}: recall {r}");
        exact(&loaded);
        // An int8 graph maps the exact vectors of its nodes from the file.
        let mapped = loaded.stats().mapped_bytes;
        match storage {
            VectorStorage::Int8 => assert_eq!(mapped, loaded.stats().graph_nodes * DIM * 4),
            VectorStorage::F32 => assert_eq!(mapped, 0),
        }
        // A 1 % allow-list takes the scan, which an int8 graph runs on codes and then
        // rescores exactly.
        let tiny: IdSet = (0..5000u32).filter(|i| i % 100 == 5).collect();
        let r = recall(&loaded, &flat, &queries, Filter::Allow(&tiny));
        assert!(r >= 0.99, "1% allow-list, {storage:?}: recall {r}");
        // Folds after the load keep the mapped vectors and add the new ones in memory.
        for (id, e) in &last {
            loaded.insert(*id, e).unwrap();
        }
        loaded.compact_if_needed();
        settle(&loaded);
        let s = loaded.stats();
        assert!(s.folded > 0 && s.graph_nodes > 5000, "{storage:?}: {s:?}");
        if storage == VectorStorage::Int8 {
            assert!(s.mapped_bytes > 0 && s.mapped_bytes < s.graph_nodes * DIM * 4);
        }
        let r = recall(&loaded, &flat_all, &queries, Filter::All);
        assert!(
            r >= 0.95,
            "folded after the load as {storage:?}: recall {r}"
        );
        exact(&loaded);
    }
}

/// Saves that map an int8 graph's vectors while folds grow the graph: every id keeps
/// its own exact vector, and searches stay exact.
#[test]
fn saves_that_map_vectors_while_folds_run_never_mix_vectors_up() {
    let (base, queries) = dataset(4000, 20, DIM, 10);
    let build = HnswBuildParams {
        vectors: VectorStorage::Int8,
        max_live: 50,
        ..params()
    };
    let mut items: Vec<(u32, Embedding)> = base
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, r)| (i as u32, emb(r)))
        .collect();
    let later = items.split_off(1500);
    let hnsw = Arc::new(HnswIndex::build(DIM, items, build, HnswSearchParams::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.bin");
    let done = Arc::new(AtomicBool::new(false));
    let saver = {
        let (hnsw, done, path) = (Arc::clone(&hnsw), Arc::clone(&done), path.clone());
        std::thread::spawn(move || {
            let mut mapped = 0;
            while !done.load(Ordering::Acquire) {
                mapped += usize::from(hnsw.save_and_map(&path).unwrap());
                // Saves back to back would keep the graph shared, and a fold waits
                // while it is; an engine saves every so often.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            mapped
        })
    };
    for (id, e) in &later {
        hnsw.insert(*id, e).unwrap();
    }
    settle(&hnsw);
    done.store(true, Ordering::Release);
    let mapped = saver.join().unwrap();
    assert!(mapped > 0, "no save mapped the vectors");
    assert!(hnsw.save_and_map(&path).unwrap());
    let s = hnsw.stats();
    assert_eq!(s.mapped_bytes, s.graph_nodes * DIM * 4, "{s:?}");
    let ids: Vec<u32> = (0..4000).collect();
    for (id, got) in ids.iter().zip(hnsw.vectors(&ids)) {
        let want = emb(&base[*id as usize * DIM..][..DIM]);
        assert_eq!(got.as_deref(), Some(want.as_slice()), "id {id}");
    }
    assert_exact_similarities(&hnsw, &base, &queries);
}

#[test]
fn filtered_search_keeps_recall_and_returns_k() {
    for storage in STORAGES {
        let f = fixture_as(6000, 2, storage);
        let allow: IdSet = (0..6000u32).filter(|i| i % 10 == 3).collect();
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::Allow(&allow));
        assert!(r >= 0.95, "10% allow-list recall {r}");
        let pred = |id: u32| id % 10 == 7;
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::Predicate(&pred));
        assert!(r >= 0.95, "10% predicate recall {r}");
        let tiny: IdSet = (0..6000u32).filter(|i| i % 100 == 5).collect();
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::Allow(&tiny));
        assert!(r >= 0.999, "1% allow-list takes the exact path: recall {r}");
        let deny: IdSet = (0..6000u32).filter(|i| i % 2 == 0).collect();
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::Deny(&deny));
        assert!(r >= 0.95, "50% deny-list recall {r}");
    }
}

/// A small share of a large graph is walked, not scanned (`exact_max`): the widened walk
/// still returns `k` allowed ids, near the exact ones.
#[test]
fn a_small_list_past_exact_max_is_walked_and_keeps_recall() {
    for storage in STORAGES {
        let f = fixture_as(6000, 5, storage);
        let list: IdSet = (0..6000u32).filter(|i| i % 50 == 9).collect();
        let walked = HnswSearchParams {
            ef: 64,
            exact_max: 0,
            ..HnswSearchParams::default()
        };
        assert!(!walked.scans(list.len() as f32 / 6000.0, 6000));
        let mut found = 0;
        for q in f.queries.chunks_exact(DIM) {
            let truth: HashSet<u32> = f
                .flat
                .search(q, K, Filter::Allow(&list))
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            let got = f
                .hnsw
                .search_with(q, K, Filter::Allow(&list), &walked)
                .unwrap();
            assert_eq!(got.len(), K);
            assert!(got.iter().all(|h| list.contains(h.id)), "only allowed ids");
            found += got.iter().filter(|h| truth.contains(&h.id)).count();
        }
        let r = found as f64 / (K * f.queries.len() / DIM) as f64;
        assert!(r >= 0.9, "{storage:?}: a 2 % list walked: recall {r}");
    }
}

#[test]
fn deletes_take_effect_and_compaction_drops_tombstones() {
    for storage in STORAGES {
        let f = fixture_as(5000, 3, storage);
        for id in (0..5000u32).filter(|i| i % 3 == 0) {
            assert!(f.hnsw.delete(id));
            assert!(f.flat.delete(id));
        }
        assert!(!f.hnsw.delete(0), "a second delete reports absence");
        for q in f.queries.chunks_exact(DIM) {
            assert!(
                f.hnsw
                    .search(q, K, Filter::All)
                    .unwrap()
                    .iter()
                    .all(|h| h.id % 3 != 0)
            );
        }
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::All);
        assert!(r >= 0.95, "recall after deletes {r}");
        assert!(f.hnsw.stats().graph_tombstones > 0);
        f.hnsw.compact();
        let s = f.hnsw.stats();
        assert_eq!(s.graph_tombstones, 0);
        assert_eq!(s.graph_nodes, f.hnsw.len());
        let r = recall(&f.hnsw, &f.flat, &f.queries, Filter::All);
        assert!(r >= 0.95, "recall after compaction {r}");
        assert!(matches!(
            f.hnsw.insert(0, &emb(&f.queries[..DIM])),
            Err(Error::DuplicateId(0))
        ));
    }
}

#[test]
fn live_inserts_are_searchable_at_once_and_folded_by_compaction() {
    let (base, queries) = dataset(3000, 50, DIM, 4);
    let hnsw = HnswIndex::new(
        DIM,
        HnswBuildParams {
            max_live: 0,
            ..params()
        },
        HnswSearchParams::default(),
    )
    .unwrap();
    let flat = FlatIndex::new(DIM);
    for (i, row) in base.chunks_exact(DIM).enumerate() {
        hnsw.insert(i as u32, &emb(row)).unwrap();
        flat.insert(i as u32, &emb(row)).unwrap();
    }
    assert_eq!(hnsw.stats().live_segment, 3000);
    assert!(
        (recall(&hnsw, &flat, &queries, Filter::All) - 1.0).abs() < 1e-9,
        "live segment is exact"
    );
    let q = &base[17 * DIM..18 * DIM];
    assert_eq!(hnsw.search(q, 1, Filter::All).unwrap()[0].id, 17);
    hnsw.compact();
    let s = hnsw.stats();
    assert_eq!((s.live_segment, s.graph_nodes, s.compactions), (0, 3000, 1));
    assert!(recall(&hnsw, &flat, &queries, Filter::All) >= 0.95);
}

/// Polls until no compaction runs (seen twice, 50 ms apart); starts none itself. The
/// bound is generous and not a timing assertion: a failure says compactions never
/// stopped.
fn settle(hnsw: &HnswIndex) {
    let mut idle = 0;
    for _ in 0..2_400 {
        idle = if hnsw.is_compacting() { 0 } else { idle + 1 };
        if idle == 2 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("compactions still running after 120 s: {:?}", hnsw.stats());
}

#[test]
fn held_compactions_wait_for_eight_times_max_live_and_run_once_released() {
    let (base, _) = dataset(900, 1, DIM, 9);
    let max_live = 50;
    let build = HnswBuildParams {
        max_live,
        ..params()
    };
    let rows: Vec<&[f32]> = base.chunks_exact(DIM).collect();
    let hnsw = HnswIndex::new(DIM, build, HnswSearchParams::default()).unwrap();
    hnsw.hold_compactions(true);
    assert!(hnsw.compactions_held());
    // Past max_live, short of eight times it: held, nothing starts.
    for (i, row) in rows.iter().enumerate().take(8 * max_live - 1) {
        hnsw.insert(i as u32, &emb(row)).unwrap();
    }
    settle(&hnsw);
    let s = hnsw.stats();
    assert_eq!(
        (s.live_segment, s.compactions, s.folded),
        (8 * max_live - 1, 0, 0),
        "{s:?}"
    );
    // An index whose snapshots stopped coming works on itself at eight times.
    hnsw.insert(399, &emb(rows[399])).unwrap();
    settle(&hnsw);
    let s = hnsw.stats();
    assert!(s.compactions + s.folded > 0, "{s:?}");
    assert_eq!(s.graph_nodes + s.live_segment, 8 * max_live, "{s:?}");

    // Released with a live segment over max_live: the configured thresholds apply at once.
    let other = HnswIndex::new(DIM, build, HnswSearchParams::default()).unwrap();
    other.hold_compactions(true);
    for (i, row) in rows.iter().enumerate().take(3 * max_live) {
        other.insert(i as u32, &emb(row)).unwrap();
    }
    settle(&other);
    assert_eq!(other.stats().live_segment, 3 * max_live);
    other.hold_compactions(false);
    settle(&other);
    let s = other.stats();
    assert!(s.live_segment < max_live, "{s:?}");
    assert_eq!(s.graph_nodes + s.live_segment, 3 * max_live, "{s:?}");
    // An explicit compaction runs whatever the hold.
    other.hold_compactions(true);
    for (i, row) in rows.iter().enumerate().skip(3 * max_live).take(max_live) {
        other.insert(i as u32, &emb(row)).unwrap();
    }
    other.compact();
    assert_eq!(other.stats().live_segment, 0);
}

#[test]
fn compactions_chain_until_the_live_segment_is_under_max_live() {
    let (base, queries) = dataset(4000, 50, DIM, 6);
    let max_live = 100;
    let build = HnswBuildParams {
        max_live,
        ..params()
    };
    let hnsw = HnswIndex::new(DIM, build, HnswSearchParams::default()).unwrap();
    let flat = FlatIndex::new(DIM);
    // Inserted far faster than a graph builds: most arrive while a compaction runs.
    for (i, row) in base.chunks_exact(DIM).enumerate() {
        hnsw.insert(i as u32, &emb(row)).unwrap();
        flat.insert(i as u32, &emb(row)).unwrap();
    }
    settle(&hnsw);
    let s = hnsw.stats();
    assert!(s.live_segment < max_live, "{s:?}");
    assert_eq!(s.graph_nodes + s.live_segment, 4000, "{s:?}");
    assert!(s.compactions >= 1);
    assert!((0..4000).filter(|&i| hnsw.in_graph(i)).count() > 4000 - max_live);
    assert!(recall(&hnsw, &flat, &queries, Filter::All) >= 0.95);

    // An index saved with a big live segment compacts once loaded and asked to.
    let bulk = HnswIndex::new(
        DIM,
        HnswBuildParams {
            max_live: 0,
            ..params()
        },
        HnswSearchParams::default(),
    )
    .unwrap();
    for (i, row) in base.chunks_exact(DIM).take(1000).enumerate() {
        bulk.insert(i as u32, &emb(row)).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.hnsw");
    bulk.save(&path).unwrap();
    let loaded = HnswIndex::load(&path, DIM, build, HnswSearchParams::default()).unwrap();
    assert_eq!(loaded.stats().live_segment, 1000);
    assert!(loaded.compact_if_needed());
    settle(&loaded);
    let s = loaded.stats();
    assert!(s.live_segment < max_live && s.graph_nodes == 1000, "{s:?}");
}

#[test]
fn a_live_segment_beside_a_larger_graph_is_folded_in_without_a_rebuild() {
    for storage in STORAGES {
        let (base, queries) = dataset(6000, 100, DIM, 8);
        let max_live = 200;
        let items: Vec<(u32, Embedding)> = base[..4000 * DIM]
            .chunks_exact(DIM)
            .enumerate()
            .map(|(i, r)| (i as u32, emb(r)))
            .collect();
        let build = HnswBuildParams {
            max_live,
            threads: 1,
            ..params_as(storage)
        };
        let hnsw =
            Arc::new(HnswIndex::build(DIM, items, build, HnswSearchParams::default()).unwrap());
        let flat = FlatIndex::new(DIM);
        for (i, row) in base.chunks_exact(DIM).enumerate() {
            flat.insert(i as u32, &emb(row)).unwrap();
        }
        let done = Arc::new(AtomicBool::new(false));
        // A reader while folds run: each id at most once, and always K results.
        let reader = {
            let (hnsw, done, queries) = (hnsw.clone(), done.clone(), queries.clone());
            std::thread::spawn(move || {
                let mut searches = 0usize;
                while !done.load(Ordering::SeqCst) || searches < 50 {
                    let q = &queries[searches % 100 * DIM..][..DIM];
                    let hits = hnsw.search(q, K, Filter::All).unwrap();
                    let ids: HashSet<u32> = hits.iter().map(|h| h.id).collect();
                    assert_eq!(ids.len(), hits.len(), "an id returned twice: {hits:?}");
                    assert_eq!(hits.len(), K);
                    searches += 1;
                }
            })
        };
        for (i, row) in base.chunks_exact(DIM).enumerate().skip(4000) {
            hnsw.insert(i as u32, &emb(row)).unwrap();
        }
        settle(&hnsw);
        done.store(true, Ordering::SeqCst);
        reader.join().unwrap();

        let s = hnsw.stats();
        assert_eq!(s.compactions, 0, "no rebuild: {s:?}");
        assert!(s.live_segment < max_live, "{s:?}");
        assert_eq!(s.graph_nodes + s.live_segment, 6000, "{s:?}");
        assert_eq!(s.folded as usize, s.graph_nodes - 4000, "{s:?}");
        let r = recall(hnsw.as_ref(), &flat, &queries, Filter::All);
        assert!(r >= 0.95, "recall after folding {r}");
        let folded: Vec<u32> = (4000..6000u32).filter(|&i| hnsw.in_graph(i)).collect();
        assert!(folded.len() > 2000 - max_live);
        let found_itself = folded
            .iter()
            .filter(|&&i| {
                let q = &base[i as usize * DIM..][..DIM];
                hnsw.search(q, 1, Filter::All).unwrap()[0].id == i
            })
            .count();
        assert!(
            found_itself as f64 >= 0.99 * folded.len() as f64,
            "{found_itself} of {} folded vectors are their own nearest neighbour",
            folded.len()
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("folded.hnsw");
        hnsw.save(&path).unwrap();
        let loaded = HnswIndex::load(&path, DIM, build, HnswSearchParams::default()).unwrap();
        assert_eq!(loaded.stats().graph_nodes, s.graph_nodes);
        for q in queries.chunks_exact(DIM) {
            assert_eq!(
                loaded.search(q, K, Filter::All).unwrap(),
                hnsw.search(q, K, Filter::All).unwrap()
            );
        }
    }
}

#[test]
fn dump_and_load_round_trip_and_damage_is_detected() {
    let f = fixture(2000, 5);
    f.hnsw.delete(11);
    f.hnsw.insert(50_000, &emb(&f.queries[..DIM])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.bin");
    f.hnsw.save(&path).unwrap();
    let loaded = HnswIndex::load(&path, DIM, params(), HnswSearchParams::default()).unwrap();
    assert_eq!(loaded.len(), f.hnsw.len());
    assert!(!loaded.contains(11));
    assert!(loaded.contains(50_000));
    for q in f.queries.chunks_exact(DIM) {
        assert_eq!(
            loaded.search(q, K, Filter::All).unwrap(),
            f.hnsw.search(q, K, Filter::All).unwrap()
        );
    }

    let bytes = std::fs::read(&path).unwrap();
    let bad = |name: &str, data: &[u8], dim: usize| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        match HnswIndex::load(&p, dim, params(), HnswSearchParams::default()) {
            Err(Error::BadFile { reason, .. }) => reason,
            other => panic!("{name}: expected BadFile, got {other:?}"),
        }
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    assert!(bad("flipped", &flipped, DIM).contains("checksum"));
    assert!(!bad("truncated", &bytes[..bytes.len() - 100], DIM).is_empty());
    assert!(bad("foreign", b"hello, world, this is not an index", DIM).contains("not a steerfeed"));
    assert!(bad("dim", &bytes, DIM + 1).contains("dimensions"));
    let mut v1 = bytes.clone();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    assert!(bad("version 1", &v1, DIM).contains("format version 1"));
    assert!(matches!(
        HnswIndex::load(
            &dir.path().join("missing"),
            DIM,
            params(),
            HnswSearchParams::default()
        ),
        Err(Error::Io { .. })
    ));
}

#[test]
fn bad_queries_are_errors() {
    let f = fixture(200, 6);
    assert!(f.hnsw.search(&[0.0; DIM - 1], K, Filter::All).is_err());
    let mut q = vec![0.1; DIM];
    q[3] = f32::NAN;
    assert!(f.hnsw.search(&q, K, Filter::All).is_err());
    assert!(
        f.hnsw
            .search(&f.queries[..DIM], 0, Filter::All)
            .unwrap()
            .is_empty()
    );
    let bad = HnswSearchParams {
        ef: 0,
        ..HnswSearchParams::default()
    };
    assert!(
        f.hnsw
            .search_with(&f.queries[..DIM], K, Filter::All, &bad)
            .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn deleted_and_filtered_ids_never_appear(
        seed in 0u64..1000,
        deletes in proptest::collection::vec(0u32..400, 0..200),
        modulus in 2u32..7,
        compact in any::<bool>(),
    ) {
        let (base, queries) = dataset(400, 5, DIM, seed);
        let index = HnswIndex::new(DIM, HnswBuildParams { max_live: 150, ..params() }, HnswSearchParams::default()).unwrap();
        for (i, row) in base.chunks_exact(DIM).enumerate() {
            index.insert(i as u32, &emb(row)).unwrap();
        }
        let deleted: HashSet<u32> = deletes.iter().copied().collect();
        for id in &deleted {
            prop_assert!(index.delete(*id));
        }
        if compact {
            index.compact();
        }
        let pred = move |id: u32| id % modulus != 0;
        for q in queries.chunks_exact(DIM) {
            let hits = index.search(q, 20, Filter::Predicate(&pred)).unwrap();
            for h in &hits {
                prop_assert!(!deleted.contains(&h.id), "deleted id {} returned", h.id);
                prop_assert!(h.id % modulus != 0, "filtered id {} returned", h.id);
            }
            let allowed = (0..400u32).filter(|i| !deleted.contains(i) && pred(*i)).count();
            prop_assert_eq!(hits.len(), allowed.min(20));
        }
    }
}

#[test]
fn searches_never_see_a_delete_that_returned_before_they_started() {
    let (base, queries) = dataset(4000, 20, DIM, 7);
    let items: Vec<(u32, Embedding)> = base[..2000 * DIM]
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, r)| (i as u32, emb(r)))
        .collect();
    let index = Arc::new(
        HnswIndex::build(
            DIM,
            items,
            HnswBuildParams {
                max_live: 400,
                threads: 1,
                ..params()
            },
            HnswSearchParams::default(),
        )
        .unwrap(),
    );
    let deleted = Arc::new(Mutex::new(IdSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU32::new(2000));

    let writer = {
        let (index, deleted, done, next) =
            (index.clone(), deleted.clone(), done.clone(), next.clone());
        let base = base.clone();
        std::thread::spawn(move || {
            for i in 0..2000usize {
                let id = next.fetch_add(1, Ordering::SeqCst);
                index
                    .insert(id, &emb(&base[(2000 + i) * DIM..(2001 + i) * DIM]))
                    .unwrap();
                let victim = (i * 7 % 3000) as u32;
                if index.delete(victim) {
                    deleted.lock().unwrap().insert(victim);
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (index, deleted, done) = (index.clone(), deleted.clone(), done.clone());
            let queries = queries.clone();
            std::thread::spawn(move || {
                let mut searches = 0;
                while !done.load(Ordering::SeqCst) || searches < 50 {
                    let before = deleted.lock().unwrap().clone();
                    let q = &queries[(searches + t) % 20 * DIM..][..DIM];
                    for h in index.search(q, 50, Filter::All).unwrap() {
                        assert!(!before.contains(h.id), "deleted id {} returned", h.id);
                    }
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() >= 50);
    }
    index.compact();
    let final_deleted = deleted.lock().unwrap().clone();
    for q in queries.chunks_exact(DIM) {
        for h in index.search(q, 50, Filter::All).unwrap() {
            assert!(!final_deleted.contains(h.id));
        }
    }
    assert_eq!(index.len(), 4000 - final_deleted.len());
    assert!(index.stats().compactions >= 1);
}
