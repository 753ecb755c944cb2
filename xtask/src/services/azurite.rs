//! Azure Blob Storage for the tests: the Azurite emulator from npm (pinned to a release
//! that runs on Node 20), on a free port with one container, smoke-tested with a put, a
//! get and a delete signed the way Azure signs (Shared Key).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{READY_TIMEOUT, running_port, spawn_engine};
use crate::util::{apt_install, free_port, http_request, port_open, run, tail, wait_until, which};

/// 3.36 and later need Node 22.
const AZURITE: &str = "azurite@3.35.0";
/// The emulator's built-in account and its published key (the same in every Azurite).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The container the harness creates.
const CONTAINER: &str = "zeroscale-test";
/// The REST API version the harness speaks.
const API_VERSION: &str = "2021-08-06";

fn azurite_blob(services: &Path) -> Result<std::path::PathBuf> {
    let prefix = services.join("azurite").join("npm");
    let bin = prefix
        .join("node_modules")
        .join(".bin")
        .join("azurite-blob");
    if bin.is_file() {
        return Ok(bin);
    }
    if which("npm").is_none() {
        apt_install(&["nodejs", "npm"])?;
    }
    std::fs::create_dir_all(&prefix)?;
    run(Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args([AZURITE, "--no-audit", "--no-fund", "--loglevel=error"]))
    .with_context(|| format!("npm could not install {AZURITE}"))?;
    if !bin.is_file() {
        bail!("{AZURITE} was installed but {} is missing", bin.display());
    }
    Ok(bin)
}

pub(super) fn azurite_up(services: &Path) -> Result<Vec<(String, String)>> {
    let dir = services.join("azurite");
    let pid_file = dir.join("azurite.pid");
    let port_file = dir.join("port");
    let log = dir.join("azurite.log");
    if let Some(port) = running_port(&pid_file, &port_file) {
        eprintln!("Azurite already running on port {port}");
        create_container(port)?;
        smoke_test(port, &log)?;
        return Ok(vars(port));
    }
    let bin = azurite_blob(services)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(&data)
        .args(["--silent", "--skipApiVersionCheck"]);
    spawn_engine(cmd, &log, &pid_file)?;
    if !wait_until(READY_TIMEOUT, || port_open(port)) {
        bail!("Azurite does not answer on port {port}\n{}", tail(&log, 30));
    }
    std::fs::write(&port_file, port.to_string())?;
    create_container(port)?;
    eprintln!("Azurite running on port {port}, container `{CONTAINER}`");
    smoke_test(port, &log)?;
    Ok(vars(port))
}

fn vars(port: u16) -> Vec<(String, String)> {
    [
        (
            "ZEROSCALE_TEST_AZURE_ENDPOINT",
            format!("http://127.0.0.1:{port}/{ACCOUNT}"),
        ),
        ("ZEROSCALE_TEST_AZURE_ACCOUNT", ACCOUNT.to_owned()),
        ("ZEROSCALE_TEST_AZURE_KEY", ACCOUNT_KEY.to_owned()),
        ("ZEROSCALE_TEST_AZURE_CONTAINER", CONTAINER.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn create_container(port: u16) -> Result<()> {
    let (status, body) = signed(
        port,
        "PUT",
        &format!("/{CONTAINER}"),
        &[("restype", "container")],
        &[],
        b"",
    )?;
    if status != 201 && status != 409 {
        bail!(
            "creating container `{CONTAINER}` answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// What the storage tests do at the least: put a blob, read it back, delete it.
fn smoke_test(port: u16, log: &Path) -> Result<()> {
    let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let blob = format!("/{CONTAINER}/zeroscale-smoke-test-{nanos}");
    let body = b"zeroscale smoke test";
    let result = (|| -> Result<()> {
        let (status, text) = signed(
            port,
            "PUT",
            &blob,
            &[],
            &[("x-ms-blob-type", "BlockBlob")],
            body,
        )?;
        anyhow::ensure!(
            status == 201,
            "PUT answered HTTP {status}: {}",
            String::from_utf8_lossy(&text)
        );
        let (status, got) = signed(port, "GET", &blob, &[], &[], b"")?;
        anyhow::ensure!(
            status == 200 && got == body,
            "GET answered HTTP {status} with other bytes"
        );
        let (status, _) = signed(port, "DELETE", &blob, &[], &[], b"")?;
        anyhow::ensure!(status == 202, "DELETE answered HTTP {status}");
        Ok(())
    })();
    match result {
        Ok(()) => {
            eprintln!("Azurite: smoke test passed");
            Ok(())
        }
        Err(e) => {
            let log = super::crash::read_from(log, log_start);
            bail!(
                "Azurite failed its smoke test: {e:#}\n{}",
                super::crash::explain("Azurite", &log)
            )
        }
    }
}

/// A request to the emulator's account, signed with its key (Azure's Shared Key scheme):
/// `path` is below the account, `query` sorted by name, `ms_headers` the `x-ms-*`
/// headers besides the date and version.
fn signed(
    port: u16,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    ms_headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let date = httpdate_now();
    let mut headers: Vec<(&str, &str)> = ms_headers.to_vec();
    headers.push(("x-ms-date", &date));
    headers.push(("x-ms-version", API_VERSION));
    headers.sort_unstable();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let url_path = format!("/{ACCOUNT}{path}");
    let mut resource = format!("/{ACCOUNT}{url_path}");
    for (k, v) in query {
        resource.push_str(&format!("\n{k}:{v}"));
    }
    let length = if body.is_empty() {
        String::new()
    } else {
        body.len().to_string()
    };
    // VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
    // If-Match, If-None-Match, If-Unmodified-Since, Range; then the headers and resource.
    let to_sign = format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canonical_headers}{resource}");
    let key = STANDARD
        .decode(ACCOUNT_KEY)
        .context("the Azurite key is base64")?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).context("HMAC key")?;
    mac.update(to_sign.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    let authorization = format!("SharedKey {ACCOUNT}:{signature}");
    headers.push(("Authorization", &authorization));
    let query_string: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let target = if query_string.is_empty() {
        url_path
    } else {
        format!("{url_path}?{}", query_string.join("&"))
    };
    http_request(port, method, &target, &headers, body)
}

/// The current time as an HTTP date (`Tue, 01 Dec 2026 10:00:00 GMT`).
fn httpdate_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}
