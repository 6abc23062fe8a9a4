//! The topic policy table: the taxonomy file, where each topic may name the safety label
//! its videos carry (`id<TAB>description<TAB>label`). One table, read by everything that
//! applies policy to topics: the steering parser (what a teen may not ask more of), the
//! engine (a video's topics add their labels, which the teen filter, the teen caps and
//! lighter mode read), and the synthetic worlds.
//!
//! A line without a third column takes the label the default table gives the same topic
//! id (an app's own taxonomy that keeps `mature` keeps it restricted); `-` names none.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::ids::TopicId;
use crate::video::SafetyLabel;

/// The default taxonomy and its policy (`data/taxonomy.tsv`).
pub const DEFAULT_TAXONOMY: &str = include_str!("../../../data/taxonomy.tsv");

/// One topic of a taxonomy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLine {
    /// The topic.
    pub id: TopicId,
    /// Its one-line description.
    pub description: String,
    /// The safety label its videos carry, if any.
    pub label: Option<SafetyLabel>,
}

fn invalid(message: String) -> Error {
    Error::invalid("taxonomy", message)
}

/// Parses a taxonomy file: `id<TAB>description[<TAB>label]` per line, `#` comments and
/// blank lines ignored. A missing label column takes the default table's label for the
/// id; `-` is no label.
pub fn parse_taxonomy(text: &str) -> Result<Vec<TopicLine>> {
    parse(text, Some(default_labels()))
}

fn parse(text: &str, defaults: Option<&HashMap<TopicId, SafetyLabel>>) -> Result<Vec<TopicLine>> {
    let mut out: Vec<TopicLine> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(id), Some(description)) = (cols.next(), cols.next()) else {
            return Err(invalid(format!(
                "line {}: expected id<TAB>description[<TAB>label]",
                n + 1
            )));
        };
        let id = TopicId::new(id.trim())?;
        if out.iter().any(|t| t.id == id) {
            return Err(invalid(format!("topic {id} listed twice")));
        }
        if description.trim().is_empty() {
            return Err(invalid(format!("topic {id} has no description")));
        }
        let label = match cols.next().map(str::trim) {
            None => defaults.and_then(|d| d.get(&id).copied()),
            Some("-") => None,
            Some(name) => Some(SafetyLabel::from_name(name).ok_or_else(|| {
                invalid(format!(
                    "topic {id}: {name:?} is not a safety label (one of {})",
                    SafetyLabel::ALL.map(SafetyLabel::name).join(", ")
                ))
            })?),
        };
        if cols.next().is_some() {
            return Err(invalid(format!("line {}: more than three columns", n + 1)));
        }
        out.push(TopicLine {
            id,
            description: description.trim().to_owned(),
            label,
        });
    }
    if out.is_empty() {
        return Err(invalid("no topics".into()));
    }
    Ok(out)
}

fn default_labels() -> &'static HashMap<TopicId, SafetyLabel> {
    static LABELS: OnceLock<HashMap<TopicId, SafetyLabel>> = OnceLock::new();
    LABELS.get_or_init(|| {
        parse(DEFAULT_TAXONOMY, None)
            .map(|lines| {
                lines
                    .into_iter()
                    .filter_map(|t| t.label.map(|l| (t.id, l)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The label the default table gives `topic`.
pub fn default_label(topic: &str) -> Option<SafetyLabel> {
    let id = TopicId::new(topic).ok()?;
    default_labels().get(&id).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_labels_the_policy_topics() {
        let lines = parse_taxonomy(DEFAULT_TAXONOMY).unwrap();
        let label = |t: &str| lines.iter().find(|l| l.id.as_str() == t).unwrap().label;
        assert_eq!(label("mature"), Some(SafetyLabel::Mature));
        assert_eq!(label("violence"), Some(SafetyLabel::Violence));
        assert_eq!(label("weight_loss"), Some(SafetyLabel::WeightLoss));
        assert_eq!(label("sad"), Some(SafetyLabel::Sad));
        assert_eq!(label("cooking"), None);
        assert_eq!(default_label("mature"), Some(SafetyLabel::Mature));
        assert_eq!(default_label("pets"), None);
        assert_eq!(default_label("NOT AN ID"), None);
    }

    #[test]
    fn a_table_without_labels_keeps_the_default_ones_and_dash_removes_them() {
        let lines =
            parse_taxonomy("mature\tadult content\ncasino\tslots\tgambling\nsad\tsad things\t-")
                .unwrap();
        assert_eq!(lines[0].label, Some(SafetyLabel::Mature));
        assert_eq!(lines[1].label, Some(SafetyLabel::Gambling));
        assert_eq!(lines[2].label, None);
    }

    #[test]
    fn malformed_tables_are_refused() {
        for bad in [
            "",
            "cooking recipes",
            "Cooking\trecipes",
            "a\tx\na\ty",
            "a\t  ",
            "a\tx\tnot_a_label",
            "a\tx\tmature\textra",
        ] {
            assert!(parse_taxonomy(bad).is_err(), "{bad:?}");
        }
    }
}
