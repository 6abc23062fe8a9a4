//! Looking inside without serving: the page a person would get next, what the pipeline
//! makes of one video for one person, and a person's or a video's state, for operators
//! (the sidecar's console) and tests. Nothing here writes: no item is marked seen, no
//! teen item or minute is counted, no page pool is made or taken.

use std::sync::Arc;

use steerfeed_core::ports::{ActionCounts, CameoConsent};
use steerfeed_core::{
    AgeBand, Card, ConsentScope, Error, Explanation, FeedContext, FeedRequest, FeedResponse,
    ParentalControls, Record, Result, Role, ScoreBreakdown, Timestamp, Trace, User, UserId, Video,
    VideoId, WellbeingState,
};
use steerfeed_rank::filters::{consent_allows, effective_scope};
use steerfeed_store::Preferences;

use super::{Engine, described};

/// A page ranked as the feed would rank it now, served to nobody ([`Engine::preview`]).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preview {
    /// The page (without a cursor: a preview has no next page).
    pub page: FeedResponse,
    /// The constraints the ranking applied, in words.
    pub summary: Vec<String>,
    /// What each stage did.
    pub stages: Vec<StageSummary>,
}

/// One stage of a ranking, as an operator reads it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageSummary {
    /// The stage's name.
    pub stage: &'static str,
    /// Its role.
    pub role: Role,
    /// Candidates in.
    pub input: usize,
    /// Candidates out.
    pub output: usize,
    /// Microseconds spent.
    pub micros: u64,
    /// The card it added or stopped the page with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
}

fn stages(trace: &Trace) -> Vec<StageSummary> {
    trace
        .stages
        .iter()
        .map(|r| StageSummary {
            stage: r.stage,
            role: r.role,
            input: r.input,
            output: r.output,
            micros: r.micros,
            card: r.card.clone(),
        })
        .collect()
}

/// A source that proposes a video, and the video's place among its candidates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourceHit {
    /// The source.
    pub source: &'static str,
    /// The video's place (0-based) among the source's own candidates.
    pub rank: usize,
}

/// Whether one person could be served one video now, and if not what stops it
/// ([`Engine::explain_video`]).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoVerdict {
    /// The person.
    pub user: UserId,
    /// The video.
    pub video: VideoId,
    /// True when no gate stops the request, some source proposes the video and no
    /// filter removes it: it competes for the page on its score.
    pub servable: bool,
    /// Its place (0-based) on the person's next page of `limit` items, when it is there.
    pub on_page: Option<usize>,
    /// The gate that stops every video for this person now.
    pub stopped_by: Option<&'static str>,
    /// The card that gate serves instead.
    pub card: Option<Card>,
    /// The sources that propose it (none: no source reaches it for this person).
    pub proposed_by: Vec<SourceHit>,
    /// Every filter that removes it.
    pub removed_by: Vec<&'static str>,
    /// Its score for this person (also when it would not be served).
    pub score: f32,
    /// How the score is made.
    pub breakdown: ScoreBreakdown,
    /// Why it would be in the feed, when a source proposes it.
    pub explanation: Option<Explanation>,
    /// The verdict in words.
    pub text: String,
}

/// A person's state, as the console shows it ([`Engine::person`]).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonView {
    /// The account.
    pub user: User,
    /// Whom they follow.
    pub following: Vec<UserId>,
    /// How many follow them.
    pub followers: usize,
    /// Whom they blocked.
    pub blocked: Vec<UserId>,
    /// Whom they muted.
    pub muted: Vec<UserId>,
    /// Who may use their likeness: the scope they set (`nobody` when never set).
    pub consent_scope: ConsentScope,
    /// The creators they approved.
    pub approved: Vec<UserId>,
    /// Videos they withdrew their likeness from.
    pub revoked_videos: Vec<VideoId>,
    /// Creators whose every video they withdrew their likeness from.
    pub revoked_creators: Vec<UserId>,
    /// Parental controls (defaults when none are set).
    pub parental: ParentalControls,
    /// Their preferences in force, with each item described and the whole in words.
    pub preferences: Option<Preferences>,
    /// Wellbeing today.
    pub wellbeing: WellbeingState,
    /// The limits that apply to them.
    pub limits: Limits,
}

/// The wellbeing limits that apply to one person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// Minutes a day, when limited.
    pub daily_minutes: Option<u32>,
    /// Items a day, when limited.
    pub daily_items: Option<u32>,
    /// Items per session, when capped.
    pub scroll_cap: Option<u32>,
    /// When bedtime starts (teens), `HH:MM` in their time zone.
    pub bedtime_start: Option<String>,
    /// When bedtime ends (teens), `HH:MM` in their time zone.
    pub bedtime_end: Option<String>,
}

