//! Staging appends to the seen and history rings against what the overlay and sled
//! hold ([`Rings`]), and reading a user's history (the ring format is `rings.rs`).

use std::collections::HashMap;

use sled::Tree;
use steerfeed_core::ports::Engagement;
use steerfeed_core::{EventKind, Result, UserId, VideoId};

use crate::codec::{self, corrupt};
use crate::derived::Overlay;
use crate::layer::Layer;
use crate::resident::ResidentUser;
use crate::rings::{RingPending, read_ring, ring_newest};

use super::Store;

/// Appends to one kind of per-user ring (seen or history) staged by one write.
///
/// Each user's entries are numbered in arrival order; appending `seq` drops `seq − cap`,
/// so each user keeps the newest `cap` entries (stored as fragments, see
/// [`RingPending::write`]).
#[derive(Default)]
struct Ring {
    /// Per user: the head in sled when first loaded, and the next sequence number.
    heads: HashMap<UserId, (u64, u64)>,
    entries: Vec<(UserId, Vec<u8>)>,
}

impl Ring {
    /// Appends `value` for event `seq` to `user`'s ring, unless the ring in sled holds
    /// that event already (a replay after a crash halfway through a persist).
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        tree: &Tree,
        ov: &Overlay,
        ring: fn(&Layer) -> &HashMap<UserId, RingPending>,
        resident: fn(&ResidentUser) -> u64,
        user: &UserId,
        seq: u64,
        value: Vec<u8>,
    ) -> Result<()> {
        if !self.heads.contains_key(user) {
            let older = ov
                .frozen
                .as_deref()
                .and_then(|f| ring(f).get(user))
                .or_else(|| ov.clean.as_deref().and_then(|c| ring(c).get(user)));
            let h = match (ring(&ov.active).get(user), older) {
                (Some(p), _) => (p.base, p.head),
                // Frozen appends reach sled before the active ones; clean ones are there.
                (None, Some(p)) => (p.head, p.head),
                (None, None) => {
                    let h = match ov.resident.get(user) {
                        Some(r) => resident(r),
                        None => {
                            let end = ring_newest(tree, user, false)?;
                            if seq <= end.asof {
                                return Ok(());
                            }
                            end.head
                        }
                    };
                    (h, h)
                }
            };
            self.heads.insert(user.clone(), h);
        }
        if let Some(h) = self.heads.get_mut(user) {
            h.1 += 1;
        }
        self.entries.push((user.clone(), value));
        Ok(())
    }

    fn install(self, pending: &mut HashMap<UserId, RingPending>, cap: u64) -> usize {
        let n = self.entries.len();
        for (u, v) in self.entries {
            let start = self.heads.get(&u).map_or(0, |h| h.0);
            pending
                .entry(u)
                .or_insert_with(|| RingPending {
                    base: start,
                    head: start,
                    ..RingPending::default()
                })
                .push(v, cap);
        }
        n
    }
}

/// The seen and history rings of one write.
#[derive(Default)]
pub(crate) struct Rings {
    seen: Ring,
    history: Ring,
}

impl Rings {
    /// Appends a seen entry for event `seq` (`u64::MAX` for what is not an event: a
    /// served page).
    pub(crate) fn push_seen(
        &mut self,
        s: &Store,
        ov: &Overlay,
        (user, seq): (&UserId, u64),
        at_ms: i64,
        video: &VideoId,
    ) -> Result<()> {
        let mut v = at_ms.to_le_bytes().to_vec();
        v.extend_from_slice(video.as_str().as_bytes());
        self.seen
            .push(&s.t().seen, ov, |l| &l.seen, |r| r.seen_head, user, seq, v)
    }

    pub(crate) fn push_history(
        &mut self,
        s: &Store,
        ov: &Overlay,
        (user, seq): (&UserId, u64),
        at_ms: i64,
        kind: &EventKind,
    ) -> Result<()> {
        let mut v = at_ms.to_le_bytes().to_vec();
        codec::encode_kind(&mut v, kind);
        self.history.push(
            &s.t().history,
            ov,
            |l| &l.history,
            |r| r.history_head,
            user,
            seq,
            v,
        )
    }

    /// Moves the appends into the overlay; returns how many entries were added.
    pub(crate) fn install(self, s: &Store, ov: &mut Overlay) -> usize {
        let o = s.options();
        self.seen.install(&mut ov.active.seen, o.seen_per_user)
            + self
                .history
                .install(&mut ov.active.history, o.history_per_user)
    }
}

pub(crate) fn read_history(s: &Store, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
    let mut out = Vec::new();
    let ov = s.overlay_read();
    for e in read_ring(
        &s.t().history,
        &ov.rings(user, |l| &l.history),
        user,
        s.options().history_per_user,
        limit,
        |v| {
            let at = codec::i64_le(v, 0).ok_or_else(|| corrupt("history"))?;
            Ok((codec::decode_kind(&v[8..])?, codec::ts_of_ms(at)))
        },
    )? {
        let (kind, at) = e;
        if let Some(video) = kind.video().cloned() {
            out.push(Engagement { video, kind, at });
        }
    }
    Ok(out)
}
