//! A bare axum server in this process (its own runtime with as many worker threads as a
//! `zeroscale serve`): `/healthz` and 64 KiB from memory, with no authentication, database
//! or disk. What it manages for 64 KiB against its `/healthz` is the ceiling the load
//! generator and the machine leave for the ≥ 0.5× goal of a 64 KiB download.

use std::thread::JoinHandle;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;

/// A running bare server; stopped on drop.
pub(crate) struct Bare {
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the bare server on a free port of 127.0.0.1.
pub(crate) fn start() -> anyhow::Result<Bare> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bare-axum".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let blob = Bytes::from(vec![b'z'; 64 * 1024]);
                let app = Router::new()
                    .route("/healthz", get(|| async { r#"{"status":"ok"}"# }))
                    .route("/blob", get(move || async move { blob }));
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Bare {
        base: format!("http://{addr}"),
        stop: Some(stop),
        thread: Some(thread),
    })
}
