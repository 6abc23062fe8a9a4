//! `steerfeed eval simulate`: closed-loop sessions on a seeded synthetic world through
//! the real engine.
//!
//! A [`World`] is generated and loaded into an [`Engine`] opened on a temporary store
//! (the world's clustered embeddings; captions are not embedded). Then, day after day,
//! every user opens sessions at plausible local hours of their time zone and pages
//! through the feed, reacting to each item with the behaviour model of
//! [`steerfeed::world::behaviour`]; the events (impressions, views, skips, likes, ...,
//! check-in answers) go back through [`Engine::ingest_events`], created videos and
//! remixes through [`Engine::upsert_videos`]. A share of users states a preference in
//! plain words halfway through; some featured people revoke consent mid-run.
//!
//! The metrics are computed from ground truth ([`Ground`]), independently of the
//! engine's own filters: consent, teen limits and hard exclusions are re-checked for
//! every served item at serve time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use steerfeed::model::RankModel;
use steerfeed::world::behaviour::{self, Creation, Item, Session, Viewer};
use steerfeed::world::{Revocation as WorldRevocation, World, WorldConfig};
use steerfeed::{
    AgeBand, CardKind, CheckinAnswer, Config, ConsentScope, Constraints, Cursor, Embedding, Engine,
    Event, EventKey, EventKind, FeedRequest, Revocation, SafetyLabel, SessionId, Timestamp,
    TopicId, UserId, Video, VideoId,
};

use crate::progress::Progress;

/// Ranking policies the simulation compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The default configuration: creation, remix and cameo weighted high, the passive
    /// consumption penalty on.
    Creation,
    /// Creation, remix and cameo weights at 0 and the passive-consumption penalty off:
    /// likes, completes, comments and shares drive the ranking.
    Engagement,
}

/// How simulated people come to create (see [`behaviour::Model`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Hidden per-person creation propensity and taste, which the engine cannot read.
    #[default]
    Hidden,
    /// Creation invited by remix chains, friends' cameos and followed creators, the
    /// features the engine's hand-set lifts read.
    Invited,
}

impl Behaviour {
    fn model(self) -> behaviour::Model {
        match self {
            Behaviour::Hidden => behaviour::Model::Hidden,
            Behaviour::Invited => behaviour::Model::Invited,
        }
    }
}

/// Arguments of `steerfeed eval simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Users in the world.
    #[arg(long, default_value_t = 300)]
    pub users: usize,
    /// Videos in the world.
    #[arg(long, default_value_t = 3000)]
    pub videos: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 2)]
    pub days: u32,
    /// Seed of the world and of every behaviour.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Ranking policy.
    #[arg(long, value_enum, default_value_t = Policy::Creation)]
    pub policy: Policy,
    /// Overrides the create, remix and cameo_use weights of the objective.
    #[arg(long)]
    pub creation_weight: Option<f32>,
    /// Wellbeing throttles off (check-ins, breaks, creation prompts, the passive
    /// penalty); teens' daily limits and bedtime stay on.
    #[arg(long)]
    pub no_throttles: bool,
    /// Share of users given a preference halfway through.
    #[arg(long, default_value_t = 0.2)]
    pub preference_share: f32,
    /// Items per feed page.
    #[arg(long, default_value_t = 10)]
    pub page: u32,
    /// Mean historic engagements per user before the run.
    #[arg(long, default_value_t = 40)]
    pub history: usize,
    /// How simulated people come to create.
    #[arg(long, value_enum, default_value_t = Behaviour::Hidden)]
    pub behaviour: Behaviour,
    /// The share of slots filled by logged exploration (`[rank.selector] explore`).
    #[arg(long)]
    pub explore: Option<f32>,
    /// Serve this model file's heads (from `steerfeed train`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Keep the run's store in this new folder (a temporary one otherwise), for `steerfeed
    /// logs export`, `train` or `eval offpolicy` on its impression log afterwards.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// What to simulate (the library form of [`Args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Users in the world.
    pub users: usize,
    /// Videos in the world.
    pub videos: usize,
    /// Simulated days.
    pub days: u32,
    /// Seed.
    pub seed: u64,
    /// Ranking policy.
    pub policy: Policy,
    /// Overrides the creation weights.
    pub creation_weight: Option<f32>,
    /// Wellbeing throttles off.
    pub no_throttles: bool,
    /// Share of users given a preference at day `days / 2`.
    pub preference_share: f32,
    /// Items per page.
    pub page: u32,
    /// Store directory (a temporary one when `None`).
    pub store: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Mean historic engagements per user before the run (the world's
    /// `events_per_user`): how much the engine has learned before the first session.
    pub history_per_user: usize,
    /// How simulated people come to create.
    pub behaviour: Behaviour,
    /// Overrides `[rank.selector] explore`.
    pub explore: Option<f32>,
    /// A model put in force before the first session.
    pub model: Option<RankModel>,
    /// A model put in force, before the first session, in the profile `[learning]
    /// shadow` names.
    pub shadow_model: Option<RankModel>,
}

impl SimOptions {
    /// Defaults for a world of `users` and `videos` over `days`.
    pub fn new(users: usize, videos: usize, days: u32, seed: u64, policy: Policy) -> Self {
        Self {
            users,
            videos,
            days,
            seed,
            policy,
            creation_weight: None,
            no_throttles: false,
            preference_share: 0.2,
            page: 10,
            store: None,
            progress: true,
            history_per_user: 40,
            behaviour: Behaviour::Hidden,
            explore: None,
            model: None,
            shadow_model: None,
        }
    }
}

impl TryFrom<&Args> for SimOptions {
    type Error = anyhow::Error;

    fn try_from(a: &Args) -> anyhow::Result<Self> {
        let model = match &a.model {
            Some(path) => Some(RankModel::load(path)?),
            None => None,
        };
        Ok(Self {
            creation_weight: a.creation_weight,
            no_throttles: a.no_throttles,
            preference_share: a.preference_share,
            page: a.page,
            history_per_user: a.history,
            behaviour: a.behaviour,
            explore: a.explore,
            model,
            store: a.store.clone(),
            ..Self::new(a.users, a.videos, a.days, a.seed, a.policy)
        })
    }
}

