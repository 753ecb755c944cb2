//! The storage conformance suite: what every [`Storage`] backend must do.
//!
//! Each check takes the store and a key prefix (so suites can share a bucket) and panics
//! with the backend's name and the broken guarantee. Signed-URL checks fetch the URLs with
//! a real HTTP client that the caller supplies ([`Fetch`]), so core stays free of HTTP
//! crates.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::error::Error;
use crate::storage::{
    ByteRange, ByteStream, GetOptions, ListOptions, ObjectKey, PutOptions, SignedMethod,
    SignedUrlOptions, Storage, StorageExt,
};

/// An HTTP client for the signed-URL checks.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// Sends `method` to `url` with `body` (for PUT); returns the status and body.
    async fn fetch(&self, method: SignedMethod, url: &str, body: Option<Bytes>) -> (u16, Bytes);
}

/// What a backend's signed URLs guarantee beyond working before expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUrlChecks {
    /// Whether the server verifies signatures: tampered URLs (key or signature changed)
    /// and a GET URL used for PUT are refused. True for the app-served URLs of memory and
    /// local storage; S3-compatible test servers often do not verify signatures.
    pub tamper: bool,
    /// Whether an expired URL is refused with 403.
    pub expiry: bool,
    /// Whether the URL hides the object key (an opaque token, as the app-served URLs
    /// are); presigned S3 URLs carry the key.
    pub hides_key: bool,
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap_or_else(|e| panic!("test key {s:?} is invalid: {e}"))
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(u32::from(seed)) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// One `#[tokio::test]` per check for one backend, in a module named after it, as Go
/// CDK's drivertest does with subtests: a failure names its check and the others still
/// run, and `cargo test <backend>::<check>` runs one alone.
///
/// `$make` is an async fn taking the check's name and returning
/// `Option<Arc<dyn Storage>>` (`None`: the engine is not running and this is not CI, so
/// the check is skipped, see [`require_service`](crate::testing::require_service)); it
/// gets a fresh store, or a fresh prefix of a shared one, per check. `$fetch` is the
/// [`Fetch`] for signed URLs and `$signed` the [`SignedUrlChecks`] the backend meets.
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
///
/// ```ignore
/// zeroscale_core::storage_conformance!(memory, make_memory, Reqwest::default(), APP_CHECKS);
/// ```
#[macro_export]
macro_rules! storage_conformance {
    ($backend:ident, $make:path, $fetch:expr, $signed:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::storage_conformance!(@checks $make;
                round_trip not_found overwrite delete_is_idempotent metadata_round_trip
                range_reads copy listing streamed_multipart_upload concurrent_puts
                empty_object);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn signed_urls() {
                let Some(store) = $make("signed_urls").await else {
                    return;
                };
                $crate::conformance::storage::signed_urls(
                    store.as_ref(),
                    "conformance/signed_urls",
                    &$fetch,
                    $signed,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn health() {
                let Some(store) = $make("health").await else {
                    return;
                };
                store.health().await.expect("health");
            }
        }
    };
    (@checks $make:path; $($check:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(store) = $make(stringify!($check)).await else {
                    return;
                };
                $crate::conformance::storage::$check(
                    store.as_ref(),
                    concat!("conformance/", stringify!($check)),
                )
                .await;
            }
        )*
    };
}

/// Runs every check except the signed-URL ones, one after the other (for a quick manual
/// run; backends' tests use [`storage_conformance!`](crate::storage_conformance), one test
/// per check).
pub async fn run_all(store: &dyn Storage, prefix: &str) {
    round_trip(store, prefix).await;
    not_found(store, prefix).await;
    overwrite(store, prefix).await;
    delete_is_idempotent(store, prefix).await;
    metadata_round_trip(store, prefix).await;
    range_reads(store, prefix).await;
    copy(store, prefix).await;
    listing(store, prefix).await;
    streamed_multipart_upload(store, prefix).await;
    concurrent_puts(store, prefix).await;
    empty_object(store, prefix).await;
}

