//! The encoding of the impression log's records: one value per served page, keyed by
//! its place in the log (`u64` BE, from 1).
//!
//! ```text
//! version u8 (3) | user str16 | at_ms i64 | request str16 | profile str16 | model str16
//! | shadow str16 | [shadow model str16 | shadow share f32, when the shadow is not empty]
//! | items u16
//! per item: video str16 | position u32 | source str8 | propensity f32
//!           | prior 8×f32 | creator 8×f32 | interest, tie, co_engagement f32 | flags u8
//!           | [drawable u32, when flags has bit 3]
//!           | [shadow drawable u32, when flags has bit 3 and the page has a shadow]
//!           | actions 8×f32 | action_value, tie, steering, consumption_cost, freshness,
//!             cold_start, wellbeing, total f32
//! ```
//!
//! Numbers are little-endian; `str16` and `str8` are a length (`u16`, `u8`) and UTF-8
//! bytes. The user comes first so that an erasure reads only the head of each record.
//! The flags: bit 0 followed, 1 remix chain, 2 friend's cameo, 3 the slot could explore
//! (a [`SlotDraw`] follows), 4 its greedy pick, 5 one of the items it could draw, 6 the
//! shadow profile's greedy pick, 7 one of the items the shadow could draw. On a page
//! with a shadow every item has a draw. Version 2 is version 3 without the shadow (no
//! shadow field, bits 6 and 7 never set, and every draw with at least one drawable
//! item); version 1 is version 2 without slot draws (bits 3 to 5 never set). Both still
//! read.

use steerfeed_core::bytes::ByteReader;
use steerfeed_core::{
    ActionProbs, Error, HeadInputs, ImpressionItem, ImpressionPage, LoggedPage, PageShadow, Result,
    ScoreBreakdown, SlotDraw, Timestamp, UserId, VideoId,
};

use crate::codec::{corrupt, ms, ts_of_ms};

const VERSION: u8 = 3;
/// The oldest version this build reads.
const OLDEST: u8 = 1;

fn str16(out: &mut Vec<u8>, s: &str) {
    // Ids and profile names are far below 64 KiB; a longer string is cut at a char
    // boundary rather than written with a wrong length.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn str8(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u8::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn f32s(out: &mut Vec<u8>, xs: &[f32]) {
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// The record of `page`, served to `user` at `at`.
pub(crate) fn encode(user: &UserId, at: Timestamp, page: &ImpressionPage) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.items.len() * 200);
    out.push(VERSION);
    str16(&mut out, user.as_str());
    out.extend_from_slice(&ms(at).to_le_bytes());
    str16(&mut out, &page.request);
    str16(&mut out, &page.profile);
    str16(&mut out, &page.model);
    let shadowed = page
        .shadow
        .as_ref()
        .is_some_and(|sh| !sh.profile.is_empty());
    match &page.shadow {
        // A profile name is never empty: the empty string says there is no shadow.
        Some(sh) if !sh.profile.is_empty() => {
            str16(&mut out, &sh.profile);
            str16(&mut out, &sh.model);
            out.extend_from_slice(&sh.share.to_le_bytes());
        }
        _ => str16(&mut out, ""),
    }
    let n = page.items.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(n as u16).to_le_bytes());
    for it in &page.items[..n] {
        str16(&mut out, it.video.as_str());
        out.extend_from_slice(&it.position.to_le_bytes());
        str8(&mut out, &it.source);
        out.extend_from_slice(&it.propensity.to_le_bytes());
        let h = &it.inputs;
        f32s(&mut out, &h.prior);
        f32s(&mut out, &h.creator);
        f32s(&mut out, &[h.interest, h.tie, h.co_engagement]);
        let d = it.draw;
        out.push(
            h.flag_bits()
                | u8::from(d.is_some()) << 3
                | u8::from(d.is_some_and(|d| d.greedy)) << 4
                | u8::from(d.is_some_and(|d| d.in_draw)) << 5
                | u8::from(d.is_some_and(|d| d.shadow_greedy)) << 6
                | u8::from(d.is_some_and(|d| d.shadow_in_draw)) << 7,
        );
        if let Some(d) = d {
            out.extend_from_slice(&d.drawable.to_le_bytes());
            if shadowed {
                out.extend_from_slice(&d.shadow_drawable.to_le_bytes());
            }
        }
        let b = &it.breakdown;
        f32s(&mut out, &b.actions.heads());
        f32s(
            &mut out,
            &[
                b.action_value,
                b.tie,
                b.steering,
                b.consumption_cost,
                b.freshness,
                b.cold_start,
                b.wellbeing,
                b.total,
            ],
        );
    }
    out
}