/// A video's state: counts, cameos and their consent ([`Engine::video_view`]).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VideoView {
    /// The video as stored, its embedding left out (so it need not carry the caption
    /// or embedding an upload must).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub video: Video,
    /// Its decayed action counts.
    pub counts: ActionCounts,
    /// Each person in its cameos, and whether their consent covers it now.
    pub cameos: Vec<CameoView>,
}

/// One person in a video's cameos.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CameoView {
    /// The person.
    pub person: UserId,
    /// True when their consent covers this video now (the creator's own likeness
    /// always does).
    pub allowed: bool,
    /// Why, in words.
    pub text: String,
}

impl Engine {
    /// The page `request.user()` would get if they asked now, ranked from scratch as a
    /// first page (no page pool: a session's pooled next page may differ), with what
    /// each stage did, and without any of a
    /// feed's writes: nothing is marked seen, no item or minute is counted, no pool is
    /// kept. With `steering`, that text is compiled for the person (their age band's
    /// policy applied) and ranks in place of their stored preferences, which stay as
    /// they are.
    pub fn preview(&self, request: &FeedRequest, steering: Option<&str>) -> Result<Preview> {
        let now = request.now().unwrap_or_else(Timestamp::now);
        let (ctx, trace) = self.inspect_context(request, steering, now)?;
        let mut out = self.ranker_for(request)?.pipeline.run(&ctx)?;
        let mut all = trace;
        all.stages.append(&mut out.trace.stages);
        let mut applied = ctx.constraints;
        let summary = applied.describe();
        Ok(Preview {
            page: FeedResponse {
                items: self.feed_items(out.items),
                cards: out.cards,
                next_cursor: None,
                applied,
                // Served to nobody: no impression is logged under an id.
                request_id: String::new(),
                profile: self.ranker_for(request)?.name.clone(),
            },
            summary,
            stages: stages(&all),
        })
    }

    /// Whether `request.user()` could be served `video` now and, if not, which gate,
    /// filter or missing source stops it; with its score and place on their next page
    /// of `request.limit()` items as ranked from scratch (a [`Engine::preview`]: nothing
    /// is written; a session whose next page comes from its page pool may see another).
    pub fn explain_video(&self, request: &FeedRequest, video: &VideoId) -> Result<VideoVerdict> {
        let v = self.known_video(video)?;
        let now = request.now().unwrap_or_else(Timestamp::now);
        let (ctx, _) = self.inspect_context(request, None, now)?;
        let mut t = self
            .ranker_for(request)?
            .pipeline
            .explain_video(&ctx, Arc::clone(&v))?;
        // The runner's guard drops a non-finite score before any selection.
        if !t.scored.score.is_finite() {
            t.removed_by
                .push(steerfeed_core::pipeline::NON_FINITE_GUARD);
        }
        let servable =
            t.stopped_by.is_none() && !t.proposed_by.is_empty() && t.removed_by.is_empty();
        // Only a servable video can be on the page: rank it only then.
        let on_page = if servable {
            let page = self.ranker_for(request)?.pipeline.run(&ctx)?;
            page.items.iter().position(|c| c.id() == video)
        } else {
            None
        };
        let proposed_by: Vec<SourceHit> = t
            .proposed_by
            .iter()
            .map(|&(source, rank)| SourceHit { source, rank })
            .collect();
        let text = verdict_text(&t, on_page, request.limit());
        let explanation = (!proposed_by.is_empty())
            .then(|| Explanation::new(self.quote_caption(t.scored.reason.clone())));
        let (stopped_by, card) = match t.stopped_by {
            Some((gate, card)) => (Some(gate), Some(card)),
            None => (None, None),
        };
        Ok(VideoVerdict {
            user: request.user().clone(),
            video: video.clone(),
            servable,
            on_page,
            stopped_by,
            card,
            proposed_by,
            removed_by: t.removed_by,
            score: t.scored.score,
            breakdown: t.scored.breakdown,
            explanation,
            text,
        })
    }

    /// The context a preview or an explanation ranks with (the feed's, with the recent
    /// taste blended in as a full ranking does), and its load time as a `context` stage.
    fn inspect_context(
        &self,
        request: &FeedRequest,
        steering: Option<&str>,
        now: Timestamp,
    ) -> Result<(FeedContext, Trace)> {
        let started = std::time::Instant::now();
        let user = self.known(request.user())?;
        let steering = match steering {
            Some(text) if text.trim().is_empty() => {
                return Err(Error::invalid("text", "empty: nothing to preview"));
            }
            Some(text) => Some(self.parser.parse(text, user.age_band, now)?),
            None => None,
        };
        let steered = steering.is_some();
        let mut ctx = self.context_steered(request, user, now, steering)?;
        if steered && !ctx.parental.personalization {
            return Err(Error::invalid(
                "text",
                "personalization is off for this person (parental controls): preferences \
                 are kept, not applied, so a preview in words would change nothing",
            ));
        }
        self.blend_recent_interest(&mut ctx)?;
        let mut trace = Trace::default();
        trace.stages.push(steerfeed_core::StageReport::timing(
            "context",
            super::micros(started),
        ));
        Ok((ctx, trace))
    }

