//! Byte encodings: key builders that sort correctly, the compact binary video record,
//! raw little-endian `f32` vectors and decayed counter records.

use jiff::Timestamp;
use steerfeed_core::ports::ActionCounts;
use steerfeed_core::{
    Audience, CheckinAnswer, Embedding, Event, EventKey, EventKind, Result, SafetyLabel, TopicId,
    UserId, Video, VideoId, WellbeingState,
};

use crate::legacy;
use crate::records::WellbeingRec;

/// Separator between the parts of a composite key. Ids never contain NUL (it is a control
/// character, which `ids.rs` rejects, and UTF-8 never uses the byte 0 inside a multi-byte
/// character), so `a \0 b` keys sort by `a` first and `a \0` is an exact prefix of `a`'s keys.
pub(crate) const SEP: u8 = 0;

pub(crate) use crate::records::corrupt;

/// `a \0`: the prefix of every key of `a`.
pub(crate) fn prefix(a: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k
}

/// `a \0 b`.
pub(crate) fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = prefix(a);
    k.extend_from_slice(b.as_bytes());
    k
}

/// The part of a `a \0 b` key after the first separator.
pub(crate) fn after_sep(key: &[u8]) -> Option<&[u8]> {
    let i = key.iter().position(|&b| b == SEP)?;
    Some(&key[i + 1..])
}

/// Milliseconds since the epoch mapped to a `u64` whose big-endian bytes sort in time order.
pub(crate) fn sortable_ms(ms: i64) -> u64 {
    (ms as u64) ^ (1 << 63)
}

/// Big-endian bytes of a *descending* time key: newest sorts first.
pub(crate) fn newest_first(ms: i64) -> [u8; 8] {
    (!sortable_ms(ms)).to_be_bytes()
}

