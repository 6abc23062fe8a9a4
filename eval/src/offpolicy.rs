//! `steerfeed eval offpolicy`: what another exploration rate would have earned, estimated
//! from the impression log alone.
//!
//! At a slot where the selector could explore, it served its greedy pick with probability
//! `1 − ε` and an item drawn uniformly from the `n` under-exposed items the slot allowed
//! with probability `ε`; the log keeps which of the two the served item was and `n` (its
//! [`SlotDraw`](steerfeed::SlotDraw)). A policy that differs only by its rate `ε'` would
//! have served the same item with probability `π = (1 − ε')·[greedy] + ε'·[drawn]/n`,
//! and the served item's logged propensity is `μ`. Over those slots, the self-normalised
//! inverse propensity estimate of the reward per slot is
//!
//! ```text
//! V = Σ w·r / Σ w,   w = π / μ,
//! ```
//!
//! with the delta-method standard error `√(Σ_pages (Σ_{slots of the page} w·(r − V))²) / Σ w`:
//! the slots of one page share a viewer and a moment, so they are summed per page before
//! squaring. A slot that could not explore has no draw and is left out: there both
//! policies serve the greedy pick.
//!
//! Each weight holds the logged page's earlier slots fixed, so this is the value of
//! changing the rate at one slot at a time: what the other rate would do to the later
//! slots of a page (their greedy picks, the items they could draw), to what people
//! would have seen before, and to how the rewards of one slot depend on the others (the
//! simulated people's fatigue with repeated topics) is outside it.
//!
//! **A profile that ranks differently** (other weights or heads, another model) makes
//! greedy picks the serving profile's log does not hold, and where they differ from the
//! served items the log has no support for them. Named as `[learning] shadow`, such a
//! profile is scored beside the serving one: at every slot its greedy pick `h`, given the
//! page's earlier slots, is served with probability `s` (the share), the log says whether
//! the served item was `h` ([`SlotDraw::shadow_probability`](steerfeed::SlotDraw)), and
//! the served item's propensity includes `s·[x = h]`. The shadow at its own rate `ε'`
//! serves the item with probability `π = (1 − ε')·[x = h] + ε'·[x ∈ U_h]/|U_h|`, with
//! `U_h` its own draw set (logged when it explores), and both weighings above apply
//! unchanged with that `π`. Every slot of a shadowed page counts
//! (each has a draw). Without a shadow, [`check_profile`] refuses a profile that ranks
//! differently rather than estimate it wrongly.

use anyhow::{Context, bail};
use steerfeed::{Config, LabeledImpression, Outcomes};

/// What an estimate weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Each explorable slot, the earlier slots of its page held as logged: the reward per
    /// explorable slot.
    Slot,
    /// Each page with an explorable slot, weighed by the product of its slots' weights:
    /// the mean reward of a page's items, averaged over pages. The logged propensities
    /// are conditional on the slots before, and a policy that ranks the same way makes
    /// the same greedy pick and has the same items to draw after the same earlier slots,
    /// so the product is the ratio of the page's probabilities at the two rates, given
    /// what came before the page: what one slot's choice does to the page's later slots
    /// is inside the estimate. Its weights vary far more than the slots'.
    Page,
}

/// What a slot earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// A complete view.
    CompleteView,
    /// A like.
    Like,
    /// A comment.
    Comment,
    /// A share.
    Share,
    /// A follow of the creator.
    Follow,
    /// A remix.
    Remix,
    /// A cameo use.
    CameoUse,
    /// A video made with it as the inspiration.
    Create,
    /// Any of remix, cameo use and create.
    Creation,
    /// Seconds watched.
    WatchSeconds,
    /// A skip (lower is better).
    Skip,
}

impl Reward {
    /// Its name on the command line.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// The reward of one served item's outcomes.
    pub fn of(self, o: &Outcomes) -> f64 {
        let b = |x: bool| f64::from(u8::from(x));
        match self {
            Reward::CompleteView => b(o.complete_view),
            Reward::Like => b(o.like),
            Reward::Comment => b(o.comment),
            Reward::Share => b(o.share),
            Reward::Follow => b(o.follow),
            Reward::Remix => b(o.remix),
            Reward::CameoUse => b(o.cameo_use),
            Reward::Create => b(o.create),
            Reward::Creation => b(o.remix || o.cameo_use || o.create),
            Reward::WatchSeconds => o.watch_ms as f64 / 1_000.0,
            Reward::Skip => b(o.skip),
        }
    }
}

