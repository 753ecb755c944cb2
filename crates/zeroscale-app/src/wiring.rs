//! Building the services from config, shared by `serve` and `worker`: the database and
//! its domain services, storage, and the model router with its caches.

use std::sync::Arc;

use anyhow::Context as _;
use zeroscale_core::Storage;
use zeroscale_core::config::Config;
use zeroscale_core::domain::Role;
use zeroscale_db::Db;
use zeroscale_db::domain::Domain;
use zeroscale_models::image_cache::StorageImageCache;
use zeroscale_models::router::Router;

/// Opens the configured database.
async fn connect_db(config: &Config) -> anyhow::Result<Db> {
    Db::connect(&config.database)
        .await
        .map_err(anyhow::Error::from)
        .context("cannot open the database")
}

/// The config that a profile name (`config/<NAME>.toml`) or a config file path describes,
/// with the environment on top as usual (for `--from`/`--to` of the copy commands).
/// `base` carries the app's config names and sections.
pub(crate) fn load_named(
    which: &str,
    base: &zeroscale_core::config::ConfigSources,
) -> anyhow::Result<Config> {
    let path = std::path::PathBuf::from(which);
    let sources = if which.ends_with(".toml") || path.is_file() {
        zeroscale_core::config::ConfigSources {
            files: vec![path],
            ..base.clone()
        }
    } else {
        zeroscale_core::config::ConfigSources {
            profile: Some(which.to_owned()),
            ..base.clone()
        }
    };
    let loaded = zeroscale_core::config::load(&sources).map_err(anyhow::Error::from)?;
    Ok(loaded.config)
}

/// Opens the database `config` names (for the backup commands).
pub(crate) async fn open_db(config: &Config) -> anyhow::Result<Db> {
    connect_db(config).await
}

/// Opens the database and wraps it in the domain services.
pub(crate) async fn domain(config: &Config) -> anyhow::Result<Domain> {
    let db = connect_db(config).await?;
    Ok(Domain::new(db, config.auth.clone(), config.chat.clone()))
}

/// What the storage crate needs from the app's config.
pub(crate) fn storage_context(
    config: &Config,
) -> anyhow::Result<zeroscale_storage::StorageContext> {
    Ok(zeroscale_storage::StorageContext::new(
        config.data_dir()?,
        config.storage_public_url(),
    ))
}

/// Connects the configured storage, its upload ids kept in memory (for the commands that
/// copy between stores; the server keeps them in its database).
pub(crate) fn storage(config: &Config) -> anyhow::Result<Arc<dyn Storage>> {
    zeroscale_storage::connect(&config.storage, &storage_context(config)?)
        .map_err(anyhow::Error::from)
        .context("cannot set up storage")
}

/// The model router for `config.models`, with the embedding cache in the database and
/// the image cache in storage when `models.cache` asks for them. Providers this build
/// cannot run are logged (and reported by `/readyz`); the rest serve.
pub(crate) fn models(
    config: &Config,
    domain: &Domain,
    storage: Arc<dyn Storage>,
) -> anyhow::Result<Arc<Router>> {
    let (mut router, _missing) = Router::from_config(&config.models)
        .map_err(anyhow::Error::from)
        .context("cannot set up the model providers")?;
    if config.models.cache.embeddings {
        router.set_embedding_cache(Arc::new(domain.embedding_cache()));
    }
    if config.models.cache.images {
        router.set_image_cache(StorageImageCache::new(storage));
    }
    Ok(Arc::new(router))
}

/// Creates the admin named by `auth.bootstrap_admin` (`username:password`) when the
/// database has no users; does nothing otherwise.
pub(crate) async fn bootstrap_admin(config: &Config, domain: &Domain) -> anyhow::Result<()> {
    let Some(secret) = &config.auth.bootstrap_admin else {
        return Ok(());
    };
    let (username, password) = secret.expose().split_once(':').context(
        "auth.bootstrap_admin must be `username:password` (e.g. ZEROSCALE_AUTH__BOOTSTRAP_ADMIN=admin:long-password)",
    )?;
    let users = domain.users();
    if users.count().await.map_err(anyhow::Error::from)? > 0 {
        tracing::info!("auth.bootstrap_admin ignored: the database already has users");
        return Ok(());
    }
    let user = users
        .register(zeroscale_db::domain::NewUser {
            username: username.to_owned(),
            password: password.to_owned(),
            role: Role::Admin,
            credits: 0,
        })
        .await
        .map_err(anyhow::Error::from)
        .context("auth.bootstrap_admin: cannot create the admin")?;
    tracing::info!(username = %user.username, "created the first admin from auth.bootstrap_admin");
    Ok(())
}

