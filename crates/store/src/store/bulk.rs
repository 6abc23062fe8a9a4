//! The bulk export: every record of the kinds asked for, in the export record format,
//! streamed one at a time (memory stays constant whatever the store's size).

use steerfeed_core::person::ERASED_CREATOR;
use steerfeed_core::{Record, RecordKind};

use super::*;
use crate::mirror::{revocation_of, split_pair};

impl Store {
    /// Calls `f` with every record of `kinds`, kind by kind in [`RecordKind::ALL`]'s
    /// order (so that the output imports in its own order), each kind in key order;
    /// videos carry their embedding when `embeddings` is set, and those without a
    /// caption always. Deleted videos are listed
    /// (an event about one is still accepted), but not the deleted videos of erased
    /// people, whose creator no longer exists. Each record is read as it stands when it
    /// is reached: writes made meanwhile may or may not be included (a backup is the
    /// consistent copy).
    pub fn for_each_record(
        &self,
        kinds: &[RecordKind],
        embeddings: bool,
        mut f: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        let t = self.t();
        for kind in RecordKind::ALL.into_iter().filter(|k| kinds.contains(k)) {
            match kind {
                RecordKind::User => {
                    for kv in t.users.iter() {
                        let (k, _) = kv.map_err(db_err)?;
                        if let Some(user) = self.user(&user_of(&k)?)? {
                            f(Record::User { user })?;
                        }
                    }
                }
                RecordKind::Video => {
                    for kv in t.videos.iter() {
                        let (k, _) = kv.map_err(db_err)?;
                        let Some(v) = self.video(&video_of(&k)?)? else {
                            continue;
                        };
                        if v.creator.as_str() == ERASED_CREATOR {
                            continue;
                        }
                        let mut video = Video::clone(&v);
                        // A video with no caption keeps its embedding: an import has
                        // nothing else to compute one from.
                        if !embeddings && !video.caption.trim().is_empty() {
                            video.embedding = None;
                        }
                        f(Record::Video { video })?;
                    }
                }
                RecordKind::Follow | RecordKind::Block | RecordKind::Mute => {
                    let tree = match kind {
                        RecordKind::Follow => &t.follows,
                        RecordKind::Block => &t.blocks,
                        _ => &t.mutes,
                    };
                    for kv in tree.iter() {
                        let Some((user, other)) = split_pair(&kv.map_err(db_err)?.0)? else {
                            continue;
                        };
                        f(match kind {
                            RecordKind::Follow => Record::Follow {
                                user,
                                creator: other,
                            },
                            RecordKind::Block => Record::Block { user, other },
                            _ => Record::Mute { user, other },
                        })?;
                    }
                }
                RecordKind::Consent => {
                    for kv in t.consent.iter() {
                        let person = user_of(&kv.map_err(db_err)?.0)?;
                        let (scope, approved) = self.consent(&person)?;
                        f(Record::Consent {
                            person,
                            scope,
                            approved,
                        })?;
                    }
                }
                RecordKind::Revocation => {
                    for kv in t.revocations.iter() {
                        let (person, r) = revocation_of(&kv.map_err(db_err)?.0)?;
                        let (video, creator) = match r {
                            Revocation::Video(v) => (Some(v), None),
                            Revocation::Creator(c) => (None, Some(c)),
                        };
                        f(Record::Revocation {
                            person,
                            video,
                            creator,
                        })?;
                    }
                }
                RecordKind::ParentalControls => {
                    for kv in t.parental.iter() {
                        let user = user_of(&kv.map_err(db_err)?.0)?;
                        let controls = self.parental_controls(&user)?;
                        f(Record::ParentalControls { user, controls })?;
                    }
                }
                RecordKind::Preferences => {
                    for kv in t.prefs.iter() {
                        let user = user_of(&kv.map_err(db_err)?.0)?;
                        if let Some(p) = self.preferences(&user)? {
                            f(Record::Preferences {
                                user,
                                text: p.text,
                                constraints: p.constraints,
                            })?;
                        }
                    }
                }
                RecordKind::Event => {
                    self.for_each_event(1, |seq, event| f(Record::Event { seq, event }))?;
                }
            }
        }
        Ok(())
    }
}
