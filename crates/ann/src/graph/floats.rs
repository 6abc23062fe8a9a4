//! The exact vectors beside a graph whose rows hold codes: in memory, or memory-mapped
//! from the index file they were loaded from (with the vectors folded in since in
//! memory after them).
//!
//! Mapped, they cost page cache rather than the process's own memory: the kernel
//! keeps the pages rescoring touches and drops the others under pressure, so an index
//! whose floats do not fit beside everything else still serves, at the price of a disk
//! read for a cold vector.

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

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.rows(1).eq(other.rows(1))
    }
}
