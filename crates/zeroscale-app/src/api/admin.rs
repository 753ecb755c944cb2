//! Admin routes: model provider health (from the router) and a manual check, job stats
//! and dead letters, and users (list, set credits, activate or deactivate).

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroscale_core::queue::{PageOptions, QueueStats};

use super::ApiState;
use super::auth::{Admin, UserView};
use super::error::{ApiError, ApiResult, ErrorBody, Json, Query};
use super::jobs::JobView;

/// One provider as the router sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderView {
    name: String,
    /// Not cooling down.
    healthy: bool,
    /// Skipped until then.
    cooling_down_until: Option<DateTime<Utc>>,
    last_error: Option<String>,
    successes: u64,
    failures: u64,
}

/// Every provider.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderList {
    data: Vec<ProviderView>,
}

fn providers(state: &ApiState) -> ProviderList {
    let now = Utc::now();
    ProviderList {
        data: state
            .models
            .health()
            .into_iter()
            .map(|(name, h)| ProviderView {
                healthy: h.cooling_down_until.is_none_or(|until| until <= now),
                name,
                cooling_down_until: h.cooling_down_until,
                last_error: h.last_error,
                successes: h.successes,
                failures: h.failures,
            })
            .collect(),
    }
}

/// Model providers' health: cooling down until, last error, counts.
#[utoipa::path(
    get, path = "/v1/admin/providers", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "every provider", body = ProviderList),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_providers(
    State(state): State<ApiState>,
    _admin: Admin,
) -> Json<ProviderList> {
    Json(providers(&state))
}

/// The outcome of a manual check.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckResult {
    name: String,
    ok: bool,
    /// What failed, when it did.
    error: Option<String>,
}

/// Checks one provider now (a passing check ends its cooldown).
#[utoipa::path(
    post, path = "/v1/admin/providers/{name}/check", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "the provider's name in config")),
    responses(
        (status = 200, description = "checked", body = CheckResult),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such provider", body = ErrorBody),
    )
)]
pub(crate) async fn check_provider(
    State(state): State<ApiState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<CheckResult>> {
    match state.models.check(&name).await {
        Ok(()) => Ok(Json(CheckResult {
            name,
            ok: true,
            error: None,
        })),
        Err(zeroscale_core::Error::NotFound { .. }) => {
            Err(zeroscale_core::Error::not_found(format!("provider `{name}`")).into())
        }
        Err(e) => Ok(Json(CheckResult {
            name,
            ok: false,
            error: Some(e.to_string()),
        })),
    }
}

/// Which queue's dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueQuery {
    /// Default `default`.
    queue: Option<String>,
    /// Dead jobs per page: default 50, at most 200.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u64>,
    /// Only dead jobs after this job id (the last id of the previous page).
    after: Option<String>,
}

/// Which queue's counts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// Default `default`.
    queue: Option<String>,
}

/// Jobs per state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsView {
    queue: String,
    #[schema(value_type = Object)]
    stats: QueueStats,
}

/// How many jobs of a queue are in each state.
#[utoipa::path(
    get, path = "/v1/admin/jobs/stats", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "counts", body = StatsView),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn job_stats(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(query): Query<StatsQuery>,
) -> ApiResult<Json<StatsView>> {
    let queue_name = query.queue.unwrap_or_else(|| "default".to_owned());
    let queue = state.queue.get().await?;
    let stats = queue.stats(&queue_name).await?;
    Ok(Json(StatsView {
        queue: queue_name,
        stats,
    }))
}

/// Dead jobs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadList {
    data: Vec<JobView>,
}

/// Jobs that used up their attempts (dead letters).
#[utoipa::path(
    get, path = "/v1/admin/jobs/dead", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(QueueQuery),
    responses(
        (status = 200, description = "dead jobs", body = DeadList),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn dead_jobs(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(query): Query<QueueQuery>,
) -> ApiResult<Json<DeadList>> {
    let queue_name = query.queue.unwrap_or_else(|| "default".to_owned());
    let queue = state.queue.get().await?;
    let dead = queue
        .list_dead(
            &queue_name,
            PageOptions {
                limit: Some(super::page_limit(query.limit, 50, 200)? as usize),
                after: match query.after.as_deref() {
                    Some(id) => Some(
                        id.parse()
                            .map_err(|_| ApiError::bad_request("after: not a job id"))?,
                    ),
                    None => None,
                },
            },
        )
        .await?;
    Ok(Json(DeadList {
        data: dead.into_iter().map(JobView::from).collect(),
    }))
}

/// Paging through users.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Users per page: default 50, at most 500.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u64>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserList {
    data: Vec<UserView>,
    next_cursor: Option<String>,
}

/// Every user, oldest first.
#[utoipa::path(
    get, path = "/v1/admin/users", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(UsersQuery),
    responses(
        (status = 200, description = "a page of users", body = UserList),
        (status = 403, description = "not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_users(
    State(state): State<ApiState>,
    _admin: Admin,
    Query(query): Query<UsersQuery>,
) -> ApiResult<Json<UserList>> {
    let limit = super::page_limit(query.limit, 50, 500)?;
    let users = state
        .domain
        .users()
        .list(query.cursor.as_deref(), Some(limit))
        .await?;
    let next_cursor = if users.len() as u64 == limit {
        users.last().map(|u| u.id.clone())
    } else {
        None
    };
    Ok(Json(UserList {
        data: users.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Changes to a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    /// The new credit balance (not negative).
    #[serde(default)]
    #[schema(minimum = 0)]
    credits: Option<i64>,
    /// `false` deactivates: no logins, sessions and keys stop working.
    #[serde(default)]
    active: Option<bool>,
}

/// Sets a user's credits and/or activates or deactivates them.
#[utoipa::path(
    patch, path = "/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "the user's id")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "the user after the change", body = UserView),
        (status = 400, description = "invalid fields", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
    )
)]
pub(crate) async fn update_user(
    State(state): State<ApiState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Json(body): Json<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    if body.credits.is_none() && body.active.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: send `credits` and/or `active`",
        ));
    }
    if body.active == Some(false) && id == admin.user.id {
        return Err(ApiError::bad_request(
            "an admin cannot deactivate themselves",
        ));
    }
    let users = state.domain.users();
    let mut user = users.get(&id).await?;
    if let Some(credits) = body.credits {
        user = users.set_credits(&id, credits).await?;
    }
    if let Some(active) = body.active {
        user = users.set_active(&id, active).await?;
    }
    Ok(Json(user.into()))
}
