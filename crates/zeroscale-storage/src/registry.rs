//! The storage backends: one line each. Adding a backend is a module, a feature in
//! Cargo.toml, its config variant in core, and a line here (see ARCHITECTURE.md).

use std::sync::Arc;

use zeroscale_core::backend;
use zeroscale_core::config::StorageConfig;
use zeroscale_core::registry::Registry;
use zeroscale_core::storage::UrlSigning;
use zeroscale_core::{Result, Storage};

use crate::StorageContext;

/// A storage backend's entry point.
#[derive(Debug)]
pub struct StorageEntry {
    /// Builds the storage from its config (of this backend's kind).
    pub connect: fn(&StorageConfig, &StorageContext) -> Result<Arc<dyn Storage>>,
}

/// What a storage backend does, compiled in or not.
#[derive(Debug, Clone, Copy)]
pub struct StorageCapabilities {
    /// Who answers its signed URLs (the app's `/files/…` route, or the backend).
    pub signing: UrlSigning,
}

const APP: StorageCapabilities = StorageCapabilities {
    signing: UrlSigning::App,
};
const NATIVE: StorageCapabilities = StorageCapabilities {
    signing: UrlSigning::Backend,
};

/// Every storage backend.
pub static BACKENDS: Registry<StorageEntry, StorageCapabilities> = Registry {
    concern: "storage",
    krate: "zeroscale-storage",
    config_key: "storage.kind",
    backends: &[
        backend! {
            kind: "memory",
            about: "in process memory (tests; lost on exit)",
            capabilities: APP,
            entry: StorageEntry { connect: crate::memory::connect },
        },
        backend! {
            kind: "local",
            feature: "local",
            about: "a folder on the local disk",
            capabilities: APP,
            entry: StorageEntry { connect: crate::local::connect },
        },
        backend! {
            kind: "s3",
            feature: "s3",
            about: "Amazon S3 or an S3-compatible server",
            capabilities: NATIVE,
            entry: StorageEntry { connect: crate::s3::connect_s3 },
        },
        backend! {
            kind: "r2",
            feature: "s3",
            about: "Cloudflare R2 (an S3 preset)",
            capabilities: NATIVE,
            entry: StorageEntry { connect: crate::s3::connect_r2 },
        },
        backend! {
            kind: "azure",
            feature: "azure",
            about: "Azure Blob Storage (or the Azurite emulator)",
            capabilities: APP,
            entry: StorageEntry { connect: crate::azure::connect },
        },
    ],
};
