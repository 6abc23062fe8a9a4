//! A served page as the event log carries it: what every mirror applies to its viewer's
//! serving state, and the page's impressions for the impression log.
//!
//! ```text
//! version u8 (1) | flags u8 | user str16 | at_ms i64 | videos u32 | per video: id str16
//! | [the impression log's record of the page (`steerfeed_store::encode_impressions`),
//!    to the end, when flags has bit 2]
//! ```
//!
//! Little-endian; `str16` is a `u16` length and UTF-8 bytes. The flags: bit 0 the page
//! showed a check-in, 1 a break card, 2 its impressions follow. The impressions are
//! binary: as JSON they took about four times the bytes, which every replica read for
//! every page served. A page written before this format was JSON (its first byte `{`),
//! which still reads.

use steerfeed_core::bytes::ByteReader;
use steerfeed_core::{ImpressionPage, Timestamp, UserId, VideoId};

const VERSION: u8 = 1;
const CHECKIN: u8 = 1;
const BREAK_CARD: u8 = 1 << 1;
const IMPRESSIONS: u8 = 1 << 2;

/// A served page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Page {
    pub user: UserId,
    pub videos: Vec<VideoId>,
    pub checkin: bool,
    pub break_card: bool,
    pub at: Timestamp,
    /// The page for the impression log (absent when the engine keeps none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impressions: Option<ImpressionPage>,
}

fn str16(out: &mut Vec<u8>, s: &str) -> Option<()> {
    out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Some(())
}

impl Page {
    /// The page's bytes; `None` when an id is too long for the format (ids the API
    /// takes are far shorter).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(32 + self.videos.len() * 16);
        out.push(VERSION);
        let mut flags = 0;
        for (on, bit) in [
            (self.checkin, CHECKIN),
            (self.break_card, BREAK_CARD),
            (self.impressions.is_some(), IMPRESSIONS),
        ] {
            if on {
                flags |= bit;
            }
        }
        out.push(flags);
        str16(&mut out, self.user.as_str())?;
        out.extend_from_slice(&self.at.as_millisecond().to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.videos.len()).ok()?.to_le_bytes());
        for v in &self.videos {
            str16(&mut out, v.as_str())?;
        }
        if let Some(imp) = &self.impressions {
            out.extend(steerfeed_store::encode_impressions(
                &self.user, self.at, imp,
            ));
        }
        Some(out)
    }

    /// Reads a page back (this format or the JSON before it); `None` unless the whole
    /// value reads as one.
    pub fn decode(bytes: &[u8]) -> Option<Page> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).ok();
        }
        let mut r = ByteReader::new(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let flags = r.u8()?;
        if flags & !(CHECKIN | BREAK_CARD | IMPRESSIONS) != 0 {
            return None;
        }
        let user = UserId::new(r.str16()?).ok()?;
        let at = Timestamp::from_millisecond(r.i64()?).ok()?;
        let n = r.u32()? as usize;
        // Each id takes at least its two length bytes: a count the value cannot hold is
        // refused before anything is allocated for it.
        if n > r.rest().len() / 2 {
            return None;
        }
        let mut videos = Vec::with_capacity(n);
        for _ in 0..n {
            videos.push(VideoId::new(r.str16()?).ok()?);
        }
        let impressions = if flags & IMPRESSIONS != 0 {
            let logged = steerfeed_store::decode_impressions(r.rest()).ok()?;
            Some((logged.user == user && logged.at == at).then_some(logged.page)?)
        } else if r.rest().is_empty() {
            None
        } else {
            return None;
        };
        Some(Page {
            user,
            videos,
            checkin: flags & CHECKIN != 0,
            break_card: flags & BREAK_CARD != 0,
            at,
            impressions,
        })
    }
}

#[cfg(test)]
mod tests {
    use steerfeed_core::{ActionProbs, HeadInputs, ImpressionItem, ScoreBreakdown, SlotDraw};

    use super::*;

    fn uid(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    fn vid(s: &str) -> VideoId {
        VideoId::new(s).unwrap()
    }

    fn item(i: u32) -> ImpressionItem {
        let f = |k: u32| (i * 31 + k) as f32 / 97.0 - 0.5;
        ImpressionItem {
            video: vid(&format!("v{i}")),
            position: i,
            source: "interest_ann".into(),
            propensity: f(1),
            inputs: HeadInputs {
                prior: std::array::from_fn(|k| f(k as u32 + 2)),
                creator: std::array::from_fn(|k| f(k as u32 + 11)),
                interest: f(20),
                tie: f(21),
                co_engagement: f(22),
                followed: i.is_multiple_of(2),
                remix_chain: false,
                friend_cameo: i.is_multiple_of(3),
            },
            breakdown: ScoreBreakdown {
                actions: ActionProbs {
                    create: f(30),
                    remix: f(31),
                    cameo_use: f(32),
                    comment: f(33),
                    share: f(34),
                    follow: f(35),
                    like: f(36),
                    complete_view: f(37),
                },
                action_value: f(40),
                tie: f(41),
                steering: f(42),
                consumption_cost: f(43),
                freshness: f(44),
                cold_start: f(45),
                wellbeing: f(46),
                total: f(47),
            },
            draw: (i % 2 == 1).then_some(SlotDraw {
                greedy: true,
                drawable: 3 + i,
                in_draw: true,
                shadow_greedy: false,
                shadow_drawable: 0,
                shadow_in_draw: false,
            }),
        }
    }

    fn page(impressions: bool) -> Page {
        Page {
            user: uid("viewer-1"),
            videos: (0..20).map(|i| vid(&format!("v{i}"))).collect(),
            checkin: true,
            break_card: false,
            at: Timestamp::from_millisecond(1_796_000_123_456).unwrap(),
            impressions: impressions.then(|| ImpressionPage {
                request: "req-1".into(),
                profile: "default".into(),
                model: "hand-set".into(),
                items: (0..20).map(item).collect(),
                shadow: None,
            }),
        }
    }

    #[test]
    fn a_page_reads_back_whole_with_or_without_its_impressions() {
        for with in [false, true] {
            let p = page(with);
            let bytes = p.encode().unwrap();
            assert_eq!(Page::decode(&bytes), Some(p.clone()));
            // Written before this format, as JSON: still read.
            let json = serde_json::to_vec(&p).unwrap();
            assert_eq!(Page::decode(&json), Some(p));
        }
    }

    #[test]
    fn the_binary_page_is_a_fraction_of_the_json_one() {
        let p = page(true);
        let (bin, json) = (p.encode().unwrap(), serde_json::to_vec(&p).unwrap());
        assert!(
            bin.len() * 3 < json.len(),
            "{} bytes against {}",
            bin.len(),
            json.len()
        );
    }

    #[test]
    fn a_cut_padded_or_damaged_page_is_refused() {
        let bytes = page(true).encode().unwrap();
        for n in 0..bytes.len() {
            assert_eq!(Page::decode(&bytes[..n]), None, "cut at {n}");
        }
        let mut padded = page(false).encode().unwrap();
        padded.push(0);
        assert_eq!(Page::decode(&padded), None);
        for (at, value) in [(0, 2), (1, 0x80)] {
            let mut bad = bytes.clone();
            bad[at] = value;
            assert_eq!(Page::decode(&bad), None, "byte {at} set to {value}");
        }
        // A count of videos the value cannot hold.
        let mut huge = page(false).encode().unwrap();
        let count_at = 2 + 2 + "viewer-1".len() + 8;
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Page::decode(&huge), None);
    }
}
