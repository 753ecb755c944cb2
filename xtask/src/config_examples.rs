//! Every example config in `config/` still parses, and each stage file selects the
//! backends the stages table in README.md promises.

use zeroscale_core::config::{Config, ConfigSources, load};

use crate::util::root;

fn load_profile(profile: &str) -> Config {
    let sources = ConfigSources {
        profile: Some(profile.to_owned()),
        config_dir: Some(root().join("config")),
        ..Default::default()
    };
    match load(&sources) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("config/{profile}.toml does not load: {}", e.chain()),
    }
}

#[test]
fn every_example_parses() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("config"))
        .expect("config/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(profile) = name.strip_suffix(".toml")
            && profile != "default"
        {
            load_profile(profile);
            count += 1;
        }
    }
    assert!(count >= 4, "expected the four stage files, found {count}");
}

#[test]
fn stages_select_the_promised_backends() {
    let kinds = |c: &Config| {
        (
            c.database.kind(),
            c.storage.kind(),
            c.queue.kind(),
            c.models.registry["minilm"].provider.clone(),
        )
    };
    let s1 = load_profile("stage1-embedded");
    assert_eq!(
        kinds(&s1),
        ("sqlite", "local", "memory", "local".to_owned())
    );
    let s2 = load_profile("stage2-mvp");
    assert_eq!(kinds(&s2), ("sqlite", "s3", "database", "local".to_owned()));
    let s3 = load_profile("stage3-growth");
    assert_eq!(kinds(&s3).0, "postgres");
    assert_eq!(kinds(&s3).1, "s3");
    assert_eq!(kinds(&s3).2, "redis");
    assert_eq!(s3.models.providers[&kinds(&s3).3].kind(), "openai");
    // Stages 1 and 2 install the local model on first start; stage 3 pre-installs it.
    let auto_install = |c: &Config| match &c.models.providers["local"] {
        zeroscale_core::config::ProviderConfig::Local(local) => local.auto_install,
        other => panic!("`local` is a {} provider", other.kind()),
    };
    assert!(auto_install(&s1) && auto_install(&s2));
    assert!(!auto_install(&s3));
    // Stage 4: stage 3 on a Redis Cluster whose enqueues a replica confirms, with pgvector.
    let s4 = load_profile("stage4-scale");
    assert_eq!(kinds(&s4), kinds(&s3));
    let zeroscale_core::config::QueueConfig::Redis(queue) = &s4.queue else {
        panic!("stage 4's queue is Redis")
    };
    assert!(queue.cluster_nodes.len() >= 3 && queue.wait_for_replicas >= 1);
    let zeroscale_core::config::DatabaseConfig::Postgres(db) = &s4.database else {
        panic!("stage 4's database is PostgreSQL")
    };
    assert_eq!(
        db.vector_search,
        zeroscale_core::config::VectorSearch::Pgvector
    );
    assert!(!auto_install(&s4));
}
