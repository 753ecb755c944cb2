//! pgvector against exact search: the same hits, filters that leave few candidates, and
//! the recall check that keeps a poor index from answering.

use sea_orm::ConnectionTrait;
use serde_json::json;
use zeroscale_core::config::{
    DatabaseConfig, PgvectorConfig, PostgresConfig, RecallFallback, VectorSearch,
};
use zeroscale_db::domain::{Domain, NewDocument};
use zeroscale_db::{Db, VectorBackend};

use super::{chat_config, common, pseudo_random};

/// The same documents searched exactly and through pgvector give the same hits; documents
/// stored before pgvector was enabled are backfilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_matches_exact_search_and_backfills() {
    let Some(exact) = common::postgres_on(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        "compare",
        VectorSearch::Exact,
    )
    .await
    else {
        return;
    };
    assert_eq!(exact.db.vector_backend(), VectorBackend::Exact);
    let d = exact.domain(chat_config());
    // 300 pseudo-random 16-dimensional vectors in two collections.
    let mut next = pseudo_random(42);
    for i in 0..300 {
        let vector: Vec<f32> = (0..16).map(|_| next()).collect();
        d.documents()
            .insert(NewDocument {
                collection: if i % 3 == 0 { "b" } else { "a" }.into(),
                content: format!("doc {i}"),
                metadata: json!({"parity": i % 2}),
                embedding_model: "random-16".into(),
                vector,
            })
            .await
            .unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..5).map(|_| (0..16).map(|_| next()).collect()).collect();
    let vector_db =
        common::connect_postgres_with(exact.url.as_deref().unwrap(), 4, VectorSearch::Pgvector)
            .await
            .unwrap();
    let pv = Domain::new(vector_db, common::test_auth(), chat_config());
    for q in &queries {
        for filter in [None, json!({"parity": 1}).as_object().cloned()] {
            let want = d
                .documents()
                .search("a", q, 10, filter.as_ref())
                .await
                .unwrap();
            let got = pv
                .documents()
                .search("a", q, 10, filter.as_ref())
                .await
                .unwrap();
            let ids = |hits: &[zeroscale_core::domain::SearchHit]| {
                hits.iter()
                    .map(|h| h.document.content.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&got), ids(&want), "pgvector and exact search disagree");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.score - w.score).abs() < 1e-5,
                    "{} vs {}",
                    g.score,
                    w.score
                );
            }
        }
    }
    exact.cleanup().await;
}

