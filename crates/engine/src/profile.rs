//! `profile_summary`: what a user is seeing most and what they asked for, in words.

use std::collections::HashMap;
use std::sync::Arc;

use steerfeed_core::{Constraints, TopicId, UserId, Video};

/// A topic and its share of what the user was recently served.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicShare {
    /// The topic.
    pub topic: TopicId,
    /// Its share of the recent items, in `[0, 1]`.
    pub share: f32,
}

/// A user's feed in a few words: the topics they are seeing most and their active
/// steering constraints.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileSummary {
    /// The user.
    pub user: UserId,
    /// How many recently seen items the shares are computed over.
    pub recent_items: usize,
    /// The five topics seen most, largest share first.
    pub seeing_most: Vec<TopicShare>,
    /// The active constraints (expired ones are gone).
    pub constraints: Constraints,
    /// The constraints, one sentence each ("More cooking", "No politics", ...).
    pub steering: Vec<String>,
}

/// Builds the summary from recently seen videos (newest first) and the active constraints.
pub fn summarize(
    user: &UserId,
    seen: &[Arc<Video>],
    mut constraints: Constraints,
) -> ProfileSummary {
    let mut counts: HashMap<&TopicId, usize> = HashMap::new();
    for v in seen {
        for t in &v.topics {
            *counts.entry(t).or_default() += 1;
        }
    }
    let n = seen.len().max(1) as f32;
    let mut seeing: Vec<TopicShare> = counts
        .into_iter()
        .map(|(t, c)| TopicShare {
            topic: t.clone(),
            share: c as f32 / n,
        })
        .collect();
    seeing.sort_by(|a, b| {
        b.share
            .total_cmp(&a.share)
            .then_with(|| a.topic.cmp(&b.topic))
    });
    seeing.truncate(5);
    ProfileSummary {
        user: user.clone(),
        recent_items: seen.len(),
        seeing_most: seeing,
        steering: constraints.describe(),
        constraints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_read_as_sentences() {
        let c: Constraints = serde_json::from_str(
            r#"{"boost": [{"topic": "cooking", "strength": 2.0}],
                "exclude": [{"topic": "politics"}],
                "following": "more", "max_duration_s": 30,
                "expires_at": "2026-12-01T00:00:00Z"}"#,
        )
        .unwrap();
        let mut c = c;
        assert_eq!(
            c.describe(),
            vec![
                "More cooking (strongly) until 1 Dec",
                "No politics until 1 Dec",
                "More from people you follow",
                "Nothing longer than 30 seconds",
                "Until 1 Dec 2026",
            ]
        );
        assert_eq!(
            c.boost[0].description.as_deref(),
            Some("More cooking (strongly) until 1 Dec")
        );
        assert!(Constraints::default().describe().is_empty());
    }
}
