//! The key reference in docs/configuration.md, generated from the config types (their
//! doc comments and `Default`s, through `zeroscale_core::config::json_schema`), and the
//! tidy test that fails when the docs are stale. `UPDATE_DOCS=1 cargo test -p xtask
//! config_reference` rewrites the section.

use std::collections::BTreeMap;

use serde_json::Value;

/// Where the generated section starts and ends in docs/configuration.md.
pub(crate) const START: &str = "<!-- config-keys:start (generated from the config types: UPDATE_DOCS=1 cargo test -p xtask config_reference) -->";
pub(crate) const END: &str = "<!-- config-keys:end -->";

/// One key of the reference.
#[derive(Debug, Default)]
struct Row {
    default: String,
    description: String,
    /// The `kind`s the key belongs to (empty: every kind).
    kinds: Vec<String>,
    secret: bool,
}

/// The markdown table of every key.
pub(crate) fn markdown() -> String {
    let schema = zeroscale_core::config::json_schema();
    let mut rows = BTreeMap::new();
    let mut order = Vec::new();
    walk(&schema, &schema, "", None, None, &mut rows, &mut order);
    let mut out = String::from("| key | default | meaning |\n|---|---|---|\n");
    for key in order {
        let row = &rows[&key];
        let mut name = format!("`{key}`");
        if !row.kinds.is_empty() {
            name.push_str(&format!(" ({})", row.kinds.join(", ")));
        }
        let mut meaning = row.description.clone();
        if row.secret {
            meaning.push_str(" (secret: never printed)");
        }
        out.push_str(&format!(
            "| {name} | {} | {} |\n",
            row.default,
            meaning.replace('|', "\\|")
        ));
    }
    out
}

/// The definition a `$ref` points at, or the schema itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The non-null branch of an `Option` (`anyOf: [T, null]`), or the schema itself.
fn non_null<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(root, schema);
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let real: Vec<&Value> = branches
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [only] = real.as_slice() {
            return resolve(root, only);
        }
    }
    schema
}

/// Whether `schema` is a plain choice of strings (a unit-variant enum).
fn is_string_enum(schema: &Value) -> bool {
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().all(|v| v.get("const").is_some()))
        || schema.get("enum").is_some()
}

/// The strings a plain enum allows, as `a`, `b`.
fn enum_values(schema: &Value) -> String {
    let values: Vec<String> = match schema.get("oneOf").and_then(Value::as_array) {
        Some(variants) => variants
            .iter()
            .filter_map(|v| v.get("const").and_then(Value::as_str))
            .map(|v| format!("`{v}`"))
            .collect(),
        None => schema
            .get("enum")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(|v| format!("`{v}`"))
                    .collect()
            })
            .unwrap_or_default(),
    };
    values.join(", ")
}