/// Steering compliance of the preference users: the share of their served items that
/// match their preference before and after it was set, averaged over the users served
/// items in both periods (each user counts once, whatever their session lengths).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Steering {
    /// Users given a preference.
    pub users: usize,
    /// Users served items both before and after (the averages' users).
    pub compared_users: usize,
    /// Matching share of their items before.
    pub before: f64,
    /// Matching share after.
    pub after: f64,
    /// Items served to them before / after.
    pub items_before: u64,
    /// Items served after.
    pub items_after: u64,
    /// A few of the preference texts given.
    pub examples: Vec<String>,
}

/// What a simulation measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimReport {
    /// The policy.
    pub policy: Option<Policy>,
    /// The creation weight override, if any.
    pub creation_weight: Option<f32>,
    /// Whether the wellbeing throttles were off.
    pub no_throttles: bool,
    /// How simulated people came to create.
    pub behaviour: Behaviour,
    /// The share of slots filled by exploration.
    pub explore: f32,
    /// The id of the model whose heads served.
    pub model: String,
    /// Users.
    pub users: usize,
    /// Videos at the start.
    pub videos: usize,
    /// Days.
    pub days: u32,
    /// Seed.
    pub seed: u64,
    /// Sessions run.
    pub sessions: usize,
    /// Items served.
    pub items_served: u64,
    /// Creation actions (create + remix + cameo use) per hour of session time.
    pub creation_per_hour: f64,
    /// Creation actions in all.
    pub creation_actions: u64,
    /// Watch minutes on items with no active action, per user-day.
    pub passive_minutes_per_user_day: f64,
    /// Session minutes per user-day.
    pub minutes_per_user_day: f64,
    /// Share of served items from followed creators.
    pub following_share: f64,
    /// Mean distinct main topics per page.
    pub diversity: f64,
    /// Share of served items in a remix chain (they invite a remix in the invited model).
    pub remix_chain_share: f64,
    /// Share of served items featuring someone the viewer follows (they invite a cameo in
    /// the invited model).
    pub friend_cameo_share: f64,
    /// Mean inspiration (the behaviour model's seeded trait) of served items.
    pub mean_inspiration: f64,
    /// Check-in cards shown.
    pub checkins_shown: u64,
    /// Break cards shown.
    pub breaks_shown: u64,
    /// Creation prompt cards shown.
    pub creation_prompts_shown: u64,
    /// Gate cards (limit, bedtime, caught up) that ended a session.
    pub gates: u64,
    /// Items served to a teen past the daily minutes or items, or during bedtime.
    pub teen_limit_violations: u64,
    /// Items served featuring a person whose consent did not allow it at serve time.
    pub consent_violations: u64,
    /// Items served of an excluded topic, or outside an `only` list.
    pub hard_exclusion_violations: u64,
    /// Steering compliance.
    pub steering: Steering,
    /// Revocations made during the run.
    pub revocations_during_run: usize,
    /// Minutes of every session.
    pub session_minutes: Vec<f32>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

// ---------------------------------------------------------------------------------------
// Ground truth.

/// The ground truth the violation checks read: videos, consent grants, revocations made
/// so far and the follow graph (the world's plus follows made during the run).
#[derive(Debug, Default)]
pub struct Ground {
    /// Every video by id (the world's and those created during the run).
    pub videos: HashMap<VideoId, Video>,
    /// Consent scope per person (absent: nobody), already clamped for teens.
    pub scopes: HashMap<UserId, ConsentScope>,
    /// Revoked (person, video).
    pub revoked_videos: HashSet<(UserId, VideoId)>,
    /// Revoked (person, creator).
    pub revoked_creators: HashSet<(UserId, UserId)>,
    /// Follow edges (follower, followee).
    pub follows: HashSet<(UserId, UserId)>,
}

impl Ground {
    /// The ground truth of `world` (its videos, grants, revocations and follows).
    pub fn of(world: &World) -> Self {
        let mut g = Ground::default();
        let teen: HashSet<&UserId> = world
            .users
            .iter()
            .filter(|u| u.user.age_band == AgeBand::Teen)
            .map(|u| &u.user.id)
            .collect();
        for c in &world.consents {
            let band = if teen.contains(&c.person) {
                AgeBand::Teen
            } else {
                AgeBand::Adult
            };
            g.scopes.insert(c.person.clone(), c.scope.clamp_for(band));
        }
        for r in &world.revocations {
            g.revoke(r);
        }
        g.follows = world.follows.iter().cloned().collect();
        for v in &world.videos {
            g.videos.insert(v.id.clone(), v.clone());
        }
        g
    }

    /// Records a revocation.
    pub fn revoke(&mut self, r: &WorldRevocation) {
        match r {
            WorldRevocation::Video { person, video } => {
                self.revoked_videos.insert((person.clone(), video.clone()));
            }
            WorldRevocation::Creator { person, creator } => {
                self.revoked_creators
                    .insert((person.clone(), creator.clone()));
            }
        }
    }

    fn mutual(&self, a: &UserId, b: &UserId) -> bool {
        self.follows.contains(&(a.clone(), b.clone()))
            && self.follows.contains(&(b.clone(), a.clone()))
    }

    /// Whether serving `video` breaks someone's consent: a featured person (other than
    /// the creator) who revoked it for this video or creator, or whose scope does not
    /// cover its creator (nobody; approved lists are empty in the world; mutuals needs a
    /// mutual follow). Unknown videos count as violations.
    pub fn consent_violation(&self, video: &VideoId) -> bool {
        let Some(v) = self.videos.get(video) else {
            return true;
        };
        v.cameos.iter().filter(|p| **p != v.creator).any(|p| {
            if self.revoked_videos.contains(&(p.clone(), v.id.clone()))
                || self
                    .revoked_creators
                    .contains(&(p.clone(), v.creator.clone()))
            {
                return true;
            }
            match self.scopes.get(p).copied().unwrap_or(ConsentScope::Nobody) {
                ConsentScope::Nobody | ConsentScope::Approved => true,
                ConsentScope::Mutuals => !self.mutual(p, &v.creator),
                ConsentScope::Everyone => false,
            }
        })
    }

