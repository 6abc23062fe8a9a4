//! The bytes a page pool is kept as in a shared store
//! ([`SharedPools`](steerfeed_core::storage::SharedPools)): every field of each candidate
//! but its video, which the process that takes the pool reads from its own catalog once
//! it has caught up.
//!
//! Little-endian, versioned by the first byte. The pool's source names come once, in a
//! table, and each candidate names its source by its place there. Anything that does not
//! read back whole (another version, a cut or damaged value, an id the engine would
//! refuse) is no pool: the page is then ranked afresh.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use steerfeed_core::bytes::ByteReader;
use steerfeed_core::{
    ActionProbs, Candidate, HeadInputs, Reason, ScoreBreakdown, SlotDraw, Timestamp, TopicId,
    UserId, Video, VideoId,
};

const VERSION: u8 = 1;

/// Distinct source names read back in a process at most: the pipeline's sources are a
/// few, and each name read is kept for the life of the process.
const MAX_SOURCES: usize = 64;

/// The longest source name read back.
const MAX_SOURCE_LEN: usize = 64;

/// A pool read back.
pub(crate) struct StoredPool {
    /// When the full ranking that made it ran.
    pub ranked_at: Timestamp,
    /// The session it belongs to.
    pub session: Option<String>,
    /// The rank profile that ranked it.
    pub profile: String,
    /// The candidates, best first.
    pub items: Vec<Stored>,
}

/// A pooled candidate without its video.
pub(crate) struct Stored {
    /// The video to read.
    pub id: VideoId,
    source: &'static str,
    source_score: f32,
    reason: Reason,
    score: f32,
    breakdown: ScoreBreakdown,
    inputs: HeadInputs,
    exposures: f32,
    propensity: f32,
    draw: Option<SlotDraw>,
    shadow_score: f32,
}

impl Stored {
    /// The candidate again, with `video` as the catalog has it now.
    pub fn with_video(self, video: Arc<Video>) -> Candidate {
        Candidate {
            video,
            source: self.source,
            source_score: self.source_score,
            reason: self.reason,
            score: self.score,
            breakdown: self.breakdown,
            inputs: self.inputs,
            exposures: self.exposures,
            propensity: self.propensity,
            draw: self.draw,
            shadow_score: self.shadow_score,
        }
    }
}

/// Encodes a pool; `None` when a string is too long for the format (no pool is kept).
pub(crate) fn encode(
    candidates: &[Candidate],
    ranked_at: Timestamp,
    session: Option<&str>,
    profile: &str,
) -> Option<Vec<u8>> {
    let mut w = Writer(Vec::with_capacity(64 + candidates.len() * 224));
    w.u8(VERSION);
    w.i64(ranked_at.as_millisecond());
    w.opt_str(session)?;
    w.str(profile)?;
    let mut sources: Vec<&'static str> = Vec::new();
    for c in candidates {
        if !sources.contains(&c.source) {
            sources.push(c.source);
        }
    }
    w.u8(u8::try_from(sources.len()).ok()?);
    for s in &sources {
        w.str(s)?;
    }
    w.u32(u32::try_from(candidates.len()).ok()?);
    for c in candidates {
        let Candidate {
            video,
            source,
            source_score,
            reason,
            score,
            breakdown,
            inputs,
            exposures,
            propensity,
            draw,
            shadow_score,
        } = c;
        w.str(video.id.as_str())?;
        w.u8(u8::try_from(sources.iter().position(|s| s == source)?).ok()?);
        w.f32(*source_score);
        w.reason(reason)?;
        w.f32(*score);
        w.breakdown(breakdown);
        w.inputs(inputs);
        w.f32(*exposures);
        w.f32(*propensity);
        w.draw(draw.as_ref());
        w.f32(*shadow_score);
    }
    Some(w.0)
}

