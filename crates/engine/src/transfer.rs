//! Bulk import and export: records in the export record format ([`Record`]) applied
//! through the engine's own writes (so that the index, the caches and the page pools
//! follow), and every record of a store streamed out.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use steerfeed_core::storage::{Relation, Revocation};
use steerfeed_core::{Error, Event, Record, RecordKind, Result, Timestamp, UserId, Video};

use crate::Engine;

/// What an import did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    /// Written: the store holds it now (a relation, consent or revocation may have been
    /// held already; writing it again changed nothing).
    Written,
    /// Already stored exactly so (a user or a video): not written again.
    Unchanged,
    /// An event whose key was logged before (or earlier in the same file): not counted
    /// again.
    Duplicate,
    /// A record derived from events (wellbeing, seen, engagement, interest, affinity, a
    /// cameo mention), not imported since replaying the events rebuilds it; or a page of
    /// the impression log, which a store keeps only for the pages it served itself.
    Derived,
}

impl Engine {
    /// Applies records in order, as their own routes would: users, videos (embedded and
    /// topic-inferred where they carry none), relations, consent, revocations, parental
    /// controls, preferences (stored as given, not compiled again) and events (logged
    /// once per key). One answer per record, in order: a bad record is an error of its
    /// own and the others still apply. Idempotent: applying the same records again
    /// leaves every user and video unchanged and every event a duplicate. A record that
    /// names someone erased from this store is refused: older data never brings an
    /// erased person back. With `latest`, an event or a video dated after it is refused
    /// too: one event from the future would move its viewer's day past every real one
    /// (freezing their daily counts) and its video's counters past every later event,
    /// and a video from the future would stay the freshest for as long as it pleases.
    /// Older dates are history and are kept. `None` accepts any date (a caller that
    /// keeps its own clock, such as a simulation).
    ///
    /// Consecutive videos, events, follows, blocks and mutes are written in batches; a
    /// batch that fails is split in halves until the bad records are found, so that one bad line costs a few extra
    /// writes rather than one write per record.
    pub fn import(&self, records: &[Record], latest: Option<Timestamp>) -> Vec<Result<Imported>> {
        let erased: HashSet<UserId> = match self.store().erased() {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                let message = e.to_string();
                return records
                    .iter()
                    .map(|_| Err(Error::internal("import", &message)))
                    .collect();
            }
        };
        // A record about someone erased here is refused: an import of older data must
        // not bring them back.
        let mut out: Vec<Option<Result<Imported>>> = Vec::with_capacity(records.len());
        let mut kept = Vec::with_capacity(records.len());
        let mut at = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let future = latest.and_then(|l| dated(r).filter(|&(_, at)| at > l).map(|d| (d, l)));
            match (names(r).into_iter().find(|id| erased.contains(*id)), future) {
                (Some(id), _) => out.push(Some(Err(Error::invalid(
                    "record",
                    format!(
                        "it names {id}, who was erased from this store: an import does not bring erased people back"
                    ),
                )))),
                (None, Some(((field, at), latest))) => out.push(Some(Err(Error::invalid(
                    field,
                    format!(
                        "{at} is after {latest}, the latest time this import accepts (the clock and the skew it allows): a record from the future would freeze its viewer's daily counts or stay the freshest video"
                    ),
                )))),
                (None, None) => {
                    out.push(None);
                    kept.push(r.clone());
                    at.push(i);
                }
            }
        }
        for (i, r) in at.into_iter().zip(self.import_known(&kept)) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("import", "a record got no answer"))))
            .collect()
    }

    /// [`Engine::import`] of records that name no one erased.
    fn import_known(&self, records: &[Record]) -> Vec<Result<Imported>> {
        let mut out = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            let kind = records[i].kind();
            let batched = matches!(
                kind,
                Some(
                    RecordKind::Video
                        | RecordKind::Event
                        | RecordKind::Follow
                        | RecordKind::Block
                        | RecordKind::Mute
                )
            );
            let mut j = i + 1;
            while batched && j < records.len() && records[j].kind() == kind {
                j += 1;
            }
            let run = &records[i..j];
            match kind {
                Some(RecordKind::Video) => {
                    let videos: Vec<&Video> = run
                        .iter()
                        .filter_map(|r| match r {
                            Record::Video { video } => Some(video),
                            _ => None,
                        })
                        .collect();
                    out.extend(self.import_videos(&videos));
                }
                Some(RecordKind::Event) => {
                    let events: Vec<Event> = run
                        .iter()
                        .filter_map(|r| match r {
                            Record::Event { event, .. } => Some(event.clone()),
                            _ => None,
                        })
                        .collect();
                    out.extend(bisect(&events, &mut |part| self.import_events(part)));
                }
                Some(RecordKind::Follow | RecordKind::Block | RecordKind::Mute) => {
                    let items: Vec<(UserId, UserId, Relation, bool)> = run
                        .iter()
                        .filter_map(|r| match r {
                            Record::Follow { user, creator } => {
                                Some((user.clone(), creator.clone(), Relation::Follow, true))
                            }
                            Record::Block { user, other } => {
                                Some((user.clone(), other.clone(), Relation::Block, true))
                            }
                            Record::Mute { user, other } => {
                                Some((user.clone(), other.clone(), Relation::Mute, true))
                            }
                            _ => None,
                        })
                        .collect();
                    out.extend(bisect(&items, &mut |part| {
                        self.set_relations(part)
                            .map(|()| vec![Imported::Written; part.len()])
                    }));
                }
                _ => out.push(self.import_one(&run[0])),
            }
            i = j;
        }
        out
    }

    fn import_videos(&self, videos: &[&Video]) -> Vec<Result<Imported>> {
        let mut out: Vec<Option<Result<Imported>>> = Vec::with_capacity(videos.len());
        let mut changed = Vec::new();
        let mut at = Vec::new();
        for (i, v) in videos.iter().enumerate() {
            match self.store().video(&v.id) {
                Ok(Some(stored)) if same_video(v, &stored) => {
                    out.push(Some(Ok(Imported::Unchanged)))
                }
                Ok(_) => {
                    out.push(None);
                    changed.push(Video::clone(v));
                    at.push(i);
                }
                Err(e) => out.push(Some(Err(e))),
            }
        }
        let written = bisect(&changed, &mut |part| {
            self.upsert_videos(part)
                .map(|()| vec![Imported::Written; part.len()])
        });
        for (i, r) in at.into_iter().zip(written) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("import", "a video got no answer"))))
            .collect()
    }

    fn import_events(&self, events: &[Event]) -> Result<Vec<Imported>> {
        let report = self.ingest_events(events)?;
        // Each repeated key is reported once per copy not counted: of a key's copies in
        // the batch, the first ones (all but as many as were reported) were counted.
        let mut duplicate: HashMap<&str, usize> = HashMap::new();
        for k in &report.duplicates {
            *duplicate.entry(k.as_str()).or_default() += 1;
        }
        let mut copies: HashMap<&str, usize> = HashMap::new();
        for e in events {
            *copies.entry(e.key.as_str()).or_default() += 1;
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        Ok(events
            .iter()
            .map(|e| {
                let key = e.key.as_str();
                let nth = seen.entry(key).or_default();
                *nth += 1;
                let counted = copies[key] - duplicate.get(key).copied().unwrap_or(0);
                if *nth <= counted {
                    Imported::Written
                } else {
                    Imported::Duplicate
                }
            })
            .collect())
    }

    fn import_one(&self, record: &Record) -> Result<Imported> {
        match record {
            Record::User { user } => {
                if self.store().user(&user.id)?.as_ref() == Some(user) {
                    return Ok(Imported::Unchanged);
                }
                self.upsert_user(user)?
            }
            Record::Consent {
                person,
                scope,
                approved,
            } => self.set_consent(person, *scope, approved)?,
            Record::Revocation {
                person,
                video,
                creator,
            } => {
                let revocation = Revocation::from_parts(video.as_ref(), creator.as_ref())?;
                self.revoke_consent(person, &revocation)?
            }
            Record::ParentalControls { user, controls } => {
                self.set_parental_controls(user, controls)?
            }
            Record::Preferences {
                user,
                text,
                constraints,
            } => {
                self.known(user)?;
                if text.trim().is_empty() {
                    return Err(Error::invalid("text", "empty"));
                }
                steerfeed_core::wire::check_text("text", text)?;
                constraints.validate()?;
                let _writing = self.preference_lock(user);
                self.forgetting(user, self.store().set_preferences(user, text, constraints))?
            }
            Record::Video { .. }
            | Record::Event { .. }
            | Record::Follow { .. }
            | Record::Block { .. }
            | Record::Mute { .. } => {
                return Err(Error::internal(
                    "import",
                    "a batched kind reached import_one",
                ));
            }
            Record::Wellbeing { .. }
            | Record::Seen { .. }
            | Record::Engagement { .. }
            | Record::Interest { .. }
            | Record::Affinity { .. }
            | Record::Cameo { .. }
            | Record::Impression { .. } => return Ok(Imported::Derived),
        }
        Ok(Imported::Written)
    }

    /// Calls `f` with every record of `kinds` in the store, in an order that imports
    /// (see [`steerfeed_core::storage::Storage::for_each_record`]); videos carry their
    /// embeddings when `embeddings` is set.
    pub fn export(
        &self,
        kinds: &[RecordKind],
        embeddings: bool,
        f: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.store().for_each_record(kinds, embeddings, f)
    }
}

