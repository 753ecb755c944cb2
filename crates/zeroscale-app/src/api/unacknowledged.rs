//! Removing the object of an upload that was not acknowledged: a put can reach the store
//! and still fail from the server's view (the store's answer lost with its connection, a
//! request dropped mid-way), and then the client was told nothing or an error, while a
//! file it does not know of would show in its listing.
//!
//! One task per server removes them all ([`Removals`]): while the store cannot be reached
//! it sends one request a second however many removals wait, so an outage that fails a
//! thousand uploads does not turn into a thousand retry loops, and the files go within
//! about a second of the store answering again (a server killed before that leaves them:
//! docs/storage.md#interrupted-uploads).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroscale_core::storage::ObjectKey;
use zeroscale_core::{Error, Storage};

/// First look, after the failed put settled on the store's side.
const FIRST_TRY: Duration = Duration::from_secs(1);
/// Wait between tries while the store cannot be reached.
const RETRY: Duration = Duration::from_secs(1);
/// How long a store that cannot be reached is retried before giving up (and logging the key).
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
/// Removals sent at once once the store answers.
const CONCURRENCY: usize = 8;

/// The server's queue of objects to remove; cheap to clone. Its task starts with the
/// first removal and ends when the last clone is dropped (trying what is left once).
#[derive(Clone)]
pub(crate) struct Removals {
    storage: Arc<dyn Storage>,
    sender: Arc<OnceLock<mpsc::UnboundedSender<ObjectKey>>>,
}

impl std::fmt::Debug for Removals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Removals").finish_non_exhaustive()
    }
}

impl Removals {
    /// Removals from `storage`.
    pub(crate) fn new(storage: Arc<dyn Storage>) -> Removals {
        Removals {
            storage,
            sender: Arc::new(OnceLock::new()),
        }
    }

    /// Held while an upload's put runs on a fresh `key`.
    pub(crate) fn guard(&self, key: ObjectKey) -> Guard {
        Guard {
            removals: self.clone(),
            key: Some(key),
        }
    }

    /// Queues `key` for removal; without a runtime (it is shutting down) it is logged.
    fn queue(&self, key: ObjectKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            gave_up(&key, "the server is shutting down");
            return;
        };
        let sender = self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            runtime.spawn(run(
                self.storage.clone(),
                rx,
                FIRST_TRY,
                RETRY,
                GIVE_UP_AFTER,
            ));
            tx
        });
        if let Err(mpsc::error::SendError(key)) = sender.send(key) {
            gave_up(&key, "the removal task has stopped");
        }
    }
}

/// Held while an upload's put runs on a fresh key: unless [`Guard::acknowledged`] is
/// called, dropping it (an error, or the request dropped) queues the removal of whatever
/// the put left under the key.
pub(crate) struct Guard {
    removals: Removals,
    key: Option<ObjectKey>,
}

impl Guard {
    /// The upload was committed and its 201 decided: nothing to remove.
    pub(crate) fn acknowledged(mut self) {
        self.key = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.removals.queue(key);
        }
    }
}

/// A queued removal.
struct Pending {
    key: ObjectKey,
    /// When it was queued: given up [`GIVE_UP_AFTER`] later.
    queued: Instant,
    /// When to try next.
    due: Instant,
}

