//! Opening a store: sled's files (waiting for a lock a closed store in this process may
//! still hold), the schema header, the upgrades of older schemas, the state rebuilt at
//! open (sequence numbers, counts, the popular lists, the replay of the log, the mirrors)
//! and the background threads (the persister, the cache warmer).

use super::*;

/// Bytes that open the header: a store made by anything else is refused.
pub(crate) const MAGIC: &[u8; 16] = b"steerfeed-store\0";
/// The layout version this build reads and writes.
///
/// Version 2: binary event records and per-tree watermarks of the derived state. A
/// version 1 store is upgraded in place at open (its derived state was written in one
/// transaction with the log, so every watermark starts at the last logged event).
/// Version 3: the `by_topic` index; a version 1 or 2 store gets it built at open from
/// its videos.
/// Version 4: the event log holds records of up to 48 events each (`codec.rs`), the
/// idempotency keys are stored as segments of key hashes, and the seen and history rings
/// as fragments without a stored head (`rings.rs`); version 3's one-event records,
/// one-key entries and one-entry ring keys still read, so a version 3 store only gets
/// the new header.
/// Version 5: wellbeing records are binary (`codec::encode_wellbeing`), about a quarter
/// of their JSON size; JSON records still read, so a version 3 or 4 store only gets the
/// new header.
/// Version 6: records in the derived trees end in their as-of number (the last event
/// they reflect, `codec.rs`), so the persister can write keys one by one and a replay
/// after a crash halfway through still counts every event once; records without one
/// still read, so a version 3 to 5 store only gets the new header.
/// Version 7: the `catalog_log` tree records which videos each catalog version changed
/// (written in the same transaction as the change), so a vector index saved at an older
/// version can be brought up to date by replaying the videos changed since; its floor
/// (`meta` `catalog_log_floor`) is the version below which the log no longer reaches. A
/// store of an older schema gets the empty tree and a floor at its current catalog
/// version, then the new header (an older build refuses the store, since it would
/// change videos without logging them).
/// Version 8: an erased person's events are replaced in their log records by a one-byte
/// marker (`codec::erase_in_record`), which older builds cannot read; a version 3 to 7
/// store only gets the new header.
/// Version 9: the impression log (`impressions`), which an erasure must clear and older
/// builds would keep: they refuse the store. A version 3 to 8 store gets the new header.
/// Version 10: impression records of version 2, which log the choice exploration faced at
/// each slot; older builds cannot read them (not even to erase a person's), so they
/// refuse the store. A version 3 to 9 store gets the new header.
/// Version 11: impression records of version 3, which name the shadow profile a page was
/// served beside and log its pick at each slot; older builds cannot read them, so they
/// refuse the store. A version 3 to 10 store gets the new header.
pub const SCHEMA_VERSION: u32 = 11;

fn header(dim: usize) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
    h.extend_from_slice(&(dim as u32).to_be_bytes());
    h
}

/// Brings a store of an older schema `version` to [`SCHEMA_VERSION`] in place: what the
/// newer schemas need that the older never wrote (the catalogue log's floor, the
/// watermarks, the topic index), then the new header. Records in older formats stay as
/// they are (`legacy.rs` reads them). Each step is flushed before the header moves, so a
/// crash in between redoes it.
fn upgrade_schema(
    db: &Db,
    t: &Trees,
    opts: &StoreOptions,
    version: u32,
    next_seq: u64,
    catalog_version: u64,
    shown: &str,
) -> Result<()> {
    if version < 7 {
        // Builds before schema 7 changed videos without logging them: the log starts
        // now (7, not SCHEMA_VERSION: later schemas keep the log). Done
        // before any header is rewritten, so a crash in between redoes it.
        t.catalog_log.clear().map_err(db_err)?;
        t.meta
            .insert(CATALOG_FLOOR_KEY, &catalog_version.to_be_bytes())
            .map_err(db_err)?;
        db.flush().map_err(db_err)?;
    }
    if version == 1 {
        // Version 1 wrote derived state in one transaction with the log: it is
        // complete up to the last event.
        for d in Derived::ALL {
            d.tree(t)
                .insert(WATERMARK_KEY, &(next_seq - 1).to_be_bytes())
                .map_err(db_err)?;
        }
        t.meta
            .insert(HEADER_KEY, header(opts.dim))
            .map_err(db_err)?;
        db.flush().map_err(db_err)?;
        tracing::info!(path = %shown, "store: upgraded schema version 1 to 2");
    }
    if version < 3 {
        let mut n = 0usize;
        for kv in t.videos.iter() {
            let (_, b) = kv.map_err(db_err)?;
            let v = decode_video(&b)?;
            if v.deleted {
                continue;
            }
            let at = ms(v.created_at);
            for topic in &v.topics {
                t.by_topic
                    .insert(timed(topic.as_str(), at, v.id.as_str()), &[])
                    .map_err(db_err)?;
            }
            n += 1;
        }
        t.meta
            .insert(HEADER_KEY, header(opts.dim))
            .map_err(db_err)?;
        db.flush().map_err(db_err)?;
        tracing::info!(path = %shown, videos = n, "store: upgraded to schema version 3 (topic index)");
    }
    if (3..SCHEMA_VERSION).contains(&version) {
        // This build reads everything versions 3 to 10 wrote (see `SCHEMA_VERSION`),
        // so only the header changes (the catalog log was started above).
        t.meta
            .insert(HEADER_KEY, header(opts.dim))
            .map_err(db_err)?;
        db.flush().map_err(db_err)?;
        tracing::info!(path = %shown, from = version, "store: upgraded the schema version to {SCHEMA_VERSION}");
    }
    Ok(())
}

