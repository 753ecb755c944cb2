//! Database: the hot domain operations through `zeroscale_db::domain` against raw sqlx
//! running the same SQL on the same database, on SQLite (a file, the pragmas and pool
//! size zeroscale uses), on PostgreSQL (a fresh database on the test server, when
//! `ZEROSCALE_TEST_POSTGRES_URL` is set) and on MongoDB against the official driver
//! (`database_mongo.rs`; the test server is Python, so only the ratio means anything).
//!
//! Session and API key validation and the chat page are measured with the domain's caches
//! off (the database path, held to the goal) and on (what a server does; reported).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroscale_core::config::{
    AuthConfig, ChatConfig, DatabaseConfig, MongodbConfig, PostgresConfig, SqliteConfig,
};
use zeroscale_core::domain::{ChatRole, Role, new_id};
use zeroscale_db::Db;
use zeroscale_db::domain::{Domain, NewApiKey, NewGeneration, NewMessage, NewUser};

use crate::measure::{Figure, Goal, Plan, compare};

/// The goal for the database path.
const GOAL: Goal = Goal::AtMost { ratio: 1.15 };

/// The raw side: a sqlx pool of the same engine, file and size.
#[derive(Clone)]
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    /// The official MongoDB driver (`database_mongo.rs`).
    Mongo(crate::database_mongo::RawMongo),
}

/// What the operations run on: ids and secrets made through the domain.
struct Fixture {
    user_id: String,
    token: String,
    key: String,
}

pub(crate) fn sha256_hex(text: &str) -> String {
    zeroscale_core::hex(&Sha256::digest(text.as_bytes()))
}

/// Every database figure, on each engine there is.
pub(crate) async fn run(plan: Plan, dir: &std::path::Path) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    std::fs::create_dir_all(dir)?;
    let file = dir.join("bench.db");
    let sqlite = DatabaseConfig::Sqlite(SqliteConfig {
        path: Some(file.clone()),
        ..Default::default()
    });
    // The raw pools are set up as zeroscale's are (size, pragmas, when to ping), so the
    // figures compare the layers above the pool.
    let raw = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .test_before_acquire(false)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&file)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5)),
        );
    let db = open(&sqlite).await?;
    figures.extend(engine(plan, "SQLite", db, Raw::Sqlite(raw.await?)).await?);

    match std::env::var("ZEROSCALE_TEST_POSTGRES_URL") {
        Ok(admin_url) => {
            let name = format!("zs_bench_{}", std::process::id());
            let url = create_database(&admin_url, &name).await?;
            let config = DatabaseConfig::Postgres(PostgresConfig {
                url: url.clone().into(),
                ..Default::default()
            });
            let db = open(&config).await?;
            let pool_size = match &config {
                DatabaseConfig::Postgres(c) => c.max_connections,
                _ => unreachable!(),
            };
            let raw = sqlx::postgres::PgPoolOptions::new()
                .max_connections(pool_size)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    // Ping only connections idle for 10 s, as zeroscale's pool does.
                    Box::pin(async move {
                        if meta.idle_for >= Duration::from_secs(10) {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect(&url)
                .await?;
            let result = engine(plan, "PostgreSQL", db.clone(), Raw::Postgres(raw.clone())).await;
            raw.close().await;
            let _ = db.close().await;
            drop_database(&url).await;
            figures.extend(result?);
        }
        Err(_) => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_POSTGRES_URL is not set: run `cargo xtask bench`, which starts PostgreSQL"
            );
            eprintln!("database: no ZEROSCALE_TEST_POSTGRES_URL, PostgreSQL skipped");
        }
    }
    match std::env::var("ZEROSCALE_TEST_MONGODB_URL") {
        Ok(base) => {
            let (server, _) = base
                .rsplit_once('/')
                .ok_or_else(|| anyhow::anyhow!("ZEROSCALE_TEST_MONGODB_URL names no database"))?;
            let url = format!("{server}/zs_bench_{}", std::process::id());
            let config = DatabaseConfig::Mongodb(MongodbConfig {
                url: url.clone().into(),
                ..Default::default()
            });
            let db = open(&config).await?;
            let raw = crate::database_mongo::RawMongo::connect(&url).await?;
            let result = engine(
                plan,
                "MongoDB (test server nx-27017, Python: not MongoDB's speed)",
                db.clone(),
                Raw::Mongo(raw.clone()),
            )
            .await;
            let _ = raw.0.drop().await;
            let _ = db.close().await;
            figures.extend(result?);
        }
        Err(_) => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_MONGODB_URL is not set: run `cargo xtask bench`, which starts MongoDB's test server"
            );
            eprintln!("database: no ZEROSCALE_TEST_MONGODB_URL, MongoDB skipped");
        }
    }
    Ok(figures)
}

