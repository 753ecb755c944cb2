//! `ObjectStoreStorage`: core's `Storage` over any object_store client (memory, local
//! files, S3, R2, Azure). Backends differ only in what [`StoreOptions`] says about them;
//! the differences live in one submodule each:
//!
//! - [`codec`]: how keys become paths (encoded on local disks);
//! - [`attributes`]: content type and metadata, native or in a sidecar;
//! - [`listing`]: pages in key order without reading more than a page;
//! - [`signing`]: presigned by the backend or app-served tokens;
//! - [`errors`]: object_store's errors as core's kinds;
//! - `local_read`: a local get in one blocking task;
//! - [`parts`]: multipart uploads recorded in the upload log, and their sweep;
//! - `staging`: a local folder's partly written files, and their sweep.

mod attributes;
mod codec;
mod errors;
mod listing;
#[cfg(feature = "local")]
mod local_read;
mod parts;
mod signing;
#[cfg(feature = "local")]
mod staging;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    Attributes, GetRange, ObjectStore, ObjectStoreExt, PutMode as OsPutMode, PutMultipartOptions,
    PutOptions as OsPutOptions, PutPayload, WriteMultipart,
};
use zeroscale_core::storage::{
    ByteRange, ByteStream, GetOptions, GetResult, ListOptions, ListPage, ObjectKey, ObjectMeta,
    PutMode, PutOptions, PutResult, RESERVED_PREFIX, SignedUrl, SignedUrlOptions, Storage,
    UrlSigning,
};
use zeroscale_core::uploads::{SweepReport, UploadLog};
use zeroscale_core::{Error, Result};

pub(crate) use attributes::AttributeStore;
use codec::Codec;

/// How the cloud stores retry a failed request: 3 times over at most 10 s (object_store's
/// default is 10 times over 3 minutes), so a store that is down answers 503 within
/// seconds instead of holding every request for minutes.
#[cfg(any(feature = "s3", feature = "azure"))]
pub(crate) fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(10),
        ..Default::default()
    }
}
pub(crate) use signing::Signing;

/// Recorded uploads a sweep reads at once, and how many such pages it takes.
const SWEEP_PAGE: usize = 100;
const SWEEP_PAGES: usize = 10;

/// Parts of a multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// S3's smallest part.
const MIN_PART: usize = 5 * 1024 * 1024;

/// The largest piece of a local file read at once.
#[cfg(feature = "local")]
const FILE_CHUNK: u64 = 4 * 1024 * 1024;

/// A streamed local get whose range is at most this is read whole in its first blocking
/// task (larger ones in pieces of [`FILE_CHUNK`]).
const LOCAL_READ_AT_ONCE: u64 = 4 * 1024 * 1024;

/// An object's bytes as a stream. A local file is read in pieces of up to 4 MiB with one
/// positioned read each (object_store's own stream reads 8 KiB at a time, which made a
/// large local read several times slower than reading the file).
fn body_stream(
    result: object_store::GetResult,
    backend: &'static str,
    key: ObjectKey,
) -> ByteStream {
    match result.payload {
        #[cfg(feature = "local")]
        object_store::GetResultPayload::File(file, path) => {
            let file = Arc::new(file);
            let end = result.range.end;
            futures::stream::try_unfold(result.range.start, move |at| {
                let file = Arc::clone(&file);
                let path = path.clone();
                let key = key.clone();
                async move {
                    if at >= end {
                        return Ok(None);
                    }
                    let len = (end - at).min(FILE_CHUNK);
                    let read = tokio::task::spawn_blocking(move || {
                        use std::os::unix::fs::FileExt;
                        let mut buffer = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
                        file.read_exact_at(&mut buffer, at).map(|()| buffer)
                    })
                    .await
                    .map_err(|e| Error::backend(backend, e))?
                    .map_err(|e| {
                        Error::backend(
                            backend,
                            std::io::Error::new(
                                e.kind(),
                                format!("reading {} (object `{key}`): {e}", path.display()),
                            ),
                        )
                    })?;
                    Ok(Some((Bytes::from(read), at + len)))
                }
            })
            .boxed()
        }
        payload => object_store::GetResult { payload, ..result }
            .into_stream()
            .map_err(move |e| errors::map_os_err(backend, &key, e))
            .boxed(),
    }
}

/// How a store lays objects out.
#[cfg_attr(
    not(feature = "local"),
    allow(
        dead_code,
        reason = "only local storage walks files and keeps sidecars"
    )
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Paths are the keys, and the store lists them in key order (memory, S3, Azure).
    Keys,
    /// Encoded files under a local folder ([`codec`]), walked by [`listing`].
    LocalFiles {
        /// The folder.
        root: PathBuf,
    },
}

