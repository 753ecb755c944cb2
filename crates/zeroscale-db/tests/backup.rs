//! Backup, restore and copy between engines: awkward data in every table survives
//! SQLite → archive → PostgreSQL → archive → SQLite (and through pgvector PostgreSQL) with
//! byte-identical table streams, the services answer the same afterwards, and bad archives
//! or non-empty targets are refused without changing anything.

mod common;

use std::io::Read;

use serde_json::json;
use zeroscale_core::config::{ChatConfig, VectorSearch};
use zeroscale_core::domain::{ChatRole, Role};
use zeroscale_core::models::{EmbeddingCache, EmbeddingCacheKey};
use zeroscale_db::backup::{self, BackupOptions, Manifest, RestoreOptions};
use zeroscale_db::domain::{Domain, NewApiKey, NewDocument, NewGeneration, NewMessage, NewUser};

fn chat() -> ChatConfig {
    ChatConfig {
        max_messages_per_session: 10_000,
        ..ChatConfig::default()
    }
}

const PASSWORD: &str = "correct horse battery";

/// What the fixture made that the checks after a restore need.
struct Filled {
    api_key: String,
    query: Vec<f32>,
}

fn vector(seed: u32) -> Vec<f32> {
    (0..384)
        .map(|i| (((seed * 31 + i) % 97) as f32 / 97.0) - 0.5)
        .collect()
}

/// Every table, with unicode and emoji, empty strings, NULLs, large JSON, 384-d vectors,
/// many chat messages, generations in every state and a revoked key.
async fn fill(d: &Domain) -> Filled {
    let mut users = Vec::new();
    for (name, role) in [
        ("ada", Role::Admin),
        ("bob", Role::User),
        ("émile", Role::User),
    ] {
        let username = if name.is_ascii() { name } else { "emile" };
        users.push(
            d.users()
                .register(NewUser {
                    username: username.to_owned(),
                    password: PASSWORD.to_owned(),
                    role,
                    credits: 100,
                })
                .await
                .unwrap(),
        );
    }
    d.users().set_active(&users[2].id, false).await.unwrap();
    d.sessions().create(&users[0].id).await.unwrap();
    let prompt = d
        .prompts()
        .create(
            "émoji 🎉 prompt",
            "Sei gentile. 你好 — \"quotes\" \\ backslash",
        )
        .await
        .unwrap();
    d.prompts().create("empty", "").await.unwrap();
    let key = d
        .api_keys()
        .create(NewApiKey {
            user_id: users[0].id.clone(),
            client_name: "cli ✓".into(),
            notes: None,
            system_prompt_id: Some(prompt.id.clone()),
            adapter_name: None,
            rate_limit_per_minute: Some(120),
        })
        .await
        .unwrap();
    let revoked = d
        .api_keys()
        .create(NewApiKey {
            user_id: users[1].id.clone(),
            client_name: "old".into(),
            notes: Some(String::new()),
            system_prompt_id: None,
            adapter_name: Some("lora-1".into()),
            rate_limit_per_minute: None,
        })
        .await
        .unwrap();
    d.api_keys().revoke(&revoked.key.id).await.unwrap();
    for i in 0..300 {
        d.chat()
            .append(NewMessage {
                session_id: format!("session-{}", i % 3),
                role: if i % 2 == 0 {
                    ChatRole::User
                } else {
                    ChatRole::Assistant
                },
                content: format!("message {i} — ünïcödé 🚀 {}", "x".repeat(i % 50)),
                user_id: (i % 5 != 0).then(|| users[i % 2].id.clone()),
                api_key_id: None,
                metadata: json!({"i": i, "nested": {"b": [1, 2.5, null], "a": "z"}}),
            })
            .await
            .unwrap();
    }
    // Generations: completed, failed, pending.
    let big = json!({"steps": (0..200).collect::<Vec<_>>(), "text": "ß".repeat(2000)});
    for (i, outcome) in ["complete", "fail", "pending"].iter().enumerate() {
        let g = d
            .credits()
            .reserve(NewGeneration {
                user_id: users[1].id.clone(),
                model: "sd15".into(),
                prompt: format!("a cat {i} 🐈"),
                params: big.clone(),
                cost: 3,
            })
            .await
            .unwrap();
        match *outcome {
            "complete" => {
                d.credits()
                    .complete(&g.id, "placeholder", 2, json!({"images": ["a", "b"]}))
                    .await
                    .unwrap();
            }
            "fail" => {
                d.credits().fail(&g.id, "provider down").await.unwrap();
            }
            _ => {}
        }
    }
    let docs: Vec<NewDocument> = (0..20)
        .map(|i| NewDocument {
            collection: if i % 2 == 0 { "faq" } else { "notes" }.into(),
            content: format!("document {i} 📄"),
            metadata: json!({"topic": i % 3, "tags": ["α", "β"], "empty": ""}),
            embedding_model: "minilm".into(),
            vector: vector(i),
        })
        .collect();
    d.documents().insert_many(docs).await.unwrap();
    let cache = d.embedding_cache();
    cache
        .put(&EmbeddingCacheKey::new("minilm", "héllo"), &vector(99))
        .await
        .unwrap();
    d.jobs()
        .record("job-1", &users[0].id, "default", "zeroscale.echo")
        .await
        .unwrap();
    Filled {
        api_key: key.plaintext,
        query: vector(5),
    }
}

