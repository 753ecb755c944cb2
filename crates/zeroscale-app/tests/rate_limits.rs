//! Rate limits and quotas (#17): a key limited to N requests a minute gets exactly N
//! successes in a burst of 2N, on one server and spread over two (PostgreSQL, Redis);
//! per-user limits; `X-RateLimit-*` and `Retry-After`; the daily embedding quota.

mod common;

use std::process::Command;

use common::{Server, TempDir, fresh_postgres};
use serde_json::json;
use zeroscale_core::testing::require_service;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password-1";

fn server_cmd(dir: &std::path::Path, env: &[(&str, String)]) -> Command {
    let mut cmd = common::zeroscale(dir);
    cmd.env(
        "ZEROSCALE_AUTH__BOOTSTRAP_ADMIN",
        format!("{ADMIN}:{ADMIN_PASSWORD}"),
    )
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// A key for the admin, limited to `limit` requests a minute; its plaintext and id.
async fn limited_key(server: &Server, limit: u32) -> (String, String) {
    let admin = common::login(server, ADMIN, ADMIN_PASSWORD).await;
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/api-keys",
            Some(&admin),
            Some(json!({"client_name": "burst", "rate_limit_per_minute": limit})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["key"]["rate_limit_per_minute"], limit);
    (
        body["plaintext"].as_str().unwrap().to_owned(),
        body["key"]["id"].as_str().unwrap().to_owned(),
    )
}

/// What one `GET /v1/me` with `key` got: status and the rate-limit headers.
#[derive(Debug)]
struct Answer {
    status: u16,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<u64>,
    retry_after: Option<u64>,
}

async fn me(server: &Server, key: &str) -> Answer {
    let response = server
        .http
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    Answer {
        status: response.status().as_u16(),
        limit: header("x-ratelimit-limit"),
        remaining: header("x-ratelimit-remaining"),
        reset: header("x-ratelimit-reset"),
        retry_after: header("retry-after"),
    }
}

/// A burst of `2 * limit` concurrent requests with `key`, spread over `servers`.
async fn burst(servers: &[&Server], key: &str, limit: u32) -> Vec<Answer> {
    let calls = (0..2 * limit as usize).map(|i| me(servers[i % servers.len()], key));
    futures::future::join_all(calls).await
}

fn check_burst(answers: &[Answer], limit: u32, label: &str) {
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        (ok.len(), limited.len()),
        (limit as usize, limit as usize),
        "{label}: {answers:?}"
    );
    let mut remaining: Vec<u64> = ok.iter().map(|a| a.remaining.unwrap()).collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..u64::from(limit)).collect::<Vec<_>>(),
        "{label}: each success saw its own count"
    );
    for a in &ok {
        assert_eq!(a.limit, Some(u64::from(limit)), "{label}");
        assert!(
            a.reset.is_some_and(|r| (1..=60).contains(&r)),
            "{label}: {a:?}"
        );
    }
    for a in &limited {
        assert_eq!(
            (a.limit, a.remaining),
            (Some(u64::from(limit)), Some(0)),
            "{label}"
        );
        assert!(
            a.retry_after.is_some_and(|r| (1..=60).contains(&r)),
            "{label}: {a:?}"
        );
    }
}

/// On one server: exactly N of 2N; an admin lifts the key's limit and it applies at once;
/// a per-user limit counts sessions and keys together.
#[tokio::test]
async fn a_key_gets_exactly_its_limit_on_one_server() {
    let tmp = TempDir::new("ratelimit-one");
    let server = Server::start(server_cmd(
        &tmp.0,
        &[(
            "ZEROSCALE_LIMITS__REQUESTS_PER_MINUTE_PER_USER",
            "1000".into(),
        )],
    ))
    .await;
    let (key, id) = limited_key(&server, 10).await;
    let answers = burst(&[&server], &key, 10).await;
    check_burst(&answers, 10, "one server");

    let admin = common::login(&server, ADMIN, ADMIN_PASSWORD).await;
    let (status, body) = server
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/api-keys/{id}"),
            Some(&admin),
            Some(json!({"rate_limit_per_minute": null})),
        )
        .await;
    assert_eq!(
        (status, &body["rate_limit_per_minute"]),
        (200, &json!(null)),
        "{body}"
    );
    // Back to the default (none per key): only the user's 1000 a minute remains.
    let after = me(&server, &key).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(after.limit, Some(1000), "{after:?}");
    server.terminate();

    let tmp = TempDir::new("ratelimit-user");
    let server = Server::start(server_cmd(
        &tmp.0,
        &[("ZEROSCALE_LIMITS__REQUESTS_PER_MINUTE_PER_USER", "4".into())],
    ))
    .await;
    let session = common::register(&server, "counted").await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..6 {
            out.push(me(&server, &session).await.status);
        }
        out
    };
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    server.terminate();
}

