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

    /// Reads a page back (this format or the JSON before it); an error says why it does
    /// not read as one. Impressions that do not read back (the impression log's reader
    /// is stricter than its writer) leave the page without them, with a warning: its
    /// serving state still applies.
    pub fn decode(bytes: &[u8]) -> Result<Page, String> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).map_err(|e| format!("a JSON page: {e}"));
        }
        let (mut page, rest) =
            Self::decode_head(bytes).ok_or_else(|| "a cut or damaged page".to_owned())?;
        if let Some(rest) = rest {
            match steerfeed_store::decode_impressions(rest) {
                Ok(logged) if logged.user == page.user && logged.at == page.at => {
                    page.impressions = Some(logged.page);
                }
                Ok(_) => {
                    tracing::warn!(user = %page.user, "a page's impressions name another page; applied without them")
                }
                Err(e) => {
                    tracing::warn!(user = %page.user, error = %e, "a page's impressions did not read back; applied without them")
                }
            }
        }
        Ok(page)
    }

    /// The page without its impressions, and the bytes of its impressions when it has
    /// them; `None` when the rest does not read whole.
    fn decode_head(bytes: &[u8]) -> Option<(Page, Option<&[u8]>)> {
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
        let rest = if flags & IMPRESSIONS != 0 {
            Some(r.rest())
        } else if r.rest().is_empty() {
            None
        } else {
            return None;
        };
        let page = Page {
            user,
            videos,
            checkin: flags & CHECKIN != 0,
            break_card: flags & BREAK_CARD != 0,
            at,
            impressions: None,
        };
        Some((page, rest))
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

    /// A page served beside a shadow profile: every item has a draw.
    fn shadowed() -> Page {
        let mut p = page(true);
        p.break_card = true;
        let imp = p.impressions.as_mut().unwrap();
        imp.shadow = Some(steerfeed_core::PageShadow {
            profile: "creation_heavy".into(),
            model: "hand-set".into(),
            share: 0.2,
        });
        for (i, it) in imp.items.iter_mut().enumerate() {
            it.draw = Some(SlotDraw {
                greedy: i != 3,
                drawable: 1 + i as u32,
                in_draw: i == 2,
                shadow_greedy: i == 3,
                shadow_drawable: 2 + i as u32,
                shadow_in_draw: i == 3,
            });
        }
        p
    }

    #[test]
    fn a_page_reads_back_whole_with_or_without_its_impressions() {
        for p in [page(false), page(true), shadowed()] {
            let bytes = p.encode().unwrap();
            assert_eq!(Page::decode(&bytes), Ok(p.clone()));
        }
        // A page is timed to the millisecond, its impressions too.
        let mut p = page(true);
        p.at = "2026-12-01T10:00:00.123456789Z".parse().unwrap();
        let back = Page::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(back.at, "2026-12-01T10:00:00.123Z".parse().unwrap());
        assert_eq!(back.impressions, p.impressions);
    }

    #[test]
    fn a_page_written_as_json_before_this_format_still_reads() {
        let json = r#"{"user":"viewer-1","videos":["v0","v1"],"checkin":false,"break_card":true,"at":"2026-12-01T10:00:00.123456789Z","impressions":{"request":"req-1","profile":"default","model":"hand-set","items":[{"video":"v0","position":0,"source":"interest_ann","propensity":0.5,"inputs":{"prior":[-5.8,-5.3,-6.2,-4.6,-4.6,-5.3,-2.75,-0.62],"creator":[0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0],"interest":-0.355,"tie":0.5,"co_engagement":1.0,"followed":true,"remix_chain":false,"friend_cameo":false},"breakdown":{"actions":{"create":0.25,"remix":0.11,"cameo_use":0.06,"comment":0.24,"share":0.2,"follow":0.0,"like":0.64,"complete_view":0.95},"action_value":5.73,"tie":0.5,"steering":0.0,"consumption_cost":0.0066,"freshness":0.00014,"cold_start":0.25,"wellbeing":0.0,"total":6.47},"draw":null}]}}"#;
        let p = Page::decode(json.as_bytes()).unwrap();
        assert_eq!(p.user, uid("viewer-1"));
        assert_eq!(p.videos, vec![vid("v0"), vid("v1")]);
        assert!(!p.checkin && p.break_card);
        assert_eq!(p.at, "2026-12-01T10:00:00.123456789Z".parse().unwrap());
        let imp = p.impressions.unwrap();
        assert_eq!((imp.request.as_str(), imp.items.len()), ("req-1", 1));
        let it = &imp.items[0];
        assert_eq!(
            (it.video.as_str(), it.source.as_str()),
            ("v0", "interest_ann")
        );
        assert_eq!(it.inputs.prior[7], -0.62);
        assert_eq!(it.breakdown.actions.like, 0.64);
        assert_eq!(it.breakdown.total, 6.47);
        assert!(it.inputs.followed && it.draw.is_none());
        assert!(Page::decode(br#"{"user":"viewer-1"}"#).is_err());
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
    fn a_cut_padded_or_damaged_page_is_refused_and_bad_impressions_leave_the_page_without_them() {
        let head = page(false).encode().unwrap().len();
        let full = page(true);
        let bytes = full.encode().unwrap();
        let without = Page {
            impressions: None,
            ..full.clone()
        };
        for n in 0..bytes.len() {
            let got = Page::decode(&bytes[..n]);
            if n < head {
                assert!(got.is_err(), "cut at {n}");
            } else {
                assert_eq!(got, Ok(without.clone()), "cut at {n}, in the impressions");
            }
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert_eq!(Page::decode(&padded), Ok(without));
        let mut padded = page(false).encode().unwrap();
        padded.push(0);
        assert!(Page::decode(&padded).is_err());
        for (at, value) in [(0, 2), (1, 0x80)] {
            let mut bad = bytes.clone();
            bad[at] = value;
            assert!(Page::decode(&bad).is_err(), "byte {at} set to {value}");
        }
        // A count of videos the value cannot hold.
        let mut huge = page(false).encode().unwrap();
        let count_at = 2 + 2 + "viewer-1".len() + 8;
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Page::decode(&huge).is_err());
    }
}
