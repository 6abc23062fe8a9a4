#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tests of the diversity selector.
//!
//! 1. Invariants on random candidate sets (proptest): page length ≤ limit, no duplicates,
//!    every output an unchanged input, the topic cap and the teen cap in every window,
//!    "less from following" at most its share, and a short page only when no leftover
//!    candidate could take the next slot.
//! 2. Author decay: a creator with many top-scored items does not fill the page when
//!    others are close in score; with decay off it does.
//! 3. Following share from steering: "more" gives followed creators at least half of
//!    every prefix when enough exist; "less" at most a tenth.
//! 4. Hard caps end the page: one topic only gives 3 items; a teen gets 1 sensitive item
//!    per 10; candidates beyond the pool fill in when the pool is capped out.
//! 5. Diversity: MMR and DPP lower the page's mean pairwise similarity against plain
//!    top-k on a clustered `steerfeed_world` world.
//! 6. Author decay as a property: with diversity and caps out of the way, the page is
//!    exactly the greedy order of normalised score × `(1 − 0.25)·0.5^k + 0.25`.
//! 7. Config: `{}` is the default, unknown fields are rejected, nonsense is rejected by
//!    `validate` and `DiversitySelector::new`.
//! 8. Every slot of the page fill is a greedy choice by the definitions
//!    (`support/slate_reference.rs`: the rules and the MMR or DPP objective recomputed from
//!    scratch in f64, no code shared with the selector), on random items, configs and
//!    rules, duplicate ids included.

#[path = "support/slate_reference.rs"]
mod slate_reference;

use std::collections::HashSet;
use std::sync::Arc;

use proptest::prelude::*;
use steerfeed_core::pipeline::TopK;
use steerfeed_core::vector::dot;
use steerfeed_core::{
    AgeBand, Candidate, Embedding, FeedContext, FeedRequest, Reason, SafetyLabel, Selector, Shift,
    Timestamp, TopicId, User, UserId, Video, VideoId,
};
use steerfeed_rank::selectors::{
    DiversityMethod, DiversitySelector, PageRules, SelectorConfig, SlateItem, select_slate,
};
use steerfeed_world::{World, WorldConfig};

const DIM: usize = 8;

fn u(i: usize) -> UserId {
    UserId::new(format!("c{i}")).unwrap()
}

fn t(i: usize) -> TopicId {
    TopicId::new(format!("t{i}")).unwrap()
}

/// One test candidate.
#[derive(Debug, Clone)]
struct Spec {
    creator: usize,
    topics: Vec<usize>,
    label: Option<SafetyLabel>,
    embedding: Option<Vec<f32>>,
    score: f32,
}

impl Spec {
    fn new(creator: usize, topics: &[usize], score: f32) -> Self {
        Self {
            creator,
            topics: topics.to_vec(),
            label: None,
            embedding: None,
            score,
        }
    }
}

/// Candidates from specs, ids `v0, v1, ...` in spec order, sorted by score descending.
fn candidates(specs: &[Spec]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = Video::new(
                VideoId::new(format!("v{i}")).unwrap(),
                u(s.creator),
                Timestamp::UNIX_EPOCH,
                10.0,
            );
            v.topics = s.topics.iter().map(|&x| t(x)).collect();
            v.safety = s.label.into_iter().collect();
            v.embedding = s
                .embedding
                .as_ref()
                .and_then(|e| Embedding::new("e", e, DIM).ok());
            let mut c = Candidate::new(Arc::new(v), "test", 0.0, Reason::Popular);
            c.score = s.score;
            c
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id().cmp(b.id())));
    out
}

fn context(limit: usize, teen: bool, following: &[usize], shift: Option<Shift>) -> FeedContext {
    let me = UserId::new("viewer").unwrap();
    let mut ctx = FeedContext::new(
        FeedRequest::new(me.clone(), limit as u32).unwrap(),
        User::new(me),
        Timestamp::UNIX_EPOCH,
    );
    ctx.viewer.following = following.iter().map(|&i| u(i)).collect();
    ctx.constraints.following = shift;
    if teen {
        ctx.user.age_band = AgeBand::Teen;
    }
    ctx
}

fn select(config: SelectorConfig, ctx: &FeedContext, cands: Vec<Candidate>) -> Vec<Candidate> {
    DiversitySelector::new(config)
        .unwrap()
        .select(ctx, cands, ctx.request.limit())
        .unwrap()
}

fn followed(ctx: &FeedContext, c: &Candidate) -> bool {
    ctx.viewer.following.contains(&c.video.creator)
}

/// True when no window of `window` consecutive items of `page` has more than `cap` items
/// carrying one topic (reference check, independent of the selector's).
fn topic_cap_holds(page: &[&Candidate], cap: usize, window: usize) -> bool {
    (0..page.len()).all(|start| {
        let w = &page[start..(start + window).min(page.len())];
        let topics: HashSet<&TopicId> = w.iter().flat_map(|c| &c.video.topics).collect();
        topics
            .iter()
            .all(|tp| w.iter().filter(|c| c.video.topics.contains(tp)).count() <= cap)
    })
}

