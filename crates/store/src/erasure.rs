//! The erasure log: every person erased, in order, one JSON object a line, in a file
//! outside the store's directory on purpose (`Store::open`: `<db>.erasures.jsonl` beside
//! sled's directory; the engine: `<store.path>.erasures.jsonl`, or `store.erasure_log`).
//!
//! An erasure is first appended here (and fsynced), then carried out in the store in one
//! transaction that also records how many log entries the store has applied (`meta`
//! `erasures_applied`). Opening a store applies the entries after that count: an erasure
//! a crash cut short is finished, and a store directory restored from a copy made before
//! an erasure has it carried out again before anything reads it. The log keeps the
//! erased ids, when, and what was asked for their videos: nothing else about them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use steerfeed_core::{Error, OwnVideos, Result, Timestamp, UserId};

/// The erasure log's file beside the directory `dir`: `<dir>.erasures.jsonl` (`dir` is
/// resolved first, so that "." or a bare name still get a file outside it).
pub fn erasure_log_beside(dir: &Path) -> PathBuf {
    ErasureLog::path_for(&dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
}

/// One erased person.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureEntry {
    /// The person.
    pub user: UserId,
    /// When they were erased.
    pub at: Timestamp,
    /// What was done with their own videos.
    pub own_videos: OwnVideos,
    /// The identity of the store that erased them (left out by builds before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// The log: its file (none for a temporary store) and its entries.
pub(crate) struct ErasureLog {
    path: Option<PathBuf>,
    entries: Mutex<Vec<ErasureEntry>>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal("store", format!("erasure log {}: {e}", path.display()))
}

impl ErasureLog {
    /// `<store_dir>.erasures.jsonl`.
    fn path_for(store_dir: &Path) -> PathBuf {
        let mut name = store_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "store".into());
        name.push(".erasures.jsonl");
        store_dir.with_file_name(name)
    }

    /// Reads the log at `path` (none yet is an empty log). A last line without its
    /// newline is an append a crash cut short, never acknowledged: it is dropped and cut
    /// from the file. Any other unreadable line is an error.
    pub fn open(path: Option<PathBuf>) -> Result<Self> {
        let mut entries = Vec::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
                        Some(i) => &bytes[..=i],
                        None => &[][..],
                    };
                    for (n, line) in complete.lines().enumerate() {
                        let line = line.map_err(|e| io_err(p, e))?;
                        if line.trim().is_empty() {
                            continue;
                        }
                        let entry: ErasureEntry = serde_json::from_str(&line)
                            .map_err(|e| io_err(p, format!("line {}: {e}", n + 1)))?;
                        entries.push(entry);
                    }
                    if complete.len() != bytes.len() {
                        tracing::warn!(path = %p.display(), "erasure log: dropped a torn last line");
                        truncate(p, complete.len() as u64)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p, e)),
            }
        }
        Ok(Self {
            path,
            entries: Mutex::new(entries),
        })
    }

    /// The file, for messages.
    pub fn path_shown(&self) -> String {
        self.path.as_ref().map_or_else(
            || "(none: a temporary store)".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// The entries, locked: the lock serialises erasures.
    pub fn lock(&self) -> MutexGuard<'_, Vec<ErasureEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entry`, durable (file and directory synced) when it returns.
    pub fn append(&self, entries: &mut Vec<ErasureEntry>, entry: ErasureEntry) -> Result<()> {
        if let Some(p) = &self.path {
            let mut line = serde_json::to_vec(&entry).map_err(|e| io_err(p, e))?;
            line.push(b'\n');
            let created = !p.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io_err(p, e))?;
            let before = f.metadata().map_err(|e| io_err(p, e))?.len();
            let written = f
                .write_all(&line)
                .and_then(|()| f.sync_all())
                .and_then(
                    |()| match p.parent().filter(|d| created && !d.as_os_str().is_empty()) {
                        Some(dir) => std::fs::File::open(dir).and_then(|d| d.sync_all()),
                        None => Ok(()),
                    },
                );
            if let Err(e) = written {
                // Never leave part of a line for the next append to run into.
                let _ = f.set_len(before);
                return Err(io_err(p, e));
            }
        }
        entries.push(entry);
        Ok(())
    }
}

fn truncate(p: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(|e| io_err(p, e))?;
    f.set_len(len).map_err(|e| io_err(p, e))?;
    f.sync_all().map_err(|e| io_err(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(u: &str) -> ErasureEntry {
        ErasureEntry {
            user: UserId::new(u).unwrap(),
            at: Timestamp::UNIX_EPOCH,
            own_videos: OwnVideos::Keep,
            store: None,
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = ErasureLog::path_for(&dir.path().join("db"));
        assert_eq!(path, dir.path().join("db.erasures.jsonl"));
        let log = ErasureLog::open(Some(path.clone())).unwrap();
        let mut g = log.lock();
        log.append(&mut g, entry("a")).unwrap();
        log.append(&mut g, entry("b")).unwrap();
        drop(g);
        // A crash in the middle of a third append.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"user\": \"c\", \"at\"").unwrap();
        drop(f);
        let log = ErasureLog::open(Some(path.clone())).unwrap();
        assert_eq!(*log.lock(), vec![entry("a"), entry("b")]);
        let mut g = log.lock();
        log.append(&mut g, entry("d")).unwrap();
        drop(g);
        let log = ErasureLog::open(Some(path.clone())).unwrap();
        assert_eq!(*log.lock(), vec![entry("a"), entry("b"), entry("d")]);
        // A damaged complete line is an error, never an entry silently lost.
        std::fs::write(&path, b"{\"user\": \"a\"}\n").unwrap();
        assert!(ErasureLog::open(Some(path)).is_err());
    }
}
