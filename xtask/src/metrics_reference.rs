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
        let path = crate::util::root().join("docs").join("operations.md");
        let text = std::fs::read_to_string(&path).expect("docs/operations.md");
        let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
            panic!("docs/operations.md has no `{START}` … `{END}` section");
        };
        let current = &text[start + START.len()..end];
        let generated = format!("\n{}", markdown());
        if current == generated {
            return;
        }
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{START}{generated}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("write docs/operations.md");
            return;
        }
        panic!(
            "docs/operations.md's metric reference is stale (zeroscale_core::metrics \
             changed): run `UPDATE_DOCS=1 cargo test -p xtask metrics_reference` and commit \
             the result"
        );
    }
}
