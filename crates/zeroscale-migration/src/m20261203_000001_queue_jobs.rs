//! The database queue's tables (`queue.kind = "database"`): `queue_jobs`, one row per
//! job with its state and timers, and `queue_idempotency`, which unfinished job holds
//! each idempotency key, and `queue_notices`, messages between processes on SQLite. Times are milliseconds since the Unix epoch, so both engines
//! compare them as integers; on PostgreSQL they come from the server's clock.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Creates `queue_jobs` and `queue_idempotency`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum QueueJobs {
    Table,
    Id,
    Queue,
    Task,
    Payload,
    State,
    Priority,
    Attempts,
    MaxAttempts,
    RunAt,
    DueAt,
    LeaseToken,
    IdempotencyKey,
    Progress,
    Result,
    LastError,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum QueueNotices {
    Table,
    Id,
    Topic,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum QueueIdempotency {
    Table,
    Queue,
    IdemKey,
    JobId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QueueJobs::Table)
                    .col(
                        ColumnDef::new(QueueJobs::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(QueueJobs::Queue).string_len(128).not_null())
                    .col(ColumnDef::new(QueueJobs::Task).string_len(128).not_null())
                    .col(ColumnDef::new(QueueJobs::Payload).text().not_null())
                    .col(ColumnDef::new(QueueJobs::State).string_len(16).not_null())
                    .col(ColumnDef::new(QueueJobs::Priority).integer().not_null())
                    .col(ColumnDef::new(QueueJobs::Attempts).integer().not_null())
                    .col(ColumnDef::new(QueueJobs::MaxAttempts).integer().not_null())
                    .col(ColumnDef::new(QueueJobs::RunAt).big_integer().not_null())
                    // The job's next timer: the run time of a scheduled or failed job, the
                    // lease expiry of a running one, the finish time of a succeeded or
                    // cancelled one (for retention); NULL when queued or dead.
                    .col(ColumnDef::new(QueueJobs::DueAt).big_integer().null())
                    .col(ColumnDef::new(QueueJobs::LeaseToken).string_len(128).null())
                    .col(
                        ColumnDef::new(QueueJobs::IdempotencyKey)
                            .string_len(256)
                            .null(),
                    )
                    .col(ColumnDef::new(QueueJobs::Progress).text().null())
                    .col(ColumnDef::new(QueueJobs::Result).text().null())
                    .col(ColumnDef::new(QueueJobs::LastError).text().null())
                    .col(
                        ColumnDef::new(QueueJobs::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(QueueJobs::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(QueueJobs::FinishedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Reservation: the best queued job of a queue is the first entry.
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_jobs_ready")
                    .table(QueueJobs::Table)
                    .col(QueueJobs::Queue)
                    .col(QueueJobs::State)
                    .col((QueueJobs::Priority, IndexOrder::Desc))
                    .col(QueueJobs::Id)
                    .to_owned(),
            )
            .await?;
        // Listing and counting one queue's jobs in one state, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_jobs_state")
                    .table(QueueJobs::Table)
                    .col(QueueJobs::Queue)
                    .col(QueueJobs::State)
                    .col(QueueJobs::Id)
                    .to_owned(),
            )
            .await?;
        // Listing one queue's jobs, oldest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_jobs_queue")
                    .table(QueueJobs::Table)
                    .col(QueueJobs::Queue)
                    .col(QueueJobs::Id)
                    .to_owned(),
            )
            .await?;
        // Every timer: due runs, expired leases, finished jobs past retention.
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_jobs_due")
                    .table(QueueJobs::Table)
                    .col(QueueJobs::State)
                    .col(QueueJobs::DueAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QueueIdempotency::Table)
                    .col(
                        ColumnDef::new(QueueIdempotency::Queue)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(QueueIdempotency::IdemKey)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(QueueIdempotency::JobId)
                            .string_len(36)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(QueueIdempotency::Queue)
                            .col(QueueIdempotency::IdemKey),
                    )
                    .to_owned(),
            )
            .await?;
        // Notices between processes on SQLite (PostgreSQL uses LISTEN/NOTIFY instead).
        manager
            .create_table(
                Table::create()
                    .table(QueueNotices::Table)
                    .col(
                        ColumnDef::new(QueueNotices::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(QueueNotices::Topic)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(QueueNotices::Body).text().not_null())
                    .col(
                        ColumnDef::new(QueueNotices::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_notices_topic")
                    .table(QueueNotices::Table)
                    .col(QueueNotices::Topic)
                    .col(QueueNotices::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            QueueNotices::Table.into_iden(),
            QueueIdempotency::Table.into_iden(),
            QueueJobs::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