/// A fresh, empty database `name` on the server `admin_url` names; its URL.
pub(crate) async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = sqlx::PgPool::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await?;
    admin.close().await;
    with_database(admin_url, name)
}

/// Drops the database `url` names (best effort: a bench leftover is only disk space).
pub(crate) async fn drop_database(url: &str) {
    let Some((server, name)) = url.split('?').next().and_then(|u| u.rsplit_once('/')) else {
        return;
    };
    let admin_url = format!("{server}/postgres");
    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

pub(crate) fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .ok_or_else(|| anyhow::anyhow!("cannot find the database name in the PostgreSQL URL"))?;
    Ok(match query {
        Some(q) => format!("{}/{name}?{q}", &base[..cut]),
        None => format!("{}/{name}", &base[..cut]),
    })
}

async fn open(config: &DatabaseConfig) -> anyhow::Result<Db> {
    let db = Db::connect(config).await?;
    db.migrate_up().await?;
    Ok(db)
}

fn domain(db: &Db, cache_ttl_ms: u64) -> Domain {
    Domain::new(
        db.clone(),
        AuthConfig {
            cache_ttl_ms,
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            ..Default::default()
        },
        ChatConfig {
            max_messages_per_session: 1_000_000,
            cache_ttl_ms,
            ..Default::default()
        },
    )
}

async fn fixture(d: &Domain) -> anyhow::Result<Fixture> {
    let user = d
        .users()
        .register(NewUser {
            username: "bench".into(),
            password: "correct horse battery".into(),
            role: Role::User,
            credits: 1_000_000_000,
        })
        .await?;
    let token = d.sessions().create(&user.id).await?.token;
    let key = d
        .api_keys()
        .create(NewApiKey {
            user_id: user.id.clone(),
            client_name: "bench".into(),
            ..Default::default()
        })
        .await?
        .plaintext;
    for i in 0..100 {
        d.chat()
            .append(NewMessage {
                session_id: "read".into(),
                role: ChatRole::User,
                content: format!("message {i} of the page the bench reads"),
                user_id: Some(user.id.clone()),
                api_key_id: None,
                metadata: json!({}),
            })
            .await?;
    }
    Ok(Fixture {
        user_id: user.id,
        token,
        key,
    })
}

/// The operations measured, each run through the domain and through raw sqlx.
#[derive(Debug, Clone, Copy)]
enum Op {
    Session,
    Key,
    Append,
    Page,
    Reserve,
}

impl Op {
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Op::Session => ("session validation", "raw sqlx, the same SELECT"),
            Op::Key => ("API key validation", "raw sqlx, the same SELECT"),
            Op::Append => (
                "chat append (own transaction, cap checked)",
                "raw sqlx, the same statements",
            ),
            Op::Page => ("chat page (100 messages)", "raw sqlx, the same SELECT"),
            Op::Reserve => (
                "credit reservation (debit + pending generation)",
                "raw sqlx, the same statements",
            ),
        }
    }

    /// One operation through the domain.
    async fn ours(self, d: &Domain, fx: &Fixture, i: usize) {
        match self {
            Op::Session => {
                d.sessions().validate(&fx.token).await.expect("validate");
            }
            Op::Key => {
                d.api_keys().validate(&fx.key).await.expect("validate key");
            }
            Op::Append => {
                d.chat()
                    .append(NewMessage {
                        session_id: "append-ours".into(),
                        role: ChatRole::User,
                        content: format!("appended message {i}"),
                        user_id: Some(fx.user_id.clone()),
                        api_key_id: None,
                        metadata: json!({}),
                    })
                    .await
                    .expect("append");
            }
            Op::Page => {
                let page = d.chat().list("read", None, Some(100)).await.expect("page");
                assert_eq!(page.messages.len(), 100);
            }
            Op::Reserve => {
                d.credits()
                    .reserve(NewGeneration {
                        user_id: fx.user_id.clone(),
                        model: "bench".into(),
                        prompt: "a lighthouse".into(),
                        params: json!({"width": 64}),
                        cost: 1,
                    })
                    .await
                    .expect("reserve");
            }
        }
    }

    /// The same operation through raw sqlx.
    async fn theirs(self, raw: &Raw, fx: &Fixture, i: usize) {
        match self {
            Op::Session => raw.validate_session(&fx.token).await.expect("raw validate"),
            Op::Key => raw.validate_key(&fx.key).await.expect("raw validate key"),
            Op::Append => raw
                .append("append-raw", &format!("appended message {i}"), &fx.user_id)
                .await
                .expect("raw append"),
            Op::Page => assert_eq!(raw.page("read", 100).await.expect("raw page"), 100),
            Op::Reserve => raw.reserve(&fx.user_id, 1).await.expect("raw reserve"),
        }
    }
}

