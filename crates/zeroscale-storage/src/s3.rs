//! S3 and R2 storage: object_store's `AmazonS3` from config, credentials from config or
//! the standard `AWS_*` environment variables; native presigned URLs.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::prefix::PrefixStore;
use zeroscale_core::config::{S3StorageConfig, StorageConfig};
use zeroscale_core::registry::wrong_config;
use zeroscale_core::{Error, Result, Storage};

use crate::StorageContext;
use crate::adapter::{AttributeStore, Layout, ObjectStoreStorage, Signing, StoreOptions};

/// Builds the S3 client `config` describes, with `endpoint/bucket[/prefix]` for reports
/// (never credentials).
pub(crate) fn build(config: &S3StorageConfig) -> Result<(AmazonS3, String)> {
    if config.bucket.is_empty() {
        return Err(Error::config(
            "storage.bucket",
            "no bucket configured: set `storage.bucket`",
        ));
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        .with_retry(crate::adapter::retry());
    if let Some(endpoint) = &config.endpoint {
        if endpoint.starts_with("http://") && !config.allow_http {
            return Err(Error::config(
                "storage.allow_http",
                format!(
                    "endpoint {endpoint} is plain http: set `storage.allow_http = true` to allow it"
                ),
            ));
        }
        builder = builder.with_endpoint(endpoint);
    }
    // A custom endpoint usually means an S3-compatible server that wants path style.
    let path_style = config.path_style.unwrap_or(config.endpoint.is_some());
    builder = builder.with_virtual_hosted_style_request(!path_style);
    if let Some(key) = &config.access_key_id {
        builder = builder.with_access_key_id(key.expose());
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose());
    }
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token.expose());
    }
    let s3 = builder
        .build()
        .map_err(|e| Error::config("storage", format!("invalid S3 settings: {e}")))?;
    let endpoint = config
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("s3.{}.amazonaws.com", config.region));
    let mut location = format!("{endpoint}/{}", config.bucket);
    if let Some(prefix) = config.prefix.as_deref().filter(|p| !p.is_empty()) {
        location = format!("{location}/{prefix}");
    }
    Ok((s3, location))
}

/// The storage for `storage.kind = "s3"`.
pub(crate) fn connect_s3(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    match config {
        StorageConfig::S3(c) => connect("s3", c, ctx),
        other => Err(wrong_config("s3", other.kind())),
    }
}

/// The storage for `storage.kind = "r2"` (S3 with R2's endpoint).
pub(crate) fn connect_r2(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    match config {
        StorageConfig::R2(c) => connect("r2", &c.to_s3(), ctx),
        other => Err(wrong_config("r2", other.kind())),
    }
}

fn connect(
    backend: &'static str,
    config: &S3StorageConfig,
    ctx: &StorageContext,
) -> Result<Arc<dyn Storage>> {
    let (s3, location) = build(config)?;
    let s3 = Arc::new(s3);
    let prefix = config.prefix.clone().filter(|p| !p.is_empty());
    let (store, multipart): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match &prefix {
        Some(p) => {
            let prefixed = Arc::new(PrefixStore::new(s3.as_ref().clone(), p.as_str()));
            (prefixed.clone(), prefixed)
        }
        None => (s3.clone(), s3.clone()),
    };
    Ok(Arc::new(ObjectStoreStorage::new(
        store,
        StoreOptions {
            backend,
            location,
            layout: Layout::Keys,
            attributes: AttributeStore::Native,
            multipart_threshold: config.multipart_threshold_bytes,
            suffix_ranges: true,
            signing: Signing::Native { signer: s3, prefix },
            #[cfg(feature = "local")]
            local_files: None,
            multipart: Some(multipart),
            uploads: Arc::clone(&ctx.uploads),
        },
    )))
}
