//! PgBouncer (Debian's 1.18, started by `cargo xtask services up --stage4`) in front of
//! PostgreSQL. In session mode the domain services work through its pool of 20 server
//! connections for 200 concurrent clients, the credit race included. In transaction mode
//! the driver's prepared statements cannot work (each client connection's statements
//! need one server connection), and the connection is refused with an error that names
//! the pool mode and the fix; docs/database.md#pgbouncer says why.

mod common;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use zeroscale_core::Error;
use zeroscale_core::config::{ChatConfig, VectorSearch};
use zeroscale_core::domain::Role;
use zeroscale_core::testing::require_service;
use zeroscale_db::domain::{Domain, NewGeneration, NewUser};

const CLIENTS: usize = 200;
/// Requests each client makes after registering.
const ROUNDS: usize = 10;

/// `url` (a PgBouncer's, naming `postgres`) for the database `name`.
fn through(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_mode_serves_200_clients_through_a_pool_of_20() {
    let Some(bouncer) = require_service("ZEROSCALE_TEST_PGBOUNCER_URL", "PgBouncer") else {
        return;
    };
    let Some(test_db) = common::postgres("pgbouncer").await else {
        return;
    };
    let url = through(&bouncer, &test_db.name);
    // Two app instances with 10 connections each. Session mode gives each client
    // connection a server connection of its own for as long as it lasts, so the
    // instances' pools must add up to PgBouncer's pool (20), or the rest wait.
    let mut domains = Vec::new();
    for _ in 0..2 {
        let db = common::connect_postgres_with(&url, 10, VectorSearch::Auto)
            .await
            .expect("connect through PgBouncer in session mode");
        domains.push(Arc::new(Domain::new(
            db,
            common::test_auth(),
            ChatConfig::default(),
        )));
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let d = domains[client % 2].clone();
        tasks.push(tokio::spawn(async move {
            let user = d
                .users()
                .register(NewUser {
                    username: format!("client{client}"),
                    password: "correct horse".to_owned(),
                    role: Role::User,
                    credits: 100,
                })
                .await?;
            for round in 0..ROUNDS {
                d.users()
                    .authenticate(&user.username, "correct horse")
                    .await?;
                let generation = d
                    .credits()
                    .reserve(NewGeneration {
                        user_id: user.id.clone(),
                        model: "m".into(),
                        prompt: format!("round {round}"),
                        params: json!({}),
                        cost: 2,
                    })
                    .await?;
                d.credits()
                    .complete(&generation.id, "p", 1, json!({"ok": round}))
                    .await?;
            }
            let user = d.users().get(&user.id).await?;
            let history = d.credits().list_for_user(&user.id, None, Some(50)).await?;
            Ok::<_, Error>((user.credits, history.len()))
        }));
    }
    for (client, task) in tasks.into_iter().enumerate() {
        let (credits, history) = task
            .await
            .expect("client task")
            .unwrap_or_else(|e| panic!("client {client} through PgBouncer: {}", e.chain()));
        assert_eq!(
            (credits, history),
            (100 - ROUNDS as i64, ROUNDS),
            "client {client}: each round charged its actual cost once"
        );
    }
    eprintln!(
        "{CLIENTS} clients x {ROUNDS} rounds through PgBouncer (session mode, 20 server \
         connections) in {:?}",
        started.elapsed()
    );

    // The credit race, across both instances: 50 reservations against a balance that
    // covers 10; exactly 10 succeed.
    let crowd = domains[0]
        .users()
        .register(NewUser {
            username: "crowd".to_owned(),
            password: "correct horse".to_owned(),
            role: Role::User,
            credits: 10,
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let d = domains[i % 2].clone();
        let user_id = crowd.id.clone();
        tasks.push(tokio::spawn(async move {
            d.credits()
                .reserve(NewGeneration {
                    user_id,
                    model: "m".into(),
                    prompt: format!("p{i}"),
                    params: json!({}),
                    cost: 1,
                })
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            Err(Error::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error: {}", other.chain()),
        }
    }
    assert_eq!(
        ok, 10,
        "exactly the balance's worth of reservations succeed"
    );
    assert_eq!(domains[1].users().get(&crowd.id).await.unwrap().credits, 0);
    drop(domains);
    test_db.cleanup().await;
}

#[tokio::test]
async fn transaction_mode_is_refused_naming_the_pool_mode() {
    let Some(bouncer) = require_service(
        "ZEROSCALE_TEST_PGBOUNCER_TXN_URL",
        "PgBouncer (transaction mode)",
    ) else {
        return;
    };
    let Some(test_db) = common::postgres("pgbouncer_txn").await else {
        return;
    };
    // Two connections, so their named statements meet on PgBouncer's server connections.
    let url = through(&bouncer, &test_db.name);
    let mut refused = None;
    for _ in 0..5 {
        let attempt = async {
            let db = common::connect_postgres_with(&url, 4, VectorSearch::Auto).await?;
            let d = Domain::new(db, common::test_auth(), ChatConfig::default());
            for i in 0..20 {
                let _ = d.users().by_username(&format!("nobody{i}")).await;
                d.users().count().await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(e) = attempt.await {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect(
        "zeroscale worked through PgBouncer in transaction mode: the driver no longer \
         needs session state, so update docs/database.md#pgbouncer and this test",
    );
    let text = e.chain();
    assert!(
        matches!(e, Error::Config { .. }) && text.contains("pool_mode = session"),
        "the error names the pool mode and the fix: {text}"
    );
    test_db.cleanup().await;
}
