//! A consistent copy of the store taken while it serves: sled's files copied while no
//! write can reach them, with the erasure log as it stood at that moment.

use std::fs;

use steerfeed_core::storage::CopyInfo;

use super::*;

impl Store {
    /// Copies the store's files into `dest` (a new directory, which [`Store::open`] can
    /// open) and the erasure log, as it stands at that moment, to `erasures`. Derived
    /// state still in memory is written out first; then erasures, the persister and
    /// every writer wait while the files are copied (readers do not), so that the copy
    /// is the store at one instant. A copy opened later replays the events its derived
    /// trees had not caught up with, as after a crash.
    pub fn copy_to(&self, dest: &Path, erasures: &Path) -> Result<CopyInfo> {
        let src =
            self.inner.path.clone().ok_or_else(|| {
                Error::internal("store", "a temporary store has no files to copy")
            })?;
        // Most of the derived state goes out before writers are held up.
        self.flush()?;
        let entries = self.inner.erasures.lock();
        let _held = self.hold_writes()?;
        self.inner.db.flush().map_err(db_err)?;
        let bytes = copy_tree(&src, dest)?;
        let mut log = Vec::new();
        for e in entries.iter() {
            serde_json::to_writer(&mut log, e).map_err(|e| Error::internal("store", e))?;
            log.push(b'\n');
        }
        write_synced(erasures, &log)?;
        Ok(CopyInfo {
            catalog_version: self.catalog_version(),
            events: self.event_count(),
            erasures: self.erasures_applied()?,
            bytes,
        })
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::internal("store", format!("copying {}: {e}", path.display()))
}

/// Copies the directory `src` to `dest` (created, and must not exist), each file synced;
/// the bytes copied.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<u64> {
    fs::create_dir(dest).map_err(|e| io_error(dest, e))?;
    let mut bytes = 0;
    for entry in fs::read_dir(src).map_err(|e| io_error(src, e))? {
        let entry = entry.map_err(|e| io_error(src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io_error(&from, e))?;
        if kind.is_dir() {
            bytes += copy_tree(&from, &to)?;
        } else if kind.is_file() {
            // `fs::copy` copies in the kernel (copy_file_range) where it can.
            bytes += fs::copy(&from, &to).map_err(|e| io_error(&from, e))?;
            fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error(&to, e))?;
        }
    }
    fs::File::open(dest)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dest, e))?;
    Ok(bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(path, e))
}
