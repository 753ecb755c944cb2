//! Schema introspection and comparison across engines: the schema-parity check.
//!
//! [`introspect`] reads a database's tables, columns (normalised type, nullability,
//! default), primary keys, unique constraints, indexes and foreign keys into one
//! engine-neutral [`Schema`]; [`Schema::diff`] lists every difference in words.
//!
//! Type mapping (SQLite declared type ↔ PostgreSQL type → normalised):
//!
//! | SQLite | PostgreSQL | normalised |
//! |---|---|---|
//! | `varchar(N)` | `character varying(N)` | `string(N)` |
//! | `text` | `text` | `text` |
//! | `boolean` | `boolean` | `bool` |
//! | `integer` | `integer` or `bigint` | `int` |
//! | `double` / `real` | `double precision` | `f64` |
//! | `timestamp_with_timezone_text` | `timestamp with time zone` | `timestamptz` |
//! | `json_text` / `jsonb_text` | `json` / `jsonb` | `json` |
//! | `blob` | `bytea` | `bytes` |
//!
//! SQLite stores every integer in 64 bits and sea-query declares both `integer()` and
//! `big_integer()` columns as `integer` there, so the check cannot tell 32- from 64-bit
//! integers apart: both normalise to `int`. Choose `big_integer()` for anything that may
//! outgrow 32 bits, or PostgreSQL will refuse values SQLite accepts.
//!
//! Anything else normalises to `unmapped(<engine type>)`, which never matches the other
//! engine, so a new type must be added here deliberately.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sea_orm::{ConnectionTrait, DatabaseExecutor, QueryResult, Statement};
use zeroscale_core::Result;

use crate::{Db, Dialect};

/// Tables ignored by the comparison: migration bookkeeping, and pgvector's side table
/// (an engine-specific accelerator, like an index; see `pgvector.rs`).
const IGNORED_TABLES: &[&str] = &["seaql_migrations", "document_vectors"];

/// A column, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Normalised type (see the module docs).
    pub ty: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Normalised default expression.
    pub default: Option<String>,
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ty)?;
        f.write_str(if self.nullable { " null" } else { " not null" })?;
        if let Some(d) = &self.default {
            write!(f, " default {d}")?;
        }
        Ok(())
    }
}

/// A foreign key, normalised (names are ignored: SQLite does not keep them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKey {
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table.
    pub references: String,
    /// Referenced columns.
    pub referenced_columns: Vec<String>,
    /// `cascade`, `restrict`, `set null`, `set default` or `no action`.
    pub on_delete: String,
}

/// A table, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Columns by name.
    pub columns: BTreeMap<String, Column>,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// Column lists with a unique constraint or unique index.
    pub unique: BTreeSet<Vec<String>>,
    /// Column lists with a non-unique index.
    pub indexes: BTreeSet<Vec<String>>,
    /// Foreign keys.
    pub foreign_keys: BTreeSet<ForeignKey>,
}

/// A database schema, normalised so SQLite and PostgreSQL compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// Tables by name.
    pub tables: BTreeMap<String, Table>,
}

/// Normalises an engine's type name (lower case) per the module's mapping.
pub fn normalise_type(dialect: Dialect, raw: &str, max_length: Option<i64>) -> String {
    let t = raw.trim().to_ascii_lowercase();
    let varchar = |n: Option<&str>| match n {
        Some(n) => format!("string({n})"),
        None => "string".to_owned(),
    };
    match (dialect, t.as_str()) {
        (_, "text") => "text".to_owned(),
        (_, "boolean" | "bool") => "bool".to_owned(),
        (_, "integer" | "int" | "int4" | "bigint" | "int8") => "int".to_owned(),
        (Dialect::Sqlite, "double" | "real") | (Dialect::Postgres, "double precision") => {
            "f64".to_owned()
        }
        (Dialect::Sqlite, "timestamp_with_timezone_text")
        | (Dialect::Postgres, "timestamp with time zone") => "timestamptz".to_owned(),
        (Dialect::Sqlite, "json_text" | "jsonb_text") | (Dialect::Postgres, "json" | "jsonb") => {
            "json".to_owned()
        }
        (Dialect::Sqlite, "blob") | (Dialect::Postgres, "bytea") => "bytes".to_owned(),
        (Dialect::Postgres, "character varying") => {
            varchar(max_length.map(|n| n.to_string()).as_deref())
        }
        (Dialect::Sqlite, s) if s.starts_with("varchar(") && s.ends_with(')') => {
            varchar(Some(&s["varchar(".len()..s.len() - 1]))
        }
        (_, other) => format!("unmapped({other})"),
    }
}

