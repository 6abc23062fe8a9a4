//! The sled trees of a store and the atomic write of one logical change.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Db, Tree};
use steerfeed_core::{Error, Result};

use crate::codec::{self, corrupt, u64_of};

/// The key of a derived tree's watermark (`u64` BE). `0xFF` never starts a UTF-8 id, so
/// no id or prefix scan ever meets it.
pub(crate) const WATERMARK_KEY: &[u8] = b"\xff\xffapplied";

// Keys of the `meta` tree.
pub(crate) const HEADER_KEY: &[u8] = b"header";
pub(crate) const LIVE_VIDEOS_KEY: &[u8] = b"live_videos";
/// Meta key of the catalog version: bumped by every video upsert and deletion, so an
/// index saved beside the store can tell whether it is still current.
pub(crate) const CATALOG_VERSION_KEY: &[u8] = b"catalog_version";
/// Meta key of the catalog log's floor: `catalog_log` holds every change made at a
/// version above it.
pub(crate) const CATALOG_FLOOR_KEY: &[u8] = b"catalog_log_floor";
/// Keys removed per batch when the catalog log is trimmed (a batch holds sled's
/// process-wide write lock while it applies).
/// `meta`: how many erasure log entries the store has carried out (`u64` BE).
pub(crate) const ERASURES_APPLIED_KEY: &[u8] = b"erasures_applied";
/// `meta`: the store's identity, made when it is first opened and kept by its copies: the
/// erasure log's entries name it, so that a restore takes up only its own store's log.
pub(crate) const STORE_ID_KEY: &[u8] = b"store_id";
pub(crate) const TRIM_CHUNK: usize = 1024;

pub(crate) fn db_err(e: sled::Error) -> Error {
    Error::internal("store", e)
}

pub(crate) fn tx_err(e: TransactionError<()>) -> Error {
    match e {
        TransactionError::Storage(e) => db_err(e),
        TransactionError::Abort(()) => Error::internal("store", "transaction aborted"),
    }
}

pub(crate) struct Trees {
    pub meta: Tree,
    pub videos: Tree,
    pub embeddings: Tree,
    pub by_creator: Tree,
    pub newest: Tree,
    pub featuring: Tree,
    pub by_topic: Tree,
    pub users: Tree,
    pub follows: Tree,
    pub followers: Tree,
    pub blocks: Tree,
    pub mutes: Tree,
    pub consent: Tree,
    pub approved: Tree,
    pub revocations: Tree,
    pub parental: Tree,
    pub prefs: Tree,
    pub wellbeing: Tree,
    pub seen: Tree,
    pub history: Tree,
    pub counters: Tree,
    pub creator_counts: Tree,
    pub interest: Tree,
    pub affinity: Tree,
    pub events: Tree,
    pub event_keys: Tree,
    pub catalog_log: Tree,
    pub impressions: Tree,
}

/// Every tree name, in the order of [`Trees`].
pub(crate) const TREE_NAMES: [&str; 28] = [
    "meta",
    "videos",
    "embeddings",
    "by_creator",
    "newest",
    "featuring",
    "by_topic",
    "users",
    "follows",
    "followers",
    "blocks",
    "mutes",
    "consent",
    "approved",
    "revocations",
    "parental",
    "prefs",
    "wellbeing",
    "seen",
    "history",
    "counters",
    "creator_counts",
    "interest",
    "affinity",
    "events",
    "event_keys",
    "catalog_log",
    "impressions",
];

impl Trees {
    pub(crate) fn open(db: &Db) -> Result<Self> {
        let o = |name: &str| db.open_tree(name).map_err(db_err);
        Ok(Self {
            meta: o("meta")?,
            videos: o("videos")?,
            embeddings: o("embeddings")?,
            by_creator: o("by_creator")?,
            newest: o("newest")?,
            featuring: o("featuring")?,
            by_topic: o("by_topic")?,
            users: o("users")?,
            follows: o("follows")?,
            followers: o("followers")?,
            blocks: o("blocks")?,
            mutes: o("mutes")?,
            consent: o("consent")?,
            approved: o("approved")?,
            revocations: o("revocations")?,
            parental: o("parental")?,
            prefs: o("prefs")?,
            wellbeing: o("wellbeing")?,
            seen: o("seen")?,
            history: o("history")?,
            counters: o("counters")?,
            creator_counts: o("creator_counts")?,
            interest: o("interest")?,
            affinity: o("affinity")?,
            events: o("events")?,
            event_keys: o("event_keys")?,
            catalog_log: o("catalog_log")?,
            impressions: o("impressions")?,
        })
    }
}

/// The writes of one logical change, one batch per tree, committed atomically.
#[derive(Default)]
pub(crate) struct Writes<'a> {
    batches: Vec<(&'a Tree, Batch)>,
}

impl<'a> Writes<'a> {
    pub fn batch(&mut self, tree: &'a Tree) -> &mut Batch {
        let i = match self
            .batches
            .iter()
            .position(|(t, _)| std::ptr::eq(*t, tree))
        {
            Some(i) => i,
            None => {
                self.batches.push((tree, Batch::default()));
                self.batches.len() - 1
            }
        };
        &mut self.batches[i].1
    }

    pub fn insert(&mut self, tree: &'a Tree, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) {
        self.batch(tree).insert(k.as_ref(), v.as_ref());
    }

    pub fn remove(&mut self, tree: &'a Tree, k: impl AsRef<[u8]>) {
        self.batch(tree).remove(k.as_ref());
    }

