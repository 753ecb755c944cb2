//! Users' files never run as active content on our origin: the headers of every download
//! (authenticated and signed, on local, memory and S3 storage), the API's security
//! headers, CORS, and a real browser that opens a signed URL of an uploaded HTML page.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir};
use reqwest::header::HeaderMap;
use zeroscale_core::testing::require_service;

const HTML: &[u8] = b"<html><body><script>alert(1)</script></body></html>";
const SVG: &[u8] = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
const JS: &[u8] = b"alert(1)";
const TEXT: &[u8] = b"just words";
/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// (file name, content type, bytes, served inline)
const FILES: &[(&str, &str, &[u8], bool)] = &[
    ("x.html", "text/html", HTML, false),
    ("x.svg", "image/svg+xml", SVG, false),
    ("x.js", "application/javascript", JS, false),
    ("x.png", "image/png", PNG, true),
    ("x.txt", "text/plain", TEXT, true),
];

async fn upload(
    server: &Server,
    token: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> String {
    let response = server
        .http
        .post(format!("{}/v1/files?filename={name}", server.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn signed_url(server: &Server, token: &str, id: &str) -> String {
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/files/{id}/signed-url"),
            Some(token),
            Some(serde_json::json!({"method": "GET"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["url"].as_str().unwrap().to_owned()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
}

/// The headers an app-served download must carry.
fn assert_safe(headers: &HeaderMap, name: &str, content_type: &str, inline: bool, via: &str) {
    assert_eq!(
        header(headers, "x-content-type-options"),
        "nosniff",
        "{via} {name}"
    );
    let csp = header(headers, "content-security-policy");
    assert!(csp.starts_with("sandbox"), "{via} {name}: CSP {csp}");
    assert!(
        csp.contains("default-src 'none'"),
        "{via} {name}: CSP {csp}"
    );
    assert_bucket_headers(headers, name, content_type, inline, via);
}

/// What a download says about type and disposition (all that S3 can be told to send).
fn assert_bucket_headers(
    headers: &HeaderMap,
    name: &str,
    content_type: &str,
    inline: bool,
    via: &str,
) {
    assert_eq!(
        header(headers, "content-type"),
        content_type,
        "{via} {name}"
    );
    let disposition = header(headers, "content-disposition");
    let kind = if inline { "inline" } else { "attachment" };
    assert!(
        disposition.starts_with(kind),
        "{via} {name}: Content-Disposition {disposition:?}"
    );
    assert!(
        disposition.contains(&format!("filename*=UTF-8''{name}")),
        "{via} {name}: Content-Disposition {disposition:?}"
    );
}

async fn downloads_are_safe(label: &str, storage_env: &[(&str, String)], app_signed: bool) {
    let tmp = TempDir::new(label);
    let mut cmd = common::zeroscale(&tmp.0);
    cmd.env("RUST_LOG", "info");
    for (k, v) in storage_env {
        cmd.env(k, v);
    }
    let server = Server::start(cmd).await;
    let token = common::register(&server, "uploader").await;
    let plain = reqwest::Client::new();
    for (name, content_type, bytes, inline) in FILES {
        let id = upload(&server, &token, name, content_type, bytes).await;
        let response = server
            .http
            .get(format!("{}/v1/files/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_safe(response.headers(), name, content_type, *inline, "API");
        assert_eq!(&response.bytes().await.unwrap()[..], *bytes);

        let url = signed_url(&server, &token, &id).await;
        let response = plain.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        if app_signed {
            assert!(url.starts_with(&server.base), "{url}");
            assert_safe(
                response.headers(),
                name,
                content_type,
                *inline,
                "signed URL",
            );
        } else {
            // Served by the bucket: type and disposition are the object's attributes.
            assert_bucket_headers(
                response.headers(),
                name,
                content_type,
                *inline,
                "presigned URL",
            );
        }
        assert_eq!(&response.bytes().await.unwrap()[..], *bytes);
    }
    // The JSON API's own headers.
    let response = server
        .http
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(header(headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(headers, "x-frame-options"), "DENY");
    assert_eq!(header(headers, "referrer-policy"), "no-referrer");
    assert!(header(headers, "content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(
        header(headers, "strict-transport-security"),
        "",
        "not behind TLS"
    );
    server.terminate();
}

#[tokio::test]
async fn local_storage_downloads_are_safe() {
    downloads_are_safe("safe_local", &[], true).await;
}

#[tokio::test]
async fn memory_storage_downloads_are_safe() {
    downloads_are_safe(
        "safe_memory",
        &[("ZEROSCALE_STORAGE__KIND", "memory".to_owned())],
        true,
    )
    .await;
}

#[tokio::test]
async fn s3_storage_downloads_are_safe() {
    let Some(endpoint) = require_service("ZEROSCALE_TEST_S3_ENDPOINT", "the S3 server") else {
        return;
    };
    let bucket = require_service("ZEROSCALE_TEST_S3_BUCKET", "the S3 server").unwrap();
    downloads_are_safe(
        "safe_s3",
        &[
            ("ZEROSCALE_STORAGE__KIND", "s3".to_owned()),
            ("ZEROSCALE_STORAGE__BUCKET", bucket),
            ("ZEROSCALE_STORAGE__ENDPOINT", endpoint),
            ("ZEROSCALE_STORAGE__ALLOW_HTTP", "true".to_owned()),
            ("ZEROSCALE_STORAGE__ACCESS_KEY_ID", "test".to_owned()),
            ("ZEROSCALE_STORAGE__SECRET_ACCESS_KEY", "test".to_owned()),
        ],
        false,
    )
    .await;
}

/// Only the configured origin gets CORS headers; preflights answer 204; admin routes and
/// other origins get none; HSTS when behind TLS.
#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let tmp = TempDir::new("cors");
    let mut cmd = common::zeroscale(&tmp.0);
    cmd.env(
        "ZEROSCALE_SERVER__CORS__ALLOWED_ORIGINS",
        "[\"https://app.example.com\"]",
    )
    .env("ZEROSCALE_SERVER__BEHIND_TLS", "true");
    let server = Server::start(cmd).await;
    let token = common::register(&server, "corsy").await;
    let preflight = |origin: &'static str, path: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://app.example.com", "/v1/me")
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert!(header(h, "access-control-allow-methods").contains("GET"));
    assert!(header(h, "access-control-allow-headers").contains("authorization"));
    assert_eq!(header(h, "access-control-max-age"), "600");

    let other = preflight("https://evil.example", "/v1/me").await.unwrap();
    assert!(
        other
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        other.headers()
    );
    let admin = preflight("https://app.example.com", "/v1/admin/users")
        .await
        .unwrap();
    assert!(
        admin
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "admin routes never answer CORS: {:?}",
        admin.headers()
    );

    let get = |origin: &'static str| {
        server
            .http
            .get(format!("{}/v1/me", server.base))
            .bearer_auth(&token)
            .header("origin", origin)
            .send()
    };
    let allowed = get("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        header(allowed.headers(), "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert!(header(allowed.headers(), "strict-transport-security").starts_with("max-age="));
    let refused = get("https://evil.example").await.unwrap();
    assert_eq!(header(refused.headers(), "access-control-allow-origin"), "");
    server.terminate();
}

#[test]
fn cors_refuses_any_origin_with_credentials() {
    let tmp = TempDir::new("corsbad");
    let out = common::zeroscale(&tmp.0)
        .arg("doctor")
        .env("ZEROSCALE_SERVER__CORS__ALLOWED_ORIGINS", "[\"*\"]")
        .env("ZEROSCALE_SERVER__CORS__ALLOW_CREDENTIALS", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.cors.allow_credentials"), "{stderr}");
    assert!(
        stderr.contains("cannot be combined with credentials"),
        "{stderr}"
    );
}

/// A listener on loopback that counts the requests it gets (the page's callback).
async fn callback_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\naccess-control-allow-origin: *\r\n\r\n")
                .await;
        }
    });
    (port, hits)
}

/// Opens `url` in headless Chromium and keeps it open until `done()` holds or `max` has
/// passed, then closes it. Returns how long the browser was open.
///
/// The browser is not asked to dump the page and exit: a headless Chromium may exit
/// before the page's requests are sent, and on a busy 2-core machine its start alone can
/// take seconds. Polling the outcome instead makes the wait as long as the machine needs.
fn open_in_chromium(
    chromium: &str,
    url: &str,
    profile: &std::path::Path,
    done: impl Fn() -> bool,
    max: Duration,
) -> Duration {
    let started = std::time::Instant::now();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    while started.elapsed() < max && !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("chromium exited early ({status}) while showing {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_for = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    open_for
}

/// A real browser opens the signed URL of an uploaded HTML page whose script calls back
/// to a loopback listener: the call never comes. The same page served plainly (by the
/// test) does call back, which shows the browser runs such scripts here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_never_runs_an_uploaded_page() {
    let Some(chromium) = require_service("ZEROSCALE_TEST_CHROMIUM", "Chromium") else {
        return;
    };
    let tmp = TempDir::new("browser");
    let server = Server::start(common::zeroscale(&tmp.0)).await;
    let token = common::register(&server, "attacker").await;
    let (port, hits) = callback_listener().await;
    let page = format!(
        "<html><body><script>fetch('http://127.0.0.1:{port}/ran');\
         new Image().src='http://127.0.0.1:{port}/img';</script></body></html>"
    );
    let id = upload(&server, &token, "x.html", "text/html", page.as_bytes()).await;
    let url = signed_url(&server, &token, &id).await;

    // The control: the same page from a plain server runs its script.
    let control = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_port = listener.local_addr().unwrap().port();
        let page = page.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        format!("http://127.0.0.1:{control_port}/page.html")
    };
    let profile = tmp.0.join("chromium-profile");
    let (chromium2, profile2, control_hits) = (chromium.clone(), profile.clone(), hits.clone());
    let control_took = tokio::task::spawn_blocking(move || {
        open_in_chromium(
            &chromium2,
            &control,
            &profile2,
            || control_hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
            Duration::from_secs(90),
        )
    })
    .await
    .unwrap();
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the control page's script did not run within {control_took:?}: the test proves nothing"
    );

    // The uploaded page gets the time the control needed to start the browser and run
    // its script, three times over (at least 5 s).
    hits.store(0, std::sync::atomic::Ordering::SeqCst);
    let signed = url.clone();
    let wait = (control_took * 3).max(Duration::from_secs(5));
    let uploaded_hits = hits.clone();
    tokio::task::spawn_blocking(move || {
        open_in_chromium(
            &chromium,
            &signed,
            &profile,
            || uploaded_hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
            wait,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the uploaded page's script ran from {url}"
    );
    server.terminate();
}

/// `storage.public_url` moves signed file URLs to another origin (one routed to the same
/// servers); by default they use `server.public_url`.
#[tokio::test]
async fn signed_urls_can_use_a_separate_origin() {
    let tmp = TempDir::new("usercontent");
    let mut cmd = common::zeroscale(&tmp.0);
    cmd.env(
        "ZEROSCALE_STORAGE__PUBLIC_URL",
        "https://usercontent.example.com/",
    );
    let server = Server::start(cmd).await;
    let token = common::register(&server, "separate").await;
    let id = upload(&server, &token, "x.txt", "text/plain", TEXT).await;
    let url = signed_url(&server, &token, &id).await;
    assert!(
        url.starts_with("https://usercontent.example.com/files/"),
        "{url}"
    );
    // The same server answers the path, whichever host the request names.
    let path = url.strip_prefix("https://usercontent.example.com").unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.base))
        .header("host", "usercontent.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.bytes().await.unwrap()[..], TEXT);
    server.terminate();
}
