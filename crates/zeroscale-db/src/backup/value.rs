//! The engine-neutral encoding of one column value, by the column's normalised type (see
//! `schema`): the same JSON text whichever engine the row came from.
//!
//! | normalised type | in the archive |
//! |---|---|
//! | `int` | a JSON integer |
//! | `f64` | a JSON number |
//! | `bool` | `true` / `false` |
//! | `string(N)`, `text` | a JSON string |
//! | `timestamptz` | an RFC 3339 UTC string with microseconds, `2026-12-02T07:31:50.123456Z` |
//! | `json` | the JSON value in canonical form: object keys sorted by their UTF-8 bytes, integral numbers that fit in 64 bits as integers, others in shortest round-trip form |
//! | `bytes` | standard base64 with padding |
//! | any, NULL | `null` |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{QueryResult, Value};
use serde_json::Value as Json;
use zeroscale_core::{Error, Result};

/// The kinds of column the archive knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Bool,
    Text,
    Timestamp,
    Json,
    Bytes,
}

impl Kind {
    /// The kind of a normalised column type.
    pub(crate) fn of(ty: &str) -> Result<Kind> {
        Ok(match ty {
            "int" => Kind::Int,
            "f64" => Kind::Float,
            "bool" => Kind::Bool,
            "text" => Kind::Text,
            t if t.starts_with("string") => Kind::Text,
            "timestamptz" => Kind::Timestamp,
            "json" => Kind::Json,
            "bytes" => Kind::Bytes,
            other => {
                return Err(Error::invalid_input(format!(
                    "column type `{other}` has no archive encoding: add it to \
                     zeroscale-db's backup/value.rs"
                )));
            }
        })
    }
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str) -> Result<Option<T>> {
    row.try_get::<Option<T>>("", col)
        .map_err(|e| Error::backend("backup", std::io::Error::other(e.to_string())))
}

/// Reads column `col` of `row` as its archive JSON.
pub(crate) fn read(row: &QueryResult, col: &str, kind: Kind) -> Result<Json> {
    Ok(match kind {
        Kind::Int => get::<i64>(row, col)?.map_or(Json::Null, Json::from),
        Kind::Float => get::<f64>(row, col)?.map_or(Json::Null, Json::from),
        Kind::Bool => get::<bool>(row, col)?.map_or(Json::Null, Json::from),
        Kind::Text => get::<String>(row, col)?.map_or(Json::Null, Json::from),
        Kind::Timestamp => {
            get::<DateTime<Utc>>(row, col)?.map_or(Json::Null, |t| Json::from(timestamp(t)))
        }
        Kind::Json => get::<Json>(row, col)?.map_or(Json::Null, |v| canonical(&v)),
        Kind::Bytes => {
            get::<Vec<u8>>(row, col)?.map_or(Json::Null, |b| Json::from(STANDARD.encode(b)))
        }
    })
}

/// A column's value (as an entity model holds it) as its archive JSON: the same text
/// [`read`] gives for that value read from a row.
#[cfg(feature = "mongodb")]
pub(crate) fn json_of(value: Value, kind: Kind) -> Result<Json> {
    let wrong = |v: &Value| Error::invalid_input(format!("{v:?} is not a {kind:?} value"));
    Ok(match (kind, value) {
        (Kind::Int, Value::BigInt(v)) => v.map_or(Json::Null, Json::from),
        (Kind::Int, Value::Int(v)) => v.map_or(Json::Null, Json::from),
        (Kind::Float, Value::Double(v)) => v.map_or(Json::Null, Json::from),
        (Kind::Bool, Value::Bool(v)) => v.map_or(Json::Null, Json::from),
        (Kind::Text, Value::String(v)) => v.map_or(Json::Null, Json::from),
        (Kind::Timestamp, Value::ChronoDateTimeUtc(v)) => {
            v.map_or(Json::Null, |t| Json::from(timestamp(t)))
        }
        (Kind::Json, Value::Json(v)) => v.map_or(Json::Null, |v| canonical(&v)),
        (Kind::Bytes, Value::Bytes(v)) => v.map_or(Json::Null, |b| Json::from(STANDARD.encode(b))),
        (_, other) => return Err(wrong(&other)),
    })
}

