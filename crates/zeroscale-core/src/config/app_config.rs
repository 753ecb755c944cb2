//! What an app built on zeroscale chooses about its config: the names it loads under
//! ([`ConfigNames`]: env prefix, config folder, data-dir name) and its own typed sections
//! ([`ConfigSection`]), loaded, checked and shown with zeroscale's.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use figment::Figment;
use figment::value::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Where an app's config comes from: the prefix of its environment variables, the folder
/// with its `default.toml` and `<profile>.toml`, and the name of its per-user data dir.
/// The defaults are zeroscale's own: `ZEROSCALE_…`, `./config`, `~/.local/share/zeroscale`.
///
/// ```
/// use zeroscale_core::config::ConfigNames;
///
/// let names = ConfigNames::for_app("wordcount");
/// assert_eq!(names.env_prefix, "WORDCOUNT");
/// assert_eq!(names.data_dir_name, "wordcount");
/// assert_eq!(names.env_var("DATA_DIR"), "WORDCOUNT_DATA_DIR");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigNames {
    /// The env var prefix, without the trailing `_`: `ZEROSCALE` reads
    /// `ZEROSCALE_QUEUE__KIND`, `ZEROSCALE_PROFILE`, `ZEROSCALE_CONFIG_DIR`,
    /// `ZEROSCALE_DATA_DIR`.
    pub env_prefix: String,
    /// The config folder when neither the caller nor `<PREFIX>_CONFIG_DIR` names one.
    pub config_dir: PathBuf,
    /// The name of the per-user data dir (`~/.local/share/<name>` on Linux) used when
    /// `data_dir` is not set.
    pub data_dir_name: String,
}

impl Default for ConfigNames {
    fn default() -> Self {
        ConfigNames::for_app("zeroscale")
    }
}

impl ConfigNames {
    /// The names of an app called `name`: env prefix `NAME` (upper case, `-` as `_`),
    /// config folder `./config`, data dir `name`.
    pub fn for_app(name: &str) -> Self {
        ConfigNames {
            env_prefix: name.to_ascii_uppercase().replace('-', "_"),
            config_dir: PathBuf::from("config"),
            data_dir_name: name.to_owned(),
        }
    }

    /// The full name of env var `suffix` (`DATA_DIR` → `ZEROSCALE_DATA_DIR`).
    pub fn env_var(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.env_prefix)
    }

    /// The env var that sets dotted config `key` (`queue.kind` → `ZEROSCALE_QUEUE__KIND`).
    pub fn env_var_for_key(&self, key: &str) -> String {
        self.env_var(&key.replace('.', "__").to_ascii_uppercase())
    }

    pub(crate) fn check(&self) -> Result<()> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid(&self.env_prefix) || self.env_prefix.contains('-') {
            return Err(Error::config(
                "(app)",
                format!(
                    "env prefix `{}` must be letters, digits and `_` (e.g. `MYAPP`)",
                    self.env_prefix
                ),
            ));
        }
        if !valid(&self.data_dir_name) {
            return Err(Error::config(
                "(app)",
                format!(
                    "data-dir name `{}` must be letters, digits, `-` and `_` (e.g. `myapp`)",
                    self.data_dir_name
                ),
            ));
        }
        Ok(())
    }
}

type Loaded = (Value, Arc<dyn Any + Send + Sync>);
type Extract =
    dyn Fn(&Figment, &str) -> std::result::Result<Loaded, Box<figment::Error>> + Send + Sync;

/// An app's own config section: a top-level key (`[wordcount]`) read into the app's type
/// `T`, loaded from the same layers as zeroscale's keys (files, `<PREFIX>_WORDCOUNT__…`
/// env vars), refused on unknown keys and wrong types with the key and where it was set,
/// and shown by `config show` with each value's source.
///
/// `T` should have `#[serde(default)]` (with a `Default` that works) so that an absent
/// section is its defaults; a required field missing is reported as a config error.
/// Fields that `T` skips when serializing are not known keys: give every field a value.
///
/// ```
/// use zeroscale_core::config::{ConfigSection, ConfigSources, load};
///
/// #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
/// #[serde(default)]
/// struct Wordcount {
///     max_words: u32,
/// }
///
/// let sources = ConfigSources {
///     sections: vec![ConfigSection::new::<Wordcount>("wordcount")],
///     ..Default::default()
/// };
/// let loaded = load(&sources).unwrap();
/// assert_eq!(loaded.section::<Wordcount>().unwrap().max_words, 0);
/// ```
#[derive(Clone)]
pub struct ConfigSection {
    name: String,
    extract: Arc<Extract>,
}

impl fmt::Debug for ConfigSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ConfigSection {
    /// The section at top-level key `name`, read into `T`.
    pub fn new<T>(name: impl Into<String>) -> Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        ConfigSection {
            name: name.into(),
            extract: Arc::new(|figment: &Figment, name: &str| {
                let value: T = figment.focus(name).extract().map_err(Box::new)?;
                let shown = Value::serialize(&value).map_err(Box::new)?;
                Ok((shown, Arc::new(value) as Arc<dyn Any + Send + Sync>))
            }),
        }
    }

    /// The top-level key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the section; an error names the key (under the section) and where it was
    /// set.
    pub(crate) fn load(&self, figment: &Figment, names: &ConfigNames) -> Result<Loaded> {
        (self.extract)(figment, &self.name).map_err(|error| {
            // Focused on the section, figment's path is relative to it.
            let key = std::iter::once(self.name.as_str())
                .chain(error.path.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(".");
            let mut message = format!("section `{}`: {}", self.name, error.kind);
            if let Some(origin) = super::sources::describe_source(figment, &key, names) {
                message.push_str(&format!(" (set by {origin})"));
            }
            Error::config(key, message)
        })
    }
}

/// The loaded values of an app's config sections, by type.
#[derive(Clone, Default)]
pub struct SectionValues {
    by_type: BTreeMap<String, (TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl fmt::Debug for SectionValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_type.keys()).finish()
    }
}

impl SectionValues {
    pub(crate) fn insert(&mut self, name: &str, value: Arc<dyn Any + Send + Sync>) {
        self.by_type
            .insert(name.to_owned(), ((*value).type_id(), value));
    }

    /// The section of type `T`, if the app declared one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.by_type
            .values()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| Arc::clone(v).downcast::<T>().ok())
    }

    /// The names of the sections, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }
}
