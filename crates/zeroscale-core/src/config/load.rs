//! Layered config loading with figment, and the checks that make config mistakes loud.
//!
//! Layers, lowest first: built-in defaults (the embedded stage) ← `config/default.toml`
//! ← `config/<profile>.toml` ← `--config FILE`s ← `ZEROSCALE_*` env vars (nested with
//! `__`) ← `DATABASE_URL` / `REDIS_URL` ← CLI flags. Unknown keys are errors naming the key
//! and where it was set; a bad `kind` lists the valid kinds.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::sources::describe_source;
use super::{Config, ConfigNames, ConfigSection, SectionValues};
use crate::error::{Error, Result};

/// The lowest layer: only what serde defaults cannot say (each concern's `kind`, and the
/// default providers and model ids, which are map entries).
const BUILT_IN_DEFAULTS: &str = r#"
[database]
kind = "sqlite"

[storage]
kind = "local"

[queue]
kind = "memory"

[models.providers.local]
kind = "local"

[models.providers.placeholder]
kind = "placeholder"

[models.registry.minilm]
kind = "embedding"
provider = "local"

[models.registry.placeholder]
kind = "image"
provider = "placeholder"
"#;

/// The name the built-in layer's values are reported under.
pub(crate) const BUILT_IN_NAME: &str = "built-in default";

/// Environment variables with the app's prefix that are not config keys.
const RESERVED_ENV: &[&str] = &["profile", "config_dir"];

/// Where to load config from, besides the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The app's env prefix, default config folder and data-dir name (zeroscale's by
    /// default).
    pub names: ConfigNames,
    /// The app's own top-level sections, checked and shown with zeroscale's keys.
    pub sections: Vec<ConfigSection>,
    /// The profile (`--profile`); `<PREFIX>_PROFILE` when `None`.
    pub profile: Option<String>,
    /// The folder with `default.toml` and `<profile>.toml`; `<PREFIX>_CONFIG_DIR`, else
    /// [`ConfigNames::config_dir`], when `None`.
    pub config_dir: Option<PathBuf>,
    /// Extra files (`--config FILE`), applied after the profile's file, in order.
    pub files: Vec<PathBuf>,
    /// `--db-backend sqlite|postgres`.
    pub db_backend: Option<String>,
    /// `--db-url URL`.
    pub db_url: Option<String>,
}

impl ConfigSources {
    /// The sources of an app called `name` ([`ConfigNames::for_app`]: `NAME_…` env vars,
    /// `./config`, data dir `name`), with no flags and no sections of its own.
    pub fn for_app(name: &str) -> Self {
        ConfigSources {
            names: ConfigNames::for_app(name),
            ..Default::default()
        }
    }
}

/// A loaded config and the figment it came from (to say where each value was set).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config, with every path resolved against the data dir.
    pub config: Config,
    /// The profile in use, if any.
    pub profile: Option<String>,
    /// The names the config was loaded under.
    pub names: ConfigNames,
    /// The app's sections, by type ([`LoadedConfig::section`]).
    pub sections: SectionValues,
    /// The app's sections as values, for `config show`.
    pub(crate) shown_sections: Dict,
    pub(crate) figment: Figment,
}

/// A provider with a fixed name and data, for the built-in, alias and CLI layers.
struct Layer {
    name: String,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::from(self.name.clone(), Source::Custom(self.name.clone()))
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

fn layer(name: impl Into<String>, pairs: &[(&str, &str)]) -> Layer {
    let mut data = Dict::new();
    for (key, value) in pairs {
        insert_dotted(&mut data, key, Value::from(value.to_string()));
    }
    Layer {
        name: name.into(),
        data,
    }
}

fn insert_dotted(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

/// What a database URL selects: the engine and the keys that go with it.
fn database_url_pairs(url: &str, flag: &str) -> Result<Vec<(&'static str, String)>> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(vec![
            ("database.kind", "postgres".to_owned()),
            ("database.url", url.to_owned()),
        ]);
    }
    if lower.starts_with("mongodb://") || lower.starts_with("mongodb+srv://") {
        return Ok(vec![
            ("database.kind", "mongodb".to_owned()),
            ("database.url", url.to_owned()),
        ]);
    }
    if let Some(rest) = lower.strip_prefix("sqlite:") {
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(vec![
                ("database.kind", "sqlite".to_owned()),
                ("database.in_memory", "true".to_owned()),
            ]);
        }
        let path = &url["sqlite:".len()..];
        let path = path.strip_prefix("//").unwrap_or(path);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(Error::config(
                "database.path",
                format!("{flag} `{url}` names no file: use `sqlite://path/to/file.db`"),
            ));
        }
        return Ok(vec![
            ("database.kind", "sqlite".to_owned()),
            ("database.path", path.to_owned()),
        ]);
    }
    Err(Error::config(
        "database.kind",
        format!(
            "{flag} must start with `postgres://`, `postgresql://`, `mongodb://`, \
             `mongodb+srv://` or `sqlite:` (got a URL with another scheme)"
        ),
    ))
}

