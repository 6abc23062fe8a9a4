//! Layered, typed configuration: the embedded defaults (`config/default.toml`), then an
//! optional file, then `STEERFEED__SECTION__KEY` environment variables (and
//! `ORT_DYLIB_PATH`), deserialised into validated structs that reject unknown keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use steerfeed_ann::{HnswBuildParams, HnswSearchParams};
use steerfeed_rank::RankConfig;
use steerfeed_steer::config::ORT_DYLIB_ENV;
use steerfeed_steer::{EncoderConfig, ParserConfig};
use steerfeed_store::StoreOptions;

/// The defaults, one per tunable, documented in the file itself.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "STEERFEED__";

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A layer is not valid TOML or does not fit the schema.
    #[error("config {origin}: {message}")]
    Parse {
        /// Which layer (`defaults`, the file's path, or `environment`).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable names no setting.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(#[from] steerfeed_core::Error),
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The sentence encoder (`[model]`).
    pub model: EncoderConfig,
    /// The preference parser (`[steering]`).
    pub steering: ParserConfig,
    /// The embedded store (`[store]`).
    pub store: StoreConfig,
    /// The vector index (`[index.build]`, `[index.search]`).
    pub index: IndexConfig,
    /// Ranking: sources, filters, the objective, the selector, wellbeing (`[rank.*]`).
    pub rank: RankConfig,
    /// Page pools: later pages of a session picked from what the first ranking left
    /// (`[pages]`; off when absent).
    #[serde(default)]
    pub pages: crate::PagesConfig,
    /// The impression log and its outcome join (`[learning]`).
    #[serde(default)]
    pub learning: LearningConfig,
    /// Named rank profiles besides `default` (`[profiles.NAME]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// How users are assigned to profiles (`[experiment]`; absent, everyone is served
    /// the `default` profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentConfig>,
}

/// The profile every request is served with unless an experiment or the request says
/// otherwise: `[rank]` and `[learning] model` as configured.
pub const DEFAULT_PROFILE: &str = "default";

/// A rank profile (`[profiles.NAME]`): `[rank]` with overrides, and its own model.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Overrides of `[rank]`, any of its keys at any depth (weights, heads, source
    /// quotas, the selector's diversity), merged onto it key by key.
    #[serde(default)]
    pub rank: toml::Table,
    /// A trained model this profile serves; absent, the hand-set heads of its
    /// `[rank.scorer]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
}

/// Assigns users to profiles (`[experiment]`): a user's place in `[0, 1)` is a hash of
/// the salt and their id, and the profiles take consecutive slices of it, in name
/// order, as wide as their shares; the rest of the range is the `default` profile's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Mixed into every user's hash: a new salt draws everyone again.
    pub salt: String,
    /// The share of users each named profile serves, each in `[0, 1]`, summing to at
    /// most 1.
    pub shares: BTreeMap<String, f64>,
}

impl ExperimentConfig {
    /// The profile `user` is assigned to.
    pub fn assign(&self, user: &str) -> &str {
        let mut h = steerfeed_core::hash::Fnv1a::new();
        h.update(self.salt.as_bytes());
        h.update(&[0]);
        h.update(user.as_bytes());
        // FNV-1a's high bits barely move with the last bytes of similar ids: MurmurHash3's
        // 64-bit finaliser mixes them, and its top 53 bits are a uniform draw in [0, 1).
        let mut x = h.finish();
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let mut edge = 0.0;
        for (name, share) in &self.shares {
            edge += share;
            if u < edge {
                return name;
            }
        }
        DEFAULT_PROFILE
    }
}

