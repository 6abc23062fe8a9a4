//! Page pools in Redis ([`SharedPools`](steerfeed_core::storage::SharedPools)): the next
//! page of a session is picked from the pool its first ranking left, whichever replica
//! it reaches.
//!
//! Three keys per person, with the hash tag of their counters:
//! `sf:<namespace>:{<tag>}:pool`, their pool (bytes the engine encodes, expiring with
//! what is left of the pool's time to live), `…:pool_stamp`, their stamp, which only a
//! forget moves, and `…:pool_at`, where in the logs the forgets that moved it were
//! (`<stamp>:<change version>:<stream sequence>`: of what each forgetting process had
//! applied once its write was done, the largest, as forgets reach Redis in any order).
//! A take reads the stamp and that position, then
//! removes the pool with `GETDEL` (two replicas never serve one pool), in the same round
//! trip as the request reads the logs' heads: a ranking whose mirror, caught up, holds
//! the position has every write the stamp's forgets were for, and one whose mirror is
//! short of it keeps nothing. A keep stores a pool only while the stamp is the one its ranking
//! read; a forget moves the stamp and drops the pool. Keeps and forgets are scripts,
//! atomic on the server.
//!
//! A pool's bytes never pass through a script: Redis's Lua hashes every byte of every
//! string it is handed, which for a pool of ~70 KB cost more than the rest of the round
//! trip. A keep sends the pool to a staging key of its own (`…:pool_in:<nonce>`, living
//! [`STAGED_S`] seconds) and, in the same round trip, a script that renames it into the
//! pool when the stamp is still the ranking's, or deletes it.
//!
//! A forget sets the stamp to the server's clock in microseconds, or one past the stamp
//! when that is larger, so a stamp never takes a value it had before, even after it
//! expired: a ranking that read a stamp before a forget can never find it again. A stamp
//! lives [`GUARD_S`] seconds after the forget that moved it, and an absent one reads 0,
//! which no forget writes. A position that names another stamp than the one read (a
//! forget by a build that wrote none) is unknown, and stays so through later forgets
//! until the stamp expires: a ranking keeps nothing under it.

use steerfeed_core::{Result, UserId};

use crate::counters::Counters;

/// The names of a person's pool keys after their hash tag: their pool, their stamp, and
/// the largest position of the forgets that moved it.
pub(crate) const KEYS: [&str; 3] = ["pool", "pool_stamp", "pool_at"];

/// Seconds a stamp outlives the forget that moved it.
pub(crate) const GUARD_S: u64 = steerfeed_core::storage::POOL_STAMP_GUARD_S;

/// Seconds a keep's staging key lives: a keep whose script never ran (the process died
/// between the two commands) leaves it no longer than that.
pub(crate) const STAGED_S: u64 = 10;

/// KEYS: the pool, the stamp, the staged pool; ARGV: the stamp the ranking read, the
/// pool's time to live in seconds. Returns 1 when kept, 0 when the stamp moved (or the
/// staged pool is gone).
const KEEP: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[3])
  return 0
