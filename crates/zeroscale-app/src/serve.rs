//! `zeroscale serve`: the HTTP server (`/healthz`, `/readyz`, `/openapi.json`, the API
//! under `/v1`, the `/files/…` route), in-process workers, and graceful shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use zeroscale_core::config::{Config, LoadedConfig, ensure_private_dir};

use crate::checks::Checker;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    checker: Arc<Checker>,
    /// To recognise an admin, who sees `/readyz`'s detail.
    api: crate::api::ApiState,
}

/// The router, separate from the listener so tests can drive it.
pub(crate) fn router(state: AppState, api: crate::api::ApiState, metrics_on: bool) -> Router {
    let panel = crate::admin_panel::router(crate::admin_panel::PanelState {
        api: api.clone(),
        checker: state.checker.clone(),
        metrics_on,
    });
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::admin_metrics))
        .with_state(api.clone());
    let (api, openapi) = crate::api::routes(api);
    let openapi = Arc::new(openapi);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .route(
            "/openapi.json",
            get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .merge(api)
        .merge(metrics)
        .merge(panel)
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Every required check passes (database, storage, queue, and at least one provider per
/// model id): 200, else 503. Anyone sees each concern as `ok`, `starting` (the local
/// model still installing) or `unavailable`; an admin's credentials add each check's
/// backend and detail (addresses, paths, what to fix), which is also what `doctor` shows.
async fn readyz(
    State(state): State<AppState>,
    mut parts: axum::http::request::Parts,
) -> impl IntoResponse {
    let checks = state.checker.run().await;
    let ready = checks.iter().all(|c| c.ok || !c.required);
    let admin = (parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
        || parts.headers.contains_key("x-api-key"))
        && <crate::api::auth::Admin as axum::extract::FromRequestParts<_>>::from_request_parts(
            &mut parts, &state.api,
        )
        .await
        .is_ok();
    let body: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|c| {
            let word = if c.ok {
                "ok"
            } else if c.starting {
                "starting"
            } else {
                "unavailable"
            };
            let value = if admin {
                json!({
                    "state": word,
                    "backend": c.backend,
                    "ok": c.ok,
                    "required": c.required,
                    "detail": c.detail,
                })
            } else {
                json!(word)
            };
            (c.concern.clone(), value)
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "not_ready" };
    (status, Json(json!({ "status": word, "checks": body })))
}

/// One log line per concern: which backend, where.
fn log_backends(config: &Config) {
    let database_at = match &config.database {
        zeroscale_core::config::DatabaseConfig::Sqlite(s) if s.in_memory => ":memory:".to_owned(),
        zeroscale_core::config::DatabaseConfig::Sqlite(s) => s
            .path
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string()),
        zeroscale_core::config::DatabaseConfig::Postgres(p) => {
            zeroscale_core::redacted_url(p.url.expose())
        }
        zeroscale_core::config::DatabaseConfig::Mongodb(m) => {
            zeroscale_core::redacted_url(m.url.expose())
        }
    };
    tracing::info!(backend = config.database.kind(), at = %database_at, "database");
    tracing::info!(backend = config.storage.kind(), "storage");
    tracing::info!(backend = config.queue.kind(), "queue");
    let models: Vec<String> = config
        .models
        .registry
        .iter()
        .map(|(id, entry)| {
            let mut chain = vec![entry.provider.clone()];
            chain.extend(entry.fallbacks.iter().cloned());
            format!("{id} -> {}", chain.join(" | "))
        })
        .collect();
    tracing::info!(models = %models.join(", "), "models");
}

pub(crate) async fn run(
    loaded: LoadedConfig,
    extensions: Arc<crate::app::Extensions>,
) -> anyhow::Result<ExitCode> {
    let config = loaded.config;
    let data_dir = config.data_dir()?;
    ensure_private_dir(&data_dir)?;
    tracing::info!(
        profile = loaded.profile.as_deref().unwrap_or("none"),
        data_dir = %data_dir.display(),
        "starting zeroscale {}",
        env!("CARGO_PKG_VERSION")
    );
    log_backends(&config);
    let metrics_on = crate::metrics::install(&config).is_some();
    warn_if_the_queue_forgets(&config);
    crate::models_cmd::start_auto_installs(&config);

    let addr = config.server.addr;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let addr_var = loaded.names.env_var_for_key("server.addr");
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (set `server.addr` or `{addr_var}`)"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "listening on http://{local}");

    // The database may be starting too (a deploy, a failover): wait for it rather than
    // exit, logging why, until it answers or a signal stops the wait. Errors that waiting
    // cannot fix (a bad URL, a compiled-out engine) exit at once.
    let db = {
        let mut delay = Duration::from_secs(1);
        loop {
            match zeroscale_db::Db::connect(&config.database).await {
                Ok(db) => break db,
                Err(e) if e.is_retriable() => {
                    tracing::warn!(error = %e.chain(), retry_in_secs = delay.as_secs(), "the database is not reachable yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        signal = shutdown_signal() => {
                            tracing::info!(signal, "stopped while waiting for the database");
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context("cannot open the database"));
                }
            }
        }
    };
    auto_migrate(&config, &db).await?;
    let services = crate::wiring::Services::with_db(&config, loaded.sections, db, extensions)?;
    crate::wiring::check_queue_login(&services.queue).await?;
    crate::auth_sync::start(&config, &services.domain, true);
    crate::wiring::bootstrap_admin(&config, &services.domain).await?;
    services.extensions.started(&services).await?;
    let stopping = services.clone();
    let storage = services.storage.clone();
    let files_signer =
        zeroscale_storage::app_signer(&config.storage, &crate::wiring::storage_context(&config)?)
            .map_err(anyhow::Error::from)?;
    let config_upload_limit = config.server.max_upload_bytes;
    let download_policy = config.server.download_policy();
    let server_config = config.server.clone();
    let (stop_workers, stop_workers_rx) = tokio::sync::watch::channel(false);
    crate::metrics::listen(&config.metrics, services.clone(), stop_workers_rx.clone()).await?;
    tokio::spawn(crate::tasks::stale_generation_sweeper(
        services.clone(),
        stop_workers_rx.clone(),
    ));
    tokio::spawn(crate::tasks::upload_sweeper(
        services.clone(),
        stop_workers_rx.clone(),
    ));
    let workers = if config.workers.mode == zeroscale_core::config::WorkersMode::InProcess {
        tracing::info!(
            concurrency = config.workers.concurrency,
            "running workers in this process"
        );
        Some(tokio::spawn(in_process_workers(
            services.clone(),
            stop_workers_rx,
        )))
    } else {
        tracing::info!("workers.mode = separate: run `zeroscale worker` for background jobs");
        None
    };
    let state = AppState {
        checker: Arc::new(Checker::live(services.clone())),
        api: services.clone(),
    };
    let api = services;
    let mut app = router(state, api, metrics_on);
    // Storage that cannot presign hands out URLs to this server's `/files/…` route.
    if let Some(signer) = files_signer {
        app = app.merge(zeroscale_storage::http::files_router(
            storage.clone(),
            signer,
            Some(config_upload_limit),
            download_policy.clone(),
        ));
    }
    let app = app.layer(axum::middleware::from_fn_with_state(
        metrics_on,
        crate::request_id::layer,
    ));
    let app = crate::headers::secure(app, &server_config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    });
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        result = &mut server => {
            result.context("the server task failed")??;
            stopping.extensions.stopped(&stopping).await;
            return Ok(ExitCode::SUCCESS);
        }
        signal = shutdown_signal() => {
            tracing::info!(signal, grace_secs = grace.as_secs(), "shutting down: finishing in-flight requests");
        }
    }
    let _ = stop_tx.send(true);
    let _ = stop_workers.send(true);
    if let Some(workers) = workers {
        match tokio::time::timeout(grace, workers).await {
            Ok(Ok(report)) => tracing::info!(
                succeeded = report.succeeded,
                released = report.released,
                "workers stopped"
            ),
            _ => tracing::warn!("workers did not stop within the grace period"),
        }
    }
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => {
            result.context("the server task failed")??;
            tracing::info!("stopped");
        }
        Err(_) => {
            tracing::warn!(
                "in-flight requests did not finish within {}s; stopping anyway",
                grace.as_secs()
            );
            server.abort();
        }
    }
    stopping.extensions.stopped(&stopping).await;
    Ok(ExitCode::SUCCESS)
}

