//! zeroscale-storage: object storage backends over object_store: memory, local files, S3
//! and Cloudflare R2 (an S3 preset), chosen by `storage.kind`.
//!
//! Today this crate builds each backend's object_store client from config and probes it
//! ([`probe`], behind `/readyz` and `zeroscale doctor`); the [`Storage`] adapter and its
//! conformance run arrive with the storage issue.
//!
//! [`Storage`]: zeroscale_core::Storage
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `local` | local-folder storage (`storage.kind = "local"`) | yes |
//! | `s3` | S3 and R2 storage (`storage.kind = "s3"` / `"r2"`) | no |
//!
//! In-memory storage is always compiled.

#[cfg(feature = "local")]
mod local;
#[cfg(feature = "s3")]
pub mod s3;

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use zeroscale_core::config::StorageConfig;
use zeroscale_core::{Error, Result};

/// Whether this build contains the storage backend `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    kind == "memory"
        || (kind == "local" && cfg!(feature = "local"))
        || (matches!(kind, "s3" | "r2") && cfg!(feature = "s3"))
}

/// The object_store client for the configured backend, and where it points (no secrets).
pub fn object_store(config: &StorageConfig) -> Result<(Arc<dyn ObjectStore>, String)> {
    match config {
        StorageConfig::Memory(_) => Ok((
            Arc::new(object_store::memory::InMemory::new()),
            "memory".to_owned(),
        )),
        #[cfg(feature = "local")]
        StorageConfig::Local(c) => local::build(c),
        #[cfg(not(feature = "local"))]
        StorageConfig::Local(_) => Err(Error::not_compiled_in("storage.kind", "local", "local")),
        #[cfg(feature = "s3")]
        StorageConfig::S3(c) => s3::build(c),
        #[cfg(feature = "s3")]
        StorageConfig::R2(c) => s3::build(&c.to_s3()),
        #[cfg(not(feature = "s3"))]
        StorageConfig::S3(_) => Err(Error::not_compiled_in("storage.kind", "s3", "s3")),
        #[cfg(not(feature = "s3"))]
        StorageConfig::R2(_) => Err(Error::not_compiled_in("storage.kind", "r2", "s3")),
    }
}

/// Proves the configured backend is usable: writes, reads back and deletes a probe object.
/// Returns where the storage is, for reports.
pub async fn probe(config: &StorageConfig) -> Result<String> {
    let (store, location) = object_store(config)?;
    let backend = config.kind();
    let key = Path::from(format!(".zeroscale-probe/{}", std::process::id()));
    let fail = |what: &str, e: object_store::Error| {
        Error::unavailable_from(
            format!(
                "{backend} storage at {location}: {what} failed; check the `[storage]` settings and that the backend is running"
            ),
            e,
        )
    };
    store
        .put(&key, PutPayload::from(Bytes::from_static(b"probe")))
        .await
        .map_err(|e| fail("writing a probe object", e))?;
    let body = store
        .get(&key)
        .await
        .map_err(|e| fail("reading the probe object", e))?
        .bytes()
        .await
        .map_err(|e| fail("reading the probe object", e))?;
    store
        .delete(&key)
        .await
        .map_err(|e| fail("deleting the probe object", e))?;
    if &body[..] != b"probe" {
        return Err(Error::unavailable(format!(
            "{backend} storage at {location} returned other bytes than were written"
        )));
    }
    Ok(location)
}
