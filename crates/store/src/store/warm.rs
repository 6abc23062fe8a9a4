//! Filling the resident mirror of the per-user derived trees (`resident.rs`) after open.

use std::collections::HashMap;

use steerfeed_core::Result;

use crate::codec::{self, Decayed};
use crate::resident::{MAX_RESIDENT_USERS, ResidentUser};
use crate::rings::ring_tail;
use crate::trees::db_err;

use super::{Store, user_of};

/// Users read per chunk of [`Store::warm_resident`] (each chunk holds the write lock).
const CHUNK: usize = 512;

/// The owner of a key in a per-user tree: the bytes before the first `\0` (all of
/// them for a bare user key), and whether the key was bare.
fn owner(k: &[u8]) -> (&[u8], bool) {
    match k.iter().position(|&b| b == codec::SEP) {
        Some(i) => (&k[..i], false),
        None => (k, true),
    }
}

impl Store {
    /// Reads the per-user derived state of the known users (in key order, up to
    /// [`MAX_RESIDENT_USERS`]) into the resident mirror, and their time zones into the
    /// write path's zone cache; stops early when the store closes. Returns how many
    /// users were read.
    pub(crate) fn warm_resident(&self) -> Result<usize> {
        let t = self.t();
        let mut keys = t.users.iter().keys();
        let mut n = 0;
        loop {
            if self.inner.closing() {
                break;
            }
            let room = MAX_RESIDENT_USERS.saturating_sub(self.overlay_read().resident.len());
            let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
            for k in keys.by_ref().take(CHUNK.min(room)) {
                chunk.push(k.map_err(db_err)?.to_vec());
            }
            if chunk.is_empty() {
                break;
            }
            n += chunk.len();
            self.warm_resident_chunk(&chunk)?;
        }
        Ok(n)
    }

    /// Reads the state of `users` (sorted user keys) into the resident mirror.
    pub(crate) fn warm_resident_chunk(&self, users: &[Vec<u8>]) -> Result<()> {
        let (Some(lo), Some(last)) = (users.first(), users.last()) else {
            return Ok(());
        };
        // Every key of the users from `lo` to `last` (a user's keys are the bare id and
        // `id \0 ...`, and ids hold no control character).
        let mut hi = last.clone();
        hi.push(1);
        let range = lo.as_slice()..hi.as_slice();
        let mut got: HashMap<&[u8], ResidentUser> = users
            .iter()
            .map(|u| (u.as_slice(), ResidentUser::default()))
            .collect();
        let dim = self.options().dim;
        let t = self.t();
        // No derived write reaches sled while both are held (the persister takes the
        // persist lock, writers the write lock), so what is read here is sled's state.
        let _p = self.persist_lock();
        let _g = self.write_lock();
        for kv in t.wellbeing.range(range.clone()) {
            let (k, v) = kv.map_err(db_err)?;
            if let Some(r) = got.get_mut(k.as_ref()) {
                r.wellbeing = Some(codec::decode_wellbeing(&v)?.0);
            }
        }
        for kv in t.interest.range(range.clone()) {
            let (k, v) = kv.map_err(db_err)?;
            if let Some(r) = got.get_mut(k.as_ref()) {
                r.interest = Some(codec::decode_interest(&v, dim)?.0);
            }
        }
        for kv in t.affinity.range(range.clone()) {
            let (k, v) = kv.map_err(db_err)?;
            let (u, bare) = owner(&k);
            if bare {
                continue;
            }
            if let Some(r) = got.get_mut(u) {
                let creator = user_of(&k[u.len() + 1..])?;
                r.affinity.insert(creator, Decayed::decode(&v)?);
            }
        }
        let mut ids = Vec::with_capacity(got.len());
        for (u, mut r) in got {
            let id = user_of(u)?;
            // One reverse seek per ring (a forward scan would read every fragment).
            (r.seen_head, r.seen_tail) = ring_tail(&t.seen, &id)?;
            (r.history_head, r.history_tail) = ring_tail(&t.history, &id)?;
            ids.push((id, r));
        }
        // Time zones for the write path (cached only under the write lock; the cache
        // starts over past its bound, so stop short of it).
        for (id, _) in &ids {
            let full = self
                .inner
                .time_zones()
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len()
                >= super::MAX_CACHED_ZONES;
            if full {
                break;
            }
            self.time_zone_for_write(id)?;
        }
        let mut ov = self.overlay_write();
        for (id, r) in ids {
            ov.resident.insert(id, r);
        }
        Ok(())
    }
}
