//! The app definition: zeroscale's server with your routes, jobs and hooks added, and the
//! command line that runs it ([`App::run`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use zeroscale_core::config::{self, ConfigNames, ConfigSection, ConfigSources, LoadedConfig};
use zeroscale_queue::worker::{HandlerResult, JobContext, Worker};

use crate::cli::{Cli, Command, ConfigCommand};
use crate::wiring::Services;

/// A background job of your app: a task name, its payload type and what running it does.
///
/// Register it with [`App::job`]: `zeroscale worker` (and `serve`'s in-process workers)
/// then run it, and `POST /v1/jobs` accepts its name. A job can run more than once (a
/// worker that dies mid-job, a retry after an error): make [`Job::run`] idempotent, for
/// example keyed by [`JobContext::id`].
///
/// ```
/// use zeroscale_app::{Job, TaskContext};
///
/// #[derive(serde::Deserialize)]
/// struct Greet {
///     name: String,
/// }
///
/// struct SayHello;
///
/// impl Job for SayHello {
///     const NAME: &'static str = "myapp.say_hello";
///     type Payload = Greet;
///
///     async fn run(
///         &self,
///         _cx: TaskContext,
///         payload: Greet,
///     ) -> zeroscale_app::HandlerResult {
///         Ok(Some(serde_json::json!({ "greeting": format!("hello, {}", payload.name) })))
///     }
/// }
///
/// let app = zeroscale_app::App::new().job(SayHello);
/// # drop(app);
/// ```
pub trait Job: Send + Sync + 'static {
    /// The task name jobs are enqueued under: your app's prefix and a verb
    /// (`myapp.resize_image`). `zeroscale.` and `internal.` are zeroscale's.
    const NAME: &'static str;
    /// The payload, deserialized from the job's JSON; a payload that does not match fails
    /// the attempt with the serde error.
    type Payload: DeserializeOwned + Send + 'static;

    /// Runs one attempt: `Ok(Some(value))` is kept as the job's result; an error is
    /// retried with backoff unless it is permanent (invalid input, not found, …), and goes
    /// to dead letters after the last attempt.
    fn run(
        &self,
        cx: TaskContext,
        payload: Self::Payload,
    ) -> impl Future<Output = HandlerResult> + Send;
}

/// What a [`Job`] runs with: the attempt (id, attempt number, progress, cancellation)
/// and the app's connected backends.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// This attempt: its id, attempt number, [`JobContext::progress`] and
    /// [`JobContext::is_cancelled`].
    pub job: JobContext,
    /// The backends: database, storage, queue, models.
    pub services: Services,
}

type RoutesFn = Box<dyn Fn() -> OpenApiRouter<Services> + Send + Sync>;
type RegisterFn = Box<dyn Fn(&mut Worker, &Services) + Send + Sync>;
type HookFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;
type HookFn = Box<dyn Fn(Services) -> HookFuture + Send + Sync>;
type CommandFn = Box<dyn Fn(clap::ArgMatches, Services) -> HookFuture + Send + Sync>;

/// The tasks zeroscale's own workers run that `POST /v1/jobs` accepts (diagnostics).
pub(crate) const BUILTIN_TASKS: [&str; 2] = ["zeroscale.echo", "zeroscale.sleep"];

