//! Local-folder storage: object_store's `LocalFileSystem` rooted at a private folder,
//! keys encoded on disk, attributes in sidecars, app-served signed URLs.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use zeroscale_core::config::{StorageConfig, ensure_private_dir};
use zeroscale_core::registry::wrong_config;
use zeroscale_core::{Error, Result, Storage};

use crate::StorageContext;
use crate::adapter::{AttributeStore, Layout, ObjectStoreStorage, StoreOptions};

pub(crate) fn connect(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    let StorageConfig::Local(c) = config else {
        return Err(wrong_config("local", config.kind()));
    };
    // Unset (a config built in code rather than loaded): `blobs` in the context's data
    // dir, where a loaded config would put it.
    let root = c.root.clone().unwrap_or_else(|| ctx.data_dir.join("blobs"));
    ensure_private_dir(&root)?;
    let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| {
        Error::config(
            "storage.root",
            format!("cannot use {} as the storage folder: {e}", root.display()),
        )
    })?;
    let store = Arc::new(store);
    Ok(Arc::new(ObjectStoreStorage::new(
        store.clone(),
        StoreOptions {
            backend: "local",
            location: root.display().to_string(),
            layout: Layout::LocalFiles { root },
            attributes: AttributeStore::Sidecar,
            multipart_threshold: c.multipart_threshold_bytes,
            suffix_ranges: true,
            signing: crate::app_signing(config, ctx)?,
            local_files: Some(store),
            multipart: None,
            uploads: Arc::clone(&ctx.uploads),
        },
    )))
}