/// True when no window of `window` consecutive items has more than `cap` labelled ones.
fn sensitive_cap_holds(page: &[&Candidate], cap: usize, window: usize) -> bool {
    (0..page.len()).all(|start| {
        let w = &page[start..(start + window).min(page.len())];
        w.iter().filter(|c| !c.video.safety.is_empty()).count() <= cap
    })
}

fn less_allowed(share: f32, len: usize) -> usize {
    (f64::from(share) * len as f64 + 1e-9).floor() as usize
}

fn more_needed(share: f32, len: usize) -> usize {
    (f64::from(share) * len as f64 - 1e-9).ceil() as usize
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        0..8usize,
        prop::collection::vec(0..6usize, 0..=2),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![
                SafetyLabel::Violence,
                SafetyLabel::Sensitive,
                SafetyLabel::WeightLoss,
                SafetyLabel::Sad,
                SafetyLabel::Mature,
            ]),
        ),
        prop::option::weighted(0.85, prop::collection::vec(-1.0f32..1.0, DIM)),
        -2.0f32..2.0,
    )
        .prop_map(|(creator, topics, label, embedding, score)| Spec {
            creator,
            topics,
            label,
            embedding,
            score,
        })
}

fn config_strategy() -> impl Strategy<Value = SelectorConfig> {
    (
        prop::bool::ANY,
        0.0f32..=1.0,
        1..12usize,
        1..150usize,
        1..5usize,
        1..13usize,
        0..3usize,
        1..13usize,
    )
        .prop_map(
            |(dpp, lambda, window, pool, topic_cap, topic_window, teen_cap, teen_window)| {
                SelectorConfig {
                    method: if dpp {
                        DiversityMethod::Dpp
                    } else {
                        DiversityMethod::Mmr
                    },
                    mmr_lambda: lambda,
                    dpp_window: window,
                    pool,
                    topic_cap,
                    topic_window,
                    teen_sensitive_cap: teen_cap,
                    teen_sensitive_window: teen_window,
                    ..SelectorConfig::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_page_keeps_the_hard_caps_and_the_candidates(
        specs in prop::collection::vec(spec_strategy(), 0..120),
        config in prop_oneof![Just(SelectorConfig::default()), config_strategy()],
        limit in 1..=60usize,
        teen in prop::bool::ANY,
        following in prop::collection::vec(0..8usize, 0..5),
        shift in prop::option::of(prop_oneof![Just(Shift::More), Just(Shift::Less)]),
    ) {
        let ctx = context(limit, teen, &following, shift);
        let input = candidates(&specs);
        let page = select(config, &ctx, input.clone());

        prop_assert!(page.len() <= limit);
        let ids: HashSet<&VideoId> = page.iter().map(|c| c.id()).collect();
        prop_assert_eq!(ids.len(), page.len(), "duplicates on the page");
        for c in &page {
            let orig = input.iter().find(|i| i.id() == c.id());
            prop_assert!(orig.is_some(), "{} was not an input", c.id());
            prop_assert_eq!(orig.unwrap().score.to_bits(), c.score.to_bits());
        }
        let refs: Vec<&Candidate> = page.iter().collect();
        prop_assert!(topic_cap_holds(&refs, config.topic_cap, config.topic_window));
        if teen {
            prop_assert!(sensitive_cap_holds(
                &refs,
                config.teen_sensitive_cap,
                config.teen_sensitive_window
            ));
        }
        let n_followed = page.iter().filter(|c| followed(&ctx, c)).count();
        if shift == Some(Shift::Less) {
            prop_assert!(n_followed <= less_allowed(config.following_less, page.len()));
        }

        // A short page: no leftover candidate could take the next slot.
        if page.len() < limit {
            for c in input.iter().filter(|c| !ids.contains(c.id())) {
                let mut longer = refs.clone();
                longer.push(c);
                let topic_ok = topic_cap_holds(&longer, config.topic_cap, config.topic_window);
                let teen_ok = !teen
                    || sensitive_cap_holds(
                        &longer,
                        config.teen_sensitive_cap,
                        config.teen_sensitive_window,
                    );
                let less_ok = shift != Some(Shift::Less)
                    || !followed(&ctx, c)
                    || n_followed < less_allowed(config.following_less, longer.len());
                prop_assert!(
                    !(topic_ok && teen_ok && less_ok),
                    "page ended at {} though {} could take the slot",
                    page.len(),
                    c.id()
                );
            }
        }
    }

    #[test]
    fn more_from_following_fills_every_prefix_when_enough_exist(
        scores in prop::collection::vec(0.0f32..1.0, 60),
        dpp in prop::bool::ANY,
        limit in 1..=30usize,
    ) {
        // 30 followed (creators 0..2) and 30 not (3..5); no topics, labels or embeddings,
        // so only the share and author decay shape the page.
        let specs: Vec<Spec> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| Spec::new(if i < 30 { i % 3 } else { 3 + i % 3 }, &[], s))
            .collect();
        let ctx = context(limit, false, &[0, 1, 2], Some(Shift::More));
        let config = SelectorConfig {
            method: if dpp { DiversityMethod::Dpp } else { DiversityMethod::Mmr },
            ..SelectorConfig::default()
        };
        let page = select(config, &ctx, candidates(&specs));
        prop_assert_eq!(page.len(), limit);
        let mut n = 0;
        for (len, c) in page.iter().enumerate() {
            n += usize::from(followed(&ctx, c));
            prop_assert!(n >= more_needed(0.5, len + 1), "prefix {} has {} followed", len + 1, n);
        }
    }
}

#[test]
fn author_decay_keeps_one_creator_from_filling_the_page() {
    // Creator 0 has the 15 best items (1.00, 0.99, ...); 15 other creators follow close
    // behind (0.905, 0.90, ...). Distinct topics and no embeddings: only decay matters.
    let mut specs: Vec<Spec> = (0..15)
        .map(|i| Spec::new(0, &[i], 1.0 - 0.01 * i as f32))
        .collect();
    specs.extend((0..15).map(|i| Spec::new(1 + i, &[100 + i], 0.905 - 0.005 * i as f32)));
    let ctx = context(10, false, &[], None);
    for method in [DiversityMethod::Mmr, DiversityMethod::Dpp] {
        let config = SelectorConfig {
            method,
            ..SelectorConfig::default()
        };
        let page = select(config, &ctx, candidates(&specs));
        assert_eq!(page.len(), 10);
        assert_eq!(
            page[0].id().as_str(),
            "v0",
            "{method:?}: the best item leads"
        );
        let top = page.iter().filter(|c| c.video.creator == u(0)).count();
        assert!(top <= 4, "{method:?}: creator 0 has {top} of 10");

        let no_decay = SelectorConfig {
            author_decay_floor: 1.0,
            ..config
        };
        let page = select(no_decay, &ctx, candidates(&specs));
        let top = page.iter().filter(|c| c.video.creator == u(0)).count();
        assert_eq!(
            top, 10,
            "{method:?}: without decay the top creator fills the page"
        );
    }
}

#[test]
fn more_and_less_from_following_move_the_share_both_ways() {
    // Followed creators (0..4) score below the rest (10..14) everywhere.
    let mut specs: Vec<Spec> = (0..40)
        .map(|i| Spec::new(10 + i % 5, &[], 0.9 - 0.001 * i as f32))
        .collect();
    specs.extend((0..40).map(|i| Spec::new(i % 5, &[], 0.8 - 0.001 * i as f32)));
    let share = |specs: &[Spec], shift| {
        let ctx = context(20, false, &[0, 1, 2, 3, 4], shift);
        let page = select(SelectorConfig::default(), &ctx, candidates(specs));
        assert_eq!(page.len(), 20);
        page.iter().filter(|c| followed(&ctx, c)).count()
    };
    assert_eq!(share(&specs, None), 0);
    assert!(share(&specs, Some(Shift::More)) >= 10);

    // Now followed creators score above: "less" caps them at 2 of 20.
    for s in &mut specs {
        s.score = if s.creator < 5 {
            s.score + 0.5
        } else {
            s.score
        };
    }
    assert!(share(&specs, None) >= 15);
    assert_eq!(share(&specs, Some(Shift::Less)), 2);
}

#[test]
fn a_topic_cap_the_pool_cannot_meet_ends_the_page() {
    let specs: Vec<Spec> = (0..30)
        .map(|i| Spec::new(i, &[7], 1.0 - 0.01 * i as f32))
        .collect();
    let ctx = context(20, false, &[], None);
    let page = select(SelectorConfig::default(), &ctx, candidates(&specs));
    assert_eq!(
        page.len(),
        3,
        "3 of one topic in any 10, and nothing else to add"
    );
}

#[test]
fn candidates_beyond_the_pool_fill_in_when_the_pool_is_capped_out() {
    // The pool of 5 is all topic 7; the rest carry distinct topics.
    let mut specs: Vec<Spec> = (0..5)
        .map(|i| Spec::new(i, &[7], 1.0 - 0.01 * i as f32))
        .collect();
    specs.extend((0..20).map(|i| Spec::new(10 + i, &[100 + i], 0.5 - 0.01 * i as f32)));
    let ctx = context(10, false, &[], None);
    let config = SelectorConfig {
        pool: 5,
        ..SelectorConfig::default()
    };
    let page = select(config, &ctx, candidates(&specs));
    assert_eq!(page.len(), 10);
    let on_topic = page
        .iter()
        .filter(|c| c.video.topics.contains(&t(7)))
        .count();
    assert_eq!(on_topic, 3);
}

#[test]
fn teens_get_one_sensitive_item_in_ten_and_adults_are_not_capped() {
    let specs: Vec<Spec> = (0..40)
        .map(|i| {
            let mut s = Spec::new(i, &[], 1.0 - 0.01 * i as f32);
            if i < 20 {
                s.label = Some(SafetyLabel::Sad);
            }
            s
        })
        .collect();
    let sensitive = |page: &[Candidate]| page.iter().filter(|c| !c.video.safety.is_empty()).count();
    let teen = context(20, true, &[], None);
    let page = select(SelectorConfig::default(), &teen, candidates(&specs));
    assert_eq!(page.len(), 20);
    let refs: Vec<&Candidate> = page.iter().collect();
    assert!(sensitive_cap_holds(&refs, 1, 10));
    assert_eq!(sensitive(&page), 2);
    let adult = context(20, false, &[], None);
    let page = select(SelectorConfig::default(), &adult, candidates(&specs));
    assert_eq!(sensitive(&page), 20);
}

/// Candidates from a clustered world's videos, scored for viewer `v` by closeness to
/// the centroid of their main topic plus seeded noise, best first.
fn world_candidates(world: &World, v: usize) -> Vec<Candidate> {
    let (main, _) = world.users[v].interests[0];
    let dim = world.config.dim;
    let mut centre = vec![0.0f32; dim];
    for (video, _) in world
        .videos
        .iter()
        .zip(&world.video_topic)
        .filter(|(_, t)| **t == main)
    {
        if let Some(e) = &video.embedding {
            centre
                .iter_mut()
                .zip(e.as_slice())
                .for_each(|(a, b)| *a += b);
        }
    }
    let norm = dot(&centre, &centre).sqrt().max(f32::MIN_POSITIVE);
    centre.iter_mut().for_each(|x| *x /= norm);
    let mut out: Vec<Candidate> = world
        .videos
        .iter()
        .enumerate()
        .map(|(i, video)| {
            let sim = video
                .embedding
                .as_ref()
                .map_or(0.0, |e| dot(e.as_slice(), &centre));
            let mut c = Candidate::new(Arc::new(video.clone()), "test", sim, Reason::Popular);
            let noise = ((i * 7919 + v * 104_729) % 1000) as f32 / 1000.0;
            c.score = 0.8 * sim + 0.2 * noise;
            c
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id().cmp(b.id())));
    out
}

fn mean_pairwise_similarity(page: &[Candidate]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for (i, a) in page.iter().enumerate() {
        for b in &page[i + 1..] {
            let (x, y) = (a.video.embedding.as_ref(), b.video.embedding.as_ref());
            sum += f64::from(x.zip(y).map_or(0.0, |(x, y)| x.dot(y)));
            n += 1;
        }
    }
    sum / f64::from(n.max(1))
}

#[test]
fn mmr_and_dpp_lower_similarity_against_top_k_on_a_clustered_world() {
    let mut wc = WorldConfig::new(11, 200, 600);
    wc.dim = 64;
    wc.events_per_user = 0;
    let world = World::generate(wc);
    let ctx = context(20, false, &[], None);
    let rerank_only = |method, lambda| SelectorConfig {
        method,
        mmr_lambda: lambda,
        topic_cap: 10,
        author_decay_floor: 1.0,
        ..SelectorConfig::default()
    };
    let selectors: Vec<(&str, Box<dyn Selector>)> = vec![
        ("top_k", Box::new(TopK)),
        (
            "mmr",
            Box::new(DiversitySelector::new(rerank_only(DiversityMethod::Mmr, 0.5)).unwrap()),
        ),
        (
            "dpp",
            Box::new(DiversitySelector::new(rerank_only(DiversityMethod::Dpp, 0.5)).unwrap()),
        ),
        (
            "default",
            Box::new(DiversitySelector::new(SelectorConfig::default()).unwrap()),
        ),
    ];
    let viewers = 5u32;
    let mut mean = vec![0.0; selectors.len()];
    for v in 0..viewers {
        let cands = world_candidates(&world, v as usize);
        for (k, (name, sel)) in selectors.iter().enumerate() {
            let page = sel.select(&ctx, cands.clone(), 20).unwrap();
            assert_eq!(page.len(), 20, "{name}");
            mean[k] += mean_pairwise_similarity(&page) / f64::from(viewers);
        }
    }
    let [top_k, mmr, dpp, default] = mean[..] else {
        unreachable!()
    };
    assert!(
        top_k > 0.3,
        "the world is clustered: top-k similarity {top_k}"
    );
    assert!(mmr < top_k - 0.03, "mmr {mmr} vs top-k {top_k}");
    assert!(dpp < top_k - 0.03, "dpp {dpp} vs top-k {top_k}");
    assert!(default < top_k / 2.0, "default {default} vs top-k {top_k}");
}

#[test]
fn the_selector_is_named_diversity_and_leaves_scores_alone() {
    let sel = DiversitySelector::default();
    assert_eq!(sel.name(), "diversity");
    let specs: Vec<Spec> = (0..5)
        .map(|i| Spec::new(0, &[], 1.0 - 0.1 * i as f32))
        .collect();
    let input = candidates(&specs);
    let page = sel
        .select(&context(5, false, &[], None), input.clone(), 5)
        .unwrap();
    assert_eq!(page.len(), 5);
    for c in &page {
        let orig = input.iter().find(|i| i.id() == c.id()).unwrap();
        assert_eq!(orig.score, c.score);
        assert_eq!(orig.breakdown, c.breakdown);
    }
    assert!(
        sel.select(&context(5, false, &[], None), Vec::new(), 5)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn config_json_defaults_and_rejects_unknown_fields() {
    let c: SelectorConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, SelectorConfig::default());
    assert_eq!(c.pool, 200);
    assert_eq!(c.author_decay_floor, 0.25);
    assert_eq!(c.author_decay_factor, 0.5);
    assert_eq!((c.topic_cap, c.topic_window), (3, 10));
    assert_eq!((c.teen_sensitive_cap, c.teen_sensitive_window), (1, 10));
    let c: SelectorConfig = serde_json::from_str(r#"{"method": "dpp", "dpp_window": 5}"#).unwrap();
    assert_eq!((c.method, c.dpp_window), (DiversityMethod::Dpp, 5));
    let back: SelectorConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<SelectorConfig>(r#"{"poool": 5}"#).is_err());
    assert!(serde_json::from_str::<SelectorConfig>(r#"{"method": "random"}"#).is_err());
}

#[test]
fn author_decay_follows_the_home_mixer_formula() {
    let c = SelectorConfig::default();
    for (k, want) in [(0, 1.0), (1, 0.625), (2, 0.4375), (3, 0.34375)] {
        assert!((c.author_decay(k) - want).abs() < 1e-6, "k={k}");
    }
    assert!((c.author_decay(60) - 0.25).abs() < 1e-6);
}

#[test]
fn nonsense_configs_are_rejected_with_the_field_named() {
    let d = SelectorConfig::default;
    let cases = [
        (
            "mmr_lambda",
            SelectorConfig {
                mmr_lambda: f32::NAN,
                ..d()
            },
        ),
        (
            "mmr_lambda",
            SelectorConfig {
                mmr_lambda: 1.5,
                ..d()
            },
        ),
        (
            "dpp_window",
            SelectorConfig {
                dpp_window: 0,
                ..d()
            },
        ),
        (
            "dpp_window",
            SelectorConfig {
                dpp_window: 1000,
                ..d()
            },
        ),
        ("pool", SelectorConfig { pool: 0, ..d() }),
        (
            "author_decay_floor",
            SelectorConfig {
                author_decay_floor: -0.1,
                ..d()
            },
        ),
        (
            "author_decay_factor",
            SelectorConfig {
                author_decay_factor: f32::INFINITY,
                ..d()
            },
        ),
        (
            "topic_cap",
            SelectorConfig {
                topic_cap: 0,
                ..d()
            },
        ),
        (
            "topic_window",
            SelectorConfig {
                topic_window: 0,
                ..d()
            },
        ),
        (
            "teen_sensitive_window",
            SelectorConfig {
                teen_sensitive_window: 0,
                ..d()
            },
        ),
        (
            "following_more",
            SelectorConfig {
                following_more: 1.01,
                ..d()
            },
        ),
        (
            "following_less",
            SelectorConfig {
                following_less: -1.0,
                ..d()
            },
        ),
    ];
    for (field, c) in cases {
        assert_eq!(c.validate().unwrap_err().field(), Some(field));
        assert!(DiversitySelector::new(c).is_err(), "{field}");
    }
    d().validate().unwrap();
    SelectorConfig {
        teen_sensitive_cap: 0,
        ..d()
    }
    .validate()
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn with_diversity_off_the_page_is_the_greedy_order_of_decayed_scores(
        raw in proptest::collection::vec((0usize..5, -5.0f32..5.0), 1..40),
        limit in 1usize..30,
    ) {
        let specs: Vec<Spec> = raw.iter().map(|&(c, s)| Spec::new(c, &[], s)).collect();
        let cands = candidates(&specs);
        let config = SelectorConfig {
            method: DiversityMethod::Mmr,
            mmr_lambda: 1.0,
            pool: 1_000,
            ..SelectorConfig::default()
        };
        let ctx = context(limit, false, &[], None);
        let page = select(config, &ctx, cands.clone());

        // The reference: normalise the scores to [0, 1], then repeatedly take the best
        // score × decay(items of that creator already taken), ties to the earlier item.
        let lo = cands.iter().map(|c| c.score).fold(f32::INFINITY, f32::min);
        let hi = cands.iter().map(|c| c.score).fold(f32::NEG_INFINITY, f32::max);
        let rel = |s: f32| if hi > lo { (s - lo) / (hi - lo) } else { 0.0 };
        let mut taken = vec![false; cands.len()];
        let mut per: std::collections::HashMap<&UserId, usize> = Default::default();
        let mut expected = Vec::new();
        for _ in 0..limit.min(cands.len()) {
            let mut best: Option<(f32, usize)> = None;
            for (i, c) in cands.iter().enumerate().filter(|(i, _)| !taken[*i]) {
                let k = per.get(&c.video.creator).copied().unwrap_or(0);
                let v = rel(c.score) * config.author_decay(k);
                if best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, i));
                }
            }
            let (_, i) = best.unwrap();
            taken[i] = true;
            *per.entry(&cands[i].video.creator).or_default() += 1;
            expected.push(cands[i].id().clone());
        }
        let got: Vec<VideoId> = page.iter().map(|c| c.id().clone()).collect();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_slot_of_the_page_fill_is_a_greedy_choice_by_the_definitions(
        specs in prop::collection::vec(spec_strategy(), 0..120),
        config in prop_oneof![Just(SelectorConfig::default()), config_strategy()],
        limit in 0..=60usize,
        teen in prop::bool::ANY,
        following in prop::collection::vec(0..8usize, 0..5),
        shift in prop::option::of(prop_oneof![Just(Shift::More), Just(Shift::Less)]),
        only in prop::collection::vec(0..6usize, 0..2),
        boosted in prop::collection::vec(0..6usize, 0..3),
        duplicates in prop::collection::vec(0..120usize, 0..4),
    ) {
        let mut input = candidates(&specs);
        // A few ids twice, next to each other (the order by score still holds).
        for &d in &duplicates {
            if d < input.len() {
                let c = input[d].clone();
                input.insert(d, c);
            }
        }
        let ctx = context(limit.max(1), teen, &following, shift);
        let only: Vec<TopicId> = only.into_iter().map(t).collect();
        let boosted: Vec<TopicId> = boosted.into_iter().map(t).collect();
        let rules = PageRules {
            teen,
            following: shift,
            only_topics: &only,
            boosted_topics: &boosted,
        };
        let items: Vec<SlateItem<'_>> = input
            .iter()
            .map(|c| SlateItem::from_candidate(c, Some(&ctx.viewer.following)))
            .collect();
        let page = select_slate(&items, &config, rules, limit);
        let checked = slate_reference::check_slate(&items, &config, rules, limit, &page);
        prop_assert!(checked.is_ok(), "{}", checked.unwrap_err());
    }
}

/// A page of at most `limit` of the `input` candidates, without duplicates, keeping the
/// topic cap and (for a teen) the sensitive cap (reference checks).
fn page_keeps_the_rules(
    page: &[Candidate],
    input: &[Candidate],
    config: &SelectorConfig,
    limit: usize,
    teen: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(page.len() <= limit);
    let ids: HashSet<&VideoId> = page.iter().map(|c| c.id()).collect();
    prop_assert_eq!(ids.len(), page.len(), "duplicates on the page");
    prop_assert!(page.iter().all(|c| input.iter().any(|i| i.id() == c.id())));
    let refs: Vec<&Candidate> = page.iter().collect();
    prop_assert!(topic_cap_holds(
        &refs,
        config.topic_cap,
        config.topic_window
    ));
    if teen {
        prop_assert!(sensitive_cap_holds(
            &refs,
            config.teen_sensitive_cap,
            config.teen_sensitive_window
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// 9. Exploration never bypasses a cap: with any share of slots explored, every page
    ///    keeps the hard caps, has no duplicate, serves only inputs, and every slot's
    ///    propensity is a probability (1 for every slot when exploration is off).
    #[test]
    fn explored_pages_keep_the_hard_caps_and_report_propensities(
        specs in prop::collection::vec(spec_strategy(), 0..120),
        explore in prop_oneof![Just(0.0f32), Just(0.3f32), Just(1.0f32)],
        limit in 1..=40usize,
        teen in prop::bool::ANY,
        clock in 0..1_000_000i64,
        under in 0..120usize,
    ) {
        let mut ctx = context(limit, teen, &[], None);
        ctx.now = Timestamp::from_second(clock).unwrap();
        let mut input = candidates(&specs);
        for (i, c) in input.iter_mut().enumerate() {
            c.exposures = if i < under { 10.0 } else { 1_000.0 };
        }
        let config = SelectorConfig { explore, ..SelectorConfig::default() };
        let page = select(config, &ctx, input.clone());
        page_keeps_the_rules(&page, &input, &config, limit, teen)?;
        for c in &page {
            prop_assert!(c.propensity > 0.0 && c.propensity <= 1.0, "{}", c.propensity);
            if explore == 0.0 {
                prop_assert_eq!(c.propensity, 1.0);
            }
            // A well-exposed item is only ever served as the greedy pick.
            if c.exposures >= config.explore_max_exposures {
                prop_assert!(c.propensity >= 1.0 - explore - 1e-6, "{}", c.propensity);
            }
            // The logged draw gives back the propensity; a slot that could not explore
            // has none and a propensity of 1.
            match c.draw {
                None => prop_assert_eq!(c.propensity, 1.0),
                Some(d) => {
                    prop_assert!(explore > 0.0);
                    prop_assert!(d.drawable >= 1 && (d.greedy || d.in_draw), "{:?}", d);
                    prop_assert!(!(d.in_draw && c.exposures >= config.explore_max_exposures));
                    let p = d.probability(f64::from(explore));
                    prop_assert!((p - f64::from(c.propensity)).abs() < 1e-5, "{:?} {}", d, c.propensity);
                }
            }
        }
        // The same request replays the same page.
        let again = select(config, &ctx, input.clone());
        let a: Vec<&VideoId> = page.iter().map(|c| c.id()).collect();
        let b: Vec<&VideoId> = again.iter().map(|c| c.id()).collect();
        prop_assert_eq!(a, b);
    }
}

/// 10. Propensities are the sampling probabilities: over many seeds, how often each
///     item takes the first slot matches the propensity reported for it there.
#[test]
fn reported_propensities_match_how_often_each_item_is_served() {
    let specs: Vec<Spec> = (0..30)
        .map(|i| Spec::new(i % 10, &[i % 7], 100.0 - i as f32))
        .collect();
    let mut cands = candidates(&specs);
    // Every third item is well exposed (the greedy top one among them).
    for (i, c) in cands.iter_mut().enumerate() {
        c.exposures = if i % 3 == 0 { 5_000.0 } else { 3.0 };
    }
    let items: Vec<SlateItem<'_>> = cands
        .iter()
        .map(|c| SlateItem::from_candidate(c, None))
        .collect();
    let config = SelectorConfig {
        explore: 0.4,
        ..SelectorConfig::default()
    };
    let rules = PageRules::for_context(&context(10, false, &[], None));
    let runs = 4_000;
    let mut first = std::collections::HashMap::<usize, usize>::new();
    let mut reported = std::collections::HashMap::<usize, f32>::new();
    for seed in 0..runs {
        let slate = steerfeed_rank::selectors::select_slate_seeded(
            &items,
            &config,
            rules,
            10,
            seed as u64 * 7919 + 1,
        );
        let (page, p) = (&slate.page, &slate.propensity);
        assert_eq!(page.len(), p.len());
        assert_eq!(page.len(), slate.draws.len());
        // Slot 0's choice: the greedy item 0 (well exposed, so never drawn), or one of
        // the 20 under-exposed items; the draw gives back the propensity at ε = 0.4.
        let draw = slate.draws[0].expect("slot 0 could explore");
        assert_eq!(draw.drawable, 20);
        assert_eq!(draw.greedy, page[0] == 0);
        assert_eq!(draw.in_draw, page[0] != 0);
        assert!((draw.probability(0.4) - f64::from(p[0])).abs() < 1e-6);
        *first.entry(page[0]).or_default() += 1;
        let prior = reported.insert(page[0], p[0]);
        assert!(
            prior.is_none_or(|q| q == p[0]),
            "one propensity per item at slot 0"
        );
    }
    let total: f32 = reported.values().sum();
    assert!(
        (total - 1.0).abs() < 1e-4,
        "the propensities of slot 0 sum to {total}"
    );
    // The greedy pick (the best score) is item 0, well exposed: 1 − ε; each of the 20
    // under-exposed items: ε / 20.
    assert!((reported[&0] - 0.6).abs() < 1e-6);
    for (i, &n) in &first {
        let freq = n as f32 / runs as f32;
        assert!(
            (freq - reported[i]).abs() < 0.025,
            "item {i}: served first {freq} of the time, propensity {}",
            reported[i]
        );
        assert!(
            *i == 0 || i % 3 != 0,
            "a well-exposed item other than the greedy one"
        );
    }
}

/// 11. A shadow: with share 0 the page and draws are the unshadowed ones; with share 1
///     the page is the one the shadow scores alone would make, every slot its pick; in
///     between, every slot's propensity is its draw's probability under the mixture, and
///     the shadow's pick at slot 0 is the shadow order's own first pick.
#[test]
fn a_shadow_is_served_at_its_share_and_logged_at_every_slot() {
    use steerfeed_rank::selectors::{
        ShadowSpec, select_slate, select_slate_seeded, select_slate_shadowed,
    };
    let specs: Vec<Spec> = (0..40)
        .map(|i| Spec::new(i % 9, &[i % 6], 100.0 - i as f32))
        .collect();
    let mut cands = candidates(&specs);
    for (i, c) in cands.iter_mut().enumerate() {
        c.exposures = if i % 4 == 0 { 5_000.0 } else { 3.0 };
    }
    let items: Vec<SlateItem<'_>> = cands
        .iter()
        .map(|c| SlateItem::from_candidate(c, None))
        .collect();
    // The shadow ranks nearly the other way round.
    let shadow: Vec<f32> = (0..items.len())
        .map(|i| ((i * 7) % items.len()) as f32)
        .collect();
    let rules = PageRules::for_context(&context(10, false, &[], None));
    for (method, explore) in [
        (DiversityMethod::Dpp, 0.0f32),
        (DiversityMethod::Dpp, 0.2),
        (DiversityMethod::Mmr, 0.0),
        (DiversityMethod::Mmr, 0.2),
    ] {
        let config = SelectorConfig {
            method,
            explore,
            ..SelectorConfig::default()
        };
        for seed in 0..50u64 {
            let plain = select_slate_seeded(&items, &config, rules, 10, seed);
            let spec = ShadowSpec {
                scores: &shadow,
                share: 0.0,
                explore: 0.0,
            };
            let none = select_slate_shadowed(&items, &config, rules, 10, seed, spec);
            assert_eq!(plain, none);
        }
        // The shadow's own page: the items in shadow order, selected alone.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| shadow[b].total_cmp(&shadow[a]));
        let by_shadow: Vec<SlateItem<'_>> = order
            .iter()
            .map(|&i| SlateItem {
                score: shadow[i],
                ..items[i]
            })
            .collect();
        // Its greedy page: exploration off.
        let greedy_only = SelectorConfig {
            explore: 0.0,
            ..config
        };
        let own: Vec<usize> = select_slate(&by_shadow, &greedy_only, rules, 10)
            .into_iter()
            .map(|j| order[j])
            .collect();
        if explore == 0.0 {
            let spec = ShadowSpec {
                scores: &shadow,
                share: 1.0,
                explore: 0.0,
            };
            let all = select_slate_shadowed(&items, &config, rules, 10, 3, spec);
            assert_eq!(all.page, own);
            assert!(all.draws.iter().all(|d| d.is_some_and(|d| d.shadow_greedy)));
        }
        let share = 0.5;
        let mut shadow_only = 0;
        for seed in 0..200u64 {
            let spec = ShadowSpec {
                scores: &shadow,
                share,
                explore: 0.2,
            };
            let s = select_slate_shadowed(&items, &config, rules, 10, seed, spec);
            assert_eq!(s.page.len(), 10);
            let first = s.draws[0].expect("every slot beside a shadow has a draw");
            assert_eq!(first.shadow_greedy, s.page[0] == own[0]);
            for (slot, d) in s.draws.iter().enumerate() {
                let d = d.expect("every slot beside a shadow has a draw");
                assert!(d.greedy || d.in_draw || d.shadow_greedy, "{d:?}");
                // The shadow explores at 0.2: it reports its own draw set, which
                // holds the under-exposed items left (three of four are).
                assert!(d.shadow_drawable > 0, "{d:?}");
                assert!(!d.shadow_in_draw || d.shadow_drawable > 0);
                let p = d.logged_probability(f64::from(explore), f64::from(share));
                assert!(
                    (p - f64::from(s.propensity[slot])).abs() < 1e-5,
                    "{d:?} {}",
                    s.propensity[slot]
                );
                shadow_only += usize::from(d.shadow_greedy && !d.greedy);
            }
        }
        // The two orders disagree at most slots: about half of those serve the shadow.
        assert!(
            shadow_only > 400,
            "{shadow_only} slots served the shadow's pick over the greedy one"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// 12. A shadow never bypasses a cap either: with any shadow scores (some not
    ///     finite) and share, every page keeps the hard caps, has no duplicate, serves
    ///     only inputs and replays; every slot has a draw whose mixture probability is
    ///     its propensity, and its item is the greedy pick, a drawable one or the
    ///     shadow's.
    #[test]
    fn shadowed_pages_keep_the_hard_caps_and_report_propensities(
        specs in prop::collection::vec(spec_strategy(), 0..120),
        shadow in prop::collection::vec(
            prop_oneof![8 => -10.0f32..10.0, 1 => Just(f32::NAN), 1 => Just(f32::INFINITY)],
            120,
        ),
        (explore, share) in prop_oneof![
            Just((0.0f32, 0.2f32)),
            Just((0.0, 1.0)),
            Just((0.3, 0.2)),
            Just((0.3, 0.7)),
        ],
        limit in 1..=40usize,
        teen in prop::bool::ANY,
        under in 0..120usize,
    ) {
        let ctx = context(limit, teen, &[], None);
        let mut input = candidates(&specs);
        for (i, c) in input.iter_mut().enumerate() {
            c.exposures = if i < under { 10.0 } else { 1_000.0 };
            c.shadow_score = shadow[i];
        }
        let config = SelectorConfig { explore, ..SelectorConfig::default() };
        let selector = DiversitySelector::new(config).unwrap().with_shadow(share, 0.3).unwrap();
        let page = selector.select(&ctx, input.clone(), limit).unwrap();
        page_keeps_the_rules(&page, &input, &config, limit, teen)?;
        for c in &page {
            let d = c.draw.expect("every slot beside a shadow has a draw");
            prop_assert!(d.greedy || (d.in_draw && d.drawable > 0) || d.shadow_greedy, "{:?}", d);
            let p = d.logged_probability(f64::from(explore), f64::from(share));
            prop_assert!(c.propensity > 0.0 && c.propensity <= 1.0 + 1e-6, "{}", c.propensity);
            prop_assert!(!d.shadow_in_draw || d.shadow_drawable > 0, "{:?}", d);
            prop_assert!(!d.shadow_in_draw || c.exposures < config.explore_max_exposures);
            let q = d.shadow_probability(0.3);
            prop_assert!((0.0..=1.0).contains(&q), "{:?} {}", d, q);
            prop_assert!((p - f64::from(c.propensity)).abs() < 1e-5, "{:?} {}", d, c.propensity);
        }
        let again = selector.select(&ctx, input.clone(), limit).unwrap();
        let a: Vec<&VideoId> = page.iter().map(|c| c.id()).collect();
        let b: Vec<&VideoId> = again.iter().map(|c| c.id()).collect();
        prop_assert_eq!(a, b);
    }
}