    /// Applies everything atomically: one batch for one tree, a transaction for several.
    pub fn commit(self) -> Result<()> {
        match self.batches.len() {
            0 => Ok(()),
            1 => {
                let mut it = self.batches.into_iter();
                match it.next() {
                    Some((t, b)) => t.apply_batch(b).map_err(db_err),
                    None => Ok(()),
                }
            }
            _ => {
                let trees: Vec<&Tree> = self.batches.iter().map(|(t, _)| *t).collect();
                trees[..]
                    .transaction(|tx| {
                        for (t, (_, b)) in tx.iter().zip(&self.batches) {
                            t.apply_batch(b)?;
                        }
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)
            }
        }
    }
}

/// The trees derived from the log, each with its own watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived {
    EventKeys,
    Counters,
    CreatorCounts,
    Wellbeing,
    Interest,
    Affinity,
    Seen,
    History,
    Follows,
    Followers,
    Mutes,
}

impl Derived {
    pub const ALL: [Derived; 11] = [
        Derived::EventKeys,
        Derived::Counters,
        Derived::CreatorCounts,
        Derived::Wellbeing,
        Derived::Interest,
        Derived::Affinity,
        Derived::Seen,
        Derived::History,
        Derived::Follows,
        Derived::Followers,
        Derived::Mutes,
    ];

    pub fn tree(self, t: &Trees) -> &Tree {
        match self {
            Derived::EventKeys => &t.event_keys,
            Derived::Counters => &t.counters,
            Derived::CreatorCounts => &t.creator_counts,
            Derived::Wellbeing => &t.wellbeing,
            Derived::Interest => &t.interest,
            Derived::Affinity => &t.affinity,
            Derived::Seen => &t.seen,
            Derived::History => &t.history,
            Derived::Follows => &t.follows,
            Derived::Followers => &t.followers,
            Derived::Mutes => &t.mutes,
        }
    }

    #[cfg(feature = "test-hooks")]
    pub fn name(self) -> &'static str {
        match self {
            Derived::EventKeys => "event_keys",
            Derived::Counters => "counters",
            Derived::CreatorCounts => "creator_counts",
            Derived::Wellbeing => "wellbeing",
            Derived::Interest => "interest",
            Derived::Affinity => "affinity",
            Derived::Seen => "seen",
            Derived::History => "history",
            Derived::Follows => "follows",
            Derived::Followers => "followers",
            Derived::Mutes => "mutes",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of derived trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask(u16);

impl Mask {
    pub const ALL: Mask = Mask((1 << Derived::ALL.len()) - 1);
    pub const NONE: Mask = Mask(0);

    pub fn has(self, d: Derived) -> bool {
        self.0 & d.bit() != 0
    }

    pub fn with(self, d: Derived) -> Mask {
        Mask(self.0 | d.bit())
    }

    /// The trees whose watermark is below `seq`: those that still need event `seq`.
    pub fn needing(watermarks: &[u64; 11], seq: u64) -> Mask {
        Derived::ALL
            .iter()
            .zip(watermarks)
            .filter(|(_, wm)| **wm < seq)
            .fold(Mask::NONE, |m, (d, _)| m.with(*d))
    }
}

/// The watermark of `d`'s tree (0 when none is stored).
pub(crate) fn watermark(t: &Trees, d: Derived) -> Result<u64> {
    match d.tree(t).get(WATERMARK_KEY).map_err(db_err)? {
        Some(b) => u64_of(&b).ok_or_else(|| corrupt("watermark")),
        None => Ok(0),
    }
}

/// The sled writes of one derived tree in a persist: applied key by key
/// ([`KeyWrites::apply`]), not as one `sled::Batch`.
#[derive(Default)]
pub(crate) struct KeyWrites(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl KeyWrites {
    pub(crate) fn insert(&mut self, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.0.push((k.into(), Some(v.into())));
    }

    pub(crate) fn remove(&mut self, k: impl Into<Vec<u8>>) {
        self.0.push((k.into(), None));
    }

    /// Keys written or removed.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Writes up to `limit` keys into `tree`, each on its own, in key order, except that
    /// the keys of one owner (the part before `\0`) are inserted before any is removed:
    /// a ring's new newest fragment is in sled before the fragments that fell out of the
    /// ring go, so a crash between them never leaves a ring without its newest entries
    /// (readers skip what is left below the ring). No key is both inserted and removed
    /// by one persist.
    ///
    /// sled 0.34 applies a batch under its process-wide write lock, which also stops
    /// every reader: a persist's batch of 100,000 keys would stall the log append, the
    /// group-commit flush and every sled read for its whole length. Single inserts share
    /// that lock; what makes a torn persist safe instead is each record's as-of number
    /// and the watermark written last (`Store::write_layer`).
    pub(crate) fn apply(mut self, tree: &Tree, limit: usize) -> Result<()> {
        let owner =
            |k: &[u8]| -> usize { k.iter().position(|&c| c == codec::SEP).unwrap_or(k.len()) };
        self.0.sort_by(|a, b| {
            let (oa, ob) = (&a.0[..owner(&a.0)], &b.0[..owner(&b.0)]);
            (oa, a.1.is_none(), &a.0).cmp(&(ob, b.1.is_none(), &b.0))
        });
        for (k, v) in self.0.into_iter().take(limit) {
            match v {
                Some(v) => tree.insert(k, v).map(|_| ()),
                None => tree.remove(k).map(|_| ()),
            }
            .map_err(db_err)?;
        }
        Ok(())
    }
}
