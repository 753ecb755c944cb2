//! Copying every object from one storage backend to another (`zeroscale storage sync`):
//! streaming, concurrent, resumable, verified.
//!
//! An object already at the destination with the same size and the same SHA-256 of its
//! content is skipped, so an interrupted sync can be run again. Content type and user
//! metadata are copied with the bytes. At the end the destination is listed and every
//! source object must be there with its size.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use zeroscale_core::storage::{GetOptions, ObjectMeta, PutOptions, Storage, StorageExt};
use zeroscale_core::{Error, Result};

/// What to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Objects copied at once.
    pub concurrency: usize,
    /// List what would be copied; write nothing.
    pub dry_run: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            prefix: None,
            concurrency: 8,
            dry_run: false,
        }
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Copied (or, in a dry run, would be).
    Copied,
    /// Already at the destination with the same size and content.
    Skipped,
}

/// Progress, reported as objects finish.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    /// The source was listed: this many objects and bytes to consider.
    Planned {
        /// Objects in the source.
        objects: u64,
        /// Their total size.
        bytes: u64,
    },
    /// One object is done.
    Done {
        /// Its key.
        key: String,
        /// Its size.
        bytes: u64,
        /// Copied or skipped.
        outcome: Outcome,
    },
}

/// The result of a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Objects in the source.
    pub objects: u64,
    /// Their total size.
    pub bytes: u64,
    /// Objects copied (or that would be, in a dry run).
    pub copied: Vec<String>,
    /// Objects skipped as already present.
    pub skipped: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
}

async fn sha256_of(store: &dyn Storage, meta: &ObjectMeta) -> Result<String> {
    let mut body = store.get_opts(&meta.key, GetOptions::default()).await?.body;
    let mut hasher = Sha256::new();
    while let Some(chunk) = body.try_next().await? {
        hasher.update(&chunk);
    }
    Ok(zeroscale_core::hex(&hasher.finalize()))
}

/// Whether `to` already holds `meta`'s object with the same size and content.
async fn already_there(from: &dyn Storage, to: &dyn Storage, meta: &ObjectMeta) -> Result<bool> {
    let existing = match to.head(&meta.key).await {
        Ok(existing) => existing,
        Err(Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if existing.size != meta.size {
        return Ok(false);
    }
    Ok(sha256_of(from, meta).await? == sha256_of(to, &existing).await?)
}

async fn copy_one(from: &dyn Storage, to: &dyn Storage, meta: &ObjectMeta) -> Result<u64> {
    let source = from.get_opts(&meta.key, GetOptions::default()).await?;
    let opts = PutOptions {
        content_type: source.meta.content_type.clone(),
        content_disposition: source.meta.content_disposition.clone(),
        metadata: source.meta.metadata.clone(),
        ..Default::default()
    };
    let put = to.put_stream(&meta.key, source.body, opts).await?;
    if put.size != meta.size {
        return Err(Error::conflict(format!(
            "object `{}` changed while being copied ({} bytes listed, {} copied); run the sync again",
            meta.key, meta.size, put.size
        )));
    }
    Ok(put.size)
}

/// Copies every object under `opts.prefix` from `from` to `to`; `progress` hears about
/// each object as it finishes.
pub async fn sync(
    from: Arc<dyn Storage>,
    to: Arc<dyn Storage>,
    opts: &SyncOptions,
    progress: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<SyncReport> {
    let objects = from.list_all(opts.prefix.as_deref()).await?;
    let total_bytes: u64 = objects.iter().map(|m| m.size).sum();
    progress(SyncEvent::Planned {
        objects: objects.len() as u64,
        bytes: total_bytes,
    });
    let mut report = SyncReport {
        objects: objects.len() as u64,
        bytes: total_bytes,
        ..Default::default()
    };
    let dry_run = opts.dry_run;
    let results: Vec<(ObjectMeta, Outcome)> = futures::stream::iter(objects.clone())
        .map(|meta| {
            let (from, to) = (from.clone(), to.clone());
            async move {
                let outcome = if already_there(from.as_ref(), to.as_ref(), &meta).await? {
                    Outcome::Skipped
                } else {
                    if !dry_run {
                        copy_one(from.as_ref(), to.as_ref(), &meta).await?;
                    }
                    Outcome::Copied
                };
                progress(SyncEvent::Done {
                    key: meta.key.as_str().to_owned(),
                    bytes: meta.size,
                    outcome,
                });
                Ok::<_, Error>((meta, outcome))
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    for (meta, outcome) in results {
        match outcome {
            Outcome::Copied => {
                report.copied.push(meta.key.as_str().to_owned());
                report.copied_bytes += meta.size;
            }
            Outcome::Skipped => report.skipped += 1,
        }
    }
    report.copied.sort();
    if !dry_run {
        verify(to.as_ref(), opts.prefix.as_deref(), &objects).await?;
    }
    Ok(report)
}

/// Every source object is at the destination with its size.
async fn verify(to: &dyn Storage, prefix: Option<&str>, source: &[ObjectMeta]) -> Result<()> {
    let there: BTreeMap<String, u64> = to
        .list_all(prefix)
        .await?
        .into_iter()
        .map(|m| (m.key.into_string(), m.size))
        .collect();
    let mut problems = Vec::new();
    for meta in source {
        match there.get(meta.key.as_str()) {
            None => problems.push(format!("`{}` is missing", meta.key)),
            Some(size) if *size != meta.size => problems.push(format!(
                "`{}` has {size} bytes, the source {}",
                meta.key, meta.size
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::conflict(format!(
            "verification failed for {} object(s): {}; run the sync again",
            problems.len(),
            problems.into_iter().take(10).collect::<Vec<_>>().join(", ")
        )))
    }
}
