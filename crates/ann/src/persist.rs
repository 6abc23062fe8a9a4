//! The index file format.
//!
//! Little-endian throughout; the last 8 bytes are an FNV-1a 64 checksum of everything
//! before them, checked before anything is parsed, and every count and link is
//! range-checked while parsing, so a damaged file is an error, never a panic or an
//! out-of-bounds graph.
//!
//! ```text
//! magic "SFHNSW\0\0" | version u32 | dim u32 | nodes u32 | m0 u32 | layers u32 | entry u32
//! labels [u32; nodes] | vectors [f32; nodes*dim] | layer0 [u32; nodes*(1+m0)]
//! per upper layer: count u32, then per node: node u32, len u32, [u32; len]
//! live u32 | live labels [u32; live] | live vectors [f32; live*dim]
//! tombstone words u64 | [u64; words]
//! checksum u64
//! ```
//!
//! The graph is saved as our exported arrays rather than through `hnsw_rs`'s dump: the
//! serving structure is ours, and its reload is a plain read with no borrowed state.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::hnsw::State;
use crate::idset::IdSet;

const MAGIC: &[u8; 8] = b"SFHNSW\0\0";
/// Bumped whenever the layout changes; other versions are refused.
pub const FORMAT_VERSION: u32 = 1;

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

struct Writer<W: Write> {
    inner: W,
    hash: Fnv,
}

impl<W: Write> Writer<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.inner.write_all(b)
    }
    fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u32s(&mut self, v: &[u32]) -> std::io::Result<()> {
        self.array(v, u32::to_le_bytes)
    }
    fn f32s(&mut self, v: &[f32]) -> std::io::Result<()> {
        self.array(v, f32::to_le_bytes)
    }
    /// Writes a slice of 4-byte values in chunks, without one call per value.
    fn array<T: Copy>(&mut self, v: &[T], le: fn(T) -> [u8; 4]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(v.len().min(1 << 16) * 4);
        for chunk in v.chunks(1 << 16) {
            buf.clear();
            chunk.iter().for_each(|&x| buf.extend_from_slice(&le(x)));
            self.bytes(&buf)?;
        }
        Ok(())
    }
}

fn count(n: usize) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| std::io::Error::other("too many items for the index format"))
}

