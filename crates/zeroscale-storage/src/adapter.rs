//! `ObjectStoreStorage`: core's `Storage` over any object_store client (memory, local
//! files, S3, R2).
//!
//! Content type and user metadata are object_store attributes where the backend stores
//! them (memory, S3); local files cannot, so a JSON sidecar under the reserved
//! `.zeroscale/meta/` prefix holds them, tagged with the object's etag so a stale sidecar
//! (from a crash between the two writes) is ignored rather than misreported.
//!
//! Local files also cannot hold both a file `a` and a folder `a/` (keys `a` and `a/b`), and
//! object_store reserves file names ending in `#<digits>`; so on local disks every key is
//! encoded ([`Codec::Local`]): in each segment `#` becomes `##` and `%` becomes `#p`, and
//! `#f` ends each file name. Read as escape pairs, a folder name never holds `#f` and a
//! file name always ends with it: they never clash, and any valid key can be stored.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetRange, ObjectStore, ObjectStoreExt,
    PutMode as OsPutMode, PutMultipartOptions, PutOptions as OsPutOptions, PutPayload,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};
use zeroscale_core::storage::{
    ByteRange, ByteStream, GetOptions, GetResult, ListOptions, ListPage, ObjectKey, ObjectMeta,
    PutMode, PutOptions, PutResult, RESERVED_PREFIX, SignedUrl, SignedUrlOptions, Storage,
};
use zeroscale_core::{Error, Result};

use crate::signed::UrlSigner;

/// Default and largest listing page.
const DEFAULT_PAGE: usize = 1000;
/// Parts of a multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// S3's smallest part.
const MIN_PART: usize = 5 * 1024 * 1024;

/// How signed URLs are made.
#[derive(Clone)]
pub enum Signing {
    /// The backend presigns (S3, R2); `prefix` is prepended to keys.
    #[cfg(feature = "s3")]
    Native {
        /// The presigner.
        signer: Arc<dyn object_store::signer::Signer>,
        /// The bucket prefix keys live under.
        prefix: Option<String>,
    },
    /// URLs to the app's `/files/…` route, signed with HMAC-SHA256.
    App(Arc<UrlSigner>),
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "s3")]
            Signing::Native { prefix, .. } => {
                f.debug_struct("Native").field("prefix", prefix).finish()
            }
            Signing::App(_) => f.write_str("App"),
        }
    }
}

/// How keys map to object_store paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The key is the path (memory, S3).
    Raw,
    /// The local-disk encoding described in the module docs.
    Local,
}

/// `#` → `##`, `%` → `#p` (so no `%` reaches the disk, where it could be read back as an
/// escape).
fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '#' => out.push_str("##"),
            '%' => out.push_str("#p"),
            other => out.push(other),
        }
    }
    out
}

