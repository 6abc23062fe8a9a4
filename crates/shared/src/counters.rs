//! Per-person counters every replica must agree on at the moment a page is ranked, kept
//! in Redis: the items reserved for a teen's pages each day
//! ([`Storage::reserve_items`](steerfeed_core::storage::Storage::reserve_items)). The
//! connection and the keys serve the page pools too (the `pools` module).
//!
//! The logs cannot count these: two replicas ranking a page for one teen at the same
//! instant have both applied the same events, so each would serve what the cap leaves.
//! A reservation in Redis is one script run, atomic on the server, so pages ranked at
//! once on any replicas never grant more than the cap in all.
//!
//! Every key of a person carries the same hash tag (`{…}`, a digest of their id: ids may
//! hold braces), so their keys live in one slot and a script may change them together
//! on a Redis Cluster; a key without it would fail there with `CROSSSLOT`, which the
//! cluster test would catch. Only the scripts below change them (and an erasure deletes
//! them).

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use sha2::{Digest, Sha256};
use steerfeed_core::storage::{ItemAsk, ItemGrant};
use steerfeed_core::{Error, Result, UserId};

/// How long a person's counters outlive their last reservation.
const KEEP_S: u64 = 3 * 24 * 3600;

/// Reserves items of one day: KEYS[1] the person's reserved items by day (a hash), KEYS[2]
/// their open grants (`#`: the last grant id; `<id>`: `<day> <items>`). ARGV: the day,
/// the reported floor, the items wanted, the cap, the keys' time to live, the oldest day
/// kept. The rule is `steerfeed_core::storage::ItemAsk::grant`.
const RESERVE: &str = r"
local reserved = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local before = math.max(reserved, tonumber(ARGV[2]))
local granted = math.min(tonumber(ARGV[3]), math.max(tonumber(ARGV[4]) - before, 0))
redis.call('HSET', KEYS[1], ARGV[1], before + granted)
local id = redis.call('HINCRBY', KEYS[2], '#', 1)
if granted > 0 then
  redis.call('HSET', KEYS[2], id, ARGV[1] .. ' ' .. granted)
end
if redis.call('HLEN', KEYS[1]) > 3 then
  for _, day in ipairs(redis.call('HKEYS', KEYS[1])) do
    if day < ARGV[6] then redis.call('HDEL', KEYS[1], day) end
  end
