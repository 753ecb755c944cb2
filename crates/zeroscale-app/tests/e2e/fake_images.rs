//! A minimal Automatic1111 server for stage 3's image provider.

use serde_json::{Value, json};

/// A minimal Automatic1111 server: `/sdapi/v1/txt2img` answers base64 PNGs.
pub(crate) async fn automatic1111() -> String {
    use axum::routing::{get, post};
    use base64::Engine as _;
    async fn txt2img(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
        let n = body["batch_size"].as_u64().unwrap_or(1);
        let (w, h) = (
            body["width"].as_u64().unwrap_or(8) as u32,
            body["height"].as_u64().unwrap_or(8) as u32,
        );
        let png =
            zeroscale_models::placeholder::encode_png(w, h, &vec![200u8; (w * h * 3) as usize]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        let seed = body["seed"].as_i64().unwrap_or(7);
        axum::Json(json!({
            "images": vec![b64; n as usize],
            "parameters": body,
            "info": json!({"all_seeds": vec![seed; n as usize]}).to_string(),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/sdapi/v1/txt2img", post(txt2img))
        .route("/sdapi/v1/options", get(|| async { axum::Json(json!({})) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
