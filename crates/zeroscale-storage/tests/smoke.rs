//! Config-level checks of the storage backends: probes, private folders, config errors.

use zeroscale_core::config::{LocalStorageConfig, MemoryStorageConfig, StorageConfig};
use zeroscale_storage::StorageContext;

fn ctx(name: &str) -> StorageContext {
    StorageContext {
        data_dir: std::env::temp_dir().join(format!("zs-storage-{name}-{}", std::process::id())),
        public_url: "http://127.0.0.1:1".into(),
    }
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
