//! `zeroscale-bench`: the benchmarks `cargo xtask bench` builds (release) and runs, each
//! figure side by side with the raw driver or the peer a user would pick, in one run.
//!
//! `zeroscale-bench [--quick] [--out DIR] [CONCERN...]`; concerns: `storage`, `http`
//! (which includes login timing and cold start). Engines come from the environment
//! (`cargo xtask services up` writes it); the HTTP figures need the release `zeroscale`
//! binary next to this one (or `ZEROSCALE_BENCH_BIN`).

mod http;
mod measure;
mod report;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use measure::Plan;

/// Every concern, in the order they run.
const CONCERNS: &[&str] = &["storage", "http"];

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
    eprintln!("benchmarking on {}", report::machine());
    let mut figures = Vec::new();
    for concern in &wanted {
        eprintln!("{concern}…");
        let more = match concern.as_str() {
            "storage" => storage::run(plan, &scratch.join("storage")).await?,
            "http" => http::run(plan, &scratch.join("http")).await?,
            _ => unreachable!("checked above"),
        };
        for f in &more {
            eprintln!(
                "  {}: {:.3}{}",
                f.name,
                f.ratio.map_or(f.ours.median, |r| r.median),
                if f.ratio.is_some() { "×" } else { f.unit }
            );
        }
        figures.extend(more);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let md = report::write(&out, &figures, quick)?;
    println!("{md}");
    eprintln!("wrote {}", out.join("report.md").display());
    let missed = figures.iter().filter(|f| f.pass == Some(false)).count();
    if missed > 0 {
        eprintln!("{missed} figure(s) missed their goal");
    }
    Ok(ExitCode::SUCCESS)
}
