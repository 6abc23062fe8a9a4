//! The whole ranking step for 1,000 candidates: gate throttles, the eight filters, the
//! objective scorer, the diversity selector and the inline throttles, on in-memory ports
//! built from a seeded 384-dimensional world. The candidates come from a fixed source so
//! the number measures ranking, not retrieval. Target: under 2 ms on the 2-core machine.
//!
//! `cargo bench -p steerfeed-rank --bench rank`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use steerfeed_core::{Candidate, FeedContext, Pipeline, Reason, Result, Source};
use steerfeed_rank::{RankConfig, ranking_stages};
use steerfeed_world::{World, WorldConfig};

struct Fixed(Vec<Candidate>);

impl Source for Fixed {
    fn fetch(&self, _: &FeedContext) -> Result<Vec<Candidate>> {
        Ok(self.0.clone())
    }
    fn name(&self) -> &'static str {
        "fixed"
    }
}

fn bench(c: &mut Criterion) {
    let w = World::generate(WorldConfig::new(3, 2_000, 20_000));
    let mem = Arc::new(support::Mem::from_world(&w));
    let ports = support::ports(mem.clone(), &[]);
    let user = "u1";
    let ctx = mem.ctx(user, w.config.now, 20);
    // As the sources would propose them: the 600 videos nearest the viewer's interest
    // (interest, steering, co-engagement) and 400 from across the catalog (following,
    // popular, fresh).
    let interest = ctx.interest.clone().unwrap();
    let mut scored: Vec<(f32, usize)> = w
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| (v.embedding.as_ref().unwrap().dot(&interest), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let spread = scored.len().saturating_sub(600) / 400;
    let candidates: Vec<Candidate> = scored
        .iter()
        .take(600)
        .chain(scored.iter().skip(600).step_by(spread.max(1)).take(400))
        .map(|&(s, i)| {
            Candidate::new(
                mem.video(w.videos[i].id.as_str()),
                "interest_ann",
                s,
                Reason::Interest { topic: None },
            )
        })
        .collect();
    let pipeline = ranking_stages(
        Pipeline::builder().source(Fixed(candidates)),
        &RankConfig::default(),
        &ports,
    )
    .unwrap()
    .build()
    .unwrap();
    let out = pipeline.run(&ctx).unwrap();
    assert_eq!(out.items.len(), 20);

    c.bench_function("rank_1000_candidates_limit20", |b| {
        b.iter(|| pipeline.run(&ctx).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
