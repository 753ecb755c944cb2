//! `cargo xtask new <name> [--path DIR] [--registry]`: writes a new app crate built on
//! zeroscale (its own route, job, migration, config section per stage, command, test and
//! README) from the templates in `xtask/templates/app/`.
//!
//! By default the crate depends on the zeroscale crates of this checkout by path (they
//! are not on a registry yet); `--registry` writes version requirements instead. The
//! versions of the other dependencies (axum, utoipa, …) are the workspace's, so the
//! macros the app uses name the same crates zeroscale does.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{root, run};

const CARGO_TOML: &str = include_str!("../templates/app/Cargo.toml.tmpl");
const MAIN_RS: &str = include_str!("../templates/app/main.rs.tmpl");
const MIGRATIONS_RS: &str = include_str!("../templates/app/migrations.rs.tmpl");
const TEST_RS: &str = include_str!("../templates/app/app_test.rs.tmpl");
const README: &str = include_str!("../templates/app/README.md.tmpl");
const DEFAULT_TOML: &str = include_str!("../templates/app/default.toml.tmpl");
const STAGE1_TOML: &str = include_str!("../templates/app/stage1.toml.tmpl");
const STAGE2_TOML: &str = include_str!("../templates/app/stage2.toml.tmpl");
const GITIGNORE: &str = include_str!("../templates/app/gitignore.tmpl");

/// The third-party dependencies of a generated app, at the workspace's versions.
const DEPS: &[&str] = &[
    "anyhow",
    "async-trait",
    "axum",
    "clap",
    "serde",
    "serde_json",
    "utoipa",
    "utoipa-axum",
];
const DEV_DEPS: &[&str] = &["reqwest", "serde_json", "tokio"];

/// Where and how to write the app.
#[derive(Debug)]
pub(crate) struct NewApp {
    pub(crate) name: String,
    /// The folder the crate's folder goes in.
    pub(crate) parent: PathBuf,
    /// Version requirements for the zeroscale crates instead of paths to this checkout.
    pub(crate) registry: bool,
}

