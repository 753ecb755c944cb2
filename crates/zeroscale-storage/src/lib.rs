//! zeroscale-storage: object storage over object_store: memory, local files, S3 and
//! Cloudflare R2 (an S3 preset), chosen by `storage.kind`.
//!
//! [`connect`] builds the configured backend as a [`Storage`]; every backend passes the
//! conformance suite in `zeroscale_core::conformance::storage`. Keys are validated once, by
//! [`ObjectKey`](zeroscale_core::ObjectKey). Signed URLs are presigned by S3/R2; memory and
//! local storage hand out URLs to the app's `/files/…` route ([`http::files_router`]),
//! signed with HMAC-SHA256.
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `local` | local-folder storage (`storage.kind = "local"`) | yes |
//! | `s3` | S3 and R2 storage (`storage.kind = "s3"` / `"r2"`) | no |
//! | `http` | the axum router serving app-signed `/files/…` URLs | yes |
//!
//! In-memory storage is always compiled.

pub mod adapter;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "s3")]
pub mod s3;
pub mod signed;
pub mod sync;

use std::path::PathBuf;
use std::sync::Arc;

use zeroscale_core::config::StorageConfig;
use zeroscale_core::{Result, Storage};

pub use adapter::{ObjectStoreStorage, Signing};
pub use signed::UrlSigner;

/// What storage needs from the app besides its own config.
#[derive(Debug, Clone)]
pub struct StorageContext {
    /// The data dir (where the URL-signing secret is kept when config sets none).
    pub data_dir: PathBuf,
    /// The URL clients reach the app at, for app-signed `/files/…` URLs.
    pub public_url: String,
}

/// Whether this build contains the storage backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    kind == "memory"
        || (kind == "local" && cfg!(feature = "local"))
        || (matches!(kind, "s3" | "r2") && cfg!(feature = "s3"))
}

fn app_signing(secret: Option<&str>, ctx: &StorageContext) -> Result<Signing> {
    let secret = signed::load_or_create_secret(secret, &ctx.data_dir)?;
    Ok(Signing::App(Arc::new(UrlSigner::new(
        &secret,
        ctx.public_url.clone(),
    ))))
}

/// The configured backend, ready to use.
pub fn connect(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<ObjectStoreStorage>> {
    match config {
        StorageConfig::Memory(c) => Ok(Arc::new(ObjectStoreStorage::new(
            "memory",
            "memory".to_owned(),
            Arc::new(object_store::memory::InMemory::new()),
            true,
            zeroscale_core::config::DEFAULT_MULTIPART_THRESHOLD,
            app_signing(c.signing_secret.as_ref().map(|s| s.expose().as_str()), ctx)?,
        ))),
        #[cfg(feature = "local")]
        StorageConfig::Local(c) => {
            let (store, location) = local::build(c)?;
            Ok(Arc::new(ObjectStoreStorage::new(
                "local",
                location,
                store,
                false,
                c.multipart_threshold_bytes,
                app_signing(c.signing_secret.as_ref().map(|s| s.expose().as_str()), ctx)?,
            )))
        }
        #[cfg(not(feature = "local"))]
        StorageConfig::Local(_) => Err(zeroscale_core::Error::not_compiled_in(
            "storage.kind",
            "local",
            "local",
        )),
        #[cfg(feature = "s3")]
        StorageConfig::S3(c) => s3::connect("s3", c),
        #[cfg(feature = "s3")]
        StorageConfig::R2(c) => s3::connect("r2", &c.to_s3()),
        #[cfg(not(feature = "s3"))]
        StorageConfig::S3(_) => Err(zeroscale_core::Error::not_compiled_in(
            "storage.kind",
            "s3",
            "s3",
        )),
        #[cfg(not(feature = "s3"))]
        StorageConfig::R2(_) => Err(zeroscale_core::Error::not_compiled_in(
            "storage.kind",
            "r2",
            "s3",
        )),
    }
}

/// Connects and proves the backend usable (writes, reads back and deletes a probe
/// object); returns where the storage is, for reports.
pub async fn probe(config: &StorageConfig, ctx: &StorageContext) -> Result<String> {
    let storage = connect(config, ctx)?;
    storage.health().await?;
    Ok(storage.location().to_owned())
}
