//! The metric reference in docs/operations.md, generated from
//! `zeroscale_core::metrics::CATALOGUE` (the names the crates record under), and the tidy
//! test that fails when the docs are stale. `UPDATE_DOCS=1 cargo test -p xtask
//! metrics_reference` rewrites the section.

use zeroscale_core::metrics::CATALOGUE;

/// Where the generated section starts and ends in docs/operations.md.
pub(crate) const START: &str = "<!-- metrics:start (generated from zeroscale_core::metrics: UPDATE_DOCS=1 cargo test -p xtask metrics_reference) -->";
pub(crate) const END: &str = "<!-- metrics:end -->";

/// The markdown table of every metric.
pub(crate) fn markdown() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CATALOGUE {
        let labels = if m.labels.is_empty() {
            "none".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {labels} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_reference_is_current() {
        crate::config_reference::check_generated_section(
            "operations.md",
            (START, END),
            &markdown(),
            "metric reference is stale (zeroscale_core::metrics changed)",
            "metrics_reference",
        );
    }
}