/// Whose value an estimate is of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The serving profile at another exploration rate.
    Rate(f64),
    /// The shadow profile its pages were served beside, at its own exploration rate.
    Shadow(f64),
}

impl From<f64> for Target {
    fn from(eps: f64) -> Self {
        Target::Rate(eps)
    }
}

impl Target {
    fn rate(self) -> f64 {
        match self {
            Target::Rate(e) | Target::Shadow(e) => e,
        }
    }
}

/// An estimate of the reward per unit (explorable slot, or page).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error.
    pub std_error: f64,
    /// The 95 % interval (normal).
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// Units read (slots, or pages).
    pub units: usize,
    /// Their effective number under the weights, `(Σ w)² / Σ w²`.
    pub effective_units: f64,
    /// The largest weight.
    pub max_weight: f64,
}

/// The estimate for `target` (an exploration rate, or the shadow) over the explorable
/// slots of `rows` whose outcome window has closed; an error when there are none.
pub fn estimate(
    rows: &[LabeledImpression],
    target: impl Into<Target>,
    reward: Reward,
) -> anyhow::Result<Estimate> {
    let target = target.into();
    check_rate(target.rate())?;
    let mut wr = Vec::new();
    for r in explorable(rows)? {
        wr.push((
            r.request.as_str(),
            weight(r, target)?,
            reward.of(&r.outcomes),
        ));
    }
    weighted(&wr, target.rate())
}

/// The exploration rate is a probability.
fn check_rate(eps: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&eps) {
        bail!("the exploration rate must be between 0 and 1, not {eps}");
    }
    Ok(())
}

/// `π / μ` of a served item: the probability that `target` serves it in its slot over
/// its logged propensity (1 for a slot that could not explore).
fn weight(r: &LabeledImpression, target: Target) -> anyhow::Result<f64> {
    let Some(d) = r.draw else { return Ok(1.0) };
    let mu = f64::from(r.propensity);
    if !(mu > 0.0 && mu <= 1.0) {
        bail!(
            "{} at position {} of request {} has propensity {mu}: not a probability",
            r.video,
            r.position,
            r.request
        );
    }
    Ok(match target {
        Target::Rate(eps) => d.probability(eps),
        Target::Shadow(eps) => d.shadow_probability(eps),
    } / mu)
}

/// The reward per explorable slot of the policy that served `rows`, every weight 1:
/// what a profile's own run earned, to set beside another's estimate of it.
pub fn on_policy(rows: &[LabeledImpression], reward: Reward) -> anyhow::Result<Estimate> {
    let wr: Vec<(&str, f64, f64)> = explorable(rows)?
        .map(|r| (r.request.as_str(), 1.0, reward.of(&r.outcomes)))
        .collect();
    weighted(&wr, f64::NAN)
}

/// The mean reward of every served item of `rows` whose outcome window has closed,
/// explorable or not: what a run earned per slot, to set beside a shadow's estimate (every
/// slot of a page served beside a shadow has a draw).
pub fn served(rows: &[LabeledImpression], reward: Reward) -> anyhow::Result<Estimate> {
    let wr: Vec<(&str, f64, f64)> = rows
        .iter()
        .filter(|r| r.complete)
        .map(|r| (r.request.as_str(), 1.0, reward.of(&r.outcomes)))
        .collect();
    weighted(&wr, f64::NAN)
}

/// The page-by-page estimate for `target`: each page with an explorable slot whose
/// outcome windows have all closed, weighed by the product of its explorable slots'
/// weights, earns the mean reward of its items (see [`Unit::Page`]).
pub fn estimate_pages(
    rows: &[LabeledImpression],
    target: impl Into<Target>,
    reward: Reward,
) -> anyhow::Result<Estimate> {
    let target = target.into();
    check_rate(target.rate())?;
    check_explorable(rows)?;
    let mut wr = Vec::new();
    for (page, items) in pages(rows)? {
        let mut w = 1.0;
        for r in &items {
            w *= weight(r, target)?;
        }
        wr.push((page, w, mean_reward(&items, reward)));
    }
    weighted(&wr, target.rate())
}

