//! `[storage]`: memory, local files, S3, R2 or Azure Blob Storage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The object storage backend (`storage.kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
