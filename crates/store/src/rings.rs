//! The per-user rings: a user's seen items and engagement history, each the newest
//! `cap` entries of a numbered sequence.
//!
//! A write stages appends ([`Rings`]) against what the overlay and sled hold, the
//! persister writes them as fragments of consecutive entries ([`RingPending::write`]),
//! growing a resident user's newest fragment up to [`TAIL_MAX`] entries, and a read
//! ([`read_ring`]) takes each sequence number once, newest first, across the overlay and
//! sled's fragments (a fragment overlapped by a newer one reads right).

use std::collections::{HashMap, VecDeque};

use sled::Tree;
use steerfeed_core::{Result, UserId};

use crate::codec::{self, corrupt, prefix};
use crate::legacy;
use crate::trees::{KeyWrites, db_err};

/// Most entries in a ring fragment that later writes still add to: a user's ring then
/// spans about `cap / TAIL_MAX` fragments instead of one per write.
pub(crate) const TAIL_MAX: u64 = 32;

/// A ring's newest fragment: its first sequence number and its encoded value
/// (`codec::encode_fragment`; sled's copy also ends in its as-of number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    pub first: u64,
    pub value: Vec<u8>,
}

impl Tail {
    /// Its number of entries.
    pub fn len(&self) -> u64 {
        self.value
            .get(..4)
            .and_then(|c| c.try_into().ok())
            .map_or(0, |c| u64::from(u32::from_le_bytes(c)))
    }
}

/// Appends not yet written to one user's ring (seen or history).
///
/// `base` is the ring head in sled, `head` the next sequence number; `entries` holds the
/// newest appended entries (at most the ring's bound). Writing inserts them, deletes the
/// sled entries that fell out of the ring and stores the head.
#[derive(Debug, Clone, Default)]
pub(crate) struct RingPending {
    pub base: u64,
    pub head: u64,
    pub entries: VecDeque<(u64, Vec<u8>)>,
}

impl RingPending {
    /// A ring whose head `head` is in sled, with nothing pending.
    pub(crate) fn at(head: u64) -> Self {
        Self {
            base: head,
            head,
            entries: VecDeque::new(),
        }
    }

    pub fn push(&mut self, value: Vec<u8>, cap: u64) {
        self.entries.push_back((self.head, value));
        self.head += 1;
        while self.entries.len() as u64 > cap {
            self.entries.pop_front();
        }
    }

    /// The fragment [`RingPending::write`] stores as the ring's newest (`None` with
    /// nothing to write): the appends still inside the ring, added to `tail` (the
    /// newest fragment in sled) when they directly follow it, it lies wholly inside the
    /// ring and both fit in [`TAIL_MAX`] entries; a new fragment otherwise.
    pub fn newest(&self, tail: Option<&Tail>, cap: u64) -> Option<Tail> {
        let keep_from = self.head.saturating_sub(cap);
        let kept: Vec<(u64, &[u8])> = self
            .entries
            .iter()
            .filter(|(seq, _)| *seq >= keep_from)
            .map(|(seq, v)| (*seq, v.as_slice()))
            .collect();
        let first = kept.first()?.0;
        if let Some(t) = tail {
            let n = t.len();
            if first == self.base
                && t.first + n == self.base
                && t.first >= keep_from
                && n + kept.len() as u64 <= TAIL_MAX
                && let Ok(old) = codec::decode_fragment(&t.value)
            {
                let value = codec::encode_fragment(old.into_iter().chain(kept.iter().map(|e| e.1)));
                return Some(Tail {
                    first: t.first,
                    value,
                });
            }
        }
        Some(Tail {
            first,
            value: codec::encode_fragment(kept.iter().map(|e| e.1)),
        })
    }

    /// Writes the appends still inside the ring as one fragment — added to the newest
    /// fragment in sled when the resident mirror has it (`tail`, see
    /// [`RingPending::newest`]), a new key otherwise (one sled key per user and write,
    /// not one per entry) — and removes what fell out of the ring. The head is not
    /// stored: it is one past the newest fragment's last entry.
    pub(crate) fn write(
        &self,
        tree: &Tree,
        user: &UserId,
        cap: u64,
        tail: Option<&Tail>,
        asof: u64,
        b: &mut KeyWrites,
    ) -> Result<Option<Tail>> {
        let keep_from = self.head.saturating_sub(cap);
        let newest = self.newest(tail, cap);
        if let Some(t) = &newest {
            b.insert(
                codec::fragment_key(user.as_str(), t.first),
                codec::with_asof(&t.value, asof),
            );
        }
        if self.base.saturating_sub(cap) < self.base.min(keep_from) {
            // Entries in sled fell out of the ring: drop the one-entry keys (older
            // stores) and the fragments wholly below `keep_from`, oldest first. A
            // fragment partly inside stays; readers skip its older entries.
            for kv in tree.scan_prefix(codec::prefix(user.as_str())) {
                let (k, v) = kv.map_err(db_err)?;
                let (first, n) = codec::ring_item(user.as_str(), &k, &v)?;
                if first + n > keep_from {
                    break;
                }
                b.remove(k.to_vec());
            }
        }
        Ok(newest)
    }
}