/// The field and the time of a record a client dates: an event's `at`, a video's
/// `created_at`.
fn dated(r: &Record) -> Option<(&'static str, Timestamp)> {
    match r {
        Record::Event { event, .. } => Some(("event.at", event.at)),
        Record::Video { video } => Some(("video.created_at", video.created_at)),
        _ => None,
    }
}

/// The people a record names (who it is about, whom it relates to, who is in a video).
fn names(r: &Record) -> Vec<&UserId> {
    match r {
        Record::User { user } => vec![&user.id],
        Record::Video { video } => std::iter::once(&video.creator)
            .chain(&video.cameos)
            .collect(),
        Record::Follow { user, creator } => vec![user, creator],
        Record::Block { user, other } | Record::Mute { user, other } => vec![user, other],
        Record::Consent {
            person, approved, ..
        } => std::iter::once(person).chain(approved).collect(),
        Record::Revocation {
            person, creator, ..
        } => std::iter::once(person).chain(creator).collect(),
        Record::ParentalControls { user, .. } | Record::Preferences { user, .. } => vec![user],
        Record::Event { event, .. } => vec![&event.user],
        Record::Wellbeing { user, .. }
        | Record::Seen { user, .. }
        | Record::Engagement { user, .. }
        | Record::Interest { user, .. }
        | Record::Affinity { user, .. }
        | Record::Impression { user, .. } => vec![user],
        Record::Cameo {
            creator, person, ..
        } => vec![creator, person],
    }
}

