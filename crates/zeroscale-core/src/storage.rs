//! The object storage interface: validated keys, metadata, the small `Storage` driver trait
//! that backends implement, and `StorageExt` conveniences on top of it.
//!
//! Keys are validated once, when an [`ObjectKey`] is built, so no backend re-checks them and
//! every backend accepts exactly the same keys.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Keys under this prefix are zeroscale's own (metadata sidecars, probes): refused for
/// users and left out of listings.
pub const RESERVED_PREFIX: &str = ".zeroscale/";

/// A stream of bytes, for streaming uploads and downloads.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// A validated object key: `a/b/c.txt`, no leading `/`, no `.` or `..` segment, no empty
/// segment, no `\`, no control characters, not under [`RESERVED_PREFIX`], not empty, at
/// most [`MAX_KEY_BYTES`] bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `key` against the key rules; the error names the rule that was broken.
    pub fn parse(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate_key(&key)?;
        Ok(ObjectKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate_key(key: &str) -> Result<()> {
    let rule = |rule: &str| {
        Err(Error::invalid_input(format!(
            "object key {key:?} is not allowed: {rule}"
        )))
    };
    if key.is_empty() {
        return rule("keys must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return rule(&format!(
            "keys must be at most {MAX_KEY_BYTES} bytes (this one is {})",
            key.len()
        ));
    }
    if key.starts_with('/') {
        return rule("keys must not start with `/`");
    }
    if key.contains('\\') {
        return rule("keys must not contain `\\` (use `/` to separate segments)");
    }
    if key.chars().any(char::is_control) {
        return rule("keys must not contain control characters");
    }
    if key.split('/').any(|segment| segment == "..") {
        return rule("keys must not contain a `..` segment");
    }
    if key.split('/').any(|segment| segment == ".") {
        return rule("keys must not contain a `.` segment");
    }
    if key.starts_with(RESERVED_PREFIX) || key == RESERVED_PREFIX.trim_end_matches('/') {
        return rule("keys under `.zeroscale/` are reserved for zeroscale's own files");
    }
    if key.contains("//") || key.ends_with('/') {
        return rule("keys must not contain empty segments (`//` or a trailing `/`)");
    }
    Ok(())
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        ObjectKey::parse(value)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        ObjectKey::parse(value)
    }
}

/// What a backend knows about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// The backend's entity tag, when it has one.
    pub etag: Option<String>,
    /// When the object was last written.
    pub last_modified: DateTime<Utc>,
    /// The content type given at upload, if any.
    pub content_type: Option<String>,
    /// The content disposition given at upload, if any.
    pub content_disposition: Option<String>,
    /// User metadata given at upload.
    pub metadata: BTreeMap<String, String>,
}

/// Whether a put may replace an existing object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Replace any existing object (the default).
    #[default]
    Overwrite,
    /// Fail with [`Error::AlreadyExists`] if the key exists.
    Create,
}

/// Options for a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Stored with the object and returned by head and get.
    pub content_type: Option<String>,
    /// The `Content-Disposition` to answer downloads with (see
    /// [`crate::download::DownloadPolicy`]); S3 and R2 keep it as the object's attribute,
    /// so presigned URLs get it from the bucket.
    pub content_disposition: Option<String>,
    /// User metadata stored with the object.
    pub metadata: BTreeMap<String, String>,
    /// Overwrite or create-only.
    pub mode: PutMode,
}

impl PutOptions {
    /// Options with a content type.
    pub fn with_content_type(content_type: impl Into<String>) -> Self {
        PutOptions {
            content_type: Some(content_type.into()),
            ..Default::default()
        }
    }
}

/// What a put wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The new object's entity tag, when the backend gives one.
    pub etag: Option<String>,
    /// Bytes written.
    pub size: u64,
}

/// A byte range to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end` (end exclusive).
    Bounded(Range<u64>),
    /// From `offset` to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

/// Options for a get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Read only these bytes; the whole object when `None`.
    pub range: Option<ByteRange>,
}

/// An object being read: its metadata, the range being returned and the body stream.
pub struct GetResult {
    /// The whole object's metadata.
    pub meta: ObjectMeta,
    /// Which bytes of the object `body` yields.
    pub range: Range<u64>,
    /// The bytes.
    pub body: ByteStream,
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl GetResult {
    /// Collects the body into one buffer.
    ///
    /// A body of one chunk is returned as it is; a longer one is copied, as each chunk
    /// arrives, into one buffer sized for the whole range.
    pub async fn bytes(mut self) -> Result<Bytes> {
        /// Preallocate at most this much on the range's word.
        const MAX_HINT: u64 = 256 * 1024 * 1024;
        let Some(first) = self.body.try_next().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.body.try_next().await? else {
            return Ok(first);
        };
        let expected = (self.range.end.saturating_sub(self.range.start)).min(MAX_HINT);
        let expected = usize::try_from(expected).unwrap_or(0);
        let mut out = Vec::with_capacity(expected.max(first.len() + second.len()));
        out.extend_from_slice(&first);
        out.extend_from_slice(&second);
        while let Some(chunk) = self.body.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.into())
    }
}

