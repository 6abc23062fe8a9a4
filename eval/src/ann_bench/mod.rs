//! `steerfeed bench ann`: the ANN benchmark on TEXMEX files or a seeded synthetic set
//! ([`run`] measures, [`texmex`] reads and writes the files).

#![allow(clippy::print_stdout)] // a command prints its report on stdout

pub mod run;
pub mod texmex;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use steerfeed::ann::{HnswBuildParams, VectorStorage};
use steerfeed::world::vectors::dataset;

use self::run::{AnnBench, exact_ground_truth, run};
use self::texmex::{read_fvecs, read_ivecs, write_fvecs, write_ivecs};

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
    /// Query threads (each runs one query per call).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How the graph holds vectors for its walk: f32, or int8 codes with the best
    /// candidates rescored exactly.
    #[arg(long, default_value = "f32", value_parser = parse_storage)]
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
    /// Write the vectors (and exact ground truth) as base.fvecs, query.fvecs, gt.ivecs
    /// into this folder, then exit: the same files can then be given to other libraries.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Load the built index from this file if it is there (same data), else build and
    /// save it there; for repeated runs on large sets.
    #[arg(long)]
    index_cache: Option<PathBuf>,
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
    Ok((
        n.parse().context("N")?,
        dim.parse().context("DIM")?,
        seed.parse().context("SEED")?,
    ))
}

/// Runs the benchmark and prints one JSON object per line.
pub fn ann(args: AnnArgs) -> anyhow::Result<()> {
    let (base, queries, dim, gt) = match &args.synthetic {
        Some(spec) => {
            let (n, dim, seed) = parse_synthetic(spec)?;
            if n == 0 || dim == 0 || args.queries == 0 {
                bail!("--synthetic needs N, DIM and --queries above zero");
            }
            let (base, queries) = dataset(n, args.queries, dim, seed);
            (base, queries, dim, None)
        }
        None => {
            let (Some(b), Some(q)) = (&args.base, &args.query) else {
                bail!("give --base and --query, or --synthetic N,DIM,SEED");
            };
            let (base, dim) = read_fvecs(b, None)?;
            let (queries, qdim) = read_fvecs(q, None)?;
            if dim != qdim {
                bail!("base vectors have {dim} dimensions, queries {qdim}");
            }
            let gt = args
                .gt
                .as_deref()
                .map(|p| read_ivecs(p, None))
                .transpose()?;
            if let Some((_, gt_k)) = &gt
                && *gt_k < args.k
            {
                bail!(
                    "ground truth has {gt_k} neighbours per query, fewer than --k {}",
                    args.k
                );
            }
            (base, queries, dim, gt)
        }
    };
    if base.is_empty() || queries.is_empty() {
        bail!("no vectors to benchmark");
    }
    if let Some(dir) = &args.write {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_fvecs(&dir.join("base.fvecs"), &base, dim)?;
        write_fvecs(&dir.join("query.fvecs"), &queries, dim)?;
        let truth = exact_ground_truth(&base, &queries, dim, args.k.max(100), None)?;
        let flat: Vec<i32> = truth
            .iter()
            .flat_map(|r| r.iter().map(|&x| x as i32))
            .collect();
        write_ivecs(&dir.join("gt.ivecs"), &flat, args.k.max(100))?;
        eprintln!(
            "wrote base.fvecs, query.fvecs and gt.ivecs to {}",
            dir.display()
        );
        return Ok(());
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
        threads: args.threads,
        allow: args.allow,
        topics: args.topics,
        index_cache: args.index_cache,
    };
    for row in run(&bench)? {
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}