/// The contents of the top 5 documents for the fixture's query.
async fn top_hits(d: &Domain, filled: &Filled) -> Vec<String> {
    d.documents()
        .search("faq", &filled.query, 5, None)
        .await
        .unwrap()
        .iter()
        .map(|h| h.document.content.clone())
        .collect()
}

/// The services answer the same on a restored database.
async fn check_services(d: &Domain, filled: &Filled, expected_hits: &[String]) {
    d.users()
        .authenticate("ada", PASSWORD)
        .await
        .expect("old password works");
    d.users()
        .authenticate("bob", PASSWORD)
        .await
        .expect("old password works");
    let (_, owner) = d
        .api_keys()
        .validate(&filled.api_key)
        .await
        .expect("key validates");
    assert_eq!(owner.username, "ada");
    assert!(
        d.users().authenticate("emile", PASSWORD).await.is_err(),
        "still deactivated"
    );
    let hits = d
        .documents()
        .search("faq", &filled.query, 5, None)
        .await
        .unwrap();
    let ids: Vec<String> = hits.iter().map(|h| h.document.content.clone()).collect();
    assert_eq!(ids, expected_hits, "the same top-k");
    let page = d.chat().list("session-1", None, Some(1000)).await.unwrap();
    assert_eq!(page.messages.len(), 100);
}

async fn archive_of(d: &zeroscale_db::Db) -> (Vec<u8>, Manifest) {
    let mut bytes = Vec::new();
    let manifest = backup::backup(d, &mut bytes, BackupOptions::default(), &mut |_| {})
        .await
        .unwrap();
    (bytes, manifest)
}

async fn restore_bytes(
    target: &zeroscale_db::Db,
    bytes: &[u8],
    options: RestoreOptions,
) -> zeroscale_core::Result<backup::RestoreReport> {
    let owned = bytes.to_vec();
    let open = move || -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(owned.clone())))
    };
    backup::restore(target, &open, options, &mut |_| {}).await
}

/// The tables' checksums and counts, which must match whatever engine wrote them.
fn streams(m: &Manifest) -> Vec<(String, u64, String)> {
    m.tables
        .iter()
        .map(|t| (t.name.clone(), t.rows, t.sha256.clone()))
        .collect()
}

