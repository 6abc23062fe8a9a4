//! `steerfeed bench ann`: the ANN benchmark on TEXMEX files or a seeded synthetic set
//! ([`run`] measures, [`texmex`] reads and writes the files).

#![allow(clippy::print_stdout)] // a command prints its report on stdout

pub mod run;
pub mod texmex;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use steerfeed::ann::{HnswBuildParams, HnswSearchParams, VectorStorage};
use steerfeed::world::vectors::{dataset, dataset_rows};

use self::run::{AnnBench, Base, exact_truth, run};
use self::texmex::{
    FvecsFile, FvecsWriter, MAX_DIM, read_fvecs, read_ivecs, write_fvecs, write_ivecs,
};

/// Arguments of `steerfeed bench ann`.
#[derive(Debug, Args)]
pub struct AnnArgs {
    /// Base vectors (.fvecs).
    #[arg(long, required_unless_present = "synthetic")]
    base: Option<PathBuf>,
    /// Query vectors (.fvecs).
    #[arg(long, required_unless_present = "synthetic")]
    query: Option<PathBuf>,
    /// Ground truth (.ivecs); computed exactly when absent.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// A seeded clustered set instead of files: N,DIM,SEED.
    #[arg(long, conflicts_with_all = ["base", "query", "gt"])]
    synthetic: Option<String>,
    /// Queries to generate with --synthetic.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// HNSW links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW candidate list while building.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Candidate list sizes to search with, comma-separated.
    #[arg(long, default_value = "16,32,64,128,256", value_delimiter = ',')]
    ef: Vec<usize>,
    /// Filtered searches whose allowed share is at or below this scan the allowed
    /// vectors instead of walking the graph (`[index.search] exact_below`).
    #[arg(long, default_value_t = HnswSearchParams::default().exact_below)]
    exact_below: f32,
    /// ... while the allowed vectors are at most this many (`[index.search]
    /// exact_max`).
    #[arg(long, default_value_t = HnswSearchParams::default().exact_max)]
    exact_max: usize,
    /// Query threads (each runs one query per call).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How the graph holds vectors for its walk: int8 codes with the best candidates
    /// rescored exactly (the engine's default), or f32.
    #[arg(long, default_value = "int8", value_parser = parse_storage)]
    vectors: VectorStorage,
    /// Build threads (default: --threads).
    #[arg(long)]
    build_threads: Option<usize>,
    /// Allow-list shares to test filtered search with, comma-separated (e.g. 0.01,0.1,0.5).
    #[arg(long, value_delimiter = ',')]
    allow: Vec<f32>,
    /// Topics to tag the base with (vector i carries topic i % N; 0: none): the index
    /// partitions them, and query j is also searched within topic j % N, as an `only`
    /// topic of 1/N of the catalogue.
    #[arg(long, default_value_t = 0)]
    topics: u32,
    /// With --synthetic: write the vectors (and exact ground truth) as base.fvecs,
    /// query.fvecs, gt.ivecs into this folder, then exit: the same files can then be
    /// given to other libraries. Vectors are written as they are drawn, so the set may
    /// be larger than memory.
    #[arg(long, requires = "synthetic")]
    write: Option<PathBuf>,
    /// Load the built index from this file if it is there (same data), else build and
    /// save it there; for repeated runs on large sets.
    #[arg(long)]
    index_cache: Option<PathBuf>,
    /// Spill the build's exact vectors to an unnamed file in this folder once they pass
    /// 256 MiB, and build over them mapped (as the engine does beside its store): for
    /// sets whose floats do not fit in memory beside the graph.
    #[arg(long)]
    spill_dir: Option<PathBuf>,
}

fn parse_storage(s: &str) -> anyhow::Result<VectorStorage> {
    match s {
        "f32" => Ok(VectorStorage::F32),
        "int8" => Ok(VectorStorage::Int8),
        other => bail!("--vectors takes f32 or int8, not {other:?}"),
    }
}

fn parse_synthetic(s: &str) -> anyhow::Result<(usize, usize, u64)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [n, dim, seed] = parts[..] else {
        bail!("--synthetic takes N,DIM,SEED, e.g. 200000,384,42");
    };
    let (n, dim, seed): (usize, usize, u64) = (
        n.parse().context("N")?,
        dim.parse().context("DIM")?,
        seed.parse().context("SEED")?,
    );
    if n == 0 || dim == 0 || dim > MAX_DIM {
        bail!("--synthetic needs N above zero and DIM from 1 to {MAX_DIM}");
    }
    Ok((n, dim, seed))
}

