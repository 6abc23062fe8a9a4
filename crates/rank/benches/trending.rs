//! The trending list's two costs: recording one engagement (every ingested event pays
//! it, inside the co-engagement index's write lock) and reading the top 60 (every fully
//! ranked request pays it, before the 60 catalogue lookups every stats source makes). The
//! index holds a day of engagement over 100,000 videos, skewed so the list is full and
//! most videos have support. Run as a test (`cargo test --all-targets`), it checks the
//! same on a world a hundred times smaller.
//!
//! `cargo bench -p steerfeed-rank --bench trending`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use steerfeed_core::ports::Trending;
use steerfeed_core::{EventKind, Timestamp, UserId, VideoId};
use steerfeed_rank::{CoEngagementIndex, CoEngagementParams};

const START_S: i64 = 1_800_000_000;

fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A fixed, skewed stream over `videos`: video `k` with probability about 1/k (a rough
/// power law).
fn pick(x: &mut u64, videos: u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    let u = (*x >> 11) as f64 / (1u64 << 53) as f64;
    ((videos as f64).powf(u) as u64).min(videos - 1)
}

fn bench(c: &mut Criterion) {
    let (n_videos, events): (u64, u64) = if benching() {
        (100_000, 1_000_000)
    } else {
        (1_000, 20_000)
    };
    let index = CoEngagementIndex::new(CoEngagementParams::default());
    let users: Vec<UserId> = (0..10_000)
        .map(|i| UserId::new(format!("u{i}")).unwrap())
        .collect();
    let videos: Vec<VideoId> = (0..n_videos)
        .map(|i| VideoId::new(format!("v{i}")).unwrap())
        .collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..events {
        let at = Timestamp::from_second(START_S + (i * 86_400 / events) as i64).unwrap();
        let kind = EventKind::Like {
            video: videos[pick(&mut x, n_videos) as usize].clone(),
        };
        index.record(&users[(i % 10_000) as usize], &kind, at);
    }
    let now = Timestamp::from_second(START_S + 86_400).unwrap();
    assert_eq!(index.trending(now, 60).unwrap().len(), 60);
    c.bench_function("trending_top60_of_100k_videos", |b| {
        b.iter(|| index.trending(now, 60).unwrap())
    });
    let mut i = 0u64;
    c.bench_function("co_engagement_and_trending_record_one_like", |b| {
        b.iter(|| {
            i += 1;
            let kind = EventKind::Like {
                video: videos[pick(&mut x, n_videos) as usize].clone(),
            };
            index.record(&users[(i % 10_000) as usize], &kind, now);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
