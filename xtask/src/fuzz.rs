//! `cargo xtask fuzz-api`: schemathesis (from PyPI) generates requests from the server's
//! own `/openapi.json` and sends them to a real `zeroscale serve` at stage 1; any 5xx
//! answer fails. With a fixed seed, so a failure can be replayed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{free_port, port_open, root, run, services_dir, tail, wait_until};

/// Pinned so CI runs the same generator every time.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const SEED: &str = "20261122";

fn zeroscale(bin: &Path, data: &Path, model: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("ZEROSCALE_") || key == "DATABASE_URL" || key == "REDIS_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.env("ZEROSCALE_DATA_DIR", data)
        .env("ZEROSCALE_MODELS__PROVIDERS__LOCAL__PATH", model)
        .env("RUST_LOG", "warn");
    cmd
}

pub(crate) fn fuzz_api() -> Result<()> {
    let schemathesis = crate::services::pip_tool(
        &services_dir().join("fuzz-venv"),
        SCHEMATHESIS,
        "schemathesis",
    )?;
    let model = crate::models::fetch()?;
    run(Command::new(env!("CARGO")).current_dir(root()).args([
        "build",
        "--quiet",
        "-p",
        "zeroscale-app",
    ]))?;
    let bin = root().join("target/debug/zeroscale");
    let data = services_dir()
        .parent()
        .expect("services dir is under target/")
        .join("zeroscale-fuzz");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;

    let mut create = zeroscale(&bin, &data, &model)
        .args(["users", "create-admin", "--username", "fuzz-admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    {
        use std::io::Write as _;
        writeln!(create.stdin.take().expect("piped"), "fuzz-admin-password")?;
    }
    if !create.wait()?.success() {
        bail!("users create-admin failed");
    }
    let key = zeroscale(&bin, &data, &model)
        .args([
            "users",
            "create-key",
            "--username",
            "fuzz-admin",
            "--client-name",
            "fuzz",
        ])
        .output()?;
    if !key.status.success() {
        bail!(
            "users create-key failed: {}",
            String::from_utf8_lossy(&key.stderr)
        );
    }
    let key = String::from_utf8(key.stdout)?.trim().to_owned();

    let port = free_port()?;
    let log = data.join("server.log");
    let mut server = zeroscale(&bin, &data, &model)
        .env("ZEROSCALE_SERVER__ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start zeroscale")?;
    let result = (|| {
        if !wait_until(Duration::from_secs(60), || port_open(port)) {
            bail!("zeroscale did not listen within 60s:\n{}", tail(&log, 30));
        }
        run(Command::new(&schemathesis)
            .current_dir(&data)
            .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["--checks", "not_a_server_error"])
            .args(["--max-examples", "25", "--seed", SEED])
            // Not these: they would revoke the key or deactivate the admin mid-run.
            .args([
                "--exclude-path-regex",
                r"api-keys/\{id\}|admin/users/\{id\}",
            ]))
        .with_context(|| format!("the API answered 5xx; server log:\n{}", tail(&log, 40)))
    })();
    let _ = server.kill();
    let _ = server.wait();
    result?;
    eprintln!("fuzz-api: no server error in the generated requests");
    Ok(())
}