/// Runs the benchmark and prints one JSON object per line.
pub fn ann(args: AnnArgs) -> anyhow::Result<()> {
    if args.queries == 0 {
        bail!("--queries must be above zero");
    }
    // Checked before any build, which can take hours.
    HnswSearchParams {
        exact_below: args.exact_below,
        exact_max: args.exact_max,
        ..HnswSearchParams::default()
    }
    .validate()?;
    if let Some(dir) = &args.write {
        return write_synthetic(&args, dir);
    }
    let (base, queries, dim, gt) = match &args.synthetic {
        Some(spec) => {
            let (n, dim, seed) = parse_synthetic(spec)?;
            let (base, queries) = dataset(n, args.queries, dim, seed);
            (Base::Memory(base), queries, dim, None)
        }
        None => {
            let (Some(b), Some(q)) = (&args.base, &args.query) else {
                bail!("give --base and --query, or --synthetic N,DIM,SEED");
            };
            // The base is read as it is needed, never whole: the index holds its copy.
            // A build that spills keeps that copy in the page cache, which the base's
            // own read pages would otherwise push out: those are dropped once read.
            let mut base = FvecsFile::open(b)?;
            if args.spill_dir.is_some() {
                base = base.dropping_read_pages();
            }
            let dim = base.dim();
            let (queries, qdim) = read_fvecs(q, None)?;
            if dim != qdim {
                bail!("base vectors have {dim} dimensions, queries {qdim}");
            }
            let gt = args
                .gt
                .as_deref()
                .map(|p| read_ivecs(p, None))
                .transpose()?;
            if let Some((ids, gt_k)) = &gt {
                if *gt_k < args.k {
                    bail!(
                        "ground truth has {gt_k} neighbours per query, fewer than --k {}",
                        args.k
                    );
                }
                let (rows, nq) = (ids.len() / gt_k, queries.len() / dim);
                if rows != nq {
                    bail!("ground truth has {rows} rows for {nq} queries");
                }
                if let Some(bad) = ids.iter().find(|&&id| id < 0 || id as usize >= base.len()) {
                    bail!(
                        "ground truth names id {bad}, outside the base's {} rows",
                        base.len()
                    );
                }
            }
            (Base::File(base), queries, dim, gt)
        }
    };
    if base.len(dim) == 0 || queries.is_empty() {
        bail!("no vectors to benchmark");
    }
    let bench = AnnBench {
        base,
        queries,
        dim,
        ground_truth: gt,
        k: args.k,
        build: HnswBuildParams {
            m: args.m,
            ef_construction: args.ef_construction,
            threads: args.build_threads.unwrap_or(args.threads),
            vectors: args.vectors,
            ..HnswBuildParams::default()
        },
        efs: args.ef,
        search: HnswSearchParams {
            exact_below: args.exact_below,
            exact_max: args.exact_max,
            ..HnswSearchParams::default()
        },
        threads: args.threads,
        allow: args.allow,
        topics: args.topics,
        index_cache: args.index_cache,
        spill: args.spill_dir.map(steerfeed::ann::SpillTo::new),
    };
    for row in run(&bench)? {
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}

/// `--synthetic N,DIM,SEED --write DIR`: base.fvecs, query.fvecs and the exact
/// gt.ivecs (100 neighbours, or `--k`), each vector written as it is drawn and the truth
/// found in one pass over the written base, so a set larger than memory can be made.
fn write_synthetic(args: &AnnArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let Some(spec) = &args.synthetic else {
        bail!("--write needs --synthetic N,DIM,SEED");
    };
    let (n, dim, seed) = parse_synthetic(spec)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rows = dataset_rows(n, dim, seed);
    let base_path = dir.join("base.fvecs");
    let mut out = FvecsWriter::create(&base_path, dim)?;
    for row in rows.by_ref().take(n) {
        out.push(&row)?;
    }
    out.finish()?;
    let queries: Vec<Vec<f32>> = rows.take(args.queries).collect();
    write_fvecs(&dir.join("query.fvecs"), &queries.concat(), dim)?;
    let gt_k = args.k.max(100).min(n);
    let base = Base::File(FvecsFile::open(&base_path)?);
    let truth = exact_truth(&base, &queries, dim, gt_k, &|_, _| true)?;
    let flat: Vec<i32> = truth
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as i32))
        .collect();
    write_ivecs(&dir.join("gt.ivecs"), &flat, gt_k)?;
    eprintln!(
        "wrote base.fvecs, query.fvecs and gt.ivecs to {}",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;
    use steerfeed::Embedding;
    use steerfeed::ann::{Filter, FlatIndex, VectorIndex};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AnnArgs,
    }

    fn parse(args: &[&str]) -> AnnArgs {
        Cli::try_parse_from(std::iter::once("ann").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn a_written_synthetic_set_is_the_drawn_set_with_its_exact_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set");
        let out_s = out.to_str().unwrap();
        ann(parse(&[
            "--synthetic",
            "50,8,3",
            "--queries",
            "5",
            "--write",
            out_s,
        ]))
        .unwrap();
        let (base, queries) = dataset(50, 5, 8, 3);
        assert_eq!(
            read_fvecs(&out.join("base.fvecs"), None).unwrap(),
            (base.clone(), 8)
        );
        assert_eq!(
            read_fvecs(&out.join("query.fvecs"), None).unwrap(),
            (queries.clone(), 8)
        );
        // 100 neighbours are asked for, so all 50, in order, for each of the 5 queries.
        let (gt, gt_k) = read_ivecs(&out.join("gt.ivecs"), None).unwrap();
        assert_eq!((gt.len(), gt_k), (250, 50));
        let flat = FlatIndex::new(8);
        for (i, row) in base.chunks_exact(8).enumerate() {
            flat.insert(i as u32, &Embedding::new("base", row, 8).unwrap())
                .unwrap();
        }
        for (q, want) in queries.chunks_exact(8).zip(gt.chunks_exact(50)) {
            let hits: Vec<i32> = flat
                .search(q, 50, Filter::All)
                .unwrap()
                .into_iter()
                .map(|h| h.id as i32)
                .collect();
            assert_eq!(hits, want);
        }
        // Bad arguments are refused before anything is written or built.
        for bad in [
            &["--synthetic", "0,8,3", "--write", out_s][..],
            &["--synthetic", "10,8,3", "--queries", "0"],
            &["--synthetic", "10,8,3", "--exact-below", "2"],
        ] {
            assert!(ann(parse(bad)).is_err(), "{bad:?}");
        }
        // --write makes a synthetic set only.
        let files = Cli::try_parse_from(["ann", "--base", "b", "--query", "q", "--write", out_s]);
        assert!(files.map_or(true, |c| ann(c.args).is_err()));
    }
}
