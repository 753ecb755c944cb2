//! Removing the object of an upload that was not acknowledged: a put can reach the store
//! and still fail from the server's view (the store's answer lost with its connection, a
//! request dropped mid-way), and then the client was told nothing or an error, while a
//! file it does not know of would show in its listing.

use std::sync::Arc;
use std::time::Duration;

use zeroscale_core::storage::ObjectKey;
use zeroscale_core::{Error, Storage};

/// First look, after the failed put settled on the store's side.
const FIRST_TRY: Duration = Duration::from_secs(1);
/// Longest wait between tries.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long a store that cannot be reached is retried before giving up (and logging the key).
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// Held while an upload's put runs on a fresh key: unless [`Guard::acknowledged`] is
/// called, dropping it (an error, or the request dropped) starts a background removal of
/// whatever the put left under the key.
pub(crate) struct Guard {
    storage: Arc<dyn Storage>,
    key: Option<ObjectKey>,
}

impl Guard {
    /// `key` must be new (no one else writes it): removing it removes only this upload.
    pub(crate) fn new(storage: Arc<dyn Storage>, key: ObjectKey) -> Guard {
        Guard {
            storage,
            key: Some(key),
        }
    }

    /// The upload was committed and its 201 decided: nothing to remove.
    pub(crate) fn acknowledged(mut self) {
        self.key = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(remove(self.storage.clone(), key, FIRST_TRY, GIVE_UP_AFTER));
        }
    }
}

/// Removes `key` if it exists, retrying while the store cannot be reached (doubling waits
/// from `first`, at most [`MAX_WAIT`]) for up to `give_up_after`.
async fn remove(
    storage: Arc<dyn Storage>,
    key: ObjectKey,
    first: Duration,
    give_up_after: Duration,
) {
    let started = tokio::time::Instant::now();
    let mut wait = first;
    loop {
        tokio::time::sleep(wait).await;
        let result = match storage.head(&key).await {
            Err(Error::NotFound { .. }) => return,
            Ok(_) => storage.delete(&key).await,
            Err(e) => Err(e),
        };
        match result {
            // Gone meanwhile: nothing was removed by us.
            Ok(false) => return,
            Ok(true) => {
                tracing::warn!(
                    key = %key,
                    "removed an uploaded object whose upload failed after the store had \
                     written it (its client got an error or no answer)"
                );
                return;
            }
            Err(e) if started.elapsed() + wait < give_up_after => {
                tracing::debug!(key = %key, error = %e, "will retry removing an unacknowledged upload");
            }
            Err(e) => {
                tracing::error!(
                    key = %key,
                    error = %e,
                    "could not remove the object of a failed upload; if it exists it shows \
                     in its owner's file list: delete it by hand"
                );
                return;
            }
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroscale_core::StorageExt;

    fn memory() -> Arc<dyn Storage> {
        zeroscale_storage::connect(
            &zeroscale_core::config::StorageConfig::Memory(Default::default()),
            &zeroscale_storage::StorageContext::new(std::env::temp_dir(), "http://127.0.0.1:1"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_unacknowledged_upload_is_removed_and_an_acknowledged_one_kept() {
        let storage = memory();
        let kept = ObjectKey::parse("files/u/kept").unwrap();
        let dropped = ObjectKey::parse("files/u/dropped").unwrap();
        for key in [&kept, &dropped] {
            storage.put(key, b"x".to_vec()).await.unwrap();
        }
        Guard::new(storage.clone(), kept.clone()).acknowledged();
        drop(Guard::new(storage.clone(), dropped.clone()));
        let deadline = tokio::time::Instant::now() + FIRST_TRY * 5;
        while storage.head(&dropped).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the unacknowledged upload was not removed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            storage.head(&kept).await.is_ok(),
            "the acknowledged one was removed"
        );
    }
}
