//! The sidecar's configuration: the engine's [`Config`] and the sections the engine
//! leaves to the sidecar (`[server]`, `[log]`), read from the same layers
//! (`config/default.toml`, a file, `STEERFEED__*` variables). The loopback rule and the
//! API-key rules live here, with the settings they guard.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use steerfeed::Config;
use steerfeed::config::{ConfigError, layered_table, load_table};

/// Everything `steerfeed serve` runs with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SidecarConfig {
    /// The engine's sections.
    #[serde(flatten)]
    pub engine: Config,
    /// The HTTP sidecar (`[server]`).
    pub server: ServerConfig,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// The shared backend (`[shared]`): off while `postgres_url` is empty.
    pub shared: SharedConfig,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used)] // the embedded defaults are tested to parse
        Self::from_layers(None, std::iter::empty()).expect("embedded defaults are valid")
    }
}

impl SidecarConfig {
    /// Loads defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_table(load_table(file)?)
    }

    /// Builds the configuration from the defaults, an optional `(origin, toml)` layer
    /// and environment pairs.
    pub fn from_layers(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_table(layered_table(file, env)?)
    }

    /// Reads the sidecar's sections out of a layered table and the engine's from the rest.
    fn from_table(mut table: toml::Table) -> Result<Self, ConfigError> {
        let section = |table: &mut toml::Table, name: &str| {
            table
                .remove(name)
                .unwrap_or_else(|| toml::Value::Table(toml::Table::new()))
        };
        let parse = |e: toml::de::Error| ConfigError::Parse {
            origin: "merged layers".into(),
            message: e.message().to_owned(),
        };
        let server: ServerConfig = section(&mut table, "server").try_into().map_err(parse)?;
        let log: LogConfig = section(&mut table, "log").try_into().map_err(parse)?;
        let shared: SharedConfig = section(&mut table, "shared").try_into().map_err(parse)?;
        let config = Self {
            engine: Config::from_table(table)?,
            server,
            log,
            shared,
        };
        config.server.validate()?;
        config.shared.validate()?;
        Ok(config)
    }

    /// The sidecar around an engine's configuration, with the default `[server]` and
    /// `[log]`.
    pub fn for_engine(engine: Config) -> Self {
        Self {
            engine,
            ..Self::default()
        }
    }

    /// The effective configuration as TOML (API keys masked).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.server.api_keys = shown
            .server
            .api_keys
            .iter()
            .map(|_| "********".into())
            .collect();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Settings of the HTTP sidecar.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Accepted bearer tokens, each of scope `admin` ([`crate::keys`]): for development
    /// and single-tenant setups; scoped keys go in `api_keys_file`.
    pub api_keys: Vec<String>,
    /// A file of scoped keys, one `<scope> <key> [<name>]` a line ([`crate::keys`]), read
    /// at startup and again on SIGHUP; a relative path is read from the working directory.
    /// Set, it turns auth on even when it holds no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Request timeout in milliseconds.
    pub request_timeout_ms: u64,
    /// Requests per second each API key may make on `/v1` routes, refilled continuously
    /// (a token bucket per key; one bucket for all when no keys are set). 0 turns rate
    /// limiting off. Beyond it a request is answered 429 `rate_limited` with `retry-after`.
    pub rate_limit_per_second: f64,
    /// Requests a key may make at once after being idle (the bucket's size). At least 1
    /// when rate limiting is on.
    pub rate_limit_burst: u32,
    /// Lets clients pin the clock a request runs at (`now` on feed and preference
    /// requests) and date events anywhere in time: for simulations and tests only. Off,
    /// the server's clock is used and a `now` is refused.
    pub allow_client_clock: bool,
    /// How far behind the server's clock an event may be dated, in seconds (events
    /// queued on a device that was offline arrive late).
    pub event_max_age_s: u64,
    /// How far ahead of the server's clock an event may be dated, in seconds (clock
    /// skew of the devices).
    pub event_max_ahead_s: u64,
    /// Time a request head may take to arrive in full, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time a connection may go without a byte read or written, in seconds.
    pub idle_timeout_s: u64,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a console session made by signing in with an `admin` key lasts, in
    /// seconds.
    pub console_session_s: u64,
    /// How often the metrics are sampled for the console's history, in seconds.
    pub metrics_sample_s: u64,
    /// How long the metrics' samples are kept, in seconds.
    pub metrics_history_s: u64,
    /// The `replica` label of every series `/metrics` serves, telling replicas of one
    /// deployment apart; empty: the bind address.
    #[serde(default)]
    pub replica: String,
}

