//! The verified-credential and chat-page caches against real engines: two `Domain`s over
//! one database stand for two instances. What one changes shows on itself at once, on the other once
//! the change is applied there (what the fan-out does), and without it within the TTL.

mod common;

use std::time::Duration;

use serde_json::json;
use zeroscale_core::Error;
use zeroscale_core::config::{AuthConfig, ChatConfig};
use zeroscale_core::domain::ChatRole;
use zeroscale_core::domain::Role;
use zeroscale_db::Db;
use zeroscale_db::domain::{AuthChange, Domain, NewApiKey, NewGeneration, NewMessage, NewUser};

fn instance(db: &Db, cache_ttl_ms: u64) -> Domain {
    Domain::new(
        db.clone(),
        AuthConfig {
            cache_ttl_ms,
            ..common::test_auth()
        },
        ChatConfig::default(),
    )
}

fn unauthenticated<T: std::fmt::Debug>(result: zeroscale_core::Result<T>, what: &str) {
    match result {
        Err(Error::Unauthenticated { .. }) => {}
        other => panic!("{what}: expected Unauthenticated, got {other:?}"),
    }
}

/// Hands over every change `from` announced since `heard` subscribed.
fn deliver(heard: &mut tokio::sync::broadcast::Receiver<AuthChange>, to: &Domain) -> usize {
    let mut n = 0;
    while let Ok(change) = heard.try_recv() {
        to.apply_auth_change(&change);
        n += 1;
    }
    n
}