/// put → get → head → delete returns what was stored.
pub async fn round_trip(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/round-trip/hello.txt"));
    let put = store
        .put_opts(&k, Bytes::from_static(b"hello"), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{backend}: put failed: {e}"));
    assert_eq!(put.size, 5, "{backend}: put reported the wrong size");
    let body = store.get_bytes(&k).await.expect("get");
    assert_eq!(&body[..], b"hello", "{backend}: get returned other bytes");
    let meta = store.head(&k).await.expect("head");
    assert_eq!(meta.size, 5, "{backend}: head reported the wrong size");
    assert_eq!(meta.key, k, "{backend}: head reported another key");
    let age = chrono::Utc::now() - meta.last_modified;
    assert!(
        age.num_seconds().abs() < 300,
        "{backend}: last_modified is {}",
        meta.last_modified
    );
    assert!(
        store.delete(&k).await.expect("delete"),
        "{backend}: delete said it was missing"
    );
    assert!(
        !store.exists(&k).await.expect("exists"),
        "{backend}: deleted object still there"
    );
}

/// Reading a missing key is `NotFound`, for get, head, range and copy alike.
pub async fn not_found(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/not-found/none"));
    let err = store.get_bytes(&k).await.expect_err("get of a missing key");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: get gave {err}"
    );
    let err = store.head(&k).await.expect_err("head of a missing key");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: head gave {err}"
    );
    let err = store
        .get_range(&k, 0..1)
        .await
        .expect_err("range of a missing key");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: range gave {err}"
    );
    let to = key(&format!("{prefix}/not-found/copy"));
    let err = store
        .copy(&k, &to)
        .await
        .expect_err("copy of a missing key");
    assert!(
        matches!(err, Error::NotFound { .. }),
        "{backend}: copy gave {err}"
    );
}

/// A second put replaces the first, content type and metadata included.
pub async fn overwrite(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/overwrite/x"));
    let mut first = PutOptions::with_content_type("text/plain");
    first.metadata.insert("version".into(), "1".into());
    store
        .put_opts(&k, Bytes::from_static(b"first"), first)
        .await
        .expect("put");
    store
        .put(&k, Bytes::from_static(b"second!"))
        .await
        .expect("put");
    let body = store.get_bytes(&k).await.expect("get");
    assert_eq!(
        &body[..],
        b"second!",
        "{backend}: overwrite kept the old bytes"
    );
    let meta = store.head(&k).await.expect("head");
    assert_eq!(meta.size, 7, "{backend}");
    assert!(
        meta.metadata.is_empty(),
        "{backend}: old metadata survived: {:?}",
        meta.metadata
    );
    store.delete(&k).await.expect("delete");
}

/// Deleting a missing key succeeds and says it was missing.
pub async fn delete_is_idempotent(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/delete/twice"));
    store.put(&k, Bytes::from_static(b"x")).await.expect("put");
    assert!(
        store.delete(&k).await.expect("delete"),
        "{backend}: first delete"
    );
    assert!(
        !store.delete(&k).await.expect("second delete"),
        "{backend}: second delete said it existed"
    );
}

/// Content type, content disposition and user metadata are stored and returned by head
/// and get.
pub async fn metadata_round_trip(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/metadata/report.json"));
    let mut opts = PutOptions::with_content_type("application/json");
    let disposition = "attachment; filename=\"r.json\"; filename*=UTF-8''r.json";
    opts.content_disposition = Some(disposition.to_owned());
    opts.metadata.insert("owner".into(), "user-42".into());
    opts.metadata.insert("source".into(), "upload".into());
    store
        .put_opts(&k, Bytes::from_static(b"{}"), opts.clone())
        .await
        .expect("put");
    let meta = store.head(&k).await.expect("head");
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/json"),
        "{backend}: head"
    );
    assert_eq!(meta.metadata, opts.metadata, "{backend}: head metadata");
    assert_eq!(
        meta.content_disposition.as_deref(),
        Some(disposition),
        "{backend}: head content disposition"
    );
    let got = store
        .get_opts(&k, GetOptions::default())
        .await
        .expect("get");
    assert_eq!(
        got.meta.content_type.as_deref(),
        Some("application/json"),
        "{backend}: get"
    );
    assert_eq!(got.meta.metadata, opts.metadata, "{backend}: get metadata");
    assert_eq!(
        got.meta.content_disposition.as_deref(),
        Some(disposition),
        "{backend}: get content disposition"
    );
    store.delete(&k).await.expect("delete");
}