/// True when importing `new` would not change `stored`: the same fields, where `new`
/// leaves the topics, labels or embedding to the engine what the engine filled in (topics
/// and labels inferred, the embedding computed from the caption).
fn same_video(new: &Video, stored: &Video) -> bool {
    let embedding = match (&new.embedding, &stored.embedding) {
        (None, _) => true,
        (Some(a), Some(b)) => {
            a.as_slice().len() == b.as_slice().len()
                && a.as_slice()
                    .iter()
                    .zip(b.as_slice())
                    .all(|(x, y)| (x - y).abs() <= 1e-6)
        }
        (Some(_), None) => false,
    };
    new.id == stored.id
        && new.creator == stored.creator
        && new.created_at == stored.created_at
        && new.duration_s == stored.duration_s
        && new.caption == stored.caption
        && (new.topics.is_empty() || new.topics == stored.topics)
        && new.safety.iter().all(|l| stored.safety.contains(l))
        && new.remix_of == stored.remix_of
        && new.cameos == stored.cameos
        && new.audience == stored.audience
        && new.deleted == stored.deleted
        && embedding
}

/// Applies `items` with `apply` (all or nothing); when that fails, each half again, down
/// to single items, whose errors are their own. A failure of the store itself (not of
/// the input) is not split: every item of the batch gets it.
fn bisect<T>(
    items: &[T],
    apply: &mut dyn FnMut(&[T]) -> Result<Vec<Imported>>,
) -> Vec<Result<Imported>> {
    if items.is_empty() {
        return Vec::new();
    }
    match apply(items) {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 || !e.is_user_error() => {
            let message = e.to_string();
            let mut out = vec![Err(e)];
            out.extend((1..items.len()).map(|_| Err(Error::internal("import", &message))));
            out
        }
        Err(_) => {
            let (a, b) = items.split_at(items.len() / 2);
            let mut out = bisect(a, apply);
            out.extend(bisect(b, apply));
            out
        }
    }
}
