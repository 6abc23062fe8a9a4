//! The index file format: one file holds everything an index needs to serve again.
//!
//! # Layout (format version 4)
//!
//! Little-endian throughout. A fixed header, then seven sections in a fixed order, each
//! a four-byte tag and the byte length of its payload, then a checksum:
//!
//! ```text
//! header    magic "SFHNSW\0\0" | format version u32 | dim u32 | catalog version u64
//! "GRPH"    len u64 | nodes u32 | m0 u32 | layers u32 | entry u32
//!           | labels [u32; nodes] | layer0 [u32; nodes*(1+m0)]
//!           | per upper layer: count u32, then per node: node u32, len u32, [u32; len]
//! "VECS"    len u64 | pad u32 | [0u8; pad] | vectors [f32; nodes*dim]
//!           (pad < 64 puts the vectors at a file offset that is a multiple of 64)
//! "LIVE"    len u64 | count u32 | labels [u32; count] | vectors [f32; count*dim]
//! "TOMB"    len u64 | words u64 | [u64; words]            (bitset of deleted ids)
//! "IDS\0"   len u64 | next u32 | count u32
//!           | per entry, by increasing internal id: internal u32 | len u16 | UTF-8 id
//! "TAGS"    len u64 | names u32 | per name: len u16 | UTF-8 topic
//!           | count u32 | per id, by increasing id: id u32 | tags u16 | [u32; tags]
//! "PART"    len u64 | count u32 | per sub-graph, by increasing tag: tag u32 | nodes u32
//!           | m0 u32 | layers u32 | entry u32 | nodes [u32; nodes]
//!           | layer0 [u32; nodes*(1+m0)] | upper layers as in GRPH
//! checksum  u64: FNV-1a 64 of every byte before it
//! ```
//!
//! - **GRPH** is the sealed graph's structure; a layer-0 row is a link count then `m0`
//!   slots.
//! - **VECS** is the graph's exact vectors, in node order, aligned so that an index whose
//!   graph holds int8 codes ([`crate::VectorStorage::Int8`]) maps them from the file
//!   rather than reading them into memory (the codes are computed at load, from these).
//! - **LIVE** is the live segment (searched exactly), in insertion order.
//! - **TOMB** is every internal id ever deleted (ids are never reused).
//! - **IDS** maps internal ids to video ids ([`crate::VideoIndex`]); `next` is the next
//!   internal id to hand out. An [`crate::HnswIndex`] saved alone writes `next = 0` and
//!   no entries, and ignores the section when it loads.
//! - **TAGS** is every id's tags (`crate::tags`), and the topic each tag stands for in a
//!   [`crate::VideoIndex`] (no names for an [`crate::HnswIndex`] saved alone).
//! - **PART** is the sub-graphs of the tags' partitions (their links name graph nodes);
//!   the nodes of a tag outside its sub-graph are found again from TAGS at load.
//! - The **catalog version** is the store's catalog version the index reflects: every
//!   catalog change at or below it is in the file (later ones may be too). 0 for an
//!   index saved alone.
//!
//! # Checks
//!
//! The magic and the format version are read first, so a file of another version is
//! refused by name; then the checksum is checked before anything else is parsed; then
//! every count, length and link is range-checked while parsing (a section must be
//! consumed exactly, internal ids must be below `next`, video ids must be valid and
//! distinct), so a damaged file is [`Error::BadFile`], never a panic or an
//! out-of-bounds graph.
//!
//! # Writing
//!
//! A save writes a temporary file beside the target, fsyncs it, renames it over the
//! target and fsyncs the directory: a crash leaves the old file or the new one, never a
//! mix, and the rename is durable when `save` returns.
//!
//! # Versions
//!
//! [`FORMAT_VERSION`] is bumped whenever the layout changes. Versions 2 (the graph's
//! vectors inside GRPH, after the labels) and 3 (no TAGS and PART: no tags) still load,
//! and are rewritten as version 4 by the next save; other versions are refused by name (the engine then rebuilds the
//! index from the store). Version 1 had no catalog version, no sections and kept the id
//! map in a JSON file beside the index.
//!
//! A file is read through a read-only memory map. A save never writes into an existing
//! file (it renames a new one over it), so a map of the old file stays valid.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use steerfeed_core::hash::Fnv1a;
use steerfeed_core::{TopicId, VideoId};

use crate::error::{Error, Result};
use crate::graph::{Floats, Graph, SubGraph};
use crate::idset::IdSet;
use crate::params::VectorStorage;
use crate::state::State;
use crate::tags::{TagMap, Tags};

const MAGIC: &[u8; 8] = b"SFHNSW\0\0";
/// The version of the index file layout this build writes; it also reads version 2.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest version this build reads.
const OLDEST_READ: u32 = 2;
/// Alignment of the graph's vectors in the file.
const VECS_ALIGN: u64 = 64;

const GRAPH: &[u8; 4] = b"GRPH";
const VECTORS: &[u8; 4] = b"VECS";
const LIVE: &[u8; 4] = b"LIVE";
const TOMBSTONES: &[u8; 4] = b"TOMB";
const IDS: &[u8; 4] = b"IDS\0";
const TAGS: &[u8; 4] = b"TAGS";
const PARTS: &[u8; 4] = b"PART";

/// The video ids of internal ids, as saved: `next` and `(internal, video)` pairs by
/// increasing internal id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IdTable {
    pub next: u32,
    pub entries: Vec<(u32, VideoId)>,
    /// The topic each tag stands for: tag `i` is `topics[i]`.
    pub topics: Vec<TopicId>,
}

/// Everything one file holds.
#[derive(Debug, Clone)]
pub(crate) struct Contents {
    pub catalog_version: u64,
    pub graph: Arc<Graph>,
    pub live_labels: Vec<u32>,
    pub live_vectors: Vec<f32>,
    pub tombstones: IdSet,
    pub tags: TagMap,
    pub subs: Vec<(u32, Arc<SubGraph>)>,
    pub ids: IdTable,
}

