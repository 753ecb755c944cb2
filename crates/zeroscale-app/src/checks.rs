//! Checks of every configured backend, shared by `/readyz` and `zeroscale doctor`: which
//! backend each concern uses, whether it is compiled in, whether it is reachable, and
//! what to do if not.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::Mutex;
use zeroscale_core::config::Config;
use zeroscale_core::{Error, Result};
use zeroscale_db::Db;

use crate::wiring::Services;

/// How long one check may take before it counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of checking one concern's backend.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// `database`, `storage`, `queue`, `models.<provider>`.
    pub(crate) concern: String,
    /// The configured kind.
    pub(crate) backend: String,
    /// Whether this build contains the backend.
    pub(crate) compiled_in: bool,
    /// Whether it answered.
    pub(crate) ok: bool,
    /// Where it is when ok; what went wrong and what to do when not.
    pub(crate) detail: String,
    /// Whether readiness depends on it. Every model id needs one working provider
    /// (`model.<id>`); a provider that is down while every model id using it has another
    /// that works is not required, so it does not take the server out of rotation.
    pub(crate) required: bool,
    /// Not ok yet, but on its way: the local model is still installing in this process.
    pub(crate) starting: bool,
}

/// Runs checks: `doctor`'s from config (it connects to each backend itself), or
/// `/readyz`'s over the services the server runs on (its database pool, its storage, its
/// queue connection), so a readiness probe opens no connection of its own.
#[derive(Debug)]
pub(crate) struct Checker {
    config: Config,
    /// The server's services, for `/readyz`.
    live: Option<Services>,
    /// `doctor`'s database connection.
    db: Mutex<Option<Db>>,
    /// On a server: the queue engine's persistence warning, asked once.
    queue_note: tokio::sync::OnceCell<Option<String>>,
}

impl Checker {
    /// Checks from config, for `doctor`.
    pub(crate) fn new(config: Config) -> Self {
        Checker {
            config,
            live: None,
            db: Mutex::new(None),
            queue_note: tokio::sync::OnceCell::new(),
        }
    }

    /// Checks of the services a server runs on, for `/readyz`.
    pub(crate) fn live(services: Services) -> Self {
        Checker {
            config: services.config.as_ref().clone(),
            live: Some(services),
            db: Mutex::new(None),
            queue_note: tokio::sync::OnceCell::new(),
        }
    }