/// The first paragraph of a doc comment, on one line.
fn describe(text: Option<&str>) -> String {
    let text = text.unwrap_or_default();
    let first = text.split("\n\n").next().unwrap_or_default();
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn show_default(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "—".to_owned(),
        // A secret's default is not shown (its doc comment says what it is).
        Some(Value::String(s)) if s == zeroscale_core::secret::REDACTED => "(secret)".to_owned(),
        Some(Value::String(s)) => format!("`\"{s}\"`"),
        Some(Value::Object(map)) if map.is_empty() => "—".to_owned(),
        Some(Value::Array(items)) if items.is_empty() => "`[]`".to_owned(),
        Some(other) => format!("`{other}`"),
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    root: &Value,
    schema: &Value,
    path: &str,
    default: Option<&Value>,
    kind: Option<&str>,
    rows: &mut BTreeMap<String, Row>,
    order: &mut Vec<String>,
) {
    let schema = non_null(root, schema);
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        // A backend choice: `kind` plus each kind's own keys.
        let kinds: Vec<String> = variants
            .iter()
            .filter_map(|v| {
                let kind = v
                    .get("properties")
                    .and_then(|p| p.get("kind"))
                    .or_else(|| resolve(root, v).get("properties")?.get("kind"))?;
                kind.get("const")
                    .or_else(|| kind.get("enum")?.get(0))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        let key = join("kind");
        let chosen = default.and_then(|d| d.get("kind"));
        add(
            rows,
            order,
            &key,
            Row {
                default: show_default(chosen),
                description: format!(
                    "{} One of: {}.",
                    describe(schema.get("description").and_then(Value::as_str)),
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ..Default::default()
            },
        );
        for (variant, name) in variants.iter().zip(&kinds) {
            // The variant's keys are its `$ref` target's.
            let variant = resolve(root, variant);
            let own_default = chosen
                .and_then(Value::as_str)
                .filter(|k| k == name)
                .and(default);
            walk_properties(root, variant, path, own_default, Some(name), rows, order);
        }
        return;
    }
    if schema.get("properties").is_some() {
        walk_properties(root, schema, path, default, kind, rows, order);
        return;
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        // A map: one entry per name the user picks.
        let placeholder = if path.ends_with("registry") {
            "<id>"
        } else {
            "<name>"
        };
        let entry = non_null(root, values);
        if entry.get("properties").is_some() || entry.get("oneOf").is_some() {
            walk(root, entry, &join(placeholder), None, kind, rows, order);
            return;
        }
    }
    let _ = (path, kind);
}

#[allow(clippy::too_many_arguments)]
fn walk_properties(
    root: &Value,
    schema: &Value,
    path: &str,
    default: Option<&Value>,
    kind: Option<&str>,
    rows: &mut BTreeMap<String, Row>,
    order: &mut Vec<String>,
) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    // By name, whether or not serde_json keeps insertion order (a dependency can turn its
    // `preserve_order` on for the whole build).
    let mut properties: Vec<(&String, &Value)> = properties.iter().collect();
    properties.sort_by(|a, b| a.0.cmp(b.0));
    for (name, property) in properties {
        if name == "kind" && kind.is_some() {
            continue;
        }
        let key = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let target = non_null(root, property);
        let value_default = property
            .get("default")
            .or_else(|| default.and_then(|d| d.get(name)));
        let nested = target.get("properties").is_some()
            || (target.get("oneOf").is_some() && !is_string_enum(target))
            || target
                .get("additionalProperties")
                .and_then(|v| {
                    non_null(root, v)
                        .get("properties")
                        .or(non_null(root, v).get("oneOf"))
                })
                .is_some();
        if nested {
            walk(root, target, &key, value_default, None, rows, order);
            continue;
        }
        let description = property
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(Value::as_str);
        let mut description = describe(description);
        if is_string_enum(target) {
            description.push_str(&format!(" One of: {}.", enum_values(target)));
        }
        let secret = property.get("x-secret").is_some()
            || target.get("x-secret").is_some()
            || property
                .get("anyOf")
                .and_then(Value::as_array)
                .is_some_and(|b| b.iter().any(|s| s.get("x-secret").is_some()));
        add(
            rows,
            order,
            &key,
            Row {
                default: show_default(value_default),
                description,
                kinds: kind.map(|k| vec![k.to_owned()]).unwrap_or_default(),
                secret,
            },
        );
    }
}

/// Adds a row, or merges the kinds of a key several kinds share.
fn add(rows: &mut BTreeMap<String, Row>, order: &mut Vec<String>, key: &str, row: Row) {
    match rows.get_mut(key) {
        Some(existing) => {
            for kind in row.kinds {
                if !existing.kinds.contains(&kind) {
                    existing.kinds.push(kind);
                }
            }
            if existing.default == "—" {
                existing.default = row.default;
            }
        }
        None => {
            order.push(key.to_owned());
            rows.insert(key.to_owned(), row);
        }
    }
}

/// Fails unless docs/`file`'s section between `markers` is `generated` (`what` says why
/// it would differ); with `UPDATE_DOCS` set, rewrites the section instead. `test` is the
/// test's name, for the command the failure names.
pub(crate) fn check_generated_section(
    file: &str,
    (start_marker, end_marker): (&str, &str),
    generated: &str,
    what: &str,
    test: &str,
) {
    let path = crate::util::root().join("docs").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("docs/{file}: {e}"));
    let (Some(start), Some(end)) = (text.find(start_marker), text.find(end_marker)) else {
        panic!("docs/{file} has no `{start_marker}` … `{end_marker}` section");
    };
    let current = &text[start + start_marker.len()..end];
    let generated = format!("\n{generated}");
    if current == generated {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!(
            "{}{start_marker}{generated}{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("write docs/{file}: {e}"));
        return;
    }
    panic!(
        "docs/{file}'s {what}: run `UPDATE_DOCS=1 cargo test -p xtask {test}` and commit the \
         result"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/configuration.md holds the reference generated from the code.
    #[test]
    fn config_reference_is_current() {
        check_generated_section(
            "configuration.md",
            (START, END),
            &markdown(),
            "key reference is stale (a config type, doc comment or default changed)",
            "config_reference",
        );
    }

    #[test]
    fn the_reference_covers_every_concern() {
        let table = markdown();
        for key in [
            "`data_dir`",
            "`server.addr`",
            "`database.kind`",
            "`storage.bucket` (s3, r2)",
            "`storage.container` (azure)",
            "`queue.url` (redis)",
            "`jobs.backoff_base_ms`",
            "`models.providers.<name>.kind`",
            "`models.registry.<id>.provider`",
        ] {
            assert!(table.contains(key), "{key} is missing:\n{table}");
        }
    }
}