/// Inverse of [`newest_first`].
pub(crate) fn from_newest_first(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((!u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// `owner \0 newest_first(ms) id`: time-ordered, newest first, under `owner`'s prefix.
pub(crate) fn timed(owner: &str, ms: i64, id: &str) -> Vec<u8> {
    let mut k = prefix(owner);
    k.extend_from_slice(&newest_first(ms));
    k.extend_from_slice(id.as_bytes());
    k
}

/// `newest_first(ms) id`: the global newest-first index.
pub(crate) fn timed_global(ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.len());
    k.extend_from_slice(&newest_first(ms));
    k.extend_from_slice(id.as_bytes());
    k
}

/// `owner \0 seq` (big-endian): per-owner arrival order.
/// The byte after `owner \0` that marks a ring fragment's key (never a one-entry key's:
/// those start with a big-endian sequence number, whose first byte is 0 in practice;
/// see [`ring_item`]).
const FRAGMENT: u8 = 0xFE;

/// The key of a ring fragment of `owner` whose first entry is `first`:
/// `owner \0 0xFE first u64 BE`.
pub(crate) fn fragment_key(owner: &str, first: u64) -> Vec<u8> {
    let mut k = prefix(owner);
    k.push(FRAGMENT);
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// A ring fragment: consecutive entries, `count u32 LE | (len u32 LE | entry)*`.
pub(crate) fn encode_fragment<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![0; 4];
    let mut n = 0u32;
    for e in entries {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
        n += 1;
    }
    out[..4].copy_from_slice(&n.to_le_bytes());
    out
}

/// The entries of a fragment, oldest first (its as-of number, if any, is left out).
pub(crate) fn decode_fragment(b: &[u8]) -> Result<Vec<&[u8]>> {
    fragment_parts(b).map(|(entries, _, _)| entries)
}

/// A stored fragment without its as-of number, and that number (0 when it has none).
pub(crate) fn split_fragment(b: &[u8]) -> Result<(&[u8], u64)> {
    fragment_parts(b).map(|(_, len, asof)| (&b[..len], asof))
}

/// A fragment's entries, the length of its encoding without the as-of number, and the
/// as-of number (0 when absent).
fn fragment_parts(b: &[u8]) -> Result<(Vec<&[u8]>, usize, u64)> {
    let bad = || corrupt("ring fragment");
    let n = b
        .get(..4)
        .and_then(|c| c.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(bad)?;
    let mut out = Vec::with_capacity(n as usize);
    let mut at = 4usize;
    for _ in 0..n {
        let len = b
            .get(at..at + 4)
            .and_then(|c| c.try_into().ok())
            .map(|c| u32::from_le_bytes(c) as usize)
            .ok_or_else(bad)?;
        out.push(b.get(at + 4..at + 4 + len).ok_or_else(bad)?);
        at += 4 + len;
    }
    if at == b.len() {
        Ok((out, at, 0))
    } else if at + ASOF_LEN == b.len() {
        Ok((out, at, u64_le(b, at).ok_or_else(bad)?))
    } else {
        Err(bad())
    }
}

/// What a key under `owner \0` in a ring tree holds: (first sequence number, number of
/// entries) — a fragment ([`fragment_key`]), or one entry keyed `owner \0 seq u64 BE`
/// (schema version 3 and older).
pub(crate) fn ring_item(owner: &str, k: &[u8], v: &[u8]) -> Result<(u64, u64)> {
    let rest = k
        .get(owner.len() + 1..)
        .ok_or_else(|| corrupt("ring key"))?;
    match rest.len() {
        9 if rest[0] == FRAGMENT => {
            let first = u64_of(&rest[1..]).ok_or_else(|| corrupt("ring key"))?;
            let n = v
                .get(..4)
                .and_then(|c| c.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| corrupt("ring fragment"))?;
            Ok((first, u64::from(n)))
        }
        8 => Ok((
            legacy::one_entry_ring_key(rest).ok_or_else(|| corrupt("ring key"))?,
            1,
        )),
        _ => Err(corrupt("ring key")),
    }
}

pub(crate) fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

pub(crate) fn u64_le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

pub(crate) fn i64_le(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

pub(crate) fn f32_le(b: &[u8], at: usize) -> Option<f32> {
    Some(f32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn ts_of_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

// ---------------------------------------------------------------------------------------
// Vectors.

/// Raw little-endian `f32`s.
pub(crate) fn encode_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

pub(crate) fn decode_f32s(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

pub(crate) fn decode_embedding(b: &[u8]) -> Result<Embedding> {
    let v = decode_f32s(b).ok_or_else(|| corrupt("embedding"))?;
    Embedding::normalized("embedding", &v).map_err(|_| corrupt("embedding"))
}

// ---------------------------------------------------------------------------------------
// As-of numbers.
//
// Since schema version 6 every record the persister writes to a derived tree (counters,
// wellbeing, interest, affinity, ring fragments) carries the sequence number of the last
// event it reflects, 8 bytes LE. The persister writes keys one by one (sled's batches
// would hold its process-wide write lock for the whole tree), so a crash can leave a tree
// with some keys newer than its watermark; the replay skips, for each record, the events
// at or below its as-of number. Older records have none (as of 0): their trees were
// written atomically, up to the tree's watermark.

pub(crate) const ASOF_LEN: usize = 8;

pub(crate) fn push_asof(out: &mut Vec<u8>, asof: u64) {
    out.extend_from_slice(&asof.to_le_bytes());
}

/// `record` followed by its as-of number, as the persister stores it.
pub(crate) fn with_asof(record: &[u8], asof: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + ASOF_LEN);
    out.extend_from_slice(record);
    push_asof(&mut out, asof);
    out
}

/// A fixed-size record of `len` bytes and its as-of number (0 when it has none).
pub(crate) fn fixed_asof<'a>(b: &'a [u8], len: usize, what: &str) -> Result<(&'a [u8], u64)> {
    if b.len() == len {
        Ok((b, 0))
    } else if b.len() == len + ASOF_LEN {
        Ok((&b[..len], u64_le(b, len).ok_or_else(|| corrupt(what))?))
    } else {
        Err(corrupt(what))
    }
}

/// An interest vector record: `at_ms i64 LE | dim f32 LE | as-of u64 LE`.
pub(crate) fn encode_interest(at_ms: i64, v: &[f32], asof: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + v.len() * 4 + ASOF_LEN);
    out.extend_from_slice(&at_ms.to_le_bytes());
    encode_f32s(&mut out, v);
    push_asof(&mut out, asof);
    out
}

/// An interest vector record of dimension `dim` (with or without its as-of number):
/// `((at_ms, vector), as-of)`.
pub(crate) fn decode_interest(b: &[u8], dim: usize) -> Result<((i64, Vec<f32>), u64)> {
    let (b, asof) = fixed_asof(b, 8 + 4 * dim, "interest")?;
    let at = i64_le(b, 0).ok_or_else(|| corrupt("interest"))?;
    let v = decode_f32s(&b[8..]).ok_or_else(|| corrupt("interest"))?;
    Ok(((at, v), asof))
}

// ---------------------------------------------------------------------------------------
// The video record: everything but the embedding, in a compact binary form.
//
// version u8 = 2 | created_at i128 ns LE | duration f32 LE | audience u8 | deleted u8 |
// safety bitmask u16 LE (bit i = `SafetyLabel::ALL[i]`) | id str | creator str | caption str | remix_of (u8 flag, str) |
// topics (u16 n, str*) | cameos (u16 n, str*) — `str` is a u32 LE length and UTF-8 bytes.

// Version 1 differs only in its safety bitmask: one byte, the first five labels.
const VIDEO_RECORD_V1: u8 = 1;
const VIDEO_RECORD_V2: u8 = 2;
/// Labels a version-1 record can carry (the first five of `SafetyLabel::ALL`).
const V1_LABELS: usize = 5;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i128(&mut self) -> Option<i128> {
        Some(i128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

pub(crate) fn encode_video(v: &Video) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + v.caption.len() + v.id.as_str().len() * 2);
    out.push(VIDEO_RECORD_V2);
    out.extend_from_slice(&v.created_at.as_nanosecond().to_le_bytes());
    out.extend_from_slice(&v.duration_s.to_le_bytes());
    out.push(match v.audience {
        Audience::Public => 0,
        Audience::Followers => 1,
        Audience::Mutuals => 2,
    });
    out.push(u8::from(v.deleted));
    let mut mask = 0u16;
    for (i, l) in SafetyLabel::ALL.iter().enumerate() {
        if v.safety.contains(l) {
            mask |= 1 << i;
        }
    }
    out.extend_from_slice(&mask.to_le_bytes());
    put_str(&mut out, v.id.as_str());
    put_str(&mut out, v.creator.as_str());
    put_str(&mut out, &v.caption);
    match &v.remix_of {
        Some(r) => {
            out.push(1);
            put_str(&mut out, r.as_str());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(v.topics.len() as u16).to_le_bytes());
    for t in &v.topics {
        put_str(&mut out, t.as_str());
    }
    out.extend_from_slice(&(v.cameos.len() as u16).to_le_bytes());
    for c in &v.cameos {
        put_str(&mut out, c.as_str());
    }
    out
}

/// Decodes a video record; the embedding is attached by the caller.
pub(crate) fn decode_video(b: &[u8]) -> Result<Video> {
    decode_video_inner(b).ok_or_else(|| corrupt("video"))
}

fn decode_video_inner(b: &[u8]) -> Option<Video> {
    let mut r = Reader { b, at: 0 };
    let version = r.u8()?;
    if version != VIDEO_RECORD_V1 && version != VIDEO_RECORD_V2 {
        return None;
    }
    let created_at = Timestamp::from_nanosecond(r.i128()?).ok()?;
    let duration_s = r.f32()?;
    let audience = match r.u8()? {
        0 => Audience::Public,
        1 => Audience::Followers,
        2 => Audience::Mutuals,
        _ => return None,
    };
    let deleted = r.u8()? != 0;
    let mask = if version == VIDEO_RECORD_V1 {
        u16::from(r.u8()?)
    } else {
        r.u16()?
    };
    let known = if version == VIDEO_RECORD_V1 {
        V1_LABELS
    } else {
        SafetyLabel::ALL.len()
    };
    if mask >> known != 0 {
        return None;
    }
    let safety = SafetyLabel::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, l)| *l)
        .collect();
    let id = VideoId::new(r.str()?).ok()?;
    let creator = UserId::new(r.str()?).ok()?;
    let caption = r.str()?.to_owned();
    let remix_of = match r.u8()? {
        0 => None,
        _ => Some(VideoId::new(r.str()?).ok()?),
    };
    let n = r.u16()? as usize;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(TopicId::new(r.str()?).ok()?);
    }
    let n = r.u16()? as usize;
    let mut cameos = Vec::with_capacity(n);
    for _ in 0..n {
        cameos.push(UserId::new(r.str()?).ok()?);
    }
    Some(Video {
        id,
        creator,
        created_at,
        duration_s,
        caption,
        topics,
        embedding: None,
        remix_of,
        cameos,
        safety,
        audience,
        deleted,
    })
}

// ---------------------------------------------------------------------------------------
// Decayed counters.

/// `0.5^(dt / half_life)` for `dt = to - from` milliseconds (1 when `to <= from`).
pub(crate) fn decay_factor(from_ms: i64, to_ms: i64, half_life_ms: f64) -> f32 {
    if to_ms <= from_ms {
        1.0
    } else {
        0.5f64.powf((to_ms - from_ms) as f64 / half_life_ms) as f32
    }
}

/// The counters of one video (or one creator): action counts plus the popularity and
/// remix-velocity scores, all decayed with one half-life and valid as of `at_ms`.
///
/// Record: `at_ms i64 LE | 11 counters f32 LE | popular f32 LE | remix f32 LE` (60 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CounterRec {
    pub at_ms: i64,
    pub counts: ActionCounts,
    pub popular: f32,
    pub remix: f32,
}

pub(crate) const COUNTER_REC_LEN: usize = 8 + 13 * 4;

impl CounterRec {
    fn fields(c: &ActionCounts) -> [f32; 11] {
        [
            c.impressions,
            c.views,
            c.complete_views,
            c.likes,
            c.comments,
            c.shares,
            c.follows,
            c.remixes,
            c.cameo_uses,
            c.creates,
            c.negatives,
        ]
    }

    pub fn encode(&self) -> [u8; COUNTER_REC_LEN] {
        let mut out = [0u8; COUNTER_REC_LEN];
        out[..8].copy_from_slice(&self.at_ms.to_le_bytes());
        let f = Self::fields(&self.counts);
        for (i, x) in f
            .iter()
            .chain([self.popular, self.remix].iter())
            .enumerate()
        {
            out[8 + i * 4..12 + i * 4].copy_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// The record and its as-of number (0 when it has none).
    pub fn decode_asof(b: &[u8]) -> Result<(Self, u64)> {
        let (b, asof) = fixed_asof(b, COUNTER_REC_LEN, "counter")?;
        Ok((Self::decode(b)?, asof))
    }

    /// The record, with or without its as-of number.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let (b, _) = fixed_asof(b, COUNTER_REC_LEN, "counter")?;
        let g = |i: usize| f32_le(b, 8 + i * 4).unwrap_or(0.0);
        Ok(Self {
            at_ms: i64_le(b, 0).ok_or_else(|| corrupt("counter"))?,
            counts: ActionCounts {
                impressions: g(0),
                views: g(1),
                complete_views: g(2),
                likes: g(3),
                comments: g(4),
                shares: g(5),
                follows: g(6),
                remixes: g(7),
                cameo_uses: g(8),
                creates: g(9),
                negatives: g(10),
            },
            popular: g(11),
            remix: g(12),
        })
    }

    /// Adds `scale ×` one event at `at_ms`: counters move forward in time (decaying what
    /// they hold) for a newer event; an older event is added already decayed.
    pub fn add(
        &mut self,
        at_ms: i64,
        half_life_ms: f64,
        f: impl FnOnce(&mut ActionCounts, &mut f32, &mut f32, f32),
    ) {
        let w = if at_ms >= self.at_ms {
            let k = decay_factor(self.at_ms, at_ms, half_life_ms);
            self.counts.scale(k);
            self.popular *= k;
            self.remix *= k;
            self.at_ms = at_ms;
            1.0
        } else {
            decay_factor(at_ms, self.at_ms, half_life_ms)
        };
        f(&mut self.counts, &mut self.popular, &mut self.remix, w);
    }

    /// The counts decayed to `now_ms`.
    pub fn counts_at(&self, now_ms: i64, half_life_ms: f64) -> ActionCounts {
        let mut c = self.counts;
        c.scale(decay_factor(self.at_ms, now_ms, half_life_ms));
        c
    }
}

/// A decayed scalar with its reference time (`at_ms i64 LE | value f32 LE`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Decayed {
    pub at_ms: i64,
    pub value: f32,
}

impl Decayed {
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.at_ms.to_le_bytes());
        out[8..].copy_from_slice(&self.value.to_le_bytes());
        out
    }

    /// The value and its as-of number (0 when it has none).
    pub fn decode_asof(b: &[u8]) -> Result<(Self, u64)> {
        let (b, asof) = fixed_asof(b, 12, "decayed value")?;
        Ok((
            Self {
                at_ms: i64_le(b, 0).ok_or_else(|| corrupt("decayed value"))?,
                value: f32_le(b, 8).ok_or_else(|| corrupt("decayed value"))?,
            },
            asof,
        ))
    }

    /// The value, with or without its as-of number.
    pub fn decode(b: &[u8]) -> Result<Self> {
        Self::decode_asof(b).map(|(d, _)| d)
    }

    pub fn add(&mut self, at_ms: i64, w: f32, half_life_ms: f64) {
        if at_ms >= self.at_ms {
            self.value = self.value * decay_factor(self.at_ms, at_ms, half_life_ms) + w;
            self.at_ms = at_ms;
        } else {
            self.value += w * decay_factor(at_ms, self.at_ms, half_life_ms);
        }
    }

    pub fn at(&self, now_ms: i64, half_life_ms: f64) -> f32 {
        self.value * decay_factor(self.at_ms, now_ms, half_life_ms)
    }
}