pub(crate) fn save(
    path: &Path,
    graph: &Graph,
    live_labels: &[u32],
    live_vectors: &[f32],
    tombstones: &IdSet,
) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = Writer {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Fnv::new(),
    };
    (|| -> std::io::Result<()> {
        w.bytes(MAGIC)?;
        w.u32(FORMAT_VERSION)?;
        w.u32(count(graph.dim)?)?;
        w.u32(count(graph.len())?)?;
        w.u32(count(graph.m0)?)?;
        w.u32(count(graph.upper.len())?)?;
        w.u32(graph.entry)?;
        w.u32s(&graph.labels)?;
        for v in graph.vectors() {
            w.f32s(v)?;
        }
        for row in graph.link_rows() {
            w.u32s(&row.collect::<Vec<_>>())?;
        }
        for layer in &graph.upper {
            w.u32(count(layer.len())?)?;
            let mut nodes: Vec<_> = layer.iter().collect();
            nodes.sort_by_key(|(n, _)| **n);
            for (node, links) in nodes {
                w.u32(*node)?;
                w.u32(count(links.len())?)?;
                w.u32s(links)?;
            }
        }
        w.u32(count(live_labels.len())?)?;
        w.u32s(live_labels)?;
        w.f32s(live_vectors)?;
        let words = tombstones.words();
        w.u64(words.len() as u64)?;
        for &word in words {
            w.u64(word)?;
        }
        let sum = w.hash.0;
        w.inner.write_all(&sum.to_le_bytes())?;
        let file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })()
    .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated")?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn u32s(&mut self, n: usize) -> std::result::Result<Vec<u32>, String> {
        self.array(n, u32::from_le_bytes)
    }
    fn f32s(&mut self, n: usize) -> std::result::Result<Vec<f32>, String> {
        self.array(n, f32::from_le_bytes)
    }
    fn array<T>(
        &mut self,
        n: usize,
        from: fn([u8; 4]) -> T,
    ) -> std::result::Result<Vec<T>, String> {
        let bytes = self.take(n.checked_mul(4).ok_or("size overflow")?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| from([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

pub(crate) fn load(path: &Path, dim: usize) -> Result<State> {
    let data = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&data, dim).map_err(|reason| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse(data: &[u8], dim: usize) -> std::result::Result<State, String> {
    if data.len() < MAGIC.len() + 8 || &data[..MAGIC.len()] != MAGIC {
        return Err("not a steerfeed index file".into());
    }
    let (body, sum) = data.split_at(data.len() - 8);
    let mut h = Fnv::new();
    h.update(body);
    let mut want = [0u8; 8];
    want.copy_from_slice(sum);
    if h.0 != u64::from_le_bytes(want) {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let mut r = Reader {
        data: body,
        at: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let file_dim = r.u32()? as usize;
    if file_dim != dim {
        return Err(format!(
            "vectors have {file_dim} dimensions, the engine expects {dim}"
        ));
    }
    let n = r.u32()? as usize;
    let m0 = r.u32()? as usize;
    let layers = r.u32()? as usize;
    let entry = r.u32()?;
    if m0 == 0 || m0 > 1024 || layers > 64 || (n > 0 && entry as usize >= n) {
        return Err("header out of range".into());
    }
    let labels = r.u32s(n)?;
    let vectors = r.f32s(n.checked_mul(dim).ok_or("size overflow")?)?;
    let l0 = r.u32s(n.checked_mul(1 + m0).ok_or("size overflow")?)?;
    for row in l0.chunks_exact(1 + m0) {
        let c = row[0] as usize;
        if c > m0 || row[1..=c].iter().any(|&x| x as usize >= n) {
            return Err("layer-0 links out of range".into());
        }
    }
    let mut upper = Vec::with_capacity(layers);
    for _ in 0..layers {
        let count = r.u32()? as usize;
        if count > n {
            return Err("upper layer larger than the graph".into());
        }
        let mut map = HashMap::with_capacity(count);
        for _ in 0..count {
            let node = r.u32()?;
            let len = r.u32()? as usize;
            if node as usize >= n || len > m0 {
                return Err("upper-layer links out of range".into());
            }
            let links = r.u32s(len)?;
            if links.iter().any(|&x| x as usize >= n) {
                return Err("upper-layer links out of range".into());
            }
            map.insert(node, links.into_boxed_slice());
        }
        upper.push(map);
    }
    let live = r.u32()? as usize;
    let live_labels = r.u32s(live)?;
    let live_vectors = r.f32s(live.checked_mul(dim).ok_or("size overflow")?)?;
    let words = usize::try_from(r.u64()?).map_err(|_| "size overflow")?;
    if words > (1 << 27) {
        return Err("tombstone set too large".into());
    }
    let mut tomb = Vec::with_capacity(words);
    for _ in 0..words {
        tomb.push(r.u64()?);
    }
    if r.at != body.len() {
        return Err("trailing bytes after the index".into());
    }
    if vectors.iter().chain(&live_vectors).any(|v| !v.is_finite()) {
        return Err("non-finite vector values".into());
    }
    let tombstones = IdSet::from_words(tomb);
    let graph = Graph::assemble(dim, labels, &vectors, m0, &l0, upper, entry);
    let mut present = IdSet::with_capacity(graph.node_of.len());
    for &label in graph.labels.iter().chain(&live_labels) {
        if !tombstones.contains(label) && !present.insert(label) {
            return Err(format!("id {label} appears twice"));
        }
    }
    let graph_tombstones = graph
        .labels
        .iter()
        .filter(|&&l| tombstones.contains(l))
        .count();
    Ok(State {
        graph: Arc::new(graph),
        live_labels,
        live_vectors,
        tombstones,
        present,
        graph_tombstones,
    })
}
