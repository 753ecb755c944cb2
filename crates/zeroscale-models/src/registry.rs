//! The model provider kinds: one line each, with what each serves. Building a provider
//! from its config, probing it, the error for a kind that is compiled out, and the check
//! that a model id's providers serve its kind all read this table.

use std::sync::Arc;

use futures::future::BoxFuture;
use zeroscale_core::backend;
use zeroscale_core::config::{ModelKind, ModelsConfig, ProviderConfig};
use zeroscale_core::registry::Registry;
use zeroscale_core::{EmbeddingProvider, ImageProvider, Result};

/// A provider built from config: what it serves.
#[derive(Default)]
pub struct BuiltProvider {
    /// Its embeddings, if it makes them.
    pub embeddings: Option<Arc<dyn EmbeddingProvider>>,
    /// Its images, if it makes them.
    pub images: Option<Arc<dyn ImageProvider>>,
}

impl std::fmt::Debug for BuiltProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltProvider")
            .field("embeddings", &self.embeddings.is_some())
            .field("images", &self.images.is_some())
            .finish()
    }
}

/// A provider kind's entry points. Each takes the provider's name, the models config
/// (for shared settings such as the models dir) and the provider's own config.
#[derive(Debug)]
pub struct ProviderEntry {
    /// Builds the provider (nothing is loaded or contacted yet).
    pub build: fn(&str, &ModelsConfig, &ProviderConfig) -> Result<BuiltProvider>,
    /// Checks that it can serve: a one-line description, or why not.
    pub probe:
        for<'a> fn(&'a str, &'a ModelsConfig, &'a ProviderConfig) -> BoxFuture<'a, Result<String>>,
}

/// What a provider kind serves, compiled in or not.
#[derive(Debug, Clone, Copy)]
pub struct ProviderCapabilities {
    /// Embedding models.
    pub embeddings: bool,
    /// Image models.
    pub images: bool,
}

impl ProviderCapabilities {
    /// Whether it serves models of `kind`.
    pub fn serves(self, kind: ModelKind) -> bool {
        match kind {
            ModelKind::Embedding => self.embeddings,
            ModelKind::Image => self.images,
        }
    }
}

const EMBEDDINGS: ProviderCapabilities = ProviderCapabilities {
    embeddings: true,
    images: false,
};
const IMAGES: ProviderCapabilities = ProviderCapabilities {
    embeddings: false,
    images: true,
};
const BOTH: ProviderCapabilities = ProviderCapabilities {
    embeddings: true,
    images: true,
};

/// Every provider kind.
pub static PROVIDERS: Registry<ProviderEntry, ProviderCapabilities> = Registry {
    concern: "model provider",
    krate: "zeroscale-models",
    config_key: "models.providers.<name>.kind",
    backends: &[
        backend! {
            kind: "placeholder",
            about: "deterministic placeholder PNGs (development only, not generated art)",
            capabilities: IMAGES,
            entry: ProviderEntry {
                build: crate::placeholder::build,
                probe: crate::placeholder::probe,
            },
        },
        backend! {
            kind: "local",
            feature: "local-models",
            about: "all-MiniLM-L6-v2 (or another sentence-transformers BERT model) run in process",
            capabilities: EMBEDDINGS,
            entry: ProviderEntry {
                build: crate::local::build,
                probe: crate::local::probe,
            },
        },
        backend! {
            kind: "openai",
            feature: "remote-models",
            about: "an OpenAI-compatible API (embeddings and images)",
            capabilities: BOTH,
            entry: ProviderEntry {
                build: crate::remote::build_openai,
                probe: crate::remote::probe,
            },
        },
        backend! {
            kind: "hugging_face",
            feature: "remote-models",
            about: "Hugging Face Inference feature extraction (embeddings)",
            capabilities: EMBEDDINGS,
            entry: ProviderEntry {
                build: crate::remote::build_hugging_face,
                probe: crate::remote::probe,
            },
        },
        backend! {
            kind: "replicate",
            feature: "remote-models",
            about: "Replicate predictions (images)",
            capabilities: IMAGES,
            entry: ProviderEntry {
                build: crate::remote::build_replicate,
                probe: crate::remote::probe,
            },
        },
        backend! {
            kind: "fal",
            feature: "remote-models",
            about: "Fal's queue API (images)",
            capabilities: IMAGES,
            entry: ProviderEntry {
                build: crate::remote::build_fal,
                probe: crate::remote::probe,
            },
        },
        backend! {
            kind: "automatic1111",
            feature: "remote-models",
            about: "a self-hosted Automatic1111 server (images)",
            capabilities: IMAGES,
            entry: ProviderEntry {
                build: crate::remote::build_automatic1111,
                probe: crate::remote::probe,
            },
        },
    ],
};

/// The config key naming provider `name`'s kind.
pub(crate) fn kind_key(name: &str) -> String {
    format!("models.providers.{name}.kind")
}

/// Checks that every model id's providers serve its kind (the part of the models config
/// check that needs this table; `ModelsConfig::validate` does the rest).
pub fn validate(config: &ModelsConfig) -> Result<()> {
    for (id, entry) in &config.registry {
        let names = std::iter::once(&entry.provider).chain(entry.fallbacks.iter());
        for (i, name) in names.enumerate() {
            let Some(provider) = config.providers.get(name) else {
                continue;
            };
            let serves = PROVIDERS
                .get(provider.kind())
                .is_some_and(|p| p.capabilities.serves(entry.kind));
            if !serves {
                let key = if i == 0 {
                    format!("models.registry.{id}.provider")
                } else {
                    format!("models.registry.{id}.fallbacks")
                };
                return Err(zeroscale_core::Error::config(
                    key,
                    format!(
                        "model `{id}` is an {:?} model, but provider `{name}` (kind `{}`) does \
                         not serve that kind",
                        entry.kind,
                        provider.kind()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroscale_core::config::{ModelEntry, PlaceholderConfig};

    #[test]
    fn a_model_id_needs_providers_of_its_kind() {
        let mut config = ModelsConfig::default();
        validate(&config).expect("the default config is consistent");
        config.providers.insert(
            "pictures".into(),
            ProviderConfig::Placeholder(PlaceholderConfig::default()),
        );
        config.registry.insert(
            "minilm".into(),
            ModelEntry {
                kind: ModelKind::Embedding,
                provider: "pictures".into(),
                fallbacks: Vec::new(),
                routes: Default::default(),
            },
        );
        let err = validate(&config).expect_err("placeholder draws images");
        assert!(
            err.to_string().contains("does not serve that kind"),
            "{err}"
        );
        assert!(
            err.to_string().contains("models.registry.minilm.provider"),
            "{err}"
        );
    }

    #[test]
    fn every_config_kind_is_in_the_table() {
        use zeroscale_core::config::{LocalModelConfig, RemoteProviderConfig};
        let remote = RemoteProviderConfig::default;
        for provider in [
            ProviderConfig::Local(LocalModelConfig::default()),
            ProviderConfig::Placeholder(PlaceholderConfig::default()),
            ProviderConfig::Openai(remote()),
            ProviderConfig::HuggingFace(remote()),
            ProviderConfig::Replicate(remote()),
            ProviderConfig::Fal(remote()),
            ProviderConfig::Automatic1111(remote()),
        ] {
            assert!(
                PROVIDERS.get(provider.kind()).is_some(),
                "{}",
                provider.kind()
            );
        }
    }
}