fn profile_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Settings of the impression log and its outcome join (`[learning]`). How long the
/// log keeps pages is the store's `[store] impression_retention_h`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// Log every served page's impressions. Default true.
    pub log_impressions: bool,
    /// Events within this many seconds after an item was served are its outcomes.
    /// Default 3,600.
    pub outcome_window_s: u64,
    /// A trained model of the action heads (`steerfeed train` writes one) to serve from
    /// open; absent, the hand-set heads of `[rank.scorer]` serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<std::path::PathBuf>,
    /// A rank profile scored beside every other one: each slot of their pages serves its
    /// greedy pick (given the page's earlier slots) with probability `shadow_share`, and
    /// the impression log says which slot did, so `steerfeed eval offpolicy --profile`
    /// can estimate it. It may differ from the others only by its scorer (weights, heads),
    /// its model and its exploration rate. Absent: no shadow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The probability with which a slot serves the shadow's pick, in `(0, 1]`, at most
    /// `1 − explore` of every profile it shadows. Default 0.1.
    pub shadow_share: f32,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            log_impressions: true,
            outcome_window_s: 3_600,
            model: None,
            shadow: None,
            shadow_share: 0.1,
        }
    }
}

impl LearningConfig {
    /// Checks the ranges: the window is at least a second and at most a week.
    pub fn validate(&self) -> steerfeed_core::Result<()> {
        if !(1..=604_800).contains(&self.outcome_window_s) {
            return Err(steerfeed_core::Error::OutOfRange {
                field: "learning.outcome_window_s",
                got: self.outcome_window_s as f64,
                min: 1.0,
                max: 604_800.0,
            });
        }
        Ok(())
    }
}

/// Settings of the embedded store.
///
/// The section is the store's own [`StoreOptions`] (every field, each default once in
/// `steerfeed-store`) beside the directory. serde cannot refuse unknown keys through a
/// flattened struct, so [`Config::from_layers`] checks the section's keys against the
/// fields the options serialise.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    /// Directory of the store (sled's files in `db/`) and the vector index beside it.
    pub path: PathBuf,
    /// The erasure log: every person erased, which a store restored from an older copy
    /// applies again when it opens. Default: `<path>.erasures.jsonl`, beside the
    /// directory and outside it, so that restoring the directory keeps the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure_log: Option<PathBuf>,
    /// The store's options (`dim` comes from the language model).
    #[serde(flatten)]
    pub options: StoreOptions,
}

impl PartialEq for StoreConfig {
    fn eq(&self, other: &Self) -> bool {
        // Every configurable field, as configuration sees them (the weight function is
        // code, not configuration).
        let fields = |o: &StoreOptions| toml::Table::try_from(o).ok();
        self.path == other.path
            && self.erasure_log == other.erasure_log
            && fields(&self.options) == fields(&other.options)
    }
}

/// The keys `[store]` takes: `path` and every field of [`StoreOptions`].
fn store_keys() -> Vec<String> {
    let mut keys: Vec<String> = toml::Table::try_from(StoreOptions::default())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    keys.push("path".into());
    keys.push("erasure_log".into());
    keys
}

/// Build-time and query-time parameters of the vector index.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// Build-time parameters.
    pub build: HnswBuildParams,
    /// Query-time parameters.
    pub search: HnswSearchParams,
}

impl Default for Config {
    fn default() -> Self {
        #[allow(clippy::expect_used)] // the embedded defaults are tested to parse
        Self::from_layers(None, std::iter::empty()).expect("embedded defaults are valid")
    }
}

/// The layered table (see [`layered_table`]) of the defaults, `file` if given, and the
/// process environment: what [`Config::load`] and the sidecar's loader read their
/// sections from.
pub fn load_table(file: Option<&Path>) -> Result<toml::Table, ConfigError> {
    let text = file
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|t| (path.display().to_string(), t))
                .map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
        })
        .transpose()?;
    let layer = text
        .as_ref()
        .map(|(origin, t)| (origin.as_str(), t.as_str()));
    layered_table(layer, std::env::vars())
}