async fn round_trip(pg_env: &str, engine: &str, label: &str, search: VectorSearch) {
    let source = common::sqlite(&format!("{label}-src")).await;
    let d = source.domain(chat());
    let filled = fill(&d).await;
    let expected = top_hits(&d, &filled).await;
    let (a, manifest_a) = archive_of(&source.db).await;
    assert_eq!(manifest_a.engine, "sqlite");
    assert!(
        manifest_a
            .tables
            .iter()
            .any(|t| t.name == "chat_messages" && t.rows == 300)
    );

    let Some(pg) = common::postgres_on(pg_env, engine, &format!("{label}-pg"), search).await else {
        source.cleanup().await;
        return;
    };
    let report = restore_bytes(&pg.db, &a, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(report.manifest, manifest_a);
    // Archive before using the services: logins record their time.
    let (b, manifest_b) = archive_of(&pg.db).await;
    assert_eq!(manifest_b.engine, "postgres");
    assert_eq!(
        streams(&manifest_b),
        streams(&manifest_a),
        "PostgreSQL wrote other bytes"
    );
    check_services(&pg.domain(chat()), &filled, &expected).await;

    let back = common::sqlite(&format!("{label}-back")).await;
    restore_bytes(&back.db, &b, RestoreOptions::default())
        .await
        .unwrap();
    let (_, manifest_c) = archive_of(&back.db).await;
    assert_eq!(streams(&manifest_c), streams(&manifest_a));
    check_services(&back.domain(chat()), &filled, &expected).await;

    // And straight across, with no file: SQLite → PostgreSQL with --replace, then back.
    let copied = backup::copy(
        &source.db,
        &pg.db,
        BackupOptions::default(),
        RestoreOptions { replace: true },
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(streams(&copied.manifest), streams(&manifest_a));
    check_services(&pg.domain(chat()), &filled, &expected).await;

    source.cleanup().await;
    pg.cleanup().await;
    back.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_postgres_sqlite_round_trip() {
    round_trip(
        "ZEROSCALE_TEST_POSTGRES_URL",
        "PostgreSQL",
        "bk-pg",
        VectorSearch::Exact,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pgvector_sqlite_round_trip() {
    round_trip(
        "ZEROSCALE_TEST_PGVECTOR_URL",
        "PostgreSQL with pgvector",
        "bk-pgv",
        VectorSearch::Pgvector,
    )
    .await;
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// A user written straight into `db` while it is at the first migration's schema (the
/// domain writes today's columns, which that schema lacks); the password hash comes from
/// registering the same user on a scratch database.
async fn user_at_first_schema(db: &zeroscale_db::Db, name: &str, credits: i64) {
    use zeroscale_db::testing::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let scratch = common::sqlite(&format!("bk-hash-{name}")).await;
    scratch
        .domain(chat())
        .users()
        .register(NewUser {
            username: name.into(),
            password: PASSWORD.into(),
            role: Role::User,
            credits,
        })
        .await
        .unwrap();
    let row = zeroscale_db::testing::conn(&scratch.db)
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT password_hash FROM users".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let hash: String = row.try_get("", "password_hash").unwrap();
    scratch.cleanup().await;
    zeroscale_db::testing::conn(db)
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "INSERT INTO users (id, username, password_hash, role, active, credits, created_at, \
             updated_at) VALUES (?, ?, ?, 'user', true, ?, ?, ?)",
            [
                format!("id-{name}").into(),
                name.into(),
                hash.into(),
                credits.into(),
                chrono::Utc::now().into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await
        .unwrap();
}

/// Each damaged archive is refused with a clear error, and the target stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_change_nothing() {
    let source = common::sqlite("bk-bad-src").await;
    fill(&source.domain(chat())).await;
    let (good, _) = archive_of(&source.db).await;
    let text = gunzip(&good);
    let lines: Vec<&str> = text.lines().collect();
    // One byte of a row changed. (A flip in the compressed stream is not always a
    // change: some bits of a deflate stream, like the gzip header's time, change nothing
    // that is decoded.)
    let flip = {
        let row = text.find("\n[").expect("a row") + 2;
        let mut bytes = text.clone().into_bytes();
        bytes[row + 5] ^= 0x01;
        gzip(&String::from_utf8(bytes).unwrap())
    };
    let wrong_checksum = gzip(&text.replacen("\"sha256\":\"", "\"sha256\":\"0", 1));
    let newer = gzip(&text.replacen("\"version\":1", "\"version\":99", 1));
    // A whole table taken out (its header, rows and end), the manifest left as it was.
    let start = lines
        .iter()
        .position(|l| l.contains("\"table\":\"system_prompts\""))
        .unwrap();
    let end = lines
        .iter()
        .position(|l| l.starts_with("{\"end\":\"system_prompts\""))
        .unwrap();
    let missing: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < start || *i > end)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        ("flipped byte", flip, "not valid"),
        ("wrong checksum", wrong_checksum, "checksum"),
        ("newer format", newer, "newer than this zeroscale reads"),
        ("missing table", gzip(&missing), "manifest does not match"),
    ];
    let target = common::sqlite("bk-bad-target").await;
    for (what, bytes, expected) in cases {
        let err = restore_bytes(&target.db, &bytes, RestoreOptions::default())
            .await
            .expect_err(what);
        let text = err.to_string();
        assert!(text.contains(expected), "{what}: {text}");
        assert!(
            target.domain(chat()).users().count().await.unwrap() == 0,
            "{what}: the target changed"
        );
    }

    // A target with rows is refused unless --replace; with it, it is replaced.
    let full = common::sqlite("bk-bad-full").await;
    full.domain(chat())
        .users()
        .register(NewUser {
            username: "someone".into(),
            password: PASSWORD.into(),
            role: Role::User,
            credits: 0,
        })
        .await
        .unwrap();
    let err = restore_bytes(&full.db, &good, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    let fd = full.domain(chat());
    fd.users()
        .by_username("someone")
        .await
        .expect("left as it was");
    restore_bytes(&full.db, &good, RestoreOptions { replace: true })
        .await
        .unwrap();
    assert!(fd.users().by_username("someone").await.is_err(), "replaced");
    fd.users().authenticate("ada", PASSWORD).await.unwrap();

    source.cleanup().await;
    target.cleanup().await;
    full.cleanup().await;
}

/// A backup taken while 8 writers append chat messages restores to a state that existed:
/// every session's messages are a prefix of what its writer wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_is_consistent() {
    let source = common::sqlite("bk-load").await;
    let d = source.domain(chat());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let d = d.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 900 {
                d.chat()
                    .append(NewMessage {
                        session_id: format!("w{w}"),
                        role: ChatRole::User,
                        content: format!("{n}"),
                        user_id: None,
                        api_key_id: None,
                        metadata: json!({}),
                    })
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (bytes, manifest) = archive_of(&source.db).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let target = common::sqlite("bk-load-target").await;
    restore_bytes(&target.db, &bytes, RestoreOptions::default())
        .await
        .unwrap();
    let td = target.domain(chat());
    let mut total = 0;
    for w in 0..8 {
        let page = td
            .chat()
            .list(&format!("w{w}"), None, Some(10_000))
            .await
            .unwrap();
        let got: Vec<String> = page.messages.iter().map(|m| m.content.clone()).collect();
        let want: Vec<String> = (0..got.len()).map(|n| n.to_string()).collect();
        assert_eq!(got, want, "writer {w}: not a prefix of what was written");
        total += got.len() as u64;
    }
    let rows = manifest
        .tables
        .iter()
        .find(|t| t.name == "chat_messages")
        .unwrap()
        .rows;
    assert_eq!(total, rows);
    assert!(rows > 0, "the writers wrote before the backup");
    source.cleanup().await;
    target.cleanup().await;
}

/// The archive committed with format version 1 restores, now and as the schema grows.
#[tokio::test]
async fn the_committed_v1_archive_still_restores() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/backup-v1.zsbackup"
    ))
    .unwrap();
    let manifest = backup::verify(&bytes[..]).unwrap();
    assert_eq!(manifest.version, 1);
    let target = common::sqlite("bk-v1").await;
    restore_bytes(&target.db, &bytes, RestoreOptions::default())
        .await
        .unwrap();
    let d = target.domain(chat());
    d.users().authenticate("ada", PASSWORD).await.unwrap();
    let page = d.chat().list("session-0", None, Some(1000)).await.unwrap();
    assert_eq!(page.messages.len(), 100);
    target.cleanup().await;
}

/// Writes the committed archive (run by hand when the format version changes:
/// `cargo test -p zeroscale-db --test backup -- --ignored write_v1_fixture`).
#[tokio::test]
#[ignore = "writes tests/fixtures/backup-v1.zsbackup; run by hand"]
async fn write_v1_fixture() {
    let source = common::sqlite("bk-fixture").await;
    fill(&source.domain(chat())).await;
    let (bytes, _) = archive_of(&source.db).await;
    std::fs::write(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/backup-v1.zsbackup"
        ),
        bytes,
    )
    .unwrap();
    source.cleanup().await;
}

/// SQLite stores NUL characters that PostgreSQL's text and jsonb refuse: a restore into
/// PostgreSQL names the row and column and loads nothing; into SQLite it round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_named_not_lost() {
    let source = common::sqlite("bk-nul").await;
    let d = source.domain(chat());
    d.prompts()
        .create("with nul", "before\0after")
        .await
        .unwrap();
    let (bytes, _) = archive_of(&source.db).await;
    let sqlite = common::sqlite("bk-nul-sqlite").await;
    restore_bytes(&sqlite.db, &bytes, RestoreOptions::default())
        .await
        .unwrap();
    let prompt = sqlite
        .domain(chat())
        .prompts()
        .get_by_name("with nul")
        .await
        .unwrap();
    assert_eq!(prompt.content, "before\0after");
    if let Some(pg) = common::postgres("bk-nul-pg").await {
        let err = restore_bytes(&pg.db, &bytes, RestoreOptions::default())
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("system_prompts"), "{text}");
        assert!(text.contains("column `content`"), "{text}");
        assert!(text.contains("NUL"), "{text}");
        assert_eq!(pg.domain(chat()).prompts().list().await.unwrap().len(), 0);
        pg.cleanup().await;
    }
    source.cleanup().await;
    sqlite.cleanup().await;
}