/// The removal task: waits for each key's first try, then removes the due ones; when the
/// store cannot be reached, only one request goes out per `retry`.
async fn run(
    storage: Arc<dyn Storage>,
    mut rx: mpsc::UnboundedReceiver<ObjectKey>,
    first: Duration,
    retry: Duration,
    give_up_after: Duration,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    loop {
        let next_due = queue.iter().map(|p| p.due).min();
        match (open, next_due) {
            (false, _) => break,
            (true, None) => match rx.recv().await {
                Some(key) => queue.push_back(pending(key, first)),
                None => open = false,
            },
            (true, Some(due)) => {
                tokio::select! {
                    received = rx.recv() => match received {
                        Some(key) => queue.push_back(pending(key, first)),
                        None => open = false,
                    },
                    () = tokio::time::sleep_until(due) => {}
                }
            }
        }
        while let Ok(key) = rx.try_recv() {
            queue.push_back(pending(key, first));
        }
        let now = Instant::now();
        if queue.iter().all(|p| p.due > now) && open {
            continue;
        }
        // Due ones (all of them once the server stops).
        let (mut due, later): (VecDeque<_>, VecDeque<_>) =
            queue.drain(..).partition(|p| p.due <= now || !open);
        queue = later;
        // One first: if the store cannot be reached, the rest wait with it.
        let Some(probe) = due.pop_front() else {
            continue;
        };
        let mut failed = Vec::new();
        match remove(storage.as_ref(), &probe.key).await {
            Ok(()) => {
                let results: Vec<_> = futures::stream::iter(due.drain(..))
                    .map(|p| {
                        let storage = storage.clone();
                        async move {
                            let result = remove(storage.as_ref(), &p.key).await;
                            (p, result)
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
                failed.extend(
                    results
                        .into_iter()
                        .filter_map(|(p, r)| r.err().map(|e| (p, e.chain()))),
                );
            }
            Err(e) => {
                let e = e.chain();
                failed.extend(due.drain(..).map(|p| (p, e.clone())));
                failed.push((probe, e));
            }
        }
        let now = Instant::now();
        for (mut p, e) in failed {
            if !open || now.duration_since(p.queued) + retry >= give_up_after {
                gave_up(&p.key, &e);
            } else {
                tracing::debug!(key = %p.key, error = %e, "will retry removing an unacknowledged upload");
                p.due = now + retry;
                queue.push_back(p);
            }
        }
    }
}

fn pending(key: ObjectKey, first: Duration) -> Pending {
    let queued = Instant::now();
    Pending {
        key,
        queued,
        due: queued + first,
    }
}

/// Removes `key` if it exists.
async fn remove(storage: &dyn Storage, key: &ObjectKey) -> Result<(), Error> {
    let removed = match storage.head(key).await {
        Err(Error::NotFound { .. }) => return Ok(()),
        Ok(_) => storage.delete(key).await?,
        Err(e) => return Err(e),
    };
    if removed {
        tracing::warn!(
            key = %key,
            "removed an uploaded object whose upload failed after the store had written it \
             (its client got an error or no answer)"
        );
    }
    Ok(())
}

fn gave_up(key: &ObjectKey, why: &str) {
    tracing::error!(
        key = %key,
        error = why,
        "could not remove the object of a failed upload; if it exists it shows in its \
         owner's file list: delete it by hand"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;
    use zeroscale_core::StorageExt;
    use zeroscale_core::storage::{
        ByteStream, GetOptions, GetResult, ListOptions, ListPage, ObjectMeta, PutOptions,
        PutResult, SignedUrl, SignedUrlOptions, UrlSigning,
    };

    use super::*;

    fn memory() -> Arc<dyn Storage> {
        zeroscale_storage::connect(
            &zeroscale_core::config::StorageConfig::Memory(Default::default()),
            &zeroscale_storage::StorageContext::new(std::env::temp_dir(), "http://127.0.0.1:1"),
        )
        .unwrap()
    }

    async fn gone_within(storage: &dyn Storage, key: &ObjectKey, limit: Duration) {
        let deadline = Instant::now() + limit;
        while storage.head(key).await.is_ok() {
            assert!(Instant::now() < deadline, "{key} was not removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_unacknowledged_upload_is_removed_and_an_acknowledged_one_kept() {
        let storage = memory();
        let removals = Removals::new(storage.clone());
        let kept = ObjectKey::parse("files/u/kept").unwrap();
        let dropped = ObjectKey::parse("files/u/dropped").unwrap();
        for key in [&kept, &dropped] {
            storage.put(key, b"x".to_vec()).await.unwrap();
        }
        removals.guard(kept.clone()).acknowledged();
        drop(removals.guard(dropped.clone()));
        gone_within(storage.as_ref(), &dropped, FIRST_TRY * 5).await;
        assert!(
            storage.head(&kept).await.is_ok(),
            "the acknowledged one was removed"
        );
    }

    /// Memory storage whose `head` and `delete` fail while `down`, counting the calls.
    #[derive(Debug)]
    struct Flaky {
        inner: Arc<dyn Storage>,
        down: AtomicBool,
        calls: AtomicUsize,
    }

    impl Flaky {
        fn check(&self) -> zeroscale_core::Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::unavailable("the test store is down"));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Storage for Flaky {
        fn backend(&self) -> &str {
            "flaky"
        }
        fn location(&self) -> &str {
            "test"
        }
        fn url_signing(&self) -> UrlSigning {
            UrlSigning::App
        }
        async fn put_opts(
            &self,
            key: &ObjectKey,
            payload: Bytes,
            opts: PutOptions,
        ) -> zeroscale_core::Result<PutResult> {
            self.inner.put_opts(key, payload, opts).await
        }
        async fn put_stream(
            &self,
            key: &ObjectKey,
            body: ByteStream,
            opts: PutOptions,
        ) -> zeroscale_core::Result<PutResult> {
            self.inner.put_stream(key, body, opts).await
        }
        async fn get_opts(
            &self,
            key: &ObjectKey,
            opts: GetOptions,
        ) -> zeroscale_core::Result<GetResult> {
            self.inner.get_opts(key, opts).await
        }
        async fn head(&self, key: &ObjectKey) -> zeroscale_core::Result<ObjectMeta> {
            self.check()?;
            self.inner.head(key).await
        }
        async fn delete(&self, key: &ObjectKey) -> zeroscale_core::Result<bool> {
            self.check()?;
            self.inner.delete(key).await
        }
        async fn list(&self, opts: ListOptions) -> zeroscale_core::Result<ListPage> {
            self.inner.list(opts).await
        }
        async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> zeroscale_core::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn signed_url(
            &self,
            key: &ObjectKey,
            opts: SignedUrlOptions,
        ) -> zeroscale_core::Result<SignedUrl> {
            self.inner.signed_url(key, opts).await
        }
        async fn health(&self) -> zeroscale_core::Result<()> {
            self.check()
        }
    }

    #[tokio::test]
    async fn while_the_store_is_down_one_request_per_retry_goes_out_and_all_go_once_it_is_back() {
        let inner = memory();
        let flaky = Arc::new(Flaky {
            inner: inner.clone(),
            down: AtomicBool::new(true),
            calls: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let retry = Duration::from_millis(100);
        let task = tokio::spawn(run(
            flaky.clone(),
            rx,
            Duration::from_millis(20),
            retry,
            Duration::from_secs(60),
        ));
        let keys: Vec<ObjectKey> = (0..40)
            .map(|i| ObjectKey::parse(format!("files/u/{i}")).unwrap())
            .collect();
        for key in &keys {
            inner.put(key, b"x".to_vec()).await.unwrap();
            tx.send(key.clone()).unwrap();
        }
        // Down for ten retries: about ten calls in all, not ten per key.
        tokio::time::sleep(retry * 10).await;
        let while_down = flaky.calls.load(Ordering::SeqCst);
        assert!(
            (5..=15).contains(&while_down),
            "{while_down} calls while the store was down (one per retry expected)"
        );
        flaky.down.store(false, Ordering::SeqCst);
        for key in &keys {
            gone_within(inner.as_ref(), key, retry * 20).await;
        }
        // A key that arrives once the sender is gone is not lost: the task tries what is
        // left, then ends.
        let last = ObjectKey::parse("files/u/last").unwrap();
        inner.put(&last, b"x".to_vec()).await.unwrap();
        tx.send(last.clone()).unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with its sender")
            .unwrap();
        assert!(inner.head(&last).await.is_err(), "the last key was left");
    }
}
