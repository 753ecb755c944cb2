//! Login throttling (#17): per account and per client address, 429 with `Retry-After`,
//! the lock bounded, the right password working again after it, counters shared by two
//! servers on PostgreSQL and on Redis, and no account oracle in any of it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir, fresh_postgres};
use serde_json::json;
use zeroscale_core::testing::require_service;

const PASSWORD: &str = "long enough password";

/// A server whose throttling acts within a test's time: a wait of `base_ms` (doubling)
/// from the 4th failure of an account, a lock of `lock_secs` from its `lock_after`-th,
/// addresses locked after `address_lock_after`, and `X-Forwarded-For` believed from
/// 127.0.0.1.
fn throttled(
    dir: &std::path::Path,
    base_ms: u64,
    lock_after: u32,
    lock_secs: u64,
    address_lock_after: u32,
) -> Command {
    let mut cmd = common::zeroscale(dir);
    let settings = [
        ("FREE_FAILURES", "3".to_owned()),
        ("BASE_DELAY_MS", base_ms.to_string()),
        ("LOCK_AFTER", lock_after.to_string()),
        ("LOCK_SECS", lock_secs.to_string()),
        ("ADDRESS_LOCK_AFTER", address_lock_after.to_string()),
    ];
    for (key, value) in settings {
        cmd.env(format!("ZEROSCALE_AUTH__LOGIN_THROTTLE__{key}"), value);
    }
    cmd.env("ZEROSCALE_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]");
    cmd
}

/// One login: status, `Retry-After` in seconds, and the error message.
async fn attempt(
    server: &Server,
    username: &str,
    password: &str,
    from: &str,
) -> (u16, Option<u64>, String) {
    let response = server
        .http
        .post(format!("{}/v1/auth/login", server.base))
        .header("x-forwarded-for", from)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, retry, message)
}