/// An archive written at an older schema loads at that schema, then the newer migrations
/// run on its rows: the target ends fully migrated, with the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_archive_is_migrated_after_loading() {
    use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
    let dir = std::env::temp_dir().join(format!("zs-bk-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = |file: &str| {
        let config = DatabaseConfig::Sqlite(SqliteConfig {
            path: Some(dir.join(file)),
            ..Default::default()
        });
        async move { zeroscale_db::Db::connect(&config).await }
    };
    // A database at the first migration only.
    let old = open("old.db").await.unwrap();
    let status = old.migrate_status().await.unwrap();
    let first = status[0].name.clone();
    assert_eq!(old.migrate_up_to(&first).await.unwrap(), 1);
    assert_eq!(old.pending_migrations().await.unwrap(), status.len() - 1);
    user_at_first_schema(&old, "early", 7).await;
    let (bytes, manifest) = archive_of(&old).await;
    assert_eq!(manifest.schema, first);
    assert!(manifest.tables.iter().all(|t| t.name != "user_jobs"));

    // A fresh, unmigrated target.
    let target = open("new.db").await.unwrap();
    restore_bytes(&target, &bytes, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        target.pending_migrations().await.unwrap(),
        0,
        "fully migrated"
    );
    let td = Domain::new(target.clone(), common::test_auth(), chat());
    let user = td.users().authenticate("early", PASSWORD).await.unwrap();
    assert_eq!(user.credits, 7);
    td.jobs()
        .record("job-after", &user.id, "default", "zeroscale.echo")
        .await
        .expect("the newer table exists");
    let _ = old.close().await;
    let _ = target.close().await;
    std::fs::remove_dir_all(dir).ok();
}

