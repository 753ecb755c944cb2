//! The `embeddings_and_documents` section of the e2e suite.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

pub(crate) async fn run(d: &Deployment, alice: &str, bob: &str) {
    let (status, body) = call(
        d,
        Method::POST,
        "/v1/embeddings",
        Some(alice),
        Some(json!({"input": ["The cat sat on the mat.", "A feline rested on a rug."]})),
    )
    .await;
    assert_eq!(status, 200, "[{}] {body}", d.name);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 384);

    let notes = [
        (
            "PostgreSQL stores the relational data at stage three.",
            "db",
        ),
        (
            "Redis holds the job queue when there are several workers.",
            "queue",
        ),
        ("Uploaded files go to S3 or Cloudflare R2.", "storage"),
        ("The quick brown fox jumps over the lazy dog.", "misc"),
    ];
    let documents: Vec<Value> = notes
        .iter()
        .map(|(text, topic)| json!({"text": text, "metadata": {"topic": topic}}))
        .collect();
    let (status, added) = call(
        d,
        Method::POST,
        "/v1/documents",
        Some(alice),
        Some(json!({"collection": "notes", "documents": documents})),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["documents"].as_array().unwrap().len(), 4);

    // A larger batch goes to a background job.
    let many: Vec<Value> = (0..20)
        .map(|i| json!({"text": format!("Filler sentence number {i} about gardening."), "metadata": {"topic": "filler"}}))
        .collect();
    let (status, added) = call(
        d,
        Method::POST,
        "/v1/documents",
        Some(alice),
        Some(json!({"collection": "notes", "documents": many})),
    )
    .await;
    assert_eq!(status, 202, "{added}");
    let job = wait_job(d, alice, added["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["document_ids"].as_array().unwrap().len(), 20);

    let search = |query: &str, filter: Value| json!({"collection": "notes", "query": query, "top_k": 3, "filter": filter});
    let (status, hits) = call(
        d,
        Method::POST,
        "/v1/documents/search",
        Some(alice),
        Some(search("Where is the job queue kept?", Value::Null)),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    let hits = hits["data"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(
        hits[0]["document"]["metadata"]["topic"], "queue",
        "{hits:#?}"
    );
    assert!(hits[0]["score"].as_f64().unwrap() > hits[2]["score"].as_f64().unwrap());
    let (_, filtered) = call(
        d,
        Method::POST,
        "/v1/documents/search",
        Some(alice),
        Some(search(
            "Where is the job queue kept?",
            json!({"topic": "storage"}),
        )),
    )
    .await;
    let filtered = filtered["data"].as_array().unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["document"]["metadata"]["topic"], "storage");
    // Bob's `notes` is another collection.
    let (_, theirs) = call(
        d,
        Method::POST,
        "/v1/documents/search",
        Some(bob),
        Some(search("Where is the job queue kept?", Value::Null)),
    )
    .await;
    assert!(theirs["data"].as_array().unwrap().is_empty());
}