end
-- A page that served all it was granted gives nothing back, so its grant stays open:
-- grants of days no longer kept leave here.
if redis.call('HLEN', KEYS[2]) > 64 then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if all[i] ~= '#' and string.sub(all[i + 1], 1, #ARGV[6]) < ARGV[6] then
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {before, granted, id}
";

/// Gives back unused items of a grant, once: KEYS as [`RESERVE`]'s; ARGV: the grant id,
/// the items unused. Returns the items given back.
const RELEASE: &str = r"
local grant = redis.call('HGET', KEYS[2], ARGV[1])
if not grant then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local sp = string.find(grant, ' ', 1, true)
local day = string.sub(grant, 1, sp - 1)
local back = math.min(tonumber(string.sub(grant, sp + 1)), tonumber(ARGV[2]))
local reserved = tonumber(redis.call('HGET', KEYS[1], day) or '0')
if reserved > 0 and back > 0 then
  redis.call('HSET', KEYS[1], day, math.max(reserved - back, 0))
end
return back
";

/// A connection to one Redis server or to a Redis Cluster (both reconnect on their own).
/// Clones share it, and it sends every clone's commands in the order they are handed
/// to it.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The deployment's counters in Redis.
pub(crate) struct Counters {
    conn: Conn,
    /// `sf:<namespace>:`, before every key.
    prefix: String,
    reserve: redis::Script,
    release: redis::Script,
}

/// A server that cannot be reached (or answers that it cannot serve) is `Unavailable`;
/// anything else (a script error, an answer of the wrong shape) is a bug: `Internal`.
pub(crate) fn redis_error(e: redis::RedisError) -> Error {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
    {
        Error::Unavailable {
            what: format!("redis: {e}"),
        }
    } else {
        Error::internal("redis", e)
    }
}

/// The hash tag of a person's keys: a digest of their id, which may itself hold braces.
pub(crate) fn person_tag(user: &UserId) -> String {
    let d = Sha256::digest(user.as_str().as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Conn {
    pub(crate) async fn pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => inv.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => inv.invoke_async(&mut c).await,
        }
    }
}

impl Counters {
    /// Connects to `url`: one server, or with `cluster` a Redis Cluster it is a node of.
    pub(crate) async fn connect(url: &str, cluster: bool, namespace: &str) -> Result<Counters> {
        // Request and answer: no write waits for an acknowledgement of the one before
        // (the client leaves Nagle's algorithm on by default).
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let conn = if cluster {
            let client = redis::cluster::ClusterClientBuilder::new(vec![url])
                .tcp_settings(tcp)
                .build()
                .map_err(redis_error)?;
            Conn::Cluster(client.get_async_connection().await.map_err(redis_error)?)
        } else {
            let info = redis::IntoConnectionInfo::into_connection_info(url)
                .map_err(redis_error)?
                .set_tcp_settings(tcp);
            let client = redis::Client::open(info).map_err(redis_error)?;
            Conn::Single(client.get_connection_manager().await.map_err(redis_error)?)
        };
        let counters = Counters {
            conn,
            prefix: format!("sf:{namespace}:"),
            reserve: redis::Script::new(RESERVE),
            release: redis::Script::new(RELEASE),
        };
        counters.ping().await?;
        Ok(counters)
    }

    /// The person's key `name`: every key of theirs has one hash tag.
    pub(crate) fn key(&self, user: &UserId, name: &str) -> String {
        format!("{}{{{}}}:{name}", self.prefix, person_tag(user))
    }

    /// The person's keys: reserved items by day, open grants.
    pub(crate) fn keys(&self, user: &UserId) -> [String; 2] {
        [self.key(user, "items"), self.key(user, "grants")]
    }

    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        self.conn.run(inv).await.map_err(redis_error)
    }

    /// The connection, for a call that outlives these counters' borrow (one sent now
    /// and answered later).
    pub(crate) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Sends `pipe`'s commands at once (one slot: every key with one hash tag).
    pub(crate) async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        self.pipe_raw(pipe).await.map_err(redis_error)
    }

    /// [`Counters::pipe`], with the client's own error.
    pub(crate) async fn pipe_raw<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        self.conn.pipe(pipe).await
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        match self.conn.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
        .map_err(redis_error)
    }

    /// Answers once Redis does.
    pub(crate) async fn ping(&self) -> Result<()> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(Error::internal("redis", format!("PING answered {pong}")));
        }
        Ok(())
    }

    pub(crate) async fn reserve(&self, user: &UserId, ask: ItemAsk) -> Result<ItemGrant> {
        let [items, grants] = self.keys(user);
        let oldest = ask.day.yesterday().unwrap_or(ask.day);
        let mut inv = self.reserve.prepare_invoke();
        inv.key(&items)
            .key(&grants)
            .arg(ask.day.to_string())
            .arg(ask.floor)
            .arg(ask.want)
            .arg(ask.cap)
            .arg(KEEP_S)
            .arg(oldest.to_string());
        let (before, granted, id): (u32, u32, u64) = self.run(&inv).await?;
        Ok(ItemGrant {
            day: ask.day,
            before,
            granted,
            id,
        })
    }

    pub(crate) async fn release(
        &self,
        user: &UserId,
        grant: &ItemGrant,
        unused: u32,
    ) -> Result<()> {
        let [items, grants] = self.keys(user);
        let mut inv = self.release.prepare_invoke();
        inv.key(&items).key(&grants).arg(grant.id).arg(unused);
        let _back: u32 = self.run(&inv).await?;
        Ok(())
    }

    /// Removes an erased person's keys (one slot, so one command on a cluster too).
    pub(crate) async fn forget(&self, user: &UserId) -> Result<()> {
        let mut cmd = redis::cmd("DEL");
        for k in self.keys(user) {
            cmd.arg(k);
        }
        let _removed: u64 = self.query(&cmd).await?;
        Ok(())
    }
}