    /// Whether `video` breaks the hard part of `constraints`: one of its topics is
    /// excluded, or an `only` list is set and none of its topics is on it.
    pub fn exclusion_violation(&self, video: &VideoId, constraints: &Constraints) -> bool {
        let Some(v) = self.videos.get(video) else {
            return true;
        };
        let excluded = constraints
            .exclude
            .iter()
            .filter_map(|c| c.topic.as_ref())
            .any(|t| v.topics.contains(t));
        let only: Vec<&TopicId> = constraints
            .only
            .iter()
            .filter_map(|c| c.topic.as_ref())
            .collect();
        excluded || (!only.is_empty() && !only.iter().any(|t| v.topics.contains(t)))
    }
}

/// A teen's counters for one local day (the engine's definitions: watch minutes of view
/// events, items shown).
#[derive(Debug, Clone, Default)]
struct TeenDay {
    day: Option<jiff::civil::Date>,
    minutes: f64,
    items: u64,
}

/// A preference given to a user and how to tell whether an item matches it.
#[derive(Debug, Clone)]
struct Pref {
    text: String,
    constraints: Constraints,
    at: Timestamp,
}

impl Pref {
    fn matches(&self, v: &Video) -> bool {
        let c = &self.constraints;
        let has = |t: &Option<TopicId>| t.as_ref().is_some_and(|t| v.topics.contains(t));
        if !c.only.is_empty() {
            return c.only.iter().any(|x| has(&x.topic));
        }
        if !c.exclude.is_empty() {
            return !c.exclude.iter().any(|x| has(&x.topic));
        }
        c.boost.iter().any(|x| has(&x.topic))
    }
}

// ---------------------------------------------------------------------------------------
// The run.

fn engine_config(base: &Config, opts: &SimOptions, dir: PathBuf) -> Config {
    let mut c = base.clone();
    c.store.path = dir;
    // The world's videos are folded into the graph once, after loading (see
    // `simulate_then`), by one thread: a graph built by several depends on their
    // interleaving. Videos created during the run stay in the exact live segment rather
    // than being folded in by a background thread whose timing would decide which
    // searches see the new graph. So one seed replays one run.
    c.index.build.threads = 1;
    c.index.build.max_live = 0;
    if let Some(e) = opts.explore {
        c.rank.selector.explore = e;
    }
    let w = &mut c.rank.scorer.weights;
    if opts.policy == Policy::Engagement {
        w.create = 0.0;
        w.remix = 0.0;
        w.cameo_use = 0.0;
        let wb = &mut c.rank.wellbeing;
        wb.lambda_base = 0.0;
        wb.lambda_per_hour = 0.0;
        wb.lambda_streak = 0.0;
        wb.lambda_max = 0.0;
    }
    if let Some(x) = opts.creation_weight {
        w.create = x;
        w.remix = x;
        w.cameo_use = x;
    }
    if opts.no_throttles {
        let wb = &mut c.rank.wellbeing;
        wb.checkin_minutes = 24 * 60;
        wb.teen_checkin_minutes = 24 * 60;
        wb.passive_streak = 10_000;
        wb.not_great_hours = 0.0;
        wb.lambda_base = 0.0;
        wb.lambda_per_hour = 0.0;
        wb.lambda_streak = 0.0;
        wb.lambda_max = 0.0;
    }
    c
}

/// Local hours at which sessions start (weights), a plausible daily rhythm with a few
/// late-night sessions (so teens' bedtime gate is exercised).
const HOURS: [(u8, f32); 12] = [
    (7, 0.6),
    (8, 0.8),
    (12, 1.0),
    (13, 0.6),
    (17, 0.8),
    (18, 1.0),
    (19, 1.2),
    (20, 1.4),
    (21, 1.4),
    (22, 0.8),
    (23, 0.4),
    (0, 0.2),
];

struct Sim<'a> {
    engine: &'a Engine,
    world: &'a World,
    opts: &'a SimOptions,
    ground: Ground,
    tzs: Vec<jiff::tz::TimeZone>,
    topic_index: HashMap<TopicId, usize>,
    centroids: Vec<Vec<f32>>,
    remixed: HashSet<VideoId>,
    teen_days: Vec<TeenDay>,
    prefs: Vec<Option<Pref>>,
    events: Vec<Event>,
    seq: u64,
    created: u64,
    r: SimReport,
    pages: u64,
    distinct_sum: f64,
    followed_items: u64,
    /// Served items in a remix chain, with a friend's cameo, and their summed inspiration.
    invites: (u64, u64, f64),
    /// Per user: (matching, served) before and after the preference.
    pref_matches: Vec<[(u64, u64); 2]>,
}

/// Runs a closed-loop simulation and returns what it measured.
pub fn simulate(config: &Config, opts: &SimOptions) -> anyhow::Result<SimReport> {
    Ok(simulate_then(config, opts, |_| Ok(()))?.0)
}

