//! Where each config value came from (file and line, env var, flag), and the annotated
//! TOML rendering behind `zeroscale config show`.

use std::fmt::Write as _;

use figment::value::{Dict, Value};
use figment::{Figment, Source};

use super::load::{BUILT_IN_NAME, LoadedConfig};
use crate::error::{Error, Result};

/// Describes where dotted `key` was set, or `None` if no layer set it.
pub(crate) fn describe_source(
    figment: &Figment,
    key: &str,
    names: &super::ConfigNames,
) -> Option<String> {
    let metadata = figment.find_metadata(key)?;
    let keys: Vec<&str> = key.split('.').collect();
    match &metadata.source {
        Some(Source::File(path)) => {
            let shown = path
                .strip_prefix(std::env::current_dir().ok()?.as_path())
                .unwrap_or(path);
            let line = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| toml_key_line(&text, &keys));
            Some(match line {
                Some(line) => format!("{}:{line}", shown.display()),
                None => shown.display().to_string(),
            })
        }
        Some(Source::Custom(name)) if name == BUILT_IN_NAME => Some(BUILT_IN_NAME.to_owned()),
        // Our only env provider is `<PREFIX>_` with `__` for nesting.
        _ if metadata.name.contains("environment") => {
            Some(format!("env var `{}`", names.env_var_for_key(key)))
        }
        _ => Some(metadata.name.to_string()),
    }
}

/// The 1-based line on which `path` is defined in TOML `text`, following tables, dotted
/// keys and inline tables.
pub(crate) fn toml_key_line(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut span = None;
    for segment in path {
        let (key, next) = match item {
            toml_edit::Item::Table(table) => table.get_key_value(segment)?,
            toml_edit::Item::Value(toml_edit::Value::InlineTable(table)) => {
                table.get_key_value(segment)?
            }
            _ => return span.map(|s| line_of(text, s)),
        };
        span = key.span().or_else(|| next.span()).map(|s| s.start).or(span);
        item = next;
    }
    span.map(|offset| line_of(text, offset))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Renders the resolved config as TOML, each value annotated with its source.
pub(crate) fn render_annotated(loaded: &LoadedConfig) -> Result<String> {
    let value = Value::serialize(&loaded.config)
        .map_err(|e| Error::config("(root)", format!("config is not serializable: {e}")))?;
    let Value::Dict(_, mut root) = value else {
        return Ok(String::new());
    };
    root.extend(loaded.shown_sections.clone());
    let mut out = String::new();
    let profile = loaded.profile.as_deref().unwrap_or("(none)");
    let _ = writeln!(
        out,
        "# {} config; profile: {profile}; secrets are shown as \"[redacted]\".",
        loaded.names.data_dir_name
    );
    let _ = writeln!(out, "# Each value's comment says where it was set.");
    render_table(loaded, &root, &[], &mut out);
    Ok(out)
}

fn render_table(loaded: &LoadedConfig, dict: &Dict, path: &[String], out: &mut String) {
    let leaves: Vec<_> = dict
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Dict(..)))
        .collect();
    let tables: Vec<_> = dict
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Dict(_, inner) => Some((k, inner)),
            _ => None,
        })
        .collect();
    if !path.is_empty() && (!leaves.is_empty() || tables.is_empty()) {
        let header: Vec<String> = path.iter().map(|k| toml_key(k)).collect();
        let _ = writeln!(out, "\n[{}]", header.join("."));
    }
    for (key, value) in leaves {
        let mut full: Vec<String> = path.to_vec();
        full.push(key.clone());
        let rendered = toml_value(value);
        let source = loaded.source_of(&full.join("."));
        let _ = writeln!(out, "{} = {rendered}  # {source}", toml_key(key));
    }
    for (key, inner) in tables {
        let mut next = path.to_vec();
        next.push(key.clone());
        render_table(loaded, inner, &next, out);
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
    }
}

fn toml_value(value: &Value) -> String {
    match toml::Value::try_from(value) {
        Ok(v) => v.to_string(),
        Err(_) => format!("{:?}", value.to_actual()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_tables_dotted_and_inline_keys() {
        let text = "a = 1\n\n[queue]\nkind = \"redis\"\n\n[models.providers.x]\nkind = \"openai\"\ninline = { deep = 1 }\n";
        assert_eq!(toml_key_line(text, &["a"]), Some(1));
        assert_eq!(toml_key_line(text, &["queue", "kind"]), Some(4));
        assert_eq!(
            toml_key_line(text, &["models", "providers", "x", "kind"]),
            Some(7)
        );
        assert_eq!(
            toml_key_line(text, &["models", "providers", "x", "inline", "deep"]),
            Some(8)
        );
        assert_eq!(toml_key_line(text, &["nope"]), None);
    }

    #[test]
    fn quotes_keys_that_need_it() {
        assert_eq!(toml_key("plain_key-1"), "plain_key-1");
        assert_eq!(toml_key("flux.pro"), "\"flux.pro\"");
    }
}
