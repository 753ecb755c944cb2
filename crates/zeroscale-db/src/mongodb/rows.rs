//! A row of any of our tables as a BSON document and back, by the entity's columns: the
//! primary key is `_id`; text, booleans and integers are themselves; times are BSON dates;
//! JSON is a subdocument (or array, or scalar); bytes are generic binary. A null column is
//! stored as an absent field.

use mongodb::bson::{Binary, Bson, Document, spec::BinarySubtype};
use sea_orm::sea_query::{ColumnType, Value};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IdenStatic, Iterable, ModelTrait,
    PrimaryKeyToColumn, TryIntoModel,
};
use zeroscale_core::{Error, Result};

/// The name a column has in a document: `_id` for the primary key.
fn field<E: EntityTrait>(column: E::Column) -> &'static str {
    let key = E::PrimaryKey::iter()
        .next()
        .map(PrimaryKeyToColumn::into_column);
    if key.is_some_and(|k| k.as_str() == column.as_str()) {
        "_id"
    } else {
        column.as_str()
    }
}

/// A column value as BSON (`Null` for a null).
pub(crate) fn value(value: Value) -> Bson {
    to_bson(value).unwrap_or(Bson::Null)
}

fn to_bson(value: Value) -> Option<Bson> {
    Some(match value {
        Value::String(s) => Bson::String(s?),
        Value::Bool(b) => Bson::Boolean(b?),
        Value::Int(i) => Bson::Int32(i?),
        Value::BigInt(i) => Bson::Int64(i?),
        Value::ChronoDateTimeUtc(t) => super::date(t?),
        Value::Json(j) => json_to_bson(*j?),
        Value::Bytes(b) => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b?,
        }),
        other => Bson::String(format!("{other:?}")),
    })
}

/// JSON as BSON: objects are documents, integers 64-bit, other numbers doubles.
pub(crate) fn json_to_bson(json: serde_json::Value) -> Bson {
    match json {
        serde_json::Value::Null => Bson::Null,
        serde_json::Value::Bool(b) => Bson::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Bson::String(s),
        serde_json::Value::Array(a) => Bson::Array(a.into_iter().map(json_to_bson).collect()),
        serde_json::Value::Object(o) => Bson::Document(
            o.into_iter()
                .map(|(k, v)| (k, json_to_bson(v)))
                .collect::<Document>(),
        ),
    }
}

/// BSON as JSON (the inverse of [`json_to_bson`] for what it makes; other BSON types as
/// relaxed extended JSON).
pub(crate) fn bson_to_json(value: Bson) -> serde_json::Value {
    match value {
        Bson::Null | Bson::Undefined => serde_json::Value::Null,
        Bson::Boolean(b) => serde_json::Value::Bool(b),
        Bson::Int32(i) => i.into(),
        Bson::Int64(i) => i.into(),
        Bson::Double(d) => serde_json::Number::from_f64(d)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Bson::String(s) => serde_json::Value::String(s),
        Bson::Array(a) => serde_json::Value::Array(a.into_iter().map(bson_to_json).collect()),
        Bson::Document(d) => {
            serde_json::Value::Object(d.into_iter().map(|(k, v)| (k, bson_to_json(v))).collect())
        }
        other => other.into_relaxed_extjson(),
    }
}

/// `model` as a document.
pub(crate) fn to_doc<E: EntityTrait>(model: &E::Model) -> Document {
    let mut doc = Document::new();
    for column in E::Column::iter() {
        if let Some(value) = to_bson(model.get(column)) {
            doc.insert(field::<E>(column), value);
        }
    }
    doc
}

pub(crate) fn int_of(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        #[allow(clippy::cast_possible_truncation)]
        Bson::Double(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    }
}

fn from_bson(column_type: &ColumnType, value: Option<Bson>, what: &str) -> Result<Value> {
    let bad = |v: &Bson| {
        Error::backend(
            "mongodb",
            std::io::Error::other(format!("field `{what}` holds {v:?}, not a {column_type:?}")),
        )
    };
    let value = value.filter(|v| !matches!(v, Bson::Null | Bson::Undefined));
    Ok(match column_type {
        ColumnType::Boolean => Value::Bool(match value {
            None => None,
            Some(Bson::Boolean(b)) => Some(b),
            // The test server (nx-27017) stores a boolean given in `$set` as 0 or 1.
            Some(Bson::Int32(i)) => Some(i != 0),
            Some(Bson::Int64(i)) => Some(i != 0),
            Some(v) => return Err(bad(&v)),
        }),
        ColumnType::Integer | ColumnType::SmallInteger | ColumnType::TinyInteger => {
            Value::Int(match value {
                None => None,
                Some(v) => Some(
                    int_of(&v)
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(|| bad(&v))?,
                ),
            })
        }
        ColumnType::BigInteger => Value::BigInt(match value {
            None => None,
            Some(v) => Some(int_of(&v).ok_or_else(|| bad(&v))?),
        }),
        ColumnType::TimestampWithTimeZone | ColumnType::Timestamp | ColumnType::DateTime => {
            Value::ChronoDateTimeUtc(match value {
                None => None,
                Some(Bson::DateTime(d)) => Some(
                    chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
                        .ok_or_else(|| bad(&Bson::DateTime(d)))?,
                ),
                // A date as text: RFC 3339, or `2026-12-05 10:30:04.056000` (UTC), which
                // the test server (nx-27017) stores for a date given in `$set`.
                Some(Bson::String(s)) => Some(
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.to_utc())
                        .or_else(|_| {
                            chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
                                .map(|t| t.and_utc())
                        })
                        .map_err(|_| bad(&Bson::String(s.clone())))?,
                ),
                Some(v) => return Err(bad(&v)),
            })
        }
        ColumnType::Json | ColumnType::JsonBinary => {
            Value::Json(value.map(|v| Box::new(bson_to_json(v))))
        }
        ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_) => {
            Value::Bytes(match value {
                None => None,
                Some(Bson::Binary(b)) => Some(b.bytes),
                Some(v) => return Err(bad(&v)),
            })
        }
        _ => Value::String(match value {
            None => None,
            Some(Bson::String(s)) => Some(s),
            Some(Bson::ObjectId(oid)) => Some(oid.to_hex()),
            Some(v) => return Err(bad(&v)),
        }),
    })
}

/// A document as a row: every column from its field (`_id` an ObjectId or a string).
pub(crate) fn from_doc<E: EntityTrait>(mut doc: Document) -> Result<E::Model>
where
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
{
    let mut active = <E::ActiveModel as ActiveModelTrait>::default();
    for column in E::Column::iter() {
        let name = field::<E>(column);
        let value = from_bson(column.def().get_column_type(), doc.remove(name), name)?;
        active
            .try_set(column, value)
            .map_err(|e| Error::backend("mongodb", e))?;
    }
    active
        .try_into_model()
        .map_err(|e| Error::backend("mongodb", e))
}

/// One of our tables, as the store methods of [`super::Mongo`] read and write it.
pub(crate) trait Row: EntityTrait + Default {
    /// A document as this table's row.
    fn from_doc(doc: Document) -> Result<Self::Model>;
}

impl<E> Row for E
where
    E: EntityTrait + Default,
    E::ActiveModel: ActiveModelTrait<Entity = E> + TryIntoModel<E::Model>,
{
    fn from_doc(doc: Document) -> Result<E::Model> {
        from_doc::<E>(doc)
    }
}
