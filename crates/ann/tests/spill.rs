//! Builds whose exact vectors spill to an unnamed file and are read back mapped.
//!
//! 1. A spilled build (its first rows held in memory until it passes the size, then
//!    every row in the file) is the same index as one built in memory: the same answers bit for bit on one build thread,
//!    its floats mapped rather than held (int8), nothing left in the directory, and a
//!    save and a load give the same answers again.
//! 2. A rebuild of an index told to spill maps its floats from the file, drops the
//!    deleted vectors, keeps recall and rescores exactly.
//! 3. A directory that cannot hold the file: a bulk build and a rebuild gather in memory
//!    instead and still run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use steerfeed_ann::{
    Error, Filter, FlatIndex, HnswBuildParams, HnswIndex, HnswSearchParams, SpillTo, VectorIndex,
    VectorStorage,
};
use steerfeed_core::Embedding;
use steerfeed_world::vectors::dataset;

const DIM: usize = 40;
const K: usize = 10;

fn emb(row: &[f32]) -> Embedding {
    Embedding::new("v", row, DIM).unwrap()
}

fn params(vectors: VectorStorage) -> HnswBuildParams {
    HnswBuildParams {
        m: 12,
        ef_construction: 80,
        threads: 1,
        vectors,
        ..HnswBuildParams::default()
    }
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Every search's ids and similarities, bit for bit.
fn answers(index: &HnswIndex, queries: &[f32]) -> Vec<Vec<(u32, u32)>> {
    queries
        .chunks_exact(DIM)
        .map(|q| {
            index
                .search(q, K, Filter::All)
                .unwrap()
                .iter()
                .map(|h| (h.id, h.similarity.to_bits()))
                .collect()
        })
        .collect()
}

#[test]
fn a_spilled_build_is_the_index_built_in_memory_and_leaves_no_file() {
    let n = 2500;
    let (base, queries) = dataset(n, 40, DIM, 31);
    for storage in [VectorStorage::Int8, VectorStorage::F32] {
        let in_memory = HnswIndex::build(
            DIM,
            base.chunks_exact(DIM)
                .enumerate()
                .map(|(i, r)| (i as u32, emb(r))),
            params(storage),
            HnswSearchParams::default(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The first 300 rows are held in memory, then everything goes to the file.
        let spill = SpillTo {
            dir: dir.path().to_path_buf(),
            above: 300 * DIM * 4,
        };
        let mut bulk = HnswIndex::bulk(
            DIM,
            params(storage),
            HnswSearchParams::default(),
            Some(&spill),
        )
        .unwrap();
        for (i, row) in base.chunks_exact(DIM).enumerate() {
            bulk.push(i as u32, &emb(row), &[]).unwrap();
        }
        assert!(matches!(
            bulk.push(7, &emb(&base[..DIM]), &[]),
            Err(Error::DuplicateId(7))
        ));
        assert_eq!(bulk.len(), n, "a refused push adds nothing");
        let spilled = bulk.finish().unwrap();
        assert_eq!(files_in(dir.path()), 0, "the spill file has no name");
        assert_eq!(
            answers(&spilled, &queries),
            answers(&in_memory, &queries),
            "{storage:?}"
        );
        let (mem, sp) = (in_memory.stats(), spilled.stats());
        match storage {
            VectorStorage::Int8 => {
                assert_eq!(sp.mapped_bytes, n * DIM * 4, "the floats are mapped");
                assert_eq!(mem.heap_bytes - sp.heap_bytes, n * DIM * 4);
            }
            VectorStorage::F32 => {
                // Float rows copy the vectors into the graph: the file served the build.
                assert_eq!(sp.mapped_bytes, 0);
                assert_eq!(sp.heap_bytes, mem.heap_bytes);
            }
        }
        let file = dir.path().join("index.hnsw");
        spilled.save(&file).unwrap();
        let loaded =
            HnswIndex::load(&file, DIM, params(storage), HnswSearchParams::default()).unwrap();
        assert_eq!(answers(&loaded, &queries), answers(&in_memory, &queries));
    }
}

#[test]
fn a_rebuild_told_to_spill_maps_its_vectors_and_keeps_its_answers() {
    let n = 3000;
    let (base, queries) = dataset(n, 60, DIM, 32);
    let flat = FlatIndex::new(DIM);
    let hnsw = HnswIndex::new(
        DIM,
        HnswBuildParams {
            max_live: 0,
            max_tombstone_ratio: 1.0,
            ..params(VectorStorage::Int8)
        },
        HnswSearchParams::default(),
    )
    .unwrap();
    for (i, row) in base.chunks_exact(DIM).enumerate() {
        hnsw.insert(i as u32, &emb(row)).unwrap();
        flat.insert(i as u32, &emb(row)).unwrap();
    }
    for id in (0..n as u32).filter(|i| i.is_multiple_of(4)) {
        assert!(hnsw.delete(id));
        assert!(flat.delete(id));
    }
    let dir = tempfile::tempdir().unwrap();
    hnsw.set_spill(Some(SpillTo {
        dir: dir.path().to_path_buf(),
        above: 0,
    }));
    hnsw.compact();
    let s = hnsw.stats();
    assert_eq!(s.graph_nodes, hnsw.len());
    assert_eq!(s.live_segment, 0);
    assert_eq!(s.mapped_bytes, hnsw.len() * DIM * 4);
    assert_eq!(files_in(dir.path()), 0);
    let mut found = 0;
    for q in queries.chunks_exact(DIM) {
        let truth: HashSet<u32> = flat
            .search(q, K, Filter::All)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        for hit in hnsw.search(q, K, Filter::All).unwrap() {
            assert!(!hit.id.is_multiple_of(4), "a deleted vector came back");
            let v = &base[hit.id as usize * DIM..][..DIM];
            let exact: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
            assert!((hit.similarity - exact).abs() < 1e-4, "rescored exactly");
            found += usize::from(truth.contains(&hit.id));
        }
    }
    let recall = found as f64 / (K * queries.len() / DIM) as f64;
    assert!(recall >= 0.95, "recall {recall}");
}

#[test]
fn a_directory_that_cannot_hold_the_file_leaves_builds_and_rebuilds_in_memory() {
    let (base, _) = dataset(400, 1, DIM, 33);
    let dir = tempfile::tempdir().unwrap();
    let missing = SpillTo {
        dir: dir.path().join("missing"),
        above: 100 * DIM * 4,
    };
    let mut bulk = HnswIndex::bulk(
        DIM,
        params(VectorStorage::Int8),
        HnswSearchParams::default(),
        Some(&missing),
    )
    .unwrap();
    let rows: Vec<&[f32]> = base.chunks_exact(DIM).collect();
    for (i, row) in rows.iter().enumerate() {
        bulk.push(i as u32, &emb(row), &[]).unwrap();
    }
    let built = bulk.finish().unwrap();
    assert_eq!(built.len(), 400);
    let s = built.stats();
    assert_eq!(s.mapped_bytes, 0, "the vectors stayed in memory");
    for (i, row) in rows.iter().enumerate().step_by(37) {
        assert_eq!(built.search(row, 1, Filter::All).unwrap()[0].id, i as u32);
    }

    let index = HnswIndex::build(
        DIM,
        rows.iter().enumerate().map(|(i, r)| (i as u32, emb(r))),
        HnswBuildParams {
            max_tombstone_ratio: 1.0,
            ..params(VectorStorage::Int8)
        },
        HnswSearchParams::default(),
    )
    .unwrap();
    index.set_spill(Some(SpillTo {
        above: 0,
        ..missing
    }));
    for id in 0..200 {
        assert!(index.delete(id));
    }
    assert_eq!(index.stats().graph_tombstones, 200);
    index.compact();
    let s = index.stats();
    assert_eq!(s.graph_tombstones, 0, "the rebuild ran");
    assert_eq!(s.graph_nodes, 200);
    assert_eq!(s.mapped_bytes, 0, "its vectors were gathered in memory");
    assert_eq!(index.search(rows[300], 1, Filter::All).unwrap()[0].id, 300);
}
