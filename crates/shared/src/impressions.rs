//! The impression log on the shared backend: a JetStream stream of its own, kept once
//! for the whole deployment, not in every replica's mirror.
//!
//! A served page's impressions (what the engine logs for learning from its own logs)
//! are one message on the subject of their viewer, `steerfeed.<namespace>.imp.<tag>`
//! (`<tag>` the digest that also tags their Redis keys), sealed with the viewer's key as
//! their events are, with the page's serving time in a header. The stream keeps
//! messages for the retention (`max_age`, on the servers' clock); a read also leaves out
//! pages served more than the retention before the newest one (on the serving clock, as
//! the embedded store trims its log). Erasing a person deletes their key (nothing of
//! theirs reads any more) and purges their subject.
//!
//! The page's own message on the event log keeps only what serving state needs (the
//! videos, the check-in and break marks), so replicas apply no impressions and their
//! mirrors and snapshots hold none. A page written by an older build, impressions
//! included, still logs them in the mirror that applies it; reads give those first.

use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use steerfeed_core::{Result, Timestamp, UserId};

use crate::unavailable;

/// The serving time of a message's page, in milliseconds (its `Steerfeed-At` header).
const AT: &str = "Steerfeed-At";

/// Acknowledgements not awaited yet.
type Pending = Vec<jetstream::context::PublishAckFuture>;

/// The impression stream of one deployment.
pub(crate) struct ImpressionLog {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// `steerfeed.<namespace>.imp`: a person's subject is this, a dot and their tag.
    prefix: String,
    retention_h: u64,
    pending: std::sync::Mutex<Pending>,
    /// How long before a read's cutoff it starts reading (by arrival): [`DAY_MS`].
    pub(crate) margin_ms: std::sync::atomic::AtomicI64,
    /// Held while acknowledgements are awaited, so that a settle returns only once every
    /// one sent before it is in.
    settling: tokio::sync::Mutex<()>,
}

