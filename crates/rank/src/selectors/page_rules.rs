//! [`PageRules`]: the per-request facts the page policy needs besides the items.

use steerfeed_core::{AgeBand, FeedContext, Shift, TopicId};

/// What the request asks of the page beyond the configuration: whether the teen caps
/// apply, which way the viewer steered the share of followed creators, and which topics
/// the viewer steered toward (the topic cap must not undo "only cats" or "more cooking").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRules<'r> {
    /// The viewer is a teen: the sensitive-content cap applies.
    pub teen: bool,
    /// More or less from followed creators, if the viewer asked.
    pub following: Option<Shift>,
    /// Topics of the steering `only` list: exempt from the topic cap (every item carries
    /// one of them).
    pub only_topics: &'r [TopicId],
    /// Topics the viewer asked for more of: capped at `steered_topic_cap` instead of
    /// `topic_cap`.
    pub boosted_topics: &'r [TopicId],
}

impl PageRules<'static> {
    /// The rules of a request: teen from the viewer's age band, the following shift from
    /// the active constraints; no steered topics (add them with
    /// [`PageRules::with_topics`]).
    pub fn for_context(ctx: &FeedContext) -> Self {
        Self {
            teen: ctx.user.age_band == AgeBand::Teen,
            following: ctx.constraints.following,
            only_topics: &[],
            boosted_topics: &[],
        }
    }
}

impl PageRules<'_> {
    /// The same rules with these steered topics.
    pub fn with_topics<'r>(self, only: &'r [TopicId], boosted: &'r [TopicId]) -> PageRules<'r> {
        PageRules {
            teen: self.teen,
            following: self.following,
            only_topics: only,
            boosted_topics: boosted,
        }
    }
}