/// What an [`App`] adds to zeroscale's server, shared by the server, the workers and the
/// API.
#[derive(Default)]
pub(crate) struct Extensions {
    /// Whether zeroscale's own `/v1` routes are served.
    pub(crate) builtin_api: bool,
    routes: Vec<RoutesFn>,
    jobs: Vec<(&'static str, RegisterFn)>,
    /// Tasks handled by workers this app does not build (still accepted by `/v1/jobs`).
    external_tasks: BTreeSet<String>,
    on_start: Vec<HookFn>,
    on_stop: Vec<HookFn>,
    /// The app's own migrations, run after zeroscale's.
    migrations: Option<zeroscale_db::migrate::AppMigrations>,
    /// The app's own subcommands and what runs them.
    commands: Vec<(clap::Command, CommandFn)>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("builtin_api", &self.builtin_api)
            .field("routes", &self.routes.len())
            .field(
                "jobs",
                &self.jobs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("external_tasks", &self.external_tasks)
            .field("on_start", &self.on_start.len())
            .field("on_stop", &self.on_stop.len())
            .field("migrations", &self.migrations.map(|m| m().len()))
            .field(
                "commands",
                &self
                    .commands
                    .iter()
                    .map(|(c, _)| c.get_name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Extensions {
    /// The routers the app adds, fresh for one server.
    pub(crate) fn routes(&self) -> impl Iterator<Item = OpenApiRouter<Services>> + '_ {
        self.routes.iter().map(|make| make())
    }

    /// Registers the app's jobs on `worker`.
    pub(crate) fn register_jobs(&self, worker: &mut Worker, services: &Services) {
        for (_, register) in &self.jobs {
            register(worker, services);
        }
    }

    /// Whether `POST /v1/jobs` may enqueue `task`: a task some worker of this app handles.
    pub(crate) fn accepts_task(&self, task: &str) -> bool {
        BUILTIN_TASKS.contains(&task)
            || self.jobs.iter().any(|(name, _)| *name == task)
            || self.external_tasks.contains(task)
    }

    /// The tasks `POST /v1/jobs` accepts, for its error message.
    pub(crate) fn task_names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN_TASKS.iter().map(|s| (*s).to_owned()).collect();
        names.extend(self.jobs.iter().map(|(n, _)| (*n).to_owned()));
        names.extend(self.external_tasks.iter().cloned());
        names.sort();
        names
    }

    /// Runs the start-up hooks in order; the first error stops the process.
    pub(crate) async fn started(&self, services: &Services) -> anyhow::Result<()> {
        for hook in &self.on_start {
            hook(services.clone()).await?;
        }
        Ok(())
    }

    /// Runs the shutdown hooks in order, logging (not returning) their errors.
    pub(crate) async fn stopped(&self, services: &Services) {
        for hook in &self.on_stop {
            if let Err(e) = hook(services.clone()).await {
                tracing::warn!(error = format!("{e:#}"), "a shutdown hook failed");
            }
        }
    }
}

/// A zeroscale app: the server, its workers and its command line, plus what you add.
///
/// ```no_run
/// use zeroscale_app::App;
/// use utoipa_axum::router::OpenApiRouter;
///
/// fn main() -> std::process::ExitCode {
///     App::new()
///         .routes(|| OpenApiRouter::new() /* .routes(routes!(my_handler)) */)
///         .on_start(|_services| async { Ok(()) })
///         .run()
/// }
/// ```
#[derive(Debug)]
pub struct App {
    extensions: Extensions,
    /// The command's name in `--help` and messages.
    name: String,
    names: ConfigNames,
    sections: Vec<ConfigSection>,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// zeroscale's server with its whole API, nothing added.
    pub fn new() -> Self {
        App {
            extensions: Extensions {
                builtin_api: true,
                ..Default::default()
            },
            name: "zeroscale".to_owned(),
            names: ConfigNames::default(),
            sections: Vec::new(),
        }
    }

    /// Names the app `name`: its command name in `--help`, its env prefix (`NAME_…`, upper
    /// case) and its per-user data dir (`~/.local/share/<name>`); the config folder stays
    /// `./config`. Change any of them with [`App::config_names`].
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self.names = ConfigNames::for_app(name);
        self
    }

    /// Sets the env prefix, default config folder and data-dir name the config is loaded
    /// under (by default zeroscale's: `ZEROSCALE_…`, `./config`, `zeroscale`).
    pub fn config_names(mut self, names: ConfigNames) -> Self {
        self.names = names;
        self
    }

    /// Adds your config section: top-level key `name` read into `T` from the same files
    /// and env vars as zeroscale's keys (`[name]`, `<PREFIX>_<NAME>__FIELD`), with unknown
    /// keys and wrong types refused at start-up naming the key and where it was set, and
    /// shown by `config show` with each value's source. Read it with
    /// [`Services::app_config`]. Give `T` `#[serde(default)]` so an absent section is
    /// its defaults.
    ///
    /// ```
    /// #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    /// #[serde(default)]
    /// struct Wordcount {
    ///     max_words: u32,
    /// }
    ///
    /// let app = zeroscale_app::App::new().config::<Wordcount>("wordcount");
    /// # drop(app);
    /// ```
    pub fn config<T>(mut self, name: &str) -> Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.sections.push(ConfigSection::new::<T>(name));
        self
    }

    /// Adds your subcommand: `command` (a clap command, e.g. from `#[derive(clap::Parser)]`
    /// via `CommandFactory::command()`) is offered beside zeroscale's, takes the global
    /// flags (`--profile`, `--config`, …), and runs `handler` with its arguments and the
    /// app's connected backends (the database migrated as `auto_migrate` says). An error
    /// exits with status 1 (2 for a config error) and its message.
    ///
    /// # Panics
    ///
    /// When the name is one of zeroscale's subcommands or is added twice.
    pub fn command<F, Fut>(mut self, command: clap::Command, handler: F) -> Self
    where
        F: Fn(clap::ArgMatches, Services) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = command.get_name().to_owned();
        let ours = Cli::command();
        assert!(
            ours.find_subcommand(&name).is_none() && name != "help",
            "command `{name}` is one of zeroscale's; give yours another name"
        );
        assert!(
            self.extensions
                .commands
                .iter()
                .all(|(c, _)| c.get_name() != name),
            "command `{name}` is added twice"
        );
        self.extensions.commands.push((
            command,
            Box::new(move |matches, services| Box::pin(handler(matches, services))),
        ));
        self
    }