/// Normalises a default expression: drops PostgreSQL casts and outer quotes' case
/// differences, lower-cases booleans.
pub fn normalise_default(raw: &str) -> String {
    let mut d = raw.trim().to_owned();
    if let Some(i) = d.find("::") {
        d.truncate(i);
    }
    while d.starts_with('(') && d.ends_with(')') {
        d = d[1..d.len() - 1].to_owned();
    }
    match d.to_ascii_lowercase().as_str() {
        "true" | "false" => d.to_ascii_lowercase(),
        _ => d,
    }
}

fn normalise_action(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "c" | "cascade" => "cascade".to_owned(),
        "r" | "restrict" => "restrict".to_owned(),
        "n" | "set null" => "set null".to_owned(),
        "d" | "set default" => "set default".to_owned(),
        _ => "no action".to_owned(),
    }
}

/// Where introspection reads: the database's pool, or a transaction in progress (a
/// restore reads the schema it has just migrated, before committing).
pub(crate) struct Src<'a> {
    pub(crate) db: &'a Db,
    pub(crate) conn: DatabaseExecutor<'a>,
}

async fn query(src: &Src<'_>, sql: &str, values: Vec<sea_orm::Value>) -> Result<Vec<QueryResult>> {
    let backend = src.conn.get_database_backend();
    src.conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .map_err(|e| src.db.map_err(e))
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, col: &str, db: &Db) -> Result<T> {
    row.try_get::<T>("", col).map_err(|e| db.map_err(e))
}

/// Reads `db`'s schema.
pub async fn introspect(db: &Db) -> Result<Schema> {
    introspect_in(&Src {
        db,
        conn: DatabaseExecutor::Connection(db.conn()?),
    })
    .await
}

/// Reads the schema as `src` sees it.
pub(crate) async fn introspect_in(src: &Src<'_>) -> Result<Schema> {
    match src.db.sql_dialect() {
        Dialect::Sqlite => introspect_sqlite(src).await,
        Dialect::Postgres => introspect_postgres(src).await,
    }
}

