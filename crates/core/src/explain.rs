//! User-facing explanations, tied to the term or constraint that put an item in the feed.

use crate::ids::{TopicId, UserId};

/// Why an item is in the feed, as data. [`Explanation::new`] renders the words.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Reason {
    /// Made by someone you follow.
    Following {
        /// The creator.
        creator: UserId,
    },
    /// Features someone you follow in a cameo.
    FriendCameo {
        /// The person featured.
        person: UserId,
    },
    /// Features you in a cameo.
    FeaturesYou,
    /// A remix of one of your videos.
    RemixOfYours,
    /// You asked for it in your feed preferences.
    Steering {
        /// The phrase or topic asked for.
        concept: String,
    },
    /// Close to what you engage with.
    Interest {
        /// The topic it matched, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<TopicId>,
    },
    /// People who engaged with videos you engaged with also engaged with this.
    CoEngagement,
    /// Many people are remixing it right now.
    RemixTrend,
    /// A new creator or a new video.
    Fresh,
    /// Popular right now.
    Popular,
    /// Lighter content after a check-in answer of "not great".
    Lighter,
}

/// An explanation: the reason as data plus the sentence shown to the user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// Why, as data.
    pub reason: Reason,
    /// Why, in words.
    pub text: String,
}

impl Explanation {
    /// Renders the sentence for `reason`.
    pub fn new(reason: Reason) -> Self {
        let text = match &reason {
            Reason::Following { creator } => format!("From @{creator}, whom you follow"),
            Reason::FriendCameo { person } => format!("Features @{person}, whom you follow"),
            Reason::FeaturesYou => "Features your cameo".to_owned(),
            Reason::RemixOfYours => "A remix of your video".to_owned(),
            Reason::Steering { concept } => format!("Because you asked for more {concept}"),
            Reason::Interest { topic: Some(t) } => {
                format!(
                    "Because you engage with {} videos",
                    t.as_str().replace('_', " ")
                )
            }
            Reason::Interest { topic: None } => "Similar to videos you engage with".to_owned(),
            Reason::CoEngagement => {
                "People who liked what you liked also engaged with this".to_owned()
            }
            Reason::RemixTrend => "Popular to remix this week".to_owned(),
            Reason::Fresh => "New on steerfeed".to_owned(),
            Reason::Popular => "Popular right now".to_owned(),
            Reason::Lighter => "Something lighter, after your check-in".to_owned(),
        };
        Self { reason, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_person_or_concept() {
        let e = Explanation::new(Reason::Following {
            creator: UserId::new("maya").unwrap(),
        });
        assert_eq!(e.text, "From @maya, whom you follow");
        let e = Explanation::new(Reason::Interest {
            topic: Some(TopicId::new("extreme_sports").unwrap()),
        });
        assert!(e.text.contains("extreme sports"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["reason"]["kind"], "interest");
    }
}