/// The message without its number of seconds, to compare two 429s.
fn shape(message: &str) -> String {
    message.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// 50 wrong passwords in a burst for one account from ten addresses: three are checked
/// free, the 4th starts a 2 s wait and every attempt in it is 429 with `Retry-After`;
/// after the wait the next failure locks the account, the right password included; once
/// the lock ends the right password works, and a success clears the count. An unknown
/// name is throttled the same way, with the same answer.
#[tokio::test]
async fn one_account_from_many_addresses() {
    let tmp = TempDir::new("throttle-account");
    let server = Server::start(throttled(&tmp.0, 2000, 5, 4, 1000)).await;
    common::register(&server, "victim").await;
    let (mut checked, mut throttled_answers) = (0, Vec::new());
    for i in 0..50 {
        let from = format!("198.51.100.{}", i % 10);
        let (status, retry, message) = attempt(&server, "victim", "guess", &from).await;
        match status {
            401 => checked += 1,
            429 => {
                let retry = retry.expect("a 429 without Retry-After");
                assert!((1..=2).contains(&retry), "Retry-After {retry}");
                throttled_answers.push(message);
            }
            other => panic!("attempt {i}: {other} {message}"),
        }
    }
    assert_eq!(checked, 4, "passwords checked before the wait");
    assert_eq!(throttled_answers.len(), 46);
    let (status, retry, _) = attempt(&server, "victim", PASSWORD, "203.0.113.1").await;
    assert_eq!(status, 429, "the right password during the wait");
    tokio::time::sleep(Duration::from_secs(retry.unwrap())).await;
    let (status, ..) = attempt(&server, "victim", "guess", "203.0.113.1").await;
    assert_eq!(status, 401, "after the wait, one more guess is checked");
    let (status, retry, _) = attempt(&server, "victim", PASSWORD, "203.0.113.1").await;
    assert_eq!(status, 429, "the right password during the lock");
    assert!((3..=4).contains(&retry.unwrap()), "the lock's Retry-After");
    tokio::time::sleep(Duration::from_secs(retry.unwrap())).await;
    let (status, _, message) = attempt(&server, "victim", PASSWORD, "203.0.113.1").await;
    assert_eq!(status, 200, "after the lock: {message}");
    // The success cleared the account's count: three more failures cost no wait.
    for _ in 0..3 {
        assert_eq!(
            attempt(&server, "victim", "guess", "203.0.113.1").await.0,
            401
        );
    }
    assert_eq!(
        attempt(&server, "victim", PASSWORD, "203.0.113.1").await.0,
        200
    );

    // A name nobody has is counted and answered exactly alike: the same attempts are
    // checked before the wait, and the 429 reads the same.
    let (mut unknown_checked, mut unknown) = (0, Vec::new());
    for i in 0..12 {
        let (status, retry, message) =
            attempt(&server, "nobody-here", "guess", &format!("192.0.2.{i}")).await;
        match status {
            401 => unknown_checked += 1,
            429 => {
                assert!(retry.is_some(), "a 429 without Retry-After");
                unknown.push(message);
            }
            other => panic!("{other} {message}"),
        }
    }
    assert_eq!(
        unknown_checked, 4,
        "an unknown name is throttled as soon as an account"
    );
    assert_eq!(
        shape(&unknown[0]),
        shape(&throttled_answers[0]),
        "a throttled unknown name must read like a throttled account"
    );
    server.terminate();
}

/// One address failing on many accounts is locked for every account, the right password
/// included; other addresses are not. Without trusted proxies `X-Forwarded-For` is
/// ignored: every attempt counts against the socket's address.
#[tokio::test]
async fn one_address_across_accounts() {
    let tmp = TempDir::new("throttle-address");
    let server = Server::start(throttled(&tmp.0, 200, 6, 30, 5)).await;
    common::register(&server, "carol").await;
    for i in 0..5 {
        let (status, ..) = attempt(&server, &format!("user{i}"), "guess", "198.51.100.99").await;
        assert_eq!(status, 401);
    }
    let (status, retry, _) = attempt(&server, "carol", PASSWORD, "198.51.100.99").await;
    assert_eq!(status, 429, "the locked address");
    assert!(retry.unwrap() > 20);
    let (status, ..) = attempt(&server, "carol", PASSWORD, "198.51.100.100").await;
    assert_eq!(status, 200, "another address");
    server.terminate();

    let tmp = TempDir::new("throttle-untrusted");
    let mut cmd = throttled(&tmp.0, 200, 6, 30, 5);
    cmd.env("ZEROSCALE_SERVER__TRUSTED_PROXIES", "[]");
    let server = Server::start(cmd).await;
    common::register(&server, "dave").await;
    for i in 0..5 {
        let from = format!("198.51.100.{i}");
        assert_eq!(
            attempt(&server, &format!("user{i}"), "guess", &from)
                .await
                .0,
            401
        );
    }
    let (status, ..) = attempt(&server, "dave", PASSWORD, "203.0.113.50").await;
    assert_eq!(
        status, 429,
        "a forged X-Forwarded-For escaped the address lock"
    );
    server.terminate();
}

/// Two servers count together: failures on one lock the account on the other.
async fn shared_by_two_servers(env: &[(&str, String)], label: &str) {
    let tmp = TempDir::new(label);
    let start = || {
        let mut cmd = throttled(&tmp.0, 200, 6, 30, 1000);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd
    };
    let (out, stderr) = {
        let mut migrate = start();
        let out = migrate.args(["migrate", "up"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stderr)
    };
    assert!(out.status.success(), "migrate up: {stderr}");
    let a = Server::start(start()).await;
    let b = Server::start(start()).await;
    common::register(&a, "shared").await;
    for i in 0..3 {
        let server = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            attempt(server, "shared", "guess", "198.51.100.1").await.0,
            401
        );
    }
    // The 4th failure, on `b`, starts a wait that `a` honours, and the 6th a lock.
    assert_eq!(attempt(&b, "shared", "guess", "198.51.100.1").await.0, 401);
    let (status, ..) = attempt(&a, "shared", PASSWORD, "198.51.100.1").await;
    assert_eq!(status, 429, "{label}: server a did not see b's failures");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempt(&a, "shared", "guess", "198.51.100.1").await.0, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(attempt(&b, "shared", "guess", "198.51.100.1").await.0, 401);
    let (status, retry, _) = attempt(&a, "shared", PASSWORD, "198.51.100.1").await;
    assert_eq!(
        (status, retry.map(|r| r > 20)),
        (429, Some(true)),
        "{label}: the lock"
    );
    a.terminate();
    b.terminate();
}

#[tokio::test]
async fn shared_by_two_servers_on_postgres() {
    let Some(pg) = fresh_postgres("throttle").await else {
        return;
    };
    shared_by_two_servers(&[("DATABASE_URL", pg)], "throttle-pg").await;
}

#[tokio::test]
async fn shared_by_two_servers_on_redis() {
    let (Some(redis), Some(pg)) = (
        require_service("ZEROSCALE_TEST_REDIS_URL", "Redis"),
        fresh_postgres("throttleredis").await,
    ) else {
        return;
    };
    let prefix = format!("throttle-{}", std::process::id());
    shared_by_two_servers(
        &[
            ("DATABASE_URL", pg),
            ("ZEROSCALE_QUEUE__KIND", "redis".to_owned()),
            ("REDIS_URL", redis),
            ("ZEROSCALE_QUEUE__KEY_PREFIX", prefix),
        ],
        "throttle-redis",
    )
    .await;
}

/// With the counters' engine down (the queue on a Redis nobody answers), failures are
/// counted in the process: the wait and the lock still come, never unlimited guessing.
#[tokio::test]
async fn throttling_holds_while_the_counters_are_down() {
    let tmp = TempDir::new("throttle-down");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "redis://127.0.0.1:{}/0",
        listener.local_addr().unwrap().port()
    );
    drop(listener);
    let mut cmd = throttled(&tmp.0, 2000, 5, 30, 1000);
    cmd.env("ZEROSCALE_QUEUE__KIND", "redis")
        .env("REDIS_URL", dead);
    let server = Server::start(cmd).await;
    common::register(&server, "offline").await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..6 {
            out.push(attempt(&server, "offline", "guess", "198.51.100.7").await.0);
        }
        out
    };
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 429, 429],
        "counted in the process"
    );
    let (status, retry, _) = attempt(&server, "offline", PASSWORD, "198.51.100.7").await;
    assert_eq!(status, 429, "the right password during the wait");
    assert!(retry.is_some_and(|r| (1..=2).contains(&r)), "{retry:?}");
    server.terminate();
}
