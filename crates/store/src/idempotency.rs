//! Idempotency keys: which event keys the log holds, as segments of key hashes in
//! `event_keys` and an in-memory index of them, so checking a batch's keys reads no sled
//! key (a hash hit is confirmed against the log).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};

use sled::Tree;
use steerfeed_core::{EventKey, Result};

use crate::codec::{self, corrupt};
use crate::trees::WATERMARK_KEY;
use crate::trees::db_err;

/// The first byte of an idempotency-key segment's key in `event_keys` (then the first
/// event sequence number of the segment, `u64` BE). `0xFE` never starts a UTF-8 key, so
/// segments never meet the one-key-per-entry records of schema version 3 and older.
pub(crate) const KEY_SEGMENT: u8 = 0xFE;

/// Idempotency keys per segment: 16 bytes each, so a segment stays a few KiB.
pub(crate) const SEGMENT_KEYS: usize = 256;

/// A stable 64-bit hash of an idempotency key (FNV-1a, then a finalising mix). Stored
/// in `event_keys` segments, so it must never change.
pub(crate) fn key_hash(k: &[u8]) -> u64 {
    let mut h = steerfeed_core::hash::Fnv1a::of(k);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Passes an already mixed `u64` hash through.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Every logged idempotency key, in memory: the key's hash → the sequence number of
/// the event logged under it. A hash hit is confirmed against the log (the event at
/// that number must carry the key), so the answer is exact; a key whose hash an older
/// key already has (practically never) is kept whole in `overflow`.
///
/// Checking a batch's keys then costs no sled read, and the `event_keys` tree gets one
/// segment per 256 keys (`hash u64 LE | seq u64 LE` each) instead of one entry per key.
/// Opening reads the segments (and any one-key entries of older stores) back.
#[derive(Default)]
pub(crate) struct KeyIndex {
    by_hash: HashMap<u64, u64, BuildHasherDefault<PassThrough>>,
    overflow: HashMap<EventKey, u64>,
}

impl KeyIndex {
    /// The sequence number of the logged event with key `k`, if there is one.
    pub fn find(&self, k: &EventKey, log: &Tree) -> Result<Option<u64>> {
        self.find_hashed(key_hash(k.as_str().as_bytes()), k, log)
    }

    fn find_hashed(&self, h: u64, k: &EventKey, log: &Tree) -> Result<Option<u64>> {
        if let Some(&seq) = self.overflow.get(k) {
            return Ok(Some(seq));
        }
        let Some(&seq) = self.by_hash.get(&h) else {
            return Ok(None);
        };
        Ok(match crate::log::logged_event(log, seq)? {
            Some(e) if e.key == *k => Some(seq),
            _ => None,
        })
    }

    /// Adds key `k` (not in the index: [`KeyIndex::find`] said so) logged at `seq`.
    pub fn add(&mut self, h: u64, k: &EventKey, seq: u64) {
        match self.by_hash.entry(h) {
            Entry::Vacant(v) => {
                v.insert(seq);
            }
            Entry::Occupied(o) if *o.get() == seq => {}
            Entry::Occupied(_) => {
                self.overflow.insert(k.clone(), seq);
            }
        }
    }

    /// Forgets key `k` logged at `seq` (the event was erased).
    pub fn forget(&mut self, k: &EventKey, seq: u64) {
        let h = key_hash(k.as_str().as_bytes());
        if self.by_hash.get(&h) == Some(&seq) {
            self.by_hash.remove(&h);
        }
        if self.overflow.get(k) == Some(&seq) {
            self.overflow.remove(k);
        }
    }

    /// Adds a stored entry (hash, seq); a hash already taken by another event's key is
    /// resolved by reading the key from the log.
    fn add_stored(&mut self, h: u64, seq: u64, log: &Tree) -> Result<()> {
        match self.by_hash.entry(h) {
            Entry::Vacant(v) => {
                v.insert(seq);
            }
            Entry::Occupied(o) if *o.get() == seq => {}
            Entry::Occupied(_) => {
                let e = crate::log::logged_event(log, seq)?
                    .ok_or_else(|| corrupt("idempotency key"))?;
                self.overflow.insert(e.key, seq);
            }
        }
        Ok(())
    }

    /// Reads the keys stored in `tree` (segments, and single keys of older stores).
    pub(crate) fn load(tree: &Tree, log: &Tree) -> Result<KeyIndex> {
        let mut ix = KeyIndex::default();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(db_err)?;
            if k.as_ref() == WATERMARK_KEY {
                continue;
            }
            if k.first() == Some(&KEY_SEGMENT) {
                if v.len() % 16 != 0 {
                    return Err(corrupt("idempotency key segment"));
                }
                for e in v.chunks_exact(16) {
                    let h = codec::u64_le(e, 0).ok_or_else(|| corrupt("idempotency key"))?;
                    let seq = codec::u64_le(e, 8).ok_or_else(|| corrupt("idempotency key"))?;
                    ix.add_stored(h, seq, log)?;
                }
            } else {
                let seq = crate::legacy::single_key_seq(&v)?;
                ix.add_stored(key_hash(&k), seq, log)?;
            }
        }
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steerfeed_core::{Event, EventKind, UserId, VideoId};

    fn event(key: &str) -> Event {
        Event {
            key: EventKey::new(key).unwrap(),
            user: UserId::new("u").unwrap(),
            at: jiff::Timestamp::from_second(1_795_000_000).unwrap(),
            kind: EventKind::Like {
                video: VideoId::new("v").unwrap(),
            },
        }
    }

    #[test]
    fn key_index_is_exact_even_when_hashes_collide() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let log = db.open_tree("events").unwrap();
        let keys = db.open_tree("event_keys").unwrap();
        let (k1, k2, k3) = (event("k1"), event("k2"), event("k3"));
        log.insert(1u64.to_be_bytes(), codec::encode_events([&k1].into_iter()))
            .unwrap();
        log.insert(
            2u64.to_be_bytes(),
            codec::encode_events([&k2, &k3].into_iter()),
        )
        .unwrap();
        // k1 and k2 are made to share a hash; k3 has its own.
        let mut ix = KeyIndex::default();
        ix.add(42, &k1.key, 1);
        ix.add(42, &k2.key, 2);
        ix.add(key_hash(b"k3"), &k3.key, 3);
        assert_eq!(ix.find_hashed(42, &k1.key, &log).unwrap(), Some(1));
        assert_eq!(ix.find_hashed(42, &k2.key, &log).unwrap(), Some(2));
        assert_eq!(ix.find(&k3.key, &log).unwrap(), Some(3));
        // A key whose hash is taken by another key is not reported as logged.
        let k4 = EventKey::new("k4").unwrap();
        assert_eq!(ix.find_hashed(42, &k4, &log).unwrap(), None);
        assert_eq!(ix.find(&k4, &log).unwrap(), None);

        // Stored as segments (and an old one-key entry), the same index loads back.
        let mut v = Vec::new();
        for (h, seq) in [(42u64, 2u64), (42, 1)] {
            v.extend_from_slice(&h.to_le_bytes());
            v.extend_from_slice(&seq.to_le_bytes());
        }
        let mut b = sled::Batch::default();
        b.insert([KEY_SEGMENT, 0, 0, 0, 0, 0, 0, 0, 1].as_slice(), v);
        b.insert("k3", &3u64.to_be_bytes());
        b.insert(WATERMARK_KEY, &3u64.to_be_bytes());
        keys.apply_batch(b).unwrap();
        let back = KeyIndex::load(&keys, &log).unwrap();
        assert_eq!(back.find_hashed(42, &k1.key, &log).unwrap(), Some(1));
        assert_eq!(back.find_hashed(42, &k2.key, &log).unwrap(), Some(2));
        assert_eq!(back.find(&k3.key, &log).unwrap(), Some(3));
        assert_eq!(back.find(&k4, &log).unwrap(), None);
    }

    #[test]
    fn key_hash_is_stable() {
        // Stored in the `event_keys` segments: these values must never change.
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_eq!(key_hash(b"k1"), 5_344_419_171_240_651_093);
    }
}