/// What [`load`] read: the index state (with the derived sets), the catalog version and
/// the id table.
pub(crate) struct Loaded {
    pub state: State,
    /// The file's format version.
    pub format_version: u32,
    pub catalog_version: u64,
    pub ids: IdTable,
}

struct Writer<W: Write> {
    inner: W,
    hash: Fnv1a,
    written: u64,
}

impl<W: Write> Writer<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.written += b.len() as u64;
        self.inner.write_all(b)
    }
    fn u16(&mut self, v: u16) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
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
    /// Writes a section: its tag, `len`, then what `body` writes, which must be exactly
    /// `len` bytes.
    fn section(
        &mut self,
        tag: &[u8; 4],
        len: u64,
        body: impl FnOnce(&mut Self) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.bytes(tag)?;
        self.u64(len)?;
        let start = self.written;
        body(self)?;
        if self.written - start != len {
            return Err(std::io::Error::other(format!(
                "section {} wrote {} bytes, announced {len}",
                String::from_utf8_lossy(tag),
                self.written - start
            )));
        }
        Ok(())
    }
}

fn count(n: usize) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| std::io::Error::other("too many items for the index format"))
}

fn graph_len(graph: &Graph) -> u64 {
    let n = graph.len() as u64;
    16 + 4 * n + 4 * n * (1 + graph.m0 as u64) + upper_len(&graph.upper)
}

fn upper_len(upper: &[HashMap<u32, Box<[u32]>>]) -> u64 {
    upper
        .iter()
        .map(|layer| 4 + layer.values().map(|l| 8 + 4 * l.len() as u64).sum::<u64>())
        .sum()
}

/// Writes upper layers: per layer a count, then each node (ascending) and its links.
fn write_upper<W: Write>(
    w: &mut Writer<W>,
    upper: &[HashMap<u32, Box<[u32]>>],
) -> std::io::Result<()> {
    for layer in upper {
        w.u32(count(layer.len())?)?;
        let mut nodes: Vec<_> = layer.iter().collect();
        nodes.sort_by_key(|(n, _)| **n);
        for (node, links) in nodes {
            w.u32(*node)?;
            w.u32(count(links.len())?)?;
            w.u32s(links)?;
        }
    }
    Ok(())
}

/// Writes `c` to `path` atomically (see the module docs).
pub(crate) fn save(path: &Path, c: &Contents) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    // The target's name with `.tmp` appended: never the target itself, which may be
    // mapped by the index that is saving.
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let written = write_file(&tmp, c);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable once the directory is.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

