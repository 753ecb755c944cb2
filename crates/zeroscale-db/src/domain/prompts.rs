//! System prompts: create, get by id or name, list, update (bumps the version), delete
//! (refused while an API key links the prompt).

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use zeroscale_core::domain::{SystemPrompt, new_id, now};
use zeroscale_core::{Error, Result};

use super::by_key::{ByKey, by_id};
use super::entity::{api_keys, system_prompts};
use crate::Db;

/// System prompts service; see [`super::Domain::prompts`].
#[derive(Debug)]
pub struct Prompts<'a> {
    db: &'a Db,
}

fn to_prompt(m: system_prompts::Model) -> SystemPrompt {
    SystemPrompt {
        id: m.id,
        name: m.name,
        content: m.content,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(Error::invalid_input(
            "prompt name must be 1 to 128 characters",
        ));
    }
    Ok(())
}

impl<'a> Prompts<'a> {
    pub(crate) fn new(db: &'a Db) -> Self {
        Prompts { db }
    }

    fn name_taken(&self, name: &str, e: sea_orm::DbErr) -> Error {
        match self.db.map_err(e) {
            Error::AlreadyExists { .. } => {
                Error::already_exists(format!("system prompt named `{name}`"))
            }
            other => other,
        }
    }

    /// Creates a prompt at version 1. A taken name is [`Error::AlreadyExists`].
    pub async fn create(&self, name: &str, content: &str) -> Result<SystemPrompt> {
        validate_name(name)?;
        let at = self.db.now();
        let model = system_prompts::ActiveModel {
            id: Set(new_id()),
            name: Set(name.to_owned()),
            content: Set(content.to_owned()),
            version: Set(1),
            created_at: Set(at),
            updated_at: Set(at),
        };
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            let model = sea_orm::TryIntoModel::try_into_model(model)
                .map_err(|e| Error::backend("mongodb", e))?;
            return match m.insert::<system_prompts::Entity>(None, &model).await {
                Ok(()) => Ok(to_prompt(model)),
                Err(Error::AlreadyExists { .. }) => Err(Error::already_exists(format!(
                    "system prompt named `{name}`"
                ))),
                Err(e) => Err(e),
            };
        }
        model
            .insert(self.db.conn()?)
            .await
            .map(to_prompt)
            .map_err(|e| self.name_taken(name, e))
    }

    /// A prompt by id.
    pub async fn get(&self, id: &str) -> Result<SystemPrompt> {
        by_id::<system_prompts::Entity>(self.db, id)
            .await?
            .map(to_prompt)
            .ok_or_else(|| Error::not_found(format!("system prompt {id}")))
    }

    /// A prompt by name.
    pub async fn get_by_name(&self, name: &str) -> Result<SystemPrompt> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return m
                .find_one::<system_prompts::Entity>(None, mongodb::bson::doc! { "name": name })
                .await?
                .map(to_prompt)
                .ok_or_else(|| Error::not_found(format!("system prompt `{name}`")));
        }
        system_prompts::Entity::find()
            .filter(system_prompts::Column::Name.eq(name))
            .by_key(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .map(to_prompt)
            .ok_or_else(|| Error::not_found(format!("system prompt `{name}`")))
    }

    /// Every prompt, by name.
    pub async fn list(&self) -> Result<Vec<SystemPrompt>> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            return Ok(m
                .find::<system_prompts::Entity>(
                    mongodb::bson::Document::new(),
                    mongodb::bson::doc! { "name": 1 },
                    0,
                )
                .await?
                .into_iter()
                .map(to_prompt)
                .collect());
        }
        Ok(system_prompts::Entity::find()
            .order_by_asc(system_prompts::Column::Name)
            .all(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?
            .into_iter()
            .map(to_prompt)
            .collect())
    }

    /// Changes the name and/or content, adds 1 to the version, sets `updated_at`.
    pub async fn update(
        &self,
        id: &str,
        name: Option<&str>,
        content: Option<&str>,
    ) -> Result<SystemPrompt> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            use mongodb::bson::doc;
            let mut set = doc! { "updated_at": crate::mongodb::date(self.db.now()) };
            if let Some(name) = name {
                validate_name(name)?;
                set.insert("name", name);
            }
            if let Some(content) = content {
                set.insert("content", content);
            }
            let update = doc! { "$set": set, "$inc": { "version": 1 } };
            return match m
                .find_update::<system_prompts::Entity>(None, crate::mongodb::id_is(id), update)
                .await
            {
                Ok(Some(model)) => Ok(to_prompt(model)),
                Ok(None) => Err(Error::not_found(format!("system prompt {id}"))),
                Err(Error::AlreadyExists { .. }) => Err(Error::already_exists(format!(
                    "system prompt named `{}`",
                    name.unwrap_or_default()
                ))),
                Err(e) => Err(e),
            };
        }
        let mut update = system_prompts::Entity::update_many()
            .col_expr(
                system_prompts::Column::Version,
                Expr::col(system_prompts::Column::Version).add(1),
            )
            .col_expr(system_prompts::Column::UpdatedAt, Expr::value(now()))
            .filter(system_prompts::Column::Id.eq(id));
        if let Some(name) = name {
            validate_name(name)?;
            update = update.col_expr(system_prompts::Column::Name, Expr::value(name));
        }
        if let Some(content) = content {
            update = update.col_expr(system_prompts::Column::Content, Expr::value(content));
        }
        let result = update
            .exec(self.db.conn()?)
            .await
            .map_err(|e| self.name_taken(name.unwrap_or_default(), e))?;
        if result.rows_affected == 0 {
            return Err(Error::not_found(format!("system prompt {id}")));
        }
        self.get(id).await
    }

    /// Deletes a prompt. While API keys link it (revoked ones too), this is
    /// [`Error::Conflict`] naming them.
    pub async fn delete(&self, id: &str) -> Result<()> {
        #[cfg(feature = "mongodb")]
        if let Some(m) = self.db.mongo() {
            // No foreign keys: unlike SQL, a key linked to it between this check and the
            // delete is left naming a prompt that no longer exists.
            let linked = m
                .count::<api_keys::Entity>(mongodb::bson::doc! { "system_prompt_id": id })
                .await?;
            if linked > 0 {
                return Err(Error::conflict(format!(
                    "system prompt {id} is linked by {linked} API key(s); link them to \
                     another prompt or delete them first"
                )));
            }
            if m.delete::<system_prompts::Entity>(None, crate::mongodb::id_is(id))
                .await?
                == 0
            {
                return Err(Error::not_found(format!("system prompt {id}")));
            }
            return Ok(());
        }
        let linked = api_keys::Entity::find()
            .filter(api_keys::Column::SystemPromptId.eq(id))
            .count(self.db.conn()?)
            .await
            .map_err(|e| self.db.map_err(e))?;
        if linked > 0 {
            return Err(Error::conflict(format!(
                "system prompt {id} is linked by {linked} API key(s); link them to another \
                 prompt or delete them first"
            )));
        }
        let result = system_prompts::Entity::delete_by_id(id.to_owned())
            .exec(self.db.conn()?)
            .await
            .map_err(|e| match self.db.map_err(e) {
                // A key linked it between the check and the delete.
                Error::Conflict { .. } => {
                    Error::conflict(format!("system prompt {id} is linked by an API key"))
                }
                other => other,
            })?;
        if result.rows_affected == 0 {
            return Err(Error::not_found(format!("system prompt {id}")));
        }
        Ok(())
    }
}
