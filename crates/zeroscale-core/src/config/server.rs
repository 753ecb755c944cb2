//! `[server]`, `[auth]`, `[chat]` and `[log]`: the HTTP server, accounts, chat history and logging.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub addr: SocketAddr,
    /// The URL clients reach this server at, for links it hands out (signed file URLs).
    /// Default `http://<addr>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Seconds to let in-flight requests finish after Ctrl-C or SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
    /// Largest JSON request body, in bytes. Default 2 MiB.
    pub max_body_bytes: u64,
    /// Largest file upload, in bytes. Default 100 MiB.
    pub max_upload_bytes: u64,
    /// Seconds after which what an interrupted upload left in storage (a multipart
    /// upload never completed, a local staging file) is removed by the sweep each server
    /// runs at start-up and then every quarter of this (at most hourly). Must be longer
    /// than any upload takes. Default 86400 (a day).
    pub upload_sweep_after_secs: u64,
    /// Seconds a request may take before it is answered 408 (uploads and downloads
    /// excepted). Default 60.
    pub request_timeout_secs: u64,
    /// Users' files of these media types are shown inline by browsers; every other type
    /// is a download (`Content-Disposition: attachment`). HTML, SVG, XML and JavaScript
    /// are always downloads. Default: PNG, JPEG, GIF, WebP, AVIF, PDF, plain text.
    pub inline_content_types: Vec<String>,
    /// The server is reached over HTTPS (TLS ends at it or at a proxy in front): answers
    /// carry `Strict-Transport-Security`. Default false.
    pub behind_tls: bool,
    /// Cross-origin requests from browser apps on other origins; off by default.
    pub cors: CorsConfig,
    /// Reverse proxies (addresses or CIDR ranges, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` is believed: a request from one of them counts as coming from
    /// the address it forwarded for (login throttling, rate limits). Empty (the default):
    /// the socket's peer address always, and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
}

/// The parsed `server.trusted_proxies`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether none is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// CORS for the API (`/v1`, except `/v1/admin`): which other origins' browser apps may
/// call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed, e.g. `https://app.example.com`, or `["*"]` for any. Empty (the
    /// default): CORS is off and browsers on other origins cannot call the API.
    pub allowed_origins: Vec<String>,
    /// Methods allowed. Default GET, HEAD, POST, PUT, PATCH, DELETE.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed. Default `authorization`, `content-type`, `x-api-key`,
    /// `range`.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer. Default 600.
    pub max_age_secs: u64,
    /// Whether browsers may send credentials (cookies, HTTP auth) cross-origin. Default
    /// false; not allowed with `*` origins.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                .map(str::to_owned)
                .to_vec(),
            allowed_headers: ["authorization", "content-type", "x-api-key", "range"]
                .map(str::to_owned)
                .to_vec(),
            max_age_secs: 600,
            allow_credentials: false,
        }
    }
}

