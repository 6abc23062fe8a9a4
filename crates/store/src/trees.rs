//! The sled trees of a store and the atomic write of one logical change.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Db, Tree};
use steerfeed_core::{Error, Result};

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
}

/// Every tree name, in the order of [`Trees`].
pub(crate) const TREE_NAMES: [&str; 27] = [
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
