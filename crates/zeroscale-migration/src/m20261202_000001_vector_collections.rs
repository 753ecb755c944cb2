//! One row per document collection with a version token that every write to the
//! collection changes in its own transaction: how a server's in-memory vector index knows
//! that the table (the source of truth) moved on, whichever instance wrote.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Creates `vector_collections`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum VectorCollections {
    Table,
    Collection,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        up(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        down(manager).await
    }
}

/// Creates `vector_collections` unless it exists (shared with the documents-only schema,
/// `crate::documents`; the statement as released, only made idempotent).
pub(crate) async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(VectorCollections::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(VectorCollections::Collection)
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(VectorCollections::Version)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await
}

/// Drops `vector_collections`.
pub(crate) async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .drop_table(
            Table::drop()
                .table(VectorCollections::Table)
                .if_exists()
                .to_owned(),
        )
        .await
}