fn write_file(tmp: &Path, c: &Contents) -> std::io::Result<()> {
    let graph = &c.graph;
    let dim = graph.dim;
    let file = std::fs::File::create(tmp)?;
    let mut w = Writer {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hash: Fnv1a::new(),
        written: 0,
    };
    w.bytes(MAGIC)?;
    w.u32(FORMAT_VERSION)?;
    w.u32(count(dim)?)?;
    w.u64(c.catalog_version)?;

    w.section(GRAPH, graph_len(graph), |w| {
        w.u32(count(graph.len())?)?;
        w.u32(count(graph.m0)?)?;
        w.u32(count(graph.upper.len())?)?;
        w.u32(graph.entry)?;
        w.u32s(&graph.labels)?;
        let mut row = Vec::with_capacity(1 + graph.m0);
        for links in graph.link_rows() {
            row.clear();
            row.extend(links);
            w.u32s(&row)?;
        }
        write_upper(w, &graph.upper)
    })?;

    // The vectors start after the tag, the length and the pad field.
    let unpadded = w.written + 4 + 8 + 4;
    let pad = (VECS_ALIGN - unpadded % VECS_ALIGN) % VECS_ALIGN;
    let floats = 4 * graph.len() as u64 * dim as u64;
    w.section(VECTORS, 4 + pad + floats, |w| {
        w.u32(pad as u32)?;
        w.bytes(&vec![0u8; pad as usize])?;
        graph.vectors().try_for_each(|v| w.f32s(v))
    })?;

    let live = c.live_labels.len();
    if c.live_vectors.len() != live * dim {
        return Err(std::io::Error::other(
            "live vectors do not match live labels",
        ));
    }
    w.section(LIVE, 4 + 4 * live as u64 * (1 + dim as u64), |w| {
        w.u32(count(live)?)?;
        w.u32s(&c.live_labels)?;
        w.f32s(&c.live_vectors)
    })?;

    let words = c.tombstones.words();
    w.section(TOMBSTONES, 8 + 8 * words.len() as u64, |w| {
        w.u64(words.len() as u64)?;
        words.iter().try_for_each(|&word| w.u64(word))
    })?;

    let ids_len: u64 = c
        .ids
        .entries
        .iter()
        .map(|(_, v)| 6 + v.as_str().len() as u64)
        .sum();
    w.section(IDS, 8 + ids_len, |w| {
        w.u32(c.ids.next)?;
        w.u32(count(c.ids.entries.len())?)?;
        for (internal, video) in &c.ids.entries {
            let bytes = video.as_str().as_bytes();
            let len = u16::try_from(bytes.len())
                .map_err(|_| std::io::Error::other("video id too long for the index format"))?;
            w.u32(*internal)?;
            w.u16(len)?;
            w.bytes(bytes)?;
        }
        Ok(())
    })?;

    let mut tagged: Vec<(u32, &[u32])> = c.tags.iter().collect();
    tagged.sort_unstable_by_key(|(label, _)| *label);
    let names_len: u64 = c
        .ids
        .topics
        .iter()
        .map(|t| 2 + t.as_str().len() as u64)
        .sum();
    let tags_len: u64 = tagged.iter().map(|(_, t)| 6 + 4 * t.len() as u64).sum();
    w.section(TAGS, 8 + names_len + tags_len, |w| {
        w.u32(count(c.ids.topics.len())?)?;
        for topic in &c.ids.topics {
            let bytes = topic.as_str().as_bytes();
            let len = u16::try_from(bytes.len())
                .map_err(|_| std::io::Error::other("topic too long for the index format"))?;
            w.u16(len)?;
            w.bytes(bytes)?;
        }
        w.u32(count(tagged.len())?)?;
        for (label, tags) in &tagged {
            let n = u16::try_from(tags.len())
                .map_err(|_| std::io::Error::other("too many tags on one id"))?;
            w.u32(*label)?;
            w.u16(n)?;
            w.u32s(tags)?;
        }
        Ok(())
    })?;

    let parts_len: u64 = c
        .subs
        .iter()
        .map(|(_, s)| 20 + 4 * s.nodes.len() as u64 + 4 * s.l0.len() as u64 + upper_len(&s.upper))
        .sum();
    w.section(PARTS, 4 + parts_len, |w| {
        w.u32(count(c.subs.len())?)?;
        for (tag, sub) in &c.subs {
            w.u32(*tag)?;
            w.u32(count(sub.nodes.len())?)?;
            w.u32(count(sub.m0)?)?;
            w.u32(count(sub.upper.len())?)?;
            w.u32(sub.entry)?;
            w.u32s(&sub.nodes)?;
            w.u32s(&sub.l0)?;
            write_upper(w, &sub.upper)?;
        }
        Ok(())
    })?;

    let sum = w.hash.finish();
    w.inner.write_all(&sum.to_le_bytes())?;
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

type Parse<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated")?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn left(&self) -> usize {
        self.data.len() - self.at
    }
    fn u16(&mut self) -> Parse<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Parse<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Parse<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn u32s(&mut self, n: usize) -> Parse<Vec<u32>> {
        self.array(n, u32::from_le_bytes)
    }
    fn f32s(&mut self, n: usize) -> Parse<Vec<f32>> {
        self.array(n, f32::from_le_bytes)
    }
    fn array<T>(&mut self, n: usize, from: fn([u8; 4]) -> T) -> Parse<Vec<T>> {
        let bytes = self.take(n.checked_mul(4).ok_or("size overflow")?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| from([b[0], b[1], b[2], b[3]]))
            .collect())
    }
    /// The next section, which must carry `tag`: a reader over its payload alone.
    fn section(&mut self, tag: &[u8; 4]) -> Parse<Reader<'a>> {
        let name = String::from_utf8_lossy(tag)
            .trim_end_matches('\0')
            .to_owned();
        let found = self
            .take(4)
            .map_err(|_| format!("section {name}: truncated"))?;
        if found != tag {
            return Err(format!(
                "expected section {name}, found {:?}",
                String::from_utf8_lossy(found)
            ));
        }
        let len = self
            .u64()
            .map_err(|_| format!("section {name}: truncated"))?;
        let len = usize::try_from(len).map_err(|_| format!("section {name}: size overflow"))?;
        let data = self
            .take(len)
            .map_err(|_| format!("section {name}: truncated"))?;
        Ok(Reader { data, at: 0 })
    }
    /// Reads the VECS section's padding: the reader is then at the vectors.
    fn skip_vecs_pad(&mut self) -> Parse<()> {
        let pad = self.u32()?;
        if u64::from(pad) >= VECS_ALIGN {
            return Err("section VECS: padding out of range".into());
        }
        self.take(pad as usize).map(|_| ())
    }

    /// The reader's position as a byte offset into `file`, which its data lies in.
    fn offset_in(&self, file: &[u8]) -> usize {
        self.data.as_ptr() as usize + self.at - file.as_ptr() as usize
    }

    /// Ends a section: every byte of it must have been read.
    fn end(self, name: &str) -> Parse<()> {
        match self.left() {
            0 => Ok(()),
            n => Err(format!("section {name}: {n} unread bytes")),
        }
    }
}