end
redis.call('RENAME', KEYS[3], KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// KEYS: the pool, the stamp, its position; ARGV: the seconds the stamp lives, the
/// forget's change version and stream sequence. Reading the clock in a script needs its
/// effects replicated (always so since Redis 7; asked for before). Lua's numbers hold
/// integers exactly up to 2^53 (microseconds: the year 2255).
///
/// Forgets reach Redis in any order, so the position kept is the largest of every
/// forget's since the stamp was last absent: it covers each of their writes. A stamp
/// whose position is missing or names another stamp (moved by a build that records
/// none) keeps an unknown one until it expires.
const FORGET: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local before = redis.call('GET', KEYS[2])
local version, seq = tonumber(ARGV[2]), tonumber(ARGV[3])
local known = true
if before then
  local at = redis.call('GET', KEYS[3])
  local of, v, q
  if at then of, v, q = string.match(at, '^(%d+):(%d+):(%d+)$') end
  if of == before then
    version = math.max(version, tonumber(v))
    seq = math.max(seq, tonumber(q))
  else
    known = false
  end
end
local stamp = string.format('%.0f', math.max(tonumber(before or '0') + 1, now))
local position = 'unknown'
if known then position = string.format('%.0f:%.0f', version, seq) end
redis.call('SET', KEYS[2], stamp, 'EX', ARGV[1])
redis.call('SET', KEYS[3], stamp .. ':' .. position, 'EX', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

/// What a take found.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The stamp (0: none moved it within [`GUARD_S`]).
    pub stamp: u64,
    /// Where in the logs (change version, stream sequence) the forgets that moved the
    /// stamp were: every write they were for is at or before it. `None`: unknown.
    pub moved_at: Option<(u64, u64)>,
    /// The pool, taken out.
    pub pool: Option<Vec<u8>>,
}

impl Taken {
    /// The stamp, when a mirror that applied the logs up to `held` (change version,
    /// stream sequence) holds every write its forgets were for; `None` when a ranking
    /// must keep nothing.
    pub(crate) fn stamp_within(&self, held: (u64, u64)) -> Option<u64> {
        self.moved_at
            .filter(|&(version, seq)| version <= held.0 && seq <= held.1)
            .map(|_| self.stamp)
    }
}

/// The position `at` records for `stamp` (see the module doc).
fn moved_at(stamp: u64, at: Option<&str>) -> Option<(u64, u64)> {
    if stamp == 0 {
        return Some((0, 0));
    }
    let mut parts = at?.split(':');
    let of: u64 = parts.next()?.parse().ok()?;
    let version = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    (of == stamp && parts.next().is_none()).then_some((version, seq))
}

/// The pool scripts, and what names this process's staging keys.
pub(crate) struct Pools {
    forget: redis::Script,
    /// Unique to this process (its id and start), so two processes' keeps of one person
    /// never stage under one key.
    nonce: String,
    /// Numbers this process's keeps.
    next: std::sync::atomic::AtomicU64,
}

impl Pools {
    pub(crate) fn new() -> Pools {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Pools {
            forget: redis::Script::new(FORGET),
            nonce: format!("{}.{started:x}", std::process::id()),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `script` with the first `keys` of the person's [`KEYS`].
    fn invoke<'a>(
        script: &'a redis::Script,
        c: &Counters,
        user: &UserId,
        keys: usize,
    ) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for k in &KEYS[..keys] {
            inv.key(c.key(user, k));
        }
        inv
    }

    /// The stamp and its position first, then the pool: a forget between the two leaves
    /// either no pool or a stamp its keep would be refused with.
    pub(crate) async fn take(&self, c: &Counters, user: &UserId) -> Result<Taken> {
        let mut p = redis::pipe();
        p.get(c.key(user, KEYS[1]))
            .get(c.key(user, KEYS[2]))
            .cmd("GETDEL")
            .arg(c.key(user, KEYS[0]));
        let (stamp, at, pool): (Option<u64>, Option<String>, Option<Vec<u8>>) = c.pipe(&p).await?;
        let stamp = stamp.unwrap_or(0);
        Ok(Taken {
            stamp,
            moved_at: moved_at(stamp, at.as_deref()),
            pool,
        })
    }

    /// The keep: its future hands its commands to the connection when first polled,
    /// and answers once Redis does (true: kept). It borrows nothing, so it may finish
    /// after the call that sent it.
    pub(crate) fn keep(
        &self,
        c: &Counters,
        user: &UserId,
        stamp: u64,
        pool: &[u8],
        ttl_s: u64,
    ) -> impl std::future::Future<Output = Result<bool>> + Send + 'static {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let staged = c.key(user, &format!("pool_in:{}.{n}", self.nonce));
        let mut p = redis::pipe();
        // The script's text, not its digest: a server that lost its scripts (restarted,
        // failed over) runs it all the same, in this one round trip, so the keep stays
        // ahead of any later call of this process's.
        p.set_ex(&staged, pool, STAGED_S)
            .ignore()
            .cmd("EVAL")
            .arg(KEEP)
            .arg(3)
            .arg(c.key(user, KEYS[0]))
            .arg(c.key(user, KEYS[1]))
            .arg(&staged)
            .arg(stamp)
            .arg(ttl_s.max(1));
        let conn = c.conn();
        async move {
            let (kept,): (i64,) = conn.pipe(&p).await.map_err(crate::counters::redis_error)?;
            Ok(kept == 1)
        }
    }

    /// Moves the person's stamp on and drops their pool; `at` is where in the logs
    /// (change version, stream sequence) every write the forget is for already is.
    pub(crate) async fn forget(&self, c: &Counters, user: &UserId, at: (u64, u64)) -> Result<()> {
        let mut inv = Self::invoke(&self.forget, c, user, 3);
        inv.arg(GUARD_S).arg(at.0).arg(at.1);
        let _: i64 = c.run(&inv).await?;
        Ok(())
    }

    pub(crate) async fn peek(&self, c: &Counters, user: &UserId) -> Result<Option<Vec<u8>>> {
        c.query(redis::cmd("GET").arg(c.key(user, KEYS[0]))).await
    }
}

#[cfg(test)]
mod tests {
    use super::moved_at;

    #[test]
    fn a_position_counts_only_for_the_stamp_it_names() {
        assert_eq!(moved_at(0, None), Some((0, 0)), "never moved");
        assert_eq!(
            moved_at(0, Some("7:3:4")),
            Some((0, 0)),
            "the stamp expired first"
        );
        assert_eq!(moved_at(7, Some("7:3:4")), Some((3, 4)));
        assert_eq!(
            moved_at(8, Some("7:3:4")),
            None,
            "moved by a build that wrote none"
        );
        assert_eq!(moved_at(7, None), None);
        for bad in ["7:3", "7:3:4:5", "7:x:4", "", "7::4"] {
            assert_eq!(moved_at(7, Some(bad)), None, "{bad:?}");
        }
    }
}