/// Filters that leave few of the index's candidates (a small collection beside a big one,
/// a rare metadata value) still give exact search's top k: with iterative scan on
/// pgvector ≥ 0.8, by the exact fallback on older versions (the test engine has 0.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_selective_filters_match_exact_search() {
    let Some(exact) = common::postgres_on(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        "selective",
        VectorSearch::Exact,
    )
    .await
    else {
        return;
    };
    let d = exact.domain(chat_config());
    let mut next = pseudo_random(7);
    let doc = |collection: &str, i: usize, vector: Vec<f32>| NewDocument {
        collection: collection.into(),
        content: format!("{collection} {i}"),
        metadata: json!({"rare": i.is_multiple_of(150)}),
        embedding_model: "random-16".into(),
        vector,
    };
    // 1,500 documents: more than the 1,000 candidates an HNSW scan gives at most.
    let big: Vec<NewDocument> = (0..1500)
        .map(|i| doc("big", i, (0..16).map(|_| next()).collect()))
        .collect();
    d.documents().insert_many(big).await.unwrap();
    for i in 0..4 {
        d.documents()
            .insert(doc("small", i, (0..16).map(|_| next()).collect()))
            .await
            .unwrap();
    }
    let vector_db =
        common::connect_postgres_with(exact.url.as_deref().unwrap(), 4, VectorSearch::Pgvector)
            .await
            .unwrap();
    let pv = Domain::new(vector_db, common::test_auth(), chat_config());
    let rare = json!({"rare": true}).as_object().cloned();
    for _ in 0..3 {
        let q: Vec<f32> = (0..16).map(|_| next()).collect();
        for (collection, filter, expected) in [("small", None, 4), ("big", rare.as_ref(), 10)] {
            let want = d
                .documents()
                .search(collection, &q, 10, filter)
                .await
                .unwrap();
            let got = pv
                .documents()
                .search(collection, &q, 10, filter)
                .await
                .unwrap();
            let ids = |hits: &[zeroscale_core::domain::SearchHit]| {
                hits.iter()
                    .map(|h| h.document.content.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(want.len(), expected);
            assert_eq!(
                ids(&got),
                ids(&want),
                "{collection}: pgvector and exact disagree"
            );
        }
    }
    exact.cleanup().await;
}

/// A pgvector database on `url` with these index options.
async fn pgvector_db(url: &str, pgvector: PgvectorConfig) -> Db {
    Db::connect(&DatabaseConfig::Postgres(PostgresConfig {
        url: url.to_owned().into(),
        max_connections: 4,
        min_connections: 0,
        vector_search: VectorSearch::Pgvector,
        pgvector,
        ..Default::default()
    }))
    .await
    .unwrap()
}

/// How many of `queries` get other hits from `d` than from exact search on `exact`.
async fn misses(exact: &Domain, d: &Domain, queries: &[Vec<f32>]) -> usize {
    let mut differ = 0;
    for q in queries {
        let want = exact.documents().search("r", q, 10, None).await.unwrap();
        let got = d.documents().search("r", q, 10, None).await.unwrap();
        let ids = |hits: &[zeroscale_core::domain::SearchHit]| {
            hits.iter()
                .map(|h| h.document.content.clone())
                .collect::<Vec<_>>()
        };
        if ids(&got) != ids(&want) {
            differ += 1;
        }
    }
    differ
}

/// A sparse graph (m 2, ef_construction 4, 10 candidates a search) misses neighbours of
/// random vectors: the recall check measures it, and with `min_recall` set, searches scan
/// exactly (after an explicit check, and by themselves in the background); pgvector's
/// default build passes the check, and replaces the sparse index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_recall_check_keeps_a_poor_index_from_answering() {
    let Some(exact) = common::postgres_on(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        "recall",
        VectorSearch::Exact,
    )
    .await
    else {
        return;
    };
    let url = exact.url.clone().unwrap();
    let d = exact.domain(chat_config());
    const DIMS: usize = 96;
    let mut next = pseudo_random(11);
    let docs: Vec<NewDocument> = (0..2000)
        .map(|i| NewDocument {
            collection: "r".into(),
            content: format!("r {i}"),
            metadata: json!({}),
            embedding_model: "random-96".into(),
            vector: (0..DIMS).map(|_| next()).collect(),
        })
        .collect();
    d.documents().insert_many(docs).await.unwrap();
    let queries: Vec<Vec<f32>> = (0..10)
        .map(|_| (0..DIMS).map(|_| next()).collect())
        .collect();
    let sparse = PgvectorConfig {
        m: 2,
        ef_construction: 4,
        ef_search: 10,
        ..PgvectorConfig::default()
    };
    let domain = |db| Domain::new(db, common::test_auth(), chat_config());

    // The check off: the sparse index answers, and misses.
    let unchecked = domain(
        pgvector_db(
            &url,
            PgvectorConfig {
                min_recall: 0.0,
                ..sparse.clone()
            },
        )
        .await,
    );
    let check = unchecked
        .documents()
        .check_vector_index(DIMS)
        .await
        .unwrap()
        .expect("pgvector checks its index");
    assert_eq!(
        (check.dimensions, check.vectors, check.sample),
        (DIMS, 2000, 20)
    );
    assert!(check.recall < 0.9, "a sparse graph found {}", check.recall);
    assert!(check.index_answers, "min_recall 0 lets any index answer");
    assert!(misses(&d, &unchecked, &queries).await > 0);

    // Checked: after a failed check every search is exact, from the in-memory index
    // (the default) or by a scan inside PostgreSQL.
    let checked = domain(pgvector_db(&url, sparse.clone()).await);
    let scanning = domain(
        pgvector_db(
            &url,
            PgvectorConfig {
                fallback: RecallFallback::Scan,
                ..sparse.clone()
            },
        )
        .await,
    );
    for d2 in [&checked, &scanning] {
        let check = d2
            .documents()
            .check_vector_index(DIMS)
            .await
            .unwrap()
            .unwrap();
        assert!(check.recall < 0.9 && !check.index_answers, "{check:?}");
        assert_eq!(misses(&d, d2, &queries).await, 0);
    }

    // Nobody asks: the first search starts the check, and searches turn exact after it.
    let background = domain(pgvector_db(&url, sparse.clone()).await);
    let started = std::time::Instant::now();
    loop {
        if misses(&d, &background, &queries).await == 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the background check never made searches exact"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // pgvector's default build on the same vectors passes, and its index replaces the
    // sparse one.
    let default = domain(pgvector_db(&url, PgvectorConfig::default()).await);
    let check = default
        .documents()
        .check_vector_index(DIMS)
        .await
        .unwrap()
        .unwrap();
    assert!(check.recall >= 0.95 && check.index_answers, "{check:?}");
    assert_eq!(misses(&d, &default, &queries).await, 0);
    let indexes: Vec<String> = zeroscale_db::testing::conn(default.db())
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT indexname::text AS name FROM pg_indexes \
             WHERE tablename = 'document_vectors' AND indexname LIKE '%hnsw%' ORDER BY 1",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect();
    assert_eq!(indexes, ["document_vectors_hnsw_96"]);

    // Exact search has no index to check.
    assert!(
        d.documents()
            .check_vector_index(DIMS)
            .await
            .unwrap()
            .is_none()
    );
    for db in [unchecked, checked, scanning, background, default] {
        db.db().clone().close().await.unwrap();
    }
    exact.cleanup().await;
}
