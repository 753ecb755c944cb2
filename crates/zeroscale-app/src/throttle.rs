//! Login throttling (`auth.login_throttle`) on the shared counters, and the client
//! address it counts by.
//!
//! Keys: `login:acct:<username as typed, trimmed and lower-cased>` and
//! `login:addr:<client address>`. The account key is the same whether or not the
//! account exists, and a throttled unknown name is answered exactly like a throttled
//! real one, so throttling tells an attacker nothing about which accounts exist.
//!
//! When the shared counters cannot be reached (Redis or the database down), each process
//! counts on its own until they answer (`zeroscale_queue::counters::with_fallback`):
//! throttling becomes per instance, never off, and nobody is locked out by the outage
//! itself. A lock-out set during the outage holds on its instance until it ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use zeroscale_core::config::{Config, LoginThrottleConfig, TrustedProxies};
use zeroscale_core::{Counters, Error};
use zeroscale_db::Db;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiResult};

/// The address a request comes from: the socket's peer, or, when the peer is a trusted
/// proxy (`server.trusted_proxies`), the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy (the earlier ones are the client's to write, so untrusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

impl ClientAddr {
    fn resolve(peer: IpAddr, forwarded: &[&str], proxies: &TrustedProxies) -> IpAddr {
        if !proxies.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .rev()
        {
            let Ok(ip) = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
            else {
                // Garbage from the client's side of the chain: stop at the last good hop.
                break;
            };
            client = ip;
            if !proxies.contains(ip) {
                break;
            }
        }
        client
    }
}

impl<S> FromRequestParts<S> for ClientAddr
where
    ApiState: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let state = <ApiState as axum::extract::FromRef<S>>::from_ref(state);
        // Without connection info (the router driven in-process, as tests do) every
        // request counts as one local client.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientAddr(Self::resolve(
            peer,
            &forwarded,
            &state.throttle.proxies,
        )))
    }
}

/// The shared counters (connected on first use, counting in the process while they are
/// down) and the throttling settings.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    config: Arc<Config>,
    counters: Arc<dyn Counters>,
    pub(crate) proxies: Arc<TrustedProxies>,
}

fn account_key(username: &str) -> String {
    format!("login:acct:{}", username.trim().to_lowercase())
}

fn address_key(addr: IpAddr) -> String {
    format!("login:addr:{addr}")
}

/// The wait an account's `failures`-th failure imposes: none up to `free_failures`, then
/// `base_delay_ms` doubling, and `lock_secs` from `lock_after` on.
fn account_wait(failures: u64, config: &LoginThrottleConfig) -> Option<Duration> {
    let lock = Duration::from_secs(config.lock_secs);
    if failures >= u64::from(config.lock_after.max(1)) {
        return Some(lock);
    }
    let beyond = failures.checked_sub(u64::from(config.free_failures))?;
    if beyond == 0 {
        return None;
    }
    let doubling = 1u64 << (beyond - 1).min(30);
    Some(Duration::from_millis(config.base_delay_ms.saturating_mul(doubling)).min(lock))
}

impl Throttle {
    pub(crate) fn new(config: Arc<Config>, db: Db) -> anyhow::Result<Self> {
        let proxies = Arc::new(config.server.trusted_proxies()?);
        let queue = config.queue.clone();
        let connect: zeroscale_queue::counters::Connect = Box::new(move || {
            let (queue, db) = (queue.clone(), db.clone());
            Box::pin(async move {
                let context = crate::wiring::queue_context(&db);
                let shared = zeroscale_queue::counters::connect_with(&queue, &context).await?;
                Ok(shared.unwrap_or_else(|| {
                    Arc::new(zeroscale_db::counters::DbCounters::new(db)) as Arc<dyn Counters>
                }))
            })
        });
        let counters = zeroscale_queue::counters::coalescing(
            zeroscale_queue::counters::with_fallback(connect),
        );
        Ok(Throttle {
            config,
            counters,
            proxies,
        })
    }

    fn settings(&self) -> &LoginThrottleConfig {
        &self.config.auth.login_throttle
    }