async fn introspect_sqlite(src: &Src<'_>) -> Result<Schema> {
    let db = src.db;
    let mut schema = Schema::default();
    let tables = query(
        src,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        vec![],
    )
    .await?;
    for row in tables {
        let name: String = get(&row, "name", db)?;
        if IGNORED_TABLES.contains(&name.as_str()) {
            continue;
        }
        let mut table = Table::default();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for col in query(
            src,
            "SELECT name, type, \"notnull\" AS not_null, dflt_value, pk FROM pragma_table_info(?)",
            vec![name.clone().into()],
        )
        .await?
        {
            let col_name: String = get(&col, "name", db)?;
            let ty: String = get(&col, "type", db)?;
            let not_null: i64 = get(&col, "not_null", db)?;
            let default: Option<String> = get(&col, "dflt_value", db)?;
            let pk_pos: i64 = get(&col, "pk", db)?;
            if pk_pos > 0 {
                pk.push((pk_pos, col_name.clone()));
            }
            table.columns.insert(
                col_name,
                Column {
                    ty: normalise_type(Dialect::Sqlite, &ty, None),
                    // SQLite lets primary key columns be NULL unless declared otherwise;
                    // zeroscale declares them NOT NULL, so this is read as declared.
                    nullable: not_null == 0,
                    default: default.as_deref().map(normalise_default),
                },
            );
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        for index in query(
            src,
            "SELECT name, \"unique\" AS is_unique, origin FROM pragma_index_list(?)",
            vec![name.clone().into()],
        )
        .await?
        {
            let index_name: String = get(&index, "name", db)?;
            let unique: i64 = get(&index, "is_unique", db)?;
            let origin: String = get(&index, "origin", db)?;
            if origin == "pk" {
                continue;
            }
            let columns: Vec<String> = query(
                src,
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                vec![index_name.into()],
            )
            .await?
            .iter()
            .map(|r| get::<String>(r, "name", db))
            .collect::<Result<_>>()?;
            if unique != 0 {
                table.unique.insert(columns);
            } else {
                table.indexes.insert(columns);
            }
        }
        let mut fks: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for fk in query(
            src,
            "SELECT id, seq, \"table\" AS ref_table, \"from\" AS from_col, \"to\" AS to_col, \
             on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq",
            vec![name.clone().into()],
        )
        .await?
        {
            let id: i64 = get(&fk, "id", db)?;
            let entry = fks.entry(id).or_insert_with(|| ForeignKey {
                columns: vec![],
                references: String::new(),
                referenced_columns: vec![],
                on_delete: String::new(),
            });
            entry.references = get(&fk, "ref_table", db)?;
            entry.columns.push(get(&fk, "from_col", db)?);
            entry.referenced_columns.push(get(&fk, "to_col", db)?);
            entry.on_delete = normalise_action(&get::<String>(&fk, "on_delete", db)?);
        }
        table.foreign_keys = fks.into_values().collect();
        schema.tables.insert(name, table);
    }
    Ok(schema)
}

async fn introspect_postgres(src: &Src<'_>) -> Result<Schema> {
    let db = src.db;
    let mut schema = Schema::default();
    let tables = query(
        src,
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        vec![],
    )
    .await?;
    for row in tables {
        let name: String = get(&row, "name", db)?;
        if IGNORED_TABLES.contains(&name.as_str()) {
            continue;
        }
        let mut table = Table::default();
        for col in query(
            src,
            "SELECT column_name::text AS name, data_type::text AS ty, is_nullable::text AS nullable, \
             column_default::text AS dflt, character_maximum_length::bigint AS max_len \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            vec![name.clone().into()],
        )
        .await?
        {
            let col_name: String = get(&col, "name", db)?;
            let ty: String = get(&col, "ty", db)?;
            let nullable: String = get(&col, "nullable", db)?;
            let default: Option<String> = get(&col, "dflt", db)?;
            let max_len: Option<i64> = get(&col, "max_len", db)?;
            table.columns.insert(
                col_name,
                Column {
                    ty: normalise_type(Dialect::Postgres, &ty, max_len),
                    nullable: nullable == "YES",
                    default: default.as_deref().map(normalise_default),
                },
            );
        }
        let index_sql = "SELECT i.indisunique AS is_unique, i.indisprimary AS is_primary, \
             (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS cols \
             FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname = $1";
        for index in query(src, index_sql, vec![name.clone().into()]).await? {
            let unique: bool = get(&index, "is_unique", db)?;
            let primary: bool = get(&index, "is_primary", db)?;
            let cols: String = get(&index, "cols", db)?;
            let columns: Vec<String> = cols.split(',').map(str::to_owned).collect();
            if primary {
                table.primary_key = columns;
            } else if unique {
                table.unique.insert(columns);
            } else {
                table.indexes.insert(columns);
            }
        }
        let fk_sql = "SELECT c.confdeltype::text AS on_delete, rt.relname::text AS ref_table, \
             (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS cols, \
             (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) \
                FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord) \
                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS ref_cols \
             FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid \
             JOIN pg_class rt ON rt.oid = c.confrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE c.contype = 'f' AND n.nspname = current_schema() AND t.relname = $1";
        for fk in query(src, fk_sql, vec![name.clone().into()]).await? {
            let cols: String = get(&fk, "cols", db)?;
            let ref_cols: String = get(&fk, "ref_cols", db)?;
            table.foreign_keys.insert(ForeignKey {
                columns: cols.split(',').map(str::to_owned).collect(),
                references: get(&fk, "ref_table", db)?,
                referenced_columns: ref_cols.split(',').map(str::to_owned).collect(),
                on_delete: normalise_action(&get::<String>(&fk, "on_delete", db)?),
            });
        }
        schema.tables.insert(name, table);
    }
    Ok(schema)
}

impl Schema {
    /// Every difference between `self` (named `a`) and `other` (named `b`), one line each;
    /// empty when they agree.
    pub fn diff(&self, a: &str, other: &Schema, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        let names: BTreeSet<&String> = self.tables.keys().chain(other.tables.keys()).collect();
        for name in names {
            match (self.tables.get(name), other.tables.get(name)) {
                (Some(_), None) => out.push(format!("table `{name}` only in {a}")),
                (None, Some(_)) => out.push(format!("table `{name}` only in {b}")),
                (Some(x), Some(y)) => diff_table(name, x, a, y, b, &mut out),
                (None, None) => {}
            }
        }
        out
    }
}

fn diff_table(name: &str, x: &Table, a: &str, y: &Table, b: &str, out: &mut Vec<String>) {
    let cols: BTreeSet<&String> = x.columns.keys().chain(y.columns.keys()).collect();
    for col in cols {
        match (x.columns.get(col), y.columns.get(col)) {
            (Some(c), None) => out.push(format!("`{name}.{col}` ({c}) only in {a}")),
            (None, Some(c)) => out.push(format!("`{name}.{col}` ({c}) only in {b}")),
            (Some(cx), Some(cy)) if cx != cy => {
                out.push(format!("`{name}.{col}`: {a} has {cx}, {b} has {cy}"));
            }
            _ => {}
        }
    }
    if x.primary_key != y.primary_key {
        out.push(format!(
            "`{name}` primary key: {a} ({}) vs {b} ({})",
            x.primary_key.join(", "),
            y.primary_key.join(", ")
        ));
    }
    let sets = [
        ("unique", &x.unique, &y.unique),
        ("index", &x.indexes, &y.indexes),
    ];
    for (what, sx, sy) in sets {
        for cols in sx.difference(sy) {
            out.push(format!(
                "`{name}` {what} on ({}) only in {a}",
                cols.join(", ")
            ));
        }
        for cols in sy.difference(sx) {
            out.push(format!(
                "`{name}` {what} on ({}) only in {b}",
                cols.join(", ")
            ));
        }
    }
    for fk in x.foreign_keys.difference(&y.foreign_keys) {
        out.push(format!("`{name}` {} only in {a}", describe_fk(fk)));
    }
    for fk in y.foreign_keys.difference(&x.foreign_keys) {
        out.push(format!("`{name}` {} only in {b}", describe_fk(fk)));
    }
}

fn describe_fk(fk: &ForeignKey) -> String {
    format!(
        "foreign key ({}) → {}({}) on delete {}",
        fk.columns.join(", "),
        fk.references,
        fk.referenced_columns.join(", "),
        fk.on_delete
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mapping() {
        assert_eq!(
            normalise_type(Dialect::Sqlite, "varchar(36)", None),
            "string(36)"
        );
        assert_eq!(
            normalise_type(Dialect::Postgres, "character varying", Some(36)),
            "string(36)"
        );
        assert_eq!(normalise_type(Dialect::Postgres, "jsonb", None), "json");
        assert_eq!(normalise_type(Dialect::Sqlite, "json_text", None), "json");
        assert_eq!(normalise_type(Dialect::Sqlite, "jsonb_text", None), "json");
        assert_eq!(normalise_type(Dialect::Sqlite, "integer", None), "int");
        assert_eq!(normalise_type(Dialect::Postgres, "bigint", None), "int");
        assert_eq!(
            normalise_type(Dialect::Sqlite, "jsonb", None),
            "unmapped(jsonb)"
        );
        assert_eq!(
            normalise_type(Dialect::Postgres, "timestamp with time zone", None),
            "timestamptz"
        );
    }

    #[test]
    fn default_normalisation() {
        assert_eq!(normalise_default("'user'::character varying"), "'user'");
        assert_eq!(normalise_default("TRUE"), "true");
        assert_eq!(normalise_default("(0)"), "0");
    }
}
