//! `zeroscale backup`, `zeroscale restore` and `zeroscale db copy`: the database in one
//! portable archive (zeroscale-db's `backup` module; docs/backup.md), with a bar per table
//! on a terminal and log lines elsewhere, and `--json` summaries.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use zeroscale_core::config::{Config, LoadedConfig};
use zeroscale_db::backup::{self, BackupOptions, Manifest, Progress, RestoreOptions};

use crate::cli::DbCommand;

/// Shows progress: a bar per table on a terminal, a log line per table elsewhere.
pub(crate) struct Reporter {
    bar: Option<ProgressBar>,
    terminal: bool,
}

impl Reporter {
    pub(crate) fn new() -> Self {
        Reporter {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn event(&mut self, event: Progress) {
        match event {
            Progress::Table { name, rows } => {
                if self.terminal {
                    let bar = rows.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {msg:<16} {bar:30} {pos}/{len} rows",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(name);
                    self.bar = Some(bar);
                }
            }
            Progress::Rows(n) => {
                if let Some(bar) = &self.bar {
                    bar.set_position(n);
                }
            }
            Progress::TableDone { name, rows } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                tracing::info!(table = %name, rows, "table done");
            }
        }
    }
}

fn summary(what: &str, manifest: &Manifest, json: bool, extra: &str) {
    if json {
        let value = serde_json::json!({ "action": what, "manifest": manifest, "detail": extra });
        println!("{value}");
        return;
    }
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    println!(
        "{what}: {rows} rows in {} tables (schema {}, from {}){extra}",
        manifest.tables.len(),
        manifest.schema,
        manifest.engine
    );
    for t in &manifest.tables {
        println!("  {:<20} {:>10} rows", t.name, t.rows);
    }
}

async fn open_db(config: &Config) -> anyhow::Result<zeroscale_db::Db> {
    crate::wiring::open_db(config).await
}

fn default_output(config: &Config) -> anyhow::Result<PathBuf> {
    let dir = config.data_dir()?.join("backups");
    zeroscale_core::config::ensure_private_dir(&dir).map_err(anyhow::Error::from)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    Ok(dir.join(format!("zeroscale-{stamp}.zsbackup")))
}

/// `zeroscale backup [--output FILE|-]`.
pub(crate) async fn backup(
    loaded: &LoadedConfig,
    output: Option<PathBuf>,
    with_jobs: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let db = open_db(&loaded.config).await?;
    let what = BackupOptions { with_jobs };
    let mut reporter = Reporter::new();
    if output.as_deref() == Some(Path::new("-")) {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let manifest = backup::backup(&db, &mut lock, what, &mut |e| reporter.event(e))
            .await
            .map_err(anyhow::Error::from)?;
        if json {
            eprintln!(
                "{}",
                serde_json::json!({ "action": "backup", "manifest": manifest })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = match output {
        Some(path) => path,
        None => default_output(&loaded.config)?,
    };
    // Written beside and renamed at the end: a half-written file never has the name.
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let result = backup::backup(&db, &mut file, what, &mut |e| reporter.event(e)).await;
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(anyhow::Error::from(e).context("the backup failed"));
        }
    };
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    summary(
        "backup",
        &manifest,
        json,
        &format!(" -> {}", path.display()),
    );
    Ok(ExitCode::SUCCESS)
}

/// `zeroscale restore FILE [--replace]`.
pub(crate) async fn restore(
    loaded: &LoadedConfig,
    file: PathBuf,
    replace: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if file == Path::new("-") {
        anyhow::bail!(
            "restore reads the archive twice (to verify it, then to load it): give a file, \
             not standard input"
        );
    }
    let db = open_db(&loaded.config).await?;
    let path = file.clone();
    let open = move || -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(&path)?))
    };
    let mut reporter = Reporter::new();
    let report = backup::restore(&db, &open, RestoreOptions { replace }, &mut |e| {
        reporter.event(e);
    })
    .await
    .map_err(anyhow::Error::from)
    .with_context(|| format!("nothing was restored from {}", file.display()))?;
    summary(
        "restore",
        &report.manifest,
        json,
        &format!(" into {}", db.location()),
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `--from`/`--to` is a database URL rather than a profile or a file.
fn is_database_url(which: &str) -> bool {
    let lower = which.to_ascii_lowercase();
    [
        "postgres://",
        "postgresql://",
        "mongodb://",
        "mongodb+srv://",
        "sqlite:",
    ]
    .iter()
    .any(|scheme| lower.starts_with(scheme))
}

/// A URL without its password, for messages.
fn redact(which: &str) -> String {
    match (which.find("://"), which.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &which[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &which[..scheme + 3], &which[at..]),
                None => which.to_owned(),
            }
        }
        _ => which.to_owned(),
    }
}

/// The config `--from`/`--to` names: a profile, a config file, or a database URL (the
/// rest of the config as the command's own).
fn database_named(
    which: &str,
    base: &zeroscale_core::config::ConfigSources,
) -> anyhow::Result<Config> {
    if !is_database_url(which) {
        if which.contains("://") {
            anyhow::bail!(
                "`{}` is not a database URL zeroscale reads: use `sqlite://FILE`, \
                 `postgres://…` or `mongodb://…` (or a profile name or config file)",
                redact(which)
            );
        }
        return crate::wiring::load_named(which, base);
    }
    let sources = zeroscale_core::config::ConfigSources {
        db_url: Some(which.to_owned()),
        db_backend: None,
        ..base.clone()
    };
    Ok(zeroscale_core::config::load(&sources)
        .map_err(anyhow::Error::from)?
        .config)
}

/// `zeroscale db …`.
pub(crate) async fn db(
    command: DbCommand,
    base: &zeroscale_core::config::ConfigSources,
) -> anyhow::Result<ExitCode> {
    let DbCommand::Copy {
        from,
        to,
        with_jobs,
        replace,
        json,
    } = command;
    let source =
        database_named(&from, base).with_context(|| format!("--from {}", redact(&from)))?;
    let target = database_named(&to, base).with_context(|| format!("--to {}", redact(&to)))?;
    let source = open_db(&source).await.context("--from")?;
    let target = open_db(&target).await.context("--to")?;
    eprintln!("copying {} -> {}", source.location(), target.location());
    let mut reporter = Reporter::new();
    let what = BackupOptions { with_jobs };
    let report = backup::copy(
        &source,
        &target,
        what,
        RestoreOptions { replace },
        &mut |e| {
            reporter.event(e);
        },
    )
    .await
    .map_err(anyhow::Error::from)
    .context("nothing was copied")?;
    summary(
        "copy",
        &report.manifest,
        json,
        &format!(" into {}", target.location()),
    );
    Ok(ExitCode::SUCCESS)
}