/// Reads a record front to back: the shared byte reader, a read past the end or of bad
/// UTF-8 being a corrupt impression.
struct Reader<'a>(ByteReader<'a>);

fn whole<T>(read: Option<T>) -> Result<T> {
    read.ok_or_else(|| corrupt("impression"))
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8> {
        whole(self.0.u8())
    }

    fn u16(&mut self) -> Result<u16> {
        whole(self.0.u16())
    }

    fn u32(&mut self) -> Result<u32> {
        whole(self.0.u32())
    }

    fn i64(&mut self) -> Result<i64> {
        whole(self.0.i64())
    }

    fn f32(&mut self) -> Result<f32> {
        whole(self.0.f32())
    }

    fn f32s<const N: usize>(&mut self) -> Result<[f32; N]> {
        whole(self.0.f32s())
    }

    fn str8(&mut self) -> Result<&'a str> {
        whole(self.0.str8())
    }

    fn str16(&mut self) -> Result<&'a str> {
        whole(self.0.str16())
    }
}

/// The record's version, and a reader past its viewer, whom it returns.
fn header(b: &[u8]) -> Result<(Reader<'_>, u8, &str)> {
    let mut r = Reader(ByteReader::new(b));
    let version = r.u8()?;
    if !(OLDEST..=VERSION).contains(&version) {
        return Err(corrupt("impression"));
    }
    let user = r.str16()?;
    Ok((r, version, user))
}

/// The viewer a record names, read from its head.
pub(crate) fn user_of(b: &[u8]) -> Result<&str> {
    header(b).map(|(_, _, u)| u)
}

/// When the record's page was served.
pub(crate) fn at_of(b: &[u8]) -> Result<Timestamp> {
    let (mut r, _, _) = header(b)?;
    Ok(ts_of_ms(r.i64()?))
}