impl ServerConfig {
    /// The latest time a client may date an event or a video with: the server's clock
    /// plus `event_max_ahead_s`; `None` when `allow_client_clock` lets clients keep the
    /// clock.
    pub fn latest_client_time(&self) -> Option<steerfeed::Timestamp> {
        use steerfeed::Timestamp;
        if self.allow_client_clock {
            return None;
        }
        let ahead_ms = i64::try_from(self.event_max_ahead_s)
            .ok()
            .and_then(|s| s.checked_mul(1000));
        let newest = ahead_ms
            .and_then(|a| Timestamp::now().as_millisecond().checked_add(a))
            .and_then(|ms| Timestamp::from_millisecond(ms).ok());
        Some(newest.unwrap_or(Timestamp::MAX))
    }

    /// The `replica` label: [`ServerConfig::replica`], or the bind address.
    pub fn replica_name(&self) -> String {
        if self.replica.is_empty() {
            self.bind.to_string()
        } else {
            self.replica.clone()
        }
    }
}

/// Where the shared backend keeps its state: several `steerfeed serve` processes with
/// the same `[shared]` settings serve one app (the `steerfeed-shared` crate; the
/// `steerfeed` binary built with its `shared` feature). Empty `postgres_url`: the
/// embedded store of `[store]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    /// PostgreSQL, the system of record and its change log (`postgres://user@host:port/db`).
    pub postgres_url: String,
    /// NATS with JetStream, the event log (`nats://host:port`).
    pub nats_url: String,
    /// Redis, the counters replicas must agree on while ranking and the page pools
    /// (`redis://host:port`).
    pub redis_url: String,
    /// `redis_url` names a node of a Redis Cluster.
    pub redis_cluster: bool,
    /// The deployment's schema, stream and subject names: lower-case letters, digits
    /// and `_`.
    pub namespace: String,
    /// How long a write or a catch-up may wait on the servers before it fails
    /// (503), in milliseconds.
    pub timeout_ms: u64,
    /// The directory of the deployment's vector index snapshots, which every replica
    /// reads (a shared file system between machines); empty: none.
    pub snapshot_dir: String,
    /// How often the replica holding the deployment's lead writes a snapshot, in
    /// seconds.
    pub snapshot_interval_s: u64,
    /// How often, at most, the leading replica writes a snapshot of its mirror into
    /// `snapshot_dir` (from which replicas start instead of replaying both logs), in
    /// seconds; 0: never.
    pub mirror_snapshot_interval_s: u64,
    /// After writing a mirror snapshot, the leading replica removes from the logs what
    /// the oldest kept mirror snapshot and every replica seen lately already hold.
    pub trim_logs: TrimLogs,
}

/// Which logs the leading replica trims after writing a mirror snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrimLogs {
    /// Neither: the logs keep everything (unless the stream was given a `max_age`).
    None,
    /// The event stream.
    Stream,
    /// The event stream and the change log (the snapshot directory then holds the only
    /// copy of older writes: it must be as durable as the database).
    Both,
}

impl SharedConfig {
    /// True when the shared backend is configured.
    pub fn enabled(&self) -> bool {
        !self.postgres_url.is_empty()
    }