/// Reads a pool back; `None` unless the whole value reads as one.
pub(crate) fn decode(bytes: &[u8]) -> Option<StoredPool> {
    let mut r = Reader(ByteReader::new(bytes));
    if r.u8()? != VERSION {
        return None;
    }
    let ranked_at = Timestamp::from_millisecond(r.i64()?).ok()?;
    let session = r.opt_str()?.map(str::to_owned);
    let profile = r.str16()?.to_owned();
    let names = usize::from(r.u8()?);
    let mut sources = Vec::with_capacity(names);
    for _ in 0..names {
        sources.push(source_name(r.str16()?)?);
    }
    let n = usize::try_from(r.u32()?).ok()?;
    // Each candidate takes well over 100 bytes: a count the value cannot hold is damage.
    if n > r.rest().len() / 100 + 1 {
        return None;
    }
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(Stored {
            id: VideoId::new(r.str16()?).ok()?,
            source: sources.get(usize::from(r.u8()?))?,
            source_score: r.f32()?,
            reason: r.reason()?,
            score: r.f32()?,
            breakdown: r.breakdown()?,
            inputs: r.inputs()?,
            exposures: r.f32()?,
            propensity: r.f32()?,
            draw: r.draw()?,
            shadow_score: r.f32()?,
        });
    }
    r.rest().is_empty().then_some(StoredPool {
        ranked_at,
        session,
        profile,
        items,
    })
}

/// The `&'static str` a candidate's source is: each distinct name read is kept once.
/// Only a name shaped like a source's (1 to 64 visible ASCII characters: a stage name)
/// is read, so a damaged value rarely leaves a name behind.
fn source_name(name: &str) -> Option<&'static str> {
    let shaped = !name.is_empty()
        && name.len() <= MAX_SOURCE_LEN
        && name.bytes().all(|b| b.is_ascii_graphic());
    if !shaped {
        return None;
    }
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.iter().find(|n| **n == name) {
        return Some(known);
    }
    if names.len() >= MAX_SOURCES {
        return None;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(kept);
    Some(kept)
}

// Reason tags.
const FOLLOWING: u8 = 1;
const FRIEND_CAMEO: u8 = 2;
const FEATURES_YOU: u8 = 3;
const REMIX_OF_YOURS: u8 = 4;
const STEERING: u8 = 5;
const INTEREST: u8 = 6;
const CO_ENGAGEMENT: u8 = 7;
const REMIX_TREND: u8 = 8;
const TRENDING: u8 = 9;
const FRESH: u8 = 10;
const POPULAR: u8 = 11;
const LIGHTER: u8 = 12;

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        for x in v {
            self.f32(*x);
        }
    }
    fn str(&mut self, s: &str) -> Option<()> {
        self.0
            .extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        Some(())
    }
    fn opt_str(&mut self, s: Option<&str>) -> Option<()> {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s)?;
            }
        }
        Some(())
    }

    fn reason(&mut self, reason: &Reason) -> Option<()> {
        match reason {
            Reason::Following { creator } => {
                self.u8(FOLLOWING);
                self.str(creator.as_str())?;
            }
            Reason::FriendCameo { person } => {
                self.u8(FRIEND_CAMEO);
                self.str(person.as_str())?;
            }
            Reason::FeaturesYou => self.u8(FEATURES_YOU),
            Reason::RemixOfYours => self.u8(REMIX_OF_YOURS),
            Reason::Steering { concept } => {
                self.u8(STEERING);
                self.str(concept)?;
            }
            Reason::Interest { topic } => {
                self.u8(INTEREST);
                self.opt_str(topic.as_ref().map(TopicId::as_str))?;
            }
            Reason::CoEngagement { because, caption } => {
                self.u8(CO_ENGAGEMENT);
                self.opt_str(because.as_ref().map(VideoId::as_str))?;
                self.opt_str(caption.as_deref())?;
            }
            Reason::RemixTrend => self.u8(REMIX_TREND),
            Reason::Trending => self.u8(TRENDING),
            Reason::Fresh => self.u8(FRESH),
            Reason::Popular => self.u8(POPULAR),
            Reason::Lighter => self.u8(LIGHTER),
        }
        Some(())
    }

    fn breakdown(&mut self, b: &ScoreBreakdown) {
        let ScoreBreakdown {
            actions,
            action_value,
            tie,
            steering,
            consumption_cost,
            freshness,
            cold_start,
            wellbeing,
            total,
        } = b;
        self.f32s(&actions.heads());
        self.f32s(&[
            *action_value,
            *tie,
            *steering,
            *consumption_cost,
            *freshness,
            *cold_start,
            *wellbeing,
            *total,
        ]);
    }

    fn inputs(&mut self, i: &HeadInputs) {
        // Named field by field, so a field added to the inputs does not compile here
        // until the format writes it.
        let HeadInputs {
            prior,
            creator,
            interest,
            tie,
            co_engagement,
            followed: _,
            remix_chain: _,
            friend_cameo: _,
        } = i;
        self.f32s(prior);
        self.f32s(creator);
        self.f32s(&[*interest, *tie, *co_engagement]);
        self.u8(i.flag_bits());
    }

    fn draw(&mut self, d: Option<&SlotDraw>) {
        let Some(SlotDraw {
            greedy,
            drawable,
            in_draw,
            shadow_greedy,
            shadow_drawable,
            shadow_in_draw,
        }) = d
        else {
            self.u8(0);
            return;
        };
        self.u8(1
            | (u8::from(*greedy) << 1)
            | (u8::from(*in_draw) << 2)
            | (u8::from(*shadow_greedy) << 3)
            | (u8::from(*shadow_in_draw) << 4));
        self.u32(*drawable);
        self.u32(*shadow_drawable);
    }
}

