//! zeroscale-storage: object storage over object_store: memory, local files, S3,
//! Cloudflare R2 (an S3 preset) and Azure Blob Storage, chosen by `storage.kind`; the
//! backends are listed in [`registry::BACKENDS`].
//!
//! [`connect`] builds the configured backend as a [`Storage`]; every backend passes the
//! conformance suite in `zeroscale_core::conformance::storage`. Keys are validated once, by
//! [`ObjectKey`](zeroscale_core::ObjectKey). Signed URLs are presigned by S3/R2; memory and
//! local and Azure storage hand out URLs to the app's `/files/…` route
//! ([`http::files_router`], with the signer from [`app_signer`]), encrypted and
//! authenticated by the app.
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `local` | local-folder storage (`storage.kind = "local"`) | yes |
//! | `s3` | S3 and R2 storage (`storage.kind = "s3"` / `"r2"`) | no |
//! | `azure` | Azure Blob Storage (`storage.kind = "azure"`) | no |
//! | `http` | the axum router serving app-signed `/files/…` URLs | yes |
//!
//! In-memory storage is always compiled.

mod adapter;
#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "local")]
mod local;
mod memory;
pub mod metered;
pub mod registry;
#[cfg(feature = "s3")]
mod s3;
pub mod signed;
pub mod sync;
mod upload_log;

use std::path::PathBuf;
use std::sync::Arc;

use zeroscale_core::config::StorageConfig;
use zeroscale_core::storage::UrlSigning;
use zeroscale_core::uploads::UploadLog;
use zeroscale_core::{Result, Storage};

pub use registry::BACKENDS;
pub use signed::UrlSigner;
pub use upload_log::MemoryUploadLog;

/// What storage needs from the app besides its own config. Build it with
/// [`StorageContext::new`]; more may be added without breaking callers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorageContext {
    /// The data dir (where the URL-signing secret is kept when config sets none).
    pub data_dir: PathBuf,
    /// The URL clients reach the app at, for app-signed `/files/…` URLs.
    pub public_url: String,
    /// Where multipart upload ids are recorded until their upload ends, so
    /// [`Storage::sweep`] can abort the ones a crash left behind. Default: in memory
    /// ([`MemoryUploadLog`]), which does not survive the process; the app uses its
    /// database.
    pub uploads: Arc<dyn UploadLog>,
}

impl StorageContext {
    /// A context with an in-memory upload log.
    pub fn new(data_dir: impl Into<PathBuf>, public_url: impl Into<String>) -> Self {
        StorageContext {
            data_dir: data_dir.into(),
            public_url: public_url.into(),
            uploads: Arc::new(MemoryUploadLog::new()),
        }
    }

    /// The context a loaded config describes: its data dir (the default data dir when
    /// unset) and the URL its app-signed URLs point at ([`Config::storage_public_url`]).
    ///
    /// [`Config::storage_public_url`]: zeroscale_core::config::Config::storage_public_url
    pub fn from_config(config: &zeroscale_core::config::Config) -> Result<Self> {
        Ok(StorageContext::new(
            config.data_dir()?,
            config.storage_public_url(),
        ))
    }

    /// The same context with `uploads` as its upload log.
    pub fn with_upload_log(mut self, uploads: Arc<dyn UploadLog>) -> Self {
        self.uploads = uploads;
        self
    }
}

/// Whether this build contains the storage backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    BACKENDS.is_compiled_in(kind)
}

/// The configured backend, ready to use.
/// Its operations are recorded as metrics ([`metered::Metered`]).
pub fn connect(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    let storage = (BACKENDS.entry(config.kind())?.connect)(config, ctx)?;
    Ok(Arc::new(metered::Metered::new(storage)))
}

/// The signer of the configured backend's URLs when the app serves them (memory, local,
/// Azure): hand it to [`http::files_router`]. `None` when the backend presigns (S3, R2).
/// It signs with the same key as the storage [`connect`] returns.
pub fn app_signer(config: &StorageConfig, ctx: &StorageContext) -> Result<Option<Arc<UrlSigner>>> {
    let app_signed = BACKENDS
        .get(config.kind())
        .is_some_and(|b| b.capabilities.signing == UrlSigning::App);
    if !app_signed {
        return Ok(None);
    }
    let secret = signed::load_or_create_secret(
        config.signing_secret().map(|s| s.expose().as_str()),
        &ctx.data_dir,
    )?;
    Ok(Some(Arc::new(UrlSigner::new(
        &secret,
        ctx.public_url.clone(),
    ))))
}

/// The app signing of a backend whose URLs the app serves.
pub(crate) fn app_signing(
    config: &StorageConfig,
    ctx: &StorageContext,
) -> Result<adapter::Signing> {
    let signer = app_signer(config, ctx)?.ok_or_else(|| {
        zeroscale_core::registry::wrong_config("an app-signed backend", config.kind())
    })?;
    Ok(adapter::Signing::App(signer))
}

/// Connects and proves the backend usable (writes, reads back and deletes a probe
/// object); returns where the storage is, for reports.
pub async fn probe(config: &StorageConfig, ctx: &StorageContext) -> Result<String> {
    let storage = connect(config, ctx)?;
    storage.health().await?;
    Ok(storage.location().to_owned())
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
