//! Backend registries: one table per concern saying which backends exist, which Cargo
//! feature compiles each in, and (when compiled in) its entry points.
//!
//! Each concern crate declares one `static` [`Registry`] in its `registry.rs`, with one
//! [`backend!`](crate::backend) line per backend. Everything that asks "which backends are
//! there, is this one compiled in, how do I build it" reads that table: `connect` and
//! `probe`, the error for a backend that is compiled out, `zeroscale doctor`, `/readyz`
//! and the feature matrix `cargo xtask ci` checks (which reads the `feature:` of each
//! `backend!` line). Adding a backend is one module, one feature and one line here.
//!
//! ```
//! use zeroscale_core::registry::{Backend, Registry};
//!
//! struct Entry { greet: fn() -> &'static str }
//! fn hello() -> &'static str { "hello" }
//!
//! static GREETERS: Registry<Entry> = Registry {
//!     concern: "greeting",
//!     krate: "my-crate",
//!     config_key: "greeting.kind",
//!     backends: &[
//!         zeroscale_core::backend! { kind: "hello", about: "says hello", entry: Entry { greet: hello } },
//!         // Compiled in only with the calling crate's feature `loud`:
//!         zeroscale_core::backend! { kind: "loud", feature: "loud", about: "shouts", entry: Entry { greet: hello } },
//!     ],
//! };
//!
//! assert_eq!((GREETERS.entry("hello").unwrap().greet)(), "hello");
//! let err = GREETERS.entry("loud").err().unwrap().to_string();
//! assert!(err.contains("my-crate/loud"), "{err}");
//! assert!(GREETERS.entry("nope").is_err());
//! ```

use crate::{Error, Result};

/// One backend of a concern.
#[derive(Debug)]
pub struct Backend<E: 'static, C: 'static = ()> {
    /// Its name in config (`storage.kind = "s3"`).
    pub kind: &'static str,
    /// The Cargo feature of the concern crate that compiles it in; `None`: always compiled.
    pub feature: Option<&'static str>,
    /// One line for `doctor` and docs.
    pub about: &'static str,
    /// What it can do, for the checks that do not need it compiled in (e.g. which model
    /// kinds a provider serves).
    pub capabilities: C,
    /// Its entry points; `None` when its feature is off in this build.
    pub entry: Option<E>,
}

impl<E, C> Backend<E, C> {
    /// Whether this build contains it.
    pub fn is_compiled_in(&self) -> bool {
        self.entry.is_some()
    }
}

/// The backends of one concern.
#[derive(Debug)]
pub struct Registry<E: 'static, C: 'static = ()> {
    /// What the backends are for (`storage`, `queue`, `database`, `model provider`).
    pub concern: &'static str,
    /// The crate whose features compile them in (`zeroscale-storage`).
    pub krate: &'static str,
    /// The config key that picks one (`storage.kind`).
    pub config_key: &'static str,
    /// Every backend, compiled in or not, in documentation order.
    pub backends: &'static [Backend<E, C>],
}

impl<E, C> Registry<E, C> {
    /// The backend called `kind`, compiled in or not.
    pub fn get(&self, kind: &str) -> Option<&'static Backend<E, C>> {
        self.backends.iter().find(|b| b.kind == kind)
    }

    /// Whether `kind` exists and this build contains it.
    pub fn is_compiled_in(&self, kind: &str) -> bool {
        self.get(kind).is_some_and(Backend::is_compiled_in)
    }

    /// The entry points of `kind`, or a config error saying that no such backend exists
    /// (listing those that do) or which feature compiles it in.
    pub fn entry(&self, kind: &str) -> Result<&'static E> {
        self.entry_for(self.config_key, kind)
    }

    /// [`entry`](Self::entry) with the config key to name in errors (e.g.
    /// `models.providers.embed.kind`).
    pub fn entry_for(&self, key: &str, kind: &str) -> Result<&'static E> {
        let backend = self.get(kind).ok_or_else(|| {
            Error::config(
                key,
                format!(
                    "there is no {} backend `{kind}`; the backends are: {}",
                    self.concern,
                    self.kinds().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        backend.entry.as_ref().ok_or_else(|| {
            Error::not_compiled_in(key, kind, self.krate, backend.feature.unwrap_or_default())
        })
    }

    /// Every backend's kind, in table order.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.backends.iter().map(|b| b.kind)
    }

    /// The kinds this build contains.
    pub fn compiled_in(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.backends
            .iter()
            .filter(|b| b.is_compiled_in())
            .map(|b| b.kind)
    }
}

/// One [`Backend`] table line. `feature: "x"` makes its `entry` exist only when the
/// *calling* crate's feature `x` is on (the `cfg` is evaluated where the macro expands);
/// without `feature` the backend is always compiled. `capabilities` defaults to `()`.
#[macro_export]
macro_rules! backend {
    (kind: $kind:literal, about: $about:literal, $(capabilities: $caps:expr,)? entry: $entry:expr $(,)?) => {
        $crate::registry::Backend {
            kind: $kind,
            feature: None,
            about: $about,
            capabilities: $crate::__caps!($($caps)?),
            entry: Some($entry),
        }
    };
    (kind: $kind:literal, feature: $feature:literal, about: $about:literal, $(capabilities: $caps:expr,)? entry: $entry:expr $(,)?) => {
        $crate::registry::Backend {
            kind: $kind,
            feature: Some($feature),
            about: $about,
            capabilities: $crate::__caps!($($caps)?),
            entry: {
                #[cfg(feature = $feature)]
                let entry = Some($entry);
                #[cfg(not(feature = $feature))]
                let entry = None;
                entry
            },
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __caps {
    () => {
        ()
    };
    ($caps:expr) => {
        $caps
    };
}

/// The error for a backend that exists but whose entry points were handed a config of
/// another kind (a bug in a registry table, never a user's mistake).
pub fn wrong_config(expected: &str, got: &str) -> Error {
    Error::backend(
        expected.to_owned(),
        format!("the `{expected}` backend was given a `{got}` config: the registry table is wrong"),
    )
}
