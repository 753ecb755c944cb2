//! The storage conformance suite: what every [`Storage`] backend must do.

use bytes::Bytes;

use crate::error::Error;
use crate::storage::{ObjectKey, PutOptions, Storage, StorageExt};

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).expect("test keys are valid")
}

/// Runs every check against `store`, with keys under `prefix` (so suites can share a bucket).
pub async fn run_all(store: &dyn Storage, prefix: &str) {
    round_trip(store, prefix).await;
    not_found(store, prefix).await;
    overwrite(store, prefix).await;
    delete_is_idempotent(store, prefix).await;
}

/// put → get → head → delete returns what was stored.
pub async fn round_trip(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/round-trip/hello.txt"));
    let opts = PutOptions::with_content_type("text/plain");
    let put = store
        .put_opts(&k, Bytes::from_static(b"hello"), opts)
        .await
        .unwrap_or_else(|e| panic!("{backend}: put failed: {e}"));
    assert_eq!(put.size, 5, "{backend}: put reported the wrong size");
    let body = store.get_bytes(&k).await.expect("get");
    assert_eq!(&body[..], b"hello", "{backend}: get returned other bytes");
    let meta = store.head(&k).await.expect("head");
    assert_eq!(meta.size, 5, "{backend}: head reported the wrong size");
    assert_eq!(meta.key, k, "{backend}: head reported another key");
    assert!(
        store.delete(&k).await.expect("delete"),
        "{backend}: delete said it was missing"
    );
}

/// Reading a missing key is `NotFound`, for get and head alike.
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
}

/// A second put replaces the first.
pub async fn overwrite(store: &dyn Storage, prefix: &str) {
    let backend = store.backend().to_owned();
    let k = key(&format!("{prefix}/overwrite/x"));
    store
        .put(&k, Bytes::from_static(b"first"))
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