/// The whole record at `seq`.
pub(crate) fn decode(seq: u64, b: &[u8]) -> Result<LoggedPage> {
    let (mut r, version, user) = header(b)?;
    // The flags a version may set: bits 0 to 2, from version 2 bit 3 with 4 and 5, and
    // from version 3 bit 6.
    let known: u8 = match version {
        1 => 0b111,
        2 => 0b11_1111,
        _ => 0b1111_1111,
    };
    let bad = |e: Error| {
        tracing::debug!(error = %e, "impression record names an invalid id");
        corrupt("impression")
    };
    let user = UserId::new(user).map_err(bad)?;
    let at = ts_of_ms(r.i64()?);
    let request = r.str16()?.to_owned();
    let profile = r.str16()?.to_owned();
    let model = r.str16()?.to_owned();
    let shadow = if version >= 3 {
        let profile = r.str16()?;
        if profile.is_empty() {
            None
        } else {
            let profile = profile.to_owned();
            let model = r.str16()?.to_owned();
            let share = r.f32()?;
            if !(share > 0.0 && share <= 1.0) {
                return Err(corrupt("impression"));
            }
            Some(PageShadow {
                profile,
                model,
                share,
            })
        }
    } else {
        None
    };
    let n = r.u16()?;
    let mut items = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let video = VideoId::new(r.str16()?).map_err(bad)?;
        let position = r.u32()?;
        let source = r.str8()?.to_owned();
        let propensity = r.f32()?;
        let prior = r.f32s::<8>()?;
        let creator = r.f32s::<8>()?;
        let [interest, tie, co_engagement] = r.f32s::<3>()?;
        let flags = r.u8()?;
        if flags & !known != 0
            || (flags & 8 == 0 && flags & 0b1111_0000 != 0)
            || (shadow.is_some() && flags & 8 == 0)
        {
            return Err(corrupt("impression"));
        }
        let draw = if flags & 8 != 0 {
            let d = SlotDraw {
                greedy: flags & 16 != 0,
                drawable: r.u32()?,
                in_draw: flags & 32 != 0,
                shadow_greedy: flags & 64 != 0,
                shadow_drawable: if shadow.is_some() { r.u32()? } else { 0 },
                shadow_in_draw: flags & 128 != 0,
            };
            // A served item was the greedy pick, a drawn one from a non-empty draw, or
            // (beside a shadow) the shadow's pick; only a page beside a shadow logs a
            // slot where nothing could be drawn.
            let served = d.greedy || (d.in_draw && d.drawable > 0) || d.shadow_greedy;
            let empty_ok = d.drawable > 0 || (shadow.is_some() && !d.in_draw);
            let shadow_ok = shadow.is_some() || !(d.shadow_greedy || d.shadow_in_draw);
            if !served || !empty_ok || !shadow_ok || (d.shadow_in_draw && d.shadow_drawable == 0) {
                return Err(corrupt("impression"));
            }
            Some(d)
        } else {
            None
        };
        let t = r.f32s::<16>()?;
        items.push(ImpressionItem {
            video,
            position,
            source,
            propensity,
            inputs: HeadInputs {
                prior,
                creator,
                interest,
                tie,
                co_engagement,
                followed: false,
                remix_chain: false,
                friend_cameo: false,
            }
            .with_flag_bits(flags),
            breakdown: ScoreBreakdown {
                actions: ActionProbs::from_heads(std::array::from_fn(|a| t[a])),
                action_value: t[8],
                tie: t[9],
                steering: t[10],
                consumption_cost: t[11],
                freshness: t[12],
                cold_start: t[13],
                wellbeing: t[14],
                total: t[15],
            },
            draw,
        });
    }
    if !r.0.rest().is_empty() {
        return Err(corrupt("impression"));
    }
    Ok(LoggedPage {
        seq,
        user,
        at,
        page: ImpressionPage {
            request,
            profile,
            model,
            items,
            shadow,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> ImpressionPage {
        ImpressionPage {
            request: "r-1".into(),
            profile: "default".into(),
            model: "m-0000abcd".into(),
            items: (0..3)
                .map(|i| ImpressionItem {
                    video: VideoId::new(format!("v{i}")).unwrap(),
                    position: i,
                    source: "interest_ann".into(),
                    propensity: 1.0 / (i as f32 + 1.0),
                    inputs: HeadInputs {
                        prior: [i as f32; 8],
                        creator: [-0.5; 8],
                        interest: 0.25,
                        tie: 0.5,
                        co_engagement: 0.0,
                        followed: i == 1,
                        remix_chain: i == 2,
                        friend_cameo: true,
                    },
                    breakdown: ScoreBreakdown {
                        total: 3.5 + i as f32,
                        steering: -1.0,
                        ..ScoreBreakdown::default()
                    },
                    draw: (i > 0).then_some(SlotDraw {
                        greedy: i == 1,
                        drawable: 70_000 + i,
                        in_draw: i == 2,
                        shadow_greedy: false,
                        shadow_drawable: 0,
                        shadow_in_draw: false,
                    }),
                })
                .collect(),
            shadow: None,
        }
    }

    /// [`page`] served beside a shadow: every slot has a draw, the first one where
    /// nothing could be drawn, and the last item is the shadow's pick (which its own
    /// exploration could also have drawn) and not the serving profile's.
    fn shadowed_page() -> ImpressionPage {
        let mut p = page();
        p.shadow = Some(PageShadow {
            profile: "creation_heavy".into(),
            model: "m-00001234".into(),
            share: 0.25,
        });
        p.items[0].draw = Some(SlotDraw {
            greedy: true,
            drawable: 0,
            in_draw: false,
            shadow_greedy: true,
            shadow_drawable: 0,
            shadow_in_draw: false,
        });
        p.items[1].draw.as_mut().unwrap().shadow_drawable = 4;
        p.items[2].draw = Some(SlotDraw {
            greedy: false,
            drawable: 5,
            in_draw: false,
            shadow_greedy: true,
            shadow_drawable: 9,
            shadow_in_draw: true,
        });
        p
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let user = UserId::new("u1").unwrap();
        let at = Timestamp::from_millisecond(1_700_000_000_123).unwrap();
        let b = encode(&user, at, &page());
        assert_eq!(user_of(&b).unwrap(), "u1");
        assert_eq!(at_of(&b).unwrap(), at);
        let got = decode(7, &b).unwrap();
        assert_eq!(got.seq, 7);
        assert_eq!(got.user, user);
        assert_eq!(got.at, at);
        assert_eq!(got.page, page());
        let b = encode(&user, at, &shadowed_page());
        assert_eq!(decode(8, &b).unwrap().page, shadowed_page());
    }

    #[test]
    fn a_version_2_record_reads_without_a_shadow() {
        let user = UserId::new("u1").unwrap();
        let b = encode(&user, Timestamp::UNIX_EPOCH, &page());
        // Version 2 is version 3 without the shadow field: cut its empty string, which
        // follows the header's four strings.
        let head = 1 + 2 + 2 + 8 + (2 + 3) + (2 + 7) + (2 + 10);
        assert_eq!(&b[head..head + 2], &[0, 0]);
        let mut v2 = b[..head].to_vec();
        v2.extend_from_slice(&b[head + 2..]);
        v2[0] = 2;
        assert_eq!(decode(1, &v2).unwrap().page, page());
        // What only a page beside a shadow may hold is corrupt in it.
        let mut p = page();
        p.items[1].draw.as_mut().unwrap().shadow_greedy = true;
        let b = encode(&user, Timestamp::UNIX_EPOCH, &p);
        assert!(
            decode(1, &b).is_err(),
            "a shadow's pick on a page without one"
        );
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_corrupt_not_a_panic() {
        let b = encode(&UserId::new("u1").unwrap(), Timestamp::UNIX_EPOCH, &page());
        for n in 0..b.len() {
            assert!(decode(1, &b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode(1, &long).is_err());
        let mut other = b;
        other[0] = 4;
        assert!(decode(1, &other).is_err());
        let b = encode(
            &UserId::new("u1").unwrap(),
            Timestamp::UNIX_EPOCH,
            &shadowed_page(),
        );
        for n in 0..b.len() {
            assert!(decode(1, &b[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn a_version_1_record_written_byte_by_byte_reads_and_keeps_to_its_flags() {
        fn s16(b: &mut Vec<u8>, s: &str) {
            b.extend_from_slice(&(s.len() as u16).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        let mut b = vec![1u8];
        s16(&mut b, "u1");
        b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        s16(&mut b, "r-9");
        s16(&mut b, "default");
        s16(&mut b, "hand-set");
        b.extend_from_slice(&1u16.to_le_bytes());
        s16(&mut b, "v7");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.push(7);
        b.extend_from_slice(b"popular");
        let mut floats = vec![0.5f32];
        floats.extend((0..8).map(|a| a as f32));
        floats.extend([-1.0; 8]);
        floats.extend([0.25, 0.5, 0.75]);
        for x in &floats {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let flags_at = b.len();
        b.push(0b101);
        for x in (0..8)
            .map(|a| 0.01 * (a + 1) as f32)
            .chain((1..=8).map(|t| t as f32))
        {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let got = decode(4, &b).unwrap();
        assert_eq!(got.user.as_str(), "u1");
        assert_eq!(got.at.as_millisecond(), 1_700_000_000_000);
        assert_eq!(
            (
                got.page.request.as_str(),
                got.page.profile.as_str(),
                got.page.model.as_str()
            ),
            ("r-9", "default", "hand-set")
        );
        let it = &got.page.items[0];
        assert_eq!(
            (it.video.as_str(), it.position, it.source.as_str()),
            ("v7", 3, "popular")
        );
        assert_eq!(it.propensity, 0.5);
        assert_eq!(it.inputs.prior[7], 7.0);
        assert_eq!(it.inputs.creator, [-1.0; 8]);
        assert_eq!((it.inputs.interest, it.inputs.co_engagement), (0.25, 0.75));
        assert!(it.inputs.followed && !it.inputs.remix_chain && it.inputs.friend_cameo);
        assert_eq!(it.breakdown.actions.heads()[0], 0.01);
        assert_eq!((it.breakdown.action_value, it.breakdown.total), (1.0, 8.0));
        assert_eq!(it.draw, None);
        // Bits a version 1 record never set, and draw bits without bit 3, are corrupt.
        for bad in [0b1000u8, 0b1_0101, 0b100_0000] {
            let mut c = b.clone();
            c[flags_at] = bad;
            assert!(decode(4, &c).is_err(), "flags {bad:#b}");
        }
        let mut c = b.clone();
        c[0] = 2;
        c[flags_at] = 0b10_0000;
        assert!(decode(4, &c).is_err(), "in_draw without a draw");
    }

    #[test]
    fn a_draw_that_could_not_have_served_its_item_is_corrupt() {
        let draw = |greedy, drawable, in_draw, shadow_greedy, shadow_drawable, shadow_in_draw| {
            Some(SlotDraw {
                greedy,
                drawable,
                in_draw,
                shadow_greedy,
                shadow_drawable,
                shadow_in_draw,
            })
        };
        let with = |mut p: ImpressionPage, slot: usize, d: Option<SlotDraw>| {
            p.items[slot].draw = d;
            p
        };
        let mut no_share = shadowed_page();
        no_share.shadow.as_mut().unwrap().share = 0.0;
        let cases = [
            (
                with(page(), 0, draw(false, 3, false, false, 0, false)),
                "an item nobody picked",
            ),
            (
                with(page(), 0, draw(true, 0, false, false, 0, false)),
                "a draw from nothing",
            ),
            (
                with(page(), 1, draw(true, 5, false, false, 4, true)),
                "the shadow's draw on a page without one",
            ),
            (
                with(shadowed_page(), 1, draw(false, 3, false, false, 0, false)),
                "beside a shadow, an item nobody picked",
            ),
            (
                with(shadowed_page(), 1, draw(false, 0, true, true, 0, false)),
                "beside a shadow, drawn from nothing",
            ),
            (
                with(shadowed_page(), 2, draw(false, 5, false, true, 0, true)),
                "drawn by the shadow from nothing",
            ),
            (
                with(shadowed_page(), 1, None),
                "a slot without a draw beside a shadow",
            ),
            (no_share, "a shadow of share 0"),
        ];
        let user = UserId::new("u1").unwrap();
        for (p, why) in cases {
            let b = encode(&user, Timestamp::UNIX_EPOCH, &p);
            assert!(decode(1, &b).is_err(), "{why}");
        }
    }

    #[test]
    fn a_version_1_record_still_reads() {
        // Version 1 wrote what version 3 writes for items without a slot draw on a page
        // without a shadow, less the shadow's empty string after the header's strings.
        let mut p = page();
        for it in &mut p.items {
            it.draw = None;
        }
        let b = encode(&UserId::new("u1").unwrap(), Timestamp::UNIX_EPOCH, &p);
        assert_eq!(b[0], 3);
        let head = 1 + 2 + 2 + 8 + (2 + 3) + (2 + 7) + (2 + 10);
        let mut v1 = b[..head].to_vec();
        v1.extend_from_slice(&b[head + 2..]);
        v1[0] = 1;
        assert_eq!(decode(1, &v1).unwrap().page, p);
    }
}
