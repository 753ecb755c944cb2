//! `zeroscale storage sync` round trip: local → S3 → local, resumable, dry run, with
//! content type and metadata kept.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use zeroscale_core::config::{LocalStorageConfig, StorageConfig};
use zeroscale_core::storage::{ObjectKey, PutOptions, StorageExt};
use zeroscale_core::testing::require_service;
use zeroscale_storage::StorageContext;

fn sync(dir: &Path, from: &Path, to: &Path, extra: &[&str]) -> String {
    let out = common::zeroscale(dir)
        .args(["storage", "sync", "--from"])
        .arg(from)
        .arg("--to")
        .arg(to)
        .args(extra)
        .output()
        .expect("run zeroscale");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sync failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn local(dir: &Path, root: &Path) -> std::sync::Arc<dyn zeroscale_core::Storage> {
    let config = StorageConfig::Local(LocalStorageConfig {
        root: Some(root.to_path_buf()),
        ..Default::default()
    });
    let ctx = StorageContext::new(dir.join("data"), "http://127.0.0.1:1");
    zeroscale_storage::connect(&config, &ctx).unwrap()
}

fn objects() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "avatars/u1/me.png",
            vec![0x89, b'P', b'N', b'G', 1, 2, 3],
            "image/png",
        ),
        (
            "docs/report 2026.pdf",
            b"%PDF-1.7 fake".to_vec(),
            "application/pdf",
        ),
        (
            "docs/ünïcødé.txt",
            "héllo".as_bytes().to_vec(),
            "text/plain",
        ),
        ("a", b"file a".to_vec(), "text/plain"),
        ("a/b", b"file a/b".to_vec(), "text/plain"),
        (
            "big.bin",
            (0..3_000_000u32).map(|i| (i % 251) as u8).collect(),
            "application/octet-stream",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_to_s3_to_local() {
    let Some(endpoint) = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server") else {
        return;
    };
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("zs-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (root_a, root_b) = (dir.join("a"), dir.join("b"));

    let a = local(&dir, &root_a);
    for (key, body, content_type) in objects() {
        let mut opts = PutOptions::with_content_type(content_type);
        opts.metadata.insert("owner".into(), "u1".into());
        a.put_opts(&ObjectKey::parse(key).unwrap(), Bytes::from(body), opts)
            .await
            .unwrap();
    }

    let local_a = dir.join("a.toml");
    let local_b = dir.join("b.toml");
    let s3 = dir.join("s3.toml");
    std::fs::write(
        &local_a,
        format!("[storage]\nkind = \"local\"\nroot = {:?}\n", root_a),
    )
    .unwrap();
    std::fs::write(
        &local_b,
        format!("[storage]\nkind = \"local\"\nroot = {:?}\n", root_b),
    )
    .unwrap();
    std::fs::write(
        &s3,
        format!(
            "[storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\n\
             allow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n\
             prefix = \"sync-{}\"\n",
            std::process::id()
        ),
    )
    .unwrap();

    let out = sync(&dir, &local_a, &s3, &[]);
    assert!(out.contains("copied 6 object(s)"), "{out}");
    assert!(out.contains("skipped 0"), "{out}");
    let out = sync(&dir, &local_a, &s3, &[]);
    assert!(
        out.contains("copied 0 object(s)") && out.contains("skipped 6"),
        "resumable: {out}"
    );

    let out = sync(&dir, &s3, &local_b, &["--dry-run"]);
    assert!(out.contains("6 of 6 object(s) would be copied"), "{out}");
    assert!(out.contains("would copy docs/report 2026.pdf"), "{out}");
    assert!(
        !root_b.exists()
            || local(&dir, &root_b)
                .list_all(None)
                .await
                .unwrap()
                .is_empty()
    );

    let out = sync(&dir, &s3, &local_b, &["--concurrency", "3"]);
    assert!(out.contains("copied 6 object(s)"), "{out}");

    let b = local(&dir, &root_b);
    for (key, body, content_type) in objects() {
        let k = ObjectKey::parse(key).unwrap();
        assert_eq!(b.get_bytes(&k).await.unwrap(), Bytes::from(body), "{key}");
        let meta = b.head(&k).await.unwrap();
        assert_eq!(meta.content_type.as_deref(), Some(content_type), "{key}");
        assert_eq!(
            meta.metadata.get("owner").map(String::as_str),
            Some("u1"),
            "{key}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
