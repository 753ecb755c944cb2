//! The `health_and_openapi` section of the e2e suite.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

pub(crate) async fn run(d: &Deployment) {
    let (status, body) = d.server.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    // Ready in every respect but one: the overlay's `broken` model has no provider that
    // works (by design), and readiness says so, naming the provider. (`flaky` uses the
    // same dead provider but falls back to the placeholder, so it is fine.)
    let (status, body) = d.server.readyz_detail().await;
    assert_eq!(status, 503, "[{}] {body:#}", d.name);
    let mut failing: Vec<&String> = body["checks"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, c)| c["ok"] == false && c["required"] == true)
        .map(|(name, _)| name)
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        ["model.broken", "models.down"],
        "[{}] {body:#}",
        d.name
    );
    assert_eq!(body["checks"]["models.down"]["ok"], false);
    // The deployment runs on the engine the stage names.
    let database = &body["checks"]["database"];
    assert_eq!(database["ok"], true, "{database}");
    let engine = match d.db {
        Db::Sqlite => "sqlite",
        Db::Postgres | Db::PgvectorPooledWithReplica => "postgres",
        Db::Mongodb => "mongodb",
    };
    assert_eq!(database["backend"], engine, "[{}] {database}", d.name);
    if d.db == Db::PgvectorPooledWithReplica {
        replica_serves(d).await;
    }
    assert_eq!(body["checks"]["model.flaky"]["ok"], true);
    let (status, doc) = d.server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/auth/register", &["post"][..]),
        ("/v1/auth/login", &["post"]),
        ("/v1/auth/logout", &["post"]),
        ("/v1/me", &["get"]),
        ("/v1/api-keys", &["get", "post"]),
        ("/v1/api-keys/{id}", &["delete"]),
        ("/v1/prompts", &["get", "post"]),
        ("/v1/prompts/{id}", &["get", "patch", "delete"]),
        ("/v1/chat/{session_id}/messages", &["get", "post"]),
        ("/v1/chat/{session_id}", &["delete"]),
        ("/v1/files", &["get", "post"]),
        ("/v1/files/{id}", &["get", "head", "delete"]),
        ("/v1/files/{id}/signed-url", &["post"]),
        ("/v1/files/upload-url", &["post"]),
        ("/v1/jobs", &["get", "post"]),
        ("/v1/jobs/{id}", &["get"]),
        ("/v1/jobs/{id}/cancel", &["post"]),
        ("/v1/models", &["get"]),
        ("/v1/models/{id}", &["get"]),
        ("/v1/embeddings", &["post"]),
        ("/v1/images/generations", &["post"]),
        ("/v1/documents", &["post"]),
        ("/v1/documents/search", &["post"]),
        ("/v1/images", &["post"]),
        ("/v1/images/{id}", &["get"]),
        ("/v1/admin/providers", &["get"]),
        ("/v1/admin/providers/{name}/check", &["post"]),
        ("/v1/admin/jobs/stats", &["get"]),
        ("/v1/admin/jobs/dead", &["get"]),
        ("/v1/admin/users", &["get"]),
        ("/v1/admin/users/{id}", &["patch"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("/openapi.json lacks {path}"));
        for method in methods {
            assert!(
                item.get(*method).is_some(),
                "/openapi.json lacks {method} {path}"
            );
        }
    }
}

/// Stage 4: the replica shows in the readiness detail and, once it has caught up with the
/// new database, serves a user's stale-tolerant read (a job history) as `/metrics` counts.
async fn replica_serves(d: &Deployment) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, body) = d.server.readyz_detail().await;
        let detail = body["checks"]["database"].to_string();
        assert!(detail.contains("read replicas: "), "[{}] {detail}", d.name);
        if detail.contains("serving reads") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "[{}] the replica never served: {detail}",
            d.name
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Registering and logging in are not a signed-in user's writes: the reader has no
    // read-your-writes mark, so its history read may go to the replica.
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({"username": "reader", "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let reader = crate::common::login(&d.server, "reader", "correct horse battery").await;
    d.secret(reader.clone());
    let series = r#"zeroscale_db_stale_reads_total{target="replica"}"#;
    let on_replica = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = on_replica(&d.server.metrics_text().await);
    let (status, body) = call(d, Method::GET, "/v1/jobs", Some(&reader), None).await;
    assert_eq!(status, 200, "{body}");
    let after = on_replica(&d.server.metrics_text().await);
    assert!(
        after > before,
        "[{}] the history read did not go to the replica ({series}: {before} then {after})",
        d.name
    );
}
