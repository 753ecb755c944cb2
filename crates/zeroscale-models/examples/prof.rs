use zeroscale_core::models::{EmbeddingProvider, EmbeddingRequest};
use zeroscale_models::local::LocalEmbeddings;
#[tokio::main]
async fn main() {
    let dir = std::env::var("ZEROSCALE_TEST_MODEL_DIR").unwrap();
    let m = LocalEmbeddings::new("p", "all-MiniLM-L6-v2", dir, 32);
    m.load().await.unwrap();
    let n: usize = std::env::args()
        .nth(1)
        .unwrap_or("1".into())
        .parse()
        .unwrap();
    let iters: usize = std::env::args()
        .nth(2)
        .unwrap_or("300".into())
        .parse()
        .unwrap();
    let text = "The engineer carefully explains the important solution to the customer during the quiet morning in the village library.";
    let inputs: Vec<String> = (0..n).map(|i| format!("{text} {i}")).collect();
    let mut lat = vec![];
    for _ in 0..iters {
        let t = std::time::Instant::now();
        m.embed(EmbeddingRequest {
            model: "m".into(),
            inputs: inputs.clone(),
        })
        .await
        .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    println!("n={n} p50 {:.2} ms min {:.2}", lat[lat.len() / 2], lat[0]);
}