/// Opens sled's files at `config`, waiting a moment for a lock a store closed in this
/// process may still hold; corrupt or foreign files are a clear error, never a panic.
fn open_db(config: &sled::Config, shown: &str) -> Result<Db> {
    // sled reports corrupt files as errors, but be certain a foreign file never
    // brings the caller down.
    let open = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())).map_err(|_| {
            Error::internal("store", format!("{shown}: sled panicked opening the files"))
        })
    };
    // sled's I/O threads may hold the file lock for a moment after a store in this
    // process closed (a known sled 0.34 behaviour): wait for it, up to 5 s on a loaded
    // machine, rather than fail a quick reopen.
    let mut res = open()?;
    for _ in 0..500 {
        match &res {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
                res = open()?;
            }
            _ => break,
        }
    }
    res.map_err(|e| match e {
        sled::Error::Corruption { .. } => Error::invalid(
            "store.path",
            format!("{shown}: the files are corrupt or not a sled database ({e})"),
        ),
        other => Error::internal("store", format!("{shown}: cannot open: {other}")),
    })
}

/// The popular and remix-trending lists rebuilt from the counters; an unreadable counter
/// only leaves its video out until its next event rewrites the record (noted in
/// `damage`).
fn top_lists(t: &Trees, opts: &StoreOptions, damage: &DamageLog) -> Result<(TopList, TopList)> {
    let hl = opts.counter_half_life_h * 3_600_000.0;
    let mut popular = TopList::new(opts.top_lists, hl);
    let mut remix = TopList::new(opts.top_lists, hl);
    for kv in t.counters.iter() {
        let (k, v) = kv.map_err(db_err)?;
        if k.as_ref() == WATERMARK_KEY {
            continue;
        }
        // An unreadable counter only leaves its video out of the lists until its next
        // event rewrites the record.
        let (Ok(id), Ok(rec)) = (video_of(&k), CounterRec::decode(&v)) else {
            damage.note("counters", &k, DamageRule::Dropped);
            continue;
        };
        popular.update(&id, rec.popular, rec.at_ms);
        remix.update(&id, rec.remix, rec.at_ms);
    }
    Ok((popular, remix))
}

/// Starts the background persister and, when the options ask for it, the cache warmer
/// (without one the store is warm at once).
fn spawn_background(
    inner: &Arc<Inner>,
    opts: &StoreOptions,
) -> Result<(
    std::thread::JoinHandle<()>,
    Option<std::thread::JoinHandle<()>>,
)> {
    let bg = Arc::clone(inner);
    let every = std::time::Duration::from_millis(opts.derived_persist_ms.max(1));
    let thread = std::thread::Builder::new()
        .name("steerfeed-store-persist".into())
        .spawn(move || {
            let s = Store {
                inner: bg,
                _closer: None,
            };
            loop {
                s.inner.persist_wake.wait(every);
                if s.inner.closing.load(Ordering::Acquire) {
                    break;
                }
                if s.inner.crashed.load(Ordering::Acquire) {
                    continue;
                }
                if let Err(e) = s.persist_round() {
                    tracing::warn!(error = %e, "store: could not write derived state");
                }
            }
        })
        .map_err(|e| Error::internal("store", format!("cannot start the persister: {e}")))?;
    let warmer = if opts.warm_video_cache && opts.video_cache > 0 {
        let bg = Arc::clone(inner);
        let spawned = std::thread::Builder::new()
            .name("steerfeed-store-warm".into())
            .spawn(move || {
                let s = Store {
                    inner: bg,
                    _closer: None,
                };
                match s.warm_video_cache() {
                    Ok(n) => tracing::debug!(videos = n, "store: video cache warmed"),
                    Err(e) => {
                        tracing::warn!(error = %e, "store: could not warm the video cache")
                    }
                }
                match s.warm_resident() {
                    Ok(n) => tracing::debug!(users = n, "store: per-user state resident"),
                    Err(e) => {
                        tracing::warn!(error = %e, "store: could not load per-user state")
                    }
                }
                s.inner.warm.store(true, Ordering::Release);
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                // Only a cold cache: the store works without it.
                tracing::warn!(error = %e, "store: cannot start the cache warmer");
                inner.warm.store(true, Ordering::Release);
                None
            }
        }
    } else {
        inner.warm.store(true, Ordering::Release);
        None
    };
    Ok((thread, warmer))
}

