//! Password hashing with argon2id, built so that a login's cost does not tell whether the
//! account exists: every check is exactly one argon2 verification, against the stored
//! hash or, for a username that does not exist, against a dummy hash made once per
//! parameter set (at start-up, in the background), never per request.
//!
//! A stored hash made with other parameters (an older `auth.argon2_*` setting) is verified
//! with its own parameters, and replaced by a hash with the current ones after a
//! successful login (see [`Verdict::needs_rehash`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use tokio::sync::OnceCell;
use zeroscale_core::config::AuthConfig;
use zeroscale_core::{Error, Result};

/// The outcome of one verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The password matches.
    pub(crate) ok: bool,
    /// The stored hash uses other parameters than the configured ones.
    pub(crate) needs_rehash: bool,
}

/// Hashes and verifies passwords with one parameter set; shared by a [`super::Domain`]'s
/// clones.
#[derive(Debug)]
pub(crate) struct Passwords {
    memory_kib: u32,
    iterations: u32,
    /// A hash of a random password with the current parameters, for unknown users.
    dummy: OnceCell<String>,
    /// argon2 computations (hashes and verifications) run for callers so far, not counting
    /// the dummy hash: the seam the timing tests count through.
    runs: AtomicU64,
}

impl Passwords {
    /// Passwords for `auth`'s parameters; starts computing the dummy hash in the
    /// background when called inside a Tokio runtime.
    pub(crate) fn new(auth: &AuthConfig) -> Arc<Self> {
        let passwords = Arc::new(Passwords {
            memory_kib: auth.argon2_memory_kib,
            iterations: auth.argon2_iterations,
            dummy: OnceCell::new(),
            runs: AtomicU64::new(0),
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let early = Arc::clone(&passwords);
            handle.spawn(async move {
                let _ = early.dummy().await;
            });
        }
        passwords
    }

    fn params(&self) -> Result<Params> {
        Params::new(self.memory_kib, self.iterations, 1, None).map_err(|e| {
            Error::config(
                "auth.argon2_memory_kib",
                format!("invalid argon2 parameters: {e}"),
            )
        })
    }

    fn hasher(&self) -> Result<Argon2<'static>> {
        Ok(Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.params()?,
        ))
    }

    /// A PHC string for `password` with the current parameters.
    pub(crate) async fn hash(&self, password: String) -> Result<String> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.hash_uncounted(password).await
    }

    async fn hash_uncounted(&self, password: String) -> Result<String> {
        let hasher = self.hasher()?;
        tokio::task::spawn_blocking(move || {
            hasher
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| Error::backend("argon2", std::io::Error::other(e.to_string())))
        })
        .await
        .map_err(|e| Error::backend("argon2", e))?
    }

    async fn dummy(&self) -> Result<String> {
        self.dummy
            .get_or_try_init(|| async {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random).map_err(|e| {
                    Error::unavailable(format!("the OS random generator failed: {e}"))
                })?;
                self.hash_uncounted(zeroscale_core::hex(&random)).await
            })
            .await
            .cloned()
    }

    /// One argon2 verification of `password`: against `stored` (with the parameters in
    /// it), or, when there is no stored hash (no such user), against the dummy hash, which
    /// never matches.
    pub(crate) async fn verify(&self, password: &str, stored: Option<&str>) -> Result<Verdict> {
        let (hash, real) = match stored {
            Some(stored) => (stored.to_owned(), true),
            None => (self.dummy().await?, false),
        };
        let current = (self.memory_kib, self.iterations);
        let password = password.to_owned();
        self.runs.fetch_add(1, Ordering::Relaxed);
        let (ok, stored_params) = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return (false, None);
            };
            let params = Params::try_from(&parsed)
                .ok()
                .map(|p| (p.m_cost(), p.t_cost()));
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            (ok, params)
        })
        .await
        .map_err(|e| Error::backend("argon2", e))?;
        Ok(Verdict {
            ok: ok && real,
            needs_rehash: real && stored_params != Some(current),
        })
    }

    /// How many argon2 computations have run for callers (the dummy hash not counted).
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}
