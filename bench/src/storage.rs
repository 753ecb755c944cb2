//! Storage: put and get through zeroscale's `Storage` against raw object_store on the same
//! backend (local files; S3 when the test S3 server runs), and listing page by page as the
//! number of objects grows.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use zeroscale_core::config::{LocalStorageConfig, S3StorageConfig, StorageConfig};
use zeroscale_core::storage::{ListOptions, ObjectKey};
use zeroscale_core::{Storage, StorageExt};
use zeroscale_storage::StorageContext;

use crate::measure::{Figure, Goal, Plan, Stats, compare};

/// One backend: ours and the raw client on the same engine, each under its own prefix.
struct Pair {
    label: &'static str,
    ours: Arc<dyn Storage>,
    raw: Arc<dyn ObjectStore>,
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).expect("bench keys are valid")
}

fn local_pair(dir: &Path) -> anyhow::Result<Pair> {
    let ours_root = dir.join("ours");
    let raw_root = dir.join("raw");
    std::fs::create_dir_all(&raw_root)?;
    let ctx = StorageContext::new(dir.join("data"), "http://127.0.0.1:1");
    let ours = zeroscale_storage::connect(
        &StorageConfig::Local(LocalStorageConfig {
            root: Some(ours_root),
            ..Default::default()
        }),
        &ctx,
    )?;
    let raw = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
        &raw_root,
    )?);
    Ok(Pair {
        label: "local",
        ours,
        raw,
    })
}

fn s3_pair(dir: &Path, endpoint: &str, bucket: &str) -> anyhow::Result<Pair> {
    let run = format!("bench-{}", std::process::id());
    let config = S3StorageConfig {
        bucket: bucket.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        allow_http: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        prefix: Some(format!("{run}-ours")),
        ..Default::default()
    };
    let ctx = StorageContext::new(dir.join("data"), "http://127.0.0.1:1");
    let ours = zeroscale_storage::connect(&StorageConfig::S3(config), &ctx)?;
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_virtual_hosted_style_request(false)
        .build()?;
    let raw = Arc::new(object_store::prefix::PrefixStore::new(
        s3,
        format!("{run}-raw"),
    ));
    Ok(Pair {
        label: "s3",
        ours,
        raw,
    })
}

/// Every storage figure.
pub(crate) async fn run(plan: Plan, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let mut pairs = vec![local_pair(&dir.join("local"))?];
    match (
        std::env::var("ZEROSCALE_TEST_S3_ENDPOINT"),
        std::env::var("ZEROSCALE_TEST_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => pairs.push(s3_pair(&dir.join("s3"), &endpoint, &bucket)?),
        _ => eprintln!("storage: no S3 server in the environment; local only"),
    }
    let mut figures = Vec::new();
    for pair in &pairs {
        let small = plan.size(1000, 100);
        let large = plan.size(10, 2);
        figures.push(put_get(plan, pair, "4 KiB", 4 * 1024, small, true).await);
        figures.push(put_get(plan, pair, "4 KiB", 4 * 1024, small, false).await);
        figures.push(put_get(plan, pair, "8 MiB", 8 * 1024 * 1024, large, true).await);
        figures.push(put_get(plan, pair, "8 MiB", 8 * 1024 * 1024, large, false).await);
    }
    // Listing grows linearly with the objects listed (local files: the case that was
    // quadratic).
    figures.push(listing(plan, &pairs[0]).await?);
    Ok(figures)
}

/// `count` puts (or gets) of `size` bytes per round.
async fn put_get(
    plan: Plan,
    pair: &Pair,
    label: &str,
    size: usize,
    count: usize,
    put: bool,
) -> Figure {
    let body = Bytes::from(vec![7u8; size]);
    let what = if put { "put" } else { "get" };
    if !put {
        // What the gets read, written once on both sides.
        for i in 0..count {
            let name = format!("get-{size}/{i}");
            pair.ours.put(&key(&name), body.clone()).await.expect("put");
            pair.raw
                .put(&OsPath::from(name), PutPayload::from(body.clone()))
                .await
                .expect("raw put");
        }
    }
    let ours = |round: usize| {
        let body = body.clone();
        let store = pair.ours.clone();
        async move {
            let start = Instant::now();
            for i in 0..count {
                if put {
                    let k = key(&format!("put-{size}/{round}/{i}"));
                    store.put(&k, body.clone()).await.expect("put");
                } else {
                    let got = store
                        .get_bytes(&key(&format!("get-{size}/{i}")))
                        .await
                        .expect("get");
                    assert_eq!(got.len(), size);
                }
            }
            start.elapsed()
        }
    };
    let theirs = |round: usize| {
        let body = body.clone();
        let store = pair.raw.clone();
        async move {
            let start = Instant::now();
            for i in 0..count {
                if put {
                    let p = OsPath::from(format!("put-{size}/{round}/{i}"));
                    store
                        .put(&p, PutPayload::from(body.clone()))
                        .await
                        .expect("raw put");
                } else {
                    let p = OsPath::from(format!("get-{size}/{i}"));
                    let got = store
                        .get(&p)
                        .await
                        .expect("raw get")
                        .bytes()
                        .await
                        .expect("raw body");
                    assert_eq!(got.len(), size);
                }
            }
            start.elapsed()
        }
    };
    compare(
        plan,
        "storage",
        format!("{} {count} × {label} {what}", pair.label),
        format!("raw object_store ({})", pair.label),
        Goal::AtMost { ratio: 1.05 },
        ours,
        theirs,
    )
    .await
}

/// Listing every page of `n` objects, against `n / 10`: time per object should not grow.
async fn listing(plan: Plan, pair: &Pair) -> anyhow::Result<Figure> {
    let n = plan.size(10_000, 2_000);
    let small = n / 10;
    for (prefix, count) in [("list-large", n), ("list-small", small)] {
        for i in 0..count {
            pair.ours
                .put(&key(&format!("{prefix}/{i:06}")), Bytes::from_static(b"x"))
                .await?;
        }
    }
    let list_all = |prefix: &'static str| {
        let store = pair.ours.clone();
        async move {
            let start = Instant::now();
            let mut token = None;
            let mut seen = 0;
            loop {
                let page = store
                    .list(ListOptions {
                        prefix: Some(format!("{prefix}/")),
                        page_size: Some(1000),
                        page_token: token.take(),
                    })
                    .await
                    .expect("list");
                seen += page.objects.len();
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            (start.elapsed(), seen)
        }
    };
    list_all("list-large").await;
    let mut per_object_ratio = Vec::new();
    let mut large_ms = Vec::new();
    for _ in 0..plan.rounds {
        let (large, seen_large) = list_all("list-large").await;
        let (small_t, seen_small) = list_all("list-small").await;
        assert_eq!((seen_large, seen_small), (n, small));
        let per_large = large.as_secs_f64() / n as f64;
        let per_small = small_t.as_secs_f64() / small as f64;
        per_object_ratio.push(per_large / per_small.max(1e-12));
        large_ms.push(large.as_secs_f64() * 1e3);
    }
    let ratio = Stats::of(&per_object_ratio);
    let goal = Goal::AtMost { ratio: 1.5 };
    Ok(Figure {
        concern: "storage",
        name: format!(
            "{} list {n} objects page by page, time per object vs {small}",
            pair.label
        ),
        unit: "ms",
        ours: Stats::of(&large_ms),
        theirs: None,
        against: Some(format!("itself at {small} objects (linear: 1.0)")),
        ratio: Some(ratio),
        goal,
        pass: (!plan.quick).then(|| goal.met(ratio.median, 0.0)).flatten(),
        rounds: plan.rounds,
    })
}