/// A target already past the archive's schema (a newer server started on it first) is
/// migrated down to the archive's schema inside the load's transaction, loaded, and
/// migrated up again; when the load fails, the target keeps its schema and its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_past_the_archives_schema_is_migrated_down_first() {
    use zeroscale_core::config::{DatabaseConfig, SqliteConfig};
    let dir = std::env::temp_dir().join(format!("zs-bk-past-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = |file: &str| {
        let config = DatabaseConfig::Sqlite(SqliteConfig {
            path: Some(dir.join(file)),
            ..Default::default()
        });
        async move { zeroscale_db::Db::connect(&config).await }
    };
    let register = |d: Domain, name: &'static str, credits: i64| async move {
        d.users()
            .register(NewUser {
                username: name.into(),
                password: PASSWORD.into(),
                role: Role::User,
                credits,
            })
            .await
            .unwrap()
    };
    // The archive: a database at the first migration.
    let old = open("old.db").await.unwrap();
    let status = old.migrate_status().await.unwrap();
    let (first, latest) = (status[0].name.clone(), status.last().unwrap().name.clone());
    assert_ne!(first, latest, "the test needs two migrations");
    old.migrate_up_to(&first).await.unwrap();
    user_at_first_schema(&old, "early", 7).await;
    let (bytes, manifest) = archive_of(&old).await;
    assert_eq!(manifest.schema, first);

    // An empty target that a newer server has already migrated.
    let fresh = open("fresh.db").await.unwrap();
    fresh.migrate_up().await.unwrap();
    restore_bytes(&fresh, &bytes, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(fresh.pending_migrations().await.unwrap(), 0);
    let fd = Domain::new(fresh.clone(), common::test_auth(), chat());
    assert_eq!(
        fd.users()
            .authenticate("early", PASSWORD)
            .await
            .unwrap()
            .credits,
        7
    );

    // A migrated target with rows of its own, newer tables included.
    let busy = open("busy.db").await.unwrap();
    busy.migrate_up().await.unwrap();
    let bd = Domain::new(busy.clone(), common::test_auth(), chat());
    let late = register(bd.clone(), "late", 3).await;
    bd.jobs()
        .record("job-late", &late.id, "default", "zeroscale.echo")
        .await
        .unwrap();
    let refused = restore_bytes(&busy, &bytes, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");

    // A load that fails after the migration down (the archive names a table the archive's
    // schema does not have) leaves the schema and the rows as they were.
    let current = archive_of(&busy).await.0;
    let mislabelled = gzip(&gunzip(&current).replace(&latest, &first));
    let failed = restore_bytes(&busy, &mislabelled, RestoreOptions { replace: true })
        .await
        .unwrap_err();
    // The first of the newer tables (user_jobs, the queue's) it names.
    assert!(
        failed.to_string().contains("does not exist in this schema"),
        "{failed}"
    );
    assert_eq!(busy.pending_migrations().await.unwrap(), 0);
    assert!(bd.users().authenticate("late", PASSWORD).await.is_ok());
    assert!(bd.jobs().find("job-late").await.unwrap().is_some());

    // With --replace the archive's rows replace the target's, at the latest schema.
    restore_bytes(&busy, &bytes, RestoreOptions { replace: true })
        .await
        .unwrap();
    assert_eq!(busy.pending_migrations().await.unwrap(), 0);
    assert!(bd.users().authenticate("late", PASSWORD).await.is_err());
    assert_eq!(
        bd.users()
            .authenticate("early", PASSWORD)
            .await
            .unwrap()
            .credits,
        7
    );
    let early = bd.users().authenticate("early", PASSWORD).await.unwrap();
    bd.jobs()
        .record("job-after", &early.id, "default", "zeroscale.echo")
        .await
        .expect("the newer table is back, empty");
    for db in [old, fresh, busy] {
        let _ = db.close().await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The database queue's jobs travel only with `with_jobs`; then they restore on another
/// engine with their states and payloads, ready for its workers. A target holding jobs is
/// not empty, and a replaced one keeps none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_travel_only_when_asked() {
    use std::time::Duration;
    use zeroscale_core::Queue;
    use zeroscale_core::config::{DatabaseQueueConfig, JobsConfig};
    use zeroscale_core::queue::{JobState, NackOptions, NewJob, ReserveOptions};
    use zeroscale_db::queue::DbQueue;

    let queue_on = |db: &zeroscale_db::Db| {
        DbQueue::new(
            db.clone(),
            JobsConfig::default(),
            DatabaseQueueConfig::default(),
        )
    };
    let reserve = ReserveOptions {
        queues: vec!["default".into()],
        lease: Duration::from_secs(30),
    };
    let source = common::sqlite("bk-jobs-src").await;
    let q = queue_on(&source.db);
    let mut keyed = NewJob::new("default", "embed", json!({"text": "é 🌍"}));
    keyed.options.idempotency_key = Some("doc-1".into());
    let keyed = q.enqueue(keyed).await.unwrap();
    let failing = q
        .enqueue(NewJob::new("default", "flaky", json!(1)))
        .await
        .unwrap();
    let job = q.reserve(&reserve).await.unwrap().unwrap();
    assert_eq!(job.id, keyed);
    // Failed, to retry in an hour (its attempt counted); the next reservation is `flaky`.
    let again = NackOptions {
        error: "busy".into(),
        retry_after: Some(Duration::from_secs(3600)),
        give_up: false,
    };
    q.nack(&job.lease, again).await.unwrap();
    let job = q.reserve(&reserve).await.unwrap().unwrap();
    assert_eq!(job.id, failing);
    q.nack(
        &job.lease,
        NackOptions {
            error: "no".into(),
            retry_after: None,
            give_up: true,
        },
    )
    .await
    .unwrap();

    let (plain, manifest) = archive_of(&source.db).await;
    assert!(
        manifest
            .tables
            .iter()
            .all(|t| !t.name.starts_with("queue_")),
        "a default backup holds no queue table: {:?}",
        streams(&manifest)
    );
    let mut with_jobs = Vec::new();
    let manifest = backup::backup(
        &source.db,
        &mut with_jobs,
        BackupOptions { with_jobs: true },
        &mut |_| {},
    )
    .await
    .unwrap();
    let rows = |name: &str| {
        manifest
            .tables
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.rows)
    };
    assert_eq!(rows("queue_jobs"), Some(2));
    assert_eq!(rows("queue_idempotency"), Some(1));
    assert_eq!(rows("queue_notices"), None, "wake-up notices never travel");

    let target = match common::postgres("bk-jobs-pg").await {
        Some(pg) => pg,
        None => common::sqlite("bk-jobs-dst").await,
    };
    restore_bytes(&target.db, &with_jobs, RestoreOptions::default())
        .await
        .unwrap();
    let t = queue_on(&target.db);
    let status = t.status(keyed).await.unwrap();
    assert_eq!(
        (status.state, status.attempts, status.last_error.as_deref()),
        (JobState::Failed, 1, Some("busy"))
    );
    assert_eq!(t.status(failing).await.unwrap().state, JobState::Dead);
    let mut same = NewJob::new("default", "embed", json!({}));
    same.options.idempotency_key = Some("doc-1".into());
    assert_eq!(t.enqueue(same).await.unwrap(), keyed, "the key came along");

    // Jobs make a target non-empty; replacing it drops them.
    let refused = restore_bytes(&target.db, &plain, RestoreOptions::default()).await;
    assert!(refused.is_err(), "a target holding jobs was taken as empty");
    assert_eq!(t.stats("default").await.unwrap().failed, 1, "unchanged");
    restore_bytes(&target.db, &plain, RestoreOptions { replace: true })
        .await
        .unwrap();
    let stats = t.stats("default").await.unwrap();
    assert_eq!(stats, Default::default(), "the replaced target kept jobs");
    source.cleanup().await;
    target.cleanup().await;
}

/// Fails the pending generation `fill` left for `bob`: his 3 held credits come back, on
/// whatever engine the data moved to.
#[cfg(feature = "mongodb")]
async fn pending_settles(d: &Domain) {
    let bob = d.users().by_username("bob").await.unwrap();
    let generations = d
        .credits()
        .list_for_user(&bob.id, None, Some(10))
        .await
        .unwrap();
    let pending: Vec<_> = generations
        .iter()
        .filter(|g| g.status == zeroscale_core::domain::GenerationStatus::Pending)
        .collect();
    assert_eq!(pending.len(), 1, "{generations:?}");
    d.credits().fail(&pending[0].id, "moved").await.unwrap();
    let after = d.users().get(&bob.id).await.unwrap();
    assert_eq!(after.credits, bob.credits + 3, "the hold is refunded");
}

/// The headline of MongoDB support: a MongoDB deployment's data moves to SQLite, on to
/// PostgreSQL and back to MongoDB by `db copy`, every table byte-identical in the
/// archive at every step, and the services answer the same on each.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_sqlite_postgres_mongodb_round_trip() {
    use zeroscale_core::config::MongodbTransactions;
    let Some(mongo) = common::mongodb("bk-mongo-src", MongodbTransactions::Off).await else {
        return;
    };
    let d = mongo.domain(chat());
    let filled = fill(&d).await;
    let expected = top_hits(&d, &filled).await;
    let (a, manifest_a) = archive_of(&mongo.db).await;
    assert_eq!(manifest_a.engine, "mongodb");
    let counts = backup::table_counts(&mongo.db, BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(
        counts,
        manifest_a
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect::<Vec<_>>()
    );
    assert!(
        manifest_a
            .tables
            .iter()
            .any(|t| t.name == "chat_messages" && t.rows == 300)
    );
    let copy = |from: &zeroscale_db::Db, to: &zeroscale_db::Db| {
        let (from, to) = (from.clone(), to.clone());
        async move {
            backup::copy(
                &from,
                &to,
                BackupOptions::default(),
                RestoreOptions::default(),
                &mut |_| {},
            )
            .await
            .unwrap()
        }
    };

    // MongoDB → SQLite.
    let sqlite = common::sqlite("bk-mongo-sqlite").await;
    copy(&mongo.db, &sqlite.db).await;
    let (_, manifest_b) = archive_of(&sqlite.db).await;
    assert_eq!(streams(&manifest_b), streams(&manifest_a), "SQLite differs");

    // SQLite → PostgreSQL.
    let Some(pg) = common::postgres("bk-mongo-pg").await else {
        return;
    };
    copy(&sqlite.db, &pg.db).await;
    let (c, manifest_c) = archive_of(&pg.db).await;
    assert_eq!(
        streams(&manifest_c),
        streams(&manifest_a),
        "PostgreSQL differs"
    );
    // (The services after the archives: logins and key checks record their time.)
    check_services(&sqlite.domain(chat()), &filled, &expected).await;

    // PostgreSQL → a new MongoDB database (through a file this time).
    let Some(back) = common::mongodb("bk-mongo-back", MongodbTransactions::Off).await else {
        return;
    };
    let report = restore_bytes(&back.db, &c, RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.rows,
        manifest_a.tables.iter().map(|t| t.rows).sum::<u64>()
    );
    let (_, manifest_d) = archive_of(&back.db).await;
    assert_eq!(
        streams(&manifest_d),
        streams(&manifest_a),
        "MongoDB differs"
    );
    check_services(&back.domain(chat()), &filled, &expected).await;
    // A generation pending at the source settles after the move, on both ends.
    pending_settles(&back.domain(chat())).await;
    pending_settles(&pg.domain(chat())).await;

    // A target with documents is refused, and left as it was; --replace replaces it.
    let err = restore_bytes(&back.db, &a, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    let bd = back.domain(chat());
    bd.users().authenticate("ada", PASSWORD).await.unwrap();
    restore_bytes(&back.db, &a, RestoreOptions { replace: true })
        .await
        .unwrap();
    let (_, manifest_e) = archive_of(&back.db).await;
    assert_eq!(streams(&manifest_e), streams(&manifest_a), "replaced");

    mongo.cleanup().await;
    sqlite.cleanup().await;
    pg.cleanup().await;
    back.cleanup().await;
}

/// What MongoDB cannot take is refused before anything is written, and a load that
/// fails part-way leaves the target empty.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_refuses_what_it_cannot_hold() {
    use zeroscale_core::config::MongodbTransactions;
    let Some(target) = common::mongodb("bk-mongo-refuse", MongodbTransactions::Off).await else {
        return;
    };
    let source = common::sqlite("bk-mongo-refuse-src").await;
    fill(&source.domain(chat())).await;
    let (good, _) = archive_of(&source.db).await;
    let text = gunzip(&good);
    let empty = |db: &zeroscale_db::Db| {
        let db = db.clone();
        async move {
            backup::table_counts(&db, BackupOptions::default())
                .await
                .unwrap()
                .iter()
                .all(|(_, n)| *n == 0)
        }
    };

    // Jobs: the database queue does not run on MongoDB.
    let mut with_jobs = Vec::new();
    backup::backup(
        &source.db,
        &mut with_jobs,
        BackupOptions { with_jobs: true },
        &mut |_| {},
    )
    .await
    .unwrap();
    let err = restore_bytes(&target.db, &with_jobs, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--with-jobs"), "{err}");
    let err = backup::backup(
        &target.db,
        &mut Vec::new(),
        BackupOptions { with_jobs: true },
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--with-jobs"), "{err}");

    // An older schema: restore it into SQLite first.
    let header_end = text.find('\n').unwrap();
    let header: serde_json::Value = serde_json::from_str(&text[..header_end]).unwrap();
    let schema = header["schema"].as_str().unwrap();
    let older = gzip(&text.replace(schema, "m20261203_000003_username_key"));
    let err = restore_bytes(&target.db, &older, RestoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("restore it into SQLite first"),
        "{err}"
    );
    assert!(empty(&target.db).await);

    // A valid archive whose last table repeats a row: the load fails on it, after the
    // other tables went in, and what was loaded is removed again.
    let last_table = text.rfind("{\"table\":").unwrap();
    let row_start = last_table + text[last_table..].find("\n[").unwrap() + 1;
    let row_end = row_start + text[row_start..].find('\n').unwrap() + 1;
    let mut repeated = text.clone();
    repeated.insert_str(row_start, &text[row_start..row_end]);
    let err = restore_bytes(
        &target.db,
        &gzip(&rehash(&repeated)),
        RestoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("loading table"), "{err}");
    assert!(empty(&target.db).await, "nothing left behind");

    source.cleanup().await;
    target.cleanup().await;
}

/// An archive's text with every table's row count and checksum, and the manifest,
/// made to match its rows again (so a test can load rows the archive checks let pass).
#[cfg(feature = "mongodb")]
fn rehash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::new();
    let mut hasher = Sha256::new();
    let mut rows = 0u64;
    let mut tables = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
            rows += 1;
            out.push_str(line);
        } else if line.starts_with("{\"end\":") {
            let mut end: serde_json::Value = serde_json::from_str(line).unwrap();
            let sha = zeroscale_core::hex(&std::mem::take(&mut hasher).finalize());
            end["rows"] = rows.into();
            end["sha256"] = sha.clone().into();
            tables.push(json!({"name": end["end"], "rows": rows, "sha256": sha}));
            rows = 0;
            out.push_str(&end.to_string());
        } else if line.starts_with("{\"manifest\":") {
            let mut manifest: serde_json::Value = serde_json::from_str(line).unwrap();
            manifest["manifest"]["tables"] = serde_json::Value::Array(std::mem::take(&mut tables));
            out.push_str(&manifest.to_string());
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
