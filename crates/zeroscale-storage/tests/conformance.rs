//! The storage conformance suite against every backend: memory, local files, and the S3
//! server from `cargo xtask services up`; signed URLs fetched with a real HTTP client.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use zeroscale_core::Storage;
use zeroscale_core::config::{LocalStorageConfig, MemoryStorageConfig, StorageConfig};
use zeroscale_core::conformance::storage::{self, Fetch, SignedUrlChecks};
use zeroscale_core::storage::SignedMethod;
use zeroscale_storage::{ObjectStoreStorage, Signing, StorageContext};

struct Reqwest(reqwest::Client);

#[async_trait]
impl Fetch for Reqwest {
    async fn fetch(&self, method: SignedMethod, url: &str, body: Option<Bytes>) -> (u16, Bytes) {
        let request = match method {
            SignedMethod::Get => self.0.get(url),
            SignedMethod::Put => self.0.put(url).body(body.unwrap_or_default()),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("fetch {url}: {e}"));
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap_or_default())
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("zs-conformance-{name}-{}", std::process::id()))
}

/// Serves the app's `/files` route for `storage` on a free port; returns its base URL
/// and a storage whose signed URLs point there.
async fn serve_files(
    make: impl FnOnce(String) -> Arc<ObjectStoreStorage>,
) -> Arc<ObjectStoreStorage> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store = make(base);
    let Signing::App(signer) = store.signing().clone() else {
        panic!("memory and local storage sign for the app");
    };
    let router = zeroscale_storage::http::files_router(
        store.clone() as Arc<dyn Storage>,
        signer,
        None,
        zeroscale_core::download::DownloadPolicy::default(),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    store
}

async fn suite(store: Arc<ObjectStoreStorage>, prefix: &str, checks: SignedUrlChecks) {
    storage::run_all(store.as_ref(), prefix).await;
    storage::signed_urls(
        store.as_ref(),
        prefix,
        &Reqwest(reqwest::Client::new()),
        checks,
    )
    .await;
    store.health().await.expect("health");
}

const APP_CHECKS: SignedUrlChecks = SignedUrlChecks {
    tamper: true,
    expiry: true,
    hides_key: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let dir = temp("memory");
    let store = serve_files(|base| {
        let ctx = StorageContext {
            data_dir: dir.clone(),
            public_url: base,
        };
        zeroscale_storage::connect(&StorageConfig::Memory(MemoryStorageConfig::default()), &ctx)
            .unwrap()
    })
    .await;
    suite(store, "conformance", APP_CHECKS).await;
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local() {
    let dir = temp("local");
    let root = dir.join("blobs");
    let store = serve_files(|base| {
        let ctx = StorageContext {
            data_dir: dir.clone(),
            public_url: base,
        };
        let config = StorageConfig::Local(LocalStorageConfig {
            root: Some(root.clone()),
            multipart_threshold_bytes: 5 * 1024 * 1024,
            ..Default::default()
        });
        zeroscale_storage::connect(&config, &ctx).unwrap()
    })
    .await;
    suite(store, "conformance", APP_CHECKS).await;
    // Nothing but zeroscale's own folder is left behind, and no temporary files.
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".zeroscale" && n != "conformance")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3() {
    use zeroscale_core::config::S3StorageConfig;
    use zeroscale_core::testing::require_service;
    let Some(endpoint) = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server") else {
        return;
    };
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").unwrap();
    let config = StorageConfig::S3(S3StorageConfig {
        bucket,
        endpoint: Some(endpoint),
        allow_http: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        prefix: Some(format!("run-{}", std::process::id())),
        ..Default::default()
    });
    let ctx = StorageContext {
        data_dir: temp("s3"),
        public_url: "http://127.0.0.1:1".into(),
    };
    let store = zeroscale_storage::connect(&config, &ctx).unwrap();
    assert_eq!(store.backend(), "s3");
    // The test S3 server (moto) verifies neither presigned signatures nor their expiry, so
    // only "works before expiry" is shown here; S3 and R2 enforce both themselves.
    suite(
        store,
        "conformance",
        SignedUrlChecks {
            tamper: false,
            expiry: false,
            // Presigned URLs name the key (documented in docs/storage.md).
            hides_key: false,
        },
    )
    .await;
}

/// A signed PUT to the app's `/files` route over the configured size is refused with 413,
/// whether the length is declared up front or only seen while streaming, and the object
/// stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_put_respects_the_size_limit() {
    use zeroscale_core::storage::{ObjectKey, SignedMethod, SignedUrlOptions};
    let dir = temp("put-limit");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ctx = StorageContext {
        data_dir: dir.clone(),
        public_url: base,
    };
    let store =
        zeroscale_storage::connect(&StorageConfig::Memory(MemoryStorageConfig::default()), &ctx)
            .unwrap();
    let Signing::App(signer) = store.signing().clone() else {
        panic!("memory storage signs for the app");
    };
    let router = zeroscale_storage::http::files_router(
        store.clone() as Arc<dyn Storage>,
        signer,
        Some(1000),
        zeroscale_core::download::DownloadPolicy::default(),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let key = ObjectKey::parse("limits/upload.bin").unwrap();
    let url = store
        .signed_url(
            &key,
            SignedUrlOptions {
                method: SignedMethod::Put,
                expires_in: std::time::Duration::from_secs(60),
            },
        )
        .await
        .unwrap()
        .url;
    let client = reqwest::Client::new();
    let ok = client.put(&url).body(vec![1u8; 1000]).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let declared = client.put(&url).body(vec![1u8; 1001]).send().await.unwrap();
    assert_eq!(declared.status(), 413);
    // No Content-Length: a chunked body, caught while streaming.
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![2u8; 400]))),
    );
    let streamed = client
        .put(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    use zeroscale_core::StorageExt as _;
    let kept = store.get_bytes(&key).await.unwrap();
    assert_eq!(
        kept.as_ref(),
        &[1u8; 1000][..],
        "the refused uploads changed nothing"
    );
    std::fs::remove_dir_all(dir).ok();
}
