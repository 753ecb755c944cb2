//! Conformance suites: one `pub async fn` per behaviour, each taking the trait object, so
//! every backend is held to the same contract. A backend's tests call `run_all` once.
//!
//! Each check panics with a message naming the backend and the broken guarantee.

pub mod counters;
pub mod queue;
mod queue_origin;
pub mod storage;

/// Sleeps without depending on a runtime: the suites run under whichever the backend's
/// tests use.
pub(crate) async fn sleep(d: std::time::Duration) {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    let _ = rx.await;
}