/// The queue, connected on first use and shared by the API and the in-process workers
/// (with the memory queue they must be the same instance). A Redis that is down is
/// retried on the next use; meanwhile callers get "unavailable".
#[derive(Debug, Clone)]
pub(crate) struct QueueHandle {
    config: Arc<Config>,
    context: zeroscale_queue::QueueContext,
    cell: Arc<tokio::sync::OnceCell<Arc<dyn zeroscale_core::Queue>>>,
    /// The queue in the app's database (`queue.kind = "database"`), typed, so an enqueue
    /// can join a domain transaction.
    database: Option<Arc<zeroscale_db::queue::DbQueue>>,
}

impl QueueHandle {
    pub(crate) fn new(config: Arc<Config>, db: &Db) -> Self {
        let database = match &config.queue {
            zeroscale_core::config::QueueConfig::Database(options)
                if zeroscale_queue::is_compiled_in("database") =>
            {
                Some(Arc::new(zeroscale_db::queue::DbQueue::new(
                    db.clone(),
                    config.jobs.clone(),
                    options.clone(),
                )))
            }
            _ => None,
        };
        QueueHandle {
            config,
            context: queue_context(db),
            cell: Arc::default(),
            database,
        }
    }

    /// The queue in the app's database, when that is the configured queue.
    pub(crate) fn database(&self) -> Option<&Arc<zeroscale_db::queue::DbQueue>> {
        self.database.as_ref()
    }

    /// The connected queue.
    pub(crate) async fn get(&self) -> zeroscale_core::Result<Arc<dyn zeroscale_core::Queue>> {
        if let Some(queue) = &self.database {
            return Ok(Arc::clone(queue) as Arc<dyn zeroscale_core::Queue>);
        }
        self.cell
            .get_or_try_init(|| {
                zeroscale_queue::connect_with(&self.config.queue, &self.config.jobs, &self.context)
            })
            .await
            .cloned()
    }
}

/// Fails when the queue's engine refuses this process's login (a wrong password, a
/// missing one, no permission): waiting cannot fix that, so `serve` and `worker` exit with
/// the engine's words. An engine that does not answer within a few seconds is only logged:
/// the queue connects again on first use, and `/readyz` reports it meanwhile.
pub(crate) async fn check_queue_login(queue: &QueueHandle) -> anyhow::Result<()> {
    let check = async {
        let connected = queue.get().await?;
        connected.health().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), check).await {
        Ok(Err(e)) if e.kind() == zeroscale_core::ErrorKind::Config => {
            Err(anyhow::Error::from(e).context("cannot use the queue"))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e.chain(), "the queue is not reachable yet; it is tried again on use");
            Ok(())
        }
        Ok(Ok(())) => Ok(()),
        Err(_) => {
            tracing::warn!("the queue did not answer within 5 s; it is tried again on use");
            Ok(())
        }
    }
}

/// What the queue crate may use of the app: its database, where `queue.kind =
/// "database"` keeps the jobs.
pub(crate) fn queue_context(db: &Db) -> zeroscale_queue::QueueContext {
    #[cfg(feature = "database-queue")]
    let context = zeroscale_queue::QueueContext::default().with_database(db.clone());
    #[cfg(not(feature = "database-queue"))]
    let context = {
        let _ = db;
        zeroscale_queue::QueueContext::default()
    };
    context
}

/// The configured queue, for the commands that have no services (`jobs`, `stage`): opens
/// the database only when the queue lives in it.
pub(crate) async fn connect_queue(
    config: &Config,
) -> anyhow::Result<Arc<dyn zeroscale_core::Queue>> {
    let context = if matches!(
        config.queue,
        zeroscale_core::config::QueueConfig::Database(_)
    ) {
        queue_context(&connect_db(config).await?)
    } else {
        zeroscale_queue::QueueContext::default()
    };
    zeroscale_queue::connect_with(&config.queue, &config.jobs, &context)
        .await
        .map_err(anyhow::Error::from)
}

