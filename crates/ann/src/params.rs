//! Build-time and query-time parameters, each with one documented default.

use steerfeed_core::Error;

/// How a graph holds its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorStorage {
    /// Floats in the graph's rows: the walk computes exact inner products.
    F32,
    /// Int8 codes in the rows ([`crate::quant`]): the walk reads a quarter of the
    /// bytes, and its best candidates are rescored with the exact vectors, held beside
    /// the graph (mapped from the index file once it is saved or opened). The default.
    #[default]
    Int8,
}

/// How an HNSW graph is built (fixed for the life of a graph).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HnswBuildParams {
    /// Links per node on upper layers (layer 0 keeps `2 * m`). Default 16.
    pub m: usize,
    /// Candidate list size while building; higher is slower and better. Default 200.
    pub ef_construction: usize,
    /// Threads used to build (0: all cores). Default 0.
    pub threads: usize,
    /// Vectors kept in the live segment (searched exactly) before they are folded into
    /// the graph in the background (compactions chain while it stays this full; 0:
    /// never by size). Default 1 000.
    pub max_live: usize,
    /// Share of tombstoned vectors in the graph above which a compaction rebuilds it
    /// without them. Default 0.2.
    pub max_tombstone_ratio: f32,
    /// How the graph holds vectors for its walk: `f32` or `int8`. Default `int8`.
    pub vectors: VectorStorage,
    /// Graph nodes a tag (a topic) needs for a sub-graph of its own, searched when a
    /// search is restricted to the tag; a smaller tag's nodes are scanned. Default 2 048.
    pub partition_min: usize,
}

impl Default for HnswBuildParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            threads: 0,
            max_live: 1_000,
            max_tombstone_ratio: 0.2,
            vectors: VectorStorage::Int8,
            partition_min: 2_048,
        }
    }
}

impl HnswBuildParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), Error> {
        range("m", self.m as f64, 2.0, 128.0)?;
        range("ef_construction", self.ef_construction as f64, 8.0, 4096.0)?;
        range("threads", self.threads as f64, 0.0, 1024.0)?;
        range("max_live", self.max_live as f64, 0.0, 10_000_000.0)?;
        range("partition_min", self.partition_min as f64, 2.0, 1e12)?;
        range(
            "max_tombstone_ratio",
            f64::from(self.max_tombstone_ratio),
            0.0,
            1.0,
        )
    }
}

/// How one search runs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HnswSearchParams {
    /// Candidate list size on layer 0 (at least `k` is used). Default 64.
    pub ef: usize,
    /// When the share of the graph a filter allows is at or below this, and the allowed
    /// vectors are at most `exact_max`, search scans them exactly instead of walking the
    /// graph. Default 0.03.
    pub exact_below: f32,
    /// Most allowed vectors a filtered search scans: a scan costs what it touches, a
    /// walk grows with the logarithm of the graph, so past about 20,000 vectors (a 1 %
    /// list of 2M) the filtered walk is the faster. Default 20 000.
    pub exact_max: usize,
    /// Largest candidate list a filtered graph search may widen to. Default 1024.
    pub max_ef: usize,
}

impl Default for HnswSearchParams {
    fn default() -> Self {
        Self {
            ef: 64,
            exact_below: 0.03,
            exact_max: 20_000,
            max_ef: 1024,
        }
    }
}

impl HnswSearchParams {
    /// True when a filter allowing `share` of a graph of `nodes` is searched by a scan
    /// of what it allows rather than a walk (see [`crate::hnsw`]'s rule).
    pub fn scans(&self, share: f32, nodes: usize) -> bool {
        share <= self.exact_below && f64::from(share) * nodes as f64 <= self.exact_max as f64
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), Error> {
        range("ef", self.ef as f64, 1.0, 65_536.0)?;
        range("exact_below", f64::from(self.exact_below), 0.0, 1.0)?;
        range("max_ef", self.max_ef as f64, 1.0, 1_000_000.0)
    }
}

fn range(field: &'static str, got: f64, min: f64, max: f64) -> Result<(), Error> {
    if got.is_finite() && (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field,
            got,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_scanned_when_both_its_share_and_its_size_are_small() {
        let p = HnswSearchParams::default();
        // 1 % of 1M and of 2M (20,000: the cap itself) are scanned, of 4M walked.
        assert!(p.scans(0.01, 1_000_000));
        assert!(p.scans(0.01, 2_000_000));
        assert!(!p.scans(0.01, 4_000_000));
        // A share above exact_below is walked however small the graph.
        assert!(!p.scans(0.05, 10_000));
        assert!(p.scans(0.03, 10_000));
        // A tiny share of a huge graph is still a small scan.
        assert!(p.scans(0.0001, 10_000_000));
        let never = HnswSearchParams { exact_max: 0, ..p };
        assert!(!never.scans(0.01, 1_000));
        assert!(
            never.scans(0.0, 1_000),
            "a filter allowing nothing is a scan of nothing"
        );
    }
}