async fn suite(db: &Db) {
    let a = instance(db, 60_000);
    let b = instance(db, 60_000);
    let mut heard = a.auth_changes();
    let u = a
        .users()
        .register(NewUser {
            username: "cached".into(),
            password: "correct horse".into(),
            role: Role::User,
            credits: 10,
        })
        .await
        .unwrap();
    let session = a.sessions().create(&u.id).await.unwrap();
    let key = a
        .api_keys()
        .create(NewApiKey {
            user_id: u.id.clone(),
            client_name: "bench".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Both instances verify (and cache) both credentials.
    for d in [&a, &b] {
        d.sessions().validate(&session.token).await.unwrap();
        d.api_keys().validate(&key.plaintext).await.unwrap();
    }

    // A balance change through `a` shows on `a` at once, on `b` once delivered.
    a.credits()
        .reserve(NewGeneration {
            user_id: u.id.clone(),
            model: "m".into(),
            prompt: "p".into(),
            params: json!({}),
            cost: 3,
        })
        .await
        .unwrap();
    let (_, seen) = a.sessions().validate(&session.token).await.unwrap();
    assert_eq!(
        seen.credits, 7,
        "the instance that debited shows it at once"
    );
    let (_, seen) = b.sessions().validate(&session.token).await.unwrap();
    assert_eq!(
        seen.credits, 10,
        "`b` still trusts what it verified (cached)"
    );
    assert!(deliver(&mut heard, &b) >= 1, "the debit was announced");
    let (_, seen) = b.sessions().validate(&session.token).await.unwrap();
    assert_eq!(seen.credits, 7, "`b` after the announcement");

    // Revoking the key through `a`.
    b.api_keys().validate(&key.plaintext).await.unwrap();
    a.api_keys().revoke(&key.key.id).await.unwrap();
    unauthenticated(
        a.api_keys().validate(&key.plaintext).await,
        "revoked key on a",
    );
    b.api_keys()
        .validate(&key.plaintext)
        .await
        .expect("`b` has not heard yet");
    deliver(&mut heard, &b);
    unauthenticated(
        b.api_keys().validate(&key.plaintext).await,
        "revoked key on b",
    );

    // Deactivating the user through `a` ends the session everywhere it is heard.
    b.sessions().validate(&session.token).await.unwrap();
    a.users().set_active(&u.id, false).await.unwrap();
    unauthenticated(a.sessions().validate(&session.token).await, "inactive on a");
    b.sessions()
        .validate(&session.token)
        .await
        .expect("`b` has not heard yet");
    deliver(&mut heard, &b);
    unauthenticated(b.sessions().validate(&session.token).await, "inactive on b");
    a.users().set_active(&u.id, true).await.unwrap();
    deliver(&mut heard, &b);

    // Logout through `a`.
    b.sessions().validate(&session.token).await.unwrap();
    a.sessions().revoke_token(&session.token).await.unwrap();
    unauthenticated(
        a.sessions().validate(&session.token).await,
        "logged out on a",
    );
    deliver(&mut heard, &b);
    unauthenticated(
        b.sessions().validate(&session.token).await,
        "logged out on b",
    );

    // Without the announcement, a change shows within the TTL.
    let short = instance(db, 200);
    let second = a.sessions().create(&u.id).await.unwrap();
    short.sessions().validate(&second.token).await.unwrap();
    a.sessions().revoke(&second.session.id).await.unwrap();
    short
        .sessions()
        .validate(&second.token)
        .await
        .expect("cached within the TTL");
    tokio::time::sleep(Duration::from_millis(250)).await;
    unauthenticated(
        short.sessions().validate(&second.token).await,
        "after the TTL",
    );

    // A TTL of 0 reads the database every time.
    let uncached = instance(db, 0);
    let third = a.sessions().create(&u.id).await.unwrap();
    uncached.sessions().validate(&third.token).await.unwrap();
    a.sessions().revoke(&third.session.id).await.unwrap();
    unauthenticated(uncached.sessions().validate(&third.token).await, "TTL 0");

    // `last_used_at` is written at most once a minute.
    let fresh = a
        .api_keys()
        .create(NewApiKey {
            user_id: u.id.clone(),
            client_name: "minute".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (first, _) = uncached
        .api_keys()
        .validate(&fresh.plaintext)
        .await
        .unwrap();
    let (again, _) = uncached
        .api_keys()
        .validate(&fresh.plaintext)
        .await
        .unwrap();
    assert!(first.last_used_at.is_some());
    assert_eq!(first.last_used_at, again.last_used_at, "kept to the minute");
    let stored = a.api_keys().get(&fresh.key.id).await.unwrap().last_used_at;
    let gap = stored.unwrap() - first.last_used_at.unwrap();
    assert!(gap.num_milliseconds().abs() < 1, "stored {stored:?}");
}

fn chat_instance(db: &Db, cache_ttl_ms: u64) -> Domain {
    Domain::new(
        db.clone(),
        common::test_auth(),
        ChatConfig {
            cache_ttl_ms,
            ..ChatConfig::default()
        },
    )
}

async fn append(d: &Domain, session: &str, text: &str) {
    d.chat()
        .append(NewMessage {
            session_id: session.into(),
            role: ChatRole::User,
            content: text.into(),
            user_id: None,
            api_key_id: None,
            metadata: serde_json::Value::Null,
        })
        .await
        .unwrap();
}

async fn texts(d: &Domain, session: &str, after: Option<&str>, limit: u64) -> Vec<String> {
    d.chat()
        .list(session, after, Some(limit))
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.content)
        .collect()
}

async fn chat_suite(db: &Db) {
    let a = chat_instance(db, 60_000);
    let b = chat_instance(db, 60_000);
    let mut heard = a.auth_changes();
    append(&a, "u1:main", "one").await;
    append(&a, "u1:other", "elsewhere").await;
    while heard.try_recv().is_ok() {}
    for d in [&a, &b] {
        assert_eq!(texts(d, "u1:main", None, 100).await, ["one"]);
        assert_eq!(texts(d, "u1:other", None, 100).await, ["elsewhere"]);
    }
    // A hit is the same page, not a copy read again.
    let first = a
        .chat()
        .list_shared("u1:main", None, Some(100))
        .await
        .unwrap();
    let again = a
        .chat()
        .list_shared("u1:main", None, Some(100))
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "served from the cache"
    );

    // An append through `a` shows on `a` at once, on `b` once delivered.
    append(&a, "u1:main", "two").await;
    assert_eq!(texts(&a, "u1:main", None, 100).await, ["one", "two"]);
    assert_eq!(
        texts(&b, "u1:main", None, 100).await,
        ["one"],
        "`b` serves what it cached"
    );
    assert_eq!(deliver(&mut heard, &b), 1, "the append was announced");
    assert_eq!(texts(&b, "u1:main", None, 100).await, ["one", "two"]);
    // Other sessions stay cached; other cursors and sizes are their own pages.
    let other = b
        .chat()
        .list_shared("u1:other", None, Some(100))
        .await
        .unwrap();
    let other_again = b
        .chat()
        .list_shared("u1:other", None, Some(100))
        .await
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&other, &other_again));
    let page = a.chat().list("u1:main", None, Some(1)).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    let cursor = page.next_cursor.expect("a second page");
    assert_eq!(texts(&a, "u1:main", Some(&cursor), 1).await, ["two"]);

    // A delete through `a`.
    assert_eq!(a.chat().delete_session("u1:main").await.unwrap(), 2);
    assert!(texts(&a, "u1:main", None, 100).await.is_empty());
    assert_eq!(
        texts(&b, "u1:main", None, 100).await.len(),
        2,
        "not heard yet"
    );
    deliver(&mut heard, &b);
    assert!(texts(&b, "u1:main", None, 100).await.is_empty());

    // A missed announcement: `All` drops everything.
    append(&a, "u1:other", "more").await;
    b.apply_auth_change(&AuthChange::All);
    assert_eq!(
        texts(&b, "u1:other", None, 100).await,
        ["elsewhere", "more"]
    );

    // Without the announcement, a change shows within the TTL; a TTL of 0 reads every time.
    let short = chat_instance(db, 200);
    let uncached = chat_instance(db, 0);
    assert_eq!(texts(&short, "u1:other", None, 100).await.len(), 2);
    assert_eq!(texts(&uncached, "u1:other", None, 100).await.len(), 2);
    append(&a, "u1:other", "last").await;
    assert_eq!(
        texts(&short, "u1:other", None, 100).await.len(),
        2,
        "within the TTL"
    );
    assert_eq!(
        texts(&uncached, "u1:other", None, 100).await.len(),
        3,
        "TTL 0"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        texts(&short, "u1:other", None, 100).await.len(),
        3,
        "after the TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_cache_sqlite() {
    let db = common::sqlite("authcache").await;
    suite(&db.db).await;
    chat_suite(&db.db).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_cache_postgres() {
    let Some(db) = common::postgres("authcache").await else {
        return;
    };
    suite(&db.db).await;
    chat_suite(&db.db).await;
    db.cleanup().await;
}