/// Logs, in the background, a warning when the queue's engine may lose queued jobs on a
/// restart (Redis without its append-only file, or one that will not say).
pub(crate) fn warn_if_the_queue_forgets(config: &Config) {
    let queue = config.queue.clone();
    tokio::spawn(async move {
        if let Ok(Some(warning)) = zeroscale_queue::persistence_warning(&queue).await {
            tracing::warn!(warning = %warning, "the queue may lose jobs on a restart");
        }
    });
}

/// Connects to the queue (retrying while it is unreachable: `/readyz` reports it
/// meanwhile) and runs the workers until `stop`.
async fn in_process_workers(
    services: crate::wiring::Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> zeroscale_queue::worker::WorkerReport {
    loop {
        match services.queue.get().await {
            Ok(queue) => return crate::worker::build(queue, &services).run(stop).await,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "workers cannot reach the queue; retrying in 5s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.changed() => return Default::default(),
                }
            }
        }
    }
}

/// Applies pending migrations at start-up when the config asks for it.
/// Runs pending migrations on `db` when `database.auto_migrate` is on (through the
/// process's own pool: no second one).
pub(crate) async fn auto_migrate(config: &Config, db: &zeroscale_db::Db) -> anyhow::Result<()> {
    let wanted = config.database.auto_migrate();
    if !wanted {
        return Ok(());
    }
    let applied = db
        .migrate_up()
        .await
        .map_err(anyhow::Error::from)
        .context("auto_migrate: migrations failed")?;
    tracing::info!(applied, "database migrations up to date");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, naming which.
pub(crate) async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<&'static str>();
    tokio::select! {
        name = ctrl_c => name,
        name = term => name,
    }
}
