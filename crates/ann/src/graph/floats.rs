//! The exact vectors beside a graph whose rows hold codes: in memory, or memory-mapped
//! from the index file they were loaded from or a build's spill file (with the vectors
//! folded in since in memory after them); and [`Gather`], which collects a build's
//! vectors and spills them.
//!
//! Mapped, they cost page cache rather than the process's own memory: the kernel
//! keeps the pages rescoring touches and drops the others under pressure, so an index
//! whose floats do not fit beside everything else still serves, at the price of a disk
//! read for a cold vector.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Row-major vectors, `dim` floats each.
#[derive(Debug, Clone)]
pub(crate) enum Floats {
    /// Every vector in memory.
    Owned(Vec<f32>),
    /// The first `len` floats in a mapped file from byte `start` (4-byte aligned), then
    /// `tail` in memory.
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
        tail: Vec<f32>,
    },
}

impl Default for Floats {
    fn default() -> Self {
        Self::Owned(Vec::new())
    }
}

impl Floats {
    /// `len` floats of `map` from byte `start`; `None` when they do not lie inside the
    /// map or `start` is not 4-byte aligned.
    pub(crate) fn mapped(map: Arc<memmap2::Mmap>, start: usize, len: usize) -> Option<Self> {
        let end = len.checked_mul(4)?.checked_add(start)?;
        let aligned = (map.as_ptr() as usize + start).is_multiple_of(std::mem::align_of::<f32>());
        (end <= map.len() && aligned).then_some(Self::Mapped {
            map,
            start,
            len,
            tail: Vec::new(),
        })
    }

    /// The mapped part (empty when owned).
    fn head(&self) -> &[f32] {
        match self {
            Self::Owned(_) => &[],
            Self::Mapped {
                map, start, len, ..
            } => {
                let bytes = &map[*start..*start + *len * 4];
                // SAFETY: `mapped` checked that the range lies inside the map and starts
                // 4-byte aligned; every bit pattern is a valid f32 (a little-endian
                // host, which the file format assumes and `persist` checks); the map is
                // read-only and lives as long as `self` through the Arc.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len) }
            }
        }
    }

    fn rest(&self) -> &[f32] {
        match self {
            Self::Owned(v) => v,
            Self::Mapped { tail, .. } => tail,
        }
    }

    /// Floats held.
    pub(crate) fn len(&self) -> usize {
        self.head().len() + self.rest().len()
    }

    /// Floats `at..at + n`, which must not straddle the mapped part and the tail (rows
    /// never do: both hold whole rows).
    #[inline]
    pub(crate) fn slice(&self, at: usize, n: usize) -> &[f32] {
        let head = self.head();
        if at < head.len() {
            &head[at..at + n]
        } else {
            let at = at - head.len();
            &self.rest()[at..at + n]
        }
    }

    /// Every float as one slice, when they lie in one place (owned, or mapped with
    /// nothing after).
    pub(crate) fn contiguous(&self) -> Option<&[f32]> {
        match self {
            Self::Owned(v) => Some(v),
            Self::Mapped { tail, .. } if tail.is_empty() => Some(self.head()),
            Self::Mapped { .. } => None,
        }
    }

    /// Every row of `dim`, in order.
    pub(crate) fn rows(&self, dim: usize) -> impl Iterator<Item = &[f32]> {
        self.head()
            .chunks_exact(dim)
            .chain(self.rest().chunks_exact(dim))
    }

    pub(crate) fn extend_from_slice(&mut self, v: &[f32]) {
        match self {
            Self::Owned(o) => o.extend_from_slice(v),
            Self::Mapped { tail, .. } => tail.extend_from_slice(v),
        }
    }

