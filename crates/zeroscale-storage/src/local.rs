//! Local-folder storage: object_store's `LocalFileSystem` rooted at a private folder.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use zeroscale_core::config::{LocalStorageConfig, ensure_private_dir};
use zeroscale_core::{Error, Result};

pub(crate) fn build(config: &LocalStorageConfig) -> Result<(Arc<dyn ObjectStore>, String)> {
    let root = config.root.clone().ok_or_else(|| {
        Error::config(
            "storage.root",
            "no storage folder configured: set `storage.root`",
        )
    })?;
    ensure_private_dir(&root)?;
    let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| {
        Error::config(
            "storage.root",
            format!("cannot use {} as the storage folder: {e}", root.display()),
        )
    })?;
    Ok((Arc::new(store), root.display().to_string()))
}
