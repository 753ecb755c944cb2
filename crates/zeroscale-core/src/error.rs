//! The one error model every zeroscale crate maps into: kinds a caller can act on.
//!
//! Backends keep their own private error enums and convert into [`Error`] at their
//! boundary, choosing the kind that tells the caller what to do next (retry, fix the
//! input, log in, change the config, ...). Messages say what went wrong and how to fix it.

use std::fmt;
use std::time::Duration;

/// A boxed error from a backend or library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with zeroscale's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in zeroscale, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. "object `a/b.txt`" or "job 0190…".
        what: String,
    },

    /// A thing with the same identity exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What clashed, e.g. "user `alice`".
        what: String,
    },

    /// The caller's input breaks a rule; the message names the rule.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// Which rule was broken and how to comply.
        message: String,
    },

    /// No valid credentials were given.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// Why authentication failed (never echoes the secret).
        message: String,
    },

    /// Credentials were valid but do not allow this operation.
    #[error("permission denied: {message}")]
    PermissionDenied {
        /// What was refused and what role or grant would allow it.
        message: String,
    },

    /// The operation conflicts with the current state (e.g. a stale lease, a linked row).
    #[error("conflict: {message}")]
    Conflict {
        /// The state that prevents the operation.
        message: String,
    },

    /// Too many requests; try again later.
    #[error("rate limited: {message}{}", retry_after_suffix(*.retry_after))]
    RateLimited {
        /// Who limited the call and why.
        message: String,
        /// How long the limiter asked us to wait, when it said.
        retry_after: Option<Duration>,
    },

    /// A service or backend could not be reached, is not ready or is overloaded; retrying
    /// may help.
    #[error("unavailable: {message}")]
    Unavailable {
        /// What is unavailable and what to check or run.
        message: String,
        /// The underlying failure, when there is one.
        #[source]
        source: Option<BoxError>,
        /// When the service said how long to wait (an overload), for `Retry-After`.
        retry_after: Option<Duration>,
    },

    /// The backend does not support this operation.
    #[error("`{operation}` is not supported by the `{backend}` backend")]
    NotSupported {
        /// The operation that was asked for.
        operation: String,
        /// The backend that cannot do it.
        backend: String,
    },

    /// The configuration is wrong; `key` is the dotted config key to fix.
    #[error("config error at `{key}`: {message}")]
    Config {
        /// Dotted path of the offending key, e.g. `queue.kind`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// A backend failed in a way that none of the other kinds describe.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// The backend's name, e.g. `postgres`, `s3`, `redis`.
        backend: String,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

fn retry_after_suffix(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {:.1}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

/// The kind of an [`Error`], without its data: for matching, metrics and HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::AlreadyExists`].
    AlreadyExists,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::Unauthenticated`].
    Unauthenticated,
    /// See [`Error::PermissionDenied`].
    PermissionDenied,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::RateLimited`].
    RateLimited,
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::NotSupported`].
    NotSupported,
    /// See [`Error::Config`].
    Config,
    /// See [`Error::Backend`].
    Backend,
}

impl ErrorKind {
    /// A stable snake_case code, used in API error bodies and logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Conflict => "conflict",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::Config => "config",
            ErrorKind::Backend => "backend",
        }
    }
}

impl ErrorKind {
    /// The HTTP status an API answers with for this kind: the one mapping every HTTP
    /// surface of zeroscale uses (the API, the `/files/…` route).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::AlreadyExists | ErrorKind::Conflict => 409,
            ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::NotSupported => 501,
            ErrorKind::Config | ErrorKind::Backend => 500,
        }
    }
}

/// What an HTTP client is told about an [`Error`]: its status, code and message, except
/// that a 500's details (SQL, paths, backend errors) are replaced by a reference that the
/// caller logs next to the details ([`PublicError::reference`]), and an unavailable
/// engine's (its address, what to check) by a sentence that names none of it (an
/// overloaded service keeps its message: it says when to come back). The caller logs
/// [`Error::chain`] for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicError {
    /// The HTTP status.
    pub status: u16,
    /// The stable code (`not_found`, …, `internal`).
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// Seconds to wait, for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// For a 500: the id to log with the details, also in the message.
    pub reference: Option<String>,
}

impl From<&Error> for PublicError {
    fn from(error: &Error) -> Self {
        let kind = error.kind();
        let status = kind.http_status();
        if status == 500 {
            let reference = uuid::Uuid::now_v7().to_string();
            return PublicError {
                status,
                code: "internal",
                message: format!(
                    "internal error (reference {reference}; the server log has details)"
                ),
                retry_after: None,
                reference: Some(reference),
            };
        }
        // An engine that cannot be reached is described by its address and what an
        // operator should check: that detail is for the log, not for clients.
        let message = if kind == ErrorKind::Unavailable && !error.is_overloaded() {
            "a service this request needs is unavailable right now: try again shortly".to_owned()
        } else {
            error.to_string()
        };
        PublicError {
            status,
            code: kind.code(),
            message,
            // Rounded up: a client that waits the whole seconds said is never early. An
            // engine that is down said nothing: a second is when a retry may first help
            // (a restart, a failover, a probe closing the database's breaker).
            retry_after: error
                .retry_after()
                .or((kind == ErrorKind::Unavailable).then_some(Duration::from_secs(1)))
                .map(|d| {
                    u64::try_from(d.as_millis().div_ceil(1000))
                        .unwrap_or(u64::MAX)
                        .max(1)
                }),
            reference: None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::Config { .. } => ErrorKind::Config,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether trying the same call again later may succeed (rate limits, outages).
    pub fn is_retriable(&self) -> bool {
        matches!(self.kind(), ErrorKind::RateLimited | ErrorKind::Unavailable)
    }

    /// Whether the same call can never succeed by being retried as it is: bad input,
    /// something missing, a refusal, wrong config, an unsupported operation. A worker
    /// sends a job that fails this way to dead letters at once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::InvalidInput
                | ErrorKind::NotFound
                | ErrorKind::Unauthenticated
                | ErrorKind::PermissionDenied
                | ErrorKind::NotSupported
                | ErrorKind::Config
        )
    }

    /// How long the backend asked us to wait before retrying, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A [`Error::NotFound`] for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// An [`Error::AlreadyExists`] for `what`.
    pub fn already_exists(what: impl Into<String>) -> Self {
        Error::AlreadyExists { what: what.into() }
    }

    /// An [`Error::InvalidInput`] with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput {
            message: message.into(),
        }
    }

    /// An [`Error::Unauthenticated`] with `message`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::Unauthenticated {
            message: message.into(),
        }
    }

    /// An [`Error::PermissionDenied`] with `message`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            message: message.into(),
        }
    }

    /// An [`Error::Conflict`] with `message`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// An [`Error::RateLimited`] with `message` and an optional retry-after.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Error::RateLimited {
            message: message.into(),
            retry_after,
        }
    }

    /// An [`Error::Unavailable`] with `message` and no source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// An [`Error::Unavailable`] for a service that is working but has more to do than it
    /// accepts: retry after `retry_after` (sent as `Retry-After` with the 503).
    pub fn overloaded(message: impl Into<String>, retry_after: Duration) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: None,
            retry_after: Some(retry_after),
        }
    }

    /// Whether this is an [`Error::overloaded`]: the service works and asked for a pause.
    pub fn is_overloaded(&self) -> bool {
        matches!(
            self,
            Error::Unavailable {
                retry_after: Some(_),
                ..
            }
        )
    }

    /// An [`Error::Unavailable`] with `message`, caused by `source`.
    pub fn unavailable_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(source.into()),
            retry_after: None,
        }
    }

    /// An [`Error::NotSupported`] for `operation` on `backend`.
    pub fn not_supported(operation: impl Into<String>, backend: impl Into<String>) -> Self {
        Error::NotSupported {
            operation: operation.into(),
            backend: backend.into(),
        }
    }

    /// An [`Error::Config`] at `key` with `message`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Backend`] from `backend`'s own error.
    pub fn backend(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// The error for a backend that the config names but this build does not contain.
    ///
    /// `key` is the config key (e.g. `queue.kind`), `backend` the configured kind, `krate`
    /// the concern crate and `feature` its Cargo feature that compiles the backend in.
    pub fn not_compiled_in(key: &str, backend: &str, krate: &str, feature: &str) -> Self {
        Error::config(
            key,
            format!(
                "backend `{backend}` is not compiled in: enable the feature `{krate}/{feature}` \
                 (the `zeroscale` binary: `cargo build -p zeroscale-app --features \
                 {krate}/{feature}`; its default build includes every backend)"
            ),
        )
    }

    /// This error's message followed by each of its sources, joined by ": ".
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_codes_are_stable() {
        let e = Error::not_found("object `a`");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.kind().code(), "not_found");
        assert_eq!(e.to_string(), "object `a` not found");
        assert!(!e.is_retriable());
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let e = Error::rate_limited("openai said 429", Some(Duration::from_millis(1500)));
        assert!(e.is_retriable());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(
            e.to_string(),
            "rate limited: openai said 429 (retry after 1.5s)"
        );
    }

    #[test]
    fn public_unavailable_hides_the_engine_and_says_when_to_retry() {
        let down = PublicError::from(&Error::unavailable(
            "the postgres database at db.internal:5432/app does not answer",
        ));
        assert_eq!((down.status, down.code), (503, "unavailable"));
        assert!(!down.message.contains("db.internal"), "{}", down.message);
        assert_eq!(down.retry_after, Some(1), "an engine that is down: 1 s");
        let busy = PublicError::from(&Error::overloaded(
            "queue full",
            Duration::from_millis(2100),
        ));
        assert_eq!(busy.retry_after, Some(3), "rounded up");
        let missing = PublicError::from(&Error::not_found("file `x`"));
        assert_eq!(missing.retry_after, None);
    }

    #[test]
    fn not_compiled_in_names_the_feature() {
        let e = Error::not_compiled_in("queue.kind", "redis", "zeroscale-queue", "redis");
        assert!(e.to_string().contains("zeroscale-queue/redis"), "{e}");
        let text = e.to_string();
        assert!(text.contains("`queue.kind`"), "{text}");
        assert!(text.contains("--features zeroscale-queue/redis"), "{text}");
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn chain_includes_sources() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unavailable_from("postgres at 127.0.0.1:5432 is not reachable", io);
        assert_eq!(
            e.chain(),
            "unavailable: postgres at 127.0.0.1:5432 is not reachable: refused"
        );
    }
}