    /// A person's state: relations, consent, parental controls, preferences in force,
    /// wellbeing today and the limits that apply.
    pub fn person(&self, user: &UserId, now: Timestamp) -> Result<PersonView> {
        let account = self.known(user)?;
        let mut view = PersonView {
            limits: self.limits(&account, &ParentalControls::default()),
            user: account,
            following: Vec::new(),
            followers: 0,
            blocked: Vec::new(),
            muted: Vec::new(),
            consent_scope: ConsentScope::Nobody,
            approved: Vec::new(),
            revoked_videos: Vec::new(),
            revoked_creators: Vec::new(),
            parental: ParentalControls::default(),
            preferences: None,
            wellbeing: WellbeingState::default(),
        };
        for record in self.store.account_records(user)? {
            match record {
                Record::Follow { user: who, creator } if &who == user => {
                    view.following.push(creator);
                }
                Record::Follow { .. } => view.followers += 1,
                Record::Block { other, .. } => view.blocked.push(other),
                Record::Mute { other, .. } => view.muted.push(other),
                Record::Consent {
                    scope, approved, ..
                } => {
                    view.consent_scope = scope;
                    view.approved = approved;
                }
                Record::Revocation { video, creator, .. } => {
                    view.revoked_videos.extend(video);
                    view.revoked_creators.extend(creator);
                }
                Record::ParentalControls { controls, .. } => view.parental = controls,
                _ => {}
            }
        }
        view.wellbeing = self.store.wellbeing(user, now)?;
        view.limits = self.limits(&view.user, &view.parental);
        view.preferences = self.store.preferences(user)?.map(|mut p| {
            p.constraints = p.constraints.without_expired_items(now);
            described(p)
        });
        Ok(view)
    }

    fn limits(&self, user: &User, parental: &ParentalControls) -> Limits {
        let w = &self.config.rank.wellbeing;
        let teen = user.age_band == AgeBand::Teen;
        Limits {
            daily_minutes: parental
                .daily_limit_minutes
                .or(teen.then_some(w.teen_daily_minutes)),
            daily_items: teen.then_some(w.teen_daily_items),
            scroll_cap: parental.scroll_cap,
            bedtime_start: teen.then(|| w.bedtime_start.to_string()),
            bedtime_end: teen.then(|| w.bedtime_end.to_string()),
        }
    }

    /// A video's state: the video (embedding left out), its counts now, and each person
    /// in its cameos with whether their consent covers it.
    pub fn video_view(&self, id: &VideoId, now: Timestamp) -> Result<VideoView> {
        let v = self.known_video(id)?;
        let counts = self
            .store
            .video_counts(&[id], now)?
            .pop()
            .unwrap_or_default();
        let mut cameos = Vec::with_capacity(v.cameos.len());
        for person in &v.cameos {
            let (allowed, text) = if *person == v.creator {
                (true, "the creator's own likeness".to_owned())
            } else {
                match self.store.cameo_consent(person, &v.creator, id)? {
                    None => (false, "unknown person: never consented".to_owned()),
                    Some(f) => (consent_allows(&f), consent_text(&f)),
                }
            };
            cameos.push(CameoView {
                person: person.clone(),
                allowed,
                text,
            });
        }
        let mut video = Video::clone(&v);
        video.embedding = None;
        Ok(VideoView {
            video,
            counts,
            cameos,
        })
    }
}

/// A person's consent facts about one video, in words.
fn consent_text(f: &CameoConsent) -> String {
    if f.revoked {
        return "revoked for this video or its creator".to_owned();
    }
    let scope = effective_scope(f);
    let relation = match (f.creator_approved, f.mutual) {
        (true, _) => "the creator is approved",
        (false, true) => "they and the creator follow each other",
        (false, false) => "the creator is neither approved nor a mutual",
    };
    format!("consent scope {}; {relation}", scope_name(scope))
}

fn scope_name(scope: ConsentScope) -> &'static str {
    match scope {
        ConsentScope::Nobody => "nobody",
        ConsentScope::Approved => "approved",
        ConsentScope::Mutuals => "mutuals",
        ConsentScope::Everyone => "everyone",
    }
}

fn verdict_text(t: &steerfeed_core::VideoTrace, on_page: Option<usize>, limit: usize) -> String {
    if let Some((gate, _)) = &t.stopped_by {
        return format!("nothing is served now: the {gate} gate stops the feed");
    }
    if !t.removed_by.is_empty() {
        return format!("not servable: removed by {}", t.removed_by.join(", "));
    }
    if t.proposed_by.is_empty() {
        return "not servable: no source proposes it for this person".to_owned();
    }
    match on_page {
        Some(at) => format!("servable: at position {} of the next page", at + 1),
        None => format!("servable, but not among the next page's {limit} items"),
    }
}