    /// The counters: on the queue's engine when it shares one, else in the database,
    /// and in this process while that engine is down; concurrent hits go to the engine
    /// together.
    pub(crate) fn counters(&self) -> Arc<dyn Counters> {
        Arc::clone(&self.counters)
    }

    /// Refuses (429 with `Retry-After`) a login for `username` from `addr` while either
    /// is locked.
    pub(crate) async fn check_login(&self, username: &str, addr: IpAddr) -> ApiResult<()> {
        if !self.settings().enabled {
            return Ok(());
        }
        let keys = [account_key(username), address_key(addr)];
        let blocked = self.counters.blocked(&keys).await;
        match blocked {
            Ok(None) => Ok(()),
            Ok(Some(left)) => {
                let secs = u64::try_from(left.as_millis().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1);
                Err(Error::rate_limited(
                    format!(
                        "too many failed logins for this username or from this address: try \
                         again in {secs} s"
                    ),
                    Some(Duration::from_secs(secs)),
                )
                .into())
            }
            Err(e) => {
                // Only the process-local counters can refuse, and they never do.
                tracing::warn!(error = %e.chain(), "a login's lock-outs could not be read");
                Ok(())
            }
        }
    }

    /// Counts a failed login; locks the account or the address when it is time.
    pub(crate) async fn login_failed(&self, username: &str, addr: IpAddr) {
        if !self.settings().enabled {
            return;
        }
        if let Err(e) = self.record_failure(username, addr).await {
            tracing::warn!(error = %e.chain(), "a failed login was not counted");
        }
    }

    async fn record_failure(&self, username: &str, addr: IpAddr) -> zeroscale_core::Result<()> {
        let settings = self.settings();
        let counters = &self.counters;
        let window = Duration::from_secs(settings.window_secs.max(1));
        let account = account_key(username);
        let failures = counters.hit(&account, 1, window).await?.count;
        if let Some(wait) = account_wait(failures, settings) {
            counters.block(&account, wait).await?;
            tracing::info!(
                failures,
                wait_ms = wait.as_millis() as u64,
                "login throttled for a username"
            );
        }
        let address = address_key(addr);
        let from_address = counters.hit(&address, 1, window).await?.count;
        if from_address >= u64::from(settings.address_lock_after.max(1)) {
            counters
                .block(&address, Duration::from_secs(settings.lock_secs))
                .await?;
            tracing::warn!(%addr, failures = from_address, "client address locked out of logins");
        }
        Ok(())
    }

    /// A successful login clears the account's failures (not the address's).
    pub(crate) async fn login_succeeded(&self, username: &str) {
        if !self.settings().enabled {
            return;
        }
        let cleared = self.counters.clear(&account_key(username)).await;
        if let Err(e) = cleared {
            tracing::warn!(error = %e.chain(), "a login's failures were not cleared");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_then_lock() {
        let c = LoginThrottleConfig::default();
        let wait = |n| account_wait(n, &c).map(|d| d.as_millis());
        assert_eq!((1..=5).map(wait).collect::<Vec<_>>(), vec![None; 5]);
        assert_eq!(wait(6), Some(1000));
        assert_eq!(wait(7), Some(2000));
        assert_eq!(wait(9), Some(8000));
        assert_eq!(wait(10), Some(900_000));
        assert_eq!(wait(1000), Some(900_000));
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let config = zeroscale_core::config::ServerConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
            ..Default::default()
        };
        let proxies = config.trusted_proxies().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(
            ClientAddr::resolve(ip("203.0.113.9"), &["1.2.3.4"], &proxies),
            ip("203.0.113.9")
        );
        // Through two trusted proxies: the first untrusted hop from the right.
        assert_eq!(
            ClientAddr::resolve(
                ip("127.0.0.1"),
                &["6.6.6.6, 198.51.100.7, 10.1.2.3"],
                &proxies
            ),
            ip("198.51.100.7")
        );
        // Several headers read as one list; garbage stops the walk.
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.1"), &["nonsense", "198.51.100.8:4711"], &proxies),
            ip("198.51.100.8")
        );
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.1"), &["198.51.100.8, nonsense"], &proxies),
            ip("10.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            ClientAddr::resolve(ip("10.0.0.1"), &[], &proxies),
            ip("10.0.0.1")
        );
    }
}
