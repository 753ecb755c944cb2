//! The report: `report.json` (every figure with its samples' median, min and max) and
//! `report.md` (a table: figure, ours, theirs, ratio, goal, pass or miss), with the date
//! and the machine.

use std::path::Path;

use serde_json::json;

use crate::measure::{Figure, Stats};

/// The CPU model and the number of CPUs this process may use.
pub(crate) fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{model}, {cpus} CPUs")
}

fn show(stats: &Stats, unit: &str) -> String {
    if stats.median.is_nan() {
        return "—".to_owned();
    }
    format!(
        "{} {unit} [{}–{}]",
        round(stats.median),
        round(stats.min),
        round(stats.max)
    )
}

fn round(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes both files into `dir`; returns the markdown.
pub(crate) fn write(dir: &Path, figures: &[Figure], quick: bool) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let machine = machine();
    let build = if cfg!(debug_assertions) {
        "debug build (numbers not meaningful)"
    } else {
        "release build"
    };
    let mut md = format!(
        "# zeroscale benchmarks\n\n{date}, {machine}, {build}{}. Medians of the rounds \
         with [min–max]; ratios are ours ÷ theirs per round (each pair runs side by side, \
         alternating which goes first).\n\n| concern | figure | ours | theirs | ratio | goal | result |\n|---|---|---|---|---|---|---|\n",
        if quick {
            ", `--quick` (small sizes, goals not judged)"
        } else {
            ""
        }
    );
    for f in figures {
        let theirs = match (&f.theirs, &f.against) {
            (Some(t), Some(a)) => format!("{} ({a})", show(t, f.unit)),
            (None, Some(a)) => a.clone(),
            _ => "—".to_owned(),
        };
        let ratio = f.ratio.as_ref().map_or("—".to_owned(), |r| {
            format!("{}× [{}–{}]", round(r.median), round(r.min), round(r.max))
        });
        let result = match f.pass {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "—",
        };
        md.push_str(&format!(
            "| {} | {} | {} | {theirs} | {ratio} | {} | {result} |\n",
            f.concern,
            f.name,
            show(&f.ours, f.unit),
            f.goal.describe()
        ));
    }
    std::fs::write(dir.join("report.md"), &md)?;
    let report = json!({
        "date": date,
        "machine": machine,
        "quick": quick,
        "figures": figures,
    });
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(md)
}
