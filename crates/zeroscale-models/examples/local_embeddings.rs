//! Embeds a few sentences with the local model and ranks them against a query, the way an
//! app that composes zeroscale's crates would: `LocalEmbeddings` is an `EmbeddingProvider`.
//!
//! ```sh
//! cargo xtask models fetch                   # installs all-MiniLM-L6-v2 once
//! cargo run --release -p zeroscale-models --example local_embeddings -- "a question"
//! ```
//! The model folder is `ZEROSCALE_MODEL_DIR`, else `models/all-MiniLM-L6-v2` in the data
//! dir (`ZEROSCALE_DATA_DIR`, else the platform's, e.g. `~/.local/share/zeroscale`).

use std::time::Instant;

use zeroscale_core::config::{ModelsConfig, default_data_dir};
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_models::local::LocalEmbeddings;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = "all-MiniLM-L6-v2";
    let dir = match std::env::var_os("ZEROSCALE_MODEL_DIR") {
        Some(dir) => dir.into(),
        None => {
            let data_dir = match std::env::var_os("ZEROSCALE_DATA_DIR") {
                Some(dir) => dir.into(),
                None => default_data_dir()?,
            };
            let config = ModelsConfig {
                dir: Some(data_dir.join("models")),
                ..Default::default()
            };
            zeroscale_models::local_model_dir(&config, model, None)
        }
    };
    let query = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "where can I borrow books?".to_owned());
    let documents = [
        "The village library lends books and has a quiet reading room.",
        "The station has trains to the city every twenty minutes.",
        "Our kitchen serves breakfast from seven in the morning.",
        "The hospital's emergency department is open all night.",
    ];
    // Concurrent requests to one provider are batched together (dynamic batching).
    let provider = LocalEmbeddings::new("local", model, dir, 32);
    let started = Instant::now();
    provider.load().await?;
    println!("loaded in {} ms", started.elapsed().as_millis());

    let mut inputs = vec![query.clone()];
    inputs.extend(documents.iter().map(|d| (*d).to_owned()));
    let started = Instant::now();
    let response = provider
        .embed(EmbeddingRequest {
            model: model.to_owned(),
            inputs,
            dimensions: None,
        })
        .await?;
    println!(
        "{} vectors of {} dimensions, {} tokens, in {:.1} ms",
        response.vectors.len(),
        response.dimensions,
        response.usage.prompt_tokens,
        started.elapsed().as_secs_f64() * 1e3
    );
    // The vectors are L2-normalised: the dot product is the cosine similarity.
    let (q, docs) = response.vectors.split_first().ok_or("no vectors")?;
    let mut ranked: Vec<(f32, &str)> = docs
        .iter()
        .zip(documents)
        .map(|(d, text)| (q.iter().zip(d).map(|(a, b)| a * b).sum(), text))
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("query: {query}");
    for (score, text) in ranked {
        println!("  {score:.3}  {text}");
    }
    Ok(())
}
