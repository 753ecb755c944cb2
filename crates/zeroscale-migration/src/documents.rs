//! The documents-only schema: `documents`, `vector_collections` and `embedding_cache`,
//! for a database that holds documents and vector search alone (no users, chat or jobs).
//!
//! Its migrations are tracked in a table of their own (`zeroscale_documents_migrations`),
//! and create their tables only if missing, with the same statements as the full schema
//! ([`crate::Migrator`]); so the full schema can be applied to such a database later, and
//! applying this one to a database with the full schema changes nothing.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// The documents-only migrations, oldest first.
#[derive(Debug)]
pub struct DocumentsMigrator;

#[async_trait::async_trait]
impl MigratorTrait for DocumentsMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(DocumentsOnly)]
    }

    fn migration_table_name() -> DynIden {
        "zeroscale_documents_migrations".into_iden()
    }
}

/// Creates the documents tables unless they exist.
struct DocumentsOnly;

impl MigrationName for DocumentsOnly {
    fn name(&self) -> &str {
        "m20261205_000001_documents_only"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DocumentsOnly {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::m20261122_000001_domain::documents_up(manager).await?;
        crate::m20261202_000001_vector_collections::up(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::m20261202_000001_vector_collections::down(manager).await?;
        crate::m20261122_000001_domain::documents_down(manager).await
    }
}
