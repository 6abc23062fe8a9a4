//! Vector index snapshots in a directory every replica of a deployment reads (a local
//! directory on one machine; a shared file system between machines).
//!
//! One replica at a time writes them: the one holding the deployment's PostgreSQL
//! advisory lock ([`crate::SharedStore::try_lead`]). A snapshot is the engine's own index
//! file (versioned and checksummed by `steerfeed-ann`, checked when it loads), named
//! `index-<catalog version>.hnsw`, written beside its final name and renamed into place,
//! so a reader never sees half of one; the newest [`KEEP`] are kept. Every replica
//! applies the same change log, so a snapshot taken at catalogue version `v` on one is
//! valid on all: a replica starting without an index file of its own takes the newest
//! snapshot at most its own version, and the engine replays the catalogue changes since
//! (new uploads and deletions) onto it, instead of building the graph from nothing.

use std::path::{Path, PathBuf};

use steerfeed_core::{Error, Result};

/// How many snapshots the directory keeps.
pub const KEEP: usize = 3;

const PREFIX: &str = "index-";
const SUFFIX: &str = ".hnsw";

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

    /// The snapshots present, oldest first, with their catalogue versions.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io("reading", &self.dir, e))? {
            let entry = entry.map_err(|e| io("reading", &self.dir, e))?;
            let name = entry.file_name();
            let version = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(v) = version {
                found.push((v, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The newest snapshot taken at catalogue version `version` or before.
    pub fn newest_at_most(&self, version: u64) -> Result<Option<(u64, PathBuf)>> {
        Ok(self.list()?.into_iter().rev().find(|(v, _)| *v <= version))
    }

    /// Writes a snapshot: `write` saves the index to the path it is given and answers
    /// the catalogue version saved; the file is then renamed to its name, and snapshots
    /// beyond the newest [`KEEP`] are removed. Answers the version.
    pub fn publish(&self, write: impl FnOnce(&Path) -> Result<u64>) -> Result<u64> {
        let tmp = self
            .dir
            .join(format!(".writing-{}-{}", std::process::id(), nanos()));
        let version = match write(&tmp) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let dest = self.dir.join(format!("{PREFIX}{version:020}{SUFFIX}"));
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
        Ok(version)
    }

    /// Copies the newest snapshot taken at most at `version` to `dest`, when `dest` does
    /// not exist (a replica starting without an index file); answers the version copied.
    pub fn install(&self, dest: &Path, version: u64) -> Result<Option<u64>> {
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

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_newest_three_are_kept_and_a_replica_takes_the_newest_it_can_use() {
        let root = tempfile::tempdir().unwrap();
        let s = Snapshots::open(root.path(), "ns").unwrap();
        for v in [3u64, 10, 7, 12, 20] {
            let got = s
                .publish(|p| {
                    std::fs::write(p, format!("snapshot {v}")).unwrap();
                    Ok(v)
                })
                .unwrap();
            assert_eq!(got, v);
        }
        let kept: Vec<u64> = s.list().unwrap().into_iter().map(|(v, _)| v).collect();
        assert_eq!(kept, vec![10, 12, 20]);
        // A failed write leaves nothing behind.
        assert!(
            s.publish(|p| {
                std::fs::write(p, "half").unwrap();
                Err(Error::internal("test", "disk full"))
            })
            .is_err()
        );
        assert_eq!(std::fs::read_dir(&s.dir).unwrap().count(), 3);
        // A replica at version 15 takes 12; one that has a file keeps it.
        let dest = root.path().join("replica/index.hnsw");
        assert_eq!(s.install(&dest, 15).unwrap(), Some(12));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "snapshot 12");
        assert_eq!(s.install(&dest, 25).unwrap(), None);
        // None older than the replica: nothing to take.
        let other = root.path().join("other/index.hnsw");
        assert_eq!(s.install(&other, 5).unwrap(), None);
        assert!(!other.exists());
    }
}