/// The newest ring fragments a write stored, per user: what the resident mirror keeps
/// of them ([`Resident::written`](crate::resident::Resident::written)).
#[derive(Default)]
pub(crate) struct Tails<'a> {
    pub seen: HashMap<&'a UserId, Tail>,
    pub history: HashMap<&'a UserId, Tail>,
}

/// The next sequence number of `user`'s ring in sled: one past its newest entry (the
/// newest fragment always stays: only fragments wholly older than the ring go), or for
/// a ring with no entry the head that schema version 3 and older stored under the bare
/// user key (0 when none).
#[cfg(test)]
pub(crate) fn ring_head(tree: &Tree, user: &UserId) -> Result<u64> {
    ring_newest(tree, user, false).map(|r| r.head)
}

/// [`ring_head`], and the newest fragment when later writes may still add to it (a
/// fragment, not a one-entry key of schema version 3, with fewer than `TAIL_MAX`
/// entries), without its as-of number.
pub(crate) fn ring_tail(tree: &Tree, user: &UserId) -> Result<(u64, Option<Tail>)> {
    ring_newest(tree, user, true).map(|r| (r.head, r.tail))
}

/// The newest end of a ring in sled.
pub(crate) struct RingEnd {
    pub(crate) head: u64,
    pub(crate) tail: Option<Tail>,
    /// The newest fragment's as-of number: the ring holds every entry of the events up
    /// to it (0 for older layouts).
    pub(crate) asof: u64,
}

pub(crate) fn ring_newest(tree: &Tree, user: &UserId, tail: bool) -> Result<RingEnd> {
    if let Some(kv) = tree.scan_prefix(prefix(user.as_str())).next_back() {
        let (k, v) = kv.map_err(db_err)?;
        let (first, n) = codec::ring_item(user.as_str(), &k, &v)?;
        let fragment = k.as_ref() == codec::fragment_key(user.as_str(), first).as_slice();
        let (value, asof) = if fragment {
            codec::split_fragment(&v)?
        } else {
            (v.as_ref(), 0)
        };
        let tail = (tail && fragment && n < TAIL_MAX).then(|| Tail {
            first,
            value: value.to_vec(),
        });
        return Ok(RingEnd {
            head: first + n,
            tail,
            asof,
        });
    }
    let head = match tree.get(user.as_str()).map_err(db_err)? {
        Some(b) => legacy::bare_ring_head(&b)?,
        None => 0,
    };
    Ok(RingEnd {
        head,
        tail: None,
        asof: 0,
    })
}

/// Up to `limit` entries of `user`'s ring, newest first: the appends still in memory,
/// then the entries in sled that are still inside the ring.
pub(crate) fn read_ring<T>(
    tree: &Tree,
    pending: &[&RingPending],
    user: &UserId,
    cap: u64,
    limit: usize,
    f: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let keep_from = pending.first().map_or(0, |p| p.head.saturating_sub(cap));
    for p in pending {
        for (seq, v) in p.entries.iter().rev() {
            if out.len() >= limit || *seq < keep_from {
                break;
            }
            if v.len() < 8 {
                return Err(corrupt("ring entry"));
            }
            out.push(f(v)?);
        }
    }
    // Entries at `below` and above are in `out` already: written by a persist that
    // finished after the memory layers were read, or met in a newer fragment (a write
    // retried after a failed persist may leave an older fragment that the newest one
    // overlaps, see `RingPending::newest`). Going newest first, `below` only falls.
    let mut below = pending.last().map_or(u64::MAX, |p| p.base);
    // With nothing pending, sled's newest entry is the head's predecessor.
    let mut keep_from = (!pending.is_empty()).then_some(keep_from);
    'scan: for kv in tree.scan_prefix(prefix(user.as_str())).rev() {
        if out.len() >= limit {
            break;
        }
        let (k, v) = kv.map_err(db_err)?;
        let (first, n) = codec::ring_item(user.as_str(), &k, &v)?;
        let keep = *keep_from.get_or_insert((first + n).saturating_sub(cap));
        let entries = if n == 1 && k.len() == user.as_str().len() + 9 {
            vec![v.as_ref()]
        } else {
            codec::decode_fragment(&v)?
        };
        for (i, e) in entries.iter().enumerate().rev() {
            let seq = first + i as u64;
            if out.len() >= limit || seq < keep {
                break 'scan;
            }
            if seq >= below {
                continue;
            }
            if e.len() < 8 {
                return Err(corrupt("ring entry"));
            }
            out.push(f(e)?);
            below = seq;
        }
    }
    Ok(out)
}
