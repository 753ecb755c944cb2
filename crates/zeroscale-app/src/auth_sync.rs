//! Keeps the verified-credential and chat-page caches of every instance fresh: what this
//! process changes (a logout, a revoked key, a balance, a chat message) is published on the
//! queue's fan-out, and what other processes publish is dropped from this one's caches. With a queue no other process
//! shares (memory) there is nobody to tell, and nothing runs.
//!
//! While the fan-out is unreachable, changes show elsewhere within `auth.cache_ttl_ms`
//! (`chat.cache_ttl_ms` for chat pages);
//! each (re)subscription drops this process's whole cache, since messages sent while it
//! was away are lost.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use zeroscale_core::config::Config;
use zeroscale_db::domain::{AuthChange, Domain};
use zeroscale_queue::fanout::{self, Fanout, Heard};

/// The fan-out topic.
const TOPIC: &str = "auth";

/// Starts sharing in the background (connecting, and reconnecting, on its own). `listen`:
/// whether this process also applies what others publish (a server does; a worker only
/// publishes, since it authenticates nobody).
pub(crate) fn start(config: &Config, domain: &Domain, listen: bool) {
    if !zeroscale_queue::registry::capabilities(config.queue.kind()).is_some_and(|c| c.shared)
        || (config.auth.cache_ttl_ms == 0 && config.chat.cache_ttl_ms == 0)
    {
        return;
    }
    // Subscribed now, so changes made while connecting are forwarded once connected.
    let changes = domain.auth_changes();
    let queue = config.queue.clone();
    let domain = domain.clone();
    let context = crate::wiring::queue_context(domain.db());
    tokio::spawn(async move {
        let fanout = connect(&queue, &context).await;
        if listen {
            tokio::spawn(apply_heard(fanout.listen(), domain));
        }
        forward(changes, fanout).await;
    });
}

/// The fan-out, retrying until it connects.
async fn connect(
    queue: &zeroscale_core::config::QueueConfig,
    context: &zeroscale_queue::QueueContext,
) -> Fanout {
    let mut delay = Duration::from_millis(200);
    loop {
        match fanout::connect_with(queue, TOPIC, context).await {
            Ok(Some(fanout)) => return fanout,
            Ok(None) => std::future::pending::<()>().await,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "cannot reach the queue to share session changes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn forward(mut changes: tokio::sync::broadcast::Receiver<AuthChange>, fanout: Fanout) {
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => AuthChange::All,
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = fanout.publish(&change.encode()).await {
            tracing::warn!(
                error = %e.chain(),
                "cannot tell other instances about a session change; they see it within auth.cache_ttl_ms"
            );
        }
    }
}

async fn apply_heard(mut heard: tokio::sync::mpsc::Receiver<Heard>, domain: Domain) {
    while let Some(heard) = heard.recv().await {
        match heard {
            Heard::Message(text) => match AuthChange::decode(&text) {
                Some(change) => domain.apply_auth_change(&change),
                None => tracing::debug!(message = %text, "ignoring an unknown auth change"),
            },
            Heard::Resumed => domain.apply_auth_change(&AuthChange::All),
        }
    }
}
