use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use steerfeed_core::ports::{ActionCounts, ActionStats, ConsentLedger, SocialGraph};
use steerfeed_core::{
    ActionProbs, Candidate, FeedContext, HeadInputs, Reason, Result, ScoreBreakdown, Scorer,
    UserId, Video, rank_order,
};

use super::{ActionWeights, BlendRanker, HeadModels, ModelSlot, ScorerConfig, blend_features};
use crate::filters::{concept_match, consent_allows};
use crate::throttles::{WellbeingConfig, consumption_lambda, lighter_mode};

/// Scores every candidate with the objective of docs/design.md §5 (see the [module
/// docs](super)), fills its [`ScoreBreakdown`], and picks the reason shown to the user
/// from what weighed most: a remix of the viewer's own video, the viewer's cameo, a
/// steering concept, a followed creator, else the source's reason.
pub struct ObjectiveScorer {
    cfg: ScorerConfig,
    wellbeing: WellbeingConfig,
    stats: Arc<dyn ActionStats>,
    graph: Arc<dyn SocialGraph>,
    consent: Arc<dyn ConsentLedger>,
    /// A trained model's heads, when one is in force.
    model: Arc<ModelSlot>,
    /// The hand-set heads of `cfg`, applied when no trained model is.
    hand_set: Arc<HeadModels>,
    /// Per head, `logit` of the smoothed rate of a video nobody has seen yet (no
    /// exposures, no actions): the same value the formula gives, computed once, since
    /// most candidates of a large catalog are such videos.
    cold_logit: [f32; 8],
}

impl ObjectiveScorer {
    /// A scorer reading counters from `stats`, mutual follows from `graph`, and from
    /// `consent` whether a followed person's likeness is open to the viewer (the
    /// cameo_use head's lift).
    pub fn new(
        cfg: ScorerConfig,
        wellbeing: WellbeingConfig,
        stats: Arc<dyn ActionStats>,
        graph: Arc<dyn SocialGraph>,
        consent: Arc<dyn ConsentLedger>,
        model: Arc<ModelSlot>,
    ) -> Self {
        let mut cold_logit = [0.0f32; 8];
        for (slot, (_, h)) in cold_logit.iter_mut().zip(cfg.heads.all().iter()) {
            *slot = logit(smoothed(0.0, 0.0, h.base_rate, cfg.prior_strength));
        }
        Self {
            cold_logit,
            cfg,
            wellbeing,
            stats,
            graph,
            consent,
            model,
            hand_set: Arc::new(HeadModels::from_config(&cfg)),
        }
    }
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// `(count + m·base) / (exposures + m)`: the Beta-smoothed rate.
fn smoothed(count: f32, exposures: f32, base: f32, m: f32) -> f32 {
    let count = count.max(0.0);
    let exposures = exposures.max(count).max(0.0);
    (count + m * base) / (exposures + m)
}

/// The counters the eight heads read, in [`super::Heads::all`] order.
fn head_counts(c: &ActionCounts) -> [f32; 8] {
    [
        c.creates,
        c.remixes,
        c.cameo_uses,
        c.comments,
        c.shares,
        c.follows,
        c.likes,
        c.complete_views,
    ]
}

/// What the scorer knows about a creator within one request: read once per creator,
/// shared by all of the creator's candidates.
#[derive(Clone, Copy)]
struct CreatorFacts {
    exposures: f32,
    /// Per head: the creator's smoothed rate against the base rate, in logits.
    lift: [f32; 8],
    /// The viewer follows the creator.
    follows: bool,
    /// The tie strength `tie(u, creator)` (before β).
    tie: f32,
}

impl ObjectiveScorer {
    /// The facts of `creator`, read from the ports and the viewer's relations.
    fn creator_facts(
        &self,
        ctx: &FeedContext,
        creator: &UserId,
        personal: bool,
    ) -> Result<CreatorFacts> {
        let cfg = &self.cfg;
        let follows = ctx.viewer.following.contains(creator);
        let counts = self.stats.creator_counts(creator, ctx.now)?;
        let mutual = follows && self.graph.follows(creator, ctx.request.user())?;
        let m = cfg.creator_prior_strength;
        let exposures = counts.exposures();
        let n = head_counts(&counts);
        let mut lift = [0.0; 8];
        for (i, (_, h)) in cfg.heads.all().iter().enumerate() {
            lift[i] = logit(smoothed(n[i], exposures, h.base_rate, m)) - logit(h.base_rate);
        }
        let affinity = if personal {
            ctx.viewer
                .creator_affinity
                .get(creator)
                .copied()
                .unwrap_or(0.0)
                .clamp(0.0, 1.0)
        } else {
            0.0
        };
        let tie = cfg.tie.follow * f32::from(u8::from(follows))
            + cfg.tie.mutual * f32::from(u8::from(mutual))
            + cfg.tie.interaction * affinity;
        Ok(CreatorFacts {
            exposures,
            lift,
            follows,
            tie,
        })
    }

