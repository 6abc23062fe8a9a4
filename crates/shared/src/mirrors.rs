//! Snapshots of a replica's mirror, from which a replica starts instead of replaying
//! both logs from their beginning (so that the logs' retention and a start's time stop
//! growing with the deployment).
//!
//! A snapshot is a directory `mirror-<change version>-<stream sequence>` under
//! `<root>/<namespace>/mirrors/`: the mirror's store files (`store/`), its erasure log
//! (`erasures.jsonl`) and `position.json`, the two log positions the copy holds
//! everything up to and nothing after. It is written beside its final name and renamed
//! into place, so a reader never sees half of one; the newest [`KEEP`] are kept. The
//! replica holding the deployment's lead writes them ([`crate::SharedStore::save_mirror`]);
//! any replica opens from the newest ([`crate::SharedOptions::mirror_snapshots`]) and
//! catches up from its positions. An erasure removes every snapshot older than itself: a
//! snapshot holds people's records in the clear, and none may outlive their erasure.

use std::path::{Path, PathBuf};

use steerfeed_core::{Error, Result};

use crate::snapshots::nanos;

/// How many mirror snapshots the directory keeps.
pub const KEEP: usize = 3;

const PREFIX: &str = "mirror-";
const POSITION: &str = "position.json";
/// The store's files in a snapshot.
pub(crate) const STORE: &str = "store";
/// The store's erasure log in a snapshot.
pub(crate) const ERASURES: &str = "erasures.jsonl";
/// The latest relation writes the mirror applied (the `relations` module); a snapshot
/// written before there was one has none.
pub(crate) const RELATIONS: &str = "relations.json";

/// Where a mirror stands in the two logs: everything up to these, nothing after.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// The last change version applied.
    pub version: u64,
    /// The last stream sequence applied.
    pub seq: u64,
}

/// A mirror snapshot written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Where it stands.
    pub position: Position,
    /// The bytes of its store's files.
    pub bytes: u64,
    /// How long the process's applying of both logs waited while the copy settled, in
    /// milliseconds.
    pub held_ms: u64,
}

/// One deployment's mirror snapshot directory.
#[derive(Debug, Clone)]
pub struct MirrorSnapshots {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable {
        what: format!("mirror snapshots: {what} {}: {e}", path.display()),
    }
}

impl MirrorSnapshots {
    /// The directory of `namespace`'s mirror snapshots under `root`, created when
    /// missing.
    pub fn open(root: &Path, namespace: &str) -> Result<MirrorSnapshots> {
        let dir = root.join(namespace).join("mirrors");
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        Ok(MirrorSnapshots { dir })
    }

    /// The snapshots present, oldest first. A directory whose name and `position.json`
    /// disagree, or without one, is not a snapshot.
    pub fn list(&self) -> Result<Vec<(Position, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io("reading", &self.dir, e))? {
            let entry = entry.map_err(|e| io("reading", &self.dir, e))?;
            let named = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.split_once('-'))
                .and_then(|(v, s)| {
                    Some(Position {
                        version: v.parse().ok()?,
                        seq: s.parse().ok()?,
                    })
                });
            let Some(named) = named else { continue };
            let path = entry.path();
            if read_position(&path).ok() == Some(named) {
                found.push((named, path));
            }
        }
        found.sort();
        Ok(found)
    }

    /// The newest snapshot.
    pub fn newest(&self) -> Result<Option<(Position, PathBuf)>> {
        Ok(self.list()?.pop())
    }

    /// Writes a snapshot: `write` fills the directory it is given (created, empty) and
    /// answers the positions it holds; it is then renamed to its name and snapshots
    /// beyond the newest [`KEEP`] are removed. Answers the position written.
    pub(crate) fn publish(
        &self,
        write: impl FnOnce(&Path) -> Result<Position>,
    ) -> Result<Position> {
        let tmp = self
            .dir
            .join(format!(".writing-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir(&tmp).map_err(|e| io("creating", &tmp, e))?;
        let written = write(&tmp).and_then(|p| {
            let body = serde_json::to_vec(&p).map_err(|e| Error::internal("mirror snapshot", e))?;
            steerfeed_store::write_synced(&tmp.join(POSITION), &body)?;
            Ok(p)
        });
        let position = match written {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let dest = self.dir.join(format!(
            "{PREFIX}{:020}-{:020}",
            position.version, position.seq
        ));
        if dest.exists() {
            // The same positions again: the one present holds the same records.
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            std::fs::rename(&tmp, &dest).map_err(|e| io("renaming", &dest, e))?;
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        let all = self.list()?;
        for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
            remove(old);
        }
        Ok(position)
    }

    /// Removes every snapshot taken before change `version` (an erasure's), and every
    /// copy being written or removed (which may hold anything: a write in progress then
    /// fails): answers how many snapshots.
    pub fn remove_older_than(&self, version: u64) -> Result<usize> {
        let old: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|(p, _)| p.version < version)
            .collect();
        for (_, path) in &old {
            remove(path);
        }
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io("reading", &self.dir, e))? {
            let entry = entry.map_err(|e| io("reading", &self.dir, e))?;
            let partial = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(".writing-") || n.starts_with(".removing-"));
            if partial {
                remove(&entry.path());
            }
        }
        Ok(old.len())
    }
}

