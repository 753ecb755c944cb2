//! Backup and restore (#12): `zeroscale backup` and `zeroscale restore` (the release
//! binary, as a user runs them) on a database of chat messages, against the engine's own
//! tools on the same data: `sqlite3 .backup` / `.restore` (a page copy) and `pg_dump -Fc` /
//! `pg_restore`. Reports time, rows/s and each process's peak RSS (held to < 200 MB: the
//! archive streams, rows are never all in memory).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sea_orm::sqlx;
use zeroscale_core::config::{DatabaseConfig, PostgresConfig, SqliteConfig};
use zeroscale_db::Db;

use crate::http::{Stage, binary, configure};
use crate::measure::{Figure, Goal, Plan, Stats, compare};

/// Peak RSS a backup or restore may reach, in MB.
const RSS_LIMIT_MB: f64 = 200.0;

/// The argument that makes this binary the RSS wrapper.
pub(crate) const RSS_WRAPPER: &str = "--rss-of";

/// `zeroscale-bench --rss-of FILE PROGRAM ARGS...`: runs PROGRAM (environment, folder and
/// standard streams inherited), writes its peak RSS in KiB to FILE and exits as it did.
/// A process of its own, so that `RUSAGE_CHILDREN` sees that one child only.
pub(crate) fn rss_wrapper(args: &[String]) -> anyhow::Result<ExitCode> {
    let [file, program, rest @ ..] = args else {
        anyhow::bail!("{RSS_WRAPPER} FILE PROGRAM [ARGS...]");
    };
    let status = Command::new(program).args(rest).status()?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    std::fs::write(file, usage.max_rss().to_string())?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1))
    })
}

/// A command run through the RSS wrapper: set it up, then [`Measured::run`] it.
struct Measured {
    cmd: Command,
    rss_file: PathBuf,
    what: String,
}

impl Measured {
    fn new(program: impl AsRef<Path>, rss_file: &Path) -> anyhow::Result<Measured> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(RSS_WRAPPER)
            .arg(rss_file)
            .arg(program.as_ref())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Ok(Measured {
            cmd,
            rss_file: rss_file.to_path_buf(),
            what: program.as_ref().display().to_string(),
        })
    }

    /// Runs it to the end: its wall time and peak RSS in MB; an error with its output
    /// when it fails.
    fn run(mut self) -> anyhow::Result<(Duration, f64)> {
        let started = Instant::now();
        let out = self.cmd.output()?;
        let took = started.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "{} failed ({}): {}",
            self.what,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let kib: f64 = std::fs::read_to_string(&self.rss_file)?.trim().parse()?;
        Ok((took, kib / 1024.0))
    }
}

/// Where a tool of the PostgreSQL server's version lives: the newest
/// `/usr/lib/postgresql/<version>/bin/<tool>`, else the one on `PATH`.
fn pg_tool(tool: &str) -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let path = e.path().join("bin").join(tool);
            path.is_file().then_some((version, path))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| PathBuf::from(tool), |(_, p)| p)
}

/// One engine's side of the figures.
enum Engine {
    Sqlite { source: PathBuf },
    Postgres { admin_url: String, source: String },
}