/// Bounded, open-ended and suffix ranges return exactly those bytes.
pub async fn range_reads(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/range/data.bin"));
    let data = pattern(10_000, 7);
    store.put(&k, data.clone()).await.expect("put");
    let got = store
        .get_range(&k, 100..1_100)
        .await
        .expect("bounded range");
    assert_eq!(got, data.slice(100..1_100), "{backend}: bounded range");
    let from = store
        .get_opts(
            &k,
            GetOptions {
                range: Some(ByteRange::From(9_990)),
            },
        )
        .await
        .expect("from range");
    assert_eq!(from.range, 9_990..10_000, "{backend}: from range bounds");
    assert_eq!(
        from.bytes().await.unwrap(),
        data.slice(9_990..),
        "{backend}: from range"
    );
    let suffix = store
        .get_opts(
            &k,
            GetOptions {
                range: Some(ByteRange::Suffix(5)),
            },
        )
        .await
        .expect("suffix range");
    assert_eq!(suffix.range, 9_995..10_000, "{backend}: suffix bounds");
    assert_eq!(
        suffix.meta.size, 10_000,
        "{backend}: meta is the whole object's"
    );
    assert_eq!(
        suffix.bytes().await.unwrap(),
        data.slice(9_995..),
        "{backend}: suffix"
    );
    let err = store
        .get_range(&k, 20_000..20_010)
        .await
        .expect_err("past the end");
    assert!(
        matches!(err, Error::InvalidInput { .. }),
        "{backend}: past the end gave {err}"
    );
    store.delete(&k).await.expect("delete");
}

/// Copy duplicates bytes, content type and metadata; the source stays.
pub async fn copy(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let from = key(&format!("{prefix}/copy/from.txt"));
    let to = key(&format!("{prefix}/copy/to.txt"));
    let mut opts = PutOptions::with_content_type("text/plain");
    opts.metadata.insert("k".into(), "v".into());
    store
        .put_opts(&from, Bytes::from_static(b"copied"), opts)
        .await
        .expect("put");
    store
        .put(&to, Bytes::from_static(b"old"))
        .await
        .expect("put target");
    store.copy(&from, &to).await.expect("copy");
    assert_eq!(
        &store.get_bytes(&to).await.unwrap()[..],
        b"copied",
        "{backend}: copy bytes"
    );
    let meta = store.head(&to).await.unwrap();
    assert_eq!(
        meta.content_type.as_deref(),
        Some("text/plain"),
        "{backend}: copy type"
    );
    assert_eq!(
        meta.metadata.get("k").map(String::as_str),
        Some("v"),
        "{backend}: copy meta"
    );
    assert!(
        store.exists(&from).await.unwrap(),
        "{backend}: copy removed the source"
    );
    store.delete(&from).await.unwrap();
    store.delete(&to).await.unwrap();
}