impl Config {
    /// The ranking configuration of profile `name`: `[rank]` with the profile's
    /// overrides merged onto it (`[rank]` itself for `default`); an unknown profile or
    /// an override `[rank]` does not take is an error naming it.
    pub fn profile_rank(&self, name: &str) -> Result<RankConfig, steerfeed_core::Error> {
        if name == DEFAULT_PROFILE {
            return Ok(self.rank.clone());
        }
        let p = self.profiles.get(name).ok_or_else(|| {
            steerfeed_core::Error::invalid("profile", format!("no rank profile {name:?}"))
        })?;
        let bad = |e: &dyn std::fmt::Display| {
            steerfeed_core::Error::invalid("profiles", format!("[profiles.{name}.rank]: {e}"))
        };
        // A profile changes how pages are ranked, never a rule: the filters, the
        // wellbeing and teen limits, and what the engine keeps for everyone (the
        // co-engagement and trending indexes, the recent-taste profile) are `[rank]`'s.
        for (key, value) in &p.rank {
            let allowed = match key.as_str() {
                "sources" | "scorer" => true,
                "selector" => value.as_table().is_none_or(|t| {
                    !t.contains_key("teen_sensitive_cap")
                        && !t.contains_key("teen_sensitive_window")
                }),
                _ => false,
            };
            if !allowed {
                return Err(bad(&format!(
                    "{key} cannot differ by profile (a profile may set sources, scorer and \
                     selector, but not the selector's teen caps)"
                )));
            }
        }
        let mut table = toml::Table::try_from(&self.rank).map_err(|e| bad(&e))?;
        merge(&mut table, p.rank.clone());
        let rank: RankConfig = table.try_into().map_err(|e: toml::de::Error| bad(&e))?;
        rank.validate().map_err(|e| bad(&e))?;
        Ok(rank)
    }

