//! `Secret<T>`: a value (password, API key, URL with credentials) that never prints or serializes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a [`Secret`] shows instead of its value, in `Debug`, `Display` and serialization.
pub const REDACTED: &str = "[redacted]";

/// A configuration value that must never be printed or written out.
///
/// `Debug`, `Display` and `Serialize` all give [`REDACTED`]; the value is reachable only
/// through [`Secret::expose`], so every use of it is visible in the code.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value. Do not log it.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// Whether the secret is the empty string (i.e. not really set).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A secret is described as its value's type, marked `"x-secret": true` (the config
/// reference says so; `config show` prints it redacted).
impl<T: schemars::JsonSchema> schemars::JsonSchema for Secret<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Secret_{}", T::schema_name()).into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = T::json_schema(generator);
        schema.insert("x-secret".to_owned(), serde_json::Value::Bool(true));
        schema
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

/// The part of a URL that is safe to print: `host:port/path`, without the scheme, the
/// user and password, or the query (which may carry a password too). For database,
/// Redis and provider URLs in logs, errors and reports.
///
/// ```
/// use zeroscale_core::redacted_url;
/// assert_eq!(redacted_url("postgres://user:p@ss@127.0.0.1:5432/db?sslmode=disable"), "127.0.0.1:5432/db");
/// assert_eq!(redacted_url("redis://:secret@cache:6379/2"), "cache:6379/2");
/// assert_eq!(redacted_url("127.0.0.1/db"), "127.0.0.1/db");
/// ```
pub fn redacted_url(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    // The user part ends at the last `@` before the path.
    let (authority, path) = without_query
        .find('/')
        .map_or((without_query, ""), |i| without_query.split_at(i));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_or_serializes_the_value() {
        let s: Secret = Secret::from("hunter2");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), format!("Some({REDACTED})"));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{REDACTED}\"")
        );
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn deserializes_the_plain_value() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(s.expose(), "hunter2");
    }
}
