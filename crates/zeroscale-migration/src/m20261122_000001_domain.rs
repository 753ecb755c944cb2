//! The domain schema: users, sessions, API keys, system prompts, chat messages,
//! generations, documents and the embedding cache, for SQLite and PostgreSQL alike.
//!
//! Types are chosen so both engines round-trip the same values: ids are UUIDv7 text,
//! timestamps are `timestamp with time zone` (stored at microsecond precision), JSON is
//! `json_binary` (jsonb on PostgreSQL, JSON text on SQLite), vectors are blobs.

// `#[async_trait]` needs the trait's exact signature, elided lifetime included.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

/// Creates every domain table.
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    Active,
    Credits,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum SystemPrompts {
    Table,
    Id,
    Name,
    Content,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    Prefix,
    KeyHash,
    ClientName,
    Notes,
    Active,
    SystemPromptId,
    AdapterName,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ChatMessages {
    Table,
    Id,
    SessionId,
    Role,
    Content,
    UserId,
    ApiKeyId,
    Metadata,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Generations {
    Table,
    Id,
    UserId,
    Model,
    Prompt,
    Params,
    Status,
    ReservedCredits,
    ActualCost,
    Provider,
    Result,
    Error,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum Documents {
    Table,
    Id,
    Collection,
    Content,
    Metadata,
    EmbeddingModel,
    Dimensions,
    Vector,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmbeddingCache {
    Table,
    Key,
    Dimensions,
    Vector,
    CreatedAt,
}

/// Creates `documents` (with its collection index) and `embedding_cache` unless they
/// exist. The same statements as released on 2026-11-22, only made idempotent.
pub(crate) async fn documents_up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Documents::Table)
                .if_not_exists()
                .col(id(Documents::Id))
                .col(
                    ColumnDef::new(Documents::Collection)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(Documents::Content).text().not_null())
                .col(ColumnDef::new(Documents::Metadata).json_binary().not_null())
                .col(
                    ColumnDef::new(Documents::EmbeddingModel)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(Documents::Dimensions).integer().not_null())
                .col(ColumnDef::new(Documents::Vector).blob().not_null())
                .col(ts(Documents::CreatedAt))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_documents_collection")
                .if_not_exists()
                .table(Documents::Table)
                .col(Documents::Collection)
                .col(Documents::Id)
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(EmbeddingCache::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(EmbeddingCache::Key)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(EmbeddingCache::Dimensions)
                        .integer()
                        .not_null(),
                )
                .col(ColumnDef::new(EmbeddingCache::Vector).blob().not_null())
                .col(ts(EmbeddingCache::CreatedAt))
                .to_owned(),
        )
        .await?;
    Ok(())
}

/// Drops what [`documents_up`] creates.
pub(crate) async fn documents_down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for table in [
        EmbeddingCache::Table.into_iden(),
        Documents::Table.into_iden(),
    ] {
        manager
            .drop_table(Table::drop().table(table).if_exists().to_owned())
            .await?;
    }
    Ok(())
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(36)
        .not_null()
        .primary_key()
        .take()
}

fn fk_id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(36).not_null().take()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .take()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().null().take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(id(Users::Id))
                    .col(
                        ColumnDef::new(Users::Username)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::PasswordHash).text().not_null())
                    .col(
                        ColumnDef::new(Users::Role)
                            .string_len(16)
                            .not_null()
                            .default("user"),
                    )
                    .col(
                        ColumnDef::new(Users::Active)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(Users::Credits)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ts(Users::CreatedAt))
                    .col(ts(Users::UpdatedAt))
                    .col(ts_null(Users::LastLoginAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(id(Sessions::Id))
                    .col(fk_id(Sessions::UserId))
                    .col(
                        ColumnDef::new(Sessions::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ts(Sessions::CreatedAt))
                    .col(ts(Sessions::ExpiresAt))
                    .col(ts_null(Sessions::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_expires_at")
                    .table(Sessions::Table)
                    .col(Sessions::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SystemPrompts::Table)
                    .col(id(SystemPrompts::Id))
                    .col(
                        ColumnDef::new(SystemPrompts::Name)
                            .string_len(128)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(SystemPrompts::Content).text().not_null())
                    .col(
                        ColumnDef::new(SystemPrompts::Version)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(ts(SystemPrompts::CreatedAt))
                    .col(ts(SystemPrompts::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(id(ApiKeys::Id))
                    .col(fk_id(ApiKeys::UserId))
                    .col(
                        ColumnDef::new(ApiKeys::Prefix)
                            .string_len(16)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::KeyHash).string_len(64).not_null())
                    .col(
                        ColumnDef::new(ApiKeys::ClientName)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::Notes).text().null())
                    .col(
                        ColumnDef::new(ApiKeys::Active)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::SystemPromptId)
                            .string_len(36)
                            .null(),
                    )
                    .col(ColumnDef::new(ApiKeys::AdapterName).string_len(128).null())
                    .col(ts(ApiKeys::CreatedAt))
                    .col(ts_null(ApiKeys::LastUsedAt))
                    .col(ts_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_user")
                            .from(ApiKeys::Table, ApiKeys::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_keys_system_prompt")
                            .from(ApiKeys::Table, ApiKeys::SystemPromptId)
                            .to(SystemPrompts::Table, SystemPrompts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatMessages::Table)
                    .col(id(ChatMessages::Id))
                    .col(
                        ColumnDef::new(ChatMessages::SessionId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ChatMessages::Role).string_len(16).not_null())
                    .col(ColumnDef::new(ChatMessages::Content).text().not_null())
                    .col(ColumnDef::new(ChatMessages::UserId).string_len(36).null())
                    .col(ColumnDef::new(ChatMessages::ApiKeyId).string_len(36).null())
                    .col(
                        ColumnDef::new(ChatMessages::Metadata)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ts(ChatMessages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_messages_user")
                            .from(ChatMessages::Table, ChatMessages::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chat_messages_api_key")
                            .from(ChatMessages::Table, ChatMessages::ApiKeyId)
                            .to(ApiKeys::Table, ApiKeys::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_messages_session")
                    .table(ChatMessages::Table)
                    .col(ChatMessages::SessionId)
                    .col(ChatMessages::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Generations::Table)
                    .col(id(Generations::Id))
                    .col(fk_id(Generations::UserId))
                    .col(
                        ColumnDef::new(Generations::Model)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Generations::Prompt).text().not_null())
                    .col(ColumnDef::new(Generations::Params).json_binary().not_null())
                    .col(
                        ColumnDef::new(Generations::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Generations::ReservedCredits)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Generations::ActualCost).big_integer().null())
                    .col(ColumnDef::new(Generations::Provider).string_len(128).null())
                    .col(ColumnDef::new(Generations::Result).json_binary().null())
                    .col(ColumnDef::new(Generations::Error).text().null())
                    .col(ts(Generations::CreatedAt))
                    .col(ts(Generations::UpdatedAt))
                    .col(ts_null(Generations::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_generations_user")
                            .from(Generations::Table, Generations::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_generations_user")
                    .table(Generations::Table)
                    .col(Generations::UserId)
                    .col(Generations::Id)
                    .to_owned(),
            )
            .await?;

        // Shared with the documents-only schema (`crate::documents`), hence "if not
        // exists": a database that held documents alone can take the full schema later.
        documents_up(manager).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmbeddingCache::Table.into_iden(),
            Documents::Table.into_iden(),
            Generations::Table.into_iden(),
            ChatMessages::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            SystemPrompts::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