/// Undoes [`escape_segment`]; `None` for any other use of `#` (not one of ours).
fn unescape_segment(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        if c == '#' {
            match chars.next() {
                Some('#') => out.push('#'),
                Some('p') => out.push('%'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Codec {
    /// The object_store path string for a key-like string.
    fn encode(self, key: &str) -> String {
        match self {
            Codec::Raw => key.to_owned(),
            Codec::Local => {
                let segments: Vec<String> = key.split('/').map(escape_segment).collect();
                format!("{}#f", segments.join("/"))
            }
        }
    }

    /// The folder path string for a folder-like prefix (`a/b`).
    fn encode_folder(self, folder: &str) -> String {
        match self {
            Codec::Raw => folder.to_owned(),
            Codec::Local => folder
                .split('/')
                .map(escape_segment)
                .collect::<Vec<_>>()
                .join("/"),
        }
    }

    /// The key a listed path stands for; `None` for files that are not objects.
    fn decode(self, path: &Path) -> Option<String> {
        match self {
            Codec::Raw => Some(path.as_ref().to_owned()),
            Codec::Local => {
                let parts: Vec<String> = path
                    .parts()
                    .map(|p| percent_decode(p.as_ref()))
                    .collect::<Option<_>>()?;
                let (last, dirs) = parts.split_last()?;
                let mut segments = dirs
                    .iter()
                    .map(|d| unescape_segment(d))
                    .collect::<Option<Vec<_>>>()?;
                let name = last.strip_suffix("#f")?;
                segments.push(unescape_segment(name)?);
                Some(segments.join("/"))
            }
        }
    }
}

/// Storage over an object_store client.
pub struct ObjectStoreStorage {
    codec: Codec,
    backend: &'static str,
    location: String,
    store: Arc<dyn ObjectStore>,
    native_attributes: bool,
    multipart_threshold: usize,
    signing: Signing,
}

impl fmt::Debug for ObjectStoreStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreStorage")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .field("native_attributes", &self.native_attributes)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("signing", &self.signing)
            .finish()
    }
}

/// What the local sidecar keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sidecar {
    etag: Option<String>,
    size: u64,
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_disposition: Option<String>,
    metadata: std::collections::BTreeMap<String, String>,
}

impl ObjectStoreStorage {
    /// Wraps `store`. `native_attributes`: whether it stores content type and metadata
    /// itself (false for local files). `multipart_threshold`: streamed uploads above it go
    /// in parts of that size (at least 5 MiB).
    pub fn new(
        backend: &'static str,
        location: String,
        store: Arc<dyn ObjectStore>,
        native_attributes: bool,
        multipart_threshold: u64,
        signing: Signing,
    ) -> Self {
        ObjectStoreStorage {
            // Local files are the backend that cannot store attributes.
            codec: if native_attributes {
                Codec::Raw
            } else {
                Codec::Local
            },
            backend,
            location,
            store,
            native_attributes,
            multipart_threshold: usize::try_from(multipart_threshold).unwrap_or(usize::MAX),
            signing,
        }
    }

    /// How this storage signs URLs.
    pub fn signing(&self) -> &Signing {
        &self.signing
    }

    /// Where the storage is (no secrets).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &ObjectKey) -> Result<Path> {
        Path::parse(self.codec.encode(key.as_str()))
            .map_err(|e| Error::invalid_input(format!("object key `{key}` is not storable: {e}")))
    }

    fn sidecar_path(&self, key: &ObjectKey) -> Result<Path> {
        Path::parse(
            self.codec
                .encode(&format!("{RESERVED_PREFIX}meta/{}.json", key.as_str())),
        )
        .map_err(|e| Error::invalid_input(format!("object key `{key}` is not storable: {e}")))
    }

    fn key_of(&self, path: &Path) -> Option<ObjectKey> {
        ObjectKey::parse(self.codec.decode(path)?).ok()
    }

    fn map_err(&self, key: &ObjectKey, e: object_store::Error) -> Error {
        map_os_err(self.backend, key, e)
    }

    fn attributes(&self, opts: &PutOptions) -> Attributes {
        let mut attributes = Attributes::new();
        if !self.native_attributes {
            return attributes;
        }
        if let Some(ct) = &opts.content_type {
            attributes.insert(Attribute::ContentType, AttributeValue::from(ct.clone()));
        }
        if let Some(cd) = &opts.content_disposition {
            attributes.insert(
                Attribute::ContentDisposition,
                AttributeValue::from(cd.clone()),
            );
        }
        for (k, v) in &opts.metadata {
            attributes.insert(
                Attribute::Metadata(k.clone().into()),
                AttributeValue::from(v.clone()),
            );
        }
        attributes
    }

    async fn write_sidecar(
        &self,
        key: &ObjectKey,
        opts: &PutOptions,
        etag: Option<String>,
        size: u64,
    ) -> Result<()> {
        if self.native_attributes {
            return Ok(());
        }
        let side = self.sidecar_path(key)?;
        if opts.content_type.is_none()
            && opts.content_disposition.is_none()
            && opts.metadata.is_empty()
        {
            match self.store.delete(&side).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(self.map_err(key, e)),
            }
        }
        let body = serde_json::to_vec(&Sidecar {
            etag,
            size,
            content_type: opts.content_type.clone(),
            content_disposition: opts.content_disposition.clone(),
            metadata: opts.metadata.clone(),
        })
        .map_err(|e| Error::backend(self.backend, e))?;
        self.store
            .put(&side, PutPayload::from(body))
            .await
            .map_err(|e| self.map_err(key, e))?;
        Ok(())
    }

    async fn read_sidecar(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
    ) -> Result<Option<Sidecar>> {
        let side = self.sidecar_path(key)?;
        let body = match self.store.get(&side).await {
            Ok(r) => r.bytes().await.map_err(|e| self.map_err(key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.map_err(key, e)),
        };
        let sidecar: Sidecar = match serde_json::from_slice(&body) {
            Ok(s) => s,
            Err(_) => return Ok(None),
        };
        // A sidecar written for another version of the object is stale.
        if sidecar.etag != meta.e_tag || sidecar.size != meta.size {
            return Ok(None);
        }
        Ok(Some(sidecar))
    }

    async fn to_meta(
        &self,
        key: &ObjectKey,
        meta: &object_store::ObjectMeta,
        attributes: &Attributes,
    ) -> Result<ObjectMeta> {
        let mut out = ObjectMeta {
            key: key.clone(),
            size: meta.size,
            etag: meta.e_tag.clone(),
            last_modified: meta.last_modified,
            content_type: None,
            content_disposition: None,
            metadata: Default::default(),
        };
        if self.native_attributes {
            for (attribute, value) in attributes {
                match attribute {
                    Attribute::ContentType => out.content_type = Some(value.as_ref().to_owned()),
                    Attribute::ContentDisposition => {
                        out.content_disposition = Some(value.as_ref().to_owned());
                    }
                    Attribute::Metadata(name) => {
                        out.metadata
                            .insert(name.to_string(), value.as_ref().to_owned());
                    }
                    _ => {}
                }
            }
        } else if let Some(side) = self.read_sidecar(key, meta).await? {
            out.content_type = side.content_type;
            out.content_disposition = side.content_disposition;
            out.metadata = side.metadata;
        }
        Ok(out)
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

/// Maps object_store's errors to core's kinds.
pub(crate) fn map_os_err(backend: &str, key: &ObjectKey, e: object_store::Error) -> Error {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Error::not_found(format!("object `{key}`")),
        E::AlreadyExists { .. } => Error::already_exists(format!("object `{key}`")),
        E::Precondition { .. } => Error::conflict(format!("object `{key}` changed meanwhile")),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            Error::not_supported(e.to_string(), backend)
        }
        E::InvalidPath { .. } => Error::invalid_input(format!("object key `{key}`: {e}")),
        other => {
            let text = other.to_string();
            if text.contains("Range") || text.contains("range") {
                Error::invalid_input(format!("object `{key}`: {text}"))
            } else {
                Error::backend(backend.to_owned(), other)
            }
        }
    }
}

