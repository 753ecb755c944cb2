//! Azure Blob Storage: object_store's `MicrosoftAzure` from config (or the Azurite
//! emulator at an `endpoint` such as `http://127.0.0.1:10000/devstoreaccount1`),
//! credentials from config or the standard `AZURE_*` environment variables. Signed URLs
//! are app-served: an Azure SAS cannot set the download's response headers (the safe
//! `Content-Disposition` and CSP of users' files), and uploads through one need a header
//! (`x-ms-blob-type`) that plain clients do not send.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::prefix::PrefixStore;
use zeroscale_core::config::StorageConfig;
use zeroscale_core::registry::wrong_config;
use zeroscale_core::{Error, Result, Storage};

use crate::StorageContext;
use crate::adapter::{AttributeStore, Layout, ObjectStoreStorage, StoreOptions};

pub(crate) fn connect(config: &StorageConfig, ctx: &StorageContext) -> Result<Arc<dyn Storage>> {
    let StorageConfig::Azure(c) = config else {
        return Err(wrong_config("azure", config.kind()));
    };
    for (key, value) in [
        ("storage.account", &c.account),
        ("storage.container", &c.container),
    ] {
        if value.is_empty() {
            return Err(Error::config(key, format!("not set: set `{key}`")));
        }
    }
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_account(&c.account)
        .with_container_name(&c.container)
        .with_allow_http(c.allow_http)
        .with_retry(crate::adapter::retry());
    if let Some(endpoint) = &c.endpoint {
        if endpoint.starts_with("http://") && !c.allow_http {
            return Err(Error::config(
                "storage.allow_http",
                format!(
                    "endpoint {endpoint} is plain http: set `storage.allow_http = true` to allow it"
                ),
            ));
        }
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(key) = &c.access_key {
        builder = builder.with_access_key(key.expose());
    }
    let azure = builder
        .build()
        .map_err(|e| Error::config("storage", format!("invalid Azure settings: {e}")))?;
    let account_url = c
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", c.account));
    let mut location = format!("{}/{}", account_url.trim_end_matches('/'), c.container);
    let prefix = c.prefix.as_deref().filter(|p| !p.is_empty());
    if let Some(prefix) = prefix {
        location = format!("{location}/{prefix}");
    }
    let store: Arc<dyn ObjectStore> = match prefix {
        Some(p) => Arc::new(PrefixStore::new(azure, p)),
        None => Arc::new(azure),
    };
    Ok(Arc::new(ObjectStoreStorage::new(
        store,
        StoreOptions {
            backend: "azure",
            location,
            layout: Layout::Keys,
            attributes: AttributeStore::Native,
            multipart_threshold: c.multipart_threshold_bytes,
            suffix_ranges: false,
            signing: crate::app_signing(config, ctx)?,
            #[cfg(feature = "local")]
            local_files: None,
            // Azure takes no attributes when a block list is started by id; its
            // uncommitted blocks are discarded by the service after 7 days.
            multipart: None,
            uploads: Arc::clone(&ctx.uploads),
        },
    )))
}