impl Engine {
    fn label(&self) -> &'static str {
        match self {
            Engine::Sqlite { .. } => "SQLite",
            Engine::Postgres { .. } => "PostgreSQL",
        }
    }

    /// The settings that point `zeroscale` at the database `target` names (a file or a URL).
    fn stage(&self, target: &str) -> Stage {
        let env = match self {
            Engine::Sqlite { .. } => vec![
                ("ZEROSCALE_DATABASE__KIND".to_owned(), "sqlite".to_owned()),
                ("ZEROSCALE_DATABASE__PATH".to_owned(), target.to_owned()),
            ],
            Engine::Postgres { .. } => vec![
                ("ZEROSCALE_DATABASE__KIND".to_owned(), "postgres".to_owned()),
                ("ZEROSCALE_DATABASE__URL".to_owned(), target.to_owned()),
                (
                    "ZEROSCALE_DATABASE__AUTO_MIGRATE".to_owned(),
                    "false".to_owned(),
                ),
            ],
        };
        Stage { profile: None, env }
    }

    fn source(&self) -> String {
        match self {
            Engine::Sqlite { source } => source.display().to_string(),
            Engine::Postgres { source, .. } => source.clone(),
        }
    }

    /// A fresh, empty target database for one restore; its name for [`Engine::stage`].
    async fn fresh_target(&self, dir: &Path, tag: &str) -> anyhow::Result<String> {
        match self {
            Engine::Sqlite { .. } => {
                let file = dir.join(format!("target-{tag}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
                Ok(file.display().to_string())
            }
            Engine::Postgres { admin_url, .. } => {
                let name = format!("zs_bench_restore_{tag}_{}", std::process::id());
                crate::database::create_database(admin_url, &name).await
            }
        }
    }

    async fn drop_target(&self, target: &str) {
        match self {
            Engine::Sqlite { .. } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{target}{suffix}"));
                }
            }
            Engine::Postgres { .. } => crate::database::drop_database(target).await,
        }
    }

    /// The engine's own backup of the source into `file`.
    fn native_backup(&self, file: &Path, rss: &Path) -> anyhow::Result<Measured> {
        let _ = std::fs::remove_file(file);
        Ok(match self {
            Engine::Sqlite { source } => {
                let mut m = Measured::new("sqlite3", rss)?;
                m.cmd
                    .arg(source)
                    .arg(format!(".backup '{}'", file.display()));
                m
            }
            Engine::Postgres { source, .. } => {
                let mut m = Measured::new(pg_tool("pg_dump"), rss)?;
                m.cmd.args(["-Fc", "-f"]).arg(file).arg(source);
                m
            }
        })
    }

    /// The engine's own restore of `file` into `target`.
    fn native_restore(&self, file: &Path, target: &str, rss: &Path) -> anyhow::Result<Measured> {
        Ok(match self {
            Engine::Sqlite { .. } => {
                let mut m = Measured::new("sqlite3", rss)?;
                m.cmd
                    .arg(target)
                    .arg(format!(".restore '{}'", file.display()));
                m
            }
            Engine::Postgres { .. } => {
                let mut m = Measured::new(pg_tool("pg_restore"), rss)?;
                m.cmd.args(["--no-owner", "-d", target]).arg(file);
                m
            }
        })
    }

    fn native_names(&self) -> (&'static str, &'static str) {
        match self {
            Engine::Sqlite { .. } => ("sqlite3 .backup", "sqlite3 .restore"),
            Engine::Postgres { .. } => ("pg_dump -Fc", "pg_restore"),
        }
    }
}

/// `zeroscale <args>` against the database `target` names, through the RSS wrapper.
fn ours(engine: &Engine, dir: &Path, target: &str, rss: &Path) -> anyhow::Result<Measured> {
    let mut m = Measured::new(binary()?, rss)?;
    configure(&mut m.cmd, dir, &engine.stage(target))?;
    m.cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    Ok(m)
}