/// The connected backends every API handler and job handler uses: the database with its
/// domain services, storage, the queue and the model router, with the config they were
/// made from. Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Services {
    pub(crate) config: Arc<Config>,
    pub(crate) domain: Domain,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) models: Arc<Router>,
    pub(crate) queue: QueueHandle,
    /// Login throttling and the client address it counts by.
    pub(crate) throttle: crate::throttle::Throttle,
    /// The JSON of chat pages the domain serves from its cache.
    pub(crate) rendered_pages: crate::api::chat::RenderedPages,
    /// Objects of uploads that failed after the store wrote them, being removed.
    pub(crate) removals: crate::api::unacknowledged::Removals,
    /// What the app adds: its routes, jobs and hooks.
    pub(crate) extensions: Arc<crate::app::Extensions>,
    /// The app's own config sections.
    pub(crate) app_config: zeroscale_core::config::SectionValues,
}

impl Services {
    /// The loaded configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Your config section of type `T`, declared with
    /// [`App::config`](crate::App::config) and checked at start-up.
    ///
    /// # Panics
    ///
    /// When the app declared no section of type `T` (a mistake in the program).
    pub fn app_config<T: Send + Sync + 'static>(&self) -> Arc<T> {
        self.app_config.get::<T>().unwrap_or_else(|| {
            panic!(
                "no config section of type `{}`: declare it with `App::config::<T>(\"name\")`",
                std::any::type_name::<T>()
            )
        })
    }

    /// The domain services (users, sessions, API keys, chat, documents, credits) over the
    /// database; `domain().db()` is the database itself.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The configured object storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The model router: embeddings and images by model id, with failover and caches.
    pub fn models(&self) -> &Arc<Router> {
        &self.models
    }

    /// The configured queue, connected on first use (an unreachable engine is
    /// `unavailable` and tried again on the next call).
    pub async fn queue(&self) -> zeroscale_core::Result<Arc<dyn zeroscale_core::Queue>> {
        self.queue.get().await
    }

    /// Enqueues `job` on behalf of the user `user_id` and returns its status: the user
    /// then sees it at `GET /v1/jobs/{id}` (with its progress and result) and may cancel
    /// it, as with `POST /v1/jobs`.
    pub async fn enqueue_for(
        &self,
        user_id: &str,
        job: zeroscale_core::queue::NewJob,
    ) -> zeroscale_core::Result<zeroscale_core::queue::JobStatus> {
        let queue = self.queue.get().await?;
        let (queue_name, task) = (job.queue.clone(), job.task.clone());
        let id = queue.enqueue(job).await?;
        self.domain
            .jobs()
            .record(&id.to_string(), user_id, &queue_name, &task)
            .await?;
        queue.status(id).await
    }
}

impl Services {
    /// Everything `config` names, over an open database, with what the app adds.
    pub(crate) fn with_db(
        config: &Config,
        app_config: zeroscale_core::config::SectionValues,
        db: Db,
        extensions: Arc<crate::app::Extensions>,
    ) -> anyhow::Result<Services> {
        let config = Arc::new(config.clone());
        // Multipart upload ids go to the database, so a sweep after a crash finds them.
        let uploads = Arc::new(zeroscale_db::upload_log::DbUploadLog::new(db.clone()));
        let storage = zeroscale_storage::connect(
            &config.storage,
            &storage_context(&config)?.with_upload_log(uploads),
        )
        .map_err(anyhow::Error::from)
        .context("cannot set up storage")?;
        let domain = Domain::new(db, config.auth.clone(), config.chat.clone());
        let models = models(&config, &domain, storage.clone())?;
        Ok(Services {
            queue: QueueHandle::new(Arc::clone(&config), domain.db()),
            throttle: crate::throttle::Throttle::new(Arc::clone(&config), domain.db().clone())?,
            config,
            domain,
            removals: crate::api::unacknowledged::Removals::new(storage.clone()),
            storage,
            models,
            rendered_pages: Default::default(),
            extensions,
            app_config,
        })
    }
}
