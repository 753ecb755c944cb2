//! The storage conformance suite against every backend, one test per check
//! (`cargo test --test conformance <backend>::<check>`): memory, local files, the S3 server
//! and Azurite from `cargo xtask services up`; signed URLs fetched with a real HTTP client.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use zeroscale_core::Storage;
use zeroscale_core::config::{LocalStorageConfig, MemoryStorageConfig, StorageConfig};
use zeroscale_core::conformance::storage::{Fetch, SignedUrlChecks};
use zeroscale_core::storage::SignedMethod;
use zeroscale_storage::StorageContext;

#[derive(Default)]
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

/// Connects `config`; when its URLs are app-signed, serves the app's `/files` route for it
/// on a free port first, so its signed URLs work.
async fn connect_serving_files(
    config: &StorageConfig,
    data_dir: std::path::PathBuf,
) -> Arc<dyn Storage> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctx = StorageContext::new(
        data_dir,
        format!("http://{}", listener.local_addr().unwrap()),
    );
    let store = zeroscale_storage::connect(config, &ctx).unwrap();
    if let Some(signer) = zeroscale_storage::app_signer(config, &ctx).unwrap() {
        let router = zeroscale_storage::http::files_router(
            store.clone(),
            signer,
            None,
            zeroscale_core::download::DownloadPolicy::default(),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    }
    store
}

const APP_CHECKS: SignedUrlChecks = SignedUrlChecks {
    tamper: true,
    expiry: true,
    hides_key: true,
};

async fn memory_store(check: &str) -> Option<Arc<dyn Storage>> {
    let config = StorageConfig::Memory(MemoryStorageConfig::default());
    Some(connect_serving_files(&config, temp(&format!("memory-{check}"))).await)
}

zeroscale_core::storage_conformance!(memory, memory_store, Reqwest::default(), APP_CHECKS);

#[cfg(feature = "local")]
fn local_config(root: std::path::PathBuf) -> StorageConfig {
    StorageConfig::Local(LocalStorageConfig {
        root: Some(root),
        multipart_threshold_bytes: 5 * 1024 * 1024,
        ..Default::default()
    })
}

#[cfg(feature = "local")]
async fn local_store(check: &str) -> Option<Arc<dyn Storage>> {
    let dir = temp(&format!("local-{check}"));
    let _ = std::fs::remove_dir_all(&dir);
    Some(connect_serving_files(&local_config(dir.join("blobs")), dir).await)
}

#[cfg(feature = "local")]
zeroscale_core::storage_conformance!(local, local_store, Reqwest::default(), APP_CHECKS);

/// Local storage leaves nothing but the objects and its own folder behind: no temporary
/// files from streamed or concurrent uploads.
#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_leaves_no_temporary_files() {
    use zeroscale_core::conformance::storage;
    let dir = temp("local-leftovers");
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("blobs");
    let store = connect_serving_files(&local_config(root.clone()), dir.clone()).await;
    storage::streamed_multipart_upload(store.as_ref(), "conformance").await;
    storage::concurrent_puts(store.as_ref(), "conformance").await;
    storage::metadata_round_trip(store.as_ref(), "conformance").await;
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
async fn s3_store(check: &str) -> Option<Arc<dyn Storage>> {
    use zeroscale_core::config::S3StorageConfig;
    use zeroscale_core::testing::require_service;
    let endpoint = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server")?;
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server")?;
    let config = StorageConfig::S3(S3StorageConfig {
        bucket,
        endpoint: Some(endpoint),
        allow_http: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        // A prefix per run and check: runs and checks never see each other's objects.
        prefix: Some(format!("run-{}-{check}", std::process::id())),
        ..Default::default()
    });
    let store = connect_serving_files(&config, temp("s3")).await;
    assert_eq!(store.backend(), "s3");
    Some(store)
}

// The test S3 server (moto) verifies neither presigned signatures nor their expiry, so
// only "works before expiry" is shown here; S3 and R2 enforce both themselves. Presigned
// URLs name the key (documented in docs/storage.md).
#[cfg(feature = "s3")]
zeroscale_core::storage_conformance!(
    s3,
    s3_store,
    Reqwest::default(),
    SignedUrlChecks {
        tamper: false,
        expiry: false,
        hides_key: false,
    }
);

#[cfg(feature = "azure")]
async fn azure_store(check: &str) -> Option<Arc<dyn Storage>> {
    use zeroscale_core::config::AzureStorageConfig;
    use zeroscale_core::testing::require_service;
    let endpoint = require_service("ZEROSCALE_TEST_AZURE_ENDPOINT", "Azurite")?;
    let account = require_service("ZEROSCALE_TEST_AZURE_ACCOUNT", "Azurite")?;
    let key = require_service("ZEROSCALE_TEST_AZURE_KEY", "Azurite")?;
    let container = require_service("ZEROSCALE_TEST_AZURE_CONTAINER", "Azurite")?;
    let config = StorageConfig::Azure(AzureStorageConfig {
        account,
        container,
        access_key: Some(key.into()),
        endpoint: Some(endpoint),
        allow_http: true,
        prefix: Some(format!("run-{}-{check}", std::process::id())),
        multipart_threshold_bytes: 5 * 1024 * 1024,
        ..Default::default()
    });
    let store = connect_serving_files(&config, temp("azure")).await;
    assert_eq!(store.backend(), "azure");
    Some(store)
}

// Azure's URLs are app-served, so they meet every signed-URL check.
#[cfg(feature = "azure")]
zeroscale_core::storage_conformance!(azure, azure_store, Reqwest::default(), APP_CHECKS);

/// A signed PUT to the app's `/files` route over the configured size is refused with 413,
/// whether the length is declared up front or only seen while streaming, and the object
/// stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_put_respects_the_size_limit() {
    use zeroscale_core::storage::{ObjectKey, SignedMethod, SignedUrlOptions};
    let dir = temp("put-limit");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ctx = StorageContext::new(dir.clone(), base);
    let config = StorageConfig::Memory(MemoryStorageConfig::default());
    let store = zeroscale_storage::connect(&config, &ctx).unwrap();
    let signer = zeroscale_storage::app_signer(&config, &ctx)
        .unwrap()
        .expect("memory storage signs for the app");
    let router = zeroscale_storage::http::files_router(
        store.clone(),
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
