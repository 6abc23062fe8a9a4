//! Backups and restores: a consistent copy of the store, the vector index and the
//! erasure log, taken while the engine serves, checksummed, and put back so that the
//! index need not be rebuilt and the people erased since are erased again.
//!
//! A backup is a directory:
//!
//! | file | what |
//! |---|---|
//! | `db/` | the store's files at one instant ([`Storage::copy_to`]) |
//! | `index.hnsw` | the vector index, at a catalog version no later than the store's |
//! | `erasures.jsonl` | the erasure log as it stood at that instant |
//! | `manifest.json` | versions, counts, and every file's length and CRC-32, written last |
//!
//! It is written into `<DIR>.partial` and renamed to `DIR` once complete, so a backup cut
//! short (a crash, a kill) never passes for one, and the next backup to `DIR` clears it.

use std::fs;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use steerfeed_core::{Error, Result, Timestamp};

use super::{Engine, INDEX_FILE, ann_error, io_error, lock};
use crate::Config;

/// The manifest's format version.
const BACKUP_FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const ERASURES: &str = "erasures.jsonl";
const DB: &str = "db";
/// The file that marks a directory as a backup being written (removed before the rename).
const PARTIAL_MARKER: &str = "in-progress";

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Its path inside the backup, `/`-separated.
    pub path: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Its CRC-32 (IEEE).
    pub crc32: u32,
}

/// A backup's manifest, and what [`Engine::backup`] answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The manifest's format version.
    pub format: u32,
    /// When the copy was taken.
    pub created_at: Timestamp,
    /// The store's catalog version in the copy.
    pub catalog_version: u64,
    /// The catalog version the copied vector index reflects (the open replays the rest).
    pub index_catalog_version: u64,
    /// Events in the copy's log.
    pub events: u64,
    /// Erasures the copy has carried out.
    pub erasures: u64,
    /// Bytes in all.
    pub bytes: u64,
    /// How long the store's writers waited while the copy was brought up to one
    /// instant, in milliseconds.
    pub writes_held_ms: u64,
    /// The identity of the store copied (its erasure log's entries name it).
    pub store_id: String,
    /// True when the store's files held still through a whole check of the copy; false
    /// when the copy is the files as the last of its checks read them (sled's own page
    /// housekeeping, which reads keep going, moved pages meanwhile). A restore checks
    /// that the copy opens with the event count and catalog version stated here.
    pub settled: bool,
    /// Every file but the manifest.
    pub files: Vec<BackupFile>,
}

/// What [`Engine::restore`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub backup: BackupManifest,
    /// The store directory restored into.
    pub store: PathBuf,
    /// The erasure log the restored store follows.
    pub erasure_log: PathBuf,
    /// Erasures made after the backup, carried out by the restore.
    pub erasures_after_backup: u64,
    /// Whether the vector index was loaded from the backup (rather than rebuilt).
    pub index_loaded: bool,
    /// Seconds the restore took, the open included.
    pub seconds: f64,
}

/// `path` made absolute, with its symbolic links resolved as far as it exists, and the
/// rest (which does not exist yet, so holds no link) appended as written. `path` holds no
/// `..` (the caller refuses one).
fn resolved(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut existing = path.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(up), Some(name)) => {
                rest.push(name.to_os_string());
                existing = up;
            }
            _ => return path,
        }
    }
}

/// A directory the caller named that cannot be made: the caller's to fix (no
/// permission, a file in the way, a read-only disk, a name the system refuses), or the
/// machine's (anything else).
fn dir_error(path: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied
        | K::NotADirectory
        | K::AlreadyExists
        | K::ReadOnlyFilesystem
        | K::InvalidInput
        | K::InvalidFilename => invalid("dir", format!("cannot create {}: {e}", path.display())),
        _ => io_error("backup", path, e),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::invalid(field, reason)
}

/// `path` with `suffix` added to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("backup", dir, e))
}