/// The mean reward of a page's items, averaged over the pages with an explorable slot,
/// of the policy that served `rows`.
pub fn on_policy_pages(rows: &[LabeledImpression], reward: Reward) -> anyhow::Result<Estimate> {
    check_explorable(rows)?;
    let wr: Vec<(&str, f64, f64)> = pages(rows)?
        .into_iter()
        .map(|(page, items)| (page, 1.0, mean_reward(&items, reward)))
        .collect();
    weighted(&wr, f64::NAN)
}

/// The pages of `rows` to weigh, by request id: those with an explorable slot, every
/// outcome window closed, and a draw wherever a slot's propensity is below 1. A page
/// without any draw may have been served with exploration off, and an item drawn
/// without its draw logged (a record from before draws were logged) has no known
/// probability at another rate: both are left out. Rows of one request that repeat a
/// position (overlapping exports read together) are an error.
fn pages(rows: &[LabeledImpression]) -> anyhow::Result<Vec<(&str, Vec<&LabeledImpression>)>> {
    let mut by: std::collections::BTreeMap<&str, Vec<&LabeledImpression>> =
        std::collections::BTreeMap::new();
    for r in rows {
        by.entry(r.request.as_str()).or_default().push(r);
    }
    for (page, items) in &by {
        let positions: std::collections::BTreeSet<u32> = items.iter().map(|r| r.position).collect();
        if positions.len() != items.len() {
            bail!(
                "request {page} holds a position twice: are two overlapping exports read together?"
            );
        }
    }
    Ok(by
        .into_iter()
        .filter(|(_, items)| {
            items
                .iter()
                .all(|r| r.complete && (r.draw.is_some() || r.propensity >= 1.0))
                && items.iter().any(|r| r.draw.is_some())
        })
        .collect())
}

fn mean_reward(items: &[&LabeledImpression], reward: Reward) -> f64 {
    items.iter().map(|r| reward.of(&r.outcomes)).sum::<f64>() / items.len().max(1) as f64
}

/// The served items of slots that could explore, whose outcome window has closed.
fn explorable(
    rows: &[LabeledImpression],
) -> anyhow::Result<impl Iterator<Item = &LabeledImpression>> {
    check_explorable(rows)?;
    Ok(rows.iter().filter(|r| r.complete && r.draw.is_some()))
}

/// An error saying what is missing when `rows` hold no explorable slot whose outcome
/// window has closed.
fn check_explorable(rows: &[LabeledImpression]) -> anyhow::Result<()> {
    if rows.is_empty() {
        bail!("no served item to read (check --since, --input and --logged-profile)");
    }
    if !rows.iter().any(|r| r.draw.is_some()) {
        bail!(
            "no slot in the log could explore (with `[rank.selector] explore` at 0, every \
             slot is the greedy pick and another rate cannot be estimated)"
        );
    }
    if !rows.iter().any(|r| r.draw.is_some() && r.complete) {
        bail!(
            "no explorable slot's outcome window (`[learning] outcome_window_s`) has closed \
             yet: the outcomes are not final"
        );
    }
    Ok(())
}

/// The self-normalised mean of the rewards under the weights, `(page, w, r)` per slot.
fn weighted(wr: &[(&str, f64, f64)], eps: f64) -> anyhow::Result<Estimate> {
    let sw: f64 = wr.iter().map(|(_, w, _)| w).sum();
    if wr.is_empty() || sw <= 0.0 {
        bail!("a rate of {eps} would never have served what the log holds: no slot to weigh");
    }
    let value = wr.iter().map(|(_, w, r)| w * r).sum::<f64>() / sw;
    let mut per_page: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (page, w, r) in wr {
        *per_page.entry(page).or_default() += w * (r - value);
    }
    let var: f64 = per_page.values().map(|x| x * x).sum();
    let std_error = var.sqrt() / sw;
    let sw2: f64 = wr.iter().map(|(_, w, _)| w * w).sum();
    Ok(Estimate {
        value,
        std_error,
        low: value - 1.96 * std_error,
        high: value + 1.96 * std_error,
        units: wr.len(),
        effective_units: sw * sw / sw2,
        max_weight: wr.iter().map(|(_, w, _)| *w).fold(0.0, f64::max),
    })
}

