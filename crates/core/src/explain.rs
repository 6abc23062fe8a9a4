//! User-facing explanations, tied to the term or constraint that put an item in the feed.

use crate::ids::{TopicId, UserId, VideoId};

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
    /// People who engaged with a video you engaged with also engaged with this.
    CoEngagement {
        /// The video of yours that did most to propose it, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        because: Option<VideoId>,
        /// The start of that video's caption, as the sentence quotes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// Many people are remixing it right now.
    RemixTrend,
    /// Its engagement is climbing right now.
    Trending,
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

/// Characters of a caption an explanation quotes.
pub const QUOTED_CAPTION_CHARS: usize = 60;

/// The start of `caption` as an explanation quotes it: its first line, at most
/// [`QUOTED_CAPTION_CHARS`] characters, cut at a word when one ends late enough, with
/// an ellipsis when cut; `None` when it holds nothing to quote.
pub fn quoted_caption(caption: &str) -> Option<String> {
    let line = caption.lines().map(str::trim).find(|l| !l.is_empty())?;
    if line.chars().count() <= QUOTED_CAPTION_CHARS {
        return Some(line.to_owned());
    }
    let cut: String = line.chars().take(QUOTED_CAPTION_CHARS).collect();
    let at_word = match cut.rfind(char::is_whitespace) {
        Some(i) if i >= cut.len() / 2 => &cut[..i],
        _ => &cut,
    };
    Some(format!("{}\u{2026}", at_word.trim_end()))
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
            Reason::CoEngagement {
                caption: Some(c), ..
            } => format!("Because you watched \u{201c}{c}\u{201d}"),
            Reason::CoEngagement { .. } => {
                "People who watched what you watched also engaged with this".to_owned()
            }
            Reason::RemixTrend => "Popular to remix this week".to_owned(),
            Reason::Trending => "Trending now".to_owned(),
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
    fn a_co_engagement_explanation_quotes_the_start_of_the_video_that_proposed_it() {
        let e = Explanation::new(Reason::CoEngagement {
            because: Some(VideoId::new("v1").unwrap()),
            caption: quoted_caption("  A corgi surfing at dawn\nprompt details"),
        });
        assert_eq!(
            e.text,
            "Because you watched \u{201c}A corgi surfing at dawn\u{201d}"
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["reason"]["kind"], "co_engagement");
        assert_eq!(json["reason"]["because"], "v1");
        // Without a caption, the general sentence; the older shape still reads.
        let bare: Reason = serde_json::from_str(r#"{"kind":"co_engagement"}"#).unwrap();
        assert_eq!(
            Explanation::new(bare).text,
            "People who watched what you watched also engaged with this"
        );
    }

    #[test]
    fn quoted_captions_are_cut_at_a_word_within_the_limit() {
        let long = "word ".repeat(40);
        let q = quoted_caption(&long).unwrap();
        assert!(q.ends_with('\u{2026}'), "{q}");
        assert!(q.chars().count() <= QUOTED_CAPTION_CHARS + 1, "{q}");
        assert!(!q.contains("wor\u{2026}"), "cut inside a word: {q}");
        // One long word: cut at the limit; multi-byte characters are never split.
        let q = quoted_caption(&"é".repeat(100)).unwrap();
        assert_eq!(q.chars().count(), QUOTED_CAPTION_CHARS + 1);
        assert_eq!(quoted_caption(" \n\t "), None);
        assert_eq!(quoted_caption("short"), Some("short".to_owned()));
    }

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
