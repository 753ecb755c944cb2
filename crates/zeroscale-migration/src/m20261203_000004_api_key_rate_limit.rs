//! `api_keys.rate_limit_per_minute`: an admin's per-key override of
//! `limits.requests_per_minute_per_key` (NULL: the default applies).

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Adds `api_keys.rate_limit_per_minute`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    RateLimitPerMinute,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(ColumnDef::new(ApiKeys::RateLimitPerMinute).integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .drop_column(ApiKeys::RateLimitPerMinute)
                    .to_owned(),
            )
            .await
    }
}