impl CorsConfig {
    /// Refuses `*` together with credentials, and origins that are not `scheme://host[:port]`.
    pub fn validate(&self) -> Result<()> {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            return Err(Error::config(
                "server.cors.allow_credentials",
                "`*` origins cannot be combined with credentials (browsers refuse it, and it \
                 would let any site act as the user): list the allowed origins, or set \
                 `allow_credentials = false`",
            ));
        }
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin
                    .trim_end_matches('/')
                    .contains(|c: char| c.is_whitespace())
                && origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.contains('/') && !rest.is_empty());
            if !ok {
                return Err(Error::config(
                    "server.cors.allowed_origins",
                    format!(
                        "`{origin}` is not an origin: use `scheme://host[:port]` with no path, \
                         e.g. `https://app.example.com`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ServerConfig {
    /// `trusted_proxies`, parsed; a bad entry is a config error naming it.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        Error::config(
                            "server.trusted_proxies",
                            format!(
                                "`{entry}` is neither an IP address nor a CIDR range (e.g. \
                                 `10.0.0.1` or `10.0.0.0/8`)"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(TrustedProxies)
    }

    /// Which downloads may be inline (`inline_content_types`).
    pub fn download_policy(&self) -> crate::download::DownloadPolicy {
        crate::download::DownloadPolicy::new(self.inline_content_types.iter().cloned())
    }

    /// `public_url`, or `http://<addr>`.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            shutdown_grace_secs: 30,
            max_body_bytes: 2 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            upload_sweep_after_secs: 24 * 3600,
            request_timeout_secs: 60,
            inline_content_types: crate::download::DEFAULT_INLINE_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            behind_tls: false,
            cors: CorsConfig::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Passwords, sessions and API keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct AuthConfig {
    /// How long a login session lasts, in seconds. Default 30 days.
    pub session_ttl_secs: u64,
    /// How long a verified session token or API key is trusted without reading the
    /// database again, in milliseconds; 0 reads it on every request. Logout, revocation
    /// and changes to a user show at once on the instance that made them and, where the
    /// instances share a Redis queue, on every other within its pub/sub delivery; this is
    /// the bound when an announcement cannot arrive (a separate CLI process, a lost
    /// message). Default 2000.
    pub cache_ttl_ms: u64,
    /// Shortest password accepted. Default 8.
    pub min_password_length: usize,
    /// argon2id memory cost in KiB. Default 19456 (19 MiB, OWASP's recommendation).
    pub argon2_memory_kib: u32,
    /// argon2id passes. Default 2.
    pub argon2_iterations: u32,
    /// Whether `POST /v1/auth/register` is open to anyone. Default true.
    pub allow_registration: bool,
    /// Credits a newly registered user starts with. Default 0.
    pub signup_credits: i64,
    /// `username:password` of an admin to create at start-up when the database has no
    /// users at all; ignored otherwise. Meant for a one-time env var
    /// (`ZEROSCALE_AUTH__BOOTSTRAP_ADMIN`) on a fresh deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_admin: Option<Secret<String>>,
    /// Slowing down password guessing: per account and per client address.
    pub login_throttle: LoginThrottleConfig,
}

/// Request rate limits and quotas (`[limits]`), counted on the counters every instance
/// shares (Redis when the queue is on Redis, else the database), so a limit holds across
/// servers; exact within each window. A window starts at the first request it counts.
/// 0 turns a limit off (the default: no limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct LimitsConfig {
    /// Requests per minute one API key may make; an admin can set another number per key
    /// (`PATCH /v1/api-keys/{id}`). Default 0: no limit.
    pub requests_per_minute_per_key: u32,
    /// Requests per minute one user may make, through sessions and all their keys
    /// together. Default 0: no limit.
    pub requests_per_minute_per_user: u32,
    /// Embedding tokens one user may use in 24 hours (`POST /v1/embeddings`), counted
    /// from their first use in the window. Default 0: no quota.
    pub embedding_tokens_per_day_per_user: u64,
}

/// Login throttling (`auth.login_throttle`): after a few failed logins an account must
/// wait before its next attempt, the wait doubling with each failure, and after more it
/// is locked for a while; a client address with many failures (across accounts) is
/// locked too. While locked every login is answered 429 with `Retry-After`, the right
/// password included. Counters live where every instance sees them (Redis when the queue
/// is on Redis, else the database) and are forgotten `window_secs` after the first
/// failure; a successful login clears the account's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct LoginThrottleConfig {
    /// Whether logins are throttled at all. Default true.
    pub enabled: bool,
    /// Failed logins an account may have before each next attempt must wait. Default 5.
    pub free_failures: u32,
    /// The wait after the first failure beyond `free_failures`, in milliseconds; it
    /// doubles with each further failure, up to `lock_secs`. Default 1000.
    pub base_delay_ms: u64,
    /// Failed logins after which an account is locked for `lock_secs`. Default 10.
    pub lock_after: u32,
    /// How long a lock lasts, and the longest wait. Default 900 (15 minutes).
    pub lock_secs: u64,
    /// Failed logins from one client address, any accounts, after which the address is
    /// locked for `lock_secs`. Default 50.
    pub address_lock_after: u32,
    /// How long failures are counted, from the first one. Default 3600.
    pub window_secs: u64,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        LoginThrottleConfig {
            enabled: true,
            free_failures: 5,
            base_delay_ms: 1000,
            lock_after: 10,
            lock_secs: 900,
            address_lock_after: 50,
            window_secs: 3600,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_secs: 30 * 24 * 3600,
            cache_ttl_ms: 2000,
            min_password_length: 8,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            allow_registration: true,
            signup_credits: 0,
            bootstrap_admin: None,
            login_throttle: LoginThrottleConfig::default(),
        }
    }
}

/// Chat history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct ChatConfig {
    /// Messages kept per chat session; appending past it is refused. Default 10000.
    pub max_messages_per_session: u64,
    /// How long a page of messages, once read, is served from memory. An append or a
    /// delete shows at once on the instance that made it and, where instances share a
    /// Redis or database queue, on every other once its announcement arrives; this is the
    /// bound when none can (a separate CLI process, a lost message). 0 turns the cache off.
    /// Default 2000.
    pub cache_ttl_ms: u64,
    /// Memory the cached pages may take, in bytes (roughly: their text plus 200 bytes a
    /// message). Default 33554432 (32 MiB).
    pub cache_max_bytes: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_messages_per_session: 10_000,
            cache_ttl_ms: 2000,
            cache_max_bytes: 32 << 20,
        }
    }
}

/// Log output format.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging. `RUST_LOG` overrides `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct LogConfig {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info,zeroscale_db=debug`. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}
