//! The local MiniLM provider against the reference implementation: vectors for the
//! fixture sentences (computed with sentence-transformers by
//! `fixtures/make_minilm_reference.py`) must match with cosine ≥ 0.9999.
#![cfg(feature = "local-models")]

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_core::testing::{cosine, require_service};
use zeroscale_models::local::{LocalEmbeddings, LocalOptions};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: u64,
    vector: Vec<f32>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn model_dir() -> Option<PathBuf> {
    require_service(
        "ZEROSCALE_TEST_MODEL_DIR",
        "the local model (`cargo xtask models fetch`)",
    )
    .map(PathBuf::from)
}

#[tokio::test]
async fn matches_sentence_transformers_on_the_fixture() {
    let Some(dir) = model_dir() else { return };
    // A small batch size, so the fixture spans several batches of mixed lengths.
    let provider = LocalEmbeddings::new("local", "all-MiniLM-L6-v2", dir, 7);
    let worst = check_fixture(&provider, usize::MAX).await;
    eprintln!("lowest cosine {:.7} for {:?}", worst.0, worst.1);
}

#[tokio::test]
async fn every_thread_count_matches_the_fixture() {
    // The layers are shared out between the threads (heads, feed-forward columns): one
    // thread, and three, which share 12 heads and the columns unevenly on some CPUs.
    let Some(dir) = model_dir() else { return };
    for threads in [1, 3] {
        let options = LocalOptions {
            threads,
            ..LocalOptions::default()
        };
        let provider = LocalEmbeddings::with_options("local", "all-MiniLM-L6-v2", &dir, options);
        // The first dozen sentences (empty to 20 tokens, accents): the test build is
        // unoptimised, and the whole fixture on one thread takes half a minute.
        let worst = check_fixture(&provider, 12).await;
        eprintln!(
            "{threads} threads: lowest cosine {:.7} for {:?}",
            worst.0, worst.1
        );
    }
}

/// Embeds the first `cases` fixture sentences with `provider` and checks each vector
/// against the reference (cosine ≥ 0.9999, unit length) and the token count; returns the
/// lowest cosine and its sentence.
async fn check_fixture(provider: &LocalEmbeddings, cases: usize) -> (f64, String) {
    let mut fixture = fixture();
    assert!(fixture.cases.len() >= 20);
    fixture.cases.truncate(cases);
    let inputs: Vec<String> = fixture.cases.iter().map(|c| c.text.clone()).collect();
    let response = provider
        .embed(EmbeddingRequest {
            model: "all-MiniLM-L6-v2".into(),
            inputs,
            dimensions: None,
        })
        .await
        .expect("embeds");
    assert_eq!(response.dimensions, 384);
    assert_eq!(response.vectors.len(), fixture.cases.len());
    let mut worst = (1.0_f64, String::new());
    for (case, vector) in fixture.cases.iter().zip(&response.vectors) {
        assert_eq!(vector.len(), case.vector.len(), "{:?}", case.text);
        let similarity = cosine(vector, &case.vector);
        if similarity < worst.0 {
            worst = (similarity, case.text.clone());
        }
        assert!(
            similarity >= 0.9999,
            "cosine {similarity} for {:?} is below 0.9999",
            case.text
        );
        let norm: f64 = vector
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalised, got {norm}");
    }
    let tokens: u64 = fixture.cases.iter().map(|c| c.tokens).sum();
    assert_eq!(response.usage.prompt_tokens, tokens, "real tokens counted");
    worst
}

#[tokio::test]
async fn one_at_a_time_equals_batched_and_the_model_loads_once() {
    let Some(dir) = model_dir() else { return };
    let fixture = fixture();
    let provider = Arc::new(LocalEmbeddings::new("local", "all-MiniLM-L6-v2", dir, 32));
    let texts: Vec<String> = fixture
        .cases
        .iter()
        .take(6)
        .map(|c| c.text.clone())
        .collect();
    let batched = provider
        .embed(EmbeddingRequest {
            model: String::new(),
            inputs: texts.clone(),
            dimensions: None,
        })
        .await
        .unwrap();
    // Concurrent callers share the loaded model.
    let singles = futures::future::join_all(texts.iter().map(|text| {
        let provider = Arc::clone(&provider);
        let text = text.clone();
        async move {
            provider
                .embed(EmbeddingRequest {
                    model: String::new(),
                    inputs: vec![text],
                    dimensions: None,
                })
                .await
                .unwrap()
        }
    }))
    .await;
    for (single, batched) in singles.iter().zip(&batched.vectors) {
        assert!(cosine(&single.vectors[0], batched) > 0.99999);
    }
    let empty = provider
        .embed(EmbeddingRequest {
            model: String::new(),
            inputs: Vec::new(),
            dimensions: None,
        })
        .await
        .unwrap();
    assert!(empty.vectors.is_empty());

    // Its own width is fine; it cannot shorten its vectors.
    let mut own = EmbeddingRequest::new("", vec!["hello".into()]);
    own.dimensions = Some(384);
    assert_eq!(provider.embed(own).await.unwrap().dimensions, 384);
    let mut shorter = EmbeddingRequest::new("", vec!["hello".into()]);
    shorter.dimensions = Some(64);
    let err = provider.embed(shorter).await.expect_err("cannot shorten");
    assert_eq!(err.kind(), zeroscale_core::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("384"), "{err}");
    // Token counts without embedding, as `embed` counts them.
    let counted = provider
        .count_tokens(&["hello world".into(), "a".into()])
        .await
        .expect("the local tokenizer counts");
    let embedded = provider
        .embed(EmbeddingRequest::new(
            "",
            vec!["hello world".into(), "a".into()],
        ))
        .await
        .unwrap();
    assert_eq!(counted, embedded.usage.prompt_tokens);
}

#[tokio::test]
async fn a_missing_model_is_unavailable_with_the_fix_and_found_once_installed() {
    let Some(installed) = model_dir() else { return };
    let dir = std::env::temp_dir().join(format!("zs-local-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let provider = LocalEmbeddings::new("local", "all-MiniLM-L6-v2", &dir, 8);
    let request = EmbeddingRequest {
        model: String::new(),
        inputs: vec!["hello".into()],
        dimensions: None,
    };
    let err = provider.embed(request.clone()).await.expect_err("no model");
    assert_eq!(err.kind(), zeroscale_core::ErrorKind::Unavailable);
    let text = err.to_string();
    assert!(text.contains("cargo xtask models fetch"), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(provider.health().await.is_err());

    // Installed while running: the next call finds it.
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(installed.join(file), dir.join(file)).unwrap();
    }
    provider.health().await.expect("installed now");
    let response = provider.embed(request).await.expect("embeds");
    assert_eq!(response.dimensions, 384);
    std::fs::remove_dir_all(&dir).ok();
}
