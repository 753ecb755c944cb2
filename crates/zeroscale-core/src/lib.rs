//! zeroscale-core: the traits, domain types, error model and config types that every
//! zeroscale crate shares, plus the conformance suites every backend must pass.
//!
//! This crate depends on no engine crate (no sea-orm, object_store, redis, reqwest or
//! candle): backends live in the concern crates and implement the traits defined here.
//!
//! - [`error`]: the one [`Error`] with kinds a caller can act on.
//! - [`storage`], [`queue`], [`models`]: the driver traits ([`Storage`], [`Queue`],
//!   [`EmbeddingProvider`], [`ImageProvider`], [`EmbeddingCache`]) and their `Ext` traits.
//! - [`config`]: config types for every concern and the layered loader.
//! - [`domain`]: users, sessions, keys, prompts, chat, generations, documents.
//! - [`registry`]: the table of backends each concern crate declares ([`backend!`]).
//! - [`metrics`]: the catalogue of every metric the crates record.
//! - [`secret`]: [`Secret`], a value that never prints.
//! - [`uploads`]: the [`uploads::UploadLog`] of multipart uploads in flight, which
//!   [`Storage::sweep`] cleans up after a crash.
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `conformance` | [`conformance`] suites and [`testing`] helpers for backends' tests | no |
//! | `axum` | [`Error`] as an axum response: status, JSON error body, `Retry-After` (`http` module) | no |

pub mod config;
pub mod counters;
pub mod domain;
pub mod download;
pub mod error;
pub mod metrics;
pub mod models;
pub mod queue;
pub mod registry;
pub mod secret;
pub mod storage;
pub mod uploads;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "axum")]
pub mod http;
#[cfg(feature = "conformance")]
pub mod testing;

pub use counters::Counters;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use models::{EmbeddingCache, EmbeddingProvider, ImageProvider};
pub use queue::{DynQueue, Queue, QueueExt};
pub use secret::{Secret, redacted_url};
pub use storage::{DynStorage, ObjectKey, Storage, StorageExt};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
