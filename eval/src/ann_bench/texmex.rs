//! The TEXMEX vector file formats used by ANN benchmarks: `.fvecs` (each vector is a
//! little-endian `i32` dimension followed by that many `f32`s) and `.ivecs` (the same
//! with `i32` values, used for ground-truth neighbour lists).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use steerfeed::ann::{Error, Result};

/// The largest dimension read or written.
pub const MAX_DIM: usize = 1 << 16;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_rows<T>(
    path: &Path,
    limit: Option<usize>,
    decode: fn([u8; 4]) -> T,
) -> Result<(Vec<T>, usize)> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    let mut dim = None;
    let mut rows = 0usize;
    let mut head = [0u8; 4];
    loop {
        if limit.is_some_and(|l| rows >= l) {
            break;
        }
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
        let d = i32::from_le_bytes(head);
        if d <= 0 || d as usize > MAX_DIM {
            return Err(bad(path, format!("row {rows}: dimension {d} out of range")));
        }
        let d = d as usize;
        if *dim.get_or_insert(d) != d {
            return Err(bad(
                path,
                format!("row {rows}: dimension {d} differs from the first row's"),
            ));
        }
        let mut buf = vec![0u8; d * 4];
        r.read_exact(&mut buf)
            .map_err(|_| bad(path, format!("row {rows} is truncated")))?;
        out.extend(
            buf.chunks_exact(4)
                .map(|b| decode([b[0], b[1], b[2], b[3]])),
        );
        rows += 1;
    }
    Ok((out, dim.unwrap_or(0)))
}

/// Reads up to `limit` vectors from an `.fvecs` file: `(row-major values, dim)`; an
/// empty file gives no vectors.
pub fn read_fvecs(path: &Path, limit: Option<usize>) -> Result<(Vec<f32>, usize)> {
    let empty = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if empty.len() == 0 {
        return Ok((Vec::new(), 0));
    }
    let file = FvecsFile::open(path)?;
    let mut values = Vec::new();
    for row in file.rows()?.take(limit.unwrap_or(usize::MAX)) {
        values.extend_from_slice(&row?);
    }
    Ok((values, file.dim()))
}

/// Reads up to `limit` rows from an `.ivecs` file: `(row-major values, row length)`.
pub fn read_ivecs(path: &Path, limit: Option<usize>) -> Result<(Vec<i32>, usize)> {
    read_rows(path, limit, i32::from_le_bytes)
}