/// Every operation on one engine: validations and the page with the caches off (held to
/// the goal) and on (reported), and the writes.
async fn engine(plan: Plan, label: &str, db: Db, raw: Raw) -> anyhow::Result<Vec<Figure>> {
    let uncached = domain(&db, 0);
    let cached = domain(&db, 2_000);
    let fx = Arc::new(fixture(&uncached).await?);
    // The MongoDB test server is Python: a tenth of the operations keeps a full run in
    // minutes (its chat appends slow down as the session grows).
    let n = match raw {
        Raw::Mongo(_) => plan.size(100, 20),
        _ => plan.size(1_000, 100),
    };
    let runs = [
        (Op::Session, &uncached, "cache off"),
        (Op::Key, &uncached, "cache off"),
        (Op::Session, &cached, "cache on"),
        (Op::Key, &cached, "cache on"),
        (Op::Append, &uncached, ""),
        (Op::Page, &uncached, "cache off"),
        (Op::Page, &cached, "cache on"),
        (Op::Reserve, &uncached, ""),
    ];
    let mut figures = Vec::new();
    for (op, d, cache) in runs {
        let (what, against) = op.describe();
        let against = match raw {
            Raw::Mongo(_) => "the official mongodb driver, the same queries and updates",
            _ => against,
        };
        let (name, goal) = match cache {
            "" => (format!("{label} {n} × {what}"), GOAL),
            "cache on" => (format!("{label} {n} × {what} ({cache})"), Goal::Report),
            _ => (format!("{label} {n} × {what} ({cache})"), GOAL),
        };
        let ours = |_| {
            let (d, fx) = (d.clone(), fx.clone());
            async move {
                let start = Instant::now();
                for i in 0..n {
                    op.ours(&d, &fx, i).await;
                }
                start.elapsed()
            }
        };
        let theirs = |_| {
            let (raw, fx) = (raw.clone(), fx.clone());
            async move {
                let start = Instant::now();
                for i in 0..n {
                    op.theirs(&raw, &fx, i).await;
                }
                start.elapsed()
            }
        };
        figures.push(compare(plan, "database", name, against, goal, ours, theirs).await);
    }
    Ok(figures)
}

