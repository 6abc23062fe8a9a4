//! Tunables of the store, one default each.

use steerfeed_core::EventKind;

/// How much an engagement says about a user's interest, for interest vectors, creator
/// affinity, the popular list and which events enter the user history.
pub type WeightFn = fn(&EventKind) -> f32;

/// The default [`WeightFn`]: core's one table (creation and participation above views,
/// impressions and negative signals nothing).
pub fn default_weight(kind: &EventKind) -> f32 {
    steerfeed_core::event::engagement_weight(kind)
}

/// Options of [`Store::open`](crate::Store::open): the `[store]` section of the
/// configuration is deserialised into this struct directly (`config/default.toml`
/// documents each default, and a test holds the two equal).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StoreOptions {
    /// Embedding dimension; stored in the header at creation and checked at open.
    /// Default 384 (all-MiniLM-L6-v2). Set by the engine from its language model, never
    /// from configuration.
    #[serde(skip)]
    pub dim: usize,
    /// Decoded videos kept in memory (`Arc<Video>` with embedding, about 1.8 KB each at
    /// 384 dimensions). Default 1,000,000: a catalog up to that size is served from
    /// memory. Per-video counters are cached up to the same number (at least 500,000).
    pub video_cache: usize,
    /// Load the catalog into the video cache in the background after open (up to
    /// `video_cache` videos), so the first requests after a start do not wait on sled.
    /// Default true.
    pub warm_video_cache: bool,
    /// sled's page cache, in MiB (filled as pages are read). Default 2048.
    pub cache_mb: u64,
    /// How often sled writes its buffers in the background, in ms (what the persister
    /// wrote without waiting, such as served pages once `derived_persist_ms` moved them
    /// out of memory, reaches the disk then). Default 500.
    pub flush_every_ms: u64,
    /// Half-life of per-video and per-creator action counters, popular and remix scores,
    /// in hours. Default 24.
    pub counter_half_life_h: f64,
    /// Half-life of interest vectors, in hours. Default 168 (a week).
    pub interest_half_life_h: f64,
    /// Half-life of creator affinity, in hours. Default 336 (two weeks).
    pub affinity_half_life_h: f64,
    /// Decayed interaction weight at which creator affinity reaches 0.5; affinity is
    /// `1 − 2^(−weight / affinity_scale)`, in `[0, 1)`. Default 4 (two likes).
    pub affinity_scale: f32,
    /// Affinities below this are left out of [`Viewer`](steerfeed_core::Viewer). Default 0.01.
    pub affinity_floor: f32,
    /// Seen items kept per user (newest kept). Default 2,000.
    pub seen_per_user: u64,
    /// Engagements kept per user for the history port (newest kept). Default 200.
    pub history_per_user: u64,
    /// Own recent videos loaded into the viewer. Default 200.
    pub own_recent: usize,
    /// Entries kept in memory in the popular and remix-trending lists. Default 2,000.
    pub top_lists: usize,
    /// A gap longer than this, in minutes, ends a session. Default 30.
    pub session_gap_min: u32,
    /// Longest accepted preference text, in bytes. Default 10,000.
    pub max_preference_bytes: usize,
    /// Longest accepted approved list in a consent setting. Default 10,000.
    pub max_approved: usize,
    /// Interest weight of each event kind (code, not configuration).
    #[serde(skip, default = "default_weight_fn")]
    pub weight: WeightFn,
    /// How often derived state kept in memory (counters, wellbeing, interest, affinity,
    /// seen and history, idempotency keys) is written to its trees, in ms. It is rebuilt
    /// from the event log after a crash, so this bounds the replay work at open, and how
    /// long served pages (not in the log) may stay only in memory. Default 1,000.
    pub derived_persist_ms: u64,
    /// Pending derived writes above which the background persister is woken to write
    /// them; past three times this, the writer writes them itself (bounds memory and
    /// replay). Default 100,000.
    pub derived_max_pending: usize,
    /// How long the impression log keeps a served page, in hours, on the serving clock
    /// (pages carry the time they were served at; at open, the retention is applied from
    /// the newest one); 0 keeps none (pages given for the log are dropped, and the log is
    /// emptied at open). Default 720 (30 days).
    pub impression_retention_h: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            dim: 384,
            video_cache: 1_000_000,
            warm_video_cache: true,
            cache_mb: 2048,
            flush_every_ms: 500,
            counter_half_life_h: 24.0,
            interest_half_life_h: 168.0,
            affinity_half_life_h: 336.0,
            affinity_scale: 4.0,
            affinity_floor: 0.01,
            seen_per_user: 2_000,
            history_per_user: 200,
            own_recent: 200,
            top_lists: 2_000,
            session_gap_min: 30,
            max_preference_bytes: 10_000,
            max_approved: 10_000,
            weight: default_weight,
            derived_persist_ms: 1_000,
            derived_max_pending: 100_000,
            impression_retention_h: 720,
        }
    }
}

fn default_weight_fn() -> WeightFn {
    default_weight
}

impl StoreOptions {
    /// sled's page cache in bytes.
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1 << 20)
    }

    /// Default options for embeddings of `dim` dimensions.
    pub fn with_dim(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> steerfeed_core::Result<()> {
        use steerfeed_core::Error;
        if self.dim == 0 || self.dim > 65_536 {
            return Err(Error::invalid("store.dim", "must be 1..=65536"));
        }
        for (field, h) in [
            ("store.counter_half_life_h", self.counter_half_life_h),
            ("store.interest_half_life_h", self.interest_half_life_h),
            ("store.affinity_half_life_h", self.affinity_half_life_h),
        ] {
            if !(h.is_finite() && h > 0.0) {
                return Err(Error::invalid(field, "must be a positive number of hours"));
            }
        }
        if !(self.affinity_scale.is_finite() && self.affinity_scale > 0.0) {
            return Err(Error::invalid("store.affinity_scale", "must be positive"));
        }
        if self.seen_per_user == 0 || self.history_per_user == 0 {
            return Err(Error::invalid(
                "store.seen_per_user",
                "seen and history bounds must be at least 1",
            ));
        }
        if self.session_gap_min == 0 {
            return Err(Error::invalid(
                "store.session_gap_min",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