fn owned_layer(name: String, pairs: &[(&str, String)]) -> Layer {
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    layer(name, &borrowed)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Loads the config from every layer and checks it.
pub fn load(sources: &ConfigSources) -> Result<LoadedConfig> {
    let names = &sources.names;
    names.check()?;
    check_section_names(&sources.sections)?;
    let config_dir = sources
        .config_dir
        .clone()
        .or_else(|| env_var(&names.env_var("CONFIG_DIR")).map(PathBuf::from))
        .unwrap_or_else(|| names.config_dir.clone());
    let profile = sources
        .profile
        .clone()
        .or_else(|| env_var(&names.env_var("PROFILE")));

    let defaults = Toml::string(BUILT_IN_DEFAULTS)
        .data()
        .map_err(|e| Error::config("(built-in defaults)", e.to_string()))?
        .remove(&Profile::Default)
        .unwrap_or_default();
    let mut figment = Figment::from(Layer {
        name: BUILT_IN_NAME.to_owned(),
        data: defaults,
    });

    let default_file = config_dir.join("default.toml");
    if default_file.is_file() {
        figment = figment.merge(Toml::file_exact(&default_file));
    }
    if let Some(profile) = &profile {
        let file = config_dir.join(format!("{profile}.toml"));
        if !file.is_file() {
            return Err(Error::config(
                "profile",
                format!(
                    "profile `{profile}` has no file {}; profiles there: {}",
                    file.display(),
                    list_profiles(&config_dir)
                ),
            ));
        }
        figment = figment.merge(Toml::file_exact(&file));
    }
    for file in &sources.files {
        if !file.is_file() {
            return Err(Error::config(
                "--config",
                format!("config file {} does not exist", file.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(file));
    }

    figment = figment.merge(
        Env::prefixed(&names.env_var(""))
            .ignore(RESERVED_ENV)
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__"),
    );

    if let Some(url) = env_var("DATABASE_URL") {
        let pairs = database_url_pairs(&url, "DATABASE_URL")?;
        figment = figment.merge(owned_layer("`DATABASE_URL` env var".to_owned(), &pairs));
    }
    if let Some(url) = env_var("REDIS_URL") {
        figment = figment.merge(owned_layer(
            "`REDIS_URL` env var".to_owned(),
            &[("queue.kind", "redis".to_owned()), ("queue.url", url)],
        ));
    }

    if let Some(backend) = &sources.db_backend {
        figment = figment.merge(layer(
            "command-line flag `--db-backend`",
            &[("database.kind", backend)],
        ));
    }
    if let Some(url) = &sources.db_url {
        let pairs = database_url_pairs(url, "--db-url")?;
        if let Some(backend) = &sources.db_backend {
            let kind = &pairs[0].1;
            if kind != backend {
                return Err(Error::config(
                    "database.kind",
                    format!(
                        "`--db-backend {backend}` contradicts `--db-url`, which is a {kind} URL"
                    ),
                ));
            }
        }
        figment = figment.merge(owned_layer(
            "command-line flag `--db-url`".to_owned(),
            &pairs,
        ));
    }

    let mut config: Config = figment
        .extract()
        .map_err(|e| from_figment_error(&figment, &e, names))?;
    let mut values = SectionValues::default();
    let mut shown = Dict::new();
    for section in &sources.sections {
        let (value, typed) = section.load(&figment, names)?;
        shown.insert(section.name().to_owned(), value);
        values.insert(section.name(), typed);
    }
    check_unknown_keys(&figment, &config, &shown, names)?;
    config.models.validate()?;
    config.server.cors.validate()?;
    config.server.trusted_proxies()?;
    config.telemetry.validate()?;
    if let super::DatabaseConfig::Postgres(pg) = &config.database {
        pg.validate()?;
    }
    if config.data_dir.is_none() {
        config.data_dir = Some(super::default_data_dir_named(&names.data_dir_name, names)?);
    }
    config.resolve_paths()?;
    Ok(LoadedConfig {
        config,
        profile,
        names: names.clone(),
        sections: values,
        shown_sections: shown,
        figment,
    })
}

/// Refuses an app section named like one of zeroscale's keys, or named twice.
fn check_section_names(sections: &[ConfigSection]) -> Result<()> {
    let ours = Value::serialize(Config::default())
        .ok()
        .and_then(|v| v.into_dict())
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for section in sections {
        let name = section.name();
        let bare = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !bare || ours.contains_key(name) || name == "data_dir" {
            return Err(Error::config(
                name,
                format!(
                    "an app's config section needs a name of its own in lower case (letters, \
                     digits, `_`), not one of zeroscale's keys: `{name}` cannot be used"
                ),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::config(
                name,
                format!("the config section `{name}` is declared twice"),
            ));
        }
    }
    Ok(())
}

fn list_profiles(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".toml")?;
            (stem != "default").then(|| stem.to_owned())
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Turns figment's error into a config error that names the key and where it was set.
fn from_figment_error(figment: &Figment, error: &figment::Error, names: &ConfigNames) -> Error {
    // figment reports the first error; the rest are usually consequences of it.
    let key = error.path.join(".");
    let origin = if key.is_empty() {
        None
    } else {
        describe_source(figment, &key, names)
    };
    let mut message = error.kind.to_string();
    if let figment::error::Kind::UnknownVariant(found, expected) = &error.kind {
        message = format!(
            "unknown kind `{found}`; valid kinds are: {}",
            expected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(origin) = origin {
        message.push_str(&format!(" (set by {origin})"));
    }
    Error::config(
        if key.is_empty() {
            "(root)".to_owned()
        } else {
            key
        },
        message,
    )
}

/// Fails on any key that the config does not have, naming where it was set and the keys
/// that are valid at that level.
fn check_unknown_keys(
    figment: &Figment,
    config: &Config,
    sections: &Dict,
    names: &ConfigNames,
) -> Result<()> {
    let given: Dict = figment
        .extract()
        .map_err(|e| from_figment_error(figment, &e, names))?;
    let known = Value::serialize(config)
        .map_err(|e| Error::config("(root)", format!("config is not serializable: {e}")))?;
    let Value::Dict(_, mut known) = known else {
        return Ok(());
    };
    known.extend(sections.clone());
    let mut unknown = Vec::new();
    collect_unknown(&given, &known, "", &mut unknown);
    let Some((key, valid)) = unknown.into_iter().next() else {
        return Ok(());
    };
    let leaf = first_leaf(&given, &key);
    let origin =
        describe_source(figment, &leaf, names).unwrap_or_else(|| "an unknown source".into());
    let (parent, _) = key.rsplit_once('.').unwrap_or(("", &key));
    let kind_note = kind_at(config, parent)
        .map(|kind| format!(" for kind `{kind}`"))
        .unwrap_or_default();
    let where_ = if parent.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("under `{parent}`{kind_note}")
    };
    Err(Error::config(
        key.clone(),
        format!(
            "unknown key `{key}` (set by {origin}); valid keys {where_}: {}",
            valid.join(", ")
        ),
    ))
}

fn collect_unknown(given: &Dict, known: &Dict, prefix: &str, out: &mut Vec<(String, Vec<String>)>) {
    for (key, value) in given {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (value, known.get(key)) {
            (_, None) => out.push((path, known.keys().cloned().collect())),
            (Value::Dict(_, inner), Some(Value::Dict(_, known_inner))) => {
                collect_unknown(inner, known_inner, &path, out);
            }
            _ => {}
        }
    }
}

/// The first leaf under dotted `key` in `dict` (the key itself when it is a leaf): the
/// unknown key's source is recorded on its leaves.
fn first_leaf(dict: &Dict, key: &str) -> String {
    let mut path = key.to_owned();
    let mut value = key
        .split('.')
        .try_fold(None::<&Value>, |cur, k| match cur {
            None => dict.get(k).map(Some),
            Some(Value::Dict(_, d)) => d.get(k).map(Some),
            Some(_) => None,
        })
        .flatten();
    while let Some(Value::Dict(_, inner)) = value {
        let Some((k, v)) = inner.iter().next() else {
            break;
        };
        path.push('.');
        path.push_str(k);
        value = Some(v);
    }
    path
}

/// The backend kind configured at `path` (e.g. `storage` → `s3`), for error messages.
fn kind_at(config: &Config, path: &str) -> Option<String> {
    match path {
        "database" => Some(config.database.kind().to_owned()),
        "storage" => Some(config.storage.kind().to_owned()),
        "queue" => Some(config.queue.kind().to_owned()),
        _ => path
            .strip_prefix("models.providers.")
            .and_then(|name| config.models.providers.get(name))
            .map(|p| p.kind().to_owned()),
    }
}

impl LoadedConfig {
    /// Where the value at dotted `key` was set: a file and line, an env var, a flag, or
    /// "built-in default".
    pub fn source_of(&self, key: &str) -> String {
        describe_source(&self.figment, key, &self.names).unwrap_or_else(|| {
            if matches!(key, "database.path" | "storage.root" | "models.dir") {
                "derived from data_dir".to_owned()
            } else if key == "data_dir" {
                "platform default".to_owned()
            } else {
                BUILT_IN_NAME.to_owned()
            }
        })
    }

    /// The app's section of type `T` ([`ConfigSection::new`]), or `None` if the sources
    /// declared none of that type.
    pub fn section<T: Send + Sync + 'static>(&self) -> Option<std::sync::Arc<T>> {
        self.sections.get::<T>()
    }

    /// The merged config as TOML, secrets redacted, each value followed by a comment that
    /// says where it was set.
    pub fn to_annotated_toml(&self) -> Result<String> {
        super::sources::render_annotated(self)
    }
}