fn write_ivecs_rows(path: &Path, values: &[i32], dim: usize) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(io)?);
    let d = i32::try_from(dim).map_err(|_| bad(path, "dimension too large"))?;
    for row in values.chunks_exact(dim.max(1)) {
        w.write_all(&d.to_le_bytes()).map_err(io)?;
        for &x in row {
            w.write_all(&x.to_le_bytes()).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

/// Writes row-major vectors as `.fvecs`.
pub fn write_fvecs(path: &Path, values: &[f32], dim: usize) -> Result<()> {
    let mut w = FvecsWriter::create(path, dim)?;
    for row in values.chunks_exact(dim.max(1)) {
        w.push(row)?;
    }
    w.finish()
}

/// Writes row-major integer rows as `.ivecs`.
pub fn write_ivecs(path: &Path, values: &[i32], dim: usize) -> Result<()> {
    write_ivecs_rows(path, values, dim)
}

/// Rows read between two calls that drop the read pages from the page cache.
const DROP_EVERY_ROWS: usize = 16_384;

/// An `.fvecs` file read row by row, never whole: a base set larger than memory.
#[derive(Debug, Clone)]
pub struct FvecsFile {
    path: PathBuf,
    rows: usize,
    dim: usize,
    drop_read_pages: bool,
}

impl FvecsFile {
    /// Opens `path`, reading its first row's dimension; the file's length must be a whole
    /// number of rows of that dimension.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut head = [0u8; 4];
        file.read_exact(&mut head).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(path, "no first row"),
            _ => io(e),
        })?;
        let d = i32::from_le_bytes(head);
        if d <= 0 || d as usize > MAX_DIM {
            return Err(bad(path, format!("row 0: dimension {d} out of range")));
        }
        let dim = d as usize;
        let row_bytes = 4 * (dim as u64 + 1);
        if len % row_bytes != 0 {
            return Err(bad(
                path,
                format!("{len} bytes is not a whole number of {dim}-dimension rows"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            rows: (len / row_bytes) as usize,
            dim,
            drop_read_pages: false,
        })
    }

    /// The same file, read so that the pages already read leave the page cache: a base
    /// larger than memory, streamed into a build that spills its own copy to disk,
    /// then does not push that copy's pages out.
    pub fn dropping_read_pages(mut self) -> Self {
        self.drop_read_pages = true;
        self
    }

    /// Rows in the file.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the file holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Dimension of every row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows in order, each checked (its dimension, finite values); reading stops
    /// at the first error.
    pub fn rows(&self) -> Result<impl Iterator<Item = Result<Vec<f32>>> + use<>> {
        let path = self.path.clone();
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let (dim, total, drop_pages) = (self.dim, self.rows, self.drop_read_pages);
        let row_bytes = 4 * (dim + 1);
        let mut row = 0usize;
        let mut buf = vec![0u8; row_bytes];
        let mut failed = false;
        Ok(std::iter::from_fn(move || {
            if failed || row >= total {
                return None;
            }
            if drop_pages && row > 0 && row.is_multiple_of(DROP_EVERY_ROWS) {
                let from = (row - DROP_EVERY_ROWS) * row_bytes;
                drop_cached_pages(r.get_ref(), from, DROP_EVERY_ROWS * row_bytes);
            }
            let read = match r.read_exact(&mut buf) {
                Ok(()) => decode_row(&path, row, dim, &buf),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Err(bad(&path, format!("row {row} is truncated")))
                }
                Err(source) => Err(Error::Io {
                    path: path.clone(),
                    source,
                }),
            };
            failed = read.is_err();
            row += 1;
            Some(read)
        }))
    }
}

/// Asks the kernel to drop `len` bytes of `file` from `from` out of the page cache. It
/// is advice: a page still dirty or mapped stays, and a refusal changes nothing read.
fn drop_cached_pages(file: &std::fs::File, from: usize, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (libc::off_t::try_from(from), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for the call's duration (borrowed from `file`), and
    // posix_fadvise reads no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), from, len, libc::POSIX_FADV_DONTNEED);
    }
}

fn decode_row(path: &Path, row: usize, dim: usize, buf: &[u8]) -> Result<Vec<f32>> {
    let d = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if usize::try_from(d).ok() != Some(dim) {
        return Err(bad(
            path,
            format!("row {row}: dimension {d} differs from the first row's"),
        ));
    }
    let values: Vec<f32> = buf[4..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = values.iter().position(|x| !x.is_finite()) {
        return Err(bad(path, format!("row {row}: value {i} is not finite")));
    }
    Ok(values)
}

/// Writes `.fvecs` one row at a time.
#[derive(Debug)]
pub struct FvecsWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    dim: usize,
}