/// Listing: string prefixes, ascending order, pagination, odd keys.
pub async fn listing(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let base = format!("{prefix}/list");
    let names = [
        "a",
        "a b",
        "a-b",
        "a/b",
        "a/b/c/d/e/f/deep.txt",
        "a0",
        "ab",
        "ünïcødé/ñ.txt",
        "emoji/🙂.png",
        "percent%20sign",
        "plus+and=equals&amp",
        "UPPER/lower",
    ];
    for name in names {
        store
            .put(
                &key(&format!("{base}/{name}")),
                Bytes::from(name.as_bytes().to_vec()),
            )
            .await
            .unwrap_or_else(|e| panic!("{backend}: put {name:?}: {e}"));
    }
    let all = store
        .list_all(Some(&format!("{base}/")))
        .await
        .expect("list");
    let listed: Vec<String> = all
        .iter()
        .map(|m| m.key.as_str()[base.len() + 1..].to_owned())
        .collect();
    let mut expected: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(
        listed, expected,
        "{backend}: listing is not every key in ascending order"
    );
    for meta in &all {
        let name = &meta.key.as_str()[base.len() + 1..];
        assert_eq!(meta.size, name.len() as u64, "{backend}: size of {name:?}");
    }

    // A string prefix, not a folder: `a` matches `a`, `a b`, `a-b`, `a/…`, `a0`, `ab`.
    let under_a = store.list_all(Some(&format!("{base}/a"))).await.unwrap();
    assert_eq!(
        under_a.len(),
        7,
        "{backend}: string prefix `a`: {under_a:?}"
    );
    let folder = store.list_all(Some(&format!("{base}/a/"))).await.unwrap();
    assert_eq!(folder.len(), 2, "{backend}: prefix `a/`");
    let none = store.list_all(Some(&format!("{base}/zzz"))).await.unwrap();
    assert!(
        none.is_empty(),
        "{backend}: unmatched prefix listed {none:?}"
    );

    // Pages of 5 cover everything once, in order.
    let mut paged = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(ListOptions {
                prefix: Some(format!("{base}/")),
                page_size: Some(5),
                page_token: token,
            })
            .await
            .expect("page");
        assert!(page.objects.len() <= 5, "{backend}: page larger than asked");
        pages += 1;
        paged.extend(page.objects.into_iter().map(|m| m.key));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 10, "{backend}: pagination does not end");
    }
    let paged: Vec<String> = paged
        .iter()
        .map(|k| k.as_str()[base.len() + 1..].to_owned())
        .collect();
    assert_eq!(paged, expected, "{backend}: paginated listing");
    assert_eq!(pages, 3, "{backend}: 12 keys in pages of 5");

    for name in names {
        store.delete(&key(&format!("{base}/{name}"))).await.unwrap();
    }
    assert!(
        store
            .list_all(Some(&format!("{base}/")))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A 20 MiB upload streamed in small chunks (multipart above the threshold) reads back
/// byte-identical, with its content type, streamed and into memory.
pub async fn streamed_multipart_upload(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/multipart/big.bin"));
    let total = 20 * 1024 * 1024;
    let chunk = 256 * 1024;
    let data = pattern(total, 3);
    let chunks: Vec<crate::Result<Bytes>> = (0..total)
        .step_by(chunk)
        .map(|at| Ok(data.slice(at..(at + chunk).min(total))))
        .collect();
    let body: ByteStream = futures::stream::iter(chunks).boxed();
    let put = store
        .put_stream(
            &k,
            body,
            PutOptions::with_content_type("application/octet-stream"),
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: streamed upload: {e}"));
    assert_eq!(put.size, total as u64, "{backend}: streamed size");
    let meta = store.head(&k).await.unwrap();
    assert_eq!(meta.size, total as u64, "{backend}: head size");
    assert_eq!(
        meta.content_type.as_deref(),
        Some("application/octet-stream"),
        "{backend}"
    );
    let got = store.get_opts(&k, GetOptions::default()).await.unwrap();
    let mut stream = got.body;
    let mut read = 0usize;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("download chunk");
        assert_eq!(
            piece,
            data.slice(read..read + piece.len()),
            "{backend}: bytes differ at {read}"
        );
        read += piece.len();
    }
    assert_eq!(read, total, "{backend}: streamed download length");
    // Read into memory in one step (`get_bytes_opts`: one read of a local file), whole
    // and a range larger than a streamed piece.
    let all = store.get_bytes(&k).await.unwrap();
    assert!(all == data, "{backend}: get_bytes of 20 MiB differs");
    let part = store
        .get_range(&k, 5 * 1024 * 1024..15 * 1024 * 1024 + 7)
        .await
        .unwrap();
    assert!(
        part == data.slice(5 * 1024 * 1024..15 * 1024 * 1024 + 7),
        "{backend}: a 10 MiB range differs"
    );
    store.delete(&k).await.unwrap();
}

/// 64 concurrent puts of distinct keys are all visible afterwards.
pub async fn concurrent_puts(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let base = format!("{prefix}/concurrent");
    let puts = (0..64).map(|i| {
        let k = key(&format!("{base}/{i:02}"));
        async move { store.put(&k, pattern(1_000 + i, i as u8)).await.map(|_| k) }
    });
    let keys: Vec<ObjectKey> = futures::future::join_all(puts)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{backend}: concurrent put: {e}")))
        .collect();
    let listed: BTreeSet<ObjectKey> = store
        .list_all(Some(&format!("{base}/")))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(
        listed,
        keys.iter().cloned().collect(),
        "{backend}: not every put is visible"
    );
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            store.get_bytes(k).await.unwrap(),
            pattern(1_000 + i, i as u8),
            "{backend}"
        );
        store.delete(k).await.unwrap();
    }
}