    /// The heads' probabilities from the shared inputs in `f` (interest, tie,
    /// co-engagement and the invitation flags), after filling in its per-head inputs:
    /// the video's smoothed rates and the creator's lifts, in logits.
    fn actions(
        &self,
        heads: &HeadModels,
        f: &mut HeadInputs,
        video: &ActionCounts,
        creator: &CreatorFacts,
    ) -> ActionProbs {
        let exposures = video.exposures();
        let n = head_counts(video);
        f.creator = creator.lift;
        for (i, (_, h)) in self.cfg.heads.all().iter().enumerate() {
            // `smoothed` clamps both counts at 0, so this is exactly the formula's value.
            f.prior[i] = if exposures <= 0.0 && n[i] <= 0.0 {
                self.cold_logit[i]
            } else {
                logit(smoothed(
                    n[i],
                    exposures,
                    h.base_rate,
                    self.cfg.prior_strength,
                ))
            };
        }
        heads.probs(f)
    }

    /// Does the video feature someone the viewer follows whose cameo consent would let
    /// the viewer make a video with their likeness? Asked of the ledger with the viewer
    /// as creator (revocations of the viewer's videos count). Asked whatever the heads'
    /// coefficients: the impression log records it, so a model can learn its weight.
    fn friend_cameo(&self, ctx: &FeedContext, video: &Video) -> Result<bool> {
        let me = ctx.request.user();
        for person in &video.cameos {
            if person == me || !ctx.viewer.following.contains(person) {
                continue;
            }
            if let Some(f) = self.consent.cameo_consent(person, me, &video.id)?
                && consent_allows(&f)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Σ w_a·p_a under the heads' weights `w` (creation weights scaled in lighter mode)
    /// minus the negative-feedback penalty, and the passive-view probability the
    /// consumption cost charges, times the complete-view head's value scale `passive`.
    fn action_value(
        &self,
        w: &ActionWeights,
        passive: f32,
        p: &ActionProbs,
        negative_rate: f32,
        lighter: bool,
    ) -> (f32, f32) {
        let boost = if lighter {
            self.cfg.creation_multiplier
        } else {
            1.0
        };
        let value = boost * (w.create * p.create + w.remix * p.remix + w.cameo_use * p.cameo_use)
            + w.comment * p.comment
            + w.share * p.share
            + w.follow * p.follow
            + w.like * p.like
            + w.complete_view * p.complete_view
            - w.negative * negative_rate;
        let none_active = [
            p.create,
            p.remix,
            p.cameo_use,
            p.comment,
            p.share,
            p.follow,
            p.like,
        ]
        .iter()
        .map(|x| 1.0 - x)
        .product::<f32>();
        (value, passive * p.complete_view * none_active)
    }

    /// γ·Σ s_c·match plus the remix and friends' cameo constraints; and the label of
    /// the concept that added the most, for the explanation.
    fn steering<'c>(&self, ctx: &'c FeedContext, video: &Video) -> (f32, Option<&'c str>) {
        let s = &self.cfg.steering;
        let mut total = 0.0;
        let mut best: Option<(f32, &str)> = None;
        for c in &ctx.concepts {
            let m = concept_match(video, c);
            let m = if m >= 1.0 {
                1.0
            } else {
                ((m - s.threshold) / (1.0 - s.threshold)).max(0.0)
            };
            let term = s.gamma * c.weight * m;
            total += term;
            if term > 0.0 && best.is_none_or(|(b, _)| term > b) {
                best = Some((term, c.label.as_str()));
            }
        }
        let sign = |want: Option<bool>| match want {
            Some(true) => 1.0,
            Some(false) => -1.0,
            None => 0.0,
        };
        // Without the constraint the bonus term is +0 (the bonuses are finite), and adding
        // +0 to a sum that starts at +0 changes nothing: the set lookups are skipped.
        if ctx.constraints.remix.is_some() && video.remix_of.is_some() {
            total += sign(ctx.constraints.remix) * s.remix_bonus;
        }
        if ctx.constraints.friends_cameos.is_some()
            && video
                .cameos
                .iter()
                .any(|p| ctx.viewer.following.contains(p))
        {
            total += sign(ctx.constraints.friends_cameos) * s.friends_cameo_bonus;
        }
        (total, best.map(|(_, l)| l))
    }
}

impl Scorer for ObjectiveScorer {
    fn score(&self, ctx: &FeedContext, candidates: &mut [Candidate]) -> Result<()> {
        if candidates.is_empty() {
            return Ok(());
        }
        let cfg = &self.cfg;
        let personal = ctx.parental.personalization;
        let interest = ctx.interest.as_ref().filter(|_| personal);
        let model = self.model.get();
        let heads = model.as_ref().map_or(&*self.hand_set, |m| &m.heads);
        let weights = heads.weigh(&cfg.weights);
        let passive = heads.passive_scale();
        let lambda = consumption_lambda(&self.wellbeing, ctx);
        let lighter = lighter_mode(&self.wellbeing, ctx);
        let freshness_weight = cfg.freshness_weight
            * match ctx.constraints.freshness {
                Some(_) => cfg.newer_multiplier,
                None => 1.0,
            };

        let ids: Vec<_> = candidates.iter().map(|c| c.id()).collect();
        let counts = self.stats.video_counts(&ids, ctx.now)?;
        drop(ids);
        // One read of the ports and the viewer's sets per distinct creator.
        let mut facts: Vec<CreatorFacts> = Vec::new();
        let mut creator_of: Vec<usize> = Vec::with_capacity(candidates.len());
        {
            let mut index: HashMap<&UserId, usize, FxBuildHasher> =
                HashMap::with_capacity_and_hasher(candidates.len(), FxBuildHasher);
            for c in candidates.iter() {
                let creator = &c.video.creator;
                let next = facts.len();
                let k = *index.entry(creator).or_insert(next);
                if k == next {
                    facts.push(self.creator_facts(ctx, creator, personal)?);
                }
                creator_of.push(k);
            }
        }

        for ((c, video_counts), &k) in candidates.iter_mut().zip(counts).zip(&creator_of) {
            let facts = &facts[k];
            let video = &*c.video;
            let follows = facts.follows;
            let tie = facts.tie;
            let sim = match (interest, &video.embedding) {
                (Some(i), Some(e)) => i.dot(e),
                _ => cfg.interest_reference,
            };
            // The co-engagement source scores in (0, 1], relative to its strongest
            // candidate of this request.
            let co_engagement = if personal && c.source == "co_engagement" {
                c.source_score.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let mut inputs = HeadInputs {
                interest: sim - cfg.interest_reference,
                tie,
                co_engagement,
                followed: follows,
                remix_chain: video.remix_of.is_some() || video_counts.remixes > 0.0,
                friend_cameo: self.friend_cameo(ctx, video)?,
                ..HeadInputs::default()
            };
            let actions = self.actions(heads, &mut inputs, &video_counts, facts);
            let negative_rate = smoothed(
                video_counts.negatives,
                video_counts.exposures(),
                0.05,
                cfg.prior_strength,
            );
            let (action_value, p_passive) =
                self.action_value(&weights, passive, &actions, negative_rate, lighter);
            let (steering, concept) = self.steering(ctx, video);

            let age_h = (ctx.now.as_millisecond() - video.created_at.as_millisecond()).max(0)
                as f32
                / 3_600_000.0;
            let freshness = freshness_weight * 0.5f32.powf(age_h / cfg.freshness_half_life_h);
            let cold_start = cfg.cold_start_video * cfg.prior_strength
                / (cfg.prior_strength + video_counts.exposures().max(0.0))
                + cfg.cold_start_creator * cfg.creator_prior_strength
                    / (cfg.creator_prior_strength + facts.exposures.max(0.0));
            let wellbeing = if !lighter {
                0.0
            } else if self.wellbeing.is_heavy(video) {
                -cfg.heavy_penalty
            } else if self.wellbeing.is_light(video) {
                cfg.light_bonus
            } else {
                0.0
            };

            let mut b = ScoreBreakdown {
                actions,
                action_value,
                tie: cfg.tie.beta * tie,
                steering,
                consumption_cost: lambda * p_passive,
                freshness,
                cold_start,
                wellbeing,
                total: 0.0,
            };
            c.score = b.sum();
            c.breakdown = b;
            c.inputs = inputs;
            c.exposures = video_counts.exposures();
            if let Some(r) = reason(ctx, video, follows, concept, wellbeing > 0.0) {
                c.reason = r;
            }
        }
        if let Some(ranker) = model.as_ref().and_then(|m| m.ranker.as_ref()) {
            rerank(ranker, &weights, candidates);
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "objective"
    }
}

/// The learned second stage: the `depth` best candidates by the first-stage score get
/// the ranker's value in place of `Σ_a w_a·p_a`; what the action value adds besides it
/// (the lighter-mode creation boost, the negative-feedback penalty) and the other terms
/// stay as they are. A lone candidate (an explanation of one video) is always among the
/// best, so it is re-scored even where a page's request would have left it out.
pub(crate) fn rerank(ranker: &BlendRanker, weights: &ActionWeights, candidates: &mut [Candidate]) {
    let w = weights.heads();
    let depth = ranker.depth().min(candidates.len());
    if depth == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    if depth < candidates.len() {
        order.select_nth_unstable_by(depth - 1, |&i, &j| {
            rank_order(candidates[i].score, candidates[j].score)
        });
    }
    for &i in &order[..depth] {
        let c = &mut candidates[i];
        let b = &mut c.breakdown;
        let plain: f32 = w.iter().zip(b.actions.heads()).map(|(w, p)| w * p).sum();
        let row = blend_features(&b.actions, &c.inputs, b.freshness, b.cold_start);
        b.action_value += ranker.value(&row) - plain;
        c.score = b.sum();
    }
}

/// The user-facing reason, when something more telling than the source's own reason
/// put the item here; in order: a remix of the viewer's video, the viewer's cameo, a
/// steering concept that matched, a followed creator, lighter content after a check-in.
fn reason(
    ctx: &FeedContext,
    video: &Video,
    follows: bool,
    concept: Option<&str>,
    lighter: bool,
) -> Option<Reason> {
    if video
        .remix_of
        .as_ref()
        .is_some_and(|p| ctx.viewer.own_videos.contains(p))
    {
        return Some(Reason::RemixOfYours);
    }
    if video.cameos.contains(ctx.request.user()) {
        return Some(Reason::FeaturesYou);
    }
    if let Some(concept) = concept {
        return Some(Reason::Steering {
            concept: concept.to_owned(),
        });
    }
    if follows {
        return Some(Reason::Following {
            creator: video.creator.clone(),
        });
    }
    lighter.then_some(Reason::Lighter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorers::BlendRankerFile;
    use crate::scorers::blend::{BLEND_FEATURES, BlendTree};
    use steerfeed_core::{Timestamp, VideoId};

    /// A ranker whose value is `2 · (interest ≥ 0)`, re-scoring the best `depth`.
    fn ranker(depth: u32) -> BlendRanker {
        BlendRankerFile {
            features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            depth,
            base_score: 0.0,
            shift: 0.0,
            scale: 1.0,
            trees: vec![BlendTree {
                feature: vec![24, -1, -1],
                threshold: vec![0.0, 0.0, 0.0],
                left: vec![1, 0, 0],
                right: vec![2, 0, 0],
                value: vec![0.0, 0.0, 2.0],
            }],
        }
        .compile()
        .unwrap()
    }

    fn candidate(id: &str, score: f32, like: f32, interest: f32) -> Candidate {
        let video = Video::new(
            VideoId::new(id).unwrap(),
            UserId::new("c").unwrap(),
            Timestamp::UNIX_EPOCH,
            10.0,
        );
        let mut c = Candidate::new(Arc::new(video), "fresh", 0.0, Reason::FeaturesYou);
        c.breakdown.actions.like = like;
        c.breakdown.action_value = like + 0.25;
        c.breakdown.tie = score - (like + 0.25);
        c.score = c.breakdown.sum();
        c.inputs.interest = interest;
        c
    }

    #[test]
    fn only_the_best_by_the_first_stage_are_re_scored_and_the_rest_of_the_value_stays() {
        let w = ActionWeights::default();
        let mut cands = vec![
            candidate("a", 1.0, 0.5, 0.3),
            candidate("b", 3.0, 0.5, 0.3),
            candidate("c", f32::NAN, 0.5, 0.3),
            candidate("d", 2.0, 0.5, -0.3),
        ];
        rerank(&ranker(2), &w, &mut cands);
        // b (3.0) and d (2.0) are the best two: like 0.5 · weight 1 gives way to the
        // ranker's 2 (b) or 0 (d); the extra 0.25 beyond Σ w·p stays.
        assert_eq!(cands[1].breakdown.action_value, 2.0 + 0.25);
        assert_eq!(cands[1].score, 3.0 - 0.5 + 2.0);
        assert_eq!(cands[3].breakdown.action_value, 0.25);
        assert_eq!(cands[3].score, 2.0 - 0.5);
        // a and the NaN-scored c keep their first-stage values.
        assert_eq!(cands[0].score, 1.0);
        assert_eq!(cands[0].breakdown.action_value, 0.75);
        assert!(cands[2].score.is_nan());
        // Depth beyond the candidates re-scores them all; none is a no-op.
        let mut all = vec![candidate("a", 1.0, 0.5, 0.3)];
        rerank(&ranker(10), &w, &mut all);
        assert_eq!(all[0].score, 1.0 - 0.5 + 2.0);
        rerank(&ranker(10), &w, &mut []);
    }
}