impl FvecsWriter {
    /// Creates (or truncates) `path` for rows of `dim` values.
    pub fn create(path: &Path, dim: usize) -> Result<Self> {
        if dim == 0 || dim > MAX_DIM {
            return Err(bad(path, format!("dimension {dim} out of range")));
        }
        let file = std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            dim,
        })
    }

    /// Appends one row of exactly `dim` values.
    pub fn push(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.dim {
            return Err(bad(
                &self.path,
                format!("a row of {} values, not {}", row.len(), self.dim),
            ));
        }
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.out
            .write_all(&(self.dim as i32).to_le_bytes())
            .map_err(io)?;
        for &x in row {
            self.out.write_all(&x.to_le_bytes()).map_err(io)?;
        }
        Ok(())
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_and_ivecs_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.fvecs");
        let v = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        write_fvecs(&p, &v, 3).unwrap();
        assert_eq!(read_fvecs(&p, None).unwrap(), (v.clone(), 3));
        assert_eq!(read_fvecs(&p, Some(1)).unwrap(), (v[..3].to_vec(), 3));
        let q = dir.path().join("a.ivecs");
        write_ivecs(&q, &[1, 2, 3, 4], 2).unwrap();
        assert_eq!(read_ivecs(&q, None).unwrap(), (vec![1, 2, 3, 4], 2));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(matches!(read_fvecs(&p, None), Err(Error::BadFile { .. })));
        std::fs::write(&p, [0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(read_fvecs(&p, None), Err(Error::BadFile { .. })));
    }

    #[test]
    fn an_fvecs_file_streams_its_rows_and_damage_is_an_error_at_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.fvecs");
        let rows: Vec<Vec<f32>> = (0..5).map(|i| vec![i as f32, 0.5, -1.0]).collect();
        let mut w = FvecsWriter::create(&p, 3).unwrap();
        for r in &rows {
            w.push(r).unwrap();
        }
        assert!(w.push(&[1.0]).is_err());
        w.finish().unwrap();
        // TEXMEX's layout: each row a little-endian i32 dimension, then its floats.
        let want: Vec<u8> = rows
            .iter()
            .flat_map(|r| {
                let mut b = 3i32.to_le_bytes().to_vec();
                r.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
                b
            })
            .collect();
        assert_eq!(std::fs::read(&p).unwrap(), want);
        assert!(FvecsWriter::create(&dir.path().join("d.fvecs"), 0).is_err());
        let f = FvecsFile::open(&p).unwrap();
        assert_eq!((f.len(), f.dim()), (5, 3));
        let back: Vec<Vec<f32>> = f.rows().unwrap().map(Result::unwrap).collect();
        assert_eq!(back, rows);

        // A NaN in row 2, then a row of another dimension: the third row is an error
        // and nothing is read after it.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[2 * 16 + 8..2 * 16 + 12].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let read: Vec<_> = FvecsFile::open(&p).unwrap().rows().unwrap().collect();
        assert_eq!(read.len(), 3);
        assert!(read[2].is_err() && read[1].is_ok());
        bytes[2 * 16 + 8..2 * 16 + 12].copy_from_slice(&(-1.0f32).to_le_bytes());
        bytes[3 * 16..3 * 16 + 4].copy_from_slice(&4i32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let read: Vec<_> = FvecsFile::open(&p).unwrap().rows().unwrap().collect();
        assert_eq!(read.len(), 4);
        assert!(read[2].is_ok() && read[3].is_err());
        // A file that is not whole rows is refused at open.
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        assert!(matches!(FvecsFile::open(&p), Err(Error::BadFile { .. })));
        std::fs::write(&p, []).unwrap();
        assert!(FvecsFile::open(&p).is_err());
    }

    #[test]
    fn a_long_file_streams_every_row_while_its_read_pages_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("long.fvecs");
        // Past two drop boundaries and not a multiple of them, each row its own values.
        let n = 2 * DROP_EVERY_ROWS + 123;
        let row = |i: usize| vec![i as f32, -(i as f32) * 0.5, (i % 7) as f32];
        let mut w = FvecsWriter::create(&p, 3).unwrap();
        for i in 0..n {
            w.push(&row(i)).unwrap();
        }
        w.finish().unwrap();
        let f = FvecsFile::open(&p).unwrap().dropping_read_pages();
        let mut read = 0;
        for (i, got) in f.rows().unwrap().enumerate() {
            assert_eq!(got.unwrap(), row(i), "row {i}");
            read += 1;
        }
        assert_eq!(read, n);
        // Damage after the first boundary is still found at its row.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = (DROP_EVERY_ROWS + 5) * 16 + 4;
        bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let f = FvecsFile::open(&p).unwrap().dropping_read_pages();
        let rows: Vec<_> = f.rows().unwrap().collect();
        assert_eq!(rows.len(), DROP_EVERY_ROWS + 6);
        assert!(rows[DROP_EVERY_ROWS + 5].is_err());
        assert!(rows[..DROP_EVERY_ROWS + 5].iter().all(Result::is_ok));
    }
}