// ---------------------------------------------------------------------------------------
// Events: the log record and the history-ring entry, in a versioned binary form.
//
// event: version u8 = 1 | at i128 ns LE | key str | user str | kind
// kind:  tag u8 | fields (video str, watch_ms u64 LE, completed u8, optional str as
//        u8 flag + str, check-in answer u8)
//
// Records written by schema version 1 are JSON; they start with `{`, which is never a
// version byte, so [`decode_event`] and [`decode_kind`] read both.

const EVENT_RECORD_V1: u8 = 1;

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_kind(out: &mut Vec<u8>, k: &EventKind) {
    let (tag, video) = match k {
        EventKind::Impression { video } => (0, Some(video)),
        EventKind::View { video, .. } => (1, Some(video)),
        EventKind::Like { video } => (2, Some(video)),
        EventKind::Comment { video } => (3, Some(video)),
        EventKind::Share { video } => (4, Some(video)),
        EventKind::Follow { video } => (5, Some(video)),
        EventKind::Remix { video, .. } => (6, Some(video)),
        EventKind::CameoUse { video } => (7, Some(video)),
        EventKind::Create { .. } => (8, None),
        EventKind::Skip { video } => (9, Some(video)),
        EventKind::NotInterested { video } => (10, Some(video)),
        EventKind::HideCreator { video } => (11, Some(video)),
        EventKind::Report { video } => (12, Some(video)),
        EventKind::CheckinAnswer { .. } => (13, None),
    };
    out.push(tag);
    if let Some(v) = video {
        put_str(out, v.as_str());
    }
    match k {
        EventKind::View {
            watch_ms,
            completed,
            ..
        } => {
            out.extend_from_slice(&watch_ms.to_le_bytes());
            out.push(u8::from(*completed));
        }
        EventKind::Remix { new_video, .. } => put_opt(out, new_video.as_ref().map(|v| v.as_str())),
        EventKind::Create { video } => put_opt(out, video.as_ref().map(|v| v.as_str())),
        EventKind::CheckinAnswer { answer } => out.push(match answer {
            CheckinAnswer::Great => 0,
            CheckinAnswer::Okay => 1,
            CheckinAnswer::NotGreat => 2,
        }),
        _ => {}
    }
}