#[async_trait]
impl Storage for ObjectStoreStorage {
    fn backend(&self) -> &str {
        self.backend
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
        self.multipart(key, buffer.freeze(), body, &opts).await
    }

    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult> {
        let range = opts.range.map(|r| match r {
            ByteRange::Bounded(r) => GetRange::Bounded(r),
            ByteRange::From(o) => GetRange::Offset(o),
            ByteRange::Suffix(n) => GetRange::Suffix(n),
        });
        let result = self
            .store
            .get_opts(
                &self.path(key)?,
                object_store::GetOptions {
                    range,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.map_err(key, e))?;
        let meta = self.to_meta(key, &result.meta, &result.attributes).await?;
        let range = result.range.clone();
        let backend = self.backend;
        let k = key.clone();
        let body = result
            .into_stream()
            .map_err(move |e| map_os_err(backend, &k, e))
            .boxed();
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let p = self.path(key)?;
        if self.native_attributes {
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
        if !self.native_attributes {
            match self.store.delete(&self.sidecar_path(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.map_err(key, e)),
            }
        }
        Ok(true)
    }

    async fn list(&self, opts: ListOptions) -> Result<ListPage> {
        let page_size = opts
            .page_size
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, DEFAULT_PAGE);
        let prefix = opts.prefix.unwrap_or_default();
        // object_store lists by whole path segments: list the folder that holds the string
        // prefix and filter.
        let folder_path = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => Some(
                Path::parse(self.codec.encode_folder(dir))
                    .map_err(|e| Error::invalid_input(format!("list prefix `{prefix}`: {e}")))?,
            ),
            _ => None,
        };
        let token = opts.page_token.clone();
        // Raw paths list in key order and can start after the token; encoded ones cannot.
        let stream = match (&token, self.codec) {
            (Some(after), Codec::Raw) => {
                let offset =
                    Path::parse(after).map_err(|_| Error::invalid_input("invalid page token"))?;
                self.store.list_with_offset(folder_path.as_ref(), &offset)
            }
            _ => self.store.list(folder_path.as_ref()),
        };
        let metas: Vec<object_store::ObjectMeta> = stream
            .try_collect()
            .await
            .map_err(|e| Error::backend(self.backend.to_owned(), e))?;
        let mut objects: Vec<ObjectMeta> = metas
            .iter()
            .filter_map(|m| {
                let key = self.key_of(&m.location)?;
                let name = key.as_str();
                let keep =
                    name.starts_with(prefix.as_str()) && token.as_deref().is_none_or(|t| name > t);
                keep.then(|| ObjectMeta {
                    key,
                    size: m.size,
                    etag: m.e_tag.clone(),
                    last_modified: m.last_modified,
                    content_type: None,
                    content_disposition: None,
                    metadata: Default::default(),
                })
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let more = objects.len() > page_size;
        objects.truncate(page_size);
        let next_page_token = if more {
            objects.last().map(|m| m.key.as_str().to_owned())
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next_page_token,
        })
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()> {
        let source_meta = if self.native_attributes {
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
        if opts.expires_in.is_zero() || opts.expires_in > Duration::from_secs(7 * 24 * 3600) {
            return Err(Error::invalid_input(
                "signed URL expiry must be between 1 second and 7 days",
            ));
        }
        let expires_at = Utc::now()
            + chrono::Duration::from_std(opts.expires_in)
                .map_err(|_| Error::invalid_input("expiry too long"))?;
        let url = match &self.signing {
            #[cfg(feature = "s3")]
            Signing::Native { signer, prefix } => {
                let full = match prefix.as_deref().filter(|p| !p.is_empty()) {
                    Some(p) => format!("{}/{}", p.trim_end_matches('/'), key.as_str()),
                    None => key.as_str().to_owned(),
                };
                let method = match opts.method {
                    zeroscale_core::storage::SignedMethod::Get => http::Method::GET,
                    zeroscale_core::storage::SignedMethod::Put => http::Method::PUT,
                };
                let p = Path::parse(&full)
                    .map_err(|e| Error::invalid_input(format!("object key `{key}`: {e}")))?;
                signer
                    .signed_url(method, &p, opts.expires_in)
                    .await
                    .map_err(|e| self.map_err(key, e))?
                    .to_string()
            }
            Signing::App(signer) => signer.sign(opts.method, key, expires_at.timestamp()),
        };
        Ok(SignedUrl {
            url,
            method: opts.method,
            expires_at,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_codec_separates_files_from_folders() {
        let c = Codec::Local;
        assert_eq!(c.encode("a"), "a#f");
        assert_eq!(c.encode("a/b"), "a/b#f");
        assert_eq!(c.encode("x#1"), "x##1#f");
        assert_eq!(c.encode("50%/off"), "50#p/off#f");
        assert_eq!(c.encode_folder("a#f"), "a##f");
        assert_ne!(c.encode("a#"), c.encode_folder("a#f"));
        for key in [
            "a",
            "a/b",
            "x#1",
            "a##b/c#",
            "ü/🙂 x#f",
            "#",
            "percent%20sign",
            "%23",
        ] {
            let path = Path::parse(c.encode(key)).unwrap();
            assert_eq!(c.decode(&path).as_deref(), Some(key), "{key}");
        }
        assert_eq!(c.decode(&Path::parse("tmp#1").unwrap()), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%23b%25").as_deref(), Some("a#b%"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
