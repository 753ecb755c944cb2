//! Domain types shared by the database layer and the app: users, sessions, API keys,
//! system prompts, chat messages, generations and documents.
//!
//! Ids are UUIDv7 strings (sortable by creation time, the same on every engine);
//! timestamps are UTC at microsecond precision so they round-trip on SQLite and PostgreSQL.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The current time at the precision every engine stores: microseconds.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A new UUIDv7 id as a string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including admin routes.
    Admin,
    /// Their own data.
    User,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            other => Err(Error::invalid_input(format!(
                "unknown role `{other}`: use `admin` or `user`"
            ))),
        }
    }
}

/// A registered user (never carries the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// UUIDv7.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Admin or user.
    pub role: Role,
    /// Deactivated users cannot log in or use keys.
    pub active: bool,
    /// Credit balance; never negative.
    pub credits: i64,
    /// When registered.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// When last logged in.
    pub last_login_at: Option<DateTime<Utc>>,
}

/// A login session. The token itself is shown once, at creation; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// UUIDv7.
    pub id: String,
    /// Whose session.
    pub user_id: String,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An API key's record. The key itself is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// UUIDv7.
    pub id: String,
    /// The owner; requests with the key act as this user.
    pub user_id: String,
    /// The non-secret lookup prefix, shown in listings (e.g. `zs_ab12cd34`).
    pub prefix: String,
    /// Who uses the key.
    pub client_name: String,
    /// Free text.
    pub notes: Option<String>,
    /// Inactive keys are refused.
    pub active: bool,
    /// A system prompt applied to the key's chats.
    pub system_prompt_id: Option<String>,
    /// A model adapter name for the key's requests.
    pub adapter_name: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last used to authenticate.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Requests per minute this key may make, set by an admin; `None`: the default
    /// (`limits.requests_per_minute_per_key`).
    pub rate_limit_per_minute: Option<u32>,
}

/// A named system prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemPrompt {
    /// UUIDv7.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The prompt text.
    pub content: String,
    /// Starts at 1; every update adds 1.
    pub version: i32,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last updated.
    pub updated_at: DateTime<Utc>,
}

/// Who sent a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    /// The system prompt.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's output.
    Tool,
}

impl ChatRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
            ChatRole::Tool => "tool",
        }
    }
}

impl FromStr for ChatRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "system" => Ok(ChatRole::System),
            "user" => Ok(ChatRole::User),
            "assistant" => Ok(ChatRole::Assistant),
            "tool" => Ok(ChatRole::Tool),
            other => Err(Error::invalid_input(format!(
                "unknown chat role `{other}`: use system, user, assistant or tool"
            ))),
        }
    }
}

/// One message of a chat session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// UUIDv7; also the pagination cursor.
    pub id: String,
    /// The chat session (chosen by the client).
    pub session_id: String,
    /// Who sent it.
    pub role: ChatRole,
    /// The text.
    pub content: String,
    /// The user it belongs to, if sent by a user.
    pub user_id: Option<String>,
    /// The API key it came through, if any.
    pub api_key_id: Option<String>,
    /// Free JSON.
    pub metadata: Value,
    /// When appended.
    pub created_at: DateTime<Utc>,
}

/// Where a generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationStatus {
    /// Credits reserved, work not finished.
    Pending,
    /// Done; the difference between reserved and actual cost was refunded.
    Succeeded,
    /// Failed; the reserved credits were refunded.
    Failed,
}

impl GenerationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationStatus::Pending => "pending",
            GenerationStatus::Succeeded => "succeeded",
            GenerationStatus::Failed => "failed",
        }
    }
}

impl FromStr for GenerationStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(GenerationStatus::Pending),
            "succeeded" => Ok(GenerationStatus::Succeeded),
            "failed" => Ok(GenerationStatus::Failed),
            other => Err(Error::invalid_input(format!(
                "unknown generation status `{other}`"
            ))),
        }
    }
}

/// A paid generation (e.g. an image) and its credit accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// UUIDv7.
    pub id: String,
    /// Who pays.
    pub user_id: String,
    /// The model id.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// Request parameters.
    pub params: Value,
    /// Where it is.
    pub status: GenerationStatus,
    /// Credits taken from the balance at creation.
    pub reserved_credits: i64,
    /// What it finally cost (set on success).
    pub actual_cost: Option<i64>,
    /// The provider that served it.
    pub provider: Option<String>,
    /// The result (e.g. storage keys).
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// When it succeeded or failed.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A stored document with its embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// UUIDv7.
    pub id: String,
    /// The collection it belongs to.
    pub collection: String,
    /// The text.
    pub content: String,
    /// Free JSON object, filterable by equality in search.
    pub metadata: Value,
    /// The model that embedded it.
    pub embedding_model: String,
    /// The vector's length.
    pub dimensions: usize,
    /// When stored.
    pub created_at: DateTime<Utc>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The document.
    pub document: Document,
    /// Cosine similarity to the query, in `-1.0..=1.0`.
    pub score: f32,
}