fn read_kind(r: &mut Reader<'_>) -> Option<EventKind> {
    let tag = r.u8()?;
    let vid = |r: &mut Reader<'_>| VideoId::new(r.str()?).ok();
    let opt = |r: &mut Reader<'_>| -> Option<Option<VideoId>> {
        match r.u8()? {
            0 => Some(None),
            _ => Some(Some(VideoId::new(r.str()?).ok()?)),
        }
    };
    Some(match tag {
        0 => EventKind::Impression { video: vid(r)? },
        1 => EventKind::View {
            video: vid(r)?,
            watch_ms: u64::from_le_bytes(r.take(8)?.try_into().ok()?),
            completed: r.u8()? != 0,
        },
        2 => EventKind::Like { video: vid(r)? },
        3 => EventKind::Comment { video: vid(r)? },
        4 => EventKind::Share { video: vid(r)? },
        5 => EventKind::Follow { video: vid(r)? },
        6 => EventKind::Remix {
            video: vid(r)?,
            new_video: opt(r)?,
        },
        7 => EventKind::CameoUse { video: vid(r)? },
        8 => EventKind::Create { video: opt(r)? },
        9 => EventKind::Skip { video: vid(r)? },
        10 => EventKind::NotInterested { video: vid(r)? },
        11 => EventKind::HideCreator { video: vid(r)? },
        12 => EventKind::Report { video: vid(r)? },
        13 => EventKind::CheckinAnswer {
            answer: match r.u8()? {
                0 => CheckinAnswer::Great,
                1 => CheckinAnswer::Okay,
                2 => CheckinAnswer::NotGreat,
                _ => return None,
            },
        },
        _ => return None,
    })
}

/// The log record of an event.
pub(crate) fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + e.key.as_str().len() + e.user.as_str().len());
    out.push(EVENT_RECORD_V1);
    out.extend_from_slice(&e.at.as_nanosecond().to_le_bytes());
    put_str(&mut out, e.key.as_str());
    put_str(&mut out, e.user.as_str());
    put_kind(&mut out, &e.kind);
    out
}

/// Decodes a log record (binary, or JSON from schema version 1).
pub(crate) fn decode_event(b: &[u8]) -> Result<Event> {
    if legacy::is_json(b) {
        return legacy::event_json(b);
    }
    let inner = || {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != EVENT_RECORD_V1 {
            return None;
        }
        let at = Timestamp::from_nanosecond(r.i128()?).ok()?;
        let key = EventKey::new(r.str()?).ok()?;
        let user = UserId::new(r.str()?).ok()?;
        let kind = read_kind(&mut r)?;
        (r.at == b.len()).then_some(Event {
            key,
            user,
            at,
            kind,
        })
    };
    inner().ok_or_else(|| corrupt("event"))
}

/// The version byte of a log record holding several events (schema version 4).
const EVENT_BATCH_V2: u8 = 2;

/// At most this many events go into one log record: about 4 KiB, so that a sled leaf
/// (up to 16 records) stays well inside one log segment's inline limit, while the log
/// gains one sled key per record instead of one per event (new keys are what sled pays
/// most for: its leaves split every few inserts).
pub(crate) const EVENTS_PER_RECORD: usize = 48;

/// A log record holding `events`, the first of which gets the record's sequence number
/// and the others the numbers after it: `2 | count u32 LE | (len u32 LE | event)*`,
/// each event in the one-event form of [`encode_event`].
pub(crate) fn encode_events<'a>(events: impl ExactSizeIterator<Item = &'a Event>) -> Vec<u8> {
    let capacity = 5 + events.len() * 80;
    frame_record(events.map(encode_event), capacity)
}

