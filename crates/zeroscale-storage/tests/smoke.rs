//! Smoke tests of the real storage engines: write, read, delete through the probe. The S3
//! server comes from `cargo xtask services up`; without it the test skips locally and fails
//! in CI.

use zeroscale_core::config::{LocalStorageConfig, MemoryStorageConfig, StorageConfig};

#[tokio::test]
async fn memory_probe() {
    let config = StorageConfig::Memory(MemoryStorageConfig::default());
    assert_eq!(zeroscale_storage::probe(&config).await.unwrap(), "memory");
}

#[cfg(feature = "local")]
#[tokio::test]
async fn local_probe_creates_a_private_root() {
    let root = std::env::temp_dir().join(format!("zs-storage-smoke-{}", std::process::id()));
    let config = StorageConfig::Local(LocalStorageConfig {
        root: Some(root.join("blobs")),
        ..Default::default()
    });
    zeroscale_storage::probe(&config).await.expect("probe");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("blobs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    std::fs::remove_dir_all(root).ok();
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_probe_against_the_test_server() {
    use zeroscale_core::config::S3StorageConfig;
    use zeroscale_core::testing::require_service;
    let Some(endpoint) = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server") else {
        return;
    };
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").expect("bucket");
    let config = StorageConfig::S3(S3StorageConfig {
        bucket,
        endpoint: Some(endpoint.clone()),
        allow_http: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        prefix: Some("smoke".into()),
        ..Default::default()
    });
    let location = zeroscale_storage::probe(&config).await.expect("probe");
    assert!(location.starts_with(&endpoint), "{location}");
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
    let err = zeroscale_storage::probe(&config)
        .await
        .expect_err("http not allowed");
    assert!(err.to_string().contains("allow_http"), "{err}");
}
