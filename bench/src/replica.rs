//! Read replicas (#26): stale-tolerant reads per second with `database.replicas` set (the
//! reads on the streaming replica) against the same reads all on the primary, on the same
//! data, side by side in one run: a document read by id (a round trip: what routing adds)
//! and a filtered search (a scan of the table: where the work moves to the replica). On
//! one machine the replica shares the primary's cores, so the gain a second machine gives
//! does not show; what shows is the cost of the routing and whether reads really move.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use zeroscale_core::config::{DatabaseConfig, PostgresConfig, VectorSearch};
use zeroscale_db::domain::Domain;

use crate::measure::{Figure, Goal, Plan, Stats};
use crate::search::{random, unit};

const COLLECTION: &str = "replica";
/// Concurrent readers.
const READERS: usize = 16;

/// Both figures, when the test engines include the replica (`cargo xtask bench` starts it).
pub(crate) async fn run(plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let (Ok(admin_url), Ok(replica_url)) = (
        std::env::var("ZEROSCALE_TEST_POSTGRES_URL"),
        std::env::var("ZEROSCALE_TEST_POSTGRES_REPLICA_URL"),
    ) else {
        anyhow::ensure!(
            std::env::var_os("CI").is_none(),
            "ZEROSCALE_TEST_POSTGRES_URL or ZEROSCALE_TEST_POSTGRES_REPLICA_URL is not set: run \
             `cargo xtask bench`, which starts PostgreSQL and its replica"
        );
        eprintln!("database: no PostgreSQL replica, the replica figures skipped");
        return Ok(Vec::new());
    };
    let name = format!("zs_bench_replica_{}", std::process::id());
    let url = crate::database::create_database(&admin_url, &name).await?;
    let replica = crate::database::with_database(&replica_url, &name)?;
    let result = figures(plan, &url, &replica).await;
    crate::database::drop_database(&url).await;
    result
}

async fn figures(plan: Plan, url: &str, replica: &str) -> anyhow::Result<Vec<Figure>> {
    let primary_only = DatabaseConfig::Postgres(PostgresConfig {
        url: url.to_owned().into(),
        vector_search: VectorSearch::Exact,
        ..Default::default()
    });
    let with_replica = DatabaseConfig::Postgres(PostgresConfig {
        url: url.to_owned().into(),
        vector_search: VectorSearch::Exact,
        replicas: vec![replica.to_owned().into()],
        ..Default::default()
    });
    let on_primary = crate::search::domain(&primary_only).await?;
    let n = plan.size(5_000, 500);
    let mut next = random(26);
    let ids = crate::search::insert_random(&on_primary, COLLECTION, n, &mut next).await?;
    let on_replica = crate::search::domain(&with_replica).await?;
    // The replica serves once it has replayed past where the primary was when the
    // process started (the documents included).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = on_replica.db().replica_status();
        if status.iter().any(|s| s.serving) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica did not serve within 30 s: {}",
            status
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = Arc::new(ids);
    let query = Arc::new(unit(&mut next));
    let filter = json!({"even": true}).as_object().cloned();
    let length = Duration::from_millis(plan.size(3_000, 300) as u64);

    let by_id = {
        let ids = Arc::clone(&ids);
        move |d: Domain, i: u64| {
            let ids = Arc::clone(&ids);
            async move {
                let id = &ids[(i as usize * 7919) % ids.len()];
                d.documents().get(id).await.map(|_| ())
            }
        }
    };
    let search = {
        let query = Arc::clone(&query);
        move |d: Domain, _: u64| {
            let query = Arc::clone(&query);
            let filter = filter.clone();
            async move {
                d.documents()
                    .search(COLLECTION, &query, 10, filter.as_ref())
                    .await
                    .map(|_| ())
            }
        }
    };
    let mut figures = Vec::new();
    figures.push(
        side_by_side(
            plan,
            format!("document read by id, {READERS} readers"),
            length,
            &on_replica,
            &on_primary,
            by_id,
        )
        .await?,
    );
    figures.push(
        side_by_side(
            plan,
            format!("filtered top-10 over {n} × 384 (a scan), {READERS} readers"),
            length,
            &on_replica,
            &on_primary,
            search,
        )
        .await?,
    );
    on_replica.db().clone().close().await?;
    on_primary.db().clone().close().await?;
    Ok(figures)
}

/// Reads/s through `on_replica` ÷ through `on_primary`, per round (alternating which goes
/// first, one warm-up each); fails if the replica's reads did not go to the replica.
async fn side_by_side<F, Fut>(
    plan: Plan,
    what: String,
    length: Duration,
    on_replica: &Domain,
    on_primary: &Domain,
    read: F,
) -> anyhow::Result<Figure>
where
    F: Fn(Domain, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = zeroscale_core::Result<()>> + Send,
{
    let replica_reads = || -> u64 {
        on_replica
            .db()
            .replica_status()
            .iter()
            .map(|s| s.reads)
            .sum()
    };
    throughput(on_replica, length / 5, read.clone()).await?;
    throughput(on_primary, length / 5, read.clone()).await?;
    let (before_replica, before_primary) =
        (replica_reads(), on_replica.db().stale_reads_on_primary());
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        let (r, p) = if round.is_multiple_of(2) {
            let r = throughput(on_replica, length, read.clone()).await?;
            (r, throughput(on_primary, length, read.clone()).await?)
        } else {
            let p = throughput(on_primary, length, read.clone()).await?;
            (throughput(on_replica, length, read.clone()).await?, p)
        };
        ours.push(r);
        theirs.push(p);
        ratios.push(r / p.max(1e-9));
    }
    let served = replica_reads() - before_replica;
    let fell_back = on_replica.db().stale_reads_on_primary() - before_primary;
    anyhow::ensure!(
        served > 0 && fell_back * 100 <= served,
        "{what}: with the replica configured, {served} read(s) went to the replica and \
         {fell_back} to the primary; the figure would not measure the replica"
    );
    let ratio = Stats::of(&ratios);
    Ok(Figure {
        concern: "database",
        name: format!(
            "PostgreSQL stale-tolerant reads/s on the streaming replica ({what}; {served} \
             on the replica, {fell_back} fell back)"
        ),
        unit: "reads/s",
        ours: Stats::of(&ours),
        theirs: Some(Stats::of(&theirs)),
        against: Some("the same reads without `database.replicas` (all on the primary)".into()),
        ratio: Some(ratio),
        // One machine: the replica shares the primary's cores.
        goal: Goal::Report,
        pass: None,
        rounds: plan.rounds,
    })
}

/// Reads answered per second by [`READERS`] loops calling `read` for `length`.
async fn throughput<F, Fut>(d: &Domain, length: Duration, read: F) -> anyhow::Result<f64>
where
    F: Fn(Domain, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = zeroscale_core::Result<()>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let (d, read, stop, counter) = (
            d.clone(),
            read.clone(),
            Arc::clone(&stop),
            Arc::clone(&counter),
        );
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                read(d.clone(), counter.fetch_add(1, Ordering::Relaxed)).await?;
                done += 1;
            }
            Ok::<u64, zeroscale_core::Error>(done)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}
