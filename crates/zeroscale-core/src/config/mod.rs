//! Config types for every concern, and their layered loading (see [`load`]).
//!
//! Each concern's backend is a `#[serde(tag = "kind")]` enum whose variants all exist
//! whether or not the backend is compiled in; the crate that builds the backend reports a
//! compiled-out variant with the feature to enable. Every struct has defaults: an empty
//! config is the embedded stage (SQLite, local files, in-memory queue, local models,
//! placeholder images), all under the data dir.

mod app_config;
mod database;
mod load;
mod models;
mod queue;
mod server;
mod sources;
mod storage;
mod telemetry;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use app_config::{ConfigNames, ConfigSection, SectionValues};
pub use database::*;
pub use load::{ConfigSources, LoadedConfig, load};
pub use models::*;
pub use queue::*;
pub use server::*;
pub use storage::*;
pub use telemetry::*;

/// The whole zeroscale configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Config {
    /// Where zeroscale keeps its files (SQLite database, blobs, models, secrets). Defaults to
    /// the platform's per-user data dir for `zeroscale`; `ZEROSCALE_DATA_DIR` overrides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The HTTP server.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Object storage.
    pub storage: StorageConfig,
    /// The job queue.
    pub queue: QueueConfig,
    /// Job semantics shared by every queue backend.
    pub jobs: JobsConfig,
    /// Where workers run.
    pub workers: WorkersConfig,
    /// Model providers, registry and router.
    pub models: ModelsConfig,
    /// Passwords, sessions and API keys.
    pub auth: AuthConfig,
    /// Chat history.
    pub chat: ChatConfig,
    /// Request rate limits and quotas.
    pub limits: LimitsConfig,
}

/// The JSON Schema of the whole config: every key, its doc comment as the description
/// and its built-in default. `docs/configuration.md`'s key reference is generated from it
/// (checked by a tidy test), so the docs, the doc comments and the defaults cannot drift.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}

impl Config {
    /// The base URL of app-served signed file URLs: `storage.public_url` (memory and
    /// local storage), else `server.public_url`.
    pub fn storage_public_url(&self) -> String {
        let configured = match &self.storage {
            StorageConfig::Memory(m) => m.public_url.as_deref(),
            StorageConfig::Local(l) => l.public_url.as_deref(),
            StorageConfig::Azure(a) => a.public_url.as_deref(),
            StorageConfig::S3(_) | StorageConfig::R2(_) => None,
        };
        configured
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| self.server.public_url())
    }

    /// The data dir: the configured one, or the platform's per-user data dir for `zeroscale`.
    pub fn data_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        default_data_dir()
    }

    /// Fills every path left unset from the data dir, so the config says exactly where
    /// things live: `data_dir`, the SQLite file, the local storage root, the models dir.
    pub fn resolve_paths(&mut self) -> Result<()> {
        let data_dir = self.data_dir()?;
        if let DatabaseConfig::Sqlite(sqlite) = &mut self.database
            && sqlite.path.is_none()
            && !sqlite.in_memory
        {
            sqlite.path = Some(data_dir.join("zeroscale.db"));
        }
        if let StorageConfig::Local(local) = &mut self.storage
            && local.root.is_none()
        {
            local.root = Some(data_dir.join("blobs"));
        }
        if self.models.dir.is_none() {
            self.models.dir = Some(data_dir.join("models"));
        }
        self.data_dir = Some(data_dir);
        Ok(())
    }
}

/// The platform's per-user data dir for `zeroscale` (e.g. `~/.local/share/zeroscale`).
pub fn default_data_dir() -> Result<PathBuf> {
    default_data_dir_named("zeroscale", &ConfigNames::default())
}

/// The platform's per-user data dir called `name` (e.g. `~/.local/share/<name>`).
pub(crate) fn default_data_dir_named(name: &str, names: &ConfigNames) -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", name)
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            Error::config(
                "data_dir",
                format!(
                    "no home directory to put the data dir in: set `{}` or `data_dir`",
                    names.env_var("DATA_DIR")
                ),
            )
        })
}

/// Creates `dir` (and its parents) if missing, the new directory with mode 0700 so only
/// its owner can read what zeroscale keeps there. An existing directory is left as it is.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        Error::config(
            "data_dir",
            format!(
                "cannot create directory {}: {e}; choose another with `ZEROSCALE_DATA_DIR`",
                dir.display()
            ),
        )
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests;
