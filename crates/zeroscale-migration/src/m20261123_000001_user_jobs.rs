//! Who submitted each background job through the API, so a user sees only their own jobs
//! (the queue itself knows nothing about users).

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::m20261122_000001_domain::Users;

/// Creates `user_jobs`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum UserJobs {
    Table,
    JobId,
    UserId,
    Queue,
    Task,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserJobs::Table)
                    .col(
                        ColumnDef::new(UserJobs::JobId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(UserJobs::UserId).string_len(36).not_null())
                    .col(ColumnDef::new(UserJobs::Queue).string_len(128).not_null())
                    .col(ColumnDef::new(UserJobs::Task).string_len(128).not_null())
                    .col(
                        ColumnDef::new(UserJobs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_jobs_user")
                            .from(UserJobs::Table, UserJobs::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_jobs_user")
                    .table(UserJobs::Table)
                    .col(UserJobs::UserId)
                    .col(UserJobs::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UserJobs::Table).if_exists().to_owned())
            .await
    }
}