/// Reads the file at `path`, for an index of `dim` dimensions whose graph holds its
/// vectors as `storage` says (int8 codes keep the exact vectors mapped from the file).
pub(crate) fn load(path: &Path, dim: usize, storage: VectorStorage) -> Result<Loaded> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and this crate never writes into an index file (a
    // save renames a new file over it, which leaves this one's pages in place). A file
    // truncated by another program while mapped is outside what this guards.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let map = Arc::new(map);
    parse_mapped(&map, dim, storage, Some(&map)).map_err(|reason| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Maps the graph's vectors from a format-3 file at `path` that holds `nodes` of them,
/// without reading the rest: for an int8 index that has just saved the file and checks
/// the mapped vectors against its own before it uses them. `None` when the file is not
/// laid out so.
pub(crate) fn map_vectors(path: &Path, nodes: usize, dim: usize) -> Result<Option<Floats>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: as in `load`.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
    let layout = || -> Parse<(usize, usize)> {
        let mut r = Reader {
            data: &map[..],
            at: 0,
        };
        if r.take(MAGIC.len())? != MAGIC || r.u32()? != FORMAT_VERSION || r.u32()? as usize != dim {
            return Err("another layout".into());
        }
        r.u64()?;
        r.section(GRAPH)?;
        let mut v = r.section(VECTORS)?;
        v.skip_vecs_pad()?;
        let floats = nodes.checked_mul(dim).ok_or("size overflow")?;
        if Some(v.left()) != floats.checked_mul(4) {
            return Err("another graph size".into());
        }
        Ok((v.offset_in(&map), floats))
    };
    Ok(layout()
        .ok()
        .filter(|_| cfg!(target_endian = "little"))
        .and_then(|(at, len)| Floats::mapped(Arc::clone(&map), at, len)))
}

#[cfg(test)]
fn parse(data: &[u8], dim: usize, storage: VectorStorage) -> Parse<Loaded> {
    parse_mapped(data, dim, storage, None)
}

/// Parses `data`, which is all of `map` when one is given: the graph's vectors are then
/// kept mapped for an int8 graph.
fn parse_mapped(
    data: &[u8],
    dim: usize,
    storage: VectorStorage,
    map: Option<&Arc<memmap2::Mmap>>,
) -> Parse<Loaded> {
    if data.len() < MAGIC.len() + 4 || &data[..MAGIC.len()] != MAGIC {
        return Err("not a steerfeed index file".into());
    }
    let mut head = Reader {
        data,
        at: MAGIC.len(),
    };
    let version = head.u32()?;
    if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version}, this build reads versions {OLDEST_READ} to {FORMAT_VERSION}"
        ));
    }
    if data.len() < head.at + 8 {
        return Err("truncated".into());
    }
    let (body, sum) = data.split_at(data.len() - 8);
    let mut h = Fnv1a::new();
    h.update(body);
    let mut want = [0u8; 8];
    want.copy_from_slice(sum);
    if h.finish() != u64::from_le_bytes(want) {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let mut r = Reader {
        data: body,
        at: head.at,
    };
    let file_dim = r.u32()? as usize;
    if file_dim != dim {
        return Err(format!(
            "vectors have {file_dim} dimensions, the engine expects {dim}"
        ));
    }
    let catalog_version = r.u64()?;

    let mut g = r.section(GRAPH)?;
    let mut graph = parse_graph(&mut g, dim, version)?;
    g.end("GRPH")?;
    if version >= 3 {
        let mut v = r.section(VECTORS)?;
        v.skip_vecs_pad()?;
        let n = graph.labels.len().checked_mul(dim).ok_or("size overflow")?;
        let at = v.offset_in(data);
        let floats = map
            .filter(|_| storage == VectorStorage::Int8 && cfg!(target_endian = "little"))
            .and_then(|m| Floats::mapped(Arc::clone(m), at, n));
        graph.vectors = match floats {
            Some(mapped) => {
                v.take(n.checked_mul(4).ok_or("size overflow")?)?;
                mapped
            }
            None => Floats::Owned(v.f32s(n)?),
        };
        v.end("VECS")?;
    }
    if graph.vectors.rows(1).any(|v| !v[0].is_finite()) {
        return Err("non-finite vector values".into());
    }

    let mut l = r.section(LIVE)?;
    let live = l.u32()? as usize;
    let live_labels = l.u32s(live)?;
    let live_vectors = l.f32s(live.checked_mul(dim).ok_or("size overflow")?)?;
    l.end("LIVE")?;
    if live_vectors.iter().any(|v| !v.is_finite()) {
        return Err("non-finite vector values".into());
    }

    let mut t = r.section(TOMBSTONES)?;
    let words = usize::try_from(t.u64()?).map_err(|_| "size overflow")?;
    if words > t.left() / 8 {
        return Err("section TOMB: more words than bytes".into());
    }
    let mut tomb = Vec::with_capacity(words);
    for _ in 0..words {
        tomb.push(t.u64()?);
    }
    t.end("TOMB")?;

    let mut i = r.section(IDS)?;
    let mut ids = parse_ids(&mut i)?;
    i.end("IDS")?;

    let (tags, subs) = if version >= 4 {
        let mut t = r.section(TAGS)?;
        let (topics, tags) = parse_tags(&mut t, ids.next)?;
        t.end("TAGS")?;
        ids.topics = topics;
        let mut p = r.section(PARTS)?;
        let subs = parse_parts(&mut p, graph.labels.len())?;
        p.end("PART")?;
        (tags, subs)
    } else {
        (TagMap::default(), HashMap::default())
    };

    if r.left() != 0 {
        return Err("trailing bytes after the index".into());
    }

    let tombstones = IdSet::from_words(tomb);
    if ids.next > 0 {
        // A video index hands out ids below `next` only: checked before any table is
        // sized by the largest id.
        let next = ids.next;
        if graph.labels.iter().chain(&live_labels).any(|&l| l >= next)
            || tombstones.iter().last().is_some_and(|l| l >= next)
        {
            return Err(format!(
                "an internal id at or above the id map's next ({next})"
            ));
        }
    }
    let graph = graph.assemble(dim, storage);
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
    for (tag, sub) in &subs {
        if sub.nodes.iter().any(|&n| {
            !tags
                .get(graph.labels[n as usize])
                .is_some_and(|t| t.contains(tag))
        }) {
            return Err(format!(
                "section PART: a node of tag {tag}'s sub-graph without the tag"
            ));
        }
    }
    let tags = Tags::with_subs(&graph, tags, subs);
    Ok(Loaded {
        state: State {
            graph: Arc::new(graph),
            live_labels,
            live_vectors,
            tombstones,
            present,
            graph_tombstones,
            tags,
        },
        format_version: version,
        catalog_version,
        ids,
    })
}

/// A graph as read, before its tables are built.
struct GraphParts {
    labels: Vec<u32>,
    /// Read with GRPH in version 2, from VECS after it in version 3.
    vectors: Floats,
    m0: usize,
    l0: Vec<u32>,
    upper: Vec<HashMap<u32, Box<[u32]>>>,
    entry: u32,
}

impl GraphParts {
    fn assemble(self, dim: usize, storage: VectorStorage) -> Graph {
        Graph::assemble(
            dim,
            self.labels,
            self.vectors,
            self.m0,
            &self.l0,
            self.upper,
            self.entry,
            storage,
        )
    }
}

fn parse_graph(r: &mut Reader<'_>, dim: usize, version: u32) -> Parse<GraphParts> {
    let n = r.u32()? as usize;
    let m0 = r.u32()? as usize;
    let layers = r.u32()? as usize;
    let entry = r.u32()?;
    if m0 == 0 || m0 > 1024 || layers > 64 || (n > 0 && entry as usize >= n) {
        return Err("header out of range".into());
    }
    let labels = r.u32s(n)?;
    let vectors = if version < 3 {
        Floats::Owned(r.f32s(n.checked_mul(dim).ok_or("size overflow")?)?)
    } else {
        Floats::default()
    };
    let l0 = r.u32s(n.checked_mul(1 + m0).ok_or("size overflow")?)?;
    for row in l0.chunks_exact(1 + m0) {
        let c = row[0] as usize;
        if c > m0 || row[1..=c].iter().any(|&x| x as usize >= n) {
            return Err("layer-0 links out of range".into());
        }
    }
    let upper = parse_upper(r, layers, n, m0, |x| (x as usize) < n)?;
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err("a graph label appears twice".into());
    }
    Ok(GraphParts {
        labels,
        vectors,
        m0,
        l0,
        upper,
        entry,
    })
}

