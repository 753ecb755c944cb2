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

/// Two processes' fan-outs on one topic: each hears the other, never itself, only its own
/// deployment's topic, and learns when it is subscribed.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_fanout_reaches_the_other_processes() {
    use std::time::Duration;
    use zeroscale_core::config::RedisQueueConfig;
    use zeroscale_core::testing::require_service;
    use zeroscale_queue::fanout::{self, Heard};
    let Some(url) = require_service("ZEROSCALE_TEST_REDIS_URL", "Redis") else {
        return;
    };
    let prefix = format!("zs-fanout-{}", std::process::id());
    let config = |key_prefix: &str| {
        QueueConfig::Redis(RedisQueueConfig {
            url: url.clone().into(),
            key_prefix: key_prefix.to_owned(),
            ..Default::default()
        })
    };
    let one = fanout::connect(&config(&prefix), "auth")
        .await
        .unwrap()
        .unwrap();
    let two = fanout::connect(&config(&prefix), "auth")
        .await
        .unwrap()
        .unwrap();
    let other_app = fanout::connect(&config("elsewhere"), "auth")
        .await
        .unwrap()
        .unwrap();
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<Heard>) -> Heard {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("heard nothing within 5 s")
            .expect("listener stopped")
    }
    let mut heard_one = one.listen();
    let mut heard_two = two.listen();
    assert_eq!(next(&mut heard_one).await, Heard::Resumed);
    assert_eq!(next(&mut heard_two).await, Heard::Resumed);

    other_app.publish("user:not-ours").await.unwrap();
    one.publish("user:42").await.unwrap();
    two.publish("session:7").await.unwrap();
    assert_eq!(next(&mut heard_two).await, Heard::Message("user:42".into()));
    assert_eq!(
        next(&mut heard_one).await,
        Heard::Message("session:7".into())
    );
    // Nothing else: not its own message, not the other deployment's.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(heard_one.try_recv().is_err());
    assert!(heard_two.try_recv().is_err());
}