/// [`simulate`], then `after` on the engine the run used (before it closes): to read its
/// impression log, for one.
pub fn simulate_then<T>(
    config: &Config,
    opts: &SimOptions,
    after: impl FnOnce(&Engine) -> anyhow::Result<T>,
) -> anyhow::Result<(SimReport, T)> {
    let started = Instant::now();
    if opts.users == 0 || opts.videos == 0 || opts.days == 0 {
        bail!("users, videos and days must be positive");
    }
    if !(1..=100).contains(&opts.page) {
        bail!("page must be 1 to 100 items");
    }
    if !(0.0..=1.0).contains(&opts.preference_share) {
        bail!("preference share must be between 0 and 1");
    }
    if let Some(e) = opts.explore
        && !(0.0..=1.0).contains(&e)
    {
        bail!("explore must be between 0 and 1");
    }
    let tmp;
    let dir = match &opts.store {
        Some(d) if d.read_dir().is_ok_and(|mut e| e.next().is_some()) => {
            bail!(
                "{} is not empty: a run starts from a new store",
                d.display()
            )
        }
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("temporary store")?;
            tmp.path().join("store")
        }
    };
    let cfg = engine_config(config, opts, dir);
    let mut wc = WorldConfig::new(opts.seed, opts.users, opts.videos);
    wc.events_per_user = opts.history_per_user;
    let mut world = World::generate(wc);
    world.events = behaviour_history(&world, opts.seed, opts.behaviour)?;
    let engine = Engine::open(cfg).context("opening the engine")?;
    steerfeed::demo::load_world(&engine, &world, 1000).context("loading the world")?;
    engine.compact_index();
    if let Some(m) = &opts.model {
        engine
            .set_model(m.clone())
            .context("putting the model in force")?;
    }
    if let Some(m) = &opts.shadow_model {
        let shadow = config
            .learning
            .shadow
            .as_deref()
            .context("a shadow model needs [learning] shadow")?;
        engine
            .set_model_for(shadow, m.clone())
            .context("putting the shadow's model in force")?;
    }

    let mut sim = Sim::new(&engine, &world, opts)?;
    sim.run()?;
    let mut r = sim.finish();
    r.seconds = started.elapsed().as_secs_f64();
    let t = after(&engine)?;
    Ok((r, t))
}

impl<'a> Sim<'a> {
    fn new(engine: &'a Engine, world: &'a World, opts: &'a SimOptions) -> anyhow::Result<Self> {
        let tzs = world
            .users
            .iter()
            .map(|u| jiff::tz::TimeZone::get(&u.user.time_zone))
            .collect::<Result<Vec<_>, _>>()
            .context("time zone")?;
        let topic_index: HashMap<TopicId, usize> = world.topic_index();
        // Topic centroids of the world's embeddings, for created videos.
        let dim = world.config.dim;
        let mut centroids = vec![vec![0.0f32; dim]; world.config.topics.len()];
        for (v, &t) in world.videos.iter().zip(&world.video_topic) {
            if let Some(e) = &v.embedding {
                for (c, x) in centroids[t].iter_mut().zip(e.as_slice()) {
                    *c += x;
                }
            }
        }
        let remixed = world
            .videos
            .iter()
            .filter_map(|v| v.remix_of.clone())
            .collect();
        Ok(Self {
            engine,
            world,
            opts,
            ground: Ground::of(world),
            tzs,
            topic_index,
            centroids,
            remixed,
            teen_days: vec![TeenDay::default(); world.users.len()],
            prefs: vec![None; world.users.len()],
            events: Vec::new(),
            seq: 0,
            created: 0,
            r: SimReport {
                policy: Some(opts.policy),
                creation_weight: opts.creation_weight,
                no_throttles: opts.no_throttles,
                behaviour: opts.behaviour,
                explore: engine.config().rank.selector.explore,
                model: engine.model_info().id,
                users: opts.users,
                videos: opts.videos,
                days: opts.days,
                seed: opts.seed,
                ..SimReport::default()
            },
            pages: 0,
            invites: (0, 0, 0.0),
            distinct_sum: 0.0,
            followed_items: 0,
            pref_matches: vec![[(0, 0); 2]; world.users.len()],
        })
    }

