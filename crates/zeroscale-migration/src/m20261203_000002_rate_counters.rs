//! `rate_counters`: the counters login throttling and rate limits share between
//! instances when the queue is not on Redis. Times are milliseconds since the Unix epoch.
//! Rows are short-lived and never backed up.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Creates `rate_counters`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RateCounters {
    Table,
    Key,
    Count,
    WindowEnd,
    BlockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RateCounters::Table)
                    .col(
                        ColumnDef::new(RateCounters::Key)
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RateCounters::Count).big_integer().not_null())
                    .col(
                        ColumnDef::new(RateCounters::WindowEnd)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RateCounters::BlockedUntil)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("rate_counters_window_end")
                    .table(RateCounters::Table)
                    .col(RateCounters::WindowEnd)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RateCounters::Table).to_owned())
            .await
    }
}
