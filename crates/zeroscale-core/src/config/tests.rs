//! Tests of config loading: layers, aliases, unknown keys and kinds, sources.

use figment::Jail;

use super::*;

fn load_default() -> Result<LoadedConfig> {
    load(&ConfigSources::default())
}

#[test]
fn empty_config_is_the_embedded_stage() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_DATA_DIR", "/tmp/zs-data");
        let loaded = load_default().map_err(|e| e.to_string())?;
        let c = &loaded.config;
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/zs-data")));
        let DatabaseConfig::Sqlite(sqlite) = &c.database else {
            panic!("{c:?}")
        };
        assert_eq!(
            sqlite.path.as_deref(),
            Some(Path::new("/tmp/zs-data/zeroscale.db"))
        );
        assert!(sqlite.auto_migrate);
        let StorageConfig::Local(local) = &c.storage else {
            panic!("{c:?}")
        };
        assert_eq!(local.root.as_deref(), Some(Path::new("/tmp/zs-data/blobs")));
        assert_eq!(c.queue.kind(), "memory");
        assert_eq!(c.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.models.providers["local"].kind(), "local");
        assert_eq!(c.models.registry["placeholder"].provider, "placeholder");
        assert_eq!(loaded.source_of("queue.kind"), "built-in default");
        assert_eq!(loaded.source_of("database.path"), "derived from data_dir");
        Ok(())
    });
}

#[test]
fn layers_apply_in_order() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[server]\naddr = \"127.0.0.1:9000\"\n[log]\nformat = \"json\"\n",
        )?;
        jail.create_file("config/prod.toml", "[server]\naddr = \"127.0.0.1:9001\"\n")?;
        jail.set_env("ZEROSCALE_PROFILE", "prod");
        jail.set_env("ZEROSCALE_SERVER__SHUTDOWN_GRACE_SECS", "5");
        let loaded = load_default().map_err(|e| e.to_string())?;
        assert_eq!(loaded.config.server.addr.to_string(), "127.0.0.1:9001");
        assert_eq!(loaded.config.log.format, LogFormat::Json);
        assert_eq!(loaded.config.server.shutdown_grace_secs, 5);
        assert_eq!(loaded.source_of("server.addr"), "config/prod.toml:2");
        assert_eq!(loaded.source_of("log.format"), "config/default.toml:4");
        assert_eq!(
            loaded.source_of("server.shutdown_grace_secs"),
            "env var `ZEROSCALE_SERVER__SHUTDOWN_GRACE_SECS`"
        );
        Ok(())
    });
}

#[test]
fn unknown_kind_names_the_key_the_source_and_the_valid_kinds() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_QUEUE__KIND", "nosuch");
        let err = load_default().expect_err("nosuch is not a queue kind");
        let text = err.to_string();
        assert!(text.contains("`queue.kind`"), "{text}");
        assert!(text.contains("`memory`, `redis`"), "{text}");
        assert!(text.contains("ZEROSCALE_QUEUE__KIND"), "{text}");
        Ok(())
    });
}

#[test]
fn unknown_key_in_a_file_names_file_line_and_valid_keys() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[queue]\nkind = \"redis\"\nurl = \"redis://x\"\nurll = \"typo\"\n",
        )?;
        let err = load_default().expect_err("urll is not a key");
        let text = err.to_string();
        assert!(text.contains("unknown key `queue.urll`"), "{text}");
        assert!(text.contains("config/default.toml:4"), "{text}");
        assert!(text.contains("for kind `redis`"), "{text}");
        assert!(
            text.contains(
                "cluster_nodes, connect_timeout_secs, key_prefix, kind, replica_wait_ms, url, \
                 wait_for_replicas"
            ),
            "{text}"
        );
        Ok(())
    });
}

#[test]
fn unknown_key_from_env_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_SERVR__ADDR", "127.0.0.1:1");
        let err = load_default().expect_err("servr is not a key");
        let text = err.to_string();
        assert!(text.contains("`servr`"), "{text}");
        assert!(text.contains("ZEROSCALE_SERVR__ADDR"), "{text}");
        Ok(())
    });
}

#[test]
fn test_and_reserved_env_vars_are_not_config_keys() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_TEST_POSTGRES_URL", "postgres://x");
        jail.set_env("ZEROSCALE_CONFIG_DIR", "config");
        load_default().map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn database_url_selects_mongodb() {
    for url in [
        "mongodb://u:pw@127.0.0.1:27017/app?authSource=admin",
        "mongodb+srv://u:pw@cluster.example/app",
    ] {
        Jail::expect_with(|jail| {
            jail.set_env("DATABASE_URL", url);
            let loaded = load_default().map_err(|e| e.to_string())?;
            let DatabaseConfig::Mongodb(m) = &loaded.config.database else {
                panic!("{url}: {:?}", loaded.config.database)
            };
            assert_eq!(m.url.expose(), url);
            assert_eq!(m.transactions, MongodbTransactions::Auto);
            assert!(!m.auto_migrate);
            Ok(())
        });
    }
}

