//! Criterion benches and a quality comparison of the diversity selector.
//!
//! Candidates: the 1,000 videos of a seeded `steerfeed_world::World` (384-dimensional
//! clustered embeddings, 39 topics), scored for one viewer as
//! `0.8·cos(video, interest) + 0.2·noise`, where the interest vector is the centroid of the
//! viewer's main topics; so plain top-k is topically concentrated, as a real scorer's is.
//!
//! Timing (`cargo bench -p steerfeed-rank --bench select`): `top_k`, MMR and DPP at
//! limit 20 and 100, pool 200, 1,000 candidates in. The page length is asserted inside
//! the loop so the work cannot be optimised away.
//!
//! Quality (printed to stderr before the timings): over 30 viewers at limit 20, the
//! mean pairwise cosine similarity of the page, the distinct topics on it, and the share
//! of the top-20 by score that stays on it; for the re-rank alone (caps and decay off)
//! and for the full policy.
//!
//! Under `cargo test` (no `--bench` flag) the comparison runs on 5 viewers and each
//! timed case once, so the bench is compiled and exercised without the cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use steerfeed_core::pipeline::TopK;
use steerfeed_core::vector::dot;
use steerfeed_core::{Candidate, FeedContext, FeedRequest, Reason, Selector, User, UserId};
use steerfeed_rank::selectors::{DiversityMethod, DiversitySelector, SelectorConfig};
use steerfeed_world::{World, WorldConfig};

const SEED: u64 = 42;
const VIDEOS: usize = 1000;

fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn world() -> World {
    let mut config = WorldConfig::new(SEED, 400, VIDEOS);
    config.events_per_user = 0;
    World::generate(config)
}

/// A deterministic uniform number in `[0, 1)` from `(a, b)` (splitmix64).
fn noise(a: u64, b: u64) -> f32 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// The world's videos scored for viewer `u`, best first.
fn candidates(world: &World, u: usize) -> Vec<Candidate> {
    let dim = world.config.dim;
    let mut interest = vec![0.0f32; dim];
    for &(t, w) in &world.users[u].interests {
        for (v, _) in world
            .videos
            .iter()
            .zip(&world.video_topic)
            .filter(|(_, vt)| **vt == t)
        {
            if let Some(e) = &v.embedding {
                interest
                    .iter_mut()
                    .zip(e.as_slice())
                    .for_each(|(a, b)| *a += w * b);
            }
        }
    }
    let norm = dot(&interest, &interest).sqrt().max(f32::MIN_POSITIVE);
    interest.iter_mut().for_each(|x| *x /= norm);
    let mut out: Vec<Candidate> = world
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let sim = v
                .embedding
                .as_ref()
                .map_or(0.0, |e| dot(e.as_slice(), &interest));
            let mut c = Candidate::new(Arc::new(v.clone()), "bench", sim, Reason::Popular);
            c.score = 0.8 * sim + 0.2 * noise(u as u64, i as u64);
            c
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id().cmp(b.id())));
    out
}

fn context(user: &str, limit: u32) -> FeedContext {
    let id = UserId::new(user).unwrap();
    FeedContext::new(
        FeedRequest::new(id.clone(), limit).unwrap(),
        User::new(id),
        steerfeed_core::Timestamp::UNIX_EPOCH,
    )
}

fn config(method: DiversityMethod, policy: bool) -> SelectorConfig {
    let mut c = SelectorConfig {
        method,
        ..SelectorConfig::default()
    };
    if !policy {
        c.topic_cap = c.topic_window;
        c.author_decay_floor = 1.0;
    }
    c
}