/// `2026-12-02T07:31:50.123456Z`.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The canonical form of a JSON value (see the module docs). Key order is made by
/// [`write_canonical`]; here numbers are normalised.
pub(crate) fn canonical(value: &Json) -> Json {
    match value {
        Json::Number(n) => {
            if n.is_i64() || n.is_u64() {
                return value.clone();
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64 => {
                    Json::from(f as i64)
                }
                _ => value.clone(),
            }
        }
        Json::Array(items) => Json::Array(items.iter().map(canonical).collect()),
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

/// Writes `value` as compact JSON with object keys sorted by their bytes, whatever order
/// the map keeps them in.
pub(crate) fn write_canonical(value: &Json, out: &mut String) {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether a string, or any string in a JSON value, holds a NUL character, which
/// PostgreSQL's `text` and `jsonb` refuse.
pub(crate) fn has_nul(value: &Json) -> bool {
    match value {
        Json::String(s) => s.contains('\0'),
        Json::Array(items) => items.iter().any(has_nul),
        Json::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The value to bind for an archive value of column `kind`.
pub(crate) fn bind(value: &Json, kind: Kind) -> Result<Value> {
    let wrong = || Error::invalid_input(format!("`{value}` is not a valid {kind:?} value"));
    if value.is_null() {
        return Ok(match kind {
            Kind::Int => Value::BigInt(None),
            Kind::Float => Value::Double(None),
            Kind::Bool => Value::Bool(None),
            Kind::Text => Value::String(None),
            Kind::Timestamp => Value::ChronoDateTimeUtc(None),
            Kind::Json => Value::Json(None),
            Kind::Bytes => Value::Bytes(None),
        });
    }
    Ok(match kind {
        Kind::Int => Value::BigInt(Some(value.as_i64().ok_or_else(wrong)?)),
        Kind::Float => Value::Double(Some(value.as_f64().ok_or_else(wrong)?)),
        Kind::Bool => Value::Bool(Some(value.as_bool().ok_or_else(wrong)?)),
        Kind::Text => Value::String(Some(value.as_str().ok_or_else(wrong)?.to_owned())),
        Kind::Timestamp => {
            let text = value.as_str().ok_or_else(wrong)?;
            let t = DateTime::parse_from_rfc3339(text).map_err(|_| wrong())?;
            Value::ChronoDateTimeUtc(Some(t.with_timezone(&Utc)))
        }
        Kind::Json => Value::Json(Some(Box::new(value.clone()))),
        Kind::Bytes => {
            let text = value.as_str().ok_or_else(wrong)?;
            Value::Bytes(Some(STANDARD.decode(text).map_err(|_| wrong())?))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_canonical() {
        let a: Json = serde_json::from_str(r#"{"b":1,"a":1e2,"c":[{"z":1.5,"y":null}]}"#).unwrap();
        let b: Json =
            serde_json::from_str(r#"{"a": 100, "c": [{"y": null, "z": 1.5}], "b": 1}"#).unwrap();
        let (mut x, mut y) = (String::new(), String::new());
        write_canonical(&canonical(&a), &mut x);
        write_canonical(&canonical(&b), &mut y);
        assert_eq!(x, r#"{"a":100,"b":1,"c":[{"y":null,"z":1.5}]}"#);
        assert_eq!(x, y);
    }

    #[test]
    fn timestamps_have_microseconds() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T07:31:50.1234567+01:00").unwrap();
        assert_eq!(
            timestamp(t.with_timezone(&Utc)),
            "2026-12-02T06:31:50.123456Z"
        );
    }

    #[test]
    fn nul_is_found_anywhere() {
        assert!(has_nul(&Json::from("a\0b")));
        assert!(has_nul(&serde_json::json!({"k": ["x", "\u{0}"]})));
        assert!(!has_nul(&serde_json::json!({"k": "fine"})));
    }

    #[test]
    fn values_round_trip_through_binding() {
        for (value, kind) in [
            (Json::from(42), Kind::Int),
            (Json::from("2026-12-02T06:31:50.123456Z"), Kind::Timestamp),
            (Json::from("AAEC"), Kind::Bytes),
            (Json::Null, Kind::Text),
        ] {
            bind(&value, kind).unwrap();
        }
        assert!(bind(&Json::from("x"), Kind::Int).is_err());
        assert!(bind(&Json::from("not base64!"), Kind::Bytes).is_err());
    }
}
