//! `users.username_key`: the username lower-cased, unique, so `alice` and `Alice` are one
//! name (usernames are ASCII letters, digits, `_`, `-` and `.`, so lower-casing is all
//! the normalising they need). A database that already holds names differing only by case
//! is refused, with the names and the command that renames one, before anything changes.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

/// Adds `users.username_key`.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    UsernameKey,
}

// Not `users_username_key`: PostgreSQL already named the `username` unique constraint so.
const INDEX: &str = "idx_users_username_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let backend = conn.get_database_backend();
        let clashes = conn
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT username FROM users WHERE lower(username) IN (SELECT lower(username) \
                 FROM users GROUP BY lower(username) HAVING COUNT(*) > 1) ORDER BY \
                 lower(username), username",
            ))
            .await?;
        if !clashes.is_empty() {
            let names: Vec<String> = clashes
                .iter()
                .map(|row| row.try_get::<String>("", "username"))
                .collect::<Result<_, _>>()?;
            let example = &names[0];
            return Err(DbErr::Migration(format!(
                "usernames must now be unique whatever their case, and these differ only by \
                 case: {}. Nothing was changed. Rename all but one of each group, e.g. \
                 `zeroscale users rename --from {example} --to {example}-2`, then run the \
                 migration again",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::UsernameKey)
                            .string_len(64)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        conn.execute_unprepared("UPDATE users SET username_key = lower(username)")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Users::Table)
                    .col(Users::UsernameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Users::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::UsernameKey)
                    .to_owned(),
            )
            .await
    }
}