/// What a backend module says about its store.
pub(crate) struct StoreOptions {
    /// The backend's name (`memory`, `local`, `s3`, …).
    pub(crate) backend: &'static str,
    /// Where it is, for reports (no secrets).
    pub(crate) location: String,
    /// How objects are laid out.
    pub(crate) layout: Layout,
    /// Where content type and metadata are kept.
    pub(crate) attributes: AttributeStore,
    /// Streamed uploads above this go in parts of this size (at least 5 MiB).
    pub(crate) multipart_threshold: u64,
    /// How signed URLs are made.
    pub(crate) signing: Signing,
    /// Whether the store reads "the last n bytes" itself (Azure cannot: such a read
    /// becomes a `head` and a bounded read).
    pub(crate) suffix_ranges: bool,
    /// The local store itself, whose gets are read in one blocking task.
    #[cfg(feature = "local")]
    pub(crate) local_files: Option<Arc<object_store::local::LocalFileSystem>>,
    /// The same store's multipart API, when its upload ids can be recorded (S3, R2,
    /// memory); other stores upload in parts through object_store's writer.
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    /// Where upload ids are recorded.
    pub(crate) uploads: Arc<dyn UploadLog>,
}

/// Storage over an object_store client.
pub(crate) struct ObjectStoreStorage {
    backend: &'static str,
    location: String,
    store: Arc<dyn ObjectStore>,
    codec: Codec,
    layout: Layout,
    attribute_store: AttributeStore,
    multipart_threshold: usize,
    signing: Signing,
    suffix_ranges: bool,
    #[cfg(feature = "local")]
    local_files: Option<Arc<object_store::local::LocalFileSystem>>,
    multipart: Option<Arc<dyn MultipartStore>>,
    uploads: Arc<dyn UploadLog>,
}

impl fmt::Debug for ObjectStoreStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreStorage")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .field("layout", &self.layout)
            .field("attributes", &self.attribute_store)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("signing", &self.signing)
            .finish()
    }
}