/// A zero-byte object round-trips.
pub async fn empty_object(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/empty/nothing"));
    store.put(&k, Bytes::new()).await.expect("put empty");
    assert_eq!(store.head(&k).await.unwrap().size, 0, "{backend}");
    assert!(store.get_bytes(&k).await.unwrap().is_empty(), "{backend}");
    store.delete(&k).await.unwrap();
}

fn tamper(url: &str, at: usize) -> String {
    let mut chars: Vec<char> = url.chars().collect();
    let c = chars[at];
    chars[at] = if c == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

/// Signed GET and PUT URLs work before expiry; after expiry (and, where the backend
/// verifies signatures, after any change to the key or signature) they are refused.
pub async fn signed_urls(
    store: &dyn Storage,
    prefix: &str,
    http: &dyn Fetch,
    checks: SignedUrlChecks,
) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/signed/file.txt"));
    store
        .put(&k, Bytes::from_static(b"signed content"))
        .await
        .expect("put");

    let get = store
        .signed_url(
            &k,
            SignedUrlOptions {
                method: SignedMethod::Get,
                expires_in: Duration::from_secs(300),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: signed GET URL: {e}"));
    assert_eq!(get.method, SignedMethod::Get);
    if checks.hides_key {
        for part in ["signed/file.txt", "signed%2Ffile.txt", prefix] {
            assert!(
                !get.url.contains(part),
                "{backend}: the signed URL shows the key: {}",
                get.url
            );
        }
    }
    let (status, body) = http.fetch(SignedMethod::Get, &get.url, None).await;
    assert_eq!(
        status,
        200,
        "{backend}: signed GET refused: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(&body[..], b"signed content", "{backend}: signed GET body");

    let put_key = key(&format!("{prefix}/signed/uploaded.txt"));
    let put = store
        .signed_url(
            &put_key,
            SignedUrlOptions {
                method: SignedMethod::Put,
                expires_in: Duration::from_secs(300),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: signed PUT URL: {e}"));
    let (status, body) = http
        .fetch(
            SignedMethod::Put,
            &put.url,
            Some(Bytes::from_static(b"via signed url")),
        )
        .await;
    assert!(
        status == 200 || status == 201 || status == 204,
        "{backend}: signed PUT refused ({status}): {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        &store.get_bytes(&put_key).await.unwrap()[..],
        b"via signed url",
        "{backend}"
    );

    if checks.tamper {
        // A GET URL does not allow PUT.
        let (status, _) = http
            .fetch(SignedMethod::Put, &get.url, Some(Bytes::from_static(b"x")))
            .await;
        assert!(
            status == 403 || status == 405,
            "{backend}: GET URL allowed a PUT ({status})"
        );
        assert_eq!(
            &store.get_bytes(&k).await.unwrap()[..],
            b"signed content",
            "{backend}"
        );

        // Change one character of the key (or, where the URL hides it, of the middle of
        // the URL), then one of the signature.
        let key_at = match get.url.find("signed/file.txt") {
            Some(at) => at + "signed/".len(),
            None => get.url.len() / 2,
        };
        let (status, _) = http
            .fetch(SignedMethod::Get, &tamper(&get.url, key_at), None)
            .await;
        assert_eq!(
            status, 403,
            "{backend}: URL with a changed key was accepted"
        );
        let sig_at = get.url.len() - 3;
        let (status, _) = http
            .fetch(SignedMethod::Get, &tamper(&get.url, sig_at), None)
            .await;
        assert_eq!(
            status, 403,
            "{backend}: URL with a changed signature was accepted"
        );
    }

    if checks.expiry {
        let short = store
            .signed_url(
                &k,
                SignedUrlOptions {
                    method: SignedMethod::Get,
                    expires_in: Duration::from_secs(1),
                },
            )
            .await
            .unwrap();
        tokio_sleep(Duration::from_millis(2_100)).await;
        let (status, _) = http.fetch(SignedMethod::Get, &short.url, None).await;
        assert_eq!(status, 403, "{backend}: expired URL was accepted");
    }
    store.delete(&k).await.unwrap();
    store.delete(&put_key).await.unwrap();
}

/// Sleeps without a runtime dependency in core: the caller's runtime drives the timer
/// through a helper thread.
async fn tokio_sleep(d: Duration) {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    let _ = rx.await;
}
