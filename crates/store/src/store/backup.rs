//! A consistent copy of the store taken while it serves: sled's files copied once while
//! writes go on, then brought up to the instant at which no write can reach them (only
//! what changed since is rewritten), with the erasure log as it stood at that instant.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};

use steerfeed_core::storage::CopyInfo;

use super::*;

/// The unit in which a copy is compared with its source and rewritten.
const CHUNK: usize = 1 << 20;
/// Catch-up passes at most: reads keep sled's page housekeeping going, so under load the
/// files may never keep still for a whole pass.
const MAX_PASSES: u32 = 3;

impl Store {
    /// Copies the store's files into `dest` (a new directory, which [`Store::open`] can
    /// open) and the erasure log, as it stands at that moment, to `erasures`. Derived
    /// state still in memory is written out first and the files are copied while the
    /// store serves; then erasures, the persister and every writer wait while the copy
    /// is compared with the files and what changed meanwhile is rewritten (readers never
    /// wait), so that the copy is the store at one instant. A copy opened later replays
    /// the events its derived trees had not caught up with, as after a crash.
    pub fn copy_to(&self, dest: &Path, erasures: &Path) -> Result<CopyInfo> {
        self.copy_to_holding(dest, erasures, || ())
            .map(|(info, ())| info)
    }

    /// [`Store::copy_to`], calling `hold` once the bulk is copied and before anything of
    /// the store's own is held, and keeping what it answers until the copy is whole: a
    /// caller that is the store's only writer holds its own writes there (and reads
    /// where they stand), so the copy is the store at that point of the caller's.
    pub fn copy_to_holding<T>(
        &self,
        dest: &Path,
        erasures: &Path,
        hold: impl FnOnce() -> T,
    ) -> Result<(CopyInfo, T)> {
        let src =
            self.inner.path.clone().ok_or_else(|| {
                Error::internal("store", "a temporary store has no files to copy")
            })?;
        // Most of the derived state goes out, and most bytes are copied, before writers
        // are held up.
        self.flush()?;
        copy_dir(&src, dest, true)?;
        let caller = hold();
        let entries = self.inner.erasures.lock();
        let held_since = std::time::Instant::now();
        let held = self.hold_writes()?;
        // Every write of the store's is held, but sled's own housekeeping still moves
        // pages (consolidations that reads trigger, segment cleaning): the copy catches
        // up again until a whole pass finds nothing to rewrite and no file changed while
        // it ran (the files as they stood at one moment: `settled`), or for at most
        // `MAX_PASSES` passes, after which it is the files as that last pass read them.
        let (mut rewritten, mut passes) = (0, 0);
        let (bytes, sums, settled) = loop {
            let before = stamps(&src)?;
            let mut sums = Vec::new();
            let (bytes, r) = catch_up(&src, dest, &mut sums)?;
            rewritten += r;
            passes += 1;
            tracing::debug!(passes, rewritten = r, "store copy: a catch-up pass");
            // Nothing rewritten: each file's checksum is its copy's.
            if r == 0 && stamps(&src)? == before {
                break (bytes, sums, true);
            }
            if passes == MAX_PASSES {
                // Files copied whole in this pass were not checksummed: none are given.
                break (bytes, Vec::new(), false);
            }
        };
        tracing::info!(
            bytes,
            rewritten,
            passes,
            settled,
            "store copied; the writes made during the copy caught up"
        );
        let mut log = Vec::new();
        for e in entries.iter() {
            serde_json::to_writer(&mut log, e).map_err(|e| Error::internal("store", e))?;
            log.push(b'\n');
        }
        write_synced(erasures, &log)?;
        let info = CopyInfo {
            catalog_version: self.catalog_version(),
            events: self.event_count(),
            erasures: self.erasures_applied()?,
            bytes,
            writes_held_ms: 0,
            store_id: self.inner.store_id.clone(),
            settled,
            files: sums
                .into_iter()
                .filter_map(|(path, len, crc)| {
                    let rel = path.strip_prefix(dest).ok()?;
                    let rel = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    Some((rel, len, crc))
                })
                .collect(),
        };
        drop(held);
        drop(entries);
        let info = CopyInfo {
            writes_held_ms: u64::try_from(held_since.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..info
        };
        Ok((info, caller))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::internal("store", format!("copying {}: {e}", path.display()))
}

/// Copies the directory `src` to `dest` (created, and must not exist), each file synced;
/// the bytes copied.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<u64> {
    copy_dir(src, dest, false)
}

/// [`copy_tree`]; with `vanished_ok`, a file removed between the listing and its copy
/// (the source changing meanwhile) is left out instead of failing the copy.
fn copy_dir(src: &Path, dest: &Path, vanished_ok: bool) -> Result<u64> {
    fs::create_dir(dest).map_err(|e| io_error(dest, e))?;
    let mut bytes = 0;
    for entry in fs::read_dir(src).map_err(|e| io_error(src, e))? {
        let entry = entry.map_err(|e| io_error(src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io_error(&from, e))?;
        if kind.is_dir() {
            bytes += copy_dir(&from, &to, vanished_ok)?;
        } else if kind.is_file() {
            // `fs::copy` copies in the kernel (copy_file_range) where it can.
            match fs::copy(&from, &to) {
                Ok(n) => bytes += n,
                Err(e) if vanished_ok && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&from, e)),
            }
            fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error(&to, e))?;
        }
    }
    sync_dir(dest)?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Makes `dest`, a copy of the directory `src` taken while `src` changed, equal to it:
/// entries gone from `src` removed, new ones copied, and in every file each chunk that
/// differs rewritten, each changed file synced. Answers the bytes of `src` and the bytes
/// rewritten.
fn catch_up(src: &Path, dest: &Path, sums: &mut Vec<(PathBuf, u64, u32)>) -> Result<(u64, u64)> {
    for entry in fs::read_dir(dest).map_err(|e| io_error(dest, e))? {
        let entry = entry.map_err(|e| io_error(dest, e))?;
        if !src.join(entry.file_name()).exists() {
            let path = entry.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .map_err(|e| io_error(&path, e))?;
        }
    }
    let (mut bytes, mut rewritten) = (0, 0);
    for entry in fs::read_dir(src).map_err(|e| io_error(src, e))? {
        let entry = entry.map_err(|e| io_error(src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io_error(&from, e))?;
        if kind.is_dir() {
            let (b, r) = if to.is_dir() {
                catch_up(&from, &to, sums)?
            } else {
                let n = copy_tree(&from, &to)?;
                (n, n)
            };
            bytes += b;
            rewritten += r;
        } else if kind.is_file() {
            let (b, r, crc) = catch_up_file(&from, &to)?;
            sums.push((to, b, crc));
            bytes += b;
            rewritten += r;
        }
    }
    sync_dir(dest)?;
    Ok((bytes, rewritten))
}

/// Makes the file `to` equal to `from` chunk by chunk; answers `from`'s length, the bytes
/// rewritten and the CRC-32 of what it read of `from`.
fn catch_up_file(from: &Path, to: &Path) -> Result<(u64, u64, u32)> {
    let mut a = fs::File::open(from).map_err(|e| io_error(from, e))?;
    let mut b = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(to)
        .map_err(|e| io_error(to, e))?;
    let len = a.metadata().map_err(|e| io_error(from, e))?.len();
    let resized = b.metadata().map_err(|e| io_error(to, e))?.len() != len;
    b.set_len(len).map_err(|e| io_error(to, e))?;
    let (mut mine, mut theirs) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut at, mut rewritten) = (0u64, 0u64);
    let mut crc = crc32fast::Hasher::new();
    while at < len {
        let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
        a.read_exact(&mut mine[..n])
            .map_err(|e| io_error(from, e))?;
        crc.update(&mine[..n]);
        b.read_exact(&mut theirs[..n])
            .map_err(|e| io_error(to, e))?;
        if mine[..n] != theirs[..n] {
            b.seek(SeekFrom::Start(at))
                .and_then(|_| b.write_all(&mine[..n]))
                .map_err(|e| io_error(to, e))?;
            rewritten += n as u64;
        }
        at += n as u64;
    }
    if rewritten > 0 || resized {
        b.sync_all().map_err(|e| io_error(to, e))?;
    }
    Ok((len, rewritten, crc.finalize()))
}