/// A many-event record of the encoded `entries`: `2 | count u32 LE | (len u32 LE |
/// entry)*`.
fn frame_record<E: AsRef<[u8]>>(
    entries: impl ExactSizeIterator<Item = E>,
    capacity: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(EVENT_BATCH_V2);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        let e = e.as_ref();
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// How many events a log record holds (one for the one-event forms).
pub(crate) fn record_len(b: &[u8]) -> Result<u64> {
    match b.first() {
        Some(&EVENT_BATCH_V2) => b
            .get(1..5)
            .and_then(|c| c.try_into().ok())
            .map(|c| u64::from(u32::from_le_bytes(c)))
            .filter(|n| *n > 0)
            .ok_or_else(|| corrupt("event record")),
        Some(_) => Ok(1),
        None => Err(corrupt("event record")),
    }
}

/// Calls `f(i, event)` for the events of a log record at index `i >= skip` (any form).
pub(crate) fn decode_record(
    b: &[u8],
    skip: u64,
    mut f: impl FnMut(u64, Event) -> Result<()>,
) -> Result<()> {
    if b.first() != Some(&EVENT_BATCH_V2) {
        return if skip == 0 {
            f(0, decode_event(b)?)
        } else {
            Ok(())
        };
    }
    for_each_entry(b, |i, r| {
        if i >= skip && r != [ERASED_EVENT] {
            f(i, decode_event(r)?)?;
        }
        Ok(())
    })
}

/// Calls `f(i, entry)` with the bytes of each event of a many-event record, in order; a
/// record whose lengths do not add up is an error (after the entries before the damage).
fn for_each_entry<'a>(b: &'a [u8], mut f: impl FnMut(u64, &'a [u8]) -> Result<()>) -> Result<()> {
    let n = record_len(b)?;
    let mut at = 5usize;
    for i in 0..n {
        let len = b
            .get(at..at + 4)
            .and_then(|c| c.try_into().ok())
            .map(|c| u32::from_le_bytes(c) as usize)
            .ok_or_else(|| corrupt("event record"))?;
        let r = b
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| corrupt("event record"))?;
        at += 4 + len;
        f(i, r)?;
    }
    if at != b.len() {
        return Err(corrupt("event record"));
    }
    Ok(())
}

/// What stands in a log record for an event whose person was erased: one byte in place
/// of the event, so the record keeps its count and the log its numbering. Readers skip
/// it; the event can no longer be read.
const ERASED_EVENT: u8 = 0xEE;

/// The events taken out of a log record, each with its index in the record.
pub(crate) type Erased = Vec<(u64, Event)>;

/// Rewrites a log record (any form) with the events `erase` picks replaced by the erased
/// marker, as a many-event record; `None` when it picks none. Also answers the index in
/// the record and the event of each one erased.
pub(crate) fn erase_in_record(
    b: &[u8],
    mut erase: impl FnMut(&Event) -> bool,
) -> Result<Option<(Vec<u8>, Erased)>> {
    let mut raw: Vec<&[u8]> = Vec::new();
    if b.first() == Some(&EVENT_BATCH_V2) {
        for_each_entry(b, |_, r| {
            raw.push(r);
            Ok(())
        })?;
    } else {
        raw.push(b);
    }
    let mut erased = Vec::new();
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        if *r == [ERASED_EVENT] {
            entries.push(vec![ERASED_EVENT]);
            continue;
        }
        let e = decode_event(r)?;
        if erase(&e) {
            entries.push(vec![ERASED_EVENT]);
            erased.push((i as u64, e));
        } else {
            // One-event records of older schemas (JSON among them) are re-encoded in
            // the current one-event form.
            entries.push(if legacy::is_json(r) {
                encode_event(&e)
            } else {
                r.to_vec()
            });
        }
    }
    if erased.is_empty() {
        return Ok(None);
    }
    Ok(Some((frame_record(entries.iter(), b.len()), erased)))
}

/// An event kind as kept in the history ring.
pub(crate) fn encode_kind(out: &mut Vec<u8>, k: &EventKind) {
    out.push(EVENT_RECORD_V1);
    put_kind(out, k);
}

/// Decodes [`encode_kind`] (or JSON from schema version 1).
pub(crate) fn decode_kind(b: &[u8]) -> Result<EventKind> {
    if legacy::is_json(b) {
        return legacy::kind_json(b);
    }
    let mut r = Reader { b, at: 0 };
    (r.u8() == Some(EVENT_RECORD_V1))
        .then(|| read_kind(&mut r))
        .flatten()
        .filter(|_| r.at == b.len())
        .ok_or_else(|| corrupt("history"))
}

/// The first byte of a binary wellbeing record of schema version 5; JSON records of
/// older versions start with `{`.
const WELLBEING_V1: u8 = 1;
/// Schema version 6: version 5's record with its as-of number before the last item.
const WELLBEING_V2: u8 = 2;

fn put_ts(out: &mut Vec<u8>, t: Option<Timestamp>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.as_nanosecond().to_le_bytes());
        }
    }
}

impl Reader<'_> {
    /// An optional timestamp written by `put_ts`.
    fn ts(&mut self) -> Option<Option<Timestamp>> {
        match self.u8()? {
            0 => Some(None),
            1 => Timestamp::from_nanosecond(self.i128()?).ok().map(Some),
            _ => None,
        }
    }
}

/// A wellbeing record in binary: a version byte, then each field in declaration order
/// (options as a presence byte, timestamps as nanoseconds, little-endian), the as-of
/// number, and the last item's id to the end.
pub(crate) fn encode_wellbeing(r: &WellbeingRec, asof: u64) -> Vec<u8> {
    let st = &r.state;
    let mut out = Vec::with_capacity(72 + r.last_item.as_ref().map_or(0, |v| v.as_str().len()));
    out.push(WELLBEING_V2);
    put_ts(&mut out, st.session_started);
    out.extend_from_slice(&st.session_items.to_le_bytes());
    out.extend_from_slice(&st.minutes_today.to_le_bytes());
    out.extend_from_slice(&st.items_today.to_le_bytes());
    out.extend_from_slice(&st.passive_streak.to_le_bytes());
    put_ts(&mut out, st.last_checkin);
    match st.last_answer {
        None => out.push(0),
        Some((a, t)) => {
            out.push(match a {
                CheckinAnswer::Great => 1,
                CheckinAnswer::Okay => 2,
                CheckinAnswer::NotGreat => 3,
            });
            put_ts(&mut out, Some(t));
        }
    }
    put_ts(&mut out, st.last_break);
    match r.day {
        None => out.push(0),
        Some(d) => {
            out.push(1);
            out.extend_from_slice(&d.year().to_le_bytes());
            out.push(d.month() as u8);
            out.push(d.day() as u8);
        }
    }
    put_ts(&mut out, r.last_active);
    push_asof(&mut out, asof);
    if let Some(v) = &r.last_item {
        out.extend_from_slice(v.as_str().as_bytes());
    }
    out
}