    /// All three servers or none, and a timeout.
    pub fn validate(&self) -> Result<(), steerfeed::Error> {
        let set = [&self.postgres_url, &self.nats_url, &self.redis_url]
            .iter()
            .filter(|u| !u.is_empty())
            .count();
        if set != 0 && set != 3 {
            return Err(steerfeed::Error::invalid(
                "shared",
                "set postgres_url, nats_url and redis_url (the shared backend) or none of them",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(steerfeed::Error::invalid(
                "shared.timeout_ms",
                "must be at least 1",
            ));
        }
        if self.snapshot_interval_s == 0 {
            return Err(steerfeed::Error::invalid(
                "shared.snapshot_interval_s",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Tracing filter directives.
    pub filter: String,
    /// `text` (colours only on a terminal) or `json` (one object per line, for log shippers).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServerConfig {
    /// Checks ranges and the rules that keep a sidecar safe: no bind beyond loopback
    /// without keys (a key file counts as keys: it turns auth on even empty), keys a
    /// header can carry. The key file itself is read when the state is built
    /// ([`crate::AppState::try_new`]).
    pub fn validate(&self) -> Result<(), steerfeed::Error> {
        let s = self;
        if !s.bind.ip().is_loopback() && !s.auth_configured() {
            return Err(steerfeed::Error::invalid(
                "server.bind",
                format!(
                    "{} is not a loopback address: set server.api_keys_file \
                     (STEERFEED__SERVER__API_KEYS_FILE) or server.api_keys \
                     (STEERFEED__SERVER__API_KEYS) before serving beyond this machine",
                    s.bind
                ),
            ));
        }
        if s.api_keys.iter().any(|k| !valid_api_key(k)) {
            return Err(steerfeed::Error::invalid(
                "server.api_keys",
                "each API key must be at least 16 characters, all visible ASCII \
                     (letters, digits, punctuation: no spaces, no other characters)",
            ));
        }
        if !(1024..=(256 << 20)).contains(&s.max_body_bytes) {
            return Err(steerfeed::Error::OutOfRange {
                field: "server.max_body_bytes",
                got: s.max_body_bytes as f64,
                min: 1024.0,
                max: f64::from(256u32 << 20),
            });
        }
        if !(1..=600_000).contains(&s.request_timeout_ms) {
            return Err(steerfeed::Error::OutOfRange {
                field: "server.request_timeout_ms",
                got: s.request_timeout_ms as f64,
                min: 1.0,
                max: 600_000.0,
            });
        }
        if !(s.rate_limit_per_second.is_finite()
            && (0.0..=1_000_000.0).contains(&s.rate_limit_per_second))
        {
            return Err(steerfeed::Error::OutOfRange {
                field: "server.rate_limit_per_second",
                got: s.rate_limit_per_second,
                min: 0.0,
                max: 1_000_000.0,
            });
        }
        for (field, got, min, max) in [
            (
                "server.event_max_age_s",
                s.event_max_age_s,
                0,
                10 * 365 * 86_400,
            ),
            ("server.event_max_ahead_s", s.event_max_ahead_s, 0, 86_400),
            (
                "server.header_read_timeout_ms",
                s.header_read_timeout_ms,
                100,
                600_000,
            ),
            ("server.idle_timeout_s", s.idle_timeout_s, 1, 86_400),
            (
                "server.max_connections",
                s.max_connections as u64,
                1,
                1_000_000,
            ),
            (
                "server.console_session_s",
                s.console_session_s,
                60,
                7 * 86_400,
            ),
            ("server.metrics_sample_s", s.metrics_sample_s, 1, 3_600),
            (
                "server.metrics_history_s",
                s.metrics_history_s,
                s.metrics_sample_s,
                7 * 86_400,
            ),
        ] {
            if !(min..=max).contains(&got) {
                return Err(steerfeed::Error::OutOfRange {
                    field,
                    got: got as f64,
                    min: min as f64,
                    max: max as f64,
                });
            }
        }
        if s.metrics_history_s / s.metrics_sample_s.max(1) > crate::history::MAX_SAMPLES {
            return Err(steerfeed::Error::invalid(
                "server.metrics_history_s",
                format!(
                    "{} s of samples every {} s is more than {} samples: sample less often",
                    s.metrics_history_s,
                    s.metrics_sample_s,
                    crate::history::MAX_SAMPLES
                ),
            ));
        }
        // A connection stalled mid-request past idle_timeout_s is closed: a request the
        // server may still be answering must not be.
        if s.idle_timeout_s.saturating_mul(1000) <= s.request_timeout_ms {
            return Err(steerfeed::Error::invalid(
                "server.idle_timeout_s",
                format!(
                    "{} s is not longer than server.request_timeout_ms ({} ms): a slow request \
                     would be cut off",
                    s.idle_timeout_s, s.request_timeout_ms
                ),
            ));
        }
        let min_burst = if s.rate_limit_per_second > 0.0 { 1 } else { 0 };
        if !(min_burst..=1_000_000).contains(&s.rate_limit_burst) {
            return Err(steerfeed::Error::OutOfRange {
                field: "server.rate_limit_burst",
                got: f64::from(s.rate_limit_burst),
                min: f64::from(min_burst),
                max: 1_000_000.0,
            });
        }
        Ok(())
    }

    /// True when requests must carry a key: keys are listed or a key file is set.
    pub fn auth_configured(&self) -> bool {
        !self.api_keys.is_empty() || self.api_keys_file.is_some()
    }
}

/// An API key the sidecar can compare: 16 or more visible ASCII characters. A header
/// carries ASCII, and the token is trimmed before it is compared, so a key with spaces
/// or other characters could never match, or would match a shorter secret than it seems.
pub(crate) fn valid_api_key(k: &str) -> bool {
    k.len() >= 16 && k.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_embedded_defaults_are_valid_and_layers_apply_to_every_section() {
        let c = SidecarConfig::from_layers(None, env(&[])).unwrap();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.engine, Config::default());
        let file = "[server]\nbind = \"127.0.0.1:9000\"\nrequest_timeout_ms = 100\n[pages]\npool_ttl_s = 30\n";
        let c = SidecarConfig::from_layers(
            Some(("test.toml", file)),
            env(&[("STEERFEED__SERVER__BIND", "127.0.0.1:9100")]),
        )
        .unwrap();
        assert_eq!(c.server.bind.port(), 9100);
        assert_eq!(c.server.request_timeout_ms, 100);
        assert_eq!(c.engine.pages.pool_ttl_s, 30);
        let err = SidecarConfig::from_layers(Some(("f.toml", "[server]\nbnd = 1\n")), env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
        // The engine alone reads the same layers and leaves these sections alone.
        let engine = Config::from_layers(Some(("test.toml", file)), env(&[])).unwrap();
        assert_eq!(engine.pages.pool_ttl_s, 30);
    }

    #[test]
    fn api_keys_come_comma_separated_from_the_environment() {
        let c = SidecarConfig::from_layers(
            None,
            env(&[
                (
                    "STEERFEED__SERVER__API_KEYS",
                    "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
                ),
                ("STEERFEED__SERVER__BIND", "0.0.0.0:8080"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.api_keys.len(), 2);
        assert!(!c.to_toml().contains("aaaa"), "keys are masked");
    }

    #[test]
    fn rate_limiting_is_off_by_default_and_checked_when_on() {
        let c = SidecarConfig::default();
        assert_eq!(c.server.rate_limit_per_second, 0.0);
        let c = SidecarConfig::from_layers(
            None,
            env(&[
                ("STEERFEED__SERVER__RATE_LIMIT_PER_SECOND", "5"),
                ("STEERFEED__SERVER__RATE_LIMIT_BURST", "20"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.rate_limit_per_second, 5.0);
        assert_eq!(c.server.rate_limit_burst, 20);
        // On with an empty bucket, or a negative rate, is refused with the field.
        let err = SidecarConfig::from_layers(
            None,
            env(&[("STEERFEED__SERVER__RATE_LIMIT_PER_SECOND", "2.5")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rate_limit_burst"), "{err}");
        let err = SidecarConfig::from_layers(
            None,
            env(&[("STEERFEED__SERVER__RATE_LIMIT_PER_SECOND", "-1")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("rate_limit_per_second"), "{err}");
    }

    #[test]
    fn binding_beyond_loopback_requires_an_api_key_or_a_key_file() {
        let err =
            SidecarConfig::from_layers(None, env(&[("STEERFEED__SERVER__BIND", "0.0.0.0:8080")]))
                .unwrap_err();
        assert!(err.to_string().contains("api_keys"), "{err}");
        let c = SidecarConfig::from_layers(
            None,
            env(&[
                ("STEERFEED__SERVER__BIND", "0.0.0.0:8080"),
                ("STEERFEED__SERVER__API_KEYS_FILE", "/etc/steerfeed/keys"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.server.api_keys_file.as_deref(),
            Some(Path::new("/etc/steerfeed/keys"))
        );
        assert!(c.server.auth_configured() && c.server.api_keys.is_empty());
    }

    #[test]
    fn the_key_file_is_unset_by_default_and_printed_when_set() {
        let c = SidecarConfig::default();
        assert!(c.server.api_keys_file.is_none() && !c.server.auth_configured());
        assert!(!c.to_toml().contains("api_keys_file"));
        let file = "[server]\napi_keys_file = \"keys.txt\"\napi_keys = [\"aaaaaaaaaaaaaaaa\"]\n";
        let c = SidecarConfig::from_layers(Some(("f.toml", file)), env(&[])).unwrap();
        let shown = c.to_toml();
        assert!(shown.contains("api_keys_file = \"keys.txt\""), "{shown}");
        assert!(!shown.contains("aaaa"), "keys are masked");
    }

    #[test]
    fn api_keys_are_sixteen_visible_ascii_characters_or_more() {
        let key = |k: &str| {
            let mut c = SidecarConfig::default();
            c.server.api_keys = vec![k.to_owned()];
            c.server.validate()
        };
        for bad in [
            " ".repeat(16),
            "é".repeat(16),
            "\u{200b}".repeat(16),
            format!("{}\t", "a".repeat(16)),
            format!("{} {}", "a".repeat(8), "b".repeat(8)),
            "a".repeat(15),
        ] {
            assert!(key(&bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["a".repeat(16), "K3y_with-punct.!~/".to_owned()] {
            key(&good).unwrap();
        }
    }

    #[test]
    fn the_server_keeps_the_clock_and_bounds_events_and_connections_by_default() {
        let s = SidecarConfig::default().server;
        assert!(!s.allow_client_clock);
        assert!(s.event_max_ahead_s > 0 && s.event_max_ahead_s <= 3_600);
        assert!(s.event_max_age_s >= 86_400);
        assert!(s.header_read_timeout_ms > 0 && s.idle_timeout_s > 0 && s.max_connections > 0);
        let err =
            SidecarConfig::from_layers(None, env(&[("STEERFEED__SERVER__MAX_CONNECTIONS", "0")]))
                .unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        // A connection may not be closed as idle while a request on it may still run.
        let slow = env(&[("STEERFEED__SERVER__REQUEST_TIMEOUT_MS", "60000")]);
        let err = SidecarConfig::from_layers(None, slow).unwrap_err();
        assert!(err.to_string().contains("idle_timeout_s"), "{err}");
        let both = env(&[
            ("STEERFEED__SERVER__REQUEST_TIMEOUT_MS", "60000"),
            ("STEERFEED__SERVER__IDLE_TIMEOUT_S", "61"),
        ]);
        assert_eq!(
            SidecarConfig::from_layers(None, both)
                .unwrap()
                .server
                .idle_timeout_s,
            61
        );
        let json =
            SidecarConfig::from_layers(None, env(&[("STEERFEED__LOG__FORMAT", "json")])).unwrap();
        assert_eq!(json.log.format, LogFormat::Json);
        assert!(
            SidecarConfig::from_layers(None, env(&[("STEERFEED__LOG__FORMAT", "xml")])).is_err()
        );
    }
}
