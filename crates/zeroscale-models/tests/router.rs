//! The router against scripted providers (test doubles of the provider traits): retries
//! with backoff and Retry-After, failover, cooldown, the cache, costs, placeholder images.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use zeroscale_core::config::{
    ModelCost, ModelEntry, ModelKind, ModelRoute, ModelsConfig, RouterConfig,
};
use zeroscale_core::models::{
    EmbeddingProvider, EmbeddingRequest, EmbeddingResponse, ImageData, ImageRequest, Usage,
};
use zeroscale_core::{Error, Result};
use zeroscale_models::cache::MemoryEmbeddingCache;
use zeroscale_models::placeholder::PlaceholderImages;
use zeroscale_models::router::Router;

/// Answers each call with the next scripted result; `Ok` gives one vector per input.
#[derive(Debug)]
struct Scripted {
    name: String,
    script: Mutex<VecDeque<Result<()>>>,
    calls: Mutex<Vec<EmbeddingRequest>>,
}

impl Scripted {
    fn new(name: &str, script: Vec<Result<()>>) -> Arc<Self> {
        Arc::new(Scripted {
            name: name.into(),
            script: Mutex::new(script.into()),
            calls: Mutex::default(),
        })
    }
    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl EmbeddingProvider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse> {
        self.calls.lock().unwrap().push(request.clone());
        self.script.lock().unwrap().pop_front().unwrap_or(Ok(()))?;
        let vectors: Vec<Vec<f32>> = request
            .inputs
            .iter()
            .map(|t| vec![t.len() as f32, 1.0])
            .collect();
        Ok(EmbeddingResponse {
            model: request.model,
            dimensions: 2,
            usage: Usage {
                prompt_tokens: 2000,
                total_tokens: 2000,
                cached_tokens: 0,
            },
            vectors,
        })
    }
    /// One token per byte.
    async fn count_tokens(&self, inputs: &[String]) -> Option<u64> {
        Some(inputs.iter().map(|t| t.len() as u64).sum())
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

fn config(fallbacks: &[&str]) -> ModelsConfig {
    let mut config = ModelsConfig {
        router: RouterConfig {
            max_retries: 2,
            backoff_base_ms: 10,
            max_retry_after_secs: 2,
            allowed_fails: 3,
            fail_window_secs: 60,
            cooldown_secs: 300,
        },
        ..Default::default()
    };
    let mut routes = std::collections::BTreeMap::new();
    routes.insert(
        "backup".to_owned(),
        ModelRoute {
            remote_model: Some("backup-model".into()),
            cost: ModelCost {
                per_call: 1.0,
                per_1k_tokens: 0.5,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    config.registry.insert(
        "minilm".into(),
        ModelEntry {
            kind: ModelKind::Embedding,
            provider: "primary".into(),
            fallbacks: fallbacks.iter().map(|s| (*s).to_owned()).collect(),
            routes,
        },
    );
    config.registry.insert(
        "art".into(),
        ModelEntry {
            kind: ModelKind::Image,
            provider: "placeholder".into(),
            fallbacks: vec![],
            routes: Default::default(),
        },
    );
    config
}

fn outage() -> Result<()> {
    Err(Error::unavailable("503 from the provider"))
}

#[tokio::test]
async fn retries_then_fails_over_with_cost() {
    let primary = Scripted::new("primary", vec![outage(), outage(), outage()]);
    let backup = Scripted::new("backup", vec![]);
    let mut router = Router::new(&config(&["backup"]));
    router.add_embedding_provider("primary", primary.clone());
    router.add_embedding_provider("backup", backup.clone());
    let routed = router.embed("minilm", vec!["hello".into()]).await.unwrap();
    assert_eq!(primary.calls(), 3, "1 call + 2 retries");
    assert_eq!(routed.provider, "backup");
    assert_eq!(
        backup.calls.lock().unwrap()[0].model,
        "backup-model",
        "the route's remote name"
    );
    assert_eq!(routed.value.vectors, vec![vec![5.0, 1.0]]);
    assert!(
        (routed.cost - 2.0).abs() < 1e-9,
        "1 per call + 0.5 × 2k tokens: {}",
        routed.cost
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let primary = Scripted::new(
        "primary",
        vec![Err(Error::rate_limited(
            "429",
            Some(Duration::from_millis(400)),
        ))],
    );
    let mut router = Router::new(&config(&[]));
    router.add_embedding_provider("primary", primary.clone());
    let started = Instant::now();
    let routed = router.embed("minilm", vec!["x".into()]).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(routed.provider, "primary");
    assert_eq!(primary.calls(), 2);
}

#[tokio::test]
async fn invalid_input_does_not_fail_over() {
    let primary = Scripted::new("primary", vec![Err(Error::invalid_input("input too long"))]);
    let backup = Scripted::new("backup", vec![]);
    let mut router = Router::new(&config(&["backup"]));
    router.add_embedding_provider("primary", primary.clone());
    router.add_embedding_provider("backup", backup.clone());
    let err = router.embed("minilm", vec!["x".into()]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert_eq!(backup.calls(), 0);
}

#[tokio::test]
async fn failing_provider_cools_down_and_is_skipped() {
    // Unauthenticated is not retriable: one failure per request.
    let bad_key = || Err(Error::unauthenticated("401: bad API key"));
    let primary = Scripted::new("primary", vec![bad_key(), bad_key(), bad_key(), bad_key()]);
    let backup = Scripted::new("backup", vec![]);
    let mut router = Router::new(&config(&["backup"]));
    router.add_embedding_provider("primary", primary.clone());
    router.add_embedding_provider("backup", backup.clone());
    for i in 0..3 {
        let routed = router.embed("minilm", vec![format!("r{i}")]).await.unwrap();
        assert_eq!(routed.provider, "backup");
    }
    assert_eq!(primary.calls(), 3);
    let health = router.health();
    let primary_health = &health.iter().find(|(n, _)| n == "primary").unwrap().1;
    assert!(
        primary_health.cooling_down_until.is_some(),
        "{primary_health:?}"
    );
    assert_eq!(primary_health.failures, 3);
    assert!(
        primary_health
            .last_error
            .as_deref()
            .unwrap()
            .contains("bad API key")
    );
    // Cooling down: skipped without a call.
    router.embed("minilm", vec!["r3".into()]).await.unwrap();
    assert_eq!(primary.calls(), 3, "a cooling provider is not called");
    // A manual health check that passes ends the cooldown.
    router.check("primary").await.unwrap();
    assert!(
        router
            .health()
            .iter()
            .all(|(_, h)| h.cooling_down_until.is_none())
    );
}

#[tokio::test]
async fn every_provider_failing_is_unavailable_naming_each() {
    let primary = Scripted::new("primary", vec![outage(), outage(), outage()]);
    let backup = Scripted::new("backup", vec![outage(), outage(), outage()]);
    let mut router = Router::new(&config(&["backup"]));
    router.add_embedding_provider("primary", primary);
    router.add_embedding_provider("backup", backup);
    let err = router.embed("minilm", vec!["x".into()]).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("primary:") && text.contains("backup:"),
        "{text}"
    );
    let err = router.embed("nope", vec![]).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn cached_inputs_never_reach_a_provider() {
    let primary = Scripted::new("primary", vec![]);
    let mut router = Router::new(&config(&[]));
    router.add_embedding_provider("primary", primary.clone());
    router.set_embedding_cache(Arc::new(MemoryEmbeddingCache::new(100)));
    router
        .embed("minilm", vec!["a".into(), "bb".into()])
        .await
        .unwrap();
    let routed = router
        .embed("minilm", vec!["bb".into(), "ccc".into(), "a".into()])
        .await
        .unwrap();
    assert_eq!(
        routed.value.vectors,
        vec![vec![2.0, 1.0], vec![3.0, 1.0], vec![1.0, 1.0]],
        "order kept"
    );
    assert_eq!(
        primary.calls.lock().unwrap()[1].inputs,
        vec!["ccc".to_owned()],
        "only the miss is sent"
    );
    // The cached inputs' tokens are counted by the provider's tokenizer (one per byte
    // here: "bb" + "a"), beside the 2000 it reported for the miss.
    assert_eq!(
        (
            routed.value.usage.prompt_tokens,
            routed.value.usage.cached_tokens
        ),
        (2003, 3)
    );
    let routed = router.embed("minilm", vec!["a".into()]).await.unwrap();
    assert_eq!((routed.provider.as_str(), routed.cost), ("cache", 0.0));
    assert_eq!(
        (
            routed.value.usage.prompt_tokens,
            routed.value.usage.total_tokens,
            routed.value.usage.cached_tokens
        ),
        (1, 1, 1),
        "an answer wholly from the cache still says what the input takes"
    );
    assert_eq!(primary.calls(), 2);
}

#[tokio::test]
async fn placeholder_images_are_valid_deterministic_pngs() {
    let mut router = Router::new(&config(&[]));
    router.add_image_provider(
        "placeholder",
        Arc::new(PlaceholderImages::new("placeholder")),
    );
    let request = |seed| ImageRequest {
        model: String::new(),
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: None,
        width: 96,
        height: 64,
        count: 2,
        seed: Some(seed),
        extra: Default::default(),
    };
    let a = router.generate("art", request(7)).await.unwrap();
    assert_eq!(a.provider, "placeholder");
    assert_eq!(
        a.value.metadata["placeholder"], true,
        "labelled as a placeholder"
    );
    let bytes = |r: &zeroscale_models::router::Routed<zeroscale_core::models::ImageResponse>,
                 i: usize| match &r.value.images[i].data {
        ImageData::Bytes { data, mime_type } => {
            assert_eq!(mime_type, "image/png");
            data.clone()
        }
        other => panic!("{other:?}"),
    };
    // An independent decoder reads it.
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes(&a, 0).to_vec()));
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("pixels");
    assert_eq!((info.width, info.height), (96, 64));
    let b = router.generate("art", request(7)).await.unwrap();
    assert_eq!(bytes(&a, 0), bytes(&b, 0), "same request, same image");
    assert_ne!(
        bytes(&a, 0),
        bytes(&a, 1),
        "each image of a request differs"
    );
    let c = router.generate("art", request(8)).await.unwrap();
    assert_ne!(bytes(&a, 0), bytes(&c, 0), "another seed, another image");
    let mut too_big = request(1);
    too_big.width = 10_000;
    let err = router.generate("art", too_big).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

#[tokio::test]
async fn router_from_config_builds_each_kind() {
    use zeroscale_core::config::{LocalModelConfig, PlaceholderConfig, ProviderConfig};
    let mut config = config(&[]);
    config.providers.insert(
        "placeholder".into(),
        ProviderConfig::Placeholder(PlaceholderConfig::default()),
    );
    config.providers.insert(
        "local".into(),
        ProviderConfig::Local(LocalModelConfig::default()),
    );
    let (router, missing) = Router::from_config(&config).unwrap();
    #[cfg(feature = "local-models")]
    assert!(missing.is_empty(), "{missing:?}");
    #[cfg(not(feature = "local-models"))]
    {
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, "local");
        assert!(
            missing[0].1.to_string().contains("local-models"),
            "{}",
            missing[0].1
        );
    }
    let request = ImageRequest {
        model: String::new(),
        prompt: "p".into(),
        negative_prompt: None,
        width: 8,
        height: 8,
        count: 1,
        seed: None,
        extra: Default::default(),
    };
    assert_eq!(
        router.generate("art", request).await.unwrap().provider,
        "placeholder"
    );
    let names: Vec<String> = router.health().into_iter().map(|(n, _)| n).collect();
    if cfg!(feature = "local-models") {
        assert_eq!(names, ["local", "placeholder"]);
    } else {
        assert_eq!(names, ["placeholder"]);
    }
}

#[cfg(feature = "remote-models")]
#[tokio::test]
async fn router_from_config_checks_remote_urls() {
    use zeroscale_core::config::{ProviderConfig, RemoteProviderConfig};
    let mut config = config(&[]);
    config.providers.insert(
        "api".into(),
        ProviderConfig::Openai(RemoteProviderConfig {
            base_url: "not a url".into(),
            ..Default::default()
        }),
    );
    let err = Router::from_config(&config).map(|_| ()).unwrap_err();
    assert!(
        err.to_string().contains("models.providers.api.base_url"),
        "{err}"
    );
}

/// Counts the calls that reach the placeholder provider.
#[derive(Debug)]
struct CountingImages {
    inner: PlaceholderImages,
    calls: Mutex<usize>,
}

#[async_trait]
impl zeroscale_core::ImageProvider for CountingImages {
    fn name(&self) -> &str {
        "placeholder"
    }
    async fn generate(
        &self,
        request: ImageRequest,
    ) -> Result<zeroscale_core::models::ImageResponse> {
        *self.calls.lock().unwrap() += 1;
        self.inner.generate(request).await
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn images_with_an_explicit_seed_are_cached_in_storage() {
    use zeroscale_core::StorageExt;
    use zeroscale_models::image_cache::StorageImageCache;
    let dir = std::env::temp_dir().join(format!("zs-image-cache-{}", std::process::id()));
    let storage = zeroscale_storage::connect(
        &zeroscale_core::config::StorageConfig::Memory(Default::default()),
        &zeroscale_storage::StorageContext::new(dir, "http://127.0.0.1:1"),
    )
    .unwrap();
    let provider = Arc::new(CountingImages {
        inner: PlaceholderImages::new("placeholder"),
        calls: Mutex::new(0),
    });
    let mut router = Router::new(&config(&[]));
    router.add_image_provider("placeholder", provider.clone());
    router.set_image_cache(StorageImageCache::new(storage.clone()));
    let request = |prompt: &str, seed: Option<u64>| ImageRequest {
        model: String::new(),
        prompt: prompt.into(),
        negative_prompt: None,
        width: 16,
        height: 8,
        count: 2,
        seed,
        extra: Default::default(),
    };

    let first = router
        .generate("art", request("a cat", Some(7)))
        .await
        .unwrap();
    assert_eq!(first.provider, "placeholder");
    let again = router
        .generate("art", request("a cat", Some(7)))
        .await
        .unwrap();
    assert_eq!((again.provider.as_str(), again.cost), ("cache", 0.0));
    assert_eq!(again.value.images, first.value.images, "the same bytes");
    assert_eq!(again.value.metadata, first.value.metadata);
    assert_eq!(*provider.calls.lock().unwrap(), 1);

    // Another seed, prompt, option or no seed at all: a provider call each.
    router
        .generate("art", request("a cat", Some(8)))
        .await
        .unwrap();
    router
        .generate("art", request("a dog", Some(7)))
        .await
        .unwrap();
    let mut with_option = request("a cat", Some(7));
    with_option.extra.insert("steps".into(), 20.into());
    router.generate("art", with_option).await.unwrap();
    router
        .generate("art", request("a cat", None))
        .await
        .unwrap();
    let unseeded = router
        .generate("art", request("a cat", None))
        .await
        .unwrap();
    assert_eq!(unseeded.provider, "placeholder", "no seed, never cached");
    assert_eq!(*provider.calls.lock().unwrap(), 6);

    // Two entries (images + manifest) per seeded request; an image removed behind the
    // manifest's back is a miss, regenerated and stored again.
    let stored = storage.list_all(Some("model-cache/images/")).await.unwrap();
    assert_eq!(stored.len(), 4 * 3, "{stored:?}");
    let image = stored
        .iter()
        .find(|m| m.key.as_str().ends_with("/0"))
        .unwrap();
    storage.delete(&image.key).await.unwrap();
    let calls_before = *provider.calls.lock().unwrap();
    let _ = router
        .generate("art", request("a cat", Some(7)))
        .await
        .unwrap();
    let _ = router
        .generate("art", request("a dog", Some(7)))
        .await
        .unwrap();
    let _ = router
        .generate("art", request("a cat", Some(8)))
        .await
        .unwrap();
    assert_eq!(*provider.calls.lock().unwrap(), calls_before + 1);
}

#[test]
fn image_cost_estimate_is_the_dearest_provider_in_the_chain() {
    let mut config = config(&[]);
    let art = config.registry.get_mut("art").unwrap();
    art.fallbacks = vec!["cheap".into(), "free".into()];
    art.routes.insert(
        "placeholder".into(),
        ModelRoute {
            cost: ModelCost {
                per_call: 1.0,
                per_image: 2.0,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    art.routes.insert(
        "cheap".into(),
        ModelRoute {
            cost: ModelCost {
                per_image: 4.0,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let router = Router::new(&config);
    assert_eq!(router.image_cost_estimate("art", 1).unwrap(), 4.0);
    assert_eq!(router.image_cost_estimate("art", 3).unwrap(), 12.0);
    assert!(
        router.image_cost_estimate("minilm", 1).is_err(),
        "not an image model"
    );
}

fn overloaded() -> Result<()> {
    Err(Error::overloaded("queue full", Duration::from_secs(3)))
}

#[tokio::test]
async fn an_overloaded_provider_is_not_retried_nor_cooled_down_and_the_wait_is_passed_on() {
    // Alone: no retry, and the caller gets the provider's Retry-After.
    let primary = Scripted::new(
        "primary",
        vec![overloaded(), overloaded(), overloaded(), overloaded()],
    );
    let mut router = Router::new(&config(&[]));
    router.add_embedding_provider("primary", primary.clone());
    for _ in 0..4 {
        let err = router.embed("minilm", vec!["hi".into()]).await.unwrap_err();
        assert!(err.is_overloaded(), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }
    assert_eq!(primary.calls(), 4, "one call each, no retries");
    // Four overloads (more than allowed_fails) did not start a cooldown: the next call
    // reaches the provider, which now answers.
    let routed = router.embed("minilm", vec!["hi".into()]).await.unwrap();
    assert_eq!(routed.provider, "primary");
    assert_eq!(primary.calls(), 5);

    // With a fallback, the fallback serves at once.
    let primary = Scripted::new("primary", vec![overloaded()]);
    let backup = Scripted::new("backup", vec![]);
    let mut router = Router::new(&config(&["backup"]));
    router.add_embedding_provider("primary", primary.clone());
    router.add_embedding_provider("backup", backup.clone());
    let routed = router.embed("minilm", vec!["hi".into()]).await.unwrap();
    assert_eq!((routed.provider.as_str(), primary.calls()), ("backup", 1));
}

#[tokio::test]
async fn image_sizes_pick_the_providers_that_make_them() {
    let mut config = config(&[]);
    let art = config.registry.get_mut("art").unwrap();
    art.provider = "fixed".into();
    art.fallbacks = vec!["placeholder".into()];
    art.routes.insert(
        "fixed".into(),
        ModelRoute {
            sizes: vec!["64x64".into(), "128x96".into()],
            ..Default::default()
        },
    );
    let mut router = Router::new(&config);
    router.add_image_provider("fixed", Arc::new(PlaceholderImages::new("fixed")));
    router.add_image_provider(
        "placeholder",
        Arc::new(PlaceholderImages::new("placeholder")),
    );
    let request = |width, height| ImageRequest {
        model: String::new(),
        prompt: "a kite".into(),
        negative_prompt: None,
        width,
        height,
        count: 1,
        seed: None,
        extra: Default::default(),
    };
    // A size the first provider lists goes to it; another skips it (no failure counted).
    assert_eq!(
        router
            .generate("art", request(128, 96))
            .await
            .unwrap()
            .provider,
        "fixed"
    );
    assert_eq!(
        router
            .generate("art", request(32, 24))
            .await
            .unwrap()
            .provider,
        "placeholder"
    );
    assert_eq!(
        router
            .health()
            .iter()
            .find(|(n, _)| n == "fixed")
            .unwrap()
            .1
            .failures,
        0
    );
    assert!(router.check_image_size("art", 32, 24).is_ok());
    assert_eq!(
        router.default_image_size("art", (1024, 1024)).unwrap(),
        (1024, 1024)
    );

    // Only restricted providers: other sizes are refused, naming the ones made.
    let mut config = config.clone();
    config.registry.get_mut("art").unwrap().fallbacks.clear();
    let router = Router::new(&config);
    let err = router.check_image_size("art", 32, 24).unwrap_err();
    assert_eq!(err.kind(), zeroscale_core::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("128x96, 64x64"), "{err}");
    assert!(router.check_image_size("art", 64, 64).is_ok());
    assert_eq!(
        router.default_image_size("art", (1024, 1024)).unwrap(),
        (64, 64)
    );
}

#[test]
fn sizes_that_do_not_parse_are_a_config_error() {
    let mut config = config(&[]);
    config.registry.get_mut("art").unwrap().routes.insert(
        "placeholder".into(),
        ModelRoute {
            sizes: vec!["1024x1024".into(), "large".into()],
            ..Default::default()
        },
    );
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("models.registry.art.routes.placeholder.sizes") && err.contains("`large`"),
        "{err}"
    );
}
