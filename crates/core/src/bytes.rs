//! Reading little-endian binary records front to back (the page pools' wire format, the
//! impression log's records): every read checks the length left and gives `None` past
//! the end, so a cut or damaged record is refused, never read out of bounds.

/// A cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }

    /// A little-endian `f32`.
    pub fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.array()?))
    }

    /// `N` little-endian `f32`s.
    pub fn f32s<const N: usize>(&mut self) -> Option<[f32; N]> {
        let mut out = [0.0; N];
        for x in &mut out {
            *x = self.f32()?;
        }
        Some(out)
    }

    /// `n` bytes of UTF-8.
    pub fn str(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// UTF-8 after a one-byte length.
    pub fn str8(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u8()?);
        self.str(n)
    }

    /// UTF-8 after a two-byte length.
    pub fn str16(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u16()?);
        self.str(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values written by hand, little-endian, read back in order; every read past the
    /// end or of bad UTF-8 gives `None`.
    #[test]
    fn reads_what_was_written_and_refuses_reads_past_the_end() {
        let mut b = vec![7u8];
        b.extend_from_slice(&513u16.to_le_bytes());
        b.extend_from_slice(&70_000u32.to_le_bytes());
        b.extend_from_slice(&(-5i64).to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        b.push(2);
        b.extend_from_slice(b"hi");
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice("é!".as_bytes());
        let mut r = ByteReader::new(&b);
        assert_eq!(r.u8(), Some(7));
        assert_eq!(r.u16(), Some(513));
        assert_eq!(r.u32(), Some(70_000));
        assert_eq!(r.i64(), Some(-5));
        assert_eq!(r.f32s::<2>(), Some([1.5, -2.0]));
        assert_eq!(r.str8(), Some("hi"));
        assert_eq!(r.str16(), Some("é!"));
        assert!(r.rest().is_empty());
        assert_eq!(r.u8(), None);

        let mut cut = ByteReader::new(&b[..2]);
        assert_eq!(cut.u8(), Some(7));
        assert_eq!(cut.u16(), None, "one byte left of two");
        assert_eq!(cut.rest(), &b[1..2], "a refused read consumes nothing");
        let mut bad = ByteReader::new(&[2, 0xff, 0xfe]);
        assert_eq!(bad.str8(), None, "not UTF-8");
    }
}