impl Store {
    /// Opens (or creates) the store at `path`. A new store gets a header with
    /// [`SCHEMA_VERSION`] and `opts.dim`; an existing one must carry the same version and
    /// dimension, and a directory holding some other sled database is refused.
    /// Its erasure log is `<path>.erasures.jsonl`, beside the directory.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        Self::open_with_erasure_log(path, opts, None)
    }

    /// [`Store::open`] with the erasure log at `erasure_log` (`None`: beside `path`). The
    /// log must outlive the store's directory: a store restored from an older copy
    /// applies the erasures logged since when it opens.
    pub fn open_with_erasure_log(
        path: &Path,
        opts: StoreOptions,
        erasure_log: Option<&Path>,
    ) -> Result<Store> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_bytes())
            .flush_every_ms(Some(opts.flush_every_ms.max(1)));
        Self::open_with(
            config,
            opts,
            Some(path.to_path_buf()),
            erasure_log.map(Path::to_path_buf),
        )
    }

    /// A store in a temporary directory that is removed when the store is dropped (tests).
    pub fn temporary(opts: StoreOptions) -> Result<Store> {
        let config = sled::Config::new()
            .temporary(true)
            .cache_capacity(opts.cache_bytes())
            .flush_every_ms(Some(opts.flush_every_ms.max(1)));
        Self::open_with(config, opts, None, None)
    }

    pub(super) fn open_with(
        config: sled::Config,
        opts: StoreOptions,
        path: Option<PathBuf>,
        erasure_log: Option<PathBuf>,
    ) -> Result<Store> {
        let config = config.mode(sled::Mode::HighThroughput);
        opts.validate()?;
        let shown = path
            .as_ref()
            .map_or_else(|| "(temporary)".to_owned(), |p| p.display().to_string());
        let db = open_db(&config, &shown)?;
        let version = Self::check_header(&db, &opts, &shown)?;
        let t = Trees::open(&db)?;
        let next_seq = match t.events.last().map_err(db_err)? {
            Some((k, v)) => {
                u64_of(&k).ok_or_else(|| corrupt("event key"))? + codec::record_len(&v)?
            }
            None => 1,
        };
        let next_impression = match t.impressions.last().map_err(db_err)? {
            Some((k, _)) => u64_of(&k).ok_or_else(|| corrupt("impression key"))? + 1,
            None => 1,
        };
        let catalog_version = match t.meta.get(CATALOG_VERSION_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("catalog version"))?,
            None => 0,
        };
        upgrade_schema(&db, &t, &opts, version, next_seq, catalog_version, &shown)?;
        let catalog_floor = match t.meta.get(CATALOG_FLOOR_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("catalog log floor"))?,
            None => {
                // A new store (or one whose upgrade stopped right after the header was
                // rewritten, which no build could change videos in since): the log
                // starts at the current version.
                t.meta
                    .insert(CATALOG_FLOOR_KEY, &catalog_version.to_be_bytes())
                    .map_err(db_err)?;
                catalog_version
            }
        };
        if catalog_floor > catalog_version {
            return Err(corrupt("catalog log floor"));
        }
        let store_id = match t.meta.get(STORE_ID_KEY).map_err(db_err)? {
            Some(b) => String::from_utf8(b.to_vec()).map_err(|_| corrupt("store id"))?,
            None => {
                let id = new_store_id();
                t.meta.insert(STORE_ID_KEY, id.as_bytes()).map_err(db_err)?;
                id
            }
        };
        let live = match t.meta.get(LIVE_VIDEOS_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("video count"))?,
            None => 0,
        };
        // Beside the store's directory as sled resolved it (a store opened as "." or
        // "db" still gets its log outside the directory).
        let erasures = crate::erasure::ErasureLog::open(
            erasure_log.or_else(|| path.as_deref().map(crate::erasure::erasure_log_beside)),
        )?;
        let damage = DamageLog::default();
        let (popular, remix) = top_lists(&t, &opts, &damage)?;
        let inner = Arc::new(Inner {
            overlay: RwLock::new(Overlay::new(next_seq - 1)),
            crashed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            warm: AtomicBool::new(false),
            persist_wake: Wake::default(),
            persist: Mutex::new(()),
            time_zones: RwLock::default(),
            consent_epoch: AtomicU64::new(0),
            person_facts: RwLock::default(),
            counter_cache: RwLock::default(),
            creator_cache: RwLock::default(),
            counter_epoch: AtomicU64::new(0),
            mirror: Mirror::default(),
            ids: Ids::default(),
            damage,
            erasures,
            store_id,
            erasure_epoch: AtomicU64::new(0),
            users: RecordCache::new(MAX_CACHED_USERS),
            prefs: RecordCache::new(MAX_CACHED_USERS),
            parental: RecordCache::new(MAX_CACHED_USERS),
            served: Default::default(),
            cache: VideoCache::new(opts.video_cache),
            popular: Mutex::new(popular),
            remix: Mutex::new(remix),
            next_seq: AtomicU64::new(next_seq),
            next_impression: AtomicU64::new(next_impression),
            impressions_pending: Mutex::new(Vec::new()),
            live_videos: AtomicU64::new(live),
            catalog_version: AtomicU64::new(catalog_version),
            catalog_floor: AtomicU64::new(catalog_floor),
            write: Mutex::new(()),
            commit: GroupCommit::default(),
            db,
            t,
            opts,
            path,
        });
        let bare = Store {
            inner: Arc::clone(&inner),
            _closer: None,
        };
        bare.replay()?;
        inner.mirror.load(&inner.t, &inner.ids, &inner.damage)?;
        bare.apply_pending_erasures()?;
        bare.trim_impressions_at_open()?;
        let (thread, warmer) = spawn_background(&inner, &opts)?;
        Ok(Store {
            inner: Arc::clone(&inner),
            _closer: Some(Arc::new(Closer {
                inner,
                thread: Some(thread),
                warmer,
            })),
        })
    }

    /// Checks (or writes) the header; returns the schema version found (a new store gets
    /// [`SCHEMA_VERSION`]; an older one is upgraded by the caller).
    pub(super) fn check_header(db: &Db, opts: &StoreOptions, shown: &str) -> Result<u32> {
        let names: HashSet<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
        if !names.contains(b"meta".as_slice()) {
            let foreign = names.iter().any(|n| {
                n.as_slice() != b"__sled__default"
                    && !TREE_NAMES.iter().any(|t| t.as_bytes() == n.as_slice())
            }) || !db.is_empty();
            if foreign || names.len() > 1 {
                return Err(Error::invalid(
                    "store.path",
                    format!("{shown}: holds a database that is not a steerfeed store"),
                ));
            }
            let meta = db.open_tree("meta").map_err(db_err)?;
            meta.insert(HEADER_KEY, header(opts.dim)).map_err(db_err)?;
            db.flush().map_err(db_err)?;
            return Ok(SCHEMA_VERSION);
        }
        let meta = db.open_tree("meta").map_err(db_err)?;
        let h = meta.get(HEADER_KEY).map_err(db_err)?.ok_or_else(|| {
            Error::invalid(
                "store.path",
                format!("{shown}: no steerfeed header (not a steerfeed store, or damaged)"),
            )
        })?;
        if h.len() != MAGIC.len() + 8 || &h[..MAGIC.len()] != MAGIC {
            return Err(Error::invalid(
                "store.path",
                format!("{shown}: the header is not a steerfeed header (foreign or corrupt store)"),
            ));
        }
        let version = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let dim = u32::from_be_bytes([h[20], h[21], h[22], h[23]]) as usize;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(Error::invalid(
                "store.schema_version",
                format!(
                    "{shown}: schema version {version}, but this build reads version {SCHEMA_VERSION}; \
                     no migration is available"
                ),
            ));
        }
        if dim != opts.dim {
            return Err(Error::WrongDimension {
                field: "store.dim",
                expected: dim,
                got: opts.dim,
            });
        }
        Ok(version)
    }
}

/// A new store's identity: 128 bits from the process's random hasher seeds, the clock and
/// the process id, as 32 hex digits.
fn new_store_id() -> String {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (now, std::process::id());
    let a = foldhash::quality::RandomState::default().hash_one(seed);
    let b = foldhash::quality::RandomState::default().hash_one((seed, a));
    format!("{a:016x}{b:016x}")
}
