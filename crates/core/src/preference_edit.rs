//! Editing compiled constraints one item at a time, and reading them in plain words.
//!
//! An item is addressed by its list and its topic and/or phrase (`{"list": "exclude",
//! "topic": "politics"}`); a slot by its name alone (`{"list": "following"}`). An edit
//! removes items, changes an item's strength or expiry, and adds what new text compiled
//! to; a newer statement about a topic replaces an older one that pulls the other way
//! ("no cooking" after "more cooking"). An address that matches nothing, or more than one
//! item, is an error and nothing changes.

use jiff::Timestamp;

use crate::constraints::{Concept, Constraints, Freshness, Shift, WeightedConcept};
use crate::error::{Entity, Error, Result};
use crate::ids::TopicId;

/// The list or slot an item lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ItemList {
    /// `boost`.
    Boost,
    /// `reduce`.
    Reduce,
    /// `exclude`.
    Exclude,
    /// `only`.
    Only,
    /// The `following` slot.
    Following,
    /// The `freshness` slot.
    Freshness,
    /// The `max_duration_s` slot.
    MaxDurationS,
    /// The `remix` slot.
    Remix,
    /// The `friends_cameos` slot.
    FriendsCameos,
    /// A `rejected` note.
    Rejected,
    /// An `unclear` note.
    Unclear,
}

impl ItemList {
    fn name(self) -> &'static str {
        match self {
            ItemList::Boost => "boost",
            ItemList::Reduce => "reduce",
            ItemList::Exclude => "exclude",
            ItemList::Only => "only",
            ItemList::Following => "following",
            ItemList::Freshness => "freshness",
            ItemList::MaxDurationS => "max_duration_s",
            ItemList::Remix => "remix",
            ItemList::FriendsCameos => "friends_cameos",
            ItemList::Rejected => "rejected",
            ItemList::Unclear => "unclear",
        }
    }
}

/// Where an item is: its list, and for the lists its topic and/or phrase.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemAddress {
    /// The list or slot.
    pub list: ItemList,
    /// The item's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicId>,
    /// The item's phrase (compared without regard to case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
}

/// A change to one item.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemChange {
    /// The item's list (`boost`, `reduce`, `exclude` or `only`).
    pub list: ItemList,
    /// The item's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicId>,
    /// The item's phrase (compared without regard to case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// A new strength (`boost` and `reduce` only), in `(0, 3]` and not sub-normal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1.1754943508222875e-38, maximum = 3.0)
    )]
    pub strength: Option<f32>,
    /// A new expiry for this item alone; it must be in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// Which way an item pulls, for "a newer statement replaces an older opposite one".
fn pulls_toward(list: ItemList) -> Option<bool> {
    match list {
        ItemList::Boost | ItemList::Only => Some(true),
        ItemList::Reduce | ItemList::Exclude => Some(false),
        _ => None,
    }
}

fn same_phrase(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        (None, None) => true,
        _ => false,
    }
}

fn matches(address: &ItemAddress, topic: Option<&TopicId>, phrase: Option<&str>) -> bool {
    address.topic.as_ref().is_none_or(|t| Some(t) == topic)
        && address
            .phrase
            .as_deref()
            .is_none_or(|p| phrase.is_some_and(|q| same_phrase(Some(p), Some(q))))
}

/// Indexes in a list of (topic, phrase) items that `address` names; exactly one or an error.
fn find_one<'a>(
    _field: &'static str,
    address: &ItemAddress,
    items: impl Iterator<Item = (Option<&'a TopicId>, Option<&'a str>)>,
) -> Result<usize> {
    if address.topic.is_none() && address.phrase.is_none() {
        // An item of a list is named by its topic and/or phrase: this names none.
        return Err(Error::NotFound {
            entity: Entity::PreferenceItem,
            id: format!("{} (no topic or phrase given)", address.list.name()),
        });
    }
    let found: Vec<usize> = items
        .enumerate()
        .filter(|(_, (t, p))| matches(address, *t, *p))
        .map(|(i, _)| i)
        .collect();
    let id = format!("{} {}", address.list.name(), show(address));
    match found[..] {
        [i] => Ok(i),
        [] => Err(Error::NotFound {
            entity: Entity::PreferenceItem,
            id,
        }),
        _ => Err(Error::Conflict {
            entity: Entity::PreferenceItem,
            id,
            reason: format!("{} items match: name the phrase too", found.len()),
        }),
    }
}