/// Options for listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that start with this string (a plain string prefix, not a path).
    pub prefix: Option<String>,
    /// At most this many objects per page; the backend's default when `None`.
    pub page_size: Option<usize>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One page of a listing, in ascending key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Objects on this page.
    pub objects: Vec<ObjectMeta>,
    /// Pass this as `page_token` to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The HTTP method a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SignedMethod {
    /// Download.
    Get,
    /// Upload.
    Put,
}

impl SignedMethod {
    /// The HTTP method name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedMethod::Get => "GET",
            SignedMethod::Put => "PUT",
        }
    }
}

/// Options for a signed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrlOptions {
    /// What the URL allows.
    pub method: SignedMethod,
    /// How long the URL stays valid.
    pub expires_in: Duration,
}

/// A URL that allows one method on one key until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    /// The URL.
    pub url: String,
    /// The method it allows.
    pub method: SignedMethod,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Who answers a storage's signed URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlSigning {
    /// The backend itself (S3 and R2 presigned URLs): clients talk to it directly.
    Backend,
    /// The app's `/files/<token>` route, which must be served for the URLs to work
    /// (memory, local files, Azure): the token is encrypted and authenticated by the app,
    /// so it neither shows the key nor can be changed.
    App,
}

/// The object storage driver interface: what a backend implements.
///
/// Keep this small; conveniences belong in [`StorageExt`]. Keys arrive validated.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// The backend's name (`memory`, `local`, `s3`, `r2`), for logs and errors.
    fn backend(&self) -> &str;

    /// Where the storage is, for reports and logs (a folder, `endpoint/bucket`; never a
    /// credential).
    fn location(&self) -> &str;

    /// Who answers this storage's signed URLs: when it is [`UrlSigning::App`], the app
    /// must serve the `/files/…` route.
    fn url_signing(&self) -> UrlSigning;

    /// Stores `payload` at `key`.
    async fn put_opts(
        &self,
        key: &ObjectKey,
        payload: Bytes,
        opts: PutOptions,
    ) -> Result<PutResult>;

    /// Stores the bytes of `body` at `key` without holding the whole object in memory.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PutResult>;

    /// Reads an object, or a range of it.
    async fn get_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<GetResult>;

    /// Reads an object, or a range of it, into memory. What [`StorageExt::get_bytes`]
    /// and [`StorageExt::get_range`] call. Backends that read a whole object faster than
    /// they stream it override this (a local file: one read into one buffer, where a
    /// stream reads it in pieces); the default collects [`get_opts`](Storage::get_opts)'s
    /// body.
    async fn get_bytes_opts(&self, key: &ObjectKey, opts: GetOptions) -> Result<Bytes> {
        self.get_opts(key, opts).await?.bytes().await
    }

    /// Reads an object's metadata.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;

    /// Deletes an object; `Ok(true)` if it existed, `Ok(false)` if it did not.
    async fn delete(&self, key: &ObjectKey) -> Result<bool>;

    /// Lists objects in ascending key order, one page at a time.
    async fn list(&self, opts: ListOptions) -> Result<ListPage>;

    /// Copies `from` to `to` with its content type and metadata, replacing `to`.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<()>;

    /// A URL that allows `opts.method` on `key` until it expires.
    async fn signed_url(&self, key: &ObjectKey, opts: SignedUrlOptions) -> Result<SignedUrl>;

    /// Checks that the backend is reachable and usable (for `/readyz` and `doctor`).
    async fn health(&self) -> Result<()>;

    /// Removes what writes interrupted more than `older_than` ago left behind: aborts the
    /// multipart uploads its [`UploadLog`](crate::uploads::UploadLog) still records, and
    /// deletes a local folder's partly written files. Objects are never touched. Safe to
    /// run from several processes at once; `older_than` must be longer than any upload
    /// takes, or a slow upload in flight is cut off. The default removes nothing (a
    /// backend whose writes leave nothing behind).
    async fn sweep(&self, older_than: Duration) -> Result<crate::uploads::SweepReport> {
        let _ = older_than;
        Ok(crate::uploads::SweepReport::default())
    }
}