    /// Adds routes: `make` returns a router of handlers taking `State<Services>`, merged
    /// beside zeroscale's `/v1` routes (same body limit, request timeout, request ids,
    /// security headers and rate-limit headers) and into `/openapi.json`. Called once per
    /// server started. A path that is already served makes the server refuse to start.
    pub fn routes<F>(mut self, make: F) -> Self
    where
        F: Fn() -> OpenApiRouter<Services> + Send + Sync + 'static,
    {
        self.extensions.routes.push(Box::new(make));
        self
    }

    /// Serves only your routes, `/healthz`, `/readyz`, `/openapi.json` and the `/files/…`
    /// route, without zeroscale's `/v1` API (users, keys, chat, files, jobs, models). The
    /// workers, the commands and the database are unchanged.
    pub fn without_builtin_api(mut self) -> Self {
        self.extensions.builtin_api = false;
        self
    }

    /// Adds a background job: `zeroscale worker` and `serve`'s in-process workers run it,
    /// and `POST /v1/jobs` accepts its name.
    ///
    /// # Panics
    ///
    /// When the name is empty, starts with `zeroscale.` or `internal.` (zeroscale's), or
    /// is registered twice: these are mistakes in the program, found at its first start.
    pub fn job<J: Job>(mut self, job: J) -> Self {
        let name = J::NAME;
        assert!(
            !name.trim().is_empty(),
            "a Job's NAME must not be empty (use your app's prefix: `myapp.do_thing`)"
        );
        assert!(
            !name.starts_with("zeroscale.") && !name.starts_with("internal."),
            "job `{name}`: the prefixes `zeroscale.` and `internal.` are zeroscale's; use your app's own"
        );
        assert!(
            self.extensions.jobs.iter().all(|(n, _)| *n != name)
                && !self.extensions.external_tasks.contains(name),
            "job `{name}` is registered twice"
        );
        let job = Arc::new(job);
        self.extensions.jobs.push((
            name,
            Box::new(move |worker: &mut Worker, services: &Services| {
                let job = Arc::clone(&job);
                let services = services.clone();
                worker.register(name, move |attempt: JobContext, payload: J::Payload| {
                    let job = Arc::clone(&job);
                    let cx = TaskContext {
                        job: attempt,
                        services: services.clone(),
                    };
                    async move { job.run(cx, payload).await }
                });
            }),
        ));
        self
    }

    /// Lets `POST /v1/jobs` accept `task`, handled by workers this app does not build
    /// (a worker of your own on the same queue, written with `zeroscale_queue::worker`).
    /// Without it, a task no worker of the app handles is refused with 400 rather than
    /// left to go dead.
    pub fn external_task(mut self, task: impl Into<String>) -> Self {
        self.extensions.external_tasks.insert(task.into());
        self
    }