/// Reads `layers` upper layers of a graph of `n` nodes (or a sub-graph of `n`): every
/// node and link must satisfy `valid`.
fn parse_upper(
    r: &mut Reader<'_>,
    layers: usize,
    n: usize,
    m0: usize,
    valid: impl Fn(u32) -> bool,
) -> Parse<Vec<HashMap<u32, Box<[u32]>>>> {
    let mut upper = Vec::with_capacity(layers.min(64));
    for _ in 0..layers {
        let count = r.u32()? as usize;
        if count > n {
            return Err("upper layer larger than the graph".into());
        }
        let mut map = HashMap::with_capacity(count);
        for _ in 0..count {
            let node = r.u32()?;
            let len = r.u32()? as usize;
            if !valid(node) || len > m0 {
                return Err("upper-layer links out of range".into());
            }
            let links = r.u32s(len)?;
            if links.iter().any(|&x| !valid(x)) {
                return Err("upper-layer links out of range".into());
            }
            map.insert(node, links.into_boxed_slice());
        }
        upper.push(map);
    }
    Ok(upper)
}

/// Reads TAGS: the topic names and every id's tags (ids below `next` when the file has
/// an id map, tags below the number of names when it names them).
fn parse_tags(r: &mut Reader<'_>, next: u32) -> Parse<(Vec<TopicId>, TagMap)> {
    let names = r.u32()? as usize;
    if names > r.left() / 2 {
        return Err("section TAGS: more names than bytes".into());
    }
    let mut topics = Vec::with_capacity(names);
    for _ in 0..names {
        let len = usize::from(r.u16()?);
        let topic = std::str::from_utf8(r.take(len)?)
            .ok()
            .and_then(|s| TopicId::new(s).ok())
            .ok_or("section TAGS: an invalid topic")?;
        if topics.contains(&topic) {
            return Err(format!("section TAGS: topic {topic} appears twice"));
        }
        topics.push(topic);
    }
    let count = r.u32()? as usize;
    if count > r.left() / 6 {
        return Err("section TAGS: more entries than bytes".into());
    }
    let mut tags = TagMap::default();
    let mut last: Option<u32> = None;
    for _ in 0..count {
        let label = r.u32()?;
        if last.is_some_and(|l| label <= l) || (next > 0 && label >= next) {
            return Err("section TAGS: ids out of order or range".into());
        }
        last = Some(label);
        let n = usize::from(r.u16()?);
        let own = r.u32s(n)?;
        if n == 0
            || own.windows(2).any(|w| w[0] >= w[1])
            || (!topics.is_empty() && own.iter().any(|&t| t as usize >= topics.len()))
        {
            return Err("section TAGS: tags out of order or range".into());
        }
        tags.insert(label, own.into_boxed_slice());
    }
    Ok((topics, tags))
}

/// Reads PART: sub-graphs over a graph of `nodes` nodes, one per tag at most.
fn parse_parts(
    r: &mut Reader<'_>,
    nodes: usize,
) -> Parse<HashMap<u32, SubGraph, rustc_hash::FxBuildHasher>> {
    let count = r.u32()? as usize;
    if count > r.left() / 20 {
        return Err("section PART: more sub-graphs than bytes".into());
    }
    let mut subs: HashMap<u32, SubGraph, rustc_hash::FxBuildHasher> = HashMap::default();
    for _ in 0..count {
        let tag = r.u32()?;
        let n = r.u32()? as usize;
        let m0 = r.u32()? as usize;
        let layers = r.u32()? as usize;
        let entry = r.u32()?;
        if n == 0 || n > nodes || m0 == 0 || m0 > 1024 || layers > 64 {
            return Err("section PART: a header out of range".into());
        }
        let members = r.u32s(n)?;
        let l0 = r.u32s(n.checked_mul(1 + m0).ok_or("size overflow")?)?;
        let upper = parse_upper(r, layers, n, m0, |x| members.binary_search(&x).is_ok())?;
        let sub = SubGraph {
            nodes: members,
            m0,
            l0,
            upper,
            entry,
        };
        sub.check(nodes).map_err(|e| format!("section PART: {e}"))?;
        if subs.insert(tag, sub).is_some() {
            return Err("section PART: a tag appears twice".into());
        }
    }
    Ok(subs)
}

