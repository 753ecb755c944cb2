//! The raw side of the database figures on MongoDB: the official driver running the
//! same queries and updates zeroscale's MongoDB backend runs for each operation (the
//! same filters, the same documents), so the ratio is the cost of the layers above the
//! driver. Run against the test server (nx-27017, Python on SQLite): its figures are
//! not MongoDB's speed, only the comparison is meaningful.

use anyhow::Context as _;
use chrono::Utc;
use mongodb::bson::{Bson, Document, doc};
use zeroscale_core::domain::new_id;

use crate::database::sha256_hex;

/// The raw driver's handle on the bench database.
#[derive(Clone)]
pub(crate) struct RawMongo(pub(crate) mongodb::Database);

fn now() -> Bson {
    Bson::DateTime(mongodb::bson::DateTime::from_millis(
        Utc::now().timestamp_millis(),
    ))
}

fn active(user: &Document) -> bool {
    matches!(
        user.get("active"),
        Some(Bson::Boolean(true)) | Some(Bson::Int32(1)) | Some(Bson::Int64(1))
    )
}

impl RawMongo {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<RawMongo> {
        let client = mongodb::Client::with_uri_str(url)
            .await
            .context("raw MongoDB client")?;
        let db = client
            .default_database()
            .context("the MongoDB URL names no database")?;
        Ok(RawMongo(db))
    }

    fn coll(&self, name: &str) -> mongodb::Collection<Document> {
        self.0.collection(name)
    }

    async fn user(&self, id: &str) -> anyhow::Result<Document> {
        self.coll("users")
            .find_one(doc! { "_id": id })
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user {id}"))
    }

    pub(crate) async fn validate_session(&self, token: &str) -> anyhow::Result<()> {
        let session = self
            .coll("sessions")
            .find_one(doc! { "token_hash": sha256_hex(token) })
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown session"))?;
        anyhow::ensure!(!session.contains_key("revoked_at"), "session revoked");
        let user = self.user(session.get_str("user_id")?).await?;
        anyhow::ensure!(active(&user), "user inactive");
        Ok(())
    }

    pub(crate) async fn validate_key(&self, plaintext: &str) -> anyhow::Result<()> {
        let key = self
            .coll("api_keys")
            .find_one(doc! { "prefix": &plaintext[..11] })
            .await?
            .ok_or_else(|| anyhow::anyhow!("unknown key"))?;
        anyhow::ensure!(
            key.get_str("key_hash")? == sha256_hex(plaintext),
            "key not valid"
        );
        let user = self.user(key.get_str("user_id")?).await?;
        anyhow::ensure!(active(&user), "user inactive");
        Ok(())
    }

    pub(crate) async fn append(
        &self,
        session: &str,
        content: &str,
        user_id: &str,
    ) -> anyhow::Result<()> {
        let messages = self.coll("chat_messages");
        let count = messages
            .count_documents(doc! { "session_id": session })
            .await?;
        anyhow::ensure!(count < 1_000_000, "cap reached");
        let id = new_id();
        messages
            .insert_one(doc! {
                "_id": &id, "session_id": session, "role": "user", "content": content,
                "user_id": user_id, "metadata": {}, "created_at": now(),
            })
            .await?;
        let before = messages
            .count_documents(doc! { "session_id": session, "_id": { "$lt": &id } })
            .await?;
        anyhow::ensure!(before < 1_000_000, "cap reached");
        Ok(())
    }

    pub(crate) async fn page(&self, session: &str, limit: i64) -> anyhow::Result<usize> {
        use futures::TryStreamExt;
        let rows: Vec<Document> = self
            .coll("chat_messages")
            .find(doc! { "session_id": session })
            .sort(doc! { "_id": 1 })
            .limit(limit + 1)
            .await?
            .try_collect()
            .await?;
        Ok(rows.len().min(limit as usize))
    }

    pub(crate) async fn reserve(&self, user_id: &str, cost: i64) -> anyhow::Result<()> {
        let id = new_id();
        let at = now();
        self.coll("generations")
            .insert_one(doc! {
                "_id": &id, "user_id": user_id, "model": "bench", "prompt": "a lighthouse",
                "params": { "width": 64_i64 }, "status": "pending", "reserved_credits": cost,
                "created_at": at.clone(), "updated_at": at.clone(),
            })
            .await?;
        let debited = self
            .coll("users")
            .update_one(
                doc! { "_id": user_id, "active": { "$in": [true, 1] }, "credits": { "$gte": cost } },
                doc! {
                    "$inc": { "credits": -cost },
                    "$set": { format!("holds.{id}"): cost, "updated_at": at },
                },
            )
            .await?;
        anyhow::ensure!(debited.modified_count == 1, "not debited");
        Ok(())
    }
}