    /// Adds your tables: `migrations` returns your migrations, oldest first, written with
    /// sea-orm-migration's schema builder (`zeroscale_db::escape_hatch::sea_orm_migration`),
    /// so one source serves SQLite and PostgreSQL. They run after zeroscale's, in the same
    /// table of applied migrations: `migrate up|down|status|fresh`, `auto_migrate`,
    /// `doctor`, `backup`, `restore`, `db copy` and `stage move` handle them with
    /// zeroscale's, and your tables' rows travel with ours. Give each migration a name of
    /// its own (`m<yyyymmdd>_<nnnnnn>_<what>`, the default of `DeriveMigrationName`
    /// being the module's name); a name used twice stops the program at start-up.
    pub fn migrations(mut self, migrations: zeroscale_db::migrate::AppMigrations) -> Self {
        self.extensions.migrations = Some(migrations);
        self
    }

    /// Runs `hook` once the backends are connected, before `serve` takes requests and
    /// before `worker` takes jobs. An error stops the process with that error.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Services) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.extensions
            .on_start
            .push(Box::new(move |services| Box::pin(hook(services))));
        self
    }

    /// Runs `hook` when `serve` or `worker` stops on SIGINT/SIGTERM, after in-flight
    /// requests and jobs finished (or the grace period passed). Errors are logged.
    pub fn on_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Services) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.extensions
            .on_stop
            .push(Box::new(move |services| Box::pin(hook(services))));
        self
    }

    /// Parses the process's command line, loads the config and runs the command; the
    /// exit code is 0 on success, 2 for a config error and 1 otherwise. This is the
    /// whole of `zeroscale`'s `main`.
    pub fn run(self) -> ExitCode {
        // Every file and folder zeroscale creates (the database and its WAL, keys, caches,
        // uploads, backups) is private to its user: 0600 and 0700. Set before any thread
        // starts, since the mask is the process's.
        #[cfg(unix)]
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let mut command = Cli::command().name(self.name.clone());
        for (sub, _) in &self.extensions.commands {
            command = command.subcommand(sub.clone());
        }
        let matches = command.get_matches();
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        // Ours parse into `cli.command`; an app's subcommand leaves it `None`.
        let app_command = matches
            .subcommand()
            .filter(|(name, _)| !<Command as clap::Subcommand>::has_subcommand(name))
            .map(|(name, args)| (name.to_owned(), args.clone()));
        if let Some(migrations) = self.extensions.migrations
            && let Err(e) = zeroscale_db::migrate::set_app_migrations(migrations)
        {
            eprintln!("{}: {}", self.name, e.chain());
            return ExitCode::from(2);
        }
        let base = ConfigSources {
            names: self.names.clone(),
            sections: self.sections.clone(),
            ..Default::default()
        };
        let loaded = match config::load(&cli.sources(&base)).and_then(|loaded| {
            zeroscale_models::registry::validate(&loaded.config.models)?;
            Ok(loaded)
        }) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("{}: {}", self.name, e.chain());
                return ExitCode::from(2);
            }
        };
        let log_format = cli.log_format();
        let run = Run {
            name: self.name,
            base,
            extensions: Arc::new(self.extensions),
        };
        match (app_command, cli.command.unwrap_or_default()) {
            (Some((name, args)), _) => run.start(log_format, loaded, Action::App(name, args)),
            (
                None,
                Command::Config {
                    command: ConfigCommand::Show,
                },
            ) => show_config(&run.name, &loaded),
            (None, command) => run.start(log_format, loaded, Action::Ours(command)),
        }
    }
}

/// What the command line asked for.
enum Action {
    /// One of zeroscale's subcommands.
    Ours(Command),
    /// One of the app's, by name, with its arguments.
    App(String, clap::ArgMatches),
}

/// What running a command needs besides its config.
struct Run {
    name: String,
    /// The config sources without the flags: the app's names and sections, for the
    /// commands that load other profiles (`--from`, `--to`).
    base: ConfigSources,
    extensions: Arc<Extensions>,
}

