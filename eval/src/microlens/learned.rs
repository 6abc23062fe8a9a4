//! The `engine-trained` row: heads trained on pages the engine served.
//!
//! MicroLens has no impressions, so the training data is made the way an app makes it:
//! by serving pages and seeing what people do next, on a validation split carved from
//! the training data only.
//!
//! 1. An engine is taught the training sequences less each one's last item (the
//!    validation split of [`super::validation_split`]), and serves pages, as the replay
//!    does, to the first `users` validation cases; case `i` asks [`STAGGER_MS`]·`i`
//!    milliseconds after the first (20,000 cases span 20 s, far below any of the
//!    engine's half-lives), so the impression log has an order in time and training can
//!    hold out its latest part.
//! 2. Where a page served a case's held-out item (on any page it served, past the depth
//!    scored too), the harness ingests that person's comment on it a millisecond after
//!    the page, through [`Engine::ingest_events`]: a
//!    MicroLens interaction is a public comment, and the replay teaches every training
//!    interaction as one. Every other served item has no outcome.
//! 3. The served items joined to those outcomes (`Engine::for_each_labeled_impression`)
//!    train the comment head with [`steerfeed_learn::train`]; the other heads have no
//!    outcome here and keep the configured coefficients.
//! 4. A second engine, taught the whole training data as for the `engine` row, serves
//!    the dev cases with the trained model in force (`Engine::set_model`).
//!
//! The dev targets never reach the first engine: it is taught less than the training
//! data, and its outcomes are the validation items, which are training data.

use anyhow::Context;
use steerfeed::model::RankModel;
use steerfeed::{
    Config, Event, EventKey, EventKind, LabeledImpression, Timestamp, UserId, VideoId,
};

use super::data::{Case, Catalogue, Sequence};
use super::embed::Embeddings;
use super::replay::{self, ReplayEngine};
use super::{MethodResult, Training, validation_split};

/// The head MicroLens interactions label.
pub const HEAD: &str = "comment";
/// Milliseconds between two validation cases' requests.
pub const STAGGER_MS: i64 = 1;
const EVENT_BATCH: usize = 1_000;

/// What training on the validation pages made.
pub struct Trained {
    /// The model.
    pub model: RankModel,
    /// The (viewer, video) of every outcome ingested: the validation hits.
    pub outcomes: Vec<(UserId, VideoId)>,
    /// The served items the model was trained and measured on, with their outcomes.
    pub rows: Vec<LabeledImpression>,
    /// How it was trained and what it measured.
    pub training: Training,
}

/// Serves the first `users` validation cases carved from `train`, ingests their hits as
/// comments and trains the comment head on the logged pages (see the module doc).
pub fn train_on_validation(
    config: &Config,
    cat: &Catalogue,
    train: &[Sequence],
    users: usize,
    ks: &[usize],
    balance: steerfeed_learn::Balance,
    cache: Option<&std::path::Path>,
) -> anyhow::Result<Trained> {
    let (val_train, cases) = validation_split(train)?;
    let cases = &cases[..cases.len().min(users)];
    let replay = replay::build_cached(config.clone(), cat, &val_train, cache)?;
    let (served, _) = replay::serve_staggered(&replay, cases, replay::depth_for(ks), STAGGER_MS)?;
    let outcomes = ingest_hits(&replay, cases, &served)?;
    let mut rows = Vec::new();
    replay
        .engine
        .for_each_labeled_impression(Timestamp::MIN, &mut |r| {
            rows.push(r);
            Ok(())
        })?;
    // The harness wrote every outcome there will be: each window is closed.
    for r in &mut rows {
        r.complete = true;
    }
    let cfg = steerfeed_learn::TrainConfig {
        balance,
        ..steerfeed_learn::TrainConfig::default()
    }
    .only_heads(&[HEAD])?;
    let current = replay.engine.head_models();
    let weights = config.rank.scorer.weights;
    let (model, report) = steerfeed_learn::train(&rows, &current, &weights, &cfg)
        .context("training on the validation pages")?;
    let training = Training {
        model: model.id.clone(),
        head: HEAD.to_owned(),
        validation_users: cases.len(),
        served_items: rows.len(),
        hits: outcomes.len(),
        report: serde_json::to_value(&report)?,
        served_with: Vec::new(),
    };
    Ok(Trained {
        model,
        outcomes,
        rows,
        training,
    })
}

/// Ingests, for every case whose held-out item was served, that viewer's comment on it
/// a millisecond after the page; returns the (viewer, video) pairs.
fn ingest_hits(
    replay: &ReplayEngine,
    cases: &[Case],
    served: &[replay::Outcome],
) -> anyhow::Result<Vec<(UserId, VideoId)>> {
    let mut events = Vec::new();
    let mut hits = Vec::new();
    for (i, (case, o)) in cases.iter().zip(served).enumerate() {
        if !o.target_served {
            continue;
        }
        let user = replay::user_id(&case.user)?;
        let video = replay
            .video_id(case.target)
            .with_context(|| format!("item {} outside the catalogue", case.target))?
            .clone();
        let at = replay.asked_at(i, STAGGER_MS)?;
        events.push(Event {
            key: EventKey::new(format!("outcome-{}", user.as_str()))?,
            user: user.clone(),
            at: Timestamp::from_millisecond(at.as_millisecond() + 1)?,
            kind: EventKind::Comment {
                video: video.clone(),
            },
        });
        hits.push((user, video));
    }
    for batch in events.chunks(EVENT_BATCH) {
        replay.engine.ingest_events(batch)?;
    }
    Ok(hits)
}

/// The `engine-trained` row: `replay` (an engine taught the whole training data, as for
/// the `engine` row) serves `cases` with the trained model in force, over a catalogue of
/// `n` items.
pub fn run(
    replay: &ReplayEngine,
    cases: &[Case],
    ks: &[usize],
    emb: &Embeddings,
    n: usize,
    trained: Trained,
) -> anyhow::Result<MethodResult> {
    replay
        .engine
        .set_model(trained.model)
        .context("putting the trained model in force")?;
    let mut row = replay::serve_and_score(replay, cases, ks, emb, n)?;
    row.method = "engine-trained".to_owned();
    let mut models = std::collections::BTreeSet::new();
    replay
        .engine
        .store()
        .for_each_impression(Timestamp::MIN, &mut |p| {
            models.insert(p.page.model);
            Ok(())
        })?;
    row.training = Some(Training {
        served_with: models.into_iter().collect(),
        ..trained.training
    });
    Ok(row)
}