    /// Loads defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_table(load_table(file)?)
    }

    /// Builds a configuration from the defaults, an optional `(origin, toml)` layer and
    /// environment pairs (only `STEERFEED__*` and `ORT_DYLIB_PATH` are read).
    pub fn from_layers(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_table(layered_table(file, env)?)
    }

    /// The configuration in `table` (layers merged by [`layered_table`]); the sections
    /// the engine leaves to the sidecar ([`SIDECAR_SECTIONS`]) are not read here.
    pub fn from_table(mut table: toml::Table) -> Result<Self, ConfigError> {
        for section in SIDECAR_SECTIONS {
            table.remove(section);
        }
        // serde cannot refuse unknown keys through the flattened store options.
        if let Some(toml::Value::Table(store)) = table.get("store") {
            let known = store_keys();
            if let Some(unknown) = store.keys().find(|k| !known.contains(k)) {
                return Err(ConfigError::Parse {
                    origin: "merged layers".into(),
                    message: format!(
                        "unknown field `{unknown}` in [store], expected one of {}",
                        known.join(", ")
                    ),
                });
            }
        }
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: "merged layers".into(),
                message: e.message().to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The profiles `[learning] shadow` is scored beside: every one but itself (none
    /// without a shadow).
    pub fn shadowed_profiles(&self) -> Vec<&str> {
        let Some(shadow) = self.learning.shadow.as_deref() else {
            return Vec::new();
        };
        std::iter::once(DEFAULT_PROFILE)
            .chain(self.profiles.keys().map(String::as_str))
            .filter(|p| *p != shadow)
            .collect()
    }

    /// The shadow names a profile, its share is a probability that leaves room for every
    /// shadowed profile's exploration, and it ranks the candidates every shadowed
    /// profile ranks with the same page rules: only the scorer, the model and the
    /// exploration rate may differ.
    fn validate_shadow(&self) -> Result<(), steerfeed_core::Error> {
        let Some(shadow) = self.learning.shadow.as_deref() else {
            return Ok(());
        };
        let invalid = |reason: String| steerfeed_core::Error::invalid("learning.shadow", reason);
        if shadow != DEFAULT_PROFILE && !self.profiles.contains_key(shadow) {
            return Err(invalid(format!(
                "{shadow:?} is not a profile ([profiles.{shadow}] is missing)"
            )));
        }
        if !self.learning.log_impressions {
            return Err(invalid(
                "a shadow is for an estimate from the impression log: it needs \
                 log_impressions = true"
                    .to_owned(),
            ));
        }
        let share = self.learning.shadow_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(steerfeed_core::Error::invalid(
                "learning.shadow_share",
                format!("a share is a number in (0, 1], not {share}"),
            ));
        }
        let b = self.profile_rank(shadow)?;
        for name in self.shadowed_profiles() {
            let a = self.profile_rank(name)?;
            if share + a.selector.explore > 1.0 {
                return Err(steerfeed_core::Error::invalid(
                    "learning.shadow_share",
                    format!(
                        "{share} beside profile {name:?}'s exploration rate {} is more than 1",
                        a.selector.explore
                    ),
                ));
            }
            let mut same = b.clone();
            same.scorer = a.scorer;
            same.selector.explore = a.selector.explore;
            if same != a {
                return Err(invalid(format!(
                    "profile {shadow:?} differs from {name:?} beyond its scorer and exploration \
                     rate (sources or selector): a shadow ranks the candidates of the profile \
                     it shadows, under its page rules"
                )));
            }
        }
        Ok(())
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), steerfeed_core::Error> {
        self.model.validate()?;
        self.rank.validate()?;
        for name in self.profiles.keys() {
            if name == DEFAULT_PROFILE || !profile_name_ok(name) {
                return Err(steerfeed_core::Error::invalid(
                    "profiles",
                    format!(
                        "{name:?}: a profile name is 1 to 64 ASCII letters, digits, '_' or '-', \
                         and not \"default\" (that is [rank] itself)"
                    ),
                ));
            }
            self.profile_rank(name)?;
        }
        if let Some(x) = &self.experiment {
            let mut total = 0.0;
            for (name, share) in &x.shares {
                if name != DEFAULT_PROFILE && !self.profiles.contains_key(name) {
                    return Err(steerfeed_core::Error::invalid(
                        "experiment.shares",
                        format!("{name:?} is not a profile ([profiles.{name}] is missing)"),
                    ));
                }
                if !(share.is_finite() && (0.0..=1.0).contains(share)) {
                    return Err(steerfeed_core::Error::invalid(
                        "experiment.shares",
                        format!("{name}: a share is a number from 0 to 1, not {share}"),
                    ));
                }
                total += share;
            }
            if total > 1.0 + 1e-9 {
                return Err(steerfeed_core::Error::invalid(
                    "experiment.shares",
                    format!("the shares add up to {total}, more than 1"),
                ));
            }
        }
        self.pages.validate()?;
        self.learning.validate()?;
        self.validate_shadow()?;
        self.index
            .build
            .validate()
            .map_err(|e| steerfeed_core::Error::invalid("index.build", e.to_string()))?;
        self.index
            .search
            .validate()
            .map_err(|e| steerfeed_core::Error::invalid("index.search", e.to_string()))?;
        let sc = &self.store;
        if sc.path.as_os_str().is_empty() {
            return Err(steerfeed_core::Error::Empty {
                field: "store.path",
            });
        }
        sc.options.validate()?;
        let st = &self.steering;
        if !(st.topic_threshold.is_finite() && (0.0..=1.0).contains(&st.topic_threshold)) {
            return Err(steerfeed_core::Error::OutOfRange {
                field: "steering.topic_threshold",
                got: f64::from(st.topic_threshold),
                min: 0.0,
                max: 1.0,
            });
        }
        if !(1..=365).contains(&st.expiry_days)
            || !(1..=100_000).contains(&st.max_text_bytes)
            || st.max_items == 0
        {
            return Err(steerfeed_core::Error::invalid(
                "steering",
                "expiry_days must be 1..=365, max_text_bytes 1..=100000, max_items at least 1",
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Sections of the file the engine leaves to the sidecar around it (`steerfeed-server`
/// reads them: the listener, auth, limits, the clock rules; logging; the shared backend).
pub const SIDECAR_SECTIONS: [&str; 3] = ["server", "log", "shared"];

/// The layers merged into one table: the embedded defaults, then an optional
/// `(origin, toml)` layer, then environment pairs (only `STEERFEED__*` and
/// `ORT_DYLIB_PATH` are read). [`Config::from_table`] reads the engine's sections of it;
/// the sidecar reads [`SIDECAR_SECTIONS`].
pub fn layered_table(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut table = parse_table("defaults", DEFAULT_TOML)?;
    if let Some((origin, text)) = file {
        merge(&mut table, parse_table(origin, text)?);
    }
    for (var, value) in env {
        if var == ORT_DYLIB_ENV {
            if !value.is_empty() {
                set(&mut table, &var, &["model", "ort_dylib"], &value)?;
            }
        } else if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            set(&mut table, &var, &path, &value)?;
        }
    }
    Ok(table)
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.message().to_owned(),
    })
}

/// Merges `over` into `base`, recursing into tables; other values are replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `path` in `table` from an environment string: a TOML value when it parses as
/// one (numbers, booleans, arrays), else a string; a comma-separated list where the
/// setting is a list.
fn set(table: &mut toml::Table, var: &str, path: &[&str], raw: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| env_err("names no setting".into()))?;
    let mut node = table;
    for key in parents {
        node = match node.get_mut(*key) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(env_err(format!("there is no section [{key}]"))),
        };
    }
    let existing = node.get(*last);
    if existing.is_none() && !is_optional_path(path) {
        return Err(env_err(format!("there is no setting {}", path.join("."))));
    }
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    let value = match (existing, parsed) {
        (Some(toml::Value::Array(_)), Some(v @ toml::Value::Array(_))) => v,
        (Some(toml::Value::Array(_)), _) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        (Some(toml::Value::String(_)), _) | (None, _) => toml::Value::String(raw.to_owned()),
        (Some(_), Some(v)) => v,
        (Some(_), None) => toml::Value::String(raw.to_owned()),
    };
    node.insert((*last).to_owned(), value);
    Ok(())
}

/// Settings that are absent from the defaults because their default is computed or is
/// "none" (TOML has no null).
fn is_optional_path(path: &[&str]) -> bool {
    matches!(
        path,
        ["model", "dir"]
            | ["model", "ort_dylib"]
            | ["server", "api_keys_file"]
            | ["store", "erasure_log"]
            | [
                "steering",
                "taxonomy" | "exemplars" | "slots" | "restricted" | "reader"
            ]
    )
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
    fn the_file_documents_the_built_in_ranking_and_index_defaults() {
        let c = Config::default();
        assert_eq!(c.rank, RankConfig::default());
        assert_eq!(c.index.build, HnswBuildParams::default());
        assert_eq!(c.index.search, HnswSearchParams::default());
        // Every store option is in the file, with the store's own default.
        let file: toml::Table = DEFAULT_TOML.parse().unwrap();
        let documented = file["store"].as_table().unwrap();
        let defaults = toml::Table::try_from(StoreOptions::default()).unwrap();
        for key in defaults.keys() {
            assert!(
                documented.contains_key(key),
                "store.{key} is not in the file"
            );
        }
        assert_eq!(
            documented.len(),
            defaults.len() + 1,
            "only `path` besides the options"
        );
        // Read as the store reads them (f32 fields through f32), the values are its own.
        let read: StoreConfig = documented.clone().try_into().unwrap();
        assert_eq!(toml::Table::try_from(read.options).unwrap(), defaults);
    }

    #[test]
    fn ranking_weights_come_from_the_environment() {
        let c = Config::from_layers(
            None,
            env(&[("STEERFEED__RANK__SCORER__WEIGHTS__REMIX", "12.5")]),
        )
        .unwrap();
        assert_eq!(c.rank.scorer.weights.remix, 12.5);
        let bad = Config::from_layers(
            None,
            env(&[("STEERFEED__RANK__SCORER__HEADS__LIKE__BASE_RATE", "1.5")]),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn the_embedded_defaults_are_valid() {
        let c = Config::from_layers(None, env(&[])).unwrap();
        assert_eq!(c.model.intra_threads, 1);
        assert!(c.model.dir.is_none());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let file = "[model]\nsessions = 2\n[pages]\npool_ttl_s = 30\n";
        let c = Config::from_layers(
            Some(("test.toml", file)),
            env(&[
                ("STEERFEED__MODEL__DIR", "/models/minilm"),
                ("STEERFEED__MODEL__SESSIONS", "4"),
                ("ORT_DYLIB_PATH", "/opt/ort/libonnxruntime.so"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.pages.pool_ttl_s, 30);
        assert_eq!(c.model.dir.as_deref(), Some(Path::new("/models/minilm")));
        assert_eq!(c.model.sessions, 4);
        assert_eq!(
            c.model.ort_dylib.as_deref(),
            Some(Path::new("/opt/ort/libonnxruntime.so"))
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        // The store's section too, although serde reads it through a flattened struct;
        // and `dim` is the model's, not a setting.
        for key in ["video_caches", "dim", "weight"] {
            let text = format!("[store]\n{key} = 1\n");
            let err = Config::from_layers(Some(("f.toml", &text)), env(&[])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let c =
            Config::from_layers(None, env(&[("STEERFEED__STORE__AFFINITY_SCALE", "2.5")])).unwrap();
        assert_eq!(c.store.options.affinity_scale, 2.5);
        let err = Config::from_layers(None, env(&[("STEERFEED__SERVR__BIND", "x")])).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err}");
        let err =
            Config::from_layers(None, env(&[("STEERFEED__MODEL__SESSIONS", "0")])).unwrap_err();
        assert!(err.to_string().contains("model.sessions"), "{err}");
        let err =
            Config::from_layers(None, env(&[("STEERFEED__MODEL__SESSIONS", "many")])).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = Config::from_layers(Some(("f.toml", "not toml [")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("f.toml"), "{err}");
    }

    #[test]
    fn a_shadow_may_differ_only_by_its_scorer_model_and_rate() {
        let load = |extra: &str| {
            let file = format!(
                "[profiles.other.rank.scorer.weights]\nlike = 9.0\n\
                 [profiles.other.rank.selector]\nexplore = 0.2\n{selector}\n{extra}",
                selector = if extra.contains("mmr_lambda") {
                    "mmr_lambda = 0.3"
                } else {
                    ""
                },
            );
            Config::from_layers(Some(("test.toml", &file)), env(&[]))
        };
        let c = load("[learning]\nshadow = \"other\"\nshadow_share = 0.25\n").unwrap();
        assert_eq!(c.shadowed_profiles(), ["default"]);
        // The default profile may shadow the other one just as well.
        let c = load("[learning]\nshadow = \"default\"\n").unwrap();
        assert_eq!(c.shadowed_profiles(), ["other"]);
        assert_eq!(c.learning.shadow_share, 0.1);
        for bad in [
            "[learning]\nshadow = \"nobody\"\n",
            "[learning]\nshadow = \"other\"\nlog_impressions = false\n",
            "[learning]\nshadow = \"other\"\nshadow_share = 0.0\n",
            "[learning]\nshadow = \"other\"\nshadow_share = 1.5\n",
            // Beside default's exploration of 0.2 nothing is left for a share of 0.9.
            "[rank.selector]\nexplore = 0.2\n[learning]\nshadow = \"other\"\nshadow_share = 0.9\n",
            // Other candidates, or other page rules, are not the same pages to rank.
            "[profiles.other.rank.sources]\nfresh = 3\n[learning]\nshadow = \"other\"\n",
            "# mmr_lambda\n[learning]\nshadow = \"other\"\n",
        ] {
            let e = load(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("shadow"), "{bad}: {e}");
        }
        assert!(load("").unwrap().shadowed_profiles().is_empty());
    }
}
