//! Learning from the engine's own logs: the impression log joined to what people did
//! next.
//!
//! Every served page is logged with the inputs of the action heads and the terms of each
//! item's score (`steerfeed_core::impression`). [`Engine::for_each_labeled_impression`]
//! joins each served item to the events its viewer logged about the video within
//! `[learning] outcome_window_s` ([`crate::LearningConfig`]) after it was served, and before the same video
//! was served to them again (a later serving owns what follows it).

use std::collections::HashMap;

use steerfeed_core::{
    Event, EventKind, HeadInputs, Result, ScoreBreakdown, Timestamp, UserId, VideoId,
};

use super::Engine;

/// What the viewer did about a served item within the outcome window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub struct Outcomes {
    /// Any view.
    pub view: bool,
    /// Milliseconds watched, summed over views.
    pub watch_ms: u64,
    pub complete_view: bool,
    pub like: bool,
    pub comment: bool,
    pub share: bool,
    pub follow: bool,
    pub remix: bool,
    pub cameo_use: bool,
    /// Made a video inspired by it.
    pub create: bool,
    pub skip: bool,
    pub not_interested: bool,
    pub hide_creator: bool,
    pub report: bool,
}

impl Outcomes {
    /// The label of each action head, in [`steerfeed_core::impression::HEADS`] order.
    pub fn heads(&self) -> [bool; 8] {
        [
            self.create,
            self.remix,
            self.cameo_use,
            self.comment,
            self.share,
            self.follow,
            self.like,
            self.complete_view,
        ]
    }

    /// Notes one event about the item.
    fn add(&mut self, kind: &EventKind) {
        match kind {
            EventKind::View {
                watch_ms,
                completed,
                ..
            } => {
                self.view = true;
                self.watch_ms = self.watch_ms.saturating_add(*watch_ms);
                self.complete_view |= *completed;
            }
            EventKind::Like { .. } => self.like = true,
            EventKind::Comment { .. } => self.comment = true,
            EventKind::Share { .. } => self.share = true,
            EventKind::Follow { .. } => self.follow = true,
            EventKind::Remix { .. } => self.remix = true,
            EventKind::CameoUse { .. } => self.cameo_use = true,
            EventKind::Create { .. } => self.create = true,
            EventKind::Skip { .. } => self.skip = true,
            EventKind::NotInterested { .. } => self.not_interested = true,
            EventKind::HideCreator { .. } => self.hide_creator = true,
            EventKind::Report { .. } => self.report = true,
            EventKind::Impression { .. } | EventKind::CheckinAnswer { .. } => {}
        }
    }
}

/// One served item with what followed it: a row of `steerfeed logs export`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabeledImpression {
    /// The request that served it.
    pub request: String,
    /// The viewer.
    pub user: UserId,
    /// The rank profile that served it.
    pub profile: String,
    /// The id of the model whose heads scored it.
    pub model: String,
    /// When it was served.
    pub at: Timestamp,
    /// Its position on the page, from 0.
    pub position: u32,
    /// The video.
    pub video: VideoId,
    /// The source that proposed it.
    pub source: String,
    /// The probability that the serving policy put it in this slot.
    pub propensity: f32,
    /// The choice exploration faced at its slot (absent where it could not explore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<steerfeed_core::SlotDraw>,
    /// The shadow profile its page was served beside (`[learning] shadow`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<steerfeed_core::PageShadow>,
    /// What the action heads read.
    pub inputs: HeadInputs,
    /// The terms of its score.
    pub breakdown: ScoreBreakdown,
    /// What the viewer did about it within the outcome window.
    pub outcomes: Outcomes,
    /// The outcome window had closed by the newest event in the log: the outcomes are
    /// final. An item served less than a window before it may still gain some.
    pub complete: bool,
}

type Key = (UserId, VideoId);

impl Engine {
    /// Calls `f` with every item served at or after `since` that the impression log
    /// holds, in log order and page order, joined to its outcomes: the viewer's events
    /// about the video timed within `[learning] outcome_window_s` after it was served
    /// and before it was served to them again. An item whose window was still open at
    /// the newest event in the log says so (`complete: false`). Reads the impression log twice and the
    /// event log once; holds in memory one entry per (viewer, video) served and the
    /// events about them.
    pub fn for_each_labeled_impression(
        &self,
        since: Timestamp,
        f: &mut dyn FnMut(LabeledImpression) -> Result<()>,
    ) -> Result<()> {
        self.catch_up()?;
        let store = &self.store;
        // When each (viewer, video) was served, in order.
        let mut served: HashMap<Key, Vec<i64>> = HashMap::new();
        let mut first = i64::MAX;
        store.for_each_impression(since, &mut |p| {
            let at = p.at.as_millisecond();
            first = first.min(at);
            for it in &p.page.items {
                served
                    .entry((p.user.clone(), it.video.clone()))
                    .or_default()
                    .push(at);
            }
            Ok(())
        })?;
        if served.is_empty() {
            return Ok(());
        }
        for times in served.values_mut() {
            times.sort_unstable();
            times.dedup();
        }
        // The events about them, at or after the first serving.
        let mut events: HashMap<Key, Vec<(i64, EventKind)>> = HashMap::new();
        let mut newest = i64::MIN;
        store.for_each_event(1, &mut |_, e: Event| {
            let at = e.at.as_millisecond();
            newest = newest.max(at);
            if at < first {
                return Ok(());
            }
            if let Some(video) = e.kind.video() {
                let key = (e.user, video.clone());
                if served.contains_key(&key) {
                    events.entry(key).or_default().push((at, e.kind));
                }
            }
            Ok(())
        })?;
        let window = i64::try_from(self.config.learning.outcome_window_s)
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1_000);
        store.for_each_impression(since, &mut |p| {
            let at = p.at.as_millisecond();
            for it in p.page.items {
                let key = (p.user.clone(), it.video.clone());
                let mut outcomes = Outcomes::default();
                if let Some(evs) = events.get(&key) {
                    // The window ends at the next serving of the same video.
                    let next = served
                        .get(&key)
                        .and_then(|t| t.iter().find(|&&t| t > at).copied())
                        .unwrap_or(i64::MAX);
                    let end = at.saturating_add(window).min(next.saturating_sub(1));
                    for (t, kind) in evs {
                        if (at..=end).contains(t) {
                            outcomes.add(kind);
                        }
                    }
                }
                f(LabeledImpression {
                    request: p.page.request.clone(),
                    user: p.user.clone(),
                    profile: p.page.profile.clone(),
                    model: p.page.model.clone(),
                    at: p.at,
                    position: it.position,
                    video: it.video,
                    source: it.source,
                    propensity: it.propensity,
                    draw: it.draw,
                    shadow: p.page.shadow.clone(),
                    inputs: it.inputs,
                    breakdown: it.breakdown,
                    outcomes,
                    complete: at.saturating_add(window) <= newest,
                })?;
            }
            Ok(())
        })
    }
}