/// Every file under `root` (but `skip`), with its length and CRC-32, in path order.
fn checksums(root: &Path, skip: &str) -> Result<Vec<BackupFile>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| io_error("backup", &dir, e))? {
            let entry = entry.map_err(|e| io_error("backup", &dir, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| io_error("backup", &path, e))?;
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .map_err(|e| Error::internal("backup", e))?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel == skip {
                continue;
            }
            let (bytes, crc32) = crc_of(&path)?;
            out.push(BackupFile {
                path: rel,
                bytes,
                crc32,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn crc_of(path: &Path) -> Result<(u64, u32)> {
    let mut f = fs::File::open(path).map_err(|e| io_error("backup", path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error("backup", path, e))?;
        if n == 0 {
            return Ok((bytes, h.finalize()));
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
}

impl Engine {
    /// Writes a backup to the new directory `dir` while the engine serves: the vector
    /// index as it stands, then the store and the erasure log at one instant (the files
    /// copied while the store serves, then writers held while the copy catches up with
    /// what changed meanwhile; reads never wait), then every file's checksum. `dir` must not exist; a `<dir>.partial` left by
    /// a backup cut short is removed first.
    pub fn backup(&self, dir: &Path) -> Result<BackupManifest> {
        let _one = match self.backing_up.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(Error::Conflict {
                    entity: steerfeed_core::Entity::Backup,
                    id: dir.display().to_string(),
                    reason: "another backup is being written; try again when it is done".into(),
                });
            }
        };
        if dir.as_os_str().is_empty() {
            return Err(invalid("dir", "empty"));
        }
        if dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(invalid(
                "dir",
                format!(
                    "{} holds \"..\": name the directory without it",
                    dir.display()
                ),
            ));
        }
        if dir.exists() {
            return Err(invalid(
                "dir",
                format!(
                    "{} exists: a backup goes into a new directory",
                    dir.display()
                ),
            ));
        }
        let parent = match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("."),
        };
        let store = self
            .config
            .store
            .path
            .canonicalize()
            .map_err(|e| io_error("backup", &self.config.store.path, e))?;
        // Checked before anything is created: a refused backup leaves no directory behind.
        if resolved(&parent).starts_with(&store) {
            return Err(invalid(
                "dir",
                format!(
                    "{} is inside the store's directory: a backup goes elsewhere",
                    dir.display()
                ),
            ));
        }
        fs::create_dir_all(&parent).map_err(|e| dir_error(&parent, e))?;
        let partial = with_suffix(dir, ".partial");
        if partial.exists() {
            // Only what a backup cut short left is removed: it holds the marker.
            if !partial.join(PARTIAL_MARKER).exists() {
                return Err(invalid(
                    "dir",
                    format!(
                        "{} exists and is not a backup left unfinished: remove it or choose another name",
                        partial.display()
                    ),
                ));
            }
            fs::remove_dir_all(&partial).map_err(|e| io_error("backup", &partial, e))?;
        }
        fs::create_dir(&partial).map_err(|e| dir_error(&partial, e))?;
        fs::write(partial.join(PARTIAL_MARKER), b"")
            .map_err(|e| io_error("backup", &partial, e))?;
        let created_at = Timestamp::now();
        let (index_catalog_version, copy) = {
            // No index save (and so no trim of the catalog log) until the store is
            // copied: the copy's log then reaches back to the copied index's version.
            let _saving = lock(&self.index_file.saved);
            let snap = self.index.snapshot();
            snap.save(&partial.join(INDEX_FILE)).map_err(ann_error)?;
            let version = snap.catalog_version();
            // The snapshot shares the index's graph, which a fold waits on: let it go
            // before the (long) store copy.
            drop(snap);
            let copy = self
                .store
                .copy_to(&partial.join(DB), &partial.join(ERASURES))?;
            (version, copy)
        };
        fs::remove_file(partial.join(PARTIAL_MARKER))
            .map_err(|e| io_error("backup", &partial, e))?;
        // The store's files were checksummed as the copy was checked (when the store
        // did); the rest here.
        let mut files: Vec<BackupFile> = if copy.files.is_empty() {
            checksums(&partial, MANIFEST)?
                .into_iter()
                .filter(|f| f.path.starts_with(&format!("{DB}/")))
                .collect()
        } else {
            copy.files
                .iter()
                .map(|(path, bytes, crc32)| BackupFile {
                    path: format!("{DB}/{path}"),
                    bytes: *bytes,
                    crc32: *crc32,
                })
                .collect()
        };
        for name in [INDEX_FILE, ERASURES] {
            let (bytes, crc32) = crc_of(&partial.join(name))?;
            files.push(BackupFile {
                path: name.to_owned(),
                bytes,
                crc32,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = BackupManifest {
            format: BACKUP_FORMAT,
            created_at,
            catalog_version: copy.catalog_version,
            index_catalog_version,
            events: copy.events,
            erasures: copy.erasures,
            bytes: files.iter().map(|f| f.bytes).sum(),
            writes_held_ms: copy.writes_held_ms,
            store_id: copy.store_id.clone(),
            settled: copy.settled,
            files,
        };
        let text =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal("backup", e))?;
        let path = partial.join(MANIFEST);
        fs::write(&path, text)
            .and_then(|()| fs::File::open(&path).and_then(|f| f.sync_all()))
            .map_err(|e| io_error("backup", &path, e))?;
        sync_dir(&partial)?;
        fs::rename(&partial, dir).map_err(|e| io_error("backup", dir, e))?;
        sync_dir(&parent)?;
        Ok(manifest)
    }

    /// Reads the backup in `dir` and checks every file against its manifest.
    pub fn verify_backup(dir: &Path) -> Result<BackupManifest> {
        let path = dir.join(MANIFEST);
        let text = fs::read(&path).map_err(|e| {
            invalid(
                "backup",
                format!(
                    "{} is not a complete backup ({}: {e})",
                    dir.display(),
                    MANIFEST
                ),
            )
        })?;
        let manifest: BackupManifest = serde_json::from_slice(&text)
            .map_err(|e| invalid("backup", format!("{}: {e}", path.display())))?;
        if manifest.format != BACKUP_FORMAT {
            return Err(invalid(
                "backup",
                format!(
                    "{} has format {}; this steerfeed reads format {BACKUP_FORMAT}",
                    path.display(),
                    manifest.format
                ),
            ));
        }
        let found = checksums(dir, MANIFEST)?;
        if found != manifest.files {
            let bad = manifest
                .files
                .iter()
                .find(|f| !found.contains(f))
                .map(|f| f.path.clone())
                .or_else(|| {
                    found
                        .iter()
                        .find(|f| !manifest.files.contains(f))
                        .map(|f| f.path.clone())
                })
                .unwrap_or_default();
            return Err(invalid(
                "backup",
                format!(
                    "{} is damaged: {bad} differs from its manifest",
                    dir.display()
                ),
            ));
        }
        Ok(manifest)
    }

    /// Restores the backup in `dir` into `config.store.path`, which must not hold a
    /// store: checks every file, copies the store and the index, takes up the erasure
    /// log (the configured one when it exists, which must continue the backup's, else
    /// the backup's copy), then opens the engine once, which carries out the erasures
    /// made after the backup and brings the index up to the store.
    pub fn restore(dir: &Path, config: Config) -> Result<RestoreReport> {
        let started = Instant::now();
        let manifest = Self::verify_backup(dir)?;
        let target = config.store.path.clone();
        if target.exists() {
            let empty = fs::read_dir(&target)
                .map_err(|e| io_error("restore", &target, e))?
                .next()
                .is_none();
            if !empty {
                return Err(invalid(
                    "store.path",
                    format!(
                        "{} is not empty: restore into a new directory (move the old store away first)",
                        target.display()
                    ),
                ));
            }
        } else {
            fs::create_dir_all(&target).map_err(|e| io_error("restore", &target, e))?;
        }
        let log = match &config.store.erasure_log {
            Some(log) => log.clone(),
            None => steerfeed_store::erasure_log_beside(&target),
        };
        let backed_up = lines(&dir.join(ERASURES))?;
        let erasures_after_backup = if log.exists() {
            let live = lines(&log)?;
            if live.len() < backed_up.len() || live[..backed_up.len()] != backed_up[..] {
                return Err(invalid(
                    "store.erasure_log",
                    format!(
                        "{} does not continue the backup's erasure log: it belongs to another store",
                        log.display()
                    ),
                ));
            }
            // Each erasure after the backup must be this store's: a log another store
            // left at this path would erase people in this one.
            for line in &live[backed_up.len()..] {
                let entry: steerfeed_store::ErasureEntry = serde_json::from_str(line)
                    .map_err(|e| invalid("store.erasure_log", format!("{}: {e}", log.display())))?;
                if entry.store.as_deref() != Some(manifest.store_id.as_str()) {
                    return Err(invalid(
                        "store.erasure_log",
                        format!(
                            "{} lists an erasure by another store (or by a build that did not name its store): \
                             restore with an erasure log of this store's, or move it away to restore the backup's",
                            log.display()
                        ),
                    ));
                }
            }
            (live.len() as u64).saturating_sub(manifest.erasures)
        } else {
            fs::copy(dir.join(ERASURES), &log)
                .and_then(|_| fs::File::open(&log).and_then(|f| f.sync_all()))
                .map_err(|e| io_error("restore", &log, e))?;
            (backed_up.len() as u64).saturating_sub(manifest.erasures)
        };
        steerfeed_store::copy_tree(&dir.join(DB), &target.join(DB))?;
        fs::copy(dir.join(INDEX_FILE), target.join(INDEX_FILE))
            .map_err(|e| io_error("restore", &target, e))?;
        sync_dir(&target)?;
        let engine = Engine::open(config)?;
        // The copy holds every write the backup acknowledged, and nothing after.
        let (events, version) = (
            engine.store().event_count(),
            engine.store().catalog_version(),
        );
        if events != manifest.events || version < manifest.catalog_version {
            return Err(invalid(
                "backup",
                format!(
                    "{} restored to {events} events and catalog version {version}, but was taken at \
                     {} and {}: the copy is not the store it claims to be; restore another backup",
                    dir.display(),
                    manifest.events,
                    manifest.catalog_version
                ),
            ));
        }
        let index_loaded = !engine.index_open().rebuilt;
        drop(engine);
        Ok(RestoreReport {
            backup: manifest,
            store: target,
            erasure_log: log,
            erasures_after_backup,
            index_loaded,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The non-empty lines of a file.
fn lines(path: &Path) -> Result<Vec<String>> {
    let f = fs::File::open(path).map_err(|e| io_error("restore", path, e))?;
    std::io::BufReader::new(f)
        .lines()
        .filter(|l| !l.as_ref().is_ok_and(|l| l.trim().is_empty()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| io_error("restore", path, e))
}
