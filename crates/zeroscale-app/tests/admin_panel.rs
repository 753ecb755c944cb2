//! The admin panel (#24) in a real browser: headless Chromium driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`, installed by `cargo xtask services up`)
//! logs in, opens every page, presses "check now" and "retry", finds user-supplied markup
//! shown as text, sees no console errors, logs out; an uploaded HTML page opened from its
//! signed URL in the admin's browser cannot act on the panel; the panel's login is
//! throttled. Screenshots of every page go
//! to `target/tmp/admin-panel/`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, TempDir, free_port};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use zeroscale_core::testing::require_service;

/// Text a user controls that reaches the panel: it must show as text, never as markup.
const MARKUP: &str = "<script>document.title='pwned'</script><b id=\"injected\">x</b>";

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(binary: &str) -> Driver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    /// A headless browser session that keeps the console's messages.
    async fn browser(&self, chromium: &str, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromedriver session")
    }
}

/// chromedriver's console log of the page (`POST /session/{id}/se/log`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// The console's errors since the last call, other than the missing favicon.
async fn console_errors(browser: &Client) -> Vec<String> {
    let log = browser
        .issue_cmd(BrowserLog)
        .await
        .expect("the browser log");
    log.as_array()
        .unwrap_or_else(|| panic!("the browser log is not a list: {log}"))
        .iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
        .filter(|message| !message.contains("favicon.ico"))
        .collect()
}