fn parse_ids(r: &mut Reader<'_>) -> Parse<IdTable> {
    let next = r.u32()?;
    let n = r.u32()? as usize;
    // Each entry takes at least 7 bytes: a count beyond that is damage, not a reason to
    // reserve memory.
    if n > r.left() / 7 {
        return Err("section IDS: more entries than bytes".into());
    }
    let mut entries = Vec::with_capacity(n);
    let mut videos = std::collections::HashSet::with_capacity(n);
    let mut last: Option<u32> = None;
    for _ in 0..n {
        let internal = r.u32()?;
        if internal >= next || last.is_some_and(|l| internal <= l) {
            return Err("section IDS: internal ids out of order or range".into());
        }
        last = Some(internal);
        let len = usize::from(r.u16()?);
        let bytes = r.take(len)?;
        let video = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| VideoId::new(s).ok())
            .ok_or("section IDS: an invalid video id")?;
        if !videos.insert(video.clone()) {
            return Err(format!("section IDS: video {video} appears twice"));
        }
        entries.push((internal, video));
    }
    Ok(IdTable {
        next,
        entries,
        topics: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::HnswBuildParams;

    const DIM: usize = 4;

    fn vid(s: &str) -> VideoId {
        VideoId::new(s).unwrap()
    }

    /// A small index with every section filled: a graph with upper layers, a live
    /// segment, tombstones in both, and ids.
    fn contents() -> Contents {
        let n = 200u32;
        let vectors = steerfeed_world::vectors::clustered(n as usize, DIM, 4, 0.3, 5);
        let params = HnswBuildParams {
            m: 4,
            ef_construction: 16,
            threads: 1,
            vectors: VectorStorage::F32,
            ..HnswBuildParams::default()
        };
        let graph = Graph::build(DIM, (0..n).collect(), vectors, &params);
        assert!(!graph.upper.is_empty(), "the fixture needs upper layers");
        let live_labels = vec![n, n + 1, n + 3];
        let live_vectors = steerfeed_world::vectors::clustered(3, DIM, 1, 0.3, 6);
        let tombstones: IdSet = [4, 17, n + 2, n + 3].into_iter().collect();
        let entries = (0..n + 4)
            .filter(|i| !tombstones.contains(*i))
            .map(|i| (i, vid(&format!("video-{i}"))))
            .collect();
        // Every even id carries tag i % 3, every fifth one tag 3 too; tags 0 to 2 are
        // large enough for sub-graphs.
        let mut tags = Tags::default();
        for i in 0..n + 4 {
            let mut own = Vec::new();
            if i % 2 == 0 {
                own.push(i % 3);
            }
            if i % 5 == 0 {
                own.push(3);
            }
            tags.set(i, &own);
        }
        let sub_params = HnswBuildParams {
            partition_min: 30,
            ..params
        };
        tags.parts = Tags::partition(&graph, &tags.of, &tombstones, &sub_params);
        let subs = tags.subs();
        assert_eq!(subs.len(), 4, "the fixture needs sub-graphs");
        Contents {
            catalog_version: 0x0102_0304_0506_0708,
            graph: Arc::new(graph),
            live_labels,
            live_vectors,
            tombstones,
            tags: tags.of,
            subs,
            ids: IdTable {
                next: n + 4,
                entries,
                topics: ["cooking", "pets", "travel", "music"]
                    .into_iter()
                    .map(|t| TopicId::new(t).unwrap())
                    .collect(),
            },
        }
    }

    fn bytes_of(c: &Contents) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.hnsw");
        save(&path, c).unwrap();
        assert!(!dir.path().join("i.hnsw.tmp").exists());
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn every_field_round_trips() {
        let c = contents();
        let data = bytes_of(&c);
        let back = parse(&data, DIM, VectorStorage::F32).unwrap();
        assert_eq!(back.catalog_version, c.catalog_version);
        assert_eq!(*back.state.graph, *c.graph);
        assert_eq!(back.state.live_labels, c.live_labels);
        assert_eq!(back.state.live_vectors, c.live_vectors);
        assert_eq!(back.state.tombstones, c.tombstones);
        assert_eq!(back.ids, c.ids);
        assert_eq!(back.state.tags.of, c.tags);
        assert_eq!(back.state.tags.subs(), c.subs);
        // The rests: every tagged graph node outside its tag's sub-graph (the tombstoned
        // ones, left out of the sub-graphs when they were built).
        for (tag, part) in &back.state.tags.parts {
            let sub = part.sub.as_ref().unwrap();
            for &node in &part.rest {
                assert!(!sub.holds(node));
                assert!(c.tombstones.contains(c.graph.labels[node as usize]));
                assert!(
                    c.tags
                        .get(c.graph.labels[node as usize])
                        .unwrap()
                        .contains(tag)
                );
            }
        }
        assert_eq!(back.state.graph_tombstones, 2);
        // Present: every graph and live label not deleted.
        assert_eq!(back.state.present.len(), 200 - 2 + 2);
        // Saving what was read gives the same bytes.
        let again = Contents {
            catalog_version: back.catalog_version,
            graph: back.state.graph.clone(),
            live_labels: back.state.live_labels.clone(),
            live_vectors: back.state.live_vectors.clone(),
            tombstones: back.state.tombstones.clone(),
            tags: back.state.tags.of.clone(),
            subs: back.state.tags.subs(),
            ids: back.ids.clone(),
        };
        assert_eq!(bytes_of(&again), data);
    }

    /// Rewrites the checksum after a deliberate change, so the change reaches the
    /// parser's range checks.
    fn resum(data: &mut [u8]) {
        let body = data.len() - 8;
        let mut h = Fnv1a::new();
        h.update(&data[..body]);
        data[body..].copy_from_slice(&h.finish().to_le_bytes());
    }

    /// Where each section's tag starts.
    fn section_at(data: &[u8], tag: &[u8; 4]) -> usize {
        data.windows(4)
            .position(|w| w == tag)
            .expect("section present")
    }

    /// The version-3 layout of the same contents, made from a version-4 file: TAGS and
    /// PART go, and the version and checksum are rewritten.
    fn as_version_3(v4: &[u8]) -> Vec<u8> {
        let tags = section_at(v4, b"TAGS");
        let mut out = v4[..tags].to_vec();
        out[8..12].copy_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        resum(&mut out);
        out
    }

    #[test]
    fn a_version_3_file_still_loads_without_tags() {
        let c = contents();
        let v3 = as_version_3(&bytes_of(&c));
        let back = parse(&v3, DIM, VectorStorage::F32).unwrap();
        assert_eq!(back.format_version, 3);
        assert_eq!(*back.state.graph, *c.graph);
        assert_eq!(back.state.live_labels, c.live_labels);
        assert!(back.state.tags.of.is_empty() && back.state.tags.parts.is_empty());
        assert_eq!(back.ids.entries, c.ids.entries);
        assert!(back.ids.topics.is_empty());
    }

    /// The version-2 layout of the same contents, made from a version-3 file byte by
    /// byte: the graph's vectors go back into GRPH after the labels, VECS goes, and the
    /// version and checksum are rewritten.
    fn as_version_2(v3: &[u8]) -> Vec<u8> {
        let u32_at = |at: usize| u32::from_le_bytes(v3[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(v3[at..at + 8].try_into().unwrap());
        let header = 8 + 4 + 4 + 8;
        assert_eq!(&v3[header..header + 4], b"GRPH");
        let grph_len = u64_at(header + 4) as usize;
        let grph = header + 12;
        let nodes = u32_at(grph) as usize;
        let vecs = grph + grph_len;
        assert_eq!(&v3[vecs..vecs + 4], b"VECS");
        let vecs_len = u64_at(vecs + 4) as usize;
        let pad = u32_at(vecs + 12) as usize;
        let floats = &v3[vecs + 16 + pad..vecs + 12 + vecs_len];
        assert_eq!(floats.len(), nodes * DIM * 4);
        let labels_end = grph + 16 + 4 * nodes;
        let mut out = Vec::new();
        out.extend_from_slice(&v3[..8]);
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&v3[12..header]);
        out.extend_from_slice(b"GRPH");
        out.extend_from_slice(&((grph_len + floats.len()) as u64).to_le_bytes());
        out.extend_from_slice(&v3[grph..labels_end]);
        out.extend_from_slice(floats);
        out.extend_from_slice(&v3[labels_end..vecs]);
        out.extend_from_slice(&v3[vecs + 12 + vecs_len..v3.len() - 8]);
        let mut h = Fnv1a::new();
        h.update(&out);
        let sum = h.finish();
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    #[test]
    fn a_version_2_file_still_loads_in_either_storage() {
        let c = contents();
        let v2 = as_version_2(&as_version_3(&bytes_of(&c)));
        for storage in [VectorStorage::F32, VectorStorage::Int8] {
            let back = parse(&v2, DIM, storage).unwrap();
            let want: Vec<&[f32]> = c.graph.vectors().collect();
            let got: Vec<&[f32]> = back.state.graph.vectors().collect();
            assert_eq!(got, want, "{storage:?}");
            assert_eq!(back.state.graph.labels, c.graph.labels);
            assert_eq!(back.state.live_labels, c.live_labels);
            assert_eq!(back.ids.entries, c.ids.entries);
            if storage == VectorStorage::F32 {
                assert_eq!(*back.state.graph, *c.graph);
            }
        }
    }

    #[test]
    fn an_int8_graph_maps_its_vectors_from_the_file_at_an_aligned_offset() {
        let c = contents();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.hnsw");
        save(&path, &c).unwrap();
        let loaded = load(&path, DIM, VectorStorage::Int8).unwrap();
        let g = &loaded.state.graph;
        assert_eq!(g.mapped_bytes(), 200 * DIM * 4);
        assert_eq!(g.mapped_start().map(|at| at % 64), Some(0));
        let want: Vec<&[f32]> = c.graph.vectors().collect();
        assert_eq!(g.vectors().collect::<Vec<_>>(), want);
        // Saved again, the mapped vectors are written out as they were.
        let again = dir.path().join("j.hnsw");
        save(
            &again,
            &Contents {
                graph: Arc::clone(g),
                ..c.clone()
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&path).unwrap()
        );
        // An f32 graph reads them into memory.
        let f32 = load(&path, DIM, VectorStorage::F32).unwrap();
        assert_eq!(f32.state.graph.mapped_bytes(), 0);
    }

    #[test]
    fn other_versions_are_refused_by_name() {
        let mut data = bytes_of(&contents());
        data[8..12].copy_from_slice(&1u32.to_le_bytes());
        let err = parse(&data, DIM, VectorStorage::F32).err().unwrap();
        assert!(err.contains("format version 1"), "{err}");
        assert!(err.contains("reads versions 2 to 4"), "{err}");
        // Even when the rest is garbage or cut short.
        let err = parse(&data[..20], DIM, VectorStorage::F32).err().unwrap();
        assert!(err.contains("format version 1"), "{err}");
        let err = parse(&bytes_of(&contents()), DIM + 1, VectorStorage::F32)
            .err()
            .unwrap();
        assert!(err.contains("dimensions"), "{err}");
    }

    #[test]
    fn truncation_and_bit_flips_are_errors() {
        let data = bytes_of(&contents());
        for cut in [
            0,
            7,
            12,
            24,
            data.len() / 3,
            data.len() / 2,
            data.len() - 9,
            data.len() - 1,
        ] {
            assert!(
                parse(&data[..cut], DIM, VectorStorage::F32).is_err(),
                "cut at {cut} parsed"
            );
        }
        // A flip anywhere: the checksum (or the magic/version check) catches it.
        for i in (0..data.len()).step_by(7).chain([data.len() - 1]) {
            let mut d = data.clone();
            d[i] ^= 0x10;
            assert!(
                parse(&d, DIM, VectorStorage::F32).is_err(),
                "flip at byte {i} parsed"
            );
        }
    }

    #[test]
    fn damage_behind_a_good_checksum_is_caught_by_the_range_checks() {
        let data = bytes_of(&contents());
        let u32_at = |d: &mut Vec<u8>, at: usize, v: u32| {
            d[at..at + 4].copy_from_slice(&v.to_le_bytes());
            resum(d);
        };
        let u64_at = |d: &mut Vec<u8>, at: usize, v: u64| {
            d[at..at + 8].copy_from_slice(&v.to_le_bytes());
            resum(d);
        };
        let g = section_at(&data, GRAPH);
        let l = section_at(&data, LIVE);
        let t = section_at(&data, TOMBSTONES);
        let i = section_at(&data, IDS);
        let tg = section_at(&data, TAGS);
        let p = section_at(&data, PARTS);
        // TAGS: after the names, the first entry (id, count, tags).
        let names_end = {
            let mut at = tg + 16;
            for _ in 0..4 {
                at += 2 + u16::from_le_bytes([data[at], data[at + 1]]) as usize;
            }
            at
        };
        // PART: the first sub-graph's header, then its nodes and rows.
        let sub_nodes = u32::from_le_bytes(data[p + 20..p + 24].try_into().unwrap()) as usize;
        let sub_l0 = p + 36 + 4 * sub_nodes;
        type Damage<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
        let cases: Vec<(&str, Damage<'_>)> = vec![
            ("section length", Box::new(|d| u64_at(d, g + 4, 3))),
            (
                "huge section length",
                Box::new(|d| u64_at(d, l + 4, u64::MAX)),
            ),
            (
                "section tag",
                Box::new(|d| {
                    d[l..l + 4].copy_from_slice(b"XXXX");
                    resum(d);
                }),
            ),
            ("node count", Box::new(|d| u32_at(d, g + 12, u32::MAX))),
            ("entry", Box::new(|d| u32_at(d, g + 12 + 12, 10_000))),
            (
                "layer-0 link",
                Box::new(|d| {
                    // The first layer-0 row follows the labels.
                    let row = g + 12 + 16 + 200 * 4;
                    u32_at(d, row + 4, 9_999);
                }),
            ),
            ("live count", Box::new(|d| u32_at(d, l + 12, 1_000_000))),
            (
                "tombstone words",
                Box::new(|d| u64_at(d, t + 12, u64::MAX / 2)),
            ),
            ("id next", Box::new(|d| u32_at(d, i + 12, 5))),
            (
                "a label past next",
                Box::new(|d| {
                    let last_label = g + 12 + 16 + 199 * 4;
                    u32_at(d, last_label, 5_000);
                }),
            ),
            ("id count", Box::new(|d| u32_at(d, i + 16, u32::MAX))),
            (
                "id order",
                Box::new(|d| {
                    // The second entry's internal id equal to the first's.
                    let first = i + 20;
                    let len = u16::from_le_bytes([d[first + 4], d[first + 5]]) as usize;
                    let second = first + 6 + len;
                    let v = u32::from_le_bytes(d[first..first + 4].try_into().unwrap());
                    u32_at(d, second, v);
                }),
            ),
            (
                "id bytes",
                Box::new(|d| {
                    let first = i + 20;
                    d[first + 6] = 0x01; // a control character
                    resum(d);
                }),
            ),
            (
                "id length",
                Box::new(|d| {
                    let first = i + 20;
                    d[first + 4..first + 6].copy_from_slice(&u16::MAX.to_le_bytes());
                    resum(d);
                }),
            ),
            (
                "a tag past the names",
                Box::new(|d| u32_at(d, names_end + 4 + 6, 99)),
            ),
            (
                "tagged ids past next",
                Box::new(|d| u32_at(d, names_end + 4, 50_000)),
            ),
            (
                "a sub-graph node without its tag",
                Box::new(|d| u32_at(d, names_end + 4 + 6, 1)),
            ),
            (
                "a topic name",
                Box::new(|d| {
                    d[tg + 18] = b'!';
                    resum(d);
                }),
            ),
            (
                "a sub-graph node count",
                Box::new(|d| u32_at(d, p + 20, 100_000)),
            ),
            ("a sub-graph entry", Box::new(|d| u32_at(d, p + 32, 1))),
            (
                "a sub-graph link to a node outside it",
                Box::new(|d| {
                    u32_at(d, sub_l0, 1);
                    u32_at(d, sub_l0 + 4, 1);
                }),
            ),
            (
                "sub-graph nodes out of order",
                Box::new(|d| {
                    let second = u32::from_le_bytes(d[p + 40..p + 44].try_into().unwrap());
                    u32_at(d, p + 36, second);
                }),
            ),
            (
                "trailing bytes",
                Box::new(|d| {
                    let at = d.len() - 8;
                    d.splice(at..at, [0u8; 4]);
                    resum(d);
                }),
            ),
        ];
        for (name, damage) in cases {
            let mut d = data.clone();
            damage(&mut d);
            let res = parse(&d, DIM, VectorStorage::F32);
            assert!(res.is_err(), "{name}: parsed");
        }
        // The graph's vectors, in memory or mapped: each damage is refused for what it is.
        let v = section_at(&data, VECTORS);
        let pad = u32::from_le_bytes(data[v + 12..v + 16].try_into().unwrap()) as usize;
        let first = v + 16 + pad;
        let vec_cases: Vec<(&str, &str, Damage<'_>)> = vec![
            (
                "a non-finite vector",
                "non-finite",
                Box::new(|d| {
                    let last = first + (200 * DIM - 1) * 4;
                    d[last..last + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
                    resum(d);
                }),
            ),
            ("padding", "padding", Box::new(|d| u32_at(d, v + 12, 64))),
            (
                "a short VECS",
                "truncated",
                Box::new(|d| u64_at(d, v + 4, (4 + pad + 199 * DIM * 4) as u64)),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, expected, damage) in vec_cases {
            let mut d = data.clone();
            damage(&mut d);
            for storage in [VectorStorage::F32, VectorStorage::Int8] {
                let err = parse(&d, DIM, storage).err().unwrap();
                assert!(err.contains(expected), "{name}, {storage:?}: {err}");
            }
            let path = dir.path().join("damaged.hnsw");
            std::fs::write(&path, &d).unwrap();
            match load(&path, DIM, VectorStorage::Int8) {
                Err(Error::BadFile { reason, .. }) => {
                    assert!(reason.contains(expected), "{name}, mapped: {reason}")
                }
                other => panic!("{name}, mapped: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn a_duplicate_video_id_is_refused() {
        let mut c = contents();
        let first = c.ids.entries[0].1.clone();
        c.ids.entries[1].1 = first;
        let err = parse(&bytes_of(&c), DIM, VectorStorage::F32).err().unwrap();
        assert!(err.contains("appears twice"), "{err}");
    }
}
