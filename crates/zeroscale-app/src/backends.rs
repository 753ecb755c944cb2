//! [`Backends`]: every concern opened from one config at once, for an app built on the
//! crates alone (no HTTP server, no zeroscale command line).

use std::sync::Arc;

use zeroscale_core::config::Config;
use zeroscale_core::{Queue, Result, Storage};
use zeroscale_db::Db;
use zeroscale_models::router::Router;

/// The database, storage, queue and model router a config names, connected. Cheap to
/// clone (shared handles).
///
/// Unlike [`Services`](crate::Services) it holds no domain services (users, sessions,
/// chat): use it when your app has its own. The database is migrated when
/// `database.auto_migrate` says so (the default), with zeroscale's tables and your
/// [`App::migrations`](crate::App::migrations) if set.
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// use zeroscale_core::StorageExt;
/// use zeroscale_core::config::{ConfigSources, load};
///
/// // ./config/*.toml, MYAPP_* env vars, defaults that work.
/// let loaded = load(&ConfigSources::for_app("myapp"))?;
/// let backends = zeroscale_app::Backends::from_config(&loaded.config).await?;
/// let key = zeroscale_core::ObjectKey::try_from("hello.txt")?;
/// backends.storage.put(&key, "hi").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Backends {
    /// The database (`[database]`).
    pub db: Db,
    /// Object storage (`[storage]`), its multipart upload ids kept in the database so a
    /// sweep after a crash finds them.
    pub storage: Arc<dyn Storage>,
    /// The job queue (`[queue]`, `[jobs]`); run its jobs with
    /// `zeroscale_queue::worker::Worker` and `WorkerOptions::from_config(&config.workers,
    /// &config.jobs)`.
    pub queue: Arc<dyn Queue>,
    /// The model router (`[models]`), with the embedding cache in the database and the
    /// image cache in storage when `models.cache` asks for them.
    pub models: Arc<Router>,
}

impl Backends {
    /// Connects every backend `config` names. A config from
    /// [`zeroscale_core::config::load`] has every path resolved; one built in code falls
    /// back to the default data dir. Providers this build cannot run are left out of the
    /// router (calls to their models fail, naming the feature); everything else that fails
    /// is an error naming the concern.
    pub async fn from_config(config: &Config) -> Result<Backends> {
        let db = Db::connect(&config.database).await?;
        let auto_migrate = config.database.auto_migrate();
        if auto_migrate {
            db.migrate_up().await?;
        }
        let uploads = Arc::new(zeroscale_db::upload_log::DbUploadLog::new(db.clone()));
        let context =
            zeroscale_storage::StorageContext::new(config.data_dir()?, config.storage_public_url())
                .with_upload_log(uploads);
        let storage = zeroscale_storage::connect(&config.storage, &context)?;
        let queue = zeroscale_queue::connect_with(
            &config.queue,
            &config.jobs,
            &crate::wiring::queue_context(&db),
        )
        .await?;
        let (mut router, _missing) = Router::from_config(&config.models)?;
        if config.models.cache.embeddings {
            router.set_embedding_cache(Arc::new(
                zeroscale_db::documents::DocumentStore::new(db.clone()).embedding_cache(),
            ));
        }
        if config.models.cache.images {
            router.set_image_cache(zeroscale_models::image_cache::StorageImageCache::new(
                Arc::clone(&storage),
            ));
        }
        Ok(Backends {
            db,
            storage,
            queue,
            models: Arc::new(router),
        })
    }
}