    /// Every concern's check, in a fixed order.
    pub(crate) async fn run(&self) -> Vec<Check> {
        let config = &self.config;
        let mut checks = vec![
            finish(
                "database",
                config.database.kind(),
                Db::is_compiled_in(config.database.kind()),
                self.database().await,
            ),
            finish(
                "storage",
                config.storage.kind(),
                zeroscale_storage::is_compiled_in(config.storage.kind()),
                timed(self.storage()).await,
            ),
            finish(
                "queue",
                config.queue.kind(),
                zeroscale_queue::is_compiled_in(config.queue.kind()),
                timed(self.queue()).await,
            ),
        ];
        for name in zeroscale_models::providers_in_use(&config.models) {
            let kind = config
                .models
                .providers
                .get(&name)
                .map_or("undefined", |p| p.kind());
            checks.push(finish(
                &format!("models.{name}"),
                kind,
                zeroscale_models::is_compiled_in(kind),
                timed(self.provider(&name)).await,
            ));
            if let Some(check) = checks.last_mut() {
                check.required = false;
                check.starting = !check.ok && crate::models_cmd::installing(config, &name);
            }
        }
        for (id, entry) in &config.models.registry {
            let chain: Vec<&String> = std::iter::once(&entry.provider)
                .chain(entry.fallbacks.iter())
                .collect();
            let serving: Vec<&str> = chain
                .iter()
                .filter(|name| {
                    checks
                        .iter()
                        .any(|c| c.ok && c.concern == format!("models.{name}"))
                })
                .map(|name| name.as_str())
                .collect();
            let result = match serving.first() {
                Some(first) => Ok(format!("served by {first}")),
                None => Err(Error::unavailable(format!(
                    "no provider can serve it ({}): see the models.<provider> checks",
                    chain
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
            if result.is_err() {
                // Every provider of this model id failed: each of them matters now.
                for check in checks.iter_mut() {
                    if chain
                        .iter()
                        .any(|name| check.concern == format!("models.{name}"))
                    {
                        check.required = true;
                    }
                }
            }
            let mut check = finish(&format!("model.{id}"), "router", true, result);
            check.starting = !check.ok
                && checks.iter().any(|c| {
                    c.starting
                        && chain
                            .iter()
                            .any(|name| c.concern == format!("models.{name}"))
                });
            checks.push(check);
        }
        checks
    }

    async fn storage(&self) -> Result<String> {
        if let Some(live) = &self.live {
            live.storage.health().await?;
            return Ok(live.storage.location().to_owned());
        }
        let ctx = zeroscale_storage::StorageContext::new(
            self.config.data_dir()?,
            self.config.storage_public_url(),
        );
        zeroscale_storage::probe(&self.config.storage, &ctx).await
    }

    /// A model provider: on a server, the health check of the provider its router runs
    /// (which also ends a cooldown), then the same description `doctor` gives.
    async fn provider(&self, name: &str) -> Result<String> {
        if let Some(live) = &self.live
            && live.models.has_provider(name)
        {
            live.models.check(name).await?;
        }
        zeroscale_models::probe(&self.config.models, name).await
    }

    async fn queue(&self) -> Result<String> {
        let Some(live) = &self.live else {
            return zeroscale_queue::probe(&self.config.queue).await;
        };
        let queue = live.queue.get().await?;
        queue.health().await?;
        // Asked once (a connection of its own): whether the engine keeps jobs across a
        // restart does not change while it runs.
        let note = self
            .queue_note
            .get_or_init(|| async {
                zeroscale_queue::persistence_warning(&self.config.queue)
                    .await
                    .ok()
                    .flatten()
            })
            .await;
        Ok(match note {
            Some(warning) => format!("{} queue answers; warning: {warning}", queue.backend()),
            None => format!("{} queue answers", queue.backend()),
        })
    }

    async fn database(&self) -> Result<String> {
        if let Some(live) = &self.live {
            return timed(self.database_ready(live.domain.db())).await;
        }
        let mut guard = self.db.lock().await;
        if guard.is_none() {
            *guard = Some(timed(Db::connect(&self.config.database)).await?);
        }
        let db = guard.as_ref().expect("connected above");
        match timed(self.database_ready(db)).await {
            Ok(detail) => Ok(detail),
            Err(e) => {
                // Reconnect next time: the pool may point at a server that went away.
                *guard = None;
                Err(e)
            }
        }
    }

    /// The database answers and its schema is current (or will be made so at start-up).
    async fn database_ready(&self, db: &Db) -> Result<String> {
        let auto_migrate = self.config.database.auto_migrate();
        {
            db.ping().await?;
            let mut at = match db.server_details() {
                Some(details) => format!("{} ({details})", db.location()),
                None => db.location().to_owned(),
            };
            // A replica down or behind does not make the server unready: its reads go
            // to the primary. Its state is detail for the operator.
            let replicas: Vec<String> = db
                .replica_status()
                .iter()
                .map(ToString::to_string)
                .collect();
            if !replicas.is_empty() {
                at = format!("{at}; read replicas: {}", replicas.join("; "));
            }
            match db.pending_migrations().await? {
                0 => Ok(at),
                n if auto_migrate => Ok(format!(
                    "{at}; {n} migration(s) pending, applied by `serve` at start-up (auto_migrate)"
                )),
                n => Err(Error::unavailable(format!(
                    "{n} migration(s) pending: run `zeroscale migrate up` (or set \
                     `database.auto_migrate = true`)"
                ))),
            }
        }
    }
}

async fn timed<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CHECK_TIMEOUT, future)
        .await
        .unwrap_or_else(|_| {
            Err(Error::unavailable(format!(
                "no answer within {}s",
                CHECK_TIMEOUT.as_secs()
            )))
        })
}

fn finish(concern: &str, backend: &str, compiled_in: bool, result: Result<String>) -> Check {
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(e) => (false, e.chain()),
    };
    Check {
        concern: concern.to_owned(),
        backend: backend.to_owned(),
        compiled_in,
        ok,
        detail,
        required: true,
        starting: false,
    }
}
