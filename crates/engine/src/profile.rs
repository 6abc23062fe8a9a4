//! `profile_summary`: what a user is seeing most and what they asked for, in words.

use std::collections::HashMap;
use std::sync::Arc;

use steerfeed_core::{
    Concept, Constraints, Freshness, Shift, TopicId, UserId, Video, WeightedConcept,
};

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

fn label(topic: Option<&TopicId>, phrase: Option<&str>) -> String {
    match (phrase, topic) {
        (Some(p), _) if !p.trim().is_empty() => p.to_owned(),
        (_, Some(t)) => t.as_str().replace('_', " "),
        _ => "something".to_owned(),
    }
}

fn weighted(prefix: &str, list: &[WeightedConcept], out: &mut Vec<String>) {
    for c in list {
        let strong = if c.strength > 1.5 { " (strongly)" } else { "" };
        out.push(format!(
            "{prefix} {}{strong}",
            label(c.topic.as_ref(), c.phrase.as_deref())
        ));
    }
}

fn plain(prefix: &str, list: &[Concept], out: &mut Vec<String>) {
    for c in list {
        out.push(format!(
            "{prefix} {}",
            label(c.topic.as_ref(), c.phrase.as_deref())
        ));
    }
}

/// Constraints in words, one sentence each.
pub fn describe(c: &Constraints) -> Vec<String> {
    let mut out = Vec::new();
    weighted("More", &c.boost, &mut out);
    weighted("Less", &c.reduce, &mut out);
    plain("No", &c.exclude, &mut out);
    plain("Only", &c.only, &mut out);
    match c.following {
        Some(Shift::More) => out.push("More from people you follow".into()),
        Some(Shift::Less) => out.push("Less from people you follow".into()),
        None => {}
    }
    if c.freshness == Some(Freshness::Newer) {
        out.push("Newer videos first".into());
    }
    if let Some(s) = c.max_duration_s {
        out.push(format!("Nothing longer than {s} seconds"));
    }
    match c.remix {
        Some(true) => out.push("More remixes".into()),
        Some(false) => out.push("Fewer remixes".into()),
        None => {}
    }
    match c.friends_cameos {
        Some(true) => out.push("More videos featuring people you follow".into()),
        Some(false) => out.push("Fewer videos featuring people you follow".into()),
        None => {}
    }
    for r in &c.rejected {
        out.push(format!(
            "Not applied: {} ({})",
            r.topic
                .as_ref()
                .map_or("a request".to_owned(), |t| t.as_str().replace('_', " ")),
            r.reason
        ));
    }
    if let Some(at) = c.expires_at
        && !out.is_empty()
    {
        out.push(format!("Until {}", at.strftime("%Y-%m-%d")));
    }
    out
}

/// Builds the summary from recently seen videos (newest first) and the active constraints.
pub fn summarize(user: &UserId, seen: &[Arc<Video>], constraints: Constraints) -> ProfileSummary {
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
        steering: describe(&constraints),
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
        assert_eq!(
            describe(&c),
            vec![
                "More cooking (strongly)",
                "No politics",
                "More from people you follow",
                "Nothing longer than 30 seconds",
                "Until 2026-12-01",
            ]
        );
        assert!(describe(&Constraints::default()).is_empty());
    }
}