/// Fills the migrated source with `n` chat messages over 1,000 sessions, made by the
/// engine itself (ids, roles, texts of 20-110 characters, JSON metadata, timestamps).
async fn fill(engine: &Engine, n: usize) -> anyhow::Result<()> {
    let config = match engine {
        Engine::Sqlite { source } => DatabaseConfig::Sqlite(SqliteConfig {
            path: Some(source.clone()),
            ..Default::default()
        }),
        Engine::Postgres { source, .. } => DatabaseConfig::Postgres(PostgresConfig {
            url: source.clone().into(),
            ..Default::default()
        }),
    };
    let db = Db::connect(&config).await?;
    db.migrate_up().await?;
    db.close().await?;
    let n = i64::try_from(n)?;
    match engine {
        Engine::Sqlite { source } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", source.display())).await?;
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) \
                 INSERT INTO chat_messages (id, session_id, role, content, user_id, api_key_id, \
                 metadata, created_at) \
                 SELECT printf('%08x-0000-7000-8000-%012d', i, i), 'session-' || (i % 1000), \
                 CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, \
                 'message ' || i || ' ' || substr('lorem ipsum dolor sit amet, consectetur \
                 adipiscing elit, sed do eiusmod tempor incididunt ut labore', 1, 10 * (1 + i % 10)), \
                 NULL, NULL, json_object('tokens', i % 500), \
                 strftime('%Y-%m-%dT%H:%M:%f+00:00', 1767225600 + i / 1000.0, 'unixepoch') FROM n",
            )
            .bind(n)
            .execute(&pool)
            .await?;
            pool.close().await;
        }
        Engine::Postgres { source, .. } => {
            let pool = sqlx::PgPool::connect(source).await?;
            sqlx::query(
                "INSERT INTO chat_messages (id, session_id, role, content, user_id, api_key_id, \
                 metadata, created_at) \
                 SELECT lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(i::text, 12, '0'), \
                 'session-' || (i % 1000), CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, \
                 'message ' || i || ' ' || substr('lorem ipsum dolor sit amet, consectetur \
                 adipiscing elit, sed do eiusmod tempor incididunt ut labore'::text, 1, (10 * (1 + i % 10))::int), \
                 NULL, NULL, jsonb_build_object('tokens', i % 500), \
                 timestamptz '2026-01-01 00:00:00+00' + i * interval '1 millisecond' \
                 FROM generate_series(0::bigint, $1 - 1) AS i",
            )
            .bind(n)
            .execute(&pool)
            .await?;
            sqlx::query("VACUUM ANALYZE chat_messages")
                .execute(&pool)
                .await?;
            pool.close().await;
        }
    }
    Ok(())
}

/// Every backup figure, on SQLite and (when the test server runs) PostgreSQL.
pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    // Three rounds of a million rows already take minutes; the spread is small.
    let plan = Plan {
        rounds: plan.rounds.min(3),
        ..plan
    };
    let n = plan.size(1_000_000, 20_000);
    let mut figures = Vec::new();
    let sqlite = Engine::Sqlite {
        source: dir.join("source.db"),
    };
    fill(&sqlite, n).await?;
    figures.extend(engine(plan, &dir, &sqlite, n).await?);
    match std::env::var("ZEROSCALE_TEST_POSTGRES_URL") {
        Ok(admin_url) => {
            let name = format!("zs_bench_backup_{}", std::process::id());
            let source = crate::database::create_database(&admin_url, &name).await?;
            let pg = Engine::Postgres {
                admin_url,
                source: source.clone(),
            };
            let result = match fill(&pg, n).await {
                Ok(()) => engine(plan, &dir, &pg, n).await,
                Err(e) => Err(e),
            };
            crate::database::drop_database(&source).await;
            figures.extend(result?);
        }
        Err(_) => {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_POSTGRES_URL is not set: run `cargo xtask bench`, which starts PostgreSQL"
            );
            eprintln!("backup: no ZEROSCALE_TEST_POSTGRES_URL, PostgreSQL skipped");
        }
    }
    Ok(figures)
}

/// Peak RSS of each side per round, in MB.
#[derive(Default)]
struct Peaks {
    ours: Vec<f64>,
    theirs: Vec<f64>,
}