/// The columns the domain reads for a session and its user.
type SessionRow = (
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// The columns the domain reads for a key and its user.
type KeyRow = (
    String,
    String,
    String,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<String>,
);

const SESSION_SQL: &str = "SELECT s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at, \
     u.id, u.username, u.password_hash, u.role, u.active, u.credits, u.created_at, \
     u.updated_at, u.last_login_at FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
     WHERE s.token_hash = ? LIMIT 1";
const KEY_SQL: &str = "SELECT k.id, k.user_id, k.key_hash, k.active, k.revoked_at, \
     k.last_used_at, u.id, u.active, u.credits, u.role FROM api_keys k \
     LEFT JOIN users u ON u.id = k.user_id WHERE k.prefix = ? LIMIT 1";
const COUNT_SQL: &str = "SELECT COUNT(*) FROM chat_messages WHERE session_id = ?";
const INSERT_MESSAGE_SQL: &str = "INSERT INTO chat_messages (id, session_id, role, content, \
     user_id, api_key_id, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const PAGE_SQL: &str = "SELECT id, session_id, role, content, user_id, api_key_id, metadata, \
     created_at FROM chat_messages WHERE session_id = ? ORDER BY id ASC LIMIT ?";
const DEBIT_SQL: &str = "UPDATE users SET credits = credits - ?, updated_at = ? \
     WHERE id = ? AND active = ? AND credits >= ?";
const INSERT_GENERATION_SQL: &str = "INSERT INTO generations (id, user_id, model, prompt, \
     params, status, reserved_credits, actual_cost, provider, result, error, created_at, \
     updated_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?, NULL)";

/// `sql` with PostgreSQL's placeholders, made once per statement.
fn numbered(sql: &'static str) -> &'static str {
    static MADE: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, &'static str>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    made.entry(sql)
        .or_insert_with(|| Box::leak(dollar_placeholders(sql).into_boxed_str()))
}

/// `?` placeholders as PostgreSQL's `$n`.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// One operation written once for both engines: `$pool` is the engine's pool, `$sql`
/// turns a `?` statement into the engine's.
macro_rules! on_engine {
    ($raw:expr, |$pool:ident, $sql:ident| $body:expr) => {
        match $raw {
            Raw::Sqlite($pool) => {
                let $sql = |s: &'static str| s;
                $body
            }
            Raw::Postgres($pool) => {
                let $sql = numbered;
                $body
            }
            Raw::Mongo(_) => unreachable!("MongoDB's raw side is in database_mongo.rs"),
        }
    };
}

impl Raw {
    async fn validate_session(&self, token: &str) -> anyhow::Result<()> {
        if let Raw::Mongo(raw) = self {
            return raw.validate_session(token).await;
        }
        let hash = sha256_hex(token);
        let row: Option<SessionRow> = on_engine!(self, |pool, sql| {
            sqlx::query_as(sql(SESSION_SQL))
                .bind(&hash)
                .fetch_optional(pool)
                .await?
        });
        let row = row.ok_or_else(|| anyhow::anyhow!("unknown session"))?;
        anyhow::ensure!(row.4.is_none() && row.3 > Utc::now(), "session not valid");
        anyhow::ensure!(row.9 == Some(true), "user inactive");
        Ok(())
    }

    async fn validate_key(&self, plaintext: &str) -> anyhow::Result<()> {
        if let Raw::Mongo(raw) = self {
            return raw.validate_key(plaintext).await;
        }
        let prefix = &plaintext[..11];
        let presented = sha256_hex(plaintext);
        let row: Option<KeyRow> = on_engine!(self, |pool, sql| {
            sqlx::query_as(sql(KEY_SQL))
                .bind(prefix)
                .fetch_optional(pool)
                .await?
        });
        let row = row.ok_or_else(|| anyhow::anyhow!("unknown key"))?;
        let same = row.2.len() == presented.len()
            && row
                .2
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        anyhow::ensure!(same && row.3 && row.4.is_none(), "key not valid");
        anyhow::ensure!(row.7 == Some(true), "user inactive");
        Ok(())
    }

    async fn append(&self, session: &str, content: &str, user_id: &str) -> anyhow::Result<()> {
        if let Raw::Mongo(raw) = self {
            return raw.append(session, content, user_id).await;
        }
        let metadata = sqlx::types::Json(json!({}));
        on_engine!(self, |pool, sql| {
            let mut tx = match self {
                Raw::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            if matches!(self, Raw::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(session)
                    .execute(&mut *tx)
                    .await?;
            }
            let (count,): (i64,) = sqlx::query_as(sql(COUNT_SQL))
                .bind(session)
                .fetch_one(&mut *tx)
                .await?;
            anyhow::ensure!(count < 1_000_000, "cap reached");
            sqlx::query(sql(INSERT_MESSAGE_SQL))
                .bind(new_id())
                .bind(session)
                .bind("user")
                .bind(content)
                .bind(Some(user_id))
                .bind(None::<String>)
                .bind(&metadata)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn page(&self, session: &str, limit: i64) -> anyhow::Result<usize> {
        if let Raw::Mongo(raw) = self {
            return raw.page(session, limit).await;
        }
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            sqlx::types::Json<serde_json::Value>,
            DateTime<Utc>,
        );
        let rows: Vec<Row> = on_engine!(self, |pool, sql| {
            sqlx::query_as(sql(PAGE_SQL))
                .bind(session)
                .bind(limit + 1)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.len().min(limit as usize))
    }

    async fn reserve(&self, user_id: &str, cost: i64) -> anyhow::Result<()> {
        if let Raw::Mongo(raw) = self {
            return raw.reserve(user_id, cost).await;
        }
        let params = sqlx::types::Json(json!({"width": 64}));
        on_engine!(self, |pool, sql| {
            let mut tx = match self {
                Raw::Sqlite(_) => pool.begin_with("BEGIN IMMEDIATE").await?,
                _ => pool.begin().await?,
            };
            let at = Utc::now();
            let debited = sqlx::query(sql(DEBIT_SQL))
                .bind(cost)
                .bind(at)
                .bind(user_id)
                .bind(true)
                .bind(cost)
                .execute(&mut *tx)
                .await?;
            anyhow::ensure!(debited.rows_affected() == 1, "not debited");
            sqlx::query(sql(INSERT_GENERATION_SQL))
                .bind(new_id())
                .bind(user_id)
                .bind("bench")
                .bind("a lighthouse")
                .bind(&params)
                .bind("pending")
                .bind(cost)
                .bind(at)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