/// The byte reader with the pool's own values on top.
struct Reader<'a>(ByteReader<'a>);

impl<'a> std::ops::Deref for Reader<'a> {
    type Target = ByteReader<'a>;
    fn deref(&self) -> &ByteReader<'a> {
        &self.0
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> Reader<'a> {
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str16()?)),
            _ => None,
        }
    }

    fn reason(&mut self) -> Option<Reason> {
        Some(match self.u8()? {
            FOLLOWING => Reason::Following {
                creator: UserId::new(self.str16()?).ok()?,
            },
            FRIEND_CAMEO => Reason::FriendCameo {
                person: UserId::new(self.str16()?).ok()?,
            },
            FEATURES_YOU => Reason::FeaturesYou,
            REMIX_OF_YOURS => Reason::RemixOfYours,
            STEERING => Reason::Steering {
                concept: self.str16()?.to_owned(),
            },
            INTEREST => Reason::Interest {
                topic: match self.opt_str()? {
                    Some(t) => Some(TopicId::new(t).ok()?),
                    None => None,
                },
            },
            CO_ENGAGEMENT => Reason::CoEngagement {
                because: match self.opt_str()? {
                    Some(v) => Some(VideoId::new(v).ok()?),
                    None => None,
                },
                caption: self.opt_str()?.map(str::to_owned),
            },
            REMIX_TREND => Reason::RemixTrend,
            TRENDING => Reason::Trending,
            FRESH => Reason::Fresh,
            POPULAR => Reason::Popular,
            LIGHTER => Reason::Lighter,
            _ => return None,
        })
    }

    fn breakdown(&mut self) -> Option<ScoreBreakdown> {
        let actions = ActionProbs::from_heads(self.f32s::<8>()?);
        let [
            action_value,
            tie,
            steering,
            consumption_cost,
            freshness,
            cold_start,
            wellbeing,
            total,
        ] = self.f32s::<8>()?;
        Some(ScoreBreakdown {
            actions,
            action_value,
            tie,
            steering,
            consumption_cost,
            freshness,
            cold_start,
            wellbeing,
            total,
        })
    }

    fn inputs(&mut self) -> Option<HeadInputs> {
        let prior = self.f32s::<8>()?;
        let creator = self.f32s::<8>()?;
        let [interest, tie, co_engagement] = self.f32s::<3>()?;
        let flags = self.u8()?;
        if flags & !HeadInputs::FLAG_MASK != 0 {
            return None;
        }
        let inputs = HeadInputs {
            prior,
            creator,
            interest,
            tie,
            co_engagement,
            followed: false,
            remix_chain: false,
            friend_cameo: false,
        };
        Some(inputs.with_flag_bits(flags))
    }

    fn draw(&mut self) -> Option<Option<SlotDraw>> {
        let flags = self.u8()?;
        if flags == 0 {
            return Some(None);
        }
        if flags & 1 == 0 || flags > 0b1_1111 {
            return None;
        }
        Some(Some(SlotDraw {
            greedy: flags & 2 != 0,
            drawable: self.u32()?,
            in_draw: flags & 4 != 0,
            shadow_greedy: flags & 8 != 0,
            shadow_drawable: self.u32()?,
            shadow_in_draw: flags & 16 != 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn video(id: &str) -> Arc<Video> {
        Arc::new(Video::new(
            VideoId::new(id).unwrap(),
            UserId::new("maker").unwrap(),
            Timestamp::from_second(1_700_000_000).unwrap(),
            12.0,
        ))
    }

    /// A candidate whose every field differs from its neighbours' and from the
    /// defaults, so a field read into another's place or skipped shows.
    fn varied(i: usize) -> Candidate {
        let reasons = [
            Reason::Following {
                creator: UserId::new(format!("cr{i}")).unwrap(),
            },
            Reason::FriendCameo {
                person: UserId::new("pal").unwrap(),
            },
            Reason::FeaturesYou,
            Reason::RemixOfYours,
            Reason::Steering {
                concept: format!("more ramen, less {i} ✓"),
            },
            Reason::Interest { topic: None },
            Reason::Interest {
                topic: Some(TopicId::new("cooking").unwrap()),
            },
            Reason::CoEngagement {
                because: Some(VideoId::new("seed").unwrap()),
                caption: Some("a cat plays".into()),
            },
            Reason::CoEngagement {
                because: None,
                caption: None,
            },
            Reason::RemixTrend,
            Reason::Trending,
            Reason::Fresh,
            Reason::Popular,
            Reason::Lighter,
        ];
        let sources = ["interest_ann", "following", "co_engagement"];
        let f = |k: usize| (i * 97 + k) as f32 * 0.013 - 1.5;
        let mut c = Candidate::new(
            video(&format!("v{i}")),
            sources[i % sources.len()],
            f(1),
            reasons[i % reasons.len()].clone(),
        );
        c.score = f(2);
        c.breakdown = ScoreBreakdown {
            actions: ActionProbs::from_heads(std::array::from_fn(|k| f(10 + k))),
            action_value: f(20),
            tie: f(21),
            steering: f(22),
            consumption_cost: f(23),
            freshness: f(24),
            cold_start: f(25),
            wellbeing: f(26),
            total: f(27),
        };
        c.inputs = HeadInputs {
            prior: std::array::from_fn(|k| f(30 + k)),
            creator: std::array::from_fn(|k| f(40 + k)),
            interest: f(50),
            tie: f(51),
            co_engagement: f(52),
            followed: i.is_multiple_of(2),
            remix_chain: i.is_multiple_of(3),
            friend_cameo: i.is_multiple_of(5),
        };
        c.exposures = f(60);
        c.propensity = 1.0 / (1 + i % 4) as f32;
        c.draw = (i % 3 != 1).then(|| SlotDraw {
            greedy: i % 2 == 1,
            drawable: 3 + i as u32,
            in_draw: i.is_multiple_of(3),
            shadow_greedy: i.is_multiple_of(4),
            shadow_drawable: i as u32 * 7,
            shadow_in_draw: i % 5 == 1,
        });
        c.shadow_score = if i.is_multiple_of(2) { f32::NAN } else { f(70) };
        c
    }

    /// Compares two candidates field by field, NaN equal to NaN.
    fn same(a: &Candidate, b: &Candidate) -> bool {
        let bits = |x: f32| x.to_bits();
        a.id() == b.id()
            && a.source == b.source
            && bits(a.source_score) == bits(b.source_score)
            && a.reason == b.reason
            && bits(a.score) == bits(b.score)
            && a.breakdown == b.breakdown
            && a.inputs == b.inputs
            && bits(a.exposures) == bits(b.exposures)
            && bits(a.propensity) == bits(b.propensity)
            && a.draw == b.draw
            && bits(a.shadow_score) == bits(b.shadow_score)
    }

    #[test]
    fn every_field_of_every_candidate_reads_back() {
        let pool: Vec<Candidate> = (0..60).map(varied).collect();
        let at = Timestamp::from_millisecond(1_700_000_123_456).unwrap();
        let bytes = encode(&pool, at, Some("s-1"), "b_side").unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.ranked_at, at);
        assert_eq!(back.session.as_deref(), Some("s-1"));
        assert_eq!(back.profile, "b_side");
        assert_eq!(back.items.len(), pool.len());
        for (orig, stored) in pool.iter().zip(back.items) {
            assert_eq!(&stored.id, orig.id());
            let again = stored.with_video(video(orig.id().as_str()));
            assert!(same(orig, &again), "{orig:?} read back as {again:?}");
        }
        let none = decode(&encode(&[], at, None, "default").unwrap()).unwrap();
        assert!(none.session.is_none() && none.items.is_empty());
    }

    #[test]
    fn a_cut_damaged_or_foreign_value_is_no_pool() {
        let pool: Vec<Candidate> = (0..20).map(varied).collect();
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let bytes = encode(&pool, at, Some("s"), "default").unwrap();
        // Every cut short of the whole value fails, and never panics.
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_none(), "a value cut at {len} read");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none(), "trailing bytes");
        let mut other = bytes.clone();
        other[0] = VERSION + 1;
        assert!(decode(&other).is_none(), "another version");
        // Flipping any single byte either fails or reads a pool of the same size:
        // never a panic, and never more candidates than were written.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            if let Some(p) = decode(&b) {
                assert_eq!(p.items.len(), pool.len(), "byte {i}");
            }
        }
        // A count the value cannot hold is refused before anything is allocated.
        let mut huge = encode(&[], at, None, "default").unwrap();
        let n = huge.len() - 4;
        huge[n..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
    }

    #[test]
    fn a_source_name_unlike_the_sources_own_is_no_pool() {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        for name in ["with space", "", "café", "tab\t", &"x".repeat(65)] {
            let mut c = varied(0);
            // A name the pipeline never gives, made `'static` for the test.
            c.source = Box::leak(name.to_owned().into_boxed_str());
            let bytes = encode(&[c], at, None, "default").unwrap();
            assert!(decode(&bytes).is_none(), "{name:?}");
        }
        let mut c = varied(0);
        c.source = "Steer-Topic.v2";
        let back = decode(&encode(&[c], at, None, "default").unwrap()).unwrap();
        assert_eq!(back.items.len(), 1);
    }

    #[test]
    fn an_id_the_engine_refuses_is_no_pool() {
        let pool = vec![varied(0)];
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let mut bytes = encode(&pool, at, None, "default").unwrap();
        // The first candidate's id follows the header: version, time, session flag,
        // profile, one source name and the count.
        let id_at = 1 + 8 + 1 + (2 + "default".len()) + 1 + (2 + pool[0].source.len()) + 4;
        assert_eq!(&bytes[id_at + 2..id_at + 4], b"v0");
        // A control character: an id the engine refuses.
        bytes[id_at + 2] = b'\n';
        assert!(decode(&bytes).is_none());
    }
}