fn show_config(name: &str, loaded: &LoadedConfig) -> ExitCode {
    match loaded.to_annotated_toml() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}

impl Run {
    fn start(
        self,
        log_format: Option<config::LogFormat>,
        mut loaded: LoadedConfig,
        action: Action,
    ) -> ExitCode {
        if let Some(format) = log_format {
            loaded.config.log.format = format;
        }
        let traces_as = match &action {
            Action::Ours(Command::Serve) => Some(loaded.config.telemetry.service_name.clone()),
            Action::Ours(Command::Worker) => {
                Some(format!("{}-worker", loaded.config.telemetry.service_name))
            }
            _ => None,
        };
        crate::logging::init(&loaded.config, traces_as.as_deref());
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("{}: cannot start the async runtime: {e}", self.name);
                return ExitCode::FAILURE;
            }
        };
        let name = self.name.clone();
        let result = runtime.block_on(async move {
            match action {
                Action::Ours(command) => self.ours(loaded, command).await,
                Action::App(name, args) => self.app_command(&loaded, &name, args).await,
            }
        });
        crate::telemetry::shutdown();
        exit_code(&name, result)
    }

    async fn ours(self, loaded: LoadedConfig, command: Command) -> anyhow::Result<ExitCode> {
        use crate::{
            backup_cmd, doctor, jobs, migrate, models_cmd, serve, stage_cmd, storage_cmd, users,
            worker,
        };
        let (extensions, base) = (self.extensions, &self.base);
        match command {
            Command::Serve => serve::run(loaded, extensions).await,
            Command::Doctor => doctor::run(&loaded).await,
            Command::Worker => worker::run(&loaded, extensions).await,
            Command::Jobs { queue, command } => jobs::run(&loaded, &queue, command).await,
            Command::Migrate { command } => migrate::run(&loaded, command).await,
            Command::Storage { command } => storage_cmd::run(command, base).await,
            Command::Users { command } => users::run(&loaded, command).await,
            Command::Models { command } => models_cmd::run(&loaded, command).await,
            Command::Backup {
                output,
                with_jobs,
                json,
            } => backup_cmd::backup(&loaded, output, with_jobs, json).await,
            Command::Restore {
                file,
                replace,
                json,
            } => backup_cmd::restore(&loaded, file, replace, json).await,
            Command::Db { command } => backup_cmd::db(command, base).await,
            Command::Stage { command } => stage_cmd::run(command, base).await,
            Command::Config { .. } => unreachable!("handled before the runtime starts"),
        }
    }

    /// Runs the app's subcommand `name` with the backends connected.
    async fn app_command(
        self,
        loaded: &LoadedConfig,
        name: &str,
        args: clap::ArgMatches,
    ) -> anyhow::Result<ExitCode> {
        let Some((_, handler)) = self
            .extensions
            .commands
            .iter()
            .find(|(c, _)| c.get_name() == name)
        else {
            anyhow::bail!("no handler for the command `{name}`");
        };
        let config = &loaded.config;
        let db = crate::wiring::open_db(config).await?;
        crate::serve::auto_migrate(config, &db).await?;
        let services = Services::with_db(
            config,
            loaded.sections.clone(),
            db,
            Arc::clone(&self.extensions),
        )?;
        handler(args, services).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The exit code of a command's result, its error printed and logged: 2 for a config
/// error (the operator's to fix), 1 for anything else.
fn exit_code(name: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = describe(&e);
            tracing::error!("{text}");
            eprintln!("{name}: {text}");
            // A config error (exit 2) is the operator's to fix; anything else is 1.
            let config_error = e
                .chain()
                .filter_map(|c| c.downcast_ref::<zeroscale_core::Error>())
                .any(|c| c.kind() == zeroscale_core::ErrorKind::Config);
            if config_error {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error with its contexts, then the core error's own account of itself (its message
/// and sources without repeats, [`zeroscale_core::Error::chain`]).
fn describe(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in e.chain() {
        if let Some(core) = cause.downcast_ref::<zeroscale_core::Error>() {
            parts.push(core.chain());
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}