fn read_position(dir: &Path) -> Result<Position> {
    let file = dir.join(POSITION);
    let body = std::fs::read(&file).map_err(|e| io("reading", &file, e))?;
    serde_json::from_slice(&body).map_err(|e| Error::internal("mirror snapshot position", e))
}

/// Removes a snapshot: renamed out of the listing at once (so a half-removed one is
/// never listed), its files deleted on a thread of their own (the caller may hold the
/// process's log applier).
fn remove(path: &Path) {
    let gone = path.with_file_name(format!(".removing-{}", nanos()));
    let gone = if path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".removing-"))
    {
        path.to_path_buf()
    } else if let Err(e) = std::fs::rename(path, &gone) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove a mirror snapshot");
        }
        return;
    } else {
        gone
    };
    let spawned = std::thread::Builder::new()
        .name("mirror-snapshot-removal".into())
        .spawn(move || {
            if let Err(e) = std::fs::remove_dir_all(&gone)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %gone.display(), error = %e, "cannot remove a mirror snapshot");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start removing a mirror snapshot");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn write(s: &MirrorSnapshots, version: u64, seq: u64) -> Result<Position> {
        s.publish(|dir| {
            std::fs::write(dir.join("marker"), format!("{version} {seq}")).unwrap();
            Ok(Position { version, seq })
        })
    }

    #[test]
    fn the_newest_three_are_kept_and_an_erasure_removes_the_older_ones() {
        let root = tempfile::tempdir().unwrap();
        let s = MirrorSnapshots::open(root.path(), "ns").unwrap();
        assert!(s.newest().unwrap().is_none());
        for (v, q) in [(3, 10), (5, 12), (9, 40), (12, 41)] {
            write(&s, v, q).unwrap();
        }
        let kept: Vec<Position> = s.list().unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            kept,
            [(5, 12), (9, 40), (12, 41)].map(|(version, seq)| Position { version, seq })
        );
        let (newest, dir) = s.newest().unwrap().unwrap();
        assert_eq!(
            newest,
            Position {
                version: 12,
                seq: 41
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("marker")).unwrap(),
            "12 41"
        );
        assert_eq!(s.remove_older_than(10).unwrap(), 2);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn a_failed_write_or_a_directory_without_its_position_is_no_snapshot() {
        let root = tempfile::tempdir().unwrap();
        let s = MirrorSnapshots::open(root.path(), "ns").unwrap();
        let failed = s.publish(|_| Err(Error::internal("test", "disk full")));
        assert!(failed.is_err());
        // A directory named as one, but holding no position (or another's).
        let dir = root.path().join("ns/mirrors");
        std::fs::create_dir(dir.join(format!("{PREFIX}{:020}-{:020}", 7, 7))).unwrap();
        write(&s, 4, 4).unwrap();
        std::fs::rename(
            dir.join(format!("{PREFIX}{:020}-{:020}", 4, 4)),
            dir.join(format!("{PREFIX}{:020}-{:020}", 8, 8)),
        )
        .unwrap();
        assert!(s.list().unwrap().is_empty());
        // Nothing left behind by the failed write.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".writing")),
            "{names:?}"
        );
    }
}