/// The exploration rate of profile `target`, checked to differ from `logged` (the
/// profile that served the log) by nothing else that ranks: the same sources, scorer,
/// selector and model (`served_by`: the ids of the models that served the logged rows).
/// Another difference would change the greedy picks, which the log holds only for
/// `logged`.
pub fn check_profile(
    config: &Config,
    logged: &str,
    target: &str,
    served_by: &std::collections::BTreeSet<String>,
) -> anyhow::Result<f64> {
    let a = config.profile_rank(logged)?;
    let mut b = config.profile_rank(target)?;
    let eps = f64::from(b.selector.explore);
    b.selector.explore = a.selector.explore;
    if a != b {
        bail!(
            "profile {target:?} ranks differently from {logged:?} beyond the exploration rate \
             (sources, scorer or selector); the log holds {logged:?}'s greedy picks only, so \
             only a profile that differs by `selector.explore` can be estimated from it"
        );
    }
    check_model(config, target, served_by)?;
    Ok(eps)
}

/// The exploration rate of profile `target`, which `rows` were served beside as their
/// shadow, checked to score with the model it scored them with (`scored_by`: the ids of
/// the shadow's models the rows name).
pub fn check_shadow(
    config: &Config,
    target: &str,
    scored_by: &std::collections::BTreeSet<String>,
) -> anyhow::Result<f64> {
    let b = config.profile_rank(target)?;
    check_model(config, target, scored_by)?;
    Ok(f64::from(b.selector.explore))
}

/// Profile `target` serves the model every id of `used` names (the hand-set heads when
/// it names none).
fn check_model(
    config: &Config,
    target: &str,
    used: &std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    let file = match target {
        steerfeed::DEFAULT_PROFILE => config.learning.model.clone(),
        p => config.profiles.get(p).and_then(|p| p.model.clone()),
    };
    let model = match file {
        Some(f) => {
            steerfeed::model::RankModel::load(&f)
                .with_context(|| format!("profile {target:?}'s model"))?
                .id
        }
        None => steerfeed::model::HAND_SET.to_owned(),
    };
    if used.iter().any(|m| *m != model) {
        let used: Vec<&str> = used.iter().map(String::as_str).collect();
        bail!(
            "profile {target:?} serves model {model}, but the log's pages were scored for it \
             by {}; the log holds only their greedy picks",
            used.join(", ")
        );
    }
    Ok(())
}

/// Arguments of `steerfeed eval offpolicy`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The profile whose value to estimate (its `selector.explore` is the rate): one that
    /// differs from the logged profile only by that rate, or the shadow the logged pages
    /// were served beside (`[learning] shadow`).
    #[arg(long, conflicts_with = "explore", required_unless_present = "explore")]
    pub profile: Option<String>,
    /// Or the exploration rate to estimate, in [0, 1].
    #[arg(long)]
    pub explore: Option<f64>,
    /// The profile that served the log (its slots are the ones read).
    #[arg(long, default_value = steerfeed::DEFAULT_PROFILE)]
    pub logged_profile: String,
    /// What a slot earns.
    #[arg(long, value_enum, default_value = "complete-view")]
    pub reward: Reward,
    /// Weigh slot by slot (the reward per explorable slot) or page by page (the mean
    /// reward of a page's items, with how a slot's choice changes its page's later slots).
    #[arg(long, value_enum, default_value = "slot")]
    pub unit: Unit,
    /// Read items served at or after this (an RFC 3339 time, or an age: `30d`).
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Read served items with outcomes from this file (the JSON lines of `steerfeed logs
    /// export`) instead of the stopped store.
    #[arg(long)]
    pub input: Option<std::path::PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `steerfeed eval offpolicy` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// The profile that served the log.
    pub logged_profile: String,
    /// The target, when named by profile.
    pub profile: Option<String>,
    /// The target's exploration rate.
    pub explore: f64,
    /// The target is the shadow the logged pages were served beside.
    pub shadow: bool,
    /// What was weighed.
    pub unit: Unit,
    /// The reward.
    pub reward: Reward,
    /// The logged policy's own value, in the same unit (every weight 1).
    pub logged: Estimate,
    /// The target's, estimated.
    pub estimate: Estimate,
}