    /// A copy with room for `extra` more floats in memory (the mapping is shared).
    pub(crate) fn with_room(&self, extra: usize) -> Self {
        let grow = |v: &Vec<f32>| {
            let mut c = Vec::with_capacity(v.len() + extra);
            c.extend_from_slice(v);
            c
        };
        match self {
            Self::Owned(v) => Self::Owned(grow(v)),
            Self::Mapped {
                map,
                start,
                len,
                tail,
            } => Self::Mapped {
                map: Arc::clone(map),
                start: *start,
                len: *len,
                tail: grow(tail),
            },
        }
    }

    /// True when `extra` more floats fit without reallocating.
    pub(crate) fn has_room(&self, extra: usize) -> bool {
        let v = match self {
            Self::Owned(v) => v,
            Self::Mapped { tail, .. } => tail,
        };
        v.capacity() >= v.len() + extra
    }

    /// `mapped` in place of these floats, with room in memory for folds to come (an
    /// eighth more, as a graph grows, so the next fold does not copy the graph to make
    /// it); `None` unless `mapped` holds exactly these values, bit for bit.
    pub(crate) fn adopt(&self, mapped: Floats) -> Option<Floats> {
        let Floats::Mapped {
            map, start, len, ..
        } = mapped
        else {
            return None;
        };
        let fresh = Floats::Mapped {
            map,
            start,
            len,
            tail: Vec::with_capacity(self.len() / 8),
        };
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        let (head, mine) = (fresh.head(), self.head());
        let equal = head.len() == self.len()
            && same(&head[..mine.len()], mine)
            && same(&head[mine.len()..], self.rest());
        equal.then_some(fresh)
    }

    /// Bytes of the process's own memory (the mapped part is page cache).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.rest().len() * 4
    }

    /// Bytes mapped from the file.
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.head().len() * 4
    }
}

/// Where a build may keep its exact vectors once they are many: an unnamed file in
/// `dir`, mapped back, once they pass `above` bytes. The kernel can then drop their
/// pages and read them back, so a build whose floats do not fit in memory beside its
/// graph still runs; the file has no name, so it goes with the process or the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillTo {
    /// The directory (on the disk that should hold the file).
    pub dir: PathBuf,
    /// Bytes of floats held in memory before they go to the file.
    pub above: usize,
}

impl SpillTo {
    /// Bytes of floats a build holds in memory before it spills, by default: a quarter
    /// of a million 256-d vectors, about 175,000 of 384 dimensions.
    pub const DEFAULT_ABOVE: usize = 256 << 20;

    /// Spills into `dir` above [`SpillTo::DEFAULT_ABOVE`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            above: Self::DEFAULT_ABOVE,
        }
    }
}

/// A build's exact vectors, gathered a row at a time: in memory, then (with a
/// [`SpillTo`], past its size) in an unnamed file that is mapped when they are all in.
#[derive(Debug)]
pub(crate) struct Gather {
    memory: Vec<f32>,
    spill: Option<SpillTo>,
    file: Option<(std::io::BufWriter<std::fs::File>, usize)>,
    /// A write to the file failed part way: the file no longer lines up with the rows.
    broken: bool,
    bytes: Vec<u8>,
}

impl Gather {
    /// Gathers in memory, or as `spill` says; `hint` floats are expected (memory is
    /// reserved for at most the spill threshold).
    pub(crate) fn new(spill: Option<&SpillTo>, hint: usize) -> Self {
        let cap = spill.map_or(hint, |s| hint.min(s.above / 4));
        Self {
            memory: Vec::with_capacity(cap),
            spill: spill.cloned(),
            file: None,
            broken: false,
            bytes: Vec::new(),
        }
    }

