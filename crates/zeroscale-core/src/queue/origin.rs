//! Where a job came from: a few short text entries (the request id of the HTTP request that
//! enqueued it, the W3C trace context of the span it was enqueued in) that every backend
//! stores with the job and hands back with each reservation, so the worker's logs and
//! traces continue the request's.
//!
//! A backend fills an enqueued job's empty origin from [`JobOrigin::current`], which asks
//! the process's origin source: the `zeroscale` server installs one that reads the
//! current request's id and trace; an app built on the crates may install its own with
//! [`JobOrigin::set_source`], or set [`EnqueueOptions::origin`](super::EnqueueOptions)
//! itself.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A job's origin: at most [`JobOrigin::MAX_ENTRIES`] entries of lowercase names and
/// printable ASCII values, [`JobOrigin::MAX_BYTES`] in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobOrigin(BTreeMap<String, String>);

/// The process's origin source, installed once.
static SOURCE: OnceLock<fn() -> JobOrigin> = OnceLock::new();

impl JobOrigin {
    /// The entry naming the HTTP request that enqueued the job (its `x-request-id`).
    pub const REQUEST_ID: &'static str = "request-id";
    /// The W3C `traceparent` of the span the job was enqueued in.
    pub const TRACEPARENT: &'static str = "traceparent";
    /// The W3C `tracestate` that came with it.
    pub const TRACESTATE: &'static str = "tracestate";
    /// Entries an origin may hold.
    pub const MAX_ENTRIES: usize = 8;
    /// Bytes of names and values an origin may hold.
    pub const MAX_BYTES: usize = 1024;

    /// An empty origin.
    pub fn new() -> Self {
        JobOrigin::default()
    }

    /// An origin with the request id `id`, or an error when it is not a valid value.
    pub fn with_request_id(id: &str) -> Result<Self> {
        let mut origin = JobOrigin::new();
        origin.insert(Self::REQUEST_ID, id)?;
        Ok(origin)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The request id, when the job was enqueued while serving a request.
    pub fn request_id(&self) -> Option<&str> {
        self.get(Self::REQUEST_ID)
    }

    /// Sets `name` to `value`; refused (and nothing changes) when the name or value is not
    /// allowed or the origin would grow past its limits.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<()> {
        let previous = self.0.insert(name.to_owned(), value.to_owned());
        if let Err(e) = self.validate() {
            match previous {
                Some(old) => self.0.insert(name.to_owned(), old),
                None => self.0.remove(name),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// The entries, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the limits: names of 1 to 64 lowercase letters, digits, `-`, `_` or `.`;
    /// values of printable ASCII; at most [`Self::MAX_ENTRIES`] entries and
    /// [`Self::MAX_BYTES`] bytes.
    pub fn validate(&self) -> Result<()> {
        if self.0.len() > Self::MAX_ENTRIES {
            return Err(Error::invalid_input(format!(
                "job origin has {} entries: at most {}",
                self.0.len(),
                Self::MAX_ENTRIES
            )));
        }
        let mut bytes = 0;
        for (name, value) in &self.0 {
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            if !name_ok {
                return Err(Error::invalid_input(format!(
                    "job origin name {name:?}: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`"
                )));
            }
            if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::invalid_input(format!(
                    "job origin value of {name:?}: only printable ASCII is kept"
                )));
            }
            bytes += name.len() + value.len();
        }
        if bytes > Self::MAX_BYTES {
            return Err(Error::invalid_input(format!(
                "job origin holds {bytes} bytes: at most {}",
                Self::MAX_BYTES
            )));
        }
        Ok(())
    }

    /// The JSON object backends store (`{}` for none).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads what [`Self::to_json`] wrote; an empty string is an empty origin. A stored
    /// value that no longer passes [`Self::validate`] is an error: it did not come from
    /// a backend.
    pub fn from_json(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Ok(JobOrigin::new());
        }
        let origin: JobOrigin = serde_json::from_str(text).map_err(|e| {
            Error::invalid_input(format!("job origin is not a JSON object of strings: {e}"))
        })?;
        origin.validate()?;
        Ok(origin)
    }

    /// The origin of the code running now, from the process's source (empty without
    /// one). Backends call it for jobs enqueued without an origin.
    pub fn current() -> JobOrigin {
        match SOURCE.get() {
            Some(source) => {
                let origin = source();
                // A source is trusted code, but a bad value must not refuse the enqueue.
                if origin.validate().is_ok() {
                    origin
                } else {
                    JobOrigin::new()
                }
            }
            None => JobOrigin::new(),
        }
    }

    /// Installs the process's origin source; once per process. Installing the same
    /// function again is fine; a different one is refused.
    pub fn set_source(source: fn() -> JobOrigin) -> Result<()> {
        let installed = *SOURCE.get_or_init(|| source);
        if std::ptr::fn_addr_eq(installed, source) {
            Ok(())
        } else {
            Err(Error::invalid_input(
                "a different job origin source was already installed in this process",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_a_refused_insert_changes_nothing() {
        let mut c = JobOrigin::with_request_id("req-1").unwrap();
        assert_eq!(c.request_id(), Some("req-1"));
        assert!(c.insert("Upper", "x").is_err());
        assert!(c.insert("ok", "line\nbreak").is_err());
        assert!(c.insert(JobOrigin::REQUEST_ID, "tab\t").is_err());
        assert_eq!(
            c.request_id(),
            Some("req-1"),
            "a refused update keeps the old value"
        );
        assert!(c.insert("big", &"a".repeat(JobOrigin::MAX_BYTES)).is_err());
        for n in 0..7 {
            c.insert(&format!("k{n}"), "v").unwrap();
        }
        assert!(c.insert("one-too-many", "v").is_err());
        assert_eq!(c.iter().count(), JobOrigin::MAX_ENTRIES);
    }

    #[test]
    fn json_round_trips_and_bad_stored_values_are_errors() {
        let mut c = JobOrigin::new();
        assert_eq!(c.to_json(), "{}");
        assert_eq!(JobOrigin::from_json("").unwrap(), c);
        c.insert(
            JobOrigin::TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
        assert_eq!(JobOrigin::from_json(&c.to_json()).unwrap(), c);
        assert!(JobOrigin::from_json("[1]").is_err());
        assert!(JobOrigin::from_json(r#"{"Bad":"x"}"#).is_err());
    }
}
