//! The TEXMEX vector file formats used by ANN benchmarks: `.fvecs` (each vector is a
//! little-endian `i32` dimension followed by that many `f32`s) and `.ivecs` (the same
//! with `i32` values, used for ground-truth neighbour lists).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use steerfeed::ann::{Error, Result};

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
        if d <= 0 || d > 1 << 16 {
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

/// Reads up to `limit` vectors from an `.fvecs` file: `(row-major values, dim)`.
pub fn read_fvecs(path: &Path, limit: Option<usize>) -> Result<(Vec<f32>, usize)> {
    let (v, dim) = read_rows(path, limit, f32::from_le_bytes)?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(bad(path, format!("value {i} is not finite")));
    }
    Ok((v, dim))
}

/// Reads up to `limit` rows from an `.ivecs` file: `(row-major values, row length)`.
pub fn read_ivecs(path: &Path, limit: Option<usize>) -> Result<(Vec<i32>, usize)> {
    read_rows(path, limit, i32::from_le_bytes)
}

fn write_rows<T: Copy>(
    path: &Path,
    values: &[T],
    dim: usize,
    encode: fn(T) -> [u8; 4],
) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(io)?);
    let d = i32::try_from(dim).map_err(|_| bad(path, "dimension too large"))?;
    for row in values.chunks_exact(dim.max(1)) {
        w.write_all(&d.to_le_bytes()).map_err(io)?;
        for &x in row {
            w.write_all(&encode(x)).map_err(io)?;
        }
    }
    w.flush().map_err(io)
}

/// Writes row-major vectors as `.fvecs`.
pub fn write_fvecs(path: &Path, values: &[f32], dim: usize) -> Result<()> {
    write_rows(path, values, dim, f32::to_le_bytes)
}

/// Writes row-major integer rows as `.ivecs`.
pub fn write_ivecs(path: &Path, values: &[i32], dim: usize) -> Result<()> {
    write_rows(path, values, dim, i32::to_le_bytes)
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
}