    /// Adds one row. A spill file that cannot be created leaves the rows in memory (with
    /// a warning); once a write to the file has failed, this call and every later one
    /// fail (the writer reports late, so rows before this one may be lost).
    pub(crate) fn push(&mut self, row: &[f32]) -> std::io::Result<()> {
        if self.broken {
            return Err(std::io::Error::other(
                "an earlier write to the spill file failed",
            ));
        }
        if self.file.is_none()
            && let Some(spill) = &self.spill
            && (self.memory.len() + row.len()) * 4 > spill.above
        {
            let file = match tempfile::tempfile_in(&spill.dir) {
                Ok(file) => file,
                Err(e) => {
                    // Nothing is lost yet: the build goes on in memory, as without a
                    // spill directory.
                    tracing::warn!(
                        dir = %spill.dir.display(),
                        error = %e,
                        "cannot create a spill file; the build holds its vectors in memory"
                    );
                    self.spill = None;
                    self.memory.extend_from_slice(row);
                    return Ok(());
                }
            };
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            write_floats(&mut out, &mut self.bytes, &self.memory)?;
            let held = std::mem::take(&mut self.memory);
            self.file = Some((out, held.len()));
        }
        match &mut self.file {
            Some((out, len)) => {
                if let Err(e) = write_floats(out, &mut self.bytes, row) {
                    self.broken = true;
                    return Err(e);
                }
                *len += row.len();
            }
            None => self.memory.extend_from_slice(row),
        }
        Ok(())
    }

    /// The floats: owned, or mapped from the spill file.
    pub(crate) fn finish(self) -> std::io::Result<Floats> {
        if self.broken {
            return Err(std::io::Error::other(
                "an earlier write to the spill file failed",
            ));
        }
        let Some((out, len)) = self.file else {
            return Ok(Floats::Owned(self.memory));
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        // SAFETY: the map is read-only and nothing in this process writes the file
        // again. The file has no name (on Linux, `O_TMPFILE`), so only a process allowed
        // to reach this one's descriptors could truncate it, which would fault a read,
        // as for the index file's own map.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        // A build reads rows in no order the kernel could guess.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        Floats::mapped(Arc::new(map), 0, len)
            .ok_or_else(|| std::io::Error::other("the spill file is shorter than its floats"))
    }
}

/// Writes `row` in the host's byte order (the same process maps it back).
fn write_floats(out: &mut impl Write, bytes: &mut Vec<u8>, row: &[f32]) -> std::io::Result<()> {
    for chunk in row.chunks(1 << 14) {
        bytes.clear();
        bytes.extend(chunk.iter().flat_map(|x| x.to_ne_bytes()));
        out.write_all(bytes)?;
    }
    Ok(())
}

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.rows(1).eq(other.rows(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rows(n: usize, dim: usize) -> Vec<Vec<f32>> {
        (0..n)
            .map(|r| (0..dim).map(|c| (r * dim + c) as f32 * 0.5).collect())
            .collect()
    }

    #[test]
    fn gathered_rows_come_back_in_order_held_or_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let data = rows(300, 7);
        for above in [None, Some(0), Some(40 * 7 * 4), Some(1 << 30)] {
            let spill = above.map(|above| SpillTo {
                dir: dir.path().to_path_buf(),
                above,
            });
            let mut g = Gather::new(spill.as_ref(), 10);
            for row in &data {
                g.push(row).unwrap();
            }
            let floats = g.finish().unwrap();
            let spilled = above.is_some_and(|a| a < 300 * 7 * 4);
            assert_eq!(floats.mapped_bytes(), if spilled { 300 * 7 * 4 } else { 0 });
            assert_eq!(floats.heap_bytes(), if spilled { 0 } else { 300 * 7 * 4 });
            let back: Vec<Vec<f32>> = floats.rows(7).map(<[f32]>::to_vec).collect();
            assert_eq!(back, data, "{above:?}");
            assert_eq!(floats.contiguous().map(<[f32]>::len), Some(300 * 7));
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A write that fails part way (a full disk: `/dev/full`) fails that push and every
    /// later one, and the gathering cannot finish.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_breaks_the_gathering_for_good() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut g = Gather::new(None, 0);
        g.file = Some((std::io::BufWriter::with_capacity(64, full), 0));
        let row = [1.0f32; 32];
        assert!(
            g.push(&row).is_err(),
            "128 bytes overflow the 64-byte buffer"
        );
        assert!(g.push(&[2.0; 1]).is_err());
        assert!(g.finish().is_err());
    }
}