async fn spread_over_two(env: &[(&str, String)], label: &str) {
    let tmp = TempDir::new(label);
    let (out, stderr) = {
        let out = server_cmd(&tmp.0, env)
            .args(["migrate", "up"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stderr)
    };
    assert!(out.status.success(), "migrate up: {stderr}");
    let a = Server::start(server_cmd(&tmp.0, env)).await;
    let b = Server::start(server_cmd(&tmp.0, env)).await;
    let (key, _) = limited_key(&a, 12).await;
    let answers = burst(&[&a, &b], &key, 12).await;
    check_burst(&answers, 12, label);
    a.terminate();
    b.terminate();
}

#[tokio::test]
async fn a_key_gets_exactly_its_limit_over_two_servers_on_postgres() {
    let Some(pg) = fresh_postgres("ratelimit").await else {
        return;
    };
    spread_over_two(&[("DATABASE_URL", pg)], "ratelimit-pg").await;
}

#[tokio::test]
async fn a_key_gets_exactly_its_limit_over_two_servers_on_redis() {
    let (Some(redis), Some(pg)) = (
        require_service("ZEROSCALE_TEST_REDIS_URL", "Redis"),
        fresh_postgres("ratelimitredis").await,
    ) else {
        return;
    };
    spread_over_two(
        &[
            ("DATABASE_URL", pg),
            ("ZEROSCALE_QUEUE__KIND", "redis".into()),
            ("REDIS_URL", redis),
            (
                "ZEROSCALE_QUEUE__KEY_PREFIX",
                format!("ratelimit-{}", std::process::id()),
            ),
        ],
        "ratelimit-redis",
    )
    .await;
}

/// The daily embedding token quota: requests go through until the tokens used reach it,
/// then 429 with `Retry-After` about a day away. Tokens are those the response's `usage`
/// reports (inputs the embedding cache answers cost none).
#[tokio::test]
async fn the_daily_embedding_quota() {
    let Some(model) = require_service("ZEROSCALE_TEST_MODEL_DIR", "the local model") else {
        return;
    };
    let tmp = TempDir::new("quota");
    let server = Server::start(server_cmd(
        &tmp.0,
        &[
            ("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", model),
            (
                "ZEROSCALE_LIMITS__EMBEDDING_TOKENS_PER_DAY_PER_USER",
                "40".into(),
            ),
        ],
    ))
    .await;
    let token = common::register(&server, "embedder").await;
    let mut used = 0u64;
    for attempt in 0..40 {
        let response = server
            .http
            .post(format!("{}/v1/embeddings", server.base))
            .bearer_auth(&token)
            // A new sentence each time: the embedding cache answers repeats for free.
            .json(&json!({"input": format!("short sentence number {attempt} to embed")}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body: serde_json::Value = response.json().await.unwrap();
        if status == 429 {
            assert!(used >= 40, "refused after {used} tokens: {body}");
            assert!(retry.is_some_and(|r| r > 23 * 3600), "{retry:?}");
            assert!(attempt > 1, "the quota allows some requests");
            server.terminate();
            return;
        }
        assert_eq!(status, 200, "{body}");
        assert!(used < 40, "a request started over the quota");
        used += body["usage"]["total_tokens"].as_u64().unwrap();
    }
    panic!("never refused after {used} tokens");
}

/// A Redis address nobody answers on (a port just freed).
fn dead_redis() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}/0")
}

/// With the counters' engine down (the queue on a Redis nobody answers), limits are
/// counted in the process: still exactly N of 2N, never unlimited.
#[tokio::test]
async fn limits_hold_per_process_while_the_counters_are_down() {
    let tmp = TempDir::new("ratelimit-down");
    let server = Server::start(server_cmd(
        &tmp.0,
        &[
            ("ZEROSCALE_QUEUE__KIND", "redis".into()),
            ("REDIS_URL", dead_redis()),
        ],
    ))
    .await;
    let (key, _) = limited_key(&server, 8).await;
    let answers = burst(&[&server], &key, 8).await;
    check_burst(&answers, 8, "counters down");
    server.terminate();
}