/// A message read back: its stream sequence and its payload.
pub(crate) struct Read {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Acknowledgements held past which a send waits for them.
const MAX_PENDING: usize = 256;

impl ImpressionLog {
    /// Opens the deployment's impression stream, made when missing; its retention is
    /// set to `retention_h` hours when it differs.
    pub(crate) async fn open(
        js: &jetstream::Context,
        namespace: &str,
        retention_h: u64,
    ) -> Result<ImpressionLog> {
        let prefix = format!("steerfeed.{namespace}.imp");
        let max_age = Duration::from_secs(retention_h.saturating_mul(3_600));
        // Namespaces hold no '-': no other deployment's stream has this name.
        let name = format!("STEERFEED-IMPRESSIONS-{}", namespace.to_ascii_uppercase());
        let mut stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name,
                subjects: vec![format!("{prefix}.*")],
                storage: jetstream::stream::StorageType::File,
                max_age,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("nats impression stream", e))?;
        let mut config = stream
            .info()
            .await
            .map_err(|e| unavailable("nats impression stream", e))?
            .config
            .clone();
        // Only the retention is this process's to set: replicas, limits and the rest
        // stay as the operator made them.
        if config.max_age != max_age {
            tracing::info!(
                was_s = config.max_age.as_secs(),
                now_s = max_age.as_secs(),
                "impression stream: retention set from impression_retention_h"
            );
            config.max_age = max_age;
            js.update_stream(config)
                .await
                .map_err(|e| unavailable("nats impression stream", e))?;
        }
        // A retention of 0 keeps nothing (and to JetStream, a `max_age` of 0 is no limit).
        if retention_h == 0 {
            tracing::warn!("impression stream: impression_retention_h is 0, the log is emptied");
            stream
                .purge()
                .await
                .map_err(|e| unavailable("nats impression stream", e))?;
        }
        Ok(ImpressionLog {
            js: js.clone(),
            stream,
            prefix,
            retention_h,
            pending: std::sync::Mutex::new(Vec::new()),
            margin_ms: std::sync::atomic::AtomicI64::new(DAY_MS),
            settling: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether pages' impressions are logged at all (a retention of 0 logs none).
    pub(crate) fn enabled(&self) -> bool {
        self.retention_h > 0
    }

    fn subject(&self, user: &UserId) -> String {
        format!("{}.{}", self.prefix, crate::counters::person_tag(user))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes `sealed` (one page's impressions, sealed for `user`) without waiting
    /// for the acknowledgement, which the next read waits for.
    pub(crate) async fn send(&self, user: &UserId, at: Timestamp, sealed: Vec<u8>) -> Result<()> {
        let message = jetstream::message::PublishMessage::build()
            .header(AT, at.as_millisecond().to_string())
            .payload(sealed.into());
        let ack = self
            .js
            .send_publish(self.subject(user), message)
            .await
            .map_err(|e| unavailable("nats publish", e))?;
        let full = {
            let mut pending = self.lock();
            pending.push(ack);
            pending.len() >= MAX_PENDING
        };
        if full {
            self.settle().await;
        }
        Ok(())
    }

    /// Waits for every acknowledgement this process has not seen yet. A page's
    /// impressions the stream did not take are lost, with a warning (as a page record
    /// may be).
    pub(crate) async fn settle(&self) {
        let _settling = self.settling.lock().await;
        let pending = std::mem::take(&mut *self.lock());
        for ack in pending {
            if let Err(e) = ack.await {
                tracing::warn!(error = %e, "a served page's impressions were not logged");
            }
        }
    }

    /// Drops the acknowledgements no one waited for (the store is closing).
    pub(crate) fn abandon(&self) {
        self.lock().clear();
    }

    /// Removes every message of `user`'s.
    pub(crate) async fn purge(&self, user: &UserId) -> Result<()> {
        self.stream
            .purge()
            .filter(self.subject(user))
            .await
            .map(|_| ())
            .map_err(|e| unavailable("nats impression stream", e))
    }

    /// The newest message on `subject`: `None` when there is none.
    async fn last(&self, subject: &str) -> Result<Option<jetstream::message::StreamMessage>> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(unavailable("nats impression stream", e)),
        }
    }

    /// The earliest serving time a read that asks for pages from `since` gives:
    /// `since`, or the retention before the newest page in the stream when that is later
    /// (milliseconds). `None` when the stream holds no page.
    pub(crate) async fn cutoff(&self, since: Timestamp) -> Result<Option<i64>> {
        let Some(newest) = self.last(&format!("{}.*", self.prefix)).await? else {
            return Ok(None);
        };
        let hours = i64::try_from(self.retention_h).unwrap_or(i64::MAX / 3_600_000);
        Ok(Some(
            at_of(&newest.headers)
                .map_or(i64::MIN, |n| {
                    n.saturating_sub(hours.saturating_mul(3_600_000))
                })
                .max(since.as_millisecond()),
        ))
    }

    /// The sequence of the first message on `subject` the stream took at or after
    /// `start_ms` (a search by sequence: the stream's times grow with it), `last` being
    /// its last message's; `None` when none did.
    async fn first_after(
        &self,
        subject: &str,
        last: &jetstream::message::StreamMessage,
        start_ms: i64,
    ) -> Result<Option<u64>> {
        let arrived_ms = |m: &jetstream::message::StreamMessage| {
            i64::try_from(m.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
        };
        if arrived_ms(last) < start_ms {
            return Ok(None);
        }
        // `best` is the answer when no message in [lo, hi) is.
        let (mut lo, mut hi, mut best) = (1, last.sequence, last.sequence);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let m = self
                .stream
                .get_first_raw_message_by_subject(subject, mid)
                .await
                .map_err(|e| unavailable("nats impression stream", e))?;
            if m.sequence >= hi {
                hi = mid;
            } else if arrived_ms(&m) >= start_ms {
                best = m.sequence;
                hi = mid;
            } else {
                lo = m.sequence + 1;
            }
        }
        Ok(Some(best))
    }

    /// A reader of the messages of `user` (everyone's with `None`) in stream order, as
    /// far as the stream held them when the call began, leaving out pages served before
    /// `cutoff` (milliseconds, from [`ImpressionLog::cutoff`]); `None` when there is
    /// nothing to read. It starts at the messages the stream took from a day before the
    /// cutoff, or before now when the cutoff is later (a page is logged as it is served,
    /// so a page served at `t` arrived after `t`; the day allows for clocks apart).
    pub(crate) async fn reader(
        &self,
        user: Option<&UserId>,
        cutoff: i64,
    ) -> Result<Option<Reader>> {
        self.settle().await;
        if !self.enabled() {
            return Ok(None);
        }
        let subject = user.map_or_else(|| format!("{}.*", self.prefix), |u| self.subject(u));
        let Some(last) = self.last(&subject).await? else {
            return Ok(None);
        };
        // Pages served at the servers' time arrive as they are served; a page timed
        // ahead of it (an app that sets the serving clock) is read as if served now.
        let start = cutoff
            .min(Timestamp::now().as_millisecond())
            .checked_sub(self.margin_ms.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|&t| t > 0);
        let first = match start {
            Some(start) => match self.first_after(&subject, &last, start).await? {
                Some(seq) => seq,
                None => return Ok(None),
            },
            None => 1,
        };
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: first,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("nats consumer", e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("nats consumer", e))?;
        Ok(Some(Reader {
            messages,
            subject,
            end: last.sequence,
            seen: first - 1,
            cutoff,
            done: false,
        }))
    }
}

/// A day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// How long a reader waits for its next message before it asks the stream whether any
/// is left to come (messages removed while it reads: purged, or expired).
const IDLE: Duration = Duration::from_secs(1);

/// Reads an impression stream's messages (see [`ImpressionLog::reader`]).
pub(crate) struct Reader {
    messages: jetstream::consumer::pull::Ordered,
    /// What it reads.
    subject: String,
    /// The last sequence to read.
    end: u64,
    /// The last sequence read.
    seen: u64,
    /// Pages served before this (milliseconds) are left out.
    cutoff: i64,
    done: bool,
}

impl Reader {
    /// Whether every message was read.
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// The next messages: at most `max` read, those served before the cutoff left out
    /// (so possibly none, with more to come: see [`Reader::done`]).
    pub(crate) async fn next_batch(
        &mut self,
        log: &ImpressionLog,
        max: usize,
    ) -> Result<Vec<Read>> {
        let mut out = Vec::new();
        let mut read = 0;
        while !self.done && read < max {
            let next = match tokio::time::timeout(IDLE, self.messages.next()).await {
                Ok(next) => next,
                Err(_) => {
                    // Nothing for a while: done unless the stream still holds a later one.
                    let last = log.last(&self.subject).await?.map_or(0, |m| m.sequence);
                    self.done = last <= self.seen;
                    continue;
                }
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(unavailable("nats consumer", e)),
                None => return Err(unavailable("nats consumer", "ended")),
            };
            read += 1;
            let info = message.info().map_err(|e| unavailable("nats message", e))?;
            let seq = info.stream_sequence;
            self.seen = seq;
            // The last one, or none left (messages removed since the read began).
            self.done = seq >= self.end || info.pending == 0;
            match message.headers.as_ref().and_then(at_of) {
                Some(at) if at >= self.cutoff => out.push(Read {
                    seq,
                    payload: message.payload.to_vec(),
                }),
                Some(_) => {}
                None => tracing::warn!(seq, "impression log: a message without its time skipped"),
            }
        }
        Ok(out)
    }
}

/// The serving time a message's headers give, in milliseconds.
fn at_of(headers: &async_nats::HeaderMap) -> Option<i64> {
    headers.get(AT).and_then(|v| v.as_str().parse().ok())
}
