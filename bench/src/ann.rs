//! Approximate search (#15): pgvector through `Documents::search` (vector search
//! `pgvector`), its recall@10 against the exact top 10 of the same vectors (computed here,
//! in f64), and its latency against the exact in-memory index on the same server. Twice:
//! the HNSW index alone (recall check off), and as zeroscale searches by default (the
//! check decides whether the index answers or an exact scan does). On random unit vectors
//! (the hardest case for recall) and on real MiniLM embeddings of generated sentences.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::config::{DatabaseConfig, PgvectorConfig, PostgresConfig, VectorSearch};
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_db::domain::{Domain, NewDocument};
use zeroscale_models::local::LocalEmbeddings;

use crate::measure::{Figure, Goal, Plan, Stats, compare};
use crate::search::{DIMS, domain, random, unit};

const K: usize = 10;
/// Queries per round.
const QUERIES: usize = 20;

/// One set of vectors to search: its label and the vectors, with queries.
struct Set {
    label: &'static str,
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

/// The indices of the `k` vectors most cosine-similar to `query`, best first (f64).
fn exact_top(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let qn = query
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut scored: Vec<(f64, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f64 = v
                .iter()
                .zip(query)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let n = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            (dot / (n * qn).max(1e-30), i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

async fn load(d: &Domain, collection: &str, vectors: &[Vec<f32>]) -> anyhow::Result<()> {
    for (start, part) in (0..).step_by(1_000).zip(vectors.chunks(1_000)) {
        let docs = part
            .iter()
            .enumerate()
            .map(|(i, v)| NewDocument {
                collection: collection.into(),
                content: (start + i).to_string(),
                metadata: json!({}),
                embedding_model: "bench".into(),
                vector: v.clone(),
            })
            .collect();
        d.documents().insert_many(docs).await?;
    }
    Ok(())
}

/// Mean recall@K of `d`'s searches over `queries` against the exact answers.
async fn recall(
    d: &Domain,
    collection: &str,
    queries: &[Vec<f32>],
    exact: &[Vec<usize>],
) -> anyhow::Result<f64> {
    let mut found = 0usize;
    for (q, want) in queries.iter().zip(exact) {
        let hits = d.documents().search(collection, q, K, None).await?;
        let got: Vec<usize> = hits
            .iter()
            .filter_map(|h| h.document.content.parse().ok())
            .collect();
        found += want.iter().filter(|i| got.contains(i)).count();
    }
    Ok(found as f64 / (K * queries.len()).max(1) as f64)
}

/// How long `d` takes to answer `queries` (an hour if one fails, so the figure shows it).
async fn time(d: &Domain, collection: &str, queries: &[Vec<f32>]) -> Duration {
    let started = Instant::now();
    for q in queries {
        if d.documents().search(collection, q, K, None).await.is_err() {
            return Duration::from_secs(3600);
        }
    }
    started.elapsed()
}

/// The real set: MiniLM embeddings of generated sentences (the local model from
/// `ZEROSCALE_TEST_MODEL_DIR`), when it is installed. 100,000 of them (512 with `--quick`)
/// take minutes to compute, so they are kept in `cache` for the next run.
async fn real_set(plan: Plan, cache: &Path) -> anyhow::Result<Option<Set>> {
    let Some(dir) = std::env::var_os("ZEROSCALE_TEST_MODEL_DIR") else {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "ZEROSCALE_TEST_MODEL_DIR is not set: run `cargo xtask bench`, which installs the model"
        );
        return Ok(None);
    };
    let n = plan.size(100_000, 512);
    let count = n + plan.rounds * QUERIES;
    let file = cache_file(cache, Path::new(&dir), count);
    let mut vectors = match read_vectors(&file, count) {
        Some(vectors) => vectors,
        None => {
            let model = LocalEmbeddings::new("bench", "all-MiniLM-L6-v2", Path::new(&dir), 32);
            if count > 10_000 {
                eprintln!(
                    "search: embedding {count} sentences with the local model, once (kept in {})",
                    file.display()
                );
            }
            let response = model
                .embed(EmbeddingRequest::new(
                    "all-MiniLM-L6-v2",
                    crate::embeddings::sentences(count, 2026),
                ))
                .await?;
            write_vectors(&file, &response.vectors)?;
            response.vectors
        }
    };
    let queries = vectors.split_off(n);
    Ok(Some(Set {
        label: "real MiniLM vectors of generated sentences",
        vectors,
        queries,
    }))
}

/// Where `count` embeddings of the bench's sentences by the model in `model_dir` are kept:
/// named after the count and the model's weights (their size and modification time), so
/// another model or sentence count is computed afresh.
fn cache_file(cache: &Path, model_dir: &Path, count: usize) -> std::path::PathBuf {
    let weights = std::fs::metadata(model_dir.join("model.safetensors"));
    let stamp = weights.map_or(0, |m| {
        let modified = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        m.len() ^ modified.rotate_left(32)
    });
    cache.join(format!("minilm-sentences-2026-{count}-{stamp:x}.f32"))
}

/// `count` vectors of [`DIMS`] floats (little-endian), or `None` if the file is missing or
/// not exactly that.
fn read_vectors(file: &Path, count: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(file).ok()?;
    if bytes.len() != count * DIMS * 4 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(DIMS * 4)
            .map(|v| {
                v.chunks_exact(4)
                    .map(|f| f32::from_le_bytes([f[0], f[1], f[2], f[3]]))
                    .collect()
            })
            .collect(),
    )
}

fn write_vectors(file: &Path, vectors: &[Vec<f32>]) -> anyhow::Result<()> {
    anyhow::ensure!(
        vectors.iter().all(|v| v.len() == DIMS),
        "the model gave vectors of another size than {DIMS}"
    );
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    // Written aside and renamed: a run cut short leaves no half file to read next time.
    let part = file.with_extension("part");
    std::fs::write(&part, bytes)?;
    std::fs::rename(&part, file)?;
    Ok(())
}

pub(crate) async fn run(plan: Plan, admin_url: &str, cache: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut sets = Vec::new();
    let n = plan.size(100_000, 5_000);
    let mut next = random(77);
    sets.push(Set {
        label: "random unit vectors",
        vectors: (0..n).map(|_| unit(&mut next)).collect(),
        queries: (0..plan.rounds * QUERIES)
            .map(|_| unit(&mut next))
            .collect(),
    });
    sets.extend(real_set(plan, cache).await?);
    let mut figures = Vec::new();
    // A database per set: pgvector's index and its recall check cover every vector of a
    // size in a database, so each set is measured alone.
    for (s, set) in sets.iter().enumerate() {
        let name = format!("zs_bench_ann_{}_{s}", std::process::id());
        let url = crate::database::create_database(admin_url, &name).await?;
        let result = measure(plan, &url, set).await;
        crate::database::drop_database(&url).await;
        figures.extend(result?);
    }
    Ok(figures)
}

/// The index's options: zeroscale's defaults, or those `ZEROSCALE_BENCH_PGVECTOR` names
/// (`m=48,ef_construction=256,build_memory_mb=3072`; also `ef_search`), to measure
/// another build.
fn index_options() -> anyhow::Result<PgvectorConfig> {
    let mut options = PgvectorConfig::default();
    let Ok(spec) = std::env::var("ZEROSCALE_BENCH_PGVECTOR") else {
        return Ok(options);
    };
    for pair in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("ZEROSCALE_BENCH_PGVECTOR: `{pair}` is not key=value")
        })?;
        let value: u32 = value.trim().parse().map_err(|_| {
            anyhow::anyhow!("ZEROSCALE_BENCH_PGVECTOR: `{pair}` needs a whole number")
        })?;
        match key.trim() {
            "m" => options.m = value,
            "ef_construction" => options.ef_construction = value,
            "ef_search" => options.ef_search = value,
            "build_memory_mb" => options.build_memory_mb = value,
            other => anyhow::bail!(
                "ZEROSCALE_BENCH_PGVECTOR: unknown key `{other}` (m, ef_construction, ef_search, build_memory_mb)"
            ),
        }
    }
    options.validate()?;
    Ok(options)
}

