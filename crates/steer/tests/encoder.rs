//! Smoke tests of the real encoder: the ONNX model, the tokenizer and the runtime that
//! `make setup` fetched. These fail (with the command to run) when the set-up is missing.
//!
//! 1. The pooled vector has dimension 384 and norm 1.
//! 2. Related sentences are closer than unrelated ones.
//! 3. A batch gives the same vectors as one-by-one calls, in input order.
//! 4. Texts longer than the model's limit are truncated, not rejected.
//! 5. A missing model directory is a clear error naming the set-up command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use steerfeed_steer::{Encoder, EncoderConfig, Error, MINILM_DIM};

fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| match Encoder::open(&EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    })
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn embeddings_have_dimension_384_and_unit_norm() {
    let e = encoder().embed("more cooking videos").unwrap();
    assert_eq!(e.dim(), MINILM_DIM);
    assert!((norm(e.as_slice()) - 1.0).abs() < 1e-4);
}

#[test]
fn related_sentences_are_closer_than_unrelated_ones() {
    let enc = encoder();
    let cooking = enc.embed("more cooking videos").unwrap();
    let recipes = enc.embed("recipes and food").unwrap();
    let politics = enc.embed("less politics").unwrap();
    let related = cooking.dot(&recipes);
    let unrelated = cooking.dot(&politics);
    assert!(
        related > unrelated + 0.1,
        "related {related} should beat unrelated {unrelated}"
    );
    let dogs = enc.embed("puppies playing fetch").unwrap();
    let pets = enc.embed("cute pets").unwrap();
    let stocks = enc.embed("stock market analysis").unwrap();
    assert!(dogs.dot(&pets) > dogs.dot(&stocks));
}

#[test]
fn a_batch_matches_single_calls_in_input_order() {
    let enc = encoder();
    let texts = [
        "a much longer sentence about baking sourdough bread at home on a sunday",
        "cats",
        "",
        "extreme sports on mountain bikes",
    ];
    let batch = enc.embed_batch(&texts).unwrap();
    assert_eq!(batch.len(), texts.len());
    for (text, b) in texts.iter().zip(&batch) {
        let single = enc.embed(text).unwrap();
        let cos = single.dot(b);
        assert!(cos > 0.999, "{text:?}: batch and single differ (cos {cos})");
    }
}

#[test]
fn long_texts_are_truncated_not_rejected() {
    // 400 words is well past the 256-token limit, so what follows them is cut off:
    // two texts that differ only after the limit embed identically.
    let prefix = "I want way more videos about cooking and baking. ".repeat(40);
    let a = encoder().embed(&format!("{prefix} cats and dogs")).unwrap();
    let b = encoder()
        .embed(&format!("{prefix} elections and taxes"))
        .unwrap();
    assert_eq!(a.dim(), MINILM_DIM);
    assert!(a.dot(&b) > 0.9999, "cos {}", a.dot(&b));
    // Within the limit, the same difference does change the vector.
    let c = encoder().embed("baking: cats and dogs").unwrap();
    let d = encoder().embed("baking: elections and taxes").unwrap();
    assert!(c.dot(&d) < 0.99);
}

#[test]
fn a_missing_model_names_the_set_up_command() {
    let config = EncoderConfig {
        dir: Some("/nonexistent/steerfeed-model".into()),
        ..EncoderConfig::default()
    };
    let err = Encoder::open(&config).unwrap_err();
    assert!(matches!(err, Error::Missing { what: "model", .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("make setup"), "{msg}");
    assert!(msg.contains("/nonexistent/steerfeed-model"), "{msg}");
}
