//! The app's own migrations, run after zeroscale's: one table, `example_word_counts`.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use zeroscale_db::escape_hatch::sea_orm_migration::prelude::*;

/// Every migration of the app, oldest first (never edit a released one: add another).
pub(crate) fn all() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateWordCounts)]
}

/// Creates `example_word_counts`: one row per finished count.
struct CreateWordCounts;

impl MigrationName for CreateWordCounts {
    fn name(&self) -> &str {
        "m20261205_000001_example_word_counts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateWordCounts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("example_word_counts"))
                    .col(
                        ColumnDef::new(Alias::new("job_id"))
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("user_id"))
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("counts")).text().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("example_word_counts"))
                    .to_owned(),
            )
            .await
    }
}
