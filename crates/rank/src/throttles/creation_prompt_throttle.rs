use std::sync::Arc;

use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, card, creation_prompt_due};

/// Inline: puts a `creation_prompt` card early in the page (before the item at
/// `creation_prompt_position`, default 1) while the passive streak is at or past the
/// `passive_streak` threshold ([`creation_prompt_due`]). The streak resets on a like,
/// comment, remix or create, so a viewer who keeps watching passively sees one prompt per
/// page, about one per threshold's worth of views at the default page size.
#[derive(Debug, Clone, Default)]
pub struct CreationPromptThrottle {
    cfg: Arc<WellbeingConfig>,
}

impl CreationPromptThrottle {
    /// A throttle with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

/// The `creation_prompt` card's text.
const MESSAGE: &str = "Feeling inspired? Try remixing something you liked or make your own.";

impl Throttle for CreationPromptThrottle {
    fn check(&self, ctx: &FeedContext, page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(if creation_prompt_due(&self.cfg, ctx) {
            let position = self.cfg.creation_prompt_position.min(page.len());
            ThrottleAction::Insert(card(CardKind::CreationPrompt, position, MESSAGE))
        } else {
            ThrottleAction::Pass
        })
    }

    fn name(&self) -> &'static str {
        "creation_prompt"
    }
}
