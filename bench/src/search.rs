//! Vector search (#15): exact top-10 over 100,000 random unit vectors of 384 dimensions
//! through `Documents::search` (the in-memory index), against the time this machine takes
//! to read the same number of floats from memory on the same number of threads: the
//! bound a search cannot beat. On SQLite and on PostgreSQL without pgvector (exact mode).
//! Also reported: the first search of a fresh server (the index built from the table) and
//! a filtered search (a scan of the table). pgvector's approximate search is in `ann.rs`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::config::{
    ChatConfig, DatabaseConfig, PostgresConfig, SqliteConfig, VectorSearch,
};
use zeroscale_db::Db;
use zeroscale_db::domain::{Domain, NewDocument};

use crate::measure::{Figure, Goal, Plan, Stats, compare};

pub(crate) const DIMS: usize = 384;
const COLLECTION: &str = "bench";
/// Searches per round (each a fresh random query).
const SEARCHES: usize = 20;

/// A deterministic generator of numbers in [-0.5, 0.5).
pub(crate) fn random(mut seed: u64) -> impl FnMut() -> f32 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }
}

pub(crate) fn unit(next: &mut impl FnMut() -> f32) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| next()).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// Reads `floats` (all of them) on `threads` threads; returns how long that took.
fn read_all(floats: &[f32], threads: usize) -> Duration {
    let started = Instant::now();
    let per = floats.len().div_ceil(threads);
    let sums: Vec<f32> = std::thread::scope(|s| {
        let handles: Vec<_> = floats
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let mut lanes = [0.0f32; 8];
                    let (chunks, rest) = part.as_chunks::<8>();
                    for c in chunks {
                        for i in 0..8 {
                            lanes[i] += c[i];
                        }
                    }
                    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(0.0))
            .collect()
    });
    black_box(sums);
    started.elapsed()
}

/// `cache` keeps what is slow to compute and the same from run to run (embeddings).
pub(crate) async fn run(plan: Plan, dir: &Path, cache: &Path) -> anyhow::Result<Vec<Figure>> {
    std::fs::create_dir_all(dir)?;
    let mut figures = Vec::new();
    let sqlite = DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(dir.join("search.db")),
        ..Default::default()
    });
    figures.extend(engine(plan, "SQLite", &sqlite).await?);
    match std::env::var("ZEROSCALE_TEST_POSTGRES_URL") {
        Ok(admin_url) => {
            let name = format!("zs_bench_search_{}", std::process::id());
            let url = crate::database::create_database(&admin_url, &name).await?;
            let config = DatabaseConfig::Postgres(PostgresConfig {
                url: url.clone().into(),
                vector_search: VectorSearch::Exact,
                ..Default::default()
            });
            let result = engine(plan, "PostgreSQL (exact)", &config).await;
            crate::database::drop_database(&url).await;
            figures.extend(result?);
        }
        Err(_) => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_POSTGRES_URL is not set: run `cargo xtask bench`, which starts PostgreSQL"
            );
            eprintln!("search: no ZEROSCALE_TEST_POSTGRES_URL, PostgreSQL skipped");
        }
    }
    match std::env::var("ZEROSCALE_TEST_PGVECTOR_URL") {
        Ok(admin_url) => figures.extend(crate::ann::run(plan, &admin_url, cache).await?),
        Err(_) => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_PGVECTOR_URL is not set: run `cargo xtask bench`, which starts PostgreSQL with pgvector"
            );
            eprintln!("search: no ZEROSCALE_TEST_PGVECTOR_URL, pgvector skipped");
        }
    }
    Ok(figures)
}

pub(crate) async fn domain(config: &DatabaseConfig) -> anyhow::Result<Domain> {
    let db = Db::connect(config).await?;
    db.migrate_up().await?;
    Ok(Domain::new(db, Default::default(), ChatConfig::default()))
}

