//! Who is calling, and the auth routes. A request authenticates with
//! `Authorization: Bearer <token>` (a session token `zss_…` or an API key `zs_…`) or
//! `X-API-Key: <key>`. [`Caller`] requires either; [`Admin`] also requires the admin role.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroscale_core::domain::{Role, User};
use zeroscale_db::domain::{NewUser, SESSION_TOKEN_PREFIX};

use super::ApiState;
use super::error::{ApiError, ApiResult, Json};

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// A login session, by its token.
    Session { token: String },
    /// An API key: its id and its own rate limit, if an admin set one.
    ApiKey { key_id: String, limit: Option<u32> },
}

/// An authenticated caller: extract it in a handler to require credentials (a session
/// token or an API key, as `Authorization: Bearer …` or `X-API-Key`). A request without
/// them is answered 401; the caller's per-minute rate limits (`limits.*`) are counted and
/// enforced (429) before the handler runs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub(crate) user: User,
    pub(crate) credential: Credential,
}

impl Caller {
    /// The user behind the credentials.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Whether the credentials are an API key (rather than a login session).
    pub fn is_api_key(&self) -> bool {
        matches!(self.credential, Credential::ApiKey { .. })
    }
}

/// An authenticated admin: extract it to make a route admin-only (401 without
/// credentials, 403 for a user who is not an admin).
#[derive(Debug, Clone)]
pub struct Admin(pub(crate) Caller);

impl Admin {
    /// The admin, as a caller.
    pub fn caller(&self) -> &Caller {
        &self.0
    }
}

fn presented_token(parts: &Parts) -> ApiResult<Option<String>> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "the Authorization header must be `Bearer <session token or API key>`",
                )
            })?;
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(value) = parts.headers.get("x-api-key") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthenticated("the X-API-Key header is not text"))?;
        return Ok(Some(value.trim().to_owned()));
    }
    Ok(None)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let token = presented_token(parts)?.ok_or_else(|| {
            ApiError::unauthenticated(
                "authentication required: send `Authorization: Bearer <session token or API \
                 key>` (log in with POST /v1/auth/login)",
            )
        })?;
        let caller = if token.starts_with(SESSION_TOKEN_PREFIX) {
            let (_, user) = state.domain.sessions().validate(&token).await?;
            Caller {
                user,
                credential: Credential::Session { token },
            }
        } else {
            let (key, user) = state.domain.api_keys().validate(&token).await?;
            Caller {
                user,
                credential: Credential::ApiKey {
                    key_id: key.id,
                    limit: key.rate_limit_per_minute,
                },
            }
        };
        crate::limits::check(parts, state, &caller).await?;
        crate::read_your_writes::authenticated(parts, state, &caller.user.id).await;
        Ok(caller)
    }
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(ApiError::forbidden("this route is for admins only"));
        }
        Ok(Admin(caller))
    }
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    pub(crate) id: String,
    pub(crate) username: String,
    /// `admin` or `user`.
    pub(crate) role: String,
    pub(crate) active: bool,
    pub(crate) credits: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_login_at: Option<DateTime<Utc>>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            id: user.id,
            username: user.username,
            role: user.role.as_str().to_owned(),
            active: user.active,
            credits: user.credits,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// Username and password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    /// 3 to 64 characters: letters, digits, `_`, `-`, `.`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    username: String,
    /// At least `auth.min_password_length` characters (default 8).
    #[schema(min_length = 8)]
    password: String,
}

/// Creates an account with the `user` role.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "registered", body = UserView),
        (status = 400, description = "invalid username or password", body = super::error::ErrorBody),
        (status = 403, description = "registration is closed", body = super::error::ErrorBody),
        (status = 409, description = "the username is taken", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn register(
    State(state): State<ApiState>,
    Json(body): Json<Credentials>,
) -> ApiResult<impl IntoResponse> {
    if !state.config.auth.allow_registration {
        return Err(ApiError::forbidden(
            "registration is closed (`auth.allow_registration = false`); ask an admin",
        ));
    }
    let user = state
        .domain
        .users()
        .register(NewUser {
            username: body.username,
            password: body.password,
            role: Role::User,
            credits: state.config.auth.signup_credits,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(user))))
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`. Shown only now.
    token: String,
    expires_at: DateTime<Utc>,
    user: UserView,
}

/// Logs in: a session token for `Authorization: Bearer`.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, description = "logged in", body = LoginResponse),
        (status = 401, description = "wrong username or password", body = super::error::ErrorBody),
        (status = 429, description = "too many failed logins for this username or from this address; see `Retry-After`", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<ApiState>,
    client: crate::throttle::ClientAddr,
    Json(body): Json<Credentials>,
) -> ApiResult<Json<LoginResponse>> {
    state.throttle.check_login(&body.username, client.0).await?;
    let user = match state
        .domain
        .users()
        .authenticate(&body.username, &body.password)
        .await
    {
        Ok(user) => {
            state.throttle.login_succeeded(&body.username).await;
            user
        }
        Err(e) => {
            if e.kind() == zeroscale_core::ErrorKind::Unauthenticated {
                state.throttle.login_failed(&body.username, client.0).await;
            }
            return Err(e.into());
        }
    };
    let session = state.domain.sessions().create(&user.id).await?;
    Ok(Json(LoginResponse {
        token: session.token,
        expires_at: session.session.expires_at,
        user: user.into(),
    }))
}

/// Ends the current session (the token stops working).
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "logged out"),
        (status = 400, description = "called with an API key, which has no session", body = super::error::ErrorBody),
    )
)]
pub(crate) async fn logout(State(state): State<ApiState>, caller: Caller) -> ApiResult<StatusCode> {
    match caller.credential {
        Credential::Session { token } => {
            state.domain.sessions().revoke_token(&token).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Credential::ApiKey { .. } => Err(ApiError::bad_request(
            "an API key has no session to end; an admin revokes keys with DELETE /v1/api-keys/{id}",
        )),
    }
}

/// The calling user.
#[utoipa::path(
    get, path = "/v1/me", tag = "auth",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "the caller", body = MeView),
    )
)]
pub(crate) async fn me(caller: Caller) -> Json<MeView> {
    let (via, api_key_id) = match caller.credential {
        Credential::Session { .. } => ("session", None),
        Credential::ApiKey { key_id, .. } => ("api_key", Some(key_id)),
    };
    Json(MeView {
        user: caller.user.into(),
        via,
        api_key_id,
    })
}

/// The caller and how they authenticated.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeView {
    user: UserView,
    /// `session` or `api_key`.
    via: &'static str,
    /// The key used, when `via` is `api_key`.
    api_key_id: Option<String>,
}
