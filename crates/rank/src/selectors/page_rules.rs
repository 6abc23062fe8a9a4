//! [`PageRules`]: the per-request facts the page policy needs besides the items.

use steerfeed_core::{AgeBand, FeedContext, Shift};

/// What the request asks of the page beyond the configuration: whether the teen caps
/// apply and which way the viewer steered the share of followed creators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRules {
    /// The viewer is a teen: the sensitive-content cap applies.
    pub teen: bool,
    /// More or less from followed creators, if the viewer asked.
    pub following: Option<Shift>,
}

impl PageRules {
    /// The rules of a request: teen from the viewer's age band, the following shift from
    /// the active constraints.
    pub fn for_context(ctx: &FeedContext) -> Self {
        Self {
            teen: ctx.user.age_band == AgeBand::Teen,
            following: ctx.constraints.following,
        }
    }
}