/// Inserts `n` documents into `collection`, each a random unit vector from `next` with
/// metadata `{"even": i % 2 == 0}`, a thousand at a time; their ids.
pub(crate) async fn insert_random(
    d: &Domain,
    collection: &str,
    n: usize,
    next: &mut impl FnMut() -> f32,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1_000) {
        let docs = (start..(start + 1_000).min(n))
            .map(|i| NewDocument {
                collection: collection.into(),
                content: format!("document {i}"),
                metadata: json!({"even": i % 2 == 0}),
                embedding_model: "random-384".into(),
                vector: unit(next),
            })
            .collect();
        ids.extend(
            d.documents()
                .insert_many(docs)
                .await?
                .into_iter()
                .map(|d| d.id),
        );
    }
    Ok(ids)
}

async fn engine(plan: Plan, label: &str, config: &DatabaseConfig) -> anyhow::Result<Vec<Figure>> {
    let n = plan.size(100_000, 5_000);
    let d = domain(config).await?;
    let mut next = random(2026);
    insert_random(&d, COLLECTION, n, &mut next).await?;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    let floats: Vec<f32> = (0..n * DIMS).map(|i| (i % 7) as f32).collect();
    let queries: Vec<Vec<f32>> = (0..SEARCHES).map(|_| unit(&mut next)).collect();
    let mut figures = Vec::new();

    // The first search of a fresh server builds the index from the table.
    let mut first = Vec::new();
    for _ in 0..plan.rounds.min(3) {
        let fresh = Domain::new(d.db().clone(), Default::default(), ChatConfig::default());
        let started = Instant::now();
        fresh
            .documents()
            .search(COLLECTION, &queries[0], 10, None)
            .await?;
        first.push(started.elapsed().as_secs_f64() * 1e3);
    }
    figures.push(Figure {
        concern: "search",
        name: format!(
            "{label} first search of a fresh server ({n} × {DIMS}: the index built from the table)"
        ),
        unit: "ms",
        ours: Stats::of(&first),
        theirs: None,
        against: None,
        ratio: None,
        goal: Goal::Report,
        pass: None,
        rounds: first.len(),
    });

    let error = std::cell::RefCell::new(None);
    let figure = compare(
        plan,
        "search",
        format!("{label} exact top-10 over {n} × {DIMS} vectors, {SEARCHES} searches (goal: ≤ 2× reading them)"),
        format!("reading {n} × {DIMS} floats from memory, {threads} threads, {SEARCHES} times"),
        Goal::AtMost { ratio: 2.0 },
        |_| {
            let d = &d;
            let queries = &queries;
            let error = &error;
            async move {
                let started = Instant::now();
                for q in queries {
                    if let Err(e) = d.documents().search(COLLECTION, q, 10, None).await {
                        error.borrow_mut().get_or_insert(e);
                    }
                }
                started.elapsed()
            }
        },
        |_| {
            let floats = &floats;
            async move {
                (0..SEARCHES)
                    .map(|_| read_all(floats, threads))
                    .sum()
            }
        },
    )
    .await;
    if let Some(e) = error.into_inner() {
        return Err(e.into());
    }
    figures.push(figure);

    // A metadata filter scans the table instead.
    let filter = json!({"even": true}).as_object().cloned();
    let mut scanned = Vec::new();
    for q in queries.iter().take(plan.rounds.min(3)) {
        let started = Instant::now();
        d.documents()
            .search(COLLECTION, q, 10, filter.as_ref())
            .await?;
        scanned.push(started.elapsed().as_secs_f64() * 1e3);
    }
    figures.push(Figure {
        concern: "search",
        name: format!(
            "{label} filtered top-10 over {n} × {DIMS} (a scan of the table), one search"
        ),
        unit: "ms",
        ours: Stats::of(&scanned),
        theirs: None,
        against: None,
        ratio: None,
        goal: Goal::Report,
        pass: None,
        rounds: scanned.len(),
    });
    d.db().clone().close().await?;
    Ok(figures)
}