/// Estimates the target of `args` from `rows`, the served items with outcomes.
pub fn report(
    config: &Config,
    args: &Args,
    mut rows: Vec<LabeledImpression>,
) -> anyhow::Result<Report> {
    rows.retain(|r| r.profile == args.logged_profile);
    let beside = |r: &LabeledImpression, p: &str| r.shadow.as_ref().is_some_and(|s| s.profile == p);
    let target = match (&args.profile, args.explore) {
        // The pages served beside the profile as their shadow hold its picks.
        (Some(p), _) if *p != args.logged_profile && rows.iter().any(|r| beside(r, p)) => {
            rows.retain(|r| beside(r, p));
            let scored_by = rows
                .iter()
                .filter_map(|r| r.shadow.as_ref().map(|s| s.model.clone()))
                .collect();
            Target::Shadow(check_shadow(config, p, &scored_by)?)
        }
        (Some(p), _) => {
            let served_by = rows.iter().map(|r| r.model.clone()).collect();
            Target::Rate(check_profile(config, &args.logged_profile, p, &served_by)?)
        }
        (None, Some(e)) => Target::Rate(e),
        (None, None) => bail!("name a --profile or an --explore rate"),
    };
    let (eps, shadow) = (target.rate(), matches!(target, Target::Shadow(_)));
    let (logged, target) = match args.unit {
        Unit::Slot => (
            on_policy(&rows, args.reward),
            estimate(&rows, target, args.reward),
        ),
        Unit::Page => (
            on_policy_pages(&rows, args.reward),
            estimate_pages(&rows, target, args.reward),
        ),
    };
    let logged =
        logged.with_context(|| format!("the pages profile {:?} served", args.logged_profile))?;
    Ok(Report {
        logged_profile: args.logged_profile.clone(),
        profile: args.profile.clone(),
        explore: eps,
        shadow,
        unit: args.unit,
        reward: args.reward,
        logged,
        estimate: target?,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use steerfeed::{HeadInputs, ScoreBreakdown, SlotDraw, Timestamp, UserId, VideoId};

    use super::*;

    /// Slots of a known bandit: the greedy pick (not drawable) completes with
    /// probability 0.6, the four drawable items with 0.1, 0.2, 0.3 and 0.4; logged at
    /// rate `eps`.
    fn logged(eps: f64, slots: usize, seed: u64) -> Vec<LabeledImpression> {
        let mut rng = StdRng::seed_from_u64(seed);
        let q = [0.1, 0.2, 0.3, 0.4];
        (0..slots)
            .map(|i| {
                let explored = rng.random_bool(eps);
                let (p, propensity, draw) = if explored {
                    let j = rng.random_range(0..4usize);
                    (q[j], eps / 4.0, (false, true))
                } else {
                    (0.6, 1.0 - eps, (true, false))
                };
                LabeledImpression {
                    request: format!("r{i}"),
                    user: UserId::new("u1").unwrap(),
                    profile: "default".into(),
                    model: "hand-set".into(),
                    at: Timestamp::UNIX_EPOCH,
                    position: 0,
                    video: VideoId::new("v1").unwrap(),
                    source: "test".into(),
                    propensity: propensity as f32,
                    draw: Some(SlotDraw {
                        greedy: draw.0,
                        drawable: 4,
                        in_draw: draw.1,
                        shadow_greedy: false,
                        shadow_drawable: 0,
                        shadow_in_draw: false,
                    }),
                    shadow: None,
                    inputs: HeadInputs::default(),
                    breakdown: ScoreBreakdown::default(),
                    outcomes: Outcomes {
                        complete_view: rng.random_bool(p),
                        ..Outcomes::default()
                    },
                    complete: true,
                }
            })
            .collect()
    }

    #[test]
    fn the_estimate_finds_another_rates_known_value() {
        let rows = logged(0.2, 40_000, 7);
        for target in [0.0, 0.5, 0.9] {
            // The truth: (1 − ε')·0.6 + ε'·0.25.
            let truth = (1.0 - target) * 0.6 + target * 0.25;
            let e = estimate(&rows, target, Reward::CompleteView).unwrap();
            assert!(
                (e.value - truth).abs() < 3.0 * e.std_error && e.std_error < 0.02,
                "ε' {target}: {e:?} against {truth}"
            );
            assert!(e.low < truth && truth < e.high, "ε' {target}: {e:?}");
        }
        // At the logged rate every weight is 1: the estimate is the plain mean.
        let own = on_policy(&rows, Reward::CompleteView).unwrap();
        let same = estimate(&rows, 0.2, Reward::CompleteView).unwrap();
        assert!((own.value - same.value).abs() < 1e-6, "{own:?} {same:?}");
        assert!((same.effective_units - rows.len() as f64).abs() < 1e-3);
    }

    /// Slots served beside a shadow that agrees with the greedy pick half of the time and
    /// otherwise picks an item completing with probability 0.9: the estimate of the shadow
    /// at its own rate finds its known value, and weighs each slot by the mixture.
    #[test]
    fn the_shadow_estimate_finds_the_shadows_known_value() {
        let (eps, share) = (0.2, 0.3);
        let mut rng = StdRng::seed_from_u64(5);
        let q = [0.1, 0.2, 0.3, 0.4];
        let mut rows = logged(eps, 60_000, 9);
        for r in &mut rows {
            let agree = rng.random_bool(0.5);
            let u: f64 = rng.random();
            let (p, greedy, shadow_greedy, in_draw) = if u < eps {
                (q[rng.random_range(0..4usize)], false, false, true)
            } else if agree || u < eps + (1.0 - eps - share) {
                (0.6, true, agree, false)
            } else {
                (0.9, false, true, false)
            };
            // The shadow's own exploration draws from the same four items.
            let d = SlotDraw {
                greedy,
                drawable: 4,
                in_draw,
                shadow_greedy,
                shadow_drawable: 4,
                shadow_in_draw: in_draw,
            };
            r.draw = Some(d);
            r.propensity = d.logged_probability(eps, share) as f32;
            r.shadow = Some(steerfeed::PageShadow {
                profile: "other".into(),
                model: "hand-set".into(),
                share: share as f32,
            });
            r.outcomes.complete_view = rng.random_bool(p);
        }
        for target in [0.0, 0.1, 0.5] {
            // Half the slots: the shared pick (0.6); half: the shadow's own (0.9); each
            // explores at `target` among items worth 0.25 on average.
            let truth = (1.0 - target) * (0.5 * 0.6 + 0.5 * 0.9) + target * 0.25;
            let e = estimate(&rows, Target::Shadow(target), Reward::CompleteView).unwrap();
            assert!(
                (e.value - truth).abs() < 3.0 * e.std_error && e.std_error < 0.01,
                "ε' {target}: {e:?} against {truth}"
            );
        }
        // The serving profile's own rate, read from the same rows, is its known value:
        // greedy 0.6 at 1 − ε, drawn 0.25 at ε.
        let own = estimate(&rows, Target::Rate(eps), Reward::CompleteView).unwrap();
        let truth = (1.0 - eps) * 0.6 + eps * 0.25;
        assert!((own.value - truth).abs() < 3.0 * own.std_error, "{own:?}");
    }

    /// Pages of two slots where the second slot's greedy pick completes more often when
    /// the first slot was drawn (a change of item relieves fatigue). The page-by-page
    /// estimate finds another rate's known value; the slot-by-slot one, which holds the
    /// first slot as logged, misses it by the interaction.
    #[test]
    fn page_weights_see_how_one_slot_changes_the_next() {
        let eps = 0.2;
        let mut rng = StdRng::seed_from_u64(11);
        let q = [0.1, 0.2, 0.3, 0.4];
        let mut rows = Vec::new();
        for page in 0..60_000 {
            let mut first_drawn = false;
            for slot in 0..2u32 {
                let mut r = logged(eps, 1, page * 2 + u64::from(slot)).remove(0);
                let drawn = rng.random_bool(eps);
                let p = if drawn {
                    q[rng.random_range(0..4usize)]
                } else if slot == 1 && first_drawn {
                    0.8
                } else {
                    0.6
                };
                first_drawn |= drawn;
                r.request = format!("p{page}");
                r.position = slot;
                r.propensity = (if drawn { eps / 4.0 } else { 1.0 - eps }) as f32;
                r.draw = Some(SlotDraw {
                    greedy: !drawn,
                    drawable: 4,
                    in_draw: drawn,
                    shadow_greedy: false,
                    shadow_drawable: 0,
                    shadow_in_draw: false,
                });
                r.outcomes.complete_view = rng.random_bool(p);
                rows.push(r);
            }
        }
        let target: f64 = 0.6;
        // Slot 1: (1 − ε')·0.6 + ε'·0.25; slot 2's greedy pick earns 0.8 after a draw.
        let first = (1.0 - target) * 0.6 + target * 0.25;
        let second = (1.0 - target) * ((1.0 - target) * 0.6 + target * 0.8) + target * 0.25;
        let truth = (first + second) / 2.0;
        let paged = estimate_pages(&rows, target, Reward::CompleteView).unwrap();
        assert!(
            (paged.value - truth).abs() < 3.0 * paged.std_error && paged.std_error < 0.006,
            "{paged:?} against {truth}"
        );
        let slotted = estimate(&rows, target, Reward::CompleteView).unwrap();
        assert!(
            (slotted.value - truth).abs() > 3.0 * slotted.std_error,
            "the slot-by-slot estimate {slotted:?} should miss {truth}"
        );
        // At the logged rate every page weighs 1.
        let own = on_policy_pages(&rows, Reward::CompleteView).unwrap();
        let same = estimate_pages(&rows, eps, Reward::CompleteView).unwrap();
        assert!((own.value - same.value).abs() < 1e-6 && own.units == 60_000);
    }

    #[test]
    fn slots_of_one_page_count_together_in_the_error() {
        // The same slots, first each on its own page, then ten to a page with one reward
        // per page (as correlated as slots can be): the second's standard error is about
        // √10 times the first's.
        let mut rows = logged(0.2, 20_000, 3);
        for (i, r) in rows.iter_mut().enumerate() {
            r.outcomes.complete_view = (i / 10) % 3 == 0;
        }
        let alone = estimate(&rows, 0.5, Reward::CompleteView).unwrap();
        for (i, r) in rows.iter_mut().enumerate() {
            r.request = format!("p{}", i / 10);
        }
        let paged = estimate(&rows, 0.5, Reward::CompleteView).unwrap();
        let ratio = paged.std_error / alone.std_error;
        assert!(ratio > 2.0 && ratio < 4.5, "{ratio}: {alone:?} {paged:?}");
    }

    #[test]
    fn a_log_that_never_explored_or_a_bad_rate_is_an_error() {
        let mut rows = logged(0.2, 100, 1);
        assert!(estimate(&rows, 1.5, Reward::Like).is_err());
        assert!(estimate(&rows, f64::NAN, Reward::Like).is_err());
        for r in &mut rows {
            r.draw = None;
            r.propensity = 1.0;
        }
        let e = estimate(&rows, 0.3, Reward::Like).unwrap_err();
        assert!(e.to_string().contains("could explore"), "{e}");
        let e = estimate(&[], 0.3, Reward::Like).unwrap_err();
        assert!(e.to_string().contains("no served item"), "{e}");
        let mut open = logged(0.2, 10, 1);
        for r in &mut open {
            r.complete = false;
        }
        let e = estimate(&open, 0.3, Reward::Like).unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");
        let mut bad = logged(0.2, 10, 1);
        bad[0].propensity = 0.0;
        assert!(estimate(&bad, 0.3, Reward::Like).is_err());
    }

    #[test]
    fn a_profile_that_ranks_differently_is_refused() {
        let mut config = Config::default();
        let wide: toml::Table = toml::from_str("[selector]\nexplore = 0.4").unwrap();
        let heavy: toml::Table =
            toml::from_str("[selector]\nexplore = 0.4\n[scorer.weights]\ncreate = 9.0").unwrap();
        config.profiles.insert("wide".into(), profile(wide));
        config.profiles.insert("heavy".into(), profile(heavy));
        let hand: std::collections::BTreeSet<String> =
            [steerfeed::model::HAND_SET.to_owned()].into();
        let check = |target: &str, served: &std::collections::BTreeSet<String>| {
            check_profile(&config, steerfeed::DEFAULT_PROFILE, target, served)
        };
        let eps = check("wide", &hand).unwrap();
        assert!((eps - 0.4).abs() < 1e-6);
        let e = check("heavy", &hand).unwrap_err();
        assert!(e.to_string().contains("ranks differently"), "{e}");
        assert!(check("missing", &hand).is_err());
        // Pages a trained model served (set while serving, so not in the configuration)
        // hold that model's greedy picks, not the hand-set heads'.
        let trained: std::collections::BTreeSet<String> = ["m-0000abcd".to_owned()].into();
        let e = check("wide", &trained).unwrap_err();
        assert!(e.to_string().contains("m-0000abcd"), "{e}");
    }

    fn profile(rank: toml::Table) -> steerfeed::ProfileConfig {
        steerfeed::ProfileConfig {
            rank,
            ..Default::default()
        }
    }
}
