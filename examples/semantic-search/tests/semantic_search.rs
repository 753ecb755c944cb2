//! The example as a user runs it: texts added, then found by meaning, on SQLite in the
//! data dir and (from `cargo xtask services up`) on PostgreSQL by config alone. Needs the
//! local model (`ZEROSCALE_TEST_MODEL_DIR`, from `cargo xtask models fetch`).

use std::path::Path;
use std::process::Command;

use zeroscale_core::testing::require_service;

/// Runs `semantic-search ARGS` in `dir` with `env`; returns its stdout, asserting success.
fn run(dir: &Path, model: &str, env: &[(&str, String)], args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_semantic-search"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SEMSEARCH_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .current_dir(dir)
        .env("SEMSEARCH_DATA_DIR", dir.join("data"))
        .env("SEMSEARCH_MODELS__PROVIDERS__LOCAL__PATH", model)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "semantic-search {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn add_and_search(dir: &Path, model: &str, env: &[(&str, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    let added = run(
        dir,
        model,
        env,
        &[
            "add",
            "notes",
            "the cat sat on the mat",
            "stock prices fell sharply today",
            "a recipe for tomato soup",
        ],
    );
    assert_eq!(added.trim(), "added 3 to `notes`");
    let found = run(
        dir,
        model,
        env,
        &["search", "notes", "a kitten resting", "-k", "1"],
    );
    assert!(found.ends_with("the cat sat on the mat\n"), "{found}");
    let found = run(
        dir,
        model,
        env,
        &["search", "notes", "markets crashed", "--json"],
    );
    let hits: Vec<serde_json::Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 3, "{found}");
    assert_eq!(hits[0]["text"], "stock prices fell sharply today");
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    // Another collection is separate.
    let other = run(dir, model, env, &["search", "elsewhere", "cat"]);
    assert!(other.is_empty(), "{other}");
    // Without pgvector there is no index to check.
    let check = run(dir, model, env, &["check"]);
    assert_eq!(
        check.trim(),
        "exact search: every search ranks all stored vectors"
    );
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "zs-example-semsearch-{label}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn sqlite_in_the_data_dir() {
    let Some(model) = require_service("ZEROSCALE_TEST_MODEL_DIR", "the local model") else {
        return;
    };
    let dir = temp_dir("sqlite");
    add_and_search(&dir, &model, &[]);
    assert!(
        dir.join("data/zeroscale.db").is_file(),
        "SQLite in the data dir"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_by_config_alone() {
    let (Some(model), Some(admin)) = (
        require_service("ZEROSCALE_TEST_MODEL_DIR", "the local model"),
        require_service("ZEROSCALE_TEST_POSTGRES_URL", "PostgreSQL"),
    ) else {
        return;
    };
    let name = format!("zs_example_semsearch_{}", std::process::id());
    let url = empty_postgres(&admin, &name);
    let dir = temp_dir("postgres");
    let env = [
        ("SEMSEARCH_DATABASE__KIND", "postgres".to_owned()),
        ("SEMSEARCH_DATABASE__URL", url),
    ];
    let collection = "notes";
    std::fs::create_dir_all(&dir).unwrap();
    let added = run(
        &dir,
        &model,
        &env,
        &["add", collection, "the cat sat on the mat", "tomato soup"],
    );
    assert_eq!(added.trim(), format!("added 2 to `{collection}`"));
    let found = run(
        &dir,
        &model,
        &env,
        &["search", collection, "a kitten", "-k", "1"],
    );
    assert!(found.ends_with("the cat sat on the mat\n"), "{found}");
    assert!(
        !dir.join("data/zeroscale.db").exists(),
        "no SQLite at this stage"
    );
    let _ = std::fs::remove_dir_all(&dir);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(zeroscale_db::testing::drop_postgres_database(&admin, &name))
        .ok();
}

/// An empty database `name` on the PostgreSQL server at `admin_url`; returns its URL.
fn empty_postgres(admin_url: &str, name: &str) -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(zeroscale_db::testing::empty_postgres_database(
            admin_url, name,
        ))
        .expect("create the database")
}