/// The storage interface as shared in the app.
pub type DynStorage = dyn Storage;

/// Conveniences on every [`Storage`]; backends must not implement this.
#[async_trait]
pub trait StorageExt: Storage {
    /// Stores `payload` at `key` with default options.
    async fn put(&self, key: &ObjectKey, payload: impl Into<Bytes> + Send) -> Result<PutResult> {
        self.put_opts(key, payload.into(), PutOptions::default())
            .await
    }

    /// Reads a whole object into memory.
    async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes> {
        self.get_bytes_opts(key, GetOptions::default()).await
    }

    /// Reads `range` of an object into memory.
    async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        let opts = GetOptions {
            range: Some(ByteRange::Bounded(range)),
        };
        self.get_bytes_opts(key, opts).await
    }

    /// Stores `value` as JSON (content type `application/json`).
    async fn put_json<T: Serialize + Sync>(&self, key: &ObjectKey, value: &T) -> Result<PutResult> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::invalid_input(format!("value is not serializable: {e}")))?;
        self.put_opts(
            key,
            body.into(),
            PutOptions::with_content_type("application/json"),
        )
        .await
    }

    /// Reads a JSON object.
    async fn get_json<T: DeserializeOwned>(&self, key: &ObjectKey) -> Result<T> {
        let body = self.get_bytes(key).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::invalid_input(format!("object `{key}` is not the expected JSON: {e}"))
        })
    }

    /// Whether an object exists.
    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix`, following pagination.
    async fn list_all(&self, prefix: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list(ListOptions {
                    prefix: prefix.map(str::to_owned),
                    page_size: None,
                    page_token: token,
                })
                .await?;
            out.extend(page.objects);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<T: Storage + ?Sized> StorageExt for T {}

/// A [`ByteStream`] of one buffer, e.g. to feed `put_stream` from memory.
pub fn stream_once(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_of(chunks: &[&'static [u8]], range: Range<u64>) -> GetResult {
        let chunks: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        GetResult {
            meta: ObjectMeta {
                key: ObjectKey::parse("k").unwrap(),
                size: range.end,
                etag: None,
                last_modified: DateTime::<Utc>::UNIX_EPOCH,
                content_type: None,
                content_disposition: None,
                metadata: BTreeMap::new(),
            },
            range,
            body: futures::stream::iter(chunks).boxed(),
        }
    }

    #[tokio::test]
    async fn bytes_joins_the_chunks_in_order() {
        let one = result_of(&[b"abc"], 0..3).bytes().await.unwrap();
        assert_eq!(&one[..], b"abc");
        let many = result_of(&[b"ab", b"cd", b"", b"efg"], 0..7);
        assert_eq!(&many.bytes().await.unwrap()[..], b"abcdefg");
        assert!(result_of(&[], 0..0).bytes().await.unwrap().is_empty());
        // A range that understates the body still gives all of it.
        let more = result_of(&[b"ab", b"cd", b"ef"], 0..2);
        assert_eq!(&more.bytes().await.unwrap()[..], b"abcdef");
        // A failing chunk fails the whole read.
        let failing = GetResult {
            body: futures::stream::iter(vec![
                Ok(Bytes::from_static(b"ab")),
                Ok(Bytes::from_static(b"cd")),
                Err(Error::unavailable("connection reset")),
            ])
            .boxed(),
            ..result_of(&[], 0..6)
        };
        assert!(failing.bytes().await.is_err());
    }

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "a/b/c.txt",
            "with space/ünïcødé/🙂.png",
            "dots.in.names/..hidden",
            "a-b_c~d",
        ] {
            ObjectKey::parse(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        }
        ObjectKey::parse("x".repeat(MAX_KEY_BYTES)).unwrap();
    }

    #[test]
    fn rejects_bad_keys_naming_the_rule() {
        let cases = [
            ("", "empty"),
            ("/abs", "start with `/`"),
            ("a/../b", "`..` segment"),
            ("..", "`..` segment"),
            ("a\\b", "`\\`"),
            ("a\nb", "control characters"),
            ("a\u{7f}b", "control characters"),
            ("a//b", "empty segments"),
            ("a/", "empty segments"),
            ("./a", "`.` segment"),
            (".zeroscale/meta/x", "reserved"),
        ];
        for (key, rule) in cases {
            let err = ObjectKey::parse(key).expect_err(key);
            assert!(matches!(err, Error::InvalidInput { .. }), "{key:?}: {err}");
            assert!(err.to_string().contains(rule), "{key:?}: {err}");
        }
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        let err = ObjectKey::parse(long).unwrap_err();
        assert!(err.to_string().contains("at most 1024 bytes"), "{err}");
    }
}
