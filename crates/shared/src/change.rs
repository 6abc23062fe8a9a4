//! The writes every replica applies in the change log's order: one [`Change`] per
//! acknowledged write about the catalogue or about people.

use steerfeed_core::storage::{Relation, Revocation, Storage};
use steerfeed_core::{
    ConsentScope, Constraints, ErasureReport, OwnVideos, ParentalControls, Result, User, UserId,
    Video, VideoId,
};

/// One write, as the change log stores it (JSON tagged by `op`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Change {
    Videos {
        videos: Vec<Video>,
    },
    DeleteVideo {
        video: VideoId,
    },
    User {
        user: User,
    },
    Relations {
        items: Vec<RelationItem>,
    },
    Consent {
        person: UserId,
        scope: ConsentScope,
        approved: Vec<UserId>,
    },
    Revoke {
        person: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<VideoId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creator: Option<UserId>,
    },
    ParentalControls {
        user: UserId,
        controls: ParentalControls,
    },
    Preferences {
        user: UserId,
        text: String,
        constraints: Constraints,
    },
    ClearPreferences {
        user: UserId,
    },
    Erase {
        user: UserId,
        own_videos: OwnVideos,
    },
    /// A write of an erased person's own that their erasure took out of the log.
    Scrubbed,
}

/// `a` sets (`on`) or clears a relation on `b`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelationItem {
    a: UserId,
    b: UserId,
    relation: RelationKind,
    on: bool,
}

/// A relation as the change log (and a mirror snapshot's `relations` file) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RelationKind {
    Follow,
    Block,
    Mute,
}

impl From<Relation> for RelationKind {
    fn from(r: Relation) -> Self {
        match r {
            Relation::Follow => RelationKind::Follow,
            Relation::Block => RelationKind::Block,
            Relation::Mute => RelationKind::Mute,
        }
    }
}

impl From<RelationKind> for Relation {
    fn from(r: RelationKind) -> Self {
        match r {
            RelationKind::Follow => Relation::Follow,
            RelationKind::Block => Relation::Block,
            RelationKind::Mute => Relation::Mute,
        }
    }
}

impl Change {
    pub(crate) fn relations(items: &[(UserId, UserId, Relation, bool)]) -> Change {
        Change::Relations {
            items: items
                .iter()
                .map(|(a, b, r, on)| RelationItem {
                    a: a.clone(),
                    b: b.clone(),
                    relation: (*r).into(),
                    on: *on,
                })
                .collect(),
        }
    }

    /// The relations a [`Change::Relations`] sets (none for another change).
    pub(crate) fn relation_items(&self) -> Vec<(UserId, UserId, Relation, bool)> {
        match self {
            Change::Relations { items } => items
                .iter()
                .map(|i| (i.a.clone(), i.b.clone(), i.relation.into(), i.on))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn revoke(person: &UserId, revocation: &Revocation) -> Change {
        let (video, creator) = revocation.parts();
        Change::Revoke {
            person: person.clone(),
            video,
            creator,
        }
    }

    /// Applies the change to `store` through the same call the embedded backend answers,
    /// which validates it: an error changes nothing. An erasure says what it did.
    pub(crate) fn apply(&self, store: &dyn Storage) -> Result<Option<ErasureReport>> {
        match self {
            Change::Videos { videos } => store.upsert_videos(videos)?,
            Change::DeleteVideo { video } => store.delete_video(video)?,
            Change::User { user } => store.upsert_user(user)?,
            Change::Relations { .. } => store.set_relations(&self.relation_items())?,
            Change::Consent {
                person,
                scope,
                approved,
            } => store.set_consent(person, *scope, approved)?,
            Change::Revoke {
                person,
                video,
                creator,
            } => store.revoke_consent(
                person,
                &Revocation::from_parts(video.as_ref(), creator.as_ref())?,
            )?,
            Change::ParentalControls { user, controls } => {
                store.set_parental_controls(user, controls)?
            }
            Change::Preferences {
                user,
                text,
                constraints,
            } => store.set_preferences(user, text, constraints)?,
            Change::ClearPreferences { user } => store.clear_preferences(user)?,
            Change::Erase { user, own_videos } => {
                return store.erase_user(user, *own_videos).map(Some);
            }
            Change::Scrubbed => {}
        }
        Ok(None)
    }

    /// The people this change names whose erasure would rewrite it
    /// ([`Change::scrubbed`]): the log indexes it under each.
    pub(crate) fn people(&self) -> Vec<&UserId> {
        match self {
            Change::Consent { person, .. } | Change::Revoke { person, .. } => vec![person],
            Change::ParentalControls { user, .. }
            | Change::Preferences { user, .. }
            | Change::ClearPreferences { user } => vec![user],
            Change::User { user } => vec![&user.id],
            Change::Relations { items } => {
                let mut people: Vec<&UserId> = items.iter().flat_map(|i| [&i.a, &i.b]).collect();
                people.sort();
                people.dedup();
                people
            }
            Change::Videos { .. }
            | Change::DeleteVideo { .. }
            | Change::Erase { .. }
            | Change::Scrubbed => Vec::new(),
        }
    }

    /// This earlier change as the log keeps it once `erased` is erased, or `None` when
    /// it says nothing of them. Replaying the scrubbed log up to the erasure ends in the
    /// state the original did: what the person set about themselves (consent,
    /// revocations, parental controls, preferences) becomes a no-op, since the erasure
    /// forgets it anyway; their account keeps only its id (later writes by others may
    /// name them, and must still apply); relations with them go. Videos are left as
    /// they were: the erasure that follows in the log deletes those featuring them.
    pub(crate) fn scrubbed(&self, erased: &UserId) -> Option<Change> {
        match self {
            Change::Consent { person, .. } | Change::Revoke { person, .. } if person == erased => {
                Some(Change::Scrubbed)
            }
            Change::ParentalControls { user, .. }
            | Change::Preferences { user, .. }
            | Change::ClearPreferences { user }
                if user == erased =>
            {
                Some(Change::Scrubbed)
            }
            Change::User { user } if &user.id == erased => {
                let bare = steerfeed_core::User {
                    id: user.id.clone(),
                    age_band: Default::default(),
                    time_zone: "UTC".into(),
                };
                (&bare != user).then_some(Change::User { user: bare })
            }
            Change::Relations { items }
                if items.iter().any(|i| &i.a == erased || &i.b == erased) =>
            {
                Some(Change::Relations {
                    items: items
                        .iter()
                        .filter(|i| &i.a != erased && &i.b != erased)
                        .cloned()
                        .collect(),
                })
            }
            _ => None,
        }
    }
}
