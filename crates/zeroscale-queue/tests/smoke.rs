//! Smoke tests of the real queue engines. Redis comes from `cargo xtask services up`;
//! without it the test skips locally and fails in CI.

use zeroscale_core::config::{MemoryQueueConfig, QueueConfig};

#[tokio::test]
async fn memory_probe() {
    let config = QueueConfig::Memory(MemoryQueueConfig::default());
    zeroscale_queue::probe(&config)
        .await
        .expect("memory is always there");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_connect_write_read() {
    use zeroscale_core::config::RedisQueueConfig;
    use zeroscale_core::testing::require_service;
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let config = RedisQueueConfig {
        url: url.into(),
        ..Default::default()
    };
    zeroscale_queue::probe(&QueueConfig::Redis(config.clone()))
        .await
        .expect("probe");
    let mut conn = zeroscale_queue::testing::redis_connection(&config)
        .await
        .expect("connect");
    let key = format!("zeroscale-smoke-{}", std::process::id());
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("hello")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "hello");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_unreachable_is_unavailable_without_the_password() {
    use zeroscale_core::config::RedisQueueConfig;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = RedisQueueConfig {
        url: format!("redis://:secret@127.0.0.1:{port}").into(),
        connect_timeout_secs: 1,
        ..Default::default()
    };
    let err = zeroscale_queue::probe(&QueueConfig::Redis(config))
        .await
        .expect_err("nothing listens");
    let text = err.chain();
    assert!(
        matches!(err, zeroscale_core::Error::Unavailable { .. }),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[cfg(not(feature = "redis"))]
#[tokio::test]
async fn redis_not_compiled_in_names_the_feature() {
    let config = QueueConfig::Redis(Default::default());
    let err = zeroscale_queue::probe(&config)
        .await
        .expect_err("compiled out");
    assert!(err.to_string().contains("zeroscale-queue/redis"), "{err}");
}
