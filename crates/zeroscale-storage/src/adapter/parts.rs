//! Multipart uploads whose ids are recorded (S3, R2, memory): the upload is created, its
//! id written to the [`UploadLog`] before the first part, the parts sent (up to
//! [`UPLOAD_CONCURRENCY`] at once), and the upload completed or aborted; either way the
//! record is then forgotten. An upload dropped midway (its client went away) is aborted
//! in the background; one cut off by a crash stays recorded, and
//! [`Storage::sweep`](zeroscale_core::Storage::sweep) aborts it once it is old enough.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{PutMultipartOptions, PutPayload};
use zeroscale_core::storage::{ByteStream, ObjectKey, PutOptions, PutResult};
use zeroscale_core::uploads::{PendingUpload, UploadLog};
use zeroscale_core::{Error, ErrorKind, Result};

use super::{MIN_PART, ObjectStoreStorage, UPLOAD_CONCURRENCY};

/// An upload in flight: aborted in the background if dropped before [`Self::finished`].
struct Started {
    store: Arc<dyn MultipartStore>,
    log: Arc<dyn UploadLog>,
    location: String,
    path: Path,
    id: String,
    open: bool,
}

impl Started {
    /// Aborts the upload and forgets it.
    async fn abort(mut self) {
        self.open = false;
        abort_and_forget(
            Arc::clone(&self.store),
            Arc::clone(&self.log),
            self.location.clone(),
            self.path.clone(),
            self.id.clone(),
        )
        .await;
    }

    /// The upload was completed: forgets it (a record left by a failing log is harmless:
    /// a sweep finds the upload gone).
    async fn finished(mut self) {
        self.open = false;
        if let Err(e) = self.log.forget(&self.location, &self.id).await {
            tracing::warn!(error = %e.chain(), path = %self.path, "could not forget a completed multipart upload; a sweep will");
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        // Dropped midway (the request was cancelled): abort in the background. Without a
        // runtime (it is shutting down) the record stays for a sweep.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(abort_and_forget(
                Arc::clone(&self.store),
                Arc::clone(&self.log),
                self.location.clone(),
                self.path.clone(),
                self.id.clone(),
            ));
        }
    }
}

async fn abort_and_forget(
    store: Arc<dyn MultipartStore>,
    log: Arc<dyn UploadLog>,
    location: String,
    path: Path,
    id: String,
) {
    match store.abort_multipart(&path, &id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            if let Err(e) = log.forget(&location, &id).await {
                tracing::warn!(error = %e.chain(), %path, "could not forget an aborted multipart upload; a sweep will");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, %path, "could not abort a multipart upload; a sweep will try again");
        }
    }
}

/// Aborts one recorded upload found by a sweep; `Ok(true)` once it is gone (aborted now
/// or already finished) and forgotten.
pub(super) async fn sweep_one(
    store: &dyn MultipartStore,
    log: &dyn UploadLog,
    upload: &PendingUpload,
) -> std::result::Result<bool, object_store::Error> {
    let path = Path::parse(&upload.path).map_err(|e| object_store::Error::Generic {
        store: "upload log",
        source: Box::new(e),
    })?;
    match store.abort_multipart(&path, &upload.upload_id).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if let Err(e) = log.forget(&upload.store, &upload.upload_id).await {
        tracing::warn!(error = %e.chain(), path = %upload.path, "could not forget a swept multipart upload");
        return Ok(false);
    }
    Ok(true)
}

impl ObjectStoreStorage {
    /// Stores `first` then the rest of `body` at `key` in recorded parts.
    pub(super) async fn recorded_multipart(
        &self,
        store: &Arc<dyn MultipartStore>,
        key: &ObjectKey,
        first: Bytes,
        rest: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let path = self.path(key)?;
        let id = store
            .create_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes: self.attributes(opts),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.map_err(key, e))?;
        let started = Started {
            store: Arc::clone(store),
            log: Arc::clone(&self.uploads),
            location: self.location.clone(),
            path: path.clone(),
            id: id.clone(),
            open: true,
        };
        let record = PendingUpload {
            store: self.location.clone(),
            path: path.to_string(),
            upload_id: id.clone(),
            started_at: chrono::Utc::now(),
        };
        if let Err(e) = self.uploads.record(&record).await {
            started.abort().await;
            let message = format!(
                "cannot record the multipart upload of object `{key}` in the upload log (an \
                 upload that is not recorded could not be cleaned up after a crash)"
            );
            return Err(if e.kind() == ErrorKind::Unavailable {
                Error::unavailable_from(message, e)
            } else {
                Error::backend(
                    self.backend,
                    std::io::Error::other(format!("{message}: {}", e.chain())),
                )
            });
        }
        match self
            .send_parts(store.as_ref(), key, &path, &id, first, rest)
            .await
        {
            Ok((parts, size)) => match store.complete_multipart(&path, &id, parts).await {
                Ok(done) => {
                    started.finished().await;
                    Ok(PutResult {
                        etag: done.e_tag,
                        size,
                    })
                }
                Err(e) => {
                    started.abort().await;
                    Err(self.map_err(key, e))
                }
            },
            Err(e) => {
                started.abort().await;
                Err(e)
            }
        }
    }

    /// Sends the body in parts of the store's part size, a few at once; the parts in
    /// order, and the body's size.
    async fn send_parts(
        &self,
        store: &dyn MultipartStore,
        key: &ObjectKey,
        path: &Path,
        id: &str,
        first: Bytes,
        mut rest: ByteStream,
    ) -> Result<(Vec<PartId>, u64)> {
        let part_size = self.multipart_threshold.max(MIN_PART);
        let id = id.to_owned();
        let mut in_flight = FuturesUnordered::new();
        let mut parts: Vec<Option<PartId>> = Vec::new();
        let mut buffer = BytesMut::from(first);
        let mut size = buffer.len() as u64;
        let mut ended = false;
        loop {
            while !ended && buffer.len() < part_size {
                match rest.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        size += chunk.len() as u64;
                        buffer.extend_from_slice(&chunk);
                    }
                    None => ended = true,
                }
            }
            while buffer.len() >= part_size || (ended && !buffer.is_empty()) {
                let take = buffer.len().min(part_size);
                let payload = PutPayload::from(buffer.split_to(take).freeze());
                let index = parts.len();
                parts.push(None);
                let id = &id;
                in_flight.push(async move {
                    store
                        .put_part(path, id, index, payload)
                        .await
                        .map(|part| (index, part))
                });
                while in_flight.len() >= UPLOAD_CONCURRENCY {
                    self.settle(&mut in_flight, &mut parts, key).await?;
                }
            }
            if ended {
                break;
            }
        }
        while !in_flight.is_empty() {
            self.settle(&mut in_flight, &mut parts, key).await?;
        }
        if parts.is_empty() {
            // An empty body still needs one (empty) part.
            parts.push(Some(
                store
                    .put_part(path, &id, 0, PutPayload::default())
                    .await
                    .map_err(|e| self.map_err(key, e))?,
            ));
        }
        let parts = parts.into_iter().flatten().collect();
        Ok((parts, size))
    }

    async fn settle<F>(
        &self,
        in_flight: &mut FuturesUnordered<F>,
        parts: &mut [Option<PartId>],
        key: &ObjectKey,
    ) -> Result<()>
    where
        F: Future<Output = std::result::Result<(usize, PartId), object_store::Error>>,
    {
        if let Some(done) = in_flight.next().await {
            let (index, part) = done.map_err(|e| self.map_err(key, e))?;
            parts[index] = Some(part);
        }
        Ok(())
    }
}