#[test]
fn database_url_selects_postgres_and_redis_url_selects_redis() {
    Jail::expect_with(|jail| {
        jail.set_env("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db");
        jail.set_env("REDIS_URL", "redis://127.0.0.1:6380");
        let loaded = load_default().map_err(|e| e.to_string())?;
        let DatabaseConfig::Postgres(pg) = &loaded.config.database else {
            panic!()
        };
        assert_eq!(pg.url.expose(), "postgres://u:pw@127.0.0.1:5432/db");
        assert_eq!(pg.max_connections, 20);
        let QueueConfig::Redis(redis) = &loaded.config.queue else {
            panic!()
        };
        assert_eq!(redis.url.expose(), "redis://127.0.0.1:6380");
        assert_eq!(loaded.source_of("queue.url"), "`REDIS_URL` env var");
        Ok(())
    });
}

#[test]
fn cluster_nodes_come_from_an_env_var_list() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_QUEUE__KIND", "redis");
        jail.set_env(
            "ZEROSCALE_QUEUE__CLUSTER_NODES",
            r#"["redis://:pw@10.0.0.1:7000", "redis://10.0.0.2:7000"]"#,
        );
        jail.set_env("ZEROSCALE_QUEUE__WAIT_FOR_REPLICAS", "1");
        let loaded = load_default().map_err(|e| e.to_string())?;
        let QueueConfig::Redis(redis) = &loaded.config.queue else {
            panic!()
        };
        let nodes: Vec<&str> = redis
            .cluster_nodes
            .iter()
            .map(|n| n.expose().as_str())
            .collect();
        assert_eq!(
            nodes,
            ["redis://:pw@10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        assert_eq!(redis.wait_for_replicas, 1);
        assert_eq!(
            redis.location(),
            "the Redis Cluster at 10.0.0.1:7000, 10.0.0.2:7000"
        );
        Ok(())
    });
}

#[test]
fn cli_flags_win_over_everything() {
    Jail::expect_with(|jail| {
        jail.set_env("DATABASE_URL", "postgres://u@127.0.0.1/db");
        let sources = ConfigSources {
            db_backend: Some("sqlite".into()),
            db_url: Some("sqlite:///tmp/x.db".into()),
            ..Default::default()
        };
        // The postgres `url` from DATABASE_URL is not a sqlite key: the error says so.
        let err = load(&sources).expect_err("url is not a sqlite key");
        assert!(
            err.to_string().contains("unknown key `database.url`"),
            "{err}"
        );
        jail.set_env("DATABASE_URL", "");
        let loaded = load(&sources).map_err(|e| e.to_string())?;
        let DatabaseConfig::Sqlite(s) = &loaded.config.database else {
            panic!()
        };
        assert_eq!(s.path.as_deref(), Some(Path::new("/tmp/x.db")));
        assert_eq!(
            loaded.source_of("database.kind"),
            "command-line flag `--db-url`"
        );
        let contradiction = ConfigSources {
            db_backend: Some("postgres".into()),
            db_url: Some("sqlite:///tmp/x.db".into()),
            ..Default::default()
        };
        assert!(
            load(&contradiction)
                .unwrap_err()
                .to_string()
                .contains("contradicts")
        );
        Ok(())
    });
}

#[test]
fn missing_profile_lists_the_ones_there_are() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file("config/stage1.toml", "")?;
        jail.set_env("ZEROSCALE_PROFILE", "stage9");
        let err = load_default().expect_err("no such profile");
        assert!(err.to_string().contains("profiles there: stage1"), "{err}");
        Ok(())
    });
}

#[test]
fn annotated_toml_redacts_secrets_and_reparses() {
    Jail::expect_with(|jail| {
        jail.set_env("ZEROSCALE_DATA_DIR", "/tmp/zs");
        jail.set_env("DATABASE_URL", "postgres://user:hunter2@127.0.0.1/db");
        let loaded = load_default().map_err(|e| e.to_string())?;
        let text = loaded.to_annotated_toml().map_err(|e| e.to_string())?;
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("url = \"[redacted]\"  # `DATABASE_URL` env var"),
            "{text}"
        );
        assert!(text.contains("[models.registry.minilm]"), "{text}");
        let parsed: toml::Table = text.parse().map_err(|e| format!("{e}\n{text}"))?;
        assert_eq!(parsed["database"]["kind"].as_str(), Some("postgres"));
        Ok(())
    });
}

#[test]
fn r2_is_an_s3_preset() {
    let r2 = R2StorageConfig {
        account_id: "abc".into(),
        bucket: "b".into(),
        ..Default::default()
    };
    let s3 = r2.to_s3();
    assert_eq!(s3.region, "auto");
    assert_eq!(
        s3.endpoint.as_deref(),
        Some("https://abc.r2.cloudflarestorage.com")
    );
    assert_eq!(s3.bucket, "b");
}

