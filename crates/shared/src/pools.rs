//! Page pools in Redis ([`SharedPools`](steerfeed_core::storage::SharedPools)): the next
//! page of a session is picked from the pool its first ranking left, whichever replica
//! it reaches.
//!
//! Two keys per person, with the hash tag of their counters:
//! `sf:<namespace>:{<tag>}:pool`, their pool (bytes the engine encodes, expiring with
//! what is left of the pool's time to live), and `…:pool_stamp`, their stamp, which only
//! a forget moves. Three scripts change them, each atomic on the server: a take reads the
//! stamp and removes the pool in one step (two replicas never serve one pool), a keep
//! stores a pool only while the stamp is the one its ranking read, and a forget moves the
//! stamp and drops the pool.
//!
//! A forget sets the stamp to the server's clock in microseconds, or one past the stamp
//! when that is larger, so a stamp never takes a value it had before, even after it
//! expired: a ranking that read a stamp before a forget can never find it again. A stamp
//! lives [`GUARD_S`] seconds after the forget that moved it, and an absent one reads 0,
//! which no forget writes.

use steerfeed_core::{Result, UserId};

use crate::counters::Counters;

/// The names of a person's pool keys after their hash tag.
pub(crate) const KEYS: [&str; 2] = ["pool", "pool_stamp"];

/// Seconds a stamp outlives the forget that moved it.
pub(crate) const GUARD_S: u64 = steerfeed_core::storage::POOL_STAMP_GUARD_S;

/// KEYS: the pool, the stamp. Returns the stamp and the pool (nil when none), removing
/// the pool.
const TAKE: &str = r"
local pool = redis.call('GET', KEYS[1])
if pool then redis.call('DEL', KEYS[1]) end
return {redis.call('GET', KEYS[2]) or '0', pool}
";

/// KEYS: the pool, the stamp; ARGV: the stamp the ranking read, the pool, its time to
/// live in seconds. Returns 1 when kept, 0 when the stamp moved.
const KEEP: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

/// KEYS: the pool, the stamp; ARGV: the seconds the stamp lives. Reading the clock in a
/// script needs its effects replicated (always so since Redis 7; asked for before).
/// Lua's numbers hold integers exactly up to 2^53 microseconds, the year 2255.
const FORGET: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', stamp), 'EX', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// The pool scripts.
pub(crate) struct Pools {
    take: redis::Script,
    keep: redis::Script,
    forget: redis::Script,
}

impl Pools {
    pub(crate) fn new() -> Pools {
        Pools {
            take: redis::Script::new(TAKE),
            keep: redis::Script::new(KEEP),
            forget: redis::Script::new(FORGET),
        }
    }

    fn invoke<'a>(
        script: &'a redis::Script,
        c: &Counters,
        user: &UserId,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in KEYS {
            inv.key(c.key(user, k));
        }
        inv
    }

    pub(crate) async fn take(&self, c: &Counters, user: &UserId) -> Result<(u64, Option<Vec<u8>>)> {
        c.run(&Self::invoke(&self.take, c, user)).await
    }

    pub(crate) async fn keep(
        &self,
        c: &Counters,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
    ) -> Result<bool> {
        let mut inv = Self::invoke(&self.keep, c, user);
        inv.arg(stamp).arg(pool).arg(ttl_s.max(1));
        let kept: i64 = c.run(&inv).await?;
        Ok(kept == 1)
    }

    pub(crate) async fn forget(&self, c: &Counters, user: &UserId) -> Result<()> {
        let mut inv = Self::invoke(&self.forget, c, user);
        inv.arg(GUARD_S);
        let _: i64 = c.run(&inv).await?;
        Ok(())
    }

    pub(crate) async fn peek(&self, c: &Counters, user: &UserId) -> Result<Option<Vec<u8>>> {
        c.query(redis::cmd("GET").arg(c.key(user, KEYS[0]))).await
    }
}