/// Keeps a screenshot of the current page as `name`.png under target/tmp/admin-panel/.
async fn screenshot(browser: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-panel");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// The admin's dead jobs in `default`.
async fn dead_jobs(server: &Server, admin: &str) -> Vec<Value> {
    let (status, body) = server
        .call(
            reqwest::Method::GET,
            "/v1/admin/jobs/dead",
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

async fn log_in(browser: &Client, base: &str) {
    browser.goto(&format!("{base}/admin")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login"),
        "an anonymous visit goes to the login page"
    );
    type_into(browser, "username", "admin").await;
    type_into(browser, "password", "admin-password-1").await;
    click(browser, "login").await;
    text_of(browser, "#readiness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_panel_works_in_a_browser() {
    let Some(chromium) = require_service("ZEROSCALE_TEST_CHROMIUM", "Chromium") else {
        return;
    };
    let Some(chromedriver) = require_service("ZEROSCALE_TEST_CHROMEDRIVER", "chromedriver") else {
        return;
    };
    let dir = TempDir::new("admin-panel");
    let mut cmd = common::zeroscale(&dir.0);
    cmd.env("ZEROSCALE_AUTH__SIGNUP_CREDITS", "100")
        .arg("serve");
    let server = Server::start(cmd).await;
    let admin = common::admin_token(&server, common::zeroscale(&dir.0), "admin").await;
    let alice = common::register(&server, "alice").await;

    // What the pages will show: a generation and a dead job, both carrying markup.
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/images",
            Some(&alice),
            Some(json!({"prompt": MARKUP})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = server
        .call(
            reqwest::Method::POST,
            "/v1/jobs",
            Some(&alice),
            Some(json!({"task": "zeroscale.sleep", "payload": {"ms": MARKUP}, "max_attempts": 1})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let dead_id = body["id"].as_str().unwrap().to_owned();
    wait_for("the job to die", || async {
        !dead_jobs(&server, &admin).await.is_empty()
    })
    .await;

    // Without the panel's session: a user who is not an admin gets 403, nobody gets in.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = http
        .get(format!("{}/admin", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "anonymous: to the login page");
    let response = http
        .get(format!("{}/admin/users", server.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "a user who is not an admin");
    let response = http
        .get(format!("{}/admin/users", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "an admin's bearer token");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "no CORS on the panel"
    );
    // A login form posted without the form's own token is refused.
    let response = http
        .post(format!("{}/admin/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=admin&password=admin-password-1&csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "login without the double-submit cookie"
    );
    // A non-admin's password opens nothing.
    let login_page = http
        .get(format!("{}/admin/login", server.base))
        .send()
        .await
        .unwrap();
    let cookie = login_page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let response = http
        .post(format!("{}/admin/login", server.base))
        .header("cookie", format!("zs_admin_login={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username=alice&password=long+enough+password&csrf={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "alice is not an admin");

    // The browser.
    let driver = Driver::start(&chromedriver).await;
    let browser = driver.browser(&chromium, &dir.0.join("profile")).await;
    let base = server.base.clone();
    log_in(&browser, &base).await;
    // The panel says what /readyz says (here the local model is not installed, so the
    // embedding model makes it not ready).
    let (readyz, _) = server.get("/readyz").await;
    let expected = if readyz == 200 { "ready" } else { "not ready" };
    assert_eq!(text_of(&browser, "#readiness").await, expected);
    let checks = text_of(&browser, "#checks").await;
    assert!(
        checks.contains("database") && checks.contains("queue"),
        "{checks}"
    );
    let backends = text_of(&browser, "#backends").await;
    assert!(
        backends.contains("sqlite") && backends.contains("memory"),
        "{backends}"
    );
    // The chart's script ran under the CSP and drew the traffic.
    wait_for("the chart's script", || async {
        browser
            .find(Locator::Css("body[data-chart=live]"))
            .await
            .is_ok()
    })
    .await;
    screenshot(&browser, "overview").await;

    browser
        .goto(&format!("{base}/admin/providers"))
        .await
        .unwrap();
    let providers = text_of(&browser, "#providers").await;
    assert!(providers.contains("placeholder"), "{providers}");
    click(&browser, "check-placeholder").await;
    assert_eq!(
        text_of(&browser, "#checked").await,
        "Checked placeholder: it answers."
    );
    screenshot(&browser, "providers").await;

    browser.goto(&format!("{base}/admin/jobs")).await.unwrap();
    let dead = text_of(&browser, "#dead").await;
    assert!(dead.contains(&dead_id), "{dead}");
    assert!(dead.contains("<script>"), "the error shows as text: {dead}");
    assert!(browser.find(Locator::Id("injected")).await.is_err());
    screenshot(&browser, "jobs").await;
    let job_now = |id: String| {
        let (server, alice) = (&server, &alice);
        async move {
            server
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/jobs/{id}"),
                    Some(alice),
                    None,
                )
                .await
                .1
        }
    };
    let died_at = job_now(dead_id.clone()).await["finished_at"].clone();
    click(&browser, &format!("retry-{dead_id}")).await;
    assert_eq!(text_of(&browser, "#done").await, "The job is queued again.");
    // It runs again and dies again (its payload is still wrong): a new death time.
    wait_for("the retried job to die again", || async {
        let job = job_now(dead_id.clone()).await;
        job["state"] == "dead" && job["finished_at"] != died_at
    })
    .await;

    browser.goto(&format!("{base}/admin/users")).await.unwrap();
    let users = text_of(&browser, "#users").await;
    assert!(
        users.contains("alice") && users.contains("admin"),
        "{users}"
    );
    screenshot(&browser, "users").await;

    wait_for("the generation", || async {
        browser
            .goto(&format!("{base}/admin/generations"))
            .await
            .unwrap();
        browser.find(Locator::Css("#generations")).await.is_ok()
    })
    .await;
    let generations = text_of(&browser, "#generations").await;
    assert!(
        generations.contains("alice") && generations.contains("placeholder"),
        "{generations}"
    );
    assert!(generations.contains("<script>"), "the prompt shows as text");
    assert!(browser.find(Locator::Id("injected")).await.is_err());
    assert_ne!(browser.title().await.unwrap(), "pwned");
    screenshot(&browser, "generations").await;

    let errors = console_errors(&browser).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // An uploaded HTML page, opened from its signed URL in the admin's browser, tries to
    // purge the dead jobs through the panel.
    let attack = "<html><body><script>\
        fetch('/admin/queues/default/purge', {method: 'POST', credentials: 'include'});\
        </script></body></html>";
    let response = server
        .http
        .post(format!("{}/v1/files?filename=attack.html", server.base))
        .bearer_auth(&alice)
        .header("content-type", "text/html")
        .body(attack)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let file: Value = response.json().await.unwrap();
    let (status, signed) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/files/{}/signed-url", file["id"].as_str().unwrap()),
            Some(&alice),
            Some(json!({"method": "GET"})),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let _ = browser.goto(signed["url"].as_str().unwrap()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dead_jobs(&server, &admin).await.len(),
        1,
        "the uploaded page purged the dead jobs"
    );

    // Log out: the session ends, the panel asks for a login again.
    browser.goto(&format!("{base}/admin")).await.unwrap();
    click(&browser, "logout").await;
    text_of(&browser, "#login").await;
    browser.goto(&format!("{base}/admin/users")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login"),
        "after logout"
    );
    browser.close().await.unwrap();

    // The panel's login is throttled like the API's: wrong passwords for one username
    // end in 429 with Retry-After (last: it locks this address out too).
    let mut last = 0;
    for _ in 0..30 {
        let response = http
            .post(format!("{}/admin/login", server.base))
            .header("cookie", format!("zs_admin_login={token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=admin&password=wrong&csrf={token}"))
            .send()
            .await
            .unwrap();
        last = response.status().as_u16();
        if last == 429 {
            assert!(response.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429, "repeated wrong passwords were never throttled");
}