fn show(address: &ItemAddress) -> String {
    match (&address.topic, &address.phrase) {
        (Some(t), Some(p)) => format!("{} {p:?}", t.as_str()),
        (Some(t), None) => t.as_str().to_owned(),
        (None, Some(p)) => format!("{p:?}"),
        (None, None) => String::new(),
    }
}

fn weighted_items(
    list: &[WeightedConcept],
) -> impl Iterator<Item = (Option<&TopicId>, Option<&str>)> {
    list.iter().map(|c| (c.topic.as_ref(), c.phrase.as_deref()))
}

fn plain_items(list: &[Concept]) -> impl Iterator<Item = (Option<&TopicId>, Option<&str>)> {
    list.iter().map(|c| (c.topic.as_ref(), c.phrase.as_deref()))
}

impl Constraints {
    /// Takes out the item at `address`. A slot that is not set, or an address that names
    /// no item or several, is an error.
    pub fn remove_item(&mut self, address: &ItemAddress) -> Result<()> {
        const F: &str = "remove";
        let missing = || {
            Err(Error::NotFound {
                entity: Entity::PreferenceItem,
                id: address.list.name().to_owned(),
            })
        };
        match address.list {
            ItemList::Boost => {
                let i = find_one(F, address, weighted_items(&self.boost))?;
                self.boost.remove(i);
            }
            ItemList::Reduce => {
                let i = find_one(F, address, weighted_items(&self.reduce))?;
                self.reduce.remove(i);
            }
            ItemList::Exclude => {
                let i = find_one(F, address, plain_items(&self.exclude))?;
                self.exclude.remove(i);
            }
            ItemList::Only => {
                let i = find_one(F, address, plain_items(&self.only))?;
                self.only.remove(i);
            }
            ItemList::Rejected => {
                let i = find_one(
                    F,
                    address,
                    self.rejected
                        .iter()
                        .map(|r| (r.topic.as_ref(), r.phrase.as_deref())),
                )?;
                self.rejected.remove(i);
            }
            ItemList::Unclear => {
                let i = find_one(
                    F,
                    address,
                    self.unclear
                        .iter()
                        .map(|u| (u.suggestion.as_ref(), Some(u.phrase.as_str()))),
                )?;
                self.unclear.remove(i);
            }
            ItemList::Following => {
                if self.following.take().is_none() {
                    return missing();
                }
            }
            ItemList::Freshness => {
                if self.freshness.take().is_none() {
                    return missing();
                }
            }
            ItemList::MaxDurationS => {
                if self.max_duration_s.take().is_none() {
                    return missing();
                }
            }
            ItemList::Remix => {
                if self.remix.take().is_none() {
                    return missing();
                }
            }
            ItemList::FriendsCameos => {
                if self.friends_cameos.take().is_none() {
                    return missing();
                }
            }
        }
        Ok(())
    }