/// Mean pairwise cosine similarity, distinct topics, share of the top `limit` kept, and
/// the page's total score as a share of the top `limit`'s.
fn quality(page: &[Candidate], all: &[Candidate], limit: usize) -> [f64; 4] {
    let mut sum = 0.0f64;
    let mut pairs = 0usize;
    for (i, a) in page.iter().enumerate() {
        for b in &page[i + 1..] {
            if let (Some(x), Some(y)) = (&a.video.embedding, &b.video.embedding) {
                sum += f64::from(dot(x.as_slice(), y.as_slice()));
            }
            pairs += 1;
        }
    }
    let topics: HashSet<_> = page.iter().flat_map(|c| c.video.topics.iter()).collect();
    let top: HashSet<_> = all.iter().take(limit).map(|c| c.id()).collect();
    let kept = page.iter().filter(|c| top.contains(c.id())).count();
    let score =
        |cs: &mut dyn Iterator<Item = &Candidate>| -> f64 { cs.map(|c| f64::from(c.score)).sum() };
    [
        sum / pairs.max(1) as f64,
        topics.len() as f64,
        kept as f64 / limit as f64,
        score(&mut page.iter()) / score(&mut all.iter().take(limit)),
    ]
}

#[allow(clippy::print_stderr)]
fn compare(world: &World) {
    let limit = 20;
    let viewers = if benching() { 30 } else { 5 };
    let ctx = context("viewer", limit as u32);
    let mut runs: Vec<(String, Box<dyn Selector>)> = vec![("top_k".into(), Box::new(TopK))];
    for policy in [false, true] {
        let tag = if policy {
            "full policy"
        } else {
            "re-rank only"
        };
        for lambda in [0.5, 0.7, 0.9] {
            let mut c = config(DiversityMethod::Mmr, policy);
            c.mmr_lambda = lambda;
            runs.push((
                format!("mmr λ={lambda} ({tag})"),
                Box::new(DiversitySelector::new(c).unwrap()),
            ));
        }
        for window in [5, 10, 20] {
            let mut c = config(DiversityMethod::Dpp, policy);
            c.dpp_window = window;
            runs.push((
                format!("dpp w={window} ({tag})"),
                Box::new(DiversitySelector::new(c).unwrap()),
            ));
        }
    }
    let sets: Vec<Vec<Candidate>> = (0..viewers).map(|u| candidates(world, u)).collect();
    eprintln!("quality over {viewers} viewers, {VIDEOS} candidates, limit {limit}:");
    eprintln!(
        "{:<32} {:>9} {:>8} {:>9}",
        "selector", "mean sim", "topics", "top kept"
    );
    for (name, sel) in &runs {
        let mut acc = [0.0; 4];
        for set in &sets {
            let page = sel.select(&ctx, set.clone(), limit).unwrap();
            assert_eq!(page.len(), limit, "{name}");
            let q = quality(&page, set, limit);
            acc.iter_mut().zip(q).for_each(|(a, q)| *a += q);
        }
        let n = sets.len() as f64;
        eprintln!(
            "{name:<32} {:>9.3} {:>8.1} {:>8.0}% {:>10.1}%",
            acc[0] / n,
            acc[1] / n,
            100.0 * acc[2] / n,
            100.0 * acc[3] / n
        );
    }
}

fn bench(c: &mut Criterion, world: &World) {
    let set = candidates(world, 0);
    let mut cases: Vec<(&str, Box<dyn Selector>)> = vec![("top_k", Box::new(TopK))];
    for (name, method) in [("mmr", DiversityMethod::Mmr), ("dpp", DiversityMethod::Dpp)] {
        cases.push((
            name,
            Box::new(DiversitySelector::new(config(method, true)).unwrap()),
        ));
    }
    for limit in [20usize, 100] {
        let ctx = context("viewer", limit as u32);
        for (name, sel) in &cases {
            c.bench_function(
                &format!("select/{name}/1000x384/pool200/limit{limit}"),
                |b| {
                    b.iter_batched(
                        || set.clone(),
                        |cands| {
                            let page = sel.select(&ctx, black_box(cands), limit).unwrap();
                            assert_eq!(page.len(), limit);
                            page
                        },
                        BatchSize::SmallInput,
                    );
                },
            );
        }
    }
}

fn main() {
    let world = world();
    compare(&world);
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, &world);
    c.final_summary();
}