async fn measure(plan: Plan, url: &str, set: &Set) -> anyhow::Result<Vec<Figure>> {
    let defaults = index_options()?;
    let config = |mode, min_recall| {
        DatabaseConfig::Postgres(PostgresConfig {
            url: url.to_owned().into(),
            vector_search: mode,
            pgvector: PgvectorConfig {
                min_recall,
                ..defaults.clone()
            },
            ..Default::default()
        })
    };
    // The index alone, and zeroscale's default (the recall check on).
    let hnsw = domain(&config(VectorSearch::Pgvector, 0.0)).await?;
    let checked = domain(&config(VectorSearch::Pgvector, defaults.min_recall)).await?;
    let exact = domain(&config(VectorSearch::Exact, 0.0)).await?;
    let mut figures = Vec::new();
    let collection = "ann";
    let n = set.vectors.len();
    let dims = set.vectors.first().map_or(DIMS, Vec::len);
    let started = Instant::now();
    load(&hnsw, collection, &set.vectors).await?;
    // The first search builds the index.
    hnsw.documents()
        .search(collection, &set.queries[0], K, None)
        .await?;
    let loaded = started.elapsed();
    let check = checked
        .documents()
        .check_vector_index(dims)
        .await?
        .ok_or_else(|| anyhow::anyhow!("pgvector gave no recall check"))?;
    let verdict = format!(
        "the check found {:.2} over {} stored vectors in {:.1} s: {}",
        check.recall,
        check.vectors,
        check.took.as_secs_f64(),
        if check.index_answers {
            "the index answers"
        } else {
            "the in-memory exact index answers"
        }
    );
    let truth: Vec<Vec<usize>> = set
        .queries
        .iter()
        .map(|q| exact_top(&set.vectors, q, K))
        .collect();
    // The exact path must find every one: a check of the check.
    let exact_recall = recall(
        &exact,
        collection,
        &set.queries[..QUERIES],
        &truth[..QUERIES],
    )
    .await?;
    anyhow::ensure!(
        exact_recall > 0.999,
        "exact search found {exact_recall} of the true top {K}: the recall check is wrong"
    );
    let runs = [
        (
            &hnsw,
            format!(
                "pgvector HNSW index alone (m {}, ef_construction {}, ef_search {}; recall check off)",
                defaults.m, defaults.ef_construction, defaults.ef_search
            ),
            Goal::Report,
        ),
        (
            &checked,
            format!("pgvector search as zeroscale runs it ({verdict})"),
            Goal::AtLeastValue { value: 0.95 },
        ),
    ];
    for (d, label, goal) in runs {
        let mut recalls = Vec::new();
        for round in 0..plan.rounds {
            let range = round * QUERIES..(round + 1) * QUERIES;
            recalls.push(recall(d, collection, &set.queries[range.clone()], &truth[range]).await?);
        }
        let recall = Stats::of(&recalls);
        figures.push(Figure {
                concern: "search",
                name: format!(
                    "{label}: recall@{K} over {n} × {dims} {}, {QUERIES} queries a round (loaded and indexed in {:.1} s)",
                    set.label,
                    loaded.as_secs_f64()
                ),
                unit: "recall",
                ours: recall,
                theirs: None,
                against: Some("the exact top 10".to_owned()),
                ratio: None,
                pass: match goal {
                    Goal::Report => None,
                    _ => (!plan.quick).then_some(recall.median >= 0.95),
                },
                goal,
                rounds: recalls.len(),
            });
        let queries = &set.queries[..QUERIES];
        figures.push(
                compare(
                    plan,
                    "search",
                    format!("{label}: top-{K} over {n} {}, {QUERIES} searches: time vs the exact in-memory index", set.label),
                    "exact search (in-memory index), same server",
                    Goal::Report,
                    |_| time(d, collection, queries),
                    |_| time(&exact, collection, queries),
                )
                .await,
            );
    }
    for d in [hnsw, checked, exact] {
        d.db().clone().close().await?;
    }
    Ok(figures)
}