#[test]
fn registry_references_are_checked() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[models.registry.minilm]\nfallbacks = [\"nosuch\"]\n",
        )?;
        let err = load_default().expect_err("nosuch is not a provider");
        assert!(
            err.to_string()
                .contains("`models.registry.minilm.fallbacks`"),
            "{err}"
        );
        assert!(err.to_string().contains("local, placeholder"), "{err}");
        Ok(())
    });
}

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Wordcount {
    max_words: u32,
    greeting: String,
    limits: WordcountLimits,
}

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct WordcountLimits {
    per_minute: u32,
}

fn app_sources() -> ConfigSources {
    ConfigSources {
        names: ConfigNames {
            env_prefix: "WORDCOUNT".into(),
            config_dir: "settings".into(),
            data_dir_name: "wordcount".into(),
        },
        sections: vec![ConfigSection::new::<Wordcount>("wordcount")],
        ..Default::default()
    }
}

#[test]
fn app_section_loads_from_its_folder_and_env_prefix_and_is_shown_with_sources() {
    Jail::expect_with(|jail| {
        jail.create_dir("settings")?;
        jail.create_dir("config")?;
        jail.create_file(
            "settings/default.toml",
            "[wordcount]\nmax_words = 10\ngreeting = \"hi\"\n\n[queue]\nkind = \"memory\"\n",
        )?;
        // zeroscale's own prefix and folder are not this app's.
        jail.create_file("config/default.toml", "[wordcount]\nmax_words = 99\n")?;
        jail.set_env("ZEROSCALE_SERVER__ADDR", "127.0.0.1:1");
        jail.set_env("WORDCOUNT_WORDCOUNT__LIMITS__PER_MINUTE", "7");
        jail.set_env("WORDCOUNT_DATA_DIR", "/tmp/wc-data");
        let loaded = load(&app_sources()).map_err(|e| e.to_string())?;
        let section = loaded.section::<Wordcount>().expect("declared");
        assert_eq!(section.max_words, 10);
        assert_eq!(section.greeting, "hi");
        assert_eq!(section.limits.per_minute, 7);
        assert_eq!(loaded.config.server.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            loaded.config.data_dir.as_deref(),
            Some(Path::new("/tmp/wc-data"))
        );
        assert_eq!(
            loaded.source_of("wordcount.limits.per_minute"),
            "env var `WORDCOUNT_WORDCOUNT__LIMITS__PER_MINUTE`"
        );
        let shown = loaded.to_annotated_toml().map_err(|e| e.to_string())?;
        assert!(
            shown.contains("max_words = 10  # settings/default.toml:2"),
            "{shown}"
        );
        assert!(shown.contains("[wordcount.limits]"), "{shown}");
        assert!(shown.starts_with("# wordcount config"), "{shown}");
        assert!(loaded.section::<WordcountLimits>().is_none());
        Ok(())
    });
}

#[test]
fn app_section_absent_is_its_defaults_and_data_dir_is_named_for_the_app() {
    Jail::expect_with(|jail| {
        jail.set_env("HOME", jail.directory().display().to_string());
        let loaded = load(&app_sources()).map_err(|e| e.to_string())?;
        assert_eq!(
            *loaded.section::<Wordcount>().unwrap(),
            Wordcount::default()
        );
        let dir = loaded.config.data_dir.unwrap();
        assert!(dir.ends_with("wordcount"), "{}", dir.display());
        Ok(())
    });
}

#[test]
fn app_section_mistakes_name_the_key_and_the_source() {
    Jail::expect_with(|jail| {
        jail.create_dir("settings")?;
        jail.create_file("settings/default.toml", "[wordcount]\nmax_wrods = 10\n")?;
        let err = load(&app_sources()).unwrap_err().to_string();
        assert!(err.contains("unknown key `wordcount.max_wrods`"), "{err}");
        assert!(err.contains("settings/default.toml:2"), "{err}");
        assert!(err.contains("max_words"), "{err}");

        jail.create_file(
            "settings/default.toml",
            "[wordcount]\nmax_words = \"many\"\n",
        )?;
        let err = load(&app_sources()).unwrap_err().to_string();
        assert!(err.contains("wordcount.max_words"), "{err}");
        assert!(err.contains("settings/default.toml:2"), "{err}");

        // Without the section declared, its key is unknown.
        jail.create_file("settings/default.toml", "[wordcount]\nmax_words = 1\n")?;
        let mut sources = app_sources();
        sources.sections.clear();
        let err = load(&sources).unwrap_err().to_string();
        assert!(err.contains("unknown key `wordcount"), "{err}");
        Ok(())
    });
}

#[test]
fn app_sections_cannot_take_zeroscale_keys() {
    for name in ["queue", "data_dir", "Wordcount", ""] {
        let sources = ConfigSources {
            sections: vec![ConfigSection::new::<Wordcount>(name)],
            ..Default::default()
        };
        let err = load(&sources).unwrap_err().to_string();
        assert!(err.contains("name of its own"), "{name}: {err}");
    }
    let twice = ConfigSources {
        sections: vec![
            ConfigSection::new::<Wordcount>("wc"),
            ConfigSection::new::<Wordcount>("wc"),
        ],
        ..Default::default()
    };
    assert!(load(&twice).unwrap_err().to_string().contains("twice"));
}