impl NewApp {
    /// Parses `<name> [--path DIR] [--registry]`.
    pub(crate) fn parse(args: &[&str]) -> Result<Self> {
        let mut name = None;
        let mut parent = PathBuf::from(".");
        let mut registry = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match *arg {
                "--path" => {
                    parent = PathBuf::from(args.next().context("--path needs a folder")?);
                }
                "--registry" => registry = true,
                flag if flag.starts_with('-') => bail!("unknown flag `{flag}`"),
                value if name.is_none() => name = Some(value.to_owned()),
                extra => bail!("unexpected argument `{extra}`"),
            }
        }
        let name = name.context("usage: cargo xtask new <name> [--path DIR] [--registry]")?;
        check_name(&name)?;
        Ok(NewApp {
            name,
            parent,
            registry,
        })
    }

    /// The crate's folder.
    pub(crate) fn dir(&self) -> PathBuf {
        self.parent.join(&self.name)
    }

    /// Writes the crate; refuses a folder that exists and is not empty.
    pub(crate) fn write(&self) -> Result<PathBuf> {
        let dir = self.dir();
        if dir
            .read_dir()
            .is_ok_and(|mut entries| entries.next().is_some())
        {
            bail!(
                "{} exists and is not empty: choose another name or --path",
                dir.display()
            );
        }
        let workspace = std::fs::read_to_string(root().join("Cargo.toml"))
            .context("cannot read the workspace's Cargo.toml")?;
        let snake = self.name.replace('-', "_");
        let env = snake.to_ascii_uppercase();
        let date = chrono::Utc::now().format("%Y%m%d").to_string();
        let zeroscale_deps = ["zeroscale-app", "zeroscale-core", "zeroscale-db"]
            .iter()
            .map(|krate| {
                if self.registry {
                    format!("{krate} = \"{}\"", workspace_version(&workspace))
                } else {
                    let path = root().join("crates").join(krate);
                    format!("{krate} = {{ path = {} }}", toml_string(&path))
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let deps = |names: &[&str]| -> Result<String> {
            names
                .iter()
                .map(|name| Ok(format!("{name} = {}", workspace_dep(&workspace, name)?)))
                .collect::<Result<Vec<_>>>()
                .map(|lines| lines.join("\n"))
        };
        let fill = |template: &str| -> Result<String> {
            Ok(template
                .replace("{{zeroscale_deps}}", &zeroscale_deps)
                .replace("{{deps}}", &deps(DEPS)?)
                .replace("{{dev_deps}}", &deps(DEV_DEPS)?)
                .replace("{{name}}", &self.name)
                .replace("{{snake}}", &snake)
                .replace("{{SNAKE_UPPER}}", &env)
                .replace("{{ENV}}", &env)
                .replace("{{date}}", &date))
        };
        let files: [(&str, &str); 9] = [
            ("Cargo.toml", CARGO_TOML),
            ("src/main.rs", MAIN_RS),
            ("src/migrations.rs", MIGRATIONS_RS),
            ("tests/app.rs", TEST_RS),
            ("README.md", README),
            ("config/default.toml", DEFAULT_TOML),
            ("config/stage1.toml", STAGE1_TOML),
            ("config/stage2.toml", STAGE2_TOML),
            (".gitignore", GITIGNORE),
        ];
        for (path, template) in files {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, fill(template)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(dir)
    }
}

/// `cargo xtask new …`: writes the app and says what to do next.
pub(crate) fn new(args: &[&str]) -> Result<()> {
    let app = NewApp::parse(args)?;
    let dir = app.write()?;
    println!(
        "wrote {}\n\nnext:\n  cd {}\n  cargo test                            # the app's own test\n  cargo run -- --profile stage1 serve   # http://127.0.0.1:8080",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// For CI: generates an app in a temporary folder and runs its tests against this
/// checkout (sharing the workspace's target folder, so what is built already is reused).
pub(crate) fn check_generated_app() -> Result<()> {
    let parent = root().join("target").join("generated-app");
    let _ = std::fs::remove_dir_all(&parent);
    let app = NewApp {
        name: "hello-app".to_owned(),
        parent,
        registry: false,
    };
    let dir = app.write()?;
    // The app resolves the workspace's versions: start from its lock file.
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .context("cannot copy Cargo.lock")?;
    let cargo = || {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        cmd.current_dir(&dir);
        cmd
    };
    run(cargo().args(["fmt", "--", "--check"]))
        .context("the generated app is not formatted: fix xtask/templates/app")?;
    run(cargo()
        .args(["test", "--quiet"])
        .env("CARGO_TARGET_DIR", root().join("target")))
    .context("the generated app's tests failed")
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !ok {
        bail!(
            "`{name}` is not a usable app name: lower-case letters, digits, `-` and `_`, \
             starting with a letter (e.g. `wordcount` or `my-app`)"
        );
    }
    if name.starts_with("zeroscale") {
        bail!("`{name}`: names starting with `zeroscale` are zeroscale's own crates'");
    }
    Ok(())
}

/// The workspace's version, for registry dependencies.
fn workspace_version(workspace: &str) -> String {
    workspace
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "0.1".to_owned())
}

/// How the workspace depends on `name` (`"1.0"` or `{ version = …, features = … }`).
fn workspace_dep(workspace: &str, name: &str) -> Result<String> {
    workspace
        .lines()
        .skip_while(|l| l.trim() != "[workspace.dependencies]")
        .take_while(|l| !l.starts_with('[') || l.trim() == "[workspace.dependencies]")
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
        .with_context(|| format!("`{name}` is not in the workspace's dependencies"))
}

fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "Caps", "1app", "a b", "app-", "zeroscale-x", "x/y"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        for good in ["wordcount", "my-app", "app_2"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn writes_a_crate_with_the_workspace_versions_and_refuses_to_overwrite() {
        let parent = std::env::temp_dir().join(format!("zs-xtask-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        let app = NewApp::parse(&["my-app", "--path", parent.to_str().unwrap()]).unwrap();
        let dir = app.write().unwrap();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-app\""), "{manifest}");
        assert!(manifest.contains("utoipa-axum = \"0."), "{manifest}");
        assert!(manifest.contains("crates/zeroscale-app\" }"), "{manifest}");
        let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
        assert!(main.contains(".named(\"my-app\")"));
        assert!(main.contains("\"my_app.greet\""));
        assert!(!main.contains("{{"), "every placeholder filled");
        let test = std::fs::read_to_string(dir.join("tests/app.rs")).unwrap();
        assert!(test.contains("MY_APP_DATA_DIR"));
        assert!(dir.join("config/stage2.toml").is_file());
        assert!(app.write().unwrap_err().to_string().contains("not empty"));
        let registry = NewApp {
            name: "other".into(),
            parent: parent.clone(),
            registry: true,
        };
        let manifest =
            std::fs::read_to_string(registry.write().unwrap().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("zeroscale-app = \"0."), "{manifest}");
        let _ = std::fs::remove_dir_all(&parent);
    }
}