    /// Changes the strength or the expiry of the item `change` names (a change that gives
    /// neither changes nothing, but its item must exist). Strength applies to
    /// `boost` and `reduce`; an expiry to the four lists, and must be after `now`.
    pub fn change_item(&mut self, change: &ItemChange, now: Timestamp) -> Result<()> {
        const F: &str = "change";
        if let Some(at) = change.expires_at
            && at <= now
        {
            return Err(Error::invalid(
                F,
                "`expires_at` is not in the future: to drop the item, remove it",
            ));
        }
        if let (Some(at), Some(set)) = (change.expires_at, self.expires_at)
            && at > set
        {
            return Err(Error::invalid(
                F,
                format!(
                    "`expires_at` is after the constraints' own expiry ({set}): an item can end \
                     sooner than the rest, not later"
                ),
            ));
        }
        let address = &ItemAddress {
            list: change.list,
            topic: change.topic.clone(),
            phrase: change.phrase.clone(),
        };
        match address.list {
            ItemList::Boost | ItemList::Reduce => {
                let list = if address.list == ItemList::Boost {
                    &mut self.boost
                } else {
                    &mut self.reduce
                };
                let i = find_one(F, address, weighted_items(list))?;
                if let Some(s) = change.strength {
                    list[i].strength = s;
                }
                if let Some(at) = change.expires_at {
                    list[i].expires_at = Some(at);
                }
            }
            ItemList::Exclude | ItemList::Only => {
                if change.strength.is_some() {
                    return Err(Error::invalid(
                        F,
                        format!("`{}` items have no strength", address.list.name()),
                    ));
                }
                let list = if address.list == ItemList::Exclude {
                    &mut self.exclude
                } else {
                    &mut self.only
                };
                let i = find_one(F, address, plain_items(list))?;
                if let Some(at) = change.expires_at {
                    list[i].expires_at = Some(at);
                }
            }
            other => {
                // A slot has no strength or expiry of its own; naming it changes nothing,
                // and it must be set.
                let set = match other {
                    ItemList::Following => self.following.is_some(),
                    ItemList::Freshness => self.freshness.is_some(),
                    ItemList::MaxDurationS => self.max_duration_s.is_some(),
                    ItemList::Remix => self.remix.is_some(),
                    ItemList::FriendsCameos => self.friends_cameos.is_some(),
                    ItemList::Rejected => self
                        .rejected
                        .iter()
                        .any(|r| matches(address, r.topic.as_ref(), r.phrase.as_deref())),
                    _ => self
                        .unclear
                        .iter()
                        .any(|u| matches(address, u.suggestion.as_ref(), Some(&u.phrase))),
                };
                if !set {
                    return Err(Error::NotFound {
                        entity: Entity::PreferenceItem,
                        id: format!("{} {}", other.name(), show(address)),
                    });
                }
                if change.strength.is_some() || change.expires_at.is_some() {
                    return Err(Error::invalid(
                        F,
                        format!(
                            "`{}` has no strength or expiry of its own: remove it or set it \
                             again from text",
                            other.name()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Adds what new text compiled to. An item about a topic (or phrase) already in the
    /// lists replaces the older one in its own list and any that pulls the other way; the
    /// slots it sets replace the old ones; the set expires at the later of the two expiries.
    pub fn merge(&mut self, added: Constraints) {
        let key = |t: Option<&TopicId>, p: Option<&str>| -> (Option<TopicId>, Option<String>) {
            (t.cloned(), p.map(|p| p.trim().to_lowercase()))
        };
        let mut incoming: Vec<(ItemList, Option<TopicId>, Option<String>)> = Vec::new();
        for (list, items) in [
            (
                ItemList::Boost,
                weighted_items(&added.boost).collect::<Vec<_>>(),
            ),
            (ItemList::Reduce, weighted_items(&added.reduce).collect()),
            (ItemList::Exclude, plain_items(&added.exclude).collect()),
            (ItemList::Only, plain_items(&added.only).collect()),
        ] {
            for (t, p) in items {
                let (t, p) = key(t, p);
                incoming.push((list, t, p));
            }
        }
        // Older items superseded by a newer one: same list and same topic and phrase, or
        // the same topic pulling the other way.
        let superseded = |list: ItemList, t: Option<&TopicId>, p: Option<&str>| {
            let (t, p) = key(t, p);
            incoming.iter().any(|(l, it, ip)| {
                (*l == list && *it == t && *ip == p)
                    || (t.is_some()
                        && *it == t
                        && pulls_toward(*l).is_some()
                        && pulls_toward(*l) != pulls_toward(list))
            })
        };
        self.boost
            .retain(|c| !superseded(ItemList::Boost, c.topic.as_ref(), c.phrase.as_deref()));
        self.reduce
            .retain(|c| !superseded(ItemList::Reduce, c.topic.as_ref(), c.phrase.as_deref()));
        self.exclude
            .retain(|c| !superseded(ItemList::Exclude, c.topic.as_ref(), c.phrase.as_deref()));
        self.only
            .retain(|c| !superseded(ItemList::Only, c.topic.as_ref(), c.phrase.as_deref()));
        // The set's expiry may move later below: the items already here keep the one
        // they had.
        if let (Some(old), Some(new)) = (self.expires_at, added.expires_at)
            && new > old
        {
            for x in self.boost.iter_mut().chain(self.reduce.iter_mut()) {
                x.expires_at.get_or_insert(old);
            }
            for x in self.exclude.iter_mut().chain(self.only.iter_mut()) {
                x.expires_at.get_or_insert(old);
            }
        }
        self.boost.extend(added.boost);
        self.reduce.extend(added.reduce);
        self.exclude.extend(added.exclude);
        self.only.extend(added.only);
        self.following = added.following.or(self.following);
        self.freshness = added.freshness.or(self.freshness);
        self.max_duration_s = added.max_duration_s.or(self.max_duration_s);
        self.remix = added.remix.or(self.remix);
        self.friends_cameos = added.friends_cameos.or(self.friends_cameos);
        for r in added.rejected {
            if !self.rejected.contains(&r) {
                self.rejected.push(r);
            }
        }
        for u in added.unclear {
            if !self.unclear.contains(&u) {
                self.unclear.push(u);
            }
        }
        self.expires_at = match (self.expires_at, added.expires_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The constraints in force at `now`: none once the set expired, and without the items
    /// whose own expiry passed.
    pub fn active(&self, now: Timestamp) -> Constraints {
        if self.is_expired(now) {
            return Constraints::default();
        }
        self.without_expired_items(now)
    }

    /// The constraints without the items whose own expiry passed at `now` (the set's own
    /// expiry, and what it says, kept: what a person reading their preferences sees).
    pub fn without_expired_items(&self, now: Timestamp) -> Constraints {
        let live = |at: Option<Timestamp>| at.is_none_or(|t| t > now);
        let mut c = self.clone();
        c.boost.retain(|x| live(x.expires_at));
        c.reduce.retain(|x| live(x.expires_at));
        c.exclude.retain(|x| live(x.expires_at));
        c.only.retain(|x| live(x.expires_at));
        c
    }

    /// Drops the plain-words descriptions (they are rendered on the way out, not stored).
    pub fn without_descriptions(mut self) -> Constraints {
        for x in self.boost.iter_mut().chain(self.reduce.iter_mut()) {
            x.description = None;
        }
        for x in self.exclude.iter_mut().chain(self.only.iter_mut()) {
            x.description = None;
        }
        self
    }

    /// Fills each item's description ("No politics until 8 Dec") and returns every
    /// constraint as a sentence, in list order: the items, the slots, what was not
    /// applied, and until when the set applies.
    pub fn describe(&mut self) -> Vec<String> {
        let until = |at: Option<Timestamp>| {
            at.map(|t| format!(" until {}", t.strftime("%-d %b")))
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for (prefix, list) in [("More", &mut self.boost), ("Less", &mut self.reduce)] {
            for c in list.iter_mut() {
                let strong = if c.strength > 1.5 {
                    " (strongly)"
                } else if c.strength < 0.75 {
                    " (a little)"
                } else {
                    ""
                };
                let d = format!(
                    "{prefix} {}{strong}{}",
                    label(c.topic.as_ref(), c.phrase.as_deref()),
                    until(c.expires_at.or(self.expires_at))
                );
                out.push(d.clone());
                c.description = Some(d);
            }
        }
        for (prefix, list) in [("No", &mut self.exclude), ("Only", &mut self.only)] {
            for c in list.iter_mut() {
                let d = format!(
                    "{prefix} {}{}",
                    label(c.topic.as_ref(), c.phrase.as_deref()),
                    until(c.expires_at.or(self.expires_at))
                );
                out.push(d.clone());
                c.description = Some(d);
            }
        }
        match self.following {
            Some(Shift::More) => out.push("More from people you follow".into()),
            Some(Shift::Less) => out.push("Less from people you follow".into()),
            None => {}
        }
        if self.freshness == Some(Freshness::Newer) {
            out.push("Newer videos first".into());
        }
        if let Some(s) = self.max_duration_s {
            out.push(format!("Nothing longer than {s} seconds"));
        }
        match self.remix {
            Some(true) => out.push("More remixes".into()),
            Some(false) => out.push("Fewer remixes".into()),
            None => {}
        }
        match self.friends_cameos {
            Some(true) => out.push("More videos featuring people you follow".into()),
            Some(false) => out.push("Fewer videos featuring people you follow".into()),
            None => {}
        }
        for r in &self.rejected {
            let what = match (&r.phrase, &r.topic) {
                (Some(p), _) => format!("“{p}”"),
                (None, Some(t)) => t.as_str().replace('_', " "),
                (None, None) => "a request".to_owned(),
            };
            out.push(format!("Not applied: {what} ({})", r.reason));
        }
        for u in &self.unclear {
            out.push(match &u.suggestion {
                Some(t) => format!(
                    "Not sure what “{}” means (did you mean {}?)",
                    u.phrase,
                    t.as_str().replace('_', " ")
                ),
                None => format!("Not understood: “{}”", u.phrase),
            });
        }
        if let Some(at) = self.expires_at
            && !self.is_empty()
        {
            out.push(format!("Until {}", at.strftime("%-d %b %Y")));
        }
        out
    }
}

fn label(topic: Option<&TopicId>, phrase: Option<&str>) -> String {
    match (phrase, topic) {
        (Some(p), _) if !p.trim().is_empty() => p.to_owned(),
        (_, Some(t)) => t.as_str().replace('_', " "),
        _ => "something".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn parsed(json: &str) -> Constraints {
        serde_json::from_str(json).unwrap()
    }

    fn topics(list: &[WeightedConcept]) -> Vec<&str> {
        list.iter()
            .filter_map(|c| c.topic.as_ref().map(TopicId::as_str))
            .collect()
    }

    #[test]
    fn an_item_stops_applying_at_its_own_expiry_the_rest_at_the_sets() {
        let c = parsed(
            r#"{"boost": [{"topic": "cooking"}, {"topic": "pets", "expires_at": "2026-12-03T00:00:00Z"}],
                "exclude": [{"topic": "politics", "expires_at": "2026-12-02T00:00:00Z"}],
                "following": "more",
                "expires_at": "2026-12-08T00:00:00Z"}"#,
        );
        let day1 = c.active(at("2026-12-01T12:00:00Z"));
        assert_eq!(day1, c);
        let day2 = c.active(at("2026-12-02T12:00:00Z"));
        assert_eq!(topics(&day2.boost), ["cooking", "pets"]);
        assert!(day2.exclude.is_empty());
        let day4 = c.active(at("2026-12-04T00:00:00Z"));
        assert_eq!(topics(&day4.boost), ["cooking"]);
        assert_eq!(day4.following, Some(Shift::More));
        assert_eq!(c.active(at("2026-12-08T00:00:00Z")), Constraints::default());
    }

    #[test]
    fn a_change_that_gives_neither_strength_nor_expiry_keeps_every_list_as_it_was() {
        let original = parsed(
            r#"{"boost": [{"topic": "pets", "strength": 2.0, "expires_at": "2026-12-05T00:00:00Z"}],
                "reduce": [{"topic": "horror", "expires_at": "2026-12-05T00:00:00Z"}],
                "exclude": [{"topic": "politics", "expires_at": "2026-12-04T00:00:00Z"}],
                "only": [{"topic": "cooking", "expires_at": "2026-12-06T00:00:00Z"}],
                "expires_at": "2026-12-08T00:00:00Z"}"#,
        );
        let now = at("2026-12-01T00:00:00Z");
        for (list, topic) in [
            (ItemList::Boost, "pets"),
            (ItemList::Reduce, "horror"),
            (ItemList::Exclude, "politics"),
            (ItemList::Only, "cooking"),
        ] {
            let mut c = original.clone();
            let change = ItemChange {
                list,
                topic: Some(TopicId::new(topic).unwrap()),
                phrase: None,
                strength: None,
                expires_at: None,
            };
            c.change_item(&change, now).unwrap();
            assert_eq!(c, original, "{topic}");
            // A new expiry is the one thing such a change sets.
            let later = at("2026-12-07T00:00:00Z");
            c.change_item(
                &ItemChange {
                    expires_at: Some(later),
                    ..change
                },
                now,
            )
            .unwrap();
            let expiry = match list {
                ItemList::Boost => c.boost[0].expires_at,
                ItemList::Reduce => c.reduce[0].expires_at,
                ItemList::Exclude => c.exclude[0].expires_at,
                _ => c.only[0].expires_at,
            };
            assert_eq!(expiry, Some(later), "{topic}");
        }
    }

    #[test]
    fn newer_statements_replace_older_ones_about_the_same_topic() {
        let mut c = parsed(
            r#"{"boost": [{"topic": "cooking", "phrase": "recipes"}, {"topic": "pets", "phrase": "dogs"}],
                "reduce": [{"topic": "horror"}],
                "max_duration_s": 60,
                "expires_at": "2026-12-08T00:00:00Z"}"#,
        );
        c.merge(parsed(
            r#"{"exclude": [{"topic": "cooking", "phrase": "cooking"}],
                "boost": [{"topic": "pets", "phrase": "cats"}, {"topic": "horror", "phrase": "horror"}],
                "max_duration_s": 30,
                "expires_at": "2026-12-09T00:00:00Z"}"#,
        ));
        // "no cooking" replaces "more recipes" (same topic, the other way); "more cats"
        // sits beside "more dogs" (same topic, same way, other phrase); "more horror"
        // replaces "less horror".
        assert_eq!(topics(&c.boost), ["pets", "pets", "horror"]);
        assert!(c.reduce.is_empty());
        assert_eq!(c.exclude.len(), 1);
        assert_eq!(c.max_duration_s, Some(30));
        assert_eq!(c.expires_at, Some(at("2026-12-09T00:00:00Z")));
        // "More dogs" was set to end on the 8th and still does.
        assert_eq!(c.boost[0].expires_at, Some(at("2026-12-08T00:00:00Z")));
        assert_eq!(c.boost[1].expires_at, None);
    }

    #[test]
    fn addresses_name_exactly_one_item_or_nothing_changes() {
        let original = parsed(
            r#"{"boost": [{"topic": "pets", "phrase": "dogs"}, {"topic": "pets", "phrase": "cats"}],
                "exclude": [{"phrase": "clowns"}]}"#,
        );
        let address = |list, topic: Option<&str>, phrase: Option<&str>| ItemAddress {
            list,
            topic: topic.map(|t| TopicId::new(t).unwrap()),
            phrase: phrase.map(str::to_owned),
        };
        let mut c = original.clone();
        assert!(
            c.remove_item(&address(ItemList::Boost, Some("pets"), None))
                .is_err()
        );
        assert!(
            c.remove_item(&address(ItemList::Boost, None, None))
                .is_err()
        );
        assert!(
            c.remove_item(&address(ItemList::Reduce, Some("pets"), None))
                .is_err()
        );
        assert!(
            c.remove_item(&address(ItemList::Following, None, None))
                .is_err()
        );
        assert_eq!(c, original);
        c.remove_item(&address(ItemList::Exclude, None, Some("CLOWNS")))
            .unwrap();
        assert!(c.exclude.is_empty());
        c.remove_item(&address(ItemList::Boost, Some("pets"), Some("cats")))
            .unwrap();
        assert_eq!(c.boost.len(), 1);
        assert_eq!(c.boost[0].phrase.as_deref(), Some("dogs"));
    }

    #[test]
    fn descriptions_are_rendered_not_stored() {
        let mut c = parsed(
            r#"{"boost": [{"topic": "ai_art", "strength": 0.5}],
                "only": [{"topic": "soccer", "expires_at": "2026-12-05T00:00:00Z"}],
                "rejected": [{"label": "gambling", "phrase": "betting tips", "reason": "not for teens"}],
                "unclear": [{"phrase": "zorblax", "reason": "low_confidence"}],
                "expires_at": "2026-12-08T00:00:00Z"}"#,
        );
        let sentences = c.describe();
        assert_eq!(
            sentences,
            [
                "More ai art (a little) until 8 Dec",
                "Only soccer until 5 Dec",
                "Not applied: “betting tips” (not for teens)",
                "Not understood: “zorblax”",
                "Until 8 Dec 2026",
            ]
        );
        assert_eq!(
            c.only[0].description.as_deref(),
            Some("Only soccer until 5 Dec")
        );
        let stored = c.without_descriptions();
        assert!(stored.boost[0].description.is_none() && stored.only[0].description.is_none());
    }
}