/// A wellbeing record and its as-of number: binary (version byte 2, or 1 of schema 5 as
/// of 0), or the JSON of schema 4 and older (`legacy.rs`).
pub(crate) fn decode_wellbeing(b: &[u8]) -> Result<(WellbeingRec, u64)> {
    if legacy::is_json(b) {
        return legacy::wellbeing_json(b);
    }
    decode_wellbeing_opt(b).ok_or_else(|| corrupt("wellbeing"))
}

fn decode_wellbeing_opt(b: &[u8]) -> Option<(WellbeingRec, u64)> {
    let mut r = Reader { b, at: 0 };
    let version = r.u8()?;
    if version != WELLBEING_V1 && version != WELLBEING_V2 {
        return None;
    }
    let session_started = r.ts()?;
    let session_items = r.u32()?;
    let minutes_today = r.f32()?;
    let items_today = r.u32()?;
    let passive_streak = r.u32()?;
    let last_checkin = r.ts()?;
    let last_answer = match r.u8()? {
        0 => None,
        a => {
            let a = match a {
                1 => CheckinAnswer::Great,
                2 => CheckinAnswer::Okay,
                3 => CheckinAnswer::NotGreat,
                _ => return None,
            };
            Some((a, r.ts()??))
        }
    };
    let last_break = r.ts()?;
    let day = match r.u8()? {
        0 => None,
        1 => {
            let y = i16::from_le_bytes(r.take(2)?.try_into().ok()?);
            let m = i8::try_from(r.u8()?).ok()?;
            let d = i8::try_from(r.u8()?).ok()?;
            Some(jiff::civil::Date::new(y, m, d).ok()?)
        }
        _ => return None,
    };
    let last_active = r.ts()?;
    let asof = if version == WELLBEING_V2 {
        u64::from_le_bytes(r.take(ASOF_LEN)?.try_into().ok()?)
    } else {
        0
    };
    let rest = &b[r.at..];
    let last_item = if rest.is_empty() {
        None
    } else {
        Some(VideoId::new(std::str::from_utf8(rest).ok()?).ok()?)
    };
    let rec = WellbeingRec {
        state: WellbeingState {
            session_started,
            session_items,
            minutes_today,
            items_today,
            passive_streak,
            last_checkin,
            last_answer,
            last_break,
        },
        day,
        last_active,
        last_item,
    };
    Some((rec, asof))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_wellbeing() -> WellbeingRec {
        let t = |s: i64, n: i32| Timestamp::new(s, n).unwrap();
        WellbeingRec {
            state: WellbeingState {
                session_started: Some(t(1_795_000_000, 123_456_789)),
                session_items: 17,
                minutes_today: 12.25,
                items_today: 40,
                passive_streak: 3,
                last_checkin: Some(t(1_795_000_100, 0)),
                last_answer: Some((CheckinAnswer::NotGreat, t(1_795_000_200, 5))),
                last_break: Some(t(-1, 999_999_999)),
            },
            day: Some(jiff::civil::date(2026, 11, 26)),
            last_active: Some(t(1_795_000_300, 1)),
            last_item: Some(VideoId::new("v-42 ünï").unwrap()),
        }
    }

    #[test]
    fn wellbeing_records_round_trip_in_binary_and_json_ones_still_read() {
        let empty = WellbeingRec::default();
        let mut answers = full_wellbeing();
        answers.last_item = None;
        for (i, a) in [CheckinAnswer::Great, CheckinAnswer::Okay]
            .into_iter()
            .enumerate()
        {
            answers.state.last_answer = Some((a, Timestamp::new(i as i64, 0).unwrap()));
            let b = encode_wellbeing(&answers, 7);
            assert_eq!(decode_wellbeing(&b).unwrap(), (answers.clone(), 7));
        }
        for r in [empty, full_wellbeing()] {
            let b = encode_wellbeing(&r, u64::MAX - 1);
            assert_eq!(decode_wellbeing(&b).unwrap(), (r.clone(), u64::MAX - 1));
            assert_eq!(decode_wellbeing(&b).unwrap().0, r);
            // Schema version 5's record: version byte 1, no as-of number (as of 0).
            let id_len = r.last_item.as_ref().map_or(0, |v| v.as_str().len());
            let mut v5 = b.clone();
            v5[0] = WELLBEING_V1;
            v5.drain(b.len() - id_len - ASOF_LEN..b.len() - id_len);
            assert_eq!(decode_wellbeing(&v5).unwrap(), (r.clone(), 0));
            let json = serde_json::to_vec(&r).unwrap();
            // The record proper stays under a third of the JSON.
            assert!(
                v5.len() * 3 < json.len(),
                "{} vs {} bytes",
                v5.len(),
                json.len()
            );
            assert_eq!(decode_wellbeing(&json).unwrap().0, r);
            assert_eq!(decode_wellbeing(&json).unwrap(), (r, 0));
        }
    }

    #[test]
    fn damaged_wellbeing_records_are_errors_not_panics() {
        let b = encode_wellbeing(&full_wellbeing(), 99);
        let id_len = "v-42 ünï".len();
        // Every cut inside the fixed fields is an error (a cut inside the trailing id
        // leaves a shorter id or invalid UTF-8).
        for n in 0..b.len() - id_len {
            assert!(decode_wellbeing(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        assert!(
            decode_wellbeing(&b[..b.len() - 1]).is_err(),
            "cut inside a character"
        );
        for (at, byte) in [(0, 9u8), (1, 7), (b.len() - id_len - ASOF_LEN - 17, 2)] {
            let mut bad = b.clone();
            bad[at] = byte;
            assert!(decode_wellbeing(&bad).is_err(), "byte {at} = {byte}");
        }
        // Arbitrary bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let _ = decode_wellbeing(&junk);
        }
    }

    #[test]
    fn descending_time_keys_sort_newest_first_and_round_trip() {
        let times = [-5_000i64, 0, 1, 1_795_000_000_000, 1_795_000_000_001];
        let mut keys: Vec<_> = times.iter().map(|&t| newest_first(t)).collect();
        keys.sort();
        let back: Vec<_> = keys.iter().map(|k| from_newest_first(k).unwrap()).collect();
        let mut want = times.to_vec();
        want.reverse();
        assert_eq!(back, want);
    }

    #[test]
    fn video_records_round_trip() {
        let v = Video {
            caption: "a cat bakes bread".into(),
            topics: vec![
                TopicId::new("pets").unwrap(),
                TopicId::new("cooking").unwrap(),
            ],
            remix_of: Some(VideoId::new("v0").unwrap()),
            cameos: vec![UserId::new("ann").unwrap()],
            safety: vec![SafetyLabel::Violence, SafetyLabel::Sad],
            audience: Audience::Mutuals,
            deleted: true,
            ..Video::new(
                VideoId::new("v1").unwrap(),
                UserId::new("ü-creator").unwrap(),
                Timestamp::from_nanosecond(1_795_000_000_123_456_789).unwrap(),
                12.5,
            )
        };
        assert_eq!(decode_video(&encode_video(&v)).unwrap(), v);
        assert!(decode_video(&encode_video(&v)[..20]).is_err());
        assert!(decode_video(b"").is_err());

        // Every label survives, the ones past the first byte included.
        let all = Video {
            safety: SafetyLabel::ALL.to_vec(),
            ..v.clone()
        };
        assert_eq!(decode_video(&encode_video(&all)).unwrap(), all);

        // A version-1 record (one-byte mask) written by an older build still reads: the
        // same bytes with the version set to 1 and the mask's high byte taken out.
        let v2 = encode_video(&v);
        let mask_at = 1 + 16 + 4 + 1 + 1;
        assert_eq!(v2[mask_at + 1], 0);
        let mut v1 = v2.clone();
        v1[0] = 1;
        v1.remove(mask_at + 1);
        assert_eq!(v1[mask_at], 0b1_0010);
        assert_eq!(decode_video(&v1).unwrap(), v);
        // A version-1 mask with a bit past its five labels is corrupt.
        let mut bad_v1 = v1.clone();
        bad_v1[mask_at] |= 0b10_0000;
        assert!(decode_video(&bad_v1).is_err());

        // A mask naming a label this build does not know is a corrupt record.
        let mut unknown = v2;
        unknown[mask_at + 1] = 0x80;
        assert!(decode_video(&unknown).is_err());
    }

    #[test]
    fn counters_round_trip() {
        let mut r = CounterRec {
            at_ms: 42,
            ..CounterRec::default()
        };
        r.counts.likes = 3.0;
        r.remix = 1.5;
        assert_eq!(CounterRec::decode(&r.encode()).unwrap(), r);
        assert!(CounterRec::decode(&[0; 5]).is_err());
    }

    #[test]
    fn derived_records_carry_their_as_of_number_and_older_ones_read_as_of_0() {
        let mut c = CounterRec {
            at_ms: 42,
            ..CounterRec::default()
        };
        c.counts.views = 2.5;
        assert_eq!(
            CounterRec::decode_asof(&with_asof(&c.encode(), 77)).unwrap(),
            (c, 77)
        );
        assert_eq!(CounterRec::decode(&with_asof(&c.encode(), 77)).unwrap(), c);
        assert_eq!(CounterRec::decode_asof(&c.encode()).unwrap(), (c, 0));
        let d = Decayed {
            at_ms: -3,
            value: 0.25,
        };
        assert_eq!(
            Decayed::decode_asof(&with_asof(&d.encode(), 5)).unwrap(),
            (d, 5)
        );
        assert_eq!(Decayed::decode_asof(&d.encode()).unwrap(), (d, 0));
        let v = vec![0.5f32, -1.0, 2.0];
        let b = encode_interest(9, &v, 11);
        assert_eq!(decode_interest(&b, 3).unwrap(), ((9, v.clone()), 11));
        let old = &b[..b.len() - ASOF_LEN];
        assert_eq!(decode_interest(old, 3).unwrap(), ((9, v.clone()), 0));
        let f = encode_fragment([b"ab".as_slice(), b"".as_slice(), b"xyz"].into_iter());
        let with = with_asof(&f, 123);
        assert_eq!(split_fragment(&with).unwrap(), (f.as_slice(), 123));
        assert_eq!(split_fragment(&f).unwrap(), (f.as_slice(), 0));
        assert_eq!(
            decode_fragment(&with).unwrap(),
            decode_fragment(&f).unwrap()
        );
        // Any other length is damage, not a record read wrong.
        for n in [
            0,
            1,
            COUNTER_REC_LEN - 1,
            COUNTER_REC_LEN + 1,
            COUNTER_REC_LEN + 9,
        ] {
            assert!(CounterRec::decode_asof(&vec![0; n]).is_err(), "{n} bytes");
        }
        for n in [11, 13, 19, 21] {
            assert!(Decayed::decode_asof(&vec![0; n]).is_err(), "{n} bytes");
        }
        assert!(decode_interest(&b, 2).is_err(), "another dimension");
        assert!(decode_interest(&b[..b.len() - 1], 3).is_err());
        for cut in [1, 3, 7, 9] {
            assert!(
                split_fragment(&with[..with.len() - cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn erasing_events_keeps_the_numbering_and_leaves_them_unreadable() {
        let e = |i: u64| Event {
            key: EventKey::new(format!("k{i}")).unwrap(),
            user: UserId::new(if i.is_multiple_of(3) { "gone" } else { "stays" }).unwrap(),
            at: Timestamp::from_nanosecond(1_795_000_000_000_000_000 + i as i128).unwrap(),
            kind: EventKind::Like {
                video: VideoId::new(format!("v{i}")).unwrap(),
            },
        };
        let read = |record: &[u8]| {
            let mut out = Vec::new();
            decode_record(record, 0, |i, ev| {
                out.push((i, ev));
                Ok(())
            })
            .unwrap();
            out
        };
        let gone = |ev: &Event| ev.user.as_str() == "gone";
        let events: Vec<Event> = (0..7).map(e).collect();
        let b = encode_events(events.iter());
        let (erased, which) = erase_in_record(&b, gone).unwrap().unwrap();
        assert_eq!(
            which.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 3, 6]
        );
        assert_eq!(record_len(&erased).unwrap(), 7);
        let left = read(&erased);
        assert_eq!(
            left,
            (0..7)
                .filter(|i: &u64| !i.is_multiple_of(3))
                .map(|i| (i, e(i)))
                .collect::<Vec<_>>()
        );
        // No byte of an erased event's key or user is left.
        assert!(!erased.windows(4).any(|w| w == b"gone"));
        // Erasing again finds nothing; erasing the rest leaves a record of markers.
        assert!(erase_in_record(&erased, gone).unwrap().is_none());
        let (empty, _) = erase_in_record(&erased, |_| true).unwrap().unwrap();
        assert_eq!(record_len(&empty).unwrap(), 7);
        assert!(read(&empty).is_empty());
        // One-event records (binary, and JSON of schema version 1) become records of
        // one marker; one of someone else is left alone.
        for one in [encode_event(&e(3)), serde_json::to_vec(&e(3)).unwrap()] {
            let (erased, which) = erase_in_record(&one, gone).unwrap().unwrap();
            assert_eq!(which, vec![(0, e(3))]);
            assert_eq!(record_len(&erased).unwrap(), 1);
            assert!(read(&erased).is_empty());
        }
        assert!(
            erase_in_record(&encode_event(&e(1)), gone)
                .unwrap()
                .is_none()
        );
        // A damaged record is an error, never a partial rewrite.
        assert!(erase_in_record(&b[..b.len() - 1], gone).is_err());
    }

    #[test]
    fn batch_records_round_trip_and_one_event_records_still_read() {
        let e = |i: u64| Event {
            key: EventKey::new(format!("k{i}")).unwrap(),
            user: UserId::new("u").unwrap(),
            at: Timestamp::from_nanosecond(1_795_000_000_000_000_000 + i as i128).unwrap(),
            kind: EventKind::Like {
                video: VideoId::new(format!("v{i}")).unwrap(),
            },
        };
        let events: Vec<Event> = (0..5).map(e).collect();
        let b = encode_events(events.iter());
        assert_eq!(record_len(&b).unwrap(), 5);
        let decoded = |record: &[u8], first: u64| {
            let mut out = Vec::new();
            decode_record(record, first, |i, ev| {
                out.push((i, ev));
                Ok(())
            })
            .unwrap();
            out
        };
        let want: Vec<(u64, Event)> = (2..5).map(|i| (i, e(i))).collect();
        assert_eq!(decoded(&b, 2), want);
        // A damaged record is an error, never a shorter batch.
        assert!(decode_record(&b[..b.len() - 1], 0, |_, _| Ok(())).is_err());
        assert!(record_len(&[EVENT_BATCH_V2, 0, 0, 0, 0]).is_err());
        // The one-event forms (binary and schema version 1's JSON) are records of one.
        for one in [encode_event(&e(7)), serde_json::to_vec(&e(7)).unwrap()] {
            assert_eq!(record_len(&one).unwrap(), 1);
            assert_eq!(decoded(&one, 0), vec![(0, e(7))]);
        }
    }

    #[test]
    fn events_round_trip_in_binary_and_old_json_still_reads() {
        let v = || VideoId::new("v1").unwrap();
        let kinds = vec![
            EventKind::Impression { video: v() },
            EventKind::View {
                video: v(),
                watch_ms: 12_345,
                completed: true,
            },
            EventKind::Like { video: v() },
            EventKind::Comment { video: v() },
            EventKind::Share { video: v() },
            EventKind::Follow { video: v() },
            EventKind::Remix {
                video: v(),
                new_video: Some(VideoId::new("v2").unwrap()),
            },
            EventKind::Remix {
                video: v(),
                new_video: None,
            },
            EventKind::CameoUse { video: v() },
            EventKind::Create { video: None },
            EventKind::Create { video: Some(v()) },
            EventKind::Skip { video: v() },
            EventKind::NotInterested { video: v() },
            EventKind::HideCreator { video: v() },
            EventKind::Report { video: v() },
            EventKind::CheckinAnswer {
                answer: CheckinAnswer::NotGreat,
            },
            EventKind::CheckinAnswer {
                answer: CheckinAnswer::Okay,
            },
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let e = Event {
                key: EventKey::new(format!("k-{i}-é")).unwrap(),
                user: UserId::new("ü").unwrap(),
                at: Timestamp::from_nanosecond(1_795_000_000_123_456_789).unwrap(),
                kind: kind.clone(),
            };
            let b = encode_event(&e);
            assert_eq!(decode_event(&b).unwrap(), e);
            assert!(decode_event(&b[..b.len() - 1]).is_err());
            let json = serde_json::to_vec(&e).unwrap();
            assert_eq!(decode_event(&json).unwrap(), e);
            let mut k = Vec::new();
            encode_kind(&mut k, &kind);
            assert_eq!(decode_kind(&k).unwrap(), kind);
            assert_eq!(
                decode_kind(&serde_json::to_vec(&kind).unwrap()).unwrap(),
                kind
            );
        }
        assert!(decode_event(&[9, 1, 2]).is_err());
        assert!(decode_event(&[EVENT_BATCH_V2, 1, 0, 0, 0]).is_err());
        assert!(decode_event(b"").is_err());
    }
}
