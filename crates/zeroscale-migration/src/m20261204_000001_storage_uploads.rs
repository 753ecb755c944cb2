//! `storage_uploads`: the multipart uploads in flight, recorded before their first part
//! and deleted once they are completed or aborted, so that a sweep can abort the ones a
//! crash left behind (object_store cannot list them). Times are milliseconds since the
//! Unix epoch. Rows are short-lived and never backed up.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Creates `storage_uploads`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum StorageUploads {
    Table,
    Store,
    UploadId,
    Path,
    StartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StorageUploads::Table)
                    .col(
                        ColumnDef::new(StorageUploads::Store)
                            .string_len(512)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StorageUploads::UploadId)
                            .string_len(1024)
                            .not_null(),
                    )
                    .col(ColumnDef::new(StorageUploads::Path).text().not_null())
                    .col(
                        ColumnDef::new(StorageUploads::StartedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(StorageUploads::Store)
                            .col(StorageUploads::UploadId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("storage_uploads_started_at")
                    .table(StorageUploads::Table)
                    .col(StorageUploads::Store)
                    .col(StorageUploads::StartedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StorageUploads::Table).to_owned())
            .await
    }
}