/// Every file under `dir` with its length and modification time, in path order: what
/// tells whether anything wrote to the files between two looks.
fn stamps(dir: &Path) -> Result<Vec<(PathBuf, u64, std::time::SystemTime)>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).map_err(|e| io_error(&d, e))? {
            let entry = entry.map_err(|e| io_error(&d, e))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let modified = meta.modified().map_err(|e| io_error(&path, e))?;
                out.push((path, meta.len(), modified));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `bytes` to the file `path` (made anew) and syncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    out.push((
                        p.strip_prefix(root).unwrap().display().to_string(),
                        Vec::new(),
                    ));
                    dirs.push(p);
                } else {
                    let name = p.strip_prefix(root).unwrap().display().to_string();
                    out.push((name, fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_copy_taken_while_the_source_changed_catches_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        fs::create_dir_all(src.join("blobs")).unwrap();
        let big: Vec<u8> = (0..(3 * CHUNK + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        fs::write(src.join("db"), &big).unwrap();
        fs::write(src.join("conf"), b"segment_size: 524288").unwrap();
        fs::write(src.join("snap.1"), b"old snapshot").unwrap();
        fs::write(src.join("blobs/1"), b"a blob").unwrap();
        copy_dir(&src, &dest, true).unwrap();
        assert_eq!(tree(&src), tree(&dest));

        // Changes after the first copy: one chunk in the middle, a longer tail, a file
        // shortened, one gone, new ones (in a new directory too).
        let mut db = big.clone();
        db[CHUNK + 5] ^= 0xFF;
        db.extend_from_slice(&[9; 5000]);
        fs::write(src.join("db"), &db).unwrap();
        fs::write(src.join("conf"), b"seg").unwrap();
        fs::remove_file(src.join("snap.1")).unwrap();
        fs::write(src.join("snap.2"), b"new snapshot").unwrap();
        fs::create_dir_all(src.join("more")).unwrap();
        fs::write(src.join("more/x"), b"x").unwrap();
        fs::remove_file(src.join("blobs/1")).unwrap();
        fs::write(src.join("blobs/2"), b"another blob").unwrap();

        let mut sums = Vec::new();
        let (bytes, rewritten) = catch_up(&src, &dest, &mut sums).unwrap();
        assert_eq!(tree(&src), tree(&dest));
        let total: u64 = tree(&src).iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(bytes, total);
        // Only what changed was written: the changed chunk, the new tail's chunk and the
        // small files, not the unchanged chunks of `db`.
        assert!(rewritten < 2 * CHUNK as u64 + 100, "{rewritten}");
        assert!(rewritten >= CHUNK as u64, "{rewritten}");
        // Nothing left to do the second time.
        let mut sums = Vec::new();
        assert_eq!(catch_up(&src, &dest, &mut sums).unwrap().1, 0);
        // A pass that rewrote nothing checksummed every file as its copy stands.
        let files = tree(&src)
            .iter()
            .filter(|(n, _)| src.join(n).is_file())
            .count();
        assert_eq!(sums.len(), files);
        for (path, len, crc) in sums {
            let bytes = fs::read(&path).unwrap();
            assert_eq!(
                (len, crc),
                (bytes.len() as u64, crc32fast::hash(&bytes)),
                "{}",
                path.display()
            );
        }
    }
}
