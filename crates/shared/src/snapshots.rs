//! Vector index snapshots in a directory every replica of a deployment reads (a local
//! directory on one machine; a shared file system between machines).
//!
//! One replica at a time writes them: the one holding the deployment's PostgreSQL
//! advisory lock ([`crate::SharedStore::try_lead`]). A snapshot is the engine's own index
//! file (versioned and checksummed by `steerfeed-ann`, checked when it loads), named
//! `index-<catalog version>-<graph changes>.hnsw` (the changes count the writer's
//! rebuilds and folds, so a graph rebuilt at the same catalogue version is a newer
//! snapshot; a name without them, from an older build, reads as 0), written beside its
//! final name and renamed into place, so a reader never sees half of one; the newest
//! [`KEEP`] are kept. Every replica applies the same change log, so a snapshot taken at
//! catalogue version `v` on one is valid on all: a replica starting without an index file
//! of its own takes the newest snapshot at most its own version, and one serving takes a
//! newer one in the background; the engine replays the catalogue changes since (new
//! uploads and deletions) onto it, instead of building the graph from nothing.

use std::path::{Path, PathBuf};

use steerfeed_core::{Error, Result};

/// How many snapshots the directory keeps.
pub const KEEP: usize = 3;

const PREFIX: &str = "index-";
const SUFFIX: &str = ".hnsw";

/// What a snapshot holds: the catalogue version it reflects and the graph changes
/// (rebuilds plus folded vectors) of the index it was taken from; newer is greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// The catalogue version.
    pub version: u64,
    /// The writer's graph changes.
    pub changes: u64,
}

/// One deployment's snapshot directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable {
        what: format!("index snapshots: {what} {}: {e}", path.display()),
    }
}

impl Snapshots {
    /// The directory of `namespace`'s snapshots under `root`, created when missing.
    pub fn open(root: &Path, namespace: &str) -> Result<Snapshots> {
        let dir = root.join(namespace);
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        Ok(Snapshots { dir })
    }

    /// The snapshots present, oldest first, with their catalogue versions and graph
    /// changes.
    pub fn list(&self) -> Result<Vec<(Stamp, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io("reading", &self.dir, e))? {
            let entry = entry.map_err(|e| io("reading", &self.dir, e))?;
            let name = entry.file_name();
            let stamp = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| {
                    let (v, c) = n.split_once('-').unwrap_or((n, "0"));
                    Some(Stamp {
                        version: v.parse().ok()?,
                        changes: c.parse().ok()?,
                    })
                });
            if let Some(s) = stamp {
                found.push((s, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The newest snapshot taken at catalogue version `version` or before.
    pub fn newest_at_most(&self, version: u64) -> Result<Option<(Stamp, PathBuf)>> {
        Ok(self
            .list()?
            .into_iter()
            .rev()
            .find(|(s, _)| s.version <= version))
    }

    /// Writes a snapshot: `write` saves the index to the path it is given and answers
    /// what it saved; the file is then renamed to its name, and snapshots beyond the
    /// newest [`KEEP`] are removed. A stamp whose version a snapshot present has already,
    /// with as many changes or more, takes one change more than it (another writer's
    /// counts, before this one led): the newest write is the newest snapshot. Answers the
    /// stamp written.
    pub fn publish(&self, write: impl FnOnce(&Path) -> Result<Stamp>) -> Result<Stamp> {
        let present = self.list()?;
        let tmp = self
            .dir
            .join(format!(".writing-{}-{}", std::process::id(), nanos()));
        let mut stamp = match write(&tmp) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Some((same, _)) = present
            .iter()
            .rev()
            .find(|(s, _)| s.version == stamp.version)
        {
            stamp.changes = stamp.changes.max(same.changes + 1);
        }
        let dest = self.dir.join(format!(
            "{PREFIX}{:020}-{:020}{SUFFIX}",
            stamp.version, stamp.changes
        ));
        std::fs::rename(&tmp, &dest).map_err(|e| io("renaming", &dest, e))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let all = self.list()?;
        for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
            if let Err(e) = std::fs::remove_file(old) {
                tracing::warn!(file = %old.display(), error = %e, "cannot remove an old index snapshot");
            }
        }
        Ok(stamp)
    }

    /// Copies the newest snapshot taken at most at `version` to `dest`, when `dest` does
    /// not exist (a replica starting without an index file); answers what it copied.
    pub fn install(&self, dest: &Path, version: u64) -> Result<Option<Stamp>> {
        if dest.exists() {
            return Ok(None);
        }
        let Some((v, src)) = self.newest_at_most(version)? else {
            return Ok(None);
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        let tmp = dest.with_extension(format!("installing-{}", nanos()));
        std::fs::copy(&src, &tmp).map_err(|e| io("copying", &src, e))?;
        std::fs::rename(&tmp, dest).map_err(|e| io("renaming", dest, e))?;
        Ok(Some(v))
    }
}

/// Nanoseconds since the epoch: unique enough for a temporary name.
pub(crate) fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn at(version: u64, changes: u64) -> Stamp {
        Stamp { version, changes }
    }

    #[test]
    fn the_newest_three_are_kept_and_a_replica_takes_the_newest_it_can_use() {
        let root = tempfile::tempdir().unwrap();
        let s = Snapshots::open(root.path(), "ns").unwrap();
        // A graph rebuilt at the same catalogue version is newer (12 with 5 changes).
        for stamp in [
            at(3, 0),
            at(10, 1),
            at(7, 0),
            at(12, 2),
            at(12, 5),
            at(20, 6),
        ] {
            let got = s
                .publish(|p| {
                    std::fs::write(p, format!("snapshot {stamp:?}")).unwrap();
                    Ok(stamp)
                })
                .unwrap();
            assert_eq!(got, stamp);
        }
        let kept: Vec<Stamp> = s.list().unwrap().into_iter().map(|(v, _)| v).collect();
        assert_eq!(kept, vec![at(12, 2), at(12, 5), at(20, 6)]);
        // A failed write leaves nothing behind.
        assert!(
            s.publish(|p| {
                std::fs::write(p, "half").unwrap();
                Err(Error::internal("test", "disk full"))
            })
            .is_err()
        );
        assert_eq!(std::fs::read_dir(&s.dir).unwrap().count(), 3);
        // A name an older build wrote, without graph changes, reads as none.
        std::fs::write(s.dir.join(format!("{PREFIX}{:020}{SUFFIX}", 14)), "old").unwrap();
        assert_eq!(s.newest_at_most(19).unwrap().unwrap().0, at(14, 0));
        // A replica at version 13 takes the newest graph of 12; one that has a file
        // keeps it.
        let dest = root.path().join("replica/index.hnsw");
        assert_eq!(s.install(&dest, 13).unwrap(), Some(at(12, 5)));
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            format!("snapshot {:?}", at(12, 5))
        );
        assert_eq!(s.install(&dest, 25).unwrap(), None);
        // None older than the replica: nothing to take.
        let other = root.path().join("other/index.hnsw");
        assert_eq!(s.install(&other, 5).unwrap(), None);
        assert!(!other.exists());
        // Another writer's graph of version 20 with fewer changes is still the newest.
        let again = s
            .publish(|p| {
                std::fs::write(p, "another writer").unwrap();
                Ok(at(20, 1))
            })
            .unwrap();
        assert_eq!(again, at(20, 7));
        assert_eq!(s.newest_at_most(20).unwrap().unwrap().0, at(20, 7));
    }
}