impl ObjectStoreStorage {
    /// Wraps `store` as `options` describe it.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, options: StoreOptions) -> Self {
        ObjectStoreStorage {
            backend: options.backend,
            location: options.location,
            store,
            codec: match options.layout {
                Layout::Keys => Codec::Raw,
                Layout::LocalFiles { .. } => Codec::Local,
            },
            layout: options.layout,
            attribute_store: options.attributes,
            multipart_threshold: usize::try_from(options.multipart_threshold).unwrap_or(usize::MAX),
            signing: options.signing,
            suffix_ranges: options.suffix_ranges,
            #[cfg(feature = "local")]
            local_files: options.local_files,
            multipart: options.multipart,
            uploads: options.uploads,
        }
    }

    fn path(&self, key: &ObjectKey) -> Result<Path> {
        Path::parse(self.codec.encode(key.as_str()))
            .map_err(|e| Error::invalid_input(format!("object key `{key}` is not storable: {e}")))
    }

    /// A local get in one blocking task; `None` where object_store should answer (not a
    /// local store, or anything but a plain read: missing, a folder, a bad range).
    #[cfg(feature = "local")]
    async fn get_local(
        &self,
        key: &ObjectKey,
        path: &Path,
        range: Option<&GetRange>,
        whole_up_to: u64,
    ) -> Result<Option<GetResult>> {
        let Some(files) = &self.local_files else {
            return Ok(None);
        };
        let (Ok(file), Ok(side)) = (
            files.path_to_filesystem(path),
            self.sidecar_path(key).and_then(|p| {
                files
                    .path_to_filesystem(&p)
                    .map_err(|e| self.map_err(key, e))
            }),
        ) else {
            return Ok(None);
        };
        let (location, range) = (path.clone(), range.cloned());
        let read = move || local_read::read(location, file, &side, range.as_ref(), whole_up_to);
        let read = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(read)
                .await
                .map_err(|e| Error::backend(self.backend, e))?,
            Err(_) => read(),
        };
        let Some(read) = read else {
            return Ok(None);
        };
        let meta = self.sidecar_meta(key, &read.meta, read.sidecar.as_deref());
        let body = match read.body {
            local_read::LocalBody::Read(bytes) if bytes.is_empty() => {
                futures::stream::empty().boxed()
            }
            local_read::LocalBody::Read(bytes) => {
                futures::stream::once(async move { Ok(bytes) }).boxed()
            }
            local_read::LocalBody::File(file, at) => body_stream(
                object_store::GetResult {
                    payload: object_store::GetResultPayload::File(file, at),
                    meta: read.meta,
                    range: read.range.clone(),
                    attributes: Attributes::default(),
                    extensions: Default::default(),
                },
                self.backend,
                key.clone(),
            ),
        };
        Ok(Some(GetResult {
            meta,
            range: read.range,
            body,
        }))
    }

    /// A get whose local file is read in the first blocking task when the range is at most
    /// `whole_up_to` bytes (streamed in pieces otherwise).
    async fn get_with(
        &self,
        key: &ObjectKey,
        opts: GetOptions,
        whole_up_to: u64,
    ) -> Result<GetResult> {
        let range = opts.range.map(|r| match r {
            ByteRange::Bounded(r) => GetRange::Bounded(r),
            ByteRange::From(o) => GetRange::Offset(o),
            ByteRange::Suffix(n) => GetRange::Suffix(n),
        });
        if let Some(range) = &range {
            errors::check_range(key, range)?;
        }
        let path = self.path(key)?;
        let range = match range {
            Some(GetRange::Suffix(n)) if !self.suffix_ranges => {
                let size = self
                    .store
                    .head(&path)
                    .await
                    .map_err(|e| self.map_err(key, e))?
                    .size;
                if size == 0 || n == 0 {
                    return Err(Error::invalid_input(format!(
                        "object `{key}` is {size} bytes long: it has no last {n} bytes to read"
                    )));
                }
                Some(GetRange::Bounded(size.saturating_sub(n)..size))
            }
            other => other,
        };
        #[cfg(feature = "local")]
        if let Some(result) = self
            .get_local(key, &path, range.as_ref(), whole_up_to)
            .await?
        {
            return Ok(result);
        }
        #[cfg(not(feature = "local"))]
        let _ = whole_up_to;
        let result = match self
            .store
            .get_opts(
                &path,
                object_store::GetOptions {
                    range: range.clone(),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(result) => result,
            Err(e) => {
                return Err(match &range {
                    Some(range) => {
                        errors::range_error(self.store.as_ref(), self.backend, key, &path, range, e)
                            .await
                    }
                    None => self.map_err(key, e),
                });
            }
        };
        let meta = self.to_meta(key, &result.meta, &result.attributes).await?;
        let range = result.range.clone();
        let body = body_stream(result, self.backend, key.clone());
        Ok(GetResult { meta, range, body })
    }

    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        ObjectKey::parse(self.codec.decode(path)?).ok()
    }

    fn map_err(&self, key: &ObjectKey, e: object_store::Error) -> Error {
        errors::map_os_err(self.backend, key, e)
    }

    fn os_put_options(&self, opts: &PutOptions) -> OsPutOptions {
        OsPutOptions {
            mode: match opts.mode {
                PutMode::Overwrite => OsPutMode::Overwrite,
                PutMode::Create => OsPutMode::Create,
            },
            attributes: self.attributes(opts),
            ..Default::default()
        }
    }

    async fn multipart(
        &self,
        key: &ObjectKey,
        first: Bytes,
        mut rest: ByteStream,
        opts: &PutOptions,
    ) -> Result<PutResult> {
        let p = self.path(key)?;
        let upload = self
            .store
            .put_multipart_opts(
                &p,
                PutMultipartOptions {
                    attributes: self.attributes(opts),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.map_err(key, e))?;
        let part = self.multipart_threshold.max(MIN_PART);
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
        let mut size = first.len() as u64;
        writer.write(&first);
        let fed: Result<()> = async {
            while let Some(chunk) = rest.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(|e| self.map_err(key, e))?;
                writer.write(&chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = fed {
            let _ = writer.abort().await;
            return Err(e);
        }
        let done = writer.finish().await.map_err(|e| self.map_err(key, e))?;
        self.write_sidecar(key, opts, done.e_tag.clone(), size)
            .await?;
        Ok(PutResult {
            etag: done.e_tag,
            size,
        })
    }

    async fn exists_raw(&self, key: &ObjectKey) -> Result<bool> {
        match self.store.head(&self.path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.map_err(key, e)),
        }
    }
}

#[async_trait]
impl Storage for ObjectStoreStorage {
    fn backend(&self) -> &str {
        self.backend
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn url_signing(&self) -> UrlSigning {
        self.signing.kind()
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let size = payload.len() as u64;
        let result = self
            .store
            .put_opts(
                &self.path(key)?,
                PutPayload::from(payload),
                self.os_put_options(&opts),
            )
            .await
            .map_err(|e| self.map_err(key, e))?;
        self.write_sidecar(key, &opts, result.e_tag.clone(), size)
            .await?;
        Ok(PutResult {
            etag: result.e_tag,
            size,
        })
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: ByteStream,
        opts: PutOptions,
    ) -> Result<PutResult> {
        // Buffer up to the threshold: small uploads are one request, large ones go in parts.
        let mut buffer = BytesMut::new();
        while buffer.len() <= self.multipart_threshold {
            match body.next().await {
                Some(chunk) => buffer.extend_from_slice(&chunk?),
                None => return self.put_opts(key, buffer.freeze(), opts).await,
            }
        }
        if opts.mode == PutMode::Create && self.exists_raw(key).await? {
            return Err(Error::already_exists(format!("object `{key}`")));
        }
        if let Some(store) = &self.multipart {
            let done = self
                .recorded_multipart(store, key, buffer.freeze(), body, &opts)
                .await?;
            self.write_sidecar(key, &opts, done.etag.clone(), done.size)
                .await?;
            return Ok(done);
        }
        self.multipart(key, buffer.freeze(), body, &opts).await
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        self.get_with(key, opts, LOCAL_READ_AT_ONCE).await
    }

    async fn get_bytes_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<Bytes> {
        // All of it is wanted in memory: a local file is read in one go, into one buffer.
        self.get_with(key, opts, u64::MAX).await?.bytes().await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let p = self.path(key)?;
        if self.attribute_store == AttributeStore::Native {
            let result = self
                .store
                .get_opts(
                    &p,
                    object_store::GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.map_err(key, e))?;
            self.to_meta(key, &result.meta, &result.attributes).await
        } else {
            let meta = self
                .store
                .head(&p)
                .await
                .map_err(|e| self.map_err(key, e))?;
            self.to_meta(key, &meta, &Attributes::new()).await
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<bool> {
        if !self.exists_raw(key).await? {
            return Ok(false);
        }
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.map_err(key, e)),
        }
        self.delete_sidecar(key).await?;
        Ok(true)
    }

    async fn list(&self, opts: ListOptions) -> Result<ListPage> {
        self.list_page(opts).await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let source_meta = if self.attribute_store == AttributeStore::Native {
            None
        } else {
            Some(self.head(from).await?)
        };
        self.store
            .copy(&self.path(from)?, &self.path(to)?)
            .await
            .map_err(|e| self.map_err(from, e))?;
        if let Some(meta) = source_meta {
            let copied = self
                .store
                .head(&self.path(to)?)
                .await
                .map_err(|e| self.map_err(to, e))?;
            let opts = PutOptions {
                content_type: meta.content_type,
                content_disposition: meta.content_disposition,
                metadata: meta.metadata,
                mode: PutMode::Overwrite,
            };
            self.write_sidecar(to, &opts, copied.e_tag, copied.size)
                .await?;
        }
        Ok(())
    }

    async fn signed_url(&self, key: &ObjectKey, opts: SignedUrlOptions) -> Result<SignedUrl> {
        self.signing.sign(self.backend, key, opts).await
    }

    async fn sweep(&self, older_than: std::time::Duration) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        if let Some(store) = &self.multipart {
            // Bounded: a few pages per sweep; the next sweep goes on.
            for _ in 0..SWEEP_PAGES {
                let old = self
                    .uploads
                    .started_before(&self.location, cutoff, SWEEP_PAGE)
                    .await?;
                for upload in &old {
                    match parts::sweep_one(store.as_ref(), self.uploads.as_ref(), upload).await {
                        Ok(true) => report.aborted_uploads += 1,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(
                                upload_id = %upload.upload_id,
                                path = %upload.path,
                                "could not abort a multipart upload left by an interrupted write"
                            );
                            return Err(errors::map_store_err(self.backend, e));
                        }
                    }
                }
                if old.len() < SWEEP_PAGE {
                    break;
                }
            }
        }
        #[cfg(feature = "local")]
        if let Layout::LocalFiles { root } = &self.layout {
            report.removed_files += staging::sweep(root.clone(), older_than)
                .await
                .map_err(|e| Error::backend(self.backend, e))?;
        }
        Ok(report)
    }

    async fn health(&self) -> Result<()> {
        let probe = Path::parse(
            self.codec
                .encode(&format!("{RESERVED_PREFIX}probe/{}", std::process::id())),
        )
        .map_err(|e| Error::backend(self.backend.to_owned(), e))?;
        let fail = |what: &str, e: object_store::Error| {
            Error::unavailable_from(
                format!(
                    "{} storage at {}: {what} failed; check the `[storage]` settings and that \
                     the backend is running",
                    self.backend, self.location
                ),
                e,
            )
        };
        self.store
            .put(&probe, PutPayload::from_static(b"probe"))
            .await
            .map_err(|e| fail("writing a probe object", e))?;
        let body = self
            .store
            .get(&probe)
            .await
            .map_err(|e| fail("reading the probe object", e))?
            .bytes()
            .await
            .map_err(|e| fail("reading the probe object", e))?;
        self.store
            .delete(&probe)
            .await
            .map_err(|e| fail("deleting the probe object", e))?;
        if &body[..] != b"probe" {
            return Err(Error::unavailable(format!(
                "{} storage at {} returned other bytes than were written",
                self.backend, self.location
            )));
        }
        Ok(())
    }
}