async fn engine(plan: Plan, dir: &Path, engine: &Engine, n: usize) -> anyhow::Result<Vec<Figure>> {
    let label = engine.label();
    let (backup_peer, restore_peer) = engine.native_names();
    let archive = dir.join("bench.zsbackup");
    let native = dir.join("native.backup");
    let rss = dir.join("rss");
    let failure: Rc<RefCell<Option<anyhow::Error>>> = Rc::default();
    let keep = |result: anyhow::Result<(Duration, f64)>, peaks: &mut Vec<f64>| match result {
        Ok((took, mb)) => {
            peaks.push(mb);
            took
        }
        Err(e) => {
            failure.borrow_mut().get_or_insert(e);
            Duration::ZERO
        }
    };

    let backup_peaks = RefCell::new(Peaks::default());
    let source = engine.source();
    let mut backup = compare(
        plan,
        "backup",
        format!("backup, {n} chat messages, {label}"),
        backup_peer,
        Goal::Report,
        |_| {
            let result = ours(engine, dir, &source, &rss).and_then(|mut m| {
                let _ = std::fs::remove_file(&archive);
                m.cmd.arg("backup").arg("--output").arg(&archive);
                m.run()
            });
            let took = keep(result, &mut backup_peaks.borrow_mut().ours);
            async move { took }
        },
        |_| {
            let result = engine.native_backup(&native, &rss).and_then(Measured::run);
            let took = keep(result, &mut backup_peaks.borrow_mut().theirs);
            async move { took }
        },
    )
    .await;
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    let size = |file: &Path| std::fs::metadata(file).map_or(0.0, |m| m.len() as f64 / 1e6);
    backup.against = Some(format!(
        "{backup_peer} ({:.1} MB file; the archive: {:.1} MB)",
        size(&native),
        size(&archive)
    ));

    let restore_peaks = RefCell::new(Peaks::default());
    let (archive, native, rss, keep, peaks) = (&archive, &native, &rss, &keep, &restore_peaks);
    let restore = compare(
        plan,
        "backup",
        format!("restore, {n} chat messages, {label}"),
        restore_peer,
        Goal::Report,
        |round| async move {
            let result = async {
                let target = engine.fresh_target(dir, &format!("ours{round}")).await?;
                let ran = ours(engine, dir, &target, rss).and_then(|mut m| {
                    m.cmd.arg("restore").arg(archive);
                    m.run()
                });
                engine.drop_target(&target).await;
                ran
            }
            .await;
            keep(result, &mut peaks.borrow_mut().ours)
        },
        |round| async move {
            let result = async {
                let target = engine.fresh_target(dir, &format!("theirs{round}")).await?;
                let ran = engine
                    .native_restore(native, &target, rss)
                    .and_then(Measured::run);
                engine.drop_target(&target).await;
                ran
            }
            .await;
            keep(result, &mut peaks.borrow_mut().theirs)
        },
    )
    .await;
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }

    let mut figures = Vec::new();
    for (what, figure, peaks, peer) in [
        ("backup", backup, backup_peaks.into_inner(), backup_peer),
        ("restore", restore, restore_peaks.into_inner(), restore_peer),
    ] {
        let per_second = |ms: f64| n as f64 / (ms / 1e3);
        figures.push(Figure {
            concern: "backup",
            name: format!("{what} rows/s, {label}"),
            unit: "rows/s",
            ours: Stats {
                median: per_second(figure.ours.median),
                min: per_second(figure.ours.max),
                max: per_second(figure.ours.min),
            },
            theirs: None,
            against: None,
            ratio: None,
            goal: Goal::Report,
            pass: None,
            rounds: figure.rounds,
        });
        let ours = Stats::of(&peaks.ours);
        figures.push(Figure {
            concern: "backup",
            name: format!("{what} peak RSS, {label}"),
            unit: "MB",
            ours,
            theirs: Some(Stats::of(&peaks.theirs)),
            against: Some(peer.to_owned()),
            ratio: None,
            goal: Goal::Below {
                value: RSS_LIMIT_MB,
            },
            // Every round stays below the limit, not only the median.
            pass: (!plan.quick).then_some(ours.max < RSS_LIMIT_MB),
            rounds: figure.rounds,
        });
        figures.insert(figures.len() - 2, figure);
    }
    Ok(figures)
}
