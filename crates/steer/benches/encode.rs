//! Encoder throughput on the real model: one short sentence (the latency a preference
//! update pays) and a batch of 32 captions (catalog ingest).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use steerfeed_steer::{Encoder, EncoderConfig, MINILM_DIM};

fn bench(c: &mut Criterion) {
    let encoder = match Encoder::open(&EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    c.bench_function("encode_short_sentence_1", |b| {
        b.iter(|| {
            let e = encoder
                .embed(black_box("way more cooking videos, less politics"))
                .unwrap();
            assert_eq!(e.dim(), MINILM_DIM);
        })
    });
    let captions: Vec<String> = (0..32)
        .map(|i| format!("AI-generated clip {i}: a corgi surfs a giant wave at sunset, cinematic"))
        .collect();
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    c.bench_function("encode_caption_batch_32", |b| {
        b.iter(|| {
            let out = encoder.embed_batch(black_box(&refs)).unwrap();
            assert_eq!(out.len(), 32);
        })
    });
}

fn parse_bench(c: &mut Criterion) {
    use std::sync::Arc;

    use steerfeed_core::{AgeBand, Timestamp};
    use steerfeed_steer::{ParserConfig, PreferenceParser};

    let encoder = match Encoder::open(&EncoderConfig::default()) {
        Ok(e) => Arc::new(e),
        Err(e) => panic!("{e}"),
    };
    let parser = PreferenceParser::open(encoder, ParserConfig::default()).unwrap();
    let texts = [
        "more cooking videos",
        "way less politics, no horror, a bit more music",
        "only soccer, and only new ones",
        "show me more posts from people I follow",
        "I'm kinda tired of all the drama lately, could you show me more wholesome animal videos?",
        "videos shorter than 20 seconds",
    ];
    let now = Timestamp::UNIX_EPOCH;
    // The phrase cache is emptied before each parse: a person's new text is not cached.
    for (name, audience) in [
        ("parse_typical_preference", AgeBand::Adult),
        ("parse_typical_preference_teen", AgeBand::Teen),
    ] {
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                parser.concepts().cache.clear();
                let c = parser.parse(black_box(texts[i]), audience, now).unwrap();
                assert!(c.validate().is_ok());
            })
        });
    }
}

criterion_group!(benches, bench, parse_bench);
criterion_main!(benches);
