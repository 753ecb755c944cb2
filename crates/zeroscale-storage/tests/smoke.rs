//! Config-level checks of the storage backends: probes, private folders, config errors,
//! and the cleanup after interrupted uploads.

use std::sync::Arc;

use zeroscale_core::config::{LocalStorageConfig, MemoryStorageConfig, StorageConfig};
use zeroscale_storage::StorageContext;

fn ctx(name: &str) -> StorageContext {
    StorageContext::new(
        std::env::temp_dir().join(format!("zs-storage-{name}-{}", std::process::id())),
        "http://127.0.0.1:1",
    )
}

#[tokio::test]
async fn memory_probe() {
    let config = StorageConfig::Memory(MemoryStorageConfig::default());
    assert_eq!(
        zeroscale_storage::probe(&config, &ctx("mem"))
            .await
            .unwrap(),
        "memory"
    );
}

#[cfg(feature = "local")]
#[tokio::test]
async fn local_probe_creates_a_private_root() {
    let c = ctx("local");
    let config = StorageConfig::Local(LocalStorageConfig {
        root: Some(c.data_dir.join("blobs")),
        ..Default::default()
    });
    zeroscale_storage::probe(&config, &c).await.expect("probe");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.data_dir.join("blobs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    std::fs::remove_dir_all(c.data_dir).ok();
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_http_endpoint_needs_allow_http() {
    use zeroscale_core::config::S3StorageConfig;
    let config = StorageConfig::S3(S3StorageConfig {
        bucket: "b".into(),
        endpoint: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    });
    let err = zeroscale_storage::probe(&config, &ctx("s3"))
        .await
        .expect_err("http not allowed");
    assert!(err.to_string().contains("allow_http"), "{err}");
    let config = StorageConfig::S3(S3StorageConfig::default());
    let err = zeroscale_storage::probe(&config, &ctx("s3"))
        .await
        .expect_err("no bucket");
    assert!(err.to_string().contains("storage.bucket"), "{err}");
}

/// A whole-object GET (one trip to the store) carries the same headers as a HEAD and a
/// ranged GET, and its length is the bytes sent.
#[tokio::test]
async fn a_whole_download_says_what_a_head_says() {
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use zeroscale_core::download::DownloadPolicy;
    use zeroscale_core::storage::{ObjectKey, PutOptions};
    use zeroscale_storage::http::object_response;

    let mut configs = vec![StorageConfig::Memory(MemoryStorageConfig::default())];
    #[cfg(feature = "local")]
    configs.push(StorageConfig::Local(LocalStorageConfig {
        root: Some(ctx("whole").data_dir.join("blobs")),
        ..Default::default()
    }));
    for config in configs {
        let store = zeroscale_storage::connect(&config, &ctx("whole")).unwrap();
        let key = ObjectKey::parse("files/u1/report").unwrap();
        let bytes = vec![7u8; 70_000];
        store
            .put_opts(
                &key,
                bytes.clone().into(),
                PutOptions {
                    content_type: Some("text/html".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let policy = DownloadPolicy::default();
        let none = HeaderMap::new();
        let head = object_response(store.as_ref(), &key, &none, true, &policy)
            .await
            .unwrap();
        let whole = object_response(store.as_ref(), &key, &none, false, &policy)
            .await
            .unwrap();
        let mut ranged_request = HeaderMap::new();
        ranged_request.insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
        let ranged = object_response(store.as_ref(), &key, &ranged_request, false, &policy)
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(whole.status(), StatusCode::OK);
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_DISPOSITION,
            header::CONTENT_LENGTH,
            header::ETAG,
            header::LAST_MODIFIED,
            header::X_CONTENT_TYPE_OPTIONS,
            header::CONTENT_SECURITY_POLICY,
            header::ACCEPT_RANGES,
        ] {
            let h = head.headers().get(&name);
            assert!(h.is_some(), "{config:?}: HEAD has no {name}");
            assert_eq!(h, whole.headers().get(&name), "{config:?}: {name}");
            assert_eq!(h, ranged.headers().get(&name), "{config:?}: {name}");
        }
        assert_eq!(whole.headers()[header::CONTENT_LENGTH], "70000");
        assert_eq!(
            whole.headers()[header::CONTENT_DISPOSITION],
            "attachment",
            "{config:?}: HTML is never inline"
        );
        let body = axum::body::to_bytes(whole.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body.as_ref(), bytes.as_slice());
    }
}

/// A store nobody answers is *unavailable* (503, retry later), not an internal error,
/// and says so within seconds (a bounded retry), for writes, reads and listings.
#[cfg(feature = "s3")]
#[tokio::test]
async fn an_unreachable_store_is_unavailable_within_seconds() {
    use zeroscale_core::ErrorKind;
    use zeroscale_core::config::S3StorageConfig;
    use zeroscale_core::storage::{ListOptions, ObjectKey};

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = StorageConfig::S3(S3StorageConfig {
        bucket: "b".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        allow_http: true,
        access_key_id: Some("test".to_owned().into()),
        secret_access_key: Some("test".to_owned().into()),
        ..Default::default()
    });
    let store = zeroscale_storage::connect(&config, &ctx("unreachable")).unwrap();
    let key = ObjectKey::parse("files/u1/x").unwrap();
    let started = std::time::Instant::now();
    let errors = [
        store
            .put_opts(&key, b"hi".to_vec().into(), Default::default())
            .await
            .map(|_| ()),
        store.head(&key).await.map(|_| ()),
        store.list(ListOptions::default()).await.map(|_| ()),
    ];
    for e in errors {
        let e = e.expect_err("nobody answers");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.chain());
        assert!(e.is_retriable(), "{}", e.chain());
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A body of `parts` 6 MiB chunks that then never ends (a client that stopped sending).
fn stalled_body(parts: usize) -> zeroscale_core::storage::ByteStream {
    use futures::StreamExt;
    let chunk = bytes::Bytes::from(vec![7u8; 6 * 1024 * 1024]);
    futures::stream::iter((0..parts).map(move |_| Ok(chunk.clone())))
        .chain(futures::stream::pending())
        .boxed()
}

async fn recorded(log: &zeroscale_storage::MemoryUploadLog, store: &str) -> usize {
    use zeroscale_core::uploads::UploadLog;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    log.started_before(store, later, 100).await.unwrap().len()
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Multipart uploads in flight on the S3 server under `prefix` (moto answers unsigned
/// requests).
#[cfg(feature = "s3")]
async fn s3_uploads_in_flight(endpoint: &str, bucket: &str, prefix: &str) -> usize {
    let body = reqwest::get(format!("{endpoint}/{bucket}?uploads&prefix={prefix}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.matches("<UploadId>").count()
}

/// An upload cut off by a crash (its runtime gone, so nothing aborts it) stays recorded;
/// a sweep leaves it while it is young and aborts it once old enough. An upload whose
/// request is dropped is aborted at once.
async fn interrupted_uploads_are_cleaned_up(
    connect: impl Fn(Arc<zeroscale_storage::MemoryUploadLog>) -> Arc<dyn zeroscale_core::Storage>,
    in_flight: impl AsyncFn() -> Option<usize>,
) {
    use zeroscale_core::storage::ObjectKey;
    let log = Arc::new(zeroscale_storage::MemoryUploadLog::new());
    let store = connect(log.clone());
    let location = store.location().to_owned();

    // The crash: a runtime of its own, shut down mid-upload.
    let crashed = store.clone();
    let thread_log = log.clone();
    let thread_location = location.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let key = ObjectKey::parse("files/u1/crashed").unwrap();
            let _ = crashed
                .put_stream(&key, stalled_body(3), Default::default())
                .await;
        });
        runtime.block_on(async {
            wait_for("the upload to be recorded", async || {
                recorded(&thread_log, &thread_location).await == 1
            })
            .await;
            // Let its first part land.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        });
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
    assert_eq!(
        recorded(&log, &location).await,
        1,
        "a crash leaves the record"
    );
    assert_ne!(in_flight().await, Some(0), "and the upload");

    // A fresh process's sweep.
    let store = connect(log.clone());
    let young = store
        .sweep(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(young.is_empty(), "too young to sweep: {young:?}");
    assert_ne!(in_flight().await, Some(0));
    let swept = store.sweep(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(swept.aborted_uploads, 1, "{swept:?}");
    assert_eq!(recorded(&log, &location).await, 0);
    assert_eq!(in_flight().await.unwrap_or(0), 0, "the upload was aborted");
    assert_eq!(
        store
            .sweep(std::time::Duration::ZERO)
            .await
            .unwrap()
            .aborted_uploads,
        0
    );

    // A request dropped midway (its client went away).
    let dropped = store.clone();
    let upload = tokio::spawn(async move {
        let key = ObjectKey::parse("files/u1/dropped").unwrap();
        let _ = dropped
            .put_stream(&key, stalled_body(3), Default::default())
            .await;
    });
    wait_for("the upload to be recorded", async || {
        recorded(&log, &location).await == 1
    })
    .await;
    upload.abort();
    wait_for("the dropped upload to be aborted", async || {
        recorded(&log, &location).await == 0 && in_flight().await.unwrap_or(0) == 0
    })
    .await;
    let listed = store.list(Default::default()).await.unwrap();
    assert!(
        listed
            .objects
            .iter()
            .all(|o| !o.key.as_str().starts_with("files/u1/")),
        "no interrupted upload became an object: {:?}",
        listed.objects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_uploads_memory() {
    // One store for the "crashed" process and the next: memory is gone with its process,
    // so its uploads in flight are only visible through the log and the sweep's count.
    let store: std::sync::OnceLock<Arc<dyn zeroscale_core::Storage>> = Default::default();
    interrupted_uploads_are_cleaned_up(
        |log| {
            store
                .get_or_init(|| {
                    zeroscale_storage::connect(
                        &StorageConfig::Memory(Default::default()),
                        &ctx("interrupted").with_upload_log(log),
                    )
                    .unwrap()
                })
                .clone()
        },
        // Counted by the log alone.
        async || None,
    )
    .await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_uploads_s3() {
    use zeroscale_core::config::S3StorageConfig;
    use zeroscale_core::testing::require_service;
    let Some(endpoint) = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server") else {
        return;
    };
    let Some(bucket) = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server") else {
        return;
    };
    let prefix = format!("interrupted-{}", std::process::id());
    let config = StorageConfig::S3(S3StorageConfig {
        bucket: bucket.clone(),
        endpoint: Some(endpoint.clone()),
        allow_http: true,
        access_key_id: Some("test".to_owned().into()),
        secret_access_key: Some("test".to_owned().into()),
        prefix: Some(prefix.clone()),
        ..Default::default()
    });
    interrupted_uploads_are_cleaned_up(
        |log| {
            zeroscale_storage::connect(&config, &ctx("interrupted-s3").with_upload_log(log))
                .unwrap()
        },
        async || Some(s3_uploads_in_flight(&endpoint, &bucket, &prefix).await),
    )
    .await;
}