    /// Session start times of every user over the run, in time order.
    fn schedule(&self, rng: &mut StdRng) -> anyhow::Result<Vec<(Timestamp, usize)>> {
        let mut out = Vec::new();
        let now = self.world.config.now;
        for (i, tz) in self.tzs.iter().enumerate() {
            let today = tz.to_datetime(now).date();
            for d in 0..self.opts.days {
                let date = today.checked_add(jiff::Span::new().days(i64::from(d) + 1))?;
                let n = rng.random_range(1..=3);
                for _ in 0..n {
                    let total: f32 = HOURS.iter().map(|h| h.1).sum();
                    let mut x = rng.random_range(0.0..total);
                    let mut hour = 20;
                    for &(h, w) in &HOURS {
                        if x < w {
                            hour = h;
                            break;
                        }
                        x -= w;
                    }
                    let minute = rng.random_range(0..60i8);
                    let dt = date.at(hour as i8, minute, 0, 0);
                    let at = tz.to_ambiguous_timestamp(dt).compatible()?;
                    out.push((at, i));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let mut rng = StdRng::seed_from_u64(self.opts.seed ^ 0x51_u64);
        let schedule = self.schedule(&mut rng)?;
        let first = schedule
            .first()
            .map(|s| s.0)
            .unwrap_or(self.world.config.now);
        let pref_at =
            Timestamp::from_second(first.as_second() + i64::from(self.opts.days) * 86_400 / 2)?;
        let mut prefs_given = false;
        self.plan_preferences(&mut rng, pref_at)?;
        // Revocations during the run: a few per day, at evenly spread times.
        let revocations = self.plan_revocations(&mut rng, first)?;
        let mut next_rev = 0;

        let progress = self
            .opts
            .progress
            .then(|| Progress::new("sessions", schedule.len() as u64));
        for (at, user) in schedule {
            while next_rev < revocations.len() && revocations[next_rev].0 <= at {
                let (when, rev) = &revocations[next_rev];
                self.apply_revocation(rev, *when)?;
                next_rev += 1;
            }
            if !prefs_given && at >= pref_at {
                self.give_preferences(pref_at)?;
                prefs_given = true;
            }
            let mut srng = StdRng::seed_from_u64(
                self.opts.seed ^ (at.as_second() as u64).wrapping_mul(31) ^ (user as u64) << 40,
            );
            self.session(user, at, &mut srng)?;
            if let Some(p) = &progress {
                p.inc(1);
            }
        }
        if let Some(p) = &progress {
            p.finish();
        }
        Ok(())
    }

    fn plan_revocations(
        &self,
        rng: &mut StdRng,
        first: Timestamp,
    ) -> anyhow::Result<Vec<(Timestamp, WorldRevocation)>> {
        let featured: Vec<&Video> = self
            .world
            .videos
            .iter()
            .filter(|v| v.cameos.iter().any(|p| *p != v.creator))
            .collect();
        let mut out = Vec::new();
        if featured.is_empty() {
            return Ok(out);
        }
        let n = (featured.len() / 20).max(2) * self.opts.days as usize;
        let span = i64::from(self.opts.days) * 86_400;
        for _ in 0..n {
            let v = featured[rng.random_range(0..featured.len())];
            let people: Vec<&UserId> = v.cameos.iter().filter(|p| **p != v.creator).collect();
            let person = people[rng.random_range(0..people.len())].clone();
            let rev = if rng.random_range(0..2) == 0 {
                WorldRevocation::Video {
                    person,
                    video: v.id.clone(),
                }
            } else {
                WorldRevocation::Creator {
                    person,
                    creator: v.creator.clone(),
                }
            };
            let at = Timestamp::from_second(first.as_second() + rng.random_range(0..span))?;
            out.push((at, rev));
        }
        out.sort_by_key(|x| x.0);
        Ok(out)
    }

    fn apply_revocation(&mut self, rev: &WorldRevocation, _at: Timestamp) -> anyhow::Result<()> {
        match rev {
            WorldRevocation::Video { person, video } => self
                .engine
                .revoke_consent(person, &Revocation::Video(video.clone()))?,
            WorldRevocation::Creator { person, creator } => self
                .engine
                .revoke_consent(person, &Revocation::Creator(creator.clone()))?,
        }
        self.ground.revoke(rev);
        self.r.revocations_during_run += 1;
        Ok(())
    }

    /// Stores the planned preferences (through the engine's parser, in plain words).
    fn give_preferences(&mut self, at: Timestamp) -> anyhow::Result<()> {
        for (i, u) in self.world.users.iter().enumerate() {
            if let Some(p) = &self.prefs[i] {
                self.engine.set_preferences(&u.user.id, &p.text, at)?;
            }
        }
        Ok(())
    }

    /// Plans a preference in plain words for a share of users, to be set at `at`: only
    /// their main interest, more of their second interest, or no of a popular topic.
    /// Compiled now (same parser, same clock) so items before can be scored against it.
    fn plan_preferences(&mut self, rng: &mut StdRng, at: Timestamp) -> anyhow::Result<()> {
        let topics = &self.world.config.topics;
        for (i, u) in self.world.users.iter().enumerate() {
            if rng.random_range(0.0..1.0f32) >= self.opts.preference_share {
                continue;
            }
            let word = |t: usize| topics[t].as_str().replace('_', " ");
            let text = match rng.random_range(0..3) {
                0 => format!("only {}", word(u.interests[0].0)),
                1 => match u.interests.get(1) {
                    Some(&(t, _)) => format!("more {}", word(t)),
                    None => format!("more {}", word(rng.random_range(0..topics.len()))),
                },
                _ => {
                    // A popular topic they are not into.
                    let t =
                        ["comedy", "politics", "gaming", "sports", "music"][rng.random_range(0..5)];
                    format!("no {t}")
                }
            };
            let constraints = self.engine.parse_preferences(&text, u.user.age_band, at)?;
            if constraints.is_empty() {
                continue; // nothing that ranks (e.g. a policy rejection)
            }
            self.prefs[i] = Some(Pref {
                text,
                constraints,
                at,
            });
        }
        self.r.steering.users = self.prefs.iter().flatten().count();
        self.r.steering.examples = self
            .prefs
            .iter()
            .flatten()
            .take(6)
            .map(|p| p.text.clone())
            .collect();
        Ok(())
    }

    fn next_key(&mut self) -> anyhow::Result<EventKey> {
        self.seq += 1;
        Ok(EventKey::new(format!("sim{}", self.seq))?)
    }

    fn push(&mut self, user: &UserId, at: Timestamp, kind: EventKind) -> anyhow::Result<()> {
        let key = self.next_key()?;
        self.events.push(Event {
            key,
            user: user.clone(),
            at,
            kind,
        });
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.events.is_empty() {
            self.engine.ingest_events(&self.events)?;
            self.events.clear();
        }
        Ok(())
    }

    fn item_of(&self, user: usize, v: &Video) -> Item {
        item_of(
            &self.world.users[user].user.id,
            v,
            &self.ground.follows,
            &self.remixed,
            &self.topic_index,
            self.opts.seed,
        )
    }

    /// Checks a teen's limits at `at`; rolls the local day.
    fn teen_over(&mut self, user: usize, at: Timestamp) -> bool {
        let wb = &self.engine.config().rank.wellbeing;
        let local = self.tzs[user].to_datetime(at);
        let day = &mut self.teen_days[user];
        if day.day != Some(local.date()) {
            *day = TeenDay {
                day: Some(local.date()),
                ..TeenDay::default()
            };
        }
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        let (s, e) = (wb.bedtime_start.minutes(), wb.bedtime_end.minutes());
        let bedtime = if s < e {
            (s..e).contains(&minute)
        } else {
            minute >= s || minute < e
        };
        bedtime
            || day.minutes >= f64::from(wb.teen_daily_minutes)
            || day.items >= u64::from(wb.teen_daily_items)
    }

    fn session(&mut self, user: usize, start: Timestamp, rng: &mut StdRng) -> anyhow::Result<()> {
        let su = &self.world.users[user];
        let me = su.user.id.clone();
        let teen = su.user.age_band == AgeBand::Teen;
        let viewer = Viewer {
            interests: &su.interests,
            teen,
            creator: su.creator,
            traits: behaviour::Traits::of(me.as_str(), self.opts.seed),
            model: self.opts.behaviour.model(),
        };
        let mut state = Session::default();
        let mut clock_ms = start.as_millisecond();
        let session_id = SessionId::new(format!("s{}-{}", user, start.as_second()))?;
        let mut cursor: Option<Cursor> = None;
        let mut ended = false;
        self.r.sessions += 1;
        while !ended {
            let now = Timestamp::from_millisecond(clock_ms)?;
            let mut req = FeedRequest::new(me.clone(), self.opts.page)?
                .with_session(session_id.clone())
                .at(now);
            if let Some(c) = cursor.take() {
                req = req.with_cursor(c);
            }
            let resp = self.engine.feed(&req)?;
            cursor = resp.next_cursor.clone();
            let mut gate = false;
            let mut prompt = false;
            let mut break_card = false;
            for card in &resp.cards {
                match card.kind {
                    CardKind::Checkin => {
                        self.r.checkins_shown += 1;
                        let answer: CheckinAnswer = behaviour::answer_checkin(&state, rng);
                        self.push(&me, now, EventKind::CheckinAnswer { answer })?;
                    }
                    CardKind::Break => {
                        self.r.breaks_shown += 1;
                        break_card = true;
                    }
                    CardKind::CreationPrompt => {
                        self.r.creation_prompts_shown += 1;
                        prompt = true;
                    }
                    CardKind::LimitReached | CardKind::Bedtime | CardKind::CaughtUp => {
                        gate = true;
                    }
                }
            }
            // Ground-truth checks of every served item at serve time, before anything else
            // (a page that came with a gate card is checked too: it should be empty). The
            // teen limit is checked per item: the page must stop at the item limit.
            let over = teen && self.teen_over(user, now);
            let items_before = self.teen_days[user].items;
            let item_limit = u64::from(self.engine.config().rank.wellbeing.teen_daily_items);
            let pref = self.prefs[user].clone();
            let mut topics = BTreeSet::new();
            for (k, it) in resp.items.iter().enumerate() {
                self.r.items_served += 1;
                if over || (teen && items_before + k as u64 >= item_limit) {
                    self.r.teen_limit_violations += 1;
                }
                if self.ground.consent_violation(&it.video) {
                    self.r.consent_violations += 1;
                }
                // Preferences hold from the first session that starts after they were set
                // (sessions run one after the other on the simulated clock).
                if let Some(p) = &pref
                    && start >= p.at
                    && self.ground.exclusion_violation(&it.video, &p.constraints)
                {
                    self.r.hard_exclusion_violations += 1;
                }
                if let Some(v) = self.ground.videos.get(&it.video) {
                    topics.insert(v.topics.first().cloned());
                    if self
                        .ground
                        .follows
                        .contains(&(me.clone(), v.creator.clone()))
                    {
                        self.followed_items += 1;
                    }
                    let item = self.item_of(user, v);
                    self.invites.0 += u64::from(item.remix_chain);
                    self.invites.1 += u64::from(item.friend_cameo);
                    self.invites.2 += f64::from(item.inspiration);
                    if let Some(p) = &pref {
                        let k = usize::from(start >= p.at);
                        self.pref_matches[user][k].0 += u64::from(p.matches(v));
                        self.pref_matches[user][k].1 += 1;
                    }
                }
            }
            if resp.items.is_empty() || gate {
                if gate {
                    self.r.gates += 1;
                }
                break;
            }
            self.pages += 1;
            self.distinct_sum += topics.len() as f64;

            if prompt && behaviour::answers_prompt(&state, rng) {
                self.create(user, None, Creation::Create(su.interests[0].0), now)?;
            }
            if break_card && behaviour::takes_break(&state, rng) {
                ended = true;
            }

            for it in &resp.items {
                if ended {
                    break;
                }
                let Some(v) = self.ground.videos.get(&it.video).cloned() else {
                    continue;
                };
                let now = Timestamp::from_millisecond(clock_ms)?;
                let item = self.item_of(user, &v);
                let before = state.minutes;
                let topics = &self.world.config.topics;
                let reaction = behaviour::react(
                    &viewer,
                    &item,
                    &mut state,
                    |t| {
                        topics
                            .get(t)
                            .is_some_and(|t| behaviour::safety_topic(t.as_str()))
                    },
                    rng,
                );
                let vid = v.id.clone();
                self.push(&me, now, EventKind::Impression { video: vid.clone() })?;
                if teen {
                    self.teen_days[user].items += 1;
                }
                let watch_ms = (reaction.watch_s * 1000.0) as u64;
                if reaction.skipped {
                    self.push(&me, now, EventKind::Skip { video: vid.clone() })?;
                } else {
                    self.push(
                        &me,
                        now,
                        EventKind::View {
                            video: vid.clone(),
                            watch_ms,
                            completed: reaction.completed,
                        },
                    )?;
                    if teen {
                        self.teen_days[user].minutes += watch_ms as f64 / 60_000.0;
                    }
                    if !reaction.active() {
                        self.r.passive_minutes_per_user_day += reaction.watch_s as f64 / 60.0;
                    }
                }
                if reaction.like {
                    self.push(&me, now, EventKind::Like { video: vid.clone() })?;
                }
                if reaction.comment {
                    self.push(&me, now, EventKind::Comment { video: vid.clone() })?;
                }
                if reaction.share {
                    self.push(&me, now, EventKind::Share { video: vid.clone() })?;
                }
                if reaction.follow {
                    self.push(&me, now, EventKind::Follow { video: vid.clone() })?;
                    self.ground.follows.insert((me.clone(), v.creator.clone()));
                }
                clock_ms += ((state.minutes - before) * 60_000.0) as i64;
                if let Some(c) = reaction.creation {
                    let at = Timestamp::from_millisecond(clock_ms)?;
                    self.create(user, Some(&v), c, at)?;
                }
                if behaviour::session_ends(&state, rng) {
                    ended = true;
                }
            }
            self.flush()?;
            if cursor.is_none() {
                break;
            }
        }
        self.flush()?;
        self.r.session_minutes.push(state.minutes);
        Ok(())
    }

    /// A creation action: the event, and the new video (a remix, a cameo video or a new
    /// video of the chosen topic) upserted into the engine.
    fn create(
        &mut self,
        user: usize,
        source: Option<&Video>,
        c: Creation,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let su = &self.world.users[user];
        let me = su.user.id.clone();
        self.created += 1;
        self.r.creation_actions += 1;
        let id = VideoId::new(format!("sim{}", self.created))?;
        let mut rng = StdRng::seed_from_u64(self.opts.seed ^ self.created.wrapping_mul(7919));
        let topics_all = &self.world.config.topics;
        let (kind, topics, base, remix_of, cameos) = match (c, source) {
            (Creation::Remix, Some(v)) => (
                EventKind::Remix {
                    video: v.id.clone(),
                    new_video: Some(id.clone()),
                },
                v.topics.clone(),
                v.embedding.as_ref().map(|e| e.as_slice().to_vec()),
                Some(v.id.clone()),
                Vec::new(),
            ),
            (Creation::CameoUse, Some(v)) => (
                EventKind::CameoUse {
                    video: v.id.clone(),
                },
                v.topics.clone(),
                v.embedding.as_ref().map(|e| e.as_slice().to_vec()),
                None,
                v.cameos.iter().filter(|p| **p != me).cloned().collect(),
            ),
            (Creation::Create(_), _) | (Creation::Remix | Creation::CameoUse, None) => {
                let t = match c {
                    Creation::Create(t) => t,
                    _ => su.interests[0].0,
                };
                (
                    EventKind::Create {
                        video: source.map(|v| v.id.clone()),
                    },
                    vec![topics_all[t].clone()],
                    Some(self.centroids[t].clone()),
                    None,
                    Vec::new(),
                )
            }
        };
        self.push(&me, at, kind)?;
        let dim = self.world.config.dim;
        let mut e: Vec<f32> = base.unwrap_or_else(|| vec![0.0; dim]);
        let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
        for x in &mut e {
            *x = *x / norm + 0.05 * rng.random_range(-1.0..1.0f32);
        }
        let safety: Vec<SafetyLabel> = topics
            .iter()
            .filter_map(|t| steerfeed::world::label_of(t.as_str()))
            .collect();
        let video = Video {
            id: id.clone(),
            creator: me.clone(),
            created_at: at,
            duration_s: rng.random_range(8.0..60.0f32).round(),
            caption: format!("made in the simulation by {me}"),
            topics,
            embedding: Some(Embedding::new("embedding", &e, dim)?),
            remix_of: remix_of.clone(),
            cameos,
            safety,
            audience: steerfeed::Audience::Public,
            deleted: false,
        };
        self.engine.upsert_videos(std::slice::from_ref(&video))?;
        if let Some(p) = remix_of {
            self.remixed.insert(p);
        }
        self.ground.videos.insert(id, video);
        Ok(())
    }

    fn finish(mut self) -> SimReport {
        let mut r = std::mem::take(&mut self.r);
        let hours: f64 = r.session_minutes.iter().map(|&m| f64::from(m)).sum::<f64>() / 60.0;
        let user_days = (r.users as f64 * f64::from(r.days)).max(1.0);
        r.creation_per_hour = if hours > 0.0 {
            r.creation_actions as f64 / hours
        } else {
            0.0
        };
        r.passive_minutes_per_user_day /= user_days;
        r.minutes_per_user_day = hours * 60.0 / user_days;
        r.following_share = ratio(self.followed_items, r.items_served);
        r.diversity = ratio_f(self.distinct_sum, self.pages);
        r.remix_chain_share = ratio(self.invites.0, r.items_served);
        r.friend_cameo_share = ratio(self.invites.1, r.items_served);
        r.mean_inspiration = ratio_f(self.invites.2, r.items_served);
        let both: Vec<&[(u64, u64); 2]> = self
            .pref_matches
            .iter()
            .filter(|m| m[0].1 > 0 && m[1].1 > 0)
            .collect();
        let n = both.len().max(1) as f64;
        r.steering.compared_users = both.len();
        r.steering.before = both.iter().map(|m| ratio(m[0].0, m[0].1)).sum::<f64>() / n;
        r.steering.after = both.iter().map(|m| ratio(m[1].0, m[1].1)).sum::<f64>() / n;
        r.steering.items_before = self.pref_matches.iter().map(|m| m[0].1).sum();
        r.steering.items_after = self.pref_matches.iter().map(|m| m[1].1).sum();
        r
    }
}

/// What `me` notices about `v` (see [`Item`]).
fn item_of(
    me: &UserId,
    v: &Video,
    follows: &HashSet<(UserId, UserId)>,
    remixed: &HashSet<VideoId>,
    topic_index: &HashMap<TopicId, usize>,
    seed: u64,
) -> Item {
    Item {
        topics: v
            .topics
            .iter()
            .filter_map(|t| topic_index.get(t).copied())
            .collect(),
        sensitive: !v.safety.is_empty(),
        duration_s: v.duration_s,
        followed_creator: follows.contains(&(me.clone(), v.creator.clone())),
        remix_chain: v.remix_of.is_some() || remixed.contains(&v.id),
        friend_cameo: v
            .cameos
            .iter()
            .any(|p| p != me && follows.contains(&(me.clone(), p.clone()))),
        appeal: behaviour::latent(v.id.as_str(), seed),
        // Some creators inspire more than others (a trait the engine can learn from
        // creators' action rates), some videos more than others.
        inspiration: 0.7 * behaviour::latent(v.creator.as_str(), seed ^ 0xc4ea)
            + 0.3 * behaviour::latent(v.id.as_str(), seed ^ 0xabcdef),
        style: behaviour::style(v.id.as_str(), seed),
        has_cameo: v.cameos.iter().any(|p| p != me),
    }
}

/// The world's event history re-drawn with the behaviour model: every historic
/// impression (who saw what, when) is kept, and what the viewer then did is what the
/// model says, so the rates the engine learns from history describe the same simulated
/// people as the run. Follows are left out (the graph is the world's); creation actions
/// in history make no new videos.
pub fn behaviour_history(world: &World, seed: u64, model: Behaviour) -> anyhow::Result<Vec<Event>> {
    let follows: HashSet<(UserId, UserId)> = world.follows.iter().cloned().collect();
    let remixed: HashSet<VideoId> = world
        .videos
        .iter()
        .filter_map(|v| v.remix_of.clone())
        .collect();
    let topic_index: HashMap<TopicId, usize> = world.topic_index();
    let videos: HashMap<&VideoId, &Video> = world.videos.iter().map(|v| (&v.id, v)).collect();
    let users: HashMap<&UserId, usize> = world
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (&u.user.id, i))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4157);
    let topics = &world.config.topics;
    let mut out = Vec::with_capacity(world.events.len());
    let mut n = 0u64;
    let mut key = || -> anyhow::Result<EventKey> {
        n += 1;
        Ok(EventKey::new(format!("h{n}"))?)
    };
    for e in &world.events {
        let EventKind::Impression { video } = &e.kind else {
            continue;
        };
        let (Some(v), Some(&ui)) = (videos.get(video), users.get(&e.user)) else {
            continue;
        };
        let su = &world.users[ui];
        let viewer = Viewer {
            interests: &su.interests,
            teen: su.user.age_band == AgeBand::Teen,
            creator: su.creator,
            traits: behaviour::Traits::of(e.user.as_str(), seed),
            model: model.model(),
        };
        let item = item_of(&e.user, v, &follows, &remixed, &topic_index, seed);
        let mut session = Session::default();
        let r = behaviour::react(
            &viewer,
            &item,
            &mut session,
            |t| {
                topics
                    .get(t)
                    .is_some_and(|t| behaviour::safety_topic(t.as_str()))
            },
            &mut rng,
        );
        let mut kinds = vec![EventKind::Impression {
            video: video.clone(),
        }];
        if r.skipped {
            kinds.push(EventKind::Skip {
                video: video.clone(),
            });
        } else {
            kinds.push(EventKind::View {
                video: video.clone(),
                watch_ms: (r.watch_s * 1000.0) as u64,
                completed: r.completed,
            });
        }
        if r.like {
            kinds.push(EventKind::Like {
                video: video.clone(),
            });
        }
        if r.comment {
            kinds.push(EventKind::Comment {
                video: video.clone(),
            });
        }
        if r.share {
            kinds.push(EventKind::Share {
                video: video.clone(),
            });
        }
        match r.creation {
            Some(Creation::Remix) => kinds.push(EventKind::Remix {
                video: video.clone(),
                new_video: None,
            }),
            Some(Creation::CameoUse) => kinds.push(EventKind::CameoUse {
                video: video.clone(),
            }),
            Some(Creation::Create(_)) => kinds.push(EventKind::Create {
                video: Some(video.clone()),
            }),
            None => {}
        }
        for kind in kinds {
            out.push(Event {
                key: key()?,
                user: e.user.clone(),
                at: e.at,
                kind,
            });
        }
    }
    Ok(out)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn ratio_f(a: f64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a / b as f64 }
}

/// Runs `steerfeed eval simulate`.
pub fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let opts = SimOptions::try_from(args)?;
    let r = simulate(&config, &opts)?;
    let text = if args.json {
        serde_json::to_string(&r)?
    } else {
        summary(&r)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// The human-readable summary of a run.
pub fn summary(r: &SimReport) -> String {
    let mut minutes = r.session_minutes.clone();
    minutes.sort_by(f32::total_cmp);
    let q = |f: f64| {
        minutes
            .get(((minutes.len() as f64 - 1.0) * f).round().max(0.0) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    format!(
        "policy {:?}{}{}: {} users, {} videos, {} days, seed {}\n\
         behaviour {:?}, model {}, exploration {}\n\
         sessions {} (minutes p50 {:.1}, p90 {:.1}, max {:.1}), items served {}\n\
         creation actions {} = {:.3} per session hour\n\
         minutes per user-day {:.1}, passive {:.1}\n\
         following share {:.3}, diversity {:.2} distinct topics per page\n\
         served items inviting creation: remix chain {:.3}, friend's cameo {:.3}, mean inspiration {:.3}\n\
         check-ins {}, breaks {}, creation prompts {}, gates {}\n\
         violations: teen limits {}, consent {}, hard exclusions {}\n\
         steering ({} users, {} compared): matching share before {:.3} ({} items), after {:.3} ({} items)\n\
         revocations during the run {}; {:.1} s",
        r.policy.unwrap_or(Policy::Creation),
        r.creation_weight
            .map(|w| format!(" (creation weight {w})"))
            .unwrap_or_default(),
        if r.no_throttles {
            " without throttles"
        } else {
            ""
        },
        r.users,
        r.videos,
        r.days,
        r.seed,
        r.behaviour,
        r.model,
        r.explore,
        r.sessions,
        q(0.5),
        q(0.9),
        q(1.0),
        r.items_served,
        r.creation_actions,
        r.creation_per_hour,
        r.minutes_per_user_day,
        r.passive_minutes_per_user_day,
        r.following_share,
        r.diversity,
        r.remix_chain_share,
        r.friend_cameo_share,
        r.mean_inspiration,
        r.checkins_shown,
        r.breaks_shown,
        r.creation_prompts_shown,
        r.gates,
        r.teen_limit_violations,
        r.consent_violations,
        r.hard_exclusion_violations,
        r.steering.users,
        r.steering.compared_users,
        r.steering.before,
        r.steering.items_before,
        r.steering.after,
        r.steering.items_after,
        r.revocations_during_run,
        r.seconds,
    )
}
