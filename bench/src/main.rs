//! `zeroscale-bench`: the benchmarks `cargo xtask bench` builds (release) and runs, each
//! figure side by side with the raw driver or the peer a user would pick, in one run.
//!
//! `zeroscale-bench [--quick] [--out DIR] [CONCERN...]`; concerns: `storage`, `database`, `queue`, `http`
//! (which includes login timing and cold start), `metrics` (what metrics cost), `backup`, `search`, `embeddings`. Engines come from the environment
//! (`cargo xtask services up` writes it); the HTTP figures need the release `zeroscale`
//! binary next to this one (or `ZEROSCALE_BENCH_BIN`).

mod ann;
mod backup;
mod database;
mod database_mongo;
mod embeddings;
mod http;
mod http_bare;
mod http_metrics;
mod http_s3;
mod measure;
mod queue;
mod queue_db;
mod replica;
mod report;
mod search;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use measure::Plan;

/// Every concern, in the order they run.
const CONCERNS: &[&str] = &[
    "storage",
    "database",
    "queue",
    "http",
    "metrics",
    "backup",
    "search",
    "embeddings",
];

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zeroscale-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some(backup::RSS_WRAPPER) {
        return backup::rss_wrapper(&all[1..]);
    }
    let mut quick = false;
    let mut out = PathBuf::from("target/bench");
    let mut wanted = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => {
                out = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--out needs a folder"))?
                    .into();
            }
            "-h" | "--help" => {
                println!(
                    "zeroscale-bench [--quick] [--out DIR] [{}]",
                    CONCERNS.join("|")
                );
                return Ok(ExitCode::SUCCESS);
            }
            concern if CONCERNS.contains(&concern) => wanted.push(concern.to_owned()),
            other => anyhow::bail!(
                "unknown argument `{other}`; concerns are: {}",
                CONCERNS.join(", ")
            ),
        }
    }
    if wanted.is_empty() {
        wanted = CONCERNS.iter().map(|c| (*c).to_owned()).collect();
    }
    let plan = Plan {
        rounds: if quick { 3 } else { 7 },
        quick,
    };
    let scratch = out.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    // Progress on a terminal; quiet otherwise (the report is printed at the end).
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(wanted.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut figures = Vec::new();
    for concern in &wanted {
        progress.set_message(format!("{concern} on {}", report::machine()));
        let more = match concern.as_str() {
            "storage" => storage::run(plan, &scratch.join("storage")).await?,
            "database" => {
                let mut figures = database::run(plan, &scratch.join("database")).await?;
                figures.extend(replica::run(plan).await?);
                figures
            }
            "queue" => queue::run(plan).await?,
            "http" => http::run(plan, &scratch.join("http")).await?,
            "metrics" => http_metrics::run(plan, &scratch.join("metrics")).await?,
            "backup" => backup::run(plan, &scratch.join("backup")).await?,
            "search" => search::run(plan, &scratch.join("search"), &out.join("cache")).await?,
            "embeddings" => embeddings::run(plan, &scratch.join("embeddings")).await?,
            _ => unreachable!("checked above"),
        };
        for f in &more {
            progress.println(format!(
                "  {}: {:.3}{}",
                f.name,
                f.ratio.map_or(f.ours.median, |r| r.median),
                if f.ratio.is_some() { "×" } else { f.unit }
            ));
        }
        progress.inc(1);
        figures.extend(more);
    }
    progress.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    let md = report::write(&out, &figures, quick)?;
    println!("{md}");
    println!("(also in {})", out.join("report.md").display());
    let missed = figures.iter().filter(|f| f.pass == Some(false)).count();
    if missed > 0 {
        eprintln!("{missed} figure(s) missed their goal");
    }
    Ok(ExitCode::SUCCESS)
}
