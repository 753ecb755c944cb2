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
