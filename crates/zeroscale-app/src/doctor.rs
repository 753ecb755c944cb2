//! `zeroscale doctor`: a table of every concern's backend and whether it works.

use std::process::ExitCode;

use zeroscale_core::config::{LoadedConfig, ensure_private_dir};

use crate::checks::Checker;

pub(crate) async fn run(loaded: &LoadedConfig) -> anyhow::Result<ExitCode> {
    let config = &loaded.config;
    let mut healthy = true;
    let mut warned = false;
    println!(
        "zeroscale doctor (profile: {})",
        loaded.profile.as_deref().unwrap_or("none")
    );
    let data_dir = config.data_dir()?;
    match ensure_private_dir(&data_dir) {
        Ok(()) => println!("  ok    {:<20} {}", "data dir", data_dir.display()),
        Err(e) => {
            healthy = false;
            println!("  FAIL  {:<20} {}", "data dir", e.chain());
        }
    }
    for check in Checker::new(config.clone()).run().await {
        let status = match (check.ok, check.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            // A provider that is down while every model id still has one that works.
            (false, false) => "WARN",
        };
        let compiled = if check.compiled_in {
            "compiled in"
        } else {
            "NOT compiled in"
        };
        println!(
            "  {status}  {:<20} {:<13} {compiled:<16} {}",
            check.concern, check.backend, check.detail
        );
        healthy &= check.ok || !check.required;
        warned |= !check.ok && !check.required;
    }
    if warned {
        println!(
            "WARN: a model provider is down, but every model id using it has another that works"
        );
    }
    if healthy {
        println!("everything is ready");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some backends are not ready: see FAIL lines above for what to do");
        Ok(ExitCode::FAILURE)
    }
}
